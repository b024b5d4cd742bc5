"""The structure check every notebook's graded exercises share: student versions build without
nbgrader's markers, stub exactly the solution cells and leave every other cell unchanged."""

from __future__ import annotations

from pathlib import Path

from drdd_edu.assignments import build_all, graded_cells, read_notebook

MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def check_student_versions(out: Path, sources: dict[str, Path]) -> dict[str, object]:
    """Build the student versions of ``sources`` ({"NN": path}) into ``out`` as ipynb and py,
    assert the structure, and return {file name: the student notebook} for further checks."""
    paths = build_all(out, select=sorted(sources), formats=("ipynb", "py"))
    assert sorted(p.name for p in paths) == sorted(
        f"{src.stem}.{fmt}" for src in sources.values() for fmt in ("ipynb", "py")
    )
    students = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert not any(m in text for m in MARKERS), path
        student = read_notebook(path)
        source = read_notebook(sources[path.name[:2]])
        stubbed = [
            c.metadata["nbgrader"]["grade_id"]
            for c in student.cells
            if "nbgrader" in c.metadata and "raise NotImplementedError()" in c.source
        ]
        solutions = [
            g for g, c in graded_cells(source).items() if c.metadata["nbgrader"]["solution"]
        ]
        assert stubbed == solutions, path
        # everything outside the exercises is unchanged
        plain = [c.source for c in source.cells if "nbgrader" not in c.metadata]
        assert [c.source for c in student.cells if "nbgrader" not in c.metadata] == plain
        students[path.name] = student
    return students
