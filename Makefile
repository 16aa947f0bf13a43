# Two entry points, each doing all set-up on a fresh machine:
#   make demo   the main job       make test   the test suite
# torch==2.13.0 is installed first and on its own: a bare torch requirement on an empty
# environment would pull a multi-GB CUDA build. The package index this project's machines use
# serves the CPU wheel for the pin; from public PyPI, install it first from
# https://download.pytorch.org/whl/cpu (as the README shows), then run make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv ext clean broker browser cross

venv: $(STAMP)

$(STAMP): pyproject.toml models/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ./models -e '.[all]'
	touch $(STAMP)

# The C extensions, built in place again when their sources change (an editable install
# builds them once; without this, tests would run the old C after an edit).
C_SOURCES := setup.py $(wildcard walloc_edge/runtime/*.[ch] walloc_edge/runtime/coders/rans/*.c)
EXT       := $(VENV)/.extensions

ext: $(EXT)

$(EXT): $(STAMP) $(C_SOURCES)
	$(PY) setup.py --quiet build_ext --inplace
	touch $(EXT)

demo: $(EXT)
	$(VENV)/bin/walloc-edge demo

# The MQTT tests start a real broker: Debian's mosquitto package.
broker:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get install -y -q mosquitto || \
	    { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q mosquitto; }; }

# The dashboard test loads serve --http's page in a real headless browser: Debian's chromium.
browser:
	@command -v chromium >/dev/null || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get install -y -q chromium || \
	    { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; } || \
	    echo "chromium could not be installed: the dashboard test will skip"; }

# The cross-compilation test (the firmware encoder on aarch64 and armhf under qemu-user):
# Debian's cross compilers and qemu-user.
cross:
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v arm-linux-gnueabihf-gcc \
	  >/dev/null && command -v qemu-aarch64 >/dev/null || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    PACKAGES="gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf qemu-user"; \
	    $$SUDO apt-get install -y -q $$PACKAGES || \
	    { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $$PACKAGES; } || \
	    echo "cross tools could not be installed: the cross-compilation test will skip"; }

test: $(EXT) broker browser cross
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache
