"""The small training setup shared by the trainer and AOSA tests: the tiny UNet at 16², 10
patches per source image (60 training pairs), a few steps on CPU, no files unless asked."""

from pathlib import Path

from drdd_edu.data import AllInOne5, build_all_in_one5
from drdd_edu.train import TrainConfig

SMALL_TRAIN = dict(
    name="t",
    preset="tiny",
    image_size=16,
    batch_size=4,
    steps=4,
    lr=1e-3,
    warmup_steps=0,
    max_patches_per_image=10,
    data_scales=(1.0, 0.5),
    eval_every=0,
    eval_images=4,
    sampling_steps=2,
    ckpt_every=0,
    keep_last=0,
    progress=False,
    device="cpu",
    amp="off",
)


def small_data(cache_dir: Path | str) -> AllInOne5:
    """The All-in-One-5 build the small configs train on (built once per cache folder)."""
    return build_all_in_one5(
        size=16, scales=(1.0, 0.5), max_patches_per_image=10, cache_dir=cache_dir, progress=False
    )


def small_config(cache_dir: Path | str, out: Path | str = "", **changes) -> TrainConfig:
    """:data:`SMALL_TRAIN` with ``changes``, reading data from ``cache_dir``, writing to ``out``."""
    return TrainConfig(
        **{**SMALL_TRAIN, "cache_dir": str(cache_dir), "out_dir": str(out), **changes}
    )
