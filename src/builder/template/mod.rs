//! Go-template interpolation, the subset Packer builder configurations use.
//!
//! Packer plugins interpolate `{{ … }}` in configuration strings with Go's
//! `text/template` and the functions of the plugin SDK (`timestamp`,
//! `isotime`, `user`, `clean_resource_name`, …). Most options are rendered
//! once at Prepare; a few (`command_wrapper`, `mount_path`, the mount
//! commands, tags, `ami_description`) are kept as parsed [`Template`]s and
//! rendered during the build with a [`TemplateData`] the pipeline fills
//! in (`.Device`, `.MountPath`, `.SourceAMI`, …).
//!
//! Everything that can be checked without the run-time data (syntax,
//! function names and arity, which data fields an option may use) is
//! checked by [`Template::parse`], so a mistake is a Prepare error naming
//! the option instead of a failure in the middle of a build.

pub mod clock;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::plugin::api::{PackerSettings, TemplateKind};
use clock::UtcDateTime;

/// Data fields a template may reference, grouped by where they exist.
pub mod fields {
    /// `command_wrapper`: the host command being wrapped.
    pub const COMMAND: &[&str] = &["Command"];
    /// `mount_path`, `pre_mount_commands`: the attached device.
    pub const DEVICE: &[&str] = &["Device"];
    /// `post_mount_commands`: the device and the chroot's mount path.
    pub const DEVICE_AND_MOUNT_PATH: &[&str] = &["Device", "MountPath"];
    /// Tags and `ami_description`: what is known about the build
    /// (upstream's `BuildInfoTemplate`). `SourceAMITags` is a map.
    pub const BUILD_INFO: &[&str] = &[
        "BuildRegion",
        "SourceAMI",
        "SourceAMICreationDate",
        "SourceAMIName",
        "SourceAMIOwner",
        "SourceAMIOwnerName",
        "SourceAMITags",
    ];
    /// Options rendered at Prepare: no data at all.
    pub const NONE: &[&str] = &[];
}

/// A template that could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

/// The instant every time function renders: Packer's `InitTime`, taken
/// once per process so `{{timestamp}}` is the same in every option.
fn process_start() -> SystemTime {
    static START: OnceLock<SystemTime> = OnceLock::new();
    *START.get_or_init(SystemTime::now)
}

/// What the template functions see besides the data: the build's names,
/// the user variables and the start time.
#[derive(Clone, PartialEq)]
pub struct TemplateContext {
    /// `{{build_name}}`.
    pub build_name: String,
    /// `{{build_type}}`.
    pub build_type: String,
    /// `{{packer_version}}`; unknown before Packer 1.7.5 in HCL2 mode.
    pub packer_version: Option<String>,
    /// The template file, for `{{template_dir}}` (JSON templates only).
    pub template_path: Option<String>,
    /// `{{user "x"}}` values; `None` in HCL2 mode, which has no user variables.
    pub user_variables: Option<BTreeMap<String, String>>,
    /// The instant `timestamp`, `isotime`, `strftime` render.
    pub now: SystemTime,
}

impl fmt::Debug for TemplateContext {
    /// User variables may hold secrets: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateContext")
            .field("build_name", &self.build_name)
            .field("build_type", &self.build_type)
            .field("packer_version", &self.packer_version)
            .field("template_path", &self.template_path)
            .field(
                "user_variables",
                &self
                    .user_variables
                    .as_ref()
                    .map(|v| v.keys().collect::<Vec<_>>()),
            )
            .field("now", &self.now)
            .finish()
    }
}

impl TemplateContext {
    /// The context of one Prepare call.
    pub fn from_settings(settings: &PackerSettings, kind: TemplateKind) -> Self {
        TemplateContext {
            build_name: settings.build_name.clone(),
            build_type: settings.builder_type.clone(),
            packer_version: settings.core_version.clone().filter(|v| !v.is_empty()),
            template_path: settings.template_path.clone().filter(|p| !p.is_empty()),
            user_variables: match kind {
                TemplateKind::Json => Some(settings.user_variables.clone()),
                TemplateKind::Hcl2 => None,
            },
            now: process_start(),
        }
    }
}

/// What the source AMI and the build region tell templates (upstream's
/// `BuildInfoTemplate`). All fields but `build_region` stay empty for
/// `from_scratch` builds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildInfo {
    /// `.BuildRegion`.
    pub build_region: String,
    /// `.SourceAMI`: the source image id.
    pub source_ami: String,
    /// `.SourceAMICreationDate`.
    pub source_ami_creation_date: String,
    /// `.SourceAMIName`.
    pub source_ami_name: String,
    /// `.SourceAMIOwner`: the owner account id.
    pub source_ami_owner: String,
    /// `.SourceAMIOwnerName`: the owner alias (e.g. `amazon`).
    pub source_ami_owner_name: String,
    /// `.SourceAMITags.<Key>`.
    pub source_ami_tags: BTreeMap<String, String>,
}

/// The data a run-time template is rendered with; the pipeline fills in
/// what the option's step knows. A field the template uses but the data
/// lacks is a render error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateData {
    /// `.Command` (for `command_wrapper`).
    pub command: Option<String>,
    /// `.Device`.
    pub device: Option<String>,
    /// `.MountPath`.
    pub mount_path: Option<String>,
    /// The build-info fields (`.BuildRegion`, `.SourceAMI…`).
    pub build_info: Option<BuildInfo>,
}

impl TemplateData {
    fn field(&self, name: &str) -> Option<Value> {
        let info = |f: fn(&BuildInfo) -> &String| {
            self.build_info.as_ref().map(|b| Value::Str(f(b).clone()))
        };
        match name {
            "Command" => self.command.clone().map(Value::Str),
            "Device" => self.device.clone().map(Value::Str),
            "MountPath" => self.mount_path.clone().map(Value::Str),
            "BuildRegion" => info(|b| &b.build_region),
            "SourceAMI" => info(|b| &b.source_ami),
            "SourceAMICreationDate" => info(|b| &b.source_ami_creation_date),
            "SourceAMIName" => info(|b| &b.source_ami_name),
            "SourceAMIOwner" => info(|b| &b.source_ami_owner),
            "SourceAMIOwnerName" => info(|b| &b.source_ami_owner_name),
            "SourceAMITags" => self
                .build_info
                .as_ref()
                .map(|b| Value::Map(b.source_ami_tags.clone())),
            _ => None,
        }
    }
}

/// A parsed template, ready to render.
#[derive(Clone)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
    context: Arc<TemplateContext>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Template {
    /// Parses `source`; `allowed` lists the data fields it may reference
    /// (see [`fields`]).
    pub fn parse(
        source: &str,
        allowed: &'static [&'static str],
        context: Arc<TemplateContext>,
    ) -> Result<Self, TemplateError> {
        let nodes = Parser { allowed }.parse(source)?;
        Ok(Template {
            source: source.to_string(),
            nodes,
            context,
        })
    }

    /// The text as written in the configuration.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `data`.
    pub fn render(&self, data: &TemplateData) -> Result<String, TemplateError> {
        let eval = Eval {
            context: &self.context,
            data,
        };
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => out.push_str(&eval.pipeline(p)?.to_string()),
            }
        }
        Ok(out)
    }
}

/// Parses and renders `source` at once with no data: Prepare-time
/// interpolation.
pub fn render_now(source: &str, context: &Arc<TemplateContext>) -> Result<String, TemplateError> {
    if !source.contains("{{") {
        return Ok(source.to_string());
    }
    Template::parse(source, fields::NONE, context.clone())?.render(&TemplateData::default())
}

/// Upstream's `clean_resource_name`: every byte outside
/// `[A-Za-z0-9()[] ./\-'@_]` becomes `-` (byte-wise, as in Go, so a
/// multi-byte character becomes several dashes).
pub fn clean_resource_name(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"()[] ./-'@_".contains(&b) {
                b as char
            } else {
                '-'
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
}

#[derive(Debug, Clone)]
struct Pipeline(Vec<Command>);

#[derive(Debug, Clone)]
enum Command {
    Call(Func, Vec<Operand>),
    Operand(Operand),
}

#[derive(Debug, Clone)]
enum Operand {
    Str(String),
    Int(i64),
    Bool(bool),
    Field(Vec<String>),
    Paren(Pipeline),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    BuildName,
    BuildType,
    Isotime,
    Strftime,
    Pwd,
    Split,
    TemplateDir,
    Timestamp,
    Uuid,
    User,
    PackerVersion,
    Replace,
    ReplaceAll,
    Upper,
    Lower,
    CleanResourceName,
    Index,
}

impl Func {
    /// Known name → function and accepted argument counts.
    fn lookup(name: &str) -> Result<(Func, usize, usize), TemplateError> {
        use Func::*;
        let (f, min, max) = match name {
            "build_name" => (BuildName, 0, 0),
            "build_type" => (BuildType, 0, 0),
            "isotime" => (Isotime, 0, 1),
            "strftime" => (Strftime, 1, 1),
            "pwd" => (Pwd, 0, 0),
            "split" => (Split, 3, 3),
            "template_dir" => (TemplateDir, 0, 0),
            "timestamp" => (Timestamp, 0, 0),
            "uuid" => (Uuid, 0, 0),
            "user" => (User, 1, 1),
            "packer_version" => (PackerVersion, 0, 0),
            "replace" => (Replace, 4, 4),
            "replace_all" => (ReplaceAll, 3, 3),
            "upper" => (Upper, 1, 1),
            "lower" => (Lower, 1, 1),
            "clean_resource_name" => (CleanResourceName, 1, 1),
            "index" => (Index, 2, 2),
            "env" => return err("env vars are not allowed here (only in the variables section)"),
            "consul_key" | "vault" | "aws_secretsmanager" | "aws_secretsmanager_raw" => {
                return err(format!(
                    "{name} is only allowed in the variables section"
                ))
            }
            "sed" => {
                return err("template function `sed` is deprecated, use `replace` or `replace_all` instead")
            }
            "build" => {
                return err("`build` is not available in builder options; it is for provisioners and post-processors")
            }
            "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block"
            | "break" | "continue" => {
                return err(format!("unsupported template action {name:?}"))
            }
            _ => return err(format!("function {name:?} not defined")),
        };
        Ok((f, min, max))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Str(String),
    Int(i64),
    Ident(String),
    Field(Vec<String>),
    Pipe,
    LParen,
    RParen,
}

struct Parser {
    allowed: &'static [&'static str],
}

impl Parser {
    fn parse(&self, src: &str) -> Result<Vec<Node>, TemplateError> {
        let mut nodes = Vec::new();
        let mut rest = src;
        let mut trim_next = false;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                push_text(&mut nodes, rest, trim_next, false);
                break;
            };
            let mut body = &rest[open + 2..];
            let trim_prev = body.starts_with("- ")
                || body.starts_with("-\t")
                || body.starts_with("-\n")
                || body.starts_with("-\r");
            push_text(&mut nodes, &rest[..open], trim_next, trim_prev);
            if trim_prev {
                body = &body[1..];
            }
            let (tokens, trim, after) = self.lex_action(body)?;
            trim_next = trim;
            rest = after;
            if let Some(tokens) = tokens {
                let mut pos = 0;
                let pipeline = self.pipeline(&tokens, &mut pos)?;
                if pos != tokens.len() {
                    return err(format!("unexpected {:?} in action", tokens[pos]));
                }
                nodes.push(Node::Action(pipeline));
            }
        }
        Ok(nodes)
    }

    /// Lexes one action body (after `{{`); returns its tokens (`None` for
    /// a comment), whether it ends with `-}}`, and the text after `}}`.
    fn lex_action<'s>(
        &self,
        body: &'s str,
    ) -> Result<(Option<Vec<Token>>, bool, &'s str), TemplateError> {
        let trimmed = body.trim_start();
        if let Some(comment) = trimmed.strip_prefix("/*") {
            let Some(end) = comment.find("*/") else {
                return err("unclosed comment");
            };
            let after = comment[end + 2..].trim_start();
            if let Some(r) = after.strip_prefix("-}}") {
                return Ok((None, true, r));
            }
            if let Some(r) = after.strip_prefix("}}") {
                return Ok((None, false, r));
            }
            return err("comment ends before closing delimiter");
        }
        let mut tokens = Vec::new();
        let chars: Vec<(usize, char)> = body.char_indices().collect();
        let mut i = 0;
        while i < chars.len() {
            let (at, c) = chars[i];
            let rest = &body[at..];
            if rest.starts_with("}}") {
                return Ok((Some(tokens), false, &body[at + 2..]));
            }
            if c.is_whitespace() {
                if rest.trim_start().starts_with("-}}") {
                    let skip = rest.len() - rest.trim_start().len();
                    return Ok((Some(tokens), true, &body[at + skip + 3..]));
                }
                i += 1;
                continue;
            }
            match c {
                '|' => {
                    tokens.push(Token::Pipe);
                    i += 1;
                }
                '(' => {
                    tokens.push(Token::LParen);
                    i += 1;
                }
                ')' => {
                    tokens.push(Token::RParen);
                    i += 1;
                }
                '"' => {
                    let mut s = String::new();
                    i += 1;
                    loop {
                        let Some(&(_, c)) = chars.get(i) else {
                            return err("unterminated quoted string");
                        };
                        i += 1;
                        match c {
                            '"' => break,
                            '\n' => return err("unterminated quoted string"),
                            '\\' => {
                                let Some(&(_, e)) = chars.get(i) else {
                                    return err("unterminated quoted string");
                                };
                                i += 1;
                                s.push(match e {
                                    'n' => '\n',
                                    't' => '\t',
                                    'r' => '\r',
                                    '\\' => '\\',
                                    '"' => '"',
                                    '\'' => '\'',
                                    other => {
                                        return err(format!(
                                            "unsupported escape \\{other} in string"
                                        ))
                                    }
                                });
                            }
                            c => s.push(c),
                        }
                    }
                    tokens.push(Token::Str(s));
                }
                '`' => {
                    let Some(end) = body[at + 1..].find('`') else {
                        return err("unterminated raw quoted string");
                    };
                    let s = &body[at + 1..at + 1 + end];
                    tokens.push(Token::Str(s.to_string()));
                    let end_byte = at + 1 + end + 1;
                    while i < chars.len() && chars[i].0 < end_byte {
                        i += 1;
                    }
                }
                '.' => {
                    let mut path = Vec::new();
                    let mut j = i;
                    while j < chars.len() && chars[j].1 == '.' {
                        let start = j + 1;
                        let mut k = start;
                        while k < chars.len() && (chars[k].1.is_alphanumeric() || chars[k].1 == '_')
                        {
                            k += 1;
                        }
                        if k == start {
                            if path.is_empty() && j == i {
                                // A lone dot: the data itself.
                                j = k;
                                break;
                            }
                            return err("malformed field reference");
                        }
                        path.push(chars[start..k].iter().map(|(_, c)| *c).collect::<String>());
                        j = k;
                    }
                    i = j;
                    tokens.push(Token::Field(path));
                }
                c if c.is_ascii_digit() || c == '-' || c == '+' => {
                    let start = i;
                    i += 1;
                    while i < chars.len()
                        && (chars[i].1.is_ascii_alphanumeric() || chars[i].1 == '_')
                    {
                        i += 1;
                    }
                    let text: String = chars[start..i].iter().map(|(_, c)| *c).collect();
                    let n = parse_go_int(&text)
                        .ok_or_else(|| TemplateError(format!("bad number syntax: {text:?}")))?;
                    tokens.push(Token::Int(n));
                }
                c if c.is_alphabetic() || c == '_' => {
                    let start = i;
                    while i < chars.len() && (chars[i].1.is_alphanumeric() || chars[i].1 == '_') {
                        i += 1;
                    }
                    tokens.push(Token::Ident(
                        chars[start..i].iter().map(|(_, c)| *c).collect(),
                    ));
                }
                '$' => return err("template variables ($x) are not supported"),
                other => return err(format!("unexpected {other:?} in action")),
            }
        }
        err("unclosed action")
    }

    fn pipeline(&self, tokens: &[Token], pos: &mut usize) -> Result<Pipeline, TemplateError> {
        let mut commands = Vec::new();
        loop {
            let piped = !commands.is_empty();
            commands.push(self.command(tokens, pos, piped)?);
            if tokens.get(*pos) == Some(&Token::Pipe) {
                *pos += 1;
            } else {
                break;
            }
        }
        Ok(Pipeline(commands))
    }

    fn command(
        &self,
        tokens: &[Token],
        pos: &mut usize,
        piped: bool,
    ) -> Result<Command, TemplateError> {
        let mut operands = Vec::new();
        let mut func = None;
        while let Some(t) = tokens.get(*pos) {
            match t {
                Token::Pipe | Token::RParen => break,
                Token::Ident(name) if operands.is_empty() && func.is_none() => {
                    *pos += 1;
                    match name.as_str() {
                        "true" => operands.push(Operand::Bool(true)),
                        "false" => operands.push(Operand::Bool(false)),
                        _ => func = Some((name.clone(), Func::lookup(name)?)),
                    }
                }
                Token::Ident(name) => match name.as_str() {
                    "true" | "false" => {
                        *pos += 1;
                        operands.push(Operand::Bool(name == "true"));
                    }
                    _ => return err(format!("{name:?} must be the first word of a command (functions take no function arguments; use parentheses)")),
                },
                _ => operands.push(self.operand(tokens, pos)?),
            }
        }
        match func {
            Some((name, (f, min, max))) => {
                let given = operands.len() + usize::from(piped);
                if given < min || given > max {
                    let want = if min == max {
                        min.to_string()
                    } else {
                        format!("{min} to {max}")
                    };
                    return err(format!(
                        "wrong number of args for {name}: want {want} got {given}"
                    ));
                }
                Ok(Command::Call(f, operands))
            }
            None => {
                if piped {
                    return err("only functions can follow a pipe (|)");
                }
                match operands.len() {
                    0 => err("missing value for command"),
                    1 => Ok(Command::Operand(operands.remove(0))),
                    _ => err("can't give argument to non-function"),
                }
            }
        }
    }

    fn operand(&self, tokens: &[Token], pos: &mut usize) -> Result<Operand, TemplateError> {
        let t = &tokens[*pos];
        *pos += 1;
        match t {
            Token::Str(s) => Ok(Operand::Str(s.clone())),
            Token::Int(n) => Ok(Operand::Int(*n)),
            Token::Field(path) => {
                self.check_field(path)?;
                Ok(Operand::Field(path.clone()))
            }
            Token::LParen => {
                let p = self.pipeline(tokens, pos)?;
                if tokens.get(*pos) != Some(&Token::RParen) {
                    return err("unclosed left paren");
                }
                *pos += 1;
                Ok(Operand::Paren(p))
            }
            other => err(format!("unexpected {other:?} in operand")),
        }
    }

    fn check_field(&self, path: &[String]) -> Result<(), TemplateError> {
        let Some(first) = path.first() else {
            return err(
                "the data itself ({{.}}) cannot be printed; use a field such as {{.Device}}",
            );
        };
        if !self.allowed.contains(&first.as_str()) {
            if self.allowed.is_empty() {
                return err(format!(
                    ".{first} is not available here: this option is rendered at Prepare, without build data"
                ));
            }
            let list: Vec<String> = self.allowed.iter().map(|f| format!(".{f}")).collect();
            return err(format!(
                ".{first} is not available here (available: {})",
                list.join(", ")
            ));
        }
        let depth = if first == "SourceAMITags" { 2 } else { 1 };
        if path.len() > depth {
            return err(format!(
                "can't evaluate field {} of .{}",
                path[depth],
                path[..depth].join(".")
            ));
        }
        Ok(())
    }
}

fn push_text(nodes: &mut Vec<Node>, text: &str, trim_start: bool, trim_end: bool) {
    let mut t = text;
    if trim_start {
        t = t.trim_start();
    }
    if trim_end {
        t = t.trim_end();
    }
    if !t.is_empty() {
        nodes.push(Node::Text(t.to_string()));
    }
}

/// Go integer literal syntax: decimal, `0x`, `0o`/`0`, `0b`, `_` separators.
fn parse_go_int(text: &str) -> Option<i64> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let clean = digits.replace('_', "");
    let lower = clean.to_ascii_lowercase();
    let value = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if lower.len() > 1 && lower.starts_with('0') {
        i64::from_str_radix(&lower[1..], 8).ok()?
    } else {
        lower.parse().ok()?
    };
    Some(if neg { -value } else { value })
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    /// Go's `<no value>`: a missing map key.
    Missing,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Map(m) => {
                let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                write!(f, "map[{}]", items.join(" "))
            }
            Value::Missing => f.write_str("<no value>"),
        }
    }
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::Map(_) => "map",
            Value::Missing => "no value",
        }
    }
}

struct Eval<'a> {
    context: &'a TemplateContext,
    data: &'a TemplateData,
}

impl Eval<'_> {
    fn pipeline(&self, p: &Pipeline) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for command in &p.0 {
            last = Some(match command {
                Command::Operand(o) => self.operand(o)?,
                Command::Call(f, args) => {
                    let mut values = args
                        .iter()
                        .map(|a| self.operand(a))
                        .collect::<Result<Vec<_>, _>>()?;
                    values.extend(last.take());
                    self.call(*f, values)?
                }
            });
        }
        Ok(last.unwrap_or(Value::Missing))
    }

    fn operand(&self, o: &Operand) -> Result<Value, TemplateError> {
        match o {
            Operand::Str(s) => Ok(Value::Str(s.clone())),
            Operand::Int(n) => Ok(Value::Int(*n)),
            Operand::Bool(b) => Ok(Value::Bool(*b)),
            Operand::Paren(p) => self.pipeline(p),
            Operand::Field(path) => {
                let Some(value) = self.data.field(&path[0]) else {
                    return err(format!(
                        ".{} has no value at this point of the build",
                        path[0]
                    ));
                };
                match (value, path.get(1)) {
                    (v, None) => Ok(v),
                    (Value::Map(m), Some(key)) => Ok(m
                        .get(key)
                        .cloned()
                        .map(Value::Str)
                        .unwrap_or(Value::Missing)),
                    (v, Some(key)) => {
                        err(format!("can't evaluate field {key} in type {}", v.kind()))
                    }
                }
            }
        }
    }

    fn call(&self, f: Func, args: Vec<Value>) -> Result<Value, TemplateError> {
        let ctx = self.context;
        let now = || UtcDateTime::from_system_time(ctx.now);
        let s = |i: usize| -> Result<&str, TemplateError> {
            match &args[i] {
                Value::Str(s) => Ok(s.as_str()),
                other => err(format!(
                    "wrong type for value; expected string; got {}",
                    other.kind()
                )),
            }
        };
        let int = |i: usize| -> Result<i64, TemplateError> {
            match &args[i] {
                Value::Int(n) => Ok(*n),
                other => err(format!(
                    "wrong type for value; expected int; got {}",
                    other.kind()
                )),
            }
        };
        let out = match f {
            Func::BuildName if ctx.build_name.is_empty() => return err("build_name not available"),
            Func::BuildName => ctx.build_name.clone(),
            Func::BuildType if ctx.build_type.is_empty() => return err("build_type not available"),
            Func::BuildType => ctx.build_type.clone(),
            Func::PackerVersion => match &ctx.packer_version {
                Some(v) => v.clone(),
                None => return err("packer_version not available"),
            },
            Func::Isotime if args.is_empty() => now().format_go("2006-01-02T15:04:05Z07:00"),
            Func::Isotime => now().format_go(s(0)?),
            Func::Strftime => now().format_strftime(s(0)?),
            Func::Timestamp => now().unix.to_string(),
            Func::Uuid => time_ordered_uuid(ctx.now)?,
            Func::Pwd => std::env::current_dir()
                .map_err(|e| TemplateError(format!("pwd: {e}")))?
                .display()
                .to_string(),
            Func::TemplateDir => template_dir(ctx.template_path.as_deref())?,
            Func::User => match &ctx.user_variables {
                Some(vars) => vars.get(s(0)?).cloned().unwrap_or_default(),
                None => {
                    return err(format!(
                        "user variables do not exist in HCL2 templates; use var.{} instead of {{{{user}}}}",
                        s(0)?
                    ))
                }
            },
            Func::Upper => s(0)?.to_uppercase(),
            Func::Lower => s(0)?.to_lowercase(),
            Func::ReplaceAll => s(2)?.replace(s(0)?, s(1)?),
            Func::Replace => {
                let n = int(2)?;
                if n < 0 {
                    s(3)?.replace(s(0)?, s(1)?)
                } else {
                    s(3)?.replacen(s(0)?, s(1)?, n as usize)
                }
            }
            Func::Split => {
                let parts: Vec<&str> = s(0)?.split(s(1)?).collect();
                let i = int(2)?;
                match usize::try_from(i).ok().and_then(|i| parts.get(i)) {
                    Some(p) => p.to_string(),
                    None => {
                        return err(format!(
                            "the substring {i} was unavailable using the separator value, {}, only {} values were found",
                            s(1)?,
                            parts.len()
                        ))
                    }
                }
            }
            Func::CleanResourceName => clean_resource_name(s(0)?),
            Func::Index => match (&args[0], &args[1]) {
                (Value::Map(m), Value::Str(k)) => m.get(k).cloned().unwrap_or_default(),
                (a, b) => return err(format!("can't index item of type {} with {}", a.kind(), b.kind())),
            },
        };
        Ok(Value::Str(out))
    }
}

fn template_dir(path: Option<&str>) -> Result<String, TemplateError> {
    let Some(path) = path else {
        return err("template path not available");
    };
    let p = std::path::Path::new(path);
    let dir = p.parent().unwrap_or(std::path::Path::new(""));
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| TemplateError(format!("template_dir: {e}")))?
            .join(dir)
    };
    Ok(abs.display().to_string().trim_end_matches('/').to_string())
}

/// The SDK's time-ordered UUID: 8 hex digits of the Unix time, then 12
/// random bytes.
fn time_ordered_uuid(now: SystemTime) -> Result<String, TemplateError> {
    use std::io::Read;
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| TemplateError(format!("uuid: reading /dev/urandom: {e}")))?;
    let unix = UtcDateTime::from_system_time(now).unix as u32;
    let hex = |s: &[u8]| s.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Ok(format!(
        "{unix:08x}-{}-{}-{}-{}{}",
        hex(&b[0..2]),
        hex(&b[2..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..12])
    ))
}

#[cfg(test)]
mod tests;
