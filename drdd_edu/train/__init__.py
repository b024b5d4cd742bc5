"""Training RDDM and the two DRDD stages: config, a generator-style trainer, exact resume, DDP.

Objectives (RDDM §3, DRDD §3; images on [-1, 1], shape (B, C, H, W)):

* stage ``"rddm"``: I_t = I_0 + ᾱ_t·I_res + β̄_t·ε (R2), the network sees cat(I_t, I_in) and
  predicts I_res and/or ε; the loss is L(Î_res, I_res) + L(ε̂, ε) over the predicted terms,
  L = L1 or L2 (mean over all elements).
* stage ``"drdd_noise"``: I¹_t = I_0 + β̄_t·ε (D1), trained on the *unpaired* clean target
  images only; an unconditioned network predicts ε.
* stage ``"drdd_residual"``: I²_t = I_0 + σ·ε' + ᾱ_t·I_res (D2) at the fixed noise strength σ,
  on the paired data; the network predicts I_res.
* objective ``"auto_res_noise"`` (RDDM §3.3, AOSA; stage ``rddm``, schedule ``ddim``): one
  network with one 3-channel output o and a learnable scalar λ ∈ [0, 1] (init 0.5, clamped after
  every optimiser step): L = λ·L(o, I_res) + (1 − λ)·L(o, ε), the two readings of the same
  output; ∂L/∂λ = L(o, I_res) − L(o, ε). See :mod:`drdd_edu.aosa`.
* ``generation = True`` (stage ``rddm``): I_in = 0 and I_0 = the unpaired clean target images,
  so I_res = −I_0 (R0) and (R2) becomes DDPM/DDIM's forward process with ``ddim``.

Determinism: everything random in step ``k`` is a function of ``(seed, k)`` only: the sample
indices come from a per-epoch permutation seeded by ``(seed, epoch)``, the flips, crops,
timesteps and noise from a generator re-seeded by ``(seed, k)`` before each step. Together with
the checkpointed model, EMA and optimiser state, a run resumed from a checkpoint ends with
bit-identical weights to an uninterrupted run (CPU, same thread count). A run may be resumed on
another device (CUDA ↔ CPU): it continues correctly, with a :class:`ResumeDeviceWarning` that
its random stream, hence its weights, are no longer bit-identical. With ``WORLD_SIZE > 1``
(torchrun) every rank draws the whole global batch's randomness and keeps its own slice, so the
run optimises exactly the same objective as one process with the same global batch.

Training is a generator (STYLE.md): ``for state in Trainer(cfg).steps(): ...`` yields a small
dict per step; :meth:`Trainer.run` drives it with a progress bar.

Package layout (one job per module): :mod:`.config` (``TrainConfig``, ``load_config``),
:mod:`.distributed` (devices, autocast, DDP), :mod:`.batches` (deterministic batches and data
sources), :mod:`.trainer` (``Trainer``, EMA), :mod:`.evaluation` (restoring test images,
PSNR/SSIM, ``model_from_checkpoint``). Every public name is importable from ``drdd_edu.train``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "STAGES",
    "TRAIN_OBJECTIVES",
    "LOSSES",
    "AMP_MODES",
    "DATASETS",
    "SCHEDULES",
    "COMPILE_MODES",
    "RESUME_MUTABLE_KEYS",
    "ResumeDeviceWarning",
    "DeviceUnavailableError",
    "TrainConfig",
    "with_config_defaults",
    "load_config",
    "config_dir",
    "list_configs",
    "DistInfo",
    "init_distributed",
    "resolve_device",
    "resolve_amp",
    "step_seed",
    "batch_indices",
    "data_of_config",
    "centre_crop",
    "Trainer",
    "model_from_checkpoint",
    "evaluate_model",
    "eval_task_names",
    "restore_test_images",
    "train",
]


from .batches import batch_indices, data_of_config, step_seed
from .config import (
    AMP_MODES,
    COMPILE_MODES,
    DATASETS,
    LOSSES,
    RESUME_MUTABLE_KEYS,
    SCHEDULES,
    STAGES,
    TRAIN_OBJECTIVES,
    DeviceUnavailableError,
    ResumeDeviceWarning,
    TrainConfig,
    config_dir,
    list_configs,
    load_config,
    with_config_defaults,
)
from .distributed import DistInfo, init_distributed, resolve_amp, resolve_device
from .evaluation import (
    centre_crop,
    eval_task_names,
    evaluate_model,
    model_from_checkpoint,
    restore_test_images,
)
from .trainer import Trainer


def train(
    config: TrainConfig | str | os.PathLike, resume: bool = False, **overrides: Any
) -> Trainer:
    """Load (if needed), train to the end and return the trainer."""
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    if overrides:
        cfg = cfg.replace(**overrides)
    trainer = Trainer(cfg, resume=resume)
    trainer.run()
    return trainer
