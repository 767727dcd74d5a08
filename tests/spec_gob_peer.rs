//! Real-peer checks of our gob encoders: Go's own `encoding/gob` (via the
//! small stdlib-only program in `plugin-tests/gobpeer`) decodes the bytes into
//! mirrors of Packer's types and prints them; we compare the text.
//!
//! Needs the Go toolchain (`apt-get install -y golang-go`); the tests fail,
//! not skip, without it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use amazon_chroot::plugin::spec::gob::{encode_command_finished, encode_object_spec, GobFlavor};
use amazon_chroot::plugin::spec::{CtyType, ObjectSpec, Spec};

/// Builds the Go peer once per test process into Cargo's per-target scratch
/// directory (inside `target/`, so nothing is left elsewhere).
fn gob_peer() -> &'static PathBuf {
    static PEER: OnceLock<PathBuf> = OnceLock::new();
    PEER.get_or_init(|| {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugin-tests/gobpeer/main.go");
        let binary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gobpeer");
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache");
        let status = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            // CI may run without HOME: give go its own writable places.
            .env("GOCACHE", &cache)
            .env("GOPATH", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gopath"))
            .env("GO111MODULE", "off")
            .status()
            .unwrap_or_else(|err| {
                panic!("cannot run `go` ({err}): install the Go toolchain with `apt-get install -y golang-go`")
            });
        assert!(status.success(), "`go build` of {} failed", source.display());
        binary
    })
}

/// Runs the peer on `bytes`; Ok(stdout) or Err(stderr).
fn run_peer(args: &[&str], bytes: &[u8]) -> Result<String, String> {
    let mut child = Command::new(gob_peer())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gobpeer");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(bytes)
        .expect("write to gobpeer");
    let output = child.wait_with_output().expect("wait for gobpeer");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("utf-8 output"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn decode_spec(spec: &ObjectSpec, flavor: GobFlavor) -> String {
    let arg = match flavor {
        GobFlavor::Module => "module",
        GobFlavor::Vendored => "vendored",
    };
    run_peer(&["spec", arg], &encode_object_spec(spec, flavor))
        .unwrap_or_else(|err| panic!("Go could not decode our {arg} ObjectSpec: {err}"))
}

/// The text gobpeer prints for `spec`, rendered from our model (not from the
/// bytes), so equality means Go decoded exactly what we meant.
fn expected_text(spec: &ObjectSpec) -> String {
    fn ty(t: &CtyType) -> String {
        match t {
            CtyType::String => "string".into(),
            CtyType::Number => "number".into(),
            CtyType::Bool => "bool".into(),
            CtyType::List(e) => format!("list({})", ty(e)),
            CtyType::Map(e) => format!("map({})", ty(e)),
        }
    }
    fn object(spec: &ObjectSpec, indent: &str) -> String {
        let mut out = String::from("object {\n");
        for (key, entry) in &spec.0 {
            let inner = format!("{indent}  ");
            let text = match entry {
                Spec::Attr {
                    name,
                    ty: t,
                    required,
                } => {
                    format!("attr name={name:?} type={} required={required}", ty(t))
                }
                Spec::Block {
                    type_name,
                    nested,
                    required,
                } => format!(
                    "block type_name={type_name:?} required={required} nested={}",
                    object(nested, &inner)
                ),
                Spec::BlockList {
                    type_name,
                    nested,
                    min_items,
                    max_items,
                } => format!(
                    "block_list type_name={type_name:?} min={min_items} max={max_items} nested={}",
                    object(nested, &inner)
                ),
            };
            out.push_str(&format!("{indent}  {key:?}: {text}\n"));
        }
        out.push_str(indent);
        out.push('}');
        out
    }
    object(spec, "") + "\n"
}

fn attr(name: &str, ty: CtyType, required: bool) -> (String, Spec) {
    (
        name.to_owned(),
        Spec::Attr {
            name: name.to_owned(),
            ty,
            required,
        },
    )
}

fn object(entries: Vec<(String, Spec)>) -> ObjectSpec {
    ObjectSpec(entries.into_iter().collect::<BTreeMap<_, _>>())
}

fn list(t: CtyType) -> CtyType {
    CtyType::List(Box::new(t))
}

fn map(t: CtyType) -> CtyType {
    CtyType::Map(Box::new(t))
}

/// Every spec kind and type form we encode, nested a few levels.
fn rich_spec() -> ObjectSpec {
    let disk = object(vec![
        attr("size", CtyType::Number, true),
        attr("encrypted", CtyType::Bool, false),
    ]);
    let launch = object(vec![
        attr("device_name", CtyType::String, false),
        (
            "disk".into(),
            Spec::BlockList {
                type_name: "disk".into(),
                nested: disk.clone(),
                min_items: 0,
                max_items: 0,
            },
        ),
    ]);
    object(vec![
        attr("ami_name", CtyType::String, true),
        attr("count", CtyType::Number, false),
        attr("ena_support", CtyType::Bool, false),
        attr("mount_options", list(CtyType::String), false),
        attr("tags", map(CtyType::String), false),
        attr("chroot_mounts", list(list(CtyType::String)), false),
        attr("weights", map(list(CtyType::Number)), false),
        attr("flags", list(map(CtyType::Bool)), false),
        (
            "launch_block_device_mappings".into(),
            Spec::BlockList {
                type_name: "launch_block_device_mappings".into(),
                nested: launch,
                min_items: 1,
                max_items: 70000,
            },
        ),
        (
            "source_ami_filter".into(),
            Spec::Block {
                type_name: "source_ami_filter".into(),
                nested: object(vec![
                    attr("owners", list(CtyType::String), true),
                    attr("most_recent", CtyType::Bool, false),
                ]),
                required: true,
            },
        ),
        (
            "empty_block".into(),
            Spec::Block {
                type_name: "empty_block".into(),
                nested: ObjectSpec::default(),
                required: false,
            },
        ),
        (
            "bounded".into(),
            Spec::BlockList {
                type_name: "bounded".into(),
                nested: disk,
                min_items: -1,
                max_items: 3,
            },
        ),
    ])
}

#[test]
fn go_decodes_a_single_required_string_attribute() {
    let spec = object(vec![attr("foo", CtyType::String, true)]);
    assert_eq!(
        decode_spec(&spec, GobFlavor::Module),
        "object {\n  \"foo\": attr name=\"foo\" type=string required=true\n}\n"
    );
}

#[test]
fn go_decodes_an_empty_object_spec() {
    assert_eq!(
        decode_spec(&ObjectSpec::default(), GobFlavor::Module),
        "object {\n}\n"
    );
}

#[test]
fn go_decodes_nested_blocks_in_both_flavours() {
    let spec = object(vec![(
        "disk".into(),
        Spec::BlockList {
            type_name: "disk".into(),
            nested: object(vec![attr("size", CtyType::Number, false)]),
            min_items: 0,
            max_items: 2,
        },
    )]);
    let expected =
        "object {\n  \"disk\": block_list type_name=\"disk\" min=0 max=2 nested=object {\n    \
                    \"size\": attr name=\"size\" type=number required=false\n  }\n}\n";
    assert_eq!(expected_text(&spec), expected);
    assert_eq!(decode_spec(&spec, GobFlavor::Module), expected);
    assert_eq!(decode_spec(&spec, GobFlavor::Vendored), expected);
}

#[test]
fn go_decodes_every_spec_kind_and_type_form() {
    let spec = rich_spec();
    for flavor in [GobFlavor::Module, GobFlavor::Vendored] {
        assert_eq!(
            decode_spec(&spec, flavor),
            expected_text(&spec),
            "{flavor:?}"
        );
    }
}

#[test]
fn go_decodes_long_names_and_many_entries() {
    // >127 entries and >255-byte strings need multi-byte gob lengths.
    let long = "x".repeat(300);
    let mut entries: Vec<(String, Spec)> = (0..200)
        .map(|i| {
            attr(
                &format!("attribute_{i:03}"),
                if i % 2 == 0 {
                    CtyType::String
                } else {
                    map(CtyType::Number)
                },
                i % 3 == 0,
            )
        })
        .collect();
    entries.push(attr(&long, list(CtyType::Bool), true));
    entries.push((
        "nested".into(),
        Spec::Block {
            type_name: long.clone(),
            nested: object(entries.clone()),
            required: false,
        },
    ));
    let spec = object(entries);
    assert!(encode_object_spec(&spec, GobFlavor::Module).len() > 70_000);
    assert_eq!(
        decode_spec(&spec, GobFlavor::Vendored),
        expected_text(&spec)
    );
}

#[test]
fn nested_object_name_must_match_the_packer_build() {
    let spec = rich_spec();
    let module_bytes = encode_object_spec(&spec, GobFlavor::Module);
    let vendored_bytes = encode_object_spec(&spec, GobFlavor::Vendored);
    let err = run_peer(&["spec", "vendored"], &module_bytes)
        .expect_err("vendored Packer must reject module names");
    assert!(err.contains("not registered"), "{err}");
    let err = run_peer(&["spec", "module"], &vendored_bytes)
        .expect_err("module Packer must reject vendored names");
    assert!(err.contains("not registered"), "{err}");
}

#[test]
fn go_decodes_command_finished_exit_statuses() {
    for status in [0, 1, 2, 123, 127, 255, -1, 70000, i32::MAX, i32::MIN] {
        let text = run_peer(&["command-finished"], &encode_command_finished(status))
            .unwrap_or_else(|err| panic!("Go could not decode CommandFinished({status}): {err}"));
        assert_eq!(text, format!("ExitStatus={status}\n"));
    }
}
