"""Data efficiency (DRDD Table C.8): RDDM and DRDD trained on nested 25/50/75/100 % fractions of
the paired data (task-stratified, :meth:`~drdd_edu.data.AllInOne5.paired_subset`), in every DRDD
variant. DRDD's unconditional noise net needs only unpaired clean images, so it is the same at
every fraction; the conditioned one (``drdd_cond``) sees the pairs, so it is trained per fraction.

Rows: ``{"method", "fraction", "task", "psnr", "ssim", "psnr_in", "ssim_in", "n"}`` per fraction,
task and ``"average"`` (``*_in``: the degraded input, the do-nothing baseline).
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .coupled import METHOD_COLORS, METHODS, method_scores
from .evaluation import task_rows
from .sizes import SizeSettings

__all__ = ["n_jobs", "execute", "plot"]


def n_jobs(settings: SizeSettings) -> int:
    """The noise net once, then per fraction three trainings (residual, RDDM, conditioned noise
    net) and one evaluation per method."""
    return 1 + (3 + len(METHODS)) * len(settings.fractions)


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Score every method at every fraction of ``ctx.settings.fractions``."""
    rows = []
    metrics = ("psnr", "ssim", "psnr_in", "ssim_in")
    for fraction in ctx.settings.fractions:
        scores = method_scores(ctx, fraction)
        for method in METHODS:
            fixed = {"method": method, "fraction": float(fraction)}
            rows += task_rows(scores[method], fixed, metrics)
    return rows


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """Average PSNR and SSIM against the paired-data fraction, one line per method present in
    ``rows``, and the degraded input (the do-nothing baseline) as a black dashed line."""
    import matplotlib.pyplot as plt

    present = {r["method"] for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        for method in (m for m in METHODS if m in present):
            pts = sorted(
                (r["fraction"], r[metric])
                for r in rows
                if r["method"] == method and r["task"] == "average"
            )
            ax.plot(*zip(*pts, strict=True), "o-", color=METHOD_COLORS[method], label=method)
        inputs = [r[f"{metric}_in"] for r in rows if r["task"] == "average" and f"{metric}_in" in r]
        if inputs:  # results written before the baseline was stored have none
            ax.axhline(inputs[0], color="k", ls="--", lw=1, label="input (do nothing)")
        ax.set_xlabel("fraction of the paired training data")
        ax.set_ylabel("average PSNR (dB)" if metric == "psnr" else "average SSIM")
        ax.set_xticks(sorted({r["fraction"] for r in rows}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
