# Two set-up commands, both self-contained on a fresh machine:
#   make demo   - install, start the local platform sandboxes, push the bundled sample campaign end to end
#   make test   - install (Python deps; Debian's chromium, postgresql and openjdk-17-jre-headless for the browser,
#                 PostgreSQL and Spark tests),
#                 lint (ruff), type-check (mypy), run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

$(BIN)/crm-activation: pyproject.toml plugins/crm-activation-google-data-manager/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=strict
	$(BIN)/pip install -q -e plugins/crm-activation-google-data-manager --config-settings editable_mode=strict
	touch $@

install: $(BIN)/crm-activation

demo: install
	rm -rf out
	set -a && . examples/sandbox.env && set +a && \
	$(BIN)/crm-activation run examples/campaign.yaml --sandbox --rejects out/rejects.csv

system-deps:
	bash scripts/install-system-deps

# CRM_ACTIVATION_REQUIRE_POSTGRES / _SPARK: the PostgreSQL and Spark tests fail, not skip, when what they need is
# missing.
test: install system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy -p crm_activation -p crm_activation_google_data_manager
	CRM_ACTIVATION_REQUIRE_POSTGRES=1 CRM_ACTIVATION_REQUIRE_SPARK=1 $(BIN)/pytest

.PHONY: install system-deps demo test
