#!/usr/bin/env bash
# Two single-change ablations of the DDIM row of experiments/digits_samplers (stride 2,
# 1,000 Dot steps, budgets 3-20 LSD, 1,000 samples), run side by side, one thread each:
#   m1:       Dot with one downsampling block (Dash's body on 4x4 instead of 2x2 maps)
#   trailing: DDIM with timestep_spacing=trailing (diffusers' default "leading" spends the
#             last of few steps at t=0)
#   sampled:  Dot trained on jump-point states from Morse's own sampler (module.jump_states)
#   sampled_trailing: both of the last two
#   stride3, stride3_trailing: Dash at every 3rd step (Dot bridges two steps), leading / trailing
# Three waves of two jobs (WAVES="1 2 3"; WAVES=3 runs the third only).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/experiments/digits_ablations}
BUDGETS="[3,4,6,8,10,14,20]"
export OMP_NUM_THREADS=1
ablation() {  # name, overrides... (module.* ones are for training only)
  local name=$1; shift
  python -m morse_exp.train "$@" trainer.max_steps=1000 hydra.run.dir=$OUT/$name/train
  local shared=(); for arg in "$@"; do [[ $arg == module.* ]] || shared+=("$arg"); done
  python -m morse_exp.evaluate "${shared[@]}" "lsd_budgets=$BUDGETS" metric.num_samples=1000 \
    dot_checkpoint=$OUT/$name/train/dot hydra.run.dir=$OUT/$name/evaluate
}
for wave in ${WAVES:-1 2 3}; do
  if [ "$wave" = 1 ]; then
    ablation m1 dot.num_down=1 > $OUT.m1.log 2>&1 &
    ablation trailing +scheduler.timestep_spacing=trailing > $OUT.trailing.log 2>&1 &
  elif [ "$wave" = 2 ]; then
    ablation sampled module.jump_states=sampled > $OUT.sampled.log 2>&1 &
    ablation sampled_trailing module.jump_states=sampled +scheduler.timestep_spacing=trailing \
      > $OUT.sampled_trailing.log 2>&1 &
  else
    ablation stride3 jump_stride=stride3 > $OUT.stride3.log 2>&1 &
    ablation stride3_trailing jump_stride=stride3 +scheduler.timestep_spacing=trailing \
      > $OUT.stride3_trailing.log 2>&1 &
  fi
  wait
done
python -m morse_exp.report $OUT --out experiments/digits_ablations
