# Two entry points, each doing all set-up on a fresh machine:
#   make demo   the main job       make test   the test suite
# torch==2.13.0 is installed first and on its own: a bare torch requirement on an empty
# environment would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean broker

venv: $(STAMP)

$(STAMP): pyproject.toml models/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ./models -e '.[all]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/walloc-edge demo

# The MQTT tests start a real broker: Debian's mosquitto package.
broker:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get install -y -q mosquitto || \
	    { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q mosquitto; }; }

test: $(STAMP) broker
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache
