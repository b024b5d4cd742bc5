"""Test harness for the notebooks (pytest root conftest).

Notebooks live in ``notebooks/`` as jupytext percent ``.py`` files. Before collection this
file converts each to a (git-ignored) ``.ipynb`` beside it — the instructor version, with the
worked solutions of ``notebooks/solutions/NN_name.py`` appended — which nbval then executes
(``--nbval-lax``: a cell fails only by raising, so every claim is an ``assert``). It also

* sets ``DRDD_EDU_SMOKE=1`` so notebooks run at their CI size (export ``DRDD_EDU_SMOKE=0``
  to run them at full size under pytest), and sends their figures to
  ``test-artifacts/figures`` instead of the committed ``figures/``;
* enforces each notebook's runtime budget: the ``budget_s`` in its ``drdd_edu`` metadata
  (jupytext header). A notebook that runs longer fails the session, and the measured
  times are written to ``test-artifacts/notebook_times.json``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts"
DEFAULT_BUDGET_S = 180.0

_times: dict[str, float] = defaultdict(float)
_budgets: dict[str, float] = {}


def _sources() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def convert_notebooks() -> dict[str, float]:
    """Write ``notebooks/NN_name.ipynb`` for every percent source; return {ipynb name: budget_s}."""
    import jupytext

    from drdd_edu.solutions import instructor_notebook

    budgets = {}
    for src in _sources():
        # the instructor version: the notebook, then the worked solutions of its ungraded
        # exercises (notebooks/solutions/), so that CI executes every solution too
        nb = instructor_notebook(jupytext.read(src), src)
        meta = nb.metadata.get("drdd_edu", {})
        budgets[src.with_suffix(".ipynb").name] = float(meta.get("budget_s", DEFAULT_BUDGET_S))
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        target = src.with_suffix(".ipynb")
        text = jupytext.writes(nb, fmt="ipynb")
        if (
            not target.exists() or target.read_text() != text
        ):  # rewrite only when the source changed
            target.write_text(text)
    return budgets


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("DRDD_EDU_SMOKE", "1")
    os.environ.setdefault("DRDD_EDU_FIGURES", str(ARTIFACTS / "figures"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    # pytest-xdist runs 2 workers on 2 cores: one thread each (test processes and notebook
    # kernels) avoids oversubscription, which slows small-tensor torch work 10-20x
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if config.pluginmanager.hasplugin("nbval") and config.getoption("nbval_lax", default=False):
        _budgets.update(convert_notebooks())


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # only notebooks generated from a percent source are tests
    if collection_path.suffix == ".ipynb" and collection_path.parent == NOTEBOOKS:
        return not collection_path.with_suffix(".py").exists()
    return None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _times[Path(path).name] += report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _times or hasattr(session.config, "workerinput"):  # xdist workers: the controller reports
        return
    ARTIFACTS.mkdir(exist_ok=True)
    rows = {
        name: {"seconds": round(sec, 1), "budget_s": _budgets.get(name, DEFAULT_BUDGET_S)}
        for name, sec in sorted(_times.items())
    }
    (ARTIFACTS / "notebook_times.json").write_text(json.dumps(rows, indent=2) + "\n")
    over = {n: r for n, r in rows.items() if r["seconds"] > r["budget_s"]}
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("-", "notebook runtimes (budget)")
        for name, r in rows.items():
            reporter.write_line(f"{name}: {r['seconds']:.1f} s (budget {r['budget_s']:.0f} s)")
    if over:
        if reporter is not None:
            reporter.write_line(f"notebooks over their runtime budget: {', '.join(over)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
