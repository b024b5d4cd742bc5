"""The drdd-edu command line and the course runner's notebook discovery."""

import pytest

from drdd_edu.cli import build_parser, main
from drdd_edu.course import notebook_sources


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "drdd_edu" in out and "torch" in out and "device:" in out


def test_unknown_command_exits():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fly"])


def test_course_arguments():
    args = build_parser().parse_args(["course", "--smoke", "--only", "01", "02"])
    assert args.smoke and args.only == ["01", "02"]


def test_notebook_sources(tmp_path):
    for name in ("01_a.py", "02_b.py", "helper.py"):
        (tmp_path / name).write_text("# %%\n")
    assert [p.name for p in notebook_sources(tmp_path)] == ["01_a.py", "02_b.py"]
    assert [p.name for p in notebook_sources(tmp_path, ["02"])] == ["02_b.py"]
    with pytest.raises(ValueError, match="matches"):
        notebook_sources(tmp_path, ["09"])
    with pytest.raises(FileNotFoundError, match="notebook folder"):
        notebook_sources(tmp_path / "missing")


def test_course_runs_a_notebook_headlessly(tmp_path, monkeypatch):
    """The main job's machinery: execute notebook 01 at smoke size, write .ipynb and .html."""
    from drdd_edu.course import run_course

    monkeypatch.setenv("DRDD_EDU_SMOKE", "1")
    monkeypatch.setenv("DRDD_EDU_FIGURES", str(tmp_path / "figures"))
    runs = run_course(tmp_path / "course", smoke=True, select=["01"])
    assert [r.name for r in runs] == ["01_forward_processes"]
    assert runs[0].ipynb.is_file() and runs[0].html is not None
    page = runs[0].html.read_text(encoding="utf-8")
    assert "Forward processes" in page
    # the offline site: bundled MathJax, no CDN script, an index linking the page
    assert 'src="_static/mathjax/MathJax.js' in page and "cdnjs" not in page
    assert "01_forward_processes.html" in (tmp_path / "course" / "index.html").read_text("utf-8")
    assert any((tmp_path / "figures").glob("01_*.png")), "the notebook saves its figures"
