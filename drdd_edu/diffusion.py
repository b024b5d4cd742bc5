"""Forward processes (RDDM and the two DRDD stages) and the conversions between predictions.

Notation (images on the [-1, 1] scale, all tensors shape (B, C, H, W)):

* I_0  = ``x0``      clean target image
* I_in = ``x_in``    degraded input image (0 for pure generation)
* I_res = I_in − I_0 the residual                                              (R0)
* ε    = ``noise``   standard Gaussian noise

Equation labels (R…, D…) are the ones in the README's "equation map", which ties each to
its place in the RDDM and DRDD papers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .schedules import Schedule

__all__ = [
    "to_model_range",
    "from_model_range",
    "extract",
    "as_timesteps",
    "q_sample",
    "q_sample_noise_stage",
    "q_sample_residual_stage",
    "residual",
    "predict_noise_from_res",
    "predict_res_from_noise",
    "predict_x0_from_res_noise",
    "predict_x0_from_noise",
    "check_image_batch",
]


# ----------------------------------------------------------------------------- helpers


def to_model_range(img01: Tensor) -> Tensor:
    """Map images from [0, 1] (data, metrics) to [-1, 1] (diffusion)."""
    return img01 * 2.0 - 1.0


def from_model_range(img: Tensor) -> Tensor:
    """Map images from [-1, 1] back to [0, 1] (clamped)."""
    return ((img + 1.0) / 2.0).clamp(0.0, 1.0)


def check_image_batch(name: str, x: Tensor, like: Tensor | None = None) -> None:
    """Raise a clear error unless ``x`` is a finite floating tensor of shape (B, C, H, W)
    (and, if ``like`` is given, of the same shape as ``like``)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if like is not None and x.shape != like.shape:
        raise ValueError(
            f"shape mismatch: {name} has shape {tuple(x.shape)}, expected {tuple(like.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")


def as_timesteps(
    t: int | Tensor, batch: int, T: int, device: torch.device | str | None = None
) -> Tensor:
    """Return timesteps as a long tensor of shape (B,), checking 0 ≤ t < T."""
    if isinstance(t, Tensor):
        if t.is_floating_point():
            raise TypeError(f"timesteps must be integers, got dtype {t.dtype}")
        t = t.to(device=device, dtype=torch.long)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(
                f"timesteps must have shape ({batch},) or be a scalar, got {tuple(t.shape)}"
            )
    elif isinstance(t, int) and not isinstance(t, bool):
        t = torch.full((batch,), t, dtype=torch.long, device=device)
    else:
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}")
    if (t < 0).any() or (t >= T).any():
        raise ValueError(
            f"timesteps must lie in 0 … {T - 1} (T = {T}), got min {int(t.min())}, max {int(t.max())}"
        )
    return t


def extract(coef: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """Gather ``coef[t]`` (coef shape (T,), t shape (B,)) and reshape to (B, 1, 1, 1) in x's dtype/device."""
    out = coef.to(x.device)[t.to(x.device)].to(x.dtype)
    return out.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def residual(x0: Tensor, x_in: Tensor) -> Tensor:
    """I_res = I_in − I_0 (R0)."""
    return x_in - x0


# ----------------------------------------------------------------------------- forward processes


def q_sample(
    x0: Tensor, x_in: Tensor, t: int | Tensor, schedule: Schedule, noise: Tensor | None = None
) -> Tensor:
    """Sample the RDDM marginal q(I_t | I_0, I_res) in one shot.

        I_t = I_0 + ᾱ_t·I_res + β̄_t·ε,   I_res = I_in − I_0                  (R2)

    Args:
        x0: clean image I_0, shape (B, C, H, W).
        x_in: degraded input I_in, same shape (zeros for generation).
        t: timestep(s) in 0 … T−1, an int or a long tensor of shape (B,).
        schedule: the coefficient schedule.
        noise: ε, same shape; drawn with ``torch.randn_like`` when None.

    Returns:
        I_t, shape (B, C, H, W).
    """
    check_image_batch("x0", x0)
    check_image_batch("x_in", x_in, like=x0)
    if noise is None:
        noise = torch.randn_like(x0)
    check_image_batch("noise", noise, like=x0)
    t = as_timesteps(t, x0.shape[0], schedule.T, x0.device)
    return (
        x0
        + extract(schedule.alphas_cumsum, t, x0) * residual(x0, x_in)
        + extract(schedule.betas_cumsum, t, x0) * noise
    )


def q_sample_noise_stage(
    x0: Tensor, t: int | Tensor, schedule: Schedule, noise: Tensor | None = None
) -> Tensor:
    """DRDD stage 1 (noise diffusion), trained on clean target-domain images only.

        I¹_t = I_0 + β̄_t·ε                                                     (D1)

    This is RDDM's marginal with I_res = 0: no degraded input enters. Shapes as in :func:`q_sample`.
    """
    check_image_batch("x0", x0)
    if noise is None:
        noise = torch.randn_like(x0)
    check_image_batch("noise", noise, like=x0)
    t = as_timesteps(t, x0.shape[0], schedule.T, x0.device)
    return x0 + extract(schedule.betas_cumsum, t, x0) * noise


def q_sample_residual_stage(
    x0: Tensor,
    x_in: Tensor,
    t: int | Tensor,
    schedule: Schedule,
    noise: Tensor | None = None,
    noise_strength: float | None = None,
) -> Tensor:
    """DRDD stage 2 (residual diffusion at a fixed noise level).

        I²_0 = I_0 + σ·ε',   I²_t = I²_0 + ᾱ_t·I_res                            (D2)

    The noise level σ (the paper's "noise strength" β̄_T) does not change with t: the
    residual is added in an already-noisy domain. At ᾱ_{T−1} = 1 this reaches I_in + σ·ε',
    where DRDD sampling starts.

    Args:
        noise_strength: σ; defaults to the schedule's β̄_{T−1}.
        Other arguments as in :func:`q_sample`.
    """
    check_image_batch("x0", x0)
    check_image_batch("x_in", x_in, like=x0)
    if noise is None:
        noise = torch.randn_like(x0)
    check_image_batch("noise", noise, like=x0)
    sigma = schedule.noise_strength if noise_strength is None else float(noise_strength)
    if not (sigma >= 0 and sigma != float("inf")):
        raise ValueError(f"noise_strength must be a finite number ≥ 0, got {noise_strength}")
    t = as_timesteps(t, x0.shape[0], schedule.T, x0.device)
    return x0 + sigma * noise + extract(schedule.alphas_cumsum, t, x0) * residual(x0, x_in)


# ----------------------------------------------------------------------------- conversions


def predict_noise_from_res(
    x_t: Tensor, x_in: Tensor, pred_res: Tensor, t: Tensor, schedule: Schedule
) -> Tensor:
    """ε̂ from Î_res (SM-Res): substitute I_0 = I_in − I_res into (R2).

        ε̂ = (I_t − I_in − (ᾱ_t − 1)·Î_res) / β̄_t                                 (R4)

    Shapes (B, C, H, W); t long, shape (B,). Always defined, since β̄_t > 0.
    """
    alpha_bar = extract(schedule.alphas_cumsum, t, x_t)
    beta_bar = extract(schedule.betas_cumsum, t, x_t)
    return (x_t - x_in - (alpha_bar - 1.0) * pred_res) / beta_bar


def predict_res_from_noise(
    x_t: Tensor, x_in: Tensor, pred_noise: Tensor, t: Tensor, schedule: Schedule
) -> Tensor:
    """Î_res from ε̂ (SM-N): solve (R2) for I_res with I_0 = I_in − I_res.

        Î_res = (I_t − I_in − β̄_t·ε̂) / (ᾱ_t − 1)                                  (R5)

    Undefined where ᾱ_t = 1: there I_t = I_in + β̄_t·ε carries no information about I_0,
    so a noise-only predictor cannot restore. Raises ``ValueError`` in that case.
    """
    # 1 − ᾱ_t is formed in float64 before the cast: in float32, ᾱ_t ≈ 1 would lose its last digits
    one_minus = 1.0 - schedule.alphas_cumsum
    if (one_minus[t.cpu()] == 0).any():
        bad = int(t[(one_minus[t.cpu()] == 0).to(t.device)][0])
        raise ValueError(
            f"cannot derive the residual from predicted noise at t={bad}: ᾱ_t = 1 there, so I_t = I_in + β̄_t·ε "
            "holds no information about I_0. Use mode 'res' or 'res_noise', or a schedule with ᾱ_{T-1} < 1 "
            "(e.g. ddim_converted_schedule)."
        )
    beta_bar = extract(schedule.betas_cumsum, t, x_t)
    return (beta_bar * pred_noise - (x_t - x_in)) / extract(one_minus, t, x_t)


def predict_x0_from_res_noise(
    x_t: Tensor, pred_res: Tensor, pred_noise: Tensor, t: Tensor, schedule: Schedule
) -> Tensor:
    """Î_0 = I_t − ᾱ_t·Î_res − β̄_t·ε̂, (R2) solved for I_0 (SM-Res-N)."""
    alpha_bar = extract(schedule.alphas_cumsum, t, x_t)
    beta_bar = extract(schedule.betas_cumsum, t, x_t)
    return x_t - alpha_bar * pred_res - beta_bar * pred_noise


def predict_x0_from_noise(
    x_t: Tensor, x_in: Tensor, pred_noise: Tensor, t: Tensor, schedule: Schedule
) -> Tensor:
    """Î_0 = (I_t − ᾱ_t·I_in − β̄_t·ε̂) / (1 − ᾱ_t) (R5'); same caveat at ᾱ_t = 1 as :func:`predict_res_from_noise`."""
    return x_in - predict_res_from_noise(x_t, x_in, pred_noise, t, schedule)
