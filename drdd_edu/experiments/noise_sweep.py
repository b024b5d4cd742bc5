"""Noise strength σ (DRDD §4.5 and its sweep: best at 1.0, stable for 0.8–1.3).

* ``"test"`` sweep: the residual net trained at σ = 1.0 (the coupled comparison's) sampled from
  I_in + σ·z for every σ in ``sigmas_test`` — a test-time change of the noise strength;
* ``"train"`` sweep: one residual net per σ in ``sigmas_train``, trained (D2) and sampled at
  that σ.

Both use the size's shared noise net (β̄_{T−1} = 1.6 covers every σ ≤ 1.6). Rows:
``{"sweep": "test"|"train", "sigma", "task", "psnr", "ssim", "n"}``.
"""

from __future__ import annotations

from typing import Any

from ..degradations import TASKS
from .context import Context
from .evaluation import task_rows
from .runs import residual_config
from .sizes import SizeSettings

__all__ = ["n_jobs", "execute", "plot", "PAPER_OPTIMUM"]

#: the noise strength the DRDD paper measures as best
PAPER_OPTIMUM: float = 1.0


def n_jobs(settings: SizeSettings) -> int:
    """Noise net + σ = 1 net + one net per train σ ≠ 1, and one evaluation per sweep point."""
    residual_nets = len({1.0, *settings.sigmas_train})
    return 1 + residual_nets + len(settings.sigmas_test) + len(settings.sigmas_train)


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Run both sweeps; returns rows for every (sweep, σ, task)."""
    s = ctx.settings
    ctx.noise_net()  # the shared noise net first

    def scores_at(train_sigma: float, sample_sigma: float) -> dict[str, dict[str, float]]:
        restorer = ctx.drdd(
            residual_config(s, train_sigma, 1.0, ctx.seed, ctx.device), sample_sigma
        )
        return ctx.evaluate(restorer, f"σ_train={train_sigma:g} σ={sample_sigma:g}")

    rows = []
    ctx.ensure(residual_config(s, 1.0, 1.0, ctx.seed, ctx.device))  # train the σ = 1 net first
    points = [("test", 1.0, sig) for sig in s.sigmas_test]
    points += [("train", sig, sig) for sig in s.sigmas_train]
    for sweep, train_sigma, sigma in points:
        rows += task_rows(scores_at(train_sigma, sigma), {"sweep": sweep, "sigma": float(sigma)})
    return rows


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """PSNR against σ: test-time (left) and train-time (right) sweeps; thin lines per task,
    a thick line for the average, the paper's optimum σ = 1.0 marked."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    labels = {"test": "test-time σ (net trained at σ = 1)", "train": "σ at training = sampling"}
    for ax, sweep in zip(axes, ("test", "train"), strict=True):
        for i, task in enumerate((*TASKS, "average")):
            pts = sorted(
                (r["sigma"], r["psnr"]) for r in rows if r["sweep"] == sweep and r["task"] == task
            )
            if not pts:
                continue
            avg = task == "average"
            ax.plot(
                *zip(*pts, strict=True),
                "o-" if avg else "-",
                lw=3 if avg else 1,
                color="k" if avg else f"C{i}",
                alpha=1 if avg else 0.7,
                label=task,
            )
        ax.axvline(PAPER_OPTIMUM, ls="--", color="gray", lw=1)
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
    axes[0].set_ylabel("PSNR (dB)")
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
