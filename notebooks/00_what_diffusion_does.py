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
#     level: "0 — on-ramp (needs: Gaussian noise, a little Python)"
#     budget_s: 120
#     budget_full_s: 180
# ---

# %% [markdown]
# # What a diffusion model does
#
# **Level:** 0 — the on-ramp of the course. Start here.
#
# **Prerequisites:** Gaussian distributions (mean, variance; sums of independent Gaussians are
# Gaussian); reading a little Python/PyTorch. No papers needed.
#
# **Study time:** about 60–90 minutes, with the exercises 2–3 hours.
#
# **Learning goals.** After this notebook you can
#
# 1. describe a diffusion model in one picture: data are destroyed by adding noise step by step,
#    and a network learns to undo one small step at a time;
# 2. write DDPM's forward process and its closed form $x_t = \sqrt{\gamma_t}\,x_0 + \sqrt{1-\gamma_t}\,\epsilon$;
# 3. explain **why** "predict the noise" is a valid training objective: the best noise predictor is
#    $\mathbb E[\epsilon\mid x_t] = -\sqrt{1-\gamma_t}\,\nabla\log p_t(x_t)$, the *score* of the noisy data
#    (denoising score matching; the ELBO gives the same loss), checked where everything is known;
# 4. train a small network on 2-D points, sample with DDPM and DDIM, and measure that the samples are
#    new points on the data;
# 5. take the step to **restoration**: condition on the degraded input and diffuse the *residual*
#    $I_\text{res} = I_\text{in} - I_0$ as RDDM does — the subject of the rest of the course.
#
# **Runtime budget:** CPU only. Smoke size (what the tests run, `DRDD_EDU_SMOKE=1`: fewer training
# steps and samples): about 15 s on a free core. Full size (`DRDD_EDU_SMOKE=0`: 12,000 training
# steps): about 1.5 min on a free core. The test harness allows 120 s.
#
# **How to read it.** Every claim is followed by an `assert`: exact identities to floating-point
# precision, Monte-Carlo claims to **5 standard errors**; every random number is seeded. At **Predict,
# then run**, write down your guess *before* running the cell: that is where you learn the most.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import make_moons
from torch import nn
from tqdm.auto import tqdm

from drdd_edu import toydata
from drdd_edu.diffusion import q_sample
from drdd_edu.metrics import mmd2
from drdd_edu.notebook import is_smoke, pick, report_runtime, savefig, seed_everything
from drdd_edu.samplers import sample
from drdd_edu.schedules import ddim_converted_schedule, rddm_schedule

START = time.perf_counter()
print("smoke size" if is_smoke() else "full size")
torch.set_default_dtype(torch.float32)
F64 = {"dtype": torch.float64}

N_SE = 5.0  # Monte-Carlo tolerance in standard errors
N_TRAIN, N_SAMPLES, BATCH = pick(2000, 1000), pick(2000, 1000), pick(512, 256)  # training / generated points
N_MC = pick(200_000, 40_000)  # Monte-Carlo samples for the checks
TRAIN_STEPS, REST_STEPS = pick(12_000, 1_500), pick(4_000, 800)  # optimiser steps: ε_θ, the restorer
print(f"{N_TRAIN} training points, {TRAIN_STEPS} training steps, {N_SAMPLES} samples")

# %% [markdown]
# ## 1. The picture
#
# Our data set is a cloud of 2-D points shaped like two moons (scikit-learn's `make_moons`, rescaled
# to about $[-1, 1]^2$): think of each point as a two-pixel image. A diffusion model learns to produce
# *new* points from the same distribution. The **forward process** destroys the data; DDPM (Ho et
# al., 2020) does it in $T = 1000$ small steps:
#
# $$x_t = \sqrt{1-b_t}\,x_{t-1} + \sqrt{b_t}\,\epsilon_{t-1},\qquad \epsilon_{t-1}\sim\mathcal N(0, I),$$
#
# with a small variance $b_t$ per step, growing from $10^{-4}$ to $0.02$. (DDPM writes $\beta_t$; we
# write $b_t$ because the RDDM paper uses $\beta$ for something else.) Each step shrinks the point a
# little towards 0 and adds a little noise. Indices run $t = 0, \dots, T-1$ as in the reference code.
#
# **Predict, then run.** After all 1000 steps, what does the cloud look like? Write down your guess of
# its mean and its covariance matrix, then run the next cell.

# %%
T = 1000
betas = torch.linspace(1e-4, 0.02, T, **F64)  # b_t
gammas = torch.cumprod(1.0 - betas, 0)  # γ_t = Π_{i≤t} (1 − b_i), used from section 2 on
data = toydata.toy_points(N_TRAIN, "moons", seed=0).flatten(1)  # (N, 2), float32
print(f"data: {tuple(data.shape)}, mean {data.mean(0).tolist()}, std {data.std(0).tolist()}")

SHOW_T = (0, 50, 150, 300, 600, 999)
gen = seed_everything(1)
x, snapshots = data.double(), {}
for t in range(T):  # the forward chain, literally
    x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x.shape, generator=gen, **F64)
    if t in SHOW_T:
        snapshots[t] = x.clone()
end, cov_end = snapshots[T - 1], torch.cov(snapshots[T - 1].T)
print(f"after {T} steps: mean {end.mean(0).tolist()}, covariance {cov_end.tolist()}")
# N(0, I): the mean is 0 within 5 standard errors, the covariance is I (SE of a variance ≈ √(2/n))
assert (end.mean(0).abs() < N_SE / math.sqrt(N_TRAIN)).all()
assert ((cov_end - torch.eye(2, **F64)).abs() < N_SE * math.sqrt(2 / N_TRAIN)).all()
fig, axes = plt.subplots(1, len(SHOW_T), figsize=(2.6 * len(SHOW_T), 2.8), sharex=True, sharey=True)
for ax, t in zip(axes, SHOW_T, strict=True):
    ax.scatter(snapshots[t][:, 0], snapshots[t][:, 1], s=2, alpha=0.5)
    ax.set_title(f"t = {t}", fontsize=9)
    ax.set(xlim=(-3.2, 3.2), ylim=(-3.2, 3.2), aspect="equal")
fig.suptitle("The forward process: the two moons dissolve into Gaussian noise")
fig.tight_layout()
savefig(fig, "00_forward_noising")
plt.show()
plt.close(fig)

# %% [markdown]
# Whatever the data, after enough steps the cloud is standard Gaussian noise $\mathcal N(0, I)$. That is the
# whole trick: a **generative model runs this film backwards**, from fresh noise (easy to draw),
# removing a little noise at each step until a point on the moons appears. Sections 3–5 show what a
# network must learn for that, and why it suffices.
#
# ## 2. The closed form of the forward process
#
# We do not need to run 1000 steps to get $x_t$. Unroll two steps of the chain:
#
# $$x_t = \sqrt{1-b_t}\,x_{t-1} + \sqrt{b_t}\,\epsilon_{t-1}
#       = \sqrt{(1-b_t)(1-b_{t-1})}\,x_{t-2} + \underbrace{\sqrt{(1-b_t)\,b_{t-1}}\,\epsilon_{t-2} + \sqrt{b_t}\,\epsilon_{t-1}}_{\text{Gaussian, variance } (1-b_t)b_{t-1} + b_t\ =\ 1-(1-b_t)(1-b_{t-1})}$$
#
# (independent Gaussians add up to a Gaussian with the summed variance): the squared factor of $x_{t-2}$
# and the noise variance add up to 1. By induction, with $x_0$ the clean point (our index starts at 0,
# so the first step, $t = 0$, already adds noise of variance $b_0$),
#
# $$\boxed{x_t = \sqrt{\gamma_t}\,x_0 + \sqrt{1-\gamma_t}\,\epsilon},\qquad \gamma_t = \prod_{i\le t}(1-b_i),\quad \epsilon\sim\mathcal N(0, I).$$
#
# DDPM calls $\gamma_t$ "$\bar\alpha_t$"; **we call it $\gamma_t$**, because RDDM's $\bar\alpha_t$ (section 6) is
# different. With it a noisy training input costs one line. **Check:** run the chain from many copies
# of one point and compare the Monte-Carlo mean and standard deviation with $\sqrt{\gamma_t}\,x_0$ and
# $\sqrt{1-\gamma_t}$ (standard errors $s/\sqrt n$ and $s/\sqrt{2n}$).

# %%
x0_point = torch.tensor([0.5, -0.2], **F64)
gen = seed_everything(2)
x = x0_point.expand(N_MC, 2).clone()
for t in range(T):
    x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x.shape, generator=gen, **F64)
    if t in (0, 10, 100, 500, 999):
        mean_cf, std_cf = gammas[t].sqrt() * x0_point, (1 - gammas[t]).sqrt()
        z_mean = (x.mean(0) - mean_cf).abs() / (std_cf / math.sqrt(N_MC))
        z_std = (x.std(0) - std_cf).abs() / (std_cf / math.sqrt(2 * N_MC))
        print(f"t={t:3d}: mean {x.mean(0).numpy().round(4)} vs {mean_cf.numpy().round(4)}, std "
              f"{x.std(0).numpy().round(4)} vs {float(std_cf):.4f}; worst |z| {float(max(z_mean.max(), z_std.max())):.2f}")
        assert (z_mean < N_SE).all() and (z_std < N_SE).all(), t
print(f"γ_999 = {float(gammas[-1]):.1e}: √γ_999 = {float(gammas[-1].sqrt()):.4f} of x_0 is left")

# %% [markdown]
# ## 3. Why "predict the noise" is a valid objective
#
# To run the film backwards we need, at every step, the distribution of $x_{t-1}$ given $x_t$. For
# small steps it is (to first order in $b_t$) Gaussian with variance $b_t$ and mean
#
# $$\mu(x_t) = \frac{x_t + b_t\,\nabla_x \log p_t(x_t)}{\sqrt{1-b_t}},$$
#
# where $\nabla_x\log p_t$ is the **score** of the noisy data's density $p_t$, the direction in which they
# become more likely (Anderson 1982). We need it at every noise level — and we do not know $p_t$.
#
# **The score is a conditional expectation of the noise.** With $\sigma_t = \sqrt{1-\gamma_t}$,
# $p_t(x) = \int p_0(x_0)\,\mathcal N(x;\sqrt{\gamma_t}x_0, \sigma_t^2 I)\,dx_0$. Differentiate under the
# integral: $\nabla_x \mathcal N(x;\sqrt{\gamma_t}x_0,\sigma_t^2 I) = -\frac{x-\sqrt{\gamma_t}x_0}{\sigma_t^2}\,\mathcal N(\ldots)$,
# and $x - \sqrt{\gamma_t}x_0 = \sigma_t\epsilon$, so
#
# $$\nabla_x\log p_t(x) = \frac{\nabla_x p_t(x)}{p_t(x)} = -\frac{\mathbb E[\,\epsilon \mid x_t = x\,]}{\sigma_t}.$$
#
# **Regression learns conditional expectations:** $\mathbb E\|\epsilon - f(x_t)\|^2 = \mathbb E\|\epsilon - \mathbb E[\epsilon\mid x_t]\|^2 + \mathbb E\|\mathbb E[\epsilon\mid x_t] - f(x_t)\|^2$
# for any $f$ (no cross term: $\epsilon - \mathbb E[\epsilon\mid x_t]$ is uncorrelated with every function of $x_t$).
# So the minimiser of the **noise-prediction loss**
#
# $$L(\theta) = \mathbb E_{t,\,x_0,\,\epsilon}\,\big\|\epsilon - \epsilon_\theta(\sqrt{\gamma_t}x_0 + \sqrt{1-\gamma_t}\,\epsilon,\ t)\big\|^2$$
#
# is $\epsilon^*(x, t) = \mathbb E[\epsilon\mid x_t = x] = -\sigma_t\nabla\log p_t(x)$: a network trained to guess the
# noise learns the score, from samples alone — **denoising score matching** (Vincent, 2011). The loss
# does **not** go to zero (from $x_t$ one cannot tell exactly which noise was added). Predicting the
# clean point instead is equivalent: $\hat x_0 = (x_t - \sigma_t\hat\epsilon)/\sqrt{\gamma_t}$ (Tweedie's formula).
#
# **Check it where everything is known.** For a *mixture of Gaussians* every $p_t$ is a mixture too
# (component $k$: mean $\sqrt{\gamma_t}m_k$, variance $\gamma_t s^2 + \sigma_t^2$), so $\epsilon^*$ is exact. We check
# (a) the score formula against automatic differentiation of $\log p_t$, and (b) by Monte Carlo that
# $\epsilon - \epsilon^*(x_t)$ is uncorrelated with functions of $x_t$, while the same test clearly rejects $\epsilon^*$
# computed with the wrong width $s = 0.3$ (at small and medium $t$; at large $t$ all predictors nearly
# agree), and that wrong predictors (that one, and $\hat\epsilon = 0$) lose exactly $\mathbb E\|\epsilon^* - f\|^2$.

# %%
mix_means = torch.tensor([[-0.6, -0.5], [0.6, -0.5], [0.0, 0.6]], **F64)  # m_k
mix_weights = torch.tensor([0.5, 0.3, 0.2], **F64)  # π_k
MIX_S = 0.08  # every component is N(m_k, s² I)

def mixture_log_density(x: torch.Tensor, t: int, s: float = MIX_S) -> torch.Tensor:
    """log p_t(x) of the noised mixture, x of shape (n, 2)."""
    g = gammas[t]
    var = g * s**2 + (1 - g)  # γ_t s² + σ_t²
    d2 = (x[:, None, :] - g.sqrt() * mix_means[None]).pow(2).sum(-1)  # (n, K)
    return torch.logsumexp(mix_weights.log() - d2 / (2 * var) - torch.log(2 * math.pi * var), dim=1)

def mixture_eps_star(x: torch.Tensor, t: int, s: float = MIX_S) -> torch.Tensor:
    """ε*(x, t) = E[ε | x_t = x] = −σ_t ∇log p_t(x), in closed form; shape (n, 2)."""
    g = gammas[t]
    var = g * s**2 + (1 - g)
    diff = x[:, None, :] - g.sqrt() * mix_means[None]  # (n, K, 2)
    resp = torch.softmax(mix_weights.log() - diff.pow(2).sum(-1) / (2 * var), dim=1)  # posterior of k
    return (1 - g).sqrt() * (resp[:, :, None] * diff).sum(1) / var

def sample_mixture(n: int, generator: torch.Generator) -> torch.Tensor:
    k = torch.multinomial(mix_weights, n, replacement=True, generator=generator)
    return mix_means[k] + MIX_S * torch.randn(n, 2, generator=generator, **F64)

def worst_correlation_z(err: torch.Tensor, x: torch.Tensor) -> float:
    """Largest |z| of the sample means of err_j·g(x) over coordinates j and six features g of x_t."""
    feats = torch.stack([torch.ones_like(x[:, 0]), x[:, 0], x[:, 1], x[:, 0] * x[:, 1],
                         torch.tanh(4 * x[:, 0]), torch.tanh(4 * x[:, 1])], 1)
    prod = err[:, :, None] * feats[:, None, :]  # (n, 2, 6)
    return float((prod.mean(0).abs() / (prod.std(0) / math.sqrt(prod.shape[0]))).max())

# (a) the closed-form score equals the gradient of log p_t (automatic differentiation)
gen = seed_everything(3)
for t in (5, 100, 400, 999):
    xa = (2 * torch.randn(256, 2, generator=gen, **F64)).requires_grad_()
    (grad,) = torch.autograd.grad(mixture_log_density(xa, t).sum(), xa)
    sigma_t = float((1 - gammas[t]).sqrt())
    assert torch.allclose(-sigma_t * grad, mixture_eps_star(xa.detach(), t), rtol=0, atol=1e-10), t
print("(a) ε* = −σ_t ∇log p_t: closed form = autograd to 1e-10 at t = 5, 100, 400, 999")

# (b) ε − ε* is uncorrelated with functions of x_t, and every other predictor loses exactly E‖ε* − f‖²
gen = seed_everything(4)
for t in (20, 200, 600):
    x0_m = sample_mixture(N_MC, gen)
    eps = torch.randn(N_MC, 2, generator=gen, **F64)
    xt = gammas[t].sqrt() * x0_m + (1 - gammas[t]).sqrt() * eps
    best = mixture_eps_star(xt, t)
    wrong = {"ε* with s = 0.3": mixture_eps_star(xt, t, s=0.3), "ε̂ = 0": torch.zeros_like(xt)}
    mse = {"ε* (exact)": float((eps - best).pow(2).sum(1).mean())}
    mse |= {name: float((eps - f).pow(2).sum(1).mean()) for name, f in wrong.items()}
    z_best = worst_correlation_z(eps - best, xt)
    z_wrong = worst_correlation_z(eps - wrong["ε* with s = 0.3"], xt)
    print(f"t={t:3d}: worst |z| of corr(ε − ε*, g(x_t)) = {z_best:.2f};  with s = 0.3: {z_wrong:.1f};  "
          + ", ".join(f"MSE[{k}] = {v:.4f}" for k, v in mse.items()))
    assert z_best < N_SE, "ε − ε* must be uncorrelated with every function of x_t"
    if t <= 200:  # at large t all predictors nearly agree (x_t is almost pure noise)
        assert z_wrong > 3 * N_SE, "the test must be able to reject a wrong predictor"
    for name, f in wrong.items():
        gap = (eps - f).pow(2).sum(1) - (eps - best).pow(2).sum(1)  # per-sample loss difference
        assert float(gap.mean()) > -N_SE * float(gap.std()) / math.sqrt(N_MC), name  # none does better
        diff = gap - (best - f).pow(2).sum(1)  # ... and the excess is E‖ε* − f‖² (no cross term)
        assert abs(float(diff.mean())) < N_SE * float(diff.std()) / math.sqrt(N_MC), name
    assert mse["ε* (exact)"] > 0.01, "the best loss is not zero"

# %% [markdown]
# ### The ELBO says the same
#
# DDPM's paper derives the loss from a lower bound on the log-likelihood (the ELBO). Its step-$t$ term
# compares the forward chain's posterior $q(x_{t-1}\mid x_t, x_0) = \mathcal N(\tilde\mu_t(x_t, x_0), \tilde\sigma_t^2 I)$,
# $\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\gamma_{t-1}}\,b_t}{1-\gamma_t}\,x_0 + \frac{\sqrt{1-b_t}\,(1-\gamma_{t-1})}{1-\gamma_t}\,x_t$,
# $\tilde\sigma_t^2 = \frac{1-\gamma_{t-1}}{1-\gamma_t}\,b_t$, with the model's step of the same variance and mean
# $\tilde\mu_t(x_t, \hat x_0)$. Two exact identities follow:
#
# $$\tilde\mu_t(x_t, \hat x_0) = \frac{x_t - \frac{b_t}{\sigma_t}\hat\epsilon}{\sqrt{1-b_t}},\qquad
#   \mathrm{KL} = \frac{\|\tilde\mu_t(x_t, x_0) - \tilde\mu_t(x_t,\hat x_0)\|^2}{2\tilde\sigma_t^2}
#   = \underbrace{\frac{b_t^2}{2\tilde\sigma_t^2 (1-b_t)\,\sigma_t^2}}_{w_t}\,\|\epsilon - \hat\epsilon\|^2 .$$
#
# The ELBO is a *weighted* noise-prediction loss (Ho et al. dropped the weights, "$L_\text{simple}$"); for any
# positive weights the minimiser is $\mathbb E[\epsilon\mid x_t]$: the same network. The first identity is the
# DDPM step of section 5 ($\mu(x_t)$ with $\nabla\log p_t = -\hat\epsilon/\sigma_t$). We check both.

# %%
def posterior_mean(x_t: torch.Tensor, x0: torch.Tensor, t: int) -> torch.Tensor:
    """μ̃_t(x_t, x_0) of q(x_{t−1} | x_t, x_0), for 1 ≤ t ≤ T−1."""
    g_t, g_prev, b_t = gammas[t], gammas[t - 1], betas[t]
    return (g_prev.sqrt() * b_t / (1 - g_t)) * x0 + ((1 - b_t).sqrt() * (1 - g_prev) / (1 - g_t)) * x_t

gen = seed_everything(6)
for t in (1, 10, 500, 999):
    x0_e, eps = torch.randn(64, 2, generator=gen, **F64), torch.randn(64, 2, generator=gen, **F64)
    eps_hat = eps + 0.3 * torch.randn(64, 2, generator=gen, **F64)  # an imperfect guess
    g_t, b_t = gammas[t], betas[t]
    x_t = g_t.sqrt() * x0_e + (1 - g_t).sqrt() * eps
    model_mean = (x_t - b_t / (1 - g_t).sqrt() * eps_hat) / (1 - b_t).sqrt()  # the DDPM step
    x0_hat = (x_t - (1 - g_t).sqrt() * eps_hat) / g_t.sqrt()
    assert torch.allclose(posterior_mean(x_t, x0_hat, t), model_mean, rtol=0, atol=1e-9), t
    post_var = (1 - gammas[t - 1]) / (1 - g_t) * b_t
    kl = (posterior_mean(x_t, x0_e, t) - model_mean).pow(2).sum(1) / (2 * post_var)
    w_t = b_t**2 / (2 * post_var * (1 - b_t) * (1 - g_t))
    assert torch.allclose(kl, w_t * (eps - eps_hat).pow(2).sum(1), rtol=1e-8, atol=0), t
    print(f"t={t:3d}: ELBO weight w_t = {float(w_t):.3e}")

# %% [markdown]
# ## 4. Train a small network to predict the noise
#
# Pick a training point $x_0$, a step $t$ uniform in $0 \dots T-1$ and noise $\epsilon$; form $x_t$ by the closed
# form; ask a network $\epsilon_\theta(x_t, t)$ for the noise; minimise the squared error. Ours is an MLP
# with three hidden layers of 128 units; $t$ enters as sines and cosines of $t/T$ (a "time embedding").
#
# **Predict, then run.** (i) What loss (mean squared error per coordinate) does $\hat\epsilon = 0$ give?
# (ii) Can a perfect network reach 0? (iii) For which $t$ is the noise easiest to guess?
#
# For (ii): the best loss on this *finite* training set is reached by $\epsilon^*$ for $p_0$ = point masses on
# the $N$ points — the mixture formula with $s = 0$, a softmax-weighted average over the training points
# (in the library: `DatasetIdealPredictor`, whose home is notebook 02).

# %%
def ideal_eps(x: torch.Tensor, t: torch.Tensor, points: torch.Tensor = data) -> torch.Tensor:
    """ε* for x_0 uniform on ``points`` (N, 2); x (n, 2), t (n,) long. Float64."""
    g = gammas[t][:, None]
    d2 = (x.double()[:, None, :] - g.sqrt()[:, :, None] * points.double()[None]).pow(2).sum(-1)  # (n, N)
    w = torch.softmax(-d2 / (2 * (1 - g)), dim=1)  # posterior probability of each training point
    return (x.double() - g.sqrt() * (w @ points.double())) / (1 - g).sqrt()

class EpsMLP(nn.Module):
    """ε_θ(x_t, t): (n, d_in) points and (n,) steps → (n, d_out); t enters as sin/cos of t/T."""

    def __init__(self, d_in: int = 2, d_out: int = 2, hidden: int = 128, n_freq: int = 8) -> None:
        super().__init__()
        self.register_buffer("freqs", math.pi / 2 * 2.0 ** torch.arange(n_freq))  # octaves
        widths = [d_in + 2 * n_freq, hidden, hidden, hidden]
        layers = [m for a, b in zip(widths[:-1], widths[1:], strict=True) for m in (nn.Linear(a, b), nn.SiLU())]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angle = (t.float() / T)[:, None] * self.freqs
        return self.net(torch.cat([x, angle.sin(), angle.cos()], 1))

def noise_prediction_loss(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The mean over the batch and both coordinates of (ε − ε_θ(√γ_t x_0 + √(1−γ_t) ε, t))²."""
    g = gammas.float()[t][:, None]
    return (model(g.sqrt() * x0 + (1 - g).sqrt() * eps, t) - eps).pow(2).mean()

def train(model: nn.Module, loss_fn, steps: int, seed: int, desc: str, points: torch.Tensor = data) -> list[float]:
    """Adam (lr 1e-2, cosine decay) on batches (x_0, t, ε), x_0 drawn from ``points``; returns the losses."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen, out = seed_everything(seed), []
    for _ in tqdm(range(steps), desc=desc, mininterval=2):
        idx = torch.randint(0, len(points), (BATCH,), generator=gen)
        t = torch.randint(0, T, (BATCH,), generator=gen)
        loss = loss_fn(model, points[idx], t, torch.randn(BATCH, 2, generator=gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
        out.append(loss.item())
    return out

seed_everything(8)
eps_net = EpsMLP()
losses = train(eps_net, noise_prediction_loss, TRAIN_STEPS, seed=9, desc="training ε_θ")
eps_net.eval()
print(f"trained {TRAIN_STEPS} steps; last 200 steps: loss {np.mean(losses[-200:]):.4f}")

# %%
# evaluate on fresh noise, the same draws for the network, the ideal predictor and ε̂ = 0
N_EVAL = pick(20_000, 5_000)
gen = seed_everything(10)
idx_eval = torch.randint(0, N_TRAIN, (N_EVAL,), generator=gen)
t_eval = torch.randint(0, T, (N_EVAL,), generator=gen)
eps_eval = torch.randn(N_EVAL, 2, generator=gen, **F64)
g_eval = gammas[t_eval][:, None]
x_eval = g_eval.sqrt() * data[idx_eval].double() + (1 - g_eval).sqrt() * eps_eval
with torch.no_grad():
    err_net = (eps_net(x_eval.float(), t_eval).double() - eps_eval).pow(2).mean(1)  # per sample
err_ideal = torch.cat([(ideal_eps(x_eval[i : i + 2000], t_eval[i : i + 2000]) - eps_eval[i : i + 2000])
                       .pow(2).mean(1) for i in range(0, N_EVAL, 2000)])
loss_net, loss_ideal, loss_zero = float(err_net.mean()), float(err_ideal.mean()), float(eps_eval.pow(2).mean())
gap = err_net - err_ideal
print(f"loss: ε̂ = 0 {loss_zero:.4f}, trained network {loss_net:.4f}, ideal (best possible) {loss_ideal:.4f}")
assert abs(loss_zero - 1) < N_SE * math.sqrt(2 / (2 * N_EVAL))  # E ε² = 1 per coordinate
assert float(gap.mean()) > -N_SE * float(gap.std()) / math.sqrt(N_EVAL), "nothing beats the ideal predictor"
assert loss_ideal > 0.05, "even the best predictor has a loss well above 0"
assert loss_net < pick(1.1, 1.25) * loss_ideal, "the network comes close to the best possible loss"

which = torch.bucketize(t_eval, torch.linspace(0, T, 21)[1:-1].long())  # 20 bins of t
per_t = {name: [float(err[which == k].mean()) for k in range(20)]
         for name, err in (("network", err_net), ("ideal", err_ideal))}
assert per_t["ideal"][0] > 5 * per_t["ideal"][-1], "the noise is hardest to guess when there is little of it"

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
window = max(1, TRAIN_STEPS // 100)
axes[0].plot(np.convolve(losses, np.ones(window) / window, mode="valid"), label=f"running mean ({window})")
axes[0].set(xlabel="optimiser step", title="training loss", ylim=(0, 1.1))
axes[1].plot(np.arange(20) * T / 20 + T / 40, per_t["network"], "o-", ms=3, label="trained network")
axes[1].plot(np.arange(20) * T / 20 + T / 40, per_t["ideal"], "s--", ms=3, label="ideal predictor")
axes[1].set(xlabel="t", title="loss by noise level (fresh noise)")
for ax in axes:
    ax.axhline(loss_ideal, color="tab:green", ls="--", label=f"best possible ({loss_ideal:.3f})")
    ax.set(ylabel="loss per coordinate")
    ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, "00_loss_curve")
plt.show()
plt.close(fig)

# %% [markdown]
# The loss flattens well above zero, near the best possible value; the *small* $t$ are hard (the noise
# is tiny compared with the data's spread, so $x_t$ hardly reveals it), while at large $t$, $x_t$ is almost
# all noise and $\epsilon \approx x_t$ is nearly perfect.
#
# ## 5. Sampling: run the film backwards
#
# **DDPM's ancestral sampler** (Ho et al. 2020, Algorithm 2) starts from $x_{T-1}\sim\mathcal N(0, I)$ and takes
# the step of section 3 a thousand times, without the noise $z$ at the last step:
#
# $$x_{t-1} = \frac{1}{\sqrt{1-b_t}}\Big(x_t - \frac{b_t}{\sqrt{1-\gamma_t}}\,\epsilon_\theta(x_t, t)\Big) + \sqrt{b_t}\,z,\qquad z\sim\mathcal N(0, I).$$
#
# **DDIM** (Song et al. 2021) uses the same network deterministically, in far fewer steps: from
# $\hat x_0 = (x_t - \sigma_t\hat\epsilon)/\sqrt{\gamma_t}$ it jumps to $x_s = \sqrt{\gamma_s}\,\hat x_0 + \sqrt{1-\gamma_s}\,\hat\epsilon$, $s < t$.
# We run it as the library's `sample(…, mode="noise")` on the DDIM-converted schedule (notebook 02
# proves that this *is* DDIM).
#
# **Predict, then run.** The network never saw a point twice with the same noise. Will its samples be
# copies of training points, new points on the moons, or a blurry cloud?

# %%
@torch.no_grad()
def ddpm_sample(eps_model, n: int, generator: torch.Generator, keep=()) -> tuple[torch.Tensor, dict]:
    """DDPM ancestral sampling from x_{T−1} ~ N(0, I); returns x (n, 2) and the states at steps ``keep``."""
    x = torch.randn(n, 2, generator=generator)
    states = {T - 1: x.clone()} if T - 1 in keep else {}
    for t in range(T - 1, -1, -1):
        b_t, g_t = float(betas[t]), float(gammas[t])
        x = (x - b_t / math.sqrt(1 - g_t) * eps_model(x, torch.full((n,), t))) / math.sqrt(1 - b_t)
        if t > 0:
            x = x + math.sqrt(b_t) * torch.randn(n, 2, generator=generator)
        if t - 1 in keep:
            states[t - 1] = x.clone()
    return x, states

def as_library_model(eps_model):
    """The library's model(x_t, t, x_in) interface for (n, 2, 1, 1) "two-pixel images" (mode 'noise')."""
    return lambda x, t, x_in: eps_model(x.flatten(1), t).reshape(x.shape)

ddim = ddim_converted_schedule(T)  # RDDM's coefficients for DDPM (section 6; notebook 01 §3 checks it)
assert torch.allclose(ddim.betas2_cumsum, 1 - gammas, rtol=0, atol=1e-12)
DDIM_STEPS = 50
BACK_T = (T - 1, 300, 100, -1)  # −1: the final output
ddpm_out, trajectory = ddpm_sample(eps_net, N_SAMPLES, seed_everything(11), keep=BACK_T)
zeros_in = torch.zeros(N_SAMPLES, 2, 1, 1)
ddim_out = sample(as_library_model(eps_net), zeros_in, ddim, DDIM_STEPS, mode="noise",
                  generator=seed_everything(12)).flatten(1)
noise_pts = torch.randn(N_SAMPLES, 2, generator=seed_everything(13))

# %% [markdown]
# **Did it work?** Compared with pure noise (the start) and fresh data (the goal): the fraction of
# points within 0.1 of the moons' centre lines (the noise-free half circles of `make_moons`); MMD² to
# fresh data (`drdd_edu.metrics.mmd2`, RBF bandwidth 0.3: 0 in expectation for equal distributions);
# and the median distance to the nearest *training* point (fresh data are not copies).

# %%
curve_np, _ = make_moons(n_samples=20_000, noise=0.0, random_state=0)
moon_curve = torch.as_tensor((curve_np - np.array([0.5, 0.25])) / np.array([1.6, 0.8]), dtype=torch.float32)
fresh = toydata.toy_points(N_SAMPLES, "moons", seed=1).flatten(1)  # held out: never trained on
fresh2 = toydata.toy_points(N_SAMPLES, "moons", seed=2).flatten(1)

def near_fraction(pts: torch.Tensor, radius: float = 0.1) -> float:
    return float((torch.cdist(pts, moon_curve).min(1).values < radius).float().mean())

def nn_dist(pts: torch.Tensor, train_pts: torch.Tensor = data) -> float:
    """Median distance from ``pts`` to the nearest of ``train_pts``."""
    return float(torch.cdist(pts, train_pts).min(1).values.median())

H_MMD = 0.3
rows = {"pure noise": noise_pts, "fresh data": fresh2, "DDPM, 1000 steps": ddpm_out,
        f"DDIM, {DDIM_STEPS} steps": ddim_out}
frac = {name: near_fraction(p) for name, p in rows.items()}
mmd = {name: float(mmd2(p, fresh, H_MMD)) for name, p in rows.items()}
for name, p in rows.items():
    print(f"{name:26s} near the moons {frac[name]:6.1%}   MMD² to fresh data {mmd[name]:8.5f}   "
          f"median distance to a training point {nn_dist(p):.4f}")
assert near_fraction(data) > 0.95 and frac["fresh data"] > 0.95, "the centre lines describe the data"
for name in ("DDPM, 1000 steps", f"DDIM, {DDIM_STEPS} steps"):
    assert frac[name] > pick(0.85, 0.3), name  # most samples land on the moons ...
    assert frac[name] > pick(4, 2) * frac["pure noise"], name  # ... unlike the noise they started from
    assert mmd[name] < pick(0.1, 0.6) * mmd["pure noise"], name  # and their distribution is close to the data's
assert nn_dist(ddpm_out) > 0.5 * nn_dist(fresh2)  # new points, not copies of training points

# %%
panels = [(f"DDPM, t = {t}", trajectory[t], "tab:purple") for t in BACK_T[:-1]] + [
    ("DDPM, 1000 steps", ddpm_out, "tab:purple"), (f"DDIM, {DDIM_STEPS} steps", ddim_out, "tab:blue"),
    ("training data, centre lines", data, "0.5")]
fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.2), sharex=True, sharey=True)
for ax, (title, pts, color) in zip(axes, panels, strict=True):
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color=color)
    ax.set_title(title + (f"\n{frac[title]:.0%} near the moons" if title in frac else ""), fontsize=9)
    ax.set(xlim=(-2.2, 2.2), ylim=(-2.2, 2.2), aspect="equal")
axes[-1].plot(moon_curve[::20, 0], moon_curve[::20, 1], ".", ms=1, color="k")
fig.suptitle("Generation: DDPM runs the film backwards, from noise back to the moons")
fig.tight_layout()
savefig(fig, "00_samples")
plt.show()
plt.close(fig)

# %% [markdown]
# The network's samples lie on the moons and are new points. That is not a given: the *exact*
# minimiser of the training loss, the ideal predictor, can only reproduce the training set (at the
# last steps the noise is smaller than the gaps between training points and $\mathbb E[x_0\mid x_t]$ snaps to
# the nearest one; notebook 02 §4 shows it, exercise 4 below tries it). A network generalises because
# it is **not** trained to the exact optimum: it is smoother, most visibly at small $t$ (the gap in the
# loss curve).
#
# ## 6. From points to images, and from generation to restoration
#
# A 64×64 colour image is a point in $\mathbb R^{12288}$: everything above holds, with a UNet for the MLP
# (notebook 07). For **restoration** we are given a degraded image $I_\text{in}$ (rainy, hazy, dark, …) and
# want the clean $I_0$. First, **condition** the network on $I_\text{in}$ (an extra input). A conditioned DDPM
# would still start from pure noise; RDDM (Liu et al., CVPR 2024) changes the forward process
# instead and diffuses the **residual**
#
# $$I_\text{res} = I_\text{in} - I_0,\qquad I_t = I_0 + \bar\alpha_t\,I_\text{res} + \bar\beta_t\,\epsilon,$$
#
# where $\bar\alpha_t$ grows from 0 to 1 (the share of the residual added) and $\bar\beta_t$ is the noise std
# (notebook 01 derives and checks this marginal). At the end $\bar\alpha = 1$: $I_{T-1} = I_\text{in} + \bar\beta_{T-1}\epsilon$,
# the degraded input plus noise — known at test time, so sampling starts *there* and only walks back
# the residual and the noise. The network predicts the residual and/or the noise (RDDM's `pred_res`,
# `pred_noise`, `pred_res_noise`). DDPM is the special case $I_\text{in} = 0$, $\bar\alpha_t = 1-\sqrt{\gamma_t}$,
# $\bar\beta_t = \sqrt{1-\gamma_t}$ (the library's `ddim_converted_schedule`; notebook 01 §3 checks it).
#
# **A 2-D restoration toy.** The degradation squashes each point towards a corner,
# $I_\text{in} = 0.5\,I_0 + (1, -1)$, so the residual differs from point to point. We use RDDM's reference
# schedule (`rddm_schedule`) with a small final noise $\bar\beta_{T-1} = \sqrt{0.1}$ (`sum_scale = 0.1`), train
# $f_\theta(I_t, t, I_\text{in}) = (\hat I_\text{res}, \hat\epsilon)$ with RDDM's `pred_res_noise` loss
# $\|\hat I_\text{res} - I_\text{res}\|^2 + \|\hat\epsilon - \epsilon\|^2$, and restore *held-out* points with the library's
# sampler (`sample`, mode `"res_noise"`, 10 steps, $\eta = 0$) from $I_\text{in} + \bar\beta_{T-1}z$.

# %%
SHIFT = torch.tensor([1.0, -1.0])

def degrade(x0: torch.Tensor) -> torch.Tensor:
    """The toy degradation I_in = 0.5·I_0 + (1, −1), for (n, 2) points."""
    return 0.5 * x0 + SHIFT.to(x0)

rddm = rddm_schedule(T, sum_scale=0.1)
assert abs(float(rddm.alphas_cumsum[-1]) - 1) < 1e-12 and abs(float(rddm.betas2_cumsum[-1]) - 0.1) < 1e-12

class RestorationMLP(nn.Module):
    """(I_t, t, I_in) → (Î_res, ε̂) for "two-pixel images" (n, 2, 1, 1), the library's model interface."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = EpsMLP(d_in=4, d_out=4)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mlp(torch.cat([x_t.flatten(1), x_in.flatten(1)], 1), t)
        return out[:, :2].reshape(x_t.shape), out[:, 2:].reshape(x_t.shape)

alphas_bar, betas_bar = rddm.alphas_cumsum.float(), rddm.betas_cumsum.float()

def restoration_loss(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                     degrade=degrade) -> torch.Tensor:
    """RDDM's pred_res_noise loss on (n, 2) points: ‖Î_res − I_res‖² + ‖ε̂ − ε‖², batch means."""
    res = (x_in := degrade(x0)) - x0
    x_t = x0 + alphas_bar[t][:, None] * res + betas_bar[t][:, None] * eps  # RDDM's forward marginal
    res_hat, eps_hat = model(x_t[:, :, None, None], t, x_in[:, :, None, None])
    return (res_hat.flatten(1) - res).pow(2).mean() + (eps_hat.flatten(1) - eps).pow(2).mean()

seed_everything(16)
restorer = RestorationMLP()
rest_losses = train(restorer, restoration_loss, REST_STEPS, seed=17, desc="training the restorer")
restorer.eval()
print(f"restorer: last 200 steps loss {np.mean(rest_losses[-200:]):.4f}")

clean_test = fresh[:500]
degraded_test = degrade(clean_test)
rest_states = []
restored = sample(restorer, degraded_test.reshape(-1, 2, 1, 1), rddm, 10, mode="res_noise",
                  generator=seed_everything(18), callback=rest_states.append).flatten(1)
err_in = float((degraded_test - clean_test).norm(dim=1).mean())
err_out = float((restored - clean_test).norm(dim=1).mean())
print(f"mean distance to the clean point: degraded {err_in:.3f}, restored {err_out:.4f} "
      f"({near_fraction(restored):.0%} of the restored points near the moons)")
assert err_out < pick(0.05, 0.15) * err_in, "restoration brings the points back"
assert near_fraction(restored) > pick(0.9, 0.6)

# %%
fig, ax = plt.subplots(figsize=(5.6, 4.6))
for i in range(0, 500, 50):  # a few residuals I_0 → I_in
    ax.plot(*torch.stack([clean_test[i], degraded_test[i]]).T, "k-", lw=0.5, alpha=0.6)
for pts, style in ((degraded_test, {"color": "tab:red", "label": r"degraded $I_{in}$"}),
                   (rest_states[0].x_t.flatten(1), {"color": "tab:orange", "alpha": 0.3, "label": r"start $I_{in} + \bar\beta_{T-1} z$"}),
                   (restored, {"color": "tab:blue", "label": r"restored $\hat I_0$ (10 steps)"})):
    ax.scatter(pts[:, 0], pts[:, 1], s=2, **style)
ax.scatter(clean_test[:, 0], clean_test[:, 1], s=6, facecolors="none", edgecolors="0.5", lw=0.3, label=r"clean $I_0$")
ax.set(title=f"RDDM restoration: mean error {err_in:.2f} → {err_out:.3f}", xlim=(-1.6, 2.0), ylim=(-2.0, 1.4), aspect="equal")
ax.legend(fontsize=8, loc="upper right")
fig.tight_layout()
savefig(fig, "00_residual_restoration")
plt.show()
plt.close(fig)
report_runtime(START, budget_s=pick(180, 120))

# %% [markdown]
# ## What you learned
#
# * A diffusion model destroys data with Gaussian noise in many small steps and **learns to undo one
#   step at a time**; DDPM's forward process has the closed form $x_t = \sqrt{\gamma_t}\,x_0 + \sqrt{1-\gamma_t}\,\epsilon$.
# * Predicting the noise is a valid objective because the best predictor is the conditional mean
#   $\epsilon^* = \mathbb E[\epsilon\mid x_t] = -\sqrt{1-\gamma_t}\,\nabla\log p_t(x_t)$: the network learns the score of the noisy
#   data, which the reverse step needs (the ELBO gives the same loss up to weights). The loss never
#   reaches zero, and it is largest at small noise.
# * A small MLP generates new points on the moons with DDPM (1000 steps) or DDIM (50 steps); the
#   *exact* optimum for a finite training set would only copy training points.
# * For restoration the network is conditioned on the degraded input, and RDDM diffuses the residual:
#   $I_t = I_0 + \bar\alpha_t I_\text{res} + \bar\beta_t\epsilon$ ends at the noisy degraded input, where sampling
#   starts. DDPM is the special case $I_\text{in} = 0$.
#
# **Next:** notebook 01 derives RDDM's forward process, its schedules and DRDD's decoupled variant.
#
# ## Exercises
#
# 1. **Predict, then check.** At which step $t$ is half of $x_0$'s amplitude left ($\sqrt{\gamma_t} = 0.5$)?
#    Guess from the figure of section 1, then compute it from `gammas`. *Hint:* `torch.searchsorted`
#    on the decreasing `gammas.sqrt()` needs a flip, or use `(gammas.sqrt() > 0.5).sum()`.
# 2. **Predict the clean point instead.** Train the same MLP to output $\hat x_0$ (loss
#    $\|\hat x_0 - x_0\|^2$) and sample by converting $\hat\epsilon = (x_t - \sqrt{\gamma_t}\hat x_0)/\sqrt{1-\gamma_t}$. Compare
#    the samples' "near the moons" fraction with section 5. Which $t$ dominate each loss? *Hint:*
#    $\|\hat x_0 - x_0\|^2 = \frac{1-\gamma_t}{\gamma_t}\|\hat\epsilon - \epsilon\|^2$.
# 3. **Fewer steps.** Run DDIM with 2, 5, 10, 20 and 50 steps and plot the fraction near the moons
#    against the number of steps. Where does it saturate? Does DDPM with a coarser grid work too?
#    *Hint:* `sample(as_library_model(eps_net), zeros_in, ddim, steps, mode="noise")`.
# 4. **Memorisation.** Retrain the network on only 20 training points for the full number of steps.
#    Do its samples move towards copies of the training points, like the ideal predictor's? Measure
#    with `nn_dist(samples, your_20_points)`. *Hint:* compare the loss by noise level with
#    `ideal_eps(..., points=your_20_points)`.
# 5. **A lossy degradation.** Replace `degrade` by the projection $I_\text{in} = (x_1, 0) + (1, -1)$, which
#    forgets the second coordinate. What can a restorer do now? Compare the restored points for
#    $\eta = 0$ and $\eta = 1$ (`sample(..., eta=1.0)`). *Hint:* the answer is no longer a function of
#    $I_\text{in}$; a generative restorer should produce *plausible* points, not the mean.
#
# ### Graded exercises
#
# The next two exercises are graded automatically (`drdd-edu assignments grade`). In your copy of
# the notebook each function body is `raise NotImplementedError()`: replace it with your code and
# keep the function's name and signature. The test cell below each exercise shows some of the checks;
# the grader adds a few hidden ones and restores the test cells, so editing them does not change your
# score.
#
# **Exercise A (2 points) — the forward process in one line.** Write `forward_sample(x0, t, gammas, noise)`
# returning $x_t = \sqrt{\gamma_t}\,x_0 + \sqrt{1-\gamma_t}\,\epsilon$ for an integer step `t`, where `gammas` holds
# $\gamma_0, \dots, \gamma_{T-1}$ (a float64 tensor of shape `(T,)`) and `x0`, `noise` are tensors of any
# (equal) shape. *Hint:* section 2.

# %% nbgrader={"grade": false, "grade_id": "ex00-forward-sample", "locked": false, "solution": true, "schema_version": 3}
def forward_sample(x0, t, gammas, noise):
    """x_t = √γ_t·x_0 + √(1 − γ_t)·ε for an int t; x0 and noise of the same shape, any shape."""
    ### BEGIN SOLUTION
    g = float(gammas[t])
    return math.sqrt(g) * x0 + math.sqrt(1.0 - g) * noise
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex00-forward-sample-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
gen_ex = seed_everything(21)
x0_ex = torch.rand(8, 2, generator=gen_ex, dtype=torch.float64) * 2 - 1
eps_ex = torch.randn(8, 2, generator=gen_ex, dtype=torch.float64)
for t_ex in (0, 500, 999):
    mine = forward_sample(x0_ex, t_ex, gammas, eps_ex)
    assert mine.shape == x0_ex.shape, f"shape {tuple(mine.shape)}, expected {tuple(x0_ex.shape)}"
    # the library's RDDM marginal with I_in = 0 and the DDIM-converted schedule is DDPM's (section 6)
    ref_ex = q_sample(x0_ex.reshape(8, 2, 1, 1), torch.zeros(8, 2, 1, 1, dtype=torch.float64), t_ex, ddim,
                      noise=eps_ex.reshape(8, 2, 1, 1)).reshape(8, 2)
    assert torch.allclose(mine, ref_ex, rtol=0, atol=1e-10), t_ex
# without noise, almost nothing of x_0 is left at the last step
assert forward_sample(x0_ex, 999, gammas, torch.zeros_like(x0_ex)).abs().max() < 0.01
print("Exercise A: visible checks passed")
### BEGIN HIDDEN TESTS
# the step-by-step chain of section 1 with recorded noise: the closed form with the accumulated
# noise (normalised to unit variance) reproduces it exactly, on another schedule
b_h = torch.linspace(0.01, 0.2, 20, dtype=torch.float64)
g_h = torch.cumprod(1 - b_h, 0)
x0_h = torch.randn(5, 3, 4, 4, generator=gen_ex, dtype=torch.float64)
x_h, acc_h = x0_h.clone(), torch.zeros_like(x0_h)
for t_h in range(20):
    e_h = torch.randn(x0_h.shape, generator=gen_ex, dtype=torch.float64)
    x_h = (1 - b_h[t_h]).sqrt() * x_h + b_h[t_h].sqrt() * e_h
    acc_h = (1 - b_h[t_h]).sqrt() * acc_h + b_h[t_h].sqrt() * e_h
    mine_h = forward_sample(x0_h, t_h, g_h, acc_h / (1 - g_h[t_h]).sqrt())
    assert mine_h.shape == x0_h.shape
    assert torch.allclose(mine_h, x_h, rtol=0, atol=1e-12), t_h
# float32 tensors stay float32-accurate
mine32_h = forward_sample(x0_ex.float(), 300, gammas, eps_ex.float())
assert torch.allclose(mine32_h.double(), gammas[300].sqrt() * x0_ex + (1 - gammas[300]).sqrt() * eps_ex, atol=1e-5)
### END HIDDEN TESTS

# %% [markdown]
# **Exercise B (2 points) — one DDPM reverse step.** Write `ddpm_step(x_t, eps_hat, t, betas, gammas, z)`
# returning DDPM's ancestral step of section 5,
# $x_{t-1} = \big(x_t - \frac{b_t}{\sqrt{1-\gamma_t}}\hat\epsilon\big)/\sqrt{1-b_t} + \sqrt{b_t}\,z$, for an integer `t`;
# at the last step, `t = 0`, no noise is added (`z` is ignored). Do not call `ddpm_sample`.
# *Hint:* at $t = 0$, $\gamma_0 = 1-b_0$, so the step returns $\hat x_0 = (x_t - \sqrt{1-\gamma_0}\,\hat\epsilon)/\sqrt{\gamma_0}$.

# %% nbgrader={"grade": false, "grade_id": "ex00-ddpm-step", "locked": false, "solution": true, "schema_version": 3}
def ddpm_step(x_t, eps_hat, t, betas, gammas, z):
    """One DDPM ancestral step x_t → x_{t−1} (no noise at t = 0); tensors of equal shape."""
    ### BEGIN SOLUTION
    b_t, g_t = float(betas[t]), float(gammas[t])
    mean = (x_t - b_t / math.sqrt(1.0 - g_t) * eps_hat) / math.sqrt(1.0 - b_t)
    return mean if t == 0 else mean + math.sqrt(b_t) * z
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex00-ddpm-step-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
gen_ex = seed_everything(22)
x0_ex = torch.rand(8, 2, generator=gen_ex, dtype=torch.float64) * 2 - 1
eps_ex = torch.randn(8, 2, generator=gen_ex, dtype=torch.float64)
z_ex = torch.randn(8, 2, generator=gen_ex, dtype=torch.float64)
for t_ex in (1, 100, 999):
    x_t_ex = gammas[t_ex].sqrt() * x0_ex + (1 - gammas[t_ex]).sqrt() * eps_ex
    mine = ddpm_step(x_t_ex, eps_ex, t_ex, betas, gammas, torch.zeros_like(z_ex))
    assert mine.shape == x_t_ex.shape
    # with the true noise and z = 0 the step lands on the posterior mean μ̃(x_t, x_0) of section 3
    assert torch.allclose(mine, posterior_mean(x_t_ex, x0_ex, t_ex), rtol=0, atol=1e-9), t_ex
    # the noise enters as √b_t·z
    noisy = ddpm_step(x_t_ex, eps_ex, t_ex, betas, gammas, z_ex)
    assert torch.allclose(noisy - mine, betas[t_ex].sqrt() * z_ex, rtol=0, atol=1e-12), t_ex
# the last step adds no noise and returns x̂_0: with the true noise, exactly x_0
x_last = gammas[0].sqrt() * x0_ex + (1 - gammas[0]).sqrt() * eps_ex
assert torch.allclose(ddpm_step(x_last, eps_ex, 0, betas, gammas, z_ex), x0_ex, rtol=0, atol=1e-12)
print("Exercise B: visible checks passed")
### BEGIN HIDDEN TESTS
# an imperfect prediction: the step is μ̃(x_t, x̂_0) with x̂_0 from ε̂ (the ELBO identity), on another schedule
b_h = torch.linspace(0.01, 0.2, 20, dtype=torch.float64)
g_h = torch.cumprod(1 - b_h, 0)
eps_hat_h = eps_ex + 0.3 * torch.randn(8, 2, generator=gen_ex, dtype=torch.float64)
for t_h in (1, 7, 19):
    x_t_h = g_h[t_h].sqrt() * x0_ex + (1 - g_h[t_h]).sqrt() * eps_ex
    x0_hat_h = (x_t_h - (1 - g_h[t_h]).sqrt() * eps_hat_h) / g_h[t_h].sqrt()
    mu_h = (g_h[t_h - 1].sqrt() * b_h[t_h] / (1 - g_h[t_h])) * x0_hat_h + (
        (1 - b_h[t_h]).sqrt() * (1 - g_h[t_h - 1]) / (1 - g_h[t_h])) * x_t_h
    assert torch.allclose(ddpm_step(x_t_h, eps_hat_h, t_h, b_h, g_h, z_ex), mu_h + b_h[t_h].sqrt() * z_ex,
                          rtol=0, atol=1e-10), t_h
# image-shaped float32 tensors, and the last step ignores z
x_img_h = torch.randn(2, 3, 8, 8, generator=gen_ex)
e_img_h = torch.randn(2, 3, 8, 8, generator=gen_ex)
out_h = ddpm_step(x_img_h, e_img_h, 0, betas, gammas, torch.randn(2, 3, 8, 8, generator=gen_ex))
assert out_h.shape == x_img_h.shape
assert torch.allclose(out_h, (x_img_h - (1 - gammas[0]).sqrt().float() * e_img_h) / gammas[0].sqrt().float(),
                      atol=1e-5)
### END HIDDEN TESTS
