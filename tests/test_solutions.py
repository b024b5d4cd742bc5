"""The instructor version: a worked solution for every ungraded exercise of every notebook
(``notebooks/solutions/``), appended by ``drdd-edu assignments build`` and by the test harness
(which therefore executes every solution under nbval)."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

from drdd_edu.assignments import build_all, read_notebook
from drdd_edu.course import notebook_sources
from drdd_edu.solutions import (
    INTRO,
    SolutionsError,
    check_solutions,
    exercise_numbers,
    instructor_notebook,
    read_solutions,
    solutions_path,
)

SOURCES = notebook_sources()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_ungraded_exercise_has_a_solution(source: Path) -> None:
    numbers = exercise_numbers(read_notebook(source))
    assert len(numbers) >= 3, f"{source.name}: expected at least three ungraded exercises"
    assert check_solutions(source) == []
    groups = read_solutions(solutions_path(source))
    assert sorted(groups) == numbers


def _notebook(tmp_path: Path, exercises: str, solutions: str | None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "99_demo.py"
    src.write_text(
        "# %% [markdown]\n# # Demo\n\n# %%\nx = 2\n\n"
        f"# %% [markdown]\n# ## Exercises\n#\n{exercises}\n#\n# ### Graded exercises\n"
        "#\n# 9. **Not ungraded.** (numbered, but after the graded heading)\n"
    )
    if solutions is not None:
        (tmp_path / "solutions").mkdir()
        solutions_path(src).write_text(solutions)
    return src


EXERCISES = "# 1. **One.** Square x.\n# 2. **Two.** Explain."
SOLUTIONS = (
    "# %% [markdown]\n# ### Solution 1 — one\n\n# %%\nassert x**2 == 4\n\n"
    "# %% [markdown]\n# ### Solution 2 — two\n#\n# Because x is two.\n"
)


def test_exercise_numbers_stop_at_the_graded_heading(tmp_path: Path) -> None:
    src = _notebook(tmp_path, EXERCISES, SOLUTIONS)
    assert exercise_numbers(read_notebook(src)) == [1, 2]


def test_instructor_notebook_appends_every_group_in_order(tmp_path: Path) -> None:
    src = _notebook(tmp_path, EXERCISES, SOLUTIONS)
    nb = read_notebook(src)
    out = instructor_notebook(nb, src)
    added = out.cells[len(nb.cells) :]
    assert added[0].source == INTRO
    assert [c.cell_type for c in added[1:]] == ["markdown", "code", "markdown"]
    assert added[2].source == "assert x**2 == 4"
    nbformat.validate(out)  # unique cell ids, valid structure
    assert len(nb.cells) + 4 == len(out.cells)  # the input notebook is not modified


@pytest.mark.parametrize(
    ("solutions", "problem"),
    [
        (SOLUTIONS.split("# %% [markdown]\n# ### Solution 2")[0], "exercise 2 has no solution"),
        (SOLUTIONS + "\n# %% [markdown]\n# ### Solution 3 — extra\n#\n# text\n", "answers no"),
        (
            "# %% [markdown]\n# ### Solution 1\n\n# %% [markdown]\n# ### Solution 2 — t\n#\n# a\n",
            "Solution 1 is empty",
        ),
    ],
)
def test_mismatched_solutions_are_named(tmp_path: Path, solutions: str, problem: str) -> None:
    src = _notebook(tmp_path, EXERCISES, solutions)
    problems = check_solutions(src)
    assert any(problem in p for p in problems), problems
    with pytest.raises(SolutionsError, match=problem):
        instructor_notebook(read_notebook(src), src)


def test_solutions_file_errors(tmp_path: Path) -> None:
    src = _notebook(tmp_path, EXERCISES, "# %%\nprint('orphan')\n" + SOLUTIONS)
    with pytest.raises(SolutionsError, match="before the first"):
        read_solutions(solutions_path(src))
    twice = _notebook(tmp_path / "b", EXERCISES, SOLUTIONS + SOLUTIONS)
    with pytest.raises(SolutionsError, match="Solution 1 appears twice"):
        read_solutions(solutions_path(twice))
    with pytest.raises(FileNotFoundError, match="solutions file not found"):
        read_solutions(tmp_path / "nowhere.py")
    misnumbered = _notebook(tmp_path / "c", "# 1. **A.** a\n# 3. **C.** c", None)
    assert any("not 1..2" in p for p in check_solutions(misnumbered))


def test_build_writes_instructor_versions(tmp_path: Path) -> None:
    written = build_all(tmp_path / "out", select=["09"])
    instructor = tmp_path / "out" / "instructor" / "09_data_efficiency.ipynb"
    assert instructor in written
    inst = nbformat.read(instructor, as_version=4)
    student = nbformat.read(tmp_path / "out" / "09_data_efficiency.ipynb", as_version=4)
    text = "\n".join(c.source for c in inst.cells)
    assert INTRO in text and "### Solution 1" in text
    assert "BEGIN SOLUTION" in text and "BEGIN HIDDEN TESTS" in text  # graded ones solved too
    student_text = "\n".join(c.source for c in student.cells)
    assert "### Solution 1" not in student_text and "BEGIN HIDDEN TESTS" not in student_text
    assert build_all(tmp_path / "none", select=["09"], instructor=False) == [
        tmp_path / "none" / "09_data_efficiency.ipynb"
    ]


def test_the_harness_executes_the_instructor_version() -> None:
    import importlib.util

    # the repository root's conftest (``import conftest`` may find tests/conftest.py instead)
    root = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("drdd_root_conftest", root)
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    source = next(p for p in SOURCES if p.stem.startswith("09"))
    conftest.convert_notebooks()
    converted = jupytext.read(source.with_suffix(".ipynb"))
    assert any(INTRO == c.source for c in converted.cells)
