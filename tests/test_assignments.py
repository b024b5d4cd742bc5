"""Course assignments: student versions from the notebooks' single source, and autograding.

The slow part is executing notebooks 01 and 02 (smoke size, ~7 s each): five executions in all,
shared through module-scoped fixtures.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from drdd_edu.assignments import (
    AssignmentError,
    build_all,
    build_student_version,
    grade,
    graded_cells,
    infer_source,
    read_notebook,
    student_notebook,
)
from drdd_edu.cli import main
from drdd_edu.notebook import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
SOURCES = {
    "01": NOTEBOOKS / "01_forward_processes.py",
    "02": NOTEBOOKS / "02_reverse_sampling.py",
}
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
KERNEL_ENV = {"DRDD_EDU_SMOKE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

TINY = '''# %%
import math

# %% nbgrader={"grade": false, "grade_id": "sq", "locked": false, "solution": true, "schema_version": 3}
def square(x):
    """x²."""
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "whole", "locked": false, "solution": true, "schema_version": 3}
### BEGIN SOLUTION
def cube(x):
    return x**3
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "sq-test", "points": 1, "locked": true, "solution": false, "schema_version": 3}
assert square(3) == 9
### BEGIN HIDDEN TESTS
assert square(-2) == 4
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "cube-test", "points": 3, "locked": true, "solution": false, "schema_version": 3}
assert cube(2) == 8
'''


def _grade(submission, source, **kwargs):
    return grade(submission, source, env=KERNEL_ENV, **kwargs)


def test_grading_cli_bulk_csv_and_feedback(built, tmp_path, capsys, monkeypatch):
    """Two students' notebook 02 (one solved, one not) and a corrupt one, graded in one call."""
    import csv

    instructor = graded_cells(read_notebook(SOURCES["02"]))
    for student in ("alice", "bob"):
        nb = nbformat.read(built["02.ipynb"], as_version=4)
        if student == "alice":
            for grade_id in ("ex02-noise-from-residual", "ex02-deterministic-step"):
                graded_cells(nb)[grade_id].source = instructor[grade_id].source
            script = "from IPython.display import HTML\nHTML('<script>alert(1)</script><b>hi</b>')"
            nb.cells.insert(1, nbformat.v4.new_code_cell(script))
        (tmp_path / "submitted" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "submitted" / student / "02_reverse_sampling.ipynb")
    (tmp_path / "submitted" / "carol").mkdir()
    (tmp_path / "submitted" / "carol" / "02_reverse_sampling.ipynb").write_text("{ not json")
    for key, value in KERNEL_ENV.items():
        monkeypatch.setenv(key, value)
    subs = sorted(str(p) for p in (tmp_path / "submitted").glob("*/02_reverse_sampling.ipynb"))
    grades = tmp_path / "grades.csv"
    code = main(["assignments", "grade", *subs, "--csv", str(grades), "--workers", "2"])
    assert code == 2  # carol's notebook could not be graded
    captured = capsys.readouterr()
    assert "not a valid notebook" in captured.err
    rows = {r["student"]: r for r in csv.DictReader(grades.open())}
    assert sorted(rows) == ["alice", "bob", "carol"]
    assert rows["alice"]["total"] == "4" and rows["alice"]["ex02-deterministic-step-test"] == "2"
    assert rows["bob"]["total"] == "0" and rows["bob"]["status"] == "graded"
    assert rows["carol"]["status"] == "malformed" and rows["carol"]["max_total"] == "4"
    html = (tmp_path / "feedback" / "alice" / "02_reverse_sampling.html").read_text()
    assert "ex02-deterministic-step-test" in html and "2 / 2" in html
    assert "<script>alert(1)" not in html  # students' outputs are sanitized
    assert not (tmp_path / "feedback" / "carol").exists()


def _marker_free(text: str) -> bool:
    return not any(m in text for m in MARKERS)


def _cells_by_id(nb) -> dict:
    return graded_cells(nb)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    paths = build_all(out, select=["01", "02"], formats=("ipynb", "py"), instructor=False)
    return {p.name[:2] + p.suffix: p for p in paths}


@pytest.fixture(scope="module")
def student_reports(built):
    """Grade the untouched student versions: this also executes them."""
    return {nn: _grade(built[nn + ".ipynb"], SOURCES[nn]) for nn in SOURCES}


# ----------------------------------------------------------------------------- building


def test_sources_have_two_graded_exercises_each():
    for src in SOURCES.values():
        cells = graded_cells(read_notebook(src))
        tests = [g for g, c in cells.items() if c.metadata["nbgrader"]["grade"]]
        solutions = [g for g, c in cells.items() if c.metadata["nbgrader"]["solution"]]
        assert len(tests) == 2 and len(solutions) == 2, (src.name, list(cells))
        for g in tests:
            assert "### BEGIN HIDDEN TESTS" in cells[g].source
        for g in solutions:
            assert "### BEGIN SOLUTION" in cells[g].source


def test_percent_source_round_trips_nbgrader_metadata():
    import jupytext

    for src in SOURCES.values():
        nb = jupytext.read(src)
        again = jupytext.reads(jupytext.writes(nb, fmt="ipynb"), fmt="ipynb")
        assert {g: c.metadata["nbgrader"] for g, c in graded_cells(again).items()} == {
            g: c.metadata["nbgrader"] for g, c in graded_cells(nb).items()
        }
        assert jupytext.writes(again, fmt="py:percent").count('nbgrader={"grade"') == 4


def test_build_removes_solutions_and_hidden_tests(built):
    assert sorted(built) == ["01.ipynb", "01.py", "02.ipynb", "02.py"]
    for nn, src in SOURCES.items():
        instructor = read_notebook(src)
        for suffix in (".ipynb", ".py"):
            path = built[nn + suffix]
            assert path.stem == src.stem  # returned files keep the name grading infers from
            text = path.read_text(encoding="utf-8")
            assert _marker_free(text), path
            student = read_notebook(path)
            stubbed = [
                c.metadata.get("nbgrader", {}).get("grade_id")
                for c in student.cells
                if c.cell_type == "code" and "raise NotImplementedError()" in c.source
            ]
            solution_ids = [
                g for g, c in graded_cells(instructor).items() if c.metadata["nbgrader"]["solution"]
            ]
            assert stubbed == solution_ids
            assert list(graded_cells(student)) == list(graded_cells(instructor))
            for g, cell in graded_cells(student).items():
                assert cell.metadata["nbgrader"] == graded_cells(instructor)[g].metadata["nbgrader"]
            # everything outside the exercises is unchanged
            plain = [c.source for c in instructor.cells if "nbgrader" not in c.metadata]
            assert [c.source for c in student.cells if "nbgrader" not in c.metadata] == plain
        nb = nbformat.read(built[nn + ".ipynb"], as_version=4)
        assert "jupytext" not in nb.metadata and nb.metadata["kernelspec"]["name"] == "python3"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_stub_keeps_the_signature_and_indentation(built):
    student = read_notebook(built["01.ipynb"])
    cell = graded_cells(student)["ex01-q-sample"]
    lines = cell.source.splitlines()
    assert lines[0] == "def my_q_sample(x0, x_in, t, schedule, noise):"
    assert lines[-2:] == ["    # YOUR CODE HERE", "    raise NotImplementedError()"]


def test_whole_cell_solution_and_malformed_markers(tmp_path):
    src = tmp_path / "09_tiny.py"
    src.write_text(TINY)
    student = student_notebook(read_notebook(src))
    cells = graded_cells(student)
    assert cells["whole"].source == "# YOUR CODE HERE\nraise NotImplementedError()"
    assert cells["sq-test"].source == "assert square(3) == 9"
    assert "### BEGIN SOLUTION" in src.read_text()  # the source is left alone

    broken = tmp_path / "09_broken.py"
    broken.write_text(TINY.replace("    ### END SOLUTION\n", "", 1))
    with pytest.raises(AssignmentError, match="BEGIN SOLUTION without END"):
        build_student_version(broken, tmp_path / "out.ipynb")
    duplicated = tmp_path / "09_dup.py"
    duplicated.write_text(TINY.replace('"grade_id": "whole"', '"grade_id": "sq"'))
    with pytest.raises(AssignmentError, match="appears twice"):
        build_student_version(duplicated, tmp_path / "out.ipynb")


# ----------------------------------------------------------------------------- grading


def test_student_version_fails_only_with_not_implemented(student_reports):
    for nn, report in student_reports.items():
        assert report.execution_error is None
        test_ids = {
            g for g, c in graded_cells(report.notebook).items() if c.metadata["nbgrader"]["grade"]
        }
        failing = set()
        for index, cell in enumerate(report.notebook.cells):
            if cell.cell_type != "code":
                continue
            assert cell.execution_count is not None, f"{nn}: cell {index} did not run"
            for out in cell.outputs:
                if out.output_type == "error":
                    assert out.ename == "NotImplementedError", (nn, index, out.ename, out.evalue)
                    failing.add(cell.metadata.get("nbgrader", {}).get("grade_id"))
        assert failing == test_ids, f"{nn}: only the exercise test cells may fail"
        assert report.total == 0 and report.max_total == 4
        assert all(c.status == "failed" for c in report.cells)


def test_instructor_version_gets_full_marks(tmp_path):
    import jupytext

    for src in SOURCES.values():
        # the .ipynb that `drdd-edu notebooks` writes, with solutions and hidden tests
        ipynb = tmp_path / f"{src.stem}.ipynb"
        jupytext.write(jupytext.read(src), ipynb, fmt="ipynb")
        report = _grade(ipynb, src)
        assert report.total == report.max_total == 4, report.summary()
        assert report.points == {g: 2.0 for g in report.points}
        # the hidden tests were executed: their cells still hold the markers
        cells = graded_cells(report.notebook)
        assert all("BEGIN HIDDEN TESTS" in cells[g].source for g in report.points)


def test_partial_solution_gets_partial_marks(built, tmp_path, capsys, monkeypatch):
    """Exercise A solved, Exercise B not, and its test cell emptied: 2 of 4 points."""
    instructor = graded_cells(read_notebook(SOURCES["01"]))
    nb = nbformat.read(built["01.ipynb"], as_version=4)
    cells = graded_cells(nb)
    cells["ex01-q-sample"].source = "\n".join(
        line for line in instructor["ex01-q-sample"].source.splitlines() if "SOLUTION" not in line
    )
    cells["ex01-ddim-coefficients-test"].source = "pass  # tests edited away"
    submission = tmp_path / "alice_01_forward_processes.ipynb"
    nbformat.write(nb, submission)
    assert infer_source(submission) == SOURCES["01"]

    # through the command line, with the source inferred from the file name
    for key, value in KERNEL_ENV.items():
        monkeypatch.setenv(key, value)
    assert main(["assignments", "grade", str(submission), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["total"], report["max_total"]) == (2.0, 4.0)
    by_id = {c["grade_id"]: c for c in report["cells"]}
    assert by_id["ex01-q-sample-test"]["status"] == "passed"
    assert by_id["ex01-ddim-coefficients-test"]["status"] == "failed"
    assert "NotImplementedError" in by_id["ex01-ddim-coefficients-test"]["error"]


def test_hidden_tests_catch_a_wrong_answer(tmp_path):
    """A solution that passes the visible tests but not the hidden ones loses the points."""
    src = tmp_path / "09_tiny.py"
    src.write_text(TINY)
    submission = tmp_path / "09_tiny.ipynb"
    build_student_version(src, submission)
    nb = nbformat.read(submission, as_version=4)
    cells = graded_cells(nb)
    cells["sq"].source = "def square(x):\n    return 3 * x  # right at x = 3 only"
    cells["whole"].source = "def cube(x):\n    return x**3"
    nbformat.write(nb, submission)
    report = _grade(submission, src)
    assert report.points == {"sq-test": 0.0, "cube-test": 3.0}
    assert report.cells[0].error.startswith("AssertionError")
    text = report.summary()
    assert "sq-test" in text and "3 / 4" in text


def test_grade_errors(tmp_path, built):
    src = tmp_path / "09_tiny.py"
    src.write_text(TINY)
    with pytest.raises(FileNotFoundError, match="submission not found"):
        grade(tmp_path / "missing.ipynb", src)
    corrupt = tmp_path / "09_tiny.ipynb"
    corrupt.write_text("{ this is not json")
    with pytest.raises(AssignmentError, match="not a valid notebook"):
        grade(corrupt, src)
    with pytest.raises(AssignmentError, match=r"does not match.*missing \['sq'"):
        grade(built["01.ipynb"], src)
    nb = nbformat.read(built["02.ipynb"], as_version=4)
    nb.cells = [
        c
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") != "ex02-deterministic-step"
    ]
    deleted = tmp_path / "02_reverse_sampling.ipynb"
    nbformat.write(nb, deleted)
    with pytest.raises(AssignmentError, match="not the same kind of cell"):
        broken = nbformat.read(built["02.ipynb"], as_version=4)
        meta = graded_cells(broken)["ex02-deterministic-step"].metadata["nbgrader"]
        meta.update(grade=True, solution=False, points=2)
        nbformat.write(broken, tmp_path / "kind_02_reverse_sampling.ipynb")
        grade(tmp_path / "kind_02_reverse_sampling.ipynb")
    # a deleted exercise cell is graded as missing (its test fails), not refused
    report = _grade(deleted, None, sandbox=False)
    assert report.points["ex02-deterministic-step-test"] == 0
    assert any("ex02-deterministic-step" in note for note in report.notes), report.notes
    with pytest.raises(AssignmentError, match="cannot tell the source"):
        infer_source(tmp_path / "homework.ipynb")


def test_cli_build_and_errors(tmp_path, capsys):
    assert main(["assignments", "build", "--out", str(tmp_path / "a"), "--only", "02"]) == 0
    assert capsys.readouterr().out.strip().endswith("02_reverse_sampling.ipynb")
    assert (tmp_path / "a" / "02_reverse_sampling.ipynb").is_file()
    # every notebook now has graded exercises; a folder whose notebook has none builds nothing
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "01_plain.py").write_text("# %%\nx = 1\n")
    assert build_all(tmp_path / "b", notebook_dir=plain) == []
    assert main(["assignments", "grade", str(tmp_path / "nothing.ipynb")]) == 2
    assert "submission not found" in capsys.readouterr().err
    bad = tmp_path / "01_forward_processes.ipynb"
    bad.write_text("[]")
    assert main(["assignments", "grade", str(bad)]) == 2
    assert "not a valid notebook" in capsys.readouterr().err
