"""Interactive path-independence lab: ipywidgets bound to pure, reproducible functions.

Three layers, each usable without the one above it:

* :class:`LabParams` — every setting of one experiment (schedule, removal order, steps, η,
  starting noise, task, image, predictor, seed), frozen, validated, exportable as JSON;
* :func:`run_lab` — a *pure* function ``LabParams -> LabResult``: it builds the RDDM
  schedule of the P(x, k) family, samples with the library samplers and a closed-form
  predictor, and measures PSNR/SSIM. The same parameters (seed included) give the same
  arrays, bit for bit;
* :func:`plot_lab` — a *pure* function ``LabResult -> Figure``: trajectory strip (x_t and
  Î_0 per step), the removal path in the (ᾱ, β̄) plane, PSNR/SSIM in the title.

:class:`PathLab` wires them to sliders and dropdowns. Every control is observed, so the lab
is fully drivable without a browser (``lab.controls["steps"].value = 7`` reruns it), and
``lab.export()`` returns the JSON from which ``plot_lab(run_lab(LabParams.from_json(s)))``
regenerates the displayed figure exactly.

**Which sampler, and where η applies.**

=================  =======================================================  ==========
order              sampler                                                  uses η?
=================  =======================================================  ==========
``simultaneous``   :func:`~drdd_edu.samplers.sample_iter` on the schedule   yes
``residual_first`` :func:`~drdd_edu.samplers.sample_path_iter` along         no (η = 0)
                   :func:`~drdd_edu.samplers.removal_path`
``noise_first``    same, the noise-first path                               no (η = 0)
=================  =======================================================  ==========

The path sampler is deterministic (the η = 0 form of RDDM's step), so for the two
sequential orders η is ignored; :attr:`LabResult.eta_applied` records the η actually used and
the lab greys out the η slider.

**Tasks.** ``"restore"``: I_0 is the chosen bundled photograph, I_in its darkened version
(:func:`drdd_edu.toydata.darken`); PSNR/SSIM compare the output with I_0. ``"generate"``:
I_in = 0 (RDDM as a generative model, the state starts as pure noise); PSNR/SSIM compare the
output with the nearest of the bundled photographs (named in :attr:`LabResult.reference`).

**Predictors** (closed form, no training, see :mod:`drdd_edu.predictors`): ``"oracle"`` knows
I_0 and is exact, so every order, step count and schedule ends at I_0; ``"dataset_ideal"`` is
the MMSE predictor for the four bundled photographs — the best a network trained on them
without the pairing I_in ↔ I_0 could do — and it is *not* path independent.

Images are float32 tensors of shape (1, 3, H, W) on the diffusion scale [-1, 1].
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from . import metrics, toydata
from .colors import ORDER_COLORS
from .diffusion import from_model_range, to_model_range
from .notebook import check_figure
from .predictors import DatasetIdealPredictor, OraclePredictor
from .samplers import PATH_ORDERS, StepState, removal_path, sample_iter, sample_path_iter
from .schedules import Schedule, rddm_schedule

__all__ = [
    "LAB_T",
    "LAB_TASKS",
    "LAB_PREDICTORS",
    "LAB_DPI",
    "LabParams",
    "LabResult",
    "lab_schedule",
    "run_lab",
    "plot_lab",
    "figure_png",
    "PathLab",
]

LAB_T: int = 1000
"""Number of diffusion steps T of every lab schedule (as in the RDDM reference code)."""
LAB_TASKS: tuple[str, ...] = ("restore", "generate")
LAB_PREDICTORS: tuple[str, ...] = ("oracle", "dataset_ideal")
LAB_DPI: int = 100
"""Resolution of the figure the lab shows (and of :func:`figure_png` by default)."""

_MAX_SIZE = 256


# ----------------------------------------------------------------------------- parameters


def _as_float(value: object, name: str, low: float, high: float, low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (or (low, high] if ``low_open``), else an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"LabParams.{name} must be a number, got {type(value).__name__}")
    out = float(value)
    too_low = out <= low if low_open else out < low
    if not math.isfinite(out) or too_low or out > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"LabParams.{name} must lie in {bracket}{low:g}, {high:g}], got {value!r}")
    return out


def _as_int(value: object, name: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high] (bools and floats refused), else an error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"LabParams.{name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"LabParams.{name} must lie in {low} … {high}, got {value}")
    return int(value)


def _as_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"LabParams.{name} must be one of {choices}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class LabParams:
    """All settings of one lab experiment; validated on construction, exportable as JSON.

    Attributes:
        alpha_power: k of the residual schedule P(x, k): α_t ∝ ((T+1−t')/T)^k, t' = 1 … T
            (≥ 0; 1 is the reference's linear schedule, 0 uniform; larger k removes the
            residual later in the reverse process, i.e. adds it earlier going forward).
        beta_power: k of the noise schedule: β_t² ∝ (t'/T)^k (≥ 0, 1 = linear).
        sum_scale: β̄²_{T−1}, the total noise variance of the schedule (> 0, ≤ 4).
        order: removal order, one of :data:`~drdd_edu.samplers.PATH_ORDERS`.
        steps: sampling steps S on the reference time grid (1 … T). ``"simultaneous"`` makes
            S network calls, the two sequential orders 2·S.
        eta: stochasticity η ∈ [0, 1] of RDDM's generalised step; used by ``"simultaneous"``
            only (the path sampler of the other orders is deterministic).
        noise_strength: σ ≥ 0, the std of the starting noise: x_start = I_in + σ·z. The
            samplers assume the schedule's β̄_{T−1} = sqrt(sum_scale); σ = sqrt(sum_scale) (the
            default 1 = sqrt(1)) starts on the forward marginal, any other σ off it (the oracle
            does not care, the dataset-ideal predictor does).
        task: ``"restore"`` (I_in = darkened photograph) or ``"generate"`` (I_in = 0).
        image: the bundled photograph used as I_0, one of :data:`drdd_edu.toydata.BUNDLED_IMAGES`.
        size: image side in pixels (8 … 256; SSIM needs ≥ 7).
        predictor: ``"oracle"`` (exact) or ``"dataset_ideal"`` (MMSE over the bundled photos).
        seed: seed of the starting noise z and of η's noise (0 … 2³¹−1).
        show_step: the step the figure highlights (0-based; −1 = the last; larger values are
            clamped to the last step). Only the figure depends on it, not :func:`run_lab`.
    """

    alpha_power: float = 1.0
    beta_power: float = 1.0
    sum_scale: float = 1.0
    order: str = "simultaneous"
    steps: int = 5
    eta: float = 0.0
    noise_strength: float = 1.0
    task: str = "restore"
    image: str = "astronaut"
    size: int = 32
    predictor: str = "oracle"
    seed: int = 0
    show_step: int = -1

    def __post_init__(self) -> None:
        norm = {
            "alpha_power": _as_float(self.alpha_power, "alpha_power", 0.0, 16.0),
            "beta_power": _as_float(self.beta_power, "beta_power", 0.0, 16.0),
            "sum_scale": _as_float(self.sum_scale, "sum_scale", 0.0, 4.0, low_open=True),
            "order": _as_choice(self.order, "order", PATH_ORDERS),
            "steps": _as_int(self.steps, "steps", 1, LAB_T),
            "eta": _as_float(self.eta, "eta", 0.0, 1.0),
            "noise_strength": _as_float(self.noise_strength, "noise_strength", 0.0, 10.0),
            "task": _as_choice(self.task, "task", LAB_TASKS),
            "image": _as_choice(self.image, "image", toydata.BUNDLED_IMAGES),
            "size": _as_int(self.size, "size", 8, _MAX_SIZE),
            "predictor": _as_choice(self.predictor, "predictor", LAB_PREDICTORS),
            "seed": _as_int(self.seed, "seed", 0, 2**31 - 1),
            "show_step": _as_int(self.show_step, "show_step", -1, 2 * LAB_T),
        }
        for key, value in norm.items():  # store ints given for floats as floats: stable JSON
            object.__setattr__(self, key, value)

    @property
    def eta_applies(self) -> bool:
        """Whether :func:`run_lab` uses ``eta`` (only the ``"simultaneous"`` order does)."""
        return self.order == "simultaneous"

    def replace(self, **changes: Any) -> LabParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON types only)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON of every field, seed included; :meth:`from_json` reads it back exactly."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LabParams:
        """Build from a mapping of field names; unknown names raise ``ValueError``."""
        if not isinstance(values, Mapping):
            raise TypeError(f"expected a mapping of LabParams fields, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown LabParams field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> LabParams:
        """Inverse of :meth:`to_json`; missing fields take their defaults."""
        if not isinstance(text, (str, bytes)):
            raise TypeError(f"from_json expects a JSON string, got {type(text).__name__}")
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object of LabParams fields, got {values!r}")
        return cls.from_dict(values)


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True, eq=False)
class LabResult:
    """What :func:`run_lab` produced. Images are float32, shape (1, 3, H, W), on [-1, 1].

    Attributes:
        params: the parameters that produced it.
        states: one :class:`~drdd_edu.samplers.StepState` per network call, in order.
        path: the (ᾱ, β̄) nodes visited, shape (N+1, 2), float64, from (1, β̄_{T−1}) to (0, 0).
        schedule_curve: the schedule's (ᾱ_t, β̄_t) for t = 0 … T−1, shape (T, 2), float64.
        x0: the reference image of the metrics (restore: the true I_0; generate: the bundled
            photo nearest to the output).
        x_in: the degraded input (zeros for generation).
        x_start: the starting state I_in + σ·z.
        output: the final state, the sampler's Î_0.
        psnr, ssim: of the output against ``x0`` on the [0, 1] scale (PSNR = inf if identical).
        max_abs_error: max |output − x0| on the [-1, 1] scale.
        reference: the name of the image ``x0`` is.
        nearest_image, nearest_rmse: the bundled photo nearest to the output, and the RMS
            distance to it on the [-1, 1] scale (0: the output *is* that photo).
        sampler: ``"sample_iter"`` or ``"sample_path_iter"``.
        eta_applied: the η actually used (0 for the path sampler).
        seconds: wall time of the sampling (informative only; not part of the reproducible data).
    """

    params: LabParams
    states: tuple[StepState, ...]
    path: Tensor
    schedule_curve: Tensor
    x0: Tensor
    x_in: Tensor
    x_start: Tensor
    output: Tensor
    psnr: float
    ssim: float
    max_abs_error: float
    reference: str
    nearest_image: str
    nearest_rmse: float
    sampler: str
    eta_applied: float
    seconds: float = field(default=0.0, compare=False)

    @property
    def n_steps(self) -> int:
        """Number of network calls (length of the trajectory)."""
        return len(self.states)

    def trajectory(self, kind: str = "x_t") -> Tensor:
        """Stack one image per step: ``"x_t"``, ``"x_next"`` or ``"pred_x0"``, shape (N, 3, H, W)."""
        if kind not in ("x_t", "x_next", "pred_x0"):
            raise ValueError(f"kind must be 'x_t', 'x_next' or 'pred_x0', got {kind!r}")
        return torch.cat([getattr(st, kind) for st in self.states])

    def with_params(self, params: LabParams) -> LabResult:
        """The same result labelled with ``params``; allowed only if the two differ in
        ``show_step`` alone (which does not change the sampling)."""
        if params.replace(show_step=0) != self.params.replace(show_step=0):
            raise ValueError("with_params may only change show_step; rerun run_lab instead")
        return dataclasses.replace(self, params=params)


def lab_schedule(params: LabParams) -> Schedule:
    """The RDDM schedule of the P(x, k) family that ``params`` describe (T = :data:`LAB_T`)."""
    return rddm_schedule(
        LAB_T,
        sum_scale=params.sum_scale,
        alpha_power=params.alpha_power,
        beta_power=params.beta_power,
    )


@lru_cache(maxsize=16)
def _bank01(size: int) -> Tensor:
    """All bundled photographs, shape (N, 3, size, size), on [0, 1] (cached; never mutated)."""
    return torch.cat([toydata.bundled_image(name, size) for name in toydata.BUNDLED_IMAGES])


def run_lab(params: LabParams) -> LabResult:
    """Run one experiment; deterministic for given ``params`` (the seed is a field).

    1. schedule = :func:`lab_schedule` (``rddm_schedule`` with ``alpha_power``,
       ``beta_power``, ``sum_scale``);
    2. I_0 = the bundled photo ``image`` at ``size``; I_in = its darkened version
       (``task="restore"``) or 0 (``task="generate"``);
    3. x_start = I_in + σ·z with z ~ N(0, I) from ``torch.Generator().manual_seed(seed)``;
    4. sample from x_start: order ``"simultaneous"`` with :func:`sample_iter` (η = ``eta``,
       its σ·z terms from the same generator), the other orders with :func:`sample_path_iter`
       along :func:`removal_path` (deterministic);
    5. PSNR/SSIM of the output against I_0 (restore) or the nearest bundled photo (generate).
    """
    if not isinstance(params, LabParams):
        raise TypeError(f"run_lab expects LabParams, got {type(params).__name__}")
    schedule = lab_schedule(params)
    bank = to_model_range(_bank01(params.size)).float()  # (N, 3, H, W)
    k = toydata.BUNDLED_IMAGES.index(params.image)
    clean = bank[k : k + 1].clone()
    if params.task == "restore":
        x_in = to_model_range(toydata.darken(from_model_range(clean))).float()
    else:
        x_in = torch.zeros_like(clean)
    gen = torch.Generator().manual_seed(params.seed)
    z = torch.randn(x_in.shape, generator=gen, dtype=torch.float32)
    x_start = x_in + params.noise_strength * z
    if params.predictor == "oracle":
        predictor: OraclePredictor | DatasetIdealPredictor = OraclePredictor(clean)
    else:
        predictor = DatasetIdealPredictor(bank)

    start = time.perf_counter()
    with torch.no_grad():
        if params.order == "simultaneous":
            sampler, eta = "sample_iter", params.eta
            model = predictor.on_schedule(schedule)
            states = tuple(
                sample_iter(
                    model, x_in, schedule, params.steps, eta=eta, generator=gen, x_start=x_start
                )
            )
        else:
            sampler, eta = "sample_path_iter", 0.0
            nodes = removal_path(schedule, params.steps, params.order)
            states = tuple(sample_path_iter(predictor, x_in, nodes, x_start=x_start))
    seconds = time.perf_counter() - start

    output = states[-1].x_next
    path = torch.tensor(
        [[st.alpha_bar, st.beta_bar] for st in states]
        + [[states[-1].alpha_bar_next, states[-1].beta_bar_next]],
        dtype=torch.float64,
    )
    curve = torch.stack([schedule.alphas_cumsum, schedule.betas_cumsum], dim=1)
    rmse = (output - bank).flatten(1).pow(2).mean(1).sqrt()  # (N,)
    nearest = int(rmse.argmin())
    if params.task == "restore":
        reference, x0 = params.image, clean
    else:
        reference, x0 = toydata.BUNDLED_IMAGES[nearest], bank[nearest : nearest + 1].clone()
    out01, ref01 = from_model_range(output), from_model_range(x0)
    return LabResult(
        params=params,
        states=states,
        path=path,
        schedule_curve=curve,
        x0=x0,
        x_in=x_in,
        x_start=x_start,
        output=output,
        psnr=float(metrics.psnr(out01, ref01)[0]),
        ssim=float(metrics.ssim(out01, ref01)[0]),
        max_abs_error=float((output - x0).abs().max()),
        reference=reference,
        nearest_image=toydata.BUNDLED_IMAGES[nearest],
        nearest_rmse=float(rmse[nearest]),
        sampler=sampler,
        eta_applied=eta,
        seconds=seconds,
    )


# ----------------------------------------------------------------------------- plotting


def _hwc(img: Tensor):  # noqa: ANN202 — numpy array
    """(1, 3, H, W) on [-1, 1] → (H, W, 3) numpy array on [0, 1] (clamped) for imshow."""
    return from_model_range(img[0].detach().float()).permute(1, 2, 0).cpu().numpy()


def _columns(n: int, highlight: int, max_columns: int) -> list[int]:
    """At most ``max_columns`` step indices, evenly spread over 0 … n−1, always with the
    first, the last and the highlighted one."""
    if n <= max_columns:
        return list(range(n))
    picks = {round(i * (n - 1) / (max_columns - 1)) for i in range(max_columns)}
    picks.add(highlight)
    while len(picks) > max_columns:  # drop the pick nearest to the highlight, never the ends
        inner = [p for p in picks if p not in (0, n - 1, highlight)]
        picks.discard(min(inner, key=lambda p: abs(p - highlight)))
    return sorted(picks)


def _fmt_psnr(value: float) -> str:
    return "∞ dB (exact)" if math.isinf(value) else f"{value:.2f} dB"


def plot_lab(
    result: LabResult,
    fig: Figure | None = None,
    *,
    step: int | None = None,
    max_columns: int = 8,
) -> Figure:
    """Draw a lab result: the (ᾱ, β̄) path and a trajectory strip; a pure function.

    Left: the schedule's curve (ᾱ_t, β̄_t) in grey and the path the sampler walked, with the
    highlighted step in red. Right: per step (at most ``max_columns`` of them, evenly spread),
    the state x_t (top) and the current estimate Î_0 (bottom), then the output and the
    reference image. The title names the settings and gives PSNR/SSIM.

    Args:
        result: from :func:`run_lab`.
        fig: a Figure to draw into (cleared first); ``None`` makes a new one.
        step: the step to highlight; ``None`` takes ``result.params.show_step`` (−1 = last).
        max_columns: at most this many trajectory columns (≥ 2).

    Returns:
        the Figure (a :class:`matplotlib.figure.Figure` not registered with pyplot).
    """
    if not isinstance(result, LabResult):
        raise TypeError(f"plot_lab expects a LabResult, got {type(result).__name__}")
    if isinstance(max_columns, bool) or not isinstance(max_columns, int) or max_columns < 2:
        raise ValueError(f"max_columns must be an int ≥ 2, got {max_columns!r}")
    p = result.params
    n = result.n_steps
    step = p.show_step if step is None else step
    if isinstance(step, bool) or not isinstance(step, int) or step < -1:
        raise ValueError(f"step must be an int ≥ −1, got {step!r}")
    hi = n - 1 if step == -1 else min(step, n - 1)
    cols = _columns(n, hi, max_columns)
    ncols = len(cols) + 1  # + output / reference

    if fig is None:
        fig = Figure(figsize=(3.6 + 1.25 * ncols, 3.5), layout="constrained")
    else:
        fig.clear()
        fig.set_layout_engine("constrained")
    grid = fig.add_gridspec(2, ncols + 1, width_ratios=[2.6] + [1.0] * ncols)

    # the path in the (ᾱ, β̄) plane
    ax = fig.add_subplot(grid[:, 0])
    curve = result.schedule_curve.numpy()
    path = result.path.numpy()
    ax.plot(
        curve[:, 0], curve[:, 1], color="0.8", lw=4, label=r"schedule $(\bar\alpha_t, \bar\beta_t)$"
    )
    ax.plot(
        path[:, 0],
        path[:, 1],
        "o-",
        color=ORDER_COLORS[p.order],
        ms=3,
        lw=1.2,
        label=f"{p.order} path",
    )
    ax.plot(path[hi : hi + 2, 0], path[hi : hi + 2, 1], "-", color="tab:red", lw=2.5)
    ax.plot(path[hi, 0], path[hi, 1], "o", color="tab:red", ms=6, label=f"step {hi}")
    ax.plot(path[0, 0], path[0, 1], "k>", ms=7)
    ax.plot(0.0, 0.0, "k*", ms=9)
    top = max(float(curve[:, 1].max()), float(path[:, 1].max()))
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05 * top, 1.08 * top)
    ax.set_xlabel(r"$\bar\alpha$ (residual left)")
    ax.set_ylabel(r"$\bar\beta$ (noise left)")
    ax.legend(fontsize=8, loc="best", framealpha=0.7)
    ax.set_title(f"k_α={p.alpha_power:g}, k_β={p.beta_power:g}, β̄²_T={p.sum_scale:g}", fontsize=8)

    # trajectory strip
    for c, i in enumerate(cols):
        st = result.states[i]
        for r, img in enumerate((st.x_t, st.pred_x0)):
            a = fig.add_subplot(grid[r, c + 1])
            a.imshow(_hwc(img), interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
            if r == 0:
                a.set_title(f"step {i}\nᾱ={st.alpha_bar:.2f} β̄={st.beta_bar:.2f}", fontsize=8)
            if i == hi:
                for spine in a.spines.values():
                    spine.set_color("tab:red")
                    spine.set_linewidth(2.5)
            if c == 0:
                a.set_ylabel("$x_t$" if r == 0 else "$\\hat I_0$", fontsize=9)
    for r, (img, label) in enumerate(
        ((result.output, "output"), (result.x0, f"I_0: {result.reference}"))
    ):
        a = fig.add_subplot(grid[r, ncols])
        a.imshow(_hwc(img), interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(label, fontsize=8)

    eta = f"η={result.eta_applied:g}" if p.eta_applies else f"η ignored (={p.eta:g}): path sampler"
    fig.suptitle(
        f"{p.task} · {p.predictor} · {p.order} · {n} calls · {eta} · σ={p.noise_strength:g} · "
        f"seed {p.seed}\nPSNR {_fmt_psnr(result.psnr)}, SSIM {result.ssim:.4f} "
        f"vs {result.reference} (nearest photo: {result.nearest_image}, "
        f"RMS {result.nearest_rmse:.2g})",
        fontsize=9,
    )
    return fig


def figure_png(fig: Figure, dpi: int = LAB_DPI) -> bytes:
    """Render ``fig`` to PNG bytes (no timestamp metadata: same figure, same bytes).

    The figure must meet the course standard (:func:`drdd_edu.notebook.check_figure`).
    """
    check_figure(fig, "path lab", dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


# ----------------------------------------------------------------------------- widgets


class PathLab:
    """An ipywidgets app over :func:`run_lab` and :func:`plot_lab`.

    Attributes:
        params: the current :class:`LabParams`.
        result: the current :class:`LabResult` (``run_lab(params)``).
        figure: the current Figure (a new object after every change).
        png: that figure as PNG bytes (what the Output widget shows).
        controls: one widget per LabParams field, keyed by field name; setting
            ``controls[name].value`` updates ``params``, ``result`` and ``figure`` at once.
        step_slider: ``controls["show_step"]``, which scrubs the trajectory without rerunning.
        output: the Output widget holding the figure; status: an HTML line with the metrics
            (or the error of a rejected setting); export_text: the exported JSON.
        widget: the whole app (display it, or just put ``lab`` last in a cell).

    Args:
        params: the starting settings (default ``LabParams()``).
        dpi: resolution of the shown figure.
        max_columns: passed to :func:`plot_lab`.
    """

    def __init__(
        self,
        params: LabParams | None = None,
        *,
        dpi: int = LAB_DPI,
        max_columns: int = 8,
    ) -> None:
        import ipywidgets as w

        params = LabParams() if params is None else params
        if not isinstance(params, LabParams):
            raise TypeError(f"PathLab expects LabParams, got {type(params).__name__}")
        self.dpi = int(dpi)
        self.max_columns = max_columns
        self._syncing = False
        self.n_updates = 0
        style = {"description_width": "105px"}
        wide = w.Layout(width="330px")

        def slider(cls: type, name: str, desc: str, **kw: Any) -> w.Widget:
            return cls(
                value=getattr(params, name),
                description=desc,
                continuous_update=False,
                style=style,
                layout=wide,
                **kw,
            )

        def dropdown(name: str, desc: str, options: tuple) -> w.Dropdown:
            return w.Dropdown(
                options=options, value=getattr(params, name), description=desc, style=style
            )

        self.controls: dict[str, w.ValueWidget] = {
            "alpha_power": slider(
                w.FloatSlider, "alpha_power", "α power k_α", min=0, max=4, step=0.25
            ),
            "beta_power": slider(
                w.FloatSlider, "beta_power", "β power k_β", min=0, max=4, step=0.25
            ),
            "sum_scale": slider(
                w.FloatLogSlider, "sum_scale", "sum_scale β̄²_T", base=10, min=-2, max=0.5, step=0.25
            ),
            "order": dropdown("order", "order", PATH_ORDERS),
            "steps": slider(w.IntSlider, "steps", "steps", min=1, max=50),
            "eta": slider(w.FloatSlider, "eta", "η", min=0, max=1, step=0.1),
            "noise_strength": slider(
                w.FloatSlider, "noise_strength", "start noise σ", min=0, max=2, step=0.05
            ),
            "task": dropdown("task", "task", LAB_TASKS),
            "image": dropdown("image", "image", toydata.BUNDLED_IMAGES),
            "size": dropdown("size", "size", tuple(sorted({16, 32, 64, params.size}))),
            "predictor": dropdown("predictor", "predictor", LAB_PREDICTORS),
            "seed": w.BoundedIntText(
                value=params.seed, min=0, max=2**31 - 1, description="seed", style=style
            ),
            "show_step": w.IntSlider(
                value=0,
                min=0,
                max=1,
                description="show step",
                continuous_update=True,
                style=style,
                layout=w.Layout(width="520px"),
            ),
        }
        self.step_slider = self.controls["show_step"]
        self.output = w.Output()
        self.status = w.HTML()
        self.export_text = w.Textarea(
            value="",
            placeholder="press 'export' for the JSON of these settings",
            layout=w.Layout(width="100%", height="60px"),
        )
        self.export_button = w.Button(
            description="export", icon="download", tooltip="JSON of all settings (seed included)"
        )
        self.export_button.on_click(lambda _button: self.export())
        c = self.controls
        self.widget = w.VBox(
            [
                w.HTML(
                    "<b>Path-independence lab</b> — RDDM removal orders with closed-form predictors"
                ),
                w.HBox(
                    [
                        w.VBox(
                            [c["alpha_power"], c["beta_power"], c["sum_scale"], c["noise_strength"]]
                        ),
                        w.VBox([c["order"], c["steps"], c["eta"], c["seed"]]),
                        w.VBox([c["task"], c["image"], c["size"], c["predictor"]]),
                    ]
                ),
                self.output,
                w.HBox([self.step_slider, self.status]),
                w.HBox([self.export_button, self.export_text]),
            ]
        )
        self.params = params
        self.result = run_lab(params)
        self.figure: Figure | None = None
        self.png = b""
        self._sync_controls()
        self._render()
        for ctrl in self.controls.values():
            ctrl.observe(self._on_change, names="value")

    # -- state --------------------------------------------------------------------------------

    def _values(self) -> dict[str, Any]:
        values = {name: ctrl.value for name, ctrl in self.controls.items()}
        values["show_step"] = self.params.show_step
        return values

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        values = self._values()
        if change["owner"] is self.step_slider:
            values["show_step"] = int(change["new"])
        try:
            params = LabParams.from_dict(values)
        except (TypeError, ValueError) as err:
            self.status.value = f"<span style='color:#b00'>rejected: {err}</span>"
            return
        self.update(params)

    def update(self, params: LabParams) -> None:
        """Show ``params``: rerun :func:`run_lab` unless only ``show_step`` changed, redraw."""
        if not isinstance(params, LabParams):
            raise TypeError(f"update expects LabParams, got {type(params).__name__}")
        if params.replace(show_step=0) == self.params.replace(show_step=0):
            result = self.result.with_params(params)
        else:
            result = run_lab(params)
        self.params, self.result = params, result
        self._sync_controls()
        self._render()

    def set_params(self, params: LabParams | Mapping[str, Any] | str) -> None:
        """Load settings (LabParams, a dict of fields, or exported JSON) into every control."""
        if isinstance(params, str):
            params = LabParams.from_json(params)
        elif isinstance(params, Mapping):
            params = LabParams.from_dict(params)
        if not isinstance(params, LabParams):
            raise TypeError(
                f"set_params expects LabParams, a dict or JSON, got {type(params).__name__}"
            )
        self._syncing = True
        try:
            for name, ctrl in self.controls.items():
                if name == "show_step":
                    continue
                value = getattr(params, name)
                if hasattr(ctrl, "options") and value not in ctrl.options:
                    ctrl.options = tuple(sorted(set(ctrl.options) | {value}))
                if name == "sum_scale":  # a log slider: min/max are exponents of 10
                    exponent = math.log10(value)
                    ctrl.min, ctrl.max = min(ctrl.min, exponent), max(ctrl.max, exponent)
                elif hasattr(ctrl, "max"):
                    ctrl.min, ctrl.max = min(ctrl.min, value), max(ctrl.max, value)
                ctrl.value = value
        finally:
            self._syncing = False
        self.update(params)

    def export(self) -> str:
        """The JSON of the current settings (seed included); also shown in ``export_text``.

        ``plot_lab(run_lab(LabParams.from_json(lab.export())))`` redraws the shown figure.
        """
        text = self.params.to_json()
        self.export_text.value = text
        return text

    def _sync_controls(self) -> None:
        """Step slider range and η availability follow the result (no reruns while syncing)."""
        self._syncing = True
        try:
            n = self.result.n_steps
            s = self.step_slider
            s.max = max(n - 1, 1)  # an IntSlider needs max > min to be draggable
            s.disabled = n == 1
            shown = n - 1 if self.params.show_step == -1 else min(self.params.show_step, n - 1)
            s.value = shown
            self.controls["eta"].disabled = not self.params.eta_applies
        finally:
            self._syncing = False

    def _render(self) -> None:
        self.figure = plot_lab(self.result, max_columns=self.max_columns)
        self.png = figure_png(self.figure, self.dpi)
        self.output.outputs = (
            {
                "output_type": "display_data",
                "data": {
                    "image/png": base64.b64encode(self.png).decode("ascii"),
                    "text/plain": f"<PathLab figure: {self.params.to_json()}>",
                },
                "metadata": {},
            },
        )
        r = self.result
        self.status.value = (
            f"PSNR {_fmt_psnr(r.psnr)} · SSIM {r.ssim:.4f} vs {r.reference} · "
            f"{r.n_steps} calls · {r.sampler} · η used {r.eta_applied:g} · {1e3 * r.seconds:.0f} ms"
        )
        self.n_updates += 1

    # -- display ------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"PathLab({self.params!r})"
