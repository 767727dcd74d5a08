//! The amazon-chroot builder: configuration, validation and the step pipeline.

pub mod runner;
