"""The Wiener filter: the best shift-invariant *linear* denoiser, a reference for DRDD's noise stage.

DRDD's unconditional noise stage (D1) sees only ``y = I_0 + σ·ε`` (no degraded input), so how well
it can denoise is limited by the information left in ``y``. The linear minimum-mean-square-error
estimator that treats images as a stationary (periodic) random field is the Wiener filter: with
``Y(f)`` the orthonormal 2-D DFT of ``y − m`` (``m`` the per-channel mean) and ``S(f)`` the 3×3
cross-spectral matrix of the clean images' colour channels at frequency ``f``,

    Î_0 = m + IDFT[ S(f)·(S(f) + σ²·1)⁻¹ · Y(f) ]                                  (W1)

(white noise of variance σ² per pixel has flat spectrum σ² under the orthonormal DFT). A learned
network can beat it, being nonlinear; a network that does not is no better than a linear filter.
It is fitted on the noise stage's own training images (the unpaired clean pool), so it knows
no more than the noise network is shown.

scikit-image's ``restoration.wiener`` deconvolves a known blur with a scalar noise-to-signal
ratio; it does not estimate the cross-channel spectrum from data, hence this small module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["WienerFilter", "fit_wiener"]


@dataclass(frozen=True)
class WienerFilter:
    """A fitted Wiener filter (W1) for one noise level.

    Attributes:
        mean: per-channel mean, shape (C,).
        gain: S(f)·(S(f) + σ²)⁻¹, complex, shape (H, W, C, C).
        sigma: the noise standard deviation σ it was fitted for (on the images' scale).
    """

    mean: Tensor
    gain: Tensor
    sigma: float

    def __call__(self, noisy: Tensor) -> Tensor:
        """Denoise ``noisy`` of shape (B, C, H, W) (the fitted H, W, C); returns the same shape."""
        if noisy.ndim != 4 or tuple(noisy.shape[1:]) != (
            self.gain.shape[2],
            self.gain.shape[0],
            self.gain.shape[1],
        ):
            raise ValueError(
                f"noisy must have shape (B, {self.gain.shape[2]}, {self.gain.shape[0]}, "
                f"{self.gain.shape[1]}), got {tuple(noisy.shape)}"
            )
        m = self.mean.to(noisy)[None, :, None, None]
        spec = torch.fft.fft2((noisy - m).double(), norm="ortho")  # (B, C, H, W)
        out = torch.einsum("hwij,bjhw->bihw", self.gain, spec)
        return (torch.fft.ifft2(out, norm="ortho").real + m.double()).to(noisy.dtype)


def fit_wiener(clean: Tensor, sigma: float) -> WienerFilter:
    """Fit (W1) on clean images ``clean`` of shape (N, C, H, W) for noise std ``sigma`` ≥ 0.

    The spectrum is the average periodogram of the mean-removed images (an unbiased estimate of
    S(f) for a stationary field with periodic boundaries). Raises ``ValueError`` for fewer than
    2 images, a wrong shape, non-finite values or a negative/non-finite σ.
    """
    if clean.ndim != 4 or clean.shape[0] < 2:
        raise ValueError(f"clean must have shape (N ≥ 2, C, H, W), got {tuple(clean.shape)}")
    if not torch.isfinite(clean).all():
        raise ValueError("clean contains NaN or inf")
    sigma = float(sigma)
    if not (sigma >= 0 and sigma < float("inf")):
        raise ValueError(f"sigma must be a finite number ≥ 0, got {sigma}")
    x = clean.double()
    mean = x.mean(dim=(0, 2, 3))
    spec = torch.fft.fft2(x - mean[None, :, None, None], norm="ortho")  # (N, C, H, W)
    # S(f)_ij = E[X_i(f)·conj(X_j(f))], shape (H, W, C, C)
    s = torch.einsum("nihw,njhw->hwij", spec, spec.conj()) / x.shape[0]
    eye = torch.eye(x.shape[1], dtype=s.dtype)
    gain = s @ torch.linalg.inv(s + sigma**2 * eye)
    return WienerFilter(mean.float(), gain, sigma)
