//! The committed docs are what `make generate` produces from the option
//! declarations: a changed option without regenerated docs fails here.

use std::path::Path;

#[path = "../examples/gen_docs/render.rs"]
mod render;

#[test]
fn generated_docs_are_up_to_date_with_the_option_declarations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = render::render(root).unwrap_or_else(|e| panic!("{e}"));
    let mut stale = Vec::new();
    for (rel, expected) in &files {
        let actual = std::fs::read_to_string(root.join(rel)).unwrap_or_default();
        if &actual != expected {
            stale.push(rel.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date with src/builder/config (run `make generate` and commit): {stale:?}"
    );
}

#[test]
fn builder_page_lists_every_declared_option() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join(render::BUILDER_PAGE)).unwrap();
    for name in amazon_chroot::builder::config::config_spec().0.keys() {
        if name.starts_with("packer_") {
            continue;
        }
        assert!(
            page.contains(&format!("| `{name}` |")),
            "{name} missing from the options tables"
        );
    }
}

#[test]
fn splice_replaces_only_the_text_between_the_markers() {
    let page = format!(
        "head\n{}\nold tables\n{}\ntail\n",
        render::BEGIN,
        render::END
    );
    let out = render::splice_options(&page, "| new |\n").unwrap();
    assert_eq!(
        out,
        format!(
            "head\n{}\n\n| new |\n{}\ntail\n",
            render::BEGIN,
            render::END
        )
    );
    assert!(render::splice_options("no markers", "x").is_err());
}

#[test]
fn web_component_drops_front_matter_and_top_heading() {
    let page = "---\npage_title: x\n---\n\n# Title\n\nType: `amazon-chroot`\n";
    assert_eq!(
        render::web_component(page).unwrap(),
        "Type: `amazon-chroot`\n"
    );
}
