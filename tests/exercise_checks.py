"""The structure check every notebook's graded exercises share: student versions build without
nbgrader's markers, stub exactly the solution cells and leave every other cell unchanged."""

from __future__ import annotations

from pathlib import Path

from drdd_edu.assignments import build_all, graded_cells, read_notebook

MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def check_student_versions(out: Path, sources: dict[str, Path]) -> dict[str, object]:
    """Build the student versions of ``sources`` ({"NN": path}) into ``out`` as ipynb and py,
    assert the structure, and return {file name: the student notebook} for further checks."""
    paths = build_all(out, select=sorted(sources), formats=("ipynb", "py"), instructor=False)
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


def check_two_graded_exercises(nn: str, source: Path) -> tuple[dict, list[str], list[str]]:
    """Assert that notebook ``nn`` has two graded exercises (ids ``exNN-…``), each solution with
    its markers, each test with hidden tests, 4 points in all; return (cells, tests, solutions)."""
    cells = graded_cells(read_notebook(source))
    tests = [g for g, c in cells.items() if c.metadata["nbgrader"]["grade"]]
    solutions = [g for g, c in cells.items() if c.metadata["nbgrader"]["solution"]]
    assert len(tests) == 2 and len(solutions) == 2, list(cells)
    assert all(g.startswith(f"ex{nn}-") for g in cells)
    assert all("### BEGIN HIDDEN TESTS" in cells[g].source for g in tests)
    assert all("### BEGIN SOLUTION" in cells[g].source for g in solutions)
    assert sum(cells[g].metadata["nbgrader"]["points"] for g in tests) == 4
    return cells, tests, solutions
