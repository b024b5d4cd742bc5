"""Data efficiency (DRDD Table C.8) in the regime DRDD's claim is about: abundant unpaired clean
images, scarce pairs.

RDDM and every DRDD variant are trained on nested, task-stratified fractions
(``efficiency_fractions``, about 2, 5, 10, 25 and 100 %) of the *uncapped* paired training split
(:func:`~drdd_edu.experiments.sizes.efficiency_settings`: 2 559 pairs at the ``cpu`` size, so 2 %
is 50 pairs). DRDD's unconditional noise net (``drdd``) needs no pairs: it trains once on the
``all_clean`` unpaired pool — every clean patch outside the test split, with the 8 symmetries of
the square — which is more than 10× the smallest paired set. The conditioned noise net
(``drdd_cond``) sees pairs, so it is trained per fraction; ``drdd_exact`` has no noise net.
At the ``cpu`` size every network trains on random 16² crops of the 32² patches
(``efficiency_crop``: a step costs less than half, so three seeds fit 30 minutes of 2 cores;
measured against whole-patch training, RDDM scores the same, ``drdd`` and ``drdd_cond`` 0.03
SSIM lower on average, ``drdd_exact`` 0.01); every network is scored on the size's usual
stratified whole test patches (the coupled experiment's).

Rows: ``{"method", "fraction", "n_pairs", "task", "psnr", "ssim", "psnr_in", "ssim_in",
"psnr_drop", "ssim_drop", "n"}`` per fraction, method, task and ``"average"``; ``*_in`` is the
degraded input (the do-nothing baseline) and ``*_drop`` the method's score minus its *own* score
at fraction 1 (negative: it lost that much by having fewer pairs).
"""

from __future__ import annotations

from typing import Any

from ..data import build_all_in_one5
from .context import Context
from .coupled import METHOD_COLORS, METHODS, method_scores
from .evaluation import task_rows
from .io import ROW_KEYS
from .sizes import SizeSettings, efficiency_settings

__all__ = ["n_jobs", "execute", "plot", "POOL"]

#: the unpaired clean images of DRDD's unconditional noise net in this study
POOL = "all_clean"


def n_jobs(settings: SizeSettings) -> int:
    """The pool noise net once, then per fraction three trainings (residual, RDDM, conditioned
    noise net) and one evaluation per method."""
    return 1 + (3 + len(METHODS)) * len(settings.efficiency_fractions)


def _counts(settings: SizeSettings) -> tuple[dict[float, int], int]:
    """Pairs per fraction and the unpaired pool's size on the study's build."""
    s = efficiency_settings(settings)
    data = build_all_in_one5(
        size=s.image_size,
        seed=0,
        max_patches_per_image=s.max_patches_per_image or None,
        progress=False,
    )
    pairs = {f: int(data.subset_indices("train", f).numel()) for f in s.efficiency_fractions}
    return pairs, int(data.unpaired_pool(POOL).shape[0])


def execute(ctx: Context) -> list[dict[str, Any]]:
    """Score every method at every fraction of ``efficiency_fractions`` (which must include 1)."""
    fractions = tuple(ctx.settings.efficiency_fractions)
    if not any(abs(f - 1.0) < 1e-12 for f in fractions):
        raise ValueError(f"efficiency_fractions {fractions} must include 1.0 (the reference)")
    es = efficiency_settings(ctx.settings)
    n_pairs, pool_size = _counts(ctx.settings)
    ctx.meta_extra.update(
        {
            "n_pairs": {f"{f:g}": n for f, n in n_pairs.items()},
            "unpaired_pool": POOL,
            "unpaired_pool_size": pool_size,
            "augmentation": "hflip + 90° rotations (8 symmetries)",
            "train_crop": es.train_crop or es.image_size,
        }
    )
    ctx.noise_net(settings=es, pool=POOL)  # the pairs-free noise net first
    metrics = ("psnr", "ssim", "psnr_in", "ssim_in")
    rows: list[dict[str, Any]] = []
    for fraction in sorted(fractions, reverse=True):  # 1.0 first: the reference of the drops
        scores = method_scores(ctx, fraction, es, POOL)
        for method in METHODS:
            fixed = {"method": method, "fraction": float(fraction), "n_pairs": n_pairs[fraction]}
            rows += task_rows(scores[method], fixed, metrics)
    reference = {(r["method"], r["task"]): r for r in rows if abs(r["fraction"] - 1.0) < 1e-12}
    for r in rows:
        ref = reference[(r["method"], r["task"])]
        r["psnr_drop"] = r["psnr"] - ref["psnr"]
        r["ssim_drop"] = r["ssim"] - ref["ssim"]
    rows.sort(key=lambda r: (r["fraction"], METHODS.index(r["method"])))
    return [{k: r[k] for k in ROW_KEYS["data-efficiency"]} for r in rows]  # the CSV's order


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], title: str) -> Any:
    """Left: average SSIM against the number of training pairs (log scale), one line per
    method, the degraded input as a black dashed line. Right: each method's SSIM change from its
    own score with all pairs (results written before the study was redesigned have no drops:
    then the right panel shows average PSNR)."""
    import matplotlib.pyplot as plt

    present = [m for m in METHODS if any(r["method"] == m for r in rows)]
    has_drop = all("ssim_drop" in r for r in rows)
    x_key = "n_pairs" if all("n_pairs" in r for r in rows) else "fraction"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = (("ssim", "average SSIM"), ("ssim_drop", "SSIM − own SSIM with all pairs"))
    if not has_drop:
        panels = (("ssim", "average SSIM"), ("psnr", "average PSNR (dB)"))
    avg = [r for r in rows if r["task"] == "average"]
    for ax, (metric, label) in zip(axes, panels, strict=True):
        for method in present:
            pts = sorted((r[x_key], r[metric]) for r in avg if r["method"] == method)
            ax.plot(*zip(*pts, strict=True), "o-", color=METHOD_COLORS[method], label=method)
        if metric in ("ssim", "psnr") and all(f"{metric}_in" in r for r in avg):
            ax.axhline(avg[0][f"{metric}_in"], color="k", ls="--", lw=1, label="input (do nothing)")
        if metric == "ssim_drop":
            ax.axhline(0.0, color="gray", lw=0.8)
        if x_key == "n_pairs":
            ax.set_xscale("log")
            ax.set_xlabel("paired training patches (log scale)")
        else:
            ax.set_xlabel("fraction of the paired training data")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
