"""The DRDD experiments package at smoke size: schemas, reuse of finished runs, refusing
mismatched runs, stratified evaluation, the CLI and the result files."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch

from drdd_edu.cli import main
from drdd_edu.degradations import TASKS
from drdd_edu.experiments import (
    EXPERIMENTS,
    ROW_KEYS,
    SIZES,
    RunConfigMismatch,
    ensure_run,
    evaluate_per_task,
    get_size,
    load_results,
    run_experiment,
    stratified_test_indices,
)
from drdd_edu.experiments.aosa_exp import aosa_config, cached_selection
from drdd_edu.experiments.context import DRDD_VARIANTS
from drdd_edu.experiments.coupled import METHODS as COUPLED_METHODS
from drdd_edu.experiments.coupled import REFERENCES
from drdd_edu.experiments.noise_sweep import interior_optimum
from drdd_edu.experiments.runs import noise_config, rddm_config, residual_config
from drdd_edu.experiments.sizes import efficiency_settings, resolve_device_for, training_steps

SMOKE = get_size("smoke")
ALL_TASKS = (*TASKS, "average")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every experiment once at smoke size, sharing one runs_dir (the nets are shared)."""
    root = tmp_path_factory.mktemp("experiments")
    dirs = {"results_dir": root / "results", "figures_dir": root / "figures"}
    dirs["runs_dir"] = root / "runs"
    results = {
        name: run_experiment(name, "smoke", progress=False, device="cpu", **dirs)
        for name in EXPERIMENTS
    }
    return results, dirs


@pytest.fixture(scope="module")
def data():
    from drdd_edu.data import build_all_in_one5

    return build_all_in_one5(
        size=SMOKE.image_size, max_patches_per_image=SMOKE.max_patches_per_image, progress=False
    )


def expected_rows(name: str) -> int:
    s = SMOKE
    return {
        "coupled": (len(COUPLED_METHODS) + len(REFERENCES)) * len(ALL_TASKS),
        "data-efficiency": len(COUPLED_METHODS) * len(s.efficiency_fractions) * len(ALL_TASKS),
        "noise-sweep": len(DRDD_VARIANTS)
        * (len(s.sigmas_test) + len(s.sigmas_train) + len(s.sigmas_noisy_only))
        * len(ALL_TASKS),
        "matched-noise": len(COUPLED_METHODS) * len(s.matched_sigmas) * len(ALL_TASKS),
        "aosa": len(TASKS) + 1,
    }[name]


def test_constants():
    assert EXPERIMENTS == ("coupled", "data-efficiency", "noise-sweep", "matched-noise", "aosa")
    assert SIZES == ("smoke", "cpu", "cpu-long", "gpu", "full")
    assert COUPLED_METHODS == ("rddm", "drdd", "drdd_cond", "drdd_exact")
    assert get_size("full").preset == "rddm" and get_size("full").image_size == 64
    assert get_size("full").batch_size == 64 and get_size("full").amp == "bf16"
    for size in SIZES:  # one noise net serves every σ ≤ 1.6; RDDM gets DRDD's two budgets
        s = get_size(size)
        assert s.noise_sum_scale == pytest.approx(2.56)
        assert s.rddm_steps == s.noise_steps + s.residual_steps
        assert noise_config(s, 0, "cpu").make_schedule().betas_cumsum[-1] == pytest.approx(1.6)
        cond = noise_config(s, 0, "cpu", conditioned=True, fraction=0.5)
        assert (
            cond.noise_conditioned and cond.conditioned and cond.data_fraction == 0.5
        )  # float-exact: literal
        assert cond.name != noise_config(s, 0, "cpu").name
        # every network config of every size is valid (the full size's too, without a GPU)
        for sigma in {1.0, *s.sigmas_train}:
            assert residual_config(s, sigma, 1.0, 0, "cuda").noise_strength == sigma
        e = efficiency_settings(s)
        for fraction in s.efficiency_fractions:
            assert rddm_config(e, fraction, 0, "cuda").steps == 2 * s.efficiency_steps
            de = rddm_config(e, fraction, 0, "cuda")
            tag = f"_de-crop{s.efficiency_crop}" if s.efficiency_crop else "_de"
            assert de.name.endswith(f"_seed0{tag}")
            # crops: trained on efficiency_crop² crops of the size's whole patches
            assert de.image_size == (s.efficiency_crop or s.image_size)
            assert (de.data_size or de.image_size) == s.image_size
        pool = noise_config(e, 0, "cuda", pool="all_clean")
        assert pool.unpaired_pool == "all_clean" and pool.rot90 and not pool.conditioned
        assert pool.max_patches_per_image == s.efficiency_max_patches_per_image
        for sigma in s.matched_sigmas:  # RDDM's start noise β̄_{T−1} = σ, DRDD's σ
            matched = rddm_config(s, 1.0, 0, "cuda", sum_scale=sigma**2)
            assert float(matched.make_schedule().betas_cumsum[-1]) == pytest.approx(sigma)
        for sigma in s.sigmas_noisy_only:
            blind = residual_config(s, sigma, 1.0, 0, "cuda", sees_input=False)
            assert not blind.conditioned and "noisyonly" in blind.name
        for task in (*TASKS, "generation"):
            assert aosa_config(s, task, 0, "cuda").schedule == "ddim"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_files_and_schema(smoke, name):
    results, dirs = smoke
    res = results[name]
    assert res.name == name and res.size == "smoke"
    assert res.csv_path == dirs["results_dir"] / f"{name}-smoke.csv"
    assert res.json_path == dirs["results_dir"] / f"{name}-smoke.json"
    assert res.figure_path == dirs["figures_dir"] / f"exp_{name}-smoke.png"
    assert res.figure_path.stat().st_size > 5000
    assert res.figure_path.read_bytes()[:4] == b"\x89PNG"
    assert len(res.rows) == expected_rows(name)
    with res.csv_path.open() as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(res.rows)
    assert tuple(csv_rows[0]) == ROW_KEYS[name]
    payload = json.loads(res.json_path.read_text())
    assert len(payload["rows"]) == len(res.rows)
    for row in res.rows:
        assert tuple(row) == ROW_KEYS[name]
        generation = name == "aosa" and row["task"] == "generation"
        for key in ("psnr", "ssim", "psnr_in", "ssim_in"):  # every table has the input's scores
            assert math.isnan(row[key]) if generation else math.isfinite(row[key]), row
        if not generation:
            assert 0 < row["psnr"] < 60 and -1 <= row["ssim"] <= 1
        if "n" in row:
            assert row["n"] == SMOKE.n_per_task * (len(TASKS) if row["task"] == "average" else 1)
    meta = res.meta
    assert meta["command"].startswith(f"drdd-edu experiment {name} --size smoke")
    assert meta["wall_s"] > 0 and meta["device"] == "cpu" and meta["torch"] == torch.__version__
    assert meta["settings"]["image_size"] == SMOKE.image_size
    assert meta["runs"] and all(r["wall_s"] >= 0 for r in meta["runs"])
    assert meta["jobs"]["done"] == meta["jobs"]["planned"]  # the progress bar's total is right


def test_row_contents(smoke):
    results, _ = smoke
    coupled = results["coupled"].rows
    assert {(r["method"], r["task"]) for r in coupled} == {
        (m, t) for m in (*COUPLED_METHODS, *REFERENCES) for t in ALL_TASKS
    }
    by = {(r["method"], r["task"]): r for r in coupled}
    for m in (*COUPLED_METHODS, *REFERENCES):  # every row is scored on the same patches
        for t in ALL_TASKS:
            assert by[(m, t)]["psnr_in"] == pytest.approx(by[("rddm", t)]["psnr_in"], abs=1e-9)
    # the exact variant differs from the sampled one (another way to remove the noise)
    assert by[("drdd_exact", "average")]["psnr"] != pytest.approx(by[("drdd", "average")]["psnr"])
    for r in coupled:  # the average row is the mean of the task rows
        if r["task"] == "average":
            tasks = [x for x in coupled if x["method"] == r["method"] and x["task"] != "average"]
            assert r["psnr"] == pytest.approx(sum(x["psnr"] for x in tasks) / len(TASKS))
            assert r["psnr_in"] == pytest.approx(sum(x["psnr_in"] for x in tasks) / len(TASKS))
    de = results["data-efficiency"].rows
    assert sorted({r["fraction"] for r in de}) == list(SMOKE.efficiency_fractions)
    n_pairs = {r["fraction"]: r["n_pairs"] for r in de}
    assert (
        n_pairs[0.1] < n_pairs[1.0]
        and results["data-efficiency"].meta["n_pairs"]["1"] == (n_pairs[1.0])
    )
    assert results["data-efficiency"].meta["unpaired_pool_size"] > n_pairs[1.0]
    by_de = {(r["method"], r["fraction"], r["task"]): r for r in de}
    for (method, _fraction, task), r in by_de.items():  # drops from each method's own 100 %
        full = by_de[(method, 1.0, task)]
        assert r["ssim_drop"] == pytest.approx(r["ssim"] - full["ssim"], abs=1e-12)
        assert r["psnr_drop"] == pytest.approx(r["psnr"] - full["psnr"], abs=1e-12)
    sweep = results["noise-sweep"].rows
    for name, sigmas in (
        ("test", SMOKE.sigmas_test),
        ("train", SMOKE.sigmas_train),
        ("noisy_only", SMOKE.sigmas_noisy_only),
    ):
        for variant in DRDD_VARIANTS:
            got = sorted(
                {r["sigma"] for r in sweep if r["sweep"] == name and r["method"] == variant}
            )
            assert got == list(sigmas), (name, variant)
    best, inside = interior_optimum(sweep, "train", "drdd_exact")
    avg = {
        r["sigma"]: r["psnr"]
        for r in sweep
        if r["sweep"] == "train" and r["method"] == "drdd_exact" and r["task"] == "average"
    }
    assert avg[best] == max(avg.values())
    assert inside == (min(avg) < best < max(avg))
    matched = {(r["sigma"], r["method"], r["task"]): r for r in results["matched-noise"].rows}
    assert {k[0] for k in matched} == set(SMOKE.matched_sigmas)
    aosa = results["aosa"]
    assert [r["task"] for r in aosa.rows] == [*TASKS, "generation"]
    for r in aosa.rows:
        assert r["choice"] == ("pred_res" if r["lambda_final"] > 0.5 else "pred_noise")
        assert 1 <= r["decided_at_step"] <= SMOKE.aosa_select_steps
        if r["task"] != "generation":  # the input of that task's test patches, as elsewhere
            coupled_in = next(x for x in results["coupled"].rows if x["task"] == r["task"])
            assert r["psnr_in"] == pytest.approx(coupled_in["psnr_in"], abs=1e-6)
        hist = aosa.meta["lambda_history"][r["task"]]
        assert hist[-1][1] == pytest.approx(r["lambda_final"])
        decided = abs(r["lambda_final"] - 0.5) >= SMOKE.aosa_threshold
        assert r["decided_at_step"] == (hist[-1][0] if decided else SMOKE.aosa_select_steps)
        assert r["decided"] == decided
        # the slow λ (lr × 0.01): Adam moves it by at most ≈ lr × scale per step, so in the
        # smoke size's 30 steps it cannot reach the threshold; its side still names a choice
        slow = aosa.meta["lambda_history_slow"][r["task"]]
        assert slow[-1] == [r["decided_at_step_slow"], pytest.approx(r["lambda_final_slow"])]
        bound = SMOKE.aosa_slow_select_steps * SMOKE.lr * SMOKE.aosa_slow_lambda_scale
        assert abs(r["lambda_final_slow"] - 0.5) <= 1.1 * bound
        assert not r["decided_slow"] and r["decided_at_step_slow"] == SMOKE.aosa_slow_select_steps
        assert r["choice_slow"] == ("pred_res" if r["lambda_final_slow"] > 0.5 else "pred_noise")
    assert aosa.meta["slow_lambda_scale"] == SMOKE.aosa_slow_lambda_scale


def test_shared_networks_give_identical_scores(smoke):
    """coupled's nets = the matched-noise study's σ = 1.0 = the noise sweep's σ = 1.0 (reused, and
    the evaluation is deterministic, so the numbers agree exactly)."""
    results, _ = smoke
    coupled = {(r["method"], r["task"]): r for r in results["coupled"].rows}
    for r in results["matched-noise"].rows:
        if r["sigma"] == 1.0:  # float-exact: literal
            assert r["psnr"] == coupled[(r["method"], r["task"])]["psnr"]
            assert r["ssim"] == coupled[(r["method"], r["task"])]["ssim"]
    for r in results["noise-sweep"].rows:
        if r["sigma"] == 1.0 and r["sweep"] in ("test", "train"):  # float-exact: literal
            assert r["psnr"] == coupled[(r["method"], r["task"])]["psnr"]
    reused = {r["name"]: r["reused"] for r in results["matched-noise"].meta["runs"]}
    assert reused["drdd-noise_seed0"] and reused["rddm_frac1.00_seed0"]
    assert not reused["rddm-ss0.0400_frac1.00_seed0"]
    # the data-efficiency study trains its own networks (another build, the unpaired pool)
    de_runs = {r["name"] for r in results["data-efficiency"].meta["runs"]}
    assert "drdd-noise-all_clean_seed0_de-crop8" in de_runs and "rddm_frac1.00_seed0" not in de_runs
    assert results["data-efficiency"].meta["train_crop"] == SMOKE.efficiency_crop == 8


def test_finished_runs_are_reused(smoke, tmp_path):
    results, dirs = smoke
    ckpts = sorted((dirs["runs_dir"] / "smoke").glob("*/checkpoints/*.pt"))
    assert ckpts
    before = {p: p.stat().st_mtime_ns for p in ckpts}
    again = run_experiment(
        "coupled",
        "smoke",
        results_dir=tmp_path / "r",
        figures_dir=tmp_path / "f",
        runs_dir=dirs["runs_dir"],
        progress=False,
        device="cpu",
    )
    assert all(r["reused"] for r in again.meta["runs"])
    assert {p: p.stat().st_mtime_ns for p in ckpts} == before
    assert sorted((dirs["runs_dir"] / "smoke").glob("*/checkpoints/*.pt")) == ckpts
    assert again.rows == results["coupled"].rows  # deterministic evaluation


def test_mismatched_run_is_not_reused(smoke):
    _, dirs = smoke
    cfg = noise_config(SMOKE, 0, "cpu")
    run_dir = dirs["runs_dir"] / "smoke" / cfg.name
    ckpt = next(run_dir.glob("checkpoints/*.pt"))
    mtime = ckpt.stat().st_mtime_ns
    assert ensure_run(cfg, run_dir).reused
    with pytest.raises(RunConfigMismatch, match="lr"):
        ensure_run(cfg.replace(lr=cfg.lr / 2), run_dir)
    with pytest.raises(RunConfigMismatch, match="steps"):
        ensure_run(cfg.replace(steps=cfg.steps + 5), run_dir)
    assert ckpt.stat().st_mtime_ns == mtime
    sel_dir = dirs["runs_dir"] / "smoke" / "aosa-select_rain_seed0"
    acfg = aosa_config(SMOKE, "rain", 0, "cpu")
    sel, reused = cached_selection(acfg, sel_dir, SMOKE.aosa_select_steps, 0.01, False)
    assert reused and sel.choice in ("pred_res", "pred_noise")
    with pytest.raises(RunConfigMismatch, match="threshold"):
        cached_selection(acfg, sel_dir, SMOKE.aosa_select_steps, 0.02, False)


def test_stratified_indices(data):
    n = SMOKE.n_per_task
    picks = stratified_test_indices(data, n, seed=0)
    assert list(picks) == list(TASKS)
    task_ids = torch.from_numpy(data.arrays["test_task"])
    for k, (task, idx) in enumerate(picks.items()):
        assert len(idx) == n and len(set(idx.tolist())) == n
        assert bool((task_ids[idx] == k).all()), task
    again = stratified_test_indices(data, n, seed=0)
    assert all(torch.equal(picks[t], again[t]) for t in TASKS)
    other = stratified_test_indices(data, n, seed=1)
    assert any(not torch.equal(picks[t], other[t]) for t in TASKS)
    only = stratified_test_indices(data, n, seed=0, tasks=("rain",))
    assert list(only) == ["rain"] and torch.equal(only["rain"], picks["rain"])
    too_many = int(torch.bincount(task_ids).min()) + 1
    with pytest.raises(ValueError, match="fewer than"):
        stratified_test_indices(data, too_many)
    with pytest.raises(ValueError, match="tasks"):
        stratified_test_indices(data, n, tasks=("snow",))


def test_evaluate_per_task(data):
    n = SMOKE.n_per_task
    identity = evaluate_per_task(lambda x, g: x, data, n, image_size=SMOKE.image_size)
    assert list(identity) == [*TASKS, "average"]
    for task in TASKS:
        assert identity[task]["n"] == n
        assert identity[task]["psnr"] == pytest.approx(identity[task]["psnr_in"])
        assert identity[task]["ssim"] == pytest.approx(identity[task]["ssim_in"])
    assert identity["average"]["n"] == n * len(TASKS)

    def noisy(x, g):
        return x + 0.1 * torch.randn(x.shape, generator=g)

    a = evaluate_per_task(noisy, data, n, seed=3, batch_size=3)
    b = evaluate_per_task(noisy, data, n, seed=3, batch_size=3)
    assert a == b  # seeded sampling noise
    assert all(a[t]["psnr"] != identity[t]["psnr"] for t in TASKS)
    with pytest.raises(ValueError, match="shape"):
        evaluate_per_task(lambda x, g: x[..., :4, :4], data, n)


def test_cli_smoke_and_errors(smoke, tmp_path, capsys):
    _, dirs = smoke
    args = [
        "--results-dir",
        str(tmp_path / "r"),
        "--figures-dir",
        str(tmp_path / "f"),
        "--runs-dir",
        str(dirs["runs_dir"]),
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(["experiment", "noise-sweep", "--smoke", *args]) == 0
    out = capsys.readouterr().out
    assert "noise-sweep (smoke)" in out and "0 runs trained" in out
    assert (tmp_path / "r" / "noise-sweep-smoke.csv").is_file()
    assert (tmp_path / "f" / "exp_noise-sweep-smoke.png").is_file()
    assert main(["experiment", "denoise-all", "--smoke", *args]) == 2
    assert "unknown experiment 'denoise-all'" in capsys.readouterr().err
    assert main(["experiment", "coupled", "--size", "huge", *args]) == 2
    assert "unknown experiment size 'huge'" in capsys.readouterr().err
    assert main(["experiment", "coupled", "--size", "cpu", "--smoke", *args]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert main(["experiment", "coupled", "--size", "full", *args]) == 2  # --device cpu
    err = capsys.readouterr().err
    assert "GPU configuration" in err and "cuda" in err


def test_full_size_needs_cuda():
    full = get_size("full")
    with pytest.raises(RuntimeError, match="needs device='cuda'"):
        resolve_device_for(full, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device_for(full, "auto")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            run_experiment("coupled", "full", progress=False)
    assert resolve_device_for(get_size("smoke"), "cpu") == "cpu"


def test_bad_names(tmp_path):
    with pytest.raises(ValueError, match="unknown experiment"):
        run_experiment("nope", "smoke", results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown experiment size"):
        run_experiment("coupled", "medium", results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown experiment"):
        load_results("nope", "smoke", tmp_path)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_load_results_round_trip(smoke, name, tmp_path):
    results, dirs = smoke
    res = results[name]
    loaded = load_results(name, "smoke", dirs["results_dir"])
    assert loaded is not None
    assert loaded.meta == json.loads(json.dumps(res.meta))
    assert len(loaded.rows) == len(res.rows)
    for a, b in zip(loaded.rows, res.rows, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(b[key], float) and math.isnan(b[key]):
                assert math.isnan(a[key])
            else:
                assert a[key] == b[key]
    assert loaded.csv_path == res.csv_path and loaded.figure_path == res.figure_path
    assert load_results(name, "smoke", tmp_path) is None


def test_a_second_seed_gets_its_own_files(smoke):
    """``--seed 1`` writes NAME-SIZE-seed1.* beside the seed-0 results instead of over them,
    trains its own networks (other weights, so other scores), and loads by seed."""
    results, dirs = smoke
    seed0 = results["coupled"]
    before = seed0.json_path.read_bytes()
    res = run_experiment("coupled", "smoke", progress=False, device="cpu", seed=1, **dirs)
    assert res.json_path.name == "coupled-smoke-seed1.json"
    assert res.csv_path.name == "coupled-smoke-seed1.csv"
    assert res.figure_path.name == "exp_coupled-smoke-seed1.png" and res.figure_path.is_file()
    assert seed0.json_path.read_bytes() == before  # seed 0 untouched
    assert "--seed 1" in res.meta["command"]
    assert all(r["name"].endswith("_seed1") and not r["reused"] for r in res.meta["runs"])
    loaded = load_results("coupled", "smoke", dirs["results_dir"], seed=1)
    assert loaded.seed == 1 and loaded.rows == json.loads(json.dumps(res.rows))
    assert [r["psnr"] for r in loaded.rows] != [r["psnr"] for r in seed0.rows]
    assert load_results("coupled", "smoke", dirs["results_dir"], seed=2) is None
    with pytest.raises(ValueError, match="seed must be an int ≥ 0"):
        load_results("coupled", "smoke", dirs["results_dir"], seed=-1)


def test_relative_figure_path_is_found_from_another_directory(smoke, tmp_path, monkeypatch):
    # committed results store the figure relative to the repository root: data/results/… and
    # figures/…; a notebook running in notebooks/ must still find the figure
    results, dirs = smoke
    repo = tmp_path / "repo"
    (repo / "data" / "results").mkdir(parents=True)
    (repo / "figures").mkdir()
    (repo / "notebooks").mkdir()
    res = results["coupled"]
    payload = {
        "meta": dict(res.meta, figure_path="figures/exp_coupled-smoke.png"),
        "rows": res.rows,
    }
    (repo / "data" / "results" / "coupled-smoke.json").write_text(json.dumps(payload))
    (repo / "figures" / "exp_coupled-smoke.png").write_bytes(res.figure_path.read_bytes())
    monkeypatch.chdir(repo / "notebooks")
    loaded = load_results("coupled", "smoke", repo / "data" / "results")
    assert loaded is not None and loaded.figure_path.is_file()
    assert loaded.figure_path.read_bytes() == res.figure_path.read_bytes()
    monkeypatch.chdir(repo)  # from the root the stored relative path works as it is
    assert load_results("coupled", "smoke", "data/results").figure_path.is_file()


def test_lambda_histories_are_thinned_for_the_results_file():
    from drdd_edu.experiments.aosa_exp import MAX_HISTORY_POINTS, _thinned

    short = [(k, 0.5 + k * 1e-4) for k in range(1, 31)]
    assert _thinned(short) == [[k, v] for k, v in short]  # short histories stay whole
    long = [(k, 0.5 - k * 1e-6) for k in range(1, 3001)]
    pts = _thinned(long)
    assert len(pts) <= MAX_HISTORY_POINTS + 1 and pts[0] == [1, long[0][1]]
    assert pts[-1] == [3000, long[-1][1]]  # the final λ is always kept
    assert [p[0] for p in pts] == sorted(p[0] for p in pts)
    assert _thinned([]) == []


def test_efficiency_crop_must_fit_the_patches():
    """A crop larger than the patches (or negative) is refused by name; crop = image_size is
    the whole patch (no crop, the plain ``_de`` run names)."""
    s = dataclasses.replace(get_size("smoke"), efficiency_crop=32)
    with pytest.raises(ValueError, match="efficiency_crop"):
        efficiency_settings(s)
    with pytest.raises(ValueError, match="efficiency_crop"):
        efficiency_settings(dataclasses.replace(s, efficiency_crop=-4))
    with pytest.raises(ValueError, match="multiple of 4"):  # tiny: two downsamplings
        efficiency_settings(dataclasses.replace(s, efficiency_crop=6))
    whole = efficiency_settings(dataclasses.replace(s, efficiency_crop=s.image_size))
    assert whole.train_crop == 0 and whole.run_tag == "de"
    cfg = rddm_config(whole, 1.0, 0, "cpu")
    assert cfg.image_size == s.image_size and cfg.data_size == 0


#: the DRDD-science issue's budget: each cpu experiment, three seeds, ≤ 30 min on 2 cores at its
#: audit's rate of 0.12 s per 32² step per core; a 16² step costs at most 1/2.1 of a 32² one (the
#: slower of the two back-to-back pairs in benchmarks/README.md)
AUDIT_S_PER_STEP, CORES, SEEDS, BUDGET_MIN, CROP16_RATIO = 0.12, 2, 3, 30.0, 2.1


def test_training_steps_are_what_the_shipped_cpu_runs_trained_and_fit_the_budget():
    """``training_steps`` counts exactly the networks each shipped ``cpu`` seed trained (besides
    the ``coupled`` networks it reused; AOSA's capped selections stop earlier), and the four
    experiments of the DRDD-science issue fit its budget — the data-efficiency study only with
    its 16² crops (whole patches: 31.5 min)."""
    from drdd_edu.notebook import REPO_ROOT

    cpu = get_size("cpu")
    results = REPO_ROOT / "data" / "results"
    for name in EXPERIMENTS:
        for seed in range(SEEDS):
            suffix = f"-seed{seed}" if seed else ""
            meta = json.loads((results / f"{name}-cpu{suffix}.json").read_text())["meta"]
            coupled = json.loads((results / f"coupled-cpu{suffix}.json").read_text())["meta"]
            shared = {r["name"] for r in coupled["runs"]} if name != "coupled" else set()
            own = sum(r["steps"] for r in meta["runs"] if r["name"] not in shared)
            if name == "aosa":
                assert 0 < own <= training_steps(cpu, name), (seed, own)
            else:
                assert own == training_steps(cpu, name), (name, seed, own)
    long = get_size("cpu-long")  # the longer data-efficiency study (shipped, three seeds)
    for seed in range(SEEDS):
        suffix = f"-seed{seed}" if seed else ""
        meta = json.loads((results / f"data-efficiency-cpu-long{suffix}.json").read_text())["meta"]
        assert sum(r["steps"] for r in meta["runs"]) == training_steps(long, "data-efficiency")
    assert cpu.efficiency_crop == long.efficiency_crop == 16 and cpu.image_size == 32
    for size, name in (
        (cpu, "coupled"),
        (cpu, "data-efficiency"),
        (cpu, "noise-sweep"),
        (cpu, "matched-noise"),
        (long, "data-efficiency"),
    ):
        cost = 1 / CROP16_RATIO if name == "data-efficiency" else 1.0
        minutes = SEEDS * training_steps(size, name) * cost * AUDIT_S_PER_STEP / CORES / 60
        assert minutes <= BUDGET_MIN, (size.name, name, minutes)
    # a matched σ that the sweep already trained reuses its residual net: RDDM steps only
    shared_sigma = dataclasses.replace(cpu, matched_sigmas=(0.4, 1.0), sigmas_train=(0.4, 1.0))
    assert training_steps(shared_sigma, "matched-noise") == cpu.rddm_steps
    assert training_steps(cpu, "matched-noise") == cpu.rddm_steps + cpu.residual_steps
    # AOSA: two capped selections for five tasks and generation, a training run per task
    caps = 6 * (cpu.aosa_select_steps + cpu.aosa_slow_select_steps) + 5 * cpu.aosa_steps
    assert training_steps(cpu, "aosa") == caps
    whole = SEEDS * training_steps(cpu, "data-efficiency") * AUDIT_S_PER_STEP / CORES / 60
    assert whole > BUDGET_MIN  # why the study trains on crops
    with pytest.raises(ValueError, match="unknown experiment"):
        training_steps(cpu, "nope")
