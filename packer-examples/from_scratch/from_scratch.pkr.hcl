# An AMI built from an empty volume: partitioned and formatted by
# pre_mount_commands on the host, filled with Debian by debootstrap in
# post_mount_commands (the empty volume has no /bin/sh yet, so the
# provisioners can only run once something is installed), then provisioned
# in the chroot. Needs parted, e2fsprogs and debootstrap on the build host.

packer {
  required_plugins {
    amazon-chroot = {
      source  = "github.com/chroot-builders/amazon-chroot"
      version = ">= 0.1.0"
    }
  }
}

source "amazon-chroot" "scratch" {
  region       = "us-east-1"
  from_scratch = true
  ami_name     = "debian-from-scratch-{{timestamp}}"

  ami_virtualization_type = "hvm"
  ami_architecture        = "x86_64"
  root_device_name        = "/dev/xvda"
  root_volume_size        = 8
  root_volume_type        = "gp3"

  # {{.Device}} is the attached volume's device on this host.
  pre_mount_commands = [
    "parted -s {{.Device}} mklabel msdos mkpart primary ext4 1MiB 100% set 1 boot on",
    "partprobe {{.Device}} || true",
    "mkfs.ext4 -q -L rootfs {{.Device}}1",
  ]
  mount_partition = "1"

  # {{.MountPath}} is where that partition is mounted on the host.
  post_mount_commands = [
    "debootstrap --variant=minbase bookworm {{.MountPath}} http://deb.debian.org/debian",
  ]

  ami_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_type           = "gp3"
    volume_size           = 8
    delete_on_termination = true
  }
}

build {
  sources = ["source.amazon-chroot.scratch"]

  provisioner "shell" {
    inline = [
      "echo 'LABEL=rootfs / ext4 defaults 0 1' > /etc/fstab",
      "echo scratch > /etc/hostname",
    ]
  }
}
