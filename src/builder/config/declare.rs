//! The machinery behind the option declarations in `options.rs`: one
//! `options!` entry per option yields the struct field, the HCL2 spec
//! entry, the decoder and the docs row.
//!
//! Decoding follows what the Go SDK's `config.Decode` does with
//! mapstructure's `WeaklyTypedInput` (JSON templates send raw values:
//! numbers as floats, `"a,b"` for lists, `"true"` for bools), but collects
//! every problem instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::builder::template::{self, Template, TemplateContext};
use crate::plugin::api::{Map, TemplateKind};
use crate::plugin::spec::CtyType;

/// When an option's strings are interpolated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interp {
    /// Rendered once at Prepare (`{{timestamp}}`, `{{user}}` …), no data.
    Prepare,
    /// Kept as a [`Template`] and rendered during the build with these
    /// data fields (see [`template::fields`]).
    Late(&'static [&'static str]),
}

/// How an option appears in the HCL2 spec.
pub enum Shape {
    /// `name = value`.
    Attr(CtyType),
    /// At most one `name { … }` block.
    Block(&'static [OptionDesc]),
    /// Repeatable `name { … }` blocks.
    BlockList(&'static [OptionDesc]),
}

/// One declared option.
pub struct OptionDesc {
    /// The key in templates.
    pub name: &'static str,
    /// Its spec shape.
    pub shape: fn() -> Shape,
    /// Its type as the docs show it.
    pub type_doc: fn() -> String,
    /// The default as the docs show it.
    pub default_doc: &'static str,
    /// A default value applied when the option is unset or `""`.
    pub default_value: Option<&'static str>,
    /// What it means (one paragraph).
    pub doc: &'static str,
    /// When its strings are interpolated.
    pub interp: Interp,
}

/// A struct of options declared with `options!`: a group of top-level
/// options or the body of a block.
pub trait OptionGroup: Default + Sized {
    /// Heading of the group in the docs.
    const TITLE: &'static str;
    /// The declared options, in declaration order.
    const OPTIONS: &'static [OptionDesc];
    /// Reads every declared option from `obj`; unknown keys are the
    /// caller's business. `inherited` overrides each option's own
    /// interpolation (a block inside a late option is late as well).
    fn decode_fields(obj: &Map, prefix: &str, inherited: Option<Interp>, d: &mut Decoder) -> Self;
}

/// State of one decoding: what Prepare-time interpolation needs and the
/// errors found so far. Both template kinds decode with the same weak
/// rules: HCL2 values already have the declared types, so the rules only
/// matter for JSON templates.
pub struct Decoder {
    /// Functions' context for interpolation.
    pub context: Arc<TemplateContext>,
    /// Every problem found, in order.
    pub errors: Vec<String>,
}

/// Where a value is being decoded: its dotted path and interpolation.
pub struct At<'a> {
    /// `name`, `block.name` or `blocks[1].name`.
    pub path: &'a str,
    /// When its strings are interpolated.
    pub interp: Interp,
}

impl Decoder {
    /// Decodes option `name` of `obj`; `None` when it is absent, `null`
    /// or invalid (then an error was recorded).
    pub fn field<T: OptionValue>(
        &mut self,
        obj: &Map,
        prefix: &str,
        desc: &OptionDesc,
        interp: Interp,
    ) -> Option<T> {
        let path = format!("{prefix}{}", desc.name);
        let raw = obj.get(desc.name).filter(|v| !v.is_null());
        let defaulted;
        let raw = match (raw, desc.default_value) {
            (None, Some(d)) => {
                defaulted = Value::String(d.to_string());
                &defaulted
            }
            (Some(Value::String(s)), Some(d)) if s.is_empty() => {
                defaulted = Value::String(d.to_string());
                &defaulted
            }
            (None, None) => return None,
            (Some(v), _) => v,
        };
        T::decode(
            raw,
            &At {
                path: &path,
                interp,
            },
            self,
        )
    }

    fn fail<T>(&mut self, at: &At, msg: impl fmt::Display) -> Option<T> {
        self.errors.push(format!("{}: {msg}", at.path));
        None
    }

    /// Renders a Prepare-time string, or parses it for checking when the
    /// option is late (then the text is kept as written).
    fn interpolate(&mut self, s: String, at: &At) -> Option<String> {
        let result = match at.interp {
            Interp::Prepare => template::render_now(&s, &self.context),
            Interp::Late(allowed) => Template::parse(&s, allowed, self.context.clone()).map(|_| s),
        };
        match result {
            Ok(s) => Some(s),
            Err(e) => self.fail(at, format_args!("invalid template: {e}")),
        }
    }

    /// Records unknown (and deprecated) keys of `obj`.
    pub fn check_keys(&mut self, obj: &Map, prefix: &str, known: &[&[OptionDesc]]) {
        for key in obj.keys() {
            if known
                .iter()
                .any(|group| group.iter().any(|o| o.name == key))
            {
                continue;
            }
            if prefix.is_empty() {
                if key == "type" || key.starts_with("packer_") {
                    continue;
                }
                if DEPRECATED_KEYS.contains(&key.as_str()) {
                    self.errors.push(format!(
                        "Deprecated configuration key: '{key}'. Please call `packer fix` against your \
                         template to update your template to be compatible with the current version \
                         of Packer. Visit https://www.packer.io/docs/commands/fix/ for more detail."
                    ));
                    continue;
                }
            }
            let mut message = format!(
                "unknown configuration key: '{:?}'",
                format!("{prefix}{key}")
            );
            let closest = known
                .iter()
                .flat_map(|group| group.iter())
                .filter(|o| !o.name.starts_with("packer_"))
                .map(|o| (edit_distance(key, o.name), o.name))
                .min();
            // Two edits catch typos and swapped letters without suggesting
            // unrelated short names.
            if let Some((_, name)) = closest.filter(|(d, _)| *d <= 2) {
                message.push_str(&format!("; did you mean {name:?}?"));
            }
            self.errors.push(message);
        }
    }
}

/// Levenshtein distance, for "did you mean" on unknown keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Keys `packer fix` rewrites for amazon builders (SDK `DeprecatedOptions`).
pub const DEPRECATED_KEYS: &[&str] = &[
    "clean_ami_name",
    "enhanced_networking",
    "shutdown_behaviour",
    "spot_price_auto_product",
    "ssh_private_ip",
    "temporary_security_group_source_cidr",
];

/// A Rust type an option can have.
pub trait OptionValue: Sized {
    /// Its spec shape.
    fn shape() -> Shape;
    /// Its type as the docs show it.
    fn type_doc() -> String;
    /// Decodes a non-null raw value, recording errors in `d`.
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self>;
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// mapstructure's weak string: bools as `1`/`0`, numbers in Go's `%v`.
fn weak_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.into()),
        Value::Number(n) => Ok(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        }),
        other => Err(format!("expected a string, got {}", describe(other))),
    }
}

/// mapstructure's weak bool, with Go's `strconv.ParseBool` spellings.
fn weak_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_f64() != Some(0.0)),
        Value::String(s) => match s.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" | "" => Ok(false),
            _ => Err(format!(
                "expected a boolean (true or false), got the string {s:?}"
            )),
        },
        other => Err(format!(
            "expected a boolean (true or false), got {}",
            describe(other)
        )),
    }
}

/// mapstructure's weak integer; a fractional number is refused rather
/// than silently truncated.
fn weak_int(v: &Value) -> Result<i64, String> {
    let whole = "expected a whole number";
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18) {
                Ok(f as i64)
            } else {
                Err(format!("{whole}, got the number {n}"))
            }
        }
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::String(s) if s.is_empty() => Ok(0),
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("{whole}, got the string {s:?}")),
        other => Err(format!("{whole}, got {}", describe(other))),
    }
}

/// A list of raw items: JSON lists, `"a,b"` strings (the SDK's
/// `StringToSlice(",")` hook) and single scalars (weak lifting).
fn weak_items(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) => Ok(items.clone()),
        Value::String(s) if s.is_empty() => Ok(vec![]),
        Value::String(s) => Ok(s.split(',').map(|p| Value::String(p.into())).collect()),
        Value::Object(m) if m.is_empty() => Ok(vec![]),
        Value::Object(_) => Err("expected a list, got an object".into()),
        scalar => Ok(vec![scalar.clone()]),
    }
}

impl OptionValue for String {
    fn shape() -> Shape {
        Shape::Attr(CtyType::String)
    }
    fn type_doc() -> String {
        "string".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        match weak_string(raw) {
            Ok(s) => d.interpolate(s, at),
            Err(e) => d.fail(at, e),
        }
    }
}

/// A credential: decoded like a string, never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl OptionValue for Secret {
    fn shape() -> Shape {
        String::shape()
    }
    fn type_doc() -> String {
        "string (secret)".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        String::decode(raw, at, d).map(Secret)
    }
}

impl OptionValue for bool {
    fn shape() -> Shape {
        Shape::Attr(CtyType::Bool)
    }
    fn type_doc() -> String {
        "bool".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        match weak_bool(raw) {
            Ok(b) => Some(b),
            Err(e) => d.fail(at, e),
        }
    }
}

/// A bool that can also be unset (the SDK's `config.Trilean`): several
/// options behave differently when the user said nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Trilean {
    /// Not set.
    #[default]
    Unset,
    /// Set to true.
    True,
    /// Set to false.
    False,
}

impl Trilean {
    /// Explicitly true.
    pub fn is_true(self) -> bool {
        self == Trilean::True
    }
    /// Explicitly false.
    pub fn is_false(self) -> bool {
        self == Trilean::False
    }
    /// `None` when unset.
    pub fn as_option(self) -> Option<bool> {
        match self {
            Trilean::Unset => None,
            Trilean::True => Some(true),
            Trilean::False => Some(false),
        }
    }
}

impl OptionValue for Trilean {
    fn shape() -> Shape {
        bool::shape()
    }
    fn type_doc() -> String {
        "bool (unset/true/false)".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        // An empty string is "unset" for a Trilean (SDK `TrileanFromString`).
        if raw.as_str() == Some("") {
            return Some(Trilean::Unset);
        }
        bool::decode(raw, at, d).map(|b| if b { Trilean::True } else { Trilean::False })
    }
}

impl OptionValue for i64 {
    fn shape() -> Shape {
        Shape::Attr(CtyType::Number)
    }
    fn type_doc() -> String {
        "number".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        match weak_int(raw) {
            Ok(n) => Some(n),
            Err(e) => d.fail(at, e),
        }
    }
}

impl<T: OptionValue> OptionValue for Option<T> {
    fn shape() -> Shape {
        T::shape()
    }
    fn type_doc() -> String {
        T::type_doc()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        T::decode(raw, at, d).map(Some)
    }
}

/// Decodes each item of a list with `item`, naming failures `path[i]`.
fn decode_list<T>(
    raw: &Value,
    at: &At,
    d: &mut Decoder,
    mut item: impl FnMut(&Value, &At, &mut Decoder) -> Option<T>,
) -> Option<Vec<T>> {
    let items = match weak_items(raw) {
        Ok(items) => items,
        Err(e) => return d.fail(at, e),
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        let path = format!("{}[{i}]", at.path);
        match item(
            v,
            &At {
                path: &path,
                interp: at.interp,
            },
            d,
        ) {
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

impl OptionValue for Vec<String> {
    fn shape() -> Shape {
        Shape::Attr(CtyType::List(Box::new(CtyType::String)))
    }
    fn type_doc() -> String {
        "list(string)".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        decode_list(raw, at, d, String::decode)
    }
}

impl OptionValue for Vec<Vec<String>> {
    fn shape() -> Shape {
        Shape::Attr(CtyType::List(Box::new(CtyType::List(Box::new(
            CtyType::String,
        )))))
    }
    fn type_doc() -> String {
        "list(list(string))".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        decode_list(raw, at, d, Vec::<String>::decode)
    }
}

/// Raw map entries: a JSON object, or (weakly) a list of objects merged.
fn weak_entries(raw: &Value) -> Result<Vec<(String, Value)>, String> {
    match raw {
        Value::Object(m) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::Object(m) => out.extend(m.iter().map(|(k, v)| (k.clone(), v.clone()))),
                    other => {
                        return Err(format!(
                            "expected a map, got a list holding {}",
                            describe(other)
                        ))
                    }
                }
            }
            Ok(out)
        }
        other => Err(format!(
            "expected a map of strings, got {}",
            describe(other)
        )),
    }
}

impl OptionValue for BTreeMap<String, String> {
    fn shape() -> Shape {
        Shape::Attr(CtyType::Map(Box::new(CtyType::String)))
    }
    fn type_doc() -> String {
        "map(string)".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        let entries = match weak_entries(raw) {
            Ok(e) => e,
            Err(e) => return d.fail(at, e),
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in entries {
            let path = format!("{}.{k}", at.path);
            match String::decode(
                &v,
                &At {
                    path: &path,
                    interp: at.interp,
                },
                d,
            ) {
                Some(s) => {
                    out.insert(k, s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

fn late_fields(at: &At) -> &'static [&'static str] {
    match at.interp {
        Interp::Late(fields) => fields,
        Interp::Prepare => template::fields::NONE,
    }
}

impl Default for Template {
    /// The empty template (renders `""`); options replace it with their
    /// default at Prepare.
    fn default() -> Self {
        Template::parse(
            "",
            template::fields::NONE,
            Arc::new(TemplateContext::from_settings(
                &Default::default(),
                TemplateKind::Hcl2,
            )),
        )
        .unwrap_or_else(|_| unreachable!("the empty template always parses"))
    }
}

impl OptionValue for Template {
    fn shape() -> Shape {
        String::shape()
    }
    fn type_doc() -> String {
        "string (template)".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        let s = match weak_string(raw) {
            Ok(s) => s,
            Err(e) => return d.fail(at, e),
        };
        match Template::parse(&s, late_fields(at), d.context.clone()) {
            Ok(t) => Some(t),
            Err(e) => d.fail(at, format_args!("invalid template: {e}")),
        }
    }
}

impl OptionValue for Vec<Template> {
    fn shape() -> Shape {
        Vec::<String>::shape()
    }
    fn type_doc() -> String {
        "list(string) (templates)".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        decode_list(raw, at, d, Template::decode)
    }
}

/// A `map(string)` whose keys and values are templates rendered during
/// the build (tags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateMap(pub Vec<(Template, Template)>);

impl TemplateMap {
    /// Sets `key` (as written) to `value`, replacing an entry with the
    /// same key text: tag blocks win over the map (upstream `CopyOn`).
    pub fn insert(&mut self, key: Template, value: Template) {
        self.0.retain(|(k, _)| k.source() != key.source());
        self.0.push((key, value));
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Renders every key and value with `data`.
    pub fn render(
        &self,
        data: &template::TemplateData,
    ) -> Result<BTreeMap<String, String>, template::TemplateError> {
        self.0
            .iter()
            .map(|(k, v)| Ok((k.render(data)?, v.render(data)?)))
            .collect()
    }
}

impl OptionValue for TemplateMap {
    fn shape() -> Shape {
        BTreeMap::<String, String>::shape()
    }
    fn type_doc() -> String {
        "map(string) (templates)".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        let entries = match weak_entries(raw) {
            Ok(e) => e,
            Err(e) => return d.fail(at, e),
        };
        let mut out = TemplateMap::default();
        let mut ok = true;
        for (k, v) in entries {
            let path = format!("{}.{k}", at.path);
            let at = At {
                path: &path,
                interp: at.interp,
            };
            let key = Template::decode(&Value::String(k.clone()), &at, d);
            let value = Template::decode(&v, &at, d);
            match (key, value) {
                (Some(k), Some(v)) => out.insert(k, v),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Decodes a block body of group `G` at `at`.
pub fn decode_block<G: OptionGroup>(
    raw: &Value,
    at: &At,
    d: &mut Decoder,
    inherit: bool,
) -> Option<G> {
    let Value::Object(obj) = raw else {
        return d.fail(
            at,
            format_args!("expected a block (an object), got {}", describe(raw)),
        );
    };
    let prefix = format!("{}.", at.path);
    let before = d.errors.len();
    d.check_keys(obj, &prefix, &[G::OPTIONS]);
    let inherited = match (inherit, at.interp) {
        (true, late @ Interp::Late(_)) => Some(late),
        _ => None,
    };
    let out = G::decode_fields(obj, &prefix, inherited, d);
    (d.errors.len() == before).then_some(out)
}

/// Repeatable blocks of group `G` (`tag { … }`, `ami_block_device_mappings { … }`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockList<G>(pub Vec<G>);

impl<G: OptionGroup> OptionValue for BlockList<G> {
    fn shape() -> Shape {
        Shape::BlockList(G::OPTIONS)
    }
    fn type_doc() -> String {
        "repeatable block".into()
    }
    fn decode(raw: &Value, at: &At, d: &mut Decoder) -> Option<Self> {
        // JSON templates may give one object where a list is expected.
        let items = match raw {
            Value::Array(items) => items.clone(),
            Value::Object(_) => vec![raw.clone()],
            other => {
                return d.fail(
                    at,
                    format_args!(
                        "expected a list of blocks (objects), got {}",
                        describe(other)
                    ),
                )
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", at.path);
            match decode_block::<G>(
                item,
                &At {
                    path: &path,
                    interp: at.interp,
                },
                d,
                true,
            ) {
                Some(g) => out.push(g),
                None => ok = false,
            }
        }
        ok.then_some(BlockList(out))
    }
}

/// Test-only view of a decoded option by its template path
/// (`ami_name`, `assume_role.role_arn`, `tag.key`), so the option table
/// can observe every option without one accessor per field.
#[cfg(test)]
pub trait Observe {
    /// `Debug` of the value at `path` (`""` for the value itself); `None`
    /// when no such option exists. Secrets show their text, templates
    /// their source, repeatable blocks the list of each entry's value.
    fn observe(&self, path: &str) -> Option<String>;
}

/// Leaf options: only the empty path names them.
#[cfg(test)]
macro_rules! observe_by_debug {
    ($($ty:ty),*) => {$(
        impl Observe for $ty {
            fn observe(&self, path: &str) -> Option<String> {
                path.is_empty().then(|| format!("{self:?}"))
            }
        }
    )*};
}
#[cfg(test)]
observe_by_debug!(
    String,
    bool,
    Trilean,
    i64,
    Vec<String>,
    Vec<Vec<String>>,
    BTreeMap<String, String>
);

#[cfg(test)]
impl Observe for Secret {
    fn observe(&self, path: &str) -> Option<String> {
        path.is_empty().then(|| format!("{:?}", self.expose()))
    }
}

#[cfg(test)]
impl Observe for Template {
    fn observe(&self, path: &str) -> Option<String> {
        path.is_empty().then(|| format!("{:?}", self.source()))
    }
}

#[cfg(test)]
impl Observe for Vec<Template> {
    fn observe(&self, path: &str) -> Option<String> {
        let sources: Vec<&str> = self.iter().map(Template::source).collect();
        path.is_empty().then(|| format!("{sources:?}"))
    }
}

#[cfg(test)]
impl Observe for TemplateMap {
    fn observe(&self, path: &str) -> Option<String> {
        let sources: BTreeMap<&str, &str> = self
            .0
            .iter()
            .map(|(k, v)| (k.source(), v.source()))
            .collect();
        path.is_empty().then(|| format!("{sources:?}"))
    }
}

/// `None` for an absent value, also for its members (an unset block has
/// none to look at) as long as they exist.
#[cfg(test)]
impl<T: Observe + Default> Observe for Option<T> {
    fn observe(&self, path: &str) -> Option<String> {
        match self {
            None => {
                T::default().observe(path)?;
                Some("None".into())
            }
            Some(v) if path.is_empty() => Some(format!("Some({})", v.observe("")?)),
            Some(v) => v.observe(path),
        }
    }
}

/// One observation per entry: `[a, b]`.
#[cfg(test)]
impl<G: Observe + Default> Observe for BlockList<G> {
    fn observe(&self, path: &str) -> Option<String> {
        // Checked on an empty entry so an unknown member is `None` even
        // when there are no entries.
        G::default().observe(path)?;
        let each: Option<Vec<String>> = self.0.iter().map(|g| g.observe(path)).collect();
        Some(format!("[{}]", each?.join(", ")))
    }
}

/// Declares a group of options: the struct, its [`OptionGroup`] impl
/// (names, spec shapes, docs, decoding) and, for blocks, its
/// [`OptionValue`] impl. Each option reads
///
/// ```text
/// /// Doc line.
/// name: Type = value "default applied when unset or empty" [, late FIELDS];
/// name: Type = doc "default as the docs describe it" [, late FIELDS];
/// ```
macro_rules! options {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident ($title:literal) {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $dkind:ident $dtext:literal $(, late $late:expr)? ;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl $crate::builder::config::declare::OptionGroup for $name {
            const TITLE: &'static str = $title;
            const OPTIONS: &'static [$crate::builder::config::declare::OptionDesc] = &[
                $( $crate::builder::config::declare::OptionDesc {
                    name: stringify!($field),
                    shape: <$ty as $crate::builder::config::declare::OptionValue>::shape,
                    type_doc: <$ty as $crate::builder::config::declare::OptionValue>::type_doc,
                    default_doc: $dtext,
                    default_value: options!(@value $dkind $dtext),
                    doc: concat!($($doc, "\n"),*),
                    interp: options!(@interp $($late)?),
                }, )*
            ];

            #[allow(unused_assignments, unused_variables, unused_mut)]
            fn decode_fields(
                obj: &$crate::plugin::api::Map,
                prefix: &str,
                inherited: Option<$crate::builder::config::declare::Interp>,
                d: &mut $crate::builder::config::declare::Decoder,
            ) -> Self {
                let mut out = Self::default();
                let mut index = 0;
                $(
                    let desc = &<Self as $crate::builder::config::declare::OptionGroup>::OPTIONS[index];
                    index += 1;
                    let interp = inherited.unwrap_or(desc.interp);
                    if let Some(v) = d.field::<$ty>(obj, prefix, desc, interp) {
                        out.$field = v;
                    }
                )*
                out
            }
        }

        impl $crate::builder::config::declare::OptionValue for $name {
            fn shape() -> $crate::builder::config::declare::Shape {
                $crate::builder::config::declare::Shape::Block(
                    <Self as $crate::builder::config::declare::OptionGroup>::OPTIONS,
                )
            }
            fn type_doc() -> String {
                "block".into()
            }
            fn decode(
                raw: &serde_json::Value,
                at: &$crate::builder::config::declare::At,
                d: &mut $crate::builder::config::declare::Decoder,
            ) -> Option<Self> {
                $crate::builder::config::declare::decode_block::<Self>(raw, at, d, false)
            }
        }

        #[cfg(test)]
        impl $crate::builder::config::declare::Observe for $name {
            fn observe(&self, path: &str) -> Option<String> {
                if path.is_empty() {
                    return Some(format!("{self:?}"));
                }
                let (head, rest) = path.split_once('.').unwrap_or((path, ""));
                $(
                    if head == stringify!($field) {
                        return $crate::builder::config::declare::Observe::observe(&self.$field, rest);
                    }
                )*
                None
            }
        }
    };
    (@value value $t:literal) => { Some($t) };
    (@value doc $t:literal) => { None };
    (@interp) => { $crate::builder::config::declare::Interp::Prepare };
    (@interp $late:expr) => { $crate::builder::config::declare::Interp::Late($late) };
}
pub(crate) use options;
