#!/usr/bin/env bash
# One timed GPU session of configs/tiny-lift-gpu.toml: the CUDA tests, then two runs side by side
# on one GPU, each sized to a time budget from its measured speed:
#   scratch  the recipe from random weights (lr 1.5e-3, occupancy scale from 1/3 of the steps)
#   init     the same recipe from the bundled model (--init default, lr 6e-4, the scale from step 0)
#
#   bash scripts/gpu_train.sh DATA OUT [BUDGET_S]
#
# DATA: a dataset folder, or a .tar.xz of one (`lrm data slim` + `tar cJf`); OUT: where the logs,
# the CUDA test log and each run's final checkpoint (model.safetensors + config.json) and metrics
# go (five files: logs.tar, NAME.safetensors, NAME-run.tar); BUDGET_S: wall seconds for the whole script (default 480). Each run first trains
# BENCH_STEPS (60) steps to measure its speed, then restarts with --steps N set so that its
# cosine schedule ends inside the budget; `timeout` sends SIGTERM (the trainer then saves and
# stops) if it would not. Env: PY (python3), BATCH (64), WORKERS (6).
set -uo pipefail
data=$1; dest=$2; budget=${3:-480}
out=$(mktemp -d)  # logs; packed into $dest/logs.tar at the end (few files: a device call returns 8)
t0=$(date +%s)
py=${PY:-python3}; bench=${BENCH_STEPS:-60}; batch=${BATCH:-64}; workers=${WORKERS:-6}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 LRM_PROGRESS=0
mkdir -p "$dest"
if [[ $data == *.tar.xz ]]; then
    rm -rf /tmp/lrm-data && mkdir -p /tmp/lrm-data && tar xJf "$data" -C /tmp/lrm-data || exit 1
    data=/tmp/lrm-data/$(ls /tmp/lrm-data | head -1)
fi
echo "data $data: $(ls "$data/objects" | wc -l) objects, ready after $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
$py -c "import torch, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'accelerate', accelerate.__version__)"
if $py -c "import torch; raise SystemExit(not torch.cuda.is_available())"; then
    ($py -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$out/cuda-tests.log" 2>&1; echo "rc=$?" >> "$out/cuda-tests.log") &
fi

# config of run $1 with steps $2, logging every $3, validating every $4 -> /tmp/lrm-$1.toml
config() {
    local name=$1 steps=$2 log=$3 val=$4 lr=1.5e-3 start=$(( $2 / 3 ))
    if [[ $name == init ]]; then lr=6e-4; start=0; fi
    sed -e "s/^steps = .*/steps = $steps/" -e "s/^batch_size = .*/batch_size = $batch/" \
        -e "s/^workers = .*/workers = $workers/" -e "s/^lr = .*/lr = $lr/" \
        -e "s/^warmup = .*/warmup = $(( steps / 20 ))/" -e "s/^occupancy_scale_start = .*/occupancy_scale_start = $start/" \
        -e "s/^val_every = .*/val_every = $val/" \
        -e "s/^checkpoint_every = .*/checkpoint_every = $(( steps / 2 > 0 ? steps / 2 : 1 ))/" \
        -e "s/^log_every = .*/log_every = $log/" configs/tiny-lift-gpu.toml > "/tmp/lrm-$name.toml"
}
train() {  # name steps log val run_dir [timeout_s]
    local name=$1 init=()
    [[ $name == init ]] && init=(--init default)
    config "$name" "$2" "$3" "$4"
    timeout -s TERM "${6:-100000}" $py -m lrm train --config "/tmp/lrm-$name.toml" --data "$data" \
        --run-dir "$5" "${init[@]}" --no-progress
}
rate() {  # samples/s of the last logged window of run dir $1
    $py -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1]+'/metrics.jsonl')]; print([x for x in r if 'samples_per_s' in x][-1]['samples_per_s'])" "$1"
}

log_b=$(( bench / 3 > 0 ? bench / 3 : 1 ))
pids=()
for name in scratch init; do
    rm -rf "/tmp/bench-$name"
    train $name "$bench" "$log_b" "$bench" "/tmp/bench-$name" > "$out/bench-$name.log" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
for name in scratch init; do
    r=$(rate "/tmp/bench-$name") || { echo "bench $name failed:"; tail -20 "$out/bench-$name.log"
                                      tar cf "$dest/logs.tar" -C "$out" .; exit 1; }
    declare "rate_$name=$r"
done
left=$(( budget - ($(date +%s) - t0) - 45 ))
(( left >= 60 )) || left=60  # 45 s: start-up, final validation, saving, copying
echo "measured side by side: scratch $rate_scratch, init $rate_init samples/s; $left s left for training"
for name in scratch init; do
    r=rate_$name
    steps=$($py -c "print(max(50, int(${!r} / $batch * ($left - 25) * 0.9)))")
    echo "$name: $steps steps of $batch"
    rm -rf "runs/gpu-$name"
    train $name "$steps" 50 $(( steps / 4 > 0 ? steps / 4 : 1 )) "runs/gpu-$name" "$left" > "$out/train-$name.log" 2>&1 &
done
wait
for name in scratch init; do
    tail -3 "$out/train-$name.log"
    last=$($py -c "from lrm.run_folder import latest_valid; print(latest_valid('runs/gpu-$name') or '')")
    [[ -n $last ]] || { echo "$name: no checkpoint"; continue; }
    cp "$last/model.safetensors" "$dest/$name.safetensors"
    cp "$last/config.json" "runs/gpu-$name/model-config.json"
    tar cf "$dest/$name-run.tar" -C "runs/gpu-$name" metrics.jsonl train_config.json model-config.json val
    echo "$name: $last"
done
tar cf "$dest/logs.tar" -C "$out" .
echo "total $(( $(date +%s) - t0 )) s"
