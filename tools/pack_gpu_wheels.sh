#!/usr/bin/env bash
# Fill .gpu/wheels with the wheels the GPU machine's image lacks, for its Python (3.12, x86-64 Linux), so that
# tools/gpu_run.sh can install them there without a package index (nothing outside that machine can be reached).
#
#   tools/pack_gpu_wheels.sh [PACKAGE==VERSION ...]
#
# Default: imageio-ffmpeg==0.6.0, the one package framefill needs that the image lacks (its package list, read
# 2026-11-17, holds torch, numpy, opencv-python-headless, typer, rich, tqdm and pytest). 0.6.0 because its wheel
# (ffmpeg 7.0.2, 29 MB) fits the 64 MiB the working tree may take to that machine; 0.8.1's is 68 MB. Name others
# (typer==0.12.5 rich==13.9.4 ...) if a later image lacks them: each is fetched without its dependencies, so name
# those too (unzip -p .gpu/wheels/NAME-*.whl '*/METADATA' | grep ^Requires-Dist lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${GPU_WHEELS:-.gpu/wheels}
PY=${GPU_PYTHON_VERSION:-3.12}
PYTHON=${PYTHON:-python3}
[ $# -gt 0 ] || set -- imageio-ffmpeg==0.6.0
mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux2010_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
for spec in "$@"; do
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
        "${platforms[@]}" -d "$DEST" "$spec"
done
ls -l "$DEST"
echo "$(du -sm "$DEST" | cut -f1) MiB in $DEST (the whole working tree, .gpu included, must stay under 64 MiB)"
