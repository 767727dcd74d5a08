# Ansible inside the chroot with the ansible-local provisioner: Packer
# uploads the playbook into the chroot and runs ansible-playbook there with
# the local connection, so every task acts on the image, not on the host.
# The remote `ansible` provisioner does not fit this builder: it connects
# over SSH or WinRM, and a chroot build has no instance to connect to.
# Ansible must be installed in the image first (the shell provisioner) and
# may be removed again afterwards.

packer {
  required_plugins {
    amazon-chroot = {
      source  = "github.com/chroot-builders/amazon-chroot"
      version = ">= 0.1.0"
    }
  }
}

source "amazon-chroot" "ansible" {
  region = "us-east-1"
  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["099720109477"]
    most_recent = true
  }
  ami_name = "ubuntu-ansible-chroot-{{timestamp}}"
}

build {
  sources = ["source.amazon-chroot.ansible"]

  # Services must not start inside the chroot: they would keep the volume
  # busy at unmount time (policy-rc.d is honoured by Debian and Ubuntu).
  provisioner "shell" {
    inline = [
      "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d",
      "chmod 0755 /usr/sbin/policy-rc.d",
      "DEBIAN_FRONTEND=noninteractive apt-get update",
      "DEBIAN_FRONTEND=noninteractive apt-get install -y ansible-core",
    ]
  }

  provisioner "ansible-local" {
    playbook_file = "${path.root}/playbook.yml"
  }

  provisioner "shell" {
    inline = [
      "DEBIAN_FRONTEND=noninteractive apt-get purge -y ansible-core",
      "apt-get clean",
      "rm -f /usr/sbin/policy-rc.d",
    ]
  }
}
