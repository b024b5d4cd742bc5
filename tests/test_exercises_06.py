"""Graded exercises and pacing of notebook 06 (how much noise).

The structural checks are those of notebooks 03-05 (:mod:`tests.test_exercises_03_04_05`), run
on notebook 06's source: two graded exercises with hidden tests, student versions that stub
exactly the solution cells, exercise functions used only by their tests, and the pacing elements.
Executing 06 takes 1-2 min at smoke size (the notebook test does it, with the solutions in place),
so here the two solutions are executed on their own, against the library functions they
re-implement, and the student stubs are checked to raise ``NotImplementedError``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import tests.test_exercises_03_04_05 as shared
from drdd_edu.assignments import graded_cells, read_notebook, student_notebook
from drdd_edu.notebook import REPO_ROOT
from drdd_edu.theory import mmd2_minimiser, objective_from_curves

SOURCE = REPO_ROOT / "notebooks" / "06_how_much_noise.py"


@pytest.fixture
def only_06(monkeypatch):
    monkeypatch.setattr(shared, "SOURCES", {"06": SOURCE})


def test_two_graded_exercises_with_hidden_tests(only_06):
    shared.test_two_graded_exercises_with_hidden_tests("06")


def test_exercise_functions_are_used_only_by_their_tests(only_06):
    shared.test_exercise_functions_are_used_only_by_their_tests("06")


def test_pacing(only_06):
    shared.test_pacing("06")


def test_student_version_drops_solutions_and_hidden_tests(only_06, tmp_path):
    shared.test_student_versions_drop_solutions_and_hidden_tests(tmp_path)


def _functions(nb) -> dict:  # noqa: ANN001 — an nbformat notebook
    """The exercise functions of ``nb``'s solution cells, defined in a fresh namespace."""
    namespace: dict = {"np": np}
    for cell in graded_cells(nb).values():
        if cell.metadata["nbgrader"]["solution"]:
            exec(compile(cell.source, str(SOURCE), "exec"), namespace)  # noqa: S102
    return namespace


def test_hidden_tests_guard_the_reimplemented_functions():
    cells = graded_cells(read_notebook(SOURCE))
    hidden = {
        g: c.source.split("### BEGIN HIDDEN TESTS")[1]
        for g, c in cells.items()
        if c.metadata["nbgrader"]["grade"]
    }
    assert "objective_from_curves" in hidden["ex06-objective-test"]
    assert "minmax" in hidden["ex06-objective-test"]
    assert "mmd2_minimiser" in hidden["ex06-model-sigma-star-test"]
    assert "model_star" in hidden["ex06-model-sigma-star-test"]


def test_solutions_match_the_library():
    f = _functions(read_notebook(SOURCE))
    rng = np.random.default_rng(0)
    sigmas = np.round(np.arange(0.0, 2.0 + 1e-9, 0.1), 2)
    for lam in (0.0, 0.25, 0.5, 1.0):
        A, B = np.sort(rng.random(sigmas.size))[::-1], np.sort(rng.random(sigmas.size))
        J, star = f["my_objective"](sigmas, A, B, lam)
        ref = objective_from_curves(sigmas, A, B, lam)
        assert np.allclose(J, ref.J, rtol=0, atol=1e-12) and abs(star - ref.sigma_star) < 1e-12
        u = np.linspace(1.0, 0.15, sigmas.size) ** 1.5
        u_star, s_star = f["my_model_sigma_star"](sigmas, u, lam)
        assert abs(u_star - mmd2_minimiser(float(u[-1]), lam)) < 1e-12
        assert abs(np.interp(-u_star, -u, sigmas) - s_star) < 1e-12
    with pytest.raises(ValueError, match="lam"):
        f["my_objective"](sigmas, sigmas, sigmas, 1.2)
    with pytest.raises(ValueError, match="fall strictly"):
        f["my_model_sigma_star"](sigmas, sigmas, 0.5)


def test_student_stubs_raise_not_implemented():
    f = _functions(student_notebook(read_notebook(SOURCE)))
    with pytest.raises(NotImplementedError):
        f["my_objective"]([0.0, 1.0], [1.0, 0.0], [0.0, 1.0], 0.5)
    with pytest.raises(NotImplementedError):
        f["my_model_sigma_star"]([0.0, 1.0], [1.0, 0.5], 0.5)


def test_readme_lists_the_exercises():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Assignments (for instructors)")[1]
    row = next(line for line in section.splitlines() if re.match(r"\| 06 \|", line))
    assert "`my_objective`" in row and "`my_model_sigma_star`" in row and "2 + 2" in row
