"""Command-line front end for training, sampling, evaluation and benchmarks.

drdd-edu train --config FILE|NAME [--resume] [--steps N] [--out DIR] [--device D]
drdd-edu sample --checkpoint FILE [--steps 5] [--n 8] [--out samples.png] [--cache-dir D]
drdd-edu evaluate --checkpoint FILE [--split test] [--n 32] [--steps 5] [--noise-checkpoint F]
                  [--json FILE] [--cache-dir D]
drdd-edu bench --preset P --size S --batch B [--steps N] [--device D] [--json FILE]
drdd-edu experiment NAME|all [--size smoke|cpu|cpu-long|gpu|full] [--smoke] [--results-dir D] [--figures-dir D]
                             [--runs-dir D] [--device D] [--seed N] [--no-progress]

The lead wires these into :mod:`drdd_edu.cli` with :func:`add_commands` and :func:`dispatch`;
``python -m drdd_edu.train_cli …`` runs them directly (also under ``torchrun``). Failures a user
can fix (bad options, configs or checkpoints, a missing device, a full or read-only disk, a run
folder in use) end with one line on stderr and exit status 2 — see
:func:`drdd_edu.cli.run_guarded`; ``--debug`` or ``DRDD_EDU_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "add_commands", "dispatch", "build_parser", "main", "bench"]

COMMANDS: tuple[str, ...] = ("train", "sample", "evaluate", "bench", "experiment")

#: file types ``sample --out`` writes (matplotlib's ``imsave``)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tiff", ".pdf", ".svg")


def _at_least(lo: int) -> Any:
    """An argparse type: an int ≥ ``lo`` (else argparse's one-line usage error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be ≥ {lo}, got {value}")
        return value

    parse.__name__ = f"int ≥ {lo}"
    return parse


_CACHE_HELP = (
    "folder of the All-in-One-5 data cache (default: $DRDD_EDU_CACHE_DIR, else data/cache in a "
    "source checkout, else ~/.cache/drdd_edu); never the cache_dir stored in the checkpoint"
)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train``, ``sample``, ``evaluate``, ``bench`` and ``experiment`` sub-commands."""
    tr = subparsers.add_parser(
        "train", help="train RDDM or a DRDD stage from a TOML config (torchrun for multi-GPU)"
    )
    tr.add_argument(
        "--config", required=True, help="a TOML file or a bundled config name (e.g. tiny-cpu)"
    )
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    tr.add_argument(
        "--steps", type=_at_least(1), default=None, help="override the total number of steps"
    )
    tr.add_argument(
        "--out",
        type=Path,
        default=None,
        help="override the output folder (one training process at a time: it is locked)",
    )
    tr.add_argument("--device", default=None, help="override the device (auto, cpu, cuda, …)")
    tr.add_argument("--seed", type=_at_least(0), default=None, help="override the seed")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")

    sa = subparsers.add_parser("sample", help="restore test images with a trained checkpoint")
    sa.add_argument(
        "--checkpoint", type=Path, required=True, help="a .pt file written by drdd-edu train"
    )
    sa.add_argument("--steps", type=_at_least(1), default=5, help="sampling steps (per DRDD stage)")
    sa.add_argument(
        "--n", type=_at_least(1), default=8, help="number of test images (at most the test split)"
    )
    sa.add_argument(
        "--out",
        type=Path,
        default=Path("samples.png"),
        help=f"image grid to write (default samples.png; {', '.join(IMAGE_SUFFIXES)})",
    )
    sa.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, …")
    sa.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    sa.add_argument("--cache-dir", type=Path, default=None, help=_CACHE_HELP)

    ev = subparsers.add_parser("evaluate", help="PSNR/SSIM of a checkpoint on held-out images")
    ev.add_argument(
        "--checkpoint", type=Path, required=True, help="a .pt file written by drdd-edu train"
    )
    ev.add_argument("--split", choices=("test",), default="test", help="held-out split")
    ev.add_argument(
        "--n", type=_at_least(1), default=32, help="number of images (at most the test split)"
    )
    ev.add_argument("--steps", type=_at_least(1), default=5, help="sampling steps (per DRDD stage)")
    ev.add_argument(
        "--noise-checkpoint",
        type=Path,
        default=None,
        help="DRDD: a drdd_noise checkpoint to run the full two-stage sampler with",
    )
    ev.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, …")
    ev.add_argument(
        "--json", type=Path, default=None, help="also write the metrics to this JSON file"
    )
    ev.add_argument("--cache-dir", type=Path, default=None, help=_CACHE_HELP)

    be = subparsers.add_parser(
        "bench", help="training throughput (images/s, TFLOP/s, memory) and sampling latency"
    )
    be.add_argument("--preset", default="tiny", help="network preset: tiny (default), small, rddm")
    be.add_argument("--size", type=_at_least(8), default=32, help="image side (default 32)")
    be.add_argument("--batch", type=_at_least(1), default=16, help="batch size (default 16)")
    be.add_argument("--steps", type=_at_least(1), default=10, help="timed steps")
    be.add_argument("--warmup", type=_at_least(0), default=2, help="untimed steps first")
    be.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, …")
    be.add_argument(
        "--objective",
        default="pred_res_noise",
        help="pred_res_noise (default), pred_res, pred_noise, auto_res_noise",
    )
    be.add_argument(
        "--two-networks", action="store_true", help="one UNet per output (pred_res_noise only)"
    )
    be.add_argument(
        "--amp",
        default="off",
        choices=("auto", "bf16", "off"),
        help="autocast: off (default), bf16, auto (bf16 where the GPU supports it)",
    )
    be.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training network and the EMA network that samples",
    )
    be.add_argument(
        "--compile-mode",
        default="default",
        help="torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune, …",
    )
    be.add_argument(
        "--channels-last", action="store_true", help="channels_last memory format (GPUs)"
    )
    be.add_argument(
        "--sampling-steps",
        type=_at_least(0),
        default=5,
        help="also time restoring the batch with this many sampler steps (0: skip)",
    )
    be.add_argument("--json", type=Path, default=None, help="write the result as JSON")

    ex = subparsers.add_parser(
        "experiment",
        help="run a DRDD experiment (coupled, data-efficiency, noise-sweep, matched-noise, aosa, or all)",
    )
    ex.add_argument(
        "name", help="coupled, data-efficiency, noise-sweep, matched-noise, aosa, or all"
    )
    ex.add_argument(
        "--size",
        default=None,
        help="smoke (CI), cpu (laptop CPU), cpu-long (cpu, 3x the data-efficiency steps), "
        "gpu (one short GPU lease) or full (GPU); default smoke",
    )
    ex.add_argument("--smoke", action="store_true", help="the same as --size smoke")
    ex.add_argument(
        "--results-dir",
        type=Path,
        default=Path("data/results"),
        help="where NAME-SIZE.csv/.json go (default data/results)",
    )
    ex.add_argument(
        "--figures-dir", type=Path, default=None, help="default $DRDD_EDU_FIGURES or figures/"
    )
    ex.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs/experiments"),
        help="the trained networks' run folders, reused when finished (default runs/experiments)",
    )
    ex.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    ex.add_argument("--seed", type=_at_least(0), default=0, help="training seed (default 0)")
    ex.add_argument("--no-progress", action="store_true", help="no progress bars")


def dispatch(args: argparse.Namespace) -> int | None:
    """Run a command added by :func:`add_commands`; None if ``args.command`` is not one.

    Errors propagate: the entry points (:func:`drdd_edu.cli.main`, :func:`main`) turn the
    user-facing ones into one line and exit status 2."""
    run = {
        "train": _train,
        "sample": _sample,
        "evaluate": _evaluate,
        "experiment": _experiment,
        "bench": _bench,
    }.get(getattr(args, "command", None))
    return None if run is None else run(args)


def _check_output_file(path: Path | None, option: str, example: str) -> None:
    """Refuse an output path that is a folder, or lies under a file, before any work is done."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name such as {path / example}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"{parent} is a file, not a folder: {option} {path} cannot be written"
                )
            return


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {path}")


# ----------------------------------------------------------------------------- commands


def _train(args: argparse.Namespace) -> int:
    from .train import Trainer, load_config

    overrides: dict[str, Any] = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.out is not None:
        overrides["out_dir"] = str(args.out)
    if args.device is not None:
        overrides["device"] = args.device
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.no_progress:
        overrides["progress"] = False
    cfg = load_config(args.config, **overrides)
    trainer = Trainer(cfg, resume=args.resume)
    if trainer.step >= cfg.steps:  # a resumed run that is already there: say so, train nothing
        trainer.close()
        if trainer.dist.is_main:
            print(
                f"nothing to train: {cfg.output_dir} is already at step {trainer.step} "
                f"(from {trainer.resumed_from}), and {cfg.steps} steps were asked for; "
                "pass a larger --steps to train further",
                flush=True,
            )
        return 0
    if trainer.dist.is_main:
        where = f" (resumed at step {trainer.step})" if trainer.step else ""
        print(f"training {cfg.name} → {cfg.output_dir}{where}", flush=True)
    last = trainer.run()
    if trainer.dist.is_main:
        msg = f"done: step {last.get('step')}"
        if "loss" in last:
            msg += f", loss {last['loss']:.4f}"
        if trainer.last_eval:
            msg += ", " + ", ".join(f"{k} {v:.4f}" for k, v in trainer.last_eval.items())
        print(msg, flush=True)
    return 0


def _resolve(device: str) -> Any:
    from .train import resolve_device

    return resolve_device(device)


def _test_source(cfg: Any, cache_dir: Path | None = None) -> Any:
    """The held-out test images of a checkpoint's config, read from (or built into) the user's
    cache: ``cache_dir``, else the default location — never the ``cache_dir`` stored in the
    checkpoint, which names a folder on the machine that trained it (a checkpoint from
    elsewhere must not make this command create or write folders there)."""
    from .train.batches import _load_sources

    local = cfg.replace(
        stage="rddm", objective="pred_res", cache_dir=str(cache_dir) if cache_dir else ""
    )
    return _load_sources(local, _resolve("cpu"), False)[1]


def _check_images(args: argparse.Namespace, cfg: Any, test: Any) -> None:
    """``--n`` within the test split, ``--steps`` within the schedule (one line if not)."""
    if test is not None and args.n > len(test):
        raise ValueError(
            f"--n {args.n}: the test split of this checkpoint's data has {len(test)} images; "
            f"use --n ≤ {len(test)}"
        )
    if args.steps > cfg.T:
        raise ValueError(f"--steps {args.steps} exceeds the schedule's T = {cfg.T} steps")


def _sample(args: argparse.Namespace) -> int:
    from .train import model_from_checkpoint, restore_test_images

    out = args.out
    _check_output_file(out, "--out", "samples.png")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(
            f"--out {out}: cannot write a {out.suffix or 'suffix-less'} file; end the name "
            f"with one of {', '.join(IMAGE_SUFFIXES)}"
        )
    device = _resolve(args.device)
    model, cfg, ck = model_from_checkpoint(args.checkpoint, use_ema=not args.raw, device=device)
    test = _test_source(cfg, args.cache_dir)
    _check_images(args, cfg, test)
    clean, start, restored = restore_test_images(model, cfg, test, args.n, args.steps, device)
    _save_grid([start, restored, clean], args.out)
    print(
        f"wrote {args.out}: {len(clean)} test images from step {ck['step']} "
        f"({cfg.stage}, {args.steps} steps); rows: input, restored, target"
    )
    return 0


def _save_grid(rows: list[Any], path: Path) -> None:
    """Save rows of (N, 3, H, W) [0, 1] images as one PNG grid."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import torch

    grid = torch.cat([torch.cat(list(r.cpu().clamp(0, 1)), dim=-1) for r in rows], dim=-2)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, grid.permute(1, 2, 0).numpy())


def _evaluate(args: argparse.Namespace) -> int:
    from .train import evaluate_model, model_from_checkpoint

    _check_output_file(args.json, "--json", "metrics.json")
    device = _resolve(args.device)
    model, cfg, ck = model_from_checkpoint(args.checkpoint, device=device)
    noise_model = noise_cfg = None
    if args.noise_checkpoint is not None:
        if cfg.stage != "drdd_residual":
            raise ValueError(
                f"--noise-checkpoint needs a drdd_residual --checkpoint; {args.checkpoint} is a "
                f"{cfg.stage} checkpoint"
            )
        noise_model, noise_cfg, _ = model_from_checkpoint(args.noise_checkpoint, device=device)
        if noise_cfg.stage != "drdd_noise":
            raise ValueError(
                f"--noise-checkpoint {args.noise_checkpoint} is a {noise_cfg.stage} checkpoint, "
                "not a drdd_noise one"
            )
    test = _test_source(cfg, args.cache_dir)
    _check_images(args, cfg, test)
    metrics = evaluate_model(
        model,
        cfg,
        test,
        n_images=args.n,
        sampling_steps=args.steps,
        device=device,
        noise_model=noise_model,
        noise_cfg=noise_cfg,
        per_task=True,
    )
    print(
        f"{args.checkpoint} (step {ck['step']}, stage {cfg.stage}, {args.split}, "
        f"{args.n} images, {args.steps} steps): PSNR {metrics['psnr']:.2f} dB "
        f"(input {metrics['psnr_in']:.2f}), SSIM {metrics['ssim']:.4f} "
        f"(input {metrics['ssim_in']:.4f})"
    )
    for name, m in metrics["tasks"].items():  # per degradation, restored vs input
        verdict = (
            "better" if m["psnr"] > m["psnr_in"] and m["ssim"] > m["ssim_in"] else "NOT better"
        )
        print(
            f"  {name:<10} n={m['n']:<3} PSNR {m['psnr']:6.2f} dB (input {m['psnr_in']:6.2f}), "
            f"SSIM {m['ssim']:.4f} (input {m['ssim_in']:.4f}): {verdict}"
        )
    _write_json(args.json, {"checkpoint": str(args.checkpoint), "step": ck["step"], **metrics})
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS, SIZES, run_experiment

    if args.smoke and args.size not in (None, "smoke"):
        raise ValueError(f"--smoke contradicts --size {args.size}")
    size = "smoke" if args.smoke or args.size is None else args.size
    if size not in SIZES:
        raise ValueError(f"unknown experiment size {size!r}; choose one of {SIZES}")
    if args.name != "all" and args.name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {args.name!r}; choose one of {EXPERIMENTS} or 'all'")
    names = EXPERIMENTS if args.name == "all" else (args.name,)
    for name in names:
        res = run_experiment(
            name,
            size=size,
            results_dir=args.results_dir,
            figures_dir=args.figures_dir,
            runs_dir=args.runs_dir,
            device=args.device,
            progress=not args.no_progress,
            seed=args.seed,
        )
        trained = sum(not r.get("reused", False) for r in res.meta["runs"])
        print(
            f"{name} ({size}): {len(res.rows)} rows in {res.meta['wall_s']:.1f} s "
            f"({trained} runs trained, {len(res.meta['runs']) - trained} reused) → "
            f"{res.csv_path}, {res.json_path}, {res.figure_path}",
            flush=True,
        )
    return 0


def _bench(args: argparse.Namespace) -> int:
    _check_output_file(args.json, "--json", "bench.json")
    result = bench(
        preset=args.preset,
        size=args.size,
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        objective=args.objective,
        two_networks=args.two_networks,
        amp=args.amp,
        compile=args.compile,
        compile_mode=args.compile_mode,
        channels_last=args.channels_last,
        sampling_steps=args.sampling_steps,
    )
    print(
        f"bench {result['preset']} {result['size']}² batch {result['batch']} on "
        f"{result['device']}: {result['images_per_s']:.1f} images/s, "
        f"{result['ms_per_step']:.1f} ms/step, {result['tflops']:.3f} TFLOP/s, "
        f"peak memory {result['peak_memory_mb']:.0f} MB ({result['memory_kind']})"
        + (
            f"; {result['sampling_steps']}-step sampling of the batch: {result['sample_ms']:.1f} ms"
            if result["sample_ms"] is not None
            else ""
        )
    )
    _write_json(args.json, result)
    return 0


def bench(
    preset: str = "tiny",
    size: int = 32,
    batch: int = 16,
    steps: int = 10,
    warmup: int = 2,
    device: str = "auto",
    objective: str = "pred_res_noise",
    two_networks: bool = False,
    amp: str = "off",
    compile: bool = False,
    channels_last: bool = False,
    sampling_steps: int = 5,
    compile_mode: str = "default",
    sample_repeats: int = 3,
) -> dict[str, Any]:
    """Time ``steps`` training steps (after ``warmup``) on synthetic data with the Trainer's own
    step; returns images/s, ms/step, TFLOP/s (forward FLOPs × 3 for forward + backward) and the
    peak memory (CUDA allocator peak, or the process's peak RSS on CPU). Then times restoring the
    whole batch (B, 3, size, size) with ``sampling_steps`` sampler steps of the EMA model (η = 0,
    under the same autocast, compiled with ``compile_mode`` too when ``compile``; the best of
    ``sample_repeats`` runs after one untimed run that also compiles):
    ``sample_ms`` — the issue's "5-step sampling of 64 images at 64²" latency. ``sampling_steps``
    = 0 skips it."""
    import resource

    import torch

    from .nn import count_parameters, flops_per_image
    from .train import TrainConfig, Trainer

    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps ≥ 1 and warmup ≥ 0, got {steps}, {warmup}")
    if sampling_steps < 0 or sample_repeats < 1:
        raise ValueError(
            f"need sampling_steps ≥ 0 and sample_repeats ≥ 1, got {sampling_steps}, {sample_repeats}"
        )
    cfg = TrainConfig(
        name="bench",
        preset=preset,
        objective=objective,
        two_networks=two_networks,
        dataset="synthetic",
        image_size=size,
        batch_size=batch,
        steps=warmup + steps,
        out_dir="",
        eval_every=0,
        ckpt_every=0,
        progress=False,
        device=device,
        amp=amp,
        compile=compile,
        compile_mode=compile_mode,
        channels_last=channels_last,
    )
    tr = Trainer(cfg)
    dev = tr.device
    flops = flops_per_image(tr.ema, size)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(warmup):
        tr.train_step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    sync()
    dt = time.perf_counter() - t0
    sample_ms = _time_sampling(tr, sampling_steps, sample_repeats, sync) if sampling_steps else None
    tr.close()
    if dev.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(dev) / 2**20, "cuda max allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    ips = batch * steps / dt
    return {
        "preset": preset,
        "size": size,
        "batch": batch,
        "steps": steps,
        "device": str(dev)
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "objective": objective,
        "two_networks": two_networks,
        "amp": str(tr.amp_dtype).replace("torch.", "") if tr.amp_dtype else "off",
        "compile": compile,
        "compile_mode": compile_mode if compile else None,
        "channels_last": channels_last,
        "parameters": count_parameters(tr.model),
        "flops_per_image_fwd": flops,
        "ms_per_step": 1000 * dt / steps,
        "images_per_s": ips,
        "tflops": 3 * flops * ips / 1e12,
        "sampling_steps": sampling_steps,
        "sample_ms": sample_ms,
        "peak_memory_mb": peak,
        "memory_kind": kind,
        "torch": torch.__version__,
    }


def sampling_model(tr: Any) -> Any:
    """The network that samples for ``tr`` (a :class:`~drdd_edu.train.Trainer`): its EMA
    model, wrapped by ``torch.compile(mode=config.compile_mode)`` when ``config.compile`` (the
    wrapper forwards ``mode`` and other attributes to the EMA model)."""
    import torch

    cfg = tr.config
    return torch.compile(tr.ema, mode=cfg.compile_mode) if cfg.compile else tr.ema


def _time_sampling(tr: Any, sampling_steps: int, repeats: int, sync: Any) -> float:
    """Best wall time (ms) of restoring one synthetic batch with the EMA model (see ``bench``)."""
    import torch

    from .samplers import sample

    cfg, dev = tr.config, tr.device
    g = torch.Generator(device=dev).manual_seed(cfg.seed)
    x_in = torch.rand((cfg.batch_size, 3, cfg.image_size, cfg.image_size), generator=g, device=dev)
    x_in = x_in * 2 - 1
    if cfg.channels_last:
        x_in = x_in.contiguous(memory_format=torch.channels_last)
    schedule, model = tr.schedule, sampling_model(tr)

    def once() -> None:
        with torch.no_grad(), tr._autocast():
            sample(model, x_in, schedule, sampling_steps, mode=model.mode, generator=g)

    once()  # untimed: allocator warm-up (and compilation when the model is compiled)
    best = math.inf
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        once()
        sync()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


# ----------------------------------------------------------------------------- standalone


def build_parser() -> argparse.ArgumentParser:
    from .cli import OneLineArgumentParser, add_debug_option

    parser = OneLineArgumentParser(
        prog="python -m drdd_edu.train_cli", description="train / sample / evaluate / bench"
    )
    add_commands(parser.add_subparsers(dest="command", required=True))
    add_debug_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The standalone entry (also what ``torchrun -m drdd_edu.train_cli`` runs)."""
    from .cli import run_guarded

    args = build_parser().parse_args(argv)
    return run_guarded(args, lambda: dispatch(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
