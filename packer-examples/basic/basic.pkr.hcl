# The smallest useful amazon-chroot build: the newest Ubuntu AMI (by
# source_ami_filter) plus one shell provisioner, run on an EC2 instance.
#   packer init . && packer build .
# `make demo` builds this same template in the local EC2 lab, with the
# variables pointing at the lab's busybox source image.

packer {
  required_plugins {
    amazon-chroot = {
      source  = "github.com/chroot-builders/amazon-chroot"
      version = ">= 0.1.0"
    }
  }
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "source_ami_name" {
  type    = string
  default = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
}

variable "source_ami_owner" {
  type    = string
  default = "099720109477" # Canonical
}

source "amazon-chroot" "basic" {
  region = var.region
  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }
  ami_name        = "amazon-chroot-basic-{{timestamp}}"
  ami_description = "{{ .SourceAMIName }} plus a shell provisioner, built in a chroot"
  tags = {
    Name      = "amazon-chroot-basic"
    SourceAMI = "{{ .SourceAMI }}"
  }
}

build {
  sources = ["source.amazon-chroot.basic"]

  # Runs inside the chroot: / is the new AMI's root filesystem.
  provisioner "shell" {
    inline = [
      "echo 'built by packer-plugin-amazon-chroot' > /etc/packer-build-info",
      "echo 'source AMI: ${build.SourceAMI}' >> /etc/packer-build-info",
      "echo \"kernel seen in the chroot: $(uname -r)\" >> /etc/packer-build-info",
    ]
  }
}
