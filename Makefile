# Two entry points, both from a fresh clone (as root on Debian, or with sudo-less root in CI):
#   make demo   bootstrap, then the demo (scripts/demo.sh)
#   make test   bootstrap, ansible-test sanity, pytest tests/unit tests/e2e (scripts/test.sh)
.PHONY: demo test bootstrap sanity pytest clean

demo: bootstrap
	scripts/demo.sh

test:
	scripts/test.sh

bootstrap:
	scripts/bootstrap.sh

sanity: bootstrap
	scripts/sanity.sh

pytest: bootstrap
	.venv/bin/python -m pytest tests/unit tests/e2e

clean:
	rm -rf build tests/output .pytest_cache
