#!/usr/bin/env bash
# The GPU measurements of issue 4, as steps that each fit one call of ten minutes or less.
#
#   bash benchmarks/gpu_session.sh OUT_DIR STEP [STEP ...]
#
# Steps (run from the repository root; nothing needs installing beyond torch, numpy, tqdm and
# scikit-image, so a machine without internet works through PYTHONPATH):
#   check    environment, nvidia-smi, the CUDA-only tests, and a short real training run on the
#            GPU (bundled tiny-cpu config: bf16 autocast, fused AdamW, degradations on the
#            device) that is checkpointed, resumed and evaluated
#   default  bench with torch.compile (default mode)        -> OUT_DIR/<gpu>-rddm-64-b64.json
#   ro       bench with --compile-mode reduce-overhead       -> …-reduce-overhead.json
#   eager    bench without torch.compile                     -> …-eager.json
#   autotune bench with --compile-mode max-autotune-no-cudagraphs (slow to compile)
# Every step appends to OUT_DIR/gpu_session.log. <gpu> is h100, h200 or gpu (cpu in a dry run).
#
# Dry run on a CPU (what the test suite does, so this script stays true to the CLI):
#   DEVICE=cpu BENCH_ARGS="--preset tiny --size 16 --batch 2 --steps 1 --warmup 0" \
#     bash benchmarks/gpu_session.sh /tmp/gpu-dry check eager
set -uo pipefail

if [ $# -lt 2 ]; then
  sed -n 2,20p "$0"
  exit 2
fi
out=$1
shift
for step in "$@"; do  # all names first: a typo must not cost the device time of earlier steps
  case $step in
    check | default | ro | eager | autotune) ;;
    *)
      echo "gpu_session.sh: unknown step '$step' (check, default, ro, eager, autotune)" >&2
      exit 2
      ;;
  esac
done
mkdir -p "$out"
log="$out/gpu_session.log"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
bench_args=${BENCH_ARGS:-"--preset rddm --size 64 --batch 64 --two-networks --amp bf16 --channels-last --steps 50 --warmup 10"}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

tag=$($py - "$device" <<'EOF'
import sys

import torch

if sys.argv[1].startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("gpu_session.sh: CUDA is not available (DEVICE=cpu for a dry run)")
    name = torch.cuda.get_device_name(0).lower()
    print(next((k for k in ("h200", "h100") if k in name), "gpu"))
else:
    print("cpu")
EOF
) || exit 2

run_bench() {  # $1 = file suffix, rest = extra bench arguments
  local suffix=$1
  shift
  echo "== bench $suffix: $(date -u +%FT%TZ)"
  # shellcheck disable=SC2086
  $py -m drdd_edu.train_cli bench $bench_args --device "$device" "$@" \
    --json "$out/$tag-rddm-64-b64$suffix.json"
}

check() {
  local failed=0 run
  echo "== environment: $(date -u +%FT%TZ)"
  $py -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)" ||
    failed=1
  if [ "$device" != cpu ]; then nvidia-smi || true; fi
  echo "== CUDA-only tests (skipped on a CPU)"
  # -o addopts=: the project's pytest options name nbval, which a GPU image need not have
  $py -m pytest -q -o addopts= --noconftest -p no:cacheprovider -k "gpu" \
    tests/test_degradations.py tests/test_metrics.py || failed=1
  echo "== a short real training run on $device: checkpoint, resume, evaluate"
  run=$(mktemp -d)
  $py -m drdd_edu.train_cli train --config tiny-cpu --device "$device" --steps 20 \
    --out "$run" --no-progress &&
    $py -m drdd_edu.train_cli train --config tiny-cpu --device "$device" --steps 30 \
      --out "$run" --no-progress --resume &&
    $py -m drdd_edu.train_cli evaluate --checkpoint "$run/checkpoints/ckpt_00000030.pt" \
      --device "$device" --n 16 --steps 2 || failed=1
  rm -rf "$run"
  return $failed
}

status=0
for step in "$@"; do
  case $step in
    check) check ;;
    default) run_bench "" --compile ;;
    ro) run_bench -reduce-overhead --compile --compile-mode reduce-overhead ;;
    eager) run_bench -eager ;;
    autotune) run_bench -max-autotune --compile --compile-mode max-autotune-no-cudagraphs ;;
  esac 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  echo "== step $step: exit $rc" | tee -a "$log"
  [ "$rc" -eq 0 ] || status=$rc
done
exit $status
