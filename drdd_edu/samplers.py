"""Reverse samplers: the generalised DDIM step of RDDM, its sampling loop, DRDD's two-stage
sampler and removal paths (simultaneous, residual-first, noise-first).

Every loop comes in two forms, following smalldiffusion: ``*_iter`` is a generator that
yields a :class:`StepState` after every network call (notebooks and widgets plot from it),
and the plain function runs it to the end and returns the restored image. Both accept a
``callback(state)`` in the style of k-diffusion.

Model conventions (images on the [-1, 1] scale, shape (B, C, H, W)):

* RDDM sampler: ``model(x_t, t, x_in)`` with ``t`` a long tensor of shape (B,) returns
  ``pred_res`` (mode ``"res"``), ``pred_noise`` (mode ``"noise"``) or the tuple
  ``(pred_res, pred_noise)`` (mode ``"res_noise"``) — the reference code's ``pred_res``,
  ``pred_noise`` and ``pred_res_noise`` objectives.
* DRDD sampler: ``residual_model(x_t, t, x_in) -> pred_res`` and
  ``noise_model(x_t, t) -> pred_noise`` (no I_in: the noise stage is trained unpaired).
* Path sampler: ``model(x, alpha_bar, beta_bar, x_in)`` conditioned on the coefficients
  themselves (shape (B,) each), as RDDM's path-independent networks are (on ᾱ·T and β̄·T).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .diffusion import (
    as_timesteps,
    check_image_batch,
    extract,
    predict_noise_from_res,
    predict_res_from_noise,
)
from .schedules import Schedule

__all__ = [
    "MODES",
    "PATH_ORDERS",
    "StepState",
    "timestep_pairs",
    "posterior_sigma",
    "ddim_sigma",
    "rddm_step",
    "sample_iter",
    "sample",
    "sample_drdd_iter",
    "sample_drdd",
    "sample_drdd_exact",
    "sample_noise_stage",
    "removal_path",
    "sample_path_iter",
    "sample_path",
]

Mode = Literal["res_noise", "res", "noise"]
MODES: tuple[str, ...] = ("res_noise", "res", "noise")
PATH_ORDERS: tuple[str, ...] = ("simultaneous", "residual_first", "noise_first")


@dataclass
class StepState:
    """What one reverse step saw and produced (all image tensors shape (B, C, H, W)).

    Attributes:
        i: step index, 0-based, in the order the steps run.
        stage: ``"rddm"``, ``"residual"`` / ``"noise"`` (DRDD) or ``"path"``.
        t, t_next: timestep indices (``t_next = -1`` for the final step); for paths, the node indices.
        alpha_bar, beta_bar: ᾱ, β̄ at the start of the step; ``*_next`` at its end.
        x_t: the state before the step; x_next: after it.
        pred_res, pred_noise: the residual and noise used (predicted or derived).
        pred_x0: Î_0 = x_t − ᾱ·Î_res − β̄·ε̂, the current estimate of the clean image.
    """

    i: int
    stage: str
    t: int
    t_next: int
    alpha_bar: float
    beta_bar: float
    alpha_bar_next: float
    beta_bar_next: float
    x_t: Tensor
    x_next: Tensor
    pred_res: Tensor
    pred_noise: Tensor
    pred_x0: Tensor


# ----------------------------------------------------------------------------- time grid


def timestep_pairs(T: int, steps: int) -> list[tuple[int, int]]:
    """Pairs (t, t_next) for ``steps`` sampling steps, reference convention.

    times = int(linspace(−1, T−1, steps+1)), reversed; for T = 1000, steps = 10:
    (999, 899), (899, 799), …, (99, −1). ``t_next = −1`` marks the final step.
    """
    return _pairs_from(T - 1, steps, T)


def _pairs_from(t_start: int, steps: int, T: int) -> list[tuple[int, int]]:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    if not 0 <= t_start < T:
        raise ValueError(f"the starting timestep must lie in 0 … {T - 1}, got {t_start}")
    if steps > t_start + 1:
        raise ValueError(f"steps={steps} exceeds the {t_start + 1} timesteps available (T = {T})")
    # float32 linspace then truncation, exactly as the reference code builds its grid
    times = torch.linspace(-1, t_start, steps=steps + 1).int().tolist()
    if len(set(times)) != len(times):  # float32 rounding can merge neighbours for steps ≈ T
        times = (
            torch.linspace(-1, t_start, steps=steps + 1, dtype=torch.float64)
            .round()
            .long()
            .tolist()
        )
    times = list(reversed(times))
    return list(zip(times[:-1], times[1:], strict=True))


# ----------------------------------------------------------------------------- one step


def _coef(schedule: Schedule, t: int) -> tuple[float, float]:
    """(ᾱ_t, β̄_t²) with the convention ᾱ_{−1} = β̄²_{−1} = 0."""
    if t < 0:
        return 0.0, 0.0
    return float(schedule.alphas_cumsum[t]), float(schedule.betas2_cumsum[t])


def posterior_sigma(schedule: Schedule, t: int, t_next: int, eta: float) -> float:
    """σ_t of RDDM's generalised reverse step (RDDM §3.2, from the posterior of (R1)):

        σ_t² = η·(β̄_t² − β̄_s²)·β̄_s² / β̄_t²                                    (R3b)

    η = 0 is deterministic (DDIM-like); η = 1 is the exact posterior q(I_s | I_t, I_0, I_res)
    of RDDM's own forward chain. Returns 0 for the final step (s = −1).
    """
    _check_eta(eta)
    _, b2_t = _coef(schedule, t)
    _, b2_s = _coef(schedule, t_next)
    if t_next < 0:
        return 0.0
    return float(max(eta * (b2_t - b2_s) * b2_s / b2_t, 0.0) ** 0.5)


def ddim_sigma(schedule: Schedule, t: int, t_next: int, eta: float) -> float:
    """DDIM's σ_t(η) (Song et al. 2021, Eq. 16) for a DDIM-converted schedule:

        σ_t² = η²·(1 − γ_s)/(1 − γ_t)·(1 − γ_t/γ_s),   γ = 1 − β̄²  (= (1 − ᾱ)²).

    RDDM's η and DDIM's η are *different* conventions: RDDM's σ² (R3b) is linear in η and
    DDIM's quadratic, and σ²_RDDM(η) = γ_s·σ²_DDIM(√η) — so RDDM η = 1 is not DDPM's
    ancestral sampler (σ² smaller by the factor γ_s). Passing this σ
    to :func:`rddm_step` (``sigma=``) reproduces DDIM at any η. Raises ``ValueError`` for a
    schedule that is not DDIM-converted ((1 − ᾱ)² + β̄² ≠ 1).
    """
    _check_eta(eta)
    if not torch.allclose(
        (1 - schedule.alphas_cumsum) ** 2 + schedule.betas2_cumsum,
        torch.ones(schedule.T, dtype=torch.float64),
        atol=1e-9,
    ):
        raise ValueError(
            "ddim_sigma needs a DDIM-converted schedule ((1 − ᾱ_t)² + β̄_t² = 1, see ddim_converted_schedule); "
            f"got {schedule.name}"
        )
    if t_next < 0:
        return 0.0
    g_t = 1.0 - float(schedule.betas2_cumsum[t])
    g_s = 1.0 - float(schedule.betas2_cumsum[t_next])
    return float(max(eta**2 * (1 - g_s) / (1 - g_t) * (1 - g_t / g_s), 0.0) ** 0.5)


def rddm_step(
    x_t: Tensor,
    pred_res: Tensor,
    pred_noise: Tensor,
    t: int,
    t_next: int,
    schedule: Schedule,
    eta: float = 0.0,
    noise: Tensor | None = None,
    sigma: float | None = None,
) -> Tensor:
    """One generalised-DDIM reverse step of RDDM from t to s = t_next < t (RDDM §3.2):

        I_s = I_t − (ᾱ_t − ᾱ_s)·Î_res − (β̄_t − sqrt(β̄_s² − σ_t²))·ε̂ + σ_t·z      (R3)

    with σ_t from (R3b) (or ``sigma`` if given). The final step (t_next = −1) returns
    I_0 = I_t − ᾱ_t·Î_res − β̄_t·ε̂.

    Args:
        x_t, pred_res, pred_noise: shape (B, C, H, W).
        t, t_next: ints, 0 ≤ t_next < t < T, or t_next = −1.
        eta: 0 (deterministic) … 1 (RDDM posterior).
        noise: z, same shape; drawn with ``torch.randn_like`` when needed and None.
        sigma: overrides the σ_t of (R3b), e.g. :func:`ddim_sigma` to reproduce DDIM.

    Returns:
        I_s, shape (B, C, H, W).
    """
    check_image_batch("x_t", x_t)
    check_image_batch("pred_res", pred_res, like=x_t)
    check_image_batch("pred_noise", pred_noise, like=x_t)
    _check_pair(t, t_next, schedule.T)
    a_t, b2_t = _coef(schedule, t)
    a_s, b2_s = _coef(schedule, t_next)
    if t_next < 0:
        return x_t - a_t * pred_res - b2_t**0.5 * pred_noise
    s = posterior_sigma(schedule, t, t_next, eta) if sigma is None else float(sigma)
    if not (0.0 <= s and s * s <= b2_s + 1e-12):
        raise ValueError(f"sigma must satisfy 0 ≤ σ² ≤ β̄_s² = {b2_s:.6g}, got σ = {s}")
    x_next = x_t - (a_t - a_s) * pred_res - (b2_t**0.5 - max(b2_s - s * s, 0.0) ** 0.5) * pred_noise
    if s > 0:
        if noise is None:
            noise = torch.randn_like(x_t)
        check_image_batch("noise", noise, like=x_t)
        x_next = x_next + s * noise
    return x_next


# ----------------------------------------------------------------------------- RDDM loop


def _split_prediction(out: object, mode: str) -> tuple[Tensor | None, Tensor | None]:
    if mode == "res_noise":
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(
                "mode 'res_noise' needs the model to return a tuple (pred_res, pred_noise)"
            )
        return out[0], out[1]
    if not isinstance(out, Tensor):
        raise TypeError(
            f"mode {mode!r} needs the model to return a single tensor, got {type(out).__name__}"
        )
    return (out, None) if mode == "res" else (None, out)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _check_eta(eta: float) -> None:
    if not (0.0 <= float(eta) <= 1.0):
        raise ValueError(f"eta must lie in [0, 1], got {eta}")


def _check_pair(t: int, t_next: int, T: int) -> None:
    if not (0 <= t < T):
        raise ValueError(f"t must lie in 0 … {T - 1}, got {t}")
    if not (-1 <= t_next < t):
        raise ValueError(f"t_next must satisfy −1 ≤ t_next < t = {t}, got {t_next}")


def _last(states: Iterable[StepState]) -> StepState:
    """Run a sampling generator to its end and return its last state."""
    last = deque(states, maxlen=1)
    if not last:
        raise RuntimeError("the sampler produced no steps")
    return last[0]


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def sample_iter(
    model: Callable[..., object],
    x_in: Tensor,
    schedule: Schedule,
    steps: int,
    mode: Mode = "res_noise",
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[StepState], None] | None = None,
    x_start: Tensor | None = None,
    eta_convention: Literal["rddm", "ddim"] = "rddm",
) -> Iterator[StepState]:
    """Run RDDM sampling step by step, yielding a :class:`StepState` after each step.

    Starts at I_T = I_in + β̄_{T−1}·z (the reference; with I_in = 0 this is generation from
    pure noise) unless ``x_start`` is given, and takes ``steps`` steps of (R3) on the
    :func:`timestep_pairs` grid. In mode ``"res"`` the noise is derived by (R4), in mode
    ``"noise"`` the residual by (R5).

    Args:
        model: ``model(x_t, t, x_in)``, see the module docstring.
        x_in: degraded input, shape (B, C, H, W), on [-1, 1] (zeros to generate).
        schedule: coefficients; steps: number of network calls (1 … T).
        mode: ``"res_noise"`` (SM-Res-N), ``"res"`` (SM-Res) or ``"noise"`` (SM-N).
        eta: stochasticity in [0, 1]; ``eta_convention="ddim"`` reads it as DDIM's η
            (DDIM-converted schedules only, see :func:`ddim_sigma`).
        generator: torch.Generator for the starting noise and the σ·z terms.
        callback: called with every StepState.
        x_start: the starting state, shape (B, C, H, W), instead of I_in + β̄·z.
    """
    _check_mode(mode)
    _check_eta(eta)
    if eta_convention not in ("rddm", "ddim"):
        raise ValueError(f"eta_convention must be 'rddm' or 'ddim', got {eta_convention!r}")
    check_image_batch("x_in", x_in)
    pairs = timestep_pairs(schedule.T, steps)
    if x_start is None:
        x = x_in + schedule.noise_strength * _randn(x_in, generator)
    else:
        check_image_batch("x_start", x_start, like=x_in)
        x = x_start
    B = x_in.shape[0]
    for i, (t, t_next) in enumerate(pairs):
        tt = as_timesteps(t, B, schedule.T, x.device)
        pred_res, pred_noise = _split_prediction(model(x, tt, x_in), mode)
        if pred_noise is None:
            pred_noise = predict_noise_from_res(x, x_in, pred_res, tt, schedule)
        if pred_res is None:
            pred_res = predict_res_from_noise(x, x_in, pred_noise, tt, schedule)
        check_image_batch("pred_res", pred_res, like=x)
        check_image_batch("pred_noise", pred_noise, like=x)
        if eta_convention == "ddim":
            sigma = ddim_sigma(schedule, t, t_next, eta)
        else:
            sigma = posterior_sigma(schedule, t, t_next, eta) if t_next >= 0 else 0.0
        z = _randn(x, generator) if sigma > 0 else None
        x_next = rddm_step(x, pred_res, pred_noise, t, t_next, schedule, noise=z, sigma=sigma)
        a_t, b2_t = _coef(schedule, t)
        a_s, b2_s = _coef(schedule, t_next)
        pred_x0 = (
            x
            - extract(schedule.alphas_cumsum, tt, x) * pred_res
            - extract(schedule.betas_cumsum, tt, x) * pred_noise
        )
        state = StepState(
            i,
            "rddm",
            t,
            t_next,
            a_t,
            b2_t**0.5,
            a_s,
            b2_s**0.5,
            x,
            x_next,
            pred_res,
            pred_noise,
            pred_x0,
        )
        if callback is not None:
            callback(state)
        yield state
        x = x_next


def sample(
    model: Callable[..., object],
    x_in: Tensor,
    schedule: Schedule,
    steps: int,
    mode: Mode = "res_noise",
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[StepState], None] | None = None,
    x_start: Tensor | None = None,
    eta_convention: Literal["rddm", "ddim"] = "rddm",
) -> Tensor:
    """Restore (or generate, with I_in = 0) with RDDM; returns Î_0, shape (B, C, H, W).

    Same arguments as :func:`sample_iter`, whose last state it returns.
    """
    with torch.no_grad():
        return _last(
            sample_iter(
                model,
                x_in,
                schedule,
                steps,
                mode,
                eta,
                generator,
                callback,
                x_start,
                eta_convention,
            )
        ).x_next


# ----------------------------------------------------------------------------- DRDD


def _noise_start_t(noise_schedule: Schedule, noise_strength: float) -> int:
    """The timestep whose β̄_t is closest to the noise strength σ (the stage-1 starting point)."""
    betas = noise_schedule.betas_cumsum
    if noise_strength > float(betas[-1]) * (1 + 1e-3):
        raise ValueError(
            f"noise_strength σ = {noise_strength:g} exceeds the noise schedule's largest β̄ = {float(betas[-1]):.4g}; "
            "the noise network never saw that much noise"
        )
    return int(torch.argmin((betas - noise_strength).abs()))


def sample_drdd_iter(
    residual_model: Callable[[Tensor, Tensor, Tensor], Tensor],
    noise_model: Callable[[Tensor, Tensor], Tensor],
    x_in: Tensor,
    residual_schedule: Schedule,
    noise_schedule: Schedule,
    residual_steps: int = 2,
    noise_steps: int = 2,
    noise_strength: float | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[StepState], None] | None = None,
    x_start: Tensor | None = None,
    noise_conditioned: bool = False,
) -> Iterator[StepState]:
    """DRDD's decoupled sampler: remove the residual in the noisy domain, then the noise.

    1. Start at I²_T = I_in + σ·z (σ = ``noise_strength``, default the noise schedule's β̄_{T−1}).
    2. Residual stage, (D2) reversed with (R3) at fixed noise: I_s = I_t − (ᾱ_t − ᾱ_s)·Î_res,
       ``residual_steps`` calls of ``residual_model(x_t, t, x_in)``; it ends at Î_0 + σ·ε.
    3. Noise stage, (D1) reversed with (R3), η = 0: I_s = I_t − (β̄_t − β̄_s)·ε̂, starting from
       the timestep whose β̄_t is closest to σ, ``noise_steps`` calls of ``noise_model(x_t, t)``
       (``noise_model(x_t, t, x_in)`` with ``noise_conditioned``: the released code's denoiser,
       variant ``drdd_cond``).

    Shapes (B, C, H, W); yields a StepState per network call (stage ``"residual"``/``"noise"``).
    σ may not exceed the noise schedule's β̄_{T−1}: for a noise-strength sweep up to σ_max,
    build the noise schedule with ``sum_scale = σ_max²``.
    """
    check_image_batch("x_in", x_in)
    sigma = noise_schedule.noise_strength if noise_strength is None else float(noise_strength)
    if not (sigma > 0 and sigma != float("inf")):
        raise ValueError(f"noise_strength must be a finite number > 0, got {noise_strength}")
    res_pairs = timestep_pairs(residual_schedule.T, residual_steps)
    t0_noise = _noise_start_t(noise_schedule, sigma)
    noise_pairs = _pairs_from(t0_noise, noise_steps, noise_schedule.T)
    if x_start is None:
        x = x_in + sigma * _randn(x_in, generator)
    else:
        check_image_batch("x_start", x_start, like=x_in)
        x = x_start
    B = x_in.shape[0]
    i = 0
    zeros = torch.zeros_like(x_in)
    for t, t_next in res_pairs:
        tt = as_timesteps(t, B, residual_schedule.T, x.device)
        pred_res = residual_model(x, tt, x_in)
        check_image_batch("pred_res", pred_res, like=x)
        a_t = float(residual_schedule.alphas_cumsum[t])
        a_s = float(residual_schedule.alphas_cumsum[t_next]) if t_next >= 0 else 0.0
        x_next = x - (a_t - a_s) * pred_res  # (R3) with the noise term frozen at σ
        pred_x0 = x - a_t * pred_res  # estimate of the noisy clean image I_0 + σ·ε
        state = StepState(
            i, "residual", t, t_next, a_t, sigma, a_s, sigma, x, x_next, pred_res, zeros, pred_x0
        )
        if callback is not None:
            callback(state)
        yield state
        x, i = x_next, i + 1
    for t, t_next in noise_pairs:
        tt = as_timesteps(t, B, noise_schedule.T, x.device)
        pred_noise = noise_model(x, tt, x_in) if noise_conditioned else noise_model(x, tt)
        check_image_batch("pred_noise", pred_noise, like=x)
        x_next = rddm_step(x, zeros, pred_noise, t, t_next, noise_schedule, eta=0.0)
        b_t = float(noise_schedule.betas_cumsum[t])
        b_s = float(noise_schedule.betas_cumsum[t_next]) if t_next >= 0 else 0.0
        state = StepState(
            i,
            "noise",
            t,
            t_next,
            0.0,
            b_t,
            0.0,
            b_s,
            x,
            x_next,
            zeros,
            pred_noise,
            x - b_t * pred_noise,
        )
        if callback is not None:
            callback(state)
        yield state
        x, i = x_next, i + 1


def sample_drdd(
    residual_model: Callable[[Tensor, Tensor, Tensor], Tensor],
    noise_model: Callable[[Tensor, Tensor], Tensor],
    x_in: Tensor,
    residual_schedule: Schedule,
    noise_schedule: Schedule,
    residual_steps: int = 2,
    noise_steps: int = 2,
    noise_strength: float | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[StepState], None] | None = None,
    x_start: Tensor | None = None,
    noise_conditioned: bool = False,
) -> Tensor:
    """Run :func:`sample_drdd_iter` to the end; returns Î_0, shape (B, C, H, W)."""
    with torch.no_grad():
        return _last(
            sample_drdd_iter(
                residual_model,
                noise_model,
                x_in,
                residual_schedule,
                noise_schedule,
                residual_steps,
                noise_steps,
                noise_strength,
                generator,
                callback,
                x_start,
                noise_conditioned,
            )
        ).x_next


def sample_noise_stage(
    noise_model: Callable[..., Tensor],
    x_noisy: Tensor,
    noise_schedule: Schedule,
    noise_strength: float,
    noise_steps: int = 2,
    x_in: Tensor | None = None,
    noise_conditioned: bool = False,
) -> Tensor:
    """DRDD's noise stage alone (D1 reversed, η = 0): denoise ``x_noisy`` = I_0 + σ·z, as
    :func:`sample_drdd` does after a perfect residual stage (its residual stage is given a zero
    prediction and started at ``x_noisy``). ``x_in`` (default ``x_noisy``) is seen only by a
    conditioned denoiser (``noise_conditioned``, variant ``drdd_cond``). Shapes (B, C, H, W).
    """
    return sample_drdd(
        lambda x, t, xi: torch.zeros_like(x),  # no residual: the noise stage alone
        noise_model,
        x_noisy if x_in is None else x_in,
        noise_schedule,
        noise_schedule,
        residual_steps=1,
        noise_steps=noise_steps,
        noise_strength=noise_strength,
        x_start=x_noisy,
        noise_conditioned=noise_conditioned,
    )


def sample_drdd_exact(
    residual_model: Callable[[Tensor, Tensor, Tensor], Tensor],
    x_in: Tensor,
    residual_schedule: Schedule,
    residual_steps: int = 2,
    noise_strength: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DRDD without a denoiser (DRDD Table 8, variant ``drdd_exact``).

    The noise injected at the start, σ·z, is known at sampling time: run the residual stage
    from I_in + σ·z (D2 reversed, ``residual_steps`` calls), which ends at Î_0 + σ·z, and
    subtract σ·z exactly. Returns Î_0, shape (B, C, H, W). With one step this is
    I_in − Î_res(I_in + σ·z): the residual net's own estimate, read in the noisy domain.
    """
    check_image_batch("x_in", x_in)
    sigma = float(noise_strength)
    if not (sigma > 0 and sigma != float("inf")):
        raise ValueError(f"noise_strength must be a finite number > 0, got {noise_strength}")
    z = _randn(x_in, generator)
    x = x_in + sigma * z
    with torch.no_grad():
        for t, t_next in timestep_pairs(residual_schedule.T, residual_steps):
            tt = as_timesteps(t, x_in.shape[0], residual_schedule.T, x.device)
            pred_res = residual_model(x, tt, x_in)
            check_image_batch("pred_res", pred_res, like=x)
            a_t = float(residual_schedule.alphas_cumsum[t])
            a_s = float(residual_schedule.alphas_cumsum[t_next]) if t_next >= 0 else 0.0
            x = x - (a_t - a_s) * pred_res  # (R3) with the noise term frozen at σ
    return x - sigma * z


# ----------------------------------------------------------------------------- removal paths


def removal_path(schedule: Schedule, steps: int, order: str = "simultaneous") -> Tensor:
    """Nodes (ᾱ, β̄) of a path from (ᾱ_{T−1}, β̄_{T−1}) to (0, 0), shape (N+1, 2), float64.

    Along the :func:`timestep_pairs` grid t_0 = T−1 > … > t_S = −1 (a_k = ᾱ_{t_k}, b_k = β̄_{t_k},
    a_S = b_S = 0):

    * ``"simultaneous"``: (a_k, b_k) — residual and noise leave together (RDDM), S steps;
    * ``"residual_first"``: (a_k, b_0) then (0, b_k) — the residual leaves the noisy domain
      first, then the noise (DRDD's order), 2S steps;
    * ``"noise_first"``: (a_0, b_k) then (a_k, 0) — denoise first, then remove the residual, 2S steps.

    RDDM's path-independence claim: with a predictor conditioned on (ᾱ, β̄), every path
    ends at the same I_0 (exactly so for an ideal predictor).
    """
    if order not in PATH_ORDERS:
        raise ValueError(f"order must be one of {PATH_ORDERS}, got {order!r}")
    ts = [p[0] for p in timestep_pairs(schedule.T, steps)] + [-1]
    a = torch.tensor([_coef(schedule, t)[0] for t in ts], dtype=torch.float64)
    b = torch.tensor([_coef(schedule, t)[1] ** 0.5 for t in ts], dtype=torch.float64)
    if order == "simultaneous":
        return torch.stack([a, b], dim=1)
    if order == "residual_first":
        first = torch.stack([a, torch.full_like(a, float(b[0]))], dim=1)
        second = torch.stack([torch.zeros_like(b), b], dim=1)[1:]
    else:
        first = torch.stack([torch.full_like(b, float(a[0])), b], dim=1)
        second = torch.stack([a, torch.zeros_like(a)], dim=1)[1:]
    return torch.cat([first, second], dim=0)


def sample_path_iter(
    model: Callable[[Tensor, Tensor, Tensor, Tensor], object],
    x_in: Tensor,
    path: Tensor,
    mode: Mode = "res_noise",
    generator: torch.Generator | None = None,
    callback: Callable[[StepState], None] | None = None,
    x_start: Tensor | None = None,
) -> Iterator[StepState]:
    """Deterministic sampling along an arbitrary (ᾱ, β̄) path (η = 0 form of (R3)):

        x_b = x_a − (ᾱ_a − ᾱ_b)·Î_res − (β̄_a − β̄_b)·ε̂.

    ``model(x, alpha_bar, beta_bar, x_in)`` (coefficients shape (B,)) predicts as in the
    given mode; the other term is derived from (R2). Where β̄ = 0 the derived ε̂ is set to 0
    (no noise is left, and every later step multiplies it by a zero β̄ difference). Starts at
    I_in + β̄_0·z unless ``x_start`` is given. Shapes (B, C, H, W).
    """
    _check_mode(mode)
    check_image_batch("x_in", x_in)
    if path.ndim != 2 or path.shape[1] != 2 or path.shape[0] < 2:
        raise ValueError(f"path must have shape (N+1, 2) with N ≥ 1 steps, got {tuple(path.shape)}")
    if x_start is None:
        x = x_in + float(path[0, 1]) * _randn(x_in, generator)
    else:
        check_image_batch("x_start", x_start, like=x_in)
        x = x_start
    B = x_in.shape[0]
    for i in range(path.shape[0] - 1):
        a, b = float(path[i, 0]), float(path[i, 1])
        a_n, b_n = float(path[i + 1, 0]), float(path[i + 1, 1])
        ca = torch.full((B,), a, device=x.device, dtype=x.dtype)
        cb = torch.full((B,), b, device=x.device, dtype=x.dtype)
        pred_res, pred_noise = _split_prediction(model(x, ca, cb, x_in), mode)
        if pred_noise is None:  # (R4) with continuous coefficients
            pred_noise = (x - x_in - (a - 1.0) * pred_res) / b if b > 0 else torch.zeros_like(x)
        if pred_res is None:  # (R5)
            if abs(1.0 - a) < 1e-12:
                raise ValueError(
                    f"path node {i} has ᾱ = 1: a noise-only predictor cannot determine the residual there; "
                    "use mode 'res' or 'res_noise'"
                )
            pred_res = (x - x_in - b * pred_noise) / (a - 1.0)
        x_next = x - (a - a_n) * pred_res - (b - b_n) * pred_noise
        state = StepState(
            i,
            "path",
            i,
            i + 1,
            a,
            b,
            a_n,
            b_n,
            x,
            x_next,
            pred_res,
            pred_noise,
            x - a * pred_res - b * pred_noise,
        )
        if callback is not None:
            callback(state)
        yield state
        x = x_next


def sample_path(
    model: Callable[[Tensor, Tensor, Tensor, Tensor], object],
    x_in: Tensor,
    path: Tensor,
    mode: Mode = "res_noise",
    generator: torch.Generator | None = None,
    callback: Callable[[StepState], None] | None = None,
    x_start: Tensor | None = None,
) -> Tensor:
    """Run :func:`sample_path_iter` to the end; returns the final state, shape (B, C, H, W)."""
    with torch.no_grad():
        return _last(sample_path_iter(model, x_in, path, mode, generator, callback, x_start)).x_next
