"""Course assignments: student versions and autograding from the notebooks' single source.

Exercises live in the jupytext percent sources (``notebooks/NN_*.py``) with nbgrader's own
conventions, so the same files work with this module and with nbgrader itself:

* a **solution cell** carries ``nbgrader={"grade": false, "solution": true, "grade_id": ...}`` on
  its ``# %%`` line; the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` is the
  solution (a solution cell without markers is a solution as a whole);
* a **test cell** carries ``nbgrader={"grade": true, "solution": false, "points": P, ...}``; its
  asserts are the visible tests, and lines between ``### BEGIN HIDDEN TESTS`` and
  ``### END HIDDEN TESTS`` are hidden tests.

:func:`build_student_version` replaces each solution by ``raise NotImplementedError()`` (at the
marker's indentation), removes the hidden tests and the outputs, and keeps the nbgrader metadata.
:func:`grade` restores every test cell of a submission from the instructor source (visible and
hidden tests, matched by ``grade_id``), executes the notebook in an isolated kernel (optionally
under bubblewrap), continuing past errors, and awards a test cell's points when it runs to its end
through a guard that student code cannot switch off with Python's or IPython's hooks — see
:mod:`drdd_edu.grading` for how, and for what it does not protect against.
:func:`grade_many` grades a batch (optionally in parallel); :mod:`drdd_edu.grading.reports` writes
the grades as CSV and each student's feedback as HTML.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AssignmentError",
    "CellGrade",
    "GradeReport",
    "build_all",
    "build_student_version",
    "grade",
    "grade_many",
    "graded_cells",
    "infer_source",
    "read_notebook",
    "student_notebook",
]

BEGIN_SOLUTION = re.compile(r"^(\s*)#+\s*BEGIN SOLUTION\s*$")
END_SOLUTION = re.compile(r"^\s*#+\s*END SOLUTION\s*$")
BEGIN_HIDDEN = re.compile(r"^\s*#+\s*BEGIN HIDDEN TESTS\s*$")
END_HIDDEN = re.compile(r"^\s*#+\s*END HIDDEN TESTS\s*$")
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = "YOUR ANSWER HERE"
NOTEBOOK_FORMATS = {".ipynb": "ipynb", ".py": "py:percent"}


class AssignmentError(ValueError):
    """A notebook that cannot be built or graded: bad markers, mismatched grade_ids, corrupt file."""


# ----------------------------------------------------------------------------- reading


def read_notebook(path: Path | str):  # noqa: ANN201 — an nbformat NotebookNode
    """Read a ``.ipynb`` (nbformat) or a jupytext percent ``.py`` notebook.

    Raises:
        FileNotFoundError: no such file.
        AssignmentError: an unsupported suffix, or a file that is not a valid notebook.
    """
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    if path.suffix not in NOTEBOOK_FORMATS:
        raise AssignmentError(f"{path}: expected a .ipynb or a jupytext percent .py notebook")
    try:
        if path.suffix == ".py":
            import jupytext

            nb = jupytext.read(path, fmt="py:percent")
        else:
            nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except AssignmentError:
        raise
    except Exception as err:  # nbformat/jupytext raise many types for a damaged file
        raise AssignmentError(
            f"{path} is not a valid notebook ({type(err).__name__}: {err})"
        ) from err
    return nb


def _nbgrader(cell) -> dict:  # noqa: ANN001
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _is_test_cell(cell) -> bool:  # noqa: ANN001
    meta = _nbgrader(cell)
    return bool(meta.get("grade")) and not meta.get("solution")


def graded_cells(nb) -> dict:  # noqa: ANN001
    """``{grade_id: cell}`` for every cell with nbgrader metadata and a ``grade_id``, in order.

    Raises:
        AssignmentError: a duplicated ``grade_id``, or a graded cell without ``points``.
    """
    cells: dict = {}
    for index, cell in enumerate(nb.cells):
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id")
        if not grade_id:
            continue
        if grade_id in cells:
            raise AssignmentError(f"grade_id {grade_id!r} appears twice (cell {index})")
        if meta.get("grade") and "points" not in meta:
            raise AssignmentError(f"graded cell {grade_id!r} (cell {index}) has no 'points'")
        cells[grade_id] = cell
    return cells


# ----------------------------------------------------------------------------- student version


def _strip_region(lines: list[str], begin, end, what: str, where: str, stub):  # noqa: ANN001, ANN202
    """Remove every begin/end region from lines; ``stub(indent)`` gives its replacement lines."""
    out, inside, indent, found = [], False, "", False
    for number, line in enumerate(lines, 1):
        if begin.match(line):
            if inside:
                raise AssignmentError(f"{where}: nested BEGIN {what} at line {number}")
            inside, found = True, True
            indent = line[: len(line) - len(line.lstrip())]
        elif end.match(line):
            if not inside:
                raise AssignmentError(f"{where}: END {what} without BEGIN at line {number}")
            inside = False
            out.extend(stub(indent))
        elif not inside:
            out.append(line)
    if inside:
        raise AssignmentError(f"{where}: BEGIN {what} without END {what}")
    return out, found


def _student_source(cell, where: str) -> str:  # noqa: ANN001
    source = cell.source
    lines = source.split("\n")
    if cell.cell_type == "code":
        code_stub = lambda indent: [indent + s for s in CODE_STUB]  # noqa: E731
    else:
        code_stub = lambda indent: [indent + MARKDOWN_STUB]  # noqa: E731
    lines, found = _strip_region(lines, BEGIN_SOLUTION, END_SOLUTION, "SOLUTION", where, code_stub)
    if not found and _nbgrader(cell).get("solution"):
        # a solution cell without markers is a solution as a whole (nbgrader's rule)
        lines = code_stub("") if cell.cell_type == "code" else [MARKDOWN_STUB]
    lines, _ = _strip_region(lines, BEGIN_HIDDEN, END_HIDDEN, "HIDDEN TESTS", where, lambda i: [])
    while lines and not lines[-1].strip():  # drop the blank lines a removed block leaves at the end
        lines.pop()
    return "\n".join(lines)


def student_notebook(nb):  # noqa: ANN001, ANN201
    """A copy of ``nb`` with solutions replaced by stubs, hidden tests and outputs removed."""
    student = copy.deepcopy(nb)
    graded_cells(student)  # validate grade_ids early
    for index, cell in enumerate(student.cells):
        if cell.cell_type not in ("code", "markdown"):
            continue
        grade_id = _nbgrader(cell).get("grade_id")
        where = f"cell {index}" + (f" ({grade_id})" if grade_id else "")
        cell.source = _student_source(cell, where)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return student


def _write_notebook(nb, out: Path) -> None:  # noqa: ANN001
    import jupytext

    if out.suffix not in NOTEBOOK_FORMATS:
        raise AssignmentError(f"{out}: the student version must be a .ipynb or a .py file")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".ipynb":
        nb = copy.deepcopy(nb)
        # no jupytext pairing in a handout: opened with jupytext installed, it would write a .py beside
        nb.metadata.pop("jupytext", None)
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
    jupytext.write(nb, out, fmt=NOTEBOOK_FORMATS[out.suffix])


def build_student_version(source: Path | str, out: Path | str) -> Path:
    """Write the student version of ``source`` to ``out`` (``.ipynb`` or percent ``.py``).

    If ``out`` is an existing folder, the file is ``out/<source stem>.ipynb``. Returns the path.

    Raises:
        FileNotFoundError, AssignmentError: see :func:`read_notebook`; unbalanced markers.
    """
    source, out = Path(source), Path(out)
    if out.is_dir():
        out = out / f"{source.stem}.ipynb"
    _write_notebook(student_notebook(read_notebook(source)), out)
    return out


def build_all(
    out_dir: Path | str = "build/assignments",
    select: Sequence[str] | None = None,
    notebook_dir: Path | str | None = None,
    formats: Sequence[str] = ("ipynb",),
    instructor: bool = True,
) -> list[Path]:
    """Write student versions of every notebook source that has graded cells, and (unless
    ``instructor`` is False) the instructor version ``out_dir/instructor/NN_name.ipynb``: the
    whole notebook with the graded solutions and hidden tests, followed by the worked solutions
    of its ungraded exercises (:func:`drdd_edu.solutions.instructor_notebook`).

    Args:
        out_dir: the folder for ``NN_name.ipynb`` (and ``NN_name.py`` if ``"py"`` in formats);
            a student's returned file keeps that name, so :func:`grade` can find its source.
        select: notebook prefixes such as ``["01", "02"]``; all when None.
        notebook_dir: where the sources are (default: the repository's ``notebooks/``).
        formats: any of ``"ipynb"``, ``"py"`` (the student versions; instructor: ``.ipynb``).
        instructor: also write the instructor versions.
    Returns:
        the paths written (empty if no selected notebook has graded cells).
    """
    from .course import notebook_sources
    from .solutions import instructor_notebook

    unknown = set(formats) - {"ipynb", "py"}
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; use 'ipynb' and/or 'py'")
    out = Path(out_dir)
    written = []
    for src in notebook_sources(Path(notebook_dir) if notebook_dir else None, list(select or [])):
        nb = read_notebook(src)
        if not any(_is_test_cell(c) for c in graded_cells(nb).values()):
            continue
        student = student_notebook(nb)
        for fmt in formats:
            target = out / f"{src.stem}.{fmt}"
            _write_notebook(student, target)
            written.append(target)
        if instructor:
            target = out / "instructor" / f"{src.stem}.ipynb"
            _write_notebook(instructor_notebook(nb, src), target)
            written.append(target)
    return written


# ----------------------------------------------------------------------------- grading

DEFAULT_MEMORY_MB = 4096


@dataclass
class CellGrade:
    """The outcome of one graded cell."""

    grade_id: str
    points: float
    max_points: float
    status: str  # "passed", "failed", "not run", or "manual" (a graded answer cell)
    error: str | None = None  # "ename: evalue" of the failure


@dataclass
class GradeReport:
    """Points per ``grade_id`` for one submission, and the executed notebook.

    ``failure`` says why grading stopped early — ``"timeout"``, ``"dead kernel"``,
    ``"no kernel"``, ``"malformed"`` (the submission could not be read or matched) — or is None;
    ``execution_error`` is its one-line explanation. ``isolation`` is ``"sandbox"`` (bubblewrap)
    or ``"none"``; ``notes`` list what was repaired in the submission (restored test cells, ignored
    cells); ``review`` lists the student's cells that use tools no exercise needs (IPython's shell,
    frames, ``gc``, ``exec``, processes, ...): they do not change the grade, they say where to look.
    """

    submission: Path
    source: Path | None
    cells: list[CellGrade]
    execution_error: str | None = None
    notebook: object = field(default=None, repr=False)  # the executed nbformat NotebookNode
    isolation: str = "none"
    notes: list[str] = field(default_factory=list)
    failure: str | None = None
    review: list[str] = field(default_factory=list)  # student cells to read (grading.review)

    @property
    def points(self) -> dict[str, float]:
        return {c.grade_id: c.points for c in self.cells}

    @property
    def total(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_total(self) -> float:
        return sum(c.max_points for c in self.cells)

    @property
    def status(self) -> str:
        """``"graded"`` or the failure mode."""
        return self.failure or "graded"

    def line(self) -> str:
        """One line: the file, the total, and the failure or notes, if any."""
        text = f"{self.submission}: {self.total:g} / {self.max_total:g}"
        if self.execution_error:
            text += f" — {self.execution_error}"
        elif self.notes:
            text += " — " + "; ".join(self.notes)
        return text

    def summary(self) -> str:
        """A printable table: one line per graded cell, then the total."""
        width = max([len(c.grade_id) for c in self.cells] + [5])
        where = f"graded against {self.source}" if self.source else "not graded"
        lines = [f"{self.submission.name} ({where}; isolation: {self.isolation})"]
        for c in self.cells:
            note = c.status + (f" — {c.error}" if c.error else "")
            lines.append(f"  {c.grade_id:<{width}}  {c.points:g} / {c.max_points:g}  {note}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        for flag in self.review:
            lines.append(f"  review: {flag}")
        if self.execution_error:
            lines.append(f"  execution stopped: {self.execution_error}")
        lines.append(f"  {'total':<{width}}  {self.total:g} / {self.max_total:g}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "submission": str(self.submission),
            "source": str(self.source) if self.source else None,
            "total": self.total,
            "max_total": self.max_total,
            "status": self.status,
            "cells": [c.__dict__.copy() for c in self.cells],
            "execution_error": self.execution_error,
            "isolation": self.isolation,
            "notes": list(self.notes),
            "review": list(self.review),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def infer_source(submission: Path | str, notebook_dir: Path | str | None = None) -> Path:
    """The instructor source for a submission, from its file name.

    A source ``NN_name.py`` matches a submission whose name contains ``NN_name`` (e.g.
    ``01_forward_processes.ipynb``, ``alice_01_forward_processes.ipynb``), else one whose name
    starts with ``NN_``.

    Raises:
        AssignmentError: no source, or more than one, matches.
    """
    from .course import notebook_sources

    stem = Path(submission).stem
    sources = notebook_sources(Path(notebook_dir) if notebook_dir else None)
    matches = [s for s in sources if s.stem in stem]
    if not matches:
        prefix = re.match(r"(\d\d)_", stem)
        matches = [s for s in sources if prefix and s.name.startswith(prefix.group(0))]
    if len(matches) != 1:
        found = "no" if not matches else f"{len(matches)} ({', '.join(s.name for s in matches)})"
        raise AssignmentError(
            f"cannot tell the source notebook of {Path(submission).name}: {found} source in "
            f"{sources[0].parent if sources else notebook_dir} matches its name; pass it explicitly"
        )
    return matches[0]


def _merge_tests(submission_nb, source_nb, submission: Path, source: Path) -> list[str]:  # noqa: ANN001
    """Put the instructor's test cells (visible and hidden tests) into the submission.

    Test cells the student deleted are put back after the exercise they follow; cells with
    ``grade_id`` s the source does not have are not graded. Returns notes on these repairs.

    Raises:
        AssignmentError: the source has no test cells; no ``grade_id`` in common (the wrong
            notebook); a ``grade_id`` twice; a cell whose kind differs from the source's.
    """
    src_cells = graded_cells(source_nb)
    try:
        sub_cells = graded_cells(submission_nb)
    except AssignmentError as err:
        raise AssignmentError(f"{submission.name}: {err}") from err
    if not any(_is_test_cell(c) for c in src_cells.values()):
        raise AssignmentError(f"{source} has no graded test cells: nothing to grade")
    missing = [g for g in src_cells if g not in sub_cells]
    extra = [g for g in sub_cells if g not in src_cells]
    if len(missing) == len(src_cells):
        parts = [f"missing {missing}", f"unknown {extra}" if extra else ""]
        raise AssignmentError(
            f"{submission.name} does not match {source.name}: grade_ids "
            + ", ".join(p for p in parts if p)
            + " (is it the right notebook?)"
        )
    notes = []
    for grade_id in extra:
        del sub_cells[grade_id].metadata["nbgrader"]
    if extra:
        notes.append(f"cells with unknown grade_ids {extra} were not graded")
    for grade_id, src_cell in src_cells.items():
        sub_cell = sub_cells.get(grade_id)
        if sub_cell is None:
            continue
        if sub_cell.cell_type != src_cell.cell_type or _is_test_cell(sub_cell) != _is_test_cell(
            src_cell
        ):
            raise AssignmentError(
                f"{submission.name}: cell {grade_id!r} is not the same kind of cell as in {source.name}"
            )
        if _is_test_cell(src_cell):
            sub_cell.source = src_cell.source
            sub_cell.metadata["nbgrader"] = dict(_nbgrader(src_cell))
            sub_cell.outputs = []
    previous = None
    for grade_id, src_cell in src_cells.items():
        if grade_id in missing:
            if _is_test_cell(src_cell):
                position = len(submission_nb.cells)
                if previous is not None:
                    position = submission_nb.cells.index(previous) + 1
                cell = copy.deepcopy(src_cell)
                cell.outputs, cell.execution_count = [], None
                submission_nb.cells.insert(position, cell)
                previous = cell
                notes.append(f"the deleted test cell {grade_id!r} was put back")
            else:
                notes.append(f"cell {grade_id!r} is missing (its tests cannot pass)")
        else:
            previous = sub_cells[grade_id]
    return notes


def _first_error(cell) -> str | None:  # noqa: ANN001
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            evalue = str(output.get("evalue", "")).strip().splitlines()
            return f"{output.get('ename', 'Error')}: {evalue[0] if evalue else ''}".rstrip(": ")
    return None


def _source_cells(source_nb) -> list[CellGrade]:  # noqa: ANN001
    """Every graded cell of the source with 0 points and status "not run"."""
    return [
        CellGrade(g, 0.0, float(_nbgrader(c).get("points", 0)), "not run")
        for g, c in graded_cells(source_nb).items()
        if _nbgrader(c).get("grade")
    ]


def grade(
    submission: Path | str,
    source: Path | str | None = None,
    *,
    smoke: bool = True,
    timeout_s: float = 600,
    total_timeout_s: float | None = None,
    sandbox: bool | None = None,
    memory_mb: int | None = DEFAULT_MEMORY_MB,
    env: dict[str, str] | None = None,
    notebook_dir: Path | str | None = None,
) -> GradeReport:
    """Grade a submitted notebook against its instructor source.

    The submission's test cells are replaced by the source's (visible and hidden tests, matched by
    ``grade_id``, points from the source); the notebook runs in a fresh kernel in a temporary
    folder outside the repository, continuing past errors; each test cell earns its ``points``
    if it runs to its end through the guard (see :mod:`drdd_edu.grading`).

    Args:
        submission: the student's ``.ipynb`` (or percent ``.py``).
        source: the instructor notebook; inferred from the submission's name when None.
        smoke: run the notebook at its CI size (``DRDD_EDU_SMOKE=1``), the default.
        timeout_s: per-cell limit; a cell running longer is interrupted, and if it does not stop,
            its whole process tree is killed (the cells after it do not run).
        total_timeout_s: limit for the whole notebook (None: no limit beyond the per-cell one).
        sandbox: run the kernel under bubblewrap; None (default): when bubblewrap works here,
            else with a :class:`GradingNotIsolatedWarning`. True without bubblewrap raises
            :class:`~drdd_edu.grading.isolation.SandboxUnavailable`.
        memory_mb: address-space limit for each process of the kernel (None: none).
        env: extra environment variables for the kernel (its environment is otherwise built from
            scratch). Figures go to the run's temporary folder.
        notebook_dir: where to look for the source when it is inferred.
    Raises:
        FileNotFoundError: a missing file. AssignmentError: a corrupt notebook, a notebook that is
        not the source's, a source without graded cells.
    """
    from .grading import choose_sandbox, run_submission
    from .grading.guard import import_statements, imported_names
    from .grading.review import review_flags

    submission = Path(submission)
    if not submission.is_file():
        raise FileNotFoundError(f"submission not found: {submission}")
    source = Path(source) if source else infer_source(submission, notebook_dir)
    source_nb, nb = read_notebook(source), read_notebook(submission)
    notes = _merge_tests(nb, source_nb, submission, source)
    use_sandbox = choose_sandbox(sandbox)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }

    cells = graded_cells(nb)
    index_of = {id(c): i for i, c in enumerate(nb.cells)}
    grade_ids = {index_of[id(c)]: g for g, c in cells.items()}
    test_cells = {index_of[id(c)] for c in cells.values() if _is_test_cell(c)}
    instructor_code = [
        c.source
        for c in source_nb.cells
        if c.cell_type == "code" and (not _nbgrader(c).get("solution"))
    ]
    known = {c.source for c in source_nb.cells} | {
        c.source for c in student_notebook(source_nb).cells
    }
    written = [
        (i, c.source)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and i not in test_cells and c.source not in known
    ]
    kernel_env = {"DRDD_EDU_SMOKE": "1" if smoke else "0", **(env or {})}
    outcome = run_submission(
        nb,
        test_cells,
        instructor_code,
        env=kernel_env,
        sandbox=use_sandbox,
        timeout_s=timeout_s,
        total_timeout_s=total_timeout_s,
        memory_mb=memory_mb,
        grade_ids=grade_ids,
    )

    results = []
    for grade_id, src_cell in graded_cells(source_nb).items():
        meta = _nbgrader(src_cell)
        if not meta.get("grade"):
            continue
        max_points = float(meta.get("points", 0))
        if meta.get("solution"):  # a graded answer: nbgrader's manual grading
            results.append(CellGrade(grade_id, 0.0, max_points, "manual"))
            continue
        verdict = outcome.tests.get(index_of.get(id(cells.get(grade_id)), -1))
        if verdict is None:
            results.append(CellGrade(grade_id, 0.0, max_points, "not run", outcome.execution_error))
        elif verdict.passed:
            results.append(CellGrade(grade_id, max_points, max_points, "passed"))
        else:
            results.append(CellGrade(grade_id, 0.0, max_points, "failed", verdict.error))
    return GradeReport(
        submission,
        source,
        results,
        outcome.execution_error,
        nb,
        isolation="sandbox" if use_sandbox else "none",
        notes=notes,
        failure=outcome.failure,
        review=review_flags(written, imported_names(import_statements(instructor_code)[0])),
    )


def grade_many(
    submissions: Sequence[Path | str],
    source: Path | str | None = None,
    *,
    workers: int = 1,
    sandbox: bool | None = None,
    notebook_dir: Path | str | None = None,
    progress: bool = True,
    **kwargs,  # noqa: ANN003 — as for grade()
) -> list[GradeReport]:
    """Grade many submissions, ``workers`` at a time; one report per submission, in order.

    A submission that cannot be graded (missing, corrupt, the wrong notebook) gets a report with
    ``failure="malformed"``, 0 points and the reason, instead of stopping the batch.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from .grading import choose_sandbox

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    use_sandbox = choose_sandbox(sandbox)  # decided (and warned about) once for the batch

    def one(path: Path | str) -> GradeReport:
        path = Path(path)
        try:
            return grade(path, source, sandbox=use_sandbox, notebook_dir=notebook_dir, **kwargs)
        except (AssignmentError, FileNotFoundError) as err:
            src, cells = None, []
            try:
                src = Path(source) if source else infer_source(path, notebook_dir)
                cells = _source_cells(read_notebook(src))
            except (AssignmentError, FileNotFoundError):
                pass
            return GradeReport(
                path,
                src,
                cells,
                f"malformed: {err}",
                isolation="sandbox" if use_sandbox else "none",
                failure="malformed",
            )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, s) for s in submissions]
        bar = tqdm(
            futures, desc="grading", unit="notebook", disable=not progress or len(futures) < 2
        )
        return [f.result() for f in bar]
