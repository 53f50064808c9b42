# Shortcuts; each is the command it names, nothing more.
PY ?= python

.PHONY: build test test-pure bench bench-micro lint docs dist
build:          ## install editable with the accelerator required
	REACTOR_NATIVE=1 $(PY) -m pip install -e '.[test,lint,plot]'
test:           ## the README's test command
	ruff check . && $(PY) -m pytest
test-pure:      ## the loop, server-side and conformance suites pure: the accept path and the data path uncompiled (.ci/run runs this target)
	REACTOR_NATIVE=0 REACTOR_CPYTHON_RUNS=package:epoll-pure $(PY) -m pytest -q tests/core tests/net tests/aio/test_loop.py tests/aio/test_semantics.py tests/aio/test_ready_queue.py tests/aio/test_conformance.py tests/aio/test_anyio_suite.py tests/tools/test_serve.py
bench:          ## the main job: accept throughput, backends x accept path x idle fds, with peers
	$(PY) -m reactor bench accept --json bench/results/accept.json --plot bench/results/accept.png
bench-micro:    ## pytest-benchmark micro-benchmarks; the JSON keeps summaries, not raw samples (bench/conftest.py)
	$(PY) -m pytest bench --benchmark-only -p no:cacheprovider --benchmark-json bench/results/micro.json
lint:           ## what CI checks besides the tests
	ruff check . && mypy reactor
docs:           ## the documentation as HTML into build/docs, warnings as errors (pip install -e '.[docs]'; .ci/run runs this target)
	$(PY) -m sphinx -E -W --keep-going -q -b html docs build/docs
dist:           ## sdist and wheel into dist/ (pip install build)
	$(PY) -m build --outdir dist .
