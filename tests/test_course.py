"""``drdd-edu course`` on a tiny notebook folder: a quiet run, a short summary, budgets as
warnings, one clear line for a failing notebook, and the offline site's files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from course_notebooks import write_failing, write_tiny_course

from drdd_edu.cli import main
from drdd_edu.course import NotebookRun, budget_for, run_course, summary

pytest.importorskip("nbclient")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Run the tiny course once through the CLI; keep what reached the terminal (fd level, so
    the kernel process's own output would be caught too)."""
    root = tmp_path_factory.mktemp("course")
    notebooks = write_tiny_course(root / "notebooks")
    figures = root / "figures"
    out = root / "build"
    mp = pytest.MonkeyPatch()
    mp.setenv("DRDD_EDU_FIGURES", str(figures))
    mp.setenv("MPLBACKEND", "Agg")  # as under the test harness: the run must still show figures
    yield root, notebooks, figures, out
    mp.undo()


@pytest.fixture(scope="module")
def cli_run(course):
    root, notebooks, figures, out = course
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "drdd_edu.cli",
            "course",
            "--smoke",
            "--notebooks",
            str(notebooks),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc


def test_course_run_is_quiet_and_summarised(course, cli_run):
    root, notebooks, figures, out = course
    assert cli_run.returncode == 0, cli_run.stderr
    terminal = cli_run.stdout + cli_run.stderr
    assert "without encryption" not in terminal and "IPKernelApp" not in terminal
    assert "KERNEL-FD2-MARKER" not in terminal, "the kernel's own stderr reached the terminal"
    assert "inside the kernel" not in terminal, "a notebook's tqdm bar reached the terminal"
    assert "Alternative text" not in terminal
    # the kernel's own stderr went to its log instead
    log = out / "logs" / "01_equations.log"
    log_text = log.read_text(encoding="utf-8")
    assert "KERNEL-FD2-MARKER" in log_text
    # ...and the kernel talked over IPC: ipykernel did not even log the TCP warning
    assert "without encryption" not in log_text
    lines = cli_run.stdout.strip().splitlines()
    # one summary line per notebook: time / budget, figures written, page
    first = next(line for line in lines if line.startswith("01_equations"))
    assert re.search(r"\d+\.\d s / 120 s\s+1 figure\s", first), first
    assert first.rstrip().endswith(str(out / "01_equations.html"))
    second = next(line for line in lines if line.startswith("02_graded"))
    assert re.search(r"0 figures\s", second) and second.rstrip().endswith("02_graded.html")
    assert f"course site: {out / 'index.html'}" in lines
    # the tiny budget of 02 is reported as a warning, and the run still succeeded
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "02_graded" in warnings[0] and "not a failure" in warnings[0]
    # one progress bar: its description is the only thing on stderr
    assert set(re.findall(r"(\w+):\s+\d+%", cli_run.stderr)) == {"course"}


def test_course_outputs(course, cli_run):
    root, notebooks, figures, out = course
    assert cli_run.returncode == 0, cli_run.stderr
    assert (figures / "test_course_parabola.png").is_file()
    runs = json.loads((out / "runs.json").read_text(encoding="utf-8"))
    assert runs["01_equations"]["figures"] == ["test_course_parabola.png"]
    assert runs["02_graded"]["figures"] == []
    assert runs["01_equations"]["smoke"] is True
    assert 0 < runs["02_graded"]["seconds"] < 300
    page = (out / "01_equations.html").read_text(encoding="utf-8")
    # the figure is shown inline (as a data URI), although MPLBACKEND=Agg was inherited
    assert "data:image/png;base64," in page
    # nothing is loaded from the network: MathJax is bundled, the CDN scripts are left out
    srcs = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page)
    assert srcs and all(not s.startswith(("http:", "https:", "//")) for s in srcs), srcs
    assert any(s.startswith("_static/mathjax/MathJax.js") for s in srcs)
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file()
    assert (out / "_static" / "mathjax" / "config" / "local" / "drdd_edu.js").is_file()
    # navigation: 01 links to the index and to 02, 02 back to 01
    assert 'href="index.html"' in page and 'href="02_graded.html"' in page
    assert 'href="01_equations.html"' in (out / "02_graded.html").read_text(encoding="utf-8")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Equations and a figure" in index and "A graded exercise" in index
    assert "1 — introductory (test)" in index
    row = index[index.index("02_graded.html") :].split("</tr>")[0]
    assert '<td class="num">2</td>' in row, "02's graded cell is worth 2 points"


def test_failing_notebook_gives_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DRDD_EDU_FIGURES", str(tmp_path / "figures"))
    notebooks = write_failing(tmp_path / "notebooks")
    out = tmp_path / "build"
    code = main(["course", "--smoke", "--notebooks", str(notebooks), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1, captured.err
    line = errors[0]
    assert line.startswith("drdd-edu course: error: 01_broken.py failed in cell 2 ")
    assert "AssertionError: y should be 3" in line
    partial = out / "01_broken.partial.ipynb"
    assert str(partial) in line and partial.is_file()
    assert str(out / "logs" / "01_broken.log") in line
    assert "Traceback" not in captured.err
    assert not (out / "index.html").exists(), "a failed run builds no site"


def test_timeout_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DRDD_EDU_FIGURES", str(tmp_path / "figures"))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "01_sleepy.py").write_text("# %%\nimport time\n\n# %%\ntime.sleep(60)\n")
    out = tmp_path / "build"
    args = ["course", "--notebooks", str(notebooks), "--out", str(out), "--timeout", "2"]
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "01_sleepy.py failed in cell 1 ('time.sleep(60)')" in errors[0]
    assert "timed out" in errors[0]


def test_bad_selection_is_one_line(tmp_path, capsys):
    notebooks = write_failing(tmp_path / "notebooks")
    code = main(["course", "--notebooks", str(notebooks), "--only", "07", "--out", str(tmp_path)])
    assert code == 2
    assert "no notebook in" in capsys.readouterr().err


def test_budget_for_smoke_and_full():
    meta = {"drdd_edu": {"budget_s": 180}}
    assert budget_for(meta, smoke=True) == pytest.approx(180.0)
    assert budget_for(meta, smoke=False) == pytest.approx(180.0)
    meta["drdd_edu"]["budget_full_s"] = 600
    assert budget_for(meta, smoke=False) == pytest.approx(600.0)
    assert budget_for(meta, smoke=True) == pytest.approx(180.0)
    assert budget_for({}, smoke=True) is None


def test_summary_warns_only_over_budget(tmp_path):
    def run(name: str, seconds: float, budget: float | None) -> NotebookRun:
        return NotebookRun(
            name, seconds, budget, tmp_path / f"{name}.ipynb", None, tmp_path / "logs" / "x.log"
        )

    text = summary([run("01_a", 10.0, 180.0), run("02_b", 200.0, 180.0), run("03_c", 5.0, None)])
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert (
        len(warnings) == 1 and "02_b took 200.0 s, over its 180 s full-size budget" in warnings[0]
    )
    assert "01_a" in text and "3 notebook(s) at full size" in text


def test_run_course_returns_runs(tmp_path, monkeypatch):
    """The library call (no CLI, no HTML): runs in order with their figures."""
    monkeypatch.setenv("DRDD_EDU_FIGURES", str(tmp_path / "figures"))
    notebooks = write_tiny_course(tmp_path / "notebooks")
    runs = run_course(
        tmp_path / "out",
        smoke=True,
        select=["01"],
        notebook_dir=notebooks,
        html=False,
        progress=False,
    )
    assert [r.name for r in runs] == ["01_equations"]
    assert [Path(p).name for p in runs[0].figures] == ["test_course_parabola.png"]
    assert runs[0].html is None and not (tmp_path / "out" / "index.html").exists()
    assert runs[0].ipynb.is_file() and not runs[0].slow
