# Two commands for a newcomer: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CACHE  := $(HOME)/.cache/predlog-ci
OHA    := $(CACHE)/oha/bin/oha
# The revision bench_versus.py compares the request path against.
BENCH_BASE ?= HEAD~1

.PHONY: demo test lint typecheck pytest bench clean services-up services-down services-prepare

# The native decoder (native/) is built by pip, with cargo, as part of the install.
$(STAMP): pyproject.toml native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,analytics]"
	touch $(STAMP)

# Traced: the demo uses the Jaeger on 127.0.0.1:16686, or starts the one services/ builds
# with its UI (services/jaeger-build.sh and jaeger-ui-build.sh, cached).
# Options pass through: make demo DEMO_ARGS=--exit-after-demo
DEMO_ARGS ?=
demo: $(STAMP)
	$(PY) -m examples.fraud_service.demo $(DEMO_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check plugin tests benchmarks examples services
	$(PY) -m ruff format --check plugin tests benchmarks examples services
	cargo fmt --manifest-path native/Cargo.toml --check
	cargo clippy --manifest-path native/Cargo.toml --release --locked --quiet -- -D warnings

typecheck: $(STAMP)
	$(PY) -m mypy

# The integration tests need Kafka and Jaeger: with-services.sh starts them (building
# or downloading into ~/.cache/predlog-ci the first time) and stops them afterwards,
# whether the tests pass or fail. Two processes share the tests, a file at a time
# (module fixtures stay whole): most of the suite waits on servers and subprocesses,
# so the two-core machine runs it in about half the time. The slowest tests are listed.
# Then the decoding and Parquet tests again on the pure-Python decoder and pyarrow's
# writer, the fallback where the extension was not built (tests/test_native_decode.py
# and tests/test_native_table.py compare the two).
pytest: $(STAMP)
	services/with-services.sh $(PY) -m pytest -q -n 2 --dist loadfile --durations=15
	PREDLOG_TEST_PYTHON_DECODER=1 $(PY) -m pytest -q -n 2 --dist loadfile $(FALLBACK_TESTS)

FALLBACK_TESTS := tests/test_exchange.py tests/test_batch.py tests/test_middleware.py \
	tests/test_fuzz.py tests/test_pii.py tests/test_parquet.py

services-up:
	services/up.sh

# The services' downloads and builds (minutes on a fresh machine, nothing once cached),
# in the background, beside the install, lint and type check; up.sh waits for them.
services-prepare:
	mkdir -p $(CACHE)
	services/prepare.sh >$(CACHE)/prepare.log 2>&1 &

services-down:
	services/down.sh

test: services-prepare lint typecheck pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_capture.py
	$(PY) benchmarks/bench_flusher_mode.py
	$(PY) benchmarks/bench_middleware.py
	$(PY) benchmarks/bench_decode.py
	$(PY) benchmarks/bench_gil_wait.py --rounds 3
	$(PY) benchmarks/bench_versus.py --base $(BENCH_BASE)
	$(PY) benchmarks/first_record.py
	command -v wrk >/dev/null || apt-get install -y -q wrk
	test -x $(OHA) || cargo install oha --locked --root $(CACHE)/oha
	services/with-services.sh sh -c '$(PY) benchmarks/bench_kafka.py && \
	  $(PY) benchmarks/bench_outage_memory.py && $(PY) benchmarks/bench_server.py && \
	  $(PY) benchmarks/bench_lakehouse.py'
	$(PY) benchmarks/profile_request_path.py
	$(PY) benchmarks/profile_server.py
	$(PY) benchmarks/bench_analytics.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
