"""benchmarks/gpu_session.sh, the GPU measurement steps, in its CPU dry-run mode: so the script a
GPU session will run (with minutes of device time at stake) stays true to the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
TINY = "--preset tiny --size 16 --batch 2 --steps 1 --warmup 0 --sampling-steps 1"


def _run(
    out: Path, *steps: str, bench_args: str = TINY, device: str = "cpu"
) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        DEVICE=device,
        PYTHON=sys.executable,
        BENCH_ARGS=bench_args,
        OMP_NUM_THREADS="1",
    )
    return subprocess.run(
        ["bash", str(SCRIPT), str(out), *steps],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dry_run_check_and_eager_bench(tmp_path):
    res = _run(tmp_path, "check", "eager")
    assert res.returncode == 0, res.stdout + res.stderr
    log = (tmp_path / "gpu_session.log").read_text()
    assert "== step check: exit 0" in log and "== step eager: exit 0" in log
    assert "(resumed at step 20)" in log and "PSNR" in log  # train → resume → evaluate ran
    result = json.loads((tmp_path / "cpu-rddm-64-b64-eager.json").read_text())
    assert result["preset"] == "tiny" and result["images_per_s"] > 0 and not result["compile"]


def test_failures_are_reported(tmp_path):
    res = _run(tmp_path, "eager", "fastest")  # refused before any step runs
    assert res.returncode == 2 and "unknown step 'fastest'" in res.stderr
    assert not (tmp_path / "gpu_session.log").exists()
    res = _run(tmp_path, "eager", bench_args="--preset huge")
    assert res.returncode != 0
    assert "unknown preset 'huge'" in (tmp_path / "gpu_session.log").read_text()
    # a failing part of `check` (here the training run, on a device that does not exist) fails
    # the step even though later commands of the step run
    res = _run(tmp_path / "check", "check", device="tpu")
    log = (tmp_path / "check" / "gpu_session.log").read_text()
    assert res.returncode == 1 and "== step check: exit 1" in log and "device" in log


def _run_all(out: Path, **env: str) -> subprocess.CompletedProcess:
    extra = dict(EXP_SIZE="smoke", ALL_COMPILED_BENCH="0", ALL_EXPERIMENTS="coupled", **env)
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        return _run(out, "all")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_dry_run_all_fits_the_lease_file_limits(tmp_path):
    """`all` is the one-call GPU lease: at most 8 files, each ≤ 16 MiB, come back; the fp16
    checkpoints load with weights_only and restore; the results archive holds the experiment."""
    import tarfile

    import torch

    from drdd_edu.export import is_inference_only
    from drdd_edu.train import model_from_checkpoint

    res = _run_all(tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert len(files) <= 8, names
    assert all(p.stat().st_size <= 16 * 2**20 for p in files)
    assert names == {
        "gpu_session.log",
        "cpu-rddm-64-b64-eager.json",
        "results-smoke.tar.gz",
        "rddm-smoke-fp16.pt",
        "drdd-noise-smoke-fp16.pt",
        "drdd-residual-smoke-fp16.pt",
    }
    with tarfile.open(tmp_path / "results-smoke.tar.gz") as tar:
        members = set(tar.getnames())
    assert {"results/coupled-smoke.csv", "results/coupled-smoke.json"} <= members
    assert "figures/exp_coupled-smoke.png" in members
    for name in ("rddm", "drdd-noise", "drdd-residual"):
        path = tmp_path / f"{name}-smoke-fp16.pt"
        raw = torch.load(path, weights_only=True)
        assert is_inference_only(raw) and raw["optimizer"] == {}
        assert all(v.dtype == torch.float16 for v in raw["ema"].values() if v.is_floating_point())
        model, cfg, _ = model_from_checkpoint(path)
        assert cfg.image_size == 16 and next(model.parameters()).dtype == torch.float32
    log = (tmp_path / "gpu_session.log").read_text()
    assert "== step all: exit 0" in log and "== experiment coupled (smoke)" in log


def test_all_stops_at_its_budget_and_says_so(tmp_path):
    # a budget no larger than the packing reserve: every phase is skipped, at once
    res = _run_all(tmp_path, ALL_BUDGET_S="25")
    log = (tmp_path / "gpu_session.log").read_text()
    assert res.returncode != 0 and "skipped (budget spent)" in log
    assert "== step all: exit" in log
