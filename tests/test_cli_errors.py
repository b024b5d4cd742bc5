"""Every user-facing failure of the command line is one line on stderr, cause first, with exit
status 2 and no traceback (``--debug`` or ``DRDD_EDU_DEBUG=1`` add the traceback); one run folder
has one writer (the lock, with real processes); checkpoint errors never advise unpickling; and
``sample``/``evaluate`` never write where a checkpoint's stored ``cache_dir`` points."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from small_training import small_config

from drdd_edu import checkpoint as ckpt_io
from drdd_edu.checkpoint import (
    LOCK_NAME,
    CheckpointError,
    RunLock,
    RunLockedError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from drdd_edu.cli import build_parser, main
from drdd_edu.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


def _toml(path: Path, cfg_dict: dict) -> Path:
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg_dict.items()))
    return path


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "DRDD_EDU_DEBUG"):
        env.pop(key, None)
    env.update(extra)
    return env


def _resave(src: Path, dst: Path, config: str | dict) -> Path:
    """A copy of checkpoint ``src`` at ``dst`` whose stored config is ``config``."""
    ck = load_checkpoint(src)
    keep = ("model", "ema", "optimizer", "step", "rng", "extra")
    return save_checkpoint(dst, **{k: ck[k] for k in keep}, config=config)


@pytest.fixture(scope="module")
def run(tmp_path_factory, cache_dir):
    """A finished 2-step run: its TOML config, run folder and last checkpoint."""
    root = tmp_path_factory.mktemp("cli_errors")
    out = root / "run"
    cfg = small_config(cache_dir, out, steps=2)
    Trainer(cfg).run()
    return SimpleNamespace(
        root=root,
        cfg=cfg,
        toml=_toml(root / "run.toml", cfg.to_dict()),
        out=out,
        ckpt=latest_checkpoint(out / "checkpoints"),
        cache=cache_dir,
    )


def _one_line_failure(capsys, argv: list[str]) -> str:
    """Run ``drdd-edu ARGV`` in-process; assert exit status 2 and exactly one stderr line
    without a traceback; return that line."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _sample(r, *extra: str) -> list[str]:
    return ["sample", "--checkpoint", str(r.ckpt), "--steps", "2", "--n", "2"] + [
        "--device",
        "cpu",
        "--cache-dir",
        str(r.cache),
        "--out",
        str(r.root / "s.png"),
        *extra,
    ]


def _evaluate(r, *extra: str) -> list[str]:
    return ["evaluate", "--checkpoint", str(r.ckpt), "--steps", "2", "--n", "2"] + [
        "--device",
        "cpu",
        "--cache-dir",
        str(r.cache),
        *extra,
    ]


def _train(r, out: Path, *extra: str, toml: Path | None = None) -> list[str]:
    return ["train", "--config", str(toml or r.toml), "--out", str(out), "--no-progress", *extra]


def _a_file(tmp: Path) -> Path:
    f = tmp / "a_file"
    f.write_text("not a folder\n")
    return f


def _other_preset(r, tmp: Path) -> Path:
    ck = load_checkpoint(r.ckpt)
    return _resave(r.ckpt, tmp / "small.pt", {**ck["config_dict"], "preset": "small"})


def _config_list_run(r, tmp: Path) -> Path:
    out = tmp / "list_run"
    _resave(r.ckpt, out / "checkpoints" / r.ckpt.name, "[1, 2]")
    return out


class _Evil:
    """A pickle payload: loading it unsafely would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _pickle_payload(tmp: Path) -> Path:
    path = tmp / "evil.pt"
    torch.save({"format_version": 1, "payload": _Evil(tmp / "EXECUTED")}, path)
    return path


NO_GPU = not torch.cuda.is_available()
MISSING_CUDA = "cuda" if NO_GPU else "cuda:99"
CUDA_CAUSE = r"CUDA is not available on this machine" if NO_GPU else r"this machine has \d+ CUDA"

# (id, command, argv(run, tmp_path), the message's start: the cause first)
CASES = [
    (
        "train-device-banana",
        "train",
        lambda r, t: _train(r, t / "o", "--device", "banana"),
        r"unknown device 'banana'",
    ),
    (
        "sample-device-banana",
        "sample",
        lambda r, t: _sample(r, "--device", "banana"),
        r"unknown device 'banana'",
    ),
    (
        "train-missing-cuda",
        "train",
        lambda r, t: _train(r, t / "o", "--device", MISSING_CUDA),
        CUDA_CAUSE,
    ),
    (
        "sample-missing-cuda",
        "sample",
        lambda r, t: _sample(r, "--device", MISSING_CUDA),
        CUDA_CAUSE,
    ),
    (
        "evaluate-missing-cuda",
        "evaluate",
        lambda r, t: _evaluate(r, "--device", MISSING_CUDA),
        CUDA_CAUSE,
    ),
    (
        "sample-other-preset",
        "sample",
        lambda r, t: _sample(r, "--checkpoint", str(_other_preset(r, t))),
        r"checkpoint \S+small\.pt: its ema weights do not fit the network its config describes "
        r"\(preset 'small'.*\d+ tensors differ in shape",
    ),
    (
        "evaluate-other-preset",
        "evaluate",
        lambda r, t: _evaluate(r, "--checkpoint", str(_other_preset(r, t))),
        r"checkpoint \S+small\.pt: its ema weights do not fit",
    ),
    (
        "resume-config-is-a-json-list",
        "train",
        lambda r, t: _train(r, _config_list_run(r, t), "--resume"),
        r"checkpoint \S+ holds a config that is a JSON array, not an object",
    ),
    (
        "out_dir-unknown-placeholder",
        "train",
        lambda r, t: [
            "train",
            "--config",
            str(_toml(t / "c.toml", {**r.cfg.to_dict(), "out_dir": "runs/{nme}"})),
        ],
        r"config file \S+: out_dir 'runs/\{nme\}' uses the placeholder \{nme\}; the only "
        r"placeholder is \{name\}",
    ),
    (
        "out_dir-attribute-placeholder",
        "train",
        lambda r, t: [
            "train",
            "--config",
            str(_toml(t / "c.toml", {**r.cfg.to_dict(), "out_dir": "{name.__class__}"})),
        ],
        r"config file \S+: out_dir '\{name\.__class__\}' uses the placeholder \{name\.__class__\}",
    ),
    (
        "sample-n-negative",
        "sample",
        lambda r, t: _sample(r, "--n", "-2"),
        r"argument --n: must be ≥ 1, got -2",
    ),
    (
        "sample-n-zero",
        "sample",
        lambda r, t: _sample(r, "--n", "0"),
        r"argument --n: must be ≥ 1, got 0",
    ),
    (
        "sample-n-beyond-the-test-split",
        "sample",
        lambda r, t: _sample(r, "--n", "1000000"),
        r"--n 1000000: the test split of this checkpoint's data has \d+ images; use --n ≤ \d+",
    ),
    (
        "evaluate-steps-beyond-T",
        "evaluate",
        lambda r, t: _evaluate(r, "--steps", "5000"),
        r"--steps 5000 exceeds the schedule's T = 1000",
    ),
    (
        "sample-out-unknown-suffix",
        "sample",
        lambda r, t: _sample(r, "--out", str(t / "x.jpgz")),
        r"--out \S+x\.jpgz: cannot write a \.jpgz file; end the name with one of \.png",
    ),
    (
        "sample-out-a-folder",
        "sample",
        lambda r, t: _sample(r, "--out", str(t)),
        r"--out \S+ is a folder; give a file name such as \S+samples\.png",
    ),
    (
        "sample-out-under-a-file",
        "sample",
        lambda r, t: _sample(r, "--out", str(_a_file(t) / "s.png")),
        r"\S+a_file is a file, not a folder: --out \S+ cannot be written",
    ),
    (
        "evaluate-json-a-folder",
        "evaluate",
        lambda r, t: _evaluate(r, "--json", str(t)),
        r"--json \S+ is a folder; give a file name such as \S+metrics\.json",
    ),
    (
        "train-out-under-a-file",  # unwritable output folder (root too: a file is in the way)
        "train",
        lambda r, t: _train(r, _a_file(t) / "run"),
        r"Not a directory: cannot create the run folder \S+ and its lock file",
    ),
    (
        "sample-cache-under-a-file",  # unwritable cache folder (root too)
        "sample",
        lambda r, t: _sample(r, "--cache-dir", str(_a_file(t) / "cache")),
        r"(Not a directory|File exists): .*: the All-in-One-5 data cache in \S+ cannot be written",
    ),
    (
        "sample-corrupt-checkpoint",
        "sample",
        lambda r, t: _sample(r, "--checkpoint", str(_write(t / "bad.pt", b"garbage" * 100))),
        r"cannot read checkpoint \S+bad\.pt: truncated or corrupt",
    ),
    (
        "sample-missing-checkpoint",
        "sample",
        lambda r, t: _sample(r, "--checkpoint", str(t / "nope.pt")),
        r"no checkpoint file at \S+nope\.pt",
    ),
    (
        "train-missing-config",
        "train",
        lambda r, t: ["train", "--config", "no-such-config"],
        r"no config file 'no-such-config'",
    ),
    (
        "train-existing-run-without-resume",
        "train",
        lambda r, t: _train(r, r.out),
        r"\S+checkpoints already holds checkpoints; pass resume=True \(--resume\)",
    ),
    (
        "bench-json-a-folder",
        "bench",
        lambda r, t: ["bench", "--json", str(t)],
        r"--json \S+ is a folder",
    ),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("command, argv, cause", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_failure_is_one_line_with_exit_status_2(
    run, tmp_path, capsys, monkeypatch, command, argv, cause
):
    monkeypatch.chdir(tmp_path)  # a command that wrongly wrote relative paths would write here
    before = sorted(p.name for p in tmp_path.iterdir())
    args = argv(run, tmp_path)
    made = sorted(p.name for p in tmp_path.iterdir())
    line = _one_line_failure(capsys, args)
    prefix = f"drdd-edu {command}: error: "
    assert line.startswith(prefix), line
    assert re.match(cause, line[len(prefix) :]), line
    # a failed command leaves nothing behind beside what the case itself set up
    assert sorted(p.name for p in tmp_path.iterdir()) == made, (before, made)


def test_resume_past_the_end_says_it_trains_nothing(run, capsys):
    """``--resume --steps 1`` on a 2-step run: exit 0, says so, and touches nothing."""
    files = [run.ckpt, run.out / "config.json", run.out / "log.jsonl"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    assert main(_train(run, run.out, "--resume", "--steps", "1")) == 0
    out = capsys.readouterr().out
    assert re.search(r"nothing to train: \S+ is already at step 2 .* 1 steps were asked for", out)
    assert "done:" not in out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before


def test_disk_full_while_checkpointing_names_the_cause_first(run, tmp_path, capsys, monkeypatch):
    """The checkpoint's temp file is /dev/full (ENOSPC on every write, as a full disk gives):
    the line starts with "No space left on device", and no partial file is left behind."""
    real_mkstemp = ckpt_io.tempfile.mkstemp

    def full_disk_mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        if not Path("/dev/full").exists():  # not Linux: fail the write as a full disk does
            os.close(fd)
            monkeypatch.setattr(
                ckpt_io.torch,
                "save",
                lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")),
            )
            return os.open(name, os.O_WRONLY), name
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(ckpt_io.tempfile, "mkstemp", full_disk_mkstemp)
    out = tmp_path / "full"
    line = _one_line_failure(capsys, _train(run, out, "--steps", "1"))
    assert re.match(
        r"drdd-edu train: error: No space left on device while writing checkpoint "
        r"\S+ckpt_00000001\.pt \(.* free there\); free some space",
        line,
    ), line
    assert list((out / "checkpoints").iterdir()) == []  # the temp file was removed


def test_read_only_folders_name_the_cause_first(run, tmp_path, capsys, monkeypatch):
    """A read-only file system (EROFS, which stops root too; simulated) for the run folder and
    for the data cache: one line each, the cause first."""
    real_open = ckpt_io.os.open

    def read_only_open(path, *args, **kwargs):
        if str(path).endswith(LOCK_NAME):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(ckpt_io.os, "open", read_only_open)
        line = _one_line_failure(capsys, _train(run, tmp_path / "ro"))
    assert line.startswith(
        "drdd-edu train: error: Read-only file system: cannot create the run folder"
    ), line

    def read_only_cache(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/cache/allinone5.npz")

    monkeypatch.setattr("drdd_edu.data.build_all_in_one5", read_only_cache)
    line = _one_line_failure(capsys, _sample(run, "--cache-dir", "/ro/cache"))
    assert line.startswith(
        "drdd-edu sample: error: Read-only file system: /ro/cache/allinone5.npz: the All-in-One-5 "
        "data cache in /ro/cache cannot be written"
    ), line


def test_debug_adds_the_traceback(run, capsys, monkeypatch):
    argv = _sample(run, "--device", "banana")
    for args in (["--debug", *argv], [*argv, "--debug"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and "ValueError" in err, err
        assert err.splitlines()[-1].startswith("drdd-edu sample: error: unknown device"), err
    monkeypatch.setenv("DRDD_EDU_DEBUG", "1")
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("Traceback")
    monkeypatch.setenv("DRDD_EDU_DEBUG", "0")
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_real_process_prints_one_line_and_exits_2(run, tmp_path):
    """The installed entry point's path (``python -m drdd_edu.cli``): stderr is one line, no
    traceback, exit status 2."""
    cmd = [sys.executable, "-m", "drdd_edu.cli", *_sample(run, "--out", str(tmp_path / "x.jpgz"))]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        f"drdd-edu sample: error: --out {tmp_path / 'x.jpgz'}: cannot write a .jpgz file; end "
        "the name with one of .png, .jpg, .jpeg, .tiff, .pdf, .svg"
    ]


def test_every_option_has_a_help_string():
    missing = []

    def walk(parser, name):
        for action in parser._actions:
            if action.option_strings and not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings)}")
            if action.choices and isinstance(action.choices, dict):  # sub-commands
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")

    walk(build_parser(), "drdd-edu")
    assert missing == []


# ----------------------------------------------------------------------------- checkpoints


def test_a_pickle_payload_is_refused_without_unsafe_advice(run, tmp_path, capsys):
    """torch's own message suggests ``weights_only=False`` (executing the file); ours says
    what the file is not and how to get a good one, and nothing in the file runs."""
    evil = _pickle_payload(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(evil)
    msg = str(info.value)
    assert msg.startswith(f"{evil} is not a drdd_edu checkpoint: ") and "pickled" in msg
    assert "drdd-edu train" in msg  # where a good one comes from
    assert "weights_only" not in msg and "will likely succeed" not in msg
    line = _one_line_failure(capsys, _sample(run, "--checkpoint", str(evil)))
    assert "not a drdd_edu checkpoint" in line and "weights_only" not in line
    assert not (tmp_path / "EXECUTED").exists()
    # garbage that torch also reports as "Weights only load failed": damaged, no advice
    junk = _write(tmp_path / "junk.pt", b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(junk)
    assert "weights_only" not in str(info.value)


def test_sample_and_evaluate_never_write_to_the_checkpoints_cache_dir(
    run, tmp_path, capsys, monkeypatch
):
    """A checkpoint made elsewhere stores that machine's cache_dir: sample/evaluate read the
    user's cache (--cache-dir, else $DRDD_EDU_CACHE_DIR) and create nothing at the stored one."""
    theirs = tmp_path / "their_machine" / "cache"
    ck = load_checkpoint(run.ckpt)
    moved = _resave(
        run.ckpt, tmp_path / "moved.pt", {**ck["config_dict"], "cache_dir": str(theirs)}
    )
    monkeypatch.setenv("DRDD_EDU_CACHE_DIR", str(run.cache))
    png = tmp_path / "s.png"
    args = ["--checkpoint", str(moved), "--steps", "2", "--n", "2", "--device", "cpu"]
    assert main(["sample", *args, "--out", str(png)]) == 0
    assert main(["evaluate", *args, "--cache-dir", str(run.cache)]) == 0
    assert "PSNR" in capsys.readouterr().out and png.stat().st_size > 0
    assert not (tmp_path / "their_machine").exists()


# ----------------------------------------------------------------------------- the lock


def _holder(lock_file: Path) -> dict:
    try:
        return json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def test_a_second_training_process_exits_2_naming_the_holder(run, tmp_path, capsys):
    """Process A trains into a folder; process B (``--resume`` into the same folder, which would
    otherwise overwrite A's checkpoints) exits 2 with one line naming A's pid. After A is
    SIGKILLed the folder is free at once: this process resumes A's run."""
    cfg = {**run.cfg.to_dict(), "steps": 100_000, "ckpt_every": 2, "keep_last": 2}
    toml = _toml(tmp_path / "long.toml", cfg)
    out = tmp_path / "shared"
    a = subprocess.Popen(
        [sys.executable, "-m", "drdd_edu.cli", *_train(run, out, toml=toml)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (
            _holder(out / LOCK_NAME).get("pid") == a.pid
            and latest_checkpoint(out / "checkpoints") is not None
        ):
            assert a.poll() is None, a.stderr.read().decode()
            assert time.monotonic() < deadline, "process A wrote no lock and checkpoint"
            time.sleep(0.05)
        b = subprocess.run(
            [sys.executable, "-m", "drdd_edu.cli", *_train(run, out, "--resume", toml=toml)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert a.poll() is None  # A is still training: B really met a held lock
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        a.stderr.close()
    assert b.returncode == 2, b.stdout + b.stderr
    assert len(b.stderr.splitlines()) == 1 and "Traceback" not in b.stderr, b.stderr
    assert re.match(
        rf"drdd-edu train: error: run folder {re.escape(str(out))} is in use by pid {a.pid} on "
        r"\S+ \(python -m drdd_edu\.cli train .*\); wait for that run to finish",
        b.stderr,
    ), b.stderr
    assert "training" not in b.stdout  # B stopped before starting

    # this test process is "C": SIGKILL left no stale lock, so A's run resumes at once
    step = max(s for s, _ in list_checkpoints(out / "checkpoints"))
    assert main(_train(run, out, "--resume", "--steps", str(step + 1), toml=toml)) == 0
    stdout = capsys.readouterr().out
    assert f"resumed at step {step}" in stdout and f"done: step {step + 1}" in stdout
    assert _holder(out / LOCK_NAME)["pid"] == os.getpid()


def _locked_by_child(folder: Path) -> subprocess.Popen:
    """A separate process that holds ``folder``'s RunLock until killed."""
    code = (
        "import sys, time; from drdd_edu.checkpoint import RunLock; "
        "lock = RunLock.acquire(sys.argv[1]); print('locked', flush=True); time.sleep(600)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_the_lock_is_shared_within_a_process_and_released_by_the_last_holder(tmp_path):
    folder = tmp_path / "run"
    first = RunLock.acquire(folder)
    second = RunLock.acquire(folder)  # e.g. ensure_run's lock and its Trainer's
    assert first.held and second.held
    probe = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n"
        "    sys.exit(3)\n"
    )

    def locked_elsewhere() -> bool:
        res = subprocess.run([sys.executable, "-c", probe, str(folder / LOCK_NAME)], timeout=60)
        return res.returncode == 3

    first.release()
    assert locked_elsewhere()  # the second holder still has it
    second.release()
    second.release()  # idempotent
    assert not second.held and not locked_elsewhere()


def test_experiment_runs_use_the_same_lock(run, tmp_path):
    from drdd_edu.experiments.runs import ensure_run

    folder = tmp_path / "exp_run"
    child = _locked_by_child(folder)
    try:
        with pytest.raises(RunLockedError, match=rf"is in use by pid {child.pid} "):
            ensure_run(run.cfg.replace(out_dir=""), folder)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert not (folder / "checkpoints").exists()  # nothing trained into the held folder


def test_ddp_ranks_all_stop_on_a_held_folder(run, tmp_path):
    """torchrun, 2 gloo ranks, into a folder this process holds: rank 0 cannot lock it and
    tells rank 1, so both exit with the one-line error instead of rank 1 waiting forever."""
    out = tmp_path / "ddp"
    toml = _toml(tmp_path / "ddp.toml", {**run.cfg.to_dict(), "batch_size": 4})
    with RunLock.acquire(out):
        t0 = time.monotonic()
        res = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
            + ["-m", "drdd_edu.train_cli", *_train(run, out, toml=toml)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert res.returncode != 0
    text = res.stdout + res.stderr
    # one error per rank; both ranks share the pipe, and torchrun may join the two lines
    # (seen once in CI: "…output folderdrdd-edu train: error: …"), so split on the prefix
    lines = [m.splitlines()[0] for m in text.split("drdd-edu train: error:")[1:]]
    assert len(lines) == 2, text
    assert all(f"is in use by pid {os.getpid()} " in ln for ln in lines), lines
    assert time.monotonic() - t0 < 200
    assert not (out / "checkpoints").exists()
