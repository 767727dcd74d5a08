//! The HCL2 spec of a builder's configuration, as Packer's `hcldec` knows
//! it, and its two wire encodings (gob and protobuf).

use std::collections::BTreeMap;

/// The cty types a spec may use: the ones both encodings can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtyType {
    /// `cty.String`.
    String,
    /// `cty.Number`.
    Number,
    /// `cty.Bool`.
    Bool,
    /// `cty.List(T)`.
    List(Box<CtyType>),
    /// `cty.Map(T)`.
    Map(Box<CtyType>),
}

/// `hcldec.ObjectSpec`: attribute or block name → spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectSpec(pub BTreeMap<String, Spec>);

/// One entry of an [`ObjectSpec`].
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// `hcldec.AttrSpec`: `name = value`.
    Attr {
        /// Attribute name.
        name: String,
        /// Its type.
        ty: CtyType,
        /// Packer reports a missing required attribute itself.
        required: bool,
    },
    /// `hcldec.BlockSpec`: at most one `type_name { ... }` block.
    Block {
        /// Block type name.
        type_name: String,
        /// The block's body.
        nested: ObjectSpec,
        /// Whether the block must be present.
        required: bool,
    },
    /// `hcldec.BlockListSpec`: repeatable `type_name { ... }` blocks.
    BlockList {
        /// Block type name.
        type_name: String,
        /// Each block's body.
        nested: ObjectSpec,
        /// Minimum count (0 = none); gob only, protobuf has no bounds.
        min_items: i64,
        /// Maximum count (0 = unbounded); gob only.
        max_items: i64,
    },
}

pub mod gob;
pub mod proto;
