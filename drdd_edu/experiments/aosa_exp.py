"""AOSA (RDDM §3.3): which objective does automatic objective selection pick, per task and for
generation? One ``auto_res_noise`` network per task (paired data of that task only) and one for
generation (I_in = 0, unpaired clean images) learns λ from 0.5 until |λ − 0.5| ≥ threshold; then
λ > 0.5 → ``pred_res`` (SM-Res), else ``pred_noise`` (SM-N). For every restoration task a fresh
network is trained with the chosen objective (schedule ``ddim``, where both modes can restore)
and scored on that task's stratified test patches. Generation has no paired target: its PSNR/SSIM
are NaN and no second network is trained.

Selections are cached in ``{runs_dir}/aosa-select_{task}_seed{seed}/selection.json`` together
with their config (reused only when it matches). Rows:
``{"task", "choice", "lambda_final", "decided_at_step", "psnr", "ssim"}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..aosa import AOSASelection, select_objective
from ..checkpoint import CheckpointError, check_config
from ..degradations import TASKS
from ..train import TrainConfig
from .context import Context
from .evaluation import rddm_restorer
from .runs import IGNORED_KEYS, RunConfigMismatch, base_config
from .sizes import SizeSettings

__all__ = ["n_jobs", "execute", "plot", "aosa_config", "cached_selection"]

ROWS: tuple[str, ...] = (*TASKS, "generation")


def n_jobs(settings: SizeSettings) -> int:
    """Six selections, five trainings with the chosen objective, five evaluations."""
    return len(ROWS) + 2 * len(TASKS)


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
        try:
            check_config(stored["config"], wanted, IGNORED_KEYS, path)
        except CheckpointError as err:
            raise RunConfigMismatch(
                f"{path} holds an AOSA selection made with a different config, so it is not "
                f"reused: {err}. Delete {folder} (or pick another runs_dir) to redo it."
            ) from None
        sel = dict(stored["selection"])
        sel["lambda_history"] = [(int(s), float(v)) for s, v in sel["lambda_history"]]
        return AOSASelection(**sel), True
    selection = select_objective(cfg, max_steps, threshold, progress)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"config": wanted, "selection": selection.to_dict()}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return selection, False


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Select per task and for generation, train and score the chosen objective per task."""
    import time

    s = ctx.settings
    rows = []
    histories: dict[str, list[list[float]]] = {}
    for task in ROWS:
        cfg = aosa_config(s, task, ctx.seed, ctx.device)
        t0 = time.perf_counter()
        sel, reused = cached_selection(
            cfg,
            ctx.runs_dir / f"aosa-select_{task}_seed{ctx.seed}",
            s.aosa_select_steps,
            s.aosa_threshold,
            progress=False,
        )
        ctx.extra_runs.append(
            {
                "name": f"aosa-select_{task}",
                "reused": reused,
                "wall_s": time.perf_counter() - t0,
                "steps": len(sel.lambda_history),
            }
        )
        ctx.tick(f"AOSA {task}: {sel.choice}")
        histories[task] = [[st, lam] for st, lam in sel.lambda_history]
        psnr = ssim = math.nan
        if task != "generation":
            final = cfg.replace(
                objective=sel.choice, name=f"aosa-{task}-{sel.choice}_seed{ctx.seed}"
            )
            model = ctx.model(ctx.ensure(final))
            restorer = rddm_restorer(model, final.make_schedule(), s.rddm_sampling_steps)
            scores = ctx.evaluate(restorer, f"aosa {task}", tasks=(task,))
            psnr, ssim = scores[task]["psnr"], scores[task]["ssim"]
        rows.append(
            {
                "task": task,
                "choice": sel.choice,
                "lambda_final": float(sel.lambda_final),
                "decided_at_step": int(sel.decided_at_step),
                "psnr": float(psnr),
                "ssim": float(ssim),
            }
        )
    ctx.meta_extra["lambda_history"] = histories
    ctx.meta_extra["threshold"] = s.aosa_threshold
    return rows


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """λ against the step for every task and generation, the band |λ − ½| < threshold shaded,
    each trajectory's choice written at its end."""
    import matplotlib.pyplot as plt

    thr = float(meta.get("threshold", 0.01))
    hist = meta.get("lambda_history", {})
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.axhspan(0.5 - thr, 0.5 + thr, color="gray", alpha=0.2, label=f"|λ − 0.5| < {thr:g}")
    ax.axhline(0.5, color="gray", lw=0.8)
    for i, row in enumerate(rows):
        pts = hist.get(row["task"], [])
        if not pts:
            continue
        steps, lams = zip(*pts, strict=True)
        ls = "--" if row["task"] == "generation" else "-"
        ax.plot(steps, lams, ls, color=f"C{i}", label=row["task"])
        ax.annotate(
            row["choice"],
            (steps[-1], lams[-1]),
            textcoords="offset points",
            xytext=(4, 0),
            fontsize=7,
            color=f"C{i}",
            va="center",
        )
    ax.set_xlabel("selection step")
    ax.set_ylabel("λ (1: SM-Res, 0: SM-N)")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return fig
