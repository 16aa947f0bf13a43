# Two entry points, each doing all set-up on a fresh machine:
#   make demo   the main job       make test   the test suite
# torch==2.13.0 is installed first and on its own: a bare torch requirement on an empty
# environment would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/walloc-edge info tests/reference/rgb_j3_l12.pth
	$(VENV)/bin/walloc-edge export tests/reference/rgb_j3_l12.pth --format onnx,tflite --out demo-out/bundle
	$(VENV)/bin/walloc-edge encode demo-out/bundle walloc_edge/data/coffee.jpg walloc_edge/data/astronaut.jpg -o demo-out/wlc

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache
