# Sequence Studio: `make demo` (sample from the shipped models) and `make test` do all set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_PACKAGES := fluidsynth timgm6mb-soundfont chromium nodejs npm

.PHONY: install system web-vendor demo test models bench web clean

install: $(STAMP) $(SYSTEM_STAMP) web-vendor

# onnxruntime-web for in-browser sampling: pinned, sha512-checked, from the npm registry
# (git ignores the files: the .wasm is 14.8 MB); a no-op when the pinned version is there
web-vendor: $(SYSTEM_STAMP)
	$(PYTHON) scripts/fetch_onnxruntime_web.py

# torch is pinned to the CPU build on local disk; an unpinned torch pulls a multi-GB CUDA build
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Debian packages: fluidsynth + a small General MIDI soundfont (MIDI -> WAV offline),
# chromium for the browser tests (Playwright drives this Debian build; it never downloads its own),
# nodejs + npm to fetch onnxruntime-web and to check the browser sampler against numpy.
# Only the missing ones are installed: a machine with NodeSource's nodejs (npm bundled)
# cannot also take Debian's npm, which conflicts with it.
$(SYSTEM_STAMP): | $(STAMP)
	@missing=""; \
	command -v fluidsynth >/dev/null || missing="$$missing fluidsynth"; \
	[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || missing="$$missing timgm6mb-soundfont"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then \
	  echo "Debian packages present"; \
	else \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	touch $@

demo: install
	mkdir -p out
	$(BIN)/studio models
	$(BIN)/studio sample --model prose --prime "ROMEO:" --temp 0.8 --seed 1 --length 400
	$(BIN)/studio sample --model code --prime "def " --temp 0.7 --seed 2 --length 300
	$(BIN)/studio sample --model songs --seed 3 --bars 8 --tempo 100 --best-of 16 --out out/demo-song.mid --wav --piano-roll
	$(BIN)/studio sample --model folk --seed 3 --bars 16 --temp 0.95 --pitch-temp 0.85 --out out/demo-tune.mid --wav --piano-roll
	$(BIN)/studio sample --model handwriting --text "Sequence Studio" --bias 1.5 --seed 1 --out out/demo-hand.svg
	$(BIN)/studio sample --model doodle --num 4 --seed 1 --out out/demo-doodles.png
	$(BIN)/studio export-web prose --out out/prose-site --force
	@echo "demo outputs in out/"

# layers (import-linter contracts in pyproject.toml), lint, then the suite
test: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# Retrain the shipped default models from fixed seeds (tens of minutes each on 2 cores)
models: install
	bash scripts/train_models.sh

bench: install
	$(BIN)/studio bench

web: install
	$(BIN)/studio web

clean:
	rm -rf $(VENV) runs out test-artifacts
