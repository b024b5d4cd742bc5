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
#   all      the whole lease in ONE call of at most ALL_BUDGET_S seconds (default 510, so a
#            ten-minute call keeps a margin), phases in order of value per second, each writing
#            its files as soon as it finishes, so a call cut short still returns what was done:
#              1. environment + the CUDA-only tests
#              2. the rddm-preset bench, eager (the baseline) then compiled -> 2 JSONs
#              3. the experiments at EXP_SIZE (default gpu): coupled, noise-sweep,
#                 data-efficiency, aosa; after each, OUT_DIR/results-<size>.tar.gz is rewritten
#                 (CSV, JSON, PNG of every finished experiment) and the fp16 inference
#                 checkpoints of the RDDM net and the DRDD pair are (re)exported
#            OUT_DIR then holds at most 7 files, each under 16 MiB: gpu_session.log, the two
#            bench JSONs, results-<size>.tar.gz, rddm-<size>-fp16.pt, drdd-noise-<size>-fp16.pt,
#            drdd-residual-<size>-fp16.pt. (ALL_COMPILED_BENCH=0 skips the compiled bench: the
#            CPU dry run does, as inductor takes minutes on 2 cores; ALL_EXPERIMENTS="coupled"
#            runs only the named experiments.)
# Every step appends to OUT_DIR/gpu_session.log. <gpu> is h100, h200 or gpu (cpu in a dry run).
#
# Dry run on a CPU (what the test suite does, so this script stays true to the CLI):
#   DEVICE=cpu BENCH_ARGS="--preset tiny --size 16 --batch 2 --steps 1 --warmup 0" \
#     bash benchmarks/gpu_session.sh /tmp/gpu-dry check eager
#   DEVICE=cpu EXP_SIZE=smoke BENCH_ARGS=… bash benchmarks/gpu_session.sh /tmp/gpu-dry all
set -uo pipefail

if [ $# -lt 2 ]; then
  sed -n 2,20p "$0"
  exit 2
fi
out=$1
shift
for step in "$@"; do  # all names first: a typo must not cost the device time of earlier steps
  case $step in
    check | default | ro | eager | autotune | all) ;;
    *)
      echo "gpu_session.sh: unknown step '$step' (check, default, ro, eager, autotune, all)" >&2
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

remaining() {  # seconds left of the `all` budget
  echo $((all_deadline - $(date +%s)))
}

bounded() {  # run "$@" for at most the remaining budget minus $reserve seconds
  local left
  left=$(($(remaining) - reserve))
  if [ "$left" -le 5 ]; then
    echo "== skipped (budget spent): $*"
    return 124
  fi
  timeout -k 10 "$left" "$@"
}

export_checkpoints() {  # the fp16 inference checkpoints of the shared networks, when trained
  local name src
  for name in rddm_frac1.00_seed0 drdd-noise_seed0 drdd-residual_sigma1.00_frac1.00_seed0; do
    src=$(find "$work/runs/$exp_size/$name/checkpoints" -name 'ckpt_*.pt' 2>/dev/null | sort | tail -1)
    [ -n "$src" ] || continue
    $py -m drdd_edu.export "$src" "$out/${name%%_*}-$exp_size-fp16.pt" --max-mib 16 || return 1
  done
}

pack_results() {  # one archive of every finished experiment's CSV, JSON and figure
  tar -czf "$out/results-$exp_size.tar.gz.tmp" -C "$work" results figures &&
    mv "$out/results-$exp_size.tar.gz.tmp" "$out/results-$exp_size.tar.gz"
}

all() {
  local failed=0 exp
  all_deadline=$(($(date +%s) + ${ALL_BUDGET_S:-510}))
  reserve=20  # for packing and exporting after the last experiment
  exp_size=${EXP_SIZE:-gpu}
  work=$(mktemp -d)
  mkdir -p "$work/results" "$work/figures" "$work/runs"
  echo "== all: budget ${ALL_BUDGET_S:-510} s, experiments at size $exp_size, $(date -u +%FT%TZ)"
  $py -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)" ||
    failed=1
  if [ "$device" != cpu ]; then nvidia-smi --query-gpu=name,memory.total --format=csv || true; fi
  echo "== CUDA-only tests (skipped on a CPU)"
  bounded $py -m pytest -q -o addopts= --noconftest -p no:cacheprovider -k "gpu" \
    tests/test_degradations.py tests/test_metrics.py || failed=1
  # shellcheck disable=SC2086
  echo "== bench -eager: $(date -u +%FT%TZ)"
  bounded $py -m drdd_edu.train_cli bench $bench_args --device "$device" \
    --json "$out/$tag-rddm-64-b64-eager.json" || failed=1
  if [ "${ALL_COMPILED_BENCH:-1}" = 1 ]; then
    echo "== bench (compiled): $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086
    bounded $py -m drdd_edu.train_cli bench $bench_args --device "$device" --compile \
      --json "$out/$tag-rddm-64-b64.json" || failed=1
  fi
  for exp in ${ALL_EXPERIMENTS:-coupled noise-sweep data-efficiency aosa}; do
    echo "== experiment $exp ($exp_size): $(date -u +%FT%TZ), $(remaining) s left"
    bounded $py -m drdd_edu.train_cli experiment "$exp" --size "$exp_size" --device "$device" \
      --results-dir "$work/results" --figures-dir "$work/figures" --runs-dir "$work/runs" \
      --no-progress || failed=1
    pack_results || failed=1
    export_checkpoints || failed=1
  done
  rm -rf "$work"
  echo "== all: done with $(remaining) s of the budget left; files:"
  ls -l "$out"
  return $failed
}

status=0
for step in "$@"; do
  case $step in
    all) all ;;
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
