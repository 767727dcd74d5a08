//! Real-peer checks of the protobuf ConfigSpec: Debian's `protoc` decodes our
//! bytes with `proto/hcl_spec.proto` (whose names and numbers are Packer's),
//! and encodes the expected text back to the very same bytes.
//!
//! Needs `protoc` (`apt-get install -y protobuf-compiler`); the tests fail,
//! not skip, without it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use amazon_chroot::plugin::spec::proto::encode_object_spec;
use amazon_chroot::plugin::spec::{CtyType, ObjectSpec, Spec};

/// Runs `protoc --decode=Spec` or `--encode=Spec` with our .proto file.
fn protoc(mode: &str, input: &[u8]) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("protoc")
        .arg(format!("--{mode}=Spec"))
        .arg("--proto_path")
        .arg(root.join("proto"))
        .arg(root.join("proto/hcl_spec.proto"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("cannot run `protoc` ({err}): install it with `apt-get install -y protobuf-compiler`")
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write to protoc");
    let output = child.wait_with_output().expect("wait for protoc");
    assert!(
        output.status.success(),
        "protoc --{mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
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

#[test]
fn protoc_decodes_the_34_byte_example() {
    let spec = ObjectSpec(BTreeMap::from([attr("foo", CtyType::String, false)]));
    let text = String::from_utf8(protoc("decode", &encode_object_spec(&spec))).unwrap();
    assert_eq!(
        text,
        r#"object {
  attributes {
    key: "foo"
    value {
      attr {
        name: "foo"
        type {
          primitive {
            typeString: "cty.String"
          }
        }
      }
    }
  }
}
"#
    );
}

/// Attribute, block, block list, nested objects, list and map types.
fn rich_spec() -> ObjectSpec {
    let list = |t| CtyType::List(Box::new(t));
    let map = |t| CtyType::Map(Box::new(t));
    ObjectSpec(BTreeMap::from([
        attr("ami_name", CtyType::String, true),
        attr("tags", map(CtyType::String), false),
        attr("weights", list(map(CtyType::Number)), false),
        (
            "disk".to_owned(),
            Spec::BlockList {
                type_name: "disk".to_owned(),
                nested: ObjectSpec(BTreeMap::from([attr("encrypted", CtyType::Bool, false)])),
                min_items: 1,
                max_items: 3,
            },
        ),
        (
            "filter".to_owned(),
            Spec::Block {
                type_name: "filter".to_owned(),
                nested: ObjectSpec::default(),
                required: true,
            },
        ),
    ]))
}

const RICH_SPEC_TEXT: &str = r#"object {
  attributes {
    key: "ami_name"
    value {
      attr {
        name: "ami_name"
        type {
          primitive {
            typeString: "cty.String"
          }
        }
        required: true
      }
    }
  }
  attributes {
    key: "disk"
    value {
      block_list {
        name: "disk"
        nested {
          object {
            attributes {
              key: "encrypted"
              value {
                attr {
                  name: "encrypted"
                  type {
                    primitive {
                      typeString: "cty.Bool"
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  attributes {
    key: "filter"
    value {
      block_value {
        name: "filter"
        required: true
        nested {
          object {
          }
        }
      }
    }
  }
  attributes {
    key: "tags"
    value {
      attr {
        name: "tags"
        type {
          map {
            elementType {
              primitive {
                typeString: "cty.String"
              }
            }
          }
        }
      }
    }
  }
  attributes {
    key: "weights"
    value {
      attr {
        name: "weights"
        type {
          list {
            elementType {
              map {
                elementType {
                  primitive {
                    typeString: "cty.Number"
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}
"#;

#[test]
fn protoc_decodes_every_spec_kind_and_type_form() {
    let text = String::from_utf8(protoc("decode", &encode_object_spec(&rich_spec()))).unwrap();
    assert_eq!(text, RICH_SPEC_TEXT);
}

#[test]
fn protoc_encodes_the_expected_text_to_our_bytes() {
    assert_eq!(
        protoc("encode", RICH_SPEC_TEXT.as_bytes()),
        encode_object_spec(&rich_spec())
    );
}
