"""Coupled vs decoupled (DRDD Table 8): one RDDM net (``pred_res_noise``, residual and noise
removed together, R2/R3) against DRDD's noise net + residual net (D1/D2, residual first, then
noise), with the same total number of optimiser steps and the same paired data.

Rows: ``{"method": "rddm"|"drdd", "task", "psnr", "ssim", "psnr_in", "ssim_in", "n"}`` for the
five tasks and ``"average"``.
"""

from __future__ import annotations

from typing import Any

from ..degradations import TASKS
from .context import Context
from .evaluation import rddm_restorer, task_rows
from .runs import rddm_config, residual_config
from .sizes import SizeSettings

__all__ = ["n_jobs", "execute", "plot"]

METHODS: tuple[str, ...] = ("rddm", "drdd")


def n_jobs(settings: SizeSettings) -> int:
    """Trainings (noise, residual, RDDM) + evaluations (two)."""
    return 3 + 2


def method_scores(ctx: Context, fraction: float = 1.0) -> dict[str, dict[str, dict[str, float]]]:
    """Per-task scores of RDDM and DRDD (σ = 1) trained on ``fraction`` of the paired data."""
    s = ctx.settings
    drdd = ctx.drdd(residual_config(s, 1.0, fraction, ctx.seed, ctx.device), 1.0)
    rddm_cfg = rddm_config(s, fraction, ctx.seed, ctx.device)
    rddm_model = ctx.model(ctx.ensure(rddm_cfg))
    rddm = rddm_restorer(rddm_model, rddm_cfg.make_schedule(), s.rddm_sampling_steps)
    return {
        "rddm": ctx.evaluate(rddm, f"rddm f={fraction:g}"),
        "drdd": ctx.evaluate(drdd, f"drdd f={fraction:g}"),
    }


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Train (or reuse) the three networks and score both methods per task."""
    scores = method_scores(ctx, 1.0)
    metrics = ("psnr", "ssim", "psnr_in", "ssim_in")
    return [row for m in METHODS for row in task_rows(scores[m], {"method": m}, metrics)]


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """Grouped bars per task (PSNR left, SSIM right), RDDM vs DRDD, the input as a marker."""
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = [*TASKS, "average"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(tasks))
    w = 0.38
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        for i, method in enumerate(METHODS):
            vals = [_get(rows, method, t)[metric] for t in tasks]
            ax.bar(x + (i - 0.5) * w, vals, w, label=method.upper(), color=f"C{i}")
        inp = [_get(rows, "rddm", t)[f"{metric}_in"] for t in tasks]
        ax.scatter(x, inp, marker="_", s=400, color="k", zorder=3, label="input")
        ax.set_xticks(x, tasks, rotation=20)
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _get(rows: list[dict[str, Any]], method: str, task: str) -> dict[str, Any]:
    return next(r for r in rows if r["method"] == method and r["task"] == task)
