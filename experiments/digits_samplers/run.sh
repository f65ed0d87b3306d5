#!/usr/bin/env bash
# The paper's five-sampler table (CIFAR-10: DDPM, DDIM, DPM-Solver, SDE, DPM-Solver-SDE),
# reproduced on the embedded default (8x8 digits, the shipped Dash, stride 2).
# One Dot per sampler, then the FID-vs-LSD sweep per sampler, then one summary table.
# Training: two jobs at a time, one thread each (2 CPU cores; more threads per job only
# oversubscribe). Evaluation: one job at a time with both cores, so that its wall-clock
# seconds are not disturbed by a neighbour.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/experiments/digits_samplers}
SAMPLERS=${SAMPLERS:-ddpm,ddim,dpm_solver,sde,dpm_solver_sde}
TRAIN_STEPS=${TRAIN_STEPS:-1500}
OMP_NUM_THREADS=1 python -m morse_exp.train -m scheduler=$SAMPLERS trainer.max_steps=$TRAIN_STEPS \
  hydra/launcher=joblib hydra.launcher.n_jobs=2 \
  hydra.sweep.dir=$OUT/train 'hydra.sweep.subdir=${scheduler.name}'
python -m morse_exp.evaluate -m scheduler=$SAMPLERS \
  hydra.sweep.dir=$OUT/evaluate 'hydra.sweep.subdir=${scheduler.name}' \
  "dot_checkpoint=$OUT/train/\${scheduler.name}/dot"
python -m morse_exp.report $OUT/evaluate --out experiments/digits_samplers
