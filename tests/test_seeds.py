"""Results over seeds: mean ± spread and verdicts from the per-seed differences."""

from __future__ import annotations

import math

import pytest

from drdd_edu.experiments.io import ExperimentResult, write_results
from drdd_edu.experiments.seeds import (
    INPUT,
    interior_verdict,
    load_seeds,
    main,
    markdown_table,
    paired_verdict,
    seed_summary,
    sweep_table,
)


def _rows(seed: int, rddm: float, drdd: float, ssim_in: float) -> list[dict]:
    return [
        {
            "method": m,
            "task": "average",
            "psnr": 20.0 + v,
            "ssim": v,
            "psnr_in": 19.0,
            "ssim_in": ssim_in,
            "n": 10,
        }
        for m, v in (("rddm", rddm), ("drdd", drdd))
    ]


@pytest.fixture()
def three_seeds(tmp_path):
    # rddm beats the input by 0.05 ± 0.005 on every seed; drdd is 0.001 ± 0.01 from rddm
    values = [(0.60, 0.61, 0.55), (0.62, 0.61, 0.565), (0.59, 0.595, 0.545)]
    for seed, (r, d, i) in enumerate(values):
        write_results(ExperimentResult("coupled", "cpu", _rows(seed, r, d, i), seed=seed), tmp_path)
    write_results(ExperimentResult("coupled", "smoke", _rows(0, 0.1, 0.1, 0.1)), tmp_path)
    return tmp_path


def test_load_and_summarise(three_seeds):
    results = load_seeds("coupled", "cpu", three_seeds)
    assert [r.seed for r in results] == [0, 1, 2]  # the smoke file is another size
    mean, std, n = seed_summary(results, "rddm")
    assert n == 3 and mean == pytest.approx(0.60333, abs=1e-4)
    assert std == pytest.approx(0.015275, abs=1e-5)
    assert seed_summary(results, INPUT)[0] == pytest.approx((0.55 + 0.565 + 0.545) / 3)
    assert load_seeds("aosa", "cpu", three_seeds) == []


def test_verdicts_are_paired_per_seed(three_seeds):
    results = load_seeds("coupled", "cpu", three_seeds)
    assert paired_verdict(results, "rddm", INPUT).verdict == "agrees"
    assert paired_verdict(results, INPUT, "rddm").verdict == "does not"
    assert paired_verdict(results, "drdd", "rddm").verdict == "cannot tell"
    # two seeds are never enough for a verdict
    assert paired_verdict(results[:2], "rddm", INPUT).verdict == "cannot tell"
    with pytest.raises(KeyError):
        paired_verdict(results, "drdd_cond", "rddm")


def test_markdown_table_and_cli(three_seeds, capsys):
    results = load_seeds("coupled", "cpu", three_seeds)
    table = markdown_table(results, ["rddm", "drdd", "drdd_cond"])
    lines = table.splitlines()
    assert len(lines) == 2 + 3  # header, rule, input, rddm, drdd (drdd_cond absent: skipped)
    assert lines[3].startswith("| rddm | 20.60 ± 0.02 | 0.603 ± 0.015 | 3 | agrees")
    assert main(["coupled", "cpu", "--results-dir", str(three_seeds)]) == 0
    assert "seeds [0, 1, 2]" in capsys.readouterr().out
    assert main(["coupled", "full", "--results-dir", str(three_seeds)]) == 2
    one = seed_summary(results[:1], "drdd")
    assert one[2] == 1 and math.isnan(one[1])


def _sweep(seed: int, curve: dict[float, float]) -> ExperimentResult:
    rows = [
        {
            "sweep": "train",
            "method": "drdd_exact",
            "sigma": sig,
            "task": "average",
            "psnr": v + 0.01 * seed,
            "ssim": 0.5,
            "psnr_in": 19.0,
            "ssim_in": 0.5,
            "n": 10,
        }
        for sig, v in curve.items()
    ]
    return ExperimentResult("noise-sweep", "cpu", rows, seed=seed)


@pytest.mark.parametrize(
    ("curve", "best", "expected"),
    [
        ({0.4: 20.0, 1.0: 21.0, 1.6: 20.5}, 1.0, "agrees"),  # a peak inside the range
        ({0.4: 22.0, 0.7: 21.5, 1.0: 21.0, 1.6: 20.0}, 0.7, "does not"),  # monotone: best at an end
    ],
)
def test_interior_verdict(curve, best, expected, tmp_path, capsys):
    import random

    rng = random.Random(0)
    results = [
        _sweep(s, {k: v + rng.uniform(-0.02, 0.02) for k, v in curve.items()}) for s in range(3)
    ]
    sigma, v = interior_verdict(results, "train", "drdd_exact")
    assert sigma == pytest.approx(best) and v.verdict == expected and v.n == 3
    assert interior_verdict(results[:2], "train", "drdd_exact")[1].verdict == "cannot tell"
    table = sweep_table(results, "train", ["drdd_exact"])
    assert f"interior optimum? **{expected}**" in table and "| 19.00 ± 0.00 |" in table
    with pytest.raises(ValueError, match="≥ 3 σ values"):
        interior_verdict([_sweep(0, {0.4: 1.0, 1.0: 2.0})], "train", "drdd_exact")
    for res in results:
        write_results(res, tmp_path)
    assert main(["noise-sweep", "cpu", "--results-dir", str(tmp_path)]) == 0
    assert f"**{expected}**" in capsys.readouterr().out
