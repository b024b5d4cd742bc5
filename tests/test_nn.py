"""UNet family: parameter counts, shapes, time conditioning, sampler plumbing, training, dtypes."""

import pytest
import torch

from drdd_edu.diffusion import q_sample
from drdd_edu.nn import (
    OBJECTIVE_TO_MODE,
    OBJECTIVES,
    PRESETS,
    ResidualDenoiser,
    UNet,
    build_model,
    count_parameters,
    flops_per_image,
)
from drdd_edu.samplers import sample, sample_drdd
from drdd_edu.schedules import ddim_converted_schedule, rddm_schedule

S = 16  # image side for the fast tests (tiny has 2 downsamplings: 16 → 4 at the bottleneck)


def _tiny(seed: int = 0, **kwargs) -> ResidualDenoiser:
    torch.manual_seed(seed)
    return build_model("tiny", **kwargs).eval()


def _batch(B: int = 2, C: int = 3, size: int = S, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(B, C, size, size, generator=g)
    x_in = torch.rand(B, C, size, size, generator=g) * 2 - 1
    return x_t, x_in


# ----------------------------------------------------------------------------- parameter counts


def test_tiny_under_one_million_even_with_two_networks():
    assert count_parameters(build_model("tiny", objective="pred_res")) < 1_000_000
    assert count_parameters(build_model("tiny", two_networks=True)) < 1_000_000


def test_small_between_two_and_eight_million():
    for two in (False, True):
        n = count_parameters(build_model("small", two_networks=two))
        assert 2_000_000 <= n <= 8_000_000, n


def test_rddm_reference_parameter_count():
    """SPEC "Reference network": 36.3 M per UNet (6 in, 3 out), 72.5 M for two UNets."""
    one = count_parameters(build_model("rddm", objective="pred_res"))
    assert one == 36_261_187
    assert abs(one - 36.3e6) / 36.3e6 < 0.01
    two = count_parameters(build_model("rddm", objective="pred_res_noise", two_networks=True))
    assert two == 2 * one
    assert abs(two - 72.5e6) / 72.5e6 < 0.01


def test_count_parameters_trainable_only():
    m = build_model("tiny", objective="pred_res")
    n = count_parameters(m)
    m.unet.final_conv.requires_grad_(False)
    frozen = sum(p.numel() for p in m.unet.final_conv.parameters())
    assert count_parameters(m, trainable_only=True) == n - frozen


def test_presets_share_the_reference_structure():
    assert PRESETS["rddm"]["dim"] == 64 and PRESETS["rddm"]["dim_mults"] == (1, 2, 4, 8)
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge")


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("conditioned", [True, False])
@pytest.mark.parametrize(
    "objective,two",
    [
        ("pred_res", False),
        ("pred_noise", False),
        ("pred_res_noise", False),
        ("pred_res_noise", True),
    ],
)
def test_output_shapes(objective, two, conditioned):
    model = _tiny(objective=objective, two_networks=two, conditioned=conditioned)
    x_t, x_in = _batch()
    t = torch.tensor([3, 700])
    out = model(x_t, t, x_in) if conditioned else model(x_t, t)
    if objective == "pred_res_noise":
        assert isinstance(out, tuple) and len(out) == 2
        for o in out:
            assert o.shape == x_t.shape and o.dtype == x_t.dtype
    else:
        assert isinstance(out, torch.Tensor) and out.shape == x_t.shape
    assert model.mode == OBJECTIVE_TO_MODE[objective]


def test_two_networks_need_the_dual_objective():
    for objective in ("pred_res", "pred_noise"):
        with pytest.raises(ValueError, match="two_networks"):
            build_model("tiny", objective=objective, two_networks=True)
    with pytest.raises(ValueError, match="objective"):
        build_model("tiny", objective="pred_x0")


def test_unet_direct_and_condition_channels():
    torch.manual_seed(0)
    net = UNet(3, 5, dim=16, dim_mults=(1, 2), condition_channels=3, resnet_blocks=1)
    x = torch.randn(2, 3, 8, 12)
    y = net(x, torch.tensor([1.0, 2.5]), torch.randn(2, 3, 8, 12))
    assert y.shape == (2, 5, 8, 12)
    with pytest.raises(ValueError, match="cond"):
        net(x, torch.tensor([1, 2]))


def test_pixel_unshuffle_downsampling_variant():
    m = build_model("tiny", objective="pred_res", downsample="pixel_unshuffle").eval()
    x_t, x_in = _batch()
    assert m(x_t, torch.tensor([1, 2]), x_in).shape == x_t.shape
    assert count_parameters(m) < count_parameters(build_model("tiny", objective="pred_res"))


# ----------------------------------------------------------------------------- bad inputs


def test_bad_input_shapes_raise_clear_errors():
    model = _tiny(objective="pred_res")
    x_t, x_in = _batch()
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="divisible"):
        model(x_t[..., :15, :], t, x_in[..., :15, :])
    with pytest.raises(ValueError, match="channels"):
        model(x_t[:, :2], t, x_in[:, :2])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(x_t[0], t, x_in[0])
    with pytest.raises(ValueError, match="x_in"):
        model(x_t, t, x_in[:1])
    with pytest.raises(ValueError, match="conditioned on I_in"):
        model(x_t, t)
    with pytest.raises(ValueError, match="shape"):
        model(x_t, torch.tensor([1, 2, 3]), x_in)
    with pytest.raises(ValueError, match="in_channels"):
        UNet(0, 3, dim=16, dim_mults=(1, 2))
    with pytest.raises(ValueError, match="GroupNorm"):
        UNet(3, 3, dim=12, dim_mults=(1, 2))


def test_unet_used_directly_checks_its_inputs():
    """The bare UNet (as researchers plug it into their own code) names each bad input."""
    net = UNet(3, 3, dim=16, dim_mults=(1, 2), condition_channels=3, resnet_blocks=1)
    x, cond, t = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), torch.tensor([1, 2])
    assert net(x, t, cond).shape == (2, 3, 8, 8)
    assert net(x, torch.tensor(5), cond).shape == (2, 3, 8, 8)  # a 0-d time broadcasts
    assert net(x, t[:, None], cond).shape == (2, 3, 8, 8)  # (B, 1) is read as (B,)
    cases = [
        ((x.numpy(), t, cond), ValueError, r"shape \(B, C, H, W\), got ndarray"),
        ((x[0], t, cond), ValueError, r"shape \(B, C, H, W\), got \(3, 8, 8\)"),
        ((x[:, :2], t, cond), ValueError, "expects 3 input channels, got 2"),
        ((x[..., :7], t, cond[..., :7]), ValueError, "divisible by .* got 8×7"),
        ((x, t, None), ValueError, "needs a 3-channel cond input"),
        ((x, t, cond[:1]), ValueError, r"cond must have shape \(2, 3, 8, 8\), got \(1, 3, 8, 8\)"),
        ((x, [1, 2], cond), TypeError, "time must be a tensor, got list"),
        ((x, torch.tensor([1, 2, 3]), cond), ValueError, r"time must have shape \(2,\)"),
    ]
    for args, err, match in cases:
        with pytest.raises(err, match=match):
            net(*args)
    plain = UNet(3, 3, dim=16, dim_mults=(1, 2), resnet_blocks=1)
    with pytest.raises(ValueError, match="condition_channels=0 but got a cond input"):
        plain(x, t, cond)


def test_scalar_and_int_timesteps_broadcast():
    model = _tiny(objective="pred_res")
    x_t, x_in = _batch()
    a = model(x_t, 5, x_in)
    b = model(x_t, torch.tensor(5), x_in)
    c = model(x_t, torch.tensor([5, 5]), x_in)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(b, c)


# ----------------------------------------------------------------------------- time conditioning


def test_coefficients_mode_requires_a_schedule():
    with pytest.raises(ValueError, match="schedule"):
        build_model("tiny", time_mode="coefficients")
    with pytest.raises(ValueError, match="time_mode"):
        build_model("tiny", time_mode="sigma")


@pytest.mark.parametrize("objective,two", [("pred_res", False), ("pred_res_noise", True)])
def test_coefficients_mode_changes_the_output(objective, two):
    sched = rddm_schedule(T=100)
    m_t = _tiny(seed=1, objective=objective, two_networks=two)
    m_c = _tiny(
        seed=1, objective=objective, two_networks=two, time_mode="coefficients", schedule=sched
    )
    m_c.load_state_dict(m_t.state_dict())  # same weights, only the time input differs
    x_t, x_in = _batch()
    t = torch.tensor([10, 60])
    out_t, out_c = m_t(x_t, t, x_in), m_c(x_t, t, x_in)
    if isinstance(out_t, tuple):
        out_t, out_c = torch.cat(out_t, 1), torch.cat(out_c, 1)
    assert not torch.allclose(out_t, out_c)
    # the residual net sees ᾱ_t·T, the noise net β̄_t·T
    torch.testing.assert_close(m_c.time_res, (sched.alphas_cumsum * sched.T).float())
    torch.testing.assert_close(m_c.time_noise, (sched.betas_cumsum * sched.T).float())


def test_coefficients_mode_checks_timesteps():
    m = _tiny(objective="pred_res", time_mode="coefficients", schedule=rddm_schedule(T=50))
    x_t, x_in = _batch()
    with pytest.raises(ValueError, match="0 … 49"):
        m(x_t, torch.tensor([1, 50]), x_in)
    with pytest.raises(TypeError, match="integer"):
        m(x_t, torch.tensor([1.0, 2.0]), x_in)


def test_dual_head_coefficients_sees_both_times():
    m = _tiny(time_mode="coefficients", schedule=rddm_schedule(T=50))
    assert m.unet.time_inputs == 2
    x_t, x_in = _batch()
    res, noise = m(x_t, torch.tensor([3, 40]), x_in)
    assert res.shape == noise.shape == x_t.shape


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize(
    "objective,two", [*((o, False) for o in OBJECTIVES), ("pred_res_noise", True)]
)
def test_plugs_into_rddm_sampler(objective, two):
    # ᾱ_{T−1} < 1 so that mode "noise" can derive the residual (R5)
    sched = ddim_converted_schedule(T=100)
    model = _tiny(objective=objective, two_networks=two, time_mode="coefficients", schedule=sched)
    _, x_in = _batch()
    g = torch.Generator().manual_seed(0)
    out = sample(model, x_in, sched, steps=3, mode=model.mode, generator=g)
    assert out.shape == x_in.shape and torch.isfinite(out).all()


def test_plugs_into_drdd_sampler():
    res_sched = rddm_schedule(T=100)
    noise_sched = rddm_schedule(T=100)
    residual_model = _tiny(seed=0, objective="pred_res")
    noise_model = _tiny(seed=1, objective="pred_noise", conditioned=False)
    _, x_in = _batch()
    g = torch.Generator().manual_seed(0)
    out = sample_drdd(residual_model, noise_model, x_in, res_sched, noise_sched, generator=g)
    assert out.shape == x_in.shape and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- training


def test_overfits_one_batch():
    """A few dozen Adam steps on one fixed batch drive the pred_res loss down."""
    torch.manual_seed(0)
    sched = rddm_schedule(T=100)
    model = build_model("tiny", objective="pred_res").train()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, S, S, generator=g) * 2 - 1
    x_in = (x0 + 0.5 * torch.randn(4, 3, S, S, generator=g)).clamp(-1, 1)
    t = torch.tensor([10, 40, 70, 99])
    x_t = q_sample(x0, x_in, t, sched, noise=torch.randn(4, 3, S, S, generator=g))
    target = x_in - x0
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        loss = (model(x_t, t, x_in) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]


# ----------------------------------------------------------------------------- dtypes, layout, seeds


def test_bf16_autocast_on_cpu():
    model = _tiny(two_networks=True)
    x_t, x_in = _batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        res, noise = model(x_t, torch.tensor([1, 2]), x_in)
    assert res.dtype == torch.float32  # cast back to the input dtype
    assert torch.isfinite(res).all() and torch.isfinite(noise).all()
    ref, _ = model(x_t, torch.tensor([1, 2]), x_in)
    assert (res - ref).abs().max() < 0.25 * ref.abs().max() + 0.1  # bf16 ≈ float32


def test_channels_last():
    model = _tiny(objective="pred_res")
    x_t, x_in = _batch()
    t = torch.tensor([4, 9])
    ref = model(x_t, t, x_in)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(
        x_t.to(memory_format=torch.channels_last), t, x_in.to(memory_format=torch.channels_last)
    )
    torch.testing.assert_close(out.contiguous(), ref, atol=1e-4, rtol=1e-4)


def test_deterministic_for_a_fixed_seed():
    x_t, x_in = _batch()
    t = torch.tensor([7, 8])
    a = _tiny(seed=3)(x_t, t, x_in)
    b = _tiny(seed=3)(x_t, t, x_in)
    c = _tiny(seed=4)(x_t, t, x_in)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a[0], c[0])


def test_flops_per_image():
    m = build_model("tiny", objective="pred_res")
    f16, f32 = flops_per_image(m, 16), flops_per_image(m, 32)
    assert f16 > 0
    assert 3.5 < f32 / f16 < 4.5  # convolutions scale with the pixel count
    assert flops_per_image(build_model("tiny", two_networks=True), 16) > 1.9 * f16


# ----------------------------------------------------------------------------- channel LayerNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channel_layer_norm_is_the_per_pixel_channel_formula_with_its_gradients(dtype):
    """F.layer_norm on the channels-last view = (x − mean_C)/sqrt(var_C + ε)·g at every pixel,
    values and the gradients of x and g (a wrong permutation would normalise over W instead)."""
    from drdd_edu.nn import ChannelLayerNorm

    g = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 8, 5, 7, generator=g, dtype=dtype) * 3 + 1).requires_grad_(True)
    norm = ChannelLayerNorm(8).to(dtype)
    with torch.no_grad():
        norm.g.copy_(torch.rand(1, 8, 1, 1, generator=g, dtype=dtype) + 0.5)
    eps = 1e-5 if dtype == torch.float32 else 1e-3
    var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
    expected = (x - mean) * torch.rsqrt(var + eps) * norm.g
    out = norm(x)
    assert out.shape == x.shape and out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, expected, atol=tol, rtol=tol)
    w = torch.randn(x.shape, generator=g, dtype=dtype)
    gx, gg = torch.autograd.grad((out * w).sum(), (x, norm.g))
    ex, eg = torch.autograd.grad((expected * w).sum(), (x, norm.g))
    torch.testing.assert_close(gx, ex, atol=10 * tol, rtol=10 * tol)
    torch.testing.assert_close(gg, eg, atol=10 * tol, rtol=10 * tol)


def test_channel_layer_norm_keeps_its_dtype_rules_under_autocast_and_channels_last():
    """bf16 input under CPU autocast → float32 output (x promoted with g, as with the var_mean
    formula); a channels-last input gives the same values as its contiguous copy."""
    from drdd_edu.nn import ChannelLayerNorm

    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 8, 6, 6, generator=g)
    norm = ChannelLayerNorm(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x.bfloat16())
    assert out.dtype == torch.float32
    ref = norm(x.bfloat16().float())  # bf16 values, float32 statistics: ε differs (1e-3 vs 1e-5)
    assert float((out - ref).detach().abs().max()) < 0.02
    torch.testing.assert_close(norm(x.to(memory_format=torch.channels_last)), norm(x))


def test_downsampling_factor_is_the_built_unets_and_names_unknown_presets():
    from drdd_edu.nn import downsampling_factor

    for preset in PRESETS:
        assert downsampling_factor(preset) == build_model(preset).unet.downsample_factor
    with pytest.raises(ValueError, match="unknown preset"):
        downsampling_factor("huge")
