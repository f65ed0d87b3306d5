#!/usr/bin/env bash
# The embedded 32 px task (dataset=emoji32, architecture=unet_emoji32): pretrain its Dash,
# export a Dash (safetensors + sample grid) from any checkpoint, ship it and the FID
# extractor in the package, measure N per Dot config and the baseline's FID curve.
# Run from the repository root, one thread per process (2-core machines):
#   bash experiments/emoji32/run.sh pretrain          # resumable: run it again to continue;
#                                                     # STEPS=<total> ANNEAL=<last steps to decay>;
#                                                     # ARCH=unet_emoji32_small: stitch's small Dash
#   bash experiments/emoji32/run.sh export            # Dash + samples.png at the last checkpoint
#   bash experiments/emoji32/run.sh ship              # copy it to assets/dash_emoji32[_small]
#   bash experiments/emoji32/run.sh extractor         # fit (resumable) and ship emoji32_autoencoder
#   bash experiments/emoji32/run.sh fid_curve         # baseline FID, 2-50 LSD, on the shipped Dash
#   bash experiments/emoji32/run.sh dot               # a slim Dot for stride 4 (resumable); SAMPLER=ddim,
#                                                     # DOT=default: conf/dot/default.yaml instead;
#                                                     # STRETCHES=cached: Dash's stretches cached once,
#                                                     # STEPPING=own: stepped with the Dot it starts from;
#                                                     # INIT_FROM=<Dot dir>: start there, not at the shipped one
#   bash experiments/emoji32/run.sh round             # one round of the shipped Dots' recipe (stride 3, own-stepped
#                                                     # cache, relative loss) from INIT_FROM; BASE=x0 (stochastic)
#   bash experiments/emoji32/run.sh samplers SEED     # the five-sampler table with each sampler's shipped Dot
#   bash experiments/emoji32/run.sh ship_dot [RUN]    # copy it (or RUN's Dot) to assets/dot_emoji32_$SAMPLER[_$DOT]
#   bash experiments/emoji32/run.sh main SEED         # experiment=emoji32_main (the reduced sweep) with the
#                                                     # Dot of `dot` (else the shipped one), seed set SEED
#   bash experiments/emoji32/run.sh sweep PATTERN SEED   # baseline/reuse/Morse/oracle at BUDGETS, e.g. stride3 1
#   bash experiments/emoji32/run.sh ablation SEED     # the reduced sweep per jump pattern (PATTERNS): Morse
#                                                     # where the Dot covers its gaps, reuse and oracle always
#   bash experiments/emoji32/run.sh bench DASH_DIR    # N of the default, slim and wide Dots
# Without outputs/pretrain/emoji32/checkpoints (a new machine), `pretrain` continues from the
# shipped Dash's weights (init_from; fresh optimiser) rather than from scratch.
set -euo pipefail
ARCH=${ARCH:-unet_emoji32}  # the Dash that pretrain/export/ship make: conf/architecture/$ARCH.yaml
OUT=outputs/pretrain/${ARCH#unet_}
ASSETS=src/morse_exp/assets
DASH_ASSET=$ASSETS/dash_${ARCH#unet_}
RUNS=outputs/experiments/emoji32
SAMPLER=${SAMPLER:-ddim}
# DDIM with consistent clipping: eps re-derived from the clipped x0. On this data (half of the
# pixels pure white) diffusers' default DDIM drifts darker and greyer with more steps and its
# FID rises from 20 to 50 steps (RESULTS.md, "Why DDIM's FID rose").
SAMPLER_OPTIONS=(); [ "$SAMPLER" = ddim ] && SAMPLER_OPTIONS=(scheduler.use_clipped_model_output=true)
DOT=${DOT:-slim}  # the Dot that dot/ship_dot/sweep train and use: conf/dot/$DOT.yaml
STRETCHES=${STRETCHES:-live}  # conf/stretches/$STRETCHES.yaml: live rollouts, or Dash's stretches cached once
STEPPING=${STEPPING:-reuse}  # stretches=cached: what the cache steps on with between Dot steps (reuse|own|teacher)
TAG=$SAMPLER; [ "$DOT" != slim ] && TAG=${SAMPLER}_$DOT  # a Dot other than the model's slim one keeps its own run and asset
DOT_ASSET=$ASSETS/dot_emoji32_$TAG
RUN_TAG=$TAG STRETCH_OPTIONS=()  # its own run directory per way of training, the same asset
if [ "$STRETCHES" != live ]; then
  RUN_TAG=${TAG}_$STRETCHES STRETCH_OPTIONS=(stretches.stepping=$STEPPING)
  [ "$STEPPING" != reuse ] && RUN_TAG=${RUN_TAG}_$STEPPING
fi
STEPS=${STEPS:-20000}
# bf16 autocast where the CPU computes bf16 natively (avx512_bf16 or AMX): a training step of
# this UNet (batch 64, one thread) takes 1.6 s instead of 2.9 s in fp32 there
# (benchmarks/pretrain_precision.py); weights, optimiser and EMA stay fp32. Without it bf16 is
# emulated and ~20x slower than fp32 (55 s per step measured), so fp32 is the default there.
if [ -z "${PRECISION:-}" ]; then
  PRECISION=$(python -c "from morse_exp.cli import cpu_has_native_bf16; print('bf16-mixed' if cpu_has_native_bf16() else '32-true')")
fi
export OMP_NUM_THREADS=${THREADS:-1}  # THREADS=2 when nothing else runs
# the last checkpoint's "<global step> <steps of the Dash it continued from (init_from)>"
last_ckpt() { python -c "import torch; c = torch.load('$OUT/checkpoints/last.ckpt', map_location='cpu', weights_only=True); print(c['global_step'], int(c['state_dict'].get('init_steps', 0)))"; }
steps_in() { python -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" "$1"; }  # a provenance or dot.json
# main and ablation: the Dot they score (the run of `dot` where it finished, else the shipped one),
# and the points of the shipped Dot's run of seed set $1, $RUNS/main_seed$1, to copy where one exists
# (evaluate's hashes decide which: the baseline; reuse and the oracle at the same pattern and N)
scored_dot() { if [ -f $RUNS/train_$RUN_TAG/dot/dot.json ]; then echo $RUNS/train_$RUN_TAG/dot; else echo $DOT_ASSET; fi; }
shared_points() { if [ -f $RUNS/main_seed$1/results.jsonl ]; then echo "copy_points_from=[$RUNS/main_seed$1]"; fi; }
PRETRAIN=(python -m morse_exp.pretrain dataset=emoji32 architecture=$ARCH trainer.precision=$PRECISION)
case "${1:-pretrain}" in
  pretrain)
    # STEPS counts from scratch; a run continued from a shipped Dash trains STEPS minus its steps.
    # ANNEAL: decay the rate to 0 over the last ANNEAL steps of this run (0: constant).
    resume=()
    if [ -f $OUT/checkpoints/last.ckpt ]; then
      read -r _ before <<< "$(last_ckpt)"
      resume=(ckpt_path=last) STEPS=$((STEPS - before))
    elif [ -f $DASH_ASSET/config.json ]; then
      resume=(init_from=$DASH_ASSET) STEPS=$((STEPS - $(steps_in $DASH_ASSET/provenance.json)))
    fi
    "${PRETRAIN[@]}" trainer.max_steps=$STEPS pretraining.anneal_steps=${ANNEAL:-0} hydra.run.dir=$OUT "${resume[@]}" ;;
  export)
    # A copy of the last checkpoint, "trained" up to its own step: fit stops at once and the
    # EMA Dash and its DDIM-50 grid are written under $OUT/export_<step>/ (training goes on).
    read -r step _ <<< "$(last_ckpt)"
    mkdir -p $OUT/export_$step/checkpoints && cp $OUT/checkpoints/last.ckpt $OUT/export_$step/checkpoints/
    "${PRETRAIN[@]}" trainer.max_steps=$step logger=none hydra.run.dir=$OUT/export_$step ckpt_path=last ;;
  ship)
    # the finished run's Dash, or (a run still going) an export of its last checkpoint; the
    # provenance's history lists every run that trained it
    from=$OUT
    read -r step before <<< "$(last_ckpt)"
    if [ ! -f $OUT/dash/provenance.json ] || [ "$(steps_in $OUT/dash/provenance.json)" -lt $((step + before)) ]; then
      bash "$0" export
      from=$OUT/export_$step
    fi
    rm -rf $DASH_ASSET && cp -r $from/dash $DASH_ASSET && cp $from/samples.png $DASH_ASSET/samples.png
    echo "shipped the EMA Dash at step $(steps_in $DASH_ASSET/provenance.json): $DASH_ASSET" ;;
  extractor)
    python -m morse_exp.fit_extractor dataset=emoji32 kind=autoencoder name=emoji32_autoencoder \
      hydra.run.dir=outputs/fit_extractor/emoji32
    rm -rf $ASSETS/extractors/emoji32_autoencoder
    cp -r outputs/extractors/emoji32_autoencoder $ASSETS/extractors/emoji32_autoencoder ;;
  fid_curve)
    # every-step SAMPLER (DDIM) on the shipped Dash, held-out seed set 1; NUM_SAMPLES (default 2000)
    python -m morse_exp.evaluate model=unet_emoji32 scheduler=$SAMPLER "${SAMPLER_OPTIONS[@]}" methods=[baseline] "lsd_budgets=${BUDGETS:-[2,3,5,10,20,35,50]}" \
      baseline_reach=1 fidelity.enabled=false metric.num_samples=${NUM_SAMPLES:-2000} seed=1 grid_budgets=[5,50] \
      hydra.run.dir=$RUNS/fid_curve_$SAMPLER ;;
  dot)
    # Dot for stride 4 (gaps 1..3) on the shipped Dash, bf16 autocast where native, DOT_STEPS in
    # all (3,000: 2-3 h on a free AVX-512 core, 4.1 s per step beside two other jobs); rerun to
    # resume. On a machine without its checkpoints it continues from the shipped Dot of this
    # sampler (init_from, fresh optimiser) for the remaining steps; ship_dot ships it and moves
    # its run directory aside, so that the next `dot` continues from the shipped Dot.
    # INIT_FROM=<a Dot dir>: start from that Dot instead (another sampler's, or the last run's
    # for a cache refreshed with STEPPING=own; DOT_STEPS counts its steps too).
    steps=${DOT_STEPS:-3000} resume=() from=${INIT_FROM:-}
    [ -z "$from" ] && [ -f $DOT_ASSET/dot.json ] && from=$DOT_ASSET
    if [ -n "$from" ]; then
      resume=(init_from=$from)
      steps=$((steps - $(steps_in $from/dot.json)))
    fi
    [ -f $RUNS/train_$RUN_TAG/checkpoints/last.ckpt ] && resume+=(ckpt_path=last)
    python -m morse_exp.train model=unet_emoji32 scheduler=$SAMPLER "${SAMPLER_OPTIONS[@]}" dot=$DOT jump_stride=stride4 \
      stretches=$STRETCHES "${STRETCH_OPTIONS[@]}" trainer.max_steps=$steps trainer.val_check_interval=${VAL_EVERY:-250} trainer.precision=$PRECISION hydra.run.dir=$RUNS/train_$RUN_TAG "${resume[@]}" ;;
  round)
    # One round of the recipe that made the shipped Dots (RESULTS.md): from INIT_FROM (default:
    # this sampler's shipped Dot; another sampler's Dot for a first one), Dash's stretches cached
    # once and stepped with that Dot's own estimates, a loss relative to reuse's, ROUND_STEPS
    # (5,000) steps for stride 3's gaps; BASE=x0 for the stochastic samplers (ddpm, sde,
    # dpm_solver_sde). Resumable: run it again. ~55 min on one AVX-512 core (cache 9-13 min).
    dir=$RUNS/round_${TAG}_${BASE:-eps} resume=()
    [ -f $dir/checkpoints/last.ckpt ] && resume=(ckpt_path=last)
    python -m morse_exp.train model=unet_emoji32 scheduler=$SAMPLER "${SAMPLER_OPTIONS[@]}" dot=$DOT dot.base=${BASE:-eps} \
      jump_stride=stride3 stretches=cached stretches.stepping=own module.loss=relative trainer.max_steps=${ROUND_STEPS:-5000} \
      trainer.val_check_interval=1000 trainer.precision=$PRECISION init_from=${INIT_FROM:-$DOT_ASSET} \
      hydra.run.dir=$dir "${resume[@]}" ;;
  samplers)
    # The five-sampler table: each sampler's shipped Dot (on the base it was trained with) at
    # stride 3 against every-step, reuse and the oracle Dot; emoji32_main's budgets and samples
    # (BUDGETS, NUM_SAMPLES, REACH, EXTRA), seed set $2; one summary over the samplers. sde is
    # read where its every-step baseline converges (RESULTS.md, "sde where its baseline
    # converges"): SDE_BUDGETS (24 LSD), the baseline to SDE_REACH (3) x that, i.e. 60 steps.
    for sampler in ${SAMPLERS:-ddim dpm_solver ddpm sde dpm_solver_sde}; do
      budgets=${BUDGETS:-[6,12]} reach=${REACH:-2}
      [ "$sampler" = sde ] && budgets=${SDE_BUDGETS:-[24]} reach=${SDE_REACH:-3}
      dot=$ASSETS/dot_emoji32_$sampler
      [ -f $dot/dot.json ] || { echo "no shipped Dot for $sampler ($dot): make one with run.sh round" >&2; continue; }
      base=$(python -c "import json, sys; print(json.load(open(sys.argv[1])).get('dot_base', 'eps'))" $dot/dot.json)
      options=(); [ "$sampler" = ddim ] && options=(scheduler.use_clipped_model_output=true)
      python -m morse_exp.evaluate model=unet_emoji32 scheduler=$sampler "${options[@]}" dot=$DOT dot.base=$base \
        jump_stride=stride3 dot_checkpoint=$dot "lsd_budgets=$budgets" metric.num_samples=${NUM_SAMPLES:-500} \
        seed=$2 baseline_reach=$reach ${EXTRA:-} hydra.run.dir=$RUNS/samplers_seed$2/$sampler
    done
    python -m morse_exp.report $RUNS/samplers_seed$2 --out $RUNS/samplers_seed$2 ;;
  ship_dot)
    # the last Dot `dot` saved (at the end of its run), or that of run directory $2 (e.g. a
    # round's), into the package; the run moves aside so that the next run starts from it
    run=${2:-$RUNS/train_$RUN_TAG}
    steps=$(steps_in $run/dot/dot.json)
    rm -rf $DOT_ASSET && cp -r $run/dot $DOT_ASSET
    mv $run ${run}_$steps
    echo "shipped the $TAG Dot ($steps steps): $DOT_ASSET; its run is now ${run}_$steps" ;;
  main)
    # The reduced sweep of the README's 32 px table for a new Dot; the points that do not depend
    # on the Dot's weights are copied (shared_points).
    dot=$(scored_dot) shared=($(shared_points $2))
    dir=$RUNS/main_${RUN_TAG}_$(steps_in $dot/dot.json)_seed$2
    python -m morse_exp.evaluate experiment=emoji32_main dot=$DOT dot_checkpoint=$dot seed=$2 "${shared[@]}" hydra.run.dir=$dir ;;
  sweep)
    # run.sh sweep stride3 0: every method at BUDGETS on seed set $3 (0: choose settings, 1: report),
    # NUM_SAMPLES (1,000), the baseline to REACH (2) x the largest budget, with the Dot `main`
    # scores and the points of main_seed$3 copied where they match; fp32, so N is the paper's
    # latency ratio at batch 500. EXTRA: more overrides (fidelity.enabled=false: no PSNR, whose
    # every-step reference costs ~2 Dash calls per LSD at stride 3)
    dot=$(scored_dot) shared=($(shared_points $3))
    python -m morse_exp.evaluate model=unet_emoji32 scheduler=$SAMPLER "${SAMPLER_OPTIONS[@]}" dot=$DOT jump_stride=$2 \
      dot_checkpoint=$dot "lsd_budgets=${BUDGETS:-[4,6,8,12,16]}" \
      metric.num_samples=${NUM_SAMPLES:-1000} seed=$3 baseline_reach=${REACH:-2} "${shared[@]}" ${EXTRA:-} \
      hydra.run.dir=$RUNS/sweep_$RUN_TAG/$2_seed$3 ;;
  ablation)
    # emoji32_main's budgets and samples per pattern, with the Dot `main` scores (shared_points
    # copied); the paper's k = B/2 (dot_share) has gaps of ~N, wider than the stride-4 Dot was
    # trained for, so it gets reuse and the oracle Dot (its ceiling) only
    dot=$(scored_dot) shared=($(shared_points $2))
    for pattern in ${PATTERNS:-stride2 stride3 stride4 dot_share}; do
      methods=(); [ "$pattern" = dot_share ] && methods=(methods=[baseline,reuse,oracle])
      python -m morse_exp.evaluate experiment=emoji32_main dot=$DOT dot_checkpoint=$dot jump_stride=$pattern seed=$2 \
        "${methods[@]}" "${shared[@]}" hydra.run.dir=$RUNS/ablation_seed$2/$pattern
    done
    python -m morse_exp.report $RUNS/ablation_seed$2 --out $RUNS/ablation_seed$2 ;;
  bench)
    for dot in default slim wide; do
      python -m morse_exp.bench model.pretrained="$2" dataset=emoji32 dot=$dot "batch_sizes=[1,64,128,256]" \
        overhead_batch_size=64 output_file=experiments/emoji32/bench/bench_$dot.json hydra.run.dir=outputs/bench/emoji32_$dot
    done ;;
  *) echo "usage: $0 pretrain|export|ship|extractor|fid_curve|dot|round|samplers SEED|ship_dot [RUN]|main SEED|sweep PATTERN SEED|ablation SEED|bench DASH_DIR" >&2; exit 2 ;;
esac
