# %% [markdown]
# ### Solution 1 — PCA instead of UMAP
#
# We recompute the features of section 3 with the *same* seeds (the full-feature kNN accuracies must
# come out identical — a check that nothing else changed) and embed them with PCA, which is instant.
# The trend survives where it exists: through the random conv encoder the 2-D kNN accuracy at
# $\sigma = 1.6$ is clearly below its $\sigma = 0$ value (0.62× at smoke size, 0.73× at full size), through
# pooled pixels it hardly moves. PCA's 2-D
# accuracies are lower than UMAP's at $\sigma = 0$ (it keeps only the two directions of largest
# variance, UMAP keeps neighbourhoods), and the fall need not be monotone from one $\sigma$ to the next.
# The first principal component of the standardised pooled pixels is **mean brightness**: its
# correlation with the mean feature value is above 0.99, and it orders the domains from low light
# (dark) through noise, blur, rain and clean to haze (bright) — exactly the order of their mean
# pixel values. That is the "low light vs haze" axis that no amount of noise removes.

# %%
pca_emb, knn_pca = {}, {}
for label, extractor in EXTRACTORS.items():
    for j, s in enumerate(SIGMAS_SHOW):
        feats = {name: features_at_noise(imgs, s, extractor, torch.Generator().manual_seed(100 * j + k))
                 for k, (name, imgs) in enumerate(domains.items())}
        coords, labels = embed_2d(feats, method="pca")
        x = torch.cat(list(feats.values())).double().numpy()
        assert abs(knn_accuracy(x, labels) - knn_full[label, s]) < 1e-12  # the same features as section 3
        pca_emb[label, s], knn_pca[label, s] = (coords, labels), knn_accuracy(coords, labels)
        if label == "pixels" and s == 0:
            brightness = {n: float(f.mean()) for n, f in feats.items()}
            pc1 = {n: float(coords[labels == n, 0].mean()) for n in feats}
            corr_pc1 = abs(np.corrcoef(x.mean(1), coords[:, 0])[0, 1])
print("PCA 2-D kNN accuracy:", {f"{lab}, σ = {s:g}": round(v, 3) for (lab, s), v in knn_pca.items()})
print("pixels, σ = 0: mean feature (brightness) and mean PC1 per domain:",
      {n: (round(brightness[n], 3), round(pc1[n], 1)) for n in NAMES}, f"|corr| = {corr_pc1:.4f}")
assert knn_pca["random conv", 1.6] < 0.8 * knn_pca["random conv", 0.0]  # measured 0.62× (smoke), 0.73× (full)
assert all(abs(knn_pca["pixels", s] - knn_pca["pixels", 0.0]) < 0.1 for s in SIGMAS_SHOW)
assert corr_pc1 > 0.99
pc1_sign = np.sign(pc1["haze"] - pc1["low_light"])
assert sorted(NAMES, key=brightness.get) == sorted(NAMES, key=lambda n: pc1_sign * pc1[n])

fig, axes = plt.subplots(len(EXTRACTORS), len(SIGMAS_SHOW), figsize=(3.0 * len(SIGMAS_SHOW), 3.0 * len(EXTRACTORS)))
for (r, label), (c, s) in ((rl, cs) for rl in enumerate(EXTRACTORS) for cs in enumerate(SIGMAS_SHOW)):
    coords, labels = pca_emb[label, s]
    for name in NAMES:
        m = labels == name
        axes[r, c].scatter(coords[m, 0], coords[m, 1], s=4, alpha=0.6, color=colors[name], label=name, rasterized=True)
    axes[r, c].set_title(f"{label}, σ = {s:g}\n2-D kNN acc. {knn_pca[label, s]:.2f}", fontsize=9)
    axes[r, c].set_xticks([])
    axes[r, c].set_yticks([])
axes[0, -1].legend(fontsize=8, markerscale=3, loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.suptitle("PCA of the six domains as the noise grows", fontsize=10)
fig.tight_layout()
savefig(fig, "05_sol_pca_panels")
plt.show()
plt.close(fig)

# %% [markdown]
# ### Solution 2 — Pooling as a low-pass filter
#
# With `PixelFeatures(p)` the feature noise is $\sigma/p$ and $D = 3(S/p)^2$, so the fixed-bandwidth
# shrink factor $c_\sigma = \big(h^2/(h^2 + 2\sigma^2/p^2)\big)^{D/2}$ depends steeply on $p$: at
# $\sigma = 1.6$ it is about 0.004 for $p = 1$, 0.24 for $p = 2$ and 0.9 for $p = 8$ (smoke size). The
# measured fixed-bandwidth ratio (σ = 1.6 to σ = 0) of the mean MMD² over the degradation pairs is $c_\sigma$ almost
# exactly (asserted within 10 %): in pixel space, the fixed-kernel "harmonisation" is the loss of
# kernel contrast, and its size is set by the pooling, not by the images.
#
# At $\sigma = 0$, finer pooling does **not** make rain, noise and blur distinguishable: their MMD² stays
# near 0 for every $p$, while every pair with low light or haze is large for every $p$. The RBF kernel
# with the median bandwidth reacts to mean differences (brightness, contrast), and a fine texture
# (noise of 25/255, thin streaks, a little blur) only adds a nearly uniform amount to every squared
# distance, which shifts all kernel values alike — to see texture you need features that measure it
# (the random conv encoder's standard deviations).

# %%
SIG_S2 = np.array([0.0, 1.6])
for pool in (1, 2, 8):
    cv_s2 = harmonisation_curves(domains, SIG_S2, PixelFeatures(pool), bandwidth="fixed", seed=0, progress=False)
    d_s2, h_s2 = 3 * (SIZE // pool) ** 2, float(cv_s2.bandwidths[0])
    c_s2 = (h_s2**2 / (h_s2**2 + 2 * (SIG_S2 / pool) ** 2)) ** (d_s2 / 2)
    ratio_s2 = cv_s2.mean_between(TASKS) / cv_s2.mean_between(TASKS)[0]
    print(f"pool {pool} (D = {d_s2}): c_σ {np.round(c_s2, 3)}, measured ratio {np.round(ratio_s2, 3)}; σ = 0: "
          f"noise↔blur {cv_s2.curve('noise', 'blur')[0]:+.4f}, low_light↔haze {cv_s2.curve('low_light', 'haze')[0]:.3f}")
    assert np.allclose(ratio_s2, c_s2, rtol=0.1)
    assert all(abs(cv_s2.curve(a, b)[0]) < 0.02 for a, b in combinations(["rain", "noise", "blur"], 2))
    assert cv_s2.curve("low_light", "haze")[0] > 0.5

# %% [markdown]
# ### Solution 3 — The Gaussian model of real features
#
# Fitted to the noise-free pooled pixels (768 numbers at the smoke size), low light has a mean
# per-dimension variance $s_p^2 \approx 0.03$, haze $s_q^2 \approx 0.10$, and their means differ by about 1
# per dimension on the $[-1, 1]$ scale (dark vs bright). The **mean term** of the closed form dominates:
# about 95–96 % of the KL at $\sigma = 0$, more as $\sigma$ grows (the variance term decays like $1/\sigma^4$,
# the mean term only like $1/\sigma^2$). Both fall with $\sigma$ (Proposition 3.1), but the KL stays in the
# hundreds (smoke size) to thousands (full size) of nats at $\sigma = 1.6$: a Gaussian channel of this strength cannot hide a difference of
# mean brightness spread over hundreds of pixels — the kNN and permutation-test results of sections
# 3 and 5 say the same.
#
# The isotropic model is a crude summary here: the per-dimension variances vary by about ±30 %
# around their mean, and neighbouring pixels are strongly correlated — a handful of principal
# components carry most of the variance (the participation ratio, an "effective dimension", is
# far below $D$). The true KL depends on the full covariance, which 108 patches cannot estimate in
# 768 dimensions; the isotropic numbers are an illustration of the mechanism, not a measurement.

# %%
from drdd_edu.theory import gaussian_stats

pix_s3 = {n: EXTRACTORS["pixels"](add_noise(domains[n], 0.0)).double() for n in ("low_light", "haze")}
p_s3, q_s3 = gaussian_stats(pix_s3["low_light"]), gaussian_stats(pix_s3["haze"])
sig_s3 = np.linspace(0.0, 1.6, 17)
var_term, mean_term = [], []
for s in sig_s3:
    sp, sq = p_s3.var + (s / 2) ** 2, q_s3.var + (s / 2) ** 2  # σ/2: 2×2 pooling
    var_term.append(0.5 * p_s3.dim * (sp / sq - 1 - math.log(sp / sq)))
    mean_term.append(float(np.sum((p_s3.mean - q_s3.mean) ** 2)) / (2 * sq))
kl_s3 = np.array([kl_isotropic_gaussians(p_s3, q_s3, s / 2) for s in sig_s3])
assert np.allclose(kl_s3, np.array(var_term) + np.array(mean_term), rtol=1e-10)
assert np.all(np.diff(kl_s3) < 0) and mean_term[0] > 0.9 * kl_s3[0] and kl_s3[-1] > 100
spread_s3 = {n: float(f.var(0).std() / f.var(0).mean()) for n, f in pix_s3.items()}
eig_s3 = torch.linalg.eigvalsh(torch.cov(pix_s3["low_light"].T))
eff_dim = float(eig_s3.sum() ** 2 / (eig_s3**2).sum())
print(f"s_p² = {p_s3.var:.4f}, s_q² = {q_s3.var:.4f}; per-dimension variances vary by ±{spread_s3['low_light']:.0%} "
      f"(low light), ±{spread_s3['haze']:.0%} (haze); effective dimension of low light {eff_dim:.1f} of {p_s3.dim}")
print(f"KL at σ = 0: {kl_s3[0]:.0f} nats (mean term {mean_term[0] / kl_s3[0]:.0%}); at σ = 1.6: {kl_s3[-1]:.0f} "
      f"(mean term {mean_term[-1] / kl_s3[-1]:.1%})")
assert min(spread_s3.values()) > 0.15 and eff_dim < 0.1 * p_s3.dim

fig, ax = plt.subplots(figsize=(4.8, 3.2))
ax.semilogy(sig_s3, kl_s3, "k-", lw=2, label="KL (isotropic model)")
ax.semilogy(sig_s3, mean_term, "C0--", label="mean term")
ax.semilogy(sig_s3, var_term, "C1:", label="variance term")
ax.set_xlabel("noise strength σ (pixels; σ/2 per feature)", fontsize=9)
ax.set_ylabel("nats", fontsize=9)
ax.set_title("low light ↔ haze, pooled pixels", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, "05_sol_gaussian_kl")
plt.show()
plt.close(fig)

# %% [markdown]
# ### Solution 4 — Test power
#
# At $\sigma = 1.6$ the permutation test has essentially no power for noise ↔ blur at any sample size we
# have: over the noise draws the rejection rate at 5 % stays at the level of a test of two equal
# distributions (asserted ≤ 0.3 for every $n$), and the average MMD² estimate over the draws is not
# significantly positive (at full size it is even slightly negative: with a bandwidth taken from the same
# data the "unbiased" estimator is not exactly unbiased). To extrapolate: the unbiased estimate's spread shrinks like $1/n$ while its
# mean, the population MMD², does not depend on $n$; so the test's signal-to-noise ratio is
# $z(n) = \mathrm{MMD}^2/\mathrm{sd}(n) \approx \mathrm{MMD}^2\, n/(n_0\,\mathrm{sd}(n_0))$. Rejecting with
# probability 0.9 at the 5 % level needs $z \approx 1.645 + 1.282 = 2.93$, so
# $n^* \approx 2.93\, n_0\,\mathrm{sd}(n_0)/\mathrm{MMD}^2$. With the MMD² bounded above by its (non-negative) mean plus
# two standard errors, this gives a **lower bound**: about 450 patches per domain at the smoke size, about
# 1,200 at full size — four to six times what the benchmark has. At $\sigma = 0$ (section 5) one draw of the
# same data already gives $p < 0.02$: noise of strength 1.6 makes this pair need many times more data to tell apart,
# which is what "harmonised" means in practice.

# %%
from scipy.stats import norm

N_DRAWS_S4, N_PERM_S4 = pick(20, 10), pick(500, 200)
n_all = min(sizes["noise"], sizes["blur"])
power_s4, stat_s4 = {}, {}
for n in (25, 50, 100, n_all):
    rejected, stats = [], []
    for rep in range(N_DRAWS_S4):
        g = torch.Generator().manual_seed(2000 + rep)
        fa = features_at_noise(domains["noise"][torch.randperm(sizes["noise"], generator=g)[:n]], 1.6, encoder, g)
        fb = features_at_noise(domains["blur"][torch.randperm(sizes["blur"], generator=g)[:n]], 1.6, encoder, g)
        stat, p = mmd_permutation_test(fa, fb, n_permutations=N_PERM_S4, generator=rep)
        rejected.append(p <= 0.05)
        stats.append(stat)
    power_s4[n], stat_s4[n] = float(np.mean(rejected)), np.array(stats)
print("rejection rate at 5 %:", power_s4)
mmd_mean = float(stat_s4[n_all].mean())
mmd_se = float(stat_s4[n_all].std(ddof=1)) / math.sqrt(N_DRAWS_S4)
sd_all = float(stat_s4[n_all].std(ddof=1))
mmd_upper = max(mmd_mean, 0.0) + 2 * mmd_se  # MMD² is ≥ 0; an upper bound from the draws
n_star = (norm.ppf(0.95) + norm.ppf(0.9)) * n_all * sd_all / mmd_upper
print(f"MMD² at σ = 1.6 with {n_all} patches: {mmd_mean:.5f} ± {mmd_se:.5f} (sd per draw {sd_all:.5f}); "
      f"reliable rejection needs n ≳ {n_star:.0f} patches per domain")
assert all(v <= 0.3 for v in power_s4.values())
assert mmd_mean < 2 * mmd_se  # no sign of a positive MMD²
assert n_star > 2 * n_all

# %% [markdown]
# ### Solution 5 — A different noise for each domain
#
# With $\sigma = 1$ on noise and $\sigma = 1.2$ on blur, the two domains differ in a way that has nothing to do
# with the degradations: the noise level itself. Through the random conv encoder, whose standard
# deviation features measure exactly that, the MMD² jumps from ≈ 0 to a clearly positive value, the
# permutation test rejects, and the kNN classifier separates the two far above chance — the
# harmonisation is undone. In the isotropic Gaussian model of pooled pixels the variance term of the
# KL no longer vanishes: even for two *identical* domains, $\tfrac D2(r - 1 - \log r)$ with
# $r = (s^2 + 0.5^2)/(s^2 + 0.6^2)$ is several nats. (The pixel RBF kernel with the median bandwidth hardly
# notices — as in Solution 2, it is blind to uniform variance changes — but a network is not.) DRDD's
# sampler adds one fixed $\sigma$ to every input, whatever its degradation, so all domains pass through
# the *same* channel, which is the hypothesis of Proposition 3.1.

# %%
res_s5 = {}
for sigma_b in (1.0, 1.2):
    fa = features_at_noise(domains["noise"], 1.0, encoder, torch.Generator().manual_seed(31))
    fb = features_at_noise(domains["blur"], sigma_b, encoder, torch.Generator().manual_seed(32))
    labels_s5 = np.array([0] * len(fa) + [1] * len(fb))
    stat, p = mmd_permutation_test(fa, fb, n_permutations=200, generator=0)
    res_s5[sigma_b] = stat, p, knn_accuracy(torch.cat([fa, fb]).double().numpy(), labels_s5)
    print(f"σ = 1 vs {sigma_b}: MMD² {stat:+.4f}, p-value {p:.3f}, kNN accuracy {res_s5[sigma_b][2]:.2f}")
assert res_s5[1.2][0] > 0.02 and res_s5[1.2][0] > 10 * abs(res_s5[1.0][0])
assert res_s5[1.2][1] <= 0.02 < res_s5[1.0][1]
assert res_s5[1.2][2] > res_s5[1.0][2] + 0.15
s2_noise = gaussian_stats(EXTRACTORS["pixels"](add_noise(domains["noise"], 0.0))).var
r_s5 = (s2_noise + 0.5**2) / (s2_noise + 0.6**2)
kl_same = 0.5 * D_PIX * (r_s5 - 1 - math.log(r_s5))
print(f"isotropic model, noise domain against itself at σ = 1 vs 1.2: KL = {kl_same:.1f} nats")
assert kl_same > 1

# %% [markdown]
# ### Solution 6 — Your own extractor
#
# **Prediction.** Per-channel means and standard deviations see global colour and contrast only. At
# $\sigma = 0$ they separate low light (dark, low contrast) and haze (bright, low contrast) from everything
# else and from each other, weakly separate the clean domain (other photos) and the texture tasks
# (noise raises the standard deviation, blur and rain change it a little), and cannot tell rain,
# noise and blur apart well. Under noise, a channel mean averages $S^2$ pixels, so its noise is only
# $\sigma/S$ (0.05 at $\sigma = 1.6$, $S = 32$): the mean differences survive. The standard deviation
# becomes $\sqrt{s^2 + \sigma^2}$, which squeezes the contrast differences together, so the small
# texture pairs (noise ↔ blur, rain ↔ blur: MMD² 0.01–0.02 at $\sigma = 0$) go to ≈ 0. Hence: curves almost **flat** for the large pairs, the mean over the
# degradation pairs hardly falls (we measure 0.98–1.0× at $\sigma = 1.6$, against 0.25–0.3× for pooled pixels and
# the random conv encoder) — this extractor is nearly immune to harmonisation because it looks only
# at what noise cannot hide.

# %%
def channel_stats(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, 6): per-channel means and standard deviations."""
    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


cv_s6 = harmonisation_curves(domains, SIG_S2, channel_stats, bandwidth="median", seed=0, progress=False)
between_s6 = cv_s6.mean_between(TASKS)
print(f"mean over degradation pairs: {np.round(between_s6, 4)} ({between_s6[-1] / between_s6[0]:.2f}× at σ = 1.6)")
for a, b in (("low_light", "haze"), ("low_light", "clean"), ("haze", "clean"), ("noise", "blur"), ("rain", "blur")):
    print(f"  {a} ↔ {b}: {np.round(cv_s6.curve(a, b), 4)}")
assert between_s6[-1] > 0.9 * between_s6[0]  # pixels and random conv: < 0.4× (section 4)
assert cv_s6.curve("low_light", "haze")[-1] > 0.9 * cv_s6.curve("low_light", "haze")[0] > 0.5
assert min(cv_s6.curve("low_light", "clean")[0], cv_s6.curve("haze", "clean")[0]) > 0.1
for a, b in (("noise", "blur"), ("rain", "blur")):  # small texture pairs: positive at σ = 0, then ≈ 0
    assert cv_s6.curve(a, b)[0] > 0.005 and abs(cv_s6.curve(a, b)[-1]) < 0.5 * cv_s6.curve(a, b)[0]
