"""Graded exercises of notebooks 09 (data efficiency) and 10 (AOSA): student versions build.

Building is cheap (no execution); grading these notebooks executes them (~30 s each at smoke
size), which the notebook tests already do, so here we check the structure only.
"""

from __future__ import annotations

import pytest
from exercise_checks import check_student_versions, check_two_graded_exercises

from drdd_edu.notebook import REPO_ROOT

SOURCES = {
    "09": REPO_ROOT / "notebooks" / "09_data_efficiency.py",
    "10": REPO_ROOT / "notebooks" / "10_which_objective_aosa.py",
}


@pytest.mark.parametrize("nn", sorted(SOURCES))
def test_two_graded_exercises_with_hidden_tests(nn):
    cells, tests, solutions = check_two_graded_exercises(nn, SOURCES[nn])


def test_student_versions_drop_solutions_and_hidden_tests(tmp_path):
    check_student_versions(tmp_path, SOURCES)
