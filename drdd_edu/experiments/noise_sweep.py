"""Noise strength σ (DRDD §4.5 and its sweep: best at 1.0, stable for 0.8–1.3) — and the search
for an interior optimum (issue 14 D).

* ``"test"`` sweep: the residual net trained at σ = 1.0 (the coupled comparison's) sampled from
  I_in + σ·z for every σ in ``sigmas_test`` — a test-time change of the noise strength;
* ``"train"`` sweep: one residual net per σ in ``sigmas_train``, trained (D2) and sampled at
  that σ;
* ``"noisy_only"`` sweep: like ``"train"`` at ``sigmas_noisy_only``, but the residual net sees
  only the noisy state I_t, not I_in (``TrainConfig.residual_sees_input = False``) — the only
  setting in which the added noise harmonises everything the network sees.

Every point is scored in each DRDD variant (:data:`~drdd_edu.experiments.context.DRDD_VARIANTS`:
the shared unconditional noise net, the σ-independent conditioned one, or exact noise removal),
all on the size's shared noise nets (β̄_{T−1} = 1.6 covers every σ ≤ 1.6). Rows:
``{"sweep", "method", "sigma", "task", "psnr", "ssim", "psnr_in", "ssim_in", "n"}``
(``*_in``: the degraded input). :func:`interior_optimum` says whether a sweep peaks inside its
σ range.
"""

from __future__ import annotations

from typing import Any

from ..colors import METHOD_COLORS
from .context import DRDD_VARIANTS, Context
from .evaluation import task_rows
from .runs import residual_config
from .sizes import SizeSettings

__all__ = [
    "n_jobs",
    "execute",
    "plot",
    "interior_optimum",
    "sweep_values",
    "PAPER_OPTIMUM",
    "SWEEPS",
]

#: the noise strength the DRDD paper measures as best
PAPER_OPTIMUM: float = 1.0
SWEEPS: tuple[str, ...] = ("test", "train", "noisy_only")


def _points(s: SizeSettings) -> list[tuple[str, float, float]]:
    """(sweep, σ at training, σ at sampling) of every sweep point."""
    points = [("test", 1.0, sig) for sig in s.sigmas_test]
    points += [("train", sig, sig) for sig in s.sigmas_train]
    return points + [("noisy_only", sig, sig) for sig in s.sigmas_noisy_only]


def n_jobs(settings: SizeSettings) -> int:
    """Two noise nets, the residual nets (σ = 1, each train σ, each noisy-only σ) and one
    evaluation per sweep point and variant."""
    residual_nets = len({1.0, *settings.sigmas_train}) + len(settings.sigmas_noisy_only)
    return 2 + residual_nets + len(DRDD_VARIANTS) * len(_points(settings))


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Run the three sweeps; returns rows for every (sweep, variant, σ, task)."""
    s = ctx.settings
    ctx.noise_net()  # the shared noise nets first
    ctx.noise_net(conditioned=True)
    ctx.ensure(residual_config(s, 1.0, 1.0, ctx.seed, ctx.device))  # then the σ = 1 net
    rows = []
    metrics = ("psnr", "ssim", "psnr_in", "ssim_in")
    for sweep, train_sigma, sigma in _points(s):
        cfg = residual_config(
            s, train_sigma, 1.0, ctx.seed, ctx.device, sees_input=sweep != "noisy_only"
        )
        for variant in DRDD_VARIANTS:
            restorer = ctx.drdd(cfg, sigma, variant)
            scores = ctx.evaluate(restorer, f"{sweep} {variant} σ={sigma:g}")
            fixed = {"sweep": sweep, "method": variant, "sigma": float(sigma)}
            rows += task_rows(scores, fixed, metrics)
    return rows


def sweep_values(
    rows: list[dict[str, Any]],
    sweep: str,
    method: str,
    metric: str = "psnr",
    task: str = "average",
) -> dict[float, float]:
    """{σ: ``metric``} of one result's ``sweep`` for ``method`` on ``task``; rows written before
    the DRDD variants (no ``method`` column) count as ``drdd``."""
    return {
        float(r["sigma"]): float(r[metric])
        for r in rows
        if r["sweep"] == sweep and r.get("method", "drdd") == method and r["task"] == task
    }


def interior_optimum(
    rows: list[dict[str, Any]], sweep: str, method: str, metric: str = "psnr", task: str = "average"
) -> tuple[float, bool]:
    """(the σ with the best ``metric`` in ``sweep`` for ``method``, whether it lies strictly
    inside the swept σ range). Old rows without a ``method`` column count as ``drdd``."""
    pts = sorted(sweep_values(rows, sweep, method, metric, task).items())
    if not pts:
        raise KeyError(f"no rows for sweep {sweep!r}, method {method!r}, task {task!r}")
    best = max(range(len(pts)), key=lambda i: pts[i][1])
    return pts[best][0], 0 < best < len(pts) - 1


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """Average PSNR against σ, one panel per sweep present in ``rows``, one line per DRDD variant
    (old rows without a ``method`` are ``drdd``), the degraded input as a black dashed line and
    the paper's optimum σ = 1.0 marked."""
    import matplotlib.pyplot as plt

    sweeps = [w for w in SWEEPS if any(r["sweep"] == w for r in rows)]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.8), sharey=True)
    axes = [axes] if len(sweeps) == 1 else list(axes)
    labels = {
        "test": "test-time σ (net trained at σ = 1)",
        "train": "σ at training = sampling",
        "noisy_only": "σ, residual net sees only I_t",
    }
    avg = [r for r in rows if r["task"] == "average"]
    for ax, sweep in zip(axes, sweeps, strict=True):
        for method in DRDD_VARIANTS:
            pts = sorted(sweep_values(rows, sweep, method).items())
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", color=METHOD_COLORS[method], label=method)
        inputs = [r["psnr_in"] for r in avg if "psnr_in" in r]
        if inputs:
            ax.axhline(inputs[0], color="k", ls="--", lw=1, label="input (do nothing)")
        ax.axvline(PAPER_OPTIMUM, ls=":", color="gray", lw=1)
        ax.text(
            PAPER_OPTIMUM,
            1.0,
            " paper's optimum",
            transform=ax.get_xaxis_transform(),
            va="top",
            fontsize=8,
            color="gray",
        )
        ax.set_xlabel(labels[sweep])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("average PSNR (dB)")
    axes[-1].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
