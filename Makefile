# Shortcuts; each is the command it names, nothing more.
PY ?= python

.PHONY: build test test-pure bench bench-micro lint
build:          ## install editable with the accelerator required
	REACTOR_NATIVE=1 $(PY) -m pip install -e '.[test,lint,plot]'
test:           ## the README's test command (what CI runs)
	ruff check . && $(PY) -m pytest
test-pure:      ## the server-side suites on the pure-Python accept path
	REACTOR_NATIVE=0 $(PY) -m pytest tests/test_listener.py tests/test_transport.py tests/test_accept_policy.py tests/test_native.py
bench:          ## the main job: accept throughput, backends x accept path x idle fds, with peers
	$(PY) -m reactor bench accept --json bench/results/accept.json --plot bench/results/accept.png
bench-micro:    ## pytest-benchmark micro-benchmarks
	$(PY) -m pytest bench --benchmark-only -p no:cacheprovider
lint:
	ruff check .
