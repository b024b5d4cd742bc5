"""Schedules: boundary conditions, the reference's closed forms, the DDIM conversion."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drdd_edu.schedules import Schedule, ddim_converted_schedule, power_weights, rddm_schedule


def test_reference_linear_schedule_closed_form():
    T = 1000
    s = rddm_schedule(T, sum_scale=0.01)
    tp = torch.arange(1, T + 1, dtype=torch.float64)
    norm = T * (T + 1) / 2
    torch.testing.assert_close(s.alphas, (T + 1 - tp) / norm, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(s.betas2, 0.01 * tp / norm, rtol=1e-12, atol=1e-15)
    assert s.alphas_cumsum[-1].item() == 1.0  # float-exact: boundary
    assert s.sum_scale == pytest.approx(0.01, rel=1e-12)
    assert (torch.diff(s.alphas) < 0).all(), "α must decrease"
    assert (torch.diff(s.betas2) > 0).all(), "β² must increase"


def test_ddim_converted_values_match_spec():
    s = ddim_converted_schedule()
    assert s.alphas_cumsum[999].item() == pytest.approx(0.99365, abs=1e-5)
    assert s.betas_cumsum[999].item() == pytest.approx(0.99998, abs=1e-5)
    gam = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    torch.testing.assert_close(s.alphas_cumsum, 1 - gam.sqrt())
    torch.testing.assert_close(s.betas2_cumsum, 1 - gam)
    assert (s.alphas > 0).all() and (s.betas2 > 0).all()


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 400),
    sum_scale=st.floats(1e-4, 4.0),
    alpha_power=st.floats(0.0, 4.0),
    beta_power=st.floats(0.0, 4.0),
)
def test_rddm_schedule_properties(T, sum_scale, alpha_power, beta_power):
    s = rddm_schedule(T, sum_scale, alpha_power, beta_power)
    assert s.T == T
    assert s.alphas_cumsum[-1].item() == 1.0  # float-exact: boundary
    assert s.sum_scale == pytest.approx(sum_scale, rel=1e-9)
    assert (torch.diff(s.alphas_cumsum) >= -1e-15).all()
    assert (torch.diff(s.betas2_cumsum) > 0).all()
    assert (s.alphas_cumsum >= 0).all() and (s.alphas_cumsum <= 1).all()
    if T > 1 and alpha_power > 0:
        assert (torch.diff(s.alphas) <= 1e-15).all(), "α must not increase"
    if T > 1 and beta_power > 0:
        assert (torch.diff(s.betas2) >= -1e-15).all(), "β² must not decrease"


@settings(max_examples=30, deadline=None)
@given(T=st.integers(2, 2000), b0=st.floats(1e-5, 1e-3), b1=st.floats(1e-3, 0.05))
def test_ddim_conversion_identity(T, b0, b1):
    s = ddim_converted_schedule(T, b0, b1)
    torch.testing.assert_close(
        (1 - s.alphas_cumsum) ** 2 + s.betas2_cumsum, torch.ones(T, dtype=torch.float64)
    )


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 300), k=st.floats(0.0, 5.0), inc=st.booleans())
def test_power_weights_sum_to_one(T, k, inc):
    w = power_weights(T, k, inc)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (w > 0).all()


@pytest.mark.parametrize("T", [0, -5])
def test_bad_T(T):
    with pytest.raises(ValueError, match="positive"):
        rddm_schedule(T)
    with pytest.raises(ValueError, match="positive"):
        ddim_converted_schedule(T)


def test_bad_arguments():
    with pytest.raises(TypeError, match="int"):
        rddm_schedule(10.5)
    with pytest.raises(ValueError, match="sum_scale"):
        rddm_schedule(10, sum_scale=0)
    with pytest.raises(ValueError, match="sum_scale"):
        rddm_schedule(10, sum_scale=math.nan)
    with pytest.raises(ValueError, match="power"):
        rddm_schedule(10, alpha_power=-1)
    with pytest.raises(ValueError, match="beta_start"):
        ddim_converted_schedule(10, beta_start=0.1, beta_end=0.01)


def test_schedule_constructor_checks():
    good = rddm_schedule(10)
    with pytest.raises(ValueError, match="NaN"):
        Schedule(good.alphas, good.alphas_cumsum, good.betas2 * math.nan, good.betas2_cumsum)
    with pytest.raises(ValueError, match="cumulative sum"):
        Schedule(good.alphas, good.alphas_cumsum * 0.5, good.betas2, good.betas2_cumsum)
    with pytest.raises(ValueError, match="disagree on T"):
        Schedule(good.alphas[:5], good.alphas_cumsum, good.betas2, good.betas2_cumsum)
    with pytest.raises(ValueError, match="> 0"):
        zero = good.betas2.clone()
        zero[0] = 0
        Schedule(good.alphas, good.alphas_cumsum, zero, torch.cumsum(zero, 0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Schedule(good.alphas * 2, good.alphas_cumsum * 2, good.betas2, good.betas2_cumsum)


@pytest.mark.parametrize("sum_scale", [1.0, 0.01, 0.25, 2.0])
def test_end_points_are_exact_whatever_the_cpu_rounding(monkeypatch, sum_scale):
    """ᾱ_T = 1 and β̄²_T = sum_scale are assigned, not summed: a float64 cumsum rounds
    differently on an AVX-512 CPU (issue 12: β̄_T came out 0.9999999999999999 there). Simulate a
    CPU whose cumsum is one ulp low everywhere and check the end points stay exact."""
    real_cumsum = torch.cumsum

    def one_ulp_low(x, dim, *args, **kwargs):
        out = real_cumsum(x, dim, *args, **kwargs)
        return torch.nextafter(out, torch.zeros_like(out))

    monkeypatch.setattr(torch, "cumsum", one_ulp_low)
    s = rddm_schedule(1000, sum_scale=sum_scale)
    assert s.alphas_cumsum[-1].item() == 1.0  # float-exact: boundary
    assert s.sum_scale == sum_scale  # float-exact: boundary
    # float-exact: boundary (math.sqrt is correctly rounded)
    assert s.noise_strength == math.sqrt(sum_scale)
    if sum_scale == 1.0:  # float-exact: literal (the parameter)
        assert s.noise_strength == 1.0  # float-exact: boundary
