# Two set-up commands, both self-contained on a fresh machine:
#   make demo   - install, start the local platform sandboxes, push the bundled sample campaign end to end
#   make test   - install, lint, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

$(BIN)/crm-activation: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=strict
	touch $@

install: $(BIN)/crm-activation

demo: install
	rm -rf out
	set -a && . examples/sandbox.env && set +a && \
	$(BIN)/crm-activation run examples/campaign.yaml --sandbox --rejects out/rejects.csv

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

.PHONY: install demo test
