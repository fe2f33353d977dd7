# Python package tests, included by the top-level Makefile (which defines `build` and BUILD).
# Runs python/tests against the library built in $(BUILD), without installing the package:
# SAGEATTN_LIBRARY points at the .so, PYTHONPATH at python/src. Needs numpy and pytest
# (python3 -m pip install -r python/requirements-test.txt); torch is optional.
PYTHON ?= python3

.PHONY: test-python

test-python: build
	@$(PYTHON) -c "import numpy, pytest" || { \
	  echo "test-python: needs numpy and pytest: $(PYTHON) -m pip install -r python/requirements-test.txt"; exit 1; }
	@SAGEATTN_LIBRARY="$(abspath $(BUILD))/libsageattn.so" PYTHONPATH="$(CURDIR)/python/src$${PYTHONPATH:+:$$PYTHONPATH}" \
	  $(PYTHON) -m pytest python/tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "test-python: FAILED: pytest collected no tests (exit code 5)"; exit 1; fi; \
	  exit $$rc
