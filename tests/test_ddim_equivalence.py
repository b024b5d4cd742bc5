"""RDDM with converted coefficients and I_in = 0 is DDIM, step for step (RDDM §3.3).

The DDIM reference here is written independently from Song et al. (2021), Eq. (12) and (16),
in DDPM's own variables γ_t = Π(1 − b_i); only the predicted noise is shared.
"""

import math

import pytest
import torch

from drdd_edu.samplers import ddim_sigma, posterior_sigma, sample_iter, timestep_pairs
from drdd_edu.schedules import ddim_converted_schedule

T = 1000
GAMMA = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64), 0)


def eps_model(x, t):
    """A fixed, arbitrary (not ideal) noise predictor: the equivalence must not depend on it."""
    w = torch.tensor([[0.8, -0.3], [0.2, 0.9]], dtype=x.dtype)
    h = torch.einsum("ij,bjhw->bihw", w, x)
    return torch.tanh(h + (t.float() / T).view(-1, 1, 1, 1))


def ddim_reference(x_T, steps, eta, generator):
    """Textbook DDIM: x̂0 = (x_t − sqrt(1−γ_t)ε̂)/sqrt(γ_t); x_s = sqrt(γ_s)x̂0 + sqrt(1−γ_s−σ²)ε̂ + σz."""
    x, states = x_T, []
    for t, s in timestep_pairs(T, steps):
        g_t = GAMMA[t].item()
        g_s = GAMMA[s].item() if s >= 0 else 1.0
        eps = eps_model(x, torch.full((x.shape[0],), t))
        x0_hat = (x - math.sqrt(1 - g_t) * eps) / math.sqrt(g_t)
        sigma = eta * math.sqrt((1 - g_s) / (1 - g_t) * (1 - g_t / g_s)) if s >= 0 else 0.0
        x = math.sqrt(g_s) * x0_hat + math.sqrt(max(1 - g_s - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        states.append(x)
    return states


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [1, 5, 10, 50])
def test_rddm_reproduces_ddim_step_for_step(eta, steps):
    sch = ddim_converted_schedule(T)
    x_T = torch.randn(16, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = ddim_reference(x_T, steps, eta, torch.Generator().manual_seed(7))
    ours = sample_iter(
        lambda x, t, x_in: eps_model(x, t),
        torch.zeros_like(x_T),
        sch,
        steps,
        mode="noise",
        eta=eta,
        generator=torch.Generator().manual_seed(7),
        x_start=x_T,
        eta_convention="ddim",
    )
    n = 0
    for state, expect in zip(ours, ref, strict=True):
        torch.testing.assert_close(state.x_next, expect, atol=1e-9, rtol=1e-9)
        n += 1
    assert n == steps


def test_rddm_eta_is_not_ddim_eta():
    """RDDM's σ² (posterior of its own chain) is γ_s·σ²_DDIM(√η): at η = 1 smaller than DDPM's."""
    sch = ddim_converted_schedule(T)
    for t, s in timestep_pairs(T, 20)[:-1]:
        for eta in (0.3, 1.0):
            g_s = GAMMA[s].item()
            rddm = posterior_sigma(sch, t, s, eta)
            # RDDM's η enters σ² linearly, DDIM's quadratically
            assert rddm**2 == pytest.approx(g_s * ddim_sigma(sch, t, s, eta**0.5) ** 2, rel=1e-9)
        # at η = 1 RDDM's σ is DDPM's ancestral σ times sqrt(γ_s) < 1
        assert posterior_sigma(sch, t, s, 1.0) < ddim_sigma(sch, t, s, 1.0)


def test_eta_zero_agrees_in_both_conventions():
    sch = ddim_converted_schedule(T)
    x_T = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = lambda x, t, x_in: eps_model(x, t)  # noqa: E731
    a = list(sample_iter(model, torch.zeros_like(x_T), sch, 10, mode="noise", x_start=x_T))
    b = ddim_reference(x_T, 10, 0.0, None)
    torch.testing.assert_close(a[-1].x_next, b[-1], atol=1e-9, rtol=1e-9)
