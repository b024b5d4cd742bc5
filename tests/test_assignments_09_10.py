"""Graded exercises of notebooks 09 (data efficiency) and 10 (AOSA): student versions build.

Building is cheap (no execution); grading these notebooks executes them (~30 s each at smoke
size), which the notebook tests already do, so here we check the structure only.
"""

from __future__ import annotations

import pytest

from drdd_edu.assignments import build_all, graded_cells, read_notebook
from drdd_edu.notebook import REPO_ROOT

SOURCES = {
    "09": REPO_ROOT / "notebooks" / "09_data_efficiency.py",
    "10": REPO_ROOT / "notebooks" / "10_which_objective_aosa.py",
}
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


@pytest.mark.parametrize("nn", sorted(SOURCES))
def test_two_graded_exercises_with_hidden_tests(nn):
    cells = graded_cells(read_notebook(SOURCES[nn]))
    tests = [g for g, c in cells.items() if c.metadata["nbgrader"]["grade"]]
    solutions = [g for g, c in cells.items() if c.metadata["nbgrader"]["solution"]]
    assert len(tests) == 2 and len(solutions) == 2, list(cells)
    assert all(g.startswith(f"ex{nn}-") for g in cells)
    assert all("### BEGIN HIDDEN TESTS" in cells[g].source for g in tests)
    assert all("### BEGIN SOLUTION" in cells[g].source for g in solutions)
    assert sum(cells[g].metadata["nbgrader"]["points"] for g in tests) == 4


def test_student_versions_drop_solutions_and_hidden_tests(tmp_path):
    paths = build_all(tmp_path, select=sorted(SOURCES), formats=("ipynb", "py"))
    assert sorted(p.name for p in paths) == sorted(
        f"{src.stem}.{fmt}" for src in SOURCES.values() for fmt in ("ipynb", "py")
    )
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert not any(m in text for m in MARKERS), path
        student = read_notebook(path)
        source = read_notebook(SOURCES[path.name[:2]])
        stubbed = [
            c.metadata["nbgrader"]["grade_id"]
            for c in student.cells
            if "nbgrader" in c.metadata and "raise NotImplementedError()" in c.source
        ]
        solutions = [
            g for g, c in graded_cells(source).items() if c.metadata["nbgrader"]["solution"]
        ]
        assert stubbed == solutions
        # everything outside the exercises is unchanged
        plain = [c.source for c in source.cells if "nbgrader" not in c.metadata]
        assert [c.source for c in student.cells if "nbgrader" not in c.metadata] == plain
