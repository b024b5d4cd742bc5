# %% [markdown]
# ### Solution 1 — Low light without the noise floor
#
# On a black image $x = 0$, so $y = s\,x^\gamma = 0$ and the output is
# $\mathrm{clip}(\sqrt{a\cdot 0 + b^2}\,n,\ 0, 1) = \mathrm{clip}(b\,n, 0, 1)$. With $b = 0$ (no read-out
# noise) that is exactly 0 for every pixel: shot noise alone vanishes where there is no signal. With
# $b = 0.005$ it is 0 exactly when $n \le 0$, i.e. with probability $\Phi(0) = 1/2$ (and positive,
# about $b\,|n|$, otherwise). We measure the fraction of exact zeros over 8 black 32×32 images and
# check it against 1/2 within 5 binomial standard errors $\sqrt{1/4N}$.

# %%
black_s1 = torch.zeros(N_SEEDS, 3, 32, 32)
zeros_no_floor = float((low_light(black_s1, generator=0, read_noise=0.0) == 0).double().mean())
zeros_floor = (low_light(black_s1, generator=0, read_noise=0.005) == 0).double()
print(f"read_noise = 0: {zeros_no_floor:.1%} of the pixels are exactly 0")
assert zeros_no_floor == 1.0  # float-exact: count (clip(0 · n) = 0 on every pixel)
within_se(float(zeros_floor.mean()), 0.5, math.sqrt(0.25 / zeros_floor.numel()),
          "read_noise = 0.005: fraction of exact zeros")

# %% [markdown]
# So the read-out noise is what gives a dark pixel a *distribution* at all; without it a black pixel
# carries no noise, and the low-light residual on black regions would be exactly 0.

# %% [markdown]
# ### Solution 2 — A motion kernel's length
#
# The impulse response is the kernel $k$. Its second moment along the motion direction
# $(\sin\theta, \cos\theta)$ (columns, rows; the library's convention) is
# $m_\parallel = \sum_{u,v} k(u, v)\,d_\parallel^2$ with $d_\parallel = u\sin\theta + v\cos\theta$. A
# continuous uniform segment of length $L$ has variance $L^2/12$, so $\hat L = \sqrt{12\,m_\parallel}$. (A
# segment of $L$ whole pixels, e.g. $L = 5$ at $\theta = 0$, has the discrete variance $(L^2 - 1)/12$, so
# $\hat L$ is a little *low* there; the anti-aliased ends of a non-integer or slanted line add a little.)
# Across the line the second moment is that of the triangular cross-section of half-width 1,
# variance $1/6$ — or 0 for an axis-aligned line, which covers exactly one column.

# %%
v_s2, u_s2 = torch.meshgrid(coords.double(), coords.double(), indexing="ij")
worst_s2 = 0.0
for length_s2 in (5.0, 8.0, 11.0):
    for angle_s2 in (0.0, 30.0, 75.0, 120.0):
        k_s2 = impulse_response(0, kind="motion", length=length_s2, angle=angle_s2).double()
        th_s2 = math.radians(angle_s2)
        d_par = u_s2 * math.sin(th_s2) + v_s2 * math.cos(th_s2)
        d_perp = -u_s2 * math.cos(th_s2) + v_s2 * math.sin(th_s2)
        l_hat = math.sqrt(12 * float((k_s2 * d_par**2).sum()))
        across = float((k_s2 * d_perp**2).sum())
        worst_s2 = max(worst_s2, abs(l_hat - length_s2))
        print(f"L = {length_s2:4.1f}, θ = {angle_s2:5.1f}°: estimated L {l_hat:6.3f}, variance across {across:.3f}")
        assert across < 1 / 6 + 0.03  # the triangle's 1/6, plus a little from the ends (measured ≤ 0.19)
assert worst_s2 < 0.2, worst_s2  # measured: at most 0.13 pixel
print(f"largest error of sqrt(12 m): {worst_s2:.3f} pixel")

# %% [markdown]
# ### Solution 3 — Dehazing with an oracle
#
# With the hidden maps read off the probe images (section 1.5), $\hat J = (I_\text{in} - A(1 - t))/t$
# inverts the model exactly: in float32 the error is rounding noise, PSNR ≈ 140 dB. Storing $I_\text{in}$
# as uint8 adds an error $e$ of at most $\pm 0.5/255$ (uniform, variance $1/(12\cdot 255^2)$), which the
# inversion divides by $t$: $\hat J - J = e/t$. So the predicted MSE is $\frac{1}{12\cdot 255^2}\,
# \overline{t^{-2}}$, about 52–54 dB for these transmissions (instead of 58.9 dB for $t = 1$). The
# inversion is most sensitive where $t$ is smallest: in the far, hazy **top rows** ($1/t$ up to
# $e^{\beta} \approx 3.3$ here, at most $e^{1.5} = 4.5$). Asserted: float inversion above 100 dB; the
# uint8 PSNR within 0.3 dB of the prediction (≈ 8 standard errors of the MSE over 12,288 values); the
# top four rows at least twice as wrong (in MSE) as the bottom four.

# %%
for seed in range(3):
    h0, h1 = haze(black, generator=seed), haze(white, generator=seed)
    t_s3 = h1 - h0
    a_s3 = (h0[..., 0, 0] / (1 - t_s3[..., 0, 0]))[..., None, None]
    hazy_s3 = haze(clean, generator=seed)
    j_float = (hazy_s3 - a_s3 * (1 - t_s3)) / t_s3
    j_u8 = (torch.round(hazy_s3 * 255) / 255 - a_s3 * (1 - t_s3)) / t_s3
    psnr_float = -10 * math.log10(float((j_float.double() - clean.double()).pow(2).mean()))
    err_u8 = (j_u8.double() - clean.double()).pow(2)
    psnr_u8 = -10 * math.log10(float(err_u8.mean()))
    psnr_model = -10 * math.log10(float((1 / (12 * 255**2) / t_s3.double() ** 2).mean()))
    rows = err_u8.mean(dim=(0, 1, 3))
    print(f"seed {seed}: PSNR float {psnr_float:.0f} dB, uint8 {psnr_u8:.2f} dB (model {psnr_model:.2f} dB), "
          f"t in [{float(t_s3.min()):.2f}, {float(t_s3.max()):.2f}], top/bottom rows MSE {float(rows[:4].mean() / rows[-4:].mean()):.1f}×")
    assert psnr_float > 100
    assert abs(psnr_u8 - psnr_model) < 0.3
    assert rows[:4].mean() > 2 * rows[-4:].mean()

# %% [markdown]
# A real dehazer does not know $t$ and $A$; it must estimate them, and every error in $t$ is amplified
# the same way in the far field. This is why haze residuals are large but smooth (section 2.5): a
# network that gets $t$ and $A$ right has solved the task.

# %% [markdown]
# ### Solution 4 — Noise PSNR from the residual std
#
# For each noise-task test patch the censored-normal moments give $\mathbb E[r^2]$ per pixel; adding
# the uint8 rounding variance $1/(12\cdot 255^2)$ gives the expected MSE of the patch and so its PSNR,
# $-10\log_{10}\overline{\mathbb E[r^2]}$ — patches with many dark or bright pixels clip more and score
# higher, which explains the 20.1–21.9 dB range of the table. Each prediction is checked against the
# measured PSNR within 5 standard errors (the SE of a patch's MSE over its pixels, in dB).
#
# The mean of the PSNRs is **not** the PSNR of the mean MSE: $-\log$ is convex, so by Jensen
# $\overline{-10\log_{10}\mathrm{MSE}_i} \ge -10\log_{10}\overline{\mathrm{MSE}_i}$. Here the difference
# is small (hundredths of a dB) because the noise task's MSEs hardly vary; for blur, whose PSNRs span
# 30 dB, it is many dB — report which one you average.

# %%
is_noise = task_te == TASKS.index("noise")
r2_s4 = (deg_te[is_noise].double() - clean_te[is_noise].double()).pow(2).flatten(1)  # (n, 3·H·W)
_, m2_s4 = censored_noise_moments(clean_te[is_noise], NOISE_SIGMA)
psnr_pred = -10 * torch.log10(m2_s4.flatten(1).mean(1) + 1 / (12 * 255**2))
psnr_meas = psnr_te[is_noise]
se_db = 10 / math.log(10) * r2_s4.std(1) / math.sqrt(r2_s4.shape[1]) / r2_s4.mean(1)
z_s4 = (psnr_pred - psnr_meas).abs() / se_db
print(f"{int(is_noise.sum())} noise patches: predicted PSNR {float(psnr_pred.min()):.2f}–{float(psnr_pred.max()):.2f} dB, "
      f"largest |predicted − measured| {float((psnr_pred - psnr_meas).abs().max()):.3f} dB = {float(z_s4.max()):.1f} SE")
assert float(z_s4.max()) < N_SE
mean_of_psnr = float(psnr_meas.mean())
psnr_of_mean = -10 * math.log10(float(r2_s4.mean(1).mean()))
print(f"mean of PSNRs {mean_of_psnr:.3f} dB (predicted {float(psnr_pred.mean()):.3f}), PSNR of mean MSE {psnr_of_mean:.3f} dB")
assert mean_of_psnr >= psnr_of_mean - 1e-9  # Jensen
assert abs(mean_of_psnr - table["noise"]["psnr"]) < 1e-9  # the table reports the mean of the PSNRs
assert abs(float(psnr_pred.mean()) - mean_of_psnr) < 0.2
blur_psnr = psnr_te[task_te == TASKS.index("blur")]
blur_gap = float(blur_psnr.mean()) + 10 * math.log10(float(torch.pow(10, -blur_psnr / 10).mean()))
print(f"blur: mean of PSNRs − PSNR of mean MSE = {blur_gap:.1f} dB")
assert blur_gap > 1.0

# %% [markdown]
# ### Solution 5 — Blur PSNR vs texture
#
# Blur changes a patch only where it has edges: the residual $x \circledast k - x$ is large where the
# gradient is. So the MSE grows roughly with the square of the patch's gradient size, and PSNR falls
# by about 20 dB per decade of total variation per pixel. On the test patches the rank correlation is
# close to −1 and a straight line in $\log_{10}\mathrm{TV}$ explains most of the 30-dB spread (the rest
# is the kernel: Gaussian vs motion, its size). Flat patches (sky, smooth background) come out of the
# blur almost unchanged at 40–50 dB: a restoration model gets them "for free" — the identity already
# scores high, which inflates the task's mean PSNR and hides how it does on textured patches.

# %%
from scipy.stats import spearmanr

is_blur = task_te == TASKS.index("blur")
tv_s5 = np.array([total_variation(p) / p.numel() for p in clean_te[is_blur]])
psnr_s5 = psnr_te[is_blur].numpy()
rho_s5 = float(spearmanr(tv_s5, psnr_s5)[0])
slope_s5, icpt_s5 = np.polyfit(np.log10(tv_s5), psnr_s5, 1)
r2_s5 = 1 - np.var(psnr_s5 - (slope_s5 * np.log10(tv_s5) + icpt_s5)) / np.var(psnr_s5)
print(f"{is_blur.sum()} blur patches: Spearman ρ = {rho_s5:.2f}, slope {slope_s5:.1f} dB per decade of TV, R² = {r2_s5:.2f}")
assert rho_s5 < -0.8 and r2_s5 > 0.7 and -35 < slope_s5 < -10

seed_everything(0)
fig, ax = plt.subplots(figsize=(4.5, 3.2))
ax.scatter(tv_s5, psnr_s5, color="C3", s=18)
tv_line = np.geomspace(tv_s5.min(), tv_s5.max(), 50)
ax.plot(tv_line, slope_s5 * np.log10(tv_line) + icpt_s5, "k--", lw=1,
        label=f"{slope_s5:.0f} dB per decade, R² = {r2_s5:.2f}")
ax.set_xscale("log")
ax.set_xlabel("total variation per pixel of the clean patch", fontsize=9)
ax.set_ylabel("PSNR of the blurred input (dB)", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, "04_sol_blur_psnr_tv")
plt.show()
plt.close(fig)

# %% [markdown]
# ### Solution 6 — Fractions and source photos
#
# Within task $k$ ($n_k$ patches, of which $c_{sk}$ come from source $s$) the subset keeps
# $m_k = \max(1, \lfloor f n_k + \tfrac12\rfloor)$ patches drawn uniformly without replacement, so the
# number from source $s$ is a sum over tasks of independent hypergeometric counts, with
#
# $$\mathbb E = \sum_k m_k\,\frac{c_{sk}}{n_k},\qquad
# \mathrm{Var} = \sum_k m_k\,\frac{c_{sk}}{n_k}\Big(1 - \frac{c_{sk}}{n_k}\Big)\frac{n_k - m_k}{n_k - 1}.$$
#
# The share of a source is therefore $f$-independent on average (its share of the split) but
# fluctuates; the relative fluctuation is about $\sqrt{(1 - f)/(f\,c_s)}$ — largest at 25 % and for the
# sources with the **fewest** patches, zero at 100 %. At the smoke size every training source is capped
# at 20 patches, so all six fluctuate alike (±1.8 of 30 patches at 25 %, a share of 17 ± 6 %). At full
# size the sources have 94–123 patches and `coffee`, the smallest, fluctuates most (relative standard
# deviation ≈ 17 % at 25 %). That is expected: stratifying by task balances the tasks exactly, but
# leaves the sources to chance; stratifying by (task, source) would remove this, at the price of
# more rounding. We check the formula against 1,000 simulated draws and the library's actual
# subsets against it (every count within 5 standard deviations).

# %%
src_s6, task_s6 = data.arrays["train_source"], data.arrays["train_task"]
sids_s6 = np.unique(src_s6)
c_s6 = np.array([[np.sum((src_s6 == s) & (task_s6 == k)) for k in range(n_tasks)] for s in sids_s6])  # (S, K)
n_s6 = c_s6.sum(0)
rng_s6 = np.random.default_rng(0)
rel_sd = {}
for frac in FRACTIONS:
    m_s6 = np.array([max(1, math.floor(frac * n + 0.5)) for n in n_s6])
    p_s6 = c_s6 / n_s6
    mean_s6 = (m_s6 * p_s6).sum(1)
    sd_s6 = np.sqrt((m_s6 * p_s6 * (1 - p_s6) * (n_s6 - m_s6) / np.maximum(n_s6 - 1, 1)).sum(1))
    idx_s6 = data.subset_indices("train", frac).numpy()
    count_s6 = np.array([np.sum(src_s6[idx_s6] == s) for s in sids_s6])
    if frac < 1:
        sims = np.zeros((1000, len(sids_s6)))
        for k in range(n_tasks):  # the library's draw, with other random permutations
            members = np.flatnonzero(task_s6 == k)
            picked = members[np.argsort(rng_s6.random((1000, members.size)), axis=1)[:, : m_s6[k]]]
            sims += (src_s6[picked][..., None] == sids_s6).sum(1)
        assert np.allclose(sims.mean(0), mean_s6, atol=0.15 * sd_s6.max())  # 4.7 SE of a mean of 1000
        assert np.allclose(sims.std(0), sd_s6, rtol=0.12)  # ≈ 5 SE of an sd from 1000 draws
        assert np.all(np.abs(count_s6 - mean_s6) < N_SE * sd_s6)
    else:
        assert np.array_equal(count_s6, c_s6.sum(1)) and np.all(sd_s6 == 0)
    rel_sd[frac] = sd_s6 / mean_s6
    print(f"{frac:4.0%}: shares " + ", ".join(f"{data.source_names[s]} {c / len(idx_s6):.0%}"
                                            for s, c in zip(sids_s6, count_s6, strict=True)))
assert all(rel_sd[0.25] > rel_sd[0.5]) and all(rel_sd[0.5] > rel_sd[0.75])
smallest = data.source_names[sids_s6[np.argmin(c_s6.sum(1))]]
print("relative sd at 25 %: " + ", ".join(f"{data.source_names[s]} {r:.0%}" for s, r in zip(sids_s6, rel_sd[0.25], strict=True)))
if data.config.max_patches_per_image is None:  # full size: unequal sources, the smallest fluctuates most
    assert data.source_names[sids_s6[np.argmax(rel_sd[0.25])]] == smallest == "coffee"
