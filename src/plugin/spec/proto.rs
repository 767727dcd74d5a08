//! Protobuf encoding of the ConfigSpec, sent when Packer (1.12+) starts the
//! plugin with `--protobuf` (PROTOCOL.md §6.2).
//!
//! The messages mirror `proto/hcl_spec.proto` (same names and field numbers
//! as the SDK's `rpc/hcl_spec.proto`); they are derived by hand so building
//! needs no protoc. A test checks them against the .proto file.

use std::collections::BTreeMap;

use prost::Message;

use super::{CtyType as SpecType, ObjectSpec, Spec as SpecEntry};

/// `Spec`: one hcldec spec of any supported kind.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Spec {
    /// The kind of spec (`oneof block`).
    #[prost(oneof = "spec::Block", tags = "1, 2, 3, 4")]
    pub block: Option<spec::Block>,
}

/// Nested types of [`Spec`].
pub mod spec {
    /// `oneof block` of `Spec`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Block {
        /// `Object object = 1`.
        #[prost(message, tag = "1")]
        Object(super::Object),
        /// `Attr attr = 2`.
        #[prost(message, tag = "2")]
        Attr(super::Attr),
        /// `Block block_value = 3`.
        #[prost(message, tag = "3")]
        BlockValue(super::Block),
        /// `BlockList block_list = 4`.
        #[prost(message, tag = "4")]
        BlockList(super::BlockList),
    }
}

/// `Object`: an `hcldec.ObjectSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Object {
    /// `map<string, Spec> attributes = 1`.
    #[prost(btree_map = "string, message", tag = "1")]
    pub attributes: BTreeMap<String, Spec>,
}

/// `Attr`: an `hcldec.AttrSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Attr {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `CtyType type = 2` (Packer dereferences it: always set).
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<CtyType>,
    /// `bool required = 3`.
    #[prost(bool, tag = "3")]
    pub required: bool,
}

/// `Block`: an `hcldec.BlockSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Block {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `bool required = 2`.
    #[prost(bool, tag = "2")]
    pub required: bool,
    /// `Spec nested = 3` (always set).
    #[prost(message, optional, boxed, tag = "3")]
    pub nested: Option<Box<Spec>>,
}

/// `BlockList`: an `hcldec.BlockListSpec` (no item bounds on this wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockList {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `Spec nested = 2` (always set).
    #[prost(message, optional, boxed, tag = "2")]
    pub nested: Option<Box<Spec>>,
}

/// `CtyType`: a primitive, list or map cty type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CtyType {
    /// The kind of type (`oneof typeDef`).
    #[prost(oneof = "cty_type::TypeDef", tags = "1, 2, 3")]
    pub type_def: Option<cty_type::TypeDef>,
}

/// Nested types of [`CtyType`].
pub mod cty_type {
    /// `oneof typeDef` of `CtyType`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum TypeDef {
        /// `CtyPrimitive primitive = 1`.
        #[prost(message, tag = "1")]
        Primitive(super::CtyPrimitive),
        /// `CtyList list = 2`.
        #[prost(message, tag = "2")]
        List(Box<super::CtyList>),
        /// `CtyMap map = 3`.
        #[prost(message, tag = "3")]
        Map(Box<super::CtyMap>),
    }
}

/// `CtyPrimitive`: `cty.String`, `cty.Number` or `cty.Bool`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CtyPrimitive {
    /// `string typeString = 1`: exactly `cty.String`, `cty.Number` or `cty.Bool`
    /// (Packer compares the text).
    #[prost(string, tag = "1")]
    pub type_string: String,
}

/// `CtyList`: `cty.List(elementType)`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CtyList {
    /// `CtyType elementType = 1`.
    #[prost(message, optional, boxed, tag = "1")]
    pub element_type: Option<Box<CtyType>>,
}

/// `CtyMap`: `cty.Map(elementType)`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CtyMap {
    /// `CtyType elementType = 1`.
    #[prost(message, optional, boxed, tag = "1")]
    pub element_type: Option<Box<CtyType>>,
}

/// `HCL2Spec`: declared by Packer's .proto but never sent; kept so the Rust
/// messages cover the whole file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hcl2Spec {
    /// `map<string, Spec> TypeSpec = 1`.
    #[prost(btree_map = "string, message", tag = "1")]
    pub type_spec: BTreeMap<String, Spec>,
}

/// The ConfigSpec reply for a `--protobuf` Packer: a serialized [`Spec`]
/// whose oneof is `object`.
pub fn encode_object_spec(spec: &ObjectSpec) -> Vec<u8> {
    object_message(spec).encode_to_vec()
}

/// `Spec{object: …}` for an [`ObjectSpec`].
pub fn object_message(spec: &ObjectSpec) -> Spec {
    let attributes = spec
        .0
        .iter()
        .map(|(key, entry)| (key.clone(), entry_message(entry)))
        .collect();
    Spec {
        block: Some(spec::Block::Object(Object { attributes })),
    }
}

fn entry_message(entry: &SpecEntry) -> Spec {
    let block = match entry {
        SpecEntry::Attr { name, ty, required } => spec::Block::Attr(Attr {
            name: name.clone(),
            r#type: Some(type_message(ty)),
            required: *required,
        }),
        SpecEntry::Block {
            type_name,
            nested,
            required,
        } => spec::Block::BlockValue(Block {
            name: type_name.clone(),
            required: *required,
            nested: Some(Box::new(object_message(nested))),
        }),
        // Packer's protobuf BlockList has no min/max items: they are dropped.
        SpecEntry::BlockList {
            type_name, nested, ..
        } => spec::Block::BlockList(BlockList {
            name: type_name.clone(),
            nested: Some(Box::new(object_message(nested))),
        }),
    };
    Spec { block: Some(block) }
}

fn type_message(ty: &SpecType) -> CtyType {
    let primitive = |name: &str| {
        cty_type::TypeDef::Primitive(CtyPrimitive {
            type_string: name.to_owned(),
        })
    };
    let type_def = match ty {
        SpecType::String => primitive("cty.String"),
        SpecType::Number => primitive("cty.Number"),
        SpecType::Bool => primitive("cty.Bool"),
        SpecType::List(element) => cty_type::TypeDef::List(Box::new(CtyList {
            element_type: Some(Box::new(type_message(element))),
        })),
        SpecType::Map(element) => cty_type::TypeDef::Map(Box::new(CtyMap {
            element_type: Some(Box::new(type_message(element))),
        })),
    };
    CtyType {
        type_def: Some(type_def),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn single_string_attribute_matches_the_34_byte_protocol_example() {
        let spec = ObjectSpec(BTreeMap::from([(
            "foo".to_owned(),
            SpecEntry::Attr {
                name: "foo".to_owned(),
                ty: SpecType::String,
                required: false,
            },
        )]));
        let bytes = encode_object_spec(&spec);
        assert_eq!(
            hex(&bytes),
            "0a 20 0a 1e 0a 03 66 6f 6f 12 17 12 15 0a 03 66 6f 6f 12 0e 0a 0c 0a 0a \
             63 74 79 2e 53 74 72 69 6e 67"
        );
        assert_eq!(
            Spec::decode(bytes.as_slice()).unwrap(),
            object_message(&spec)
        );
    }

    #[test]
    fn block_list_bounds_are_dropped_and_nested_is_always_set() {
        let spec = ObjectSpec(BTreeMap::from([(
            "disk".to_owned(),
            SpecEntry::BlockList {
                type_name: "disk".to_owned(),
                nested: ObjectSpec::default(),
                min_items: 1,
                max_items: 4,
            },
        )]));
        let decoded = Spec::decode(encode_object_spec(&spec).as_slice()).unwrap();
        let Some(spec::Block::Object(object)) = decoded.block else {
            panic!("top level must be an object: {decoded:?}");
        };
        let expected = Spec {
            block: Some(spec::Block::BlockList(BlockList {
                name: "disk".to_owned(),
                nested: Some(Box::new(Spec {
                    block: Some(spec::Block::Object(Object::default())),
                })),
            })),
        };
        assert_eq!(object.attributes["disk"], expected);
    }

    /// One field of one message as the .proto declares it.
    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct DeclaredField {
        message: String,
        field: String,
        number: u32,
        wire_type: u8,
    }

    /// Reads message and field declarations from our .proto text (the subset
    /// of the syntax the file uses: messages, oneofs, maps, scalars).
    fn declared_fields(text: &str) -> Vec<DeclaredField> {
        let mut fields = Vec::new();
        let mut message: Option<String> = None;
        for line in text.lines() {
            let line = line.split("//").next().unwrap_or("").trim();
            if let Some(rest) = line.strip_prefix("message ") {
                message = Some(rest.trim_end_matches('{').trim().to_owned());
                continue;
            }
            let Some((declaration, number)) =
                line.strip_suffix(';').and_then(|l| l.split_once('='))
            else {
                continue;
            };
            let Some(message) = &message else { continue };
            let mut words: Vec<&str> = declaration.split_whitespace().collect();
            let Some(name) = words.pop() else { continue };
            let ty = words.join(" ");
            if ty.is_empty() || ty == "syntax" {
                continue;
            }
            let wire_type = match ty.as_str() {
                "bool" => 0,
                _ => 2, // string, message and map entries are length-delimited
            };
            fields.push(DeclaredField {
                message: message.clone(),
                field: name.to_owned(),
                number: number.trim().parse().expect("field number"),
                wire_type,
            });
        }
        fields
    }

    /// prost's Rust name of a proto field: snake_case (`typeString` →
    /// `type_string`, `TypeSpec` → `type_spec`).
    fn rust_field_name(proto: &str) -> String {
        let mut out = String::new();
        let mut previous_lower = false;
        for c in proto.chars() {
            if c.is_ascii_uppercase() && previous_lower {
                out.push('_');
            }
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    /// prost's Rust name of a oneof member: UpperCamelCase of the snake name
    /// (`block_value` → `BlockValue`).
    fn rust_variant_name(proto: &str) -> String {
        rust_field_name(proto)
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The field a Rust message encodes when only one of its fields is set.
    fn encoded_field(message: &str, rust_field: &str, bytes: &[u8]) -> DeclaredField {
        let tag = u32::from(bytes[0]);
        assert!(tag < 0x80, "single-byte tags only in this file");
        DeclaredField {
            // Message names differ only in case (`HCL2Spec` = `Hcl2Spec`).
            message: message.to_lowercase(),
            field: rust_field.trim_start_matches("r#").to_owned(),
            number: tag >> 3,
            wire_type: (tag & 7) as u8,
        }
    }

    #[test]
    #[allow(clippy::needless_update)] // uniform macro for one- and many-field messages
    fn rust_messages_match_the_proto_file() {
        macro_rules! field {
            ($msg:ident . $field:ident = $value:expr) => {
                encoded_field(
                    stringify!($msg),
                    stringify!($field),
                    &$msg {
                        $field: $value,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )
            };
        }
        macro_rules! oneof {
            ($msg:ident . $oneof:ident = $enum:path, $variant:ident($value:expr)) => {{
                use $enum as OneofEnum;
                encoded_field(
                    stringify!($msg),
                    stringify!($variant),
                    &$msg {
                        $oneof: Some(OneofEnum::$variant($value)),
                    }
                    .encode_to_vec(),
                )
            }};
        }
        let spec = || Spec {
            block: Some(spec::Block::Object(Object::default())),
        };
        let ty = || CtyType {
            type_def: Some(cty_type::TypeDef::Primitive(CtyPrimitive::default())),
        };
        let rust: BTreeSet<DeclaredField> = [
            oneof!(
                CtyType.type_def = cty_type::TypeDef,
                Primitive(CtyPrimitive::default())
            ),
            oneof!(CtyType.type_def = cty_type::TypeDef, List(Box::default())),
            oneof!(CtyType.type_def = cty_type::TypeDef, Map(Box::default())),
            field!(CtyPrimitive.type_string = "cty.Bool".into()),
            field!(CtyList.element_type = Some(Box::new(ty()))),
            field!(CtyMap.element_type = Some(Box::new(ty()))),
            field!(Hcl2Spec.type_spec = BTreeMap::from([("a".into(), spec())])),
            oneof!(Spec.block = spec::Block, Object(Object::default())),
            oneof!(Spec.block = spec::Block, Attr(Attr::default())),
            oneof!(Spec.block = spec::Block, BlockValue(Block::default())),
            oneof!(Spec.block = spec::Block, BlockList(BlockList::default())),
            field!(Attr.name = "a".into()),
            field!(Attr.r#type = Some(ty())),
            field!(Attr.required = true),
            field!(Block.name = "a".into()),
            field!(Block.required = true),
            field!(Block.nested = Some(Box::new(spec()))),
            field!(BlockList.name = "a".into()),
            field!(BlockList.nested = Some(Box::new(spec()))),
            field!(Object.attributes = BTreeMap::from([("a".into(), spec())])),
        ]
        .into_iter()
        .collect();
        // Members of a oneof become enum variants in Rust.
        let oneof_members = [
            ("CtyType", "primitive"),
            ("CtyType", "list"),
            ("CtyType", "map"),
            ("Spec", "object"),
            ("Spec", "attr"),
            ("Spec", "block_value"),
            ("Spec", "block_list"),
        ];
        let declared: BTreeSet<DeclaredField> =
            declared_fields(include_str!("../../../proto/hcl_spec.proto"))
                .into_iter()
                .map(|f| DeclaredField {
                    field: if oneof_members.contains(&(f.message.as_str(), f.field.as_str())) {
                        rust_variant_name(&f.field)
                    } else {
                        rust_field_name(&f.field)
                    },
                    message: f.message.to_lowercase(),
                    ..f
                })
                .collect();
        assert_eq!(declared.len(), 20, "parser found: {declared:#?}");
        assert_eq!(rust, declared);
    }
}
