# The two commands a new user needs: `make demo` and `make test`. Both install what is missing first.
PY := .venv/bin/python
OUT ?= demo-out

.PHONY: install demo test test-slow test-gpu bench bench-scale clean

install:
	bash scripts/install.sh

demo: install
	$(PY) -m catalogs.demo.build
	$(PY) -m pipelines.cli run --catalog catalogs/demo/build/catalog.jsonl --langs es,de,pt --out $(OUT)

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

clean:
	rm -rf $(OUT) bench-out bench-lips bench-scale bench/build catalogs/demo/build
