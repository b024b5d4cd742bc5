"""Inference checkpoints (fp16 EMA weights) and the `gpu` experiment size's budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drdd_edu import checkpoint as ckpt_io
from drdd_edu.experiments.sizes import (
    GPU_SIZING,
    get_size,
    optimiser_steps,
    resolve_device_for,
)
from drdd_edu.export import export_inference_checkpoint, is_inference_only, main
from drdd_edu.train import model_from_checkpoint

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "tiny-rddm.pt"


def test_export_keeps_the_network_and_drops_the_training_state(tmp_path):
    dst = export_inference_checkpoint(SHIPPED, tmp_path / "tiny-fp16.pt")
    assert dst.stat().st_size < SHIPPED.stat().st_size / 6  # EMA only, half precision
    raw = torch.load(dst, weights_only=True)
    assert is_inference_only(raw) and raw["optimizer"] == {} and raw["rng"] == {}
    full, _, _ = model_from_checkpoint(SHIPPED)
    half, cfg, _ = model_from_checkpoint(dst)
    assert cfg.preset == "tiny"
    for (name, a), (_, b) in zip(full.state_dict().items(), half.state_dict().items(), strict=True):
        if a.is_floating_point():  # fp16 keeps ~3 significant digits
            torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-4, msg=name)
    bf16 = export_inference_checkpoint(SHIPPED, tmp_path / "tiny-bf16.pt", dtype="bfloat16")
    weights = torch.load(bf16, weights_only=True)["ema"].values()
    assert all(v.dtype == torch.bfloat16 for v in weights if v.is_floating_point())


def test_export_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of"):
        export_inference_checkpoint(SHIPPED, tmp_path / "x.pt", dtype="int8")
    with pytest.raises(ValueError, match="exceeds the limit"):
        export_inference_checkpoint(SHIPPED, tmp_path / "x.pt", max_mib=0.01)
    assert not (tmp_path / "x.pt").exists()  # no partial file left behind
    # a weight beyond fp16's range would silently become inf
    ck = ckpt_io.load_checkpoint(SHIPPED)
    ema = dict(ck["ema"])
    name = next(k for k, v in ema.items() if v.is_floating_point())
    ema[name] = ema[name].clone().fill_(1e6)
    big = ckpt_io.save_checkpoint(
        tmp_path / "big.pt",
        model=ck["model"],
        ema=ema,
        optimizer=ck["optimizer"],
        step=ck["step"],
        config=ck["config"],
        rng=ck["rng"],
    )
    with pytest.raises(ValueError, match="overflows float16"):
        export_inference_checkpoint(big, tmp_path / "y.pt")
    assert export_inference_checkpoint(big, tmp_path / "y.pt", dtype="bfloat16").is_file()


def test_export_command_line(tmp_path, capsys):
    assert main([str(SHIPPED), str(tmp_path / "a.pt")]) == 0
    assert "float16" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.pt"), str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("export: ") and err.count("\n") == 1 and "missing.pt" in err


def test_gpu_size_fits_one_lease_and_needs_cuda():
    gpu = get_size("gpu")
    assert gpu.preset == "small" and gpu.image_size == 64 and gpu.batch_size == 64
    assert gpu.amp == "bf16" and gpu.compile
    seconds = optimiser_steps(gpu) * GPU_SIZING["budgeted_ms_per_step"] / 1000
    assert 4 * 60 <= seconds <= 6.5 * 60  # training part of the ~7 minute lease
    # the budgeted step time is no less than 2× what the FLOPs take at the assumed fraction
    flop_ms = (
        3
        * GPU_SIZING["fwd_gflop_per_image"]
        * gpu.batch_size
        / (GPU_SIZING["peak_bf16_tflops"] * GPU_SIZING["assumed_peak_fraction"])
    )
    assert GPU_SIZING["budgeted_ms_per_step"] >= 2 * flop_ms
    assert optimiser_steps(get_size("full")) > 10 * optimiser_steps(gpu)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs device='cuda'"):
            resolve_device_for(gpu, "auto")
