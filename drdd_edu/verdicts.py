"""Verdicts with error bars: does a measurement agree with a paper's claim?

A verdict is one of three words, :data:`VERDICTS`, and is computed from a measurement *and its
spread*, never from a single difference:

* :func:`verdict` — a claimed *direction*: the paper says a difference d (ours, oriented so that
  d > 0 is the paper's direction) is positive. ``"agrees"`` when d̄ > k·s, ``"does not"`` when
  d̄ < −k·s (the opposite direction is resolved), ``"cannot tell"`` when |d̄| ≤ k·s, with s the
  standard error of d̄ (k = 2: about a 95 % two-sided interval for a normal estimate).
* :func:`seed_verdict` — the same from per-seed differences, with s = std(d, ddof=1)/√n; with
  fewer than ``min_seeds`` seeds (default 3, the project's minimum) the spread is not
  trustworthy and the answer is ``"cannot tell"`` whatever the mean.
* :func:`interval_verdict` — a claimed *value range* (e.g. the paper's σ* = 1.1–1.2) against a
  measured interval (e.g. a bootstrap 90 % interval): ``"agrees"`` when the interval lies inside
  the claimed range (widened by ``tol``, the rounding of both), ``"does not"`` when the two are
  disjoint, ``"cannot tell"`` when they overlap only partly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["VERDICTS", "SeedVerdict", "verdict", "seed_verdict", "interval_verdict"]

VERDICTS = ("agrees", "does not", "cannot tell")


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def verdict(diff_mean: float, spread: float, k: float = 2.0) -> str:
    """Sign verdict on a claimed positive difference.

    Args:
        diff_mean: the measured mean difference, oriented so that > 0 is the paper's direction.
        spread: its standard error (≥ 0).
        k: how many standard errors the mean must clear (> 0).

    Returns:
        ``"agrees"`` (diff_mean > k·spread), ``"does not"`` (diff_mean < −k·spread) or
        ``"cannot tell"``.
    """
    diff_mean, spread, k = _finite("diff_mean", diff_mean), _finite("spread", spread), float(k)
    if spread < 0:
        raise ValueError(f"spread must be ≥ 0, got {spread}")
    if not k > 0:
        raise ValueError(f"k must be > 0, got {k}")
    if diff_mean > k * spread:
        return "agrees"
    if diff_mean < -k * spread:
        return "does not"
    return "cannot tell"


@dataclass(frozen=True)
class SeedVerdict:
    """A verdict from per-seed differences: ``mean`` ± ``se`` (standard error) over ``n`` seeds."""

    verdict: str
    mean: float
    se: float
    n: int
    reason: str


def seed_verdict(diffs: Sequence[float], k: float = 2.0, min_seeds: int = 3) -> SeedVerdict:
    """:func:`verdict` from one difference per seed (oriented: > 0 is the paper's direction).

    The standard error is std(diffs, ddof=1)/√n. With fewer than ``min_seeds`` seeds the result
    is ``"cannot tell"`` (the spread of two numbers is not a usable error bar), and ``reason``
    says so; ``mean`` and ``se`` (NaN for one seed) are still reported.
    """
    d = np.asarray([_finite("diffs[i]", v) for v in diffs], dtype=float)
    if d.size == 0:
        raise ValueError("need at least one per-seed difference")
    if min_seeds < 2:
        raise ValueError(f"min_seeds must be ≥ 2 (a spread needs two seeds), got {min_seeds}")
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    if d.size < min_seeds:
        return SeedVerdict(
            "cannot tell", mean, se, int(d.size), f"only {d.size} seed(s), need ≥ {min_seeds}"
        )
    word = verdict(mean, se, k)
    return SeedVerdict(word, mean, se, int(d.size), f"mean {mean:+.4g} vs {k:g}·SE = {k * se:.4g}")


def interval_verdict(
    lo: float, hi: float, claim_lo: float, claim_hi: float, tol: float = 0.0
) -> str:
    """A measured interval [lo, hi] against a claimed range [claim_lo, claim_hi] ± tol.

    ``"agrees"``: lo ≥ claim_lo − tol and hi ≤ claim_hi + tol; ``"does not"``: the intervals are
    disjoint (hi < claim_lo − tol or lo > claim_hi + tol); otherwise ``"cannot tell"``.
    """
    lo, hi = _finite("lo", lo), _finite("hi", hi)
    claim_lo, claim_hi, tol = (
        _finite("claim_lo", claim_lo),
        _finite("claim_hi", claim_hi),
        _finite("tol", tol),
    )
    if lo > hi or claim_lo > claim_hi:
        raise ValueError(
            f"intervals must have lo ≤ hi, got [{lo}, {hi}] and [{claim_lo}, {claim_hi}]"
        )
    if tol < 0:
        raise ValueError(f"tol must be ≥ 0, got {tol}")
    a, b = claim_lo - tol, claim_hi + tol
    if a <= lo and hi <= b:
        return "agrees"
    if hi < a or lo > b:
        return "does not"
    return "cannot tell"
