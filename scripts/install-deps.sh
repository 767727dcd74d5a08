#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on Debian/Ubuntu, as root,
# skipping whatever is already there (the same packages .ci/run installs).
# The Rust toolchain is not installed here: see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null ||
  { echo "cargo not found: install Rust >= 1.94.1 first (see README.md)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (apt, loop devices, mounts)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt_packages=(
  packer            # Debian's Packer 1.6.6: the real Packer the tests and the demo use
  busybox-static    # the lab's source images
  golang-go         # real encoding/gob peer for the gob tests
  protobuf-compiler # real protobuf peer for the spec tests
  golang-github-zclconf-go-cty-dev # real go-cty for the cty JSON tests
  e2fsprogs fdisk util-linux parted kmod
  bsdutils          # script(1): a terminal for Packer in the -debug/-on-error=ask tests
  python3 python3-pip
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# A python3 outside dpkg (pyenv, a venv) brings its own pip.
if [ -x "$(command -v python3)" ] && python3 -m pip --version >/dev/null 2>&1; then
  missing=("${missing[@]/python3-pip}")
  missing=("${missing[@]/python3}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import moto, boto3, pytest' 2>/dev/null; then
  echo "installing Python packages from plugin-tests/lab/requirements.txt"
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
  python3 -m pip install -q -r plugin-tests/lab/requirements.txt 2>/dev/null ||
    python3 -m pip install -q --break-system-packages -r plugin-tests/lab/requirements.txt
fi
modprobe loop 2>/dev/null || true
