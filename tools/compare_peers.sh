#!/usr/bin/env bash
# Quality and speed of framefill next to the peers of ../shared/tools/peers, in one run, on drop-frame
# triplets (stride 1 and 2) of the validation clips (or any folder of clips: tools/motion_clips.py makes some).
# framefill is film through the CLI, and convlstm (when trained weights/convlstm.safetensors is there) through
# tools/window_scores.py, which gives it each triplet's outer frames i - 2s and i + 4s from the clip.
#   bash tools/compare_peers.sh [PEERS_DIR] [VAL_DIR] [COUNT]
# Writes $OUT (default /tmp/framefill_compare): triplets, each peer's frames, results.json, framefill_core.json,
# and prints the per-stride table that README.md quotes.
set -euo pipefail
PEERS=$(cd "${1:-../shared/tools/peers}" && pwd)
VAL=$(cd "${2:-../shared/data/val/videos}" && pwd)
COUNT=${3:-5}
OUT=${OUT:-/tmp/framefill_compare}
PY=${PEERS_VENV:-/tmp/peers-venv}/bin/python
HERE=$(cd "$(dirname "$0")/.." && pwd)
bash "$PEERS/setup.sh" >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"
"$PY" "$PEERS/clip_triplets.py" "$VAL"/* --out "$OUT/trip" --count "$COUNT" --strides 1,2
# framefill's own quality through the CLI, as a user runs it (PNG in, PNG out; start-up included in sec_e2e).
"$PY" "$PEERS/run_peers.py" --list "$OUT/trip/list.txt" --out "$OUT/peers" --repeat 1 \
  --peers ffmpeg_mci,ffmpeg_blend,dis_medium,dis_ultrafast,rife_v4,rife_v3 \
  --extra "framefill=$(command -v python3) -m framefill interp {f0} {f1} {out} --force -q" > "$OUT/peers.md"
# framefill's array-in/array-out time per frame, measured like the peers' sec_core (one warm-up, median of repeats).
(cd "$HERE" && python3 tools/time_pairs.py "$OUT/trip/list.txt" --repeat 3 --json "$OUT/framefill_core.json")
RESULTS="$OUT/peers/results.json"
if [ -f "$HERE/weights/convlstm.safetensors" ]; then
  (cd "$HERE" && python3 tools/window_scores.py "$OUT/trip/list.txt" "$VAL" --model convlstm \
    --merge "$RESULTS" --json "$OUT/with_convlstm.json" > "$OUT/convlstm.log")
  RESULTS="$OUT/with_convlstm.json"
fi
python3 "$HERE/tools/peer_table.py" "$RESULTS" "$OUT/framefill_core.json"
