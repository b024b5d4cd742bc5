"""Results over seeds: mean ± spread per method and task, and verdicts computed from the spread.

Every shipped result is one seed (``NAME-SIZE.json`` for seed 0, ``NAME-SIZE-seedN.json`` for
the others). :func:`load_seeds` finds all of them; :func:`seed_summary` gives, per (method, task),
the mean, the standard deviation over seeds and the number of seeds; :func:`paired_verdict`
compares two methods (or a method and the degraded input, the do-nothing baseline) seed by seed
with :func:`drdd_edu.verdicts.seed_verdict`: differences are paired per seed because every method
of a seed is scored on the same test patches with the same sampling noise.

``python -m drdd_edu.experiments.seeds coupled cpu`` prints the markdown table the README uses
(``--fraction F`` for data-efficiency, ``--sigma S`` for matched-noise); for ``noise-sweep`` it
prints one table per sweep with :func:`interior_verdict` (is the best σ inside the range?).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..verdicts import SeedVerdict, seed_verdict
from .io import ExperimentResult, read_results
from .noise_sweep import sweep_values

__all__ = [
    "INPUT",
    "load_seeds",
    "seed_summary",
    "paired_verdict",
    "markdown_table",
    "interior_verdict",
    "sweep_table",
    "main",
]

#: the pseudo-method naming the degraded input (its scores are every row's ``*_in``)
INPUT = "input"


def load_seeds(
    name: str, size: str, results_dir: str | os.PathLike = "data/results"
) -> list[ExperimentResult]:
    """Every stored seed of experiment ``name`` at ``size``, in seed order (empty if none)."""
    folder = Path(results_dir)
    pattern = re.compile(rf"^{re.escape(name)}-{re.escape(size)}(?:-seed(\d+))?\.json$")
    seeds = sorted(
        int(m.group(1) or 0) for p in folder.glob("*.json") if (m := pattern.match(p.name))
    )
    out = [read_results(name, size, folder, seed) for seed in seeds]
    return [r for r in out if r is not None]


def _value(result: ExperimentResult, method: str, task: str, metric: str, **fixed: object) -> float:
    for row in result.rows:
        if row["task"] != task or any(row.get(k) != v for k, v in fixed.items()):
            continue
        if method == INPUT:
            return float(row[f"{metric}_in"])
        if row["method"] == method:
            return float(row[metric])
    raise KeyError(f"seed {result.seed}: no row for {method!r}, task {task!r}, {fixed}")


def seed_summary(
    results: Sequence[ExperimentResult],
    method: str,
    task: str = "average",
    metric: str = "ssim",
    **fixed: object,
) -> tuple[float, float, int]:
    """(mean, standard deviation with ddof = 1 (NaN for one seed), number of seeds) of
    ``metric`` for ``method`` (or :data:`INPUT`) on ``task`` over the seeds that have it;
    ``fixed`` selects rows by other columns (e.g. ``fraction=0.25``)."""
    vals = []
    for r in results:
        try:
            vals.append(_value(r, method, task, metric, **fixed))
        except KeyError:
            continue
    if not vals:
        raise KeyError(f"no seed has {method!r} on {task!r} ({metric}, {fixed})")
    v = np.asarray(vals)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def paired_verdict(
    results: Sequence[ExperimentResult],
    better: str,
    worse: str,
    task: str = "average",
    metric: str = "ssim",
    **fixed: object,
) -> SeedVerdict:
    """Does ``better`` beat ``worse`` (either may be :data:`INPUT`)? The per-seed differences
    ``better − worse`` of the seeds that have both, through
    :func:`~drdd_edu.verdicts.seed_verdict` (≥ 3 seeds, 2 standard errors)."""
    diffs = []
    for r in results:
        try:
            diffs.append(
                _value(r, better, task, metric, **fixed) - _value(r, worse, task, metric, **fixed)
            )
        except KeyError:
            continue
    if not diffs:
        raise KeyError(f"no seed has both {better!r} and {worse!r} on {task!r}")
    return seed_verdict(diffs)


def _cell(results: Sequence[ExperimentResult], method: str, metric: str, **fixed: object) -> str:
    mean, std, n = seed_summary(results, method, "average", metric, **fixed)
    digits = 2 if metric == "psnr" else 3
    spread = "" if math.isnan(std) else f" ± {std:.{digits}f}"
    return f"{mean:.{digits}f}{spread}"


def markdown_table(
    results: Sequence[ExperimentResult],
    methods: Sequence[str],
    against: str = "rddm",
    **fixed: object,
) -> str:
    """Average PSNR and SSIM per method (mean ± std over seeds, n seeds), and the SSIM verdicts
    against the input and against ``against``, as a markdown table; ``fixed`` selects rows by
    other columns (e.g. ``fraction=0.25`` for the data-efficiency experiment)."""
    lines = [
        f"| method | PSNR (dB) | SSIM | seeds | beats the input? (SSIM) | beats {against}? (SSIM) |",
        "|---|---|---|---|---|---|",
    ]
    for method in (INPUT, *methods):
        try:
            _, _, n = seed_summary(results, method, metric="ssim", **fixed)
        except KeyError:
            continue
        row = [
            method,
            _cell(results, method, "psnr", **fixed),
            _cell(results, method, "ssim", **fixed),
            str(n),
        ]
        for other in (INPUT, against):
            if method in (INPUT, other):
                row.append("—")
                continue
            v = paired_verdict(results, method, other, **fixed)
            row.append(f"{v.verdict} ({v.mean:+.3f} ± {v.se:.3f} SE)")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _sweep_values(
    result: ExperimentResult, sweep: str, method: str, metric: str, task: str = "average"
) -> dict[float, float]:
    """{σ: metric} of one seed's sweep for ``method``, or for :data:`INPUT` the degraded input's
    ``{metric}_in`` (from any row that stores it; older rows do not)."""
    if method != INPUT:
        return sweep_values(result.rows, sweep, method, metric, task)
    key = f"{metric}_in"
    return {
        float(r["sigma"]): float(r[key])
        for r in result.rows
        if r["sweep"] == sweep and r["task"] == task and key in r
    }


def interior_verdict(
    results: Sequence[ExperimentResult],
    sweep: str,
    method: str,
    metric: str = "psnr",
    task: str = "average",
) -> tuple[float, SeedVerdict]:
    """Is there an interior optimum of σ? (σ*, verdict): σ* is the interior σ (neither end of the
    swept range) with the best mean over seeds, and the verdict is
    :func:`~drdd_edu.verdicts.seed_verdict` of the per-seed differences
    ``metric(σ*) − max(metric(σ_min), metric(σ_max))``: ``"agrees"`` when σ* beats both ends
    (an interior optimum), ``"does not"`` when an end beats it (the best σ is at the edge of the
    range), ``"cannot tell"`` otherwise or with fewer than 3 seeds. Needs ≥ 3 σ values."""
    per_seed = [_sweep_values(r, sweep, method, metric, task) for r in results]
    per_seed = [v for v in per_seed if v]
    if not per_seed:
        raise KeyError(f"no seed has sweep {sweep!r} for {method!r}")
    sigmas = sorted(set.intersection(*(set(v) for v in per_seed)))
    if len(sigmas) < 3:
        raise ValueError(f"an interior optimum needs ≥ 3 σ values, got {sigmas}")
    inner = sigmas[1:-1]
    best = max(inner, key=lambda sig: float(np.mean([v[sig] for v in per_seed])))
    diffs = [v[best] - max(v[sigmas[0]], v[sigmas[-1]]) for v in per_seed]
    return best, seed_verdict(diffs)


def sweep_table(
    results: Sequence[ExperimentResult],
    sweep: str,
    methods: Sequence[str],
    metric: str = "psnr",
) -> str:
    """Markdown: one row per σ of ``sweep``, the average ``metric`` (mean ± std over seeds) per
    method and of the input; then one line per method with its interior-optimum verdict."""
    sigmas = sorted({float(r["sigma"]) for res in results for r in res.rows if r["sweep"] == sweep})
    head = ["σ", *methods, "input"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    digits = 2 if metric == "psnr" else 3
    per_method = {
        m: [_sweep_values(res, sweep, m, metric) for res in results] for m in (*methods, INPUT)
    }
    for sig in sigmas:
        cells = [f"{sig:g}"]
        for method in (*methods, INPUT):
            v = np.asarray([vals[sig] for vals in per_method[method] if sig in vals])
            spread = f" ± {v.std(ddof=1):.{digits}f}" if v.size > 1 else ""
            cells.append(f"{v.mean():.{digits}f}{spread}" if v.size else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for method in methods:
        try:
            best, v = interior_verdict(results, sweep, method, metric)
        except (KeyError, ValueError) as err:
            lines.append(f"* {method}: {err}")
            continue
        lines.append(
            f"* {method}: best interior σ = {best:g}; interior optimum? **{v.verdict}** "
            f"({metric}(σ*) − best end = {v.mean:+.{digits}f} ± {v.se:.{digits}f} SE, {v.n} seeds)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m drdd_edu.experiments.seeds NAME SIZE [--results-dir D] [--methods …]``."""
    parser = argparse.ArgumentParser(prog="python -m drdd_edu.experiments.seeds")
    parser.add_argument("name")
    parser.add_argument("size")
    parser.add_argument("--results-dir", default="data/results")
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--against", default="rddm")
    parser.add_argument(
        "--fraction", type=float, default=None, help="data-efficiency: this fraction"
    )
    parser.add_argument("--sigma", type=float, default=None, help="matched-noise: this σ")
    args = parser.parse_args(argv)
    results = load_seeds(args.name, args.size, args.results_dir)
    if not results:
        print(f"no results for {args.name}-{args.size} in {args.results_dir}", file=sys.stderr)
        return 2
    if args.name == "noise-sweep":
        print(f"{args.name}-{args.size}: seeds {[r.seed for r in results]}")
        methods = args.methods or ["drdd", "drdd_cond", "drdd_exact"]
        for sweep in ("test", "train", "noisy_only"):
            if any(r["sweep"] == sweep for res in results for r in res.rows):
                print(f"\n### sweep {sweep!r} (average PSNR, dB)\n")
                print(sweep_table(results, sweep, methods))
        return 0
    if any("method" not in row or "ssim_in" not in row for row in results[-1].rows):
        print(
            f"{args.name}-{args.size}: rows have no method/ssim_in columns; this table is for "
            "the coupled and data-efficiency experiments",
            file=sys.stderr,
        )
        return 2
    methods = args.methods or list(dict.fromkeys(r["method"] for r in results[-1].rows))
    print(f"{args.name}-{args.size}: seeds {[r.seed for r in results]}")
    fixed = {} if args.fraction is None else {"fraction": args.fraction}
    if args.sigma is not None:
        fixed["sigma"] = args.sigma
    print(markdown_table(results, methods, args.against, **fixed))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
