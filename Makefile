# Targets follow HashiCorp's plugin scaffolding (build, dev, test, testacc,
# generate), plus release and demo. Run as root on Linux; see README.md.

NAME    := amazon-chroot
BINARY  := packer-plugin-$(NAME)
# GitHub organisation of the plugin source github.com/$(ORG)/amazon-chroot,
# i.e. the repository github.com/$(ORG)/packer-plugin-amazon-chroot.
ORG     ?= chroot-builders
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n1)
# Cargo profile of `build`, `dev` and `demo`: `dev` (debug, quick to build
# after `make test`) or `release` (optimised; ~10 min from scratch on 2 cores).
PROFILE ?= dev
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
PROFILE_DIR := $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
PLUGIN_BIN := $(TARGET_DIR)/$(PROFILE_DIR)/$(BINARY)
PYTHON  ?= python3
# Where `dev` puts packer-builder-amazon-chroot for Packer 1.6 (one of the
# folders 1.6 searches).
LEGACY_PLUGIN_DIR ?= $(HOME)/.packer.d/plugins

.PHONY: deps build dev test testacc bench generate release demo clean

## deps: install what test and demo need (Debian/Ubuntu packages, Python
##   packages), skipping what is installed; needs root and cargo
deps:
	scripts/install-deps.sh

## build: compile the plugin binary ($(PLUGIN_BIN))
build:
	cargo build --profile $(PROFILE) --bin $(BINARY)

## dev: build and install it where Packer finds it, as
##   `packer plugins install --path $(PLUGIN_BIN) github.com/$(ORG)/$(NAME)`
##   would, plus $(LEGACY_PLUGIN_DIR)/packer-builder-$(NAME) for Packer 1.6
dev: build
	scripts/install-plugin.sh $(PLUGIN_BIN) $(ORG) --legacy-dir $(LEGACY_PLUGIN_DIR)

## test: the whole suite (.ci/run calls this): `cargo test` (which includes
##   the end-to-end builds in the EC2 lab, tests/e2e_lab.rs), then the lab's
##   own tests (its e2e files are left out there: cargo test just ran them with
##   the freshly built plugin)
test: deps
	cargo test
	$(PYTHON) -m pytest -q -p no:cacheprovider plugin-tests/lab/tests \
	  --ignore-glob='*/test_plugin_e2e*.py'

## testacc: only the end-to-end builds (real Packer, our plugin, the EC2 lab)
testacc: deps
	cargo test --test e2e_lab -- --nocapture

## bench: time the same build with HashiCorp's builtin amazon-chroot
##   (packer 1.6.6) and with this plugin in one EC2 lab, and print the ratio;
##   BENCH_ARGS="--runs 5 --polling fast" to change it (PROFILE=release for
##   an optimised plugin)
bench: deps build
	PLUGIN_BIN=$(PLUGIN_BIN) $(PYTHON) plugin-tests/lab/bench/compare_builders.py $(BENCH_ARGS)

## generate: regenerate the options tables in docs/ and the .web-docs/ copies
generate:
	cargo run --quiet --example gen_docs

## release: dist/ as `packer init` downloads it (zips, SHA256SUMS, manifest)
release:
	scripts/release.sh --out dist

## demo: EC2 lab up, plugin built, `packer build` of packer-examples/basic,
##   the new AMI and its snapshot's contents shown, lab torn down
demo: deps build
	scripts/demo.sh $(PLUGIN_BIN) $(ORG)

clean:
	cargo clean
	rm -rf dist
