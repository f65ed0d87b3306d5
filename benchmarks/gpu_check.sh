#!/usr/bin/env bash
# GPU path check (issue: the paper's zoo). The ddpm_cifar10 architecture with random weights
# (nothing can be downloaded on the device machines) goes through
#   1. train: bf16-mixed, STEPS steps, Dash at every 2nd step;
#   2. evaluate: one point (BUDGET = 10 LSD; baseline, reuse, Morse) in bf16, N measured first;
#   3. bench: N at several batch sizes, Dash/Dot memory.
# FID uses a small autoencoder extractor fitted on the stand-in images (Inception weights
# are not on the device machines either): the check is about the GPU path and its costs.
# Results: $OUT/summary.md (N, seconds per train step, seconds per sample step), with the
# raw records beside it. On a device machine (no package index there): first run
# `bash benchmarks/gpu_wheels.sh` here, then the device tool with carry [".gpu_wheels"] and
#   python3 -m pip install -q --no-index --no-deps .gpu_wheels/*.whl && \
#   python3 -m pip install -q --no-deps -e . && OUT=/tmp/gc bash benchmarks/gpu_check.sh && \
#   cp /tmp/gc/summary.md /tmp/gc/bench.json /tmp/gc/evaluate/results.jsonl /tmp/gc/train/dot/dot.json $OUT/
# (the tool brings back at most 8 files from its $OUT, two folders deep).
# CPU dry run (checks the script, ~10 min on 2 cores):
#   DEVICE=cpu TRAINER=cpu PRECISION=32 STEPS=2 SAMPLES=170 BATCH=170 BUDGET=2 REPEATS=1 OVERHEAD_STEPS=2
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
DEVICE=${DEVICE:-cuda}
TRAINER=${TRAINER:-gpu}
PRECISION=${PRECISION:-bf16}
STEPS=${STEPS:-300}
SAMPLES=${SAMPLES:-2000}
BATCH=${BATCH:-500}
BUDGET=${BUDGET:-10}
REPEATS=${REPEATS:-7}
OVERHEAD_STEPS=${OVERHEAD_STEPS:-20}
rm -rf "$OUT"; mkdir -p "$OUT"
DATA=(dataset=image_folder "dataset.root=$OUT/standin/images" dataset.size=32 dataset.num_workers=0)
MODEL=(model=ddpm_cifar10 "model.pretrained=$OUT/standin/dash")
python benchmarks/gpu_standin.py "$OUT/standin"
python -m morse_exp.fit_extractor "${DATA[@]}" kind=autoencoder name=standin_ae steps=$((STEPS < 200 ? STEPS : 200)) \
  "save_dir=$OUT/extractors" "hydra.run.dir=$OUT/fit_extractor"
python -m morse_exp.train "${MODEL[@]}" "${DATA[@]}" trainer=$TRAINER trainer.max_steps=$STEPS \
  trainer.val_check_interval=$STEPS +trainer.limit_val_batches=2 "module.fine_steps=[10,20]" logger=csv \
  "hydra.run.dir=$OUT/train"
python -m morse_exp.evaluate "${MODEL[@]}" "${DATA[@]}" device=$DEVICE precision=$PRECISION batch_size=$BATCH \
  "lsd_budgets=[$BUDGET]" "grid_budgets=[$BUDGET]" speed_repeats=$REPEATS metric.extractor=standin_ae "metric.extractors_dir=$OUT/extractors" \
  metric.num_samples=$SAMPLES "paths.cache_dir=$OUT/cache" "dot_checkpoint=$OUT/train/dot" \
  "hydra.run.dir=$OUT/evaluate"
python -m morse_exp.bench "${MODEL[@]}" device=$DEVICE "batch_sizes=[64,$BATCH]" overhead_batch_size=$BATCH \
  precision=$PRECISION repeats=$REPEATS overhead_steps=$OVERHEAD_STEPS \
  "output_file=$OUT/bench.json" "hydra.run.dir=$OUT/bench"
python benchmarks/gpu_summary.py "$OUT" | tee "$OUT/summary.md"
