"""Coefficient schedules for residual diffusion (RDDM) and their DDIM conversion.

A schedule holds the per-step coefficients of the RDDM forward process

    I_t = I_{t-1} + α_t·I_res + β_t·ε_{t-1}                         (R1, RDDM §3.1)

and their cumulative sums, which give the marginal in closed form

    I_t = I_0 + ᾱ_t·I_res + β̄_t·ε,   ᾱ_t = Σ_{i≤t} α_i,  β̄_t² = Σ_{i≤t} β_i².   (R2)

Indices follow the reference code: t = 0 … T−1, and every tensor has shape (T,).
Coefficients are stored in float64 so that cumulative sums and the DDIM conversion are
exact to ~1e-15; :func:`drdd_edu.diffusion.extract` casts them to the data's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Schedule",
    "rddm_schedule",
    "ddim_converted_schedule",
    "power_weights",
    "ddpm_gammas",
]

_ATOL = 1e-9


@dataclass(frozen=True)
class Schedule:
    """Per-step RDDM coefficients, all shape (T,), float64, index t = 0 … T−1.

    Attributes:
        alphas: α_t, the share of the residual added at step t (≥ 0).
        alphas_cumsum: ᾱ_t = Σ_{i≤t} α_i ∈ [0, 1], non-decreasing.
        betas2: β_t², the noise variance added at step t (> 0).
        betas2_cumsum: β̄_t² = Σ_{i≤t} β_i², strictly increasing.
        name: a short human-readable description.

    The constructor checks the boundary conditions every RDDM schedule must satisfy
    (shapes, finiteness, signs, cumulative sums consistent with the steps, ᾱ within
    [0, 1]) and raises ``ValueError`` naming the one that fails.
    """

    alphas: Tensor
    alphas_cumsum: Tensor
    betas2: Tensor
    betas2_cumsum: Tensor
    name: str = "custom"

    def __post_init__(self) -> None:
        fields = {
            "alphas": self.alphas,
            "alphas_cumsum": self.alphas_cumsum,
            "betas2": self.betas2,
            "betas2_cumsum": self.betas2_cumsum,
        }
        T = None
        for key, value in fields.items():
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"Schedule.{key} must be a torch.Tensor, got {type(value).__name__}"
                )
            if value.ndim != 1 or value.numel() == 0:
                raise ValueError(
                    f"Schedule.{key} must have shape (T,) with T ≥ 1, got {tuple(value.shape)}"
                )
            if not torch.isfinite(value).all():
                raise ValueError(f"Schedule.{key} contains NaN or inf")
            T = value.numel() if T is None else T
            if value.numel() != T:
                raise ValueError(
                    f"Schedule fields disagree on T: {key} has {value.numel()} entries, expected {T}"
                )
            # store as float64 on the CPU; frozen dataclass needs object.__setattr__
            object.__setattr__(self, key, value.detach().to(device="cpu", dtype=torch.float64))
        if (self.alphas < -_ATOL).any():
            raise ValueError(
                "Schedule.alphas must be ≥ 0 (the residual is added, never removed, going forward)"
            )
        if (self.betas2 <= 0).any():
            raise ValueError(
                "Schedule.betas2 must be > 0 at every step so that β̄_t > 0 (noise is added every step)"
            )
        if not torch.allclose(torch.cumsum(self.alphas, 0), self.alphas_cumsum, atol=1e-6, rtol=0):
            raise ValueError(
                "Schedule.alphas_cumsum is not the cumulative sum of alphas (ᾱ_t = Σ_{i≤t} α_i)"
            )
        if not torch.allclose(
            torch.cumsum(self.betas2, 0), self.betas2_cumsum, atol=1e-6, rtol=1e-6
        ):
            raise ValueError(
                "Schedule.betas2_cumsum is not the cumulative sum of betas2 (β̄_t² = Σ_{i≤t} β_i²)"
            )
        if (self.alphas_cumsum < -_ATOL).any() or (self.alphas_cumsum > 1 + _ATOL).any():
            raise ValueError(
                "Schedule.alphas_cumsum must lie in [0, 1] (ᾱ_T = 1 means the whole residual is added)"
            )

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return self.alphas.numel()

    @property
    def betas_cumsum(self) -> Tensor:
        """β̄_t = sqrt(β̄_t²), shape (T,): the noise standard deviation of the marginal (R2)."""
        return self.betas2_cumsum.sqrt()

    @property
    def sum_scale(self) -> float:
        """β̄²_{T−1}: the total noise variance at the last step (``sum_scale`` in the reference)."""
        return float(self.betas2_cumsum[-1])

    @property
    def noise_strength(self) -> float:
        """β̄_{T−1}: the noise std at the last step (the DRDD paper's "noise strength").

        Computed with the scalar ``math.sqrt`` (correctly rounded on every CPU), so
        ``rddm_schedule(sum_scale=1.0).noise_strength`` is exactly 1.0; a vectorised tensor sqrt
        may differ from it in the last bit.
        """
        return math.sqrt(self.sum_scale)

    def __repr__(self) -> str:
        return (
            f"Schedule({self.name!r}, T={self.T}, ᾱ_T-1={float(self.alphas_cumsum[-1]):.5f}, "
            f"β̄_T-1={self.noise_strength:.5f})"
        )


def power_weights(T: int, power: float, increasing: bool) -> Tensor:
    """Normalised weights of the power family P(x, k): w_{t'} ∝ (t'/T)^k, t' = 1 … T.

    Returns shape (T,), float64, summing to 1. ``increasing=False`` reverses the order, so
    the first step gets the largest weight. ``power=1`` is the reference code's linear
    schedule, e.g. α_t = (T+1−t')/(T(T+1)/2); ``power=0`` is uniform.
    """
    _check_T(T)
    if not (power >= 0 and power == power and power != float("inf")):
        raise ValueError(f"power must be a finite number ≥ 0, got {power}")
    x = torch.arange(1, T + 1, dtype=torch.float64) / T
    w = x**power
    w = w / w.sum()
    return w if increasing else torch.flip(w, dims=[0])


def rddm_schedule(
    T: int = 1000,
    sum_scale: float = 1.0,
    alpha_power: float = 1.0,
    beta_power: float = 1.0,
) -> Schedule:
    """The RDDM restoration schedule: α_t decreasing, β_t² increasing (RDDM §3.1, App. B).

    α_t = P(T+1−t', alpha_power) normalised to Σα = 1, so ᾱ_{T−1} = 1 (the whole residual);
    β_t² = sum_scale·P(t', beta_power) normalised, so β̄²_{T−1} = sum_scale.
    With both powers 1 this is α_t = (T+1−t')/(T(T+1)/2), β_t² = sum_scale·t'/(T(T+1)/2).

    Args:
        T: number of steps (≥ 1).
        sum_scale: total noise variance β̄²_{T−1} (> 0): 1 for deraining/low light in the
            reference, 0.01 for shadow removal; the DRDD noise strength is sqrt(sum_scale).
        alpha_power, beta_power: exponents k of the P(x, k) family (≥ 0), used in the
            path-independence study; 1 is linear.
    """
    _check_T(T)
    if not (sum_scale > 0 and sum_scale != float("inf")):
        raise ValueError(f"sum_scale must be a finite number > 0, got {sum_scale}")
    alphas = power_weights(T, alpha_power, increasing=False)
    betas2 = sum_scale * power_weights(T, beta_power, increasing=True)
    alphas_cumsum = torch.cumsum(alphas, 0).clamp(0.0, 1.0)
    alphas_cumsum[-1] = 1.0  # exact boundary condition ᾱ_T = 1, free of rounding
    betas2_cumsum = torch.cumsum(betas2, 0)
    # exact boundary condition β̄²_T = sum_scale: a float64 cumsum's last bits depend on the CPU's
    # vector width (AVX2 and AVX-512 machines sum in different orders), so β̄_T = sqrt(sum_scale)
    # would be 1 on one machine and 0.9999999999999999 on another
    betas2_cumsum[-1] = sum_scale
    schedule = Schedule(
        alphas=alphas,
        alphas_cumsum=alphas_cumsum,
        betas2=betas2,
        betas2_cumsum=betas2_cumsum,
        name=f"rddm(T={T}, sum_scale={sum_scale:g}, alpha_power={alpha_power:g}, beta_power={beta_power:g})",
    )
    # float-exact: boundary (both end points are assigned above, not summed)
    assert float(schedule.alphas_cumsum[-1]) == 1.0, "boundary condition ᾱ_T = 1 violated"
    # float-exact: boundary
    assert schedule.sum_scale == float(sum_scale), "boundary β̄_T² = sum_scale violated"
    return schedule


def ddim_converted_schedule(
    T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Schedule:
    """RDDM coefficients that turn RDDM into DDPM/DDIM when I_in = 0 (RDDM §3.3, "coefficient transformation").

    With DDPM betas b = linspace(beta_start, beta_end, T) and γ_t = Π_{i≤t}(1 − b_i)
    (DDPM's ᾱ_t, renamed γ to avoid a clash with RDDM's ᾱ):

        ᾱ_t = 1 − sqrt(γ_t),    β̄_t² = 1 − γ_t.                                  (R6)

    Then I_t = I_0 + ᾱ_t·(0 − I_0) + β̄_t·ε = sqrt(γ_t)·I_0 + sqrt(1 − γ_t)·ε, the DDPM marginal.
    For T = 1000: ᾱ_999 ≈ 0.99365, β̄_999 ≈ 0.99998.
    """
    _check_T(T)
    if not (0 < beta_start <= beta_end < 1):
        raise ValueError(
            f"need 0 < beta_start ≤ beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    gammas = ddpm_gammas(T, beta_start, beta_end)
    alphas_cumsum = 1.0 - gammas.sqrt()
    betas2_cumsum = 1.0 - gammas
    alphas = torch.diff(alphas_cumsum, prepend=torch.zeros(1, dtype=torch.float64))
    # β_t² = (1 − γ_t) − (1 − γ_{t−1}) = γ_{t−1}·b_t, written so that it stays > 0 where
    # 1 − γ_t rounds to 1 (a plain difference of β̄² would then give exact zeros)
    gammas_prev = torch.cat([torch.ones(1, dtype=torch.float64), gammas[:-1]])
    betas2 = gammas_prev * torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    schedule = Schedule(
        alphas=alphas,
        alphas_cumsum=alphas_cumsum,
        betas2=betas2,
        betas2_cumsum=betas2_cumsum,
        name=f"ddim_converted(T={T}, beta_start={beta_start:g}, beta_end={beta_end:g})",
    )
    assert torch.allclose(
        (1 - schedule.alphas_cumsum) ** 2 + schedule.betas2_cumsum,
        torch.ones(T, dtype=torch.float64),
    ), "DDIM conversion violated: (1 − ᾱ_t)² + β̄_t² must equal 1"
    return schedule


def ddpm_gammas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's cumulative product γ_t = Π_{i≤t}(1 − b_i) for linear betas, shape (T,), float64."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0)


def _check_T(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"T must be an int, got {type(T).__name__}")
    if T < 1:
        raise ValueError(f"T must be a positive number of diffusion steps, got T={T}")
