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
#     level: "3 — advanced (needs notebooks 02, 05)"
#     budget_s: 180
# ---

# %% [markdown]
# # How much noise? Checking the 1.1–1.2 theory
#
# **Level:** 3 — advanced (needs notebooks 02, 05).
#
# **Prerequisites:** notebook 02 (DRDD's two-stage sampler: remove the residual at a fixed noise
# level $\sigma$, then the noise); notebook 05 (noise as a domain harmoniser, the kernel two-sample
# statistic MMD, the median bandwidth heuristic, pixel and random-convolution features); least
# squares.
#
# **Learning goals.** After this notebook you can
#
# 1. derive DRDD's optimal-noise objective $J(\sigma;\lambda)$ (Sec. 4.5 / App. A.5 of the paper) from
#    a *harmonisation* term $A(\sigma)$ and a *corruption* term $B(\sigma)$, and explain why the paper's
#    sentence "both A and B increase" cannot be right;
# 2. evaluate the objective in closed form for Gaussian domains, and state that model's assumptions;
# 3. measure $J$ on our All-in-One-5 data, and show how much its minimiser $\sigma^*$ depends on the
#    choices the paper does not state (kernel bandwidth, features, number of repeats $R$, $\lambda$, the
#    $\sigma$ grid) — and on the random draw of images;
# 4. sweep restoration quality against $\sigma$ *without training a network*, with DRDD's sampler and
#    closed-form linear (Wiener) predictors, and say what such a model can and cannot show;
# 5. state a verdict on the paper's "1.1–1.2 in theory, 1.0 in practice" with explicit tolerances.
#
# **Runtime budget:** CPU only, no training. Smoke size (what the tests run, `DRDD_EDU_SMOKE=1`:
# 300 images per domain and 4 random draws for the objective, 600/400/300 train/target/test patches for
# the sweep): about 60 s on a 2-core machine. Full size (`DRDD_EDU_SMOKE=0`: 600 images per domain,
# 6 draws, every patch of the benchmark): 4–6 min. The test harness allows 180 s (smoke).
#
# **How to read it.** Every claim is followed by an `assert` with its tolerance stated in the text.
# Everything is seeded, so each size gives the same numbers on every run; where the smoke and full
# sizes give different numbers the assertion says so and holds for both. We fix the main configuration
# *before* looking at the answer, and we do not tune any choice towards the paper's numbers.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from drdd_edu import metrics
from drdd_edu.data import build_all_in_one5
from drdd_edu.diffusion import from_model_range, to_model_range
from drdd_edu.harmonize import PixelFeatures, RandomConvEncoder, features_at_noise
from drdd_edu.metrics import median_bandwidth
from drdd_edu.notebook import is_smoke, pick, report_runtime, savefig, seed_everything
from drdd_edu.samplers import sample_drdd
from drdd_edu.schedules import rddm_schedule
from drdd_edu.theory import (
    gaussian_mmd2,
    gaussian_objective,
    gaussian_stats,
    kl_isotropic_gaussians,
    noise_objective,
    objective_from_curves,
)

START = time.perf_counter()
print("smoke size" if is_smoke() else "full size")
torch.set_default_dtype(torch.float32)
torch.set_num_threads(1)  # many small matrix products: one thread is fastest on 2 shared cores

PATCH = 32  # All-in-One-5 patch side used throughout
N_PER_DOMAIN = pick(600, 300)  # images per domain in one draw of the objective
N_DRAWS = pick(6, 4)  # R: independent draws (images and noise) averaged per σ
N_BOOT = 400  # bootstrap resamples of the draws
N_TRAIN_LIN = pick(None, 600)  # paired train patches for the linear predictors (None = all)
N_TARGET_LIN = pick(None, 400)  # unpaired clean target patches for the linear denoiser
N_TEST_LIN = pick(None, 300)  # test patches for PSNR / SSIM
GRID = np.round(np.arange(0.0, 2.0 + 1e-9, 0.1), 2)  # the main σ grid: 0, 0.1, …, 2.0
GRID_WIDE = np.round(np.arange(0.0, 3.0 + 1e-9, 0.1), 2)  # for the grid study: 0 … 3.0
LAM = 0.5
FLOAT64_TOL = 1e-10

PAPER_SIGMA_THEORY = (1.1, 1.2)  # the paper's J-optimum on All-in-One-5
PAPER_SIGMA_BEST = 1.0  # the paper's empirical best noise strength (stable 0.8–1.3)
PAPER_SWEEP_SIGMA = np.array([0.1, 0.5, 0.8, 1.0, 1.5, 2.0])
PAPER_SWEEP_PSNR = np.array([29.64, 30.97, 32.01, 32.33, 31.94, 31.68])  # Rain100H

data = build_all_in_one5(PATCH, use_cache=False, progress=False)
print(data.summary())
SRC = data.train_degraded  # P_s: degraded inputs of all five tasks, [0, 1]
TGT = data.target_clean  # P_t: the unpaired clean target domain, [0, 1]

# %% [markdown]
# ## 1. The derivation: harmonisation against corruption
#
# DRDD starts its sampler at $I_\text{in} + \sigma z$. Write $P_s$ for the distribution of degraded inputs
# (the *source*: all five degradations pooled), $P_t$ for clean images (the *target*), and $P^\sigma$ for a
# distribution convolved with $\mathcal N(0, \sigma^2 I)$ (noise added on the $[-1, 1]$ scale).
#
# * **Proposition 3.1** (the harmonisation effect): for $P \ne Q$, adding the *same* noise to both strictly
#   decreases their KL divergence, $\mathrm{KL}(P^\sigma\Vert Q^\sigma) < \mathrm{KL}(P\Vert Q)$. The joint law of
#   $(x, x+\sigma z)$ has KL equal to $\mathrm{KL}(P\Vert Q)$; the chain rule splits it into the KL of the noisy
#   marginals plus a positive conditional term. So noise makes source and target look alike:
#   $$A(\sigma) = \mathrm{MMD}(P_s^\sigma, P_t^\sigma)\quad\text{falls with }\sigma\ \text{(harmonisation, good)}.$$
# * But noise also destroys information about the input:
#   $$B(\sigma) = \mathrm{MMD}(P_s^\sigma, P_s)\quad\text{rises with }\sigma\ \text{(corruption, bad)},\qquad B(0) = 0 .$$
# * The paper trades them off after **min-max normalising** each over the $\sigma$ grid,
#   $\tilde A = (A - \min A)/(\max A - \min A)$ (and likewise $\tilde B$):
#   $$J(\sigma;\lambda) = \lambda\,\tilde A(\sigma) + (1-\lambda)\,\tilde B(\sigma),\qquad \sigma^* = \arg\min_\sigma J .$$
#   RBF-kernel MMD, each term averaged over $R$ independent samples; the paper reports
#   $\sigma^*\approx 1.1$–$1.2$ for $\lambda = 0.5$ on All-in-One-5.
#
# **The paper's sentence cannot be right.** It says that *both* A and B increase with $\sigma$. Then both
# normalised curves are 0 at $\sigma = 0$ and $J(0) = 0$ is the global minimum: the objective would recommend
# *no noise at all*. With a fixed kernel bandwidth A falls (Prop. 3.1 in kernel form) and B rises, and only
# then is there a trade-off. We check both statements on toy curves with the library's
# `objective_from_curves`, and Prop. 3.1 on two Gaussians with `kl_isotropic_gaussians`.
#
# **What the paper leaves open** (each is an explicit argument of `noise_objective`):
#
# | choice | the paper | our main configuration (fixed before looking) |
# |---|---|---|
# | kernel bandwidth $h$ | not given | median heuristic on the noise-free pooled features, kept fixed for all $\sigma$ (`"fixed"`) |
# | feature space | not given ("probably pixels") | pixels, 2×2 average-pooled (`PixelFeatures(2)`, $D = 768$ for 32² patches) |
# | $R$ (repeats) | "R independent samples", value not given | $R$ = `N_DRAWS` independent draws of `N_PER_DOMAIN` source and target images, one noise draw each |
# | $\sigma$ grid | not given | 0, 0.1, …, 2.0 |
# | data | All-in-One-5 | our synthetic All-in-One-5 (32² patches): degraded train inputs vs clean target patches |
# | MMD or MMD² | "MMD" | MMD $= \sqrt{\max(\widehat{\mathrm{MMD}}^2_u, 0)}$ (the library's choice) |

# %%
toy_sigmas = np.round(np.linspace(0, 2, 21), 2)
both_rise = objective_from_curves(toy_sigmas, toy_sigmas**2, np.tanh(toy_sigmas), LAM)
# float-exact: grid (grid points held exactly)
assert both_rise.sigma_star == 0.0 and both_rise.J[0] == 0.0  # "both increase" ⇒ σ* = 0 exactly
# fast harmonisation (A = e^{−2σ}) against slow corruption (B = σ²): an interior optimum
trade_off = objective_from_curves(toy_sigmas, np.exp(-2 * toy_sigmas), toy_sigmas**2, LAM)
assert 0.5 <= trade_off.sigma_star <= 1.5
print(
    f"toy: both rise → σ* = {both_rise.sigma_star}; A falls, B rises → σ* = {trade_off.sigma_star}"
)

# Prop. 3.1 on two isotropic Gaussians (different means and variances)
p_toy = gaussian_stats(torch.randn(4000, 8, generator=seed_everything(0)) * 0.5 + 0.3)
q_toy = gaussian_stats(torch.randn(4000, 8, generator=seed_everything(1)) * 0.8)
kls = [kl_isotropic_gaussians(p_toy, q_toy, s) for s in toy_sigmas]
print("KL(P^σ‖Q^σ):", np.round(kls[::5], 4))
assert all(b < a for a, b in zip(kls, kls[1:], strict=False))  # strictly decreasing in σ

# %% [markdown]
# ## 2. A closed-form Gaussian model of $J$
#
# `theory.gaussian_objective` evaluates $A$ and $B$ exactly for Gaussian domains. **Assumptions:**
#
# 1. in feature space ($D$ dimensions) each domain is an *isotropic* Gaussian $\mathcal N(\mu_k, s_k^2 I)$:
#    its mean image and its average per-pixel variance are all that matter (pixel correlations are ignored);
# 2. noise adds $\sigma^2 I$ to each covariance (exact for pixel features: average-pooling by 2 divides the
#    noise variance by 4, so in pooled-pixel space the added variance is $\sigma^2/4$ — we pass $\sigma/2$);
# 3. the kernel bandwidth $h$ is fixed (we take the measured `"fixed"` bandwidth of section 3).
#
# For independent $x\sim\mathcal N(\mu_x, s_x^2I)$, $y\sim\mathcal N(\mu_y, s_y^2I)$ and
# $k(x,y) = \exp(-\lVert x-y\rVert^2/2h^2)$,
# $$\mathbb E\,k(x,y) = \Bigl(\frac{h^2}{h^2+s_x^2+s_y^2}\Bigr)^{D/2}\exp\Bigl(-\frac{\lVert\mu_x-\mu_y\rVert^2}{2(h^2+s_x^2+s_y^2)}\Bigr),$$
# and $\mathrm{MMD}^2 = \mathbb E k(x,x') + \mathbb E k(y,y') - 2\,\mathbb E k(x,y)$. We fit the two Gaussians to
# **all** degraded train patches and **all** target patches (pixel features, pool 2).
#
# First a sanity check of the formula against an empirical MMD² of samples from two isotropic Gaussians
# ($D = 20$, 1500 samples each): they must agree within 5 standard errors of the estimate (we estimate the
# standard error from 6 independent repetitions).

# %%
gen = seed_everything(2)
D_CHECK, N_CHECK = 20, 1500
gp = gaussian_stats(torch.zeros(2, D_CHECK))  # placeholders replaced below
gp.mean, gp.var = np.zeros(D_CHECK), 0.5**2
gq = gaussian_stats(torch.zeros(2, D_CHECK))
gq.mean, gq.var = np.full(D_CHECK, 0.15), 0.7**2
h_check = 3.0
est = []
for _ in range(6):
    xs = torch.randn(N_CHECK, D_CHECK, generator=gen, dtype=torch.float64) * 0.5
    ys = torch.randn(N_CHECK, D_CHECK, generator=gen, dtype=torch.float64) * 0.7 + 0.15
    est.append(float(metrics.mmd2(xs, ys, bandwidth=h_check)))
exact = gaussian_mmd2(gp, gq, h_check)
se = float(np.std(est, ddof=1) / math.sqrt(len(est)))
print(f"MMD²: closed form {exact:.5f}, empirical {np.mean(est):.5f} ± {se:.5f}")
assert abs(np.mean(est) - exact) < 5 * se + 1e-4

# %%
POOL = 2
pix = PixelFeatures(POOL)
stats_src = gaussian_stats(features_at_noise(SRC, 0.0, pix))
stats_tgt = gaussian_stats(features_at_noise(TGT, 0.0, pix))
gap = float(np.sum((stats_src.mean - stats_tgt.mean) ** 2))
print(
    f"D = {stats_src.dim}; s_s² = {stats_src.var:.4f}, s_t² = {stats_tgt.var:.4f}, ‖μ_s − μ_t‖² = {gap:.2f}"
)

# %% [markdown]
# ## 3. The empirical objective on our data
#
# **Main configuration** (the table in section 1): for each of $R$ = `N_DRAWS` draws we pick
# `N_PER_DOMAIN` random degraded train inputs and as many random clean target patches, and call
# `noise_objective(..., repeats=1, bandwidth="fixed", extractor=PixelFeatures(2))` with its own noise seed.
# $A$ and $B$ are averaged over the draws (the paper's "averaged over $R$ independent samples"), then
# normalised and combined into $J$. Because the draws are independent, we can also **bootstrap** them
# (resample $R$ draws with replacement, 400 times) to see how far $\sigma^*$ would move with other images.

# %%
gen_draws = seed_everything(3)
DRAWS = []
for _ in range(N_DRAWS):
    si = torch.randperm(SRC.shape[0], generator=gen_draws)[:N_PER_DOMAIN]
    ti = torch.randperm(TGT.shape[0], generator=gen_draws)[:N_PER_DOMAIN]
    DRAWS.append((SRC[si], TGT[ti]))


def measure(sigmas, extractor=None, bandwidth="fixed", h_mult=None):
    """A and B per draw, shape (R, S) each, and the "fixed" bandwidth of each draw."""
    A, B, H = [], [], []
    for r, (src, tgt) in enumerate(DRAWS):
        bw = bandwidth
        if h_mult is not None:  # a multiple of this draw's fixed (median) bandwidth
            feats = extractor if extractor is not None else PixelFeatures(2)
            h0 = median_bandwidth(
                torch.cat([features_at_noise(src, 0.0, feats), features_at_noise(tgt, 0.0, feats)])
            )
            bw = h_mult * h0
        c = noise_objective(src, tgt, sigmas, LAM, 1, bw, extractor, seed=r, progress=False)
        A.append(c.A)
        B.append(c.B)
        H.append(c.choices["h_fixed"])
    return np.array(A), np.array(B), np.array(H)


def combine(sigmas, A, B, lam=LAM):
    """J from the draw-averaged A and B."""
    return objective_from_curves(sigmas, A.mean(0), B.mean(0), lam)


def bootstrap_star(sigmas, A, B, lam=LAM, n_boot=N_BOOT, seed=0):
    """σ* of J for draws resampled with replacement: array (n_boot,)."""
    rng = np.random.default_rng(seed)
    stars = []
    for _ in range(n_boot):
        idx = rng.integers(0, A.shape[0], A.shape[0])
        stars.append(combine(sigmas, A[idx], B[idx], lam).sigma_star)
    return np.array(stars)


t0 = time.perf_counter()
A_wide, B_wide, H_main = measure(GRID_WIDE)  # main settings on the wide grid 0 … 3
on_grid = np.isin(GRID_WIDE, GRID)
A_main, B_main = A_wide[:, on_grid], B_wide[:, on_grid]
main = combine(GRID, A_main, B_main)
boot = bootstrap_star(GRID, A_main, B_main)
per_draw = [combine(GRID, A_main[r : r + 1], B_main[r : r + 1]).sigma_star for r in range(N_DRAWS)]
lo, hi = np.quantile(boot, [0.05, 0.95])
print(f"main objective: {time.perf_counter() - t0:.1f} s; fixed bandwidth h = {H_main.mean():.2f}")
print("A:", np.round(main.A, 3))
print("B:", np.round(main.B, 3))
print("J:", np.round(main.J, 3))
print(f"σ* = {main.sigma_star}; single draws: {per_draw}; bootstrap 90 % interval [{lo}, {hi}]")
print(f"depth of J: 0.5 − min J = {0.5 - main.J.min():.3f}")

# %% [markdown]
# **Shape checks** (exact statements about the measured curves, no tolerance needed beyond the estimator's
# noise, which we allow as 0.01 in MMD units): $A$ falls overall and $B$ rises overall, so the paper's
# "both increase" is contradicted by the measurement too; $B(0)$ is not exactly 0 but the noise floor of
# the estimator (two different random halves of the source are compared, and $\sqrt{\max(\cdot,0)}$ of an
# unbiased estimate near 0 is of the order of its standard error).
#
# **The key observation.** Both curves are close to *straight lines* over the grid. After min-max
# normalisation $\tilde A\approx 1-\sigma/2$ and $\tilde B\approx\sigma/2$, so $J\approx 0.5$ everywhere: with
# $\lambda = 0.5$ the minimiser is decided by the small *curvature* of $A$ and $B$, and $J$ dips only a few
# hundredths below 0.5. We assert that the depth $0.5 - \min J$ is below 0.06 — the objective is almost
# flat — which is why $\sigma^*$ moves a lot between single draws.

# %%
A_d, B_d = np.diff(main.A), np.diff(main.B)
assert main.A[-1] < main.A[0] - 0.05 and main.B[-1] > main.B[0] + 0.2  # A falls, B rises overall
assert (A_d < 0.01).all() and (B_d > -0.01).all()  # ... monotonically, up to estimator noise 0.01
assert main.B[0] < 0.1  # the noise floor of B(0)
assert abs(main.J[0] - 0.5) < 0.02 and abs(main.J[-1] - 0.5) < 0.02  # J ≈ 0.5 at both ends
assert 0.5 - main.J.min() < 0.06  # an almost flat objective
# the Gaussian model of section 2, with the measured bandwidth (pooled pixels: noise σ/2 per feature)
H_FIXED = float(H_main.mean())
gauss = gaussian_objective(stats_src, stats_tgt, GRID / POOL, H_FIXED, LAM)
gauss_star = float(GRID[int(np.argmin(gauss.J))])
print(f"Gaussian model: σ* = {gauss_star}; J = {np.round(gauss.J, 3)}")
assert np.all(np.diff(gauss.A) < 0) and np.all(np.diff(gauss.B) > 0)  # exact in the model

# %% [markdown]
# ### Sensitivity: how $\sigma^*$ moves with the open choices
#
# One choice at a time is changed from the main configuration, on the *same* draws of images. $\lambda$,
# $R$ and the grid re-use the measured curves (no new MMDs): $R' < R$ takes the first $R'$ draws, and a grid
# study slices the wide grid $0,\dots,3$. The bandwidth and feature studies re-measure $A$ and $B$.

# %%
t0 = time.perf_counter()
rows = []  # (study, choice, σ*, bootstrap 5 %, bootstrap 95 %)


def add_row(study, choice, sigmas, A, B, lam=LAM):
    c = combine(sigmas, A, B, lam)
    b = (
        bootstrap_star(sigmas, A, B, lam, n_boot=200)
        if A.shape[0] > 1
        else np.array([c.sigma_star])
    )
    rows.append((study, choice, c.sigma_star, *np.quantile(b, [0.05, 0.95])))
    return c


curves = {"main": add_row("main", "pixels pool 2, fixed h, λ 0.5, grid 0–2", GRID, A_main, B_main)}
for mult in (0.5, 2.0, 4.0):
    A_, B_, _ = measure(GRID, h_mult=mult)
    curves[f"h×{mult:g}"] = add_row("bandwidth", f"fixed h × {mult:g}", GRID, A_, B_)
A_, B_, _ = measure(GRID, bandwidth="median")
curves["median h"] = add_row("bandwidth", "median h recomputed per σ", GRID, A_, B_)
for pool in (1, 4, 8):
    A_, B_, _ = measure(GRID, extractor=PixelFeatures(pool))
    curves[f"pool {pool}"] = add_row("features", f"pixels pool {pool}", GRID, A_, B_)
A_, B_, _ = measure(GRID, extractor=RandomConvEncoder(32, seed=0))
curves["random conv"] = add_row("features", "RandomConvEncoder(32)", GRID, A_, B_)
for r in (1, 2):
    add_row("R", f"R = {r} draw(s)", GRID, A_main[:r], B_main[:r])
for lam in (0.3, 0.4, 0.6, 0.7):
    add_row("λ", f"λ = {lam}", GRID, A_main, B_main, lam)
for top, step in ((1.0, 0.1), (1.5, 0.1), (2.0, 0.2), (3.0, 0.1)):
    keep = (GRID_WIDE <= top + 1e-9) & (np.isclose(np.round(GRID_WIDE / step), GRID_WIDE / step))
    add_row("grid", f"0 … {top:g} step {step:g}", GRID_WIDE[keep], A_wide[:, keep], B_wide[:, keep])
print(f"sensitivity study: {time.perf_counter() - t0:.1f} s\n")
print(f"{'study':10s} {'choice':42s} {'σ*':>5s}   bootstrap 90 %")
for study, choice, star, b_lo, b_hi in rows:
    print(f"{study:10s} {choice:42s} {star:5.2f}   [{b_lo:.2f}, {b_hi:.2f}]")
stars = {choice: star for _, choice, star, _, _ in rows}

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
ax = axes[0]
for r in range(N_DRAWS):
    ax.plot(GRID, A_main[r], color="tab:blue", lw=0.6, alpha=0.4)
    ax.plot(GRID, B_main[r], color="tab:red", lw=0.6, alpha=0.4)
ax.plot(GRID, main.A, "o-", color="tab:blue", ms=3, label=r"$A(\sigma)$ harmonisation")
ax.plot(GRID, main.B, "s-", color="tab:red", ms=3, label=r"$B(\sigma)$ corruption")
ax.set_xlabel(r"noise strength $\sigma$")
ax.set_ylabel("MMD")
ax.set_title(f"measured, pixels pool 2, fixed h (R = {N_DRAWS})", fontsize=9)
ax.legend(fontsize=8)
ax = axes[1]
ax.plot(GRID, main.A_norm, color="tab:blue", label=r"$\tilde A$")
ax.plot(GRID, main.B_norm, color="tab:red", label=r"$\tilde B$")
ax.plot(GRID, main.J, "k-", lw=2, label=r"$J$ ($\lambda$ = 0.5)")
ax.plot(GRID, gauss.J, "k:", lw=1.5, label="$J$, Gaussian model")
ax.axvline(main.sigma_star, color="k", ls="--", lw=1)
ax.axvspan(*PAPER_SIGMA_THEORY, color="tab:green", alpha=0.2, label="paper: 1.1–1.2")
ax.set_xlabel(r"noise strength $\sigma$")
ax.set_title(rf"normalised; measured $\sigma^*$ = {main.sigma_star:.1f}", fontsize=9)
ax.legend(fontsize=7)
ax = axes[2]
ax.plot(GRID, main.J, "k-", lw=2, label="measured, all draws")
for r in range(N_DRAWS):
    ax.plot(GRID, combine(GRID, A_main[r : r + 1], B_main[r : r + 1]).J, lw=0.7, alpha=0.6)
ax.plot(GRID, gauss.J, "k:", lw=1.5, label="Gaussian model")
ax.axvspan(*PAPER_SIGMA_THEORY, color="tab:green", alpha=0.2)
ax.set_xlabel(r"noise strength $\sigma$")
ax.set_title("zoom on J: single draws (thin) are almost flat", fontsize=9)
ax.legend(fontsize=7)
fig.tight_layout()
savefig(fig, "06_objective", dpi=90)
plt.show()

# %% [markdown]
# **Why is $J$ so flat — and why is $\lambda = 0.5$ a knife edge?** If $A$ and $B$ were exactly linear in
# $\sigma$, then $\tilde A = 1 - \sigma/\sigma_\max$, $\tilde B = \sigma/\sigma_\max$ and
# $$J(\sigma;\lambda) = \lambda + (1 - 2\lambda)\,\sigma/\sigma_\max ,$$
# which is *constant* for $\lambda = 0.5$, and minimised at the grid's end ($\sigma_\max$) for any $\lambda > 0.5$ or at
# $0$ for any $\lambda < 0.5$. The paper's $\lambda = 0.5$ sits exactly on that knife edge, where only the
# curvature of the two curves decides. The Gaussian model is even flatter: there $A(0) - A(\sigma)$ is almost
# proportional to $B(\sigma)$, so $\tilde A + \tilde B \approx 1$ and $J$ stays within $10^{-3}$ of 0.5 for every
# $\sigma$ — its argmin is a rounding accident, not a prediction.
#
# **And where does our dip at 0.4 come from?** Look at $B$ in the left panel: up to $\sigma\approx 0.4$ it sits on
# the estimator's noise floor ($\sqrt{\max(\widehat{\mathrm{MMD}}^2_u,0)}$ of two random halves of the source), and
# $J$ dips exactly where $B$ leaves that floor. So our $\sigma^*$ is partly set by the sample size (the floor shrinks
# as more images are used) — one more reason not to read much into any single argmin of this objective. We assert both facts: the Gaussian $J$
# deviates from 0.5 by less than 0.002 everywhere, and with the measured curves $\lambda = 0.3$ puts $\sigma^*$ in
# the lower half of the grid while $\lambda = 0.7$ puts it at the upper end (≥ 1.5).

# %%
print(
    f"Gaussian model: max |J − 0.5| = {np.abs(gauss.J - 0.5).max():.1e}; its argmin σ = {gauss_star}"
)
assert np.abs(gauss.J - 0.5).max() < 0.002
assert stars["λ = 0.3"] <= 1.0 and stars["λ = 0.7"] >= 1.5

# %%
fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
ys = np.arange(len(rows))[::-1]
for y, (study, _choice, star, b_lo, b_hi) in zip(ys, rows, strict=True):
    color = "k" if study == "main" else "tab:blue"
    ax.plot([b_lo, b_hi], [y, y], color=color, lw=3, alpha=0.35)
    ax.plot(star, y, "o", color=color)
ax.set_yticks(ys)
ax.set_yticklabels([f"{study}: {choice}" for study, choice, *_ in rows], fontsize=7)
ax.axvspan(*PAPER_SIGMA_THEORY, color="tab:green", alpha=0.2, label="paper: 1.1–1.2")
ax.set_xlabel(r"$\sigma^* = \arg\min J$  (bar: bootstrap 90 % over draws)")
ax.set_xlim(-0.05, 3.05)
ax.legend(fontsize=8, loc="lower right")
ax.set_title("How the optimum moves with the choices the paper leaves open", fontsize=9)
fig.tight_layout()
savefig(fig, "06_sigma_star_sensitivity", dpi=90)
plt.show()

# %% [markdown]
# **Reading the table.** Every open choice moves $\sigma^*$ by more than the paper's whole "1.1–1.2" window:
# a wider kernel (larger $h$, or coarser pooling, which shrinks distances between images relative to the
# bandwidth) pushes $\sigma^*$ up; the random-convolution features (global mean and std of activations) see
# noise mostly as a *shift* of the std features that does not harmonise, and their optimum sits at the edge of
# the grid. The grid matters less than one might fear for the argmin, but it sets the normalisation. We
# assert the robust qualitative statements with the measured values: $\sigma^*$ rises with the bandwidth
# multiplier (non-decreasing over ×0.5, ×1, ×2, ×4) and with the pooling (1, 2, 4, 8), and the spread of
# $\sigma^*$ over the feature and bandwidth choices exceeds 1.0.

# %%
by_h = [stars["fixed h × 0.5"], stars[rows[0][1]], stars["fixed h × 2"], stars["fixed h × 4"]]
by_pool = [
    stars["pixels pool 1"],
    stars[rows[0][1]],
    stars["pixels pool 4"],
    stars["pixels pool 8"],
]
print("σ* vs bandwidth multiplier 0.5, 1, 2, 4:", by_h)
print("σ* vs pooling 1, 2, 4, 8:", by_pool)
assert all(b >= a for a, b in zip(by_h, by_h[1:], strict=False))
assert all(b >= a for a, b in zip(by_pool, by_pool[1:], strict=False))
open_choices = [star for study, _, star, _, _ in rows if study in ("bandwidth", "features")]
assert max(open_choices) - min(open_choices) > 1.0

# %% [markdown]
# ## 4. An empirical sweep without training: DRDD with linear (Wiener) predictors
#
# Section 3 optimised a *proxy*. What the paper actually reports is restoration quality against $\sigma$
# (best at 1.0, stable 0.8–1.3; Rain100H PSNR 29.64 / 30.97 / 32.01 / 32.33 / 31.94 / 31.68 at
# $\sigma$ = 0.1 / 0.5 / 0.8 / 1.0 / 1.5 / 2.0). We cannot train DRDD's two UNets here, but we can run DRDD's
# sampler (`samplers.sample_drdd`, 2 residual + 2 noise steps) with the best **linear** predictors, fitted in
# closed form for every $\sigma$:
#
# * **residual predictor** at residual timestep $t$ (coefficient $\bar\alpha_t$): a $7\times7\times3\to3$
#   convolution plus bias (a local Wiener filter) from the state $x_t = I_0 + \bar\alpha_t I_\text{res} + \sigma\epsilon$
#   (at the first step $\bar\alpha = 1$: $x_T = I_\text{in} + \sigma\epsilon$) to $I_\text{res}$, fitted by ridge least
#   squares (`torch.linalg.solve` of the normal equations, ridge $10^{-3}$ per sample) on the **paired train split**;
# * **denoiser** at noise timestep $t$ ($\bar\beta_t$): the same kind of filter from $I_0 + \bar\beta_t\epsilon$ to
#   $\epsilon$, fitted on the **unpaired clean target set** only (as DRDD trains its noise network);
# * 64 random pixel positions per patch and a fresh noise draw per patch enter each fit; each predictor is
#   fitted the first time the sampler calls it at a new timestep.
#
# The noise stage needs a schedule whose $\bar\beta$ reaches 2.0, so we use `rddm_schedule(1000, sum_scale=4)`
# for it (the sampler starts the noise stage at the timestep with $\bar\beta_t$ closest to $\sigma$). PSNR and
# SSIM are measured on the **test split** (other source photos).
#
# **What this can and cannot show.** For the *Bayes-optimal* predictor, adding noise can never help: the
# input $I_\text{in}+\sigma z$ is a garbled version of $I_\text{in}$, so by the data-processing inequality the
# minimum mean-squared error of any estimate from it is non-decreasing in $\sigma$, and the noise then has to be
# removed as well. A least-squares linear filter fitted on thousands of patches is close to the best *linear*
# predictor, so we expect quality to **fall monotonically** with $\sigma$. The paper's interior optimum must
# come from what a finite network *learns* from finite multi-domain data (harmonised inputs are easier to
# fit with one network; noise regularises) — an effect that a linear model, or an ideal predictor, does not
# have. So this sweep tests the pipeline and the data-processing argument, not the paper's optimum.

# %%
T = 1000
K = 7  # filter side
N_POS = 64  # random pixel positions per patch in a fit
RIDGE = 1e-3
RES_SCHED = rddm_schedule(T, sum_scale=1.0)  # only its ᾱ is used by the residual stage
NOISE_SCHED = rddm_schedule(T, sum_scale=4.0)  # β̄ up to 2.0
SWEEP_SIGMAS = [0.1, 0.3, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0]


def first(x, n):
    return x if n is None else x[:n]


gen_split = seed_everything(4)
idx_tr = torch.randperm(SRC.shape[0], generator=gen_split)
idx_te = torch.randperm(data.test_clean.shape[0], generator=gen_split)
idx_tg = torch.randperm(TGT.shape[0], generator=gen_split)
TR_IN = to_model_range(first(data.train_degraded[idx_tr], N_TRAIN_LIN))
TR_0 = to_model_range(first(data.train_clean[idx_tr], N_TRAIN_LIN))
TE_IN01 = first(data.test_degraded[idx_te], N_TEST_LIN)
TE_001 = first(data.test_clean[idx_te], N_TEST_LIN)
TE_TASK = first(data.test_task[idx_te], N_TEST_LIN)
TG_0 = to_model_range(first(TGT[idx_tg], N_TARGET_LIN))
print(
    f"linear sweep: {TR_IN.shape[0]} train pairs, {TG_0.shape[0]} target, {TE_IN01.shape[0]} test patches"
)


def neighbourhoods(x, gen):
    """K×K×3 neighbourhoods at N_POS random positions per image: (B·N_POS, 3K²), and the positions."""
    b, _, h, w = x.shape
    p = K // 2
    xp = F.pad(x, (p, p, p, p), mode="reflect")
    ii = torch.randint(0, h, (b, N_POS), generator=gen)
    jj = torch.randint(0, w, (b, N_POS), generator=gen)
    off = torch.arange(K)
    rows_ = (ii[..., None] + off)[:, :, None, :, None]  # (b, P, 1, K, 1)
    cols_ = (jj[..., None] + off)[:, :, None, None, :]  # (b, P, 1, 1, K)
    bb = torch.arange(b)[:, None, None, None, None]
    cc = torch.arange(3)[None, None, :, None, None]
    nb = xp[bb, cc, rows_, cols_]  # (b, P, 3, K, K)
    return nb.reshape(b * N_POS, 3 * K * K), ii, jj


def fit_filter(inputs, targets, gen):
    """Ridge least squares targets(centre pixel, 3) ≈ W·neighbourhood + bias; returns conv weights."""
    X, ii, jj = neighbourhoods(inputs, gen)
    bidx = torch.arange(inputs.shape[0])[:, None]
    Y = targets.permute(0, 2, 3, 1)[bidx, ii, jj].reshape(-1, 3)
    X = torch.cat([X, torch.ones(X.shape[0], 1)], 1).double()
    reg = RIDGE * X.shape[0] * torch.eye(X.shape[1], dtype=torch.float64)
    reg[-1, -1] = 0.0  # no penalty on the bias
    W = torch.linalg.solve(X.T @ X + reg, X.T @ Y.double())
    return W[:-1].T.reshape(3, 3, K, K).float(), W[-1].float()


def apply_filter(wb, x):
    p = K // 2
    return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), *wb)


# the fit and the filter agree: a filter fitted to reproduce a known convolution recovers it
w_true = torch.randn(3, 3, K, K, generator=seed_everything(5)) * 0.05
probe = TR_IN[:64]
wb_fit = fit_filter(probe, apply_filter((w_true, torch.zeros(3)), probe), seed_everything(6))
assert (
    float((wb_fit[0] - w_true).abs().max()) < 0.02
)  # ridge shrinks slightly; 0.02 ≪ |w| ≈ 0.05–0.15


class LinearResidual:
    """residual_model(x_t, t, x_in) for sample_drdd: a Wiener filter per residual timestep, fitted at σ."""

    def __init__(self, sigma, seed):
        self.sigma, self.seed, self.filters = sigma, seed, {}

    def __call__(self, x, t, x_in):
        key = int(t[0])
        if key not in self.filters:
            a_t = float(RES_SCHED.alphas_cumsum[key])
            g = torch.Generator().manual_seed(self.seed * 10_007 + key)
            noisy = TR_0 + a_t * (TR_IN - TR_0) + self.sigma * torch.randn(TR_0.shape, generator=g)
            self.filters[key] = fit_filter(noisy, TR_IN - TR_0, g)
        return apply_filter(self.filters[key], x)


class LinearDenoiser:
    """noise_model(x_t, t) for sample_drdd: a Wiener filter per noise timestep, fitted on clean targets."""

    def __init__(self, seed):
        self.seed, self.filters = seed, {}

    def __call__(self, x, t):
        key = int(t[0])
        if key not in self.filters:
            b_t = float(NOISE_SCHED.betas_cumsum[key])
            g = torch.Generator().manual_seed(self.seed * 10_007 + key)
            eps = torch.randn(TG_0.shape, generator=g)
            self.filters[key] = fit_filter(TG_0 + b_t * eps, eps, g)
        return apply_filter(self.filters[key], x)


t0 = time.perf_counter()
denoiser = LinearDenoiser(seed=7)
te_in = to_model_range(TE_IN01)
psnr_in = metrics.psnr(TE_IN01, TE_001)
sweep = {}
for k, sigma in enumerate(SWEEP_SIGMAS):
    out = sample_drdd(
        LinearResidual(sigma, seed=8 + k),
        denoiser,
        te_in,
        RES_SCHED,
        NOISE_SCHED,
        noise_strength=sigma,
        generator=seed_everything(100 + k),
    )
    out01 = from_model_range(out)
    sweep[sigma] = (metrics.psnr(out01, TE_001), metrics.ssim(out01, TE_001))
    print(
        f"σ = {sigma:3.1f}: PSNR {float(sweep[sigma][0].mean()):6.2f} dB, SSIM {float(sweep[sigma][1].mean()):.3f}"
    )
# the σ → 0 limit: one linear filter applied to I_in directly (no noise, no noise stage)
direct = LinearResidual(0.0, seed=99)
out01 = from_model_range(te_in - direct(te_in, torch.full((te_in.shape[0],), T - 1), te_in))
psnr_direct, ssim_direct = metrics.psnr(out01, TE_001), metrics.ssim(out01, TE_001)
print(
    f"direct linear restoration (σ = 0): PSNR {float(psnr_direct.mean()):.2f} dB, SSIM {float(ssim_direct.mean()):.3f}"
)
print(
    f"degraded input: PSNR {float(psnr_in.mean()):.2f} dB; sweep took {time.perf_counter() - t0:.1f} s"
)

# %%
sig_arr = np.array(SWEEP_SIGMAS)
psnr_mean = np.array([float(sweep[s][0].mean()) for s in SWEEP_SIGMAS])
ssim_mean = np.array([float(sweep[s][1].mean()) for s in SWEEP_SIGMAS])
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
ax = axes[0]
ax.plot(
    sig_arr,
    psnr_mean - psnr_mean[SWEEP_SIGMAS.index(1.0)],
    "o-",
    label="ours: DRDD sampler, linear predictors",
)
ax.plot(
    PAPER_SWEEP_SIGMA,
    PAPER_SWEEP_PSNR - PAPER_SWEEP_PSNR[3],
    "s--",
    color="tab:green",
    label="paper: DRDD, Rain100H",
)
ax.axhline(0, color="0.7", lw=0.8)
ax.set_xlabel(r"noise strength $\sigma$")
ax.set_ylabel(r"PSNR − PSNR($\sigma$ = 1.0)  [dB]")
ax.set_title("shape of the quality curve", fontsize=9)
ax.legend(fontsize=7)
ax = axes[1]
ax.plot(sig_arr, psnr_mean, "o-", label="DRDD sampler, linear")
ax.axhline(
    float(psnr_direct.mean()),
    color="tab:purple",
    ls=":",
    label=r"direct linear filter ($\sigma$ = 0)",
)
ax.axhline(float(psnr_in.mean()), color="0.5", ls="--", label="degraded input")
ax.set_xlabel(r"noise strength $\sigma$")
ax.set_ylabel("PSNR on our test split [dB]")
ax.legend(fontsize=7)
ax = axes[2]
ax.plot(sig_arr, ssim_mean, "o-", color="tab:orange", label="DRDD sampler, linear")
ax.axhline(
    float(ssim_direct.mean()),
    color="tab:purple",
    ls=":",
    label=r"direct linear filter ($\sigma$ = 0)",
)
ax.axhline(
    float(metrics.ssim(TE_IN01, TE_001).mean()), color="0.5", ls="--", label="degraded input"
)
ax.set_xlabel(r"noise strength $\sigma$")
ax.set_ylabel("SSIM on our test split")
ax.legend(fontsize=7)
fig.tight_layout()
savefig(fig, "06_empirical_sweep", dpi=90)
plt.show()

# %% [markdown]
# **Reading the sweep.** Quality falls steadily with $\sigma$, exactly as the data-processing argument
# predicts for a (near-)optimal linear predictor: no interior optimum, best at the smallest $\sigma$ tested.
# Note also that the shared linear filter is *worse than the input* on average PSNR: least squares
# minimises the MSE pooled over all five tasks, which the dark and hazy patches dominate, so it improves those
# and damages the already good blurred and rainy patches — one linear map cannot serve five degradations.
# That is precisely the multi-task problem DRDD's noise is meant to ease for a *network*; a linear model cannot
# show the benefit. We assert, with paired standard errors over the test patches (5 SE, a false alarm has
# probability < $10^{-6}$):
#
# * the mean PSNR drops from every $\sigma$ to the next larger one in our grid (by more than 5 paired SE);
# * hence the best $\sigma$ of the linear sweep is 0.1, not the paper's 1.0, and between 0.1 and 1.0 we *lose*
#   more than 1 dB where the paper *gains* 2.69 dB.

# %%
drops = []
for s_lo, s_hi in zip(SWEEP_SIGMAS, SWEEP_SIGMAS[1:], strict=False):
    diff = sweep[s_lo][0] - sweep[s_hi][0]  # paired per test patch
    se_diff = float(diff.std() / math.sqrt(diff.numel()))
    drops.append((s_lo, s_hi, float(diff.mean()), se_diff))
    assert float(diff.mean()) > 5 * se_diff, (s_lo, s_hi, float(diff.mean()), se_diff)
print(
    "PSNR drop per σ step (mean, paired SE):",
    [(a, b, round(m, 3), round(e, 3)) for a, b, m, e in drops],
)
best_sigma_linear = SWEEP_SIGMAS[int(np.argmax(psnr_mean))]
assert math.isclose(best_sigma_linear, min(SWEEP_SIGMAS))  # the smallest noise wins
loss_01_to_10 = psnr_mean[0] - psnr_mean[SWEEP_SIGMAS.index(1.0)]
paper_gain = PAPER_SWEEP_PSNR[3] - PAPER_SWEEP_PSNR[0]
print(f"0.1 → 1.0: ours {-loss_01_to_10:+.2f} dB, paper {paper_gain:+.2f} dB")
assert loss_01_to_10 > 1.0 and paper_gain > 2.6

# %% [markdown]
# ## 5. Verdict
#
# We fixed the main configuration first (pixels pooled 2×2, fixed median bandwidth, $\lambda = 0.5$, grid
# 0–2 step 0.1, $R$ independent draws) and report what it gives; no choice was tuned.
#
# 1. **Theory, main configuration.** Our $J$-optimum is **not** within ±0.2 of the paper's 1.15: it lies at
#    $\sigma^* = 0.4$ at both sizes (we assert $0.2 \le \sigma^* \le 0.6$, i.e. $0.4 \pm 0.2$, and
#    $\lvert\sigma^* - 1.15\rvert > 0.2$). But $J$ is nearly flat (depth 0.02–0.03), single draws give
#    $\sigma^*$ between 0.3 and 1.0, and the bootstrap 90 % interval over draws is [0.3, 1.1] at the smoke size
#    (4 draws of 300) and [0.4, 0.7] at full size (6 draws of 600): the smoke measurement cannot exclude the
#    paper's window, the full one just does. We assert that the bootstrap 5 % quantile is below 0.6.
# 2. **Theory, sensitivity.** Reasonable open choices put $\sigma^*$ anywhere from 0.2 to 2.0; the paper's
#    1.1–1.2 is reachable (a 4× wider kernel gives 0.9 at full size and 1.5 at smoke size, 8×8 pooling
#    1.4–1.5, a 2× wider kernel 0.6) —
#    so the paper's number is a statement about its unstated choices, not a property of the data. We assert
#    that at least one of our tabled choices lands within ±0.4 of 1.15, and at least one more than 0.6 away.
# 3. **Gaussian model.** Under its assumptions $J$ is flat to $2\cdot10^{-4}$; it makes no prediction
#    (asserted in section 3).
# 4. **Practice.** Without training, DRDD with linear predictors is best at the *smallest* noise and loses
#    over 1 dB by $\sigma = 1$ — opposite to the paper's Rain100H curve. This neither confirms nor refutes the
#    paper's empirical optimum of 1.0: that optimum is a property of trained networks (section 4), which this
#    notebook cannot reproduce.

# %%
print(f"main σ* = {main.sigma_star}; bootstrap 90 % [{lo}, {hi}]; Gaussian argmin {gauss_star}")
assert 0.2 <= main.sigma_star <= 0.6
assert abs(main.sigma_star - np.mean(PAPER_SIGMA_THEORY)) > 0.2
assert lo < 0.6
all_stars = np.array([star for _, _, star, _, _ in rows])
assert (np.abs(all_stars - 1.15) <= 0.4).any() and (np.abs(all_stars - 1.15) > 0.6).any()

# %% [markdown]
# ## Summary
#
# * $J(\sigma;\lambda) = \lambda\tilde A + (1-\lambda)\tilde B$ trades harmonisation (A falls) against corruption
#   (B rises); if both rose, as the paper's text says, $\sigma^* = 0$.
# * On our data both curves are almost straight, so at $\lambda = 0.5$ the objective is nearly constant and its
#   argmin is fragile: it moves with the draw of images (0.3–1.0), with the kernel bandwidth and the features
#   (0.2–2.0) and jumps to the grid's ends for $\lambda \ne 0.5$.
# * The isotropic Gaussian model is flatter still and predicts nothing.
# * With the paper's stated choices plus ours, $\sigma^* \approx 0.4$, not 1.1–1.2.
# * A linear DRDD pipeline is best at the smallest noise, as the data-processing inequality predicts; the
#   paper's optimum at 1.0 needs trained networks.

# %%
report_runtime(START, budget_s=pick(600, 180))

# %% [markdown]
# ## Exercises
#
# 1. **MMD or MMD²?** The paper writes "MMD". Recompute $J$ with MMD² (square `main.A`, `main.B` and pass them to
#    `objective_from_curves`). Where does $\sigma^*$ go, and why? *Hint:* squaring makes a rising curve convex and a
#    falling one flatter at its end; compare $\tilde A + \tilde B$ with 1.
# 2. **An anisotropic Gaussian model.** Replace the isotropic fit by full covariances $\Sigma_s$, $\Sigma_t$ (pixel
#    features, pool 4 so $D = 192$). *Hint:*
#    $\mathbb E k(x,y) = \det(I + (\Sigma_x+\Sigma_y)/h^2)^{-1/2}\exp(-\tfrac12\Delta\mu^\top(h^2I+\Sigma_x+\Sigma_y)^{-1}\Delta\mu)$,
#    with $\Sigma + \sigma^2 I/16$ for noise (pooling by 4 divides the noise variance by 16). Is $J$ still flat?
# 3. **Per-task harmonisation.** Compute $A(\sigma)$ separately for each of the five tasks
#    (`data.train_task == k`) against the target. Which degradation is harmonised fastest, and does a per-task
#    $\sigma^*$ differ from the pooled one? *Hint:* low light and haze shift the mean image, rain and noise
#    mostly add high-frequency energy; with a fixed bandwidth a mean shift is harmonised slowly.
# 4. **Noise as ridge.** In section 4, fit the residual filter with `RIDGE = 0` on only 50 train patches and
#    repeat the sweep. Does a small $\sigma$ now beat $\sigma \to 0$? *Hint:* training with input noise of variance
#    $\sigma^2$ is equivalent to ridge regularisation with strength $\sigma^2$ (Bishop, 1995).
# 5. **Give the residual filter $I_\text{in}$.** Let the linear residual predictor see the clean-condition
#    neighbourhood of $I_\text{in}$ as well as $x_t$ (6 input channels), as the real residual network does.
#    Why does the first residual stage then become independent of $\sigma$, and what remains of the PSNR drop?
#    *Hint:* with $I_\text{in}$ available, the noisy channel adds no information; only the noise stage pays for $\sigma$.
# 6. **How large must $R$ be?** Using `bootstrap_star`, find how many draws of 300 images make the 90 %
#    interval of $\sigma^*$ narrower than 0.2. *Hint:* the interval width scales with the standard error of $J$,
#    roughly $1/\sqrt{R}$, divided by the curvature of $J$ near its minimum — which is tiny here.
