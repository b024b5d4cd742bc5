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
#     level: "3 — advanced (needs notebooks 01, 02, 04)"
#     budget_s: 180
# ---

# %% [markdown]
# # Train a full model step by step
#
# **Level:** 3 — advanced (needs notebooks 01, 02, 04).
#
# **Study time:** about 90 minutes (reading, running, the two graded exercises); the code runs in
# about two minutes.
#
# **Prerequisites:** notebooks 01 (the forward process), 02 (reverse sampling, SM-Res / SM-N /
# SM-Res-N, the time grid), 04 (the All-in-One-5 paired patches); PyTorch training loops.
#
# **Learning goals.** After this notebook you can
#
# 1. load a training configuration and the paired data it describes;
# 2. count a preset's parameters (the 36.26 M RDDM UNet without running it) and open the network:
#    time embedding, 6-channel input $\text{cat}(I_t, I_\text{in})$, a ResNet block, the "U";
# 3. compute RDDM's training loss for one batch **by hand** and match the trainer's;
# 4. take optimiser steps yourself and watch the loss on a fixed batch fall;
# 5. drive the training loop `Trainer.steps()` and plot its loss curve;
# 6. explain the exponential moving average (EMA) of the weights and verify one update;
# 7. score held-out patches against the "do nothing" baseline (the degraded input), 5 steps;
# 8. compare the L1 and L2 losses by a seeded, paired measurement and judge its spread;
# 9. tell blind from non-blind restoration, and beat the input on every task with the latter;
# 10. (appendix) reload a checkpoint with `torch.load(weights_only=True)`; spot a truncated one.
#
# **Runtime budget.** CPU, smoke size (the tests, `DRDD_EDU_SMOKE=1`: 60 steps, 24 test patches,
# 2 × 2 runs of 25 steps in section 8): an estimated 20–25 s idle, plus about half that for the
# worked solutions the harness appends; it allows 180 s. CPU, full size (`DRDD_EDU_SMOKE=0`: 400
# steps, 180 patches, 3 × 2 runs of 150 steps): an estimated 100–120 s idle. GPU, full-size model
# (`drdd-edu train --config full-gpu`, or `torchrun`): **not measured**.
#
# Every claim is followed by an `assert` (float32 identities to $10^{-5}$–$10^{-6}$; training claims on
# seeded runs). Sections 9–10 use checkpoints shipped in `data/checkpoints/`.

# %%
import copy
import math
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from drdd_edu import checkpoint as ckpt_io
from drdd_edu.data import build_all_in_one5
from drdd_edu.diffusion import q_sample
from drdd_edu.metrics import psnr, ssim
from drdd_edu.nn import PRESETS, build_model, count_parameters
from drdd_edu.notebook import REPO_ROOT, is_smoke, pick, report_runtime, savefig, seed_everything
from drdd_edu.samplers import timestep_pairs
from drdd_edu.specialists import load_specialists, restore_by_task
from drdd_edu.train import Trainer, load_config
from drdd_edu.train.evaluation import evaluate_model, model_from_checkpoint, restore_test_images
from drdd_edu.verdicts import verdict as sign_verdict

START = time.perf_counter()
print("smoke size" if is_smoke() else "full size")
torch.set_default_dtype(torch.float32)
seed_everything(0)

LOOP_STEPS, FIXED_BATCH_STEPS = pick(400, 60), 5  # training loop (section 5), fixed batch (4)
EVAL_IMAGES = pick(180, 24)  # held-out test patches scored in sections 7, 9, 10 (180 = all)
# the L1-vs-L2 comparison (section 8): steps per run, seeds (one L1, one L2 run each), patches
LOSS_STEPS, LOSS_SEEDS, LOSS_EVAL = pick(150, 25), pick(3, 2), pick(60, 20)
SAMPLING_STEPS = 5  # network calls per restoration (RDDM needs ≤ 5 for restoration)
SHIPPED = REPO_ROOT / "data" / "checkpoints" / "tiny-rddm.pt"
SPECIALISTS = SHIPPED.with_name("specialists")  # one tiny network per task (section 10)
EXACT_TOL = 1e-5  # float32: the same computation done two ways

# %% [markdown]
# ## 1. The configuration and the data
#
# A run is described completely by a `TrainConfig` (TOML, stored in every checkpoint). We take the
# bundled `tiny-cpu` config — RDDM's SM-Res-N objective (`pred_res_noise`) with the 0.24 M-parameter
# `tiny` UNet on notebook 04's 32×32 All-in-One-5 patches (clean/degraded pairs; train and test
# patches from **different photographs**) — changing only `out_dir=""` (write nothing), the
# progress bar, the device and the number of steps.

# %%
overrides = dict(out_dir="", progress=False, device="cpu", eval_every=0)  # out_dir "": no files
cfg = load_config("tiny-cpu", steps=LOOP_STEPS, **overrides)
keys = "preset objective stage schedule T sum_scale image_size max_patches_per_image batch_size lr"
print({key: getattr(cfg, key) for key in keys.split() + ["loss", "ema_decay", "grad_clip"]})
assert cfg.stage == "rddm" and cfg.objective == "pred_res_noise" and cfg.loss == "l1"
assert cfg.output_dir is None  # nothing will be written

data_kw = dict(scales=cfg.data_scales, max_patches_per_image=cfg.max_patches_per_image)
data = build_all_in_one5(size=cfg.image_size, seed=cfg.data_seed, progress=False, **data_kw)
print(data.summary())  # cached under data/cache/ after the first build
train_set, test_set = data.paired_subset("train"), data.paired_subset("test")
assert set(data.sources_of("train")).isdisjoint(data.sources_of("test")) and len(data.tasks) == 5
tr_c, tr_d, size = train_set.clean_u8, train_set.degraded_u8, cfg.image_size
assert tr_c.dtype == torch.uint8 and tr_d.shape == tr_c.shape == (len(tr_c), 3, size, size)
assert torch.bincount(train_set.task, minlength=5).min() > 0  # every task has training patches
assert (tr_c != tr_d).any(dim=(1, 2, 3)).all()  # and each degraded copy differs from its target

# %% [markdown]
# ## 2. The model
#
# `Trainer(cfg)` builds the seeded network (a UNet that sees $\text{cat}(I_t, I_\text{in})$ and returns
# $(\hat I_\text{res}, \hat\epsilon)$), its EMA copy, AdamW, the schedule and the data. The reference
# `rddm` preset is counted on the `meta` device (no storage).

# %%
trainer = Trainer(cfg)
model, schedule = trainer.model, trainer.schedule
n_tiny = count_parameters(model)
print(f"tiny preset: {n_tiny:,} parameters; mode {model.mode!r}")
assert n_tiny == sum(p.numel() for p in model.parameters()) and n_tiny < 1_000_000
assert model.mode == "res_noise" and model.conditioned and trainer.device.type == "cpu"
with torch.device("meta"):
    rddm_one = build_model("rddm", objective="pred_res")  # one UNet: 6 channels in, 3 out
    rddm_two = build_model("rddm", objective="pred_res_noise", two_networks=True)
n_rddm, n_rddm_two = count_parameters(rddm_one), count_parameters(rddm_two)
print(f"rddm preset: {n_rddm / 1e6:.2f} M parameters per UNet, {n_rddm_two / 1e6:.2f} M for two;")
print({k: PRESETS["rddm"][k] for k in ("dim", "dim_mults", "resnet_blocks")})
assert 36.255e6 <= n_rddm < 36.265e6 and n_rddm_two == 2 * n_rddm  # 36.26 M, as the reference

# %% [markdown]
# ### Opening the network
#
# `print(model)` lists almost 200 modules (`model.unet`, from `drdd_edu/nn.py`). Four matter:
#
# * **the time embedding**: $t$ becomes `dim` $= 16$ numbers $[\sin(t\omega_i)]_{i<8},
#   [\cos(t\omega_i)]_{i<8}$, $\omega_i = 10000^{-i/7}$ (Transformer-style: fast frequencies tell
#   neighbouring $t$ apart, slow ones distant $t$), then an MLP (16 → 64 → 64);
# * **one ResNet block**: two [3×3 convolution → GroupNorm → SiLU] stages; the time vector enters
#   the first as a per-channel **scale and shift**, $h \leftarrow h\,(1 + \text{scale}) + \text{shift}$,
#   and a skip connection (1×1 when the channels change) adds the input back;
# * **conditioning by concatenation**: the first layer (`init_conv`, 7×7) sees the 6 channels
#   $\text{cat}(I_t, I_\text{in})$; DRDD's noise network (notebook 08, `conditioned=False`) sees $I_t$;
# * **the "U"**: the encoder halves the resolution twice (32 → 16 → 8) while widening the channels,
#   the bottleneck (with attention) works at 8×8, the decoder climbs back concatenating the
#   encoder's outputs (skips), and a last 1×1 convolution returns $\hat I_\text{res}$ and $\hat\epsilon$.

# %%
unet = model.unet
assert 150 < len(list(model.modules())) < 250  # what print(model) would list
t_show = torch.tensor([0, 1, 10, 100, 999])
with torch.no_grad():
    emb_show, emb_all = unet.time_embed(t_show), unet.time_embed(torch.arange(cfg.T))
    mlp_show = unet.time_mlp(emb_show)  # (5, 4·dim)
half = unet.dim // 2
omega = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / (half - 1))
by_formula = torch.cat([torch.sin(t_show[:, None] * omega), torch.cos(t_show[:, None] * omega)], 1)
assert emb_show.shape == (5, unet.dim) and mlp_show.shape == (5, 4 * unet.dim)
# float32 arguments up to 999 rad: sin/cos agree with the float64 formula to ~1e-4
assert torch.allclose(emb_show.double(), by_formula, atol=1e-3)
assert torch.allclose(emb_show[0], torch.cat([torch.zeros(half), torch.ones(half)]))  # t = 0
assert float((emb_all[1:] - emb_all[:-1]).norm(dim=1).min()) > 1e-3  # neighbours differ

block = unet.ups[0].blocks[0]
h_in = torch.randn((2, block.block1.proj.in_channels, 8, 8), generator=seed_everything(3))
with torch.no_grad():
    h_out = block(h_in, mlp_show[:2])
    scale, shift = block.mlp(mlp_show[:2])[:, :, None, None].chunk(2, dim=1)
    by_parts = block.block2(block.block1(h_in, (scale, shift))) + block.res_conv(h_in)
assert h_out.shape == (2, 32, 8, 8) and scale.shape == shift.shape == (2, 32, 1, 1)
assert torch.allclose(h_out, by_parts, atol=EXACT_TOL)

demo = trainer.batch(0)
x_in_d, t_d = demo["x_in"][:2], demo["t"][:2]
x_t_d = q_sample(demo["x0"][:2], x_in_d, t_d, schedule, demo["noise"][:2])
levels = [m for lv in (*unet.downs, *unet.ups) for m in (lv.blocks[-1], lv.resample)]
stages = [unet.init_conv, *levels, unet.mid_block2, unet.final_conv]  # hooks fire in run order
shapes, captured = [], {}  # (channels, side) after each stage; the input of init_conv
hooks = [m.register_forward_hook(lambda m, a, out: shapes.append(out.shape[1::2])) for m in stages]
hooks.append(unet.init_conv.register_forward_hook(lambda m, a, out: captured.update(x=a[0])))
with torch.no_grad():
    model(x_t_d, t_d, x_in_d)
for hk in hooks:
    hk.remove()
print("channels×side along the U:", " → ".join(f"{c}×{s}" for c, s in shapes))
assert captured["x"].shape[1] == 6 and unet.init_conv.in_channels == 6
assert torch.equal(captured["x"], torch.cat([x_t_d, x_in_d], 1))
sides = [s for _, s in shapes]
assert sides[0] == sides[-1] == cfg.image_size
assert min(sides) == cfg.image_size // unet.downsample_factor
assert tuple(shapes[-1]) == (6, cfg.image_size)  # Î_res and ε̂, 3 channels each
with torch.device("meta"):
    noise_net = build_model("tiny", objective="pred_noise", conditioned=False)
assert noise_net.unet.init_conv.in_channels == 3  # DRDD's unpaired noise network: I_t only

# %% [markdown]
# ## 3. One loss by hand
#
# Training draws per image a timestep $t$ and noise $\epsilon$, builds
# $I_t = I_0 + \bar\alpha_t I_\text{res} + \bar\beta_t\epsilon$ (R2, $I_\text{res} = I_\text{in} - I_0$) in one
# shot and asks for what went in: with `pred_res_noise` and RDDM's L1 loss,
# $\mathcal L = \operatorname{mean}|\hat I_\text{res} - I_\text{res}| + \operatorname{mean}|\hat\epsilon - \epsilon|$.
# `trainer.batch(k)` is step $k$'s batch (a pure function of seed and $k$); we redo step 0's loss.

# %%
batch0 = trainer.batch(0)
x0, x_in, t, noise = batch0["x0"], batch0["x_in"], batch0["t"], batch0["noise"]
assert x0.shape == x_in.shape == noise.shape == (cfg.batch_size, 3, cfg.image_size, cfg.image_size)
assert float(x0.min()) >= -1 and float(x0.max()) <= 1  # images live on [-1, 1]
res = x_in - x0
a_bar = schedule.alphas_cumsum[t].view(-1, 1, 1, 1).float()
b_bar = schedule.betas_cumsum[t].view(-1, 1, 1, 1).float()
x_t = x0 + a_bar * res + b_bar * noise  # (R2), by hand
assert torch.allclose(x_t, q_sample(x0, x_in, t, schedule, noise), atol=EXACT_TOL)
# the rddm schedule with sum_scale = 1 ends at ᾱ = β̄ = 1: I_{T−1} = I_in + ε, the sampler's start
assert all(abs(float(c[-1]) - 1) < 1e-6 for c in (schedule.alphas_cumsum, schedule.betas_cumsum))
with torch.no_grad():
    pred_res, pred_noise = model(x_t, t, x_in)
    loss_res, loss_noise = (pred_res - res).abs().mean(), (pred_noise - noise).abs().mean()
    loss_trainer = trainer.loss_on(batch0)
print(f"by hand {loss_res:.5f} + {loss_noise:.5f}; trainer.loss_on {loss_trainer:.5f}")
assert abs(float(loss_res + loss_noise) - float(loss_trainer)) < EXACT_TOL
# an untrained network predicts about nothing: its noise loss is near E|ε| = sqrt(2/π) ≈ 0.80
assert 0.5 < float(loss_noise) < 1.2

# %% [markdown]
# ## 4. One optimiser step, then a few
#
# A step: loss → `backward` → clip the gradient norm (`grad_clip = 1`) → AdamW. On a **copy** of
# the model, step 0's batch and the peak learning rate (the trainer warms up: `lr_at(k)`
# $= \text{lr}\cdot\min(1, (k+1)/\text{warmup})$), the loss must fall, or the wiring is broken.

# %%
probe = copy.deepcopy(model).train()
opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
losses_fixed = []
for step in range(FIXED_BATCH_STEPS + 1):
    pr, pn = probe(x_t, t, x_in)
    loss = F.l1_loss(pr, res) + F.l1_loss(pn, noise)
    losses_fixed.append(float(loss.detach()))
    if step < FIXED_BATCH_STEPS:  # the last pass only measures the loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(probe.parameters(), cfg.grad_clip)
        opt.step()
        print(f"loss {losses_fixed[-1]:.4f}   gradient norm before clipping {float(gnorm):.3f}")
print(f"after {FIXED_BATCH_STEPS} steps: {losses_fixed[-1]:.4f}")
assert losses_fixed[-1] < losses_fixed[0]
assert trainer.lr_at(0) == cfg.lr / cfg.warmup_steps and trainer.lr_at(cfg.warmup_steps) == cfg.lr
assert all(map(torch.equal, model.parameters(), trainer.ema.parameters()))  # model untouched

# %% [markdown]
# ## 5. The training loop: `Trainer.steps()`
#
# A **generator**: every `next()` does one step (batch $k$, section 3's loss, backward, clipping,
# AdamW, section 6's EMA update) and yields `{step, loss, lr, grad_norm}`; the caller owns the loop.

# %%
t0 = time.perf_counter()
history = []
for state in trainer.steps():
    history.append(state)
    if state["step"] % max(1, LOOP_STEPS // 6) == 0:
        print(f"step {state['step']:4d}  loss {state['loss']:.4f}  lr {state['lr']:.1e}")
print(f"{len(history)} steps in {time.perf_counter() - t0:.1f} s")
assert [s["step"] for s in history] == list(range(1, LOOP_STEPS + 1))
assert trainer.step == LOOP_STEPS and all(math.isfinite(s["loss"]) for s in history)
assert "checkpoint" not in history[-1]  # out_dir = "": nothing is written
losses, k = torch.tensor([s["loss"] for s in history]), max(5, LOOP_STEPS // 5)
first, last = float(losses[:k].mean()), float(losses[-k:].mean())
print(f"mean loss over the first {k} steps {first:.4f}, over the last {k} {last:.4f}")
assert last < first

w = max(3, LOOP_STEPS // 20)  # the running mean's window
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, LOOP_STEPS + 1), losses.numpy(), lw=0.8, alpha=0.5, label="loss per step")
ax.plot(range(w, LOOP_STEPS + 1), losses.unfold(0, w, 1).mean(1).numpy(), label="running mean")
ax.set(xlabel="optimisation step", ylabel="L1 loss (res + noise)", title="Training loss, tiny, 32²")
ax.legend()
fig.tight_layout()
savefig(fig, "07_loss_curve")
plt.show()

# %% [markdown]
# ## 6. The EMA of the weights
#
# Diffusion models are evaluated with an **exponential moving average** of the weights, updated
# after every step: $\theta_\text{ema} \leftarrow d_k\,\theta_\text{ema} + (1 - d_k)\,\theta$,
# $d_k = \min(d, (1 + k)/(10 + k))$, $d = 0.995$: it averages out SGD's jitter (over ~$1/(1-d) = 200$
# steps at full decay), and each new EMA weight lies **between** the old one and the new raw one.

# %%
flat = torch.nn.utils.parameters_to_vector  # all parameters as one vector
print("d_k at step k:", {j: round(trainer.ema_decay_at(j), 3) for j in (0, 10, 100, 1000)})
ema_old, d_k = flat(trainer.ema.parameters()).clone(), trainer.ema_decay_at(trainer.step)
trainer.train_step()  # one more step beyond the loop: step LOOP_STEPS + 1
raw_new, ema_new = flat(trainer.model.parameters()).detach(), flat(trainer.ema.parameters())
assert not torch.equal(ema_new, raw_new)  # the EMA is not the raw model, but this mixture:
assert torch.allclose(ema_new, d_k * ema_old + (1 - d_k) * raw_new, atol=1e-6)
lo, hi = torch.minimum(ema_old, raw_new), torch.maximum(ema_old, raw_new)
assert bool(((ema_new >= lo - 1e-6) & (ema_new <= hi + 1e-6)).all())
assert float((ema_new - ema_old).abs().max()) < float((raw_new - ema_old).abs().max())  # d_k ≈ 1

# %% [markdown]
# ## 7. Evaluation on held-out patches
#
# Each degraded **test** patch is restored by 5 steps of the $\eta = 0$ sampler from $I_\text{in} +
# \bar\beta_{T-1} z$ and scored by PSNR (dB) and SSIM; the baseline is the input itself (`psnr_in`).
# `TestPatches`: the uint8 pairs `evaluate_model` reads, with task ids, spread over the photographs.


# %%
class TestPatches:
    """A selection of the test split (given indices), in the form evaluate_model reads."""

    def __init__(self, idx: torch.Tensor) -> None:
        self.clean, self.degraded = test_set.clean_u8[idx], test_set.degraded_u8[idx]
        self.task = test_set.task[idx]


def spread(n: int) -> torch.Tensor:
    """n indices evenly spaced over the test split (n = 180: all of it, in order)."""
    return torch.linspace(0, len(test_set) - 1, n).round().long()


SHOW = "PSNR {psnr:.2f} dB, SSIM {ssim:.4f} (the input: {psnr_in:.2f} dB, {ssim_in:.4f})"
test_src = TestPatches(spread(EVAL_IMAGES))
scores_here = evaluate_model(trainer.ema, cfg, test_src, EVAL_IMAGES, SAMPLING_STEPS)
print(f"trained here ({trainer.step} steps, EMA):", SHOW.format(**scores_here))
clean01, deg01 = test_src.clean.float() / 255, test_src.degraded.float() / 255  # the baseline:
assert abs(float(psnr(deg01, clean01).mean()) - scores_here["psnr_in"]) < 1e-3
assert abs(float(ssim(deg01, clean01).mean()) - scores_here["ssim_in"]) < 1e-4
assert all(math.isfinite(v) for v in scores_here.values()) and 0 < scores_here["ssim"] <= 1

# %% [markdown]
# After a few hundred steps the tiny model does **not** beat the input yet: it has learnt to remove
# the noise of $I_T$, not to undo most degradations. Section 9 uses a longer-trained checkpoint.
#
# ## 8. L1 or L2? A measured comparison
#
# RDDM trains restoration with the **L1** loss $\operatorname{mean}|\hat y - y|$, DRDD's code (and
# notebook 08) with **L2**, $\operatorname{mean}(\hat y - y)^2$ (minimised by the posterior *mean*; L1 by
# the *median*, claimed to restore sharper). We measure: section 1's config with only the loss
# changed, `LOSS_STEPS` steps on 16² crops, `LOSS_SEEDS` seeds; a seed fixes the initial weights
# *and* every batch, so a seed's two runs differ only by the loss (**paired**).
#
# **The verdict rule**, fixed before looking: with $d_s = \text{PSNR}_\text{L1} - \text{PSNR}_\text{L2}$
# for seed $s$, "L1 better" if every $d_s > 0$ and $\bar d > 2\,\text{SE}(d)$ (SE = std of the $d_s$
# over $\sqrt{n}$), "L2 better" in the mirror case, else "cannot tell" — always below 3 seeds.
#
# **Predict, then run.** Which loss gives the higher PSNR after a short training, and by how much?
# Will either model beat the degraded input?


# %%
def train_and_score(loss: str, seed: int) -> dict[str, float]:
    """evaluate_model scores of the EMA model after LOSS_STEPS steps with ``loss``, ``seed``."""
    tr = Trainer(cfg.replace(loss=loss, seed=seed, steps=LOSS_STEPS, image_size=16, data_size=32))
    for _ in tr.steps():
        pass
    return evaluate_model(tr.ema, tr.config, loss_src, LOSS_EVAL, SAMPLING_STEPS)


loss_src, loss_scores = TestPatches(spread(LOSS_EVAL)), {"l1": [], "l2": []}
for seed, loss in tqdm([(s, lo) for s in range(LOSS_SEEDS) for lo in ("l1", "l2")], desc="runs"):
    loss_scores[loss].append(train_and_score(loss, seed))
per_seed = [[s["psnr"] for s in loss_scores[lo]] for lo in ("l1", "l2")]
psnr_l1, psnr_l2 = torch.tensor(per_seed, dtype=torch.float64)
psnr_input = loss_scores["l1"][0]["psnr_in"]
d, n_seeds = psnr_l1 - psnr_l2, LOSS_SEEDS
se = float(d.std() / math.sqrt(n_seeds)) if n_seeds > 1 else math.inf
verdict = "cannot tell"
if n_seeds >= 3 and bool((d > 0).all() or (d < 0).all()) and abs(float(d.mean())) > 2 * se:
    verdict = "L1 better" if float(d.mean()) > 0 else "L2 better"
print(f"PSNR per seed: L1 {psnr_l1.tolist()}, L2 {psnr_l2.tolist()}; input {psnr_input:.2f} dB")
print(f"L1 − L2 = {float(d.mean()):+.2f} dB (SE {se:.2f}) → verdict: {verdict}")
assert torch.isfinite(psnr_l1).all() and torch.isfinite(psnr_l2).all()
# after so few steps neither model restores anything yet: both are below the do-nothing input
assert float(torch.cat([psnr_l1, psnr_l2]).max()) < psnr_input
# measured at full size (3 seeds × 150 steps): L2 ahead in every seed, by about 1–2 dB
assert is_smoke() or verdict == "L2 better", verdict

# %% [markdown]
# **What this says, and its limits.** At full size L2 is ahead in every seed, but both models are
# still *below the input*: in the first hundred-odd steps L2's large gradient on large errors pulls
# the outputs into range faster. It says nothing about converged models (RDDM reports L1 better
# after ~10⁵ steps at 256²); 16² crops and 60 test patches are further limits. See exercise 7.
#
# ## 9. A longer-trained checkpoint and 5-step restoration
#
# The shipped checkpoint if it is there, else the model trained above. A restoration with
# `SAMPLING_STEPS` steps calls the network exactly that often, on the time grid of notebook 02.

# %%
if SHIPPED.is_file():
    best, best_cfg, best_ck = model_from_checkpoint(SHIPPED)
    source = f"shipped checkpoint {SHIPPED.relative_to(REPO_ROOT)} (step {best_ck['step']}, EMA)"
    assert count_parameters(best) == n_tiny and best_cfg.preset == "tiny"
else:
    best, best_cfg = trainer.ema, cfg
    source = f"no shipped checkpoint: the model trained above ({trainer.step} steps, EMA)"
print(source)

# %%
calls = []  # the timestep of every network call, caught by a hook on the network
hook = best.register_forward_pre_hook(lambda mod, args: calls.append(int(args[1][0])))
scores = evaluate_model(best, best_cfg, test_src, EVAL_IMAGES, SAMPLING_STEPS)
hook.remove()
print(f"{EVAL_IMAGES} test patches, {SAMPLING_STEPS} steps:", SHOW.format(**scores))
grid_t = [tt for tt, _ in timestep_pairs(best_cfg.T, SAMPLING_STEPS)]
print("network called at t =", calls[: len(grid_t)], "for each batch")
assert calls and calls == grid_t * (len(calls) // len(grid_t)) and math.isfinite(scores["psnr"])
assert scores["psnr_in"] == scores_here["psnr_in"]  # same test patches

# %% [markdown]
# An average hides a lot. The same restorations by degradation (PSNR / SSIM, restored vs input):

# %%
clean_e, input_e, restored_e = restore_test_images(
    best, best_cfg, test_src, n_images=EVAL_IMAGES, sampling_steps=SAMPLING_STEPS
)
psnr_r, psnr_i = psnr(restored_e, clean_e), psnr(input_e, clean_e)
ssim_r, ssim_i = ssim(restored_e, clean_e), ssim(input_e, clean_e)
# the same images and the same sampling noise as evaluate_model above
assert abs(float(psnr_r.mean()) - scores["psnr"]) < 1e-4
gain_by_task = {}
for k, name in enumerate(data.tasks):
    m = test_src.task == k
    gain_by_task[name] = float(psnr_r[m].mean() - psnr_i[m].mean())
    print(
        f"{name:10s} n={int(m.sum()):3d}  PSNR {float(psnr_r[m].mean()):5.2f} "
        f"(input {float(psnr_i[m].mean()):5.2f}, {gain_by_task[name]:+6.2f})   "
        f"SSIM {float(ssim_r[m].mean()):.3f} (input {float(ssim_i[m].mean()):.3f})"
    )

if SHIPPED.is_file():
    # measured claims about the shipped checkpoint (they hold for the 24 smoke patches and for
    # all 180 test patches): it improves SSIM on average and undoes low light and haze, but it
    # damages the mildly blurred inputs, which were already close to their targets
    assert scores["ssim"] > scores["ssim_in"]
    assert gain_by_task["low_light"] > 3 and gain_by_task["haze"] > 3
    assert gain_by_task["blur"] < 0
    if EVAL_IMAGES == len(test_set):  # all 180 test patches: the average PSNR improves too
        assert scores["psnr"] > scores["psnr_in"]

# %% [markdown]
# **Reading the numbers honestly.** On all 180 test patches the shipped tiny model (6 000 steps,
# ~12 CPU minutes) lifts the average from 19.78 dB / 0.538 to 22.59 dB / 0.679, thanks to low light,
# rain, noise and haze. On blur it *loses* ~10 dB: the inputs are mild (≈ 34 dB; 10 of 36 nearly
# flat, ≈ 47 dB), every pixel is regenerated from a noisy start, and it mistakes the task (below, a
# blurred patch comes out darkened). The paper's 36.26 M-parameter network is not measured here.
#
# ## 10. Five specialists (non-blind): better than doing nothing on every task
#
# A blind model must *recognise* the degradation first; on a 32² patch it often cannot (a flat
# blurred patch looks hazy or dark). No blind recipe we measured fixed that; the closest, blind
# `tiny-restore-all` (SM-Res, `sum_scale` 0.01, all pairs), stays at ≈ 28 dB on blur
# (`data/checkpoints/README.md`). Told the task, the same recipe works: `data/checkpoints/
# specialists/` holds five tiny networks, each trained on one task's pairs (2 000 steps, blur 6 000:
# 3.5× the blind run's 4 000 in all; ~8 min per 2 000 on a core) and sampled with the step count that
# scored best on its own *training* patches — never the test split, but optimistic (exercise 8).
# **Predict, then run.** Which task will gain least? Which gains will stand out from patch noise?

# %%
specialists = load_specialists(SPECIALISTS)  # checks each file's SHA-256 and its task
restored_s = restore_by_task(specialists, input_e, test_src.task, data.tasks)
d_psnr, d_ssim = psnr(restored_s, clean_e) - psnr_i, ssim(restored_s, clean_e) - ssim_i
ROW = "{:10s} {} step(s)   PSNR {:+6.2f} ± {:.2f} dB ({})   SSIM {:+.3f} ± {:.3f} ({})"
for k, name in enumerate(data.tasks):  # gain over the input, mean ± SE over the task's patches
    m, steps_k = test_src.task == k, specialists[name].sampling_steps
    gains = [(float(d[m].mean()), float(d[m].std() / math.sqrt(m.sum()))) for d in (d_psnr, d_ssim)]
    words = [sign_verdict(*g) for g in gains]  # "agrees": the gain exceeds 2 SE
    print(ROW.format(name, steps_k, *gains[0], words[0], *gains[1], words[1]))
    assert gains[0][0] > 0 and gains[1][0] > 0, name  # above the input on average, every task
    if EVAL_IMAGES == len(test_set):  # all 180: clear gains, except blur's PSNR (+0.55 ± 0.28)
        assert words[1] == "agrees" and (words[0] == "agrees") == (name != "blur"), name
assert list(specialists) == list(data.tasks)  # one per task, each trained on that task only

# %%
# two patches per degradation, from different photographs; rows: input, blind, specialist, target
pick_k = [len(test_set) // 20, -len(test_set) // 20]
fig_idx = torch.cat([torch.nonzero(test_set.task == k).flatten()[pick_k] for k in range(5)])
fig_src, N_FIG = TestPatches(fig_idx), len(fig_idx)
clean_v, start_v, restored_v = restore_test_images(best, best_cfg, fig_src, N_FIG, SAMPLING_STEPS)
special_v = restore_by_task(specialists, start_v, fig_src.task, data.tasks)
rows_v = (start_v, restored_v, special_v, clean_v)
grid = torch.cat([torch.cat(list(r.clamp(0, 1)), -1) for r in rows_v], -2)
tasks_v = [data.tasks[i] for i in fig_src.task.tolist()]
fig, ax = plt.subplots(figsize=(N_FIG, 4.3))
ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
ax.set_xticks([32 * j + 15.5 for j in range(N_FIG)], tasks_v, fontsize=8, rotation=45)
ax.set_yticks([16, 48, 80, 112], ["input", "blind", "specialist", "target"], fontsize=8)
ax.set_title("Held-out patches: blind model (section 9), specialists (10)", fontsize=9)
fig.tight_layout()
p = savefig(fig, "07_samples")
plt.show()
assert p.stat().st_size < 400_000
assert clean_v.shape == start_v.shape == restored_v.shape == special_v.shape == (N_FIG, 3, 32, 32)
assert sorted(set(tasks_v)) == sorted(data.tasks)  # every degradation is shown

# %% [markdown]
# ## Appendix: inside a checkpoint
#
# Not needed later. A checkpoint is one `.pt` file of plain data (weights, EMA, optimiser state,
# step, config, RNG states) written atomically, readable with `torch.load(weights_only=True)` (no
# code runs); a file cut short (a full disk, a killed copy) raises a `CheckpointError` naming it.

# %%
tmp = Path(tempfile.mkdtemp(prefix="drdd07-"))
parts = dict(model=trainer.model, ema=trainer.ema, optimizer=trainer.optimizer)
path = ckpt_io.checkpoint_path(tmp, trainer.step)
ckpt_io.save_checkpoint(path, step=trainer.step, config=cfg.to_json(), **parts)
raw = torch.load(path, map_location="cpu", weights_only=True)
print(path.name, f"{path.stat().st_size / 1e6:.2f} MB; keys:", sorted(raw))
assert raw["step"] == trainer.step and raw["format_version"] == ckpt_io.FORMAT_VERSION
reloaded, cfg_back, _ = model_from_checkpoint(path)  # the EMA network, rebuilt from its config
with torch.no_grad():  # bit-identical outputs
    same = all(map(torch.equal, trainer.ema(x_t, t, x_in), reloaded(x_t, t, x_in)))
assert cfg_back == cfg and same
broken = tmp / "truncated.pt"
broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
try:
    ckpt_io.load_checkpoint(broken)
    raise AssertionError("a truncated checkpoint was accepted")
except ckpt_io.CheckpointError as err:
    print(message := str(err))
assert "truncated or corrupt" in message and str(broken) in message
shutil.rmtree(tmp)

# %% [markdown]
# ## What you learned
#
# * A run is one `TrainConfig`; `Trainer(cfg)` builds everything, `trainer.batch(k)` is a pure
#   function of `(seed, k)`. One step = loss → backward → clipping → AdamW → EMA update.
# * The UNet reads $t$ through a sinusoidal embedding and an MLP (a scale and shift in every ResNet
#   block) and $I_\text{in}$ by concatenation. Tiny: 0.24 M parameters; the reference: 36.26 M.
# * RDDM's SM-Res-N loss draws $t$ and $\epsilon$, builds $I_t$ by (R2) and takes
#   $\operatorname{mean}|\hat I_\text{res} - I_\text{res}| + \operatorname{mean}|\hat\epsilon - \epsilon|$.
# * Scores mean something only next to the do-nothing baseline: the model trained here is below
#   it; the blind checkpoint beats it on 4 of 5 tasks; five non-blind specialists on all 5.
# * L1 versus L2 is empirical: a paired, seeded comparison with a rule fixed in advance answers it
#   *for the setting measured* (here: L2 ahead early in training) — no more.
#
# ## Exercises
#
# 1. **SM-Res instead of SM-Res-N.** Recompute the loss of section 3 by hand for a trainer built
#    with `cfg.replace(objective="pred_res")`. Which term disappears, and what does the sampler use
#    for $\hat\epsilon$? *Hint:* notebook 02; `model.mode`.
# 2. **Raw versus EMA.** Score `trainer.model` and `trainer.ema` on the same test patches. Which is
#    better after 60 steps, and why could the EMA be *worse* so early? *Hint:* `ema_decay_at`.
# 3. **Exact resume.** With an `out_dir` in a temporary folder and `ckpt_every = 20`, train 40 of
#    60 steps, resume with `Trainer(cfg, resume=True)` and compare the final weights with an
#    uninterrupted run. *Hint:* step $k$'s random draws depend only on `(seed, k)`: `torch.equal`.
# 4. **How many sampling steps?** Score section 9's checkpoint with 1, 2, 5 and 10 sampling steps.
#    Is more always better?
# 5. **Per-task scores.** Split section 9's PSNR gain by degradation and by patch (`test_src.task`).
#    Which tasks does the tiny model help or hurt, and do all patches of a task agree?
# 6. **The loss at one timestep.** Evaluate the loss of section 3 at fixed $t = 0, 250, 500, 999$
#    for the trained model. Where is the residual hard to predict, where the noise? *Hint:* at
#    $t = 0$, $\bar\beta_0 \approx 0$, so $I_t \approx I_0$ and the noise is almost invisible.
# 7. **L1 or L2, trained longer.** Rerun section 8 with `LOSS_STEPS = 2000` and 32×32 crops
#    (minutes per run). Does the verdict survive once the models beat their input? *Hint:* keep the
#    verdict rule unchanged — choosing the rule after seeing the data is how spurious effects arise.
# 8. **Specialists' sampling steps.** Score each specialist of section 10 with 1, 2, 3 and 5 steps
#    on its task's test patches (`restore_with`). Did the choice made on training patches transfer?
#
# ### Graded exercises
#
# Graded automatically (`drdd-edu assignments grade`): replace each `raise NotImplementedError()`
# with your code, keeping the function's name and signature. The test cell below each exercise
# shows some checks; the grader adds hidden ones (other batches and networks, boundary values, no
# call of the library function you re-implement) and restores the test cells.
#
# **Exercise A (2 points) — one training loss by hand.** Write `my_training_loss(model, batch,
# schedule)`: RDDM's SM-Res-N loss on one batch (a dict like `trainer.batch(k)`: `x0`, `x_in`, `t`,
# `noise`). Build $I_t$ by (R2) from `schedule.alphas_cumsum` and `schedule.betas_cumsum`, call
# `model(I_t, t, x_in)` (it returns $(\hat I_\text{res}, \hat\epsilon)$) and return the 0-d tensor
# $\operatorname{mean}|\hat I_\text{res} - I_\text{res}| + \operatorname{mean}|\hat\epsilon - \epsilon|$. It must stay
# differentiable (no `float()`, no `.item()`) and may not use `q_sample` or the trainer's `loss_on`
# / `loss_terms`. *Hint:* section 3; the coefficients need the shape (B, 1, 1, 1).


# %% nbgrader={"grade": false, "grade_id": "ex07-training-loss", "locked": false, "solution": true, "schema_version": 3}
def my_training_loss(model, batch, schedule):
    """SM-Res-N L1 loss of one batch: mean|Î_res − I_res| + mean|ε̂ − ε|, a 0-d tensor."""
    ### BEGIN SOLUTION
    x0_b, x_in_b, t_b, noise_b = batch["x0"], batch["x_in"], batch["t"], batch["noise"]
    res_b = x_in_b - x0_b  # I_res (R0)
    a_b = schedule.alphas_cumsum[t_b].to(x0_b.dtype).view(-1, 1, 1, 1)
    b_b = schedule.betas_cumsum[t_b].to(x0_b.dtype).view(-1, 1, 1, 1)
    x_t_b = x0_b + a_b * res_b + b_b * noise_b  # (R2)
    pred_res_b, pred_noise_b = model(x_t_b, t_b, x_in_b)
    return (pred_res_b - res_b).abs().mean() + (pred_noise_b - noise_b).abs().mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex07-training-loss-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
cfg_ex = load_config(
    "tiny-cpu", steps=1, out_dir="", progress=False, device="cpu", eval_every=0, batch_size=4
)
trainer_ex = Trainer(cfg_ex)
batch_ex = trainer_ex.batch(0)
with torch.no_grad():
    mine_ex = my_training_loss(trainer_ex.model, batch_ex, trainer_ex.schedule)
    ref_ex = trainer_ex.loss_on(batch_ex)
assert isinstance(mine_ex, torch.Tensor) and mine_ex.ndim == 0, "return a 0-d tensor"
assert abs(float(mine_ex) - float(ref_ex)) < 1e-5, (float(mine_ex), float(ref_ex))
print(f"Exercise A: visible checks passed (loss {float(mine_ex):.5f})")
### BEGIN HIDDEN TESTS
import drdd_edu.diffusion as diffusion_module_ex
import drdd_edu.train.trainer as train_module_ex

# another batch, and a network after some training (the notebook's own trainer)
for trainer_h, k_h in ((trainer_ex, 1), (trainer_ex, 7), (trainer, 3)):
    batch_h = trainer_h.batch(k_h)
    with torch.no_grad():
        mine_h = my_training_loss(trainer_h.model, batch_h, trainer_h.schedule)
        ref_h = trainer_h.loss_on(batch_h)
    assert abs(float(mine_h) - float(ref_h)) < 1e-5, (k_h, float(mine_h), float(ref_h))
# the loss is differentiable and its gradient is the trainer's
trainer_ex.model.zero_grad(set_to_none=True)
my_training_loss(trainer_ex.model, batch_ex, trainer_ex.schedule).backward()
grads_mine_h = [p_h.grad.clone() for p_h in trainer_ex.model.parameters()]
trainer_ex.model.zero_grad(set_to_none=True)
trainer_ex.loss_on(batch_ex).backward()
for g_mine_h, p_h in zip(grads_mine_h, trainer_ex.model.parameters(), strict=True):
    assert torch.allclose(g_mine_h, p_h.grad, atol=1e-5), "gradients differ from the trainer's"
trainer_ex.model.zero_grad(set_to_none=True)


# not the library: q_sample and the trainer's loss are unavailable during the call
def forbidden_h(*args, **kwargs):
    raise AssertionError("my_training_loss must not call q_sample or the trainer's loss")


owners_h = [(diffusion_module_ex, "q_sample"), (train_module_ex, "q_sample")]
owners_h += [(Trainer, "loss_on"), (Trainer, "loss_terms")]
saved_h = [getattr(o_h, n_h) for o_h, n_h in owners_h] + [globals()["q_sample"]]
for o_h, n_h in owners_h:
    setattr(o_h, n_h, forbidden_h)
globals()["q_sample"] = forbidden_h
try:
    with torch.no_grad():
        again_h = my_training_loss(trainer_ex.model, batch_ex, trainer_ex.schedule)
finally:
    for (o_h, n_h), f_h in zip(owners_h, saved_h, strict=False):
        setattr(o_h, n_h, f_h)
    globals()["q_sample"] = saved_h[-1]
assert abs(float(again_h) - float(ref_ex)) < 1e-5
### END HIDDEN TESTS

# %% [markdown]
# **Exercise B (2 points) — the EMA update.** Write `my_ema_update(ema, model, decay)`: update the
# parameters of `ema` **in place** to $\theta_\text{ema} \leftarrow d\,\theta_\text{ema} + (1-d)\,\theta$ (section 6,
# $d$ = `decay`), copy every buffer of `model` into `ema`'s, return nothing; not recorded by autograd
# (`torch.no_grad()`), without `drdd_edu.train.trainer._ema_update`. *Hint:* walk
# `zip(ema.parameters(), model.parameters())` and the buffers; `mul_`, `add_`, `copy_` work in place.


# %% nbgrader={"grade": false, "grade_id": "ex07-ema-update", "locked": false, "solution": true, "schema_version": 3}
def my_ema_update(ema, model, decay):
    """In place: θ_ema ← decay·θ_ema + (1 − decay)·θ for every parameter; buffers copied."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        for p_ema, p_model in zip(ema.parameters(), model.parameters(), strict=True):
            p_ema.mul_(decay).add_(p_model.detach(), alpha=1.0 - decay)
        for b_ema, b_model in zip(ema.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b_model)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex07-ema-update-test", "points": 2, "locked": true, "solution": false, "schema_version": 3}
import drdd_edu.train.trainer as train_module_ex

torch.manual_seed(0)
raw_ex = build_model("tiny", objective="pred_res_noise")
ema_mine_ex = copy.deepcopy(raw_ex).requires_grad_(False)
ema_ref_ex = copy.deepcopy(raw_ex).requires_grad_(False)
with torch.no_grad():  # the raw model moves on: one "optimiser step" of random size
    for p_ex in raw_ex.parameters():
        p_ex.add_(0.05 * torch.randn_like(p_ex))
for decay_ex in (0.9, 0.995):
    my_ema_update(ema_mine_ex, raw_ex, decay_ex)
    train_module_ex._ema_update(ema_ref_ex, raw_ex, decay_ex)
    for a_ex, b_ex in zip(ema_mine_ex.parameters(), ema_ref_ex.parameters(), strict=True):
        assert torch.allclose(a_ex, b_ex, atol=1e-6), f"decay {decay_ex}: parameters differ"
print("Exercise B: visible checks passed")
### BEGIN HIDDEN TESTS
torch.manual_seed(1)
net_h = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
ema_h = copy.deepcopy(net_h)  # parameters still require grad: the update must be under no_grad
ema_h_ref = copy.deepcopy(net_h).requires_grad_(False)
net_h(torch.randn(8, 4))  # train mode: BatchNorm's running statistics change
with torch.no_grad():
    for p_h in net_h.parameters():
        p_h.add_(1.0)
my_ema_update(ema_h, net_h, 0.75)
train_module_ex._ema_update(ema_h_ref, net_h, 0.75)
for a_h, b_h in zip(ema_h.parameters(), ema_h_ref.parameters(), strict=True):
    assert torch.allclose(a_h, b_h, atol=1e-6)
    assert a_h.grad_fn is None, "the EMA update was recorded by autograd"
for a_h, b_h in zip(ema_h.buffers(), net_h.buffers(), strict=True):
    assert torch.equal(a_h, b_h), "buffers must be copied from the model"


def close_h(xs, ys, atol):
    return all(torch.allclose(a, b, atol=atol) for a, b in zip(list(xs), list(ys), strict=True))


def forbidden_h(*args, **kwargs):  # replaces the library's update below
    raise AssertionError("my_ema_update must not call drdd_edu.train.trainer._ema_update")


# decay 1 keeps the EMA, decay 0 copies the model
before_h = [p_h.clone() for p_h in ema_h.parameters()]
my_ema_update(ema_h, net_h, 1.0)
assert close_h(ema_h.parameters(), before_h, 1e-7)
my_ema_update(ema_h, net_h, 0.0)
assert close_h(ema_h.parameters(), net_h.parameters(), 1e-7)
# the trainer's own update (section 6): one step of the notebook's EMA, redone by hand
ema_step_h = copy.deepcopy(trainer.ema)
d_h = trainer.ema_decay_at(trainer.step)
ema_step_ref_h = copy.deepcopy(trainer.ema)
my_ema_update(ema_step_h, trainer.model, d_h)
train_module_ex._ema_update(ema_step_ref_h, trainer.model, d_h)
assert close_h(ema_step_h.parameters(), ema_step_ref_h.parameters(), 1e-6)

# not the library's update
saved_h = train_module_ex._ema_update
had_global_h = "_ema_update" in globals()
train_module_ex._ema_update = forbidden_h
globals()["_ema_update"] = forbidden_h
try:
    my_ema_update(copy.deepcopy(net_h), net_h, 0.5)
finally:
    train_module_ex._ema_update = saved_h
    if not had_global_h:
        del globals()["_ema_update"]
### END HIDDEN TESTS

# %%
report_runtime(START, budget_s=180)
