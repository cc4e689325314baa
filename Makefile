# The two commands of the README: `make quickstart` and `make test`.
.PHONY: setup quickstart test bench clean

setup:
	./scripts/setup.sh

quickstart: setup
	.venv/bin/xsweep run experiments/quickstart.yaml

# The tests also cover `xsweep submit` on a real two-node cluster: they need the submit extra.
# One xdist worker per core, each test file on one worker (its module fixtures built once); the Ray
# tests of a worker share its one Ray session (tests/conftest.py).
test:
	XSWEEP_EXTRAS=test,submit ./scripts/setup.sh
	.venv/bin/python -m pytest -q -n auto --dist loadfile

# Benchmarks never run in CI; PEFT (the peer) and MiniLM come with the bench extra.
bench:
	XSWEEP_EXTRAS=test,bench ./scripts/setup.sh
	.venv/bin/python -m bench.run

clean:
	rm -rf runs .pytest_cache
