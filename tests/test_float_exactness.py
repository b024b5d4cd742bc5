"""No computed float is compared with ``==``/``!=`` unless it is exact by construction.

A float64 result can differ in its last bit between CPUs (an AVX-512 machine sums a cumsum in
another order than an AVX2 one; issue 12: ``rddm_schedule().noise_strength`` came out
0.9999999999999999 there and notebook 01 failed). So every ``==``/``!=`` against a float in
``notebooks/``, ``tests/`` and ``drdd_edu/`` must either use a tolerance (``math.isclose``,
``pytest.approx``, ``torch.allclose``) or carry a pragma saying why it is exact::

    assert sched.alphas_cumsum[-1] == 1.0  # float-exact: boundary

on one of the lines of the statement, with a reason from :data:`ALLOWED_REASONS`. The scan
is syntactic (AST): it flags a comparison when one side is a float literal, ``float(...)``,
``x.item()`` or ``math.inf``/``float("inf")`` (infinities are allowed without a pragma).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("notebooks", "tests", "drdd_edu")

#: the only reasons a float may be compared exactly; each names how exactness is guaranteed
ALLOWED_REASONS = {
    "boundary": "the value was assigned, not computed (e.g. ᾱ_T := 1, β̄²_T := sum_scale)",
    "clamped": "the value is the result of clamping/min/max to the very literal compared",
    "count": "a ratio of integer counts at 0 or 1 (0/n and n/n are exact)",
    "literal": "a literal passed through unchanged (a loop variable, a parameter, a parsed "
    "decimal, an initial value, a zero update)",
    "grid": "an element of a grid compared with a grid point the grid holds exactly "
    "(linspace end points, small integer multiples)",
    "zero": "an exact zero: a product with an exact 0, or x − x",
}
PRAGMA = re.compile(r"#\s*float-exact:\s*([a-z-]+)")


def _is_float_like(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    if isinstance(node, ast.Constant):
        return isinstance(node.value, float)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "float":
            return True
        if isinstance(func, ast.Attribute) and func.attr == "item" and not node.args:
            return True
    return False


def _is_tolerant(node: ast.AST) -> bool:
    """``pytest.approx(...)`` / ``approx(...)`` on one side makes ``==`` a tolerance check."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name == "approx"
    return False


def _is_infinity(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    if isinstance(node, ast.Attribute) and node.attr == "inf":
        return True
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "float" and node.args:
        arg = node.args[0]
        return isinstance(arg, ast.Constant) and str(arg.value).lower().lstrip("+-") in {
            "inf",
            "infinity",
        }
    return False


def float_equalities(source: str) -> list[tuple[int, int, str]]:
    """``(first line, last line, text)`` of every ``==``/``!=`` comparison against a float-like
    operand in ``source`` (infinities and ``approx`` excluded)."""
    tree = ast.parse(source)
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, a, b in zip(node.ops, operands[:-1], operands[1:], strict=True):
            if not isinstance(op, (ast.Eq, ast.NotEq)):
                continue
            if _is_tolerant(a) or _is_tolerant(b) or _is_infinity(a) or _is_infinity(b):
                continue
            if _is_float_like(a) or _is_float_like(b):
                text = ast.get_source_segment(source, node) or ""
                hits.append((node.lineno, node.end_lineno or node.lineno, text))
    return hits


def _statement_span(tree: ast.AST, line: int) -> tuple[int, int]:
    """The lines of the innermost simple statement containing ``line``."""
    best = (line, line)
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not hasattr(node, "body"):
            lo, hi = node.lineno, node.end_lineno or node.lineno
            if lo <= line <= hi and (best == (line, line) or hi - lo < best[1] - best[0]):
                best = (lo, hi)
    return best


def unjustified(source: str) -> list[str]:
    """Float equalities in ``source`` without a ``# float-exact: REASON`` pragma (REASON one of
    :data:`ALLOWED_REASONS`) on the statement's lines or the line just above it."""
    lines = source.splitlines()
    tree = ast.parse(source)
    problems = []
    for first, last, text in float_equalities(source):
        lo, hi = _statement_span(tree, first)
        lo, hi = min(lo, first), max(hi, last)
        window = lines[max(lo - 2, 0) : hi]  # the line above and the statement's own lines
        reasons = [m.group(1) for line in window for m in PRAGMA.finditer(line)]
        if not reasons:
            problems.append(f"line {first}: `{text}` compares a float exactly")
        elif not any(r in ALLOWED_REASONS for r in reasons):
            problems.append(f"line {first}: `{text}`: unknown float-exact reason {reasons}")
    return problems


def _python_files() -> list[Path]:
    files = [ROOT / "conftest.py"]
    for folder in SCANNED:
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if ".ipynb_checkpoints" not in f.parts]


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unjustified_float_equality(path: Path):
    problems = unjustified(path.read_text(encoding="utf-8"))
    assert not problems, (
        f"{path.relative_to(ROOT)}: use a tolerance (math.isclose, pytest.approx, torch.allclose) "
        "or, where the value is exact by construction on every CPU, add "
        "`# float-exact: <reason>` with a reason from ALLOWED_REASONS:\n" + "\n".join(problems)
    )


# ----------------------------------------------------------------------------- the scanner itself


@pytest.mark.parametrize(
    "code",
    [
        "assert sigma == 1.0",
        "assert x != -0.5",
        "ok = float(t) == y",
        "assert a.item() == b",
        "assert 0.0 == loss",
        "assert a < b == 2.5",
        "assert f(\n    x\n) == 1.0",
    ],
)
def test_scanner_flags_float_equalities(code):
    assert len(unjustified(code)) == 1, code


@pytest.mark.parametrize(
    "code",
    [
        "assert sigma == pytest.approx(1.0)",
        "assert math.isclose(sigma, 1.0)",
        "assert x != float('inf')",
        "assert x == -math.inf",
        "assert n == 3",
        "assert name == 'a'",
        "assert sigma <= 1.0",
        "assert sigma == 1.0  # float-exact: boundary",
        "# float-exact: count\nassert frac == 1.0",
        "assert f(\n    x  # float-exact: clamped\n) == 1.0",
    ],
)
def test_scanner_accepts_tolerances_and_justified_cases(code):
    assert unjustified(code) == [], code


def test_scanner_rejects_unknown_reasons():
    (problem,) = unjustified("assert sigma == 1.0  # float-exact: trust-me")
    assert "unknown float-exact reason" in problem
