"""Graded exercises and pacing of notebooks 03 (schedules), 04 (degradations), 05 (noise).

Building is cheap (no execution); executing these notebooks takes 10-60 s each at smoke size,
which the notebook tests already do (with the solutions in place), so here we check the
structure only: two graded exercises with hidden tests per notebook, student versions without
markers that stub exactly the solution cells, exercises that nothing else in the notebook uses,
and the pacing elements (study time, "Predict, then run" prompts, "What you learned").
"""

from __future__ import annotations

import re

import pytest
from exercise_checks import check_student_versions, check_two_graded_exercises

from drdd_edu.assignments import graded_cells, read_notebook
from drdd_edu.notebook import REPO_ROOT

SOURCES = {
    "03": REPO_ROOT / "notebooks" / "03_schedules_paths.py",
    "04": REPO_ROOT / "notebooks" / "04_degradations_data.py",
    "05": REPO_ROOT / "notebooks" / "05_noise_harmonises.py",
}


@pytest.mark.parametrize("nn", sorted(SOURCES))
def test_two_graded_exercises_with_hidden_tests(nn):
    cells, tests, solutions = check_two_graded_exercises(nn, SOURCES[nn])
    assert tests == [f"{g}-test" for g in solutions]  # each test right after its solution
    # every hidden block swaps the re-implemented function for one that raises, and restores it
    for g in tests:
        hidden = cells[g].source.split("### BEGIN HIDDEN TESTS")[1]
        assert "must not call" in hidden and "finally:" in hidden, g


@pytest.mark.parametrize("nn", sorted(SOURCES))
def test_exercise_functions_are_used_only_by_their_tests(nn):
    """In the student version the solutions raise: nothing outside the exercises may call them."""
    nb = read_notebook(SOURCES[nn])
    cells = graded_cells(nb)
    names = [
        re.search(r"^def (\w+)\(", c.source, re.M).group(1)
        for c in cells.values()
        if c.metadata["nbgrader"]["solution"]
    ]
    assert len(names) == 2
    for cell in nb.cells:
        if cell.cell_type == "code" and "nbgrader" not in cell.metadata:
            assert not any(re.search(rf"\b{n}\b", cell.source) for n in names), cell.source[:80]


@pytest.mark.parametrize("nn", sorted(SOURCES))
def test_pacing(nn):
    nb = read_notebook(SOURCES[nn])
    intro = nb.cells[0].source
    for item in ("**Level:**", "**Study time:**", "**Learning goals.**", "**Runtime budget:**"):
        assert item in intro, item
    assert re.search(r"\*\*Study time:\*\* about \d+ minutes", intro)
    headings = [
        line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
    ]
    assert "# ## Summary" not in headings and "## Summary" not in headings
    learned = headings.index("## What you learned")
    assert learned < headings.index("## Exercises") < headings.index("### Graded exercises")
    # "Predict, then run" prompts stand in a markdown cell right before a code cell
    prompts = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "markdown" and "**Predict, then run.**" in c.source
    ]
    assert prompts and all(nb.cells[i + 1].cell_type == "code" for i in prompts)


def test_student_versions_drop_solutions_and_hidden_tests(tmp_path):
    check_student_versions(tmp_path, SOURCES)
