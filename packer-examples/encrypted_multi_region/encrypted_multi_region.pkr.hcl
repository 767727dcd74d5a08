# An encrypted AMI in three regions. root_volume_encrypt_boot encrypts the
# working volume when it is created (no slow encrypt-by-copy in the build
# region); encrypt_boot plus the KMS keys make the final AMI and its copies
# in ami_regions encrypted with the keys named here. Sharing an encrypted AMI
# (ami_users) needs customer-managed keys, which these are.

packer {
  required_plugins {
    amazon-chroot = {
      source  = "github.com/chroot-builders/amazon-chroot"
      version = ">= 0.1.0"
    }
  }
}

variable "share_with_account" {
  type    = string
  default = "123456789012"
}

source "amazon-chroot" "encrypted" {
  region     = "us-east-1"
  source_ami_filter {
    filters = {
      name                = "al2023-ami-2023.*-x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["amazon"]
    most_recent = true
  }
  ami_name = "encrypted-chroot-{{timestamp}}"

  root_volume_encrypt_boot = true
  root_volume_kms_key_id   = "alias/ami-build"

  encrypt_boot = true
  kms_key_id   = "alias/ami-build"
  ami_regions  = ["eu-west-1", "ap-southeast-2"]
  region_kms_key_ids = {
    "eu-west-1"      = "alias/ami-copies"
    "ap-southeast-2" = "alias/ami-copies"
  }

  ami_users = [var.share_with_account]
  tags = {
    Name       = "encrypted-chroot"
    BaseAMI    = "{{ .SourceAMIName }}"
    BuiltIn    = "{{ .BuildRegion }}"
  }
  snapshot_tags = {
    Name = "encrypted-chroot-root"
  }
}

build {
  sources = ["source.amazon-chroot.encrypted"]

  provisioner "shell" {
    inline = ["dnf -y install nginx && systemctl enable nginx"]
  }
}
