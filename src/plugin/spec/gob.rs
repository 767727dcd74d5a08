//! Go `encoding/gob` encodings Packer expects from a plugin: the builder's
//! `ConfigSpec` (an `hcldec.ObjectSpec`) when Packer did not ask for protobuf,
//! and the `CommandFinished` message closing a remote command.
//!
//! Only the subset of gob these two values need is written here (see
//! PROTOCOL.md §6.3). Every stream starts with all its type definitions, then
//! one value message; Go's decoder accepts that layout even though Go's own
//! encoder interleaves definitions with values. Type ids are per stream and
//! start at 65.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::{CtyType, ObjectSpec, Spec};

/// First type id we give a user type. Go reserves ids below 64 for its own
/// types; 65 keeps one spare, like every id Go itself hands out.
const FIRST_TYPE_ID: i64 = 65;

/// Go's predefined gob type ids (encoding/gob type.go).
mod builtin {
    pub const BOOL: i64 = 1;
    pub const INT: i64 = 2;
    pub const UINT: i64 = 3;
    pub const STRING: i64 = 6;
    pub const INTERFACE: i64 = 8;
}

/// Import path of hcldec when Packer vendored it in a GOPATH build (Debian).
const VENDORED_HCLDEC: &str =
    "github.com/hashicorp/packer/vendor/github.com/hashicorp/hcl/v2/hcldec";
/// Import path of hcldec in module builds (HashiCorp's releases, Packer ≥1.7).
const MODULE_HCLDEC: &str = "github.com/hashicorp/hcl/v2/hcldec";
/// Prefix cty registers its type implementations under, whatever the build.
const CTY_PREFIX: &str = "github.com/zclconf/go-cty/cty.";

/// How the receiving Packer binary was built, which decides the gob name of a
/// nested `hcldec.ObjectSpec` (gob registers named non-pointer types under
/// their full import path, and a vendored build has a different path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GobFlavor {
    /// Go-modules build: `github.com/hashicorp/hcl/v2/hcldec.ObjectSpec`.
    Module,
    /// GOPATH build with a vendored hcl, e.g. Debian's packer 1.6.6:
    /// `github.com/hashicorp/packer/vendor/github.com/hashicorp/hcl/v2/hcldec.ObjectSpec`.
    Vendored,
}

impl GobFlavor {
    /// Gob interface name of a nested `hcldec.ObjectSpec` for this flavour.
    pub fn object_spec_name(self) -> String {
        match self {
            GobFlavor::Module => format!("{MODULE_HCLDEC}.ObjectSpec"),
            GobFlavor::Vendored => format!("{VENDORED_HCLDEC}.ObjectSpec"),
        }
    }

    /// Flavour of the Packer that started this process, found by searching
    /// its executable (`/proc/<ppid>/exe`) for the vendored hcldec import path.
    ///
    /// Blocking (reads up to the whole binary: ~30 ms for Debian's 107 MB
    /// packer in a release build); call it from `spawn_blocking` in async
    /// code. Falls back to [`GobFlavor::Module`], what HashiCorp's release
    /// builds are, when the executable cannot be read.
    pub fn detect_from_parent() -> GobFlavor {
        let exe = format!("/proc/{}/exe", std::os::unix::process::parent_id());
        match GobFlavor::detect_in_executable(Path::new(&exe)) {
            Ok(flavor) => {
                tracing::debug!(?flavor, exe, "gob flavour of the parent Packer");
                flavor
            }
            Err(err) => {
                tracing::warn!(%err, exe, "cannot read the parent executable; assuming a module-built Packer");
                GobFlavor::Module
            }
        }
    }

    /// Flavour of the Packer executable at `path`: [`GobFlavor::Vendored`] when
    /// it contains the vendored hcldec import path, else [`GobFlavor::Module`].
    pub fn detect_in_executable(path: &Path) -> std::io::Result<GobFlavor> {
        let file = std::fs::File::open(path)?;
        if stream_contains(file, VENDORED_HCLDEC.as_bytes())? {
            Ok(GobFlavor::Vendored)
        } else {
            Ok(GobFlavor::Module)
        }
    }
}

/// Whether `needle` occurs in `reader`, reading in chunks so a large binary
/// is never held in memory whole.
fn stream_contains(mut reader: impl Read, needle: &[u8]) -> std::io::Result<bool> {
    const CHUNK: usize = 1 << 20;
    let finder = memchr::memmem::Finder::new(needle);
    let keep = needle.len().saturating_sub(1);
    let mut window: Vec<u8> = Vec::with_capacity(CHUNK + keep);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            return Ok(false);
        }
        window.extend_from_slice(&chunk[..n]);
        if finder.find(&window).is_some() {
            return Ok(true);
        }
        // Keep the tail so a needle split across two reads is still found.
        let cut = window.len().saturating_sub(keep);
        window.drain(..cut);
    }
}

/// `hcldec.ObjectSpec` (`map[string]hcldec.Spec`) as the gob stream Packer
/// decodes from `Builder.ConfigSpec` when it did not pass `--protobuf`.
pub fn encode_object_spec(spec: &ObjectSpec, flavor: GobFlavor) -> Vec<u8> {
    let mut stream = SpecStream {
        types: TypeTable::default(),
        object_spec_name: flavor.object_spec_name(),
    };
    let object_spec_id = stream.object_spec_id();
    let mut value = Vec::new();
    put_int(&mut value, object_spec_id);
    // A non-struct top-level value is framed as the singleton field 0.
    put_uint(&mut value, 0);
    stream.put_object_map(&mut value, spec);
    stream.types.finish(value)
}

/// `CommandFinished{ExitStatus int}`, the gob stream a plugin writes on a
/// `Communicator.Start` response stream when the remote command ends.
pub fn encode_command_finished(exit_status: i32) -> Vec<u8> {
    let mut types = TypeTable::default();
    let id = types.id_of("CommandFinished", |id| WireType::Struct {
        name: "CommandFinished",
        id,
        fields: vec![("ExitStatus", builtin::INT)],
    });
    let mut value = Vec::new();
    put_int(&mut value, id);
    let mut fields = StructFields::new(&mut value);
    if exit_status != 0 {
        fields.field(0);
        put_int(fields.out, i64::from(exit_status));
    }
    fields.end();
    types.finish(value)
}

/// `cty.Type.GobEncode()` output: a complete gob stream of
/// `gobType{Version int; Impl typeImpl}` (Version 0, so never sent).
fn encode_cty_type(ty: &CtyType) -> Vec<u8> {
    let mut types = TypeTable::default();
    let gob_type_id = types.id_of("gobType", |id| WireType::Struct {
        name: "gobType",
        id,
        fields: vec![("Version", builtin::INT), ("Impl", builtin::INTERFACE)],
    });
    let (impl_name, impl_id, impl_value) = match ty {
        CtyType::String | CtyType::Number | CtyType::Bool => {
            let id = types.id_of("primitiveType", |id| WireType::Struct {
                name: "primitiveType",
                id,
                fields: vec![("Kind", builtin::UINT)],
            });
            let kind = match ty {
                CtyType::String => b'S',
                CtyType::Number => b'N',
                _ => b'B',
            };
            let mut v = Vec::new();
            let mut fields = StructFields::new(&mut v);
            fields.field(0);
            put_uint(fields.out, u64::from(kind));
            fields.end();
            ("primitiveType", id, v)
        }
        CtyType::List(element) | CtyType::Map(element) => {
            let go_name = if matches!(ty, CtyType::List(_)) {
                "typeList"
            } else {
                "typeMap"
            };
            let type_id = types.cty_type_id();
            let id = types.id_of(go_name, |id| WireType::Struct {
                name: go_name,
                id,
                fields: vec![("ElementTypeT", type_id)],
            });
            let mut v = Vec::new();
            let mut fields = StructFields::new(&mut v);
            fields.field(0);
            put_bytes(fields.out, &encode_cty_type(element));
            fields.end();
            (go_name, id, v)
        }
    };
    let mut value = Vec::new();
    put_int(&mut value, gob_type_id);
    let mut fields = StructFields::new(&mut value);
    fields.field(1);
    put_interface(
        fields.out,
        &format!("{CTY_PREFIX}{impl_name}"),
        impl_id,
        &impl_value,
    );
    fields.end();
    types.finish(value)
}

/// State of one ConfigSpec stream: its type table and the flavour's name for
/// a nested ObjectSpec.
struct SpecStream {
    types: TypeTable,
    object_spec_name: String,
}

impl SpecStream {
    fn object_spec_id(&mut self) -> i64 {
        self.types.id_of("ObjectSpec", |id| WireType::Map {
            name: "ObjectSpec",
            id,
            key: builtin::STRING,
            elem: builtin::INTERFACE,
        })
    }

    /// The map part of an ObjectSpec: count, then key and interface value
    /// per entry (sorted, as [`ObjectSpec`] keeps them).
    fn put_object_map(&mut self, out: &mut Vec<u8>, spec: &ObjectSpec) {
        put_uint(out, spec.0.len() as u64);
        for (key, entry) in &spec.0 {
            put_bytes(out, key.as_bytes());
            self.put_spec_interface(out, entry);
        }
    }

    /// A nested ObjectSpec held in an `hcldec.Spec` interface field.
    fn put_nested_object(&mut self, out: &mut Vec<u8>, spec: &ObjectSpec) {
        let id = self.object_spec_id();
        let mut value = Vec::new();
        put_uint(&mut value, 0);
        self.put_object_map(&mut value, spec);
        let name = self.object_spec_name.clone();
        put_interface(out, &name, id, &value);
    }

    fn put_spec_interface(&mut self, out: &mut Vec<u8>, spec: &Spec) {
        let mut value = Vec::new();
        let (name, id) = match spec {
            Spec::Attr { name, ty, required } => {
                let type_id = self.types.cty_type_id();
                let id = self.types.id_of("AttrSpec", |id| WireType::Struct {
                    name: "AttrSpec",
                    id,
                    fields: vec![
                        ("Name", builtin::STRING),
                        ("Type", type_id),
                        ("Required", builtin::BOOL),
                    ],
                });
                let mut fields = StructFields::new(&mut value);
                if !name.is_empty() {
                    fields.field(0);
                    put_bytes(fields.out, name.as_bytes());
                }
                fields.field(1);
                put_bytes(fields.out, &encode_cty_type(ty));
                if *required {
                    fields.field(2);
                    put_uint(fields.out, 1);
                }
                fields.end();
                ("*hcldec.AttrSpec", id)
            }
            Spec::Block {
                type_name,
                nested,
                required,
            } => {
                let id = self.types.id_of("BlockSpec", |id| WireType::Struct {
                    name: "BlockSpec",
                    id,
                    fields: vec![
                        ("TypeName", builtin::STRING),
                        ("Nested", builtin::INTERFACE),
                        ("Required", builtin::BOOL),
                    ],
                });
                let mut fields = StructFields::new(&mut value);
                if !type_name.is_empty() {
                    fields.field(0);
                    put_bytes(fields.out, type_name.as_bytes());
                }
                fields.field(1);
                self.put_nested_object(fields.out, nested);
                if *required {
                    fields.field(2);
                    put_uint(fields.out, 1);
                }
                fields.end();
                ("*hcldec.BlockSpec", id)
            }
            Spec::BlockList {
                type_name,
                nested,
                min_items,
                max_items,
            } => {
                let id = self.types.id_of("BlockListSpec", |id| WireType::Struct {
                    name: "BlockListSpec",
                    id,
                    fields: vec![
                        ("TypeName", builtin::STRING),
                        ("Nested", builtin::INTERFACE),
                        ("MinItems", builtin::INT),
                        ("MaxItems", builtin::INT),
                    ],
                });
                let mut fields = StructFields::new(&mut value);
                if !type_name.is_empty() {
                    fields.field(0);
                    put_bytes(fields.out, type_name.as_bytes());
                }
                fields.field(1);
                self.put_nested_object(fields.out, nested);
                if *min_items != 0 {
                    fields.field(2);
                    put_int(fields.out, *min_items);
                }
                if *max_items != 0 {
                    fields.field(3);
                    put_int(fields.out, *max_items);
                }
                fields.end();
                ("*hcldec.BlockListSpec", id)
            }
        };
        put_interface(out, name, id, &value);
    }
}

/// A gob type definition (`wireType`), the subset we send.
enum WireType {
    Struct {
        name: &'static str,
        id: i64,
        fields: Vec<(&'static str, i64)>,
    },
    Map {
        name: &'static str,
        id: i64,
        key: i64,
        elem: i64,
    },
    GobEncoder {
        name: &'static str,
        id: i64,
    },
}

impl WireType {
    /// The typedef message payload: `int(-id)` then the `wireType` struct.
    fn definition(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // wireType field indexes: SliceT 1, StructT 2, MapT 3, GobEncoderT 4.
        let (id, field) = match self {
            WireType::Struct { id, .. } => (*id, 2),
            WireType::Map { id, .. } => (*id, 3),
            WireType::GobEncoder { id, .. } => (*id, 4),
        };
        put_int(&mut out, -id);
        let mut wire = StructFields::new(&mut out);
        wire.field(field);
        match self {
            WireType::Struct { name, id, fields } => {
                let mut st = StructFields::new(wire.out);
                st.field(0);
                put_common_type(st.out, name, *id);
                st.field(1);
                put_uint(st.out, fields.len() as u64);
                for (field_name, field_id) in fields {
                    let mut ft = StructFields::new(st.out);
                    ft.field(0);
                    put_bytes(ft.out, field_name.as_bytes());
                    ft.field(1);
                    put_int(ft.out, *field_id);
                    ft.end();
                }
                st.end();
            }
            WireType::Map {
                name,
                id,
                key,
                elem,
            } => {
                let mut mt = StructFields::new(wire.out);
                mt.field(0);
                put_common_type(mt.out, name, *id);
                mt.field(1);
                put_int(mt.out, *key);
                mt.field(2);
                put_int(mt.out, *elem);
                mt.end();
            }
            WireType::GobEncoder { name, id } => {
                let mut gt = StructFields::new(wire.out);
                gt.field(0);
                put_common_type(gt.out, name, *id);
                gt.end();
            }
        }
        wire.end();
        out
    }
}

/// `CommonType{Name string; Id typeId}`; Go always sends this embedded struct.
fn put_common_type(out: &mut Vec<u8>, name: &str, id: i64) {
    let mut ct = StructFields::new(out);
    if !name.is_empty() {
        ct.field(0);
        put_bytes(ct.out, name.as_bytes());
    }
    ct.field(1);
    put_int(ct.out, id);
    ct.end();
}

/// Type ids of one gob stream, handed out in first-use order, with their
/// definitions.
#[derive(Default)]
struct TypeTable {
    ids: BTreeMap<&'static str, i64>,
    definitions: Vec<Vec<u8>>,
}

impl TypeTable {
    fn id_of(&mut self, key: &'static str, wire: impl FnOnce(i64) -> WireType) -> i64 {
        if let Some(id) = self.ids.get(key) {
            return *id;
        }
        let id = FIRST_TYPE_ID + self.ids.len() as i64;
        self.ids.insert(key, id);
        self.definitions.push(wire(id).definition());
        id
    }

    /// `cty.Type`, sent as a GobEncoder (its bytes are [`encode_cty_type`]).
    fn cty_type_id(&mut self) -> i64 {
        self.id_of("Type", |id| WireType::GobEncoder { name: "Type", id })
    }

    /// The whole stream: every definition message, then the value message.
    fn finish(self, value: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        for definition in self.definitions.iter().chain(std::iter::once(&value)) {
            put_bytes(&mut out, definition);
        }
        out
    }
}

/// Writer of a struct value: `uint(delta) value` per non-zero field, in
/// increasing field order, then `00`.
struct StructFields<'a> {
    out: &'a mut Vec<u8>,
    last: i64,
}

impl<'a> StructFields<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        StructFields { out, last: -1 }
    }

    fn field(&mut self, index: i64) {
        debug_assert!(index > self.last, "gob struct fields must increase");
        put_uint(self.out, (index - self.last) as u64);
        self.last = index;
    }

    fn end(self) {
        self.out.push(0);
    }
}

/// An interface value: registered name, concrete type id, then the concrete
/// value's byte count and bytes.
fn put_interface(out: &mut Vec<u8>, name: &str, id: i64, value: &[u8]) {
    put_bytes(out, name.as_bytes());
    put_int(out, id);
    put_bytes(out, value);
}

/// gob unsigned integer: one byte below 128, else the negated byte count
/// followed by the minimal big-endian bytes.
fn put_uint(out: &mut Vec<u8>, n: u64) {
    if n < 128 {
        out.push(n as u8);
        return;
    }
    let bytes = n.to_be_bytes();
    let skip = (n.leading_zeros() / 8) as usize;
    out.push((256 - (8 - skip)) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// gob signed integer: sign in the low bit, magnitude above it.
fn put_int(out: &mut Vec<u8>, i: i64) {
    let u = if i < 0 {
        ((!i as u64) << 1) | 1
    } else {
        (i as u64) << 1
    };
    put_uint(out, u);
}

/// gob string / byte slice (also a message or a GobEncoder's bytes): length
/// then bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    //! Byte-level pins. The same encoders are decoded by real Go in
    //! `tests/spec_gob_peer.rs`, which is what makes these vectors trustworthy.

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn uint(n: u64) -> String {
        let mut out = Vec::new();
        put_uint(&mut out, n);
        hex(&out)
    }

    fn int(i: i64) -> String {
        let mut out = Vec::new();
        put_int(&mut out, i);
        hex(&out)
    }

    #[test]
    fn unsigned_integers_use_negated_byte_counts_above_127() {
        assert_eq!(uint(0), "00");
        assert_eq!(uint(127), "7f");
        assert_eq!(uint(128), "ff 80");
        assert_eq!(uint(256), "fe 01 00");
        assert_eq!(uint(u64::MAX), "f8 ff ff ff ff ff ff ff ff");
    }

    #[test]
    fn signed_integers_keep_the_sign_in_the_low_bit() {
        assert_eq!(int(2), "04");
        assert_eq!(int(-1), "01");
        assert_eq!(int(65), "ff 82");
        assert_eq!(int(-65), "ff 81");
        assert_eq!(int(i64::MIN), "f8 ff ff ff ff ff ff ff ff");
    }

    const COMMAND_FINISHED_TYPEDEF: &str =
        "2c ff 81 03 01 01 0f 43 6f 6d 6d 61 6e 64 46 69 6e 69 73 68 65 64 \
        01 ff 82 00 01 01 01 0a 45 78 69 74 53 74 61 74 75 73 01 04 00 00 00";

    #[test]
    fn command_finished_matches_the_protocol_vectors() {
        for (status, value) in [
            (0, "03 ff 82 00"),
            (1, "05 ff 82 01 02 00"),
            (2, "05 ff 82 01 04 00"),
            (123, "06 ff 82 01 ff f6 00"),
            (127, "06 ff 82 01 ff fe 00"),
            (255, "07 ff 82 01 fe 01 fe 00"),
            (-1, "05 ff 82 01 01 00"),
        ] {
            assert_eq!(
                hex(&encode_command_finished(status)),
                format!("{COMMAND_FINISHED_TYPEDEF} {value}"),
                "exit status {status}"
            );
        }
    }

    #[test]
    fn cty_string_type_matches_the_protocol_vector() {
        let expected = "2a ff 81 03 01 01 07 67 6f 62 54 79 70 65 01 ff 82 00 01 02 01 07 56 65 72 73 69 6f 6e \
            01 04 00 01 04 49 6d 70 6c 01 10 00 00 00 \
            24 ff 83 03 01 01 0d 70 72 69 6d 69 74 69 76 65 54 79 70 65 01 ff 84 00 01 01 01 04 4b 69 6e 64 \
            01 06 00 00 00 \
            36 ff 82 02 2b";
        let encoded = encode_cty_type(&CtyType::String);
        assert_eq!(encoded.len(), 135);
        let name = b"github.com/zclconf/go-cty/cty.primitiveType";
        let tail = "ff 84 03 01 53 00 00";
        assert_eq!(hex(&encoded), format!("{expected} {} {tail}", hex(name)),);
        // Number and Bool differ only in the kind byte.
        let number = encode_cty_type(&CtyType::Number);
        let bool_ = encode_cty_type(&CtyType::Bool);
        assert_eq!(number[..132], encoded[..132]);
        assert_eq!(number[133..], encoded[133..]);
        assert_eq!((encoded[132], number[132], bool_[132]), (b'S', b'N', b'B'));
    }

    #[test]
    fn cty_list_embeds_the_element_stream_as_gob_encoder_bytes() {
        let element = encode_cty_type(&CtyType::String);
        let list = encode_cty_type(&CtyType::List(Box::new(CtyType::String)));
        assert_eq!(list.len(), 289);
        let mut embedded = vec![0xff, 0x87];
        embedded.extend_from_slice(&element);
        assert!(list.windows(embedded.len()).any(|w| w == embedded));
    }

    #[test]
    fn object_spec_starts_with_its_map_typedef_at_id_65() {
        let spec = ObjectSpec(BTreeMap::from([(
            "foo".to_owned(),
            Spec::Attr {
                name: "foo".to_owned(),
                ty: CtyType::String,
                required: true,
            },
        )]));
        let bytes = encode_object_spec(&spec, GobFlavor::Module);
        assert_eq!(
            hex(&bytes[..27]),
            "1a ff 81 04 01 01 0a 4f 62 6a 65 63 74 53 70 65 63 01 ff 82 00 01 0c 01 10 00 00"
        );
        // Without nested objects the flavour changes nothing.
        assert_eq!(bytes, encode_object_spec(&spec, GobFlavor::Vendored));
    }

    #[test]
    fn nested_object_spec_carries_the_flavour_name() {
        let spec = ObjectSpec(BTreeMap::from([(
            "disk".to_owned(),
            Spec::BlockList {
                type_name: "disk".to_owned(),
                nested: ObjectSpec::default(),
                min_items: 0,
                max_items: 0,
            },
        )]));
        let contains =
            |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
        let module = encode_object_spec(&spec, GobFlavor::Module);
        let vendored = encode_object_spec(&spec, GobFlavor::Vendored);
        assert!(contains(
            &module,
            "\u{2d}github.com/hashicorp/hcl/v2/hcldec.ObjectSpec"
        ));
        assert!(!contains(&module, "vendor/"));
        assert!(contains(
            &vendored,
            "github.com/hashicorp/packer/vendor/github.com/hashicorp/hcl/v2/hcldec.ObjectSpec"
        ));
        assert!(contains(&module, "*hcldec.BlockListSpec"));
    }

    #[test]
    fn finds_the_vendored_path_across_read_chunks() {
        let needle = VENDORED_HCLDEC.as_bytes();
        let mut data = vec![0u8; (1 << 20) - 10];
        data.extend_from_slice(needle);
        data.extend(std::iter::repeat_n(7u8, 1 << 20));
        assert!(stream_contains(std::io::Cursor::new(&data), needle).unwrap());
        assert!(!stream_contains(std::io::Cursor::new(&data[..(1 << 20)]), needle).unwrap());
    }

    #[test]
    fn detects_the_flavour_of_an_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        let vendored = dir.path().join("vendored");
        let module = dir.path().join("module");
        let mut content = b"\x7fELF....".to_vec();
        content.extend_from_slice(VENDORED_HCLDEC.as_bytes());
        content.extend_from_slice(b".ObjectSpec....");
        std::fs::write(&vendored, &content).unwrap();
        std::fs::write(&module, format!("\x7fELF {MODULE_HCLDEC}.ObjectSpec")).unwrap();
        assert_eq!(
            GobFlavor::detect_in_executable(&vendored).unwrap(),
            GobFlavor::Vendored
        );
        assert_eq!(
            GobFlavor::detect_in_executable(&module).unwrap(),
            GobFlavor::Module
        );
        assert!(GobFlavor::detect_in_executable(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn detection_from_the_parent_reads_the_test_runner_parent() {
        // The test harness's parent (cargo or a shell) is a module-free
        // binary: detection must run and fall on Module, not panic.
        assert_eq!(GobFlavor::detect_from_parent(), GobFlavor::Module);
    }
}

#[cfg(test)]
mod protocol_example {
    //! The ConfigSpec example of PROTOCOL.md §6.3.2.

    use super::*;

    /// `foo` required string, `tags` map(string), block list `disk{size number}`.
    fn example_spec() -> ObjectSpec {
        let attr = |name: &str, ty: CtyType, required: bool| {
            let spec = Spec::Attr {
                name: name.to_owned(),
                ty,
                required,
            };
            (name.to_owned(), spec)
        };
        ObjectSpec(BTreeMap::from([
            attr("foo", CtyType::String, true),
            attr("tags", CtyType::Map(Box::new(CtyType::String)), false),
            (
                "disk".to_owned(),
                Spec::BlockList {
                    type_name: "disk".to_owned(),
                    nested: ObjectSpec(BTreeMap::from([attr("size", CtyType::Number, false)])),
                    min_items: 0,
                    max_items: 0,
                },
            ),
        ]))
    }

    #[test]
    fn example_config_spec_has_the_documented_layout() {
        let bytes = encode_object_spec(&example_spec(), GobFlavor::Module);
        assert_eq!(bytes.len(), 942);
        let value_start = [
            0xfe, 0x02, 0xfa, 0xff, 0x82, 0x00, 0x03, 0x04, b'd', b'i', b's', b'k', 0x15,
        ];
        let at = bytes
            .windows(value_start.len())
            .position(|w| w == value_start)
            .expect("value message of 762 bytes");
        assert_eq!(
            at + 3 + 762,
            bytes.len(),
            "the value message ends the stream"
        );
    }
}
