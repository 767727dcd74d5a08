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
