#!/bin/bash
# Repeat the time-limited two-process run of tests/test_distributed.py N times and count the runs that failed
# (a rank that aborts at exit makes torchrun fail). Failed runs' logs are kept in the work folder.
#
#   bash tools/ddp_exit_loop.sh 70 [WORK_DIR]
set -eu
n=${1:?usage: ddp_exit_loop.sh N [WORK_DIR]}
work=${2:-$(mktemp -d)}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work/data"
PYTHONPATH="$repo/tests:$repo" python -c "
from pathlib import Path
from conftest import moving_square, write_clip
write_clip(Path('$work/data/square'), list(moving_square(n=12)))"
fails=0
for i in $(seq 1 "$n"); do
  rm -rf "$work/out"
  if ! (cd "$work" && OMP_NUM_THREADS=1 PYTHONPATH="$repo" python -m torch.distributed.run --standalone \
    --nproc_per_node=2 -m framefill train --data "$work/data" --out "$work/out" --preset film-tiny --steps 3 \
    --batch 4 --crop 32 --max-frames 12 --device cpu --lr 0.3 --max-minutes 1e-9 > "$work/run.log" 2>&1); then
    fails=$((fails + 1))
    cp "$work/run.log" "$work/failed_$i.log"
  fi
done
echo "$fails of $n runs failed (logs of failed runs in $work)"
