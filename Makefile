# Two entry points, both from a fresh clone (as root on Debian, or with sudo-less root in CI):
#   make demo   only what the demo needs (scripts/bootstrap.sh --demo: the newest ansible-core), then the demo
#               (scripts/demo.sh does both)
#   make test   bootstrap, then side by side: ansible-test sanity on the oldest and newest ansible-core, pytest
#               tests/unit tests/e2e on every ansible-core (the core-independent tests once), the mutations, lint,
#               the module tests with the oldest target libraries (scripts/test.sh)
.PHONY: demo test bench bootstrap sanity pytest clean

demo:
	scripts/demo.sh

test:
	scripts/test.sh

# Benchmarks print ratios against baselines measured in the same run; not part of make test.
bench: bootstrap
	.venv/bin/python tests/benchmarks/bench.py

bootstrap:
	scripts/bootstrap.sh

sanity: bootstrap
	scripts/sanity.sh

# Every test with the newest core, on as many workers as CPUs (make test also runs the other cores).
pytest: bootstrap
	.venv/bin/python -m pytest -n auto tests/unit tests/e2e

clean:
	rm -rf build tests/output .pytest_cache
