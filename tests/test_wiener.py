"""The Wiener filter (W1): the best shift-invariant linear denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from drdd_edu.wiener import fit_wiener


def _stationary_field(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Periodic Gaussian fields with a known power spectrum P(f) ∝ 1/(1 + |f|²/4), three
    correlated channels (the same field plus small independent parts)."""
    f = torch.fft.fftfreq(size) * size
    power = 1.0 / (1.0 + (f[:, None] ** 2 + f[None, :] ** 2) / 4.0)
    white = torch.randn(n, 1, size, size, generator=gen, dtype=torch.float64)
    base = torch.fft.ifft2(torch.fft.fft2(white, norm="ortho") * power.sqrt(), norm="ortho").real
    x = base.repeat(1, 3, 1, 1) + 0.1 * torch.randn(
        n, 3, size, size, generator=gen, dtype=torch.float64
    )
    return x, power


def test_wiener_reaches_the_theoretical_mse_and_beats_the_naive_estimators():
    gen = torch.Generator().manual_seed(0)
    train, power = _stationary_field(400, 16, gen)
    test, _ = _stationary_field(200, 16, gen)
    sigma = 0.8
    noisy = test + sigma * torch.randn(test.shape, generator=gen, dtype=torch.float64)
    filt = fit_wiener(train, sigma)
    mse = float((filt(noisy) - test).pow(2).mean())
    # the fitted filter's error is close to the true Wiener filter's error (spectrum known):
    # per frequency the 3×3 problem is S = P·11ᵀ + 0.01·I
    one = torch.ones(3, 1, dtype=torch.float64)
    errs = []
    for p in power.flatten():
        s = float(p) * (one @ one.T) + 0.01 * torch.eye(3, dtype=torch.float64)
        post = s - s @ torch.linalg.inv(s + sigma**2 * torch.eye(3, dtype=torch.float64)) @ s
        errs.append(float(torch.trace(post)) / 3)
    ideal = sum(errs) / len(errs)
    assert mse == pytest.approx(ideal, rel=0.1)
    assert mse < float((noisy - test).pow(2).mean()) / 3  # far better than doing nothing
    assert mse < float((test - test.mean()).pow(2).mean())  # and than predicting the mean


def test_wiener_limits_and_errors():
    gen = torch.Generator().manual_seed(1)
    x, _ = _stationary_field(50, 8, gen)
    no_noise = fit_wiener(x, 0.0)
    assert torch.allclose(no_noise(x), x, atol=1e-8)  # σ = 0: the identity
    huge = fit_wiener(x, 1e4)
    assert torch.allclose(
        huge(x), x.mean(dim=(0, 2, 3))[None, :, None, None].expand_as(x), atol=1e-4
    )
    with pytest.raises(ValueError, match="shape"):
        fit_wiener(x[:1], 0.5)
    with pytest.raises(ValueError, match="sigma"):
        fit_wiener(x, -1.0)
    with pytest.raises(ValueError, match="sigma"):
        fit_wiener(x, math.nan)
    with pytest.raises(ValueError, match="NaN"):
        fit_wiener(torch.full_like(x, math.nan), 0.5)
    with pytest.raises(ValueError, match="noisy must have shape"):
        no_noise(x[:, :, :4, :4])
