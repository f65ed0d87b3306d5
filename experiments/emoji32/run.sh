#!/usr/bin/env bash
# The embedded 32 px task (dataset=emoji32, architecture=unet_emoji32): pretrain its Dash,
# export a Dash (safetensors + sample grid) from any checkpoint, and measure N per Dot config.
# Run from the repository root, one thread per process (2-core machines):
#   bash experiments/emoji32/run.sh pretrain          # resumable: run it again to continue
#   bash experiments/emoji32/run.sh export            # Dash + samples.png at the last checkpoint
#   bash experiments/emoji32/run.sh bench DASH_DIR    # N of the default, slim and wide Dots
set -euo pipefail
OUT=outputs/pretrain/emoji32
STEPS=${STEPS:-20000}
# bf16 autocast: a training step of this UNet (batch 64, one thread) takes 1.6 s instead of
# 2.9 s in fp32 on the project's CPU (avx512_bf16; benchmarks/pretrain_precision.py);
# weights, optimiser and EMA stay fp32. PRECISION=32-true for full precision.
PRECISION=${PRECISION:-bf16-mixed}
export OMP_NUM_THREADS=1
PRETRAIN=(python -m morse_exp.pretrain dataset=emoji32 architecture=unet_emoji32 trainer.precision=$PRECISION)
case "${1:-pretrain}" in
  pretrain)
    resume=(); [ -f $OUT/checkpoints/last.ckpt ] && resume=(ckpt_path=last)
    "${PRETRAIN[@]}" trainer.max_steps=$STEPS hydra.run.dir=$OUT "${resume[@]}" ;;
  export)
    # A copy of the last checkpoint, "trained" up to its own step: fit stops at once and the
    # EMA Dash and its DDIM-50 grid are written under $OUT/export_<step>/ (training goes on).
    step=$(python -c "import torch; print(torch.load('$OUT/checkpoints/last.ckpt', map_location='cpu', weights_only=True)['global_step'])")
    mkdir -p $OUT/export_$step/checkpoints && cp $OUT/checkpoints/last.ckpt $OUT/export_$step/checkpoints/
    "${PRETRAIN[@]}" trainer.max_steps=$step logger=none hydra.run.dir=$OUT/export_$step ckpt_path=last ;;
  bench)
    for dot in default slim wide; do
      python -m morse_exp.bench model.pretrained="$2" dataset=emoji32 dot=$dot "batch_sizes=[1,64,128,256]" \
        overhead_batch_size=64 output_file=experiments/emoji32/bench/bench_$dot.json hydra.run.dir=outputs/bench/emoji32_$dot
    done ;;
  *) echo "usage: $0 pretrain|export|bench DASH_DIR" >&2; exit 2 ;;
esac
