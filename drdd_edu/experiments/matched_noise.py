"""Coupled vs decoupled at matched noise (issue 14 D): for every σ in ``matched_sigmas`` (0.2 and
1.0), RDDM trained and sampled with sum_scale = σ² (so its start I_in + β̄_T·ε has the same noise
strength as DRDD's I_in + σ·z) against every DRDD variant at σ — the coupled experiment's
comparison (:func:`~drdd_edu.experiments.coupled.method_scores`) repeated at each σ. At σ = 1 the
networks are the coupled experiment's (reused).

Rows: ``{"sigma", "method", "task", "psnr", "ssim", "psnr_in", "ssim_in", "n"}``
(``*_in``: the degraded input, the do-nothing baseline).
"""

from __future__ import annotations

from typing import Any

from ..colors import METHOD_COLORS
from .context import Context
from .coupled import METHODS, method_scores
from .evaluation import task_rows
from .sizes import SizeSettings

__all__ = ["n_jobs", "execute", "plot"]


def n_jobs(settings: SizeSettings) -> int:
    """Two noise nets, then per σ a residual and an RDDM net and one evaluation per method."""
    return 2 + (2 + len(METHODS)) * len(settings.matched_sigmas)


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Score RDDM (sum_scale = σ²) and every DRDD variant (at σ) for every matched σ."""
    ctx.noise_net()
    ctx.noise_net(conditioned=True)
    metrics = ("psnr", "ssim", "psnr_in", "ssim_in")
    rows: list[dict[str, Any]] = []
    for sigma in ctx.settings.matched_sigmas:
        scores = method_scores(ctx, 1.0, sigma=float(sigma))
        for method in METHODS:
            rows += task_rows(scores[method], {"sigma": float(sigma), "method": method}, metrics)
    return rows


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """Average PSNR (left) and SSIM (right) against the matched noise strength σ, one line per
    method, the degraded input as a black dashed line."""
    import matplotlib.pyplot as plt

    avg = [r for r in rows if r["task"] == "average"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        for method in METHODS:
            pts = sorted((r["sigma"], r[metric]) for r in avg if r["method"] == method)
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", color=METHOD_COLORS[method], label=method)
        ax.axhline(avg[0][f"{metric}_in"], color="k", ls="--", lw=1, label="input (do nothing)")
        ax.set_xlabel("matched noise strength σ (RDDM: sum_scale = σ²)")
        ax.set_ylabel("average PSNR (dB)" if metric == "psnr" else "average SSIM")
        ax.set_xticks(sorted({r["sigma"] for r in avg}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
