# fraudscore: the two commands a fresh machine needs are `make run` and `make test`.
# Both install what they need: uv from PyPI if it is missing (into .tools/, a private venv, so a
# system Python that refuses pip installs (PEP 668) is left alone), then the locked environment.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || { python3 -m uv --version >/dev/null 2>&1 && echo "python3 -m uv"; } || echo ".tools/uv/bin/uv")
PROTO := proto/scoring/v1/scoring.proto

.PHONY: run test env browser proto proto-check lint typecheck bench clean

env:
	@$(UV) --version >/dev/null 2>&1 || { python3 -m venv .tools/uv && .tools/uv/bin/pip install --quiet "uv>=0.9"; }
	@$(UV) sync --frozen --quiet

run: env ## Serve on the embedded defaults (trains a demo bundle on synthetic data if none exists).
	$(UV) run --frozen fraudscore serve $(ARGS)

# The review page's browser test drives Debian's Chromium (/usr/bin/chromium) with Playwright; no
# browser is downloaded from anywhere else. Installed here when missing (as root, or with sudo).
browser:
	@[ -x /usr/bin/chromium ] || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
		else echo "the browser test needs Debian's chromium package: apt-get install chromium"; exit 1; fi; \
		echo "installing Debian's chromium for the browser test"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null || \
		{ $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }

test: env browser proto-check lint typecheck ## Everything CI runs.
	$(UV) run --frozen pytest $(PYTEST_ARGS)

proto: env ## Regenerate scoring/v1/ from proto/ (checked in; never edit by hand).
	$(UV) run --frozen python -m grpc_tools.protoc -Iproto \
		--python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTO)

proto-check: env ## Fails if the checked-in generated code differs from what proto/ generates.
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(UV) run --frozen python -m grpc_tools.protoc -Iproto \
		--python_out=$$tmp --grpc_python_out=$$tmp --mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO) && \
	for f in $$tmp/scoring/v1/*; do \
		diff -q "$$f" "scoring/v1/$$(basename $$f)" >/dev/null || { echo "scoring/v1/$$(basename $$f) is stale: run 'make proto'"; exit 1; }; \
	done; echo "generated code up to date"

lint: env
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: env
	$(UV) run --frozen mypy

bench: env ## Score latency/throughput against a real server; writes bench/results/.
	$(UV) run --frozen python bench/score_latency.py $(ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
