# edgerec: `make demo` and `make test` work on a fresh machine with only Python and the package registries.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cat setup.py | sha256sum | cut -c1-12)
DEMO_STAMP = $(VENV)/.demo-installed-$(shell cat setup.py | sha256sum | cut -c1-12)
# tests keep their fetched weights here so a second run needs no network
export EDGEREC_TEST_HOME ?= $(CURDIR)/.home/test

.PHONY: demo test bench lint models samples clean

$(STAMP): setup.py
	@test -n "$(PYTHON)" || { echo "need python3.11 or python3 (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, alone and pinned: on these machines pip takes the CPU build of torch==2.13.0 from the image's
	# wheel folder (pip's find-links); the train extra then finds it installed and adds no CUDA packages
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev,paddle,train,ray]"
	$(PY) -m pip check
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

# the demo needs only the core (openvino, nncf, numpy, opencv, paddle2onnx, click): no torch, no paddlepaddle
$(DEMO_STAMP): setup.py
	@test -n "$(PYTHON)" || { echo "need python3.11 or python3 (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	rm -f $(VENV)/.demo-installed-*; touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/edgerec models fetch PP-OCRv4_mobile_rec
	$(VENV)/bin/edgerec export PP-OCRv4_mobile_rec --precision fp32
	$(VENV)/bin/edgerec predict samples/ --model PP-OCRv4_mobile_rec

test: $(STAMP)
	$(PY) -m ruff check edgerec tests scripts
	$(PY) -m pytest -q tests

# the accuracy-versus-latency report on ../shared/evalsets (skipped when absent); e.g. BENCH_ARGS="--limit 100"
bench: $(STAMP)
	$(PY) scripts/bench.py $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check edgerec tests scripts

samples: $(STAMP)
	$(PY) scripts/render_samples.py samples

clean:
	rm -rf $(VENV) .home build *.egg-info
