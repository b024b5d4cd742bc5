"""Coupled vs decoupled (DRDD Table 8): one RDDM net (``pred_res_noise``, residual and noise
removed together, R2/R3) against DRDD's noise net + residual net (D1/D2, residual first, then
noise), with the same total number of optimiser steps and the same paired data.

DRDD comes in three variants (:data:`~drdd_edu.experiments.context.DRDD_VARIANTS`): ``drdd``
(unconditional denoiser on unpaired clean images — the paper's text), ``drdd_cond`` (denoiser
conditioned on I_in, trained on the pairs — the paper's code) and ``drdd_exact`` (no denoiser:
the injected noise is subtracted exactly — Table 8's "DRDD without denoiser").

Two reference rows score DRDD's noise stage alone on clean test patches plus σ = 1 noise (what
DRDD's output would be after a perfect residual stage): ``noise_stage_wiener``, the best
shift-invariant linear denoiser fitted on the unpaired clean pool (:mod:`drdd_edu.wiener`),
and ``noise_stage_drdd``, the unconditional noise net itself.

Rows: ``{"method", "task", "psnr", "ssim", "psnr_in", "ssim_in", "n"}`` for the five tasks and
``"average"``; ``psnr_in``/``ssim_in`` score the degraded input (the do-nothing baseline).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..colors import METHOD_COLORS
from ..degradations import TASKS
from ..diffusion import to_model_range
from ..samplers import sample_noise_stage
from ..wiener import fit_wiener
from .context import DRDD_VARIANTS, Context
from .evaluation import Denoiser, rddm_restorer, task_rows
from .runs import rddm_config, residual_config
from .sizes import SizeSettings

__all__ = [
    "METHODS",
    "REFERENCES",
    "METHOD_COLORS",
    "n_jobs",
    "execute",
    "plot",
    "check_rows",
    "format_table",
]

METHODS: tuple[str, ...] = ("rddm", *DRDD_VARIANTS)
REFERENCES: tuple[str, ...] = ("noise_stage_wiener", "noise_stage_drdd")
SIGMA = 1.0  # the paper's noise strength


def n_jobs(settings: SizeSettings) -> int:
    """Trainings (noise, conditioned noise, residual, RDDM), method evaluations (four) and the
    two noise-stage references."""
    return 4 + len(METHODS) + len(REFERENCES)


def method_scores(
    ctx: Context,
    fraction: float = 1.0,
    settings: SizeSettings | None = None,
    pool: str = "target",
    sigma: float = SIGMA,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per-task scores of RDDM and every DRDD variant trained on ``fraction`` of the paired
    data, DRDD at noise strength ``sigma`` and RDDM with the matching sum_scale = σ²;
    ``settings`` (default: the context's) and ``pool`` choose the networks' study (the
    data-efficiency study trains its own on another build, see
    :func:`~drdd_edu.experiments.sizes.efficiency_settings`)."""
    s = settings or ctx.settings
    res_cfg = residual_config(s, sigma, fraction, ctx.seed, ctx.device)
    rddm_cfg = rddm_config(s, fraction, ctx.seed, ctx.device, sum_scale=sigma**2)
    rddm_model = ctx.model(ctx.ensure(rddm_cfg))
    rddm = rddm_restorer(rddm_model, rddm_cfg.make_schedule(), ctx.settings.rddm_sampling_steps)
    what = f"f={fraction:g} σ={sigma:g}"
    scores = {"rddm": ctx.evaluate(rddm, f"rddm {what}")}
    for variant in DRDD_VARIANTS:
        restorer = ctx.drdd(res_cfg, sigma, variant, s, pool)
        scores[variant] = ctx.evaluate(restorer, f"{variant} {what}")
    return scores


def noise_stage_scores(ctx: Context) -> dict[str, dict[str, dict[str, float]]]:
    """The two references: Wiener (fitted on the unpaired clean pool) and the unconditional noise
    net, each denoising clean test patches plus σ = 1 noise."""
    pool = to_model_range(ctx.data().target_dataset().clean_u8.float() / 255.0)
    wiener = fit_wiener(pool, SIGMA)
    noise_model, noise_sch = ctx.noise_net()
    steps = ctx.settings.drdd_noise_sampling_steps

    def net(noisy: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        return sample_noise_stage(noise_model, noisy, noise_sch, SIGMA, steps, x_in)

    def linear(noisy: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        return wiener(noisy.cpu()).to(noisy.device)

    denoisers: dict[str, Denoiser] = {"noise_stage_wiener": linear, "noise_stage_drdd": net}
    return {name: ctx.evaluate_noise_stage(d, SIGMA, name) for name, d in denoisers.items()}


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Train (or reuse) the networks, score every method per task, then the references."""
    scores = method_scores(ctx, 1.0)
    scores.update(noise_stage_scores(ctx))
    metrics = ("psnr", "ssim", "psnr_in", "ssim_in")
    return [
        row for m in (*METHODS, *REFERENCES) for row in task_rows(scores[m], {"method": m}, metrics)
    ]


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """Grouped bars per task (PSNR left, SSIM right), one per method present in ``rows`` (results
    written before the DRDD variants have only RDDM and DRDD), the input as a black bar marker
    and the Wiener noise-stage reference as a grey dashed marker."""
    import matplotlib.pyplot as plt
    import numpy as np

    present = {r["method"] for r in rows}
    methods = [m for m in METHODS if m in present]
    tasks = [*TASKS, "average"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(tasks))
    w = 0.8 / len(methods)
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        for i, method in enumerate(methods):
            vals = [_get(rows, method, t)[metric] for t in tasks]
            offset = (i - (len(methods) - 1) / 2) * w
            ax.bar(x + offset, vals, w, label=method, color=METHOD_COLORS[method])
        inp = [_get(rows, methods[0], t)[f"{metric}_in"] for t in tasks]
        ax.scatter(x, inp, marker="_", s=500, color="k", zorder=3, label="input (do nothing)")
        if "noise_stage_wiener" in present:
            ref = [_get(rows, "noise_stage_wiener", t)[metric] for t in tasks]
            ax.scatter(
                x,
                ref,
                marker="_",
                s=500,
                color=METHOD_COLORS["noise_stage_wiener"],
                linestyle="--",
                zorder=3,
                label="Wiener noise stage (σ = 1)",
            )
        ax.set_xticks(x, tasks, rotation=20, fontsize=9)
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def check_rows(rows: list[dict[str, Any]]) -> None:
    """Check the structure of a coupled-experiment table (no claim about who wins).

    One row per method and task (the five tasks and ``"average"``); methods ``rddm`` and ``drdd``
    at least (older results have only these), the others from :data:`METHODS` and
    :data:`REFERENCES`; every score finite, SSIMs in [−1, 1], ``n ≥ 1``; the same ``n`` for every
    task of a method (stratified); the average row the mean of the task rows (to 1e-3: stored
    tables are rounded); and the same input scores (``psnr_in``, ``ssim_in``, ``n``) for every
    method of a task, since all methods are scored on the same test patches.

    Raises:
        ValueError: naming the first row or method that breaks a rule.
    """
    keys = ("psnr", "ssim", "psnr_in", "ssim_in")
    by = {(r.get("method"), r.get("task")): r for r in rows}
    methods = {m for m, _ in by}
    if not {"rddm", "drdd"} <= methods <= {*METHODS, *REFERENCES}:
        raise ValueError(
            f"coupled table: methods {sorted(map(str, methods))} (need rddm and drdd, "
            f"others from {(*METHODS, *REFERENCES)})"
        )
    wanted = {(m, t) for m in methods for t in (*TASKS, "average")}
    if set(by) != wanted or len(by) != len(rows):
        raise ValueError(
            f"coupled table: not one row per method and task (missing {sorted(wanted - set(by))}, "
            f"{len(rows) - len(by)} duplicated)"
        )
    for (method, task), r in by.items():
        if missing := [k for k in (*keys, "n") if k not in r]:
            raise ValueError(f"coupled table: {method}/{task}: no column {missing}")
        values = [float(r[k]) for k in keys]
        if not all(math.isfinite(v) for v in values) or not all(-1 <= v <= 1 for v in values[1::2]):
            raise ValueError(
                f"coupled table: {method}/{task}: scores {values} not finite or SSIM outside [-1, 1]"
            )
        if int(r["n"]) < 1:
            raise ValueError(f"coupled table: {method}/{task}: n = {r['n']} < 1")
        ref = by["rddm", task]
        if any(abs(float(ref[k]) - float(r[k])) > 1e-9 for k in ("psnr_in", "ssim_in", "n")):
            raise ValueError(
                f"coupled table: {method}/{task}: input scores or n differ from rddm's"
            )
    for method in methods:
        per_task = [by[method, t] for t in TASKS]
        if len({int(r["n"]) for r in per_task}) != 1:
            raise ValueError(f"coupled table: {method}: not stratified (n per task differs)")
        for key in ("psnr", "ssim"):
            mean = sum(float(r[key]) for r in per_task) / len(per_task)
            if abs(float(by[method, "average"][key]) - mean) > 1e-3 * max(1.0, abs(mean)):
                raise ValueError(
                    f"coupled table: {method}: average {key} is not the mean over tasks"
                )


def format_table(rows: list[dict[str, Any]]) -> str:
    """The table as text: one line per task (and the average), the input and every method present
    as ``PSNR / SSIM``."""
    by = {(r["method"], r["task"]): r for r in rows}
    methods = [m for m in (*METHODS, *REFERENCES) if (m, "average") in by]
    lines = [
        f"{'task':10s} {'input':>14s} "
        + " ".join(f"{m:>18s}" for m in methods)
        + "   (PSNR dB / SSIM)"
    ]
    for task in (*TASKS, "average"):
        ref = by["rddm", task]
        cells = " ".join(
            f"{float(by[m, task]['psnr']):9.2f} / {float(by[m, task]['ssim']):.3f}" for m in methods
        )
        lines.append(
            f"{task:10s} {float(ref['psnr_in']):6.2f} / {float(ref['ssim_in']):.3f} {cells}"
        )
    return "\n".join(lines)


def _get(rows: list[dict[str, Any]], method: str, task: str) -> dict[str, Any]:
    return next(r for r in rows if r["method"] == method and r["task"] == task)
