"""Grades as a CSV (one row per student, a column per graded cell) and HTML feedback per student.

The feedback is the executed notebook with a note under each graded cell (points and the reason
it failed) and a summary at the top, exported to HTML by nbconvert with its HTML sanitizer on
(students' outputs cannot run scripts in the instructor's browser), like nbgrader's feedback.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Sequence
from pathlib import Path

__all__ = ["student_name", "write_csv", "write_feedback"]


def student_name(report) -> str:  # noqa: ANN001 — a GradeReport
    """Who handed the submission in: the file name's prefix before the notebook's name
    (``alice_01_forward_processes.ipynb`` → ``alice``), else the folder's name
    (``submitted/alice/01_forward_processes.ipynb`` → ``alice``)."""
    path = Path(report.submission)
    stem = report.source.stem if report.source else None
    if stem and stem in path.stem:
        prefix = path.stem.split(stem)[0].strip("_-. ")
        if prefix:
            return prefix
    return path.parent.name or path.stem


def write_csv(reports: Sequence, path: Path | str) -> Path:
    """One row per report: student, submission, total, max_total, one column per graded cell
    (in the order the notebooks have them), status, a one-line note, and the review flags."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for report in reports:
        for cell in report.cells:
            if cell.grade_id not in columns:
                columns.append(cell.grade_id)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["student", "submission", "total", "max_total", *columns, "status", "note", "review"]
        )
        for report in reports:
            points = report.points
            note = report.execution_error or "; ".join(report.notes)
            writer.writerow(
                [
                    student_name(report),
                    str(report.submission),
                    f"{report.total:g}",
                    f"{report.max_total:g}",
                    *(f"{points[c]:g}" if c in points else "" for c in columns),
                    report.status,
                    " ".join(note.split()),
                    "; ".join(report.review),
                ]
            )
    return path


def _outcome_markdown(cell) -> str:  # noqa: ANN001 — a CellGrade
    mark = {"passed": "✅", "failed": "❌", "not run": "⏹", "manual": "✍"}.get(cell.status, "")
    text = f"**{mark} `{cell.grade_id}`: {cell.points:g} / {cell.max_points:g} — {cell.status}**"
    if cell.error:
        text += f"\n\n`{cell.error}`"
    return text


def feedback_notebook(report):  # noqa: ANN001, ANN201
    """A copy of the executed notebook with the outcome under each graded cell and a summary."""
    import nbformat

    nb = copy.deepcopy(report.notebook)
    by_id = {c.grade_id: c for c in report.cells}
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in by_id:
            cells.append(nbformat.v4.new_markdown_cell(_outcome_markdown(by_id[grade_id])))
    lines = [f"# Feedback: {Path(report.submission).name}", ""]
    lines.append(f"**Total: {report.total:g} / {report.max_total:g}**")
    lines += ["", "| cell | points | outcome |", "|---|---|---|"]
    for c in report.cells:
        lines.append(f"| `{c.grade_id}` | {c.points:g} / {c.max_points:g} | {c.status} |")
    if report.execution_error:
        lines += ["", f"Execution stopped: `{report.execution_error}`"]
    for note in report.notes:
        lines += ["", f"Note: {note}"]
    nb.cells = [nbformat.v4.new_markdown_cell("\n".join(lines)), *cells]
    return nb


def write_feedback(report, folder: Path | str) -> Path | None:  # noqa: ANN001
    """Write ``folder/<student>/<notebook>.html``; None for a submission that did not run."""
    from nbconvert import HTMLExporter

    if report.notebook is None:
        return None
    target = Path(folder) / student_name(report) / (Path(report.submission).stem + ".html")
    target.parent.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    exporter.sanitize_html = True
    body, _ = exporter.from_notebook_node(feedback_notebook(report))
    target.write_text(body, encoding="utf-8")
    return target
