"""Rules every notebook follows, checked on the percent sources (no kernel needed).

* A notebook never asserts its own wall-clock time (issue 12): a student on a slow laptop or a
  busy JupyterHub must reach the end of a notebook that works. Budgets are enforced by the test
  harness (``conftest.py``); a notebook calls :func:`drdd_edu.notebook.report_runtime`, which
  prints the time and warns when it is over budget.
* A notebook is one sitting (issue 15, pacing): at most :data:`MAX_LINES` lines of percent
  source, its graded exercises included (~700 lines of reading, plus some slack for them).
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

from drdd_edu.notebook import SlowNotebookWarning, report_runtime

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
MAX_LINES = 750
CLOCKS = {"perf_counter", "time", "monotonic", "process_time", "perf_counter_ns", "time_ns"}


def _reads_clock(node: ast.AST, tainted: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            if isinstance(f, ast.Attribute) and f.attr in CLOCKS:
                base = f.value
                if isinstance(base, ast.Name) and base.id in {"time", "timeit"}:
                    return True
        if isinstance(sub, ast.Name) and sub.id in tainted:
            return True
    return False


def wall_clock_asserts(source: str) -> list[str]:
    """Asserts in ``source`` whose condition depends on a clock reading (directly or through a
    variable assigned from one)."""
    tree = ast.parse(source)
    tainted: set[str] = set()
    changed = True
    while changed:  # names assigned from clock readings, transitively
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if _reads_clock(node.value, tainted):
                    for t in targets:
                        for name in ast.walk(t):
                            if isinstance(name, ast.Name) and name.id not in tainted:
                                tainted.add(name.id)
                                changed = True
    return [
        f"line {node.lineno}: {ast.get_source_segment(source, node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert) and _reads_clock(node.test, tainted)
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_never_asserts_its_wall_clock_time(path: Path):
    found = wall_clock_asserts(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name} asserts on wall-clock time; call report_runtime instead:\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize(
    "code, n",
    [
        (
            "import time\nSTART = time.perf_counter()\nelapsed = time.perf_counter() - START\nassert elapsed < 180",
            1,
        ),
        ("import time\nt0 = time.time()\nx = 3\ndt = t0 + 1\nassert dt < 5 and x", 1),
        ("import time\nassert time.monotonic() > 0", 1),
        (
            "import time\nSTART = time.perf_counter()\nreport_runtime(START, budget_s=180)\nassert 1 < 2",
            0,
        ),
    ],
)
def test_the_scan_finds_clock_asserts(code, n):
    assert len(wall_clock_asserts(code)) == n


def test_report_runtime_prints_and_warns_only_over_budget(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail here
        assert report_runtime(100.0, budget_s=60, now=150.0) == pytest.approx(50.0)
    assert "notebook ran in 50.0 s" in capsys.readouterr().out
    with pytest.warns(SlowNotebookWarning, match="over its 60 s budget"):
        assert report_runtime(0.0, budget_s=60, now=1026.0) == pytest.approx(1026.0)
    with pytest.raises(ValueError, match="budget_s"):
        report_runtime(0.0, budget_s=0)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_one_sitting(path: Path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.name} has {n} lines; split or trim it to <= {MAX_LINES}"
