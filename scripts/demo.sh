#!/usr/bin/env bash
# `make demo`: a real `packer build` of packer-examples/basic in the local EC2
# lab (plugin-tests/lab: a local EC2 API, instance metadata, and EBS volumes
# emulated with loop devices), then the new AMI and what its snapshot holds.
# The lab is stopped and everything it made removed, also on failure or Ctrl-C.
#
# Usage: scripts/demo.sh PLUGIN_BINARY ORG
# Needs root, Packer (Debian's `packer` 1.6.6 or Packer >= 1.7 as $PACKER),
# python3 with plugin-tests/lab/requirements.txt, busybox-static, e2fsprogs,
# util-linux. Nothing leaves this machine: the lab listens on 127.0.0.1 only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/plugin-layout.sh"

binary=$(realpath "$1") org=$2
PACKER=${PACKER:-packer}
labctl() { python3 "$root/plugin-tests/lab/labctl" "$@"; }
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the lab makes loop devices and the build mounts them"
command -v "$PACKER" >/dev/null || die "no Packer: apt-get install packer (or set PACKER=/path/to/packer)"
python3 -c 'import moto, boto3' 2>/dev/null ||
  die "python3 -m pip install -r plugin-tests/lab/requirements.txt (moto, boto3)"
[ -x "$binary" ] || die "no plugin binary at $binary (make build)"

work=$(mktemp -d /var/tmp/amazon-chroot-demo.XXXXXX)
lab="demo-$$"
mounted=""
cleanup() {
  local status=$?
  set +e
  trap - INT TERM
  if [ -n "$mounted" ]; then labctl umount --name "$lab" "$mounted" >/dev/null; fi
  say "Stopping the lab"
  labctl leaks --name "$lab" 2>/dev/null | sed "s/^/  lab leak report: /"
  labctl stop --name "$lab" >/dev/null && echo "  lab $lab stopped; its volumes, snapshots, loop devices and /dev nodes removed"
  if grep -q " $work" /proc/mounts; then
    echo "  WARNING: still mounted below $work:" && grep " $work" /proc/mounts
    status=1
  elif losetup -a | grep -q "$work"; then
    echo "  WARNING: loop devices left:" && losetup -a | grep "$work"
    status=1
  else
    rm -rf "$work"
    echo "  nothing left behind"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Starting the EC2 lab ($lab)"
labctl start --name "$lab" --state-dir "$work/lab"
eval "$(labctl env --name "$lab")"

say "Registering a small source AMI (busybox root filesystem, one MBR partition)"
source_ami=$(python3 "$root/plugin-tests/lab/images/register-source-ami" --layout partitioned | tail -n1)
echo "  source AMI: $source_ami"

project="$work/project"
mkdir -p "$project" "$work/home"
template=basic.pkr.hcl
packer_version=$("$PACKER" version | sed -n 's/^Packer v\([0-9.]*\).*/\1/p' | head -n1)
case "$packer_version" in
  1.[0-6].*)
    # Packer 1.6: no required_plugins; the legacy name in the working
    # directory is found first (and wins over 1.6's builtin amazon-chroot).
    python3 "$here/packer16-template.py" "$root/packer-examples/basic/$template" "$project/$template"
    install -m 0755 "$binary" "$project/$LEGACY_BINARY"
    echo "  Packer $packer_version: plugin installed as $project/$LEGACY_BINARY"
    ;;
  *)
    # Packer >= 1.7: the installed layout, as `packer plugins install --path`.
    sed "s#github.com/chroot-builders/amazon-chroot#github.com/$org/amazon-chroot#" \
      "$root/packer-examples/basic/$template" > "$project/$template"
    "$here/install-plugin.sh" "$binary" "$org" --plugin-dir "$work/plugins" --no-legacy
    export PACKER_PLUGIN_PATH="$work/plugins"
    ;;
esac

say "packer build $template (Packer $packer_version)"
started=$(date +%s)
(
  cd "$project"
  HOME="$work/home" CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$work/cache" \
    "$PACKER" build -color=false \
      -var "region=$AWS_REGION" \
      -var "source_ami_name=lab-source-busybox-partitioned-*" \
      -var "source_ami_owner=self" \
      "$template"
) 2>&1 | tee "$work/build.log"
[ "${PIPESTATUS[0]}" = 0 ] || die "packer build failed (log above)"
echo "  build took $(( $(date +%s) - started )) s"

ami=$(grep -oE "$AWS_REGION: ami-[0-9a-f]+" "$work/build.log" | tail -n1 | cut -d' ' -f2)
[ -n "$ami" ] || die "no AMI id in Packer's output"

say "The new AMI"
python3 - "$ami" <<'PY'
import os, sys, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"], region_name=os.environ["AWS_REGION"])
image = ec2.describe_images(ImageIds=[sys.argv[1]])["Images"][0]
print(f"  {image['ImageId']}  {image['Name']!r}  state={image['State']}")
print(f"  description: {image.get('Description', '')!r}")
print(f"  {image['VirtualizationType']}, {image['Architecture']}, root {image['RootDeviceName']}")
for m in image["BlockDeviceMappings"]:
    ebs = m.get("Ebs", {})
    print(f"  {m['DeviceName']}: snapshot {ebs.get('SnapshotId')} {ebs.get('VolumeSize')} GiB {ebs.get('VolumeType', '')}")
for t in sorted(image.get("Tags", []), key=lambda t: t["Key"]):
    print(f"  tag {t['Key']} = {t['Value']}")
PY

say "Inside its snapshot"
mounted="$work/snapshot"
labctl mount-ami --name "$lab" "$ami" "$mounted"
echo "  / of the image:"
ls -l "$mounted" | sed 's/^/    /'
echo "  /etc/packer-build-info (written by the shell provisioner in the chroot):"
sed 's/^/    /' "$mounted/etc/packer-build-info"
if [ -L "$mounted/etc/resolv.conf" ]; then
  echo "  /etc/resolv.conf is still the image's own symlink (HashiCorp's builder deletes it):"
  echo "    /etc/resolv.conf -> $(readlink "$mounted/etc/resolv.conf")"
else
  echo "  /etc/resolv.conf: $(ls -ld "$mounted/etc/resolv.conf" 2>&1)"
fi
labctl umount --name "$lab" "$mounted" >/dev/null
mounted=""
