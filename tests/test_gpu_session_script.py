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
