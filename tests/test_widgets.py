"""The path-independence lab: pure functions (LabParams, run_lab, plot_lab) and the ipywidgets
app driven headlessly (no browser, no display: setting a control's value must rerun the lab)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from matplotlib.figure import Figure

from drdd_edu.samplers import PATH_ORDERS
from drdd_edu.widgets import (
    LAB_T,
    LabParams,
    LabResult,
    PathLab,
    figure_png,
    plot_lab,
    run_lab,
)

SMALL = {"size": 16}  # 16×16 images keep every run in the milliseconds
EXACT_DB = 60.0  # "exact" restoration: PSNR above 60 dB (float32 round-off only)


def _same_arrays(a: LabResult, b: LabResult) -> bool:
    return all(
        torch.equal(a.trajectory(kind), b.trajectory(kind)) for kind in ("x_t", "pred_x0")
    ) and torch.equal(a.output, b.output)


# ----------------------------------------------------------------------------- LabParams


def test_params_json_round_trip_is_exact():
    p = LabParams(alpha_power=2, beta_power=0.5, sum_scale=0.01, order="noise_first", steps=3,
                  eta=0.3, noise_strength=0.1, task="generate", image="coffee", size=16,
                  predictor="dataset_ideal", seed=12345, show_step=2)  # fmt: skip
    assert isinstance(p.alpha_power, float)  # ints given for floats are stored as floats
    text = p.to_json()
    assert json.loads(text)["seed"] == 12345
    assert LabParams.from_json(text) == p
    assert LabParams.from_json("{}") == LabParams()  # missing fields take defaults
    assert LabParams.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    "changes",
    [
        {"steps": 0},
        {"steps": LAB_T + 1},
        {"steps": 2.0},
        {"steps": True},
        {"order": "zigzag"},
        {"eta": 1.5},
        {"eta": -0.1},
        {"sum_scale": 0.0},
        {"alpha_power": -1.0},
        {"beta_power": math.inf},
        {"noise_strength": math.nan},
        {"task": "denoise"},
        {"predictor": "unet"},
        {"image": "lena"},
        {"size": 4},
        {"seed": -1},
        {"show_step": -2},
        {"alpha_power": "1"},
    ],
)
def test_bad_params_raise(changes):
    with pytest.raises((ValueError, TypeError), match="LabParams"):
        LabParams(**changes)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown LabParams field"):
        LabParams.from_json('{"stepz": 3}')
    with pytest.raises(ValueError, match="not valid JSON"):
        LabParams.from_json("{steps: 3")
    with pytest.raises(TypeError, match="LabParams"):
        run_lab({"steps": 3})
    with pytest.raises(TypeError, match="LabResult"):
        plot_lab(LabParams())


# ----------------------------------------------------------------------------- run_lab


@pytest.mark.parametrize("order", PATH_ORDERS)
def test_oracle_is_exact_for_every_order(order):
    p = LabParams(order=order, steps=4, alpha_power=2.0, beta_power=0.5, **SMALL)
    r = run_lab(p)
    assert r.psnr > EXACT_DB and r.max_abs_error < 1e-5 and r.ssim > 0.9999
    assert r.n_steps == (4 if order == "simultaneous" else 8)
    assert r.path.shape == (r.n_steps + 1, 2)
    assert torch.allclose(r.path[0], torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert torch.equal(r.path[-1], torch.zeros(2, dtype=torch.float64))
    assert r.sampler == ("sample_iter" if order == "simultaneous" else "sample_path_iter")


def test_oracle_exact_with_eta_and_mismatched_start_noise():
    r = run_lab(LabParams(eta=1.0, steps=6, noise_strength=0.3, sum_scale=0.1, **SMALL))
    assert r.eta_applied == 1.0  # float-exact: literal
    assert r.psnr > EXACT_DB


def test_run_lab_is_deterministic_and_seeded():
    p = LabParams(predictor="dataset_ideal", eta=0.5, steps=5, **SMALL)
    a, b = run_lab(p), run_lab(p)
    assert _same_arrays(a, b) and a.psnr == b.psnr
    c = run_lab(p.replace(seed=1))
    assert not torch.equal(a.x_start, c.x_start)


def test_eta_is_used_only_by_the_simultaneous_order():
    base = LabParams(predictor="dataset_ideal", steps=5, seed=3, **SMALL)
    for order in ("residual_first", "noise_first"):
        r0 = run_lab(base.replace(order=order))
        r1 = run_lab(base.replace(order=order, eta=0.7))
        assert r1.eta_applied == 0.0 and _same_arrays(r0, r1)  # float-exact: literal
    s0, s1 = run_lab(base), run_lab(base.replace(eta=0.7))
    assert s1.eta_applied == 0.7 and not torch.equal(s0.output, s1.output)  # float-exact: literal


def test_dataset_ideal_generation_lands_on_a_bundled_photo():
    r = run_lab(LabParams(task="generate", predictor="dataset_ideal", steps=10, **SMALL))
    assert torch.equal(r.x_in, torch.zeros_like(r.x_in))
    assert r.nearest_rmse < 1e-4 and r.reference == r.nearest_image
    assert r.psnr > EXACT_DB


def test_dataset_ideal_orders_disagree():
    """Not path independent: noise-first ends off every photo, the others on one."""
    base = LabParams(predictor="dataset_ideal", steps=5, **SMALL)
    ends = {o: run_lab(base.replace(order=o)) for o in PATH_ORDERS}
    assert ends["simultaneous"].nearest_rmse < 1e-4
    assert ends["noise_first"].nearest_rmse > 1e-3


# ----------------------------------------------------------------------------- plot_lab


def test_plot_lab_is_pure_and_reuses_a_given_figure():
    r = run_lab(LabParams(steps=20, **SMALL))
    fig = plot_lab(r, max_columns=5)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1 + 2 * (5 + 1)  # path panel + 2 rows × (5 steps + output)
    assert "PSNR" in fig._suptitle.get_text()
    assert figure_png(fig) == figure_png(plot_lab(r, max_columns=5))  # same result, same pixels
    target = Figure()
    assert plot_lab(r, target, step=3) is target
    assert figure_png(target) != figure_png(fig)  # a different highlighted step
    with pytest.raises(ValueError, match="step"):
        plot_lab(r, step=-2)
    with pytest.raises(ValueError, match="max_columns"):
        plot_lab(r, max_columns=1)


# ----------------------------------------------------------------------------- PathLab


@pytest.fixture(scope="module")
def lab():
    return PathLab(LabParams(steps=3, **SMALL))


def test_lab_has_a_control_per_field(lab):
    assert set(lab.controls) == {f.name for f in dataclasses.fields(LabParams)}
    assert lab.result.n_steps == 3 and lab.step_slider.max == 2
    assert lab.output.outputs[0]["data"]["image/png"]


def test_moving_a_slider_reruns_the_lab(lab):
    fig, png, result = lab.figure, lab.png, lab.result
    lab.controls["steps"].value = 7
    assert lab.params.steps == 7
    assert lab.result is not result and lab.result.n_steps == 7
    assert lab.step_slider.max == 6 and lab.step_slider.value == 6
    assert lab.figure is not fig and lab.png != png
    assert lab.result.psnr > EXACT_DB


def test_changing_order_keeps_the_oracle_exact(lab):
    lab.controls["order"].value = "noise_first"
    assert lab.params.order == "noise_first" and lab.result.n_steps == 2 * lab.params.steps
    assert lab.result.psnr > EXACT_DB
    assert lab.controls["eta"].disabled  # η does not apply to the path sampler
    lab.controls["order"].value = "simultaneous"
    assert not lab.controls["eta"].disabled


def test_scrubbing_redraws_without_rerunning(lab):
    states, fig = lab.result.states, lab.figure
    lab.step_slider.value = 1
    assert lab.params.show_step == 1
    assert lab.result.states is states  # same sampling, only the figure changed
    assert lab.figure is not fig


def test_export_import_reproduces_arrays_and_figure(lab):
    lab.controls["predictor"].value = "dataset_ideal"
    lab.controls["eta"].value = 0.5
    lab.controls["seed"].value = 7
    lab.export_button.click()
    text = lab.export_text.value
    assert text == lab.export() and json.loads(text)["seed"] == 7
    again = run_lab(LabParams.from_json(text))
    assert _same_arrays(again, lab.result)
    assert figure_png(plot_lab(again), lab.dpi) == lab.png

    other = PathLab(LabParams(**SMALL))
    other.set_params(text)
    assert other.params == lab.params and other.controls["seed"].value == 7
    assert other.png == lab.png


def test_rejected_settings_leave_the_lab_unchanged(lab):
    before = lab.params
    with pytest.raises(ValueError):
        lab.set_params({"steps": 0})
    with pytest.raises(TypeError):
        lab.update({"steps": 3})
    assert lab.params == before
