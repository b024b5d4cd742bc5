# %% [markdown]
# ### Solution 1 — How good is the continuum limit?
#
# $1 - \bar\alpha_t = \sum_{t' > t+1} w_{t'}$ is a right Riemann sum (cell width $1/T$) of the monotone function $u^k$,
# normalised by another one; each is off from its integral by at most (largest − smallest value)$/T = 1/T$,
# so the error is $O(1/T)$: ten times more steps, ten times smaller error. $T\cdot$error settles to a constant
# that depends on $k$ (about 0.25 for $k = 1$: the printed table), and for $k = 0$ every term is equal and the sum
# is exact.

# %%
cont_err = {}
for k in (0.0, 0.5, 1.0, 3.0):
    for T_c in (100, 1000, 10000):
        sch = rddm_schedule(T_c, sum_scale=1.0, alpha_power=k)
        tau_c = tau_grid(T_c)
        cont_err[(k, T_c)] = float((sch.alphas_cumsum - (1 - (1 - tau_c) ** (k + 1))).abs().max())
    print(
        f"k = {k}: "
        + ", ".join(
            f"T = {T_c}: {cont_err[(k, T_c)]:.2e} (T·err = {T_c * cont_err[(k, T_c)]:.3f})"
            for T_c in (100, 1000, 10000)
        )
    )
for k in (0.5, 1.0, 3.0):
    for T_c in (100, 1000, 10000):
        assert cont_err[(k, T_c)] < 1 / T_c  # the Riemann-sum bound
    assert abs(cont_err[(k, 1000)] / cont_err[(k, 10000)] - 10) < 1.0  # O(1/T)
    assert abs(cont_err[(k, 100)] / cont_err[(k, 1000)] - 10) < 2.0
assert max(cont_err[(0.0, T_c)] for T_c in (100, 1000, 10000)) < FLOAT64_TOL  # exact for k = 0

# %% [markdown]
# ### Solution 2 — A path that adds noise
#
# Scaling node $k$'s $(1-\bar\alpha_k, \bar\beta_k)$ by $\lambda_k > 0$ keeps $\sigma'_k = \bar\beta_k/(1-\bar\alpha_k)$, and section 3 says
# the sampler then visits the same $y$ values, so the output is the same for every starting noise. We
# alternate $\lambda_k$ between $\tfrac12$ and the largest allowed value ($\le 2$, with $\lambda_k(1-\bar\alpha_k) \le 1$), so
# $\bar\beta$ jumps up and down along the path; the first node ($\bar\alpha = 1$) and the last one stay. In float64 (as in
# section 3) the outputs agree to round-off with the 10-step residual-first path, for all `N_SEEDS` noises.

# %%
rf10 = removal_path(ref_schedule, 10, "residual_first")
lam = torch.ones(rf10.shape[0], dtype=torch.float64)
for k in range(1, rf10.shape[0] - 1):
    lam[k] = 0.5 if k % 2 else min(2.0, 1.0 / float(1 - rf10[k, 0]))
zigzag = torch.stack([1 - lam * (1 - rf10[:, 0]), lam * rf10[:, 1]], dim=1)
print("β̄ along the zigzag path:", [round(v, 3) for v in zigzag[:, 1].tolist()])
assert (torch.diff(zigzag[:, 1]) > 0).any() and (torch.diff(zigzag[:, 1]) < 0).any()  # up and down
assert (zigzag[:, 0] >= 0).all() and (zigzag[:, 0] <= 1).all()
assert torch.allclose(sigma_prime(zigzag), sigma_prime(rf10), rtol=1e-12, equal_nan=True)
x_in64, z64 = X_IN.double(), Z.double()
out_rf = sample_path(ideal, x_in64, rf10, x_start=x_in64 + float(rf10[0, 1]) * z64)
out_zz = sample_path(ideal, x_in64, zigzag, x_start=x_in64 + float(zigzag[0, 1]) * z64)
gap_zz = float((out_zz - out_rf).abs().max())
print(f"max |zigzag − residual-first| over {N_SEEDS} starting noises: {gap_zz:.1e}")
assert gap_zz < 1e-9

# %% [markdown]
# ### Solution 3 — Rescue noise-first
#
# The rescued path has three stages of 20 steps: the noise at $\bar\alpha = 1$ from $\bar\beta = 1$ to $\bar\beta_\text{min}$, the
# residual (on the reference $\bar\alpha$ grid) at $\bar\beta_\text{min}$, then the rest of the noise at $\bar\alpha = 0$. At $\bar\alpha = 1$ the
# noise stage is exact for the ideal predictor, so the state becomes $I_\text{in} + \bar\beta_\text{min}z$: the direction $z$
# survives. The residual stage then visits $\sigma' = \bar\beta_\text{min}/(1-\bar\alpha_k)$, falling from $\infty$ to $\bar\beta_\text{min}$ — a
# $\sigma'$-monotone path whose first finite value is $\bar\beta_\text{min}/(1 - a_1) = 400\,\bar\beta_\text{min}$ ($1 - a_1 = 20^{-2}$ on the
# reference schedule). While that first value is large compared with the distance between photos, the
# path is as good as residual-first and agrees with the reference map; as $\bar\beta_\text{min} \to 0$ all finite
# $\sigma'$ values shrink towards 0 and the first step jumps from $\infty$ almost to 0 (a one-step sampler): every
# $z$ ends on the photo $k^*$ nearest to the bank mean, so the agreement drops to the reference map's share
# of $k^*$ (≈ 0.25, at $\bar\beta_\text{min} \le 10^{-3}$ here), and at $\bar\beta_\text{min} = 0$ to noise-first's 0 (its blend is no
# photo at all). Agreement is back above 0.9 once the first finite $\sigma'$ is ≳ 20 ($\bar\beta_\text{min} \ge 0.05$): a small
# residue of noise, kept while the residual leaves, rescues the order.


# %%
def rescued_path(beta_min: float, steps: int = 20) -> torch.Tensor:
    """Noise at ᾱ = 1 down to beta_min, then the residual at beta_min, then the rest of the noise."""
    a_grid = removal_path(ref_schedule, steps, "simultaneous")[:, 0]
    b_down = torch.linspace(1.0, beta_min, steps + 1, dtype=torch.float64)
    nodes = [
        torch.stack([torch.ones_like(b_down), b_down], 1),
        torch.stack([a_grid, torch.full_like(a_grid, beta_min)], 1)[1:],
    ]
    if beta_min > 0:
        b_rest = torch.linspace(beta_min, 0.0, steps + 1, dtype=torch.float64)
        nodes.append(torch.stack([torch.zeros_like(b_rest), b_rest], 1)[1:])
    return torch.cat(nodes)


beta_mins = (0.0, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 1.0)
rescue = {}
for beta_min in beta_mins:
    rms_r, idx_r = nearest_photo(run_batch(rescued_path(beta_min)))
    rescue[beta_min] = float(((idx_r == ref_idx) & (rms_r < ON_PHOTO)).double().mean())
    print(
        f"β̄_min = {beta_min:6g}: first finite σ' = {400 * beta_min:7.3f}, agreement with the reference map {rescue[beta_min]:.2f}"
    )
assert rescue[0.0] == 0.0  # float-exact: count — noise-first
assert rescue[1.0] > 0.9 and rescue[0.05] > 0.9  # residual-first quality
assert rescue[1e-4] < 0.5 * rescue[1.0] and rescue[1e-2] < rescue[1.0]

fig, ax = plt.subplots(figsize=(5, 3.4))
shown = [max(b, 1e-5) for b in beta_mins]
ax.semilogx(shown, [rescue[b] for b in beta_mins], "o-", color=ORDER_COLORS["noise_first"])
ax.set(
    xlabel=r"$\bar\beta_\mathrm{min}$ (0 drawn at $10^{-5}$)",
    ylabel="fraction of z",
    title="rescued noise-first: agreement with the reference",
    ylim=(-0.03, 1.03),
)
fig.tight_layout()
savefig(fig, "03_sol_rescue_noise_first", dpi=DPI)
plt.show()

# %% [markdown]
# ### Solution 4 — Wrong starting noise
#
# **Oracle.** Write the start as $x_0 = I_\text{in} + \sigma z = I_0 + 1\cdot I_\text{res} + \bar\beta_{T-1}\,\epsilon$ with $\epsilon = (\sigma/\bar\beta_{T-1})z$. The
# oracle returns the true residual and the noise $\epsilon$ *of the state it is shown*, so the induction of section 2 (notebook 02, section 6)
# applies unchanged: every node keeps the form $I_0 + a\,I_\text{res} + b\,\epsilon$, and at $(0, 0)$ the output is $I_0$,
# for any $\sigma$ (checked below with the lab at $\sigma = 0.5$).
#
# **Dataset-ideal.** At $\bar\alpha = 1$ the weights are uniform and the first step lands at
# $y = \bar I + \sigma'_1(\sigma/\bar\beta_{T-1})z$: shrinking $\sigma$ is the same as shrinking the starting noise. As
# $\sigma \to 0$ every start lands near the bank mean $\bar I$, and the flow from there ends on the photo nearest
# to $\bar I$, $k^*$ (the chelsea photo here): the frequencies move from about 1/4 each to 1 for $k^*$.

# %%
lab_wrong = run_lab(LabParams(noise_strength=0.5, steps=5, size=IMG_SIZE))
assert lab_wrong.psnr > EXACT_DB and lab_wrong.max_abs_error < FLOAT32_TOL
path50 = removal_path(ref_schedule, 50, "simultaneous")
freq_by_sigma = {}
for sigma in (1.0, 0.3, 0.1, 0.03, 0.01):
    out = sample_path(ideal, X_IN, path50, x_start=X_IN + sigma * Z)
    _, idx_s = nearest_photo(out)
    freq_by_sigma[sigma] = torch.bincount(idx_s, minlength=n_photos).double() / N_SEEDS
    print(
        f"σ = {sigma:5}: photo frequencies",
        dict(
            zip(
                toydata.BUNDLED_IMAGES,
                [round(v, 3) for v in freq_by_sigma[sigma].tolist()],
                strict=True,
            )
        ),
    )
assert float((freq_by_sigma[1.0] - 0.25).abs().max()) < N_SE * math.sqrt(0.25 * 0.75 / N_SEEDS)
assert float(freq_by_sigma[0.01][k_star]) == 1.0  # float-exact: count — every z ends on k*
assert float(freq_by_sigma[0.1][k_star]) > float(freq_by_sigma[1.0][k_star])

# %% [markdown]
# ### Solution 5 — Speed with the power family
#
# With 5 steps only 4 finite $\sigma'$ nodes are available, and the map is decided while $\sigma'$ passes the scale
# of the distances between photos (roughly $\sigma' \sim 1$–$10$). The printed $\log\sigma'$ nodes show that the spacing
# in $\log\sigma'$ is fairly even for every $k_\alpha$ (gaps of about 1–3); what differs is *where* the nodes sit.
# $k_\alpha = 0$ puts its first finite node lowest ($\sigma'_1 \approx 4$): the first step jumps from $\infty$ into the range
# where the choice is already being made, and its agreement is clearly the worst (0.83 at smoke size, 0.52 at
# full size). $k_\alpha = 0.5$–$2$ start higher ($\sigma'_1 \approx 9$–$100$) and put the other nodes through the decisive range:
# they are the best at smoke size (0.92 each); at full size $k_\alpha = 1$ and $2$ lead (0.89, 0.88) and $k_\alpha = 0.5$ falls
# back (0.82). $k_\alpha = 4$ starts very high ($\sigma'_1 \approx 2500$) and wastes a node above the decisive range (0.91;
# full size 0.82). Karras et al.'s rule for VE diffusions in one sentence: start high enough, then spend the steps
# evenly in $\log\sigma'$ across the range where the decision happens.

# %%
speed = {}
for ka in (0.0, 0.5, 1.0, 2.0, 4.0):
    path_k = removal_path(rddm_schedule(T, 1.0, alpha_power=ka), 5, "simultaneous")
    rms_k, idx_k = nearest_photo(run_batch(path_k))
    speed[ka] = float(((idx_k == ref_idx) & (rms_k < ON_PHOTO)).double().mean())
    log_sp = [round(math.log(float(v)), 2) for v in sigma_prime(path_k)[1:-1]]
    print(f"k_α = {ka}: agreement {speed[ka]:.2f}, log σ' at the finite nodes {log_sp}")
best = max(speed, key=speed.get)
print(f"best k_α for 5 steps: {best}")
assert speed[0.0] < min(speed[k] for k in (0.5, 1.0, 2.0, 4.0))
assert best != 0.0  # float-exact: literal (a key of the dict)

# %% [markdown]
# ### Solution 6 — η and the map
#
# No: with $\eta = 1$ the agreement with the $\eta = 0$ reference map does **not** go to 1. Each step adds fresh
# noise, so the final photo depends on all the noise drawn on the way, not on $z$ alone; with many steps
# the agreement levels off well below 1 (≈ 0.5–0.6 at smoke size, against ≈ 1 for η = 0: the late, low-noise
# steps still redraw some of the choices). The
# frequencies, however, do approach 1/4: the stochastic sampler keeps the forward marginals at every
# node (notebook 02, section 2), and at the end that marginal is the uniform distribution over the
# photos. Both runs end exactly on a photo for every starting noise.

# %%
from drdd_edu.samplers import sample

eta_stats = {}
for steps in (2, 5, 20, 50):
    out = sample(
        ideal.on_schedule(ref_schedule),
        X_IN,
        ref_schedule,
        steps,
        eta=1.0,
        generator=seed_everything(30),
        x_start=X_IN + Z,
    )
    rms_e, idx_e = nearest_photo(out)
    eta_stats[steps] = (
        float(((idx_e == ref_idx) & (rms_e < ON_PHOTO)).double().mean()),
        torch.bincount(idx_e, minlength=n_photos).double() / N_SEEDS,
        float(rms_e.max()),
    )
    print(
        f"η = 1, {steps:2d} steps: agreement {eta_stats[steps][0]:.2f} (η = 0: {stats[('simultaneous', steps)]['agree']:.2f}),"
        f" frequencies {[round(v, 3) for v in eta_stats[steps][1].tolist()]}"
    )
agree_50, freq_50, rms_50 = eta_stats[50]
assert agree_50 < stats[("simultaneous", 50)]["agree"] - 0.2  # the map is not a function of z alone
assert rms_50 < ON_PHOTO  # every sample is a photo
assert float((freq_50 - 0.25).abs().max()) < N_SE * math.sqrt(0.25 * 0.75 / N_SEEDS)
