#!/usr/bin/env bash
# Train one Dot per paper row, sweep FID vs LSD for each, gather one summary table: the shared
# driver of the paper_* folders. Usage (from anywhere):
#   bash experiments/paper_run.sh <folder name> <experiment,experiment,...> [extra overrides...]
# Extra overrides go to both train and evaluate (e.g. model.pretrained=..., dataset.root=...).
# TRAIN / EVAL hold the hardware settings (default: one GPU, bf16 sampling).
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDER=$1; EXPERIMENTS=$2; shift 2
OUT=${OUT:-outputs/experiments/$FOLDER}
TRAIN=${TRAIN:-trainer=gpu}
EVAL=${EVAL:-device=cuda precision=bf16}
python -m morse_exp.train -m experiment=$EXPERIMENTS $TRAIN "$@" \
  hydra.sweep.dir=$OUT/train 'hydra.sweep.subdir=${hydra:runtime.choices.experiment}'
python -m morse_exp.evaluate -m experiment=$EXPERIMENTS $EVAL "$@" \
  hydra.sweep.dir=$OUT/evaluate 'hydra.sweep.subdir=${hydra:runtime.choices.experiment}' \
  "dot_checkpoint=$OUT/train/\${hydra:runtime.choices.experiment}/dot"
python -m morse_exp.report $OUT/evaluate --out experiments/$FOLDER
