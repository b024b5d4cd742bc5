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
# **Prerequisites:** notebook 01 (the RDDM forward process
# $I_t = I_0 + \bar\alpha_t I_\text{res} + \bar\beta_t\epsilon$ and its schedules), notebook 02
# (reverse sampling, the modes SM-Res / SM-N / SM-Res-N, the time grid), notebook 04 (the
# All-in-One-5 paired patches and how they are split); PyTorch training loops (loss, `backward`,
# an optimiser).
#
# **Learning goals.** After this notebook you can
#
# 1. load a training configuration and the paired training data it describes;
# 2. build the network of a preset and count its parameters (including the 36.26 M-parameter RDDM
#    reference UNet, without running it);
# 3. compute RDDM's training loss for one batch **by hand** (forward sample $I_t$, the
#    `pred_res_noise` objective, L1) and check it against the library's trainer;
# 4. take optimiser steps yourself and watch the loss on a fixed batch fall;
# 5. drive the full training loop through the generator `Trainer.steps()` and plot its loss curve;
# 6. explain the exponential moving average (EMA) of the weights and verify one EMA update;
# 7. save a checkpoint, reload it with `torch.load(weights_only=True)`, and recognise the error a
#    truncated file gives;
# 8. evaluate PSNR/SSIM on held-out test patches against the "do nothing" baseline (the degraded
#    input itself), and restore images with 5 sampling steps.
#
# **Runtime budget.**
#
# * CPU, smoke size (what the tests run, `DRDD_EDU_SMOKE=1`: 60 training steps, 24 test patches):
#   measured 13–17 s on a shared 2-core machine (one thread); allow ~60 s on a loaded one. The
#   test harness allows 180 s.
# * CPU, full size (`DRDD_EDU_SMOKE=0`: 400 training steps, all 180 test patches): measured
#   61–66 s on the same machine.
# * GPU, full-size model: the reference configuration (two 36.26 M-parameter UNets, 64² patches,
#   global batch 64, bf16, `torch.compile`, 60 000 steps) is
#   `drdd-edu train --config full-gpu` (or `torchrun --nproc_per_node N -m drdd_edu.train_cli
#   train --config full-gpu` on N GPUs). **Its runtime and its PSNR/SSIM have NOT been measured
#   yet — no GPU was available when this notebook was written.** Do not read any number in this
#   notebook as a statement about that run.
#
# **A shipped checkpoint.** Section 9 loads `data/checkpoints/tiny-rddm.pt` (a tiny model trained
# for about ten minutes on one CPU core; `data/checkpoints/README.md` gives the exact command) if it
# is present, and otherwise falls back to the model trained here. Its scores are reported honestly
# against the input baseline.
#
# **How to read it.** Every claim is followed by an `assert`. Exact identities (the same
# computation done two ways in float32) are checked to $10^{-5}$–$10^{-6}$; claims about training
# ("the loss falls") are checked on seeded runs, so the notebook gives the same numbers every time
# on the same machine and thread count.

# %%
import copy
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from drdd_edu import checkpoint as ckpt_io
from drdd_edu.data import build_all_in_one5
from drdd_edu.diffusion import q_sample, to_model_range
from drdd_edu.metrics import psnr, ssim
from drdd_edu.nn import PRESETS, build_model, count_parameters
from drdd_edu.notebook import REPO_ROOT, is_smoke, pick, report_runtime, savefig, seed_everything
from drdd_edu.samplers import sample, timestep_pairs
from drdd_edu.train import (
    Trainer,
    evaluate_model,
    load_config,
    model_from_checkpoint,
    restore_test_images,
)

START = time.perf_counter()
print("smoke size" if is_smoke() else "full size")
torch.set_default_dtype(torch.float32)
seed_everything(0)

LOOP_STEPS = pick(400, 60)  # optimisation steps of the training loop (section 5)
FIXED_BATCH_STEPS = 5  # optimiser steps on one fixed batch (section 4)
EVAL_IMAGES = pick(180, 24)  # held-out test patches scored in sections 8 and 9 (180 = all)
SAMPLING_STEPS = 5  # network calls per restoration (RDDM needs ≤ 5 for restoration)
SHIPPED = REPO_ROOT / "data" / "checkpoints" / "tiny-rddm.pt"
SHIPPED_LOG = SHIPPED.with_name("tiny-rddm-log.jsonl")  # its training log (loss, evaluations)
EXACT_TOL = 1e-5  # float32: the same computation done two ways

# %% [markdown]
# ## 1. The configuration and the data
#
# A training run is described completely by a `TrainConfig` (a dataclass that loads from TOML and
# is stored inside every checkpoint). We start from the bundled `tiny-cpu` config — RDDM's
# SM-Res-N objective (`pred_res_noise`: one UNet predicts both the residual and the noise) with the
# 0.24 M-parameter `tiny` UNet on 32×32 All-in-One-5 patches — and change only what a notebook needs:
# no output folder (`out_dir=""` writes nothing to disk), no progress bar, the CPU, and the number
# of steps.

# %%
cfg = load_config(
    "tiny-cpu", steps=LOOP_STEPS, out_dir="", progress=False, device="cpu", eval_every=0
)
for key in (
    "preset",
    "objective",
    "stage",
    "schedule",
    "T",
    "sum_scale",
    "image_size",
    "max_patches_per_image",
    "batch_size",
    "lr",
    "warmup_steps",
    "loss",
    "ema_decay",
    "grad_clip",
):
    print(f"{key:22s} {getattr(cfg, key)!r}")
assert cfg.stage == "rddm" and cfg.objective == "pred_res_noise" and cfg.loss == "l1"
assert cfg.output_dir is None  # nothing will be written

# %% [markdown]
# The data are the All-in-One-5 patches of notebook 04: every clean patch is paired with one
# degraded copy (low light, rain, noise, blur or haze), and train and test patches come from
# **different source photographs**, so the test score measures generalisation to unseen images.
# The build is cached under `data/cache/`, so this is instant after the first time.

# %%
data = build_all_in_one5(
    size=cfg.image_size,
    seed=cfg.data_seed,
    scales=cfg.data_scales,
    max_patches_per_image=cfg.max_patches_per_image,
    progress=False,
)
print(data.summary())
train_set, test_set = data.paired_subset("train"), data.paired_subset("test")
assert set(data.sources_of("train")).isdisjoint(data.sources_of("test"))
assert train_set.clean_u8.dtype == torch.uint8
assert tuple(train_set.clean_u8.shape[1:]) == (3, cfg.image_size, cfg.image_size)
assert train_set.degraded_u8.shape == train_set.clean_u8.shape
assert len(data.tasks) == 5
# every task has training patches, and the degraded copy really differs from the clean one
assert torch.bincount(train_set.task, minlength=5).min() > 0
assert (train_set.clean_u8 != train_set.degraded_u8).any(dim=(1, 2, 3)).all()

# %% [markdown]
# ## 2. The model
#
# `Trainer(cfg)` builds everything a run needs: the network (seeded by `cfg.seed`, so identical
# on every run), its EMA copy, the AdamW optimiser, the schedule and the data on the device. The
# network is a `ResidualDenoiser`: a UNet that sees the 6-channel input $\text{cat}(I_t, I_\text{in})$
# and, for `pred_res_noise`, returns the pair $(\hat I_\text{res}, \hat\epsilon)$.

# %%
trainer = Trainer(cfg)
model, schedule = trainer.model, trainer.schedule
n_tiny = count_parameters(model)
print(f"tiny preset: {n_tiny:,} parameters ({n_tiny / 1e6:.3f} M); mode {model.mode!r}")
print(schedule)
assert n_tiny == sum(p.numel() for p in model.parameters())
assert n_tiny < 1_000_000
assert model.mode == "res_noise" and model.conditioned
assert trainer.device.type == "cpu"

# %% [markdown]
# The reference network of RDDM and DRDD is the `rddm` preset (dim 64, multipliers (1, 2, 4, 8),
# two ResNet blocks per level, linear attention, full attention at the bottleneck). We count its
# parameters without allocating or running it: building it under the `meta` device creates
# parameters that have a shape but no storage.

# %%
with torch.device("meta"):
    rddm_one = build_model("rddm", objective="pred_res")  # one UNet: 6 channels in, 3 out
    rddm_two = build_model("rddm", objective="pred_res_noise", two_networks=True)
n_rddm, n_rddm_two = count_parameters(rddm_one), count_parameters(rddm_two)
print(f"rddm preset, one UNet : {n_rddm / 1e6:.2f} M parameters")
print(f"rddm preset, two UNets: {n_rddm_two / 1e6:.2f} M parameters (full-gpu config)")
print(f"ratio rddm / tiny: {n_rddm / n_tiny:.0f}×")
assert 36.255e6 <= n_rddm < 36.265e6  # 36.26 M, as the reference's UNet
assert n_rddm_two == 2 * n_rddm
print({k: PRESETS["rddm"][k] for k in ("dim", "dim_mults", "resnet_blocks")})
del rddm_one, rddm_two

# %% [markdown]
# ## 3. One loss by hand
#
# RDDM training draws, for every image of a batch, a timestep $t \in \{0,\dots,T-1\}$ and noise
# $\epsilon \sim \mathcal N(0, I)$, builds the noisy state in one shot,
#
# $$I_\text{res} = I_\text{in} - I_0,\qquad I_t = I_0 + \bar\alpha_t I_\text{res} + \bar\beta_t\,\epsilon,$$
#
# and asks the network to recover what went in. With the `pred_res_noise` objective and the L1
# loss of RDDM's restoration experiments,
#
# $$\mathcal L = \operatorname{mean}\lvert\hat I_\text{res} - I_\text{res}\rvert
#              + \operatorname{mean}\lvert\hat\epsilon - \epsilon\rvert .$$
#
# `trainer.batch(k)` returns the batch of step $k$ (a pure function of the seed and $k$: the
# images, flips, timesteps and noise); we take step 0's batch and compute the loss ourselves.

# %%
batch0 = trainer.batch(0)
x0, x_in, t, noise = batch0["x0"], batch0["x_in"], batch0["t"], batch0["noise"]
print("x0", tuple(x0.shape), "range", round(float(x0.min()), 3), round(float(x0.max()), 3))
print("t ", t.tolist())
assert x0.shape == x_in.shape == noise.shape == (cfg.batch_size, 3, cfg.image_size, cfg.image_size)
assert float(x0.min()) >= -1 and float(x0.max()) <= 1  # images live on [-1, 1]

res = x_in - x0
a_bar = schedule.alphas_cumsum[t].view(-1, 1, 1, 1).float()
b_bar = schedule.betas_cumsum[t].view(-1, 1, 1, 1).float()
x_t = x0 + a_bar * res + b_bar * noise  # (R2), by hand
assert torch.allclose(x_t, q_sample(x0, x_in, t, schedule, noise), atol=EXACT_TOL)
# the rddm schedule with sum_scale = 1 ends at ᾱ = β̄ = 1: I_{T−1} = I_in + ε, the sampler's start
assert abs(float(schedule.alphas_cumsum[-1]) - 1) < 1e-6
assert abs(float(schedule.betas_cumsum[-1]) - 1) < 1e-6

with torch.no_grad():
    pred_res, pred_noise = model(x_t, t, x_in)
    loss_res = (pred_res - res).abs().mean()
    loss_noise = (pred_noise - noise).abs().mean()
    loss_by_hand = loss_res + loss_noise
    loss_trainer = trainer.loss_on(batch0)
print(f"by hand: L_res {loss_res:.5f} + L_noise {loss_noise:.5f} = {loss_by_hand:.5f}")
print(f"trainer.loss_on(batch): {loss_trainer:.5f}")
assert abs(float(loss_by_hand) - float(loss_trainer)) < EXACT_TOL
# an untrained network predicts about nothing: its noise loss is near E|ε| = sqrt(2/π) ≈ 0.80
print(f"E|ε| = {math.sqrt(2 / math.pi):.3f}")
assert 0.5 < float(loss_noise) < 1.2

# %% [markdown]
# ## 4. One optimiser step, then a few
#
# An optimisation step is: loss → `backward` → clip the gradient norm (`grad_clip = 1`) →
# AdamW step. We do it on a **copy** of the model (the trainer's own model stays at its
# initialisation for section 5) and on the fixed batch of step 0, at the config's peak learning
# rate. On one fixed batch the loss must fall — if it does not, something in the wiring
# (gradients, optimiser, learning rate) is broken. (During warm-up the trainer itself starts at a
# smaller rate: `lr_at(k)` $= \text{lr}\cdot\min(1, (k+1)/\text{warmup})$.)

# %%
probe = copy.deepcopy(model).train()
opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))


def fixed_batch_loss(net: torch.nn.Module) -> torch.Tensor:
    pr, pn = net(x_t, t, x_in)
    return F.l1_loss(pr, res) + F.l1_loss(pn, noise)


losses_fixed = []
for _ in range(FIXED_BATCH_STEPS):
    loss = fixed_batch_loss(probe)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(probe.parameters(), cfg.grad_clip)
    opt.step()
    losses_fixed.append(float(loss.detach()))
    print(f"loss {float(loss):.4f}   gradient norm before clipping {float(gnorm):.3f}")
with torch.no_grad():
    losses_fixed.append(float(fixed_batch_loss(probe)))
print(f"after {FIXED_BATCH_STEPS} steps: {losses_fixed[-1]:.4f}")
print("warm-up learning rates:", [f"{trainer.lr_at(k):.1e}" for k in (0, 1, 9, 19, 20, 100)])
assert losses_fixed[-1] < losses_fixed[0]
assert trainer.lr_at(0) == cfg.lr / cfg.warmup_steps and trainer.lr_at(cfg.warmup_steps) == cfg.lr
# the trainer's own model was not touched
assert all(
    torch.equal(p, q) for p, q in zip(model.parameters(), trainer.ema.parameters(), strict=True)
)
del probe, opt

# %% [markdown]
# ## 5. The training loop: `Trainer.steps()`
#
# `Trainer.steps()` is a **generator**: every `next()` performs one optimisation step (the batch
# of step $k$, the loss of section 3, backward, clipping, AdamW, the EMA update of section 6) and
# yields a small dict `{step, loss, lr, grad_norm}` (plus `eval` and `checkpoint` when those are
# due). The caller owns the loop, so it can log, plot, stop early or inspect the model between
# steps. `trainer.run()` is the same loop with a progress bar.

# %%
t0 = time.perf_counter()
history = []
for state in trainer.steps():
    history.append(state)
    if state["step"] % max(1, LOOP_STEPS // 6) == 0:
        print(
            f"step {state['step']:4d}  loss {state['loss']:.4f}  lr {state['lr']:.1e}  "
            f"grad norm {state['grad_norm']:.2f}"
        )
loop_s = time.perf_counter() - t0
print(f"{len(history)} steps in {loop_s:.1f} s ({len(history) / loop_s:.1f} steps/s)")
assert [s["step"] for s in history] == list(range(1, LOOP_STEPS + 1))
assert trainer.step == LOOP_STEPS
assert all(math.isfinite(s["loss"]) for s in history)
assert "checkpoint" not in history[-1]  # out_dir = "": nothing is written

losses = torch.tensor([s["loss"] for s in history])
k = max(5, LOOP_STEPS // 5)
first, last = float(losses[:k].mean()), float(losses[-k:].mean())
print(f"mean loss over the first {k} steps {first:.4f}, over the last {k} steps {last:.4f}")
assert last < first

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, LOOP_STEPS + 1), losses.numpy(), lw=0.8, alpha=0.5, label="loss per step")
w = max(3, LOOP_STEPS // 20)
smooth = torch.nn.functional.avg_pool1d(losses.view(1, 1, -1), w, stride=1).view(-1)
ax.plot(range(w, LOOP_STEPS + 1), smooth.numpy(), lw=1.5, label=f"running mean ({w} steps)")
ax.set_xlabel("optimisation step")
ax.set_ylabel("L1 loss (res + noise)")
ax.set_title("Training loss, tiny preset, All-in-One-5 32²")
ax.legend()
fig.tight_layout()
savefig(fig, "07_loss_curve", dpi=90)
plt.show()

# %% [markdown]
# ## 6. The EMA of the weights
#
# Diffusion models are evaluated with an **exponential moving average** of the weights, not the
# raw ones: after every step
#
# $$\theta_\text{ema} \leftarrow d_k\,\theta_\text{ema} + (1 - d_k)\,\theta,\qquad
#   d_k = \min\!\Big(d, \frac{1 + k}{10 + k}\Big),\ d = 0.995,$$
#
# which averages out the step-to-step jitter of SGD. The warm-up $(1+k)/(10+k)$ lets the average
# forget the random initialisation quickly at the start. With $d = 0.995$ the average spans about
# $1/(1-d) = 200$ steps. Because $0 \le d_k \le 1$, every new EMA weight is a convex combination
# and lies **between** the old EMA weight and the new raw weight. We check one update.

# %%
print(
    "decay d_k at k = 0, 10, 100, 1000:",
    [round(trainer.ema_decay_at(kk), 4) for kk in (0, 10, 100, 1000)],
)


def flat(m: torch.nn.Module) -> torch.Tensor:
    """All parameters of ``m`` as one detached vector."""
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


ema_old = flat(trainer.ema).clone()
d_k = trainer.ema_decay_at(trainer.step)
trainer.train_step()  # one more step beyond the loop: step LOOP_STEPS + 1
raw_new, ema_new = flat(trainer.model), flat(trainer.ema)
print(f"d_k = {d_k:.4f};  max |θ_ema − θ| = {float((ema_new - raw_new).abs().max()):.4f}")
assert not torch.equal(ema_new, raw_new)  # the EMA is not the raw model
assert torch.allclose(ema_new, d_k * ema_old + (1 - d_k) * raw_new, atol=1e-6)
lo, hi = torch.minimum(ema_old, raw_new), torch.maximum(ema_old, raw_new)
assert bool(((ema_new >= lo - 1e-6) & (ema_new <= hi + 1e-6)).all())
# with d_k close to 1 the EMA moves only a little toward the new weights
assert float((ema_new - ema_old).abs().max()) < float((raw_new - ema_old).abs().max())

# %% [markdown]
# ## 7. Checkpoints
#
# A checkpoint is one `.pt` file holding plain data only (tensors, numbers, strings, dicts):
# the raw and EMA weights, the optimiser state, the step, the config as JSON and the RNG states. It
# is written atomically (a temporary file, `fsync`, then a rename), so a crash never leaves a torn
# file under the final name, and it can be read with `torch.load(..., weights_only=True)`, which
# refuses to execute code from the file. `model_from_checkpoint` rebuilds the network from the
# stored config and loads the EMA (default) or the raw weights.

# %%
tmp = Path(tempfile.mkdtemp(prefix="drdd07-"))
path = ckpt_io.save_checkpoint(
    ckpt_io.checkpoint_path(tmp, trainer.step),
    model=trainer.model,
    ema=trainer.ema,
    optimizer=trainer.optimizer,
    step=trainer.step,
    config=cfg.to_json(),
    extra={"note": "notebook 07"},
)
print(path.name, f"{path.stat().st_size / 1e6:.2f} MB")

raw = torch.load(path, map_location="cpu", weights_only=True)
print("keys:", sorted(raw))
assert raw["step"] == trainer.step and raw["format_version"] == ckpt_io.FORMAT_VERSION

reloaded, cfg_back, _ = model_from_checkpoint(path)  # EMA weights
reloaded_raw, _, _ = model_from_checkpoint(path, use_ema=False)
assert cfg_back == cfg
with torch.no_grad():
    a = trainer.ema(x_t, t, x_in)
    b = reloaded(x_t, t, x_in)
    c = trainer.model.eval()(x_t, t, x_in)
    d = reloaded_raw(x_t, t, x_in)
trainer.model.train()
assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))  # bit-identical outputs
assert all(torch.equal(u, v) for u, v in zip(c, d, strict=True))
print("reloaded EMA and raw models give bit-identical outputs")

# %% [markdown]
# A file cut short — a full disk, a killed copy — must not be mistaken for a fresh start. Loading
# it raises a `CheckpointError` that names the file and says what to do.

# %%
broken = tmp / "truncated.pt"
blob = path.read_bytes()
broken.write_bytes(blob[: len(blob) // 2])
try:
    ckpt_io.load_checkpoint(broken)
except ckpt_io.CheckpointError as err:
    message = str(err)
    print(message)
else:
    raise AssertionError("a truncated checkpoint was accepted")
assert "truncated or corrupt" in message and str(broken) in message
shutil.rmtree(tmp)  # the temporary checkpoints are not needed any more

# %% [markdown]
# ## 8. Evaluation on held-out patches
#
# Restoration is scored on the **test** patches (unseen source photographs): restore each degraded
# patch with `SAMPLING_STEPS` = 5 steps of the deterministic ($\eta = 0$) RDDM sampler, starting at
# $I_\text{in} + \bar\beta_{T-1} z$, and compare with the clean target by PSNR (dB) and SSIM. The
# essential baseline is the degraded input itself: a restoration model is only useful where it
# beats `psnr_in` / `ssim_in`.
#
# `evaluate_model` scores the *first* `n` test patches. The test split is ordered by source photo
# (the first 60 are all from one photograph), so for a small `n` we pass an evenly spaced selection
# of all 180 (any object with uint8 `clean` and `degraded` tensors works as the test source).


# %%
class TestPatches:
    """A selection of the test split (given indices), in the form evaluate_model reads."""

    def __init__(self, idx: torch.Tensor) -> None:
        self.clean, self.degraded = test_set.clean_u8[idx], test_set.degraded_u8[idx]
        self.task = test_set.task[idx]


def spread(n: int) -> torch.Tensor:
    """n indices evenly spaced over the test split (n = 180: all of it, in order)."""
    return torch.linspace(0, len(test_set) - 1, n).round().long()


test_src = TestPatches(spread(EVAL_IMAGES))
print(
    "test patches per task:",
    dict(zip(data.tasks, torch.bincount(test_src.task, minlength=5).tolist(), strict=True)),
)

t0 = time.perf_counter()
scores_here = evaluate_model(
    trainer.ema, cfg, test_src, n_images=EVAL_IMAGES, sampling_steps=SAMPLING_STEPS
)
print(
    f"model trained here ({trainer.step} steps, EMA), {EVAL_IMAGES} test patches, "
    f"{time.perf_counter() - t0:.1f} s:"
)
print(f"  restored: PSNR {scores_here['psnr']:.2f} dB, SSIM {scores_here['ssim']:.4f}")
print(f"  input   : PSNR {scores_here['psnr_in']:.2f} dB, SSIM {scores_here['ssim_in']:.4f}")

# the input baseline, recomputed independently
clean01 = test_src.clean.float() / 255
deg01 = test_src.degraded.float() / 255
assert abs(float(psnr(deg01, clean01).mean()) - scores_here["psnr_in"]) < 1e-3
assert abs(float(ssim(deg01, clean01).mean()) - scores_here["ssim_in"]) < 1e-4
assert all(math.isfinite(v) for v in scores_here.values())
assert 0 < scores_here["ssim"] <= 1

# %% [markdown]
# After a few hundred steps the tiny model usually does **not** beat the input yet: it has learnt
# to remove noise from $I_T$ but not yet to undo most degradations. (The output above shows the
# honest numbers.) The next section uses a longer-trained checkpoint.

# %% [markdown]
# ## 9. A longer-trained checkpoint and 5-step restoration
#
# We load the shipped checkpoint if it is there, else keep the model trained above. One
# restoration with `SAMPLING_STEPS` steps calls the network exactly `SAMPLING_STEPS` times, on the
# time grid of notebook 02.

# %%
if SHIPPED.is_file():
    best, best_cfg, best_ck = model_from_checkpoint(SHIPPED)
    source = f"shipped checkpoint {SHIPPED.relative_to(REPO_ROOT)} (step {best_ck['step']}, EMA)"
    assert count_parameters(best) == n_tiny and best_cfg.preset == "tiny"
else:
    best, best_cfg = trainer.ema, cfg
    source = f"no shipped checkpoint: the model trained above ({trainer.step} steps, EMA)"
print(source)

# %% [markdown]
# The shipped checkpoint comes with its training log (`log.jsonl` of the run: the loss every 10
# steps and an evaluation every 200 steps on the *first* 16 test patches, all from one photograph).
# It shows the long-run picture the 60–400 steps above cannot: the loss keeps falling slowly, and
# the restored PSNR climbs past the input's only after a while.

# %%
if SHIPPED_LOG.is_file():
    records = [json.loads(line) for line in SHIPPED_LOG.read_text().splitlines() if line.strip()]
    log_steps = torch.tensor([r["step"] for r in records], dtype=torch.float32)
    log_loss = torch.tensor([r["loss"] for r in records])
    evals = [(r["step"], r["eval"]) for r in records if "eval" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 2.8))
    ax1.plot(log_steps.numpy(), log_loss.numpy(), lw=0.6)
    ax1.set(xlabel="step", ylabel="L1 loss", title="shipped run: training loss")
    ax2.plot([e[0] for e in evals], [e[1]["psnr"] for e in evals], "o-", ms=3, label="restored")
    ax2.axhline(evals[0][1]["psnr_in"], color="gray", ls=":", label="input")
    ax2.set(xlabel="step", ylabel="PSNR (dB)", title="16 test patches, 5 steps")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    savefig(fig, "07_shipped_training", dpi=90)
    plt.show()
    assert records[-1]["step"] == best_ck["step"]
    n10 = max(1, len(log_loss) // 10)
    assert float(log_loss[-n10:].mean()) < float(log_loss[:n10].mean())
else:
    print("no training log next to the checkpoint")

# %%
calls = []


def counting_model(x_t_, t_, x_in_):
    calls.append(int(t_[0]))
    return best(x_t_, t_, x_in_)


g = seed_everything(7)
x_in_demo = to_model_range(deg01[:4])
out = sample(
    counting_model, x_in_demo, best_cfg.make_schedule(), SAMPLING_STEPS, mode=best.mode, generator=g
)
print("network called at t =", calls)
assert calls == [tt for tt, _ in timestep_pairs(best_cfg.T, SAMPLING_STEPS)]
assert out.shape == x_in_demo.shape and torch.isfinite(out).all()

t0 = time.perf_counter()
scores = evaluate_model(
    best, best_cfg, test_src, n_images=EVAL_IMAGES, sampling_steps=SAMPLING_STEPS
)
print(f"{EVAL_IMAGES} test patches, {SAMPLING_STEPS} steps, {time.perf_counter() - t0:.1f} s:")
print(f"  restored: PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
print(f"  input   : PSNR {scores['psnr_in']:.2f} dB, SSIM {scores['ssim_in']:.4f}")
print(
    f"  gain    : PSNR {scores['psnr'] - scores['psnr_in']:+.2f} dB, "
    f"SSIM {scores['ssim'] - scores['ssim_in']:+.4f}"
)
assert scores["psnr_in"] == scores_here["psnr_in"]  # same test patches

# %% [markdown]
# An average hides a lot. The same restorations split by degradation (PSNR / SSIM, restored vs
# input):

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
# **Reading the numbers honestly.** On all 180 test patches the shipped tiny model (0.24 M
# parameters, 6 000 steps on 360 training patches, ~12 min on one CPU core) lifts the average from
# 19.78 dB / 0.538 to 22.59 dB / 0.679 (measured with `drdd-edu evaluate`, see
# `data/checkpoints/README.md`). The gain comes from low light, rain, noise and haze. On blur it
# *loses* about 10 dB: our blurred inputs are mild (≈ 34 dB already), and a tiny network that
# regenerates every pixel through 5 stochastic-start steps cannot reproduce them that precisely,
# and it sometimes mistakes the task (in the figure below, a blurred brown patch comes out darkened,
# as if it were a low-light input).
# The smoke selection of 24 patches contains 8 blurred ones, so there the *average* PSNR falls
# below the input's even though four of five tasks improve. This is far from the paper's
# reference network (36.26 M parameters per UNet, 256² crops, 120 k steps); nothing here
# measures that.

# %%
# for the figure: two patches per degradation, from different photographs
fig_idx = torch.cat(
    [
        torch.nonzero(test_set.task == k).flatten()[[len(test_set) // 20, -len(test_set) // 20]]
        for k in range(len(data.tasks))
    ]
)
fig_src = TestPatches(fig_idx)
N_FIG = len(fig_idx)
clean_v, start_v, restored_v = restore_test_images(
    best, best_cfg, fig_src, n_images=N_FIG, sampling_steps=SAMPLING_STEPS
)
tasks_v = [data.tasks[i] for i in fig_src.task.tolist()]
fig, axes = plt.subplots(3, N_FIG, figsize=(N_FIG, 3.3))
for j in range(N_FIG):
    for i, (img, name) in enumerate(
        ((start_v, "input"), (restored_v, "restored"), (clean_v, "target"))
    ):
        ax = axes[i, j]
        ax.imshow(img[j].clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_ylabel(name, fontsize=8)
        if i == 0:
            ax.set_title(tasks_v[j], fontsize=7)
fig.suptitle(f"{SAMPLING_STEPS}-step RDDM restoration of held-out patches", fontsize=9)
fig.tight_layout()
p = savefig(fig, "07_samples", dpi=90)
plt.show()
assert p.stat().st_size < 400_000
assert clean_v.shape == start_v.shape == restored_v.shape == (N_FIG, 3, 32, 32)
assert sorted(set(tasks_v)) == sorted(data.tasks)  # every degradation is shown

# %% [markdown]
# ## Exercises
#
# 1. **SM-Res instead of SM-Res-N.** Build a trainer with
#    `cfg.replace(objective="pred_res")` and recompute the loss of section 3 by hand. Which term
#    disappears, and what does the sampler use for $\hat\epsilon$?
#    *Hint:* notebook 02, the conversion $\hat\epsilon = (I_t - I_\text{in} - (\bar\alpha_t - 1)\hat
#    I_\text{res})/\bar\beta_t$; check `model.mode`.
# 2. **Raw versus EMA.** Evaluate `trainer.model` and `trainer.ema` on the same test patches after
#    section 5. Which is better after 60 steps, and why could the EMA be *worse* so early?
#    *Hint:* with $d = 0.995$ the EMA still remembers weights from ~200 steps ago; look at
#    `ema_decay_at`.
# 3. **Exact resume.** With an `out_dir` in a temporary folder and `ckpt_every = 20`, train 40
#    steps, then start a new `Trainer(cfg, resume=True)` with `steps = 60` and compare its final
#    weights with an uninterrupted 60-step run.
#    *Hint:* every random draw of step $k$ depends only on `(seed, k)` (`trainer.batch(k)`), so
#    `torch.equal` should hold on the CPU with the same thread count.
# 4. **How many sampling steps?** Score the checkpoint of section 9 with 1, 2, 5 and 10 sampling
#    steps. Is more always better?
#    *Hint:* pass `sampling_steps=` to `evaluate_model`; RDDM reports ≤ 5 steps suffice.
# 5. **Per-task scores.** Split the PSNR gain of section 9 by degradation (`test_src.task`). Which
#    tasks does the tiny model help, which does it hurt?
#    *Hint:* `restore_test_images` returns `(clean, input, restored)`; `psnr` returns one value
#    per image.
# 6. **The loss at one timestep.** Evaluate the loss of section 3 at fixed $t = 0, 250, 500, 999$
#    for the trained model. Where is the residual hard to predict, where the noise?
#    *Hint:* at $t = 0$, $\bar\beta_0 \approx 0$, so $I_t \approx I_0$ and the noise is almost
#    invisible.

# %%
report_runtime(START, budget_s=180)
