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
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import string
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint as ckpt_io
from .diffusion import (
    from_model_range,
    q_sample,
    q_sample_noise_stage,
    q_sample_residual_stage,
    to_model_range,
)
from .nn import OBJECTIVES, PRESETS, TIME_MODES, ResidualDenoiser, build_model
from .samplers import sample, sample_drdd, timestep_pairs
from .schedules import Schedule, ddim_converted_schedule, rddm_schedule

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
    "centre_crop",
    "Trainer",
    "model_from_checkpoint",
    "evaluate_model",
    "restore_test_images",
    "train",
]

STAGES: tuple[str, ...] = ("rddm", "drdd_noise", "drdd_residual")
#: training objectives: the network's (:data:`drdd_edu.nn.OBJECTIVES`) plus RDDM's AOSA
#: ``auto_res_noise`` (one output read both as I_res and as ε, mixed by a learnable λ)
TRAIN_OBJECTIVES: tuple[str, ...] = (*OBJECTIVES, "auto_res_noise")
LOSSES: tuple[str, ...] = ("l1", "l2")
AMP_MODES: tuple[str, ...] = ("auto", "bf16", "off")
DATASETS: tuple[str, ...] = ("allinone5", "synthetic")
SCHEDULES: tuple[str, ...] = ("rddm", "ddim")
#: ``torch.compile`` modes: ``reduce-overhead`` adds CUDA graphs (GPU; a no-op on CPU),
#: ``max-autotune`` also searches kernel configurations (slow to compile, GPU)
COMPILE_MODES: tuple[str, ...] = (
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
)

#: config keys that may change when a run is resumed (they do not change the optimisation)
RESUME_MUTABLE_KEYS: frozenset[str] = frozenset(
    {
        "steps",
        "out_dir",
        "eval_every",
        "eval_images",
        "sampling_steps",
        "ckpt_every",
        "keep_last",
        "log_every",
        "progress",
        "compile",
        "compile_mode",
        "name",
        "cache_dir",
        "device",  # another device continues the same run (warned: not bit-identical)
    }
)

# stream ids for step_seed: independent random streams
_STREAM_DATA, _STREAM_STEP, _STREAM_EVAL = 1, 2, 3


class ResumeDeviceWarning(UserWarning):
    """A run is resumed on another kind of device than the one that wrote its checkpoint."""


class DeviceUnavailableError(RuntimeError):
    """The device asked for (``cuda``, ``cuda:N``, ``mps``) is not present on this machine."""


#: device types a config may name (besides ``auto``)
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")


def _device_problem(device: Any) -> str | None:
    """Why ``device`` is not a device string a config may hold (None when it is one); checks
    the spelling only, not whether this machine has that device."""
    usage = "use 'auto', 'cpu', 'cuda' or 'cuda:N'"
    if not isinstance(device, str) or not device:
        return f"device must be a string: {usage}, got {device!r}"
    if device == "auto":
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"unknown device {device!r}; {usage}"
    if dev.type not in DEVICE_TYPES:
        return f"unsupported device {device!r}: drdd_edu runs on {DEVICE_TYPES}; {usage}"
    return None


# ----------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything that defines a training run (loadable from TOML, stored in checkpoints).

    Model and objective:
        preset: a :data:`drdd_edu.nn.PRESETS` key (``tiny``, ``small``, ``rddm``).
        objective: ``pred_res``, ``pred_noise``, ``pred_res_noise`` or ``auto_res_noise``
            (RDDM's AOSA: one 3-channel output o, built as a ``pred_res`` network, and a
            learnable λ ∈ [0, 1], init 0.5, trained by the same optimiser without weight decay:
            L = λ·L(o, I_res) + (1 − λ)·L(o, ε); stage ``rddm`` with schedule ``ddim`` only, where
            both SM-Res and SM-N can restore; λ is logged and checkpointed; see
            :mod:`drdd_edu.aosa`). ``drdd_noise`` needs ``pred_noise``, ``drdd_residual`` needs
            ``pred_res``.
        two_networks: one UNet per output (``pred_res_noise`` only).
        time_mode: ``"t"`` or ``"coefficients"`` (see :class:`~drdd_edu.nn.ResidualDenoiser`).
        stage: ``rddm``, ``drdd_noise`` or ``drdd_residual`` (module docstring).
    Schedule:
        schedule: ``"rddm"`` (:func:`~drdd_edu.schedules.rddm_schedule` with ``T`` and
            ``sum_scale``, β̄²_{T−1} = sum_scale) or ``"ddim"``
            (:func:`~drdd_edu.schedules.ddim_converted_schedule` with ``T``, ᾱ_{T−1} ≈ 0.994;
            needed by ``pred_noise`` and ``auto_res_noise`` in stage ``rddm``, since SM-N
            cannot restore where ᾱ_t = 1).
        noise_strength: σ of the DRDD stages (the residual stage's fixed noise; the noise
            stage's evaluation noise, ≤ sqrt(sum_scale)).
    Data:
        dataset: ``allinone5`` (:func:`~drdd_edu.data.build_all_in_one5`) or ``synthetic``
            (random images, for benchmarks).
        image_size: training crop side H = W; must be divisible by the UNet's downsampling.
        data_size: patch side of the built data set (0: = image_size; larger: random crops).
        data_seed, data_scales, max_patches_per_image (0: all), cache_dir ("" = default):
            passed to ``build_all_in_one5``.
        data_fraction: the paired-training fraction in (0, 1] (DRDD's data-efficiency study).
        tasks: restrict the paired training data *and* the test data used for evaluation to
            these degradation tasks (names from :data:`drdd_edu.degradations.TASKS`, no
            repeats; ``()`` = all five). Paired stages of ``allinone5`` only (not
            ``drdd_noise`` nor ``generation``, which train on unpaired clean images).
        generation: RDDM generation (stage ``rddm`` only): I_in = 0 (the network still sees
            cat(I_t, 0)) and I_0 = the unpaired clean target images, so I_res = −I_0 (R0);
            with schedule ``ddim`` this is DDPM/DDIM (R6). There is no paired target, so
            evaluation (``eval_every``) must be off. RDDM trains generation with ``loss = 'l2'``.
        hflip: random left-right flips.
    Optimisation:
        batch_size: the *global* batch (split evenly over DDP ranks).
        lr, betas, weight_decay, warmup_steps (linear warm-up), steps (total), grad_clip
        (0: off), loss (``l1``/``l2``), ema_decay and ema_warmup (decay
        min(ema_decay, (1 + k)/(10 + k)) at step k), seed.
        aosa_lambda_lr_scale: AOSA's λ learns at ``lr × aosa_lambda_lr_scale`` (1: the same
            optimiser step as the network, RDDM's setting; Adam then moves λ by ≈ that lr per
            step whatever the size of ∂L/∂λ, so the threshold 0.01 is met after ≈ 0.01/lr steps —
            a smaller scale lets the network learn before λ decides).
    Evaluation and output:
        eval_every (0: off), eval_images, sampling_steps; ckpt_every (0: only at the end),
        keep_last (0: keep all); log_every; out_dir ("" writes nothing; ``{name}`` is
        replaced by the config name); progress (tqdm bar).
    Hardware:
        device (``auto``/``cpu``/``cuda``/``cuda:1``…), amp (``auto``: bf16 on CUDA with bf16
        support, else off; ``bf16``; ``off``), compile (``torch.compile`` the training
        network), compile_mode (its ``mode``: :data:`COMPILE_MODES`), channels_last.
    """

    name: str = "custom"
    # model / objective
    preset: str = "tiny"
    objective: str = "pred_res_noise"
    two_networks: bool = False
    time_mode: str = "t"
    stage: str = "rddm"
    # schedule
    schedule: str = "rddm"
    T: int = 1000
    sum_scale: float = 1.0
    noise_strength: float = 1.0
    # data
    dataset: str = "allinone5"
    image_size: int = 32
    data_size: int = 0
    data_seed: int = 0
    data_scales: tuple[float, ...] = (1.0, 0.75, 0.5)
    max_patches_per_image: int = 0
    cache_dir: str = ""
    data_fraction: float = 1.0
    tasks: tuple[str, ...] = ()
    generation: bool = False
    hflip: bool = True
    # optimisation
    batch_size: int = 16
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    steps: int = 500
    grad_clip: float = 1.0
    loss: str = "l1"
    ema_decay: float = 0.995
    ema_warmup: bool = True
    seed: int = 0
    aosa_lambda_lr_scale: float = 1.0
    # evaluation / output
    eval_every: int = 0
    eval_images: int = 16
    sampling_steps: int = 5
    ckpt_every: int = 100
    keep_last: int = 3
    log_every: int = 10
    out_dir: str = "runs/{name}"
    progress: bool = True
    # hardware
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = False

    def __post_init__(self) -> None:
        self.data_scales = tuple(float(s) for s in self.data_scales)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if isinstance(self.tasks, str):
            raise ValueError(f"tasks must be a list of task names, got the string {self.tasks!r}")
        self.tasks = tuple(self.tasks)
        self.validate()

    # -- validation ------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""

        def choice(key: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, key) not in allowed:
                raise ValueError(f"unknown {key} {getattr(self, key)!r}; choose one of {allowed}")

        def integer(key: str, lo: int) -> None:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{key} must be an int ≥ {lo}, got {v!r}")

        def number(key: str, lo: float, hi: float = math.inf, lo_open: bool = False) -> None:
            v = getattr(self, key)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and v <= hi
            if not ok:
                rng = f"{'(' if lo_open else '['}{lo}, {hi}]"
                raise ValueError(f"{key} must be a finite number in {rng}, got {v!r}")

        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {tuple(PRESETS)}")
        choice("objective", TRAIN_OBJECTIVES)
        choice("stage", STAGES)
        choice("time_mode", TIME_MODES)
        choice("loss", LOSSES)
        choice("amp", AMP_MODES)
        choice("dataset", DATASETS)
        choice("schedule", SCHEDULES)
        choice("compile_mode", COMPILE_MODES)
        if self.stage == "rddm" and self.objective == "pred_noise" and self.schedule == "rddm":
            raise ValueError(
                "objective 'pred_noise' (SM-N) cannot restore with the RDDM schedule: at "
                "ᾱ_{T−1} = 1 the noisy state holds no information about I_0; set "
                "schedule = 'ddim' (ᾱ_{T−1} < 1) or use pred_res / pred_res_noise"
            )
        if self.objective == "auto_res_noise":
            if self.stage != "rddm":
                raise ValueError(
                    f"objective 'auto_res_noise' (AOSA) selects between SM-Res and SM-N of the "
                    f"coupled RDDM process: set stage = 'rddm' (got {self.stage!r})"
                )
            if self.schedule != "ddim":
                raise ValueError(
                    "objective 'auto_res_noise' (AOSA) may choose pred_noise (SM-N), which cannot "
                    "restore with the RDDM schedule (ᾱ_{T−1} = 1): set schedule = 'ddim' "
                    "(ᾱ_{T−1} ≈ 0.994), where both SM-Res and SM-N are valid"
                )
            if self.two_networks:
                raise ValueError(
                    "objective 'auto_res_noise' uses one network (two_networks = false)"
                )
        if not isinstance(self.generation, bool):
            raise ValueError(f"generation must be true or false, got {self.generation!r}")
        if self.generation:
            if self.stage != "rddm":
                raise ValueError(
                    f"generation = true (I_in = 0) is a mode of the coupled RDDM process: set "
                    f"stage = 'rddm' (got {self.stage!r}); DRDD's noise stage is already unpaired"
                )
            if self.eval_every:
                raise ValueError(
                    "generation = true has no paired test targets to score: set eval_every = 0"
                )
        self._validate_tasks()
        if self.stage != "rddm" and self.schedule != "rddm":
            raise ValueError(f"stage {self.stage!r} needs schedule = 'rddm'")
        if self.stage == "drdd_noise" and self.objective != "pred_noise":
            raise ValueError(
                f"stage 'drdd_noise' trains a noise predictor: set objective = 'pred_noise' "
                f"(got {self.objective!r})"
            )
        if self.stage == "drdd_residual" and self.objective != "pred_res":
            raise ValueError(
                f"stage 'drdd_residual' trains a residual predictor: set objective = 'pred_res' "
                f"(got {self.objective!r})"
            )
        if self.two_networks and self.objective != "pred_res_noise":
            raise ValueError("two_networks = true needs objective 'pred_res_noise'")
        for key, lo in (
            ("T", 1),
            ("image_size", 8),
            ("data_size", 0),
            ("data_seed", 0),
            ("max_patches_per_image", 0),
            ("batch_size", 1),
            ("warmup_steps", 0),
            ("steps", 1),
            ("seed", 0),
            ("eval_every", 0),
            ("eval_images", 1),
            ("sampling_steps", 1),
            ("ckpt_every", 0),
            ("keep_last", 0),
            ("log_every", 1),
        ):
            integer(key, lo)
        number("sum_scale", 0.0, lo_open=True)
        number("noise_strength", 0.0, lo_open=True)
        number("data_fraction", 0.0, 1.0, lo_open=True)
        number("lr", 0.0, lo_open=True)
        number("weight_decay", 0.0)
        number("grad_clip", 0.0)
        number("aosa_lambda_lr_scale", 0.0, lo_open=True)
        number("ema_decay", 0.0, 1.0)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not self.data_scales or not all(0 < s <= 1 for s in self.data_scales):
            raise ValueError(f"data_scales must be numbers in (0, 1], got {self.data_scales!r}")
        if self.data_size and self.data_size < self.image_size:
            raise ValueError(
                f"data_size ({self.data_size}) must be 0 or ≥ image_size ({self.image_size})"
            )
        factor = 2 ** (len(PRESETS[self.preset]["dim_mults"]) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size must be divisible by {factor} for preset {self.preset!r}, "
                f"got {self.image_size}"
            )
        if self.sampling_steps > self.T:
            raise ValueError(f"sampling_steps ({self.sampling_steps}) exceeds T ({self.T})")
        if self.stage == "drdd_noise" and self.noise_strength > math.sqrt(self.sum_scale) * (
            1 + 1e-3
        ):
            raise ValueError(
                f"noise_strength {self.noise_strength} exceeds the noise schedule's largest "
                f"β̄ = sqrt(sum_scale) = {math.sqrt(self.sum_scale):.4g}; raise sum_scale"
            )
        problem = _device_problem(self.device)
        if problem:
            raise ValueError(problem)
        self._validate_out_dir()

    def _validate_out_dir(self) -> None:
        """``out_dir`` is a folder pattern whose only placeholder is ``{name}``."""
        if not isinstance(self.out_dir, str):
            raise ValueError(f"out_dir must be a string (a folder), got {self.out_dir!r}")
        try:
            fields = [
                (field, spec, conv)
                for _, field, spec, conv in string.Formatter().parse(self.out_dir)
                if field is not None
            ]
        except ValueError as err:  # a lone { or }
            raise ValueError(
                f"out_dir {self.out_dir!r} is not a valid folder pattern ({err}); its only "
                "placeholder is {name}, and literal braces are written {{ and }}"
            ) from None
        for field, spec, conv in fields:
            if field != "name" or spec or conv:
                shown = "{" + field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
                raise ValueError(
                    f"out_dir {self.out_dir!r} uses the placeholder {shown}}}; the only "
                    "placeholder is {name} (the config name), e.g. 'runs/{name}'"
                )

    def _validate_tasks(self) -> None:
        from .degradations import TASKS

        if not self.tasks:
            return
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise ValueError(f"unknown tasks {bad}; choose from {TASKS}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must not repeat a name, got {list(self.tasks)}")
        if self.dataset != "allinone5":
            raise ValueError("tasks selects All-in-One-5 tasks: needs dataset = 'allinone5'")
        if self.stage == "drdd_noise" or self.generation:
            raise ValueError(
                "tasks selects paired (degraded, clean) data; the drdd_noise stage and "
                "generation train on the unpaired clean target images: set tasks = []"
            )

    @property
    def model_objective(self) -> str:
        """The network's objective: ``auto_res_noise`` builds a one-output ``pred_res`` net."""
        return "pred_res" if self.objective == "auto_res_noise" else self.objective

    # -- conversions -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), as stored in checkpoints."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` listing the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(names)}")
        return cls(**dict(values))

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TrainConfig:
        """Load a TOML file (flat keys, or grouped in tables whose keys are merged)."""
        path = Path(path)
        try:
            with path.open("rb") as f:
                raw = _toml_load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"no config file at {path}") from None
        except ValueError as err:  # tomllib.TOMLDecodeError is a ValueError
            raise ValueError(f"config file {path} is not valid TOML: {err}") from err
        flat: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, dict):  # [model], [data] … tables are just grouping
                for k, v in value.items():
                    if k in flat:
                        raise ValueError(f"config file {path}: key {k!r} is set twice")
                    flat[k] = v
            else:
                if key in flat:
                    raise ValueError(f"config file {path}: key {key!r} is set twice")
                flat[key] = value
        flat.setdefault("name", path.stem)
        try:
            return cls.from_dict(flat)
        except (ValueError, TypeError) as err:
            raise ValueError(f"config file {path}: {err}") from err

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def output_dir(self) -> Path | None:
        """``out_dir`` with ``{name}`` filled in, or None when nothing is written."""
        return Path(self.out_dir.format(name=self.name)) if self.out_dir else None

    def make_schedule(self) -> Schedule:
        """The coefficient schedule this config trains with."""
        if self.schedule == "ddim":
            return ddim_converted_schedule(self.T)
        return rddm_schedule(self.T, self.sum_scale)

    @property
    def conditioned(self) -> bool:
        """Whether the network sees I_in (all stages but the unpaired noise stage)."""
        return self.stage != "drdd_noise"


def _toml_load(f: Any) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise RuntimeError(
                "reading TOML configs needs Python ≥ 3.11 (tomllib) or the 'tomli' package"
            ) from None
    return tomllib.load(f)


def config_dir() -> Path:
    """The folder of the bundled configs (``drdd_edu/configs``)."""
    return Path(__file__).resolve().parent / "configs"


def list_configs() -> list[str]:
    """Names of the bundled configs (without ``.toml``)."""
    return sorted(p.stem for p in config_dir().glob("*.toml"))


def with_config_defaults(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config dict with the keys added to :class:`TrainConfig` since it was written
    (``tasks``, ``generation``, ``compile_mode``, ``aosa_lambda_lr_scale``, …) filled in with
    their defaults — the behaviour the run had then — so it compares equal to today's config of
    the same run. Unknown stored keys are kept (and so reported by a comparison)."""
    defaults = TrainConfig().to_dict()
    out = {k: stored.get(k, v) for k, v in defaults.items()}
    out.update({k: v for k, v in stored.items() if k not in defaults})
    return out


def load_config(name_or_path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """Load a config from a TOML file path, or a bundled config by name (``tiny-cpu``).

    ``overrides`` replace fields after loading.
    """
    p = Path(name_or_path)
    if not p.is_file():
        bundled = config_dir() / f"{p.name}.toml" if p.suffix != ".toml" else config_dir() / p.name
        if len(p.parts) == 1 and bundled.is_file():
            p = bundled
        else:
            raise FileNotFoundError(
                f"no config file {str(name_or_path)!r}; give a path or one of the bundled "
                f"configs {list_configs()}"
            )
    cfg = TrainConfig.from_toml(p)
    return cfg.replace(**overrides) if overrides else cfg


# ----------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class DistInfo:
    """Process-group facts: ``rank`` of ``world_size`` processes, ``local_rank`` on this host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` if CUDA is available, else ``cpu``.

    Raises ``ValueError`` for a misspelt device (``banana``) and
    :class:`DeviceUnavailableError` for a device this machine lacks (``cuda`` without a GPU,
    ``cuda:3`` with one GPU, ``mps`` off Apple silicon).
    """
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    problem = _device_problem(device)
    if problem:
        raise ValueError(problem)
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                f"torch {torch.__version__} is a CPU-only build"
                if torch.version.cuda is None
                else "no CUDA GPU or driver is visible"
            )
            raise DeviceUnavailableError(
                f"CUDA is not available on this machine ({build}), but device {device!r} was "
                "asked for; use --device cpu (or auto)"
            )
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
        count = torch.cuda.device_count()
        if dev.index >= count:
            raise DeviceUnavailableError(
                f"this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0 … cuda:{count - 1}), but device {str(dev)!r} was asked for"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(
            f"Apple's Metal (mps) is not available on this machine, but device {device!r} was "
            "asked for; use --device cpu (or auto)"
        )
    return dev


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``bf16`` → bfloat16; ``auto`` → bfloat16 on CUDA with bf16 support,
    else None (float32); ``off`` → None."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def init_distributed(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (nccl on CUDA, gloo on CPU).

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``
    through the ``env://`` init method). Returns the process facts and this rank's device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank if world > 1 else 0)
    if world <= 1:
        return DistInfo(), dev
    import torch.distributed as dist

    here = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, here), dev


# ----------------------------------------------------------------------------- determinism


def step_seed(seed: int, stream: int, index: int) -> int:
    """A 63-bit seed that depends only on ``(seed, stream, index)`` (numpy SeedSequence)."""
    state = np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(2)
    return ((int(state[0]) << 32) | int(state[1])) & ((1 << 63) - 1)


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> Tensor:
    """Indices of the global batch of ``step`` into a data set of ``n`` items, shape (batch_size,).

    Sample positions ``step·B … step·B + B − 1`` walk through epochs; epoch ``e`` is the
    permutation seeded by ``(seed, e)``. A pure function of its arguments (no process history).
    """
    if n < 1:
        raise ValueError("the training set is empty")
    pos = step * batch_size + torch.arange(batch_size)
    epochs = pos // n
    out = torch.empty(batch_size, dtype=torch.long)
    for e in torch.unique(epochs).tolist():
        g = torch.Generator().manual_seed(step_seed(seed, _STREAM_DATA, e))
        perm = torch.randperm(n, generator=g)
        mask = epochs == e
        out[mask] = perm[pos[mask] % n]
    return out


# ----------------------------------------------------------------------------- data sources


class _Source:
    """Training images on the device as uint8 (N, 3, S, S); ``degraded`` None when unpaired."""

    def __init__(self, clean: Tensor, degraded: Tensor | None) -> None:
        self.clean, self.degraded = clean, degraded

    def __len__(self) -> int:
        return self.clean.shape[0]


def _load_sources(cfg: TrainConfig, device: torch.device, verbose: bool) -> tuple[Any, Any]:
    """(train source, test source) for the config's stage and data set."""
    if cfg.dataset == "synthetic":
        return None, None
    from .data import build_all_in_one5, default_cache_dir

    try:
        data = build_all_in_one5(
            size=cfg.data_size or cfg.image_size,
            seed=cfg.data_seed,
            cache_dir=cfg.cache_dir or None,
            scales=cfg.data_scales,
            max_patches_per_image=cfg.max_patches_per_image or None,
            progress=verbose,
        )
    except OSError as err:  # a read-only, full or misplaced cache folder
        where = cfg.cache_dir or default_cache_dir()
        name = f": {err.filename}" if err.filename else ""
        raise OSError(
            err.errno,
            f"{err.strerror or err}{name}: the All-in-One-5 data cache in {where} cannot be "
            "written; point DRDD_EDU_CACHE_DIR (or the config's cache_dir) to a writable folder",
        ) from err
    test = _only_tasks(data.paired_subset("test"), data.tasks, cfg.tasks)
    test_src = _Source(test.clean_u8, test.degraded_u8)
    if cfg.stage == "drdd_noise":
        train_src = _Source(data.target_dataset().clean_u8.to(device), None)
    elif cfg.generation:  # I_in = 0 is made in Trainer.batch; I_0 = unpaired targets
        train_src = _Source(data.target_dataset().clean_u8.to(device), None)
    else:
        sub = _only_tasks(data.paired_subset("train", cfg.data_fraction), data.tasks, cfg.tasks)
        train_src = _Source(sub.clean_u8.to(device), sub.degraded_u8.to(device))
    return train_src, test_src


def _only_tasks(pairs: Any, names: tuple[str, ...], tasks: tuple[str, ...]) -> Any:
    """The patches of ``pairs`` (a :class:`~drdd_edu.data.PairedPatches`) whose task id is one
    of ``tasks`` (all when empty), in their original order."""
    if not tasks:
        return pairs
    from .data import PairedPatches

    ids = torch.tensor([names.index(t) for t in tasks], dtype=pairs.task.dtype)
    keep = torch.isin(pairs.task, ids)
    if not bool(keep.any()):
        raise ValueError(f"the data set has no patches of tasks {list(tasks)}")
    return PairedPatches(
        pairs.clean_u8[keep], pairs.degraded_u8[keep], pairs.task[keep], pairs.index[keep]
    )


def _crop(x: Tensor, top: Tensor, left: Tensor, size: int) -> Tensor:
    """Per-sample crops: x (B, C, S, S), top/left (B,) → (B, C, size, size)."""
    ar = torch.arange(size, device=x.device)
    rows = (top[:, None] + ar)[:, :, None]  # (B, size, 1)
    cols = (left[:, None] + ar)[:, None, :]  # (B, 1, size)
    b = torch.arange(x.shape[0], device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- EMA


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ (buffers copied)."""
    e_params = list(ema.parameters())
    m_params = [p.detach() for p in model.parameters()]
    if e_params:
        torch._foreach_lerp_(e_params, m_params, 1.0 - decay)
    for eb, mb in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(mb)


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Train one network for one stage; see the module docstring.

    Args:
        config: the :class:`TrainConfig`.
        resume: continue from the latest checkpoint in ``<out_dir>/checkpoints`` if there is one
            (a config that differs in a key outside :data:`RESUME_MUTABLE_KEYS`, or an unreadable
            latest checkpoint, raises :class:`~drdd_edu.checkpoint.CheckpointError`). Without
            ``resume`` an output folder that already holds checkpoints is refused.

    The output folder is locked (:class:`~drdd_edu.checkpoint.RunLock`, rank 0) from
    construction until :meth:`close` (which :meth:`run` calls): another process constructing a
    Trainer on it gets :class:`~drdd_edu.checkpoint.RunLockedError` naming this one's pid.

    Attributes:
        model: the raw network (not wrapped in DDP / compiled); ``ema``: its EMA copy.
        step: optimisation steps done. ``schedule``, ``device``, ``dist``, ``optimizer``.

    Use ``for state in trainer.steps(): ...`` (states: ``step``, ``loss``, ``lr``,
    ``grad_norm``, plus ``eval`` and ``checkpoint`` when those happen) or :meth:`run`.
    """

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        config.validate()
        self.config = cfg = config
        self.dist, self.device = init_distributed(cfg.device)
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                f"world size {self.dist.world_size}"
            )
        self.local_batch = cfg.batch_size // self.dist.world_size
        self.out_dir = cfg.output_dir
        self._run_lock: ckpt_io.RunLock | None = None
        self._run_lock = self._lock_run_folder()
        try:
            self._setup(resume)
        except BaseException:
            self._release_run_lock()
            raise

    def _setup(self, resume: bool) -> None:
        """The rest of ``__init__``, run while holding the run folder's lock."""
        cfg = self.config
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.schedule: Schedule = cfg.make_schedule()
        self.ckpt_dir = self.out_dir / "checkpoints" if self.out_dir else None
        self.step = 0
        self.last_eval: dict[str, float] = {}
        self.resumed_from: Path | None = None

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model: ResidualDenoiser = build_model(
            cfg.preset,
            objective=cfg.model_objective,  # type: ignore[arg-type]
            two_networks=cfg.two_networks,
            conditioned=cfg.conditioned,
            time_mode=cfg.time_mode,  # type: ignore[arg-type]
            schedule=self.schedule,
        ).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        opt_kwargs: dict[str, Any] = dict(
            lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )
        if self.device.type == "cuda":
            opt_kwargs["fused"] = True
        groups: list[dict[str, Any]] = [{"params": list(self.model.parameters())}]
        #: AOSA's learnable λ (``auto_res_noise`` only, else None): a 0-d float32 parameter in
        #: its own optimiser group without weight decay (decay would pull λ toward SM-N)
        self.aosa_lambda: nn.Parameter | None = None
        if cfg.objective == "auto_res_noise":
            self.aosa_lambda = nn.Parameter(torch.tensor(0.5, device=self.device))
            groups.append({"params": [self.aosa_lambda], "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, **opt_kwargs)

        if resume:
            self._resume()
        elif self.ckpt_dir is not None and ckpt_io.list_checkpoints(self.ckpt_dir):
            raise FileExistsError(
                f"{self.ckpt_dir} already holds checkpoints; pass resume=True (--resume) to "
                "continue that run, or choose another out_dir"
            )

        self.train_src, self.test_src = _load_sources(
            cfg, self.device, verbose=cfg.progress and self.dist.is_main
        )
        self._gen = torch.Generator(device=self.device)

        net: nn.Module = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            net = torch.compile(net, mode=cfg.compile_mode)  # type: ignore[assignment]
        self.net = net
        # a resumed run with nothing left to train (step ≥ steps) leaves its files untouched
        if self.dist.is_main and self.out_dir is not None and self.step < cfg.steps:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            self._trim_log()

    # -- the run folder's lock -------------------------------------------------------
    def _lock_run_folder(self) -> ckpt_io.RunLock | None:
        """Take ``out_dir``'s :class:`~drdd_edu.checkpoint.RunLock` (rank 0 only: it alone
        writes), or raise :class:`~drdd_edu.checkpoint.RunLockedError` / ``OSError``. Under DDP
        rank 0 broadcasts its outcome, so every rank raises together instead of the others
        waiting forever in a collective for a rank 0 that has left."""
        if self.out_dir is None:
            return None
        lock, problem = None, None
        if self.dist.is_main:
            try:
                lock = ckpt_io.RunLock.acquire(self.out_dir)
            except (ckpt_io.RunLockedError, OSError) as err:
                problem = err
        if self.dist.distributed:
            import torch.distributed as dist

            box: list[str | None] = [None if problem is None else str(problem)]
            dist.broadcast_object_list(box, src=0)
            if box[0] is not None and problem is None:
                problem = ckpt_io.RunLockedError(f"rank 0 could not lock the run folder: {box[0]}")
        if problem is not None:
            self.close()  # every rank leaves the process group together
            raise problem
        return lock

    def _release_run_lock(self) -> None:
        lock, self._run_lock = getattr(self, "_run_lock", None), None
        if lock is not None:
            lock.release()

    # -- resume / checkpoints --------------------------------------------------------
    def _resume(self) -> None:
        if self.ckpt_dir is None:
            raise ValueError("resume needs an out_dir to look for checkpoints in")
        if self.dist.is_main:
            ckpt_io.remove_stale_temp_files(self.ckpt_dir)
        path = ckpt_io.latest_checkpoint(self.ckpt_dir)
        if path is None:
            return  # nothing written yet: a fresh start is the correct resume
        ck = ckpt_io.load_checkpoint(path, map_location=self.device)
        stored = with_config_defaults(ck["config_dict"])
        ckpt_io.check_config(stored, self.config.to_dict(), RESUME_MUTABLE_KEYS, path)
        try:
            self.model.load_state_dict(ck["model"])
            self.ema.load_state_dict(ck["ema"])
            self.optimizer.load_state_dict(ck["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            why = _weights_mismatch(self.model, ck["model"]) or _weights_mismatch(
                self.ema, ck["ema"]
            )
            if why is None:  # the weights fit: the optimiser state does not
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                why = f"its optimiser state does not load ({type(err).__name__}: {first})"
            raise ckpt_io.CheckpointError(
                f"checkpoint {path} does not fit this model/optimizer: {why}"
            ) from err
        extra = ck.get("extra", {})
        if self.aosa_lambda is not None:
            lam = extra.get("aosa_lambda")
            if lam is None:
                raise ckpt_io.CheckpointError(f"checkpoint {path} lacks AOSA's λ (aosa_lambda)")
            with torch.no_grad():
                self.aosa_lambda.copy_(torch.as_tensor(lam))
        ckpt_io.restore_rng_state(ck["rng"])
        written_on = extra.get("device_type")
        if written_on is not None and written_on != self.device.type:
            warnings.warn(
                f"resuming {path} (written on {written_on}) on {self.device.type}: the weights, "
                "optimiser state and step carry over, but the random batches and noise now come "
                f"from the {self.device.type} generator, so the run is no longer bit-identical to "
                f"an uninterrupted run on {written_on}",
                ResumeDeviceWarning,
                stacklevel=3,
            )
        self.step = int(ck["step"])
        self.last_eval = dict(extra.get("eval", {}))
        self.resumed_from = path

    def save(self) -> Path | None:
        """Write ``<out_dir>/checkpoints/ckpt_<step>.pt`` atomically (rank 0 only) and rotate."""
        if self.ckpt_dir is None or not self.dist.is_main:
            return None
        path = ckpt_io.save_checkpoint(
            ckpt_io.checkpoint_path(self.ckpt_dir, self.step),
            model=self.model,
            ema=self.ema,
            optimizer=self.optimizer,
            step=self.step,
            config=self.config.to_json(),
            extra=self._extra(),
        )
        ckpt_io.rotate_checkpoints(self.ckpt_dir, self.config.keep_last)
        return path

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "eval": dict(self.last_eval),
            "world_size": self.dist.world_size,
            "device_type": self.device.type,  # resume elsewhere warns (ResumeDeviceWarning)
        }
        if self.aosa_lambda is not None:  # exact: a float32 tensor, not a Python float
            extra["aosa_lambda"] = self.aosa_lambda.detach().clone().cpu()
        return extra

    # -- logging ---------------------------------------------------------------------
    @property
    def log_path(self) -> Path | None:
        return self.out_dir / "log.jsonl" if self.out_dir is not None else None

    def _trim_log(self) -> None:
        """On resume, drop log lines of steps after the checkpoint (they will be redone)."""
        p = self.log_path
        if p is None or not p.is_file():
            return
        keep = []
        for line in p.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    keep.append(line)
            except ValueError:
                continue  # a torn last line from a killed process
        p.write_text("".join(k + "\n" for k in keep))

    def _log(self, record: Mapping[str, Any]) -> None:
        p = self.log_path
        if p is not None and self.dist.is_main:
            with p.open("a") as f:
                f.write(json.dumps(dict(record)) + "\n")

    # -- one step --------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Learning rate of (0-based) step ``step``: linear warm-up, then constant."""
        w = self.config.warmup_steps
        return self.config.lr * min(1.0, (step + 1) / w) if w else self.config.lr

    def ema_decay_at(self, step: int) -> float:
        """EMA decay after (0-based) step ``step``: min(ema_decay, (1 + k)/(10 + k)) with warm-up."""
        d = self.config.ema_decay
        return min(d, (1 + step) / (10 + step)) if self.config.ema_warmup else d

    def batch(self, step: int) -> dict[str, Tensor]:
        """This rank's slice of the global batch of ``step`` (a pure function of (seed, step)).

        Returns ``x0`` (B_local, 3, S, S) on [-1, 1], ``x_in`` (or None for the noise stage;
        zeros with ``generation``), ``t`` (B_local,) long and ``noise`` (B_local, 3, S, S).
        """
        cfg, dev = self.config, self.device
        B, S = cfg.batch_size, cfg.image_size
        g = self._gen.manual_seed(step_seed(cfg.seed, _STREAM_STEP, step))
        lo, hi = self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch
        if self.train_src is None:  # synthetic: smooth random images and a noisy input
            x0 = torch.rand((B, 3, S, S), generator=g, device=dev)[lo:hi] * 2 - 1
            x_in = (x0 + 0.2 * torch.randn((B, 3, S, S), generator=g, device=dev)[lo:hi]).clamp(
                -1, 1
            )
        else:
            src = self.train_src
            idx = batch_indices(cfg.seed, step, B, len(src))[lo:hi].to(dev)
            flips = torch.rand((B,), generator=g, device=dev)[lo:hi] < 0.5
            data_s = src.clean.shape[-1]
            if data_s > S:
                offs = torch.randint(0, data_s - S + 1, (B, 2), generator=g, device=dev)[lo:hi]
            imgs = [src.clean[idx]] + ([src.degraded[idx]] if src.degraded is not None else [])
            out = []
            for im in imgs:
                x = to_model_range(im.float() / 255.0)
                if data_s > S:
                    x = _crop(x, offs[:, 0], offs[:, 1], S)
                if cfg.hflip:
                    x = torch.where(flips[:, None, None, None], x.flip(-1), x)
                out.append(x)
            x0 = out[0]
            x_in = out[1] if len(out) > 1 else None
        if cfg.generation:  # RDDM generation: I_in = 0, so I_res = −I_0 (R0)
            x_in = torch.zeros_like(x0)
        t = torch.randint(0, cfg.T, (B,), generator=g, device=dev)[lo:hi]
        noise = torch.randn((B, 3, S, S), generator=g, device=dev)[lo:hi]
        if cfg.channels_last:
            x0, noise = (v.contiguous(memory_format=torch.channels_last) for v in (x0, noise))
            if x_in is not None:
                x_in = x_in.contiguous(memory_format=torch.channels_last)
        return {"x0": x0, "x_in": x_in, "t": t, "noise": noise}

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def loss_on(self, b: Mapping[str, Tensor]) -> Tensor:
        """The stage's objective on one batch (module docstring); a 0-d float32 tensor."""
        return self.loss_terms(b)["loss"]

    def loss_terms(self, b: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The objective on one batch: ``{"loss": …}`` (0-d float32, differentiable), plus for
        ``auto_res_noise`` the two readings ``loss_res`` = L(o, I_res), ``loss_noise`` =
        L(o, ε) with L = λ·loss_res + (1 − λ)·loss_noise (RDDM §3.3, AOSA)."""
        cfg = self.config
        if cfg.objective != "auto_res_noise":
            return {"loss": self._objective_loss(b)}
        crit = F.l1_loss if cfg.loss == "l1" else F.mse_loss
        x0, x_in, t, noise = b["x0"], b["x_in"], b["t"], b["noise"]
        with self._autocast():
            x_t = q_sample(x0, x_in, t, self.schedule, noise)  # (R2)
            out = self.net(x_t, t, x_in).float()  # one 3-channel output o
        loss_res = crit(out, x_in - x0)  # o read as I_res (R0): SM-Res
        loss_noise = crit(out, noise)  # o read as ε: SM-N
        lam = self.aosa_lambda
        loss = lam * loss_res + (1 - lam) * loss_noise
        return {"loss": loss, "loss_res": loss_res, "loss_noise": loss_noise}

    def _objective_loss(self, b: Mapping[str, Tensor]) -> Tensor:
        cfg, sch = self.config, self.schedule
        x0, x_in, t, noise = b["x0"], b["x_in"], b["t"], b["noise"]
        crit = F.l1_loss if cfg.loss == "l1" else F.mse_loss
        with self._autocast():
            if cfg.stage == "drdd_noise":
                x_t = q_sample_noise_stage(x0, t, sch, noise)  # (D1)
                return crit(self.net(x_t, t).float(), noise)
            if x_in is None:
                raise RuntimeError(f"stage {cfg.stage!r} needs paired data")
            res = x_in - x0  # I_res (R0)
            if cfg.stage == "drdd_residual":
                x_t = q_sample_residual_stage(x0, x_in, t, sch, noise, cfg.noise_strength)  # (D2)
                return crit(self.net(x_t, t, x_in).float(), res)
            x_t = q_sample(x0, x_in, t, sch, noise)  # (R2)
            out = self.net(x_t, t, x_in)
        if cfg.objective == "pred_res":
            return crit(out.float(), res)
        if cfg.objective == "pred_noise":
            return crit(out.float(), noise)
        pred_res, pred_noise = out
        return crit(pred_res.float(), res) + crit(pred_noise.float(), noise)

    def train_step(self) -> dict[str, float]:
        """Do optimisation step ``self.step`` and advance it; returns loss, lr, grad_norm (and
        for ``auto_res_noise``: ``lambda`` after the step, ``loss_res``, ``loss_noise``)."""
        step = self.step
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.aosa_lambda is not None:  # λ's group (the last) may learn at its own rate
            self.optimizer.param_groups[-1]["lr"] = lr * self.config.aosa_lambda_lr_scale
        self.net.train()
        terms = self.loss_terms(self.batch(step))
        loss = terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lam = self.aosa_lambda
        if lam is not None and self.dist.distributed and lam.grad is not None:
            import torch.distributed as dist  # λ is outside DDP: average its gradient here

            dist.all_reduce(lam.grad)
            lam.grad /= self.dist.world_size
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        # the network's gradient only: λ's (= L_res − L_ε) is neither clipped nor counted
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        if lam is not None:
            with torch.no_grad():
                lam.clamp_(0.0, 1.0)  # AOSA keeps λ in [0, 1]
        _ema_update(self.ema, self.model, self.ema_decay_at(step))
        loss_d = loss.detach()
        if self.dist.distributed:
            import torch.distributed as dist

            dist.all_reduce(loss_d)
            loss_d = loss_d / self.dist.world_size
        loss_v = float(loss_d)
        if not math.isfinite(loss_v):
            raise FloatingPointError(
                f"loss is {loss_v} at step {step}; lower lr, enable grad_clip or use amp='off'"
            )
        self.step = step + 1
        out = {"loss": loss_v, "lr": lr, "grad_norm": float(grad_norm)}
        if lam is not None:  # λ after this step's update, and the two readings' losses
            out["lambda"] = float(lam.detach())
            out["loss_res"] = float(terms["loss_res"].detach())
            out["loss_noise"] = float(terms["loss_noise"].detach())
        return out

    # -- the loop --------------------------------------------------------------------
    def steps(self) -> Iterator[dict[str, Any]]:
        """Train until ``config.steps``, yielding ``{step, loss, lr, grad_norm}`` after every
        step (plus ``lambda``, ``loss_res``, ``loss_noise`` for ``auto_res_noise``), with
        ``eval`` (metrics) and ``checkpoint`` (path) added when those happen."""
        cfg = self.config
        while self.step < cfg.steps:
            state: dict[str, Any] = self.train_step()
            state = {"step": self.step, **state}
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.dist.is_main:
                self.last_eval = self.evaluate()
                state["eval"] = dict(self.last_eval)
            if self.step % cfg.log_every == 0 or "eval" in state or self.step == cfg.steps:
                self._log(state)
            last = self.step == cfg.steps
            if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last:
                path = self.save()
                if path is not None:
                    state["checkpoint"] = str(path)
            yield state

    def run(self, progress: bool | None = None, leave: bool = True) -> dict[str, Any]:
        """Drive :meth:`steps` to the end with a tqdm progress bar; returns the last state.

        ``progress`` shows the bar (default ``config.progress``; rank 0 only), ``leave`` keeps
        it on screen when training ends (False for runs nested in a longer job's own bar).
        """
        from tqdm.auto import tqdm

        cfg = self.config
        show = cfg.progress if progress is None else progress
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"train {cfg.name}",
            disable=not (show and self.dist.is_main),
            dynamic_ncols=True,
            leave=leave,
        )
        last: dict[str, Any] = {"step": self.step}
        try:
            for state in self.steps():
                bar.update(1)
                bar.set_postfix(loss=f"{state['loss']:.4f}", refresh=False)
                if "eval" in state:
                    bar.write(
                        f"step {state['step']}: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in state["eval"].items())
                    )
                last = state
        finally:
            bar.close()
            self.close()
        return last

    def close(self) -> None:
        """Release the run folder's lock; leave the process group if this trainer joined it."""
        self._release_run_lock()
        if self.dist.initialized_here:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- evaluation ------------------------------------------------------------------
    def evaluate(
        self, n_images: int | None = None, sampling_steps: int | None = None
    ) -> dict[str, float]:
        """PSNR/SSIM of the EMA model on the held-out test split (see :func:`evaluate_model`)."""
        return evaluate_model(
            self.ema,
            self.config,
            self.test_src,
            n_images=n_images or self.config.eval_images,
            sampling_steps=sampling_steps or self.config.sampling_steps,
            device=self.device,
            schedule=self.schedule,
        )


# ----------------------------------------------------------------------------- evaluation


def centre_crop(x: Tensor, size: int | None) -> Tensor:
    """The central ``size``² window of images x (..., H, W) (x itself when ``size`` is None or
    already H); patches smaller than ``size`` raise ``ValueError``."""
    if size is None or x.shape[-1] == size:
        return x
    if x.shape[-1] < size:
        raise ValueError(f"test patches are {x.shape[-1]}² but image_size is {size}")
    off = (x.shape[-1] - size) // 2
    return x[..., off : off + size, off : off + size]


def _test_batches(test_src: Any, cfg: TrainConfig, n: int, device: torch.device) -> list[Any]:
    """Fixed test images: ``n`` test pairs spread evenly over the test split (all of them when
    ``n`` ≥ its size; the split is ordered by source photo, so its first ``n`` pairs would all
    come from one photo), or synthetic pairs; centre-cropped."""
    S = cfg.image_size
    if test_src is None:
        g = torch.Generator().manual_seed(step_seed(cfg.seed, _STREAM_EVAL, 0))
        clean = torch.rand((n, 3, S, S), generator=g)
        deg = (clean + 0.1 * torch.randn((n, 3, S, S), generator=g)).clamp(0, 1)
    else:
        total = len(test_src.clean)
        idx = torch.linspace(0, total - 1, n).round().long() if n < total else torch.arange(total)
        clean = centre_crop(test_src.clean[idx].float() / 255.0, S)
        deg = centre_crop(test_src.degraded[idx].float() / 255.0, S)
    bs = max(1, cfg.batch_size)
    return [
        (clean[i : i + bs].to(device), deg[i : i + bs].to(device)) for i in range(0, len(clean), bs)
    ]


@torch.no_grad()
def restore_test_images(
    model: ResidualDenoiser,
    cfg: TrainConfig,
    test_src: Any,
    n_images: int = 16,
    sampling_steps: int = 5,
    device: torch.device | str = "cpu",
    schedule: Schedule | None = None,
    noise_model: ResidualDenoiser | None = None,
    noise_cfg: TrainConfig | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Restore the first ``n_images`` held-out test images with the config's stage.

    * ``rddm``: :func:`~drdd_edu.samplers.sample` with ``sampling_steps`` steps (an
      ``auto_res_noise`` network is built as ``pred_res`` and so sampled as SM-Res).
    * ``drdd_residual`` with ``noise_model``: the full DRDD sampler
      (:func:`~drdd_edu.samplers.sample_drdd`, ``sampling_steps`` steps per stage); without
      one, only the residual stage runs and the injected noise σ·z is then subtracted
      (an oracle denoiser): this scores the residual network alone.
    * ``drdd_noise``: denoise the clean test images after adding noise of strength σ.

    Sampling noise comes from a generator seeded by the config's seed (repeatable).

    Returns:
        ``(clean, start, restored)``, each (n_images, 3, S, S) on [0, 1]: the targets, the
        network's input (degraded, or noisy for ``drdd_noise``; clamped) and the output.
    """
    if cfg.generation:
        raise ValueError(
            "a generation config (I_in = 0) has no paired test targets: sample it with "
            "drdd_edu.samplers.sample(model, zeros, schedule, steps) instead"
        )
    device = torch.device(device)
    sch = schedule or cfg.make_schedule()
    sigma = cfg.noise_strength
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(step_seed(cfg.seed, _STREAM_EVAL, 1))
    cleans, starts, outs = [], [], []
    for clean01, deg01 in _test_batches(test_src, cfg, n_images, device):
        x0, x_in = to_model_range(clean01), to_model_range(deg01)
        start = deg01
        if cfg.stage == "rddm":
            out = sample(model, x_in, sch, sampling_steps, mode=model.mode, generator=g)
        elif cfg.stage == "drdd_noise":
            noisy = x0 + sigma * torch.randn(x0.shape, generator=g, device=device)
            out = sample_drdd(
                lambda x, t, xi: torch.zeros_like(x),  # no residual: the noise stage alone
                model,
                noisy,
                sch,
                sch,
                residual_steps=1,
                noise_steps=sampling_steps,
                noise_strength=sigma,
                x_start=noisy,
            )
            start = from_model_range(noisy)
        elif noise_model is not None:
            nsch = noise_cfg.make_schedule() if noise_cfg else sch
            out = sample_drdd(
                model,
                noise_model,
                x_in,
                sch,
                nsch,
                residual_steps=sampling_steps,
                noise_steps=sampling_steps,
                noise_strength=sigma,
                generator=g,
            )
        else:  # residual stage alone, then subtract the known injected noise
            z = torch.randn(x0.shape, generator=g, device=device)
            x = x_in + sigma * z
            for t, s in timestep_pairs(sch.T, sampling_steps):
                a_t = float(sch.alphas_cumsum[t])
                a_s = float(sch.alphas_cumsum[s]) if s >= 0 else 0.0
                tt = torch.full((x.shape[0],), t, dtype=torch.long, device=device)
                x = x - (a_t - a_s) * model(x, tt, x_in)  # (R3) at fixed noise σ
            out = x - sigma * z
        cleans.append(clean01)
        starts.append(start.clamp(0, 1))
        outs.append(from_model_range(out.float()))
    model.train(was_training)
    return torch.cat(cleans), torch.cat(starts), torch.cat(outs)


def evaluate_model(
    model: ResidualDenoiser,
    cfg: TrainConfig,
    test_src: Any,
    n_images: int = 16,
    sampling_steps: int = 5,
    device: torch.device | str = "cpu",
    schedule: Schedule | None = None,
    noise_model: ResidualDenoiser | None = None,
    noise_cfg: TrainConfig | None = None,
) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of :func:`restore_test_images`' output against the clean
    targets (``psnr``, ``ssim``) and of the unrestored input (``psnr_in``, ``ssim_in``)."""
    from .metrics import psnr, ssim

    clean, start, restored = restore_test_images(
        model, cfg, test_src, n_images, sampling_steps, device, schedule, noise_model, noise_cfg
    )
    return {
        "psnr": float(psnr(restored, clean).mean()),
        "ssim": float(ssim(restored, clean).mean()),
        "psnr_in": float(psnr(start, clean).mean()),
        "ssim_in": float(ssim(start, clean).mean()),
    }


def model_from_checkpoint(
    path: str | os.PathLike, use_ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[ResidualDenoiser, TrainConfig, dict[str, Any]]:
    """Rebuild the network of a checkpoint and load its EMA (or raw) weights.

    Returns ``(model in eval mode, its TrainConfig, the checkpoint dict)``.
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    ck = ckpt_io.load_checkpoint(path, map_location=device)
    try:
        cfg = TrainConfig.from_dict(ck["config_dict"])
    except (ValueError, TypeError) as err:
        raise ckpt_io.CheckpointError(f"checkpoint {path} holds an invalid config: {err}") from err
    model = build_model(
        cfg.preset,
        objective=cfg.model_objective,  # type: ignore[arg-type]
        two_networks=cfg.two_networks,
        conditioned=cfg.conditioned,
        time_mode=cfg.time_mode,  # type: ignore[arg-type]
        schedule=cfg.make_schedule(),
    ).to(device)
    key = "ema" if use_ema else "model"
    try:
        model.load_state_dict(ck[key])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
        why = _weights_mismatch(model, ck[key]) or f"{type(err).__name__}"
        raise ckpt_io.CheckpointError(
            f"checkpoint {path}: its {key} weights do not fit the network its config describes "
            f"(preset {cfg.preset!r}, objective {cfg.objective!r}, stage {cfg.stage!r}): {why}; "
            "it was edited or written by another drdd_edu version: use a checkpoint written "
            "by this version's drdd-edu train"
        ) from err
    return model.eval(), cfg, ck


def _weights_mismatch(module: nn.Module, state: Any) -> str | None:
    """One line saying how ``state`` (a stored state dict) differs from ``module``'s own (tensor
    shapes, missing and unexpected names), or None when it would load."""
    if not isinstance(state, Mapping):
        return f"the stored weights are a {type(state).__name__}, not a dict of tensors"
    own = module.state_dict()
    shape = [
        k
        for k in own
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    if shape:
        k = shape[0]
        parts.append(
            f"{len(shape)} tensors differ in shape (e.g. {k}: stored "
            f"{tuple(getattr(state[k], 'shape', ()))}, network {tuple(own[k].shape)})"
        )
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    return "; ".join(parts) or None


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


if __name__ == "__main__":  # pragma: no cover
    from .train_cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
