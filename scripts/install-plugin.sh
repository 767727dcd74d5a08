#!/usr/bin/env bash
# Installs a built plugin binary exactly as `packer plugins install --path
# BINARY github.com/ORG/amazon-chroot` (Packer >= 1.10) would, and also under
# the legacy name Packer 1.6 looks for.
#
# Usage: scripts/install-plugin.sh BINARY ORG [--plugin-dir DIR] [--legacy-dir DIR|--no-legacy]
#
#   <plugin dir>/github.com/ORG/amazon-chroot/
#       packer-plugin-amazon-chroot_v<version>_x5.0_linux_<arch>          (0755)
#       packer-plugin-amazon-chroot_v<version>_x5.0_linux_<arch>_SHA256SUM (0644,
#           lower-case hex SHA-256 of the binary, no newline)
#   <legacy dir>/packer-builder-amazon-chroot                              (0755)
#
# <plugin dir> follows Packer's rules (PACKER_PLUGIN_PATH, PACKER_CONFIG_DIR,
# ~/.packer.d, XDG_CONFIG_HOME, ~/.config/packer); the legacy dir defaults
# to ~/.packer.d/plugins, one of the folders Packer 1.6 searches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/plugin-layout.sh"

if [ $# -lt 2 ]; then
  sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
binary=$1 org=$2
shift 2
plugin_dir=$(packer_plugin_dir)
legacy_dir="$HOME/.packer.d/plugins"
while [ $# -gt 0 ]; do
  case "$1" in
    --plugin-dir) plugin_dir=$2; shift 2 ;;
    --legacy-dir) legacy_dir=$2; shift 2 ;;
    --no-legacy) legacy_dir=""; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if ! [[ $org =~ ^[A-Za-z0-9-]+$ ]]; then
  echo "ORG must be letters, digits and dashes (got '$org')" >&2
  exit 2
fi

version=$(packer_version_of "$(describe_field "$binary" version)")
api=$(describe_field "$binary" api_version)
[ "$api" = x5.0 ] || { echo "describe says api_version $api; Packer needs x5.0" >&2; exit 1; }
arch=$(goarch_of "$(uname -m)")

dest_dir="$plugin_dir/github.com/$org/$PLUGIN_NAME"
dest="$dest_dir/${PLUGIN_BINARY}_v${version}_${api}_linux_${arch}"
mkdir -p "$dest_dir"
# Copy to a temporary name first: a running Packer never sees a half-written binary.
install -m 0755 "$binary" "$dest.tmp"
mv -f "$dest.tmp" "$dest"
sha256sum "$dest" | cut -d' ' -f1 | tr -d '\n' > "${dest}_SHA256SUM"
chmod 0644 "${dest}_SHA256SUM"
echo "installed $dest (+ _SHA256SUM)"

if [ -n "$legacy_dir" ]; then
  mkdir -p "$legacy_dir"
  install -m 0755 "$binary" "$legacy_dir/$LEGACY_BINARY.tmp"
  mv -f "$legacy_dir/$LEGACY_BINARY.tmp" "$legacy_dir/$LEGACY_BINARY"
  echo "installed $legacy_dir/$LEGACY_BINARY (Packer 1.6)"
fi
