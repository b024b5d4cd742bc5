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
#     level: "2 — intermediate (needs notebook 02)"
#     budget_s: 180
# ---

# %% [markdown]
# # Schedules and path independence
#
# **Level:** 2 — intermediate (needs notebook 02).
#
# **Prerequisites:** notebook 02 (RDDM's generalised reverse step, the removal paths `simultaneous` /
# `residual_first` / `noise_first`, and the ideal predictors: oracle and dataset-ideal); notebook 01 for the
# schedules $\bar\alpha_t$, $\bar\beta_t$ and `sum_scale`; Riemann sums.
#
# **Study time:** about 90 minutes, with the exercises 3–4 hours.
#
# **Learning goals.** After this notebook you can
#
# 1. read RDDM's power family $P(x, k) = x^k$ of coefficient schedules, check its boundary conditions and its
#    continuum limit $\bar\alpha_t \approx 1-(1-\tau)^{k_\alpha+1}$, $\bar\beta_t^2 \approx s\,\tau^{k_\beta+1}$, and say where a few-step sampler evaluates it;
# 2. state RDDM's path-independence claim and know why it holds for the oracle;
# 3. explain when paths agree with one hidden variable, the noise-to-signal ratio $\sigma' = \bar\beta/(1-\bar\alpha)$: equal $\sigma'$
#    sequences give equal outputs, $\sigma'$-monotone paths converge to one answer, and noise-first breaks this;
# 4. quantify how far orders, step counts and schedules disagree with the dataset-ideal predictor — sample by
#    sample and in distribution — and read the numbers with $\sigma'$;
# 5. use the interactive lab (`drdd_edu.widgets.PathLab`), export its settings as JSON and regenerate any of its
#    figures with `plot_lab(run_lab(LabParams.from_json(s)))`.
#
# **Runtime budget:** CPU only, no training. Smoke size (what the tests run, `DRDD_EDU_SMOKE=1`: 16×16 images,
# 64 starting noises): about 10–20 s on a 2-core machine. Full size (`DRDD_EDU_SMOKE=0`: 32×32 images, 256
# starting noises, a longer reference run): 20–50 s. The test harness allows 180 s.
#
# **How to read it.** Every claim is an `assert`: exact identities to $10^{-5}$ (float32) or $10^{-10}$ (float64), frequencies
# over $n$ starting noises to **5 binomial standard errors** $5\sqrt{p(1-p)/n}$; all randomness is seeded. The lab (section 5)
# needs a live kernel; section 6 shows its figures as static panels. At **Predict, then run**, guess before you run.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import display

from drdd_edu import timestep_pairs, toydata
from drdd_edu.colors import ORDER_COLORS, ORDER_MARKERS
from drdd_edu.diffusion import from_model_range, to_model_range
from drdd_edu.notebook import is_smoke, pick, report_runtime, savefig, seed_everything
from drdd_edu.predictors import DatasetIdealPredictor
from drdd_edu.samplers import PATH_ORDERS, removal_path, sample_path, sample_path_iter
from drdd_edu.schedules import rddm_schedule
from drdd_edu.widgets import LAB_T, LabParams, PathLab, figure_png, plot_lab, run_lab

START = time.perf_counter()
print("smoke size" if is_smoke() else "full size")
torch.set_default_dtype(torch.float32)

T = LAB_T  # 1000, as in the RDDM reference code
IMG_SIZE = pick(32, 16)  # photographs are IMG_SIZE × IMG_SIZE
N_SEEDS = pick(256, 64)  # starting noises in the batched experiments of section 4
STEP_GRID = (1, 2, 3, 5, 10, 20, 50)  # sampling steps compared in section 4
REF_STEPS = pick(400, 200)  # "many steps": the reference map of section 4
POWERS = (0.0, 0.5, 1.0, 2.0, 4.0)  # exponents k of the P(x, k) family in section 1
FLOAT32_TOL = 1e-5  # exact identity, float32, quantities of order 1
FLOAT64_TOL = 1e-10  # exact identity, float64
EXACT_DB = 60.0  # PSNR above which a restoration counts as exact (float32 round-off only)
ON_PHOTO = 1e-4  # RMS distance (on [-1, 1]) below which an output *is* a training photo
N_SE = 5.0  # tolerance for frequencies, in binomial standard errors
DPI = 110  # figures saved by this notebook (the course minimum is 100)


def tau_grid(T: int) -> torch.Tensor:
    """τ = t'/T for t' = t + 1 = 1 … T: the fraction of the forward process done after step t."""
    return torch.arange(1, T + 1, dtype=torch.float64) / T


# %% [markdown]
# ## 1. The $P(x, k)$ schedule family
#
# The reference restoration schedule adds the residual with **linearly decreasing** weights and the noise with
# **linearly increasing** variances (notebook 01): $\alpha_t = (T+1-t')/\tfrac{T(T+1)}{2}$, $\beta_t^2 = s\cdot t'/\tfrac{T(T+1)}{2}$, $t' = t+1$,
# $s$ = `sum_scale`. For its path-independence study RDDM varies the *shape* with the power family $P(x, k) = x^k$:
#
# $$\alpha_t \propto \Bigl(\tfrac{T+1-t'}{T}\Bigr)^{k_\alpha},\qquad
#   \beta_t^2 \propto s\,\Bigl(\tfrac{t'}{T}\Bigr)^{k_\beta},\qquad
#   \text{normalised so that } \bar\alpha_{T-1} = 1,\ \bar\beta_{T-1}^2 = s .$$
#
# $k = 1$ is the reference, $k = 0$ spreads the residual (or the noise variance) uniformly; `rddm_schedule(T,
# sum_scale, alpha_power, beta_power)` builds it. **Continuum limit.** With $\tau = t'/T$, the residual still *missing*
# after step $t$ is $1-\bar\alpha_t = \sum_{i>t}\alpha_i \approx \int_0^{1-\tau}u^{k}\,du \big/ \int_0^1 u^{k}\,du$, so
#
# $$\bar\alpha_t \approx 1 - (1-\tau)^{k_\alpha+1},\qquad \bar\beta_t^2 \approx s\,\tau^{k_\beta+1},$$
#
# with an $O(1/T)$ (Riemann-sum) error, exact for $k = 0$. Sampling runs *backwards* from $\tau = 1$: a large $k_\alpha$
# keeps $\bar\alpha \approx 1$ for long (the residual is removed **late**; $\bar\alpha_t$ is larger at every $t$), a large $k_\beta$
# makes $\bar\beta$ drop quickly near $\tau = 1$ (the noise is removed **early**).

# %%
tau = tau_grid(T)
family = {k: rddm_schedule(T, sum_scale=1.0, alpha_power=k, beta_power=k) for k in POWERS}
for k, sch in family.items():
    # boundary conditions: the whole residual and the whole noise variance at the last step
    # float-exact: boundary (an assigned end point)
    assert float(sch.alphas_cumsum[-1]) == 1.0 and abs(sch.sum_scale - 1.0) < FLOAT64_TOL
    assert (torch.diff(sch.alphas_cumsum) >= 0).all() and (torch.diff(sch.betas2_cumsum) > 0).all()
    err_a = float((sch.alphas_cumsum - (1 - (1 - tau) ** (k + 1))).abs().max())
    err_b = float((sch.betas2_cumsum - tau ** (k + 1)).abs().max())
    print(f"k = {k:3}: max |ᾱ − continuum| = {err_a:.1e}, max |β̄² − continuum| = {err_b:.1e}")
    assert err_a < 1 / T and err_b < 1 / T  # O(1/T) Riemann-sum error ...
    if k == 0:
        assert err_a < FLOAT64_TOL and err_b < FLOAT64_TOL  # ... and exact for k = 0
for k_lo, k_hi in zip(POWERS[:-1], POWERS[1:], strict=True):  # larger k: more residual, less noise at every t
    assert (family[k_hi].alphas_cumsum[:-1] > family[k_lo].alphas_cumsum[:-1]).all()
    assert (family[k_hi].betas2_cumsum[:-1] < family[k_lo].betas2_cumsum[:-1]).all()
small = rddm_schedule(T, sum_scale=0.01)  # sum_scale only rescales β̄²; it leaves ᾱ alone
assert torch.allclose(small.betas2_cumsum, 0.01 * family[1.0].betas2_cumsum, rtol=1e-12, atol=0)
assert torch.equal(small.alphas_cumsum, family[1.0].alphas_cumsum)

# %% [markdown]
# A sampler with $S$ steps evaluates the schedule only at the $S+1$ nodes of `timestep_pairs(T, S)` (999, 799, …,
# −1 for $S = 5$). Changing the powers moves these nodes in the $(\bar\alpha, \bar\beta)$ plane — the *speed* at which residual
# and noise leave. The right panel shows where a 5-step sampler stands for four schedules.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
t_axis = torch.arange(T)
for k, sch in family.items():
    axes[0].plot(t_axis, sch.alphas_cumsum, label=f"$k_\\alpha$ = {k:g}")
    axes[1].plot(t_axis, sch.betas_cumsum, label=f"$k_\\beta$ = {k:g}")
axes[0].plot(t_axis, 1 - (1 - tau) ** 2, "k:", lw=1, label="continuum, $k_\\alpha$ = 1")
axes[0].set(xlabel="t", ylabel=r"$\bar\alpha_t$", title=r"residual: $\alpha_t \propto ((T+1-t')/T)^{k_\alpha}$")
axes[1].set(xlabel="t", ylabel=r"$\bar\beta_t$", title=r"noise: $\beta_t^2 \propto (t'/T)^{k_\beta}$, $s = 1$")
nodes_5 = [t for t, _ in timestep_pairs(T, 5)]
for ka, kb in [(1.0, 1.0), (0.0, 1.0), (3.0, 1.0), (1.0, 3.0)]:
    sch = rddm_schedule(T, 1.0, alpha_power=ka, beta_power=kb)
    (line,) = axes[2].plot(sch.alphas_cumsum, sch.betas_cumsum, lw=1.2, label=f"$k_\\alpha$={ka:g}, $k_\\beta$={kb:g}")
    axes[2].plot(sch.alphas_cumsum[nodes_5], sch.betas_cumsum[nodes_5], "o", color=line.get_color(), ms=4)
axes[2].plot(0, 0, "k*", ms=10)
axes[2].set(xlabel=r"$\bar\alpha$ (residual left)", ylabel=r"$\bar\beta$ (noise left)", title="schedule curves, ● = nodes of a 5-step sampler")
for ax in axes:
    ax.legend(fontsize=8, loc="lower right" if ax is axes[2] else "best")
fig.tight_layout()
savefig(fig, "03_schedule_family", dpi=DPI)
plt.show()

# %% [markdown]
# ## 2. Removal orders, and path independence for the oracle
#
# A deterministic sampler walks from $(\bar\alpha, \bar\beta) = (1, \sqrt{s})$ to $(0, 0)$, updating $x' = x - (a - a')\,\hat I_\text{res} - (b - b')\,\hat\epsilon$
# between nodes; `removal_path(schedule, steps, order)` gives notebook 02's three orders (section 6 there).
# **RDDM's claim** (path independence): with a predictor conditioned on $(\bar\alpha, \bar\beta)$, order and speed do not matter.
# For the **oracle** it is exact (notebook 02, section 6), also with η > 0 and even from a start with the wrong amount
# of noise (the oracle reads the $\epsilon$ of the state it is shown). The lab's pure function `run_lab(LabParams(...))`
# runs one experiment on the darkened astronaut; we sweep orders, steps, schedule powers, η and the starting noise.

# %%
oracle_runs = [run_lab(LabParams(alpha_power=ka, beta_power=kb, order=order, steps=steps, eta=eta, size=IMG_SIZE, seed=seed))
               for seed, (order, steps, (ka, kb), eta) in enumerate(
                   (o, st, k, e) for o in PATH_ORDERS for st in (1, 3, 10) for k in ((1.0, 1.0), (0.5, 2.0), (3.0, 0.5))
                   for e in ((0.0, 1.0) if o == "simultaneous" else (0.0,)))]
oracle_runs.append(run_lab(LabParams(noise_strength=0.3, steps=4, size=IMG_SIZE)))  # wrong start noise
oracle_runs.append(run_lab(LabParams(sum_scale=0.01, noise_strength=0.1, order="residual_first", size=IMG_SIZE)))
worst = min(oracle_runs, key=lambda r: r.psnr)
print(f"{len(oracle_runs)} oracle runs: lowest PSNR {worst.psnr:.1f} dB, "
      f"largest max |Î_0 − I_0| = {max(r.max_abs_error for r in oracle_runs):.1e}")
for r in oracle_runs:
    assert r.psnr > EXACT_DB and r.max_abs_error < FLOAT32_TOL, r.params
    assert r.n_steps == (r.params.steps if r.params.order == "simultaneous" else 2 * r.params.steps)
# η was used where the sampler supports it, and only there
assert {r.eta_applied for r in oracle_runs if r.params.order != "simultaneous"} == {0.0}
assert any(r.eta_applied == 1.0 for r in oracle_runs)  # float-exact: literal

# %% [markdown]
# ## 3. The hidden variable: the noise-to-signal ratio $\sigma' = \bar\beta/(1-\bar\alpha)$
#
# The oracle already knows $I_0$. A predictor that must *infer* it is notebook 02's dataset-ideal predictor
# (section 5 there: the MMSE predictor for the four bundled photographs, which generates a training photo
# rather than restoring the input). Is *it* path independent? One variable answers this. Move the known input
# to the left of the forward marginal $x = I_0 + \bar\alpha(I_\text{in} - I_0) + \bar\beta\epsilon$:
#
# $$y := \frac{x - \bar\alpha\,I_\text{in}}{1-\bar\alpha} = I_0 + \sigma'\epsilon,\qquad \sigma' = \frac{\bar\beta}{1-\bar\alpha}.$$
#
# Given $I_\text{in}$, the state is a clean image plus noise of standard deviation $\sigma'$ — a *variance-exploding*
# diffusion in disguise — so an MMSE predictor can only depend on $(y, \sigma')$: $\hat I_0 = D(y, \sigma')$. Substituting
# $\hat I_\text{res} = I_\text{in} - \hat I_0$ and $\hat\epsilon = (y - \hat I_0)/\sigma'$ into the step gives $x' - a' I_\text{in} = (1-a')\hat I_0 + b'\hat\epsilon$, i.e.
#
# $$y' = \hat I_0 + \sigma'_\text{next}\,\frac{y - \hat I_0}{\sigma'} \qquad\text{(DDIM's step for a VE diffusion)} .$$
#
# Three consequences:
#
# 1. **Only the sequence of $\sigma'$ values matters.** Two paths that visit the same $\sigma'$ values give the same output,
#    sample by sample, even if one of them *adds* noise on the way.
# 2. **Convergence.** As the steps get finer, every path on which $\sigma'$ falls monotonically from $\infty$ (at $\bar\alpha = 1$) to $0$
#    approximates the same ODE $dy/d\sigma' = (y - D(y,\sigma'))/\sigma'$, the same map $z \mapsto$ photo: path independence for the ideal
#    predictor, in the limit of many steps. With few steps, where the nodes sit on the $\sigma'$ axis matters.
# 3. **Noise-first breaks it.** At $\bar\alpha = 1$, $\sigma' = \infty$ and the state only carries the direction $\hat\epsilon = (x - I_\text{in})/\bar\beta = z$.
#    Noise-first removes all noise *at* $\bar\alpha = 1$: at $(1, 0)$, $\sigma' = 0/0$, the state is exactly $I_\text{in}$ and $z$ is erased;
#    the next step jumps from $\sigma' = \infty$ to $0$ in one go — a one-step sampler.
#
# Check 1 uses `N_SEEDS` starting noises $z$ at once (a batch). Take the 5-step simultaneous path A, scale
# $(1-\bar\alpha, \bar\beta)$ at every interior node by $\lambda = \tfrac12$ (this keeps $\sigma'$), and start at $\bar\beta_0 = 0.3$ instead of 1 (at
# $\bar\alpha = 1$, $\sigma' = \infty$ either way): path B even goes *up* in noise, from 0.3 to 0.4.
#
# **Predict, then run.** Will path B's outputs differ from path A's by about 0.1, 0.01, or $10^{-10}$? And those of
# a path C that halves only $\bar\beta$ (so its $\sigma'$ values change)? Write your answer down, then run.

# %%
bank = to_model_range(torch.cat([toydata.bundled_image(name, IMG_SIZE) for name in toydata.BUNDLED_IMAGES]))
x0_img = bank[:1]  # the astronaut
x_in_img = to_model_range(toydata.darken(from_model_range(x0_img)))
ideal = DatasetIdealPredictor(bank)
Z = torch.randn((N_SEEDS, 3, IMG_SIZE, IMG_SIZE), generator=seed_everything(0))
X_IN = x_in_img.expand(N_SEEDS, -1, -1, -1)
n_photos = bank.shape[0]
ref_schedule = rddm_schedule(T, 1.0)


def sigma_prime(path: torch.Tensor) -> torch.Tensor:
    """σ' = β̄/(1 − ᾱ) per node, shape (N+1,): inf where ᾱ = 1 < β̄·∞, nan at (1, 0)."""
    a, b = path[:, 0], path[:, 1]
    return torch.where(a < 1, b / (1 - a).clamp_min(1e-300), torch.where(b > 0, math.inf, math.nan))


path_a = removal_path(ref_schedule, 5, "simultaneous")
path_b = path_a.clone()
path_b[1:-1, 0] = 1 - 0.5 * (1 - path_a[1:-1, 0])
path_b[1:-1, 1] = 0.5 * path_a[1:-1, 1]
path_b[0, 1] = 0.3
for name, path in (("A", path_a), ("B", path_b)):
    print(f"path {name} (ᾱ, β̄):", [tuple(round(v, 3) for v in row) for row in path.tolist()])
sp_a, sp_b = sigma_prime(path_a), sigma_prime(path_b)
assert torch.allclose(sp_a[1:-1], sp_b[1:-1], rtol=1e-12) and math.isinf(sp_a[0]) and math.isinf(sp_b[0])
assert float(path_b[1, 1]) > float(path_b[0, 1])  # B adds noise in its first step
# float64 here: the posterior weights are sharp, and float32 round-off would be visible
x_in64, z64 = X_IN.double(), Z.double()
states_a = list(sample_path_iter(ideal, x_in64, path_a, x_start=x_in64 + float(path_a[0, 1]) * z64))
states_b = list(sample_path_iter(ideal, x_in64, path_b, x_start=x_in64 + float(path_b[0, 1]) * z64))
for st_a, st_b in zip(states_a[:-1], states_b[:-1], strict=True):  # y agrees at every interior node
    y_a = (st_a.x_next - st_a.alpha_bar_next * x_in64) / (1 - st_a.alpha_bar_next)
    y_b = (st_b.x_next - st_b.alpha_bar_next * x_in64) / (1 - st_b.alpha_bar_next)
    assert float((y_a - y_b).abs().max()) < FLOAT64_TOL, st_a.i
gap_ab = float((states_a[-1].x_next - states_b[-1].x_next).abs().max())
print(f"same σ' sequence, different paths: max |output A − output B| over {N_SEEDS} z = {gap_ab:.1e}")
assert gap_ab < FLOAT64_TOL
path_c = path_a.clone()  # λ = 1/2 applied to β̄ only: different σ' values, a different sampler
path_c[1:-1, 1] = 0.5 * path_a[1:-1, 1]
gap_ac = float((sample_path(ideal, x_in64, path_c, x_start=x_in64 + z64) - states_a[-1].x_next).abs().max())
print(f"different σ' sequence: max |output A − output C| = {gap_ac:.2f}")
assert gap_ac > 0.1

# %% [markdown]
# Checks 2 and 3: the $\sigma'$ sequences of the three orders. Simultaneous and residual-first fall monotonically from
# $\infty$ to $0$ (they differ only in where their nodes sit). Noise-first sits at $\sigma' = \infty$, passes through the undefined
# node $(1, 0)$, and is at $\sigma' = 0$ for the whole residual stage; its state at $(1, 0)$ is $I_\text{in}$ for every $z$.

# %%
S_PLOT = 5
order_paths = {order: removal_path(ref_schedule, S_PLOT, order) for order in PATH_ORDERS}
for order, path in order_paths.items():
    sp = sigma_prime(path)
    print(f"{order:15s} σ' = {[round(float(v), 3) for v in sp]}")
    if order != "noise_first":
        assert math.isinf(sp[0]) and float(sp[-1]) == 0.0  # float-exact: zero
        assert (torch.diff(sp[1:]) < 0).all()  # strictly falling after the start
nf_sp = sigma_prime(order_paths["noise_first"])
assert torch.isinf(nf_sp[:S_PLOT]).all() and math.isnan(nf_sp[S_PLOT]) and (nf_sp[S_PLOT + 1 :] == 0).all()
nf_states = list(sample_path_iter(ideal, X_IN, order_paths["noise_first"], x_start=X_IN + Z))
assert float((nf_states[S_PLOT - 1].x_next - X_IN).abs().max()) < FLOAT32_TOL  # z is erased at (1, 0)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
cap = 1e3  # where ∞ is drawn; 0 is drawn at 1e-3
shown = lambda sp: torch.where(torch.isinf(sp), torch.full_like(sp, cap), sp).clamp_min(1e-3)  # noqa: E731
for order, path in order_paths.items():
    style = {"color": ORDER_COLORS[order], "ms": 4, "label": order}
    axes[0].plot(range(path.shape[0]), shown(sigma_prime(path)), ORDER_MARKERS[order], **style)
    axes[1].plot(path[:, 0], path[:, 1], ORDER_MARKERS[order], **style)
axes[0].plot(range(len(sp_b)), shown(sp_b), "x", color="k", ms=7, label="path B (same σ' as simultaneous)")
axes[0].axhline(cap, color="0.6", lw=0.8, ls=":")
axes[0].text(0.2, cap * 1.4, "σ' = ∞", fontsize=8)
axes[0].annotate("(1, 0): σ' = 0/0", xy=(S_PLOT, 0.03), xytext=(S_PLOT + 0.4, 0.06), fontsize=8, color="k",
                 arrowprops={"arrowstyle": "->", "color": "k"})
axes[0].set(yscale="log", xlabel="node", ylabel=r"$\sigma' = \bar\beta/(1-\bar\alpha)$ (0 drawn at $10^{-3}$)",
            title=f"noise-to-signal ratio along {S_PLOT}-step paths", ylim=(5e-4, 1e4))
axes[0].legend(fontsize=8, loc="lower left")
axes[1].plot(path_b[:, 0], path_b[:, 1], "kx--", ms=7, lw=0.8, label="path B")
for sp_level in (0.25, 1.0, 4.0):  # lines of constant σ': β̄ = σ'·(1 − ᾱ)
    axes[1].plot(torch.linspace(0, 1, 50), sp_level * (1 - torch.linspace(0, 1, 50)), color="0.85", lw=0.8, zorder=0)
axes[1].set(xlabel=r"$\bar\alpha$", ylabel=r"$\bar\beta$", xlim=(-0.03, 1.03), ylim=(-0.03, 1.08),
            title="the same paths; grey: lines of constant σ'")
axes[1].legend(fontsize=8, loc="upper left")
fig.tight_layout()
savefig(fig, "03_noise_to_signal", dpi=DPI)
plt.show()

# %% [markdown]
# ## 4. Orders, steps and schedules, measured
#
# The consequences in numbers: one starting noise through the three orders (5 steps, `run_lab`), then all `N_SEEDS`
# starting noises through several paths and step counts, recording **which photo** each $z$ ends on (the nearest)
# and how far from it. Paths: simultaneous on the reference schedule and on two other members of the family,
# residual-first, noise-first; the yardstick is the simultaneous path with `REF_STEPS` steps, the **reference map**
# $z \mapsto$ photo. We measure the fractions of outputs that *are* a photo (RMS < $10^{-4}$) and that agree with the reference
# map, and the frequency of each photo.
#
# **Predict, then run.** Using section 3: (i) with 50 steps, on what fraction of the starting noises do the
# simultaneous and residual-first paths end on the reference map's photo? (ii) With 2 steps? (iii) How many
# *different* outputs does noise-first produce for the `N_SEEDS` starting noises?

# %%
one_seed = {order: run_lab(LabParams(predictor="dataset_ideal", order=order, steps=5, size=IMG_SIZE, seed=4))
            for order in PATH_ORDERS}
for order, r in one_seed.items():  # one start; two end exactly on a photo, noise-first next to one
    print(f"{order:15s}: nearest photo {r.nearest_image:10s} at RMS {r.nearest_rmse:.1e}, PSNR vs the true I_0 {r.psnr:5.1f} dB")
    assert torch.equal(r.x_start, one_seed["simultaneous"].x_start)
    assert (r.nearest_rmse > 100 * ON_PHOTO) if order == "noise_first" else (r.nearest_rmse < ON_PHOTO)
lab_run = one_seed["simultaneous"]  # the lab and the batch below use the same sampler: a replay
assert float((sample_path(ideal, x_in_img, lab_run.path, x_start=lab_run.x_start) - lab_run.output).abs().max()) < FLOAT32_TOL


def run_batch(path: torch.Tensor) -> torch.Tensor:
    """All N_SEEDS starting noises along one (ᾱ, β̄) path: x_start = I_in + β̄_0·z; (N, 3, H, W)."""
    return sample_path(ideal, X_IN, path, x_start=X_IN + float(path[0, 1]) * Z)


def nearest_photo(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMS distance to the nearest bank photo, its index), each shape (N,)."""
    return (out[:, None] - bank[None]).flatten(2).pow(2).mean(-1).sqrt().min(dim=1)


ref_rms, ref_idx = nearest_photo(run_batch(removal_path(ref_schedule, REF_STEPS, "simultaneous")))
assert float(ref_rms.max()) < ON_PHOTO  # the reference map lands on a photo for every z
configs = {  # label: (schedule, order)
    "simultaneous": (ref_schedule, "simultaneous"),
    "simultaneous, k_α=3": (rddm_schedule(T, 1.0, alpha_power=3.0), "simultaneous"),
    "simultaneous, k_β=3": (rddm_schedule(T, 1.0, beta_power=3.0), "simultaneous"),
    "residual_first": (ref_schedule, "residual_first"),
    "noise_first": (ref_schedule, "noise_first"),
}
stats, outputs = {}, {}  # (label, steps) -> dict, output batch
for label, (sch, order) in configs.items():
    for steps in STEP_GRID:
        outputs[(label, steps)] = out = run_batch(removal_path(sch, steps, order))
        rms, idx = nearest_photo(out)
        stats[(label, steps)] = {"on_photo": float((rms < ON_PHOTO).double().mean()),
                                 "agree": float(((idx == ref_idx) & (rms < ON_PHOTO)).double().mean()),
                                 "freq": torch.bincount(idx, minlength=n_photos).double() / N_SEEDS, "rms": rms, "idx": idx}
print(f"{N_SEEDS} starting noises, {IMG_SIZE}×{IMG_SIZE} photos; reference: {REF_STEPS} simultaneous steps")
for key, title in (("agree", "agreement with the reference map (fraction of z)"), ("on_photo", "fraction of outputs that are a photo")):
    print(f"{title}:\n{'path':22s}" + "".join(f"{s:>7d}" for s in STEP_GRID))
    for label in configs:
        print(f"{label:22s}" + "".join(f"{stats[(label, s)][key]:7.2f}" for s in STEP_GRID))
ref_freq = torch.bincount(ref_idx, minlength=n_photos).double() / N_SEEDS
print("photo frequencies of the reference map:", dict(zip(toydata.BUNDLED_IMAGES, ref_freq.tolist(), strict=True)))

# %% [markdown]
# **What the table says** (the cell below asserts each point), read with section 3:
#
# * **Per sample, speed and order matter — with few steps.** With 2 steps, at least a sixth (up to all) of the starting
#   noises end on another photo than the reference map, and with 1–3 steps the paths disagree with each other: their
#   nodes sit at different places on the $\sigma'$ axis. With more steps the $\sigma'$-monotone paths (simultaneous on all three
#   schedules, residual-first) converge to the **same** map: at 50 steps they agree with it on almost every $z$.
# * **In distribution, too.** The reference map sends each photo about a quarter of the starting noises (the
#   training distribution is uniform); 2 steps are strongly biased towards the photo closest to the mean of the
#   bank (with 1 step, the output *is* the mean: not a photo at all).
# * **Noise-first never gets there.** Its output is the same for every $z$ — the blend $(1-a_1)\,\bar I + a_1 I_0^{k^*}$ of the
#   bank mean $\bar I$ and the photo $k^*$ nearest to it (notebook 02, section 6) — so it never lands on a photo; more steps
#   only shrink the blend weight $1-a_1$, like $S^{-(k_\alpha+1)}$ (the continuum limit of section 1 at $\tau = 1 - 1/S$).

# %%
bank_mean = bank.mean(0, keepdim=True)
k_star = int((bank - bank_mean).flatten(1).norm(dim=1).argmin())
print(f"photo nearest the bank mean: k* = {toydata.BUNDLED_IMAGES[k_star]}")
converging = [label for label in configs if label != "noise_first"]
few, many = STEP_GRID[1], STEP_GRID[-1]  # 2 and 50 steps
for label in converging:
    agree = [stats[(label, s)]["agree"] for s in STEP_GRID]
    assert agree[1] < 0.85, label  # few steps: many z end on another photo
    # float-exact: count (a ratio of counts)
    assert agree[-1] > 0.95 and stats[(label, many)]["on_photo"] == 1.0, label  # many: the same map
    assert all(b >= a - 0.02 for a, b in zip(agree[:-1], agree[1:], strict=True)), label  # (almost) monotone in S
agree_3 = [stats[(label, 3)]["agree"] for label in converging]  # few steps: the paths disagree with each other
assert max(agree_3) - min(agree_3) > 0.25
same_few, same_many = (float((stats[("residual_first", s)]["idx"] == stats[("simultaneous", s)]["idx"]).double().mean())
                       for s in (few, many))
print(f"simultaneous vs residual-first: same photo for {same_few:.1%} of z with {few} steps, {same_many:.1%} with {many}")
assert same_many > 0.95 and same_many > same_few + 0.1  # different paths, one map at many steps
assert float((outputs[("simultaneous", 1)] - bank_mean).abs().max()) < FLOAT32_TOL  # one step: the bank mean
se = math.sqrt(0.25 * 0.75 / N_SEEDS)  # the reference map is uniform over the photos, 2 steps are biased to k*
assert float((ref_freq - 0.25).abs().max()) < N_SE * se
assert float(stats[("simultaneous", few)]["freq"][k_star]) > 0.25 + N_SE * se
nf_rms_by_steps = []  # noise-first: one output for every z, the predicted blend, off every photo
for steps in STEP_GRID:
    out = outputs[("noise_first", steps)]
    assert float((out - out[:1]).abs().max()) < FLOAT32_TOL  # the starting noise is forgotten
    a_1 = float(removal_path(ref_schedule, steps, "noise_first")[steps + 1, 0])  # ᾱ after the first residual step
    assert float((out[:1] - ((1 - a_1) * bank_mean + a_1 * bank[k_star : k_star + 1])).abs().max()) < FLOAT32_TOL
    assert stats[("noise_first", steps)]["on_photo"] == 0.0  # float-exact: count
    nf_rms_by_steps.append(float(stats[("noise_first", steps)]["rms"][0]))
    if steps >= 10:  # 1 − a_1 ≈ S^{−(k_α+1)} = S^{−2}
        assert abs((1 - a_1) * steps**2 - 1) < 0.1
print("noise-first distance to the nearest photo:", [f"{d:.1e}" for d in nf_rms_by_steps])

fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.8))
variant_fmt = {"simultaneous, k_α=3": "d:", "simultaneous, k_β=3": "v:"}  # same order, same colour
for label, (_, order) in configs.items():
    axes[0].plot(STEP_GRID, [stats[(label, s)]["agree"] for s in STEP_GRID], variant_fmt.get(label, ORDER_MARKERS[order]),
                 color=ORDER_COLORS[order], ms=3, label=label)
axes[0].set(xscale="log", xlabel="sampling steps S", ylabel="fraction of z", title="same photo as the reference map", ylim=(-0.03, 1.03))
positions = torch.arange(n_photos, dtype=torch.float64)
for j, (label, freq, color) in enumerate([("reference", ref_freq, "0.6"),
                                          (f"simultaneous, {few} steps", stats[("simultaneous", few)]["freq"], ORDER_COLORS["simultaneous"]),
                                          (f"residual-first, {few} steps", stats[("residual_first", few)]["freq"], ORDER_COLORS["residual_first"])]):
    axes[1].bar(positions + (j - 1) * 0.2, freq, 0.2, label=label, color=color)
axes[1].axhline(0.25, color="k", lw=0.8, ls=":")
axes[1].set_xticks(positions.tolist(), toydata.BUNDLED_IMAGES, fontsize=8)
axes[1].set(ylabel="frequency", title="which photo the samples become")
axes[2].loglog(STEP_GRID, nf_rms_by_steps, ORDER_MARKERS["noise_first"], color=ORDER_COLORS["noise_first"],
               label="noise-first: RMS to nearest photo")
scale = float((bank_mean - bank[k_star]).pow(2).mean().sqrt())
axes[2].loglog(STEP_GRID, [scale * s**-2.0 for s in STEP_GRID], "k:", label=r"$\mathrm{RMS}(\bar I - I_0^{k^*})\cdot S^{-2}$")
axes[2].set(xlabel="sampling steps S", title="noise-first: a fixed blend, never a photo")
for ax in axes:
    ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, "03_orders_quantified", dpi=DPI)
plt.show()

# %% [markdown]
# **So is RDDM path independent?** For the oracle, exactly. For an ideal predictor that must infer $I_0$: in the limit
# of many steps, for every path on which $\sigma'$ falls from $\infty$ to $0$; with few steps, it depends on where the nodes sit on
# the $\sigma'$ axis, and a path through $(1, 0)$ is never equivalent. A trained network adds its own errors on top.
#
# ## 5. The interactive lab
#
# `PathLab` puts every `LabParams` field on a control: schedule ($k_\alpha$, $k_\beta$, `sum_scale`), sampler (order, steps, η,
# seed), task, image, size, predictor, and the starting-noise strength $\sigma$ (start $= I_\text{in} + \sigma z$; $\sigma = \sqrt{s}$ matches the
# schedule). Each change reruns `run_lab` and redraws `plot_lab`: the path in the $(\bar\alpha, \bar\beta)$ plane, and per step the
# state $x_t$ (top) and the estimate $\hat I_0$ (bottom). **show step** scrubs the trajectory without resampling; **export**
# prints the JSON of all settings. η applies to `simultaneous` only (`sample_iter`; the other orders are
# deterministic). `generate` sets $I_\text{in} = 0$. Try: the dataset-ideal predictor with 1, 2, 5, 20 steps; noise-first vs
# residual-first for one seed; $k_\alpha = 4$ with 3 steps; η = 1.

# %%
lab = PathLab(LabParams(predictor="dataset_ideal", order="residual_first", steps=3, size=IMG_SIZE, seed=4))
lab

# %% [markdown]
# The lab is plain Python underneath: setting a control's value runs the same handlers as a mouse would, so it
# can be driven (and tested) without a browser, and the exported JSON regenerates the figure pixel for pixel.

# %%
lab.controls["steps"].value = 7
assert lab.params.steps == 7 and lab.result.n_steps == 14 and lab.step_slider.max == 13
lab.controls["order"].value = "simultaneous"
assert lab.result.n_steps == 7 and not lab.controls["eta"].disabled
lab.step_slider.value = 2
exported = lab.export()
print(exported)
again = run_lab(LabParams.from_json(exported))
assert torch.equal(again.output, lab.result.output)
assert torch.equal(again.trajectory("pred_x0"), lab.result.trajectory("pred_x0"))
assert figure_png(plot_lab(again), lab.dpi) == lab.png  # the same figure, byte for byte
lab.set_params(LabParams(predictor="dataset_ideal", order="residual_first", steps=3, size=IMG_SIZE, seed=4))

# %% [markdown]
# ## 6. Static panels
#
# For readers without a live kernel, four lab settings drawn with `plot_lab(run_lab(params))`; paste any printed
# JSON line into `lab.set_params(LabParams.from_json(...))` to explore from there.
#
# **(a) Oracle, simultaneous, 5 steps.** $\hat I_0$ (bottom row) is the clean photo from the first step on; the output is exact.


# %%
def static_panel(params: LabParams, name: str):
    """Run and draw one lab setting, save it as figure `name`, print its JSON; return the result."""
    result = run_lab(params)
    fig = plot_lab(result)
    savefig(fig, name, dpi=DPI)
    print(params.to_json())
    display(fig)
    return result


panel_a = static_panel(LabParams(order="simultaneous", steps=5, size=IMG_SIZE, seed=4), "03_lab_oracle")
assert panel_a.psnr > EXACT_DB

# %% [markdown]
# **(b) Dataset-ideal, residual-first, 5 steps.** The residual leaves first, at constant noise; $\hat I_0$ starts as the
# mean of the four photos and sharpens into one of them — chosen by the noise, not by the input.

# %%
panel_b = static_panel(LabParams(predictor="dataset_ideal", order="residual_first", steps=5, size=IMG_SIZE, seed=4),
                       "03_lab_ideal_residual_first")
assert panel_b.nearest_rmse < ON_PHOTO
assert float((panel_b.states[0].pred_x0 - bank_mean).abs().max()) < FLOAT32_TOL  # ᾱ = 1: the mean

# %% [markdown]
# **(c) Dataset-ideal, noise-first, same seed.** The noise leaves first, at $\bar\alpha = 1$, down to exactly $I_\text{in}$; the
# residual stage has no noise left to decide with: the washed-out blend of section 4, the same for every seed.

# %%
panel_c = static_panel(LabParams(predictor="dataset_ideal", order="noise_first", steps=5, size=IMG_SIZE, seed=4),
                       "03_lab_ideal_noise_first")
other_seed = run_lab(panel_c.params.replace(seed=5))
assert float((panel_c.output - other_seed.output).abs().max()) < FLOAT32_TOL  # seed-independent
assert panel_c.nearest_rmse > 100 * ON_PHOTO and panel_c.nearest_image == toydata.BUNDLED_IMAGES[k_star]

# %% [markdown]
# **(d) Generation, dataset-ideal, simultaneous, η = 1, 10 steps.** $I_\text{in} = 0$: the start is pure noise, η = 1 adds
# fresh noise in every step (`sample_iter`), and the sample still ends exactly on a photo.

# %%
panel_d = static_panel(LabParams(task="generate", predictor="dataset_ideal", order="simultaneous", steps=10, eta=1.0,
                                 size=IMG_SIZE, seed=4), "03_lab_generate")
# float-exact: literal (a value passed through unchanged)
assert panel_d.eta_applied == 1.0 and panel_d.nearest_rmse < ON_PHOTO and panel_d.psnr > EXACT_DB
assert torch.equal(panel_d.x_in, torch.zeros_like(panel_d.x_in))

# %% [markdown]
# ## What you learned
#
# * The $P(x, k)$ family: $\bar\alpha_t \approx 1-(1-\tau)^{k_\alpha+1}$, $\bar\beta_t^2 \approx s\,\tau^{k_\beta+1}$ ($O(1/T)$ off); larger $k_\alpha$ removes the residual later,
#   larger $k_\beta$ the noise earlier; a few-step sampler sees only the grid nodes.
# * With the oracle, every order, speed, schedule, η and even a wrong starting noise ends exactly at $I_0$.
# * Given $I_\text{in}$, the sampler only sees $y = I_0 + \sigma'\epsilon$, $\sigma' = \bar\beta/(1-\bar\alpha)$: equal $\sigma'$ sequences give equal outputs;
#   $\sigma'$-monotone paths converge to one ODE; noise-first passes through $(1, 0)$ and erases the starting noise.
# * With the dataset-ideal (MMSE) predictor, few steps make the end point depend on order and schedule; many
#   steps bring the simultaneous and residual-first paths to one map, uniform over the training photos.
# * Every lab figure is `plot_lab(run_lab(LabParams.from_json(s)))` of its exported JSON `s`.
#
# **Next:** notebook 04 introduces the five degradations and the All-in-One-5 data; notebook 08 runs DRDD's
# residual-first order with trained networks.

# %%
report_runtime(START, budget_s=180)

# %% [markdown]
# ## Exercises
#
# 1. **How good is the continuum limit?** Measure $\max_t|\bar\alpha_t - (1-(1-\tau)^{k+1})|$ for $T = 100, 1000, 10000$ and
#    $k = 0.5, 1, 3$. How does it scale with $T$? *Hint:* a Riemann sum of a monotone function with $T$ cells is off by
#    at most (first term − last term)/$T$; for $k = 0$ the sum is exact.
# 2. **A path that adds noise.** Build an `(N+1, 2)` path with the $\sigma'$ values of the 10-step residual-first path
#    but a $\bar\beta$ that goes up and down; check with `sample_path` and the dataset-ideal predictor that it gives the
#    residual-first output for every starting noise. *Hint:* scale $(1-\bar\alpha_k, \bar\beta_k)$ at node $k$ by any $\lambda_k > 0$ with
#    $\lambda_k(1-\bar\alpha_k) \le 1$; leave the first and last nodes alone.
# 3. **Rescue noise-first.** Stop the noise stage at $\bar\beta_\text{min} > 0$ instead of 0: nodes $(1, b_k)$ down to $(1, \bar\beta_\text{min})$,
#    then the residual at $\bar\beta_\text{min}$, then the rest of the noise. Plot the agreement with the reference map of
#    section 4 against $\bar\beta_\text{min}$ (20 steps per stage). *Hint:* which $\sigma'$ values does the residual stage now visit?
#    What happens to them as $\bar\beta_\text{min} \to 0$?
# 4. **Wrong starting noise.** In the lab, set the start noise σ to 0.5 while `sum_scale` = 1. Prove that the oracle
#    is still exact. For the dataset-ideal predictor, how do the photo frequencies of section 4 change as σ → 0?
#    *Hint:* at $\bar\alpha = 1$, $\hat\epsilon = (\sigma/\bar\beta_{T-1})\,z$, so the first step lands at $y = \bar I + \sigma'_1(\sigma/\bar\beta_{T-1})\,z$.
# 5. **Speed with the power family.** For 5 simultaneous steps, find the $k_\alpha \in \{0, 0.5, 1, 2, 4\}$ ($k_\beta = 1$) whose map agrees
#    best with the reference; print $\log\sigma'$ at the nodes of each. *Hint:* VE samplers work well with nodes roughly
#    evenly spaced in $\log\sigma'$ (Karras et al., 2022); the first finite node should not be too small.
# 6. **η and the map.** Repeat section 4's table for the simultaneous path with η = 1 (`sample` from `drdd_edu.samplers`
#    with `ideal.on_schedule(schedule)` and a seeded generator). Does the agreement with the η = 0 reference map go to 1
#    as the steps grow? Do the photo frequencies still approach 1/4? *Hint:* with η > 0 the map $z \mapsto$ photo is no
#    longer a function of $z$ alone, but the marginal at every node is still the forward one.
#
# ### Graded exercises
#
# The next two exercises are graded automatically (`drdd-edu assignments grade`). In your copy each function body
# is `raise NotImplementedError()`: replace it with your code, keeping the name and signature. The test cell below
# each exercise shows some checks; the grader adds hidden ones (other sizes, float32, bad input, and a check that
# you did not call the function you re-implement) and restores the test cells.
#
# **Exercise A (2 points) — the $P(x, k)$ weights.** Write `my_power_weights(T, power, increasing)` returning the
# normalised weights of section 1 as a float64 tensor of shape `(T,)`: $w_{t'} \propto (t'/T)^k$ for $t' = 1, \dots, T$, summing
# to 1, in this order if `increasing` is true and reversed (largest weight first) otherwise. Raise a `ValueError` if
# `T` is not an `int` ≥ 1 or if `power` is not a finite number ≥ 0. Do not call `drdd_edu.schedules.power_weights` or
# `rddm_schedule` (a hidden test checks). *Hint:* `torch.arange(1, T + 1, dtype=torch.float64)` and `torch.flip`; the
# reference schedule is $\alpha_t$ = `my_power_weights(T, 1, False)`, $\beta_t^2$ = $s\,\cdot$ `my_power_weights(T, 1, True)`.


# %% nbgrader={"grade": false, "grade_id": "ex03-power-weights", "locked": false, "solution": true, "schema_version": 3}
def my_power_weights(T, power, increasing):
    """Normalised P(x, k) weights w_{t'} ∝ (t'/T)^k, t' = 1 … T: float64, shape (T,), sum 1."""
    ### BEGIN SOLUTION
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    if not (math.isfinite(power) and power >= 0):
        raise ValueError(f"power must be a finite number >= 0, got {power!r}")
    w = (torch.arange(1, T + 1, dtype=torch.float64) / T) ** power
    w = w / w.sum()
    return w if increasing else torch.flip(w, dims=[0])
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex03-power-weights-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
from drdd_edu.schedules import power_weights

for k_ex in (0.0, 0.5, 1.0, 3.0):
    for inc_ex in (True, False):
        w_ex = my_power_weights(T, k_ex, inc_ex)
        assert w_ex.shape == (T,) and w_ex.dtype == torch.float64, (w_ex.shape, w_ex.dtype)
        assert abs(float(w_ex.sum()) - 1) < FLOAT64_TOL
        assert torch.allclose(w_ex, power_weights(T, k_ex, inc_ex), rtol=0, atol=1e-15), (k_ex, inc_ex)
# k = 1, decreasing: the reference α_t = (T + 1 − t') / (T(T + 1)/2)
t_prime_ex = torch.arange(1, T + 1, dtype=torch.float64)
assert torch.allclose(my_power_weights(T, 1.0, False), (T + 1 - t_prime_ex) / (T * (T + 1) / 2), rtol=1e-12, atol=0)
# the cumulative sums are the schedule's ᾱ_t (and β̄_t² / s)
assert torch.allclose(torch.cumsum(my_power_weights(T, 4.0, False), 0), family[4.0].alphas_cumsum, atol=1e-12)
assert torch.allclose(torch.cumsum(my_power_weights(T, 0.5, True), 0), family[0.5].betas2_cumsum, atol=1e-12)
print("Exercise A: visible checks passed")
### BEGIN HIDDEN TESTS
import drdd_edu.schedules as schedules_h

for T_h, k_h in ((1, 2.0), (2, 0.0), (7, 1.5), (50, 4.0), (5000, 0.25)):
    for inc_h in (True, False):
        w_h = my_power_weights(T_h, k_h, inc_h)
        assert w_h.dtype == torch.float64 and w_h.shape == (T_h,), (T_h, k_h)
        assert torch.allclose(w_h, power_weights(T_h, k_h, inc_h), rtol=1e-12, atol=1e-15), (T_h, k_h, inc_h)
assert torch.allclose(my_power_weights(4, 0.0, True), torch.full((4,), 0.25, dtype=torch.float64), atol=1e-15)
assert torch.allclose(my_power_weights(3, 1, True), torch.tensor([1 / 6, 2 / 6, 3 / 6], dtype=torch.float64), atol=1e-15)
assert (torch.diff(my_power_weights(20, 2.0, True)) > 0).all() and (torch.diff(my_power_weights(20, 2.0, False)) < 0).all()
for bad_h in ((0, 1.0), (-3, 1.0), (2.5, 1.0), (True, 1.0), (10, -0.5), (10, math.nan), (10, math.inf)):
    try:
        my_power_weights(bad_h[0], bad_h[1], True)
    except ValueError:
        pass
    else:
        raise AssertionError(f"my_power_weights{bad_h + (True,)} must raise ValueError")


def forbidden_h(*args, **kwargs):
    raise AssertionError("my_power_weights must not call the library's power_weights or rddm_schedule")


saved_h = (schedules_h.power_weights, globals().get("power_weights"), globals().get("rddm_schedule"))
expected_h = power_weights(30, 1.5, False)
try:
    schedules_h.power_weights = forbidden_h
    globals()["power_weights"] = globals()["rddm_schedule"] = forbidden_h
    mine_h = my_power_weights(30, 1.5, False)
finally:
    schedules_h.power_weights = saved_h[0]
    globals()["power_weights"], globals()["rddm_schedule"] = saved_h[1], saved_h[2]
assert torch.allclose(mine_h, expected_h, rtol=1e-12, atol=1e-15)
### END HIDDEN TESTS

# %% [markdown]
# **Exercise B (2 points) — the noise-to-signal ratio along a path.** Write `my_sigma_prime(path)`: for a path of
# shape `(N+1, 2)` with rows $(\bar\alpha, \bar\beta)$ (as `removal_path` returns it), return $\sigma' = \bar\beta/(1-\bar\alpha)$ at every node, shape
# `(N+1,)`, in the dtype of `path`, with the conventions of section 3: $\sigma' = +\infty$ where $\bar\alpha = 1$ and $\bar\beta > 0$, NaN at
# the node $(1, 0)$ where $\sigma' = 0/0$, and $0$ at $(0, 0)$. Raise a `ValueError` for a path that is not of shape `(N+1, 2)`
# with $N \ge 1$, or has an $\bar\alpha$ outside $[0, 1]$ or a negative $\bar\beta$. Do not call the notebook's `sigma_prime`. *Hint:*
# `torch.where`; the visible test then checks section 3's claim that the sampler is DDIM's step in the variable
# $y = (x - \bar\alpha I_\text{in})/(1-\bar\alpha)$, using **your** $\sigma'$.


# %% nbgrader={"grade": false, "grade_id": "ex03-sigma-prime", "locked": false, "solution": true, "schema_version": 3}
def my_sigma_prime(path):
    """σ' = β̄/(1 − ᾱ) per node of an (N+1, 2) path: shape (N+1,); inf at ᾱ = 1 < β̄·∞, nan at (1, 0)."""
    ### BEGIN SOLUTION
    if path.ndim != 2 or path.shape[0] < 2 or path.shape[1] != 2:
        raise ValueError(f"path must have shape (N+1, 2) with N >= 1, got {tuple(path.shape)}")
    a, b = path[:, 0], path[:, 1]
    if not bool(((a >= 0) & (a <= 1)).all()) or not bool((b >= 0).all()):
        raise ValueError("path nodes need 0 <= ᾱ <= 1 and β̄ >= 0")
    inf, nan = torch.full_like(b, math.inf), torch.full_like(b, math.nan)
    at_one = torch.where(b > 0, inf, nan)
    return torch.where(a < 1, b / torch.where(a < 1, 1 - a, torch.ones_like(a)), at_one)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex03-sigma-prime-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
for order_ex in PATH_ORDERS:
    path_ex = removal_path(ref_schedule, 5, order_ex)
    mine_ex, ref_ex = my_sigma_prime(path_ex), sigma_prime(path_ex)
    assert mine_ex.shape == (path_ex.shape[0],) and mine_ex.dtype == path_ex.dtype, (mine_ex.shape, mine_ex.dtype)
    assert torch.allclose(mine_ex, ref_ex, rtol=1e-12, atol=0, equal_nan=True), order_ex
# check 1 of section 3: path B has the σ' sequence of path A
assert torch.allclose(my_sigma_prime(path_a)[1:], my_sigma_prime(path_b)[1:], rtol=1e-12, atol=0)
# with your σ', the path sampler is DDIM's step for y = (x − ᾱ·I_in)/(1 − ᾱ): y' = Î_0 + σ'_next·(y − Î_0)/σ'
x_in_ex, z_ex = X_IN[:8].double(), Z[:8].double()
for order_ex in ("simultaneous", "residual_first"):
    path_ex = removal_path(ref_schedule, 10, order_ex)
    sp_ex = my_sigma_prime(path_ex)
    for st in sample_path_iter(ideal, x_in_ex, path_ex, x_start=x_in_ex + float(path_ex[0, 1]) * z_ex):
        if not (0 < float(sp_ex[st.i]) < math.inf):  # the first node(s): ᾱ = 1, y undefined
            continue
        y_ex = (st.x_t - st.alpha_bar * x_in_ex) / (1 - st.alpha_bar)
        y_next_ex = (st.x_next - st.alpha_bar_next * x_in_ex) / (1 - st.alpha_bar_next)
        ddim_ex = st.pred_x0 + float(sp_ex[st.i + 1]) * (y_ex - st.pred_x0) / float(sp_ex[st.i])
        assert float((y_next_ex - ddim_ex).abs().max()) < 1e-8, (order_ex, st.i)
print("Exercise B: visible checks passed")
### BEGIN HIDDEN TESTS
for sched_h in (rddm_schedule(T, 1.0, alpha_power=3.0), rddm_schedule(T, 0.01), rddm_schedule(20, 1.0, beta_power=0.5)):
    for order_h in PATH_ORDERS:
        for steps_h in (1, 2, 7):
            path_h = removal_path(sched_h, steps_h, order_h)
            assert torch.allclose(my_sigma_prime(path_h), sigma_prime(path_h), rtol=1e-12, atol=0, equal_nan=True)
            mine32_h = my_sigma_prime(path_h.float())
            assert mine32_h.dtype == torch.float32
            assert torch.allclose(mine32_h, sigma_prime(path_h.float()), rtol=1e-6, atol=0, equal_nan=True)
# hand-made nodes: (1, 0.5) → ∞, (1, 0) → NaN, (0.5, 0.25) → 0.5, (0, 0) → 0
hand_h = my_sigma_prime(torch.tensor([[1.0, 0.5], [1.0, 0.0], [0.5, 0.25], [0.0, 0.0]], dtype=torch.float64))
assert math.isinf(hand_h[0]) and hand_h[0] > 0 and math.isnan(hand_h[1])
assert abs(float(hand_h[2]) - 0.5) < 1e-15 and abs(float(hand_h[3])) < 1e-300
# scaling (1 − ᾱ, β̄) of a node by λ > 0 keeps its σ'
lam_h = torch.tensor([1.0, 0.3, 2.0, 0.7, 1.5, 1.0], dtype=torch.float64)
base_h = removal_path(ref_schedule, 5, "simultaneous")
scaled_h = torch.stack([1 - lam_h * (1 - base_h[:, 0]), lam_h * base_h[:, 1]], dim=1)
scaled_h[:, 0] = scaled_h[:, 0].clamp(0.0, 1.0)
keep_h = (1 - base_h[:, 0]) * lam_h <= 1
assert torch.allclose(my_sigma_prime(scaled_h)[keep_h], my_sigma_prime(base_h)[keep_h], rtol=1e-12, equal_nan=True)
for bad_h in (torch.zeros(3), torch.zeros(1, 2), torch.zeros(4, 3), torch.tensor([[1.2, 0.5], [0.0, 0.0]]),
              torch.tensor([[1.0, -0.1], [0.0, 0.0]]), torch.tensor([[-0.1, 0.5], [0.0, 0.0]])):
    try:
        my_sigma_prime(bad_h)
    except ValueError:
        pass
    else:
        raise AssertionError(f"a path of shape {tuple(bad_h.shape)} with values {bad_h.tolist()} must raise ValueError")
saved_sp_h = globals()["sigma_prime"]
expected_h = sigma_prime(removal_path(ref_schedule, 4, "residual_first"))


def forbidden_sp_h(*args, **kwargs):
    raise AssertionError("my_sigma_prime must not call the notebook's sigma_prime")


try:
    globals()["sigma_prime"] = forbidden_sp_h
    mine_h = my_sigma_prime(removal_path(ref_schedule, 4, "residual_first"))
finally:
    globals()["sigma_prime"] = saved_sp_h
assert torch.allclose(mine_h, expected_h, rtol=1e-12, equal_nan=True)
### END HIDDEN TESTS
