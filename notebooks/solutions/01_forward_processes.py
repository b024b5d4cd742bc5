# %% [markdown]
# ### Solution 1 — Predict, then check
#
# By hand, with $T = 1000$ and `sum_scale` $= 0.1$: the reference schedule adds the whole residual,
# so $\bar\alpha_{999} = 1$; its noise variances sum to `sum_scale`, so
# $\bar\beta_{999} = \sqrt{0.1} \approx 0.3162$. At $t = 499$ ($t' = 500$ steps done),
# $\bar\alpha_{499} = 1 - \frac{(1000-500)(1000-500+1)}{1000\cdot 1001} = 1 - \frac{250\,500}{1\,001\,000}
# \approx 0.7498$: three quarters of the residual is in after half of the steps, because
# $\alpha_t$ decreases linearly (the residual comes early). `sum_scale` does not enter $\bar\alpha$.

# %%
sched_s1 = rddm_schedule(1000, sum_scale=0.1)
by_hand = {"ᾱ_999": 1.0, "β̄_999": math.sqrt(0.1), "ᾱ_499": 1 - 500 * 501 / (1000 * 1001)}
library = {
    "ᾱ_999": float(sched_s1.alphas_cumsum[999]),
    "β̄_999": float(sched_s1.betas_cumsum[999]),
    "ᾱ_499": float(sched_s1.alphas_cumsum[499]),
}
for key, value in by_hand.items():
    print(f"{key}: by hand {value:.6f}, library {library[key]:.6f}")
    assert abs(library[key] - value) < 1e-12, key
assert abs(by_hand["ᾱ_499"] - 0.74975) < 1e-5
# sum_scale changes only the noise: the same ᾱ as with sum_scale = 1
assert torch.equal(sched_s1.alphas_cumsum, rddm_schedule(1000, sum_scale=1.0).alphas_cumsum)

# %% [markdown]
# ### Solution 2 — The per-step DDIM-converted coefficients
#
# The per-step coefficients are the increments of the cumulative ones. With
# $\bar\alpha_t = 1-\sqrt{\gamma_t}$ and $\bar\beta_t^2 = 1-\gamma_t$ (and $\gamma_{-1} = 1$):
#
# $$\alpha_t = \sqrt{\gamma_{t-1}} - \sqrt{\gamma_t} = \sqrt{\gamma_{t-1}}\,\big(1-\sqrt{1-b_t}\big)
#   \approx \tfrac12\sqrt{\gamma_{t-1}}\,b_t,\qquad \beta_t^2 = \gamma_{t-1} - \gamma_t = \gamma_{t-1}\,b_t .$$
#
# Each is a product of a growing factor ($b_t$ rises linearly from $10^{-4}$ to $0.02$) and a
# shrinking one ($\gamma_{t-1}$ decays towards 0), so **neither is monotone**: both rise, peak in the
# middle of the schedule and fall again. $\alpha_t$ peaks at $t = 312$ and $\beta_t^2$ earlier, at
# $t = 219$ (it carries $\gamma_{t-1}$ instead of $\sqrt{\gamma_{t-1}}$, which decays faster). The
# reference restoration schedule is different in kind: its $\alpha_t$ *decreases* linearly from the
# first step (the residual comes early) and its $\beta_t^2$ increases linearly.

# %%
sched_s2 = ddim_converted_schedule(1000)
g_prev = torch.cat([torch.ones(1, dtype=torch.float64), gammas[:-1]])  # γ_{t−1}, with γ_{−1} = 1
assert torch.allclose(sched_s2.alphas, g_prev.sqrt() - gammas.sqrt(), rtol=0, atol=1e-14)
assert torch.allclose(sched_s2.betas2, g_prev * ddpm_b, rtol=1e-9, atol=1e-15)
peak_a, peak_b = int(sched_s2.alphas.argmax()), int(sched_s2.betas2.argmax())
print(f"α_t peaks at t = {peak_a} ({float(sched_s2.alphas[peak_a]):.2e}), β_t² at t = {peak_b}")
assert (peak_a, peak_b) == (312, 219)
for name, coef, peak in (("α_t", sched_s2.alphas, peak_a), ("β_t²", sched_s2.betas2, peak_b)):
    assert (torch.diff(coef[: peak + 1]) > 0).all() and (torch.diff(coef[peak:]) < 0).all(), name
assert (torch.diff(rddm_schedule(1000).alphas) < 0).all()  # the reference: monotone decreasing

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(sched_s2.alphas * 1000, label=r"$T\cdot\alpha_t$ (ddim-converted)")
ax.plot(sched_s2.betas2 * 1000, label=r"$T\cdot\beta_t^2$ (ddim-converted)")
ax.plot(rddm_schedule(1000).alphas * 1000, "--", label=r"$T\cdot\alpha_t$ (reference)")
ax.set(xlabel="t", title="per-step coefficients")
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, "01_sol_ddim_per_step")
plt.show()
plt.close(fig)

# %% [markdown]
# ### Solution 3 — DDIM-converted RDDM with an input
#
# Insert $\bar\alpha_t = 1-\sqrt{\gamma_t}$ and $\bar\beta_t = \sqrt{1-\gamma_t}$ into the marginal:
#
# $$I_t = I_0 + (1-\sqrt{\gamma_t})(I_\text{in} - I_0) + \sqrt{1-\gamma_t}\,\epsilon
#   = \sqrt{\gamma_t}\,I_0 + (1-\sqrt{\gamma_t})\,I_\text{in} + \sqrt{1-\gamma_t}\,\epsilon,$$
#
# so $I_t$ is Gaussian with mean $\sqrt{\gamma_t}I_0 + (1-\sqrt{\gamma_t})I_\text{in}$ (a blend that slides
# from $I_0$ to $I_\text{in}$) and standard deviation $\sqrt{1-\gamma_t}$ per pixel. At the last step
# $\bar\alpha_{999} = 0.99365$: $I_{999} \approx 0.99365\,I_\text{in} + 0.00635\,I_0 + 0.99998\,\epsilon$, i.e.
# essentially **the input plus unit-variance noise**. A sampler would start there, at
# $I_\text{in} + z$ — like the reference schedule with `sum_scale` = 1 — except that 0.6 % of the
# unknown $I_0$ is still in the true end point; starting at $I_\text{in} + z$ ignores that trace, a
# small mismatch between the training distribution and the sampler's start.

# %%
sched_s3 = ddim_converted_schedule(1000)
seed_everything(31)
for t in (0, 300, 999):
    draws = q_sample(x0_toy.expand(n_mc, -1, -1, -1), x_in_toy.expand(n_mc, -1, -1, -1), t, sched_s3)
    g_t = gammas[t]
    mean_s3 = g_t.sqrt() * x0_toy[0] + (1 - g_t.sqrt()) * x_in_toy[0]
    check_moments(draws.mean(0), draws.std(0), mean_s3, (1 - g_t).sqrt(), n_mc, f"ddim-converted, I_in ≠ 0, t={t}")
# the end point: the input (99.4 %) plus a trace of I_0 plus unit noise
a_end = float(sched_s3.alphas_cumsum[-1])
assert abs(a_end - 0.99365) < 5e-6 and abs(float(sched_s3.betas_cumsum[-1]) - 1) < 1e-4
trace = (1 - a_end) * (x0_toy - x_in_toy)  # the part of the mean a start at I_in + z misses
print(f"I_999 mean − I_in = (1 − ᾱ_999)(I_0 − I_in): at most {float(trace.abs().max()):.4f} per pixel")
assert float(trace.abs().max()) < 0.01

# %% [markdown]
# ### Solution 4 — SM-N in float32
#
# In float32, $I_t$ itself is stored with a relative rounding error of about $2^{-24} \approx 6\cdot10^{-8}$,
# i.e. an absolute error of about $6\cdot10^{-8}\,|I_t|$ per pixel. The conversion
# $\hat I_\text{res} = (I_t - I_\text{in} - \bar\beta_t\hat\epsilon)/(\bar\alpha_t - 1)$ divides that rounding error by
# $1-\bar\alpha_t$, which is tiny at the end of the reference schedule
# ($1-\bar\alpha_{998} = 2/(1000\cdot1001) \approx 2\cdot10^{-6}$): the error is multiplied by the gain
# $\bar\beta_t/(1-\bar\alpha_t)$ ($\bar\beta_t \approx 1$ here), which grows from $1.1\cdot10^4$ at $t = 990$ to
# $5\cdot10^5$ at $t = 998$. So even the **exact** noise gives a residual that is wrong by
# $\approx \text{gain}\cdot 6\cdot10^{-8}\,|I_t|$: from $3\cdot10^{-3}$ at $t = 990$ to about $0.16$ at $t = 998$
# — 8 % of the residual's range $[-2, 2]$, visible in an image. The measured errors below match this
# estimate within a factor of 1.3. (In float64 the same gain multiplies $10^{-16}$: harmless, as in §5.)

# %%
rows_s4 = []
for t in range(990, 999):
    t_s4 = torch.tensor([t])
    x_t32 = q_sample(x0_img, x_in_img, t_s4, sched_r1, noise=eps_img)  # float32, like the images
    assert x_t32.dtype == torch.float32
    err = float((predict_res_from_noise(x_t32, x_in_img, eps_img, t_s4, sched_r1) - res_img).abs().max())
    gain = float(sched_r1.betas_cumsum[t] / (1 - sched_r1.alphas_cumsum[t]))
    predicted = gain * 2.0**-24 * float(x_t32.abs().max())  # gain × rounding error of I_t
    rows_s4.append((t, err, gain, predicted))
    print(f"t={t}: gain {gain:9.3g}, max |Î_res − I_res| = {err:.2e} (estimate {predicted:.2e})")
    assert 0.2 < err / predicted < 3, t  # the gain times float32 rounding explains the error
errs = [r[1] for r in rows_s4]
assert errs[-1] > 20 * errs[0] and errs[-1] > 0.05  # large at the end, where 1 − ᾱ_t → 0

# %% [markdown]
# ### Solution 5 — A two-phase RDDM schedule
#
# Phase 1 (the first half) adds almost all the noise and no residual; phase 2 adds the whole residual
# with only a sliver $\delta$ of noise variance. In the $(\bar\alpha, \bar\beta)$ plane the path goes (almost)
# straight up from $(0, 0)$ to $(0, \sqrt{1-\delta})$ and then (almost) horizontally to $(1, 1)$ —
# DRDD's two segments, traversed by one process.
#
# **Why not exactly zero noise in phase 2?** RDDM's forward process is a chain of *Gaussian* steps
# $q(I_t\mid I_{t-1}) = \mathcal N(I_{t-1} + \alpha_t I_\text{res}, \beta_t^2 I)$. A step with $\beta_t = 0$ is
# deterministic: it has no density, so the step's posterior $q(I_{t-1}\mid I_t, I_0)$ and its term in
# RDDM's variational bound (a KL between Gaussians that divides by the step's variance) are undefined;
# `Schedule` refuses it and keeps $\bar\beta_t$ strictly increasing. DRDD can have an exactly horizontal
# segment because its stage 2 is *not* a step of the noising chain: it is a separate process, at a
# fixed noise level $\sigma$ drawn once, with its own network. The RDDM imitation can only approach it
# with $\delta \to 0$, and it still asks one network to do both jobs.

# %%
from drdd_edu.schedules import Schedule

T_s5, half, delta = 1000, 500, 1e-4
f64 = {"dtype": torch.float64}
alphas_s5 = torch.cat([torch.zeros(half, **f64), torch.full((T_s5 - half,), 1 / (T_s5 - half), **f64)])
betas2_s5 = torch.cat([torch.full((half,), (1 - delta) / half, **f64), torch.full((T_s5 - half,), delta / (T_s5 - half), **f64)])
two_phase = Schedule(alphas_s5, torch.cumsum(alphas_s5, 0), betas2_s5, torch.cumsum(betas2_s5, 0), name="two-phase")
print(two_phase)
assert abs(float(two_phase.alphas_cumsum[-1]) - 1) < 1e-12 and abs(two_phase.sum_scale - 1) < 1e-12
assert float(two_phase.alphas_cumsum[half - 1]) == 0.0  # float-exact: zero (no residual in phase 1)
assert abs(float(two_phase.betas_cumsum[half - 1]) - math.sqrt(1 - delta)) < 1e-12
# exactly zero noise in phase 2 is refused, with the reason
try:
    zero = betas2_s5.clone()
    zero[half:] = 0.0
    Schedule(alphas_s5, torch.cumsum(alphas_s5, 0), zero, torch.cumsum(zero, 0))
except ValueError as err:
    print("zero noise increments:", err)
    assert "betas2 must be > 0" in str(err)
else:
    raise AssertionError("a schedule with zero noise increments must be refused")
# the marginal still works: at the end of phase 1, I_t = I_0 + β̄ ε (pure noise stage, like DRDD's stage 1)
assert torch.allclose(q_sample(x0_img, x_in_img, half - 1, two_phase, noise=eps_img),
                      x0_img + math.sqrt(1 - delta) * eps_img, atol=1e-6)

fig, ax = plt.subplots(figsize=(4.6, 3.6))
ax.plot(two_phase.alphas_cumsum, two_phase.betas_cumsum, "C3", lw=2, label="two-phase RDDM")
ax.plot(sched_r1.alphas_cumsum, sched_r1.betas_cumsum, "C0", label="RDDM reference, sum_scale 1")
ax.plot([0, 0, 1], [0, 1, 1], "k:", lw=2, label=r"DRDD stages 1 and 2 ($\sigma = 1$)")
ax.set(xlabel=r"$\bar\alpha$", ylabel=r"$\bar\beta$", title="forward paths", xlim=(-0.05, 1.05), ylim=(-0.05, 1.1))
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
savefig(fig, "01_sol_two_phase_path")
plt.show()
plt.close(fig)

# %% [markdown]
# ### Solution 6 — Noise shrinks differences, also between unequal variances
#
# Adding independent $\mathcal N(0, \sigma^2)$ noise to a Gaussian adds $\sigma^2$ to its variance, so
# $P_\sigma = \mathcal N(\mu_P, v_P)$, $Q_\sigma = \mathcal N(\mu_Q, v_Q)$ with $v_i = s_i^2 + \sigma^2$, and
#
# $$\mathrm{KL}(P_\sigma\|Q_\sigma) = \tfrac12\Big(\log\frac{v_Q}{v_P} + \frac{v_P + (\mu_P-\mu_Q)^2}{v_Q} - 1\Big)
#   = \tfrac12\,(r - 1 - \log r) + \frac{(\mu_P-\mu_Q)^2}{2 v_Q},\qquad r = \frac{v_P}{v_Q}.$$
#
# Both terms fall as $\sigma$ grows: the mean term because $v_Q$ grows; the variance term because
# $r - 1 - \log r \ge 0$ vanishes at $r = 1$ and grows as $r$ moves away from 1, while the noise moves
# $r$ monotonically towards 1 (its derivative in $\sigma^2$ has the fixed sign of $s_Q^2 - s_P^2$). With $s_P = s_Q$ the first term vanishes and we
# recover the equal-variance formula $(\mu_P-\mu_Q)^2/(2(s^2+\sigma^2))$. Notebook 05 §1 proves the
# general statement (Proposition 3.1) for any pair of distributions. We check the closed form against
# `torch.distributions`, by Monte Carlo ($\mathrm{KL} = \mathbb E_{x\sim P_\sigma}[\log p_\sigma(x) - \log q_\sigma(x)]$),
# and the strict decrease on a grid.

# %%
from torch.distributions import Normal, kl_divergence

mu_p, mu_q, s_p, s_q = 0.4, -0.3, 0.2, 0.5
f64 = {"dtype": torch.float64}


def kl_unequal(sigma: float, s_p: float = s_p, s_q: float = s_q) -> float:
    """KL(N(μ_P, s_P² + σ²) ‖ N(μ_Q, s_Q² + σ²)) in closed form."""
    v_p, v_q = s_p**2 + sigma**2, s_q**2 + sigma**2
    return 0.5 * (math.log(v_q / v_p) + (v_p + (mu_p - mu_q) ** 2) / v_q - 1)


grid_s6 = [0.1 * k for k in range(31)]
kl_grid = [kl_unequal(sg) for sg in grid_s6]
assert all(k1 > k2 for k1, k2 in zip(kl_grid[:-1], kl_grid[1:], strict=True)), "KL must strictly decrease"
gen = seed_everything(36)
n_kl = pick(200_000, 40_000)
check_sigmas = (0.0, 0.25, 0.5, 1.0, 2.0)
z_star_s6 = z_threshold(len(check_sigmas))
for sg in check_sigmas:
    p_s = Normal(torch.tensor(mu_p, **f64), torch.tensor(math.sqrt(s_p**2 + sg**2), **f64))
    q_s = Normal(torch.tensor(mu_q, **f64), torch.tensor(math.sqrt(s_q**2 + sg**2), **f64))
    assert abs(float(kl_divergence(p_s, q_s)) - kl_unequal(sg)) < 1e-12  # an independent implementation
    x = p_s.sample((n_kl,))
    log_ratio = p_s.log_prob(x) - q_s.log_prob(x)
    z = abs(float(log_ratio.mean()) - kl_unequal(sg)) / (float(log_ratio.std()) / math.sqrt(n_kl))
    print(f"σ = {sg:4.2f}: KL closed form {kl_unequal(sg):.4f}, Monte Carlo {float(log_ratio.mean()):.4f} (|z| = {z:.2f})")
    assert z < z_star_s6
# equal variances: the formula reduces to (μ_P − μ_Q)² / (2(s² + σ²))
assert abs(kl_unequal(0.7, s_q=s_p) - (mu_p - mu_q) ** 2 / (2 * (s_p**2 + 0.49))) < 1e-12
