//! Real-peer check of `decode_cty_json`: documents written by the real go-cty
//! (`ctyjson.Marshal(value, cty.DynamicPseudoType)`, as Packer does for
//! `Builder.Prepare`) through `plugin-tests/ctypeer`, decoded by us.
//!
//! Needs `apt-get install -y golang-go golang-github-zclconf-go-cty-dev`
//! (Go in GOPATH mode over Debian's packaged cty sources); the test fails,
//! not skips, without them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use amazon_chroot::plugin::cty::decode_cty_json;
use serde_json::{json, Value};

/// Debian installs Go library sources here, GOPATH-style.
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// `case name → document` as printed by the Go program.
fn documents_from_real_cty() -> BTreeMap<String, String> {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugin-tests/ctypeer/main.go");
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let output = Command::new("go")
        .arg("run")
        .arg(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", DEBIAN_GOPATH)
        .env("GOCACHE", scratch.join("go-build-cache"))
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run `go` ({err}): install the Go toolchain with `apt-get install -y golang-go`")
        });
    assert!(
        output.status.success(),
        "`go run` of {} failed (is `golang-github-zclconf-go-cty-dev` installed?): {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|line| {
            let (name, document) = line.split_once('\t').expect("name<TAB>document");
            (name.to_owned(), document.to_owned())
        })
        .collect()
}

#[test]
fn decodes_what_real_cty_marshals() {
    let documents = documents_from_real_cty();
    let expected: BTreeMap<&str, Value> = BTreeMap::from([
        (
            "protocol_example",
            json!({"count": 3, "disk": [{"size": 10}], "name": "bar", "tags": {"a": "b"}}),
        ),
        (
            "strings",
            json!({
                "empty": "",
                "escapes": "quote \" backslash \\ newline \n tab \t",
                "html": "<b> & </b>",
                "unicode": "é ✓ 𝄞",
            }),
        ),
        (
            "numbers",
            json!({
                "half": 0.5,
                "huge": 1.2345678901234568e29,
                "negative": -42,
                "small": 3,
                "third": 1.0 / 3.0,
                "tiny": 1e-7,
                "u64": 12_345_678_901_234_567_890u64,
                "zero": 0,
            }),
        ),
        ("bools", json!({"no": false, "yes": true})),
        (
            "nulls",
            json!({"block": null, "dynamic": null, "list": null, "number": null, "string": null}),
        ),
        (
            "collections",
            json!({
                "empty_list": [],
                "empty_map": {},
                "labelled": {"first": {"v": "1"}},
                "map_of_list": {"k": [1, 2]},
                "nested_list": [["x"], []],
                "object_in_object": {"inner": {"deep": true}},
                "set": ["a", "b"],
                "tuple": ["a", 1, false],
            }),
        ),
        (
            "nested_dynamic",
            json!({"any": {"l": ["x"], "n": 1}, "list": ["s"], "name": "n"}),
        ),
        ("empty_body", json!({})),
    ]);
    assert_eq!(
        documents.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>()
    );
    for (name, want) in expected {
        let decoded = decode_cty_json(documents[name].as_bytes())
            .unwrap_or_else(|err| panic!("{name}: {err}\n{}", documents[name]));
        assert_eq!(Value::Object(decoded), want, "{name}");
    }
    // Integer-valued numbers stay integers (not 3.0), as a Go plugin sees them.
    let numbers = decode_cty_json(documents["numbers"].as_bytes()).unwrap();
    assert!(numbers["small"].is_i64() && numbers["u64"].is_u64() && numbers["huge"].is_f64());
}
