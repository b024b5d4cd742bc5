# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   drdd_edu:
#     level: "2 — intermediate (needs: notebook 01)"
#     budget_s: 180
# ---

# %% [markdown]
# # Degradations and the All-in-One-5 data
#
# **Level:** 2 — intermediate (needs notebook 01).
#
# **Prerequisites:** notebook 01 (the residual $I_\text{res} = I_\text{in} - I_0$, the $[-1, 1]$ model
# range); convolution; the normal CDF $\Phi$; PyTorch tensors. No training happens here.
#
# **Study time:** about 60 minutes, with the exercises 2–3 hours.
#
# **Learning goals.** After this notebook you can
#
# 1. write down the physical model of the five All-in-One-5 degradations — low light, rain, noise
#    ($\sigma = 25/255$), blur, haze — and recover their hidden quantities from the library's outputs;
# 2. explain why clipping to $[0, 1]$ makes the noise residual *smaller* than $25/255$, and by how much;
# 3. describe the offline benchmark: split by **source image** (paired train and test, unpaired clean
#    target), balanced tasks, nested stratified fractions (25–100 %), a reproducible content hash;
# 4. read the residual $I_\text{res}$ of each task: its sign, scale and spatial structure;
# 5. compute PSNR and SSIM, check them against scikit-image, and explain why they rank the
#    degradations differently.
#
# **Runtime budget:** CPU only. Smoke size (the tests, `DRDD_EDU_SMOKE=1`: 32×32 patches, ≤ 20 per photo):
# about 5 s on 2 cores; full size (64×64, all ~1,200 patches): about 10 s. The harness allows 180 s.
#
# **How to read it.** Every claim is an `assert`: exact identities to float32 precision ($10^{-5}$),
# statistical claims to **5 standard errors** (false alarm < $10^{-6}$ per check), claims about the
# data on the data, margins stated next to the checks. Everything random is seeded. At **Predict,
# then run** write down your guess *before* you run the next cell.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from drdd_edu import metrics, toydata
from drdd_edu.data import SOURCE_SPLIT, SOURCES, build_all_in_one5, hash_arrays
from drdd_edu.degradations import DEGRADATIONS, TASKS, blur, degrade, haze, low_light, noise, rain
from drdd_edu.diffusion import to_model_range
from drdd_edu.notebook import is_smoke, pick, report_runtime, savefig, seed_everything

START = time.perf_counter()
print("smoke size" if is_smoke() else "full size")
torch.set_default_dtype(torch.float32)

IMG_SIZE = pick(128, 64)  # side of the demo photograph in section 1
DATA_KW = pick({}, {"size": 32, "max_patches_per_image": 20})  # All-in-One-5 build (full: defaults)
N_SEEDS = 8  # independent degradations per statistical check in section 1
FLOAT32_TOL = 1e-5  # exact identity, float32, quantities of order 1
METRIC_TOL = 1e-4  # our PSNR/SSIM vs scikit-image
N_SE = 5.0  # Monte-Carlo tolerance in standard errors
NOISE_SIGMA = 25 / 255


def to_hwc(img):
    """(1, 3, H, W) or (3, H, W) tensor in [0, 1] -> (H, W, 3) numpy array for imshow."""
    img = img[0] if img.ndim == 4 else img
    return img.detach().clamp(0, 1).permute(1, 2, 0).numpy()


def within_se(estimate, claim, se, label):
    """Assert |estimate − claim| < N_SE standard errors and print the z-score."""
    z = abs(estimate - claim) / se
    print(f"{label}: estimate {estimate:.5f}, claim {claim:.5f}, |z| = {z:.2f}")
    assert z < N_SE, f"{label}: {z:.1f} standard errors off"


# %% [markdown]
# ## 1. Five degradations, five physical models
#
# One interface, `fn(clean, *, generator=None, **params)` or `degrade(clean, task, seed)`: a float batch
# `(B, 3, H, W)` (or one image) in $[0, 1]$ in, the same shape, dtype and device out, clipped to $[0, 1]$.
# A parameter is a number or a `(low, high)` range from which *each image draws its own value*; all
# randomness comes from `generator`, so **a seed fixes the degradation**. On scikit-image's cat
# `chelsea` (a *test* source of section 2) we check this contract first.

# %%
clean = toydata.bundled_image("chelsea", IMG_SIZE)  # (1, 3, S, S) in [0, 1]
assert TASKS == ("low_light", "rain", "noise", "blur", "haze") and tuple(DEGRADATIONS) == TASKS
for task in TASKS:
    fn = DEGRADATIONS[task]
    a = degrade(clean, task, seed=0)
    assert torch.equal(a, degrade(clean, task, seed=0)), f"{task}: the same seed must give the same output"
    assert torch.equal(a, fn(clean, generator=0)) and torch.equal(a, fn(clean, generator=torch.Generator().manual_seed(0)))
    diff = float((a - degrade(clean, task, seed=1)).abs().max())
    assert diff > 1e-2, f"{task}: seeds 0 and 1 should differ (max |diff| = {diff:.2g})"
    assert a.shape == clean.shape and a.dtype == clean.dtype and 0 <= float(a.min()) <= float(a.max()) <= 1
    assert degrade(clean.double(), task, seed=0).dtype == torch.float64  # float64 in, float64 out
    assert torch.equal(degrade(clean[0], task, seed=0), a[0])  # a single (3, H, W) image works too
    pair = degrade(clean.expand(2, -1, -1, -1).contiguous(), task, seed=0)  # each image draws its own parameters
    assert float((pair[0] - pair[1]).abs().max()) > 1e-2
    print(f"{task:9s}: seed 0 vs 1 max |diff| = {diff:.3f}; PSNR(seed 0) = {float(metrics.psnr(a, clean)):.1f} dB")

# %% [markdown]
# ### 1.1 Low light
#
# A dark exposure with a camera response (per image $\gamma\sim U[1.5, 2.5]$, $s\sim U[0.2, 0.5]$), then
# shot noise (variance ∝ signal, Poisson approximated by a Gaussian) and read-out noise:
#
# $$y = s\,x^{\gamma},\qquad I_\text{in} = \mathrm{clip}\big(y + \sqrt{a\,y + b^2}\;n,\ 0, 1\big),
# \qquad n\sim\mathcal N(0, 1),\ a = 0.002 \text{ (`shot_noise`)},\ b = 0.005 \text{ (`read_noise`)}.$$
#
# The random draws do not depend on the image, so with the same seed and the noise off two constant
# images give $I(1) = s$, $I(\tfrac12) = s\,2^{-\gamma}$. On pixels with $y \ge 0.05$ (clipping at 0 needs a
# $4.4\sigma$ excursion) the standardised noise $(I_\text{in} - y)/\sqrt{a y + b^2}$ has mean 0 and std 1.

# %%
assert torch.allclose(low_light(clean, generator=0, gamma=2.0, scale=0.3, shot_noise=0.0, read_noise=0.0),
                      0.3 * clean**2, atol=FLOAT32_TOL)  # fixed parameters, no noise: exactly s · x^γ
ones = torch.ones(1, 3, 8, 8)
z_all = []
for seed in range(N_SEEDS):
    s = float(low_light(ones, generator=seed, shot_noise=0.0, read_noise=0.0)[0, 0, 0, 0])
    gamma = math.log2(s / float(low_light(0.5 * ones, generator=seed, shot_noise=0.0, read_noise=0.0)[0, 0, 0, 0]))
    assert 0.2 - FLOAT32_TOL <= s <= 0.5 + FLOAT32_TOL and 1.5 - 1e-4 <= gamma <= 2.5 + 1e-4, (s, gamma)
    y = s * clean**gamma
    out = low_light(clean, generator=seed)
    assert float(out.mean()) < 0.6 * float(clean.mean()), "low light must darken the image"
    z_all.append(((out - y) / torch.sqrt(0.002 * y + 0.005**2))[y >= 0.05])
    if seed < 2:
        print(f"seed {seed}: s = {s:.3f}, γ = {gamma:.3f}, mean brightness {float(clean.mean()):.3f} → {float(out.mean()):.3f}")
z_all = torch.cat(z_all).double()
n_z = z_all.numel()
within_se(float(z_all.mean()), 0.0, 1 / math.sqrt(n_z), f"standardised low-light noise, mean ({n_z} pixels)")
within_se(float(z_all.std()), 1.0, 1 / math.sqrt(2 * (n_z - 1)), "standardised low-light noise, std")

# %% [markdown]
# ### 1.2 Rain
#
# Sparse drops $D$ smeared into slanted streaks by a line kernel $k_{L,\theta}$, screen-blended with opacity
# $\alpha$: $S = \alpha\,\mathrm{clip}(D \circledast k_{L,\theta}, 0, 1)$, $I_\text{in} = 1 - (1 - x)(1 - S) = x + S(1 - x)$.
# So the output for a *black* image is $S$ (grey); rain only brightens, $I_\text{in} - x = S(1 - x) \ge 0$;
# and with the same seed any image's output follows from $S$.

# %%
black = torch.zeros_like(clean)
for seed in range(N_SEEDS):
    streaks = rain(black, generator=seed)  # S
    out = rain(clean, generator=seed)
    assert torch.equal(streaks[:, 0], streaks[:, 1]) and torch.equal(streaks[:, 0], streaks[:, 2]), "grey streaks"
    assert float(streaks.max()) <= 0.9 + FLOAT32_TOL  # S ≤ α ≤ 0.9
    assert torch.allclose(out, 1 - (1 - clean) * (1 - streaks), atol=FLOAT32_TOL)
    assert float((out - clean).min()) >= -FLOAT32_TOL, "rain only brightens"
print(f"seed {N_SEEDS - 1}: {float((streaks > 0.01).float().mean()):.1%} of the pixels under a streak, max S = {float(streaks.max()):.2f}")
for params in ({"opacity": 0.0}, {"density": 0.0}):  # invisible rain, no drops: the identity (up to float32 rounding)
    assert torch.allclose(rain(clean, generator=0, **params), clean, atol=FLOAT32_TOL)

# %% [markdown]
# ### 1.3 Gaussian noise, $\sigma = 25/255$
#
# The standard denoising benchmark: $I_\text{in} = \mathrm{clip}(x + \sigma n,\ 0, 1)$, $n \sim \mathcal N(0, 1)$
# per pixel and channel. Clipping matters: per pixel the residual is $r = \sigma\,\mathrm{clip}(n, l, u)$
# with $l = -x/\sigma$, $u = (1 - x)/\sigma$, a *censored* normal variable with moments
#
# $$\mathbb E[r/\sigma] = l\,\Phi(l) + u\,(1 - \Phi(u)) + \varphi(l) - \varphi(u),$$
# $$\mathbb E[(r/\sigma)^2] = l^2\,\Phi(l) + u^2\,(1 - \Phi(u)) + \Phi(u) - \Phi(l) + l\,\varphi(l) - u\,\varphi(u)$$
#
# ($\varphi$, $\Phi$: standard normal density and CDF). Near black or white pixels the residual is pushed
# inwards, so its std over an image is **below** $25/255$ and its mean is not 0. We check (i)
# $|r| \le \sigma|n|$, (ii) std $\sigma$ on interior pixels ($4\sigma \le x \le 1 - 4\sigma$), (iii) over *all*
# pixels the means of $r$ and $r^2$ against the censored normal (5 standard errors; pixels are independent).
#
# **Predict, then run.** The cat has dark fur and a few bright highlights. Guess the std of the noise
# residual over *all* pixels: exactly $25/255 \approx 0.098$, a little below or above? By how many per cent?


# %%
def censored_noise_moments(x, sigma):
    """E[r] and E[r²] of r = clip(x + σn, 0, 1) − x per pixel (float64)."""
    x = x.double()
    lo, hi = -x / sigma, (1 - x) / sigma
    cdf, pdf = torch.special.ndtr, lambda v: torch.exp(-0.5 * v**2) / math.sqrt(2 * math.pi)
    m1 = lo * cdf(lo) + hi * (1 - cdf(hi)) + pdf(lo) - pdf(hi)
    m2 = lo**2 * cdf(lo) + hi**2 * (1 - cdf(hi)) + cdf(hi) - cdf(lo) + lo * pdf(lo) - hi * pdf(hi)
    return sigma * m1, sigma**2 * m2


# (i) the draws do not depend on the image: recover n with the same seed from mid-grey and σ = 0.01
for seed in range(3):
    n_hat = (noise(torch.full_like(clean, 0.5), generator=seed, sigma=0.01) - 0.5) / 0.01  # clips only if |n| > 50
    r = noise(clean, generator=seed) - clean
    assert float((r.abs() - NOISE_SIGMA * n_hat.abs()).max()) <= FLOAT32_TOL, "clipping can only shrink the residual"
res = torch.cat([noise(clean, generator=seed) - clean for seed in range(N_SEEDS)]).double()
x_rep = clean.expand(N_SEEDS, -1, -1, -1).double()
n_pix = res.numel()
inner = (x_rep >= 4 * NOISE_SIGMA) & (x_rep <= 1 - 4 * NOISE_SIGMA)  # (ii) no clipping within 4σ
within_se(float(res[inner].std()), NOISE_SIGMA, NOISE_SIGMA / math.sqrt(2 * (int(inner.sum()) - 1)),
          f"residual std on interior pixels ({float(inner.double().mean()):.0%})")
m1, m2 = censored_noise_moments(x_rep, NOISE_SIGMA)  # (iii)
within_se(float(res.mean()), float(m1.mean()), float((res - m1).std()) / math.sqrt(n_pix), "residual mean, all pixels")
within_se(float((res**2).mean()), float(m2.mean()), float((res**2 - m2).std()) / math.sqrt(n_pix), "residual mean square, all pixels")
std_pred = math.sqrt(float(m2.mean()) - float(m1.mean()) ** 2)
print(f"residual std over all pixels: measured {float(res.std()):.5f}, censored normal {std_pred:.5f}, σ = {NOISE_SIGMA:.5f}")
assert float(res.std()) < NOISE_SIGMA and std_pred < NOISE_SIGMA
assert abs(float(res.std()) - std_pred) < 0.01 * std_pred  # 1 %: ≈ 5 standard errors at the smoke size

# %% [markdown]
# ### 1.4 Blur
#
# Convolution with a normalised kernel ($\sum k = 1$, replicate padding): a Gaussian
# $k \propto e^{-(u^2 + v^2)/(2\sigma_b^2)}$ or a line of length $L$ at angle $\theta$ (1/2 each for `kind="mixed"`).
# The response to a single bright pixel (an *impulse*) **is** the kernel. We check: non-negative, sums to
# 1, point-symmetric; a Gaussian's spread $\sum k\,u^2$ is just below $\sigma_b^2$ (truncated at $\pm 3\sigma_b$);
# constants stay constant; blur never increases the total variation $\mathrm{TV}(x) = \sum|\nabla x|$
# (Young: $\|k \circledast g\|_1 \le \|k\|_1\|g\|_1 = \|g\|_1$; replicate padding adds no edges).


# %%
def impulse_response(seed, **params):
    """Blur kernel of one seeded call, read off the response to a centred impulse (41×41 canvas)."""
    delta = torch.zeros(1, 3, 41, 41)
    delta[..., 20, 20] = 1.0
    return blur(delta, generator=seed, **params)[0, 0]


def total_variation(x):
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum())


kernels = {}
for seed in range(N_SEEDS):
    k = kernels[seed] = impulse_response(seed)
    assert float(k.min()) >= 0 and abs(float(k.sum()) - 1) < FLOAT32_TOL, "a blur kernel is a weighted average"
    assert torch.allclose(k, k.flip(0, 1), atol=1e-6), "point-symmetric kernel"
    assert total_variation(blur(clean, generator=seed)) < total_variation(clean)
    assert torch.allclose(blur(torch.full_like(clean, 0.3), generator=seed), torch.full_like(clean, 0.3), atol=FLOAT32_TOL)
coords = torch.arange(41.0) - 20
for sigma_b in (1.0, 1.5, 2.0):
    spread = float((impulse_response(0, kind="gaussian", sigma=sigma_b).sum(0) * coords**2).sum())  # Σ k(u, v) u²
    assert 0.9 * sigma_b**2 < spread <= sigma_b**2, (sigma_b, spread)
    print(f"Gaussian σ_b = {sigma_b}: Σ k u² = {spread:.3f} (σ_b² = {sigma_b**2:.2f})")
print(f"total variation: clean {total_variation(clean):.0f}, blurred (seed 0) {total_variation(blur(clean, generator=0)):.0f}")

# %% [markdown]
# ### 1.5 Haze
#
# The atmospheric scattering model: light from the scene $J = x$ is attenuated by the transmission $t$
# and replaced by scattered airlight $A$,
#
# $$I_\text{in} = J\,t + A\,(1 - t),\qquad t = e^{-\beta d},\qquad
# d = d_\min + (1 - d_\min)\big(w\,g + (1 - w)\,\nu\big) \in [d_\min, 1],$$
#
# with a synthetic depth: a vertical gradient $g$ (1 at the top row, 0 at the bottom: the top of a photo
# is usually far) mixed ($w = 0.6$) with smooth noise $\nu \in [0, 1]$; $d_\min = 0.25$, $\beta \sim U[0.5, 1.5]$,
# $A \sim U[0.75, 0.95]$ plus a tint $U[-0.03, 0.03]$ per channel. With the same seed,
# $I(\mathbf 1) - I(\mathbf 0) = t$ and $I(\mathbf 0) = A(1 - t)$. We check: $t$ is grey; for $\beta = 1$ it lies in
# $[e^{-1}, e^{-d_\min}]$; the top row is hazier than the bottom row (depth $\ge 0.70$ vs $\le 0.55$); $A$ lies
# in $[0.72, 0.98]$; the model reproduces the output; haze pulls every pixel toward the airlight,
# $|I_\text{in} - A| = t\,|J - A| \le |J - A|$.

# %%
white = torch.ones_like(clean)
t_min, t_max = math.exp(-1.5), math.exp(-0.5 * 0.25)  # over β ∈ [0.5, 1.5], d ∈ [0.25, 1]
for seed in range(N_SEEDS):
    for beta in (1.0, (0.5, 1.5)):
        h0 = haze(black, generator=seed, beta=beta)
        t = haze(white, generator=seed, beta=beta) - h0
        airlight = h0[..., 0, 0] / (1 - t[..., 0, 0])  # (1, 3): per-channel A
        assert torch.allclose(t[:, 0], t[:, 1], atol=FLOAT32_TOL) and torch.allclose(t[:, 0], t[:, 2], atol=FLOAT32_TOL)
        lo, hi = (math.exp(-1.0), math.exp(-0.25)) if beta == 1.0 else (t_min, t_max)  # float-exact: literal
        assert lo - FLOAT32_TOL <= float(t.min()) and float(t.max()) <= hi + FLOAT32_TOL, (float(t.min()), float(t.max()))
        assert float(t[..., 0, :].max()) < float(t[..., -1, :].min()), "the top row must be hazier than the bottom row"
        assert 0.72 - FLOAT32_TOL <= float(airlight.min()) and float(airlight.max()) <= 0.98 + FLOAT32_TOL
        assert float(airlight.max() - airlight.min()) <= 0.06 + FLOAT32_TOL  # tint: ±0.03 per channel
        out = haze(clean, generator=seed, beta=beta)
        a_map = airlight[..., None, None]
        assert torch.allclose(out, clean * t + a_map * (1 - t), atol=FLOAT32_TOL)
        assert float(((out - a_map).abs() - (clean - a_map).abs()).max()) <= FLOAT32_TOL
print(f"seed {seed}: transmission in [{float(t.min()):.3f}, {float(t.max()):.3f}], airlight (RGB) {airlight[0].numpy().round(3)}")

# %% [markdown]
# The gallery, two seeds (the variety within a task is what an all-in-one network must cope with).

# %%
seed_everything(0)
fig, axes = plt.subplots(2, 1 + len(TASKS), figsize=(1.75 * (1 + len(TASKS)), 4.6))
for row, seed in enumerate((0, 1)):
    axes[row, 0].imshow(to_hwc(clean))
    axes[row, 0].set_title("clean $I_0$", fontsize=8)
    for col, task in enumerate(TASKS, start=1):
        img = degrade(clean, task, seed=seed)
        axes[row, col].imshow(to_hwc(img))
        axes[row, col].set_title(f"{task}, seed {seed}\nPSNR {float(metrics.psnr(img, clean)):.1f} dB", fontsize=8)
        if task == "blur":
            inset = axes[row, col].inset_axes([0.62, 0.62, 0.36, 0.36], xticks=[], yticks=[])
            inset.imshow(kernels[seed][12:29, 12:29].numpy(), cmap="gray", interpolation="nearest")
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
fig.suptitle("The five All-in-One-5 degradations (inset: blur kernel)", fontsize=9)
fig.tight_layout()
savefig(fig, "04_degradations_gallery")
plt.show()
plt.close(fig)

# %% [markdown]
# ## 2. The All-in-One-5 benchmark
#
# The DRDD paper's *All-in-One-5* is five real data sets, one per task; offline, `build_all_in_one5`
# rebuilds its **structure** from 11 photos bundled with scikit-image, scikit-learn and matplotlib:
# each photo belongs to one group — paired **train**, paired **test**, or the unpaired clean **target**
# domain (DRDD's denoiser trains on clean target images only); photos are cut into non-overlapping
# patches at three scales (nearly flat ones dropped), dealt round-robin to the five tasks, degraded
# with a per-patch seed and stored as uint8. We build it in memory (`use_cache=False`).

# %%
data = build_all_in_one5(**DATA_KW, use_cache=False, progress=False)
print(data.summary())
SIZE = data.config.size
n_tasks = len(TASKS)
assert data.tasks == TASKS

# %% [markdown]
# ### 2.1 The split is by source image
#
# Patches of one photo are near-duplicates (neighbouring regions, three scales); a random split of
# *patches* would leak near-copies of test patches into training. We check that the groups of photos
# are disjoint and complete, that no patch occurs in two splits, and that the target is unpaired.

# %%
groups = {split: set(data.sources_of(split)) for split in ("train", "test", "target")}
for split, names in groups.items():
    print(f"{split:6s}: {sorted(names)}")
    assert names == {n for n, s in SOURCE_SPLIT.items() if s == split}
assert sum(len(g) for g in groups.values()) == len(SOURCES) and set().union(*groups.values()) == set(SOURCES)
patch_bytes = {split: {p.tobytes() for p in data.arrays[f"{split}_clean"]} for split in groups}
for a_split, b_split in (("train", "test"), ("train", "target"), ("test", "target")):
    assert not (patch_bytes[a_split] & patch_bytes[b_split]), f"a patch occurs in {a_split} and {b_split}"
assert "target_degraded" not in data.arrays and "target_task" not in data.arrays
assert data.target_clean.shape[1:] == (3, SIZE, SIZE)

# %% [markdown]
# ### 2.2 Balanced tasks, reproducible builds
#
# Dealing the patches round-robin in a seeded order gives every task the same number of patches up to
# one, in each split **and within every source photo** (no task is trained mostly on, say, microscopy).
# `content_hash` is a SHA-256 over all arrays: two builds with the same parameters are identical, so
# they share it; another seed deals and degrades differently. (A cached file is re-hashed on loading.)

# %%
for split in ("train", "test"):
    task, source = data.arrays[f"{split}_task"], data.arrays[f"{split}_source"]
    counts = np.bincount(task, minlength=n_tasks)
    assert counts.max() - counts.min() <= 1, (split, counts)
    for sid in np.unique(source):
        per_source = np.bincount(task[source == sid], minlength=n_tasks)
        assert per_source.max() - per_source.min() <= 1, (split, data.source_names[sid], per_source)
    print(f"{split}: {dict(zip(TASKS, counts.tolist(), strict=True))} (±1 overall and within every source)")

data2 = build_all_in_one5(**DATA_KW, use_cache=False, progress=False)
assert data2.content_hash == data.content_hash == hash_arrays(data.arrays)
assert all(np.array_equal(data.arrays[k], data2.arrays[k]) for k in data.arrays)
data_seed1 = build_all_in_one5(**DATA_KW, seed=1, use_cache=False, progress=False)
assert data_seed1.content_hash != data.content_hash
if data.config.max_patches_per_image is None:  # without a cap the clean patches do not depend on the seed
    assert np.array_equal(data_seed1.arrays["test_clean"], data.arrays["test_clean"])
assert not np.array_equal(data_seed1.arrays["test_degraded"], data.arrays["test_degraded"])
print(f"content hash {data.content_hash[:16]}… reproduced; seed 1 gives {data_seed1.content_hash[:16]}…")

# %% [markdown]
# ### 2.3 Nested, stratified data fractions
#
# DRDD trains on 25–100 % of the paired data. `subset_indices(split, fraction)` keeps, per task with $n_k$
# patches, the first $\max(1, \lfloor f\,n_k + \tfrac12\rfloor)$ of a seeded permutation that does not depend
# on $f$. We check: each task's share is $f$ up to rounding
# ($|m_k - f\,n_k| \le \tfrac12$), the subsets are **nested** (25 % ⊂ 50 % ⊂ 75 % ⊂ 100 %), $f = 1$ is all.

# %%
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
for split in ("train", "test"):
    task = data.arrays[f"{split}_task"]
    n_k = np.bincount(task, minlength=n_tasks)
    previous = set()
    for frac in FRACTIONS:
        idx = data.subset_indices(split, frac)
        assert torch.equal(idx, data.subset_indices(split, frac)), "deterministic"
        assert previous <= set(idx.tolist()), f"{split}: the {frac:.0%} subset must contain the smaller ones"
        m_k = np.bincount(task[idx.numpy()], minlength=n_tasks)
        assert np.all(np.abs(m_k - frac * n_k) <= 0.5) and m_k.max() - m_k.min() <= 1, (split, frac, m_k, n_k)
        assert len(data.paired_subset(split, frac)) == len(idx)
        previous = set(idx.tolist())
        print(f"{split} {frac:4.0%}: {len(idx):4d} patches, per task {m_k.tolist()}")
    assert previous == set(range(len(task))), "fraction 1.0 is the whole split"

# %% [markdown]
# ### 2.5 The residual of each task
#
# RDDM and DRDD learn $I_\text{res} = I_\text{in} - I_0$ (twice as large on the model scale $[-1, 1]$); over
# the test split ($[0, 1]$ scale) we expect:
# * **low light** — large, negative almost everywhere ($s\,x^\gamma \le x$); positive only by noise, $< 0.05$;
# * **rain** — sparse, thin and **never negative**: $S(1 - x) \ge 0$, and uint8 rounding is monotone;
# * **noise** — dense, zero-mean up to clipping, std somewhat below $25/255$ (section 1.3);
# * **blur** — at edges, mean $\approx 0$; **haze** — smooth, mostly positive ($< 0$ only where $J > A \ge 0.72$).

# %%
clean_te, deg_te, task_te = data.test_clean, data.test_degraded, data.test_task
res_te = deg_te - clean_te
assert torch.allclose(to_model_range(deg_te) - to_model_range(clean_te), 2 * res_te, atol=FLOAT32_TOL)
print(f"{'task':10s} {'mean':>8s} {'std':>7s} {'r>0':>6s} {'r<0':>6s} {'min':>7s} {'max':>7s}")
res_stats = {}
for k, task in enumerate(TASKS):
    r = res_te[task_te == k]
    st = res_stats[task] = {"mean": float(r.mean()), "std": float(r.std()), "pos": float((r > 0).float().mean()),
                            "neg": float((r < 0).float().mean()), "min": float(r.min()), "max": float(r.max())}
    print(f"{task:10s} {st['mean']:+8.4f} {st['std']:7.4f} {st['pos']:6.1%} {st['neg']:6.1%} {st['min']:+7.3f} {st['max']:+7.3f}")
ll, rn, nz, bl, hz = (res_stats[t] for t in TASKS)
assert ll["mean"] < -0.2 and ll["neg"] > 0.9 and ll["max"] < 0.05  # darker almost everywhere
assert rn["min"] >= 0.0 and rn["pos"] < 0.5  # never negative, sparse
assert abs(bl["mean"]) < 0.002  # mean preserved (uint8 rounding ±0.5/255 per pixel, borders)
assert hz["mean"] > 0.15 and hz["pos"] > 0.85
haze_negative = (task_te == TASKS.index("haze"))[:, None, None, None] & (res_te < 0)
if haze_negative.any():  # a stored residual ≤ −1/255 needs I_in < J, i.e. J > A ≥ 0.72
    assert float(clean_te[haze_negative].min()) > 0.72 - FLOAT32_TOL
    print(f"haze: {int(haze_negative.sum())} negative residuals, all where the clean pixel > {float(clean_te[haze_negative].min()):.3f}")
# noise: std as the censored normal predicts for these patches, plus uint8 rounding (variance 1/(12·255²))
m1_te, m2_te = censored_noise_moments(clean_te[task_te == TASKS.index("noise")], NOISE_SIGMA)
std_te = math.sqrt(float(m2_te.mean()) - float(m1_te.mean()) ** 2 + 1 / (12 * 255**2))
print(f"noise task: residual std {nz['std']:.4f}, censored-normal prediction {std_te:.4f}, nominal {NOISE_SIGMA:.4f}")
# 3 %: the standard error of the std is ≈ 0.4 % at the smoke size; the margin also covers the rounding model
assert abs(nz["std"] - std_te) < 0.03 * std_te and nz["std"] < NOISE_SIGMA
assert abs(nz["mean"] - float(m1_te.mean())) < 0.003

# %% [markdown]
# The most textured test patch per task (target, input, residual; red +, blue −), and the histogram of
# all the task's residual values (log scale).

# %%
seed_everything(0)
fig, axes = plt.subplots(4, n_tasks, figsize=(1.9 * n_tasks, 7.4), layout="constrained")
for k, task in enumerate(TASKS):
    members = torch.nonzero(task_te == k).flatten()
    i = int(members[torch.argmax(clean_te[members].flatten(1).std(1))])  # the most textured patch
    axes[0, k].imshow(to_hwc(clean_te[i]))
    axes[1, k].imshow(to_hwc(deg_te[i]))
    im = axes[2, k].imshow(res_te[i].mean(0).numpy(), cmap="RdBu_r", vmin=-0.5, vmax=0.5)
    for r, title in enumerate((f"{task}\nclean $I_0$", "input $I_{in}$", r"$I_{res} = I_{in} - I_0$")):
        axes[r, k].set(xticks=[], yticks=[])
        axes[r, k].set_title(title, fontsize=8)
    axes[3, k].hist(res_te[task_te == k].flatten().numpy(), bins=np.linspace(-1, 1, 81), color=f"C{k}", log=True)
    axes[3, k].set_xlabel("residual value", fontsize=8)
    axes[3, k].set_title(f"all: mean {res_stats[task]['mean']:+.3f}, std {res_stats[task]['std']:.3f}", fontsize=8)
    axes[3, k].tick_params(labelsize=8)
axes[3, 0].set_ylabel("pixel count", fontsize=8)
fig.colorbar(im, ax=axes[2, :].tolist(), shrink=0.8, pad=0.01)
fig.suptitle("Residuals per task (test split)", fontsize=9)
savefig(fig, "04_residuals_per_task")
plt.show()
plt.close(fig)

# %% [markdown]
# ## 3. How much does each degradation hurt? PSNR and SSIM
#
# * **PSNR** $= 10\log_{10}\big(1/\mathrm{MSE}\big)$ dB, MSE over pixels and channels. For pure additive
#   noise of std $\sigma$ it is $-20\log_{10}\sigma$: **20.17 dB** for $\sigma = 25/255$.
# * **SSIM** compares local means, variances and covariances in $7\times 7$ windows,
#   $S = \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}{(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)}$,
#   $C_1 = 0.01^2$, $C_2 = 0.03^2$, averaged; it rewards *structure*, forgives smooth brightness changes.
#
# `drdd_edu.metrics` implements both (batched, `data_range = 1`); we check them against scikit-image
# on three test patches of every task, and on the identity.

# %%
worst = {"psnr": 0.0, "ssim": 0.0}
for k in range(n_tasks):
    for i in torch.nonzero(task_te == k).flatten()[:3].tolist():
        a_np, b_np = deg_te[i].double().numpy(), clean_te[i].double().numpy()
        worst["psnr"] = max(worst["psnr"], abs(float(metrics.psnr(deg_te[i], clean_te[i])) - peak_signal_noise_ratio(b_np, a_np, data_range=1)))
        worst["ssim"] = max(worst["ssim"], abs(float(metrics.ssim(deg_te[i], clean_te[i])) - structural_similarity(a_np, b_np, channel_axis=0, data_range=1)))
print(f"max |ours − skimage| over {3 * n_tasks} patches: PSNR {worst['psnr']:.1e} dB, SSIM {worst['ssim']:.1e}")
assert worst["psnr"] < METRIC_TOL and worst["ssim"] < METRIC_TOL
# the identity: SSIM = 1, PSNR = +inf; both symmetric in their arguments
assert torch.allclose(metrics.ssim(clean_te, clean_te), torch.ones(len(clean_te), dtype=torch.float64), atol=1e-12)
assert torch.isinf(metrics.psnr(clean_te[:4], clean_te[:4])).all()
assert torch.allclose(metrics.ssim(deg_te[:8], clean_te[:8]), metrics.ssim(clean_te[:8], deg_te[:8]), atol=1e-12)

# %% [markdown]
# **Predict, then run.** The next cell tabulates the "do nothing" scores (degraded input vs target, test
# split, mean ± std). From the gallery, guess (i) the task with the lowest mean PSNR, (ii) the one with
# the highest mean SSIM, (iii) whether noise or haze scores higher in PSNR — and in SSIM.

# %%
psnr_te, ssim_te = metrics.psnr(deg_te, clean_te), metrics.ssim(deg_te, clean_te)
table = {}
print(f"{'task':10s} {'n':>4s}   {'PSNR (dB)':>14s}   {'SSIM':>13s}")
for k, task in enumerate(TASKS):
    p, s = psnr_te[task_te == k], ssim_te[task_te == k]
    row = table[task] = {"n": int(p.numel()), "psnr": float(p.mean()), "psnr_sd": float(p.std()), "psnr_min": float(p.min()),
                         "psnr_max": float(p.max()), "ssim": float(s.mean()), "ssim_sd": float(s.std())}
    print(f"{task:10s} {row['n']:4d}   {row['psnr']:6.2f} ± {row['psnr_sd']:5.2f}   {row['ssim']:.3f} ± {row['ssim_sd']:.3f}")
print(f"{'all':10s} {len(psnr_te):4d}   {float(psnr_te.mean()):6.2f}          {float(ssim_te.mean()):.3f}")

# %% [markdown]
# What the numbers say (thresholds with comfortable margins, valid at both sizes):
#
# * every patch differs from its target; every task's mean SSIM < 0.95, mean PSNR < 45 dB (< 25 but blur);
# * **noise**: PSNR is pinned near 20.17 dB for every patch (clipping can only raise it; fluctuations
#   and uint8 rounding move it by tenths of a dB), so its spread is the smallest;
# * **low light** has the lowest mean PSNR; **blur** the highest PSNR *and* SSIM (flat patches hardly change);
# * **the metrics disagree**: noise beats haze in PSNR by several dB, haze beats noise in SSIM — haze is
#   a smooth change of brightness and contrast (large MSE, structure kept), noise destroys structure.

# %%
assert torch.isfinite(psnr_te).all() and float(ssim_te.max()) < 1.0
assert all(row["psnr"] < 45 and row["ssim"] < 0.95 for row in table.values())
assert all(row["psnr"] < 25 for task, row in table.items() if task != "blur")
psnr_noise_clean = -20 * math.log10(NOISE_SIGMA)
assert psnr_noise_clean - 0.5 < table["noise"]["psnr_min"] and table["noise"]["psnr_max"] < psnr_noise_clean + 2.5
assert table["noise"]["psnr_sd"] < 1.0 and table["noise"]["psnr_sd"] == min(row["psnr_sd"] for row in table.values())
assert min(table, key=lambda t: table[t]["psnr"]) == "low_light"
assert max(table, key=lambda t: table[t]["psnr"]) == "blur" and max(table, key=lambda t: table[t]["ssim"]) == "blur"
assert table["noise"]["psnr"] > table["haze"]["psnr"] + 5 and table["haze"]["ssim"] > table["noise"]["ssim"] + 0.1
print(f"noise PSNR range [{table['noise']['psnr_min']:.2f}, {table['noise']['psnr_max']:.2f}] dB (−20·log10(25/255) = {psnr_noise_clean:.2f} dB)")


# %% [markdown]
# ## What you learned
#
# * Five seeded degradations with physical models (low light $s\,x^\gamma$ + Poisson–Gaussian noise,
#   screen-blended rain streaks, clipped Gaussian noise, Gaussian/motion blur, haze $J t + A(1 - t)$);
#   a seed fixes each, and probe images read back its hidden quantities.
# * Clipping makes the noise residual smaller than $25/255$, by as much as the censored normal predicts.
# * All-in-One-5 here: split **by source** into paired train, paired test and unpaired clean target;
#   tasks balanced ±1; nested stratified fractions; builds reproducible to the SHA-256 content hash.
# * Residuals differ by task in sign, sparsity and smoothness — one residual network must handle all.
# * PSNR and SSIM match scikit-image and rank the degradations differently (noise vs haze).
#
# **Next:** notebook 05 adds noise to these five domains and measures how much more alike they
# become; notebook 07 trains a residual network on this data.

# %%
report_runtime(START, budget_s=180)

# %% [markdown]
# ## Exercises
#
# 1. **Low light without the noise floor.** Set `read_noise=0` and measure, over a black image, how
#    often the output is exactly 0; derive the fraction for `read_noise=0.005`. *Hint:* for $x = 0$ the
#    output is $\mathrm{clip}(b\,n, 0, 1)$.
# 2. **A motion kernel's length.** Recover kernels with `impulse_response(seed, kind="motion", length=L,
#    angle=θ)` and estimate $L$ from the second moment along $(\sin\theta, \cos\theta)$. *Hint:* a
#    uniform segment of length $L$ has variance $L^2/12$.
# 3. **Dehazing with an oracle.** With the transmission $t$ and airlight $A$ recovered as in section 1.5,
#    invert the model, $\hat J = (I_\text{in} - A(1 - t))/t$, and compute the PSNR of $\hat J$ with and
#    without uint8 rounding of $I_\text{in}$. Where is the inversion most sensitive? *Hint:* rounding
#    errors of $\pm 0.5/255$ are multiplied by $1/t$.
# 4. **Noise PSNR from the residual std.** Predict each noise-task test patch's PSNR from the
#    censored-normal moments (section 2.5) and compare with the table. Is the mean of the PSNRs the PSNR
#    of the mean MSE? *Hint:* Jensen.
# 5. **Blur PSNR vs texture.** Plot blur PSNR against the clean patch's total variation per pixel (log
#    axis; `total_variation` of section 1.4). What explains the 30-dB spread? Which patches are "free"?
# 6. **Fractions and source photos.** The fractions are stratified by *task*, not by source. For each
#    fraction, compute every training source's share of the subset (`data.arrays["train_source"]`).
#    Which sources fluctuate most at 25 %, and why? *Hint:* within a task the subset is drawn without
#    replacement, so a source with $c$ of a task's patches contributes a hypergeometric count (mean $fc$).
#
# ### Graded exercises
#
# Graded automatically (`drdd-edu assignments grade`): in your copy each function body is
# `raise NotImplementedError()`; replace it, keeping name and signature. The test cell below each
# shows some checks; the grader restores it and adds hidden ones (other shapes, dtypes, parameters,
# bad input, and that you did not call the function you re-implement).
#
# **Exercise A (2 points) — PSNR by hand.** Write `my_psnr(a, b, data_range=1.0)` for image batches
# `(B, 3, H, W)` in $[0, \texttt{data\_range}]$, returning a float64 tensor `(B,)`:
# $\mathrm{PSNR} = 10\log_{10}(\texttt{data\_range}^2/\mathrm{MSE})$ dB, the MSE over each image's channels and
# pixels, in float64; identical images give $+\infty$. Raise a `ValueError` if the shapes differ, if
# `data_range` is not a finite number $> 0$, or if a value lies outside $[0, \texttt{data\_range}]$. Do not
# call `metrics.psnr` or scikit-image's `peak_signal_noise_ratio` (a hidden test checks).
# *Hint:* `.double()`, `.mean(dim=(1, 2, 3))`; what does `torch.log10` return for $1/0$?


# %% nbgrader={"grade": false, "grade_id": "ex04-psnr", "locked": false, "solution": true, "schema_version": 3}
def my_psnr(a, b, data_range=1.0):
    """PSNR = 10·log10(data_range² / MSE) per image: float64, shape (B,); +inf for identical images."""
    ### BEGIN SOLUTION
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if isinstance(data_range, bool) or not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a finite number > 0, got {data_range!r}")
    for name, img in (("a", a), ("b", b)):
        if not (float(img.min()) >= 0 and float(img.max()) <= data_range):
            raise ValueError(f"{name} has values outside [0, {data_range}]")
    mse = (a.double() - b.double()).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(data_range**2 / mse)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex04-psnr-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
mine_ex = my_psnr(deg_te[:16], clean_te[:16])
assert mine_ex.shape == (16,) and mine_ex.dtype == torch.float64, (mine_ex.shape, mine_ex.dtype)
assert torch.allclose(mine_ex, metrics.psnr(deg_te[:16], clean_te[:16]), rtol=0, atol=1e-9)
# identical images: MSE = 0, PSNR = +inf
assert torch.isinf(my_psnr(clean_te[:4], clean_te[:4])).all() and (my_psnr(clean_te[:4], clean_te[:4]) > 0).all()
# a constant offset of 0.1 on a [0, 1] image: MSE = 0.01, PSNR = 20 dB
grey_ex = torch.full((2, 3, 8, 8), 0.5, dtype=torch.float64)
assert torch.allclose(my_psnr(grey_ex + 0.1, grey_ex), torch.full((2,), 20.0, dtype=torch.float64), atol=1e-9)
# the scale does not matter if data_range follows it
assert torch.allclose(my_psnr(255 * deg_te[:4], 255 * clean_te[:4], data_range=255), mine_ex[:4], atol=1e-9)
print(f"Exercise A: visible checks passed (PSNR of the first test patch {float(mine_ex[0]):.2f} dB)")
### BEGIN HIDDEN TESTS
import skimage.metrics as skimage_metrics_h

import drdd_edu.metrics as metrics_h

gen_h = torch.Generator().manual_seed(41)
for shape_h, dtype_h, range_h in (((1, 3, 5, 7), torch.float32, 1.0), ((6, 3, 16, 16), torch.float64, 2.0),
                                  ((3, 3, 32, 8), torch.float32, 255.0)):
    a_h = range_h * torch.rand(shape_h, generator=gen_h, dtype=dtype_h)
    b_h = range_h * torch.rand(shape_h, generator=gen_h, dtype=dtype_h)
    mine_h = my_psnr(a_h, b_h, data_range=range_h)
    assert mine_h.dtype == torch.float64 and mine_h.shape == (shape_h[0],), (mine_h.dtype, mine_h.shape)
    assert torch.allclose(mine_h, metrics.psnr(a_h, b_h, data_range=range_h), rtol=0, atol=1e-4), shape_h
    ref_h = [peak_signal_noise_ratio(b_h[i].double().numpy(), a_h[i].double().numpy(), data_range=range_h)
             for i in range(shape_h[0])]
    assert torch.allclose(mine_h, torch.tensor(ref_h, dtype=torch.float64), rtol=0, atol=1e-4), shape_h
# one identical pair in a batch: +inf for that image only, finite for the others
mixed_h = deg_te[:3].clone()
mixed_h[1] = clean_te[1]
mixed_psnr_h = my_psnr(mixed_h, clean_te[:3])
assert torch.isinf(mixed_psnr_h[1]) and torch.isfinite(mixed_psnr_h[[0, 2]]).all()
# symmetric
assert torch.allclose(my_psnr(clean_te[:5], deg_te[:5]), my_psnr(deg_te[:5], clean_te[:5]), atol=1e-12)
for bad_h in ((deg_te[:2], clean_te[:3], 1.0), (deg_te[:2], clean_te[:2], 0.0), (deg_te[:2], clean_te[:2], -1.0),
              (deg_te[:2], clean_te[:2], math.inf), (deg_te[:2] + 1.5, clean_te[:2], 1.0),
              (deg_te[:2] - 0.5, clean_te[:2], 1.0), (255 * deg_te[:2], 255 * clean_te[:2], 1.0)):
    try:
        my_psnr(*bad_h)
    except ValueError:
        pass
    else:
        raise AssertionError(f"bad input must raise ValueError (shapes {tuple(bad_h[0].shape)}, "
                             f"{tuple(bad_h[1].shape)}, data_range {bad_h[2]})")


def forbidden_psnr_h(*args, **kwargs):
    raise AssertionError("my_psnr must not call metrics.psnr or scikit-image's peak_signal_noise_ratio")


expected_h = metrics.psnr(deg_te[:6], clean_te[:6])
saved_h = (metrics_h.psnr, skimage_metrics_h.peak_signal_noise_ratio, globals()["peak_signal_noise_ratio"])
try:
    metrics_h.psnr = skimage_metrics_h.peak_signal_noise_ratio = forbidden_psnr_h
    globals()["peak_signal_noise_ratio"] = forbidden_psnr_h
    mine_h = my_psnr(deg_te[:6], clean_te[:6])
finally:
    metrics_h.psnr, skimage_metrics_h.peak_signal_noise_ratio, globals()["peak_signal_noise_ratio"] = saved_h
assert torch.allclose(mine_h, expected_h, rtol=0, atol=1e-9)
### END HIDDEN TESTS

# %% [markdown]
# **Exercise B (2 points) — the atmospheric scattering model.** Write `my_haze(clean, depth, beta,
# airlight)` returning $I = J\,t + A\,(1 - t)$, $t = e^{-\beta d}$ (section 1.5), for `clean` $J$ `(B, 3, H, W)`
# in $[0, 1]$, `depth` $d$ `(B, 1, H, W)` (shared by the channels), `beta` `(B,)` and `airlight` `(B, 3)`
# (per image and channel), with the shape and dtype of `clean`. Raise a `ValueError` if a $\beta$ is
# negative. Do not call `haze` or `degrade` (a hidden test checks). The visible test measures $d$ and $A$
# with probe images at $\beta = 1$, as section 1.5 does, and asks your model to **predict** the library's
# output at other $\beta$. *Hint:* `beta[:, None, None, None]`, `airlight[:, :, None, None]`.


# %% nbgrader={"grade": false, "grade_id": "ex04-haze", "locked": false, "solution": true, "schema_version": 3}
def my_haze(clean, depth, beta, airlight):
    """I = J·t + A·(1 − t), t = exp(−β·d): clean (B, 3, H, W), depth (B, 1, H, W), beta (B,), airlight (B, 3)."""
    ### BEGIN SOLUTION
    if bool((beta < 0).any()):
        raise ValueError(f"beta must be >= 0, got {beta.tolist()}")
    t = torch.exp(-beta[:, None, None, None] * depth)
    return (clean * t + airlight[:, :, None, None] * (1 - t)).to(clean.dtype)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex04-haze-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
pair_ex = torch.cat([clean, clean.flip(-1)])  # two images: each draws its own airlight and depth
black_ex, white_ex = torch.zeros_like(pair_ex), torch.ones_like(pair_ex)
for seed_ex in range(3):
    h0_ex, h1_ex = haze(black_ex, generator=seed_ex, beta=1.0), haze(white_ex, generator=seed_ex, beta=1.0)
    t_ex = (h1_ex - h0_ex)[:, :1]  # (2, 1, H, W): the same in every channel
    depth_ex = -torch.log(t_ex)  # β = 1
    airlight_ex = h0_ex[..., 0, 0] / (1 - t_ex[..., 0, 0])  # (2, 3)
    for beta_ex in (1.0, 0.5, 1.5):  # a fixed β draws no random number: same depth and airlight
        mine_ex = my_haze(pair_ex, depth_ex, torch.full((2,), beta_ex), airlight_ex)
        assert mine_ex.shape == pair_ex.shape and mine_ex.dtype == pair_ex.dtype, (mine_ex.shape, mine_ex.dtype)
        ref_ex = haze(pair_ex, generator=seed_ex, beta=beta_ex)
        assert torch.allclose(mine_ex, ref_ex, atol=FLOAT32_TOL), (seed_ex, beta_ex, float((mine_ex - ref_ex).abs().max()))
print("Exercise B: visible checks passed")
### BEGIN HIDDEN TESTS
import drdd_edu.degradations as degradations_h

gen_h = torch.Generator().manual_seed(42)
j_h = torch.rand(3, 3, 6, 5, generator=gen_h, dtype=torch.float64)
d_h = torch.rand(3, 1, 6, 5, generator=gen_h, dtype=torch.float64)
a_h = 0.7 + 0.3 * torch.rand(3, 3, generator=gen_h, dtype=torch.float64)
b_h = torch.tensor([0.0, 0.8, 2.0], dtype=torch.float64)
out_h = my_haze(j_h, d_h, b_h, a_h)
assert out_h.shape == j_h.shape and out_h.dtype == torch.float64
t_h = torch.exp(-b_h[:, None, None, None] * d_h)
assert torch.allclose(out_h, j_h * t_h + a_h[:, :, None, None] * (1 - t_h), atol=1e-12)
assert torch.allclose(out_h[0], j_h[0], atol=1e-12)  # β = 0: no haze
for i_h in range(3):  # each image on its own gives the same
    assert torch.allclose(my_haze(j_h[i_h : i_h + 1], d_h[i_h : i_h + 1], b_h[i_h : i_h + 1], a_h[i_h : i_h + 1]),
                          out_h[i_h : i_h + 1], atol=1e-12)
assert torch.allclose(my_haze(j_h, torch.zeros_like(d_h), b_h, a_h), j_h, atol=1e-12)  # depth 0: no haze
thick_h = my_haze(j_h, torch.ones_like(d_h), torch.full((3,), 60.0, dtype=torch.float64), a_h)
assert torch.allclose(thick_h, a_h[:, :, None, None].expand_as(j_h), atol=1e-12)  # only airlight is left
# haze pulls every pixel toward the airlight
assert float(((out_h - a_h[:, :, None, None]).abs() - (j_h - a_h[:, :, None, None]).abs()).max()) <= 1e-12
try:
    my_haze(j_h, d_h, torch.tensor([0.5, -0.1, 1.0], dtype=torch.float64), a_h)
except ValueError:
    pass
else:
    raise AssertionError("a negative beta must raise ValueError")


def forbidden_haze_h(*args, **kwargs):
    raise AssertionError("my_haze must not call haze or degrade")


saved_h = (degradations_h.haze, degradations_h.DEGRADATIONS["haze"], globals()["haze"], globals()["degrade"])
try:
    degradations_h.haze = degradations_h.DEGRADATIONS["haze"] = forbidden_haze_h
    globals()["haze"] = globals()["degrade"] = forbidden_haze_h
    mine_h = my_haze(j_h, d_h, b_h, a_h)
finally:
    degradations_h.haze, degradations_h.DEGRADATIONS["haze"], globals()["haze"], globals()["degrade"] = saved_h
assert torch.allclose(mine_h, out_h, atol=1e-12)
### END HIDDEN TESTS
