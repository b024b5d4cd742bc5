"""Verdicts from a measurement and its spread (drdd_edu.verdicts)."""

import math

import pytest

from drdd_edu.verdicts import VERDICTS, interval_verdict, seed_verdict, verdict


def test_verdict_needs_the_mean_to_clear_k_standard_errors():
    assert verdict(0.05, 0.01) == "agrees"
    assert verdict(-0.05, 0.01) == "does not"
    assert verdict(0.015, 0.01) == "cannot tell"  # 1.5 SE: below noise
    assert verdict(-0.015, 0.01) == "cannot tell"
    assert verdict(0.015, 0.01, k=1.0) == "agrees"
    assert verdict(0.0, 0.0) == "cannot tell"
    assert all(verdict(d, 0.01) in VERDICTS for d in (-1, 0, 1))


@pytest.mark.parametrize(
    ("args", "match"),
    [((0.1, -0.01), "spread"), ((math.nan, 0.1), "diff_mean"), ((0.1, 0.1, 0.0), "k")],
)
def test_verdict_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        verdict(*args)


def test_seed_verdict_uses_the_standard_error_and_a_minimum_of_seeds():
    v = seed_verdict([0.10, 0.12, 0.11])
    assert v.verdict == "agrees" and v.n == 3
    assert v.mean == pytest.approx(0.11)
    assert v.se == pytest.approx(0.01 / math.sqrt(3))
    assert seed_verdict([-0.10, -0.12, -0.11]).verdict == "does not"
    assert seed_verdict([0.3, -0.2, 0.1]).verdict == "cannot tell"  # mean 0.067, SE 0.145
    # two seeds that agree in sign are still not enough
    two = seed_verdict([0.10, 0.11])
    assert two.verdict == "cannot tell" and "2 seed" in two.reason
    assert two.se == pytest.approx(0.005)
    assert seed_verdict([0.10, 0.11], min_seeds=2).verdict == "agrees"
    assert math.isnan(seed_verdict([0.5]).se)
    with pytest.raises(ValueError, match="at least one"):
        seed_verdict([])
    with pytest.raises(ValueError, match="min_seeds"):
        seed_verdict([0.1, 0.2], min_seeds=1)


def test_interval_verdict():
    assert interval_verdict(1.1, 1.2, 1.1, 1.2) == "agrees"
    assert interval_verdict(1.05, 1.2, 1.1, 1.2, tol=0.05) == "agrees"
    assert interval_verdict(1.0, 1.2, 1.1, 1.2, tol=0.05) == "cannot tell"  # partly outside
    assert interval_verdict(0.4, 0.7, 1.1, 1.2, tol=0.05) == "does not"  # disjoint, below
    assert interval_verdict(1.3, 1.6, 1.1, 1.2, tol=0.05) == "does not"  # disjoint, above
    assert interval_verdict(0.3, 1.1, 1.1, 1.2) == "cannot tell"
    with pytest.raises(ValueError, match="lo ≤ hi"):
        interval_verdict(1.2, 1.1, 1.1, 1.2)
    with pytest.raises(ValueError, match="tol"):
        interval_verdict(1.1, 1.2, 1.1, 1.2, tol=-0.1)
