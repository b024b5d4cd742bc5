"""Data efficiency (DRDD Table C.8): RDDM and DRDD trained on nested 25/50/75/100 % fractions of
the paired data (task-stratified, :meth:`~drdd_edu.data.AllInOne5.paired_subset`). DRDD's noise
net needs only unpaired clean images, so it is the same at every fraction.

Rows: ``{"method", "fraction", "task", "psnr", "ssim", "n"}`` per fraction, task and
``"average"``.
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .coupled import METHODS, method_scores
from .evaluation import task_rows
from .sizes import SizeSettings

__all__ = ["n_jobs", "execute", "plot"]


def n_jobs(settings: SizeSettings) -> int:
    """The noise net once, then per fraction two trainings and two evaluations."""
    return 1 + 4 * len(settings.fractions)


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Score both methods at every fraction of ``ctx.settings.fractions``."""
    rows = []
    for fraction in ctx.settings.fractions:
        scores = method_scores(ctx, fraction)
        for method in METHODS:
            rows += task_rows(scores[method], {"method": method, "fraction": float(fraction)})
    return rows


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """Average PSNR and SSIM against the paired-data fraction, one line per method."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        for i, method in enumerate(METHODS):
            pts = sorted(
                (r["fraction"], r[metric])
                for r in rows
                if r["method"] == method and r["task"] == "average"
            )
            ax.plot(*zip(*pts, strict=True), "o-", color=f"C{i}", label=method.upper())
        ax.set_xlabel("fraction of the paired training data")
        ax.set_ylabel("average PSNR (dB)" if metric == "psnr" else "average SSIM")
        ax.set_xticks(sorted({r["fraction"] for r in rows}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
