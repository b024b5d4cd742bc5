"""Inference checkpoints: a training checkpoint's EMA weights in half precision, for shipping.

A training checkpoint (:mod:`drdd_edu.checkpoint`) holds the raw and EMA weights, the optimiser
state and RNG states — about 4 × the weights in float32. To ship a trained network (in the
repository, or back from a short GPU lease where files are capped at 16 MiB) only the EMA weights
are needed. :func:`export_inference_checkpoint` writes them as float16 (or bfloat16) in the same
checkpoint format, so :func:`drdd_edu.train.model_from_checkpoint`, ``drdd-edu sample`` and
``drdd-edu evaluate`` read it unchanged (``load_state_dict`` casts to the network's float32):

* ``model`` and ``ema`` are the *same* half-precision tensors (``torch.save`` stores a shared
  storage once, so this costs nothing);
* ``optimizer`` and ``rng`` are empty and ``extra["inference_only"]`` is True — the file cannot
  resume training (use the original checkpoint for that).

``python -m drdd_edu.export SRC DST [--dtype float16|bfloat16] [--max-mib 16]``
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from . import checkpoint as ckpt_io

__all__ = ["HALF_DTYPES", "export_inference_checkpoint", "is_inference_only", "main"]

HALF_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def is_inference_only(ckpt: dict) -> bool:
    """True for a checkpoint written by :func:`export_inference_checkpoint`."""
    return bool(ckpt.get("extra", {}).get("inference_only", False))


def export_inference_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    dtype: str = "float16",
    max_mib: float | None = None,
) -> Path:
    """Write the EMA weights of checkpoint ``src`` to ``dst`` in ``dtype``; return ``dst``.

    Floating-point tensors are cast to ``dtype``; integer buffers are kept. Raises
    :class:`~drdd_edu.checkpoint.CheckpointError` for an unreadable ``src``, ``ValueError`` for an
    unknown dtype, a float16 overflow (a weight beyond ±65504 would become inf), or a file larger
    than ``max_mib`` MiB (the partial file is removed).
    """
    if dtype not in HALF_DTYPES:
        raise ValueError(f"dtype must be one of {tuple(HALF_DTYPES)}, got {dtype!r}")
    half = HALF_DTYPES[dtype]
    ck = ckpt_io.load_checkpoint(src)
    weights = {}
    for name, value in ck["ema"].items():
        if torch.is_tensor(value) and value.is_floating_point():
            cast = value.detach().to(half)
            if not torch.isfinite(cast).all() and torch.isfinite(value).all():
                raise ValueError(
                    f"{src}: weight {name!r} overflows {dtype} (max |w| = "
                    f"{float(value.abs().max()):.3g}); export as bfloat16 instead"
                )
            weights[name] = cast
        else:
            weights[name] = value
    extra = dict(ck.get("extra", {}))
    extra.update(
        inference_only=True,
        exported_from=str(Path(src).name),
        exported_dtype=dtype,
    )
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ckpt_io.save_checkpoint(
        dst,
        step=int(ck["step"]),
        config=ck["config"],
        model=weights,
        ema=weights,
        optimizer={},
        rng={},
        extra=extra,
    )
    size_mib = dst.stat().st_size / 2**20
    if max_mib is not None and size_mib > max_mib:
        dst.unlink()
        raise ValueError(f"{dst}: {size_mib:.1f} MiB exceeds the limit of {max_mib} MiB")
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m drdd_edu.export SRC DST``; errors are one line, exit 2."""
    parser = argparse.ArgumentParser(
        prog="python -m drdd_edu.export",
        description="Write a checkpoint's EMA weights in half precision (inference only).",
    )
    parser.add_argument("src", type=Path, help="a training checkpoint (ckpt_*.pt)")
    parser.add_argument("dst", type=Path, help="the inference checkpoint to write")
    parser.add_argument("--dtype", choices=tuple(HALF_DTYPES), default="float16")
    parser.add_argument("--max-mib", type=float, default=None, help="fail above this file size")
    args = parser.parse_args(argv)
    try:
        path = export_inference_checkpoint(args.src, args.dst, args.dtype, args.max_mib)
    except (OSError, ValueError, ckpt_io.CheckpointError) as err:
        print(f"export: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB, {args.dtype})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
