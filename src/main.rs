//! `packer-plugin-amazon-chroot`: the plugin binary Packer starts.

fn main() -> std::process::ExitCode {
    eprintln!("not yet wired");
    std::process::ExitCode::FAILURE
}
