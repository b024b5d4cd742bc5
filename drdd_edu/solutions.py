"""Worked solutions of the notebooks' *ungraded* exercises, for the instructor version.

A notebook ``notebooks/NN_name.py`` lists its ungraded exercises as a numbered list under its
``## Exercises`` heading (``1. **Title.** …``), before ``### Graded exercises``. Their solutions
live in ``notebooks/solutions/NN_name.py``, a jupytext percent file whose cells form one group per
exercise: a markdown cell starting ``### Solution k — …`` followed by any number of markdown and
code cells. The code runs *after the notebook's last cell, in its namespace* (so it may use the
notebook's variables and its ``SMOKE`` switch), and asserts what the solution claims.

:func:`instructor_notebook` appends the groups to the notebook under ``## Solutions (instructor
version)``; ``drdd-edu assignments build`` writes that notebook to ``build/assignments/instructor``
and the test harness (``conftest.py``) executes the same notebook under nbval, so every solution
is run at smoke size in CI. :func:`check_solutions` says which exercises lack a solution.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

__all__ = [
    "SOLUTION_HEADING",
    "SolutionsError",
    "check_solutions",
    "exercise_numbers",
    "instructor_notebook",
    "read_solutions",
    "solutions_path",
]

#: the first line of a solution group's opening markdown cell: ``### Solution 3 — title``
SOLUTION_HEADING = re.compile(r"^###\s+Solution\s+(\d+)\b")
_EXERCISES = re.compile(r"^##\s+Exercises\s*$", re.MULTILINE)
_GRADED = re.compile(r"^###\s+Graded exercises", re.MULTILINE)
_ITEM = re.compile(r"^(\d+)\.\s+\*\*", re.MULTILINE)
INTRO = (
    "## Solutions (instructor version)\n\n"
    "Worked solutions of the ungraded exercises above (the graded ones are solved in place). "
    "Each code cell runs after the whole notebook, in its namespace, and asserts its answer."
)


class SolutionsError(ValueError):
    """A solutions file that does not match its notebook's exercises."""


def solutions_path(source: Path | str) -> Path:
    """``notebooks/solutions/NN_name.py`` for the notebook source ``notebooks/NN_name.py``."""
    source = Path(source)
    return source.parent / "solutions" / f"{source.stem}.py"


def exercise_numbers(nb) -> list[int]:  # noqa: ANN001 — an nbformat NotebookNode
    """The numbers of the ungraded exercises: the ``k. **…`` items of the markdown between
    ``## Exercises`` and ``### Graded exercises`` (or the notebook's end), in order."""
    numbers: list[int] = []
    inside = False
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        text = cell.source
        start = _EXERCISES.search(text)
        if start:
            inside, text = True, text[start.end() :]
        if not inside:
            continue
        stop = _GRADED.search(text)
        numbers += [int(m.group(1)) for m in _ITEM.finditer(text[: stop.start()] if stop else text)]
        if stop:
            break
    return numbers


def read_solutions(path: Path | str) -> dict[int, list]:
    """``{k: [cells]}`` of a solutions file, in file order.

    Raises:
        FileNotFoundError: no such file.
        SolutionsError: cells before the first ``### Solution k`` heading, or a number twice.
    """
    import jupytext

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"solutions file not found: {path}")
    nb = jupytext.read(path, fmt="py:percent")
    groups: dict[int, list] = {}
    current: list | None = None
    for index, cell in enumerate(nb.cells):
        heading = SOLUTION_HEADING.match(cell.source) if cell.cell_type == "markdown" else None
        if heading:
            k = int(heading.group(1))
            if k in groups:
                raise SolutionsError(f"{path}: Solution {k} appears twice (cell {index})")
            current = groups[k] = []
        elif current is None:
            if not cell.source.strip():
                continue
            raise SolutionsError(
                f"{path}: cell {index} comes before the first '### Solution k' heading"
            )
        current.append(cell)
    return groups


def check_solutions(source: Path | str) -> list[str]:
    """Problems of ``source``'s solutions file: exercises without a solution, solutions without an
    exercise, a solution with no content. Empty when every ungraded exercise is solved."""
    from .assignments import read_notebook

    source = Path(source)
    path = solutions_path(source)
    groups = read_solutions(path) if path.is_file() else None
    return _problems(source, read_notebook(source), groups)


def _problems(source: Path, nb, groups: dict[int, list] | None) -> list[str]:  # noqa: ANN001
    """:func:`check_solutions` for an already read notebook ``nb`` and its solution ``groups``
    (None: there is no solutions file)."""
    wanted = exercise_numbers(nb)
    path = solutions_path(source)
    problems = []
    if wanted != list(range(1, len(wanted) + 1)):
        problems.append(f"{source.name}: exercises are numbered {wanted}, not 1..{len(wanted)}")
    if groups is None:
        return problems + ([f"{source.name}: no solutions file {path}"] if wanted else [])
    problems += [f"{source.name}: exercise {k} has no solution" for k in wanted if k not in groups]
    problems += [
        f"{path.name}: Solution {k} answers no exercise of {source.name}"
        for k in groups
        if k not in wanted
    ]
    problems += [
        f"{path.name}: Solution {k} is empty"
        for k, cells in groups.items()
        if len(cells) == 1 and len(cells[0].source.strip().splitlines()) < 2
    ]
    return problems


def instructor_notebook(nb, source: Path | str):  # noqa: ANN001, ANN201
    """A copy of the notebook ``nb`` (read from ``source``) with its solutions file's groups
    appended under ``## Solutions (instructor version)``; ``nb`` itself when there is no file.

    Raises:
        SolutionsError: the solutions file does not match the notebook (:func:`check_solutions`).
    """
    import nbformat

    path = solutions_path(source)
    if not path.is_file():
        return nb
    groups = read_solutions(path)
    problems = _problems(Path(source), nb, groups)
    if problems:
        raise SolutionsError("; ".join(problems))
    out = copy.deepcopy(nb)
    out.cells.append(nbformat.v4.new_markdown_cell(INTRO))
    for cells in groups.values():
        for cell in cells:
            make = (
                nbformat.v4.new_code_cell
                if cell.cell_type == "code"
                else nbformat.v4.new_markdown_cell
            )
            out.cells.append(make(cell.source, metadata=copy.deepcopy(dict(cell.metadata))))
    return out
