# csipstream: `make run` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run replay-demo test lint typecheck unit compile uncompile bench-kernel bench-gateway bench-kafka bench-scale clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: the server on the embedded runtime with demo data (development PKI under var/pki)
run: $(STAMP)
	$(BIN)/csip pki init --dir var/pki
	$(BIN)/csip serve --data var/data --pki var/pki --demo

## replay-demo: replay the bundled scenarios and print one
replay-demo: $(STAMP)
	$(BIN)/csip replay --check tests/scenarios/*.json
	$(BIN)/csip replay tests/scenarios/05-successive-randomized.json

## test: lint, type-check and the test suite (what CI runs)
test: lint typecheck unit conformance-quick

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy engine csip gateway topics fleet

unit: $(STAMP)
	$(BIN)/pytest -q

## bench-kernel: the kernel benchmark (results go to benchmarks/RESULTS.md by hand)
bench-kernel: $(STAMP)
	$(BIN)/python -m benchmarks.bench_kernel

## bench-gateway: the 2030.5 listener under load over mTLS (writes benchmarks/gateway/)
bench-gateway: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.bench_gateway

## compile: the fold's hot modules as C extensions beside their sources (mypyc, engine/compiled.py;
## needs a C compiler and the Python headers). Edit a compiled source and engine refuses to
## start until you run it again or `make uncompile`.
compile: $(STAMP)
	CSIP_COMPILE=1 $(BIN)/python setup.py --quiet build_ext --inplace -j 2

## uncompile: remove the extensions (the sources run again)
uncompile:
	rm -rf build engine/compiled.json
	find engine topics -name '*.so' -delete
	rm -f *__mypyc*.so

## bench-kafka: csip worker processes on a local Tansu broker (10k and 100k devices, 1 and 2 workers),
## with the compiled fold the container image runs (`make uncompile` first to measure the sources)
bench-kafka: compile
	$(BIN)/python -m benchmarks.bench_kafka

## bench-scale: one system-wide control to 100k simulated devices (csip fleet) while they poll
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.bench_scale

include Makefile.conformance

clean: uncompile
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis var
