"""Graded exercises of notebooks 07 (training step by step) and 08 (DRDD decoupled): student
versions build.

Building is cheap (no execution); executing these notebooks takes tens of seconds each at smoke
size, which the notebook tests already do with the solutions in place (so every visible and hidden
test runs in CI), so here we check the structure only.
"""

from __future__ import annotations

import ast

import pytest
from exercise_checks import check_student_versions, check_two_graded_exercises

from drdd_edu.assignments import graded_cells, read_notebook
from drdd_edu.notebook import REPO_ROOT

SOURCES = {
    "07": REPO_ROOT / "notebooks" / "07_train_step_by_step.py",
    "08": REPO_ROOT / "notebooks" / "08_drdd_decoupled.py",
}
#: the function each exercise asks for, and the library functions it may not call
EXERCISES = {
    "07": {"my_training_loss": ("q_sample", "loss_on"), "my_ema_update": ("_ema_update",)},
    "08": {
        "my_residual_stage_sample": ("q_sample_residual_stage",),
        "my_sample_drdd": ("sample_drdd", "sample_drdd_iter"),
    },
}


@pytest.mark.parametrize("nn", sorted(SOURCES))
def test_two_graded_exercises_with_hidden_tests(nn):
    cells, tests, solutions = check_two_graded_exercises(nn, SOURCES[nn])


@pytest.mark.parametrize("nn", sorted(SOURCES))
def test_solutions_define_the_asked_functions_and_hidden_tests_forbid_the_library(nn):
    cells = graded_cells(read_notebook(SOURCES[nn]))
    solutions = [c.source for c in cells.values() if c.metadata["nbgrader"]["solution"]]
    tests = [c.source for c in cells.values() if c.metadata["nbgrader"]["grade"]]
    defined = [
        node.name
        for src in solutions
        for node in ast.parse(src).body
        if isinstance(node, ast.FunctionDef)
    ]
    assert defined == list(EXERCISES[nn]), defined
    for (name, forbidden), solution, test in zip(
        EXERCISES[nn].items(), solutions, tests, strict=True
    ):
        assert name in test
        hidden = test.split("### BEGIN HIDDEN TESTS", 1)[1]
        # the hidden part swaps the library function for a raising stub and restores it
        assert all(f in hidden for f in forbidden), (name, forbidden)
        assert "finally:" in hidden and "raise AssertionError" in hidden
        # ... and the reference solution itself does not call it
        called = {
            n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
            for n in ast.walk(ast.parse(solution))
            if isinstance(n, ast.Call)
        }
        assert not called & set(forbidden), (name, called & set(forbidden))


def test_student_versions_drop_solutions_and_hidden_tests(tmp_path):
    students = check_student_versions(tmp_path, SOURCES)
    for student in students.values():
        # the exercises are the last cells before the final report_runtime call
        graded_at = [i for i, c in enumerate(student.cells) if "nbgrader" in c.metadata]
        tail = [c.source for c in student.cells[graded_at[-1] + 1 :]]
        assert tail == ["report_runtime(START, budget_s=180)"], tail
