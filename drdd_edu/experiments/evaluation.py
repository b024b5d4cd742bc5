"""Per-task, stratified evaluation on the held-out test split (RDDM and DRDD models).

The same number ``n`` of test patches is drawn for every task (the first ``n`` of a permutation
seeded by ``(seed, task)``), so the average is not dominated by whichever task the first test
patches happen to belong to. Sampling noise comes from a generator seeded by ``(seed, task)``:
repeated evaluations give identical numbers.

A *restorer* maps a degraded batch ``x_in`` (B, 3, H, W) on [−1, 1] and a ``torch.Generator``
to the restored batch on [−1, 1]; :func:`rddm_restorer`, :func:`drdd_restorer` and
:func:`drdd_exact_restorer` build them. A *denoiser* maps a noisy clean batch I_0 + σ·z (and the
degraded input, for a conditioned one) to Î_0: :func:`evaluate_noise_stage_per_task` scores it,
which bounds what DRDD's second stage can deliver whatever its first stage does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data import AllInOne5
from ..degradations import TASKS
from ..diffusion import from_model_range, to_model_range
from ..metrics import psnr, ssim
from ..nn import ResidualDenoiser
from ..samplers import sample, sample_drdd, sample_drdd_exact
from ..schedules import Schedule
from ..train import centre_crop, step_seed

__all__ = [
    "Restorer",
    "stratified_test_indices",
    "evaluate_per_task",
    "rddm_restorer",
    "drdd_restorer",
    "drdd_exact_restorer",
    "Denoiser",
    "evaluate_noise_stage_per_task",
    "scores_summary",
    "task_rows",
]

Restorer = Callable[[Tensor, torch.Generator], Tensor]
#: (noisy I_0 + σ·z, degraded I_in) → Î_0, all (B, 3, H, W) on [−1, 1]
Denoiser = Callable[[Tensor, Tensor], Tensor]

_STREAM_PICK, _STREAM_NOISE, _STREAM_DENOISE = 11, 12, 13


def stratified_test_indices(
    data: AllInOne5, n_per_task: int, seed: int = 0, tasks: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """For every task (of ``tasks``; None: all), ``n_per_task`` indices into the test split
    (int64, shape (n,)); a task's pick does not depend on which other tasks are asked for.

    Raises ``ValueError`` when a task is unknown or has fewer test patches than ``n_per_task``.
    """
    if isinstance(n_per_task, bool) or not isinstance(n_per_task, int) or n_per_task < 1:
        raise ValueError(f"n_per_task must be an int ≥ 1, got {n_per_task!r}")
    wanted = tuple(data.tasks if tasks is None else tasks)
    unknown = [t for t in wanted if t not in data.tasks]
    if unknown or not wanted:
        raise ValueError(f"tasks must be a non-empty selection of {data.tasks}, got {wanted}")
    task_ids = data.arrays["test_task"]
    out: dict[str, Tensor] = {}
    for task in wanted:
        k = data.tasks.index(task)
        members = np.flatnonzero(task_ids == k)
        if members.size < n_per_task:
            raise ValueError(
                f"task {task!r} has only {members.size} test patches, fewer than "
                f"n_per_task = {n_per_task}; lower n_per_task or build more data"
            )
        g = torch.Generator().manual_seed(step_seed(seed, _STREAM_PICK, k))
        order = torch.randperm(members.size, generator=g)[:n_per_task]
        out[task] = torch.from_numpy(members[order.numpy()].astype(np.int64))
    return out


@torch.no_grad()
def evaluate_per_task(
    restore: Restorer,
    data: AllInOne5,
    n_per_task: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    batch_size: int = 64,
    tasks: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """PSNR (dB) and SSIM of ``restore`` on ``n_per_task`` test patches of every task.

    Args:
        restore: a restorer (module docstring).
        data: the benchmark; its test split is used.
        n_per_task: patches per task (the same for every task).
        seed: picks the patches and seeds the sampling noise.
        device: where the restorer runs.
        image_size: centre-crop patches to this side (None: as stored).
        batch_size: patches per restorer call.
        tasks: score only these tasks (None: all of ``data.tasks``).

    Returns:
        ``{task: {"psnr", "ssim", "psnr_in", "ssim_in", "n"}}`` for every scored task plus ``"average"`` (the mean of the task means; its ``n`` counts all
        patches). ``*_in`` score the degraded input itself.
    """

    def output(clean: Tensor, deg: Tensor, g: torch.Generator) -> Tensor:
        restored = from_model_range(restore(to_model_range(deg), g).float()).clamp(0, 1)
        if restored.shape != clean.shape:
            raise ValueError(
                f"the restorer returned shape {tuple(restored.shape)}, "
                f"expected {tuple(clean.shape)}"
            )
        return restored

    return _scores_per_task(
        output, data, n_per_task, seed, device, image_size, batch_size, tasks, _STREAM_NOISE
    )


def _scores_per_task(
    output: Callable[[Tensor, Tensor, torch.Generator], Tensor],
    data: AllInOne5,
    n_per_task: int,
    seed: int,
    device: str | torch.device,
    image_size: int | None,
    batch_size: int,
    tasks: Sequence[str] | None,
    stream: int,
) -> dict[str, dict[str, float]]:
    """The scoring loop shared by the evaluations: ``output(clean01, degraded01, generator)``
    gives the images to score against ``clean01`` (all (B, 3, H, W) on [0, 1])."""
    device = torch.device(device)
    picks = stratified_test_indices(data, n_per_task, seed, tasks)
    clean_all = torch.from_numpy(data.arrays["test_clean"])
    deg_all = torch.from_numpy(data.arrays["test_degraded"])
    out: dict[str, dict[str, float]] = {}
    for task, idx in picks.items():
        k = data.tasks.index(task)
        g = torch.Generator(device=device).manual_seed(step_seed(seed, stream, k))
        scores: dict[str, list[Tensor]] = {"psnr": [], "ssim": [], "psnr_in": [], "ssim_in": []}
        for i in range(0, len(idx), batch_size):
            sel = idx[i : i + batch_size]
            clean = centre_crop(clean_all[sel].float() / 255.0, image_size).to(device)
            deg = centre_crop(deg_all[sel].float() / 255.0, image_size).to(device)
            restored = output(clean, deg, g)
            scores["psnr"].append(psnr(restored, clean).cpu())
            scores["ssim"].append(ssim(restored, clean).cpu())
            scores["psnr_in"].append(psnr(deg, clean).cpu())
            scores["ssim_in"].append(ssim(deg, clean).cpu())
        out[task] = {key: float(torch.cat(v).mean()) for key, v in scores.items()}
        out[task]["n"] = len(idx)
    keys = ("psnr", "ssim", "psnr_in", "ssim_in")
    out["average"] = {key: float(np.mean([out[t][key] for t in picks])) for key in keys}
    out["average"]["n"] = sum(len(i) for i in picks.values())
    return out


def rddm_restorer(model: ResidualDenoiser, schedule: Schedule, steps: int) -> Restorer:
    """RDDM's sampler (R3, η = 0) with ``steps`` steps, in the model's own mode."""

    def restore(x_in: Tensor, g: torch.Generator) -> Tensor:
        return sample(model, x_in, schedule, steps, mode=model.mode, eta=0.0, generator=g)

    return restore


def drdd_restorer(
    residual_model: ResidualDenoiser,
    noise_model: ResidualDenoiser,
    residual_schedule: Schedule,
    noise_schedule: Schedule,
    residual_steps: int,
    noise_steps: int,
    noise_strength: float,
    noise_conditioned: bool = False,
) -> Restorer:
    """DRDD's decoupled sampler: start at I_in + σ·z, remove the residual (D2 reversed,
    ``residual_steps``), then the noise (D1 reversed, ``noise_steps``), η = 0. With
    ``noise_conditioned`` the denoiser also sees I_in (variant ``drdd_cond``)."""

    def restore(x_in: Tensor, g: torch.Generator) -> Tensor:
        return sample_drdd(
            residual_model,
            noise_model,
            x_in,
            residual_schedule,
            noise_schedule,
            residual_steps=residual_steps,
            noise_steps=noise_steps,
            noise_strength=noise_strength,
            generator=g,
            noise_conditioned=noise_conditioned,
        )

    return restore


def drdd_exact_restorer(
    residual_model: ResidualDenoiser,
    residual_schedule: Schedule,
    residual_steps: int,
    noise_strength: float,
) -> Restorer:
    """DRDD without a denoiser (variant ``drdd_exact``, DRDD Table 8): the residual stage from
    I_in + σ·z, then the known σ·z subtracted exactly (:func:`~drdd_edu.samplers.sample_drdd_exact`)."""

    def restore(x_in: Tensor, g: torch.Generator) -> Tensor:
        return sample_drdd_exact(
            residual_model, x_in, residual_schedule, residual_steps, noise_strength, generator=g
        )

    return restore


@torch.no_grad()
def evaluate_noise_stage_per_task(
    denoise: Denoiser,
    data: AllInOne5,
    n_per_task: int,
    noise_strength: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    batch_size: int = 64,
) -> dict[str, dict[str, float]]:
    """PSNR/SSIM of ``denoise`` on the clean test patches plus noise of std ``noise_strength``
    (on [−1, 1]): DRDD's second stage given a perfect first stage, on the same stratified
    patches as :func:`evaluate_per_task` (so its rows sit beside a method's). ``*_in`` score the
    degraded input, as there. Returns the same layout as :func:`evaluate_per_task`."""

    def output(clean: Tensor, deg: Tensor, g: torch.Generator) -> Tensor:
        x0 = to_model_range(clean)
        noisy = x0 + noise_strength * torch.randn(x0.shape, generator=g, device=x0.device)
        return from_model_range(denoise(noisy, to_model_range(deg)).float()).clamp(0, 1)

    return _scores_per_task(
        output, data, n_per_task, seed, device, image_size, batch_size, None, _STREAM_DENOISE
    )


def scores_summary(scores: dict[str, Any]) -> str:
    """One line: average PSNR/SSIM and the input's."""
    a = scores["average"]
    return (
        f"PSNR {a['psnr']:.2f} dB (input {a['psnr_in']:.2f}), "
        f"SSIM {a['ssim']:.4f} (input {a['ssim_in']:.4f})"
    )


def task_rows(
    scores: dict[str, dict[str, float]],
    fixed: dict[str, Any],
    metrics: Sequence[str] = ("psnr", "ssim"),
) -> list[dict[str, Any]]:
    """Table rows from :func:`evaluate_per_task` scores: one per task in ``TASKS`` order, then
    ``"average"``; each is ``fixed`` (e.g. method, fraction), ``task``, ``metrics`` and ``n``."""
    return [
        {
            **fixed,
            "task": task,
            **{m: scores[task][m] for m in metrics},
            "n": int(scores[task]["n"]),
        }
        for task in (*TASKS, "average")
    ]
