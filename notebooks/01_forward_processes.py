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
#     level: "1 — introductory (needs: Gaussian distributions, basic PyTorch)"
#     budget_s: 180
# ---

# %% [markdown]
# # Forward processes: from DDPM to RDDM and DRDD
#
# **Level:** 1 — introductory.
#
# **Prerequisites:** Gaussian distributions (a sum of independent Gaussians is Gaussian), basic
# PyTorch tensors, and notebook 00 (noising, predicting the noise, sampling). No papers needed.
#
# **Study time:** about 60 minutes, with the exercises 2–3 hours.
#
# **Learning goals.** After this notebook you can
#
# 1. derive the marginal of RDDM's *residual* diffusion (Liu et al., CVPR 2024), $I_t = I_0 + \bar\alpha_t I_\text{res} + \bar\beta_t\,\epsilon$,
#    from its per-step definition, check it by Monte Carlo, and say how it differs from DDPM's (notebook 00);
# 2. read an RDDM coefficient schedule ($\alpha_t$, $\beta_t^2$, `alphas_cumsum`, `betas2_cumsum`,
#    `sum_scale`) and explain its boundary conditions;
# 3. show that the "DDIM coefficient conversion" makes RDDM with $I_\text{in}=0$ *exactly* DDPM;
# 4. convert a predicted residual into a predicted noise and back, and explain why the second
#    direction breaks down where $\bar\alpha_t = 1$;
# 5. state the two forward processes of DRDD (decoupled residual denoising diffusion) and where DRDD's
#    sampler starts.
#
# **Runtime budget:** CPU only. Smoke size (what the tests run, `DRDD_EDU_SMOKE=1`): about 10 s on a
# 2-core laptop; full size (`DRDD_EDU_SMOKE=0`: more Monte-Carlo samples, 64×64 images): ≤ 1 min. The
# test harness allows 180 s.
#
# **How to read it.** Every equation is followed by a code cell that checks it with `assert`: exact
# identities to floating-point tolerance, statistical statements by Monte Carlo with a tolerance of a
# few standard errors (made precise in §2). At **Predict, then run**, write down your guess *before*
# running the cell: a wrong guess that you then understand teaches more than a result you only read.

# %%
import inspect
import math
import time
from statistics import NormalDist

import matplotlib.pyplot as plt
import torch

from drdd_edu import toydata
from drdd_edu.diffusion import (
    from_model_range,
    predict_noise_from_res,
    predict_res_from_noise,
    predict_x0_from_noise,
    predict_x0_from_res_noise,
    q_sample,
    q_sample_noise_stage,
    q_sample_residual_stage,
    to_model_range,
)
from drdd_edu.notebook import is_smoke, pick, report_runtime, savefig, seed_everything
from drdd_edu.schedules import ddim_converted_schedule, rddm_schedule

START = time.perf_counter()
print("smoke size" if is_smoke() else "full size")
torch.set_default_dtype(torch.float32)

# %% [markdown]
# ## The picture first
#
# A photograph $I_0$ (mapped from $[0, 1]$ to the diffusion scale $[-1, 1]$) and one noise image $\epsilon$,
# three forward processes. **DDPM** (top row) fades the image into pure noise: a generative model
# starts from noise and invents the whole image. **RDDM** moves it towards a degraded input $I_\text{in}$
# (a synthetic low-light copy, `toydata.darken`: $0.35\,x^{1.6}$) while adding much noise (`sum_scale` = 1,
# the paper's setting for low light and deraining) or little (0.01, shadow removal). It ends at
# "$I_\text{in}$ + noise", which we *know* at test time, so a restoration sampler starts there and only walks
# back the residual $I_\text{res} = I_\text{in} - I_0$ and the noise. Sections 1–3 derive the rows and their
# schedules; section 4 returns to this picture with checks.

# %%
size = pick(64, 32)
photo = toydata.bundled_image("astronaut", size=size)  # (1, 3, size, size) in [0, 1]
x0_img, x_in_img = to_model_range(photo), to_model_range(toydata.darken(photo))  # in [-1, 1]
res_img = x_in_img - x0_img
sched_r1, sched_r001, sched_ddim = rddm_schedule(1000, sum_scale=1.0), rddm_schedule(1000, sum_scale=0.01), ddim_converted_schedule(1000)
rows = {"DDPM (ddim-converted, I_in = 0)": (sched_ddim, torch.zeros_like(x0_img)),
        "RDDM, sum_scale 1": (sched_r1, x_in_img), "RDDM, sum_scale 0.01": (sched_r001, x_in_img)}
eps_img = torch.randn(x0_img.shape, generator=seed_everything(7))
show_t = [0, 99, 249, 499, 749, 999]
strip = {(name, t): q_sample(x0_img, x_in_row, t, sched, noise=eps_img) for name, (sched, x_in_row) in rows.items() for t in show_t}
fig, axes = plt.subplots(len(rows), len(show_t) + 2, figsize=(1.8 * (len(show_t) + 2), 2.0 * len(rows) + 0.4))
for r, (name, (sched, x_in_row)) in enumerate(rows.items()):
    panels = [("$I_0$", x0_img), ("$I_{in}$", x_in_row)] + [
        (rf"t={t}" "\n" rf"$\bar\alpha$={float(sched.alphas_cumsum[t]):.2f}, $\bar\beta$={float(sched.betas_cumsum[t]):.2f}", strip[name, t])
        for t in show_t
    ]
    for ax, (title, img) in zip(axes[r], panels, strict=True):
        ax.imshow(from_model_range(img)[0].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set(xticks=[], yticks=[])
    axes[r, 0].set_ylabel(name, fontsize=8)
fig.suptitle(r"Forward process $I_t = I_0 + \bar\alpha_t I_{res} + \bar\beta_t\epsilon$ (same $\epsilon$ in every panel; display clipped to [0, 1])", fontsize=9)
fig.tight_layout()
savefig(fig, "01_the_picture")
plt.show()
plt.close(fig)
# DDPM: √γ_999 ≈ 0.006 of the image is left, the rest is the noise
assert float((strip["DDPM (ddim-converted, I_in = 0)", 999] - eps_img).abs().max()) < 0.02

# %% [markdown]
# ## 1. DDPM recap
#
# DDPM (Ho et al., 2020) corrupts a clean image in $T$ steps, $x_t = \sqrt{1-b_t}\,x_{t-1} + \sqrt{b_t}\,\epsilon_{t-1}$
# ($b_t$ = `linspace(1e-4, 0.02, T)`, usually written $\beta_t$; RDDM uses $\beta$ for something else). Notebook
# 00 (§2) derives and checks its closed form
# $x_t = \sqrt{\gamma_t}\,x_0 + \sqrt{1-\gamma_t}\,\epsilon$, $\gamma_t = \prod_{i\le t}(1-b_i)$ (DDPM's $\bar\alpha_t$; **we call it $\gamma_t$**
# because RDDM's $\bar\alpha_t$ differs). To compare with RDDM: every step *shrinks* the image, and the end
# point, $\sqrt{\gamma_{999}} \approx 0.006$ of the image plus unit noise, is essentially pure noise.

# %%
T = 1000
ddpm_b = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
gammas = torch.cumprod(1.0 - ddpm_b, 0)  # γ_t, computed independently of the library
print(f"γ_999 = {gammas[-1]:.3e}: after 1000 steps almost nothing of x_0 is left")
assert abs(float(gammas[-1].sqrt()) - 0.0063) < 1e-4

# %% [markdown]
# ## 2. RDDM: residual diffusion
#
# For restoration we have pairs (degraded input $I_\text{in}$, clean target $I_0$). RDDM (Liu et al., CVPR
# 2024) defines the **residual** $I_\text{res} = I_\text{in} - I_0$ and a forward process that *adds the residual
# and noise* step by step, never scaling the image down:
#
# $$I_t = I_{t-1} + \alpha_t I_\text{res} + \beta_t\,\epsilon_t,\qquad \epsilon_t\sim\mathcal N(0, I)\ \text{i.i.d.}$$
#
# **Indices (the course's convention).** Steps are numbered as in the reference code,
# $t = 0, \dots, T-1$, and $I_t$, $\bar\alpha_t$, $\bar\beta_t$ describe the state *after* step $t$, that is after
# $t' = t + 1$ steps. The start, the clean image $I_0$, comes before the first step: in this numbering
# it sits at index $-1$ (so the recursion's first step reads $I_{t=0} = I_0 + \alpha_0 I_\text{res} + \beta_0\epsilon_0$, and
# $\bar\alpha_{-1} = \bar\beta_{-1} = 0$ — where notebook 02's sampler ends). The last step is $t = T-1$;
# the papers, counting steps from 1, call it $T$. $I_0$ always means the clean image.
#
# **Deriving the marginal.** Unrolled from the clean image,
# $I_t = I_0 + \big(\sum_{i=0}^{t}\alpha_i\big) I_\text{res} + \sum_{i=0}^{t}\beta_i\,\epsilon_i$; the last term is a sum of independent
# zero-mean Gaussians with variances $\beta_i^2$, a Gaussian with variance $\sum_{i\le t}\beta_i^2$. So
#
# $$\boxed{I_t = I_0 + \bar\alpha_t I_\text{res} + \bar\beta_t\,\epsilon},\qquad
#   \bar\alpha_t = \sum_{i\le t}\alpha_i,\quad \bar\beta_t^2 = \sum_{i\le t}\beta_i^2,\quad \epsilon\sim\mathcal N(0, I).$$
#
# In code: $\alpha_t$ = `schedule.alphas`, $\beta_t^2$ = `schedule.betas2`, $\bar\alpha_t$ = `schedule.alphas_cumsum`,
# $\bar\beta_t^2$ = `schedule.betas2_cumsum`; `q_sample` draws from the boxed marginal in one shot. If
# $\bar\alpha_{T-1} = 1$, the end point $I_{T-1} = I_\text{in} + \bar\beta_{T-1}\epsilon$ is the *degraded input plus noise* —
# where a restoration sampler can start, because at test time we know $I_\text{in}$.
#
# **Check (a), exact.** On a tiny "image" (2×2 pixels, float64: exact identities hold to ~1e-12), run
# the chain for a short schedule ($T = 50$): `q_sample` fed the normalised accumulated noise
# $\epsilon = \sum_{i\le t}\beta_i\epsilon_i/\bar\beta_t$ must reproduce it sample by sample — this checks the algebra.

# %%
x0_toy = torch.tensor([[[[0.8, -0.3], [0.1, 0.5]]]], dtype=torch.float64)  # (1, 1, 2, 2): I_0
x_in_toy = torch.tensor([[[[-0.6, -0.9], [0.4, -0.2]]]], dtype=torch.float64)  # I_in
res_toy = x_in_toy - x0_toy  # I_res = I_in − I_0
n_mc, T_small = pick(40_000, 8_000), 50  # Monte-Carlo samples, steps of the short schedule
sched50 = rddm_schedule(T_small, sum_scale=1.0)
gen = seed_everything(2)
I_chain = x0_toy.expand(n_mc, -1, -1, -1).clone()
x0_batch, x_in_batch = x0_toy.expand_as(I_chain), x_in_toy.expand_as(I_chain)
acc_noise = torch.zeros_like(I_chain)  # Σ_{i≤t} β_i ε_i
chain_mean, chain_std, worst_exact = [], [], 0.0
for t in range(T_small):
    eps_step = torch.randn(I_chain.shape, generator=gen, dtype=torch.float64)
    beta_t = sched50.betas2[t].sqrt()
    I_chain = I_chain + sched50.alphas[t] * res_toy + beta_t * eps_step  # the per-step forward process
    acc_noise = acc_noise + beta_t * eps_step
    one_shot = q_sample(x0_batch, x_in_batch, t, sched50, noise=acc_noise / sched50.betas_cumsum[t])
    worst_exact = max(worst_exact, float((one_shot - I_chain).abs().max()))
    chain_mean.append(I_chain.mean(0))
    chain_std.append(I_chain.std(0))
chain_mean, chain_std = torch.stack(chain_mean), torch.stack(chain_std)  # (T_small, 1, 2, 2)
print(f"chain vs q_sample with the accumulated noise: max |difference| = {worst_exact:.1e}")
assert worst_exact < 1e-12

# %% [markdown]
# ### How we test statistical claims (used for every Monte-Carlo check below)
#
# **Check (a), statistical**, compares the chain's sample mean and std at every step with $I_0 + \bar\alpha_t I_\text{res}$
# and $\bar\beta_t$, and its normalised accumulated noise with $\mathcal N(0, 1)$. The tolerance must be strict but not
# fail by bad luck. For $n$ independent samples with true std $s$, the sample mean has standard error
# $s/\sqrt{n}$, and (Gaussian data) the sample std $\approx s/\sqrt{2(n-1)}$; a check measures the deviation in
# standard errors (a $z$-score). For $m$ comparisons at once we allow $|z| < z^* = \Phi^{-1}\!\big(1 - p/(2m)\big)$
# (Bonferroni): if the claim is true, *all* $m$ pass with probability at least $1-p$. With $p = 10^{-4}$,
# $z^* \approx 4$–$6$. The seeds are fixed, but the tolerances would hold for almost any other seed.

# %%
def z_threshold(m: int, false_alarm: float = 1e-4) -> float:
    """Two-sided Bonferroni critical value for m simultaneous z-tests."""
    return NormalDist().inv_cdf(1 - false_alarm / (2 * m))

def check_moments(mean_hat, std_hat, mean, std, n, label="", false_alarm=1e-4):
    """Assert that sample means/stds (from n samples) match the claimed mean/std.

    All arguments broadcast against each other; returns the worst |z|.
    """
    mean_hat = torch.as_tensor(mean_hat, dtype=torch.float64)
    std_hat = torch.as_tensor(std_hat, dtype=torch.float64)
    mean = torch.as_tensor(mean, dtype=torch.float64).expand_as(mean_hat)
    std = torch.as_tensor(std, dtype=torch.float64).expand_as(std_hat)
    z_mean = (mean_hat - mean).abs() / (std / math.sqrt(n))
    z_std = (std_hat - std).abs() / (std / math.sqrt(2 * (n - 1)))
    z_star = z_threshold(2 * mean_hat.numel(), false_alarm)
    worst = float(torch.maximum(z_mean.max(), z_std.max()))
    print(f"{label}: worst |z| = {worst:.2f} over {2 * mean_hat.numel()} comparisons (z* = {z_star:.2f})")
    assert z_mean.max() < z_star, f"{label}: a sample mean is {float(z_mean.max()):.1f} standard errors off"
    assert z_std.max() < z_star, f"{label}: a sample std is {float(z_std.max()):.1f} standard errors off"
    return worst

a50 = sched50.alphas_cumsum.reshape(T_small, 1, 1, 1)
b50 = sched50.betas_cumsum.reshape(T_small, 1, 1, 1)
check_moments(chain_mean, chain_std, x0_toy[0] + a50 * res_toy[0], b50, n_mc, "RDDM chain (T=50) vs closed form")
eps_equiv = acc_noise / sched50.betas_cumsum[-1]
check_moments(eps_equiv.mean(0), eps_equiv.std(0), 0.0, 1.0, n_mc, "accumulated noise / β̄_49 is N(0, 1)")

# %% [markdown]
# **Check (b).** `q_sample` drawing its own noise, at a few steps of the $T=50$ and the two $T = 1000$
# reference schedules; then the chain of check (a) against the closed form, in a figure.

# %%
seed_everything(3)
for sched in (sched50, sched_r1, sched_r001):
    for t in sorted({0, sched.T // 4, sched.T // 2, sched.T - 1}):
        samples = q_sample(x0_toy.expand(n_mc, -1, -1, -1), x_in_toy.expand(n_mc, -1, -1, -1), t, sched)
        a_t, b_t = float(sched.alphas_cumsum[t]), float(sched.betas_cumsum[t])
        check_moments(samples.mean(0), samples.std(0), x0_toy[0] + a_t * res_toy[0], b_t, n_mc,
                      f"q_sample, {sched.name}, t={t}")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
steps = torch.arange(T_small)
axes[0].plot(steps, chain_mean[:, 0, 0, 0], "o", ms=3, label="chain, sample mean")
axes[0].plot(steps, x0_toy[0, 0, 0, 0] + sched50.alphas_cumsum * res_toy[0, 0, 0, 0], "-", label=r"$I_0 + \bar\alpha_t I_{res}$")
axes[0].axhline(float(x_in_toy[0, 0, 0, 0]), color="gray", ls=":", label=r"$I_{in}$")
axes[1].plot(steps, chain_std[:, 0, 0, 0], "o", ms=3, label="chain, sample std")
axes[1].plot(steps, sched50.betas_cumsum, "-", label=r"$\bar\beta_t$")
for ax, title in zip(axes, ("mean of pixel (0, 0)", "standard deviation"), strict=True):
    ax.set(xlabel="t", title=title)
    ax.legend(fontsize=8)
fig.suptitle(f"RDDM per-step chain (T = {T_small}, {n_mc} samples) vs the closed-form marginal")
fig.tight_layout()
savefig(fig, "01_chain_vs_closed_form")
plt.show()
plt.close(fig)

# %% [markdown]
# ### The reference schedule
#
# The RDDM reference code uses $T = 1000$ and, with $t' = t + 1 = 1,\dots,T$ the number of steps done,
#
# $$\alpha_t = \frac{T + 1 - t'}{T(T+1)/2}\ \ \text{(linearly decreasing)},\qquad
#   \beta_t^2 = \texttt{sum\_scale}\cdot\frac{t'}{T(T+1)/2}\ \ \text{(linearly increasing)}.$$
#
# Since $\sum_{t'=1}^T t' = T(T+1)/2$: $\bar\alpha_{T-1} = 1$ (the whole residual is added) and $\bar\beta_{T-1}^2 = \texttt{sum\_scale}$.
# RDDM's path-independence study also uses a power family, `rddm_schedule(alpha_power=k, beta_power=k')`:
# weights $\propto (t'/T)^k$ (reversed for $\alpha$), renormalised — $k = 1$ linear, $k=0$ uniform, same boundaries.
#
# **Predict, then run.** With `sum_scale` = 1, what share of the residual has been added after half of
# the steps, $\bar\alpha_{499}$ — a half, less, or more? And how much noise, $\bar\beta_{499}$?

# %%
tp = torch.arange(1, T + 1, dtype=torch.float64)  # t' = t + 1 = 1 … T
for sum_scale in (1.0, 0.01):
    sched = rddm_schedule(T, sum_scale=sum_scale)
    alphas_ref = (T + 1 - tp) / (T * (T + 1) / 2)
    betas2_ref = sum_scale * tp / (T * (T + 1) / 2)
    assert torch.allclose(sched.alphas, alphas_ref, rtol=1e-12, atol=0)
    assert torch.allclose(sched.betas2, betas2_ref, rtol=1e-12, atol=0)
    assert (torch.diff(sched.alphas) < 0).all(), "α_t must decrease"
    assert (torch.diff(sched.betas2) > 0).all(), "β_t² must increase"
    assert sched.alphas_cumsum[T - 1] == 1.0, "ᾱ_{T-1} = 1"  # float-exact: boundary
    assert abs(sched.sum_scale - sum_scale) < 1e-12 and abs(sched.betas2_cumsum[T - 1] - sum_scale) < 1e-12
    # closed forms of the cumulative sums: ᾱ_t = 1 − (T−t')(T−t'+1)/(T(T+1)), β̄_t² = sum_scale·t'(t'+1)/(T(T+1))
    assert torch.allclose(sched.alphas_cumsum, 1 - (T - tp) * (T - tp + 1) / (T * (T + 1)), atol=1e-12)
    assert torch.allclose(sched.betas2_cumsum, sum_scale * tp * (tp + 1) / (T * (T + 1)), rtol=1e-12)
    print(sched, f"| ᾱ_499 = {float(sched.alphas_cumsum[499]):.3f}, β̄_499 = {float(sched.betas_cumsum[499]):.3f}")
# half-way: three quarters of the residual, but only half of the noise std (a quarter of its variance)
assert abs(float(sched_r1.alphas_cumsum[499]) - 0.75) < 1e-3 and abs(float(sched_r1.betas_cumsum[499]) - 0.5) < 1e-3

powers = (0.0, 0.5, 1.0, 2.0, 4.0)
power_scheds = {k: rddm_schedule(T, sum_scale=1.0, alpha_power=k, beta_power=k) for k in powers}
for k, sched in power_scheds.items():  # float-exact: boundary (an assigned end point)
    assert sched.alphas_cumsum[-1] == 1.0 and abs(sched.sum_scale - 1.0) < 1e-12, f"boundary conditions, power {k}"
# a larger alpha_power adds the residual earlier (larger ᾱ_t), a larger beta_power the noise later (smaller β̄_t)
for k_small, k_big in zip(powers[:-1], powers[1:], strict=True):
    assert (power_scheds[k_big].alphas_cumsum[:-1] > power_scheds[k_small].alphas_cumsum[:-1]).all()
    assert (power_scheds[k_big].betas2_cumsum[:-1] < power_scheds[k_small].betas2_cumsum[:-1]).all()

# %% [markdown]
# With $t' = 500$: $\bar\alpha_{499} = 1 - \frac{500\cdot 501}{1000\cdot1001} \approx 0.75$ (the residual comes early) and
# $\bar\beta_{499}^2 \approx 0.25$, so $\bar\beta_{499} \approx 0.5$ (the noise comes late).
#
# ## 3. The DDIM coefficient conversion: DDPM is a special case of RDDM
#
# Take RDDM with **no input** ($I_\text{in} = 0$, i.e. $I_\text{res} = -I_0$: pure generation):
# $I_t = I_0 + \bar\alpha_t(0 - I_0) + \bar\beta_t\epsilon = (1-\bar\alpha_t)\,I_0 + \bar\beta_t\,\epsilon$. Matching this with DDPM's
# $\sqrt{\gamma_t}\,x_0 + \sqrt{1-\gamma_t}\,\epsilon$ term by term gives RDDM's coefficient conversion
#
# $$\bar\alpha_t = 1 - \sqrt{\gamma_t},\qquad \bar\beta_t^2 = 1 - \gamma_t,$$
#
# implemented by `ddim_converted_schedule`. Then RDDM and DDPM produce the **same** $I_t$ from the
# same $\epsilon$ — not just the same distribution. Two consequences: $(1-\bar\alpha_t)^2 + \bar\beta_t^2 = 1$ (the
# process is variance preserving), and $\bar\alpha_{T-1} = 1 - \sqrt{\gamma_{T-1}} < 1$: the residual is *not* fully
# added at the end (a trace of $I_0$ survives). §5 shows why that matters for noise-predicting models.

# %%
print(sched_ddim)
assert torch.allclose(sched_ddim.alphas_cumsum, 1 - gammas.sqrt(), rtol=0, atol=1e-14)
assert torch.allclose(sched_ddim.betas2_cumsum, 1 - gammas, rtol=0, atol=1e-14)
assert torch.allclose((1 - sched_ddim.alphas_cumsum) ** 2 + sched_ddim.betas2_cumsum, torch.ones(T, dtype=torch.float64))
a_last, b_last = float(sched_ddim.alphas_cumsum[T - 1]), float(sched_ddim.betas_cumsum[T - 1])
print(f"ᾱ_999 = {a_last:.5f}, β̄_999 = {b_last:.5f}")
assert abs(a_last - 0.99365) < 5e-6 and abs(b_last - 0.99998) < 5e-6

# same ε, every t at once (one batch element per timestep): RDDM(I_in = 0) == DDPM, exactly
gen = seed_everything(5)
x0_rand = torch.rand(T, 3, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
eps = torch.randn(T, 3, 4, 4, generator=gen, dtype=torch.float64)
t_all = torch.arange(T)
rddm_zero_input = q_sample(x0_rand, torch.zeros_like(x0_rand), t_all, sched_ddim, noise=eps)
ddpm = gammas.sqrt().reshape(T, 1, 1, 1) * x0_rand + (1 - gammas).sqrt().reshape(T, 1, 1, 1) * eps
print(f"max |RDDM(ddim-converted, I_in=0) − DDPM| over all 1000 steps: {float((rddm_zero_input - ddpm).abs().max()):.1e}")
assert torch.allclose(rddm_zero_input, ddpm, rtol=0, atol=1e-12)
# and in float32, the dtype used for images, to float32 precision
rddm32 = q_sample(x0_rand.float(), torch.zeros_like(x0_rand).float(), t_all, sched_ddim, noise=eps.float())
assert torch.allclose(rddm32, ddpm.float(), rtol=0, atol=1e-6)

# %% [markdown]
# The schedules side by side: per-step coefficients of the reference schedule; $\bar\alpha_t$ (solid) and
# $\bar\beta_t$ (dashed) of the three schedules (both references share $\bar\alpha_t$); the power family.

# %%
t_axis = torch.arange(T)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
axes[0].plot(t_axis, sched_r1.alphas * T, label=r"$T\cdot\alpha_t$")
axes[0].plot(t_axis, sched_r1.betas2 * T, label=r"$T\cdot\beta_t^2$ (sum_scale 1)")
axes[0].set(xlabel="t", title="per-step coefficients (reference)")
axes[0].legend(fontsize=8)
for sched, color, label in [(sched_r1, "C0", "rddm, sum_scale 1"), (sched_r001, "C1", "rddm, sum_scale 0.01"),
                            (sched_ddim, "C2", "ddim-converted")]:
    axes[1].plot(t_axis, sched.alphas_cumsum, color=color, label=label + r": $\bar\alpha_t$")
    axes[1].plot(t_axis, sched.betas_cumsum, color=color, ls="--", label=label + r": $\bar\beta_t$")
axes[1].set(xlabel="t", title=r"cumulative: $\bar\alpha_t$ (solid), $\bar\beta_t$ (dashed)")
axes[1].legend(fontsize=8)
for i, (k, sched) in enumerate(power_scheds.items()):
    axes[2].plot(t_axis, sched.alphas_cumsum, color=f"C{i}", label=f"k = {k:g}")
    axes[2].plot(t_axis, sched.betas_cumsum, color=f"C{i}", ls="--")
axes[2].set(xlabel="t", title=r"power family: $\bar\alpha_t$ (solid), $\bar\beta_t$ (dashed)")
axes[2].legend(fontsize=8, title="alpha_power = beta_power", title_fontsize=8)
fig.tight_layout()
savefig(fig, "01_schedules")
plt.show()
plt.close(fig)

# %% [markdown]
# ## 4. Back to the picture
#
# Two checks on the image strips of the first figure, using the pixels of one image as the samples:
# the mean brightness of $I_t$ moves linearly with $\bar\alpha_t$ (mean of $I_0 + \bar\alpha_t I_\text{res}$, up to
# $\bar\beta_t/\sqrt{D}$ noise for $D$ pixels), and the std of what is left after subtracting $I_0 + \bar\alpha_t I_\text{res}$
# is $\bar\beta_t$. At the last step, since $\bar\alpha_{T-1} = 1$, $I_{T-1} = I_\text{in} + \sqrt{\texttt{sum\_scale}}\,\epsilon$ exactly.

# %%
D = x0_img.numel()
print(f"image {tuple(x0_img.shape)}, mean I_0 = {float(x0_img.mean()):.3f}, mean I_in = {float(x_in_img.mean()):.3f}")
n_checks = 2 * len(rows) * len(show_t)
z_star = z_threshold(n_checks)
for name, (sched, x_in_row) in rows.items():
    for t in show_t:
        a_t, b_t = float(sched.alphas_cumsum[t]), float(sched.betas_cumsum[t])
        drift = x0_img + a_t * (x_in_row - x0_img)
        z_mean = abs(float(strip[name, t].mean() - drift.mean())) / (b_t / math.sqrt(D))
        z_std = abs(float((strip[name, t] - drift).std()) - b_t) / (b_t / math.sqrt(2 * (D - 1)))
        assert z_mean < z_star and z_std < z_star, (name, t, z_mean, z_std)
    if sched is not sched_ddim:  # I_{T-1} = I_in + sqrt(sum_scale)·ε, exactly
        assert torch.allclose(strip[name, 999], x_in_img + math.sqrt(sched.sum_scale) * eps_img, atol=1e-6)
print(f"brightness and noise-level checks passed ({n_checks} comparisons, z* = {z_star:.2f})")

# %% [markdown]
# ## 5. Residual ↔ noise: converting predictions
#
# A restoration network sees $I_t$ (and $I_\text{in}$) and predicts the residual (RDDM's "SM-Res" mode),
# the noise ("SM-N"), or both ("SM-Res-N"). Substituting $I_0 = I_\text{in} - I_\text{res}$ into the marginal,
# $I_t = I_\text{in} + (\bar\alpha_t - 1)\,I_\text{res} + \bar\beta_t\,\epsilon$, which can be solved for either unknown:
#
# $$\hat\epsilon = \frac{I_t - I_\text{in} - (\bar\alpha_t - 1)\,\hat I_\text{res}}{\bar\beta_t}\ \ \text{(always defined: } \bar\beta_t > 0\text{)},\qquad
#   \hat I_\text{res} = \frac{I_t - I_\text{in} - \bar\beta_t\,\hat\epsilon}{\bar\alpha_t - 1}\ \ \text{(undefined where } \bar\alpha_t = 1\text{)},$$
#
# and with both predictions, $\hat I_0 = I_t - \bar\alpha_t \hat I_\text{res} - \bar\beta_t\hat\epsilon$. Why must the second formula
# fail at $\bar\alpha_t = 1$? There $I_t = I_\text{in} + \bar\beta_t\epsilon$ contains **no information about $I_0$**: knowing
# the noise exactly only tells you $I_\text{in}$, which you already had. Near that point the division by
# $1-\bar\alpha_t$ amplifies any error in $\hat\epsilon$ by the gain $\bar\beta_t/(1-\bar\alpha_t)$.
#
# Checks (float64): exact conversions for the true residual and noise; for an *imperfect* residual the
# round trip $\hat I_\text{res} \to \hat\epsilon \to \hat I_\text{res}$ is the identity and both readings give $\hat I_0 = I_\text{in} - \hat I_\text{res}$.

# %%
x0_d, x_in_d = x0_img.double(), x_in_img.double()
t_conv = torch.tensor([0, 99, 499, 899, 998])  # every step but the last one (ᾱ_999 = 1)
B = len(t_conv)
x0_b, x_in_b = x0_d.expand(B, -1, -1, -1), x_in_d.expand(B, -1, -1, -1)
res_b = x_in_b - x0_b
gen = seed_everything(9)
eps_b = torch.randn(x0_b.shape, generator=gen, dtype=torch.float64)
for sched in (sched_r1, sched_r001, sched_ddim):
    x_t = q_sample(x0_b, x_in_b, t_conv, sched, noise=eps_b)
    a, b = sched.alphas_cumsum[t_conv].reshape(B, 1, 1, 1), sched.betas_cumsum[t_conv].reshape(B, 1, 1, 1)
    # float64 rounding (~1e-16 on values of size ~1) is amplified by the division in each formula
    tol_div_beta, tol_div_one_minus_alpha = 1e-13 / b, 1e-13 / (1 - a)
    # exact predictions → exact conversions
    assert ((predict_noise_from_res(x_t, x_in_b, res_b, t_conv, sched) - eps_b).abs() <= tol_div_beta).all()
    assert ((predict_res_from_noise(x_t, x_in_b, eps_b, t_conv, sched) - res_b).abs() <= tol_div_one_minus_alpha).all()
    assert torch.allclose(predict_x0_from_res_noise(x_t, res_b, eps_b, t_conv, sched), x0_b, rtol=0, atol=1e-13)
    assert ((predict_x0_from_noise(x_t, x_in_b, eps_b, t_conv, sched) - x0_b).abs() <= tol_div_one_minus_alpha).all()
    # an imperfect residual prediction: the round trip is still the identity
    res_guess = res_b + 0.1 * torch.randn(res_b.shape, generator=gen, dtype=torch.float64)
    eps_from_res = predict_noise_from_res(x_t, x_in_b, res_guess, t_conv, sched)
    res_back = predict_res_from_noise(x_t, x_in_b, eps_from_res, t_conv, sched)
    assert ((res_back - res_guess).abs() <= tol_div_one_minus_alpha).all()
    x0_hat = predict_x0_from_res_noise(x_t, res_guess, eps_from_res, t_conv, sched)
    assert torch.allclose(x0_hat, x_in_b - res_guess, rtol=0, atol=1e-12)
    # an error δ in ε̂ becomes an error β̄_t/(1 − ᾱ_t)·δ in Î_res
    shift = predict_res_from_noise(x_t, x_in_b, eps_b + 1e-3, t_conv, sched) - res_b
    gain = b / (1 - a)
    assert torch.allclose(shift, gain * 1e-3 * torch.ones_like(shift), rtol=1e-6, atol=1e-9)
    print(f"{sched.name}: conversions exact; gain β̄/(1−ᾱ) at t = {t_conv.tolist()}: "
          + ", ".join(f"{float(v):.3g}" for v in gain.flatten()))

# at ᾱ_t = 1 the noise → residual conversion refuses, with a clear message
t_last = torch.full((1,), T - 1)
x_t_last = q_sample(x0_d, x_in_d, t_last, sched_r1, noise=eps_b[:1])
for fn in (predict_res_from_noise, predict_x0_from_noise):
    try:
        fn(x_t_last, x_in_d, eps_b[:1], t_last, sched_r1)
    except ValueError as err:
        print(f"{fn.__name__} at t = {T - 1}: ValueError: {err}")
        assert "ᾱ_t = 1" in str(err)
    else:
        raise AssertionError(f"{fn.__name__} should refuse at ᾱ_t = 1")
# the other direction is fine there
assert torch.allclose(predict_noise_from_res(x_t_last, x_in_d, x_in_d - x0_d, t_last, sched_r1), eps_b[:1], atol=1e-12)

# %% [markdown]
# **Predict, then run.** Sketch the error gain $\bar\beta_t/(1-\bar\alpha_t)$ of the noise → residual conversion over
# $t$ for the three schedules. Where is it largest? Does it stay finite for the DDIM-converted one?

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
t_gain = torch.arange(T - 1)  # the last step is excluded: the gain is infinite there for rddm schedules
for sched, label in [(sched_r1, "rddm, sum_scale 1"), (sched_r001, "rddm, sum_scale 0.01"), (sched_ddim, "ddim-converted")]:
    ax.semilogy(t_gain, sched.betas_cumsum[t_gain] / (1 - sched.alphas_cumsum[t_gain]), label=label)
ddim_gain_last = float(sched_ddim.betas_cumsum[-1] / (1 - sched_ddim.alphas_cumsum[-1]))
assert abs(ddim_gain_last - math.sqrt((1 - gammas[-1]) / gammas[-1])) < 1e-9 and 150 < ddim_gain_last < 160
ax.set(xlabel="t", ylabel=r"$\bar\beta_t / (1-\bar\alpha_t)$", title=r"error gain of $\hat\epsilon \to \hat I_{res}$")
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, "01_noise_to_residual_gain")
plt.show()
plt.close(fig)

# %% [markdown]
# For the reference schedules the gain diverges at the last step (where a pure noise predictor cannot
# restore at all); for the DDIM-converted schedule it grows to $\sqrt{1-\gamma_{T-1}}/\sqrt{\gamma_{T-1}} \approx 157$ but
# stays finite. This is one reason RDDM predicts the residual (or both) for restoration.
#
# ## 6. DRDD: two decoupled forward processes
#
# In RDDM one process adds the residual *and* the noise, with coupled coefficients
# $(\bar\alpha_t, \bar\beta_t)$. DRDD (decoupled residual denoising diffusion, 2026) splits it into two
# processes, each learned by its own network:
#
# **Stage 1 — noise diffusion** (a plain variance-exploding denoiser): $I^1_t = I_0 + \bar\beta_t\,\epsilon$. This is
# RDDM's marginal with $I_\text{res} = 0$, and **$I_\text{in}$ does not appear**: the denoiser can be trained on
# *unpaired* clean images of the target domain.
#
# **Stage 2 — residual diffusion at a fixed noise level** $\sigma$ (the paper's "noise strength"; by
# default $\sigma = \bar\beta_{T-1}$): from $I^2_{-1} = I_0 + \sigma\,\epsilon'$ (the start, index $-1$ as above),
# $I^2_t = I^2_{-1} + \bar\alpha_t\,I_\text{res}$. The noise is drawn once and stays; only the residual is added,
# inside an already-noisy domain. With $\bar\alpha_{T-1} = 1$ the end point is $I^2_{T-1} = I_\text{in} + \sigma\,\epsilon'$,
# computable at test time from the degraded input alone: **DRDD sampling starts there**, first removes
# the residual in the noisy domain (reversing stage 2, landing near $I_0 + \sigma\epsilon'$), then the noise
# with the stage-1 denoiser.
#
# Checks: stage 1 takes no `x_in` and equals `q_sample` with $I_\text{in} = I_0$; stage 2 hits its end points
# exactly; DRDD's start coincides with RDDM's end point for `sum_scale` = $\sigma^2$ (same start, another path).

# %%
assert "x_in" not in inspect.signature(q_sample_noise_stage).parameters, "stage 1 must not need the degraded input"
sigma = sched_r1.noise_strength
assert math.isclose(sigma, 1.0, rel_tol=0, abs_tol=1e-12)  # β̄_{T-1} = sqrt(sum_scale) = 1

gen = seed_everything(11)
eps1, eps2 = torch.randn(x0_img.shape, generator=gen), torch.randn(x0_img.shape, generator=gen)
for t in show_t:
    stage1 = q_sample_noise_stage(x0_img, t, sched_r1, noise=eps1)
    assert torch.allclose(stage1, q_sample(x0_img, x0_img, t, sched_r1, noise=eps1), atol=1e-6)
    assert torch.allclose(stage1, x0_img + float(sched_r1.betas_cumsum[t]) * eps1, atol=1e-6)
    stage2 = q_sample_residual_stage(x0_img, x_in_img, t, sched_r1, noise=eps2)
    assert torch.allclose(stage2 - (x0_img + sigma * eps2), float(sched_r1.alphas_cumsum[t]) * res_img, atol=1e-5)

# end points: stage 1 ends at I_0 + σ·ε, stage 2 at I_in + σ·ε' (where DRDD sampling starts)
assert torch.allclose(q_sample_noise_stage(x0_img, T - 1, sched_r1, noise=eps1), x0_img + sigma * eps1, atol=1e-6)
drdd_start = q_sample_residual_stage(x0_img, x_in_img, T - 1, sched_r1, noise=eps2)
assert torch.allclose(drdd_start, x_in_img + sigma * eps2, atol=1e-6)
# another noise strength, e.g. σ = 0.5 (it need not come from the schedule)
assert torch.allclose(q_sample_residual_stage(x0_img, x_in_img, T - 1, sched_r1, noise=eps2, noise_strength=0.5),
                      x_in_img + 0.5 * eps2, atol=1e-6)
# same start as RDDM with sum_scale = σ² (same noise), but a different path: at t = 499 RDDM carries
# noise β̄_499 ≈ 0.5 while DRDD's stage 2 always carries σ = 1
assert torch.allclose(drdd_start, q_sample(x0_img, x_in_img, T - 1, rddm_schedule(T, sum_scale=sigma**2), noise=eps2), atol=1e-6)
assert float(sched_r1.betas_cumsum[499]) < 0.51 * sigma
print("DRDD stage identities and end points: OK")

# %% [markdown]
# **Predict, then run.** Monte-Carlo moments of the two stages on the 2×2 toy image. Stage 1 has mean
# $I_0$ and std $\bar\beta_t$. What are stage 2's mean and std at $t = 0$, where almost no residual has been
# added yet — and at $t = 999$? (Also for a non-default $\sigma = 0.5$.)

# %%
seed_everything(12)
x0_n, x_in_n = x0_toy.expand(n_mc, -1, -1, -1), x_in_toy.expand(n_mc, -1, -1, -1)
for t in (0, 249, 499, 999):
    a_t, b_t = float(sched_r1.alphas_cumsum[t]), float(sched_r1.betas_cumsum[t])
    s1 = q_sample_noise_stage(x0_n, t, sched_r1)
    check_moments(s1.mean(0), s1.std(0), x0_toy[0], b_t, n_mc, f"stage 1, t={t}")
    for noise_strength in (None, 0.5):
        s2 = q_sample_residual_stage(x0_n, x_in_n, t, sched_r1, noise_strength=noise_strength)
        sig = sigma if noise_strength is None else noise_strength
        check_moments(s2.mean(0), s2.std(0), x0_toy[0] + a_t * res_toy[0], sig, n_mc, f"stage 2, σ={sig:g}, t={t}")

# %% [markdown]
# Stage 2 carries the full noise $\sigma$ **at every $t$**, from the first step on; its mean moves from $I_0$
# to $I_\text{in}$ as in RDDM. The two designs in the $(\bar\alpha, \bar\beta)$ plane (left): an RDDM forward
# process travels along one curve from the clean image $(0, 0)$ to the noisy input $(1, \bar\beta_{T-1})$; DRDD's
# stage 1 covers the vertical segment $\bar\alpha = 0$ (noise only) and stage 2 the horizontal segment
# $\bar\beta = \sigma$ (residual only). DRDD's sampler goes right-to-left along the top, then down. (The
# DDIM-converted curve never reaches $\bar\alpha = 1$.) Right: image strips of the two DRDD stages.

# %%
fig = plt.figure(figsize=(13, 4.2))
grid = fig.add_gridspec(2, 1 + len(show_t), width_ratios=[2.6] + [1] * len(show_t))
ax = fig.add_subplot(grid[:, 0])
for sched, label in [(sched_r1, "RDDM, sum_scale 1"), (sched_r001, "RDDM, sum_scale 0.01"), (sched_ddim, "ddim-converted")]:
    ax.plot(sched.alphas_cumsum, sched.betas_cumsum, label=label)
ax.plot([0, 0], [0, sigma], "k-", lw=3, alpha=0.6, label="DRDD stage 1 (noise)")
ax.plot([0, 1], [sigma, sigma], "m-", lw=3, alpha=0.6, label=r"DRDD stage 2 (residual at $\sigma$)")
ax.annotate("DRDD start\n$I_{in}+\\sigma\\epsilon'$", (1, sigma), (0.55, 0.62), fontsize=8, arrowprops={"arrowstyle": "->"})
ax.set(xlabel=r"$\bar\alpha$ (share of residual added)", ylabel=r"$\bar\beta$ (noise std)", xlim=(-0.05, 1.1), ylim=(-0.05, 1.15))
ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
ax.set_title("forward paths", fontsize=9)
for c, t in enumerate(show_t):
    for r, (img, title) in enumerate([(q_sample_noise_stage(x0_img, t, sched_r1, noise=eps1), rf"stage 1: $\bar\beta$={float(sched_r1.betas_cumsum[t]):.2f}"),
                                      (q_sample_residual_stage(x0_img, x_in_img, t, sched_r1, noise=eps2), rf"stage 2: $\bar\alpha$={float(sched_r1.alphas_cumsum[t]):.2f}")]):
        a = fig.add_subplot(grid[r, 1 + c])
        a.imshow(from_model_range(img)[0].permute(1, 2, 0).numpy(), interpolation="nearest")
        a.set_title(f"t={t}\n{title}", fontsize=8)
        a.set(xticks=[], yticks=[])
fig.tight_layout()
savefig(fig, "01_drdd_forward_paths")
plt.show()
plt.close(fig)
report_runtime(START, budget_s=180)

# %% [markdown]
# ### Why decouple? (the DRDD paper's argument, in brief)
#
# These are **claims of the DRDD paper**, not results of this notebook:
# * *Noise as a domain harmoniser.* Adding the same Gaussian noise to inputs with different degradations
#   makes their distributions more alike (the paper's Proposition 3.1: the KL divergence strictly
#   decreases — proved and checked in notebook 05, §1), so stage 2, at fixed $\sigma$, sees harmonised inputs.
# * *Keeping the noise until the end.* A coupled process removes the noise with the residual, "too early";
#   in DRDD the noise level stays at $\sigma$ while the residual goes.
# * *The denoiser needs only clean images* (stage 1 never sees $I_\text{in}$); the paper reports that DRDD
#   degrades less than baselines when *paired* training data are reduced (notebook 09 tests this).

# %% [markdown]
# ## What you learned
#
# * DDPM shrinks the image at every step; RDDM adds the residual $I_\text{res} = I_\text{in} - I_0$ and noise:
#   $I_t = I_0 + \bar\alpha_t I_\text{res} + \bar\beta_t\epsilon$, $\bar\alpha_t = \sum_{i\le t}\alpha_i$, $\bar\beta_t^2 = \sum_{i\le t}\beta_i^2$ — derived from the per-step
#   chain, checked sample by sample and by Monte Carlo (Bonferroni-corrected $z$-tests).
# * The reference schedule adds the residual early and the noise late, with $\bar\alpha_{T-1} = 1$ and
#   $\bar\beta_{T-1}^2$ = `sum_scale`, so it ends at the noisy degraded input, where sampling starts.
# * With $\bar\alpha_t = 1 - \sqrt{\gamma_t}$, $\bar\beta_t^2 = 1-\gamma_t$ and $I_\text{in} = 0$, RDDM *is* DDPM, sample by sample.
# * Residual → noise is always possible; noise → residual divides by $1-\bar\alpha_t$, amplifies errors by
#   $\bar\beta_t/(1-\bar\alpha_t)$ and is impossible at $\bar\alpha_t = 1$.
# * DRDD decouples: a noise-only process (no $I_\text{in}$, unpaired clean data) and a residual process at
#   fixed noise $\sigma$ ending at $I_\text{in} + \sigma\epsilon'$ — RDDM's start for `sum_scale` = $\sigma^2$, by another path.
#
# **Next:** notebook 02 runs these processes backwards.
#
# ## Exercises
#
# 1. **Predict, then check.** For `rddm_schedule(1000, sum_scale=0.1)`, what are $\bar\alpha_{999}$,
#    $\bar\beta_{999}$ and $\bar\alpha_{499}$? Compute them by hand, then assert them against the
#    library. *Hint:* $\bar\beta_{T-1}^2 = \texttt{sum\_scale}$; for the linear schedule,
#    $\bar\alpha_t = 1 - (T-t')(T-t'+1)/(T(T+1))$ with $t' = t+1$.
# 2. **The per-step DDIM-converted coefficients.** Plot $\alpha_t$ and $\beta_t^2$ of
#    `ddim_converted_schedule()`. Is $\alpha_t$ monotone like the reference schedule's? Where is it
#    largest? *Hint:* $\alpha_t = \sqrt{\gamma_{t-1}} - \sqrt{\gamma_t}$ (with $\gamma_{-1} = 1$); compare with
#    `sched.alphas`.
# 3. **DDIM-converted RDDM with an input.** For `ddim_converted_schedule` and $I_\text{in} \ne 0$,
#    derive the mean and variance of $I_t$ and check them by Monte Carlo with `check_moments`. What
#    does $I_{T-1}$ look like — where would a sampler start? *Hint:* the mean is
#    $\sqrt{\gamma_t}I_0 + (1-\sqrt{\gamma_t})I_\text{in}$; look at $\bar\alpha_{999}$.
# 4. **SM-N in float32.** Repeat the conversion checks of §5 in float32 instead of float64, for
#    $t = 990, \dots, 998$ of the reference schedule. How large is the error of $\hat I_\text{res}$
#    computed from the *exact* noise? Explain it with the gain $\bar\beta_t/(1-\bar\alpha_t)$.
#    *Hint:* float32 rounds $I_t$ to a relative error of about $6\cdot10^{-8}$; multiply by the gain.
# 5. **A two-phase RDDM schedule.** Build a `Schedule` that first adds (almost) all the noise and
#    only then the residual — RDDM's closest imitation of DRDD's forward path. Why can't the
#    noise increments be exactly zero in the second phase? Draw its path in the $(\bar\alpha,
#    \bar\beta)$ plane next to DRDD's. *Hint:* read the checks in `Schedule.__post_init__`
#    (`betas2` must be > 0 everywhere); use `alphas_cumsum = torch.cumsum(alphas, 0)`.
# 6. **Noise shrinks differences, also between unequal variances.** For two Gaussian "domains"
#    $P = \mathcal N(\mu_P, s^2)$, $Q = \mathcal N(\mu_Q, s^2)$, adding independent $\mathcal N(0, \sigma^2)$ noise gives
#    $\mathrm{KL}(P_\sigma\|Q_\sigma) = (\mu_P-\mu_Q)^2/\big(2(s^2+\sigma^2)\big)$, which falls with $\sigma$ (the simplest case of
#    DRDD's Proposition 3.1, notebook 05 §1). Generalise to $s_P \ne s_Q$: write $\mathrm{KL}(P_\sigma\|Q_\sigma)$ in
#    closed form, verify it by Monte Carlo, and check on a grid that it decreases with $\sigma$. *Hint:*
#    $\mathrm{KL}(\mathcal N(\mu_1, v_1)\|\mathcal N(\mu_2, v_2)) = \tfrac12\big(\log\tfrac{v_2}{v_1}
#    + \tfrac{v_1 + (\mu_1-\mu_2)^2}{v_2} - 1\big)$ with $v_i = s_i^2 + \sigma^2$.
#
# ### Graded exercises
#
# The next two exercises are graded automatically (`drdd-edu assignments grade`). In your copy of
# the notebook each function body is `raise NotImplementedError()`: replace it with your code and
# keep the function's name and signature. The test cell below each exercise shows some of the checks;
# the grader adds a few hidden ones (other schedules, float32, boundary steps) and restores the test
# cells, so editing them does not change your score.
#
# **Exercise A (2 points) — the RDDM marginal by hand.** Write `my_q_sample(x0, x_in, t, schedule, noise)`
# returning $I_t = I_0 + \bar\alpha_t I_\text{res} + \bar\beta_t\,\epsilon$ for an integer `t`, using only
# `schedule.alphas_cumsum` ($\bar\alpha_t$) and `schedule.betas2_cumsum` ($\bar\beta_t^2$) — not `q_sample`
# (a hidden test checks that your function does not call it).
# *Hint:* §2; mind that the schedule stores $\bar\beta_t^2$, not $\bar\beta_t$.

# %% nbgrader={"grade": false, "grade_id": "ex01-q-sample", "locked": false, "solution": true, "schema_version": 3}
def my_q_sample(x0, x_in, t, schedule, noise):
    """I_t = I_0 + ᾱ_t·(I_in − I_0) + β̄_t·ε for an int t; tensors of shape (B, C, H, W)."""
    ### BEGIN SOLUTION
    alpha_bar = float(schedule.alphas_cumsum[t])
    beta_bar = math.sqrt(float(schedule.betas2_cumsum[t]))
    return x0 + alpha_bar * (x_in - x0) + beta_bar * noise
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex01-q-sample-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
gen_ex = seed_everything(21)
x0_ex = torch.rand(4, 3, 8, 8, generator=gen_ex, dtype=torch.float64) * 2 - 1
x_in_ex = torch.rand(4, 3, 8, 8, generator=gen_ex, dtype=torch.float64) * 2 - 1
eps_ex = torch.randn(4, 3, 8, 8, generator=gen_ex, dtype=torch.float64)
sched_ex = rddm_schedule(1000, sum_scale=1.0)
for t_ex in (0, 499, 999):
    mine = my_q_sample(x0_ex, x_in_ex, t_ex, sched_ex, eps_ex)
    assert mine.shape == x0_ex.shape, f"shape {tuple(mine.shape)}, expected {tuple(x0_ex.shape)}"
    assert torch.allclose(mine, q_sample(x0_ex, x_in_ex, t_ex, sched_ex, noise=eps_ex), rtol=0, atol=1e-12), t_ex
# ᾱ_{T-1} = 1 and β̄²_{T-1} = sum_scale = 1: the last step is the degraded input plus unit noise
assert torch.allclose(my_q_sample(x0_ex, x_in_ex, 999, sched_ex, eps_ex), x_in_ex + eps_ex, rtol=0, atol=1e-12)
print("Exercise A: visible checks passed")
### BEGIN HIDDEN TESTS
for sched_h in (rddm_schedule(1000, sum_scale=0.01), ddim_converted_schedule(1000),
                rddm_schedule(50, sum_scale=1.0, alpha_power=2.0, beta_power=0.5)):
    for t_h in (0, sched_h.T // 3, sched_h.T - 1):
        ref_h = q_sample(x0_ex, x_in_ex, t_h, sched_h, noise=eps_ex)
        assert torch.allclose(my_q_sample(x0_ex, x_in_ex, t_h, sched_h, eps_ex), ref_h, rtol=0, atol=1e-12), (sched_h.name, t_h)
# float32 images, as in the rest of the course
mine32 = my_q_sample(x0_ex.float(), x_in_ex.float(), 250, sched_ex, eps_ex.float())
assert torch.allclose(mine32.double(), q_sample(x0_ex, x_in_ex, 250, sched_ex, noise=eps_ex), rtol=0, atol=1e-5)
# no noise: the mean path moves from I_0 (t = 0 is almost I_0) to I_in
assert torch.allclose(my_q_sample(x0_ex, x_in_ex, 999, sched_ex, torch.zeros_like(eps_ex)), x_in_ex, atol=1e-12)
assert type(my_q_sample(x0_ex, x_in_ex, 5, sched_ex, eps_ex)) is torch.Tensor, "return a plain torch.Tensor"
# written by hand: my_q_sample is not q_sample and does not call it (q_sample raises meanwhile)
assert my_q_sample is not q_sample, "write my_q_sample yourself instead of reusing q_sample"
code_h = q_sample.__code__
def forbidden_h(*args, **kwargs):
    raise AssertionError("my_q_sample calls q_sample: write the formula yourself")
q_sample.__code__ = forbidden_h.__code__
try:
    by_hand_h = my_q_sample(x0_ex, x_in_ex, 499, sched_ex, eps_ex)
finally:
    q_sample.__code__ = code_h
assert torch.allclose(by_hand_h, q_sample(x0_ex, x_in_ex, 499, sched_ex, noise=eps_ex), rtol=0, atol=1e-12)
### END HIDDEN TESTS

# %% [markdown]
# **Exercise B (2 points) — the DDIM coefficient conversion.** Write `ddim_coefficients(T, beta_start, beta_end)`
# returning the pair $(\bar\alpha_t, \bar\beta_t^2)_{t=0}^{T-1}$ of §3 as float64 tensors of shape `(T,)`, starting
# from the DDPM betas `linspace(beta_start, beta_end, T)` — without `ddim_converted_schedule` (a hidden
# test checks that your function does not call it).
# *Hint:* $\gamma_t = \prod_{i\le t}(1-b_i)$ is `torch.cumprod`; $\bar\alpha_t = 1-\sqrt{\gamma_t}$, $\bar\beta_t^2 = 1-\gamma_t$.

# %% nbgrader={"grade": false, "grade_id": "ex01-ddim-coefficients", "locked": false, "solution": true, "schema_version": 3}
def ddim_coefficients(T, beta_start=1e-4, beta_end=0.02):
    """(ᾱ_t, β̄_t²) of the DDIM-converted schedule: float64 tensors of shape (T,)."""
    ### BEGIN SOLUTION
    ddpm_betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    gammas_ex = torch.cumprod(1.0 - ddpm_betas, 0)  # γ_t
    return 1.0 - gammas_ex.sqrt(), 1.0 - gammas_ex
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex01-ddim-coefficients-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
alpha_bar_ex, beta2_bar_ex = ddim_coefficients(1000)
assert alpha_bar_ex.shape == beta2_bar_ex.shape == (1000,)
ref_ex = ddim_converted_schedule(1000)
assert torch.allclose(alpha_bar_ex.double(), ref_ex.alphas_cumsum, rtol=0, atol=1e-12)
assert torch.allclose(beta2_bar_ex.double(), ref_ex.betas2_cumsum, rtol=0, atol=1e-12)
# variance preserving: (1 − ᾱ_t)² + β̄_t² = 1
assert torch.allclose((1 - alpha_bar_ex) ** 2 + beta2_bar_ex, torch.ones(1000, dtype=torch.float64), atol=1e-12)
print(f"Exercise B: visible checks passed (ᾱ_999 = {float(alpha_bar_ex[-1]):.5f})")
### BEGIN HIDDEN TESTS
for T_h, lo_h, hi_h in ((200, 1e-3, 0.05), (10, 0.1, 0.2), (1000, 1e-4, 0.02)):
    a_h, b2_h = ddim_coefficients(T_h, lo_h, hi_h)
    ref_h = ddim_converted_schedule(T_h, lo_h, hi_h)
    assert a_h.dtype == b2_h.dtype == torch.float64, "float64, please"
    assert torch.allclose(a_h, ref_h.alphas_cumsum, rtol=0, atol=1e-12), T_h
    assert torch.allclose(b2_h, ref_h.betas2_cumsum, rtol=0, atol=1e-12), T_h
    assert abs(float(a_h[0]) - (1 - math.sqrt(1 - lo_h))) < 1e-14  # γ_0 = 1 − b_0
    assert (torch.diff(a_h) > 0).all() and (torch.diff(b2_h) > 0).all()
assert type(a_h) is torch.Tensor and type(b2_h) is torch.Tensor, "return plain torch.Tensors"
# written by hand: ddim_coefficients does not call ddim_converted_schedule (it raises meanwhile)
code_h = ddim_converted_schedule.__code__
def forbidden_h(*args, **kwargs):
    raise AssertionError("ddim_coefficients calls ddim_converted_schedule: convert the betas yourself")
ddim_converted_schedule.__code__ = forbidden_h.__code__
try:
    a_h, b2_h = ddim_coefficients(50, 1e-3, 0.05)
finally:
    ddim_converted_schedule.__code__ = code_h
assert torch.allclose(a_h, ddim_converted_schedule(50, 1e-3, 0.05).alphas_cumsum, rtol=0, atol=1e-12)
### END HIDDEN TESTS
