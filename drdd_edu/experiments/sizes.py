"""Experiment sizes: ``smoke`` (CI), ``cpu`` (a laptop CPU) and ``full`` (one GPU).

Every experiment of a size trains with the same settings, so networks are shared between
experiments (the coupled comparison's nets are the data-efficiency study's fraction 1.0 and the
noise sweep's σ = 1.0). Budget rule (SPEC, "The experiments API"): DRDD = a noise net
(``noise_steps``) + a residual net (``residual_steps``); the coupled RDDM baseline gets
``noise_steps + residual_steps`` optimiser steps on the same paired data.

``full`` is the documented GPU configuration (the reference ``rddm`` preset at 64², global
batch 64, bf16 autocast, ``device = cuda``); it refuses to start without CUDA.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["SIZES", "SizeSettings", "get_size", "resolve_device_for"]

SIZES: tuple[str, ...] = ("smoke", "cpu", "full")


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
    Studies: ``fractions`` (data efficiency), ``sigmas_test`` (test-time noise strengths for the
    σ = 1 residual net), ``sigmas_train`` (residual nets trained and sampled at σ), AOSA's
    ``aosa_select_steps`` (cap of the selection phase), ``aosa_threshold`` (|λ − ½| that
    decides) and ``aosa_steps`` (training with the chosen objective); AOSA's second, "slow λ"
    selection learns λ at lr × ``aosa_slow_lambda_scale`` for at most
    ``aosa_slow_select_steps`` steps (enough for ≈ threshold / (lr × scale) steps).
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
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
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
    amp: str = "off"
    requires_cuda: bool = False
    eval_batch_size: int = 64

    @property
    def rddm_steps(self) -> int:
        """The coupled baseline's budget: as many steps as DRDD's two networks together."""
        return self.noise_steps + self.residual_steps

    @property
    def noise_sum_scale(self) -> float:
        """β̄²_{T−1} of the shared noise net: (max σ studied)², so one net serves every σ."""
        return max(1.6, *self.sigmas_test, *self.sigmas_train) ** 2

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


def get_size(size: str) -> SizeSettings:
    """The settings of ``size`` (one of :data:`SIZES`); unknown names raise ``ValueError``."""
    if size not in _SIZES:
        raise ValueError(f"unknown experiment size {size!r}; choose one of {SIZES}")
    return _SIZES[size]


def resolve_device_for(settings: SizeSettings, device: str = "auto") -> str:
    """The device string to train on: ``auto`` → ``cuda`` if available, else ``cpu``.

    Raises ``RuntimeError`` when the size needs CUDA (``full``) and CUDA is not available or
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
