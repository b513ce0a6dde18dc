#!/usr/bin/env bash
# The GPU check: one command for a lent machine with one GPU and no network, inside 9 minutes.
#
#   benchmarks/device_prepare.sh          # here, once: wheels, NW-UCLA and the twin into .device/
#   benchmarks/device.sh                  # there (the device tool: carry .device)
#   benchmarks/device.sh --dry-run        # here, on a CPU: the same steps at tiny sizes
#
# 1. Installs what that machine lacks (ml_collections, tensorflow-datasets, array_record and
#    their pure-Python needs) from the wheels in $CARRY/wheels into /tmp/site, unless importable.
# 2. Unpacks NW-UCLA ($CARRY/nw_ucla.tar.xz) to /tmp.
# 3. Times the default model's train step in fp32 and bf16 (samples/s, MFU against the device's
#    data-sheet bf16 peak) and the PyTorch twin on the same GPU (fp32 eager, bf16 autocast, bf16
#    with torch.compile): $OUT/train_step_device.json.
# 4. Runs the NW-UCLA queue (benchmarks/device_queue.py: view-3 streams, training length, claims
#    seeds 3-7, ...) as parallel processes until the deadline; after every job the finished runs
#    are packed into $OUT/nwucla_results.tar.gz and the state into $OUT/device_queue.json.
# $OUT is the device tool's output folder (default benchmarks/results/device); at most 8 files
# come back: device_info.json, train_step_device.json, nwucla_results.tar.gz, device_queue.json,
# device.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/device}"
CARRY="${CARRY:-.device}"
BUDGET_S="${BUDGET_S:-530}"            # one command of the device tool: 9 minutes, with a margin
PARALLEL="${PARALLEL:-4}"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
start=$(date +%s)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device.log") 2>&1
elapsed() { echo $(( $(date +%s) - start )); }

if ! python3 -c "import ml_collections, tensorflow_datasets, array_record" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$CARRY"/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
NWUCLA=../shared/datasets/nw_ucla
if [ -f "$CARRY/nw_ucla.tar.xz" ]; then
  mkdir -p /tmp/nwucla_data && tar -xJf "$CARRY/nw_ucla.tar.xz" -C /tmp/nwucla_data
  NWUCLA=/tmp/nwucla_data/nw_ucla
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # several runs share the GPU
python3 -c "import jax, json, sys; d = jax.devices()[0]; print(json.dumps({'jax': jax.__version__, \
'python': sys.version.split()[0], 'platform': d.platform, 'device_kind': d.device_kind, \
'devices': jax.device_count()}))" | tee "$OUT/device_info.json"
echo "setup: $(elapsed) s"

if [ $DRY = 1 ]; then
  step=(--config=configs/smoke.py --steps=2 --warmup=1 --torch_steps=2)
  twin=(--twin_device=cpu)
  queue=(--dry_run --max_jobs=3 --parallel=2)
else
  step=(--config=configs/default.py --config.batch_size=256 --steps=20 --warmup=3)
  twin=(--twin_device=cuda --twin_compile)
  queue=(--parallel="$PARALLEL")
fi
twin_script="$CARRY/torch_twin.py"
[ -f "$twin_script" ] || twin_script=../shared/benchmarks/torch_twin.py
vs=()
python3 -c "import torch" 2>/dev/null && vs=(--vs-torch --torch_twin="$twin_script" "${twin[@]}")
timeout 200 python3 benchmarks/train_step.py "${step[@]}" --dtypes=float32,bfloat16 --skip_eval \
  "${vs[@]}" --out="$OUT/train_step_device.json" > /dev/null \
  || echo "train step benchmark failed or timed out"
echo "train step: $(elapsed) s"

python3 benchmarks/device_queue.py "${queue[@]}" --out="$OUT" --manual_dir="$NWUCLA" \
  --results=/tmp/nwucla_device_results --workdir_root=/tmp/nwucla_device_runs \
  --deadline_s=$(( BUDGET_S - $(elapsed) ))
echo "done in $(elapsed) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
