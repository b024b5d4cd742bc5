"""Graded exercises of notebooks 09 (data efficiency) and 10 (AOSA): student versions build.

Building is cheap (no execution); grading these notebooks executes them (~30 s each at smoke
size), which the notebook tests already do, so here we check the structure only.
"""

from __future__ import annotations

import pytest
from exercise_checks import check_student_versions

from drdd_edu.assignments import graded_cells, read_notebook
from drdd_edu.notebook import REPO_ROOT

SOURCES = {
    "09": REPO_ROOT / "notebooks" / "09_data_efficiency.py",
    "10": REPO_ROOT / "notebooks" / "10_which_objective_aosa.py",
}


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
    check_student_versions(tmp_path, SOURCES)
