"""Training configs: :class:`TrainConfig` (loadable from TOML, stored in checkpoints), the bundled
configs, and the names every other part of :mod:`drdd_edu.train` validates against."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..nn import OBJECTIVES, PRESETS, TIME_MODES, downsampling_factor
from ..schedules import Schedule, ddim_converted_schedule, rddm_schedule

STAGES: tuple[str, ...] = ("rddm", "drdd_noise", "drdd_residual")
#: training objectives: the network's (:data:`drdd_edu.nn.OBJECTIVES`) plus RDDM's AOSA
#: ``auto_res_noise`` (one output read both as I_res and as ε, mixed by a learnable λ)
TRAIN_OBJECTIVES: tuple[str, ...] = (*OBJECTIVES, "auto_res_noise")
LOSSES: tuple[str, ...] = ("l1", "l2")
#: learning-rate schedules after the linear warm-up (:meth:`TrainConfig.lr_at`)
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
AMP_MODES: tuple[str, ...] = ("auto", "bf16", "off")
DATASETS: tuple[str, ...] = ("allinone5", "synthetic")
SCHEDULES: tuple[str, ...] = ("rddm", "ddim")
#: clean images of the unconditional noise stage (TrainConfig.unpaired_pool)
UNPAIRED_POOLS: tuple[str, ...] = ("target", "all_clean")
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
        noise_conditioned: stage ``drdd_noise`` only: the denoiser also sees the degraded input
            I_in (6 input channels) and trains on the paired data, as DRDD's released code does
            (variant ``drdd_cond``); False (default) is the paper's text: unpaired clean images
            only, an unconditional denoiser (variant ``drdd``).
        residual_sees_input: stage ``drdd_residual`` only: True (default, DRDD's design) feeds
            the network cat(I_t, I_in); False gives it only the noisy state I_t (3 input
            channels), so the clean-looking I_in never reaches it — the one setting in which the
            added noise harmonises *everything* the residual network sees (the sampler still
            uses I_in for its start I_in + σ·z).
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
        task_weights: per-task weights of the training loss, one number ≥ 0 per task of
            :data:`drdd_edu.degradations.TASKS` in that order (``()`` = all 1: the plain mean).
            Each sample's loss is weighted by its task's weight and the batch loss is
            ``Σ w_i·L_i / Σ w_i``; a task with a larger weight gets a larger share of the
            gradient. Paired ``allinone5`` stages only, like ``tasks``.
        identity_fraction: the probability, per training sample, of replacing its degraded
            input by the clean target itself (I_in = I_0, so I_res = 0): "do no harm" pairs that
            teach an all-in-one network to leave alone what needs no restoring (nearly flat or
            mildly degraded patches, which a blind network otherwise confuses with other tasks).
            Such a sample keeps its pair's task weight. 0 (default) draws nothing, so other runs
            keep their batches. Paired stages of ``rddm``/``drdd_residual`` only.
        generation: RDDM generation (stage ``rddm`` only): I_in = 0 (the network still sees
            cat(I_t, 0)) and I_0 = the unpaired clean target images, so I_res = −I_0 (R0);
            with schedule ``ddim`` this is DDPM/DDIM (R6). There is no paired target, so
            evaluation (``eval_every``) must be off. RDDM trains generation with ``loss = 'l2'``.
        unpaired_pool: the clean images of the unconditional noise stage (``drdd_noise`` without
            ``noise_conditioned``): ``"target"`` (default) = the unpaired target split only;
            ``"all_clean"`` = every clean patch not in the test split (the target split plus the
            clean halves of the *whole* paired training split, whatever ``data_fraction``): the
            abundant unpaired data DRDD's premise assumes. No degraded image is ever used.
        hflip: random left-right flips.
        rot90: also rotate by a random multiple of 90° (with ``hflip``: the 8 symmetries of the
            square); off by default so that existing runs draw the same batches.
    Optimisation:
        batch_size: the *global* batch (split evenly over DDP ranks).
        lr, betas, weight_decay, warmup_steps (linear warm-up), steps (total), grad_clip
        (0: off), loss (``l1``/``l2``), ema_decay and ema_warmup (decay
        min(ema_decay, (1 + k)/(10 + k)) at step k), seed.
        lr_schedule: the learning rate after the warm-up (:meth:`lr_at`): ``"constant"``
            (default: ``lr`` to the end) or ``"cosine"`` (half a cosine from ``lr`` down to
            ``lr_min`` at the last step, Loshchilov & Hutter's SGDR without restarts). A cosine
            run's schedule depends on ``steps``, so such a run cannot be resumed with other
            ``steps``.
        lr_min: the cosine schedule's final learning rate, in [0, lr] (0 by default; must stay
            0 with the constant schedule, where it would have no effect).
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
    noise_conditioned: bool = False
    residual_sees_input: bool = True
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
    task_weights: tuple[float, ...] = ()
    identity_fraction: float = 0.0
    generation: bool = False
    hflip: bool = True
    rot90: bool = False
    unpaired_pool: str = "target"
    # optimisation
    batch_size: int = 16
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    lr_min: float = 0.0
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
        if isinstance(self.task_weights, (str, int, float)):
            raise ValueError(
                f"task_weights must be a list of numbers, one per task, got {self.task_weights!r}"
            )
        self.task_weights = tuple(self.task_weights)
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
        choice("lr_schedule", LR_SCHEDULES)
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
        self._validate_task_weights()
        number("identity_fraction", 0.0, 1.0)
        if self.identity_fraction > 0 and (
            self.stage == "drdd_noise" or self.generation or self.dataset != "allinone5"
        ):
            raise ValueError(
                "identity_fraction replaces degraded inputs of paired All-in-One-5 data by their "
                "targets: it needs dataset = 'allinone5' and stage 'rddm' or 'drdd_residual' "
                "without generation"
            )
        if self.stage != "rddm" and self.schedule != "rddm":
            raise ValueError(f"stage {self.stage!r} needs schedule = 'rddm'")
        if self.stage == "drdd_noise" and self.objective != "pred_noise":
            raise ValueError(
                f"stage 'drdd_noise' trains a noise predictor: set objective = 'pred_noise' "
                f"(got {self.objective!r})"
            )
        if not isinstance(self.noise_conditioned, bool):
            raise ValueError(
                f"noise_conditioned must be true or false, got {self.noise_conditioned!r}"
            )
        for flag in ("residual_sees_input", "rot90"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if not self.residual_sees_input and self.stage != "drdd_residual":
            raise ValueError(
                "residual_sees_input = false hides I_in from DRDD's residual network: it needs "
                f"stage = 'drdd_residual' (got {self.stage!r})"
            )
        choice("unpaired_pool", UNPAIRED_POOLS)
        if self.unpaired_pool != "target" and (
            self.stage != "drdd_noise" or self.noise_conditioned
        ):
            raise ValueError(
                f"unpaired_pool = {self.unpaired_pool!r} chooses the clean images of the "
                "unconditional drdd_noise stage; other stages train on pairs: leave it 'target'"
            )
        if self.noise_conditioned and self.stage != "drdd_noise":
            raise ValueError(
                "noise_conditioned conditions DRDD's denoiser on I_in: it needs stage = "
                f"'drdd_noise' (got {self.stage!r})"
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
        number("lr_min", 0.0, self.lr)
        if self.lr_schedule == "constant" and self.lr_min != 0:
            raise ValueError(
                f"lr_min ({self.lr_min}) is the cosine schedule's final learning rate: set "
                "lr_schedule = 'cosine', or leave lr_min at 0 with the constant schedule"
            )
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
        factor = downsampling_factor(self.preset)
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
        from ..degradations import TASKS

        if not self.tasks:
            return
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise ValueError(f"unknown tasks {bad}; choose from {TASKS}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must not repeat a name, got {list(self.tasks)}")
        if self.dataset != "allinone5":
            raise ValueError("tasks selects All-in-One-5 tasks: needs dataset = 'allinone5'")
        if (self.stage == "drdd_noise" and not self.noise_conditioned) or self.generation:
            raise ValueError(
                "tasks selects paired (degraded, clean) data; the drdd_noise stage and "
                "generation train on the unpaired clean target images: set tasks = []"
            )

    def _validate_task_weights(self) -> None:
        from ..degradations import TASKS

        w = self.task_weights
        if not w:
            return
        ok = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in w
        )
        if len(w) != len(TASKS) or not ok:
            raise ValueError(
                f"task_weights must be {len(TASKS)} finite numbers ≥ 0, one per task {TASKS} "
                f"in that order, got {list(w)}"
            )
        used = [w[TASKS.index(t)] for t in (self.tasks or TASKS)]
        if not any(v > 0 for v in used):
            raise ValueError(f"task_weights {list(w)} give every trained task weight 0")
        if self.dataset != "allinone5":
            raise ValueError("task_weights weighs All-in-One-5 tasks: needs dataset = 'allinone5'")
        if (self.stage == "drdd_noise" and not self.noise_conditioned) or self.generation:
            raise ValueError(
                "task_weights weighs paired (degraded, clean) data; the drdd_noise stage and "
                "generation train on unpaired clean images: set task_weights = []"
            )

    def lr_at(self, step: int) -> float:
        """Learning rate of (0-based) step ``step`` of ``steps``.

        Linear warm-up over the first ``w = warmup_steps`` steps, lr·(step + 1)/w; then
        ``constant``: lr; ``cosine``: lr_min + (lr − lr_min)·(1 + cos(π·p))/2 with
        p = (step − w)/(steps − w) ∈ [0, 1) (clipped to 1 past the last step), so the first step
        after the warm-up gets lr and the last one ≈ lr_min.
        """
        w = self.warmup_steps
        if step < w:
            return self.lr * (step + 1) / w
        if self.lr_schedule == "constant":
            return self.lr
        p = min(1.0, (step - w) / max(1, self.steps - w))
        return self.lr_min + (self.lr - self.lr_min) * 0.5 * (1.0 + math.cos(math.pi * p))

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
        """Whether the network sees I_in (all stages but the unconditional noise stage)."""
        if self.stage == "drdd_residual":
            return self.residual_sees_input
        return self.stage != "drdd_noise" or self.noise_conditioned


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
    return Path(__file__).resolve().parent.parent / "configs"


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
