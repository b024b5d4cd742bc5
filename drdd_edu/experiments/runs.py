"""Training configs of the experiments' networks, and training them — or reusing a finished run.

Run folders are ``{runs_dir}/{size}/{run_name}``; a run is *finished* when its folder holds the
checkpoint of its last step. A finished run whose stored config equals the wanted one (up to
:data:`IGNORED_KEYS`, which do not change the weights) is reused without training; an
interrupted one is resumed; a folder written with another config raises
:class:`RunConfigMismatch` (never silently reused). Like ``drdd-edu train``, a run folder is
locked (:class:`~drdd_edu.checkpoint.RunLock`) while it is checked and trained: a second process
(another ``drdd-edu experiment`` sharing ``runs_dir``) gets
:class:`~drdd_edu.checkpoint.RunLockedError` naming the holder instead of training the same
network into the same folder.

Networks (SPEC, "The experiments API"; DRDD §3, RDDM §3):

* ``drdd_noise``: the noise net (D1) on the unpaired clean target images, ``pred_noise``,
  L2, sum_scale = 1.6² so that β̄_{T−1} = 1.6 covers every σ studied; shared by a size.
  Its conditioned variant (``drdd_cond``, DRDD's released code) also sees I_in and trains on a
  fraction of the paired data, so there is one per fraction.
* ``drdd_residual``: the residual net (D2) at noise strength σ on a fraction of the paired data,
  ``pred_res``, L2 (DRDD's code and Appendix B).
* ``rddm``: the coupled baseline (R2), one net, ``pred_res_noise``, L1 (RDDM), sum_scale 1,
  with as many steps as DRDD's two nets together.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint as ckpt_io
from ..nn import ResidualDenoiser
from ..train import TrainConfig, Trainer, model_from_checkpoint, with_config_defaults
from .sizes import SizeSettings

__all__ = [
    "IGNORED_KEYS",
    "RunConfigMismatch",
    "RunRecord",
    "check_stored_config",
    "base_config",
    "noise_config",
    "residual_config",
    "rddm_config",
    "ensure_run",
    "load_run_model",
]

#: config keys that may differ between a stored run and the wanted one (they do not change the
#: trained weights: where the run lives, how it reports, which device ran it)
IGNORED_KEYS: frozenset[str] = frozenset(
    {"out_dir", "progress", "device", "cache_dir", "compile", "compile_mode"}
)


class RunConfigMismatch(ValueError):
    """A run folder holds checkpoints written with a different config."""


@dataclass
class RunRecord:
    """One network of an experiment: where it is, and whether it was trained or reused."""

    name: str
    run_dir: Path
    checkpoint: Path
    steps: int
    reused: bool
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_dir": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "steps": self.steps,
            "reused": self.reused,
            "wall_s": self.wall_s,
        }


def base_config(settings: SizeSettings, name: str, seed: int, device: str) -> TrainConfig:
    """Settings every experiment network shares at ``settings``' size (no checkpoints between
    the final one and the start are needed: ``ckpt_every`` is a tenth of the run). A settings'
    ``run_tag`` is appended to ``name`` (``name_tag``); with a ``train_crop`` the network trains
    on random crops of that side from the ``image_size`` patches (``data_size``)."""
    crop = settings.train_crop
    return TrainConfig(
        name=f"{name}_{settings.run_tag}" if settings.run_tag else name,
        preset=settings.preset,
        image_size=crop or settings.image_size,
        data_size=settings.image_size if crop else 0,
        max_patches_per_image=settings.max_patches_per_image,
        batch_size=settings.batch_size,
        lr=settings.lr,
        warmup_steps=settings.warmup_steps,
        seed=seed,
        eval_every=0,
        keep_last=1,
        progress=False,
        device=device,
        amp=settings.amp,
        channels_last=settings.amp == "bf16",
        compile=settings.compile,
    )


def _with_steps(cfg: TrainConfig, steps: int) -> TrainConfig:
    return cfg.replace(steps=steps, ckpt_every=max(1, steps // 10))


def noise_config(
    settings: SizeSettings,
    seed: int,
    device: str,
    conditioned: bool = False,
    fraction: float = 1.0,
    pool: str = "target",
) -> TrainConfig:
    """DRDD's noise net (D1), β̄_{T−1} = sqrt(sum_scale) = 1.6: unpaired clean images
    (``conditioned=False``, the paper's text) from ``pool`` (``"target"``, or ``"all_clean"``
    with the 8 square symmetries: the abundant pool of the data-efficiency study), or
    conditioned on I_in and trained on ``fraction`` of the paired data (``conditioned=True``,
    the released code: ``drdd_cond``)."""
    if conditioned:
        name = f"drdd-noise-cond_frac{fraction:.2f}_seed{seed}"
    elif pool == "target":
        name = f"drdd-noise_seed{seed}"
    else:
        name = f"drdd-noise-{pool}_seed{seed}"
    cfg = base_config(settings, name, seed, device).replace(
        stage="drdd_noise",
        objective="pred_noise",
        sum_scale=settings.noise_sum_scale,
        noise_strength=1.0,
        loss="l2",
        sampling_steps=settings.drdd_noise_sampling_steps,
    )
    if conditioned:
        cfg = cfg.replace(noise_conditioned=True, data_fraction=float(fraction))
    elif pool != "target":
        cfg = cfg.replace(unpaired_pool=pool, rot90=True)
    return _with_steps(cfg, settings.noise_steps)


def residual_config(
    settings: SizeSettings,
    sigma: float,
    fraction: float,
    seed: int,
    device: str,
    sees_input: bool = True,
) -> TrainConfig:
    """DRDD's residual net (D2) at noise strength ``sigma`` on ``fraction`` of the paired data;
    ``sees_input=False``: the network sees only the noisy state I_t, not I_in (issue 14 D)."""
    kind = "drdd-residual" if sees_input else "drdd-residual-noisyonly"
    name = f"{kind}_sigma{sigma:.2f}_frac{fraction:.2f}_seed{seed}"
    cfg = base_config(settings, name, seed, device).replace(
        residual_sees_input=sees_input,
        stage="drdd_residual",
        objective="pred_res",
        sum_scale=1.0,
        noise_strength=float(sigma),
        data_fraction=float(fraction),
        loss="l2",
        sampling_steps=settings.drdd_residual_sampling_steps,
    )
    return _with_steps(cfg, settings.residual_steps)


def rddm_config(
    settings: SizeSettings, fraction: float, seed: int, device: str, sum_scale: float = 1.0
) -> TrainConfig:
    """The coupled RDDM baseline (R2): one net, ``pred_res_noise``, DRDD's two budgets;
    ``sum_scale`` = β̄²_{T−1} (σ² to match DRDD's noise strength σ; 1 is RDDM's default)."""
    name = f"rddm_frac{fraction:.2f}_seed{seed}"
    if abs(sum_scale - 1.0) > 1e-12:
        name = f"rddm-ss{sum_scale:.4f}_frac{fraction:.2f}_seed{seed}"
    cfg = base_config(settings, name, seed, device).replace(
        stage="rddm",
        objective="pred_res_noise",
        sum_scale=float(sum_scale),
        data_fraction=float(fraction),
        loss="l1",
        sampling_steps=settings.rddm_sampling_steps,
    )
    return _with_steps(cfg, settings.rddm_steps)


def check_stored_config(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], path: Path, what: str, redo: str
) -> None:
    """Raise :class:`RunConfigMismatch` ("``what``, so it is not reused: <the differing keys>.
    ``redo``") unless the config stored at ``path`` — with the keys added since it was written
    filled in by their defaults — equals ``wanted`` outside :data:`IGNORED_KEYS`. Serves the
    trained runs' checkpoints and the cached AOSA selections alike."""
    try:
        ckpt_io.check_config(with_config_defaults(stored), wanted, IGNORED_KEYS, path)
    except ckpt_io.CheckpointError as err:
        raise RunConfigMismatch(f"{what}, so it is not reused: {err}. {redo}") from None


def _stored_config_check(run_dir: Path, cfg: TrainConfig) -> tuple[int, Path] | None:
    """(step, path) of the latest checkpoint in ``run_dir`` if its config matches ``cfg``;
    None if there is none; :class:`RunConfigMismatch` if it was written with another config."""
    ckpt_dir = run_dir / "checkpoints"
    found = ckpt_io.list_checkpoints(ckpt_dir) if ckpt_dir.is_dir() else []
    if not found:
        return None
    step, path = found[-1]
    check_stored_config(
        ckpt_io.load_checkpoint(path)["config_dict"],
        cfg.to_dict(),
        path,
        what=f"run folder {run_dir} holds a run with a different config",
        redo="Delete that folder (or pick another runs_dir) to retrain.",
    )
    if step > cfg.steps:
        raise RunConfigMismatch(f"run folder {run_dir} has step {step} > wanted {cfg.steps}")
    return step, path


def ensure_run(cfg: TrainConfig, run_dir: str | Path, progress: bool = False) -> RunRecord:
    """Train ``cfg`` into ``run_dir`` unless a finished run with the same config is there.

    Returns a :class:`RunRecord`; ``reused`` is True when no optimisation step was taken.
    Raises :class:`RunConfigMismatch` when ``run_dir`` holds a run with another config, and
    :class:`~drdd_edu.checkpoint.RunLockedError` when another process holds ``run_dir``.
    """
    run_dir = Path(run_dir)
    cfg = cfg.replace(out_dir=str(run_dir))
    t0 = time.perf_counter()
    # one lock over check + training (the Trainer shares it: same process)
    with ckpt_io.RunLock.acquire(run_dir):
        found = _stored_config_check(run_dir, cfg)
        if found is not None and found[0] == cfg.steps:
            wall = time.perf_counter() - t0
            return RunRecord(cfg.name, run_dir, found[1], cfg.steps, True, wall)
        trainer = Trainer(cfg, resume=found is not None)
        trainer.run(progress=progress, leave=False)  # a nested bar: the experiment has its own
    path = ckpt_io.checkpoint_path(run_dir / "checkpoints", cfg.steps)
    if not path.is_file():  # pragma: no cover - the trainer always saves the last step
        raise RuntimeError(f"training {cfg.name} ended without its final checkpoint {path}")
    return RunRecord(cfg.name, run_dir, path, cfg.steps, False, time.perf_counter() - t0)


def load_run_model(record: RunRecord, device: str | torch.device = "cpu") -> ResidualDenoiser:
    """The EMA network of a finished run, in eval mode on ``device``."""
    model, _, _ = model_from_checkpoint(record.checkpoint, use_ema=True, device=device)
    return model
