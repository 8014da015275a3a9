# The two commands of the README. Both build their pinned environment on first use (scripts/venv.sh).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PY_CORE = PYTHONPATH=$(CURDIR) $$(scripts/venv.sh core)/bin/python
PY_PEERS = PYTHONPATH=$(CURDIR) $$(scripts/venv.sh peers)/bin/python

.PHONY: demo test test-core test-peers bench

## make demo: train a ViT on the embedded MNIST-5k digits and print test accuracy and where the plots are.
## Each run starts afresh (runs/demo is the demo's own scratch folder; `vitkit train` never overwrites a run).
demo:
	rm -rf runs/demo
	$(PY_CORE) -m vitkit train --data mnist-5k --out runs/demo

## make test: unit tests on torch 2.13 (core), then parity tests against timm / transformers / torchvision /
## vit-pytorch on torch 2.14.1 (peers).
test: test-core test-peers

test-core:
	$(PY_CORE) -m pytest -q -m "not peers"

test-peers:
	$(PY_PEERS) -m pytest -q -m peers

bench:
	$(PY_PEERS) benchmarks/peers.py
