//! The amazon-chroot builder: configuration, validation and the step pipeline.

pub mod config;
pub mod runner;
pub mod template;
