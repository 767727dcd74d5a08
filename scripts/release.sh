#!/usr/bin/env bash
# Builds the GitHub release that `packer init` / `packer plugins install
# github.com/ORG/amazon-chroot` download (PROTOCOL.md §7.3), into dist/:
#
#   packer-plugin-amazon-chroot_v<ver>_x5.0_linux_amd64.zip   holding the binary
#       packer-plugin-amazon-chroot_v<ver>_x5.0_linux_amd64 (mode 0755)
#   packer-plugin-amazon-chroot_v<ver>_x5.0_linux_arm64.zip   (only when the
#       aarch64-unknown-linux-gnu target and a cross linker are installed)
#   packer-plugin-amazon-chroot_v<ver>_SHA256SUMS             sha256sum format
#   packer-plugin-amazon-chroot_v<ver>_manifest.json          {"version":1,"metadata":{"protocol_version":"5.0"}}
#
# Usage: scripts/release.sh [--binary PATH] [--out DIR] [--require-arm64]
#   --binary PATH     package this already built linux/amd64 binary instead of
#                     running `cargo build --release` (tests use the debug build)
#   --out DIR         output directory (default dist/; emptied first)
#   --require-arm64   fail instead of skipping arm64 when it cannot be built
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/plugin-layout.sh"

binary="" out="$root/dist" require_arm64=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --require-arm64) require_arm64=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
if [ -z "$binary" ]; then
  (cd "$root" && cargo build --release --locked --bin "$PLUGIN_BINARY")
  binary="$target_dir/release/$PLUGIN_BINARY"
fi
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }
[ "$(uname -s)" = Linux ] && [ "$(goarch_of "$(uname -m)")" = amd64 ] ||
  { echo "release.sh runs on linux/amd64 (it runs the amd64 binary's describe)" >&2; exit 1; }

version=$(describe_field "$binary" version)
api=$(describe_field "$binary" api_version)
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
[ "$version" = "$cargo_version" ] ||
  { echo "describe says version $version but Cargo.toml says $cargo_version" >&2; exit 1; }
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
  { echo "version $version: packer init installs only plain X.Y.Z releases" >&2; exit 1; }
[ "$api" = x5.0 ] || { echo "api_version $api; Packer needs x5.0" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# A zip holding one executable, with a fixed timestamp so the same binary
# gives the same zip (and checksum).
make_zip() { # ZIP FILE
  python3 - "$1" "$2" <<'PY'
import os, sys, zipfile
zip_path, file_path = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo(os.path.basename(file_path), date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 & 0xFFFF) << 16
info.create_system = 3  # Unix, so the mode bits are honoured on extraction
info.compress_type = zipfile.ZIP_DEFLATED
with open(file_path, "rb") as f, zipfile.ZipFile(zip_path, "w") as z:
    z.writestr(info, f.read())
PY
}

package() { # BINARY GOARCH
  local name="${PLUGIN_BINARY}_v${version}_${api}_linux_$2"
  install -m 0755 "$1" "$stage/$name"
  make_zip "$out/$name.zip" "$stage/$name"
  echo "packaged $out/$name.zip"
}

package "$binary" amd64

arm_target=aarch64-unknown-linux-gnu
arm_linker=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
arm_reason=""
if ! rustup target list --installed 2>/dev/null | grep -qx "$arm_target"; then
  arm_reason="the Rust target $arm_target is not installed (rustup target add $arm_target)"
elif ! command -v "$arm_linker" >/dev/null; then
  arm_reason="no linker $arm_linker (apt-get install gcc-aarch64-linux-gnu)"
fi
if [ -z "$arm_reason" ]; then
  (cd "$root" && CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$arm_linker \
    cargo build --release --locked --target "$arm_target" --bin "$PLUGIN_BINARY")
  package "$target_dir/$arm_target/release/$PLUGIN_BINARY" arm64
elif [ "$require_arm64" = 1 ]; then
  echo "cannot build linux/arm64: $arm_reason" >&2
  exit 1
else
  echo "SKIPPED linux/arm64: $arm_reason" >&2
fi

manifest="${PLUGIN_BINARY}_v${version}_manifest.json"
printf '{"version":1,"metadata":{"protocol_version":"5.0"}}\n' > "$out/$manifest"
(cd "$out" && sha256sum -- *.zip "$manifest" > "${PLUGIN_BINARY}_v${version}_SHA256SUMS")
echo "wrote $out/${PLUGIN_BINARY}_v${version}_SHA256SUMS and $manifest"
