# Shared by install-plugin.sh and release.sh (sourced, not run): names and
# places Packer uses for plugins (PROTOCOL.md §7). No side effects.

PLUGIN_NAME=amazon-chroot
PLUGIN_BINARY=packer-plugin-${PLUGIN_NAME}
LEGACY_BINARY=packer-builder-${PLUGIN_NAME}

# Go's GOARCH for a machine name (uname -m or a Rust target's first field).
goarch_of() {
  case "$1" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) echo "unsupported architecture: $1" >&2; return 1 ;;
  esac
}

# The plugin directory Packer >= 1.11 reads (PROTOCOL.md §7.1); 1.7-1.10
# find plugins there too.
packer_plugin_dir() {
  if [ -n "${PACKER_PLUGIN_PATH:-}" ]; then
    case "$PACKER_PLUGIN_PATH" in
      *:*) echo "PACKER_PLUGIN_PATH holds a list; Packer >= 1.11 accepts only one directory" >&2; return 1 ;;
    esac
    echo "$PACKER_PLUGIN_PATH"
  elif [ -n "${PACKER_CONFIG_DIR:-}" ]; then
    echo "$PACKER_CONFIG_DIR/.packer.d/plugins"
  elif [ -d "$HOME/.packer.d" ]; then
    echo "$HOME/.packer.d/plugins"
  elif [ -n "${XDG_CONFIG_HOME:-}" ]; then
    echo "$XDG_CONFIG_HOME/packer/plugins"
  else
    echo "$HOME/.config/packer/plugins"
  fi
}

# Field FIELD of the binary's `describe` JSON.
describe_field() {
  "$1" describe | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# The version as Packer writes it in file names: semver without build
# metadata; refuses what `packer plugins install` refuses (a pre-release
# other than -dev).
packer_version_of() {
  local v=${1%%+*}
  if ! [[ $v =~ ^[0-9]+\.[0-9]+\.[0-9]+(-dev)?$ ]]; then
    echo "version $1 is not one Packer installs (X.Y.Z or X.Y.Z-dev)" >&2
    return 1
  fi
  echo "$v"
}
