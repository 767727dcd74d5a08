# Targets follow HashiCorp's plugin scaffolding.
.PHONY: build test
build:
	cargo build --release

# The whole test suite; .ci/run calls this.
test:
	cargo test
	python3 -m pytest plugin-tests/lab/tests
