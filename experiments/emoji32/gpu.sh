#!/usr/bin/env bash
# One device call for the 32 px task, prepared for a session that is lent a GPU: continue the
# emoji32 Dash's pretraining from the CPU checkpoint on the GPU (bf16-mixed, for MINUTES of
# wall clock), export its EMA Dash and sample grid, measure N in bf16 at batch 1/64/128/256
# for each Dot config, and fit the FID extractor on the GPU. What comes back (at most 8 files
# of 16 MiB): emoji32_gpu.tar (grid, N, extractor, logs) and the checkpoint in 15 MiB parts,
# from which the Dash is exported here and CPU pretraining can go on.
#
# Here, first:  bash benchmarks/gpu_wheels.sh
# Device tool:  carry [".gpu_wheels", "outputs/pretrain/emoji32/checkpoints/last.ckpt"],
#               command "bash experiments/emoji32/gpu.sh", timeout_s 600
# Back here:    cat <files_at>/last.ckpt.part* > outputs/pretrain/emoji32/checkpoints/last.ckpt
#               tar xf <files_at>/emoji32_gpu.tar -C outputs/pretrain/emoji32   (gpu/...)
#               bash experiments/emoji32/run.sh export
# CPU dry run of the script (minutes): DEVICE=cpu TRAINER=cpu PRECISION=32 MINUTES=1 \
#   EXTRACTOR_STEPS=2 BATCHES=[1,2] OUT=/tmp/gpu_out WHEELS=no RUN=/tmp/dry/emoji32 bash experiments/emoji32/gpu.sh
#   (RUN: a copy of outputs/pretrain/emoji32 with its checkpoints/last.ckpt, not the live run)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-cuda}
TRAINER=${TRAINER:-gpu}
PRECISION=${PRECISION:-bf16}
MINUTES=${MINUTES:-5}
EXTRACTOR_STEPS=${EXTRACTOR_STEPS:-3000}
BATCHES=${BATCHES:-[1,64,128,256]}
RUN=${RUN:-outputs/pretrain/emoji32}
GPU=$RUN/gpu
mkdir -p "$OUT" $GPU
if [ "${WHEELS:-yes}" = yes ]; then
  python3 -m pip install -q --no-index --no-deps .gpu_wheels/*.whl
  python3 -m pip install -q --no-deps -e .
fi
[ -f $RUN/checkpoints/last.ckpt ] || { echo "no $RUN/checkpoints/last.ckpt: carry it" >&2; exit 2; }
start=$(date +%s)
python3 -m morse_exp.pretrain dataset=emoji32 architecture=unet_emoji32 trainer=$TRAINER trainer.max_steps=100000 \
  "+trainer.max_time=00:00:$(printf %02d "$MINUTES"):00" ckpt_path=last save_dir=$GPU/dash \
  hydra.run.dir=$RUN 2>&1 | tail -n 40 > $GPU/pretrain.log
echo "pretraining on $DEVICE: $(( $(date +%s) - start )) s" >> $GPU/pretrain.log
for dot in default slim wide; do
  python3 -m morse_exp.bench model.pretrained=$GPU/dash dataset=emoji32 dot=$dot device=$DEVICE precision=$PRECISION \
    "batch_sizes=$BATCHES" overhead_batch_size=64 overhead_steps=10 output_file=$GPU/bench_$dot.json \
    hydra.run.dir=$GPU/bench_$dot > $GPU/bench_$dot.log 2>&1
done
start=$(date +%s)
python3 -m morse_exp.fit_extractor dataset=emoji32 kind=autoencoder name=emoji32_autoencoder device=$DEVICE \
  steps=$EXTRACTOR_STEPS save_dir=$GPU/extractors hydra.run.dir=$GPU/fit_extractor > $GPU/fit_extractor.log 2>&1
echo "fit_extractor on $DEVICE: $(( $(date +%s) - start )) s" >> $GPU/fit_extractor.log
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $GPU/device.txt 2>&1 || echo "no nvidia-smi" > $GPU/device.txt
# the Dash itself is re-exported here from the checkpoint (run.sh export): 44 MiB of checkpoint
# parts + this tar stay under the 64 MiB the tool brings back
tar cf "$OUT/emoji32_gpu.tar" --exclude='*.ckpt' --exclude='.hydra' --exclude=dash --exclude=fit_state.pt -C $RUN gpu
split -b 15M $RUN/checkpoints/last.ckpt "$OUT/last.ckpt.part"
ls -la "$OUT"
