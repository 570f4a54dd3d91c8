# The two set-up commands: `make demo` and `make test`. Each works alone on a fresh machine.
# svkit needs Python 3.11 (bpy 4.5 is built for it); set PYTHON=/path/to/python3.11 if it is not on PATH as python3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3 || echo python3.11)
PYTHON_VERSION := 3.11
VENV := .venv
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo
IS_PY311 := -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'

.PHONY: test demo clean

$(STAMP): setup.cfg pyproject.toml
	@if [ ! -x $(VENV)/bin/python ]; then \
	  if ! command -v "$(PYTHON)" >/dev/null 2>&1; then \
	    echo "error: svkit needs Python $(PYTHON_VERSION), but PYTHON=$(PYTHON) is not found. Install Python" \
	      "$(PYTHON_VERSION) and run 'make $(or $(MAKECMDGOALS),test) PYTHON=/path/to/python$(PYTHON_VERSION)'" >&2; \
	    exit 1; \
	  elif ! "$(PYTHON)" $(IS_PY311) 2>/dev/null; then \
	    echo "error: svkit needs Python $(PYTHON_VERSION), but PYTHON=$(PYTHON) is" \
	      "$$("$(PYTHON)" --version 2>&1). Install Python $(PYTHON_VERSION) and run" \
	      "'make $(or $(MAKECMDGOALS),test) PYTHON=/path/to/python$(PYTHON_VERSION)'" >&2; \
	    exit 1; \
	  fi; \
	  "$(PYTHON)" -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "error: '$(PYTHON) -m venv' failed (on Debian/Ubuntu: apt install python$(PYTHON_VERSION)-venv)" >&2; \
	    exit 1; }; \
	elif ! $(VENV)/bin/python $(IS_PY311) 2>/dev/null; then \
	  echo "error: $(VENV) holds $$($(VENV)/bin/python --version 2>&1), not Python $(PYTHON_VERSION):" \
	    "remove it (rm -rf $(VENV)) and run 'make $(or $(MAKECMDGOALS),test) PYTHON=/path/to/python$(PYTHON_VERSION)'" >&2; \
	  exit 1; \
	fi
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest

demo: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash scripts/demo.sh $(DEMO_DIR)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
