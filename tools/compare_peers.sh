#!/usr/bin/env bash
# Quality and speed of framefill next to the peers of ../shared/tools/peers, in one run, on drop-frame triplets
# (stride 1 and 2) of every validation item: the videos and frame folders of VAL (or any folder of clips).
# framefill is film through the CLI (end to end, PNG in and out) and in-process (model-only time and the scores:
# tools/time_pairs.py), a freshly initialised model of the shipped config beside it ("does training help"), and
# convlstm (when weights/convlstm.safetensors is there) through tools/window_scores.py, trained and freshly
# initialised around the same film.
#   [ADAPT=1] bash tools/compare_peers.sh [PEERS_DIR] [VAL_DIR] [COUNT]
# Writes $OUT (default /tmp/framefill_compare): triplets, each peer's frames, results.json, framefill_core.json,
# framefill_init.json, and prints the tables that README.md quotes (tools/peer_table.py).
set -euo pipefail
PEERS=$(cd "${1:-../shared/tools/peers}" && pwd)
VAL=$(cd "${2:-../shared/data/val}" && pwd)
COUNT=${3:-4}
OUT=${OUT:-/tmp/framefill_compare}
PY=${PEERS_VENV:-/tmp/peers-venv}/bin/python
HERE=$(cd "$(dirname "$0")/.." && pwd)
bash "$PEERS/setup.sh" >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"
ITEMS=()
for d in "$VAL"/videos "$VAL"/frames; do
  [ -d "$d" ] && ITEMS+=("$d"/*)
done
[ ${#ITEMS[@]} -gt 0 ] || ITEMS=("$VAL"/*)
"$PY" "$PEERS/clip_triplets.py" "${ITEMS[@]}" --out "$OUT/trip" --count "$COUNT" --strides 1,2
# framefill's own quality through the CLI, as a user runs it (PNG in, PNG out; start-up included in sec_e2e).
"$PY" "$PEERS/run_peers.py" --list "$OUT/trip/list.txt" --out "$OUT/peers" --repeat 1 \
  --peers ffmpeg_mci,ffmpeg_blend,dis_medium,dis_ultrafast,rife_v4,rife_v3 \
  --extra "framefill=$(command -v python3) -m framefill interp {f0} {f1} {out} --force -q" > "$OUT/peers.md"
# framefill's array-in/array-out time per frame, measured like the peers' sec_core (one warm-up, median of repeats),
# and a freshly initialised model of the same config scored on the same frames.
(cd "$HERE" && python3 tools/time_pairs.py "$OUT/trip/list.txt" --repeat 3 --json "$OUT/framefill_core.json" >/dev/null)
(cd "$HERE" && python3 tools/time_pairs.py "$OUT/trip/list.txt" --repeat 0 --init --json "$OUT/framefill_init.json" \
  >/dev/null)
MORE=()
if [ -f "$HERE/weights/convlstm.safetensors" ] && [ -f "$HERE/tools/window_scores.py" ]; then
  (cd "$HERE" && python3 tools/window_scores.py "$OUT/trip/list.txt" "${ITEMS[@]}" --model convlstm \
    --json "$OUT/convlstm.json" > "$OUT/convlstm.log") && MORE+=("$OUT/convlstm.json")
  # and convlstm freshly initialised around the same film (its gate closed: film's frames, in its protocol)
  (cd "$HERE" && python3 tools/window_scores.py "$OUT/trip/list.txt" "${ITEMS[@]}" --model convlstm --init \
    --repeat 0 --json "$OUT/convlstm_init.json" > "$OUT/convlstm_init.log") && MORE+=("$OUT/convlstm_init.json")
fi
python3 "$HERE/tools/peer_table.py" "$OUT/peers/results.json" "$OUT/framefill_core.json" "$OUT/framefill_init.json" \
  "${MORE[@]}"
# ADAPT=1: interp --adapt's column (tools/time_pairs.py --adapt-items): per item and stride s, adapted on every
# (2s)-th frame alone, scored with and without it on frames halfway between kept ones (about 26 x 70 s more).
if [ "${ADAPT:-0}" = 1 ]; then
  (cd "$HERE" && python3 tools/time_pairs.py --adapt-items "${ITEMS[@]}" --limit 8 --json "$OUT/adapt.json") | tee "$OUT/adapt.md"
fi
