# Building on a Nitro instance (c5, m5, t3, m7g, ...), where EBS volumes
# appear as NVMe devices (/dev/nvme1n1) whatever name they were attached
# as. No nvme_device_path or device_path is needed: this plugin finds the
# attached volume's device by its volume id
# (/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol...) and waits for
# the partition node. HashiCorp's builder needed both options set by hand
# and could not run two builds at once on such a host.

packer {
  required_plugins {
    amazon-chroot = {
      source  = "github.com/chroot-builders/amazon-chroot"
      version = ">= 0.1.0"
    }
  }
}

source "amazon-chroot" "nitro" {
  region = "us-east-1"
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }
  ami_name    = "debian-nitro-chroot-{{timestamp}}"
  ena_support = true
  boot_mode   = "uefi-preferred"
}

build {
  sources = ["source.amazon-chroot.nitro"]

  provisioner "shell" {
    inline = [
      "echo 'device: ${build.Device}, mounted at ${build.MountPath} on the host' > /etc/packer-build-info",
    ]
  }
}
