"""Forward processes: Monte-Carlo moments, the per-step chain, conversions, bad input."""

import math

import pytest
import torch

from drdd_edu.diffusion import (
    predict_noise_from_res,
    predict_res_from_noise,
    predict_x0_from_noise,
    predict_x0_from_res_noise,
    q_sample,
    q_sample_noise_stage,
    q_sample_residual_stage,
)
from drdd_edu.schedules import ddim_converted_schedule, rddm_schedule

N = 40_000  # Monte-Carlo samples: standard error of the mean ≈ β̄/200


def _pair(seed=0, shape=(1, 3, 2, 2)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1, torch.rand(shape, generator=g) * 2 - 1


@pytest.mark.parametrize("t", [0, 250, 999])
@pytest.mark.parametrize(
    "make",
    [lambda: rddm_schedule(1000, 1.0), lambda: rddm_schedule(1000, 0.01), ddim_converted_schedule],
)
def test_q_sample_moments(t, make):
    s = make()
    x0, x_in = _pair()
    torch.manual_seed(1)
    xt = q_sample(x0.expand(N, -1, -1, -1), x_in.expand(N, -1, -1, -1), t, s)
    mean = x0 + s.alphas_cumsum[t].item() * (x_in - x0)
    std = s.betas_cumsum[t].item()
    se = std / math.sqrt(N)
    assert (xt.mean(0) - mean[0]).abs().max() < 5 * se
    assert (xt.std(0) / std - 1).abs().max() < 5 / math.sqrt(2 * N)


def test_marginal_equals_iterated_chain():
    """Iterating I_t = I_{t-1} + α_t·I_res + β_t·ε (R1) gives the closed form (R2)."""
    T = 40
    s = rddm_schedule(T, sum_scale=0.5, alpha_power=2.0, beta_power=0.5)
    x0, x_in = _pair(seed=3)
    res = x_in - x0
    torch.manual_seed(2)
    x = x0.expand(N, -1, -1, -1).clone()
    for t in range(T):
        x = x + s.alphas[t].float() * res + s.betas2[t].sqrt().float() * torch.randn_like(x)
    assert (x.mean(0) - (x0 + res)[0]).abs().max() < 5 * math.sqrt(0.5 / N)
    assert (x.var(0) / 0.5 - 1).abs().max() < 5 * math.sqrt(2 / N)


def test_q_sample_exact_with_given_noise_and_tensor_t():
    s = rddm_schedule(100)
    x0, x_in = _pair(shape=(3, 3, 4, 4))
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 50, 99])
    xt = q_sample(x0, x_in, t, s, eps)
    for i, ti in enumerate(t.tolist()):
        expect = (
            x0[i]
            + s.alphas_cumsum[ti].item() * (x_in[i] - x0[i])
            + s.betas_cumsum[ti].item() * eps[i]
        )
        torch.testing.assert_close(xt[i], expect)


def test_ddim_conversion_is_ddpm_marginal():
    s = ddim_converted_schedule()
    x0, _ = _pair(shape=(4, 3, 4, 4))
    eps = torch.randn_like(x0)
    gam = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    for t in [0, 10, 500, 999]:
        xt = q_sample(x0, torch.zeros_like(x0), t, s, eps)
        torch.testing.assert_close(
            xt, gam[t].sqrt().float() * x0 + (1 - gam[t]).sqrt().float() * eps
        )


def test_drdd_stages():
    s = rddm_schedule(100, sum_scale=1.0)
    x0, x_in = _pair(shape=(2, 3, 4, 4))
    eps = torch.randn_like(x0)
    torch.testing.assert_close(q_sample_noise_stage(x0, 99, s, eps), x0 + eps)
    torch.testing.assert_close(
        q_sample_noise_stage(x0, 10, s, eps), x0 + s.betas_cumsum[10].item() * eps
    )
    # stage 2: fixed noise level, residual added; endpoint I_in + σ·ε'
    torch.testing.assert_close(
        q_sample_residual_stage(x0, x_in, 99, s, eps, noise_strength=0.7), x_in + 0.7 * eps
    )
    a = s.alphas_cumsum[30].item()
    torch.testing.assert_close(
        q_sample_residual_stage(x0, x_in, 30, s, eps), x0 + eps + a * (x_in - x0)
    )


@pytest.mark.parametrize("make", [lambda: rddm_schedule(200, 0.3), ddim_converted_schedule])
def test_conversions_round_trip(make):
    s = make()
    x0, x_in = _pair(shape=(4, 3, 4, 4))
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 17, 100, 150])
    xt = q_sample(x0, x_in, t, s, eps)
    res = x_in - x0
    torch.testing.assert_close(
        predict_noise_from_res(xt, x_in, res, t, s), eps, atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        predict_res_from_noise(xt, x_in, eps, t, s), res, atol=2e-3, rtol=1e-3
    )
    torch.testing.assert_close(
        predict_x0_from_res_noise(xt, res, eps, t, s), x0, atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(predict_x0_from_noise(xt, x_in, eps, t, s), x0, atol=2e-3, rtol=1e-3)


def test_res_from_noise_undefined_at_alpha_bar_one():
    s = rddm_schedule(10)
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="ᾱ_t = 1"):
        predict_res_from_noise(x, x, x, torch.tensor([3, 9]), s)


def test_bad_inputs():
    s = rddm_schedule(10)
    x0, x_in = _pair(shape=(2, 3, 4, 4))
    with pytest.raises(ValueError, match="shape mismatch"):
        q_sample(x0, x_in[:, :2], 3, s)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        q_sample(x0[0], x_in[0], 3, s)
    with pytest.raises(ValueError, match="NaN"):
        q_sample(x0 * math.nan, x_in, 3, s)
    with pytest.raises(ValueError, match="timesteps must lie"):
        q_sample(x0, x_in, 10, s)
    with pytest.raises(ValueError, match="timesteps must lie"):
        q_sample(x0, x_in, -1, s)
    with pytest.raises(TypeError, match="floating-point"):
        q_sample(x0.long(), x_in.long(), 3, s)
    with pytest.raises(TypeError, match="integers"):
        q_sample(x0, x_in, torch.tensor([1.0, 2.0]), s)
    with pytest.raises(ValueError, match="noise_strength"):
        q_sample_residual_stage(x0, x_in, 3, s, noise_strength=-1.0)
