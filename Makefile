# framefill: `make demo` runs the main job on the bundled clip, `make test` passes the tests.
# Both install what they need first (CPU torch 2.13.0, then the package in editable mode).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
DEMO_IN := demo/bbb_720p_24fps.mp4
DEMO_OUT := demo_out/bbb_48fps.mp4
PEERS := ../shared/tools/peers
VAL := ../shared/data/val
TRAIN := ../shared/data/train
STAMP := .install.stamp

.PHONY: install demo test lint compare bench eval clean gpu-pack gpu-rehearse

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)

demo: install
	@mkdir -p demo_out
	$(PYTHON) -m framefill interp $(DEMO_IN) $(DEMO_OUT) --factor 2 --force
	@echo "wrote $(DEMO_OUT)"

test: install
	$(PYTHON) -m pytest -q

lint: install
	$(PYTHON) -m ruff check framefill tests tools

# Quality and speed next to the peers, on drop-frame triplets of the validation clips (stride 1 and 2).
compare: install
	bash tools/compare_peers.sh $(PEERS) $(VAL)

# Speed and memory of every preset, alone and end to end (CPU: 960x540 to 1920x1080; CUDA: up to 3840x2160).
bench: install
	$(PYTHON) -m framefill bench

# framefill against repeat, blend, OpenCV DIS and ffmpeg minterpolate on drop-frame triplets of the validation clips.
eval: install
	$(PYTHON) -m framefill eval --data $(VAL) --stride 1,2 --max-triplets 5

clean:
	rm -rf demo_out $(STAMP) .pytest_cache build *.egg-info

# A lent GPU: fill .gpu/ (wheels the GPU image lacks, a small training set), rehearse the GPU run on the CPU.
# README "On a lent GPU" gives the one device call (tools/gpu_run.sh with .gpu carried).
# GPU_WHEELS: what the GPU machine's image lacks, as wheels for its Python (3.12, x86-64 Linux), since nothing
# outside that machine can be reached from it. imageio-ffmpeg 0.6.0, the one package framefill needs that the image
# lacks (its package list, read 2026-11-17, holds torch, numpy, opencv-python-headless, typer, rich, tqdm and
# pytest); 0.6.0 because its wheel (ffmpeg 7.0.2, 29 MB) fits the 64 MiB the working tree may take there, 0.8.1's
# is 68 MB. Name others if a later image lacks them (make gpu-pack GPU_WHEELS="typer==0.12.5 ..."): each is
# fetched without its dependencies, so name those too.
GPU_WHEELS := imageio-ffmpeg==0.6.0
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
	manylinux2010_x86_64 manylinux1_x86_64

gpu-pack: install
	$(PIP) download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(addprefix --platform ,$(GPU_PLATFORMS)) -d .gpu/wheels $(GPU_WHEELS)
	@du -sh .gpu/wheels
	$(PYTHON) tools/gpu_stages.py pack --src $(TRAIN) --out .gpu/data

gpu-rehearse: install
	OUT=runs/gpu_rehearsal bash tools/gpu_run.sh --rehearse
