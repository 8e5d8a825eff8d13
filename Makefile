# One entry point for humans and CI. `make test` is what .ci/run runs.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install generate lint typecheck verify checks builds test test-fast test-cluster cluster-bin cluster-up llama-bin promtool-bin test-monitoring test-realmodel bench bench-realmodel goldens demo clean

$(BIN)/ballast: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/ballast

## generate: regenerate every checked-in artefact (CRD, chart CRD template, install bundle, API docs)
generate: install
	$(BIN)/ballast crd -o crds/llmservices.ballast.dev.yaml
	@if [ -x hack/generate-chart.sh ]; then hack/generate-chart.sh; fi
	@if [ -f hack/api_reference.py ]; then $(BIN)/python hack/api_reference.py docs/reference.md; fi

## lint: ruff (lint + format check) and mypy --strict on the package
lint: install
	$(BIN)/ruff check operator tests bench hack
	$(BIN)/ruff format --check operator tests bench hack
	$(BIN)/mypy operator/ballast

## verify: fail when a generated file is stale
verify: generate
	@git diff --exit-code --stat -- crds charts manifests docs \
	  || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- crds charts manifests docs)" \
	  || { git status --porcelain -- crds charts manifests docs; echo "untracked generated files: run 'make generate' and commit"; exit 1; }

## test-fast: unit, render, gateway and emulator tiers (no Go build)
test-fast: install
	$(BIN)/pytest -q -m "not cluster and not realmodel and not promtool" $(PYTEST_ARGS)

## promtool-bin: build (or reuse from cache) Prometheus's promtool (hack/promtool/build.sh)
promtool-bin:
	hack/promtool/build.sh

## test-monitoring: the shipped alerts evaluated by promtool
test-monitoring: install promtool-bin
	$(BIN)/pytest -q -m promtool $(PYTEST_ARGS)

## cluster-bin: build (or reuse from cache) kube-apiserver, kube-controller-manager and etcd
cluster-bin:
	hack/cluster/build.sh

## test-cluster: the real control-plane tier
test-cluster: install cluster-bin
	$(BIN)/pytest -q -m cluster $(PYTEST_ARGS)

## cluster-up: start a control plane on loopback for humans (Ctrl-C stops it)
cluster-up: install cluster-bin
	$(BIN)/python -m tests.cluster.controlplane

## llama-bin: build (or reuse from cache) llama-server and fetch the real model (hack/llama/)
llama-bin: install
	PYTHON=$(CURDIR)/$(BIN)/python hack/llama/build.sh
	PYTHON=$(CURDIR)/$(BIN)/python hack/llama/model.sh

## test-realmodel: a real llama-server and model behind the operator and gateway
test-realmodel: install cluster-bin llama-bin promtool-bin
	$(BIN)/pytest -q -m realmodel $(PYTEST_ARGS)

## builds: every cached build the tiers need (control plane, promtool, llama-server and model)
builds: cluster-bin promtool-bin llama-bin

## checks: what needs no build (generated files fresh, lint + mypy --strict, the fast tier)
checks: verify lint test-fast

## test: everything CI runs. On a fresh machine the builds take minutes each (Go, cmake):
## the generated-file and lint checks run beside them. The fast tier mostly waits (about 70 s
## of CPU in 5 min: timeouts, probes, subprocesses on 127.0.0.1) and runs beside the control
## plane tier; the real-model tier comes last (it shares the cluster tier's pod addresses).
test:
	$(MAKE) --no-print-directory -j2 --output-sync=target verify lint builds
	$(MAKE) --no-print-directory -j2 --output-sync=target test-fast test-cluster
	$(MAKE) --no-print-directory test-monitoring test-realmodel

## goldens: regenerate render golden files (review the diff!)
goldens: install
	BALLAST_UPDATE_GOLDENS=1 $(BIN)/pytest -q tests/render

bench: install
	$(BIN)/python bench/gateway_bench.py
	$(BIN)/python bench/controller_bench.py

## bench-realmodel: TTFT and tokens/s through the gateway vs direct to the same llama-server
bench-realmodel: install cluster-bin llama-bin
	$(BIN)/python bench/realmodel_bench.py

## demo: Ballast end to end with a real model: in the current kube context's cluster when it answers, else on a local control plane
demo: install
	$(BIN)/python hack/demo.py

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
