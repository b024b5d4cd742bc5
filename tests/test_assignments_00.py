"""Graded exercises of notebook 00 (the on-ramp): structure, and two real grading runs.

Grading executes the whole notebook at smoke size (about 15 s on a free core): once as the
student version (every exercise test must fail, and only with ``NotImplementedError``) and once
with the solutions in place (full marks, hidden tests included).
"""

from __future__ import annotations

import pytest

from drdd_edu.assignments import build_student_version, grade, graded_cells, read_notebook
from drdd_edu.notebook import REPO_ROOT

SOURCE = REPO_ROOT / "notebooks" / "00_what_diffusion_does.py"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
KERNEL_ENV = {"DRDD_EDU_SMOKE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _ids(nb, *, test: bool) -> list[str]:
    return [g for g, c in graded_cells(nb).items() if bool(c.metadata["nbgrader"]["grade"]) == test]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return build_student_version(SOURCE, tmp_path_factory.mktemp("a00") / f"{SOURCE.stem}.ipynb")


def test_two_graded_exercises_with_hidden_tests():
    cells = graded_cells(read_notebook(SOURCE))
    tests, solutions = (
        _ids(read_notebook(SOURCE), test=True),
        _ids(read_notebook(SOURCE), test=False),
    )
    assert len(tests) == 2 and len(solutions) == 2, list(cells)
    assert all(g.startswith("ex00-") for g in cells)
    assert all("### BEGIN HIDDEN TESTS" in cells[g].source for g in tests)
    assert all("### BEGIN SOLUTION" in cells[g].source for g in solutions)
    assert sum(cells[g].metadata["nbgrader"]["points"] for g in tests) == 4


def test_student_version_drops_solutions_and_hidden_tests(student):
    assert not any(m in student.read_text(encoding="utf-8") for m in MARKERS)
    source, nb = read_notebook(SOURCE), read_notebook(student)
    stubbed = [
        c.metadata["nbgrader"]["grade_id"]
        for c in nb.cells
        if "nbgrader" in c.metadata and "raise NotImplementedError()" in c.source
    ]
    assert stubbed == _ids(source, test=False)
    # everything outside the exercises is unchanged
    plain = [c.source for c in source.cells if "nbgrader" not in c.metadata]
    assert [c.source for c in nb.cells if "nbgrader" not in c.metadata] == plain


@pytest.mark.slow
def test_student_version_fails_only_with_not_implemented(student):
    report = grade(student, SOURCE, env=KERNEL_ENV)
    assert report.execution_error is None
    failing = set()
    for index, cell in enumerate(report.notebook.cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"cell {index} did not run"
        for out in cell.outputs:
            if out.output_type == "error":
                assert out.ename == "NotImplementedError", (index, out.ename, out.evalue)
                failing.add(cell.metadata.get("nbgrader", {}).get("grade_id"))
    assert failing == set(_ids(report.notebook, test=True)), "only the exercise tests may fail"
    assert report.total == 0 and report.max_total == 4


@pytest.mark.slow
def test_solutions_earn_full_marks(tmp_path):
    import jupytext

    ipynb = tmp_path / f"{SOURCE.stem}.ipynb"
    jupytext.write(jupytext.read(SOURCE), ipynb, fmt="ipynb")
    report = grade(ipynb, SOURCE, env=KERNEL_ENV)
    assert report.total == report.max_total == 4, report.summary()
    cells = graded_cells(report.notebook)
    assert all("BEGIN HIDDEN TESTS" in cells[g].source for g in report.points)  # hidden tests ran
