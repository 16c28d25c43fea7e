# distq: `make demo` and `make test` set everything up themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint typecheck clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "distq needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m compileall -q src/distq  # as an installed package is: workers start faster
	$(BIN)/python bench/bench_queue.py
	$(BIN)/python bench/bench_tasks.py
	$(BIN)/python bench/bench_services.py
	$(BIN)/python bench/bench_actors.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

# distq against other task libraries (docs/benchmarks.md), in an environment of
# its own: the peers are never dependencies of distq. BENCH_PEERS_ARGS=--quick
# for a short development run (see bench/peers/run.py --help).
BENCH_VENV  := .venv-bench
BENCH_BIN   := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: bench-peers

$(BENCH_STAMP): pyproject.toml bench/peers/requirements.txt bench/peers/install.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "distq needs Python 3.11+"'
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install -q --upgrade pip
	$(BENCH_BIN)/python bench/peers/install.py
	@if [ "$$(cat $(BENCH_VENV)/bench-install-status.json)" = "{}" ]; then touch $(BENCH_STAMP); fi

bench-peers: $(BENCH_STAMP)
	BENCH_COMMAND="make bench-peers$(if $(BENCH_PEERS_ARGS), BENCH_PEERS_ARGS='$(BENCH_PEERS_ARGS)')" \
		$(BENCH_BIN)/python bench/peers/run.py $(BENCH_PEERS_ARGS)
