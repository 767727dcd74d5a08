# Metadata of the integration for Packer's integrations site
# (https://github.com/hashicorp/integration-template#metadata-configuration).
# `make generate` writes the README.md files beside it from docs/.
integration {
  name        = "Amazon chroot"
  description = "Builds EBS-backed AMIs in a chroot on a running EC2 instance, without launching a build instance."
  identifier  = "packer/chroot-builders/amazon-chroot"
  component {
    type = "builder"
    name = "Amazon chroot"
    slug = "amazon-chroot"
  }
}
