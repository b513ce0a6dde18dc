#!/usr/bin/env bash
# The device check, one script for a lent GPU machine (no network; jax with CUDA, flax, optax and
# orbax preinstalled). In under 8 minutes it
#   1. installs ml_collections, tensorflow-datasets and array_record from the wheels carried in
#      $WHEELS (default ./wheels, made on a connected machine with:
#        pip download --only-binary=:all: -d wheels ml_collections tensorflow-datasets array_record
#      ), unless they import already;
#   2. measures the default model's train step in fp32 and bf16 (samples/s; MFU against the
#      device's data-sheet bf16 peak, benchmarks/common.py ACCELERATOR_BF16_PEAK);
#   3. trains and scores one NW-UCLA stream end to end (3 seeds in one run, views 1-2 -> 3),
#      from the NW-UCLA folder $NWUCLA (default ../shared/datasets/nw_ucla).
# JSON goes to $OUT (the device tool's output folder; default benchmarks/results).
#
#   benchmarks/device.sh             # on the device
#   benchmarks/device.sh --dry-run   # on a CPU: the same steps at tiny sizes, to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
WHEELS="${WHEELS:-wheels}"
NWUCLA="${NWUCLA:-../shared/datasets/nw_ucla}"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
mkdir -p "$OUT"
start=$(date +%s)

if ! python -c "import ml_collections, tensorflow_datasets, array_record" 2>/dev/null; then
  python -m pip install -q --no-index --find-links "$WHEELS" ml_collections tensorflow-datasets \
    array_record
fi
python -c "import jax, json; d = jax.devices()[0]; print(json.dumps({'jax': jax.__version__, \
'platform': d.platform, 'device_kind': getattr(d, 'device_kind', str(d)), \
'devices': jax.device_count()}))" | tee "$OUT/device_info.json"

if [ $DRY = 1 ]; then
  batch=(--config=configs/smoke.py --steps=2 --warmup=1)
  nwucla=(--set=num_train_steps=20 --set=num_epochs=0 --num_seeds=2
          --set=eval_every_steps=0)
else
  batch=(--config=configs/default.py --config.batch_size=256 --steps=20 --warmup=3)
  nwucla=(--num_seeds=3)
fi
timeout 240 python benchmarks/train_step.py "${batch[@]}" --dtypes=float32,bfloat16 --skip_eval \
  --out="$OUT/train_step_device.json" > /dev/null
echo "train step: $(( $(date +%s) - start )) s"
timeout 300 python benchmarks/nwucla.py --split=test --settings=base --streams=joint \
  "${nwucla[@]}" --manual_dir="$NWUCLA" --workdir_root=/tmp/nwucla_device_runs \
  --results="$OUT/nwucla_device" --summary_out="$OUT/nwucla_device.json" > /dev/null
echo "NW-UCLA stream: $(( $(date +%s) - start )) s in all; JSON in $OUT"
