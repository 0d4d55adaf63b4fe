# framefill: `make demo` runs the main job on the bundled clip, `make test` passes the tests.
# Both install what they need first (CPU torch 2.13.0, then the package in editable mode).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
DEMO_IN := demo/bbb_720p_24fps.mp4
DEMO_OUT := demo_out/bbb_48fps.mp4
PEERS := ../shared/tools/peers
VAL := ../shared/data/val
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
gpu-pack: install
	bash tools/pack_gpu_wheels.sh
	$(PYTHON) tools/pack_gpu_data.py --src ../shared/data/train --out .gpu/data

gpu-rehearse: install
	OUT=runs/gpu_rehearsal bash tools/gpu_run.sh --rehearse
