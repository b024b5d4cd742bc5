"""Reverse samplers: time grid, posterior, exact recovery with an ideal predictor, DRDD, paths."""

import math

import pytest
import torch

from drdd_edu.diffusion import q_sample
from drdd_edu.predictors import DatasetIdealPredictor, OraclePredictor
from drdd_edu.samplers import (
    MODES,
    PATH_ORDERS,
    posterior_sigma,
    rddm_step,
    removal_path,
    sample,
    sample_drdd,
    sample_drdd_iter,
    sample_iter,
    sample_path,
    timestep_pairs,
)
from drdd_edu.schedules import ddim_converted_schedule, rddm_schedule

ATOL = 1e-9  # float64 images: the ideal-predictor identities hold to rounding


def _images(seed=0, shape=(3, 3, 8, 8), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=dtype) * 2 - 1, torch.rand(
        shape, generator=g, dtype=dtype
    ) * 2 - 1


SCHEDULES = {
    "rddm_1": lambda: rddm_schedule(1000, 1.0),
    "rddm_0.01": lambda: rddm_schedule(1000, 0.01),
    "ddim_converted": ddim_converted_schedule,
}
# SM-N is undefined where ᾱ = 1 (rddm schedules' last step); that error is tested separately
RECOVERY_CASES = [
    (name, mode)
    for name in SCHEDULES
    for mode in MODES
    if not (mode == "noise" and name.startswith("rddm"))
]


def test_timestep_pairs_reference_convention():
    assert timestep_pairs(1000, 10) == [
        (999, 899),
        (899, 799),
        (799, 699),
        (699, 599),
        (599, 499),
        (499, 399),
        (399, 299),
        (299, 199),
        (199, 99),
        (99, -1),
    ]
    assert timestep_pairs(1000, 1) == [(999, -1)]
    assert timestep_pairs(5, 5) == [(4, 3), (3, 2), (2, 1), (1, 0), (0, -1)]
    for T in (7, 100, 1000):
        for steps in range(1, T + 1, max(1, T // 37)):
            pairs = timestep_pairs(T, steps)
            assert len(pairs) == steps and pairs[0][0] == T - 1 and pairs[-1][1] == -1
            assert all(a > b for a, b in pairs)


@pytest.mark.parametrize(
    "T,steps,err",
    [(10, 11, ValueError), (10, 0, ValueError), (-3, 1, ValueError), (10, 2.5, TypeError)],
)
def test_timestep_pairs_bad(T, steps, err):
    with pytest.raises(err):
        timestep_pairs(T, steps)


@pytest.mark.parametrize("t,s", [(999, 899), (500, 20), (10, 9)])
def test_posterior_against_direct_gaussian(t, s):
    """η = 1 step with the true residual = the Gaussian conditional of (I_s, I_t) under (R1)."""
    sch = rddm_schedule(1000, sum_scale=1.0)
    x0, x_in = _images(shape=(1, 3, 4, 4))
    res = x_in - x0
    a_t, a_s = sch.alphas_cumsum[t].item(), sch.alphas_cumsum[s].item()
    b2_t, b2_s = sch.betas2_cumsum[t].item(), sch.betas2_cumsum[s].item()
    # direct: I_s ~ N(m_s, b2_s), I_t = I_s + Δᾱ·res + sqrt(b2_t − b2_s)·ε  ⇒  joint Gaussian, condition on I_t
    m_s, m_t = x0 + a_s * res, x0 + a_t * res
    x_t = m_t + math.sqrt(b2_t) * torch.randn_like(x0)
    cond_mean = m_s + b2_s / b2_t * (x_t - m_t)
    cond_var = b2_s - b2_s**2 / b2_t
    assert posterior_sigma(sch, t, s, 1.0) ** 2 == pytest.approx(cond_var, rel=1e-9)
    eps_hat = (x_t - m_t) / math.sqrt(b2_t)
    mean = rddm_step(x_t, res, eps_hat, t, s, sch, eta=1.0, noise=torch.zeros_like(x0))
    torch.testing.assert_close(mean, cond_mean, atol=1e-5, rtol=1e-5)
    # Monte Carlo over z: the spread of the step is the conditional std
    n = 20_000
    z = torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    draws = rddm_step(
        x_t.expand(n, -1, -1, -1),
        res.expand(n, -1, -1, -1),
        eps_hat.expand(n, -1, -1, -1),
        t,
        s,
        sch,
        eta=1.0,
        noise=z,
    )
    assert (draws.std(0) / math.sqrt(cond_var) - 1).abs().max() < 5 / math.sqrt(2 * n)
    # η = 0: deterministic and keeps the marginal form I_s = m_s + β̄_s·ε̂
    torch.testing.assert_close(
        rddm_step(x_t, res, eps_hat, t, s, sch),
        m_s + math.sqrt(b2_s) * eps_hat,
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.parametrize("name,mode", RECOVERY_CASES)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("steps", [1, 2, 5, 10])
def test_every_mode_recovers_x0_with_ideal_predictor(name, mode, eta, steps):
    sch = SCHEDULES[name]()
    x0, x_in = _images()
    model = OraclePredictor(x0, mode).on_schedule(sch)
    out = sample(
        model, x_in, sch, steps, mode=mode, eta=eta, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(out, x0, atol=ATOL, rtol=0)


def test_generation_recovers_x0_with_ideal_predictor():
    sch = ddim_converted_schedule()
    x0, _ = _images()
    zeros = torch.zeros_like(x0)
    for mode in MODES:
        out = sample(
            OraclePredictor(x0, mode).on_schedule(sch),
            zeros,
            sch,
            10,
            mode=mode,
            eta=1.0,
            generator=torch.Generator().manual_seed(0),
        )
        torch.testing.assert_close(out, x0, atol=ATOL, rtol=0)


def test_noise_mode_error():
    sch = rddm_schedule(1000)
    x0, x_in = _images()
    with pytest.raises(ValueError, match="ᾱ_t = 1"):
        sample(OraclePredictor(x0, "noise").on_schedule(sch), x_in, sch, 5, mode="noise")


def test_sample_iter_states_and_callback():
    sch = rddm_schedule(1000)
    x0, x_in = _images()
    seen = []
    states = list(
        sample_iter(
            OraclePredictor(x0).on_schedule(sch),
            x_in,
            sch,
            5,
            callback=seen.append,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert len(states) == 5 and len(seen) == 5
    assert [s.t for s in states] == [p[0] for p in timestep_pairs(1000, 5)]
    for a, b in zip(states, states[1:], strict=False):
        assert torch.equal(a.x_next, b.x_t)
    # the first state starts at I_in + sqrt(sum_scale)·z
    z = torch.randn(x_in.shape, generator=torch.Generator().manual_seed(0), dtype=x_in.dtype)
    torch.testing.assert_close(states[0].x_t, x_in + z)
    # with the oracle, every intermediate x0 estimate is exact
    for s in states:
        torch.testing.assert_close(s.pred_x0, x0, atol=ATOL, rtol=0)


def _imperfect_model(x_t, t, x_in):
    return 0.9 * x_in + 0.05 * x_t, 0.1 * torch.tanh(x_t)


def test_sampling_is_seeded():
    sch = rddm_schedule(1000)
    _, x_in = _images()

    def run(seed, eta):
        return sample(
            _imperfect_model, x_in, sch, 5, eta=eta, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(run(3, 1.0), run(3, 1.0))
    assert not torch.allclose(run(3, 1.0), run(4, 1.0))
    assert not torch.allclose(run(3, 0.0), run(3, 1.0))


def test_sampler_bad_arguments():
    sch = rddm_schedule(100)
    x0, x_in = _images()
    with pytest.raises(ValueError, match="mode"):
        sample(_imperfect_model, x_in, sch, 5, mode="x0")
    with pytest.raises(ValueError, match="eta"):
        sample(_imperfect_model, x_in, sch, 5, eta=1.5)
    with pytest.raises(ValueError, match="exceeds"):
        sample(_imperfect_model, x_in, sch, 101)
    with pytest.raises(TypeError, match="tuple"):
        sample(lambda x, t, xi: x, x_in, sch, 5, mode="res_noise")
    with pytest.raises(TypeError, match="single tensor"):
        sample(_imperfect_model, x_in, sch, 5, mode="res")
    with pytest.raises(ValueError, match="shape mismatch"):
        sample(lambda x, t, xi: (x[:, :2], x), x_in, sch, 5)
    with pytest.raises(ValueError, match="NaN"):
        sample(lambda x, t, xi: (x * math.nan, x), x_in, sch, 5)
    with pytest.raises(ValueError, match="t_next"):
        rddm_step(x0, x0, x0, 10, 10, sch)
    with pytest.raises(ValueError, match="sigma"):
        rddm_step(x0, x0, x0, 10, 5, sch, sigma=10.0)
    with pytest.raises(ValueError, match="DDIM-converted"):
        sample(_imperfect_model, x_in, sch, 5, eta=1.0, eta_convention="ddim")


def test_drdd_sampler_recovers_x0_with_ideal_predictors():
    res_sch = rddm_schedule(1000, sum_scale=1.0)
    noise_sch = rddm_schedule(1000, sum_scale=1.0)
    x0, x_in = _images()
    bbar = noise_sch.betas_cumsum.to(x0.dtype)

    def residual_model(x_t, t, x_in_):
        return x_in_ - x0

    def noise_model(x_t, t):  # knows x0: ε = (x_t − x0)/β̄_t, (D1)
        return (x_t - x0) / bbar[t].view(-1, 1, 1, 1)

    for steps in [(1, 1), (2, 2), (5, 3)]:
        out = sample_drdd(
            residual_model,
            noise_model,
            x_in,
            res_sch,
            noise_sch,
            *steps,
            generator=torch.Generator().manual_seed(0),
        )
        torch.testing.assert_close(out, x0, atol=ATOL, rtol=0)
    states = list(sample_drdd_iter(residual_model, noise_model, x_in, res_sch, noise_sch, 2, 2))
    assert [s.stage for s in states] == ["residual", "residual", "noise", "noise"]
    # after the residual stage the state is the noisy clean image I_0 + σ·ε'
    start = states[0].x_t
    torch.testing.assert_close(states[1].x_next, start - (x_in - x0), atol=ATOL, rtol=0)
    # a smaller test-time noise strength starts the noise stage at the matching timestep
    states = list(
        sample_drdd_iter(
            residual_model, noise_model, x_in, res_sch, noise_sch, 2, 2, noise_strength=0.5
        )
    )
    t0 = states[2].t
    assert abs(noise_sch.betas_cumsum[t0].item() - 0.5) < 1e-3
    with pytest.raises(ValueError, match="exceeds"):
        sample_drdd(residual_model, noise_model, x_in, res_sch, noise_sch, noise_strength=1.5)


@pytest.mark.parametrize("order", PATH_ORDERS)
def test_removal_paths(order):
    sch = rddm_schedule(1000, sum_scale=1.0)
    path = removal_path(sch, 5, order)
    assert path.shape == ((6 if order == "simultaneous" else 11), 2)
    torch.testing.assert_close(path[0], torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(path[-1], torch.zeros(2, dtype=torch.float64))
    assert (torch.diff(path, dim=0) <= 0).all(), "coefficients never grow on the way back"
    x0, x_in = _images()
    for mode in ("res_noise", "res"):
        out = sample_path(
            OraclePredictor(x0, mode), x_in, path, mode, generator=torch.Generator().manual_seed(0)
        )
        torch.testing.assert_close(out, x0, atol=ATOL, rtol=0)


def test_dataset_ideal_predictor():
    g = torch.Generator().manual_seed(0)
    data = torch.rand(5, 2, 1, 1, generator=g) * 2 - 1
    # a one-image data set is the oracle
    single = DatasetIdealPredictor(data[:1]).on_schedule(ddim_converted_schedule())
    oracle = OraclePredictor(data[:1]).on_schedule(ddim_converted_schedule())
    xt = q_sample(data[:1], torch.zeros_like(data[:1]), 500, ddim_converted_schedule())
    t = torch.tensor([500])
    for a, b in zip(
        single(xt, t, torch.zeros_like(xt)), oracle(xt, t, torch.zeros_like(xt)), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # generation with the optimal predictor lands on training points
    sch = ddim_converted_schedule()
    zeros = torch.zeros(64, 2, 1, 1, dtype=torch.float64)
    out = sample(DatasetIdealPredictor(data).on_schedule(sch), zeros, sch, 200, generator=g)
    nearest = torch.cdist(out.flatten(1), data.flatten(1).double()).min(1).values
    assert nearest.max() < 1e-2


def test_bad_sampler_arguments_name_the_problem():
    sch = rddm_schedule(1000)
    x0, x_in = _images()
    model = OraclePredictor(x0, "res_noise").on_schedule(sch)
    with pytest.raises(ValueError, match="eta_convention must be 'rddm' or 'ddim', got 'ddpm'"):
        sample(model, x_in, sch, 5, eta_convention="ddpm")
    with pytest.raises(ValueError, match="T must be a positive int"):
        timestep_pairs(0, 5)
    with pytest.raises(TypeError, match="steps must be an int, got float"):
        timestep_pairs(1000, 5.0)
    with pytest.raises(ValueError, match="exceeds the 1000 timesteps"):
        timestep_pairs(1000, 1001)
    with pytest.raises(ValueError, match="order must be one of"):
        removal_path(sch, 4, order="backwards")
    with pytest.raises(ValueError, match=r"path must have shape \(N\+1, 2\)"):
        sample_path(lambda *a: None, x_in, torch.zeros(1, 2))
    noise_sch = rddm_schedule(1000, 1.0)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="noise_strength must be a finite number > 0"):
            sample_drdd(lambda x, t, c: x, lambda x, t: x, x_in, sch, noise_sch, noise_strength=bad)
