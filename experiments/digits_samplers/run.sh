#!/usr/bin/env bash
# The paper's five-sampler table (CIFAR-10: DDPM, DDIM, DPM-Solver, SDE, DPM-Solver-SDE),
# reproduced on the embedded default (8x8 digits, the shipped Dash, Dash at every 2nd step).
# One Dot per sampler, then the FID-vs-LSD sweep per sampler, then one summary table.
# Two jobs at a time, one thread each (2 CPU cores; more threads per job only oversubscribe,
# and one thread per job also keeps each job's Dash/Dot timings on a core of its own).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/experiments/digits_samplers}
SAMPLERS=${SAMPLERS:-ddpm,ddim,dpm_solver,sde,dpm_solver_sde}
TRAIN_STEPS=${TRAIN_STEPS:-1000}
STRIDE=${STRIDE:-stride2}
BUDGETS=${BUDGETS:-[3,4,6,8,10,14,20]}
NUM_SAMPLES=${NUM_SAMPLES:-1000}
OMP_NUM_THREADS=1 python -m morse_exp.train -m scheduler=$SAMPLERS jump_stride=$STRIDE trainer.max_steps=$TRAIN_STEPS \
  hydra/launcher=joblib hydra.launcher.n_jobs=2 \
  hydra.sweep.dir=$OUT/train 'hydra.sweep.subdir=${scheduler.name}'
OMP_NUM_THREADS=1 python -m morse_exp.evaluate -m scheduler=$SAMPLERS jump_stride=$STRIDE "lsd_budgets=$BUDGETS" \
  metric.num_samples=$NUM_SAMPLES hydra/launcher=joblib hydra.launcher.n_jobs=2 \
  hydra.sweep.dir=$OUT/evaluate 'hydra.sweep.subdir=${scheduler.name}' \
  "dot_checkpoint=$OUT/train/\${scheduler.name}/dot"
python -m morse_exp.report $OUT/evaluate --out experiments/digits_samplers
