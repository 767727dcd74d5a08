//! `packer-plugin-amazon-chroot`: the plugin binary Packer starts
//! (`describe`, `start builder …`, or no arguments for Packer 1.6).

use std::sync::Arc;

use amazon_chroot::builder::AmazonChrootBuilder;

fn main() -> std::process::ExitCode {
    amazon_chroot::plugin::cli::main(Arc::new(AmazonChrootBuilder::new()))
}
