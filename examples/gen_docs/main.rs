//! `make generate`: writes the options tables of the builder's docs page
//! from the option declarations, and the `.web-docs/` copies (see
//! `render.rs`). `--check` only reports files that are out of date.

use std::path::Path;
use std::process::ExitCode;

mod render;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = match render::render(root) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("gen_docs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = 0;
    for (rel, text) in files {
        let path = root.join(&rel);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if check {
            eprintln!("out of date: {} (run `make generate`)", rel.display());
            stale += 1;
            continue;
        }
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("gen_docs: {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("gen_docs: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", rel.display());
    }
    if stale > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
