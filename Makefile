# Two entry points, both from a fresh clone (as root on Debian, or with sudo-less root in CI):
#   make demo   bootstrap, then the demo (scripts/demo.sh)
#   make test   bootstrap, ansible-test sanity on the oldest and newest ansible-core, pytest tests/unit tests/e2e
#               on every ansible-core, the module tests with the oldest target libraries (scripts/test.sh)
.PHONY: demo test bench bootstrap sanity pytest clean

demo: bootstrap
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

pytest: bootstrap
	.venv/bin/python -m pytest tests/unit tests/e2e

clean:
	rm -rf build tests/output .pytest_cache
