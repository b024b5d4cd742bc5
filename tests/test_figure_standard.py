"""The course's figure standard (issue 15, item 6), enforced where figures are written.

:func:`drdd_edu.notebook.check_figure` refuses a resolution under 100 dpi and any visible text
under 8 pt; :func:`~drdd_edu.notebook.savefig`, the path lab's PNG renderer and the experiment
runner all go through it. One colour per removal order and per method, from one module.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from drdd_edu import colors  # noqa: E402
from drdd_edu.experiments import coupled  # noqa: E402
from drdd_edu.notebook import MIN_DPI, MIN_FONT_PT, check_figure, savefig  # noqa: E402
from drdd_edu.samplers import PATH_ORDERS  # noqa: E402


@pytest.fixture
def figdir(tmp_path, monkeypatch):
    monkeypatch.setenv("DRDD_EDU_FIGURES", str(tmp_path))
    return tmp_path


def _fig(**sizes):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1], label="line")
    ax.set_title("title", fontsize=sizes.get("title", 10))
    ax.set_xlabel("x", fontsize=sizes.get("label", 10))
    ax.tick_params(labelsize=sizes.get("ticks", 10))
    ax.legend(fontsize=sizes.get("legend", 10))
    if "annotate" in sizes:
        ax.annotate("note", (0.5, 0.5), fontsize=sizes["annotate"])
    if "suptitle" in sizes:
        fig.suptitle("suptitle", fontsize=sizes["suptitle"])
    return fig


def test_constants_are_the_issue_s():
    assert MIN_DPI == 100
    assert MIN_FONT_PT >= 8.0 - 1e-12 and MIN_FONT_PT <= 8.0 + 1e-12


def test_savefig_writes_a_compliant_figure(figdir):
    fig = _fig(title=8, label=8, ticks=8, legend=8, annotate=8, suptitle=8)
    path = savefig(fig, "ok_figure")
    assert path == figdir / "ok_figure.png" and path.stat().st_size > 0
    assert savefig(fig, "ok_100", dpi=100).exists()
    plt.close(fig)


def test_savefig_refuses_low_dpi_naming_the_figure(figdir):
    fig = _fig()
    with pytest.raises(ValueError, match=r"'low_res'.*dpi=80.*100"):
        savefig(fig, "low_res", dpi=80)
    assert not (figdir / "low_res.png").exists()  # nothing written
    plt.close(fig)


@pytest.mark.parametrize(
    ("part", "text"),
    [
        ("title", "title"),
        ("label", "x"),
        ("ticks", "0.0"),
        ("legend", "line"),
        ("annotate", "note"),
        ("suptitle", "suptitle"),
    ],
)
def test_savefig_refuses_small_text_and_lists_it(figdir, part, text):
    fig = _fig(**{part: 7})
    with pytest.raises(ValueError, match="smaller than 8 pt") as err:
        savefig(fig, "small_text")
    assert f"'{text}' (7 pt)" in str(err.value)
    assert "'small_text'" in str(err.value)
    assert not (figdir / "small_text.png").exists()
    plt.close(fig)


def test_hidden_text_is_not_checked(figdir):
    fig = _fig()
    fig.axes[0].set_title("hidden", fontsize=5).set_visible(False)
    img_ax = fig.add_axes([0.7, 0.7, 0.2, 0.2])
    img_ax.tick_params(labelsize=4)  # ticks of an axes turned off are not drawn
    img_ax.axis("off")
    fig.axes[0].set_ylabel("", fontsize=4)  # empty text draws nothing
    assert savefig(fig, "hidden_ok").exists()
    plt.close(fig)


def test_check_figure_lists_every_offender():
    fig = _fig(title=6, legend=6.5)
    with pytest.raises(ValueError) as err:
        check_figure(fig, "two", 110)
    msg = str(err.value)
    assert "'title' (6 pt)" in msg and "'line' (6.5 pt)" in msg and "2 text(s)" in msg
    plt.close(fig)


def test_path_lab_png_meets_the_standard():
    from drdd_edu.widgets import LAB_DPI, LabParams, figure_png, plot_lab, run_lab

    assert LAB_DPI >= MIN_DPI
    fig = plot_lab(run_lab(LabParams(steps=3, size=16)))
    assert figure_png(fig).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="dpi=72"):
        figure_png(fig, 72)
    fig.axes[0].set_title("tiny", fontsize=5)
    with pytest.raises(ValueError, match="'tiny' \\(5 pt\\)"):
        figure_png(fig)


def test_experiment_runner_refuses_substandard_figures(tmp_path):
    from drdd_edu.experiments.runner import _save

    fig = _fig(title=6)
    with pytest.raises(ValueError, match="'exp_x'.*'title' \\(6 pt\\)"):
        _save(fig, tmp_path / "exp_x.png")
    assert not (tmp_path / "exp_x.png").exists()
    plt.close(fig)
    ok = _fig()
    _save(ok, tmp_path / "exp_ok.png")
    assert (tmp_path / "exp_ok.png").stat().st_size > 0


def test_one_colour_per_order_and_method():
    assert set(colors.ORDER_COLORS) == set(PATH_ORDERS) == set(colors.ORDER_MARKERS)
    assert len(set(colors.ORDER_COLORS.values())) == len(PATH_ORDERS)
    wanted = set(coupled.METHODS) | set(coupled.REFERENCES)
    assert wanted <= set(colors.METHOD_COLORS)
    assert len(set(colors.METHOD_COLORS.values())) == len(colors.METHOD_COLORS)
    assert coupled.METHOD_COLORS is colors.METHOD_COLORS  # one mapping, imported
    assert colors.INPUT_COLOR not in colors.METHOD_COLORS.values()
