#!/usr/bin/env bash
# Everything a lent GPU should run, as one command with its own time budget, into one folder ($OUT).
#
#   tools/gpu_run.sh              on the GPU machine (the device tool's run sets OUT; see README "On a lent GPU")
#   tools/gpu_run.sh --rehearse   on the CPU: the same stages on tiny sizes, so that on the GPU only the device differs
#
# Stages, each under `timeout` (a stage that fails or runs out of time is recorded and the next one runs):
#   env      nvidia-smi, python, torch, CUDA, the packages
#   install  the wheels in $WHEELS (make gpu-pack fetches them) into a temporary folder put first on PYTHONPATH;
#            passes when framefill's dependencies import
#   tests    pytest -m "cuda or device" --device $DEVICE: the CUDA tests and the model and scheduler tests on it
#   bench    framefill bench, eager, one run per preset of $PRESETS: $SIZES x $DTYPES x batch $BATCHES (the best
#            batch is in the report)
#   compile  framefill bench --compile on $COMPILE_PRESETS at $COMPILE_SIZE: eager and torch.compile side by side,
#            and its end-to-end rows (decode, model and encode shares)
#   e2e      framefill interp --factor 2 on real footage at $E2E_SIZES (WxH:MEMORY adds --max-memory MEMORY;
#            tools/gpu_stages.py e2e)
#   profile  tools/profile_model.py: kernels by kind, the top kernels, launches per call, time per part of the model
#   train    framefill train --finetune weights/film.safetensors on $DATA (make gpu-pack) for $TRAIN_MIN
#            minutes (resuming from .gpu/resume/last.pt where a earlier chunk left one); its checkpoint is
#            exported by tools/export_checkpoint.py
# Out ($OUT, at most 8 files come back from the GPU machine): summary.txt (each stage's result and the figures),
# bench_PRESET.json (one per preset), compile.json, logs.tgz (every stage's log, env, e2e.json, profile.json, the run's config and
# log.jsonl), last.pt (the training checkpoint) and film_gpu.safetensors (its EMA weights).
#
# Settings (environment): BUDGET_S (whole run, seconds: 540 on the GPU, 300 rehearsing), TRAIN_MIN, DEVICE, WHEELS,
# DATA, TEST_ARGS (rehearsal: -k and a few test names), the stage lists above; PYTHON (python3).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
REHEARSE=${REHEARSE:-0}
[ "${1:-}" = "--rehearse" ] && REHEARSE=1
if [ "$REHEARSE" = 1 ]; then
    : "${DEVICE:=cpu}" "${BUDGET_S:=300}" "${TRAIN_MIN:=0.1}" "${TRAIN_ARGS:=--batch 2 --crop 64 --steps 20 --max-frames 12}"
    : "${TEST_ARGS:=-k film_output_shape or warp_sign or factor_values or interpolate_pair}"
    : "${PRESETS:=film-tiny}" "${SIZES:=64x48,96x64}" "${DTYPES:=fp32,bf16}" "${BATCHES:=1,2}"
    : "${BENCH_ARGS:=--repeat 1 --warmup 0}" "${COMPILE_ARGS:=--repeat 1 --warmup 0 --e2e --e2e-frames 4}"
    : "${COMPILE_PRESETS:=film-tiny}" "${COMPILE_SIZE:=64x48}"
    : "${COMPILE_DTYPE:=fp32}" "${E2E_SIZES:=96x64 128x72:16M}" "${E2E_SECONDS:=0.25}" "${E2E_BATCH:=2}"
    : "${PROFILE_ARGS:=--preset film-tiny --size 64x48 --precision fp32 --repeat 1 --warmup 1}"
    export TORCHDYNAMO_DISABLE=1  # torch.compile runs its code path eagerly: inductor on 2 cores takes minutes
else
    : "${DEVICE:=cuda}" "${BUDGET_S:=540}" "${TRAIN_MIN:=2.5}" "${TRAIN_ARGS:=--batch 16 --crop 256 --steps 20000}"
    : "${TEST_ARGS:=}"
    : "${PRESETS:=film-s,film-m}" "${SIZES:=1280x720,1920x1080,3840x2160}" "${DTYPES:=bf16,fp16}"
    : "${BATCHES:=1,4,8}" "${BENCH_ARGS:=--repeat 5 --warmup 2}" "${COMPILE_PRESETS:=film-s}"
    : "${COMPILE_ARGS:=--repeat 5 --warmup 2 --e2e --e2e-frames 16}"  # the e2e rows: decode/model/encode shares
    : "${COMPILE_SIZE:=1920x1080}" "${COMPILE_DTYPE:=bf16}" "${E2E_SIZES:=1920x1080 3840x2160:8G}"
    : "${E2E_SECONDS:=1}" "${E2E_BATCH:=8}"
    : "${PROFILE_ARGS:=--preset film-s --size 1920x1080 --precision bf16 --repeat 5 --warmup 3}"
fi
: "${PYTHON:=python3}" "${WHEELS:=.gpu/wheels}" "${DATA:=.gpu/data}" "${OUT:=runs/gpu_out}"
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/framefill-gpu.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"
SUMMARY=$OUT/summary.txt
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
TRAIN_CAP=$("$PYTHON" -c "print(int(float('$TRAIN_MIN') * 60 + 45))")  # the chunk, plus start-up, data and export
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 FRAMEFILL_DEBUG=1 COLUMNS=160  # unwrapped logs
{
    echo "framefill GPU run ($([ "$REHEARSE" = 1 ] && echo "REHEARSAL on the CPU" || echo "device $DEVICE")), $(date -u +%FT%TZ)"
    commit=unknown  # the GPU machine's copy of the working tree may come without .git
    git rev-parse --git-dir >/dev/null 2>&1 && commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (modified)')"
    echo "commit $commit, budget ${BUDGET_S}s, training ${TRAIN_MIN} min"
    [ "$REHEARSE" = 1 ] && echo "rehearsal: tiny sizes, one timed call each (figures mean nothing); TORCHDYNAMO_DISABLE=1, so 'compiled' rows ran eagerly"
    echo
} >"$SUMMARY"

pack() {  # every log so far into $OUT/logs.tgz: after each stage, so that a run stopped from outside still has them
    tar -czf "$OUT/logs.tgz.partial" -C "$WORK" logs && mv "$OUT/logs.tgz.partial" "$OUT/logs.tgz"
}

stage() {  # stage NAME SHARE CMD...: CMD under timeout (SHARE of the time left for the stages before training)
    local name=$1 cap=$2 now left rc begin status
    shift 2
    now=$(date +%s)
    left=$((DEADLINE - now - 5))
    [ "$name" = train ] || left=$((left - TRAIN_CAP))  # training keeps its time whatever came before it
    [ "$cap" -gt "$left" ] && cap=$left
    if [ "$cap" -lt 5 ]; then
        printf '%-8s skipped: no time left\n' "$name" >>"$SUMMARY"
        return
    fi
    begin=$(date +%s.%N)
    if [ "$(type -t "$1")" = function ]; then  # timeout runs programs: a function of this script runs in bash -c
        timeout -k 10 "$cap" bash -c '"$@"' _ "$@" >"$LOGS/$name.log" 2>&1
    else
        timeout -k 10 "$cap" "$@" >"$LOGS/$name.log" 2>&1
    fi
    rc=$?
    case $rc in
        0) status=passed ;;
        124 | 137) status="timed out after ${cap}s" ;;
        *) status="failed (exit $rc; see logs.tgz: logs/$name.log)" ;;
    esac
    printf '%-8s %-7s %s\n' "$name" "$(awk "BEGIN {printf \"%.1fs\", $(date +%s.%N) - $begin}")" "$status" >>"$SUMMARY"
    pack
}

share() {  # the cap of a stage: SHARE percent of the time left to the stages before training (at least 20 s)
    local c=$(((BUDGET_S - TRAIN_CAP) * $1 / 100))
    [ "$c" -lt 20 ] && c=20
    echo "$c"
}

env_info() {
    nvidia-smi || echo "(no nvidia-smi)"
    "$PYTHON" - <<'EOF'
import os, platform, sys
import torch
print("python", sys.version.split()[0], sys.executable, platform.platform())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "cudnn", torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"capability {p.major}.{p.minor}", f"{p.total_memory / 2**30:.1f} GiB",
          f"{p.multi_processor_count} SMs")
print("cpus", os.cpu_count(), "threads", torch.get_num_threads())
EOF
    "$PYTHON" -m pip list 2>/dev/null | grep -iE "^(torch|triton|numpy|opencv|imageio|typer|rich|tqdm|pytest) " || true
}

install_wheels() {
    local site=$WORK/site
    shopt -s nullglob
    local wheels=("$WHEELS"/*.whl)
    if [ ${#wheels[@]} -gt 0 ]; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
            "${wheels[@]}" || return 1
        echo "installed into $site: ${wheels[*]##*/}"
    else
        echo "no wheels in $WHEELS"
    fi
    "$PYTHON" -c "import cv2, imageio_ffmpeg, numpy, rich, tqdm, typer; print('ffmpeg', imageio_ffmpeg.get_ffmpeg_exe())"
}

bench_sweep() {  # one bench per preset, each writing its JSON: a stage stopped in the second keeps the first's
    local preset rc=0
    for preset in ${PRESETS//,/ }; do
        # shellcheck disable=SC2086
        "$PYTHON" -m framefill bench --device "$DEVICE" --preset "$preset" --size "$SIZES" --dtype "$DTYPES" \
            --batch "$BATCHES" $BENCH_ARGS --no-e2e --quiet --json "$OUT/bench_$preset.json" || rc=1
    done
    return $rc
}

train_chunk() {
    local run=$WORK/run
    mkdir -p "$run"
    if [ -f .gpu/resume/last.pt ]; then
        cp .gpu/resume/last.pt "$run/last.pt" && echo "resuming from .gpu/resume/last.pt"
    fi
    local photos=()
    [ -d "$DATA/photos" ] && photos=(--photos "$DATA/photos")
    # shellcheck disable=SC2086  # TRAIN_ARGS is a list of options
    "$PYTHON" -m framefill train --data "$DATA/videos" "${photos[@]}" --finetune weights/film.safetensors \
        --out "$run" --cache "$WORK/cache" --device "$DEVICE" --lr 2e-4 --max-minutes "$TRAIN_MIN" $TRAIN_ARGS
    local rc=$?
    cp "$run/config.json" "$run/log.jsonl" "$LOGS/" 2>/dev/null
    [ -f "$run/last.pt" ] || return 1
    cp "$run/last.pt" "$OUT/last.pt"
    "$PYTHON" tools/export_checkpoint.py "$run/last.pt" "$OUT/film_gpu.safetensors" \
        --note "a tools/gpu_run.sh chunk on $DEVICE, $(head -c 200 "$DATA/MANIFEST.txt" 2>/dev/null | head -n 1)" \
        || return 1
    return $rc
}

export -f env_info install_wheels bench_sweep train_chunk
export PYTHON WHEELS WORK LOGS OUT DATA DEVICE TRAIN_MIN TRAIN_ARGS PRESETS SIZES DTYPES BATCHES BENCH_ARGS

stage env 30 env_info
stage install 60 install_wheels
[ -d "$WORK/site" ] && export PYTHONPATH=$WORK/site:$PYTHONPATH
# shellcheck disable=SC2086
test_args=()
[ -n "$TEST_ARGS" ] && read -r -a test_args <<<"$TEST_ARGS"  # rehearsal: -k NAME or NAME ... (a few of them)
[ "${test_args[0]:-}" = -k ] && test_args=(-k "${test_args[*]:1}")
stage tests "$(share 22)" "$PYTHON" -m pytest -q -p no:cacheprovider -m "cuda or device" --device "$DEVICE" \
    --junitxml "$LOGS/tests.xml" "${test_args[@]}" tests
stage bench "$(share 32)" bench_sweep
# shellcheck disable=SC2086
stage compile "$(share 20)" "$PYTHON" -m framefill bench --device "$DEVICE" --preset "$COMPILE_PRESETS" \
    --size "$COMPILE_SIZE" --dtype "$COMPILE_DTYPE" --batch "$BATCHES" --compile $COMPILE_ARGS --quiet \
    --json "$OUT/compile.json"
e2e_sizes=()
for s in $E2E_SIZES; do e2e_sizes+=(--size "$s"); done
stage e2e "$(share 14)" "$PYTHON" tools/gpu_stages.py e2e --device "$DEVICE" "${e2e_sizes[@]}" --seconds "$E2E_SECONDS" \
    --json "$LOGS/e2e.json" -- --batch-size "$E2E_BATCH"
# shellcheck disable=SC2086
stage profile "$(share 10)" "$PYTHON" tools/profile_model.py --device "$DEVICE" $PROFILE_ARGS --json "$LOGS/profile.json"
stage train "$TRAIN_CAP" train_chunk

{
    echo
    echo "total $(($(date +%s) - START))s of ${BUDGET_S}s"
    echo
    reports=()
    for f in "$OUT"/bench_*.json "$OUT/compile.json" "$LOGS/e2e.json"; do [ -f "$f" ] && reports+=("$f"); done
    [ ${#reports[@]} -gt 0 ] && "$PYTHON" tools/gpu_stages.py report "${reports[@]}"
    if [ -f "$LOGS/profile.log" ]; then echo; grep -v "^USDT\|^STAGE" "$LOGS/profile.log" | head -n 30; fi
    if [ -f "$LOGS/train.log" ]; then echo; grep -E "training|resumed|step [0-9]+/|exported" "$LOGS/train.log"; fi
} >>"$SUMMARY" 2>&1
cp "$SUMMARY" "$LOGS/"
pack
rm -rf "$WORK"
grep -q "failed\|timed out\|skipped" "$SUMMARY" && exit 1
exit 0
