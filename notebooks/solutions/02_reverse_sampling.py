# %% [markdown]
# ### Solution 1 — Posterior at the first step
#
# $\tilde\sigma^2 = \bar\beta_s^2(\bar\beta_t^2 - \bar\beta_s^2)/\bar\beta_t^2$ is a ratio of a product of two $\bar\beta^2$'s to one
# $\bar\beta^2$, so it is homogeneous of degree one in the $\bar\beta^2$'s. Every $\bar\beta^2$ is proportional to `sum_scale`
# (the noise weights are normalised to sum to `sum_scale`), hence $\tilde\sigma^2 \propto$ `sum_scale` and
# $\tilde\sigma \propto \sqrt{\texttt{sum\_scale}}$: dividing `sum_scale` by 100 divides $\tilde\sigma$ by 10. For $(999, 899)$ with
# `sum_scale = 1`, $\bar\beta_{999}^2 = 1$ and $\bar\beta_{899}^2 = \frac{900\cdot 901}{1000\cdot 1001} \approx 0.810$ (the linear noise
# weights summed up to $t' = 900$), so $\tilde\sigma^2 \approx 0.810 \cdot 0.190 \approx 0.154$, $\tilde\sigma \approx 0.392$; with
# `sum_scale = 0.01`, $\tilde\sigma \approx 0.0392$.

# %%
sol1 = {}
for scale in (1.0, 0.01):
    sch = rddm_schedule(T, sum_scale=scale)
    bt, bs = float(sch.betas2_cumsum[999]), float(sch.betas2_cumsum[899])
    sol1[scale] = posterior_sigma(sch, 999, 899, eta=1.0)
    assert abs(sol1[scale] ** 2 - bs * (bt - bs) / bt) < FLOAT64_TOL
    print(f"sum_scale = {scale}: β̄_999² = {bt:.4f}, β̄_899² = {bs:.4f}, σ̃ = {sol1[scale]:.5f}")
b2_899 = 900 * 901 / (1000 * 1001)  # the linear noise weights, summed in closed form
assert abs(sol1[1.0] - math.sqrt(b2_899 * (1 - b2_899))) < FLOAT64_TOL
assert abs(sol1[1.0] / sol1[0.01] - 10.0) < 1e-9  # σ̃ ∝ √sum_scale

# %% [markdown]
# ### Solution 2 — Modes under an imperfect predictor
#
# We add the same fixed error $\delta$ (RMS 0.01) to whatever the oracle's head(s) predict and run the
# three modes on the DDIM-converted schedule (SM-N is undefined on the restoration schedule) from one
# common starting state, 5 steps, $\eta = 0$. At $t = 999$, $|\bar\alpha_t - 1| = \sqrt{\gamma_{999}} \approx 0.0064$ while
# $\bar\beta_t \approx 1$:
#
# * **SM-Res** derives $\hat\epsilon$; the residual error reaches it multiplied by $|\bar\alpha_t-1|/\bar\beta_t \approx 0.006$, i.e. hardly at all;
#   the step moves the state by $(\bar\alpha_t - \bar\alpha_s)\hat I_\text{res}$, only ≈ 0.03 of the residual error.
# * **SM-N** derives $\hat I_\text{res}$ by *dividing* by $\bar\alpha_t - 1$: the noise error is multiplied by
#   $\bar\beta_t/|\bar\alpha_t-1| \approx 157$, and the first step inherits several times $\delta$.
# * **SM-Res-N** has no derived term, so no amplification: the first step moves by
#   $(\bar\alpha_t-\bar\alpha_s)\delta + (\bar\beta_t-\bar\beta_s)\delta$, a few hundredths of $\delta$.
#
# So SM-N is by far the most sensitive at the first step (about two orders of magnitude here), because
# at high noise the state carries almost no signal and recovering the residual from the noise is an
# ill-conditioned division. The ratios swap as $t$ falls: at small $t$, $\bar\beta_t/|\bar\alpha_t - 1| < 1$ and SM-Res
# becomes the mode that amplifies (the printed table). The first-step damage does not last here: the
# oracle reads the state it is shown, so later calls correct earlier errors and the *final* error is set
# by the last call. SM-Res ends at exactly $I_\text{in} - (I_\text{res} + \delta) = I_0 - \delta$; SM-N's last call is at
# $t = 199$, where $\bar\beta_t/|\bar\alpha_t - 1| \approx 0.72 < 1$, and it ends with a *smaller* error. A trained network is not
# an oracle: an early SM-N error moves the state off the data, and later calls need not undo it.


# %%
def perturbed_oracle(mode: str, delta: torch.Tensor):
    oracle = OraclePredictor(x0_img, mode).on_schedule(ddim)

    def model(x, t, x_in):
        out = oracle(x, t, x_in)
        return (out[0] + delta, out[1] + delta) if mode == "res_noise" else out + delta

    return model


delta = 0.01 * torch.randn(x0_img.shape, generator=seed_everything(20))
start = xin_img + ddim.noise_strength * torch.randn(xin_img.shape, generator=seed_everything(21))
exact = list(
    sample_iter(OraclePredictor(x0_img).on_schedule(ddim), xin_img, ddim, 5, x_start=start)
)
first_err, final_err = {}, {}
for mode in MODES:
    states = list(
        sample_iter(perturbed_oracle(mode, delta), xin_img, ddim, 5, mode=mode, x_start=start)
    )
    first_err[mode] = float((states[0].x_next - exact[0].x_next).abs().max() / delta.abs().max())
    final_err[mode] = float((states[-1].x_next - x0_img).abs().max() / delta.abs().max())
    print(
        f"{mode:9s}: first-step error {first_err[mode]:.3f}·max|δ|, final error {final_err[mode]:.3f}·max|δ|"
    )
for t, _s in timestep_pairs(T, 5):
    gap = 1 - float(ddim.alphas_cumsum[t])
    b = float(ddim.betas_cumsum[t])
    print(f"t = {t:3d}: |ᾱ−1|/β̄ (SM-Res) = {gap / b:8.4f},  β̄/|ᾱ−1| (SM-N) = {b / gap:8.2f}")
assert first_err["noise"] > 50 * max(first_err["res"], first_err["res_noise"])
assert abs(final_err["res"] - 1) < 1e-3  # SM-Res ends at I_0 − δ
assert final_err["noise"] < 1 < first_err["noise"]  # amplified early, corrected by the last call

# %% [markdown]
# ### Solution 3 — Intermediate η
#
# Section 3's proof holds for any $\sigma$, so DDIM with $\eta = 0.5$ is reproduced by RDDM's step given DDIM's
# $\sigma$ (`rddm_with_ddim_sigma`, checked below in float64). But no single RDDM $\eta'$ matches it:
# $\eta'\tilde\sigma^2 = \eta^2\tilde\sigma^2/\gamma_s$ needs $\eta' = \eta^2/\gamma_s = 0.25/\gamma_s$, which changes from step to step. On
# the 10-step grid $\gamma_s$ runs from $\approx 3\cdot 10^{-4}$ ($s = 899$) to $\approx 0.90$ ($s = 99$), so $\eta'$ would have to be
# in the hundreds early on — impossible, RDDM's $\eta' \le 1$ caps its noise at its own posterior — and
# $\eta' \approx 0.28$ near the end. Only where $\gamma_s \ge 0.25$ does an admissible $\eta'$ exist.

# %%
pairs10 = timestep_pairs(T, 10)
ref_half = ddim_textbook(random_eps, x_T, pairs10, gammas, eta=0.5, generator=seed_everything(22))
rd_half = rddm_with_ddim_sigma(random_eps, x_T, pairs10, 0.5, seed_everything(22))
assert max_rel_gap(rd_half, ref_half) < FLOAT64_TOL
matched = 0
for t, s in pairs10[:-1]:
    eta_needed = 0.25 / float(gammas[s])
    ok = eta_needed <= 1
    if ok:  # the admissible case: RDDM's σ at η' is DDIM's σ at η = 0.5
        assert abs(posterior_sigma(ddim, t, s, eta_needed) - ddim_sigma(ddim, t, s, 0.5)) < 1e-9
        matched += 1
    print(
        f"t={t:3d}→s={s:3d}: γ_s = {float(gammas[s]):.4f}, η' needed = {eta_needed:10.3f}{'' if ok else '  (> 1: impossible)'}"
    )
assert 0 < matched < len(pairs10) - 1  # some steps can be matched, others cannot

# %% [markdown]
# ### Solution 4 — A paired ideal predictor
#
# The paired predictor is the MMSE predictor of a model in which the photo $k$ is the clean image *and*
# the input is its darkened version plus Gaussian noise of standard deviation $\tau$:
# $w_k \propto \exp(-\|I_t - \bar\alpha I_\text{in} - (1-\bar\alpha)I_0^k\|^2/2\bar\beta^2)\,\exp(-\|I_\text{in} - \mathrm{darken}(I_0^k)\|^2/2\tau^2)$. We add the two
# exponents before the softmax (multiplying weights that may have underflowed to zero would give 0/0).
# The input is exactly `darken` of the astronaut, so its pairing term is $0$ and every other photo is
# penalised by $\|I_\text{in} - \mathrm{darken}(I_0^k)\|^2/2\tau^2$; the squared distances are in the hundreds (printed).
#
# * $\tau^2 \ll$ those distances ($\tau = 0.1$ and $\tau = 1$): the weights are one-hot on the astronaut at every
#   step — the predictor *is* the oracle and restores $I_0$ exactly, whatever the starting noise.
# * $\tau^2 \gg$ those distances ($\tau = 10^3$): the pairing term is flat, the weights are section 5's, and the
#   starting noise picks the photo (the astronaut only when the noise happens to choose it).
# * In between ($\tau = 10$, where $\|\cdot\|^2/2\tau^2 \approx 0.5$–$0.9$): the pairing only tilts the odds; some seeds are
#   restored, others generate another photo.
#
# A learned restoration network sits in between: it knows the pairing only as well as its training data
# pin it down.


# %%
class PairedIdealPredictor(DatasetIdealPredictor):
    """DatasetIdealPredictor whose weights also use the pairing I_in ≈ darken(I_0^k), std tau."""

    def __init__(self, x0_set: torch.Tensor, degraded_set: torch.Tensor, tau: float) -> None:
        super().__init__(x0_set)
        self.degraded_set, self.tau = degraded_set, tau

    def posterior_weights(self, x, alpha_bar, beta_bar, x_in):
        a = alpha_bar.to(x).reshape(-1, 1)
        b = beta_bar.to(x).reshape(-1, 1).clamp_min(1e-12)
        target = (x - a.reshape(-1, 1, 1, 1) * x_in).flatten(1)
        d2 = (
            (target[:, None, :] - (1 - a)[:, :, None] * self.x0_set.flatten(1)[None]).pow(2).sum(-1)
        )
        pair = (x_in.flatten(1)[:, None, :] - self.degraded_set.flatten(1)[None]).pow(2).sum(-1)
        return torch.softmax(-d2 / (2 * b**2) - pair / (2 * self.tau**2), dim=1)


bank_dark = to_model_range(toydata.darken(from_model_range(bank)))
pair_d2 = (xin_img - bank_dark).flatten(1).pow(2).sum(1)
print(
    "‖I_in − darken(I_0^k)‖²:",
    dict(zip(toydata.BUNDLED_IMAGES, [round(v, 1) for v in pair_d2.tolist()], strict=True)),
)
assert float(pair_d2[0]) < 1e-9 and float(pair_d2[1:].min()) > 50
seeds4 = range(100, 106)  # section 5's seeds
plain = [
    sample(ideal_pred.on_schedule(rddm), xin_img, rddm, REST_STEPS, generator=seed_everything(s))
    for s in seeds4
]
for tau in (0.1, 1.0, 10.0, 1e3):
    paired = PairedIdealPredictor(bank, bank_dark, tau).on_schedule(rddm)
    outs = [sample(paired, xin_img, rddm, REST_STEPS, generator=seed_everything(s)) for s in seeds4]
    restored = sum(float((o - x0_img).abs().max()) < FLOAT32_TOL for o in outs)
    like_sec5 = sum(float((o - p).abs().max()) < 1e-4 for o, p in zip(outs, plain, strict=True))
    print(
        f"τ = {tau:6g}: restores I_0 for {restored}/6 seeds, equals section 5's output for {like_sec5}/6"
    )
    if tau <= 1:
        assert restored == 6  # the oracle
    if tau >= 1e3:
        assert like_sec5 == 6 and restored < 6  # section 5's predictor

# %% [markdown]
# ### Solution 5 — Steps vs diversity
#
# With 1 step every sample is the data mean (std ≈ 0, far from the data). With more steps the median
# nearest-neighbour distance falls and the std rises towards the data's. What sets the end result is the
# **last network call**, at $t_1$ with noise $\bar\beta_{t_1}$ (and $\sqrt{\gamma_{t_1}} \approx 1$): the sample is that call's
# $\hat I_0$, a posterior average over the training points within a few $\bar\beta_{t_1}$ of the state. While $\bar\beta_{t_1}$ is
# large compared with the spacing of neighbouring training points, the average spans many points and
# is pulled off the data; once $\bar\beta_{t_1}$ comes down to a few spacings, only a handful of neighbours along the
# moon share the weight and the sample sits (almost) on the data — the curves flatten. At smoke size
# (200 training points) the median spacing is ≈ 0.037, $\bar\beta_{t_1}$ is 0.32, 0.17, 0.076 at 10, 20, 50 steps, and
# the curves flatten between 20 and 50 steps; the std is within 15 % of the data's at 20 steps, 10 % at 50. More
# training points (full size) mean a smaller spacing and more steps before the curves are flat. η = 0 and
# η = 1 give nearly the same curves: η changes which point a sample ends near, not how sharp the last call is.

# %%
step_list = (1, 2, 3, 5, 10, 20, 50)
spacing = float(torch.cdist(data, data).fill_diagonal_(math.inf).min(1).values.median())
curves = {}
for eta in (0.0, 1.0):
    for steps in step_list:
        pts = sample(
            ideal_gen, xin_toy, ddim, steps, eta=eta, generator=seed_everything(8)
        ).flatten(1)
        curves[(eta, steps)] = (
            float(torch.cdist(pts, data).min(1).values.median()),
            float(pts.std(0).mean()),
        )
b_t1 = {steps: float(ddim.betas_cumsum[timestep_pairs(T, steps)[-1][0]]) for steps in step_list}
print(f"median spacing of training points: {spacing:.4f}; data std {float(data_std.mean()):.3f}")
for steps in step_list:
    print(
        f"{steps:2d} steps: β̄_t1 = {b_t1[steps]:.3f}; η=0: NN {curves[(0.0, steps)][0]:.4f}, std {curves[(0.0, steps)][1]:.3f};"
        f" η=1: NN {curves[(1.0, steps)][0]:.4f}, std {curves[(1.0, steps)][1]:.3f}"
    )
for eta in (0.0, 1.0):
    nn_curve = [curves[(eta, s)][0] for s in step_list]
    std_curve = [curves[(eta, s)][1] for s in step_list]
    assert (
        all(b < 1.05 * a for a, b in zip(nn_curve, nn_curve[1:], strict=False))
        and nn_curve[-1] < 0.25 * nn_curve[0]
    )
    assert (
        all(b > a for a, b in zip(std_curve, std_curve[1:], strict=False)) and std_curve[0] < 0.01
    )
    assert (
        nn_curve[-2] - nn_curve[-1] < nn_curve[-3] - nn_curve[-2]
    )  # flatter from 20 to 50 than from 10 to 20
    assert (
        abs(std_curve[-2] / float(data_std.mean()) - 1) < 0.15
    )  # spread nearly recovered by 20 steps ...
    assert abs(std_curve[-1] / float(data_std.mean()) - 1) < 0.1  # ... and within 10 % at 50
assert all(b < a for a, b in zip(list(b_t1.values()), list(b_t1.values())[1:], strict=False))

fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
for eta, color in ((0.0, "tab:blue"), (1.0, "tab:red")):
    axes[0].plot(
        step_list,
        [curves[(eta, s)][0] for s in step_list],
        "o-",
        color=color,
        label=f"η = {eta:.0f}",
    )
    axes[1].plot(
        step_list,
        [curves[(eta, s)][1] for s in step_list],
        "o-",
        color=color,
        label=f"η = {eta:.0f}",
    )
axes[0].plot(step_list, [b_t1[s] for s in step_list], "k:", label=r"$\bar\beta_{t_1}$")
axes[0].axhline(spacing, color="0.5", lw=0.8, label="training-point spacing")
axes[1].axhline(float(data_std.mean()), color="0.5", lw=0.8, label="data std")
axes[0].set(xscale="log", yscale="log", xlabel="steps", title="median nearest-neighbour distance")
axes[1].set(xscale="log", xlabel="steps", title="sample std (mean over x, y)")
for ax in axes:
    ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, "02_sol_steps_diversity")
plt.show()

# %% [markdown]
# ### Solution 6 — Path dependence
#
# A staircase that alternates one residual step and one noise step along the 5-step grid,
# $(a_0, b_0) \to (a_1, b_0) \to (a_1, b_1) \to (a_2, b_1) \to \dots \to (0, 0)$, **does** end exactly on a training photo. It never
# removes the noise while the residual is still undecided: at every node $\bar\beta$ is large compared with
# $(1-\bar\alpha)$ times the distance between photos until the residual is almost gone, so the noise keeps
# choosing between photos until the weights are one-hot, as on the simultaneous and residual-first paths.
# Which photo it picks may differ from the simultaneous path at this step count (per sample, few steps
# are path dependent) — only the noise-first order, which strips all noise at $\bar\alpha = 1$, fails to land
# on a photo.

# %%
grid = paths["simultaneous"]  # nodes (a_k, b_k), k = 0 … PATH_STEPS
stair = [grid[0]]
for k in range(1, PATH_STEPS + 1):
    stair += [torch.stack([grid[k, 0], grid[k - 1, 1]]), grid[k]]
stair = torch.stack(stair)
assert stair.shape == (2 * PATH_STEPS + 1, 2) and torch.equal(
    stair[-1], torch.zeros(2, dtype=torch.float64)
)
for seed in (11, 12):
    xs_seed = xin_img + rddm.noise_strength * torch.randn(
        xin_img.shape, generator=seed_everything(seed)
    )
    out = samplers.sample_path(ideal_pred, xin_img, stair, x_start=xs_seed)
    d = (out - bank).flatten(1).abs().max(1).values
    same = float((out - ideal_ends[("simultaneous", seed)]).abs().max()) < FLOAT32_TOL
    print(
        f"seed {seed}: staircase ends on {toydata.BUNDLED_IMAGES[int(d.argmin())]} (max error {float(d.min()):.1e}),"
        f" {'the same photo as' if same else 'another photo than'} the simultaneous path"
    )
    assert float(d.min()) < FLOAT32_TOL  # exactly a training photo
