"""Tests for drdd_edu.degradations: determinism, shape/range, the physical models, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from skimage import data as skdata

from drdd_edu.degradations import (
    DEGRADATIONS,
    TASKS,
    blur,
    check_images,
    degrade,
    haze,
    low_light,
    noise,
    rain,
)
from drdd_edu.metrics import psnr


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Four real 64×64 colour crops in [0, 1]: (4, 3, 64, 64)."""
    crops = []
    for name in ("astronaut", "chelsea"):
        img = torch.from_numpy(getattr(skdata, name)()).permute(2, 0, 1).float() / 255
        img = F.interpolate(img[None], size=(128, 128), mode="area")[0]
        crops += [img[:, :64, :64], img[:, 64:, 64:]]
    return torch.stack(crops).clamp(0, 1)


def test_registry_names_and_order() -> None:
    assert TASKS == ("low_light", "rain", "noise", "blur", "haze")
    assert list(DEGRADATIONS) == list(TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_shape_dtype_range_and_determinism(task: str, photos: torch.Tensor) -> None:
    out = degrade(photos, task, seed=3)
    assert out.shape == photos.shape and out.dtype == photos.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # same int seed, or same generator state, gives identical bytes
    assert torch.equal(out, degrade(photos, task, seed=3))
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(out, DEGRADATIONS[task](photos, generator=gen))
    # a different seed gives a different result
    assert not torch.equal(out, degrade(photos, task, seed=4))
    # the input is not modified in place
    assert float(photos.min()) >= 0 and not torch.equal(out, photos)


@pytest.mark.parametrize("task", TASKS)
def test_changes_image_measurably(task: str, photos: torch.Tensor) -> None:
    values = psnr(photos, degrade(photos, task, seed=0))
    assert values.shape == (4,)
    # smooth crops change less under blur, so: every image below 35 dB, the mean below 30 dB
    assert bool((values < 35.0).all()), f"{task} too mild: PSNR {values.tolist()}"
    assert float(values.mean()) < 30.0, f"{task} too mild: PSNR {values.tolist()}"
    assert bool((values > 5.0).all()), f"{task} destroys the image: PSNR {values.tolist()}"


@pytest.mark.parametrize("task", TASKS)
def test_single_image_and_float64(task: str, photos: torch.Tensor) -> None:
    single = degrade(photos[0], task, seed=1)
    assert single.shape == photos[0].shape
    # a single image gets the same result as a batch of one
    assert torch.equal(single, degrade(photos[:1], task, seed=1)[0])
    out64 = degrade(photos.double(), task, seed=1)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), degrade(photos, task, seed=1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("task", TASKS)
def test_odd_sizes(task: str) -> None:
    x = torch.rand(2, 3, 17, 29, generator=torch.Generator().manual_seed(0))
    out = degrade(x, task, seed=0)
    assert out.shape == x.shape
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_noise_has_the_right_std() -> None:
    x = torch.full((4, 3, 128, 128), 0.5)
    diff = noise(x, generator=0) - x
    assert abs(float(diff.std()) - 25 / 255) < 0.02 * 25 / 255
    assert abs(float(diff.mean())) < 1e-3
    diff = noise(x, generator=0, sigma=0.05) - x
    assert abs(float(diff.std()) - 0.05) < 0.001
    # per-image σ drawn from a range
    per_image = (noise(x, generator=0, sigma=(0.01, 0.1)) - x).flatten(1).std(1)
    assert float(per_image.min()) > 0.009 and float(per_image.max()) < 0.101
    assert float(per_image.max() - per_image.min()) > 0.005


def test_noise_is_clipped() -> None:
    x = torch.zeros(1, 3, 32, 32)
    out = noise(x, generator=0)
    assert float(out.min()) == 0.0  # float-exact: clamped
    assert 0.3 < float((out > 0).float().mean()) < 0.7


def test_low_light_darkens_and_is_noisy(photos: torch.Tensor) -> None:
    out = low_light(photos, generator=0)
    assert bool((out.mean(dim=(1, 2, 3)) < 0.5 * photos.mean(dim=(1, 2, 3))).all())
    quiet = low_light(photos, generator=0, shot_noise=0.0, read_noise=0.0, gamma=2.0, scale=0.3)
    torch.testing.assert_close(quiet, 0.3 * photos**2)
    assert float((out - low_light(photos, generator=0, shot_noise=0, read_noise=0)).std()) > 1e-3


def test_haze_follows_the_scattering_model(photos: torch.Tensor) -> None:
    torch.testing.assert_close(haze(photos, generator=0, beta=0.0), photos)
    # on a black image I = A(1 - t): positive, hazier (brighter) at the top (far) than the bottom
    black = torch.zeros(2, 3, 64, 64)
    out = haze(black, generator=0, gradient_weight=1.0, tint=0.0, airlight=0.9, beta=1.0)
    rows = out.mean(dim=(0, 1, 3))
    assert bool((rows[:-1] >= rows[1:] - 1e-6).all())
    t_top, t_bottom = torch.exp(torch.tensor(-1.0)), torch.exp(torch.tensor(-0.25))
    torch.testing.assert_close(rows[0], 0.9 * (1 - t_top))
    torch.testing.assert_close(rows[-1], 0.9 * (1 - t_bottom))
    # hazy images lose contrast
    assert bool((haze(photos, generator=0).std(dim=(1, 2, 3)) < photos.std(dim=(1, 2, 3))).all())


def test_blur_keeps_constants_and_removes_detail(photos: torch.Tensor) -> None:
    const = torch.full((2, 3, 32, 32), 0.3)
    for kind in ("gaussian", "motion", "mixed"):
        torch.testing.assert_close(blur(const, generator=0, kind=kind), const)

    def total_variation(x: torch.Tensor) -> torch.Tensor:
        return (x.diff(dim=-1).abs().mean((1, 2, 3)) + x.diff(dim=-2).abs().mean((1, 2, 3))) / 2

    for kind in ("gaussian", "motion"):
        out = blur(photos, generator=0, kind=kind)
        assert bool((total_variation(out) < 0.8 * total_variation(photos)).all())
    # a horizontal motion kernel (angle 90° from the vertical) leaves vertical stripes untouched
    stripes = torch.zeros(1, 3, 32, 32)
    stripes[..., ::2, :] = 1.0
    torch.testing.assert_close(
        blur(stripes, generator=0, kind="motion", angle=90.0, length=7.0),
        stripes,
        atol=1e-5,
        rtol=0,
    )


def test_rain_only_adds_slanted_streaks(photos: torch.Tensor) -> None:
    out = rain(photos, generator=0)
    assert bool((out >= photos - 1e-6).all())  # screen blend only brightens
    torch.testing.assert_close(rain(photos, generator=0, density=0.0), photos)
    # on black, streaks are grey and vertical streaks are correlated along columns
    black = torch.zeros(1, 3, 96, 96)
    streaks = rain(black, generator=1, angle=0.0, density=0.005)
    assert torch.equal(streaks[:, 0], streaks[:, 1]) and torch.equal(streaks[:, 1], streaks[:, 2])
    s = streaks[0, 0] - streaks[0, 0].mean()
    vertical = float((s[3:, :] * s[:-3, :]).mean())  # lag-3 autocorrelations
    horizontal = float((s[:, 3:] * s[:, :-3]).mean())
    assert vertical > 10 * abs(horizontal)
    coverage = float((streaks > 0.05).float().mean())
    assert 0.01 < coverage < 0.4


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.zeros(1, 1, 8, 8), ValueError, "3 \\(RGB\\) channels"),
        (torch.zeros(8, 8), ValueError, "shape"),
        (torch.zeros(1, 1, 3, 8, 8), ValueError, "shape"),
        (torch.full((1, 3, 8, 8), 1.5), ValueError, "\\[0, 1\\]"),
        (torch.full((1, 3, 8, 8), -0.1), ValueError, "\\[0, 1\\]"),
        (torch.full((1, 3, 8, 8), float("nan")), ValueError, "NaN"),
        (torch.zeros(0, 3, 8, 8), ValueError, "empty"),
    ],
)
@pytest.mark.parametrize("task", TASKS)
def test_bad_images_are_rejected(task: str, bad: torch.Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        degrade(bad, task, seed=0)


def test_bad_arguments_are_rejected(photos: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown task"):
        degrade(photos, "snow")
    with pytest.raises(ValueError, match="low <= high"):
        noise(photos, sigma=(0.2, 0.1))
    with pytest.raises(ValueError, match="gamma"):
        low_light(photos, gamma=0.5)
    with pytest.raises(ValueError, match="kind"):
        blur(photos, kind="box")
    with pytest.raises(TypeError, match="seed"):
        degrade(photos, "noise", seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_images(photos.numpy())  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_result_on_gpu(task: str, photos: torch.Tensor) -> None:
    cpu = degrade(photos, task, seed=5)
    gpu = degrade(photos.cuda(), task, seed=5)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
