#!/usr/bin/env bash
# Issue 13 on the 32 px task (model=unet_emoji32): Morse beside the training-free rivals
# DeepCache and T-Stitch at equal cost, and Morse on a searched Dash/Dot schedule. Each method
# gets the setting it does best with on calibration seed set 0 (choose), then every method runs
# at its chosen setting on held-out seed set 1 (report): lossless speedup over every-step Dash
# in LSD (each method costed by its own measured N) and in seconds, 95 % bootstrap intervals.
# Run from anywhere, one thread per process (2-core machines: THREADS=2 when nothing else runs):
#   bash experiments/rivals_emoji32/run.sh choose   # seed 0: every setting -> $OUT/seed0/summary.md
#   bash experiments/rivals_emoji32/run.sh search   # Morse's schedule per budget, calibration seed 100,
#                                                   # for the speedup the report reads (SEARCH_EXTRA: more
#                                                   # search overrides, e.g. num_samples=256 max_rounds=2)
#   bash experiments/rivals_emoji32/run.sh report   # seed 1: each method at its best seed-0 setting
#   bash experiments/rivals_emoji32/run.sh seconds  # seed 1: Morse, reuse, DeepCache and stitch at their
#                                                   # chosen settings in ONE run with its own baseline, so
#                                                   # that speedups in seconds are timed in one run
#                                                   # (report's runs share a copied baseline: LSD only)
# SAMPLER=ddim (consistent clipping; default) or a stochastic one with its own shipped Dot;
# BUDGETS, NUM_SAMPLES, REACH (the baseline to REACH x the largest budget), EXTRA (more overrides
# for every evaluate run), REPORT (where report writes the table: experiments/rivals_emoji32/
# $SAMPLER); the settings tried: STRIDES, DEEPCACHE, FRACTIONS, STACKED (below); DOT (a Dot
# directory; default: the shipped one, src/morse_exp/assets/dot_emoji32_$SAMPLER, made by
# experiments/emoji32/run.sh dot, then ship_dot): keep one Dot for choose, search and report.
# Needs stitch's small Dash (assets/dash_emoji32_small: ARCH=unet_emoji32_small
# experiments/emoji32/run.sh pretrain, then ship). The runs of a seed share one every-step
# baseline (its points are copied into each run; evaluate reruns none of them).
set -euo pipefail
cd "$(dirname "$0")/../.."
SAMPLER=${SAMPLER:-ddim}
OUT=${OUT:-outputs/experiments/rivals_emoji32/$SAMPLER}
ASSETS=src/morse_exp/assets
DOT=${DOT:-$ASSETS/dot_emoji32_$SAMPLER}
SAMPLER_OPTIONS=(); [ "$SAMPLER" = ddim ] && SAMPLER_OPTIONS=(scheduler.use_clipped_model_output=true)
# the base the Dot was trained on (x0 for the stochastic samplers' Dots; Morse + DeepCache needs eps)
BASE=$(python -c "import json, sys; print(json.load(open(sys.argv[1])).get('dot_base', 'eps'))" $DOT/dot.json)
SAMPLER_OPTIONS+=(dot.base=$BASE)
BUDGETS=${BUDGETS:-[4,6,8,12,16]}
export OMP_NUM_THREADS=${THREADS:-1}
EVALUATE=(python -m morse_exp.evaluate model=unet_emoji32 scheduler=$SAMPLER "${SAMPLER_OPTIONS[@]}"
  dot_checkpoint=$DOT stitch.small.pretrained=$ASSETS/dash_emoji32_small
  "lsd_budgets=$BUDGETS" metric.num_samples=${NUM_SAMPLES:-1000} baseline_reach=${REACH:-2} ${EXTRA:-})

# The settings each method chooses from (run name -> overrides); Morse's runs also measure
# reuse and the oracle Dot (the pattern's ceiling) on the same pattern.
declare -A SETTINGS
for stride in ${STRIDES:-stride2 stride3 stride4}; do  # the Dot covers gaps <= 3
  SETTINGS[morse_$stride]="jump_stride=$stride"
done
for s in ${DEEPCACHE:-1:2 1:3 1:4 2:2 2:3}; do  # depth:interval
  SETTINGS[deepcache_${s/:/_}]="methods=[baseline,deepcache] deepcache.depth=${s%:*} deepcache.interval=${s#*:}"
done
for f in ${FRACTIONS:-0.2 0.4 0.6}; do  # share of the steps on the small Dash
  SETTINGS[stitch_$f]="methods=[baseline,stitch] stitch.fraction=$f"
done
STACKED=${STACKED:-1:2 2:2}; [ "$BASE" = eps ] || STACKED=""  # DeepCache's stack carries noise estimates only
for s in $STACKED; do  # Morse with DeepCache at some Dash steps, depth:interval
  SETTINGS[morse_deepcache_${s/:/_}]="methods=[baseline,morse_deepcache] morse_deepcache.depth=${s%:*} morse_deepcache.interval=${s#*:}"
done

point() {  # seed, run name, overrides...: one evaluate run in $OUT/seed<seed>/<name>
  local seed=$1 dir=$OUT/seed$1/$2 shared=$OUT/seed$1/baseline; shift 2
  local copied=(); [ "$dir" = "$shared" ] || copied=(copy_points_from=[$shared])
  "${EVALUATE[@]}" seed=$seed "$@" "${copied[@]}" hydra.run.dir=$dir
}

runs() { ls -d $OUT/seed$1/*/ | grep -v '/baseline/$'; }  # the rows of a seed's table

# names: per method, its run with the largest average LSD speedup on seed 0 (choose's summary)
chosen() {
  names=$(python - $OUT/seed0/summary.csv <<'PY'
import csv, sys
best, unread = {}, set()
for row in csv.DictReader(open(sys.argv[1])):
    if not row["lsd_average"]:  # every budget a bound: no exact speedup to choose by
        unread.add(row["method"])
    elif float(row["lsd_average"]) > best.get(row["method"], ("", float("-inf")))[1]:
        best[row["method"]] = (row["run"].rstrip("/").split("/")[-1], float(row["lsd_average"]))
for method in sorted(unread - set(best)):
    print(f"{method}: no run with an exact speedup on seed 0 (widen REACH or BUDGETS); left out", file=sys.stderr)
print("\n".join(name for name, _ in best.values()))
PY
  )
  [ -n "$names" ] || { echo "$OUT/seed0/summary.csv: no run has an exact speedup to choose by" >&2; exit 1; }
}

case "${1:-}" in
  choose)
    point 0 baseline methods=[baseline]
    for name in $(printf '%s\n' "${!SETTINGS[@]}" | sort); do point 0 $name ${SETTINGS[$name]}; done
    python -m morse_exp.report $(runs 0) --out $OUT/seed0 ;;
  search)
    python -m morse_exp.search model=unet_emoji32 scheduler=$SAMPLER "${SAMPLER_OPTIONS[@]}" \
      dot_checkpoint=$DOT "lsd_budgets=$BUDGETS" seed=100 objective=speedup baseline_reach=${REACH:-2} \
      ${SEARCH_EXTRA:-} hydra.run.dir=$OUT/search ;;
  report)
    point 1 baseline methods=[baseline]
    chosen
    for name in $names; do point 1 $name ${SETTINGS[$name]}; done
    if [ -f $OUT/search/schedules.yaml ]; then
      point 1 morse_searched jump_stride=searched jump_stride.path=$OUT/search/schedules.yaml
    fi
    python -m morse_exp.report $(runs 1) --out ${REPORT:-experiments/rivals_emoji32/$SAMPLER} ;;
  seconds)
    # the chosen settings of Morse (its pattern), DeepCache and stitch merged into one run; Morse +
    # DeepCache (a pattern of its own) and the searched schedule stay in report's runs
    overrides=() methods=(baseline)
    chosen
    for name in $names; do
      case $name in morse_deepcache_*) continue ;; morse_*) methods+=(reuse morse) ;; *) methods+=(${name%%_*}) ;; esac
      for item in ${SETTINGS[$name]}; do [[ $item == methods=* ]] || overrides+=($item); done
    done
    "${EVALUATE[@]}" seed=1 "methods=[$(IFS=,; echo "${methods[*]}")]" "${overrides[@]}" \
      hydra.run.dir=$OUT/seconds_seed1 ;;
  *) echo "usage: $0 choose|search|report|seconds" >&2; exit 2 ;;
esac
