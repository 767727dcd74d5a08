//! What `make generate` writes, computed without writing: shared by the
//! generator (`examples/gen_docs/main.rs`) and the test that fails when the
//! committed docs are out of date (`tests/generated_docs.rs`).
//!
//! - `docs/builders/amazon-chroot.mdx`: the options tables between
//!   [`BEGIN`] and [`END`] come from `options_markdown()`, i.e. from the
//!   option declarations; the rest of the page is hand-written.
//! - `.web-docs/`: what HashiCorp's integrations tooling
//!   (`packer-sdc renderdocs` + `compile-to-webdocs.sh`) makes of `docs/`:
//!   `README.md` copied, each component page without its front matter and
//!   its top heading, at `components/<type>/<slug>/README.md`.

use std::path::{Path, PathBuf};

use amazon_chroot::builder::config::options_markdown;

/// Marks the start of the generated tables in the builder page.
pub const BEGIN: &str =
    "<!-- BEGIN GENERATED OPTIONS: `make generate` writes this part from src/builder/config/options.rs -->";
/// Marks their end.
pub const END: &str = "<!-- END GENERATED OPTIONS -->";

/// The builder's docs page, relative to the repository root.
pub const BUILDER_PAGE: &str = "docs/builders/amazon-chroot.mdx";

/// Why the docs cannot be rendered.
#[derive(Debug)]
pub struct RenderError(pub String);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every generated file (path relative to `root`, full content).
pub fn render(root: &Path) -> Result<Vec<(PathBuf, String)>, RenderError> {
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel)).map_err(|e| RenderError(format!("{rel}: {e}")))
    };
    let page = splice_options(&read(BUILDER_PAGE)?, &options_markdown())?;
    let web_page = web_component(&page)?;
    Ok(vec![
        (PathBuf::from(BUILDER_PAGE), page),
        (
            PathBuf::from(".web-docs/README.md"),
            read("docs/README.md")?,
        ),
        (
            PathBuf::from(".web-docs/components/builder/amazon-chroot/README.md"),
            web_page,
        ),
    ])
}

/// `page` with the text between the markers replaced by `tables`.
pub fn splice_options(page: &str, tables: &str) -> Result<String, RenderError> {
    let missing = |m: &str| RenderError(format!("{BUILDER_PAGE}: marker line missing: {m}"));
    let start = page.find(BEGIN).ok_or_else(|| missing(BEGIN))? + BEGIN.len();
    let end = page[start..].find(END).ok_or_else(|| missing(END))? + start;
    Ok(format!(
        "{}\n\n{}\n{}",
        &page[..start],
        tables.trim_end(),
        &page[end..]
    ))
}

/// An MDX component page as the integrations site wants it: no YAML front
/// matter, no top `# ` heading (the site adds its own).
pub fn web_component(page: &str) -> Result<String, RenderError> {
    let bad = |why: &str| RenderError(format!("{BUILDER_PAGE}: {why}"));
    let rest = page
        .strip_prefix("---\n")
        .ok_or_else(|| bad("does not start with front matter (---)"))?;
    let close = rest
        .find("\n---\n")
        .ok_or_else(|| bad("front matter is not closed by ---"))?;
    let body = rest[close + "\n---\n".len()..].trim_start_matches('\n');
    let body = body
        .strip_prefix("# ")
        .and_then(|b| b.split_once('\n'))
        .map(|(_, after)| after.trim_start_matches('\n'))
        .ok_or_else(|| bad("no `# ` heading right after the front matter"))?;
    Ok(body.to_string())
}
