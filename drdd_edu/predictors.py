"""Closed-form predictors: ground truth for the samplers, no training needed.

* :class:`OraclePredictor` knows the clean target I_0 and returns the exact residual and
  noise of whatever state it is shown. Every sampler must then recover I_0 exactly: the
  tests and notebooks use this to check the reverse-step algebra.
* :class:`DatasetIdealPredictor` is the *optimal* (minimum mean-squared-error) predictor for
  a finite training set (as in smalldiffusion's ideal denoiser): under (R2) with clean
  images drawn uniformly from the set, E[I_0 | I_t] is a softmax-weighted mean of the set.
  A trained network can at best learn this function; sampling with it generates (or
  restores to) training images.

Both are conditioned on the coefficients (ᾱ, β̄) — call ``p(x, alpha_bar, beta_bar, x_in)``
for :func:`~drdd_edu.samplers.sample_path` — and :meth:`on_schedule` adapts them to the
timestep interface ``model(x_t, t, x_in)`` of :func:`~drdd_edu.samplers.sample`.
Images shape (B, C, H, W) on the [-1, 1] scale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .diffusion import check_image_batch, extract
from .schedules import Schedule

__all__ = ["OraclePredictor", "DatasetIdealPredictor", "output_for_mode"]


def output_for_mode(
    pred_res: Tensor, pred_noise: Tensor, mode: str
) -> Tensor | tuple[Tensor, Tensor]:
    """Shape a (residual, noise) prediction as a model in ``mode`` returns it."""
    if mode == "res_noise":
        return pred_res, pred_noise
    if mode == "res":
        return pred_res
    if mode == "noise":
        return pred_noise
    raise ValueError(f"mode must be 'res_noise', 'res' or 'noise', got {mode!r}")


class _CoefficientPredictor:
    mode: str

    def predict(
        self, x: Tensor, alpha_bar: Tensor, beta_bar: Tensor, x_in: Tensor
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __call__(
        self, x: Tensor, alpha_bar: Tensor, beta_bar: Tensor, x_in: Tensor
    ) -> Tensor | tuple[Tensor, Tensor]:
        return output_for_mode(*self.predict(x, alpha_bar, beta_bar, x_in), self.mode)

    def on_schedule(
        self, schedule: Schedule
    ) -> Callable[[Tensor, Tensor, Tensor], Tensor | tuple[Tensor, Tensor]]:
        """Adapt to ``model(x_t, t, x_in)`` with t a long tensor (B,), reading ᾱ_t, β̄_t off ``schedule``."""

        def model(x_t: Tensor, t: Tensor, x_in: Tensor) -> Tensor | tuple[Tensor, Tensor]:
            a = extract(schedule.alphas_cumsum, t, x_t).flatten()
            b = extract(schedule.betas_cumsum, t, x_t).flatten()
            return self(x_t, a, b, x_in)

        return model


def _noise_given_x0(x: Tensor, x0: Tensor, x_in: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """ε = (x − I_0 − ᾱ·(I_in − I_0)) / β̄ from (R2); 0 where β̄ = 0 (no noise left)."""
    safe_b = torch.where(b > 0, b, torch.ones_like(b))
    eps = (x - x0 - a * (x_in - x0)) / safe_b
    return torch.where(b > 0, eps, torch.zeros_like(eps))


class OraclePredictor(_CoefficientPredictor):
    """The exact residual and noise of a state, given the true clean image.

    Args:
        x0: the true I_0, shape (B, C, H, W).
        mode: what to return: ``"res_noise"`` (tuple), ``"res"`` or ``"noise"``.
    """

    def __init__(self, x0: Tensor, mode: str = "res_noise") -> None:
        check_image_batch("x0", x0)
        output_for_mode(x0, x0, mode)  # validates mode
        self.x0 = x0
        self.mode = mode

    def predict(
        self, x: Tensor, alpha_bar: Tensor, beta_bar: Tensor, x_in: Tensor
    ) -> tuple[Tensor, Tensor]:
        check_image_batch("x", x, like=self.x0)
        a = alpha_bar.to(x).reshape(-1, 1, 1, 1)
        b = beta_bar.to(x).reshape(-1, 1, 1, 1)
        return x_in - self.x0, _noise_given_x0(x, self.x0, x_in, a, b)


class DatasetIdealPredictor(_CoefficientPredictor):
    """MMSE predictor for clean images drawn uniformly from a finite set.

    Given I_t and I_in, (R2) says I_t − ᾱ·I_in = (1 − ᾱ)·I_0 + β̄·ε, so the posterior
    weight of training image k is

        w_k ∝ exp(−‖I_t − ᾱ·I_in − (1 − ᾱ)·I_0^k‖² / (2β̄²)),

    Î_0 = Σ_k w_k·I_0^k, Î_res = I_in − Î_0 and ε̂ from (R2). As β̄ → 0 the weights
    concentrate on the nearest image, so samples reproduce training images.

    I_0 is modelled as independent of I_in (no pairing is known): in a restoration setting
    it therefore *generates* a training image, chosen by the starting noise, rather than
    restoring the input — the optimum a network trained on unpaired data could reach.

    Args:
        x0_set: the training set of clean images, shape (N, C, H, W).
        mode: ``"res_noise"``, ``"res"`` or ``"noise"``.
    """

    def __init__(self, x0_set: Tensor, mode: str = "res_noise") -> None:
        check_image_batch("x0_set", x0_set)
        output_for_mode(x0_set, x0_set, mode)
        self.x0_set = x0_set
        self.mode = mode

    def posterior_weights(
        self, x: Tensor, alpha_bar: Tensor, beta_bar: Tensor, x_in: Tensor
    ) -> Tensor:
        """w, shape (B, N): the posterior probability of each training image."""
        if x.shape[1:] != self.x0_set.shape[1:]:
            raise ValueError(
                f"shape mismatch: x has shape {tuple(x.shape)}, training images {tuple(self.x0_set.shape)}"
            )
        a = alpha_bar.to(x).reshape(-1, 1)
        b = beta_bar.to(x).reshape(-1, 1).clamp_min(1e-12)
        target = (x - a.reshape(-1, 1, 1, 1) * x_in).flatten(1)  # (B, D)
        ref = self.x0_set.to(x).flatten(1)  # (N, D)
        d2 = (target[:, None, :] - (1 - a)[:, :, None] * ref[None, :, :]).pow(2).sum(-1)  # (B, N)
        return torch.softmax(-d2 / (2 * b**2), dim=1)

    def predict(
        self, x: Tensor, alpha_bar: Tensor, beta_bar: Tensor, x_in: Tensor
    ) -> tuple[Tensor, Tensor]:
        check_image_batch("x", x)
        w = self.posterior_weights(x, alpha_bar, beta_bar, x_in)
        x0_hat = (w @ self.x0_set.to(x).flatten(1)).reshape(x.shape)
        a = alpha_bar.to(x).reshape(-1, 1, 1, 1)
        b = beta_bar.to(x).reshape(-1, 1, 1, 1)
        return x_in - x0_hat, _noise_given_x0(x, x0_hat, x_in, a, b)
