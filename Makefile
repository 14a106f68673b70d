# The two commands a new user needs: `make demo` and `make test`. Both install what is missing first.
PY := .venv/bin/python
OUT ?= demo-out

.PHONY: install demo demo-extras test test-slow test-gpu bench bench-scale bench-real clean

install:
	bash scripts/install.sh

demo: install
	$(PY) -m catalogs.demo.build
	$(PY) -m pipelines.cli run --catalog catalogs/demo/build/catalog.jsonl --langs es,de,pt --out $(OUT)

# A talking photo and a line replacement (ADR), with lips.mode = "tight"
demo-extras: install
	$(PY) -m catalogs.demo.extras
	$(PY) -m pipelines.cli run --catalog catalogs/demo/build/extras.jsonl --out $(OUT)-extras --config catalogs/demo/tight.toml

test: install
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

test-gpu: install
	$(PY) -m pytest -m gpu

bench: install
	$(PY) -m catalogs.demo.build
	$(PY) bench/run.py --out bench-out
	$(PY) bench/lipsync.py --out bench-lips

# Memory, time and worker scaling on one long 1080p episode: make bench-scale MINUTES=30 [LANGS=es] [SCALING=1]
MINUTES ?= 5
LANGS ?= es,de
bench-scale: install
	$(PY) bench/scale.py --minutes $(MINUTES) --langs $(LANGS) --out bench-scale $(if $(SCALING),--scaling)

# Lips on real-style footage (heads that turn, a hand at the chin, cuts, 24 fps): make bench-real MINUTES=2
bench-real: install
	$(PY) bench/real_style.py --minutes $(if $(filter command line,$(origin MINUTES)),$(MINUTES),2) --out bench-real

clean:
	rm -rf $(OUT) $(OUT)-extras bench-out bench-lips bench-scale bench-real bench/build catalogs/demo/build
