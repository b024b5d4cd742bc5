"""Experiment sizes: ``smoke`` (CI), ``cpu`` (a laptop CPU), ``cpu-long`` (``cpu`` with three times
the data-efficiency study's steps, at two fractions), ``gpu`` (minutes of one GPU) and ``full``
(the paper-scale networks on one GPU, hours).

Every experiment of a size trains with the same settings, so networks are shared between
experiments (the coupled comparison's nets are the noise sweep's and the matched-noise study's
σ = 1.0; the data-efficiency study trains its own, tagged ``_de``). Budget rule (SPEC, "The
experiments API"): DRDD = a noise net (``noise_steps``) + a residual net (``residual_steps``); the
coupled RDDM baseline gets ``noise_steps + residual_steps`` optimiser steps on the same paired
data.

``full`` is the documented GPU configuration (the reference ``rddm`` preset at 64², global
batch 64, bf16 autocast, ``device = cuda``); it refuses to start without CUDA. ``gpu`` is sized
to fit about 7 minutes of one H200 for all five experiments together (see :data:`GPU_SIZING`),
so that one short lease of a GPU turns into results; it also refuses to start without CUDA.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..nn import downsampling_factor

__all__ = [
    "EXPERIMENT_ORDER",
    "SIZES",
    "GPU_SIZING",
    "SizeSettings",
    "efficiency_settings",
    "get_size",
    "training_steps",
    "optimiser_steps",
    "resolve_device_for",
]

SIZES: tuple[str, ...] = ("smoke", "cpu", "cpu-long", "gpu", "full")


@dataclass(frozen=True)
class SizeSettings:
    """Everything an experiment size fixes (networks, data, budgets, evaluation).

    Networks: ``preset`` (:data:`drdd_edu.nn.PRESETS`), ``image_size`` (H = W of patches),
    ``max_patches_per_image`` (0: all; passed to ``build_all_in_one5``), ``batch_size``,
    ``lr``, ``warmup_steps``, ``amp`` (``off``/``bf16``), ``requires_cuda``.
    Budgets: ``noise_steps`` (DRDD noise net), ``residual_steps`` (each DRDD residual net);
    the RDDM baseline gets their sum (:attr:`rddm_steps`).
    Sampling: ``drdd_residual_sampling_steps`` + ``drdd_noise_sampling_steps`` (2 + 2),
    ``rddm_sampling_steps`` (5), η = 0 throughout.
    Evaluation: ``n_per_task`` test patches per task (stratified).
    Studies: ``sigmas_test`` (test-time noise strengths for the
    σ = 1 residual net), ``sigmas_train`` (residual nets trained and sampled at σ), AOSA's
    ``aosa_select_steps`` (cap of the selection phase), ``aosa_threshold`` (|λ − ½| that
    decides) and ``aosa_steps`` (training with the chosen objective); AOSA's second, "slow λ"
    selection learns λ at lr × ``aosa_slow_lambda_scale`` for at most
    ``aosa_slow_select_steps`` steps (enough for ≈ threshold / (lr × scale) steps).
    ``compile``: wrap the training networks in ``torch.compile`` (default mode).
    Data efficiency (issue 14 C): ``efficiency_fractions`` of the pairs of the build with
    ``efficiency_max_patches_per_image`` patches per source (0: uncapped — 2 559 pairs at 32²),
    each network ``efficiency_steps`` steps (RDDM twice that) on random ``efficiency_crop`` ²
    crops of the pairs (0: whole patches; every network is scored on whole ``image_size`` ²
    test patches); DRDD's unconditional noise net trains on the ``all_clean`` unpaired pool with
    the 8 square symmetries. Matched noise and the noisy-only residual net (issue 14 D): ``matched_sigmas`` (RDDM with sum_scale = σ²
    against DRDD at σ), ``sigmas_noisy_only`` (residual nets that see only I_t).
    ``run_tag``: appended to run names (``_{tag}``) of settings derived for one study
    (:func:`efficiency_settings`), so their networks get their own run folders; ``train_crop``:
    the training crop side of every network of these settings (0: whole patches; set by
    :func:`efficiency_settings` from ``efficiency_crop``).
    """

    name: str
    preset: str
    image_size: int
    max_patches_per_image: int
    batch_size: int
    lr: float
    warmup_steps: int
    noise_steps: int
    residual_steps: int
    n_per_task: int
    sigmas_test: tuple[float, ...] = (0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
    sigmas_train: tuple[float, ...] = (0.4, 0.7, 1.0, 1.3, 1.6)
    drdd_residual_sampling_steps: int = 2
    drdd_noise_sampling_steps: int = 2
    rddm_sampling_steps: int = 5
    aosa_select_steps: int = 300
    aosa_threshold: float = 0.01
    aosa_steps: int = 1200
    aosa_slow_lambda_scale: float = 0.01
    aosa_slow_select_steps: int = 3000
    efficiency_fractions: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25, 1.0)
    efficiency_max_patches_per_image: int = 0
    efficiency_steps: int = 500
    efficiency_crop: int = 0
    sigmas_noisy_only: tuple[float, ...] = (0.4, 1.0, 1.6)
    matched_sigmas: tuple[float, ...] = (0.2, 1.0)
    run_tag: str = ""
    train_crop: int = 0
    amp: str = "off"
    compile: bool = False
    requires_cuda: bool = False
    eval_batch_size: int = 64

    @property
    def rddm_steps(self) -> int:
        """The coupled baseline's budget: as many steps as DRDD's two networks together."""
        return self.noise_steps + self.residual_steps

    @property
    def noise_sum_scale(self) -> float:
        """β̄²_{T−1} of the shared noise net: (max σ studied)², so one net serves every σ."""
        sigmas = (*self.sigmas_test, *self.sigmas_train, *self.sigmas_noisy_only)
        return max(1.6, *sigmas, *self.matched_sigmas) ** 2

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rddm_steps"] = self.rddm_steps
        d["noise_sum_scale"] = self.noise_sum_scale
        return d


_SIZES: dict[str, SizeSettings] = {
    # CI: tiny preset at 16², 10 patches per source image; seconds per network
    "smoke": SizeSettings(
        name="smoke",
        preset="tiny",
        image_size=16,
        max_patches_per_image=10,
        batch_size=8,
        lr=1e-3,
        warmup_steps=5,
        noise_steps=20,
        residual_steps=20,
        n_per_task=4,
        sigmas_test=(0.4, 1.0, 1.6),
        sigmas_train=(0.6, 1.0, 1.4),
        aosa_select_steps=30,
        aosa_threshold=0.01,
        aosa_steps=20,
        aosa_slow_select_steps=30,
        efficiency_fractions=(0.1, 1.0),
        efficiency_max_patches_per_image=20,
        efficiency_steps=10,
        efficiency_crop=8,
        sigmas_noisy_only=(0.6, 1.4),
    ),
    # a laptop CPU: tiny preset at 32², 1200 steps per DRDD network (~0.1–0.2 s per step)
    "cpu": SizeSettings(
        name="cpu",
        preset="tiny",
        image_size=32,
        max_patches_per_image=60,
        batch_size=16,
        lr=1e-3,
        warmup_steps=20,
        noise_steps=1200,
        residual_steps=1200,
        n_per_task=32,
        aosa_select_steps=300,
        aosa_steps=1200,
        # the data-efficiency study's 16 networks per seed train on 16² crops (a step costs less
        # than half, benchmarks/README.md), so its three seeds fit 30 min of 2 cores; measured
        # cost: RDDM scores as on whole patches, drdd / drdd_cond 0.03 SSIM lower, drdd_exact 0.01
        efficiency_crop=16,
    ),
    # minutes of one GPU: the small preset (3.27 M per UNet) at 64², batch 64, bf16, compiled;
    # fewer study points than cpu/full (2 fractions, 3 training σ, 1 noisy-only σ) so that all five
    # fit one device lease — the arithmetic is GPU_SIZING below
    "gpu": SizeSettings(
        name="gpu",
        preset="small",
        image_size=64,
        max_patches_per_image=0,
        batch_size=64,
        lr=5e-4,
        warmup_steps=100,
        noise_steps=2000,
        residual_steps=2000,
        n_per_task=48,
        efficiency_fractions=(0.05, 1.0),
        efficiency_steps=600,
        sigmas_noisy_only=(1.0,),
        sigmas_train=(0.6, 1.0, 1.4),
        aosa_select_steps=200,
        aosa_steps=800,
        aosa_slow_select_steps=800,
        amp="bf16",
        compile=True,
        requires_cuda=True,
    ),
    # one GPU: the reference network (36.3 M per UNet) at 64², batch 64, bf16
    "full": SizeSettings(
        name="full",
        preset="rddm",
        image_size=64,
        max_patches_per_image=0,
        batch_size=64,
        lr=2e-4,
        warmup_steps=500,
        noise_steps=20000,
        residual_steps=20000,
        n_per_task=48,
        aosa_select_steps=2000,
        aosa_steps=20000,
        aosa_slow_select_steps=10000,
        amp="bf16",
        requires_cuda=True,
    ),
}
# for the data-efficiency study only: the `cpu` size with three times its steps per network (1,500;
# RDDM 3,000) at 2 and 100 % of the pairs (three seeds: 27.5 min measured, within the budget) —
# does the study leave the step-limited regime (100 % clearly above 2 %) with more steps? Other
# experiments at this size would retrain `cpu`'s networks in their own runs folder.
_SIZES["cpu-long"] = dataclasses.replace(
    _SIZES["cpu"], name="cpu-long", efficiency_fractions=(0.02, 1.0), efficiency_steps=1500
)


#: the experiments in the order the README runs them (later ones reuse earlier networks)
EXPERIMENT_ORDER: tuple[str, ...] = (
    "coupled",
    "data-efficiency",
    "noise-sweep",
    "matched-noise",
    "aosa",
)


def optimiser_steps(settings: SizeSettings) -> int:
    """An upper bound on the optimiser steps all five experiments of a size take together (one
    seed): the sum of :func:`training_steps` over :data:`EXPERIMENT_ORDER`, so every shared
    network counts once and AOSA's selections at their caps."""
    return sum(training_steps(settings, name) for name in EXPERIMENT_ORDER)


def training_steps(settings: SizeSettings, experiment: str) -> int:
    """Optimiser steps one seed of ``experiment`` trains at ``settings`` when the experiments run
    in :data:`EXPERIMENT_ORDER`, networks an earlier one trained reused, not counted:
    ``noise-sweep`` and ``matched-noise`` reuse ``coupled``'s noise nets and σ = 1 networks, and
    ``matched-noise`` a residual net the sweep trained at the same σ.

    ``coupled``: the unconditional and conditioned noise nets, the σ = 1 residual and RDDM nets.
    ``noise-sweep``: a residual net at every other training σ and every noisy-only σ.
    ``matched-noise``: per σ ≠ 1 an RDDM net at ``sum_scale`` σ² and (unless the sweep has it) a
    residual net at σ. ``data-efficiency``: the pool noise net, then per fraction a residual, a
    conditioned noise and an RDDM net, on ``efficiency_crop`` ² crops (cheaper steps than whole
    patches, see the benchmarks). ``aosa``: for the five tasks and generation two λ selections at
    their caps (they may stop earlier), and a training run for each of the five tasks.
    """
    r, n, rddm = settings.residual_steps, settings.noise_steps, settings.rddm_steps
    trained_sigmas = set(settings.sigmas_train) - {1.0}
    matched = set(settings.matched_sigmas) - {1.0}
    if experiment == "coupled":
        return 2 * n + r + rddm
    if experiment == "noise-sweep":
        return r * (len(trained_sigmas) + len(settings.sigmas_noisy_only))
    if experiment == "matched-noise":
        return rddm * len(matched) + r * len(matched - trained_sigmas)
    if experiment == "data-efficiency":
        e = settings.efficiency_steps
        return e + 4 * e * len(settings.efficiency_fractions)
    if experiment == "aosa":
        selections = 6 * (settings.aosa_select_steps + settings.aosa_slow_select_steps)
        return selections + 5 * settings.aosa_steps
    raise ValueError(f"unknown experiment {experiment!r}; choose one of {EXPERIMENT_ORDER}")


#: How the ``gpu`` size was sized (no GPU was available to measure it; these are estimates to be
#: replaced by the first lease's measurement). FLOPs: the ``small`` UNet's forward pass at 64² is
#: 2.99 GFLOP per image (``flops_per_image``), so a training step of batch 64 is 3 × 2.99 × 64 ≈
#: 575 GFLOP — 2.3 ms at 25 % of an H200's dense bf16 peak (≈ 989 TFLOP/s). A network this small
#: is not compute-bound but launch-bound: the reference code's eager step is host-bound at 186 ms
#: for two larger UNets. With ``torch.compile`` (fused kernels) we budget 10 ms per step, 4× the
#: FLOP time, so :func:`optimiser_steps` ≈ 37 k steps ≈ 6.2 min, plus compilation (three distinct
#: graphs, cached by inductor after the first) and evaluation (sampling only) — about 7 minutes.
GPU_SIZING: dict[str, float] = {
    "fwd_gflop_per_image": 2.99,
    "peak_bf16_tflops": 989.0,
    "assumed_peak_fraction": 0.25,
    "budgeted_ms_per_step": 10.0,
}


def efficiency_settings(settings: SizeSettings) -> SizeSettings:
    """The settings the data-efficiency study trains with: ``settings`` on the build with
    ``efficiency_max_patches_per_image`` patches per source, ``efficiency_steps`` per DRDD
    network (RDDM: their sum) on ``efficiency_crop`` ² training crops, run names tagged ``_de``
    (``_de-crop{N}`` with crops, so whole-patch runs are never mistaken for them)."""
    crop = settings.efficiency_crop
    factor = downsampling_factor(settings.preset)
    if crop and not (0 < crop <= settings.image_size and crop % factor == 0):
        raise ValueError(
            f"efficiency_crop must be 0 (whole patches) or a multiple of {factor} (preset "
            f"{settings.preset!r}) no larger than image_size ({settings.image_size}), got {crop}"
        )
    crop = 0 if crop == settings.image_size else crop
    return dataclasses.replace(
        settings,
        max_patches_per_image=settings.efficiency_max_patches_per_image,
        noise_steps=settings.efficiency_steps,
        residual_steps=settings.efficiency_steps,
        run_tag=f"de-crop{crop}" if crop else "de",
        train_crop=crop,
    )


def get_size(size: str) -> SizeSettings:
    """The settings of ``size`` (one of :data:`SIZES`); unknown names raise ``ValueError``."""
    if size not in _SIZES:
        raise ValueError(f"unknown experiment size {size!r}; choose one of {SIZES}")
    return _SIZES[size]


def resolve_device_for(settings: SizeSettings, device: str = "auto") -> str:
    """The device string to train on: ``auto`` → ``cuda`` if available, else ``cpu``.

    Raises ``RuntimeError`` when the size needs CUDA (``gpu``, ``full``) and CUDA is not available or
    another device was asked for — rather than starting a weeks-long CPU run.
    """
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    cuda = torch.cuda.is_available()
    resolved = ("cuda" if cuda else "cpu") if device == "auto" else device
    if settings.requires_cuda and not (resolved.startswith("cuda") and cuda):
        why = "CUDA is not available on this machine" if not cuda else f"device={device!r}"
        raise RuntimeError(
            f"experiment size {settings.name!r} is the GPU configuration (preset "
            f"{settings.preset!r}, {settings.image_size}², batch {settings.batch_size}, "
            f"{settings.amp}) and needs device='cuda', but {why}; use --size cpu (or smoke) "
            "on a CPU"
        )
    if resolved.startswith("cuda") and not cuda:
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return resolved
