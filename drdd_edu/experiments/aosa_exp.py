"""AOSA (RDDM §3.3): which objective does automatic objective selection pick, per task and for
generation? One ``auto_res_noise`` network per task (paired data of that task only) and one for
generation (I_in = 0, unpaired clean images) learns λ from 0.5 until |λ − 0.5| ≥ threshold; then
λ > 0.5 → ``pred_res`` (SM-Res), else ``pred_noise`` (SM-N). For every restoration task a fresh
network is trained with the chosen objective (schedule ``ddim``, where both modes can restore)
and scored on that task's stratified test patches. Generation has no paired target: its PSNR/SSIM
are NaN and no second network is trained.

A second, "slow λ" selection per row gives λ a learning rate ``aosa_slow_lambda_scale`` (0.01)
times the network's (:attr:`~drdd_edu.train.TrainConfig.aosa_lambda_lr_scale`): with RDDM's
shared learning rate Adam moves λ by ≈ lr per step, so the first selection decides within
≈ threshold / lr steps on the untrained network's losses; the slow one decides after the network
has learned for ≈ 100× longer. It only selects (no second training).

Selections are cached in ``{runs_dir}/aosa-select[-slow]_{task}_seed{seed}/selection.json``
together with their config (reused only when it matches). Rows:
``{"task", "choice", "lambda_final", "decided_at_step", "decided", "psnr", "ssim", "psnr_in",
"ssim_in", "choice_slow", "lambda_final_slow", "decided_at_step_slow", "decided_slow"}``;
``*_in`` is the degraded input on the same test patches (the do-nothing baseline; NaN for
generation, like its ``psnr``/``ssim``). Results written before 2026-11-29 lack ``*_in``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..aosa import AOSASelection, select_objective
from ..degradations import TASKS
from ..train import TrainConfig
from .context import Context
from .evaluation import rddm_restorer
from .runs import base_config, check_stored_config
from .sizes import SizeSettings

__all__ = ["n_jobs", "execute", "plot", "aosa_config", "cached_selection"]

ROWS: tuple[str, ...] = (*TASKS, "generation")


def n_jobs(settings: SizeSettings) -> int:
    """Six selections, six slow-λ selections, five trainings of the choice, five evaluations."""
    return 2 * len(ROWS) + 2 * len(TASKS)


def aosa_config(settings: SizeSettings, task: str, seed: int, device: str) -> TrainConfig:
    """The selection config of ``task`` (a restoration task or ``"generation"``): stage
    ``rddm``, schedule ``ddim``, L1 for restoration and L2 for generation (as RDDM)."""
    gen = task == "generation"
    cfg = base_config(settings, f"aosa-{task}_seed{seed}", seed, device).replace(
        stage="rddm",
        schedule="ddim",
        objective="auto_res_noise",
        tasks=() if gen else (task,),
        generation=gen,
        loss="l2" if gen else "l1",
        sampling_steps=settings.rddm_sampling_steps,
    )
    return cfg.replace(steps=settings.aosa_steps, ckpt_every=max(1, settings.aosa_steps // 10))


def cached_selection(
    cfg: TrainConfig, folder: Path, max_steps: int, threshold: float, progress: bool
) -> tuple[AOSASelection, bool]:
    """Run :func:`~drdd_edu.aosa.select_objective`, or reuse ``folder/selection.json`` when it
    was made with the same config, ``max_steps`` and ``threshold``; returns (selection, reused).

    Raises :class:`~drdd_edu.experiments.runs.RunConfigMismatch` on a different stored config.
    """
    path = folder / "selection.json"
    wanted = {**cfg.to_dict(), "max_select_steps": max_steps, "threshold": threshold}
    if path.is_file():
        stored = json.loads(path.read_text())
        check_stored_config(
            stored["config"],
            wanted,
            path,
            what=f"{path} holds an AOSA selection made with a different config",
            redo=f"Delete {folder} (or pick another runs_dir) to redo it.",
        )
        sel = dict(stored["selection"])
        sel["lambda_history"] = [(int(s), float(v)) for s, v in sel["lambda_history"]]
        return AOSASelection(**sel), True
    selection = select_objective(cfg, max_steps, threshold, progress)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"config": wanted, "selection": selection.to_dict()}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return selection, False


#: at most this many (step, λ) points per trajectory in the results' meta (the cached selection
#: keeps every step)
MAX_HISTORY_POINTS = 400


def _thinned(history: list[tuple[int, float]]) -> list[list[float]]:
    """Every k-th (step, λ) point, the last one always included (≤ MAX_HISTORY_POINTS + 1)."""
    k = max(1, math.ceil(len(history) / MAX_HISTORY_POINTS))
    pts = [[st, lam] for st, lam in history[::k]]
    if history and pts[-1][0] != history[-1][0]:
        pts.append([history[-1][0], history[-1][1]])
    return pts


def _select(ctx: Context, cfg: TrainConfig, task: str, kind: str, max_steps: int) -> AOSASelection:
    """One cached selection of ``task`` (``kind`` "" or "-slow"), recorded in ``ctx``."""
    import time

    t0 = time.perf_counter()
    sel, reused = cached_selection(
        cfg,
        ctx.runs_dir / f"aosa-select{kind}_{task}_seed{ctx.seed}",
        max_steps,
        ctx.settings.aosa_threshold,
        progress=False,
    )
    ctx.extra_runs.append(
        {
            "name": f"aosa-select{kind}_{task}",
            "reused": reused,
            "wall_s": time.perf_counter() - t0,
            "steps": len(sel.lambda_history),
        }
    )
    ctx.tick(f"AOSA{kind} {task}: {sel.choice}")
    return sel


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Select per task and for generation (at the shared and at the slow λ learning rate), train
    and score the chosen objective per task."""
    s = ctx.settings
    rows = []
    histories: dict[str, list[list[float]]] = {}
    histories_slow: dict[str, list[list[float]]] = {}
    for task in ROWS:
        cfg = aosa_config(s, task, ctx.seed, ctx.device)
        sel = _select(ctx, cfg, task, "", s.aosa_select_steps)
        slow_cfg = cfg.replace(aosa_lambda_lr_scale=s.aosa_slow_lambda_scale)
        slow = _select(ctx, slow_cfg, task, "-slow", s.aosa_slow_select_steps)
        histories[task] = _thinned(sel.lambda_history)
        histories_slow[task] = _thinned(slow.lambda_history)
        psnr = ssim = psnr_in = ssim_in = math.nan
        if task != "generation":
            final = cfg.replace(
                objective=sel.choice, name=f"aosa-{task}-{sel.choice}_seed{ctx.seed}"
            )
            model = ctx.model(ctx.ensure(final))
            restorer = rddm_restorer(model, final.make_schedule(), s.rddm_sampling_steps)
            scores = ctx.evaluate(restorer, f"aosa {task}", tasks=(task,))
            psnr, ssim = scores[task]["psnr"], scores[task]["ssim"]
            psnr_in, ssim_in = scores[task]["psnr_in"], scores[task]["ssim_in"]
        rows.append(
            {
                "task": task,
                "choice": sel.choice,
                "lambda_final": float(sel.lambda_final),
                "decided_at_step": int(sel.decided_at_step),
                "decided": bool(sel.decided),
                "psnr": float(psnr),
                "ssim": float(ssim),
                "psnr_in": float(psnr_in),
                "ssim_in": float(ssim_in),
                "choice_slow": slow.choice,
                "lambda_final_slow": float(slow.lambda_final),
                "decided_at_step_slow": int(slow.decided_at_step),
                "decided_slow": bool(slow.decided),
            }
        )
    ctx.meta_extra["lambda_history"] = histories
    ctx.meta_extra["lambda_history_slow"] = histories_slow
    ctx.meta_extra["threshold"] = s.aosa_threshold
    ctx.meta_extra["slow_lambda_scale"] = s.aosa_slow_lambda_scale
    return rows


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """λ against the step for every task and generation — left: λ at the network's learning
    rate (RDDM), right: the slow λ — with the band |λ − ½| < threshold shaded and each
    trajectory's choice written at its end."""
    import matplotlib.pyplot as plt

    thr = float(meta.get("threshold", 0.01))
    panels = [("lambda_history", "choice", "λ at the network's lr (RDDM)")]
    if meta.get("lambda_history_slow"):
        scale = meta.get("slow_lambda_scale", "?")
        panels.append(("lambda_history_slow", "choice_slow", f"slow λ: lr × {scale}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (key, choice_key, subtitle) in zip(axes[0], panels, strict=True):
        hist = meta.get(key, {})
        ax.axhspan(0.5 - thr, 0.5 + thr, color="gray", alpha=0.2, label=f"|λ − 0.5| < {thr:g}")
        ax.axhline(0.5, color="gray", lw=0.8)
        ends: dict[str, list[tuple[float, float]]] = {}  # choice → trajectory end points
        for i, row in enumerate(rows):
            pts = hist.get(row["task"], [])
            if not pts:
                continue
            steps, lams = zip(*pts, strict=True)
            ls = "--" if row["task"] == "generation" else "-"
            ax.plot(steps, lams, ls, color=f"C{i}", label=row["task"])
            ends.setdefault(str(row.get(choice_key, "?")), []).append((steps[-1], lams[-1]))
        for choice, pts_end in ends.items():  # one label per choice, at its trajectories' ends
            x = max(p[0] for p in pts_end)
            y = sum(p[1] for p in pts_end) / len(pts_end)
            label = choice if len(pts_end) == 1 else f"{choice} ({len(pts_end)})"
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 0), fontsize=8)
        ax.set_xlabel("selection step")
        ax.set_ylabel("λ (1: SM-Res, 0: SM-N)")
        ax.set_title(subtitle, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
