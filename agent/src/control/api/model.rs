//! The VPC Lattice service model (derived from botocore by `cargo xtask
//! gen-model`) and the generic machinery it drives: routing a request to an
//! operation, assembling the operation's input from path, query, headers and
//! body, validating it against the input shape, and projecting a handler's
//! result onto the output shape.

use std::{
    collections::{BTreeMap, HashMap},
    sync::OnceLock,
};

use serde::Deserialize;
use serde_json::{Map, Value};

static MODEL_JSON: &str = include_str!("vpc-lattice-2022-11-30.json");
static RAM_JSON: &str = include_str!("ram-2018-01-04.json");

/// The APIs latticed serves on its one listener, told apart by the service
/// name the request is signed for (as AWS tells its endpoints apart by
/// host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// VPC Lattice (`vpc-lattice`, 2022-11-30).
    Lattice,
    /// Resource Access Manager (`ram`, 2018-01-04): sharing between
    /// accounts.
    Ram,
}

impl Api {
    /// The API a request signed for `service` calls.
    pub fn of_service(service: &str) -> Option<Self> {
        [Self::Lattice, Self::Ram]
            .into_iter()
            .find(|api| api.signing_name() == service)
    }

    /// The service name its requests are signed for.
    pub fn signing_name(self) -> &'static str {
        match self {
            Self::Lattice => "vpc-lattice",
            Self::Ram => "ram",
        }
    }

    /// Its model.
    pub fn model(self) -> &'static Model {
        match self {
            Self::Lattice => model(),
            Self::Ram => {
                static RAM: OnceLock<Model> = OnceLock::new();
                RAM.get_or_init(|| Model::parse(RAM_JSON))
            }
        }
    }

    /// How handlers name operation `op` of this API: RAM's carry `ram:`,
    /// as two of its names (TagResource, UntagResource) are also Lattice's.
    pub fn handler_name(self, op: &str) -> String {
        match self {
            Self::Lattice => op.to_owned(),
            Self::Ram => format!("ram:{op}"),
        }
    }
}

/// Shapes whose model pattern is not enforced. `VpcId` is `vpc-` + 8 or 17
/// characters in AWS; here a VPC is a network namespace, and any existing
/// namespace name of the model's length (5 to 50) is accepted, as the CLI
/// itself only checks the length.
const RELAXED_PATTERNS: &[&str] = &["VpcId"];

/// One operation of the model.
#[derive(Debug)]
pub struct Operation {
    /// Name, e.g. `CreateService`.
    pub name: String,
    /// HTTP method.
    pub method: String,
    segments: Vec<Segment>,
    /// Input shape name.
    pub input: Option<String>,
    /// Output shape name.
    pub output: Option<String>,
    /// Success status code.
    pub status: u16,
    /// Error shapes the operation declares.
    pub errors: Vec<String>,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Var(String),
    Greedy(String),
}

/// The parsed model.
#[derive(Debug)]
pub struct Model {
    /// Operations by name.
    pub operations: BTreeMap<String, Operation>,
    shapes: Table<'static, Shape<'static>>,
}

/// One shape of the model, typed: only what routing, validation and
/// projection read. Deserialized straight from the embedded JSON (names
/// borrowed from it), so no `serde_json::Value` tree is built even at
/// start: that tree was 1 MiB of the daemon's heap for its whole life.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape<'a> {
    #[serde(rename = "type")]
    kind: Kind,
    /// The order fields are assembled, checked and listed in.
    #[serde(default, borrow)]
    members: Table<'a, Member<'a>>,
    #[serde(default, borrow)]
    required: Vec<&'a str>,
    #[serde(default)]
    union: bool,
    min: Option<f64>,
    max: Option<f64>,
    #[serde(rename = "enum", borrow)]
    allowed: Option<Vec<&'a str>>,
    pattern: Option<String>,
    /// The list's item shape.
    #[serde(borrow)]
    member: Option<ShapeRef<'a>>,
    #[serde(borrow)]
    key: Option<ShapeRef<'a>>,
    #[serde(borrow)]
    value: Option<ShapeRef<'a>>,
}

/// What an unknown shape name reads as: nothing to check, nothing kept.
static NO_SHAPE: Shape<'static> = Shape {
    kind: Kind::Other,
    members: Table(Vec::new()),
    required: Vec::new(),
    union: false,
    min: None,
    max: None,
    allowed: None,
    pattern: None,
    member: None,
    key: None,
    value: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Structure,
    List,
    Map,
    String,
    Integer,
    Long,
    Boolean,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Member<'a> {
    #[serde(borrow)]
    shape: &'a str,
    location: Option<Location>,
    #[serde(borrow)]
    location_name: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Location {
    Uri,
    Querystring,
    Header,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct ShapeRef<'a> {
    #[serde(borrow)]
    shape: &'a str,
}

/// The shape a list item, map key or map value refers to; none reads as an
/// unknown name (nothing checked, kept as is).
fn target<'a>(r: &Option<ShapeRef<'a>>) -> &'a str {
    r.as_ref().map_or("", |r| r.shape)
}

/// A JSON object read into one sorted allocation: the model's maps are
/// small and never change, and a `BTreeMap` leaf per structure (or a hash
/// table's empty buckets) cost more than the entries.
#[derive(Debug)]
struct Table<'a, V>(Vec<(&'a str, V)>);

impl<'a, V> Default for Table<'a, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'a, V> Table<'a, V> {
    fn get(&self, key: &str) -> Option<&V> {
        self.0
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    fn iter(&self) -> std::slice::Iter<'_, (&'a str, V)> {
        self.0.iter()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Table<'a, V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a, V>(std::marker::PhantomData<(&'a (), V)>);
        impl<'de: 'a, 'a, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<'a, V> {
            type Value = Table<'a, V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<&'a str, V>()? {
                    entries.push(entry);
                }
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                entries.shrink_to_fit();
                Ok(Table(entries))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// The model file as read: only the parts used; the rest is skipped
/// without being built.
#[derive(Default, Deserialize)]
struct RawModel<'a> {
    #[serde(borrow)]
    operations: BTreeMap<&'a str, RawOperation<'a>>,
    #[serde(borrow)]
    shapes: Table<'a, Shape<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOperation<'a> {
    #[serde(borrow)]
    http: RawHttp<'a>,
    #[serde(borrow)]
    input: Option<ShapeRef<'a>>,
    #[serde(borrow)]
    output: Option<ShapeRef<'a>>,
    #[serde(default, borrow)]
    errors: Vec<ShapeRef<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHttp<'a> {
    method: &'a str,
    request_uri: &'a str,
    response_code: Option<u16>,
}

/// A compiled field pattern: the whole value matches `whole`, and none of
/// `refused` matches at its start.
///
/// The model's look-arounds are all leading negative look-aheads
/// (`(?!svc-)(?![-])(?!.*[-]$)(?!.*[-]{2})[a-z0-9-]+`), and a negative
/// look-ahead at the start of an anchored pattern is exactly "the value
/// does not start with a match of its body". Split that way, every model
/// pattern is regular and goes to regex-lite; a pattern with a look-around
/// anywhere else does not compile, and the unit test over every model
/// pattern says so. (fancy-regex took these before: 0.5-0.7 ms a compile,
/// 44 KB an automaton.)
///
/// Compiled for one validation and dropped after it (see [`Patterns`]): the
/// API is the control plane, a compile costs microseconds, and a kept
/// automaton costs memory for the daemon's life. The ARN patterns end in a
/// Unicode `.{0,1023}`: regex-automata's NFA for one of them was 1.1 MiB
/// (one UTF-8 automaton per repetition); regex-lite matches by character,
/// and builds it in 0.1 ms as 0.35 MB, held only while it is in use.
#[derive(Debug)]
struct Pattern {
    whole: regex_lite::Regex,
    refused: Vec<regex_lite::Regex>,
}

impl Pattern {
    /// None when regex-lite does not take the pattern.
    fn new(pattern: &str) -> Option<Self> {
        let pattern = ecma_classes(pattern);
        let (guards, rest) = leading_negative_lookaheads(&pattern)?;
        // Anchored: AWS refuses a name that merely contains a valid one
        // (Smithy's own reading is a search). `.` also matches line ends
        // (`s`), so that a pattern written for a search, such as a resource
        // policy's `.*\S.*` ("not only spaces"), still takes the
        // multi-line JSON a policy file holds.
        let whole = regex_lite::Regex::new(&format!("(?s)^(?:{rest})$")).ok()?;
        let refused = guards
            .iter()
            .map(|g| regex_lite::Regex::new(&format!("(?s)^(?:{g})")))
            .collect::<Result<_, _>>()
            .ok()?;
        Some(Self { whole, refused })
    }

    fn is_match(&self, s: &str) -> bool {
        self.whole.is_match(s) && !self.refused.iter().any(|r| r.is_match(s))
    }
}

/// The patterns one validation has compiled, by pattern text (a handful).
#[derive(Default)]
struct Patterns<'m>(Vec<(&'m str, Option<Pattern>)>);

impl<'m> Patterns<'m> {
    fn get(&mut self, pattern: &'m str) -> Option<&Pattern> {
        let i = match self.0.iter().position(|(p, _)| *p == pattern) {
            Some(i) => i,
            None => {
                self.0.push((pattern, Pattern::new(pattern)));
                self.0.len() - 1
            }
        };
        self.0[i].1.as_ref()
    }
}

/// Splits `(?!a)(?!b)rest` into the bodies `[a, b]` and `rest`; None when
/// a look-ahead is not closed.
fn leading_negative_lookaheads(pattern: &str) -> Option<(Vec<&str>, &str)> {
    let mut guards = Vec::new();
    let mut rest = pattern;
    while let Some(body) = rest.strip_prefix("(?!") {
        let end = group_end(body)?;
        guards.push(&body[..end]);
        rest = &body[end + 1..];
    }
    Some((guards, rest))
}

/// The byte offset of the `)` that closes a group whose body starts `s`,
/// past nested groups, escapes and bracket classes.
fn group_end(s: &str) -> Option<usize> {
    let (mut depth, mut in_class, mut escaped) = (0usize, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return Some(i),
            },
            _ => {}
        }
    }
    None
}

/// ECMA-262's white space and line terminators: what `\s` means in a
/// Smithy pattern (regex-lite's `\s` is ASCII only).
const ECMA_SPACE: &str = r"\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";

/// Smithy patterns are ECMA-262 regular expressions, where `\d` is `[0-9]`
/// and `\s` is a fixed set of Unicode spaces. regex-lite's `\d` is ASCII
/// already (the Unicode engines let an account id of Arabic-Indic digits
/// through), but its `\s` is ASCII only: both are written out as ECMA's
/// sets, so a pattern's meaning does not hang on an engine's. (`\S` inside
/// a bracket has no such rewrite; the model has none.)
fn ecma_classes(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !["\\d", "\\s", "\\S"].iter().any(|e| pattern.contains(e)) {
        return pattern.into();
    }
    let mut out = String::with_capacity(pattern.len() + 64);
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') if in_class => out.push_str("0-9"),
                Some('d') => out.push_str("[0-9]"),
                Some('s') if in_class => out.push_str(ECMA_SPACE),
                Some('s') => {
                    out.push('[');
                    out.push_str(ECMA_SPACE);
                    out.push(']');
                }
                Some('S') if !in_class => {
                    out.push_str("[^");
                    out.push_str(ECMA_SPACE);
                    out.push(']');
                }
                Some(e) => {
                    out.push('\\');
                    out.push(e);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.into()
}

/// One invalid field, as the model's `ValidationExceptionField`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Field path (`config.port`).
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// The VPC Lattice model, parsed once.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::parse(MODEL_JSON))
}

impl Model {
    fn parse(text: &'static str) -> Self {
        // The file is generated and embedded at build time; a parse failure
        // is a build defect that every API test would show at once.
        let raw: RawModel = match serde_json::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(error = %e, "the embedded service model does not parse");
                RawModel::default()
            }
        };
        let operations = raw
            .operations
            .into_iter()
            .map(|(name, op)| {
                let path = op.http.request_uri.split('?').next().unwrap_or("/");
                let segments = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(v) => match v.strip_suffix('+') {
                                Some(g) => Segment::Greedy(g.to_owned()),
                                None => Segment::Var(v.to_owned()),
                            },
                            None => Segment::Literal(s.to_owned()),
                        },
                    )
                    .collect();
                let op = Operation {
                    name: name.to_owned(),
                    method: op.http.method.to_owned(),
                    segments,
                    input: op.input.map(|r| r.shape.to_owned()),
                    output: op.output.map(|r| r.shape.to_owned()),
                    status: op.http.response_code.unwrap_or(200),
                    errors: op.errors.into_iter().map(|r| r.shape.to_owned()).collect(),
                };
                (name.to_owned(), op)
            })
            .collect();
        Self {
            operations,
            shapes: raw.shapes,
        }
    }

    /// The required members of structure `shape`.
    #[cfg(test)]
    pub fn required(&self, shape: &str) -> Vec<&'static str> {
        self.shape(shape).required.clone()
    }

    fn shape(&self, name: &str) -> &Shape<'static> {
        self.shapes.get(name).unwrap_or(&NO_SHAPE)
    }

    /// Finds the operation for `method` and a raw (percent-encoded) path,
    /// with its path parameters decoded.
    pub fn route(
        &self,
        method: &str,
        raw_path: &str,
    ) -> Option<(&Operation, HashMap<String, String>)> {
        let parts: Vec<&str> = raw_path.split('/').filter(|s| !s.is_empty()).collect();
        'ops: for op in self.operations.values() {
            if op.method != method {
                continue;
            }
            let mut params = HashMap::new();
            let mut i = 0;
            for seg in &op.segments {
                match seg {
                    Segment::Literal(l) => {
                        if parts.get(i) != Some(&l.as_str()) {
                            continue 'ops;
                        }
                        i += 1;
                    }
                    Segment::Var(v) => {
                        let Some(p) = parts.get(i) else { continue 'ops };
                        params.insert(v.clone(), decode(p));
                        i += 1;
                    }
                    Segment::Greedy(v) => {
                        if i >= parts.len() {
                            continue 'ops;
                        }
                        params.insert(v.clone(), decode(&parts[i..].join("/")));
                        i = parts.len();
                    }
                }
            }
            if i == parts.len() {
                return Some((op, params));
            }
        }
        None
    }

    /// Builds the input object of `op` from the request's parts. Query and
    /// header values are converted to the member's type; conversion failures
    /// are reported as field problems.
    pub fn assemble_input(
        &self,
        op: &Operation,
        path: &HashMap<String, String>,
        query: &[(String, String)],
        headers: &http::HeaderMap,
        body: Option<Map<String, Value>>,
    ) -> Result<Value, Vec<FieldProblem>> {
        let Some(input) = &op.input else {
            return Ok(Value::Object(Map::new()));
        };
        let shape = self.shape(input);
        let mut out = Map::new();
        let mut problems = Vec::new();
        let body = body.unwrap_or_default();
        for &(member, ref spec) in shape.members.iter() {
            let loc_name = spec.location_name.unwrap_or(member);
            match spec.location {
                Some(Location::Uri) => {
                    if let Some(v) = path.get(loc_name) {
                        out.insert(member.to_owned(), Value::String(v.clone()));
                    }
                }
                Some(Location::Querystring) => {
                    let values: Vec<&String> = query
                        .iter()
                        .filter(|(k, _)| k == loc_name)
                        .map(|(_, v)| v)
                        .collect();
                    if values.is_empty() {
                        continue;
                    }
                    let t = self.shape(spec.shape);
                    let value = match (t.kind, &t.member) {
                        (Kind::List, Some(item)) => values
                            .iter()
                            .map(|v| self.scalar(item.shape, v, member, &mut problems))
                            .collect::<Vec<_>>()
                            .into(),
                        _ => self.scalar(spec.shape, values[0], member, &mut problems),
                    };
                    out.insert(member.to_owned(), value);
                }
                Some(Location::Header) => {
                    if let Some(v) = headers.get(loc_name).and_then(|v| v.to_str().ok()) {
                        let value = self.scalar(spec.shape, v, member, &mut problems);
                        out.insert(member.to_owned(), value);
                    }
                }
                Some(Location::Other) | None => {
                    if let Some(v) = body.get(member) {
                        out.insert(member.to_owned(), v.clone());
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Value::Object(out))
        } else {
            Err(problems)
        }
    }

    fn scalar(
        &self,
        shape: &str,
        raw: &str,
        field: &str,
        problems: &mut Vec<FieldProblem>,
    ) -> Value {
        match self.shape(shape).kind {
            Kind::Integer | Kind::Long => match raw.parse::<i64>() {
                Ok(n) => n.into(),
                Err(_) => {
                    problems.push(FieldProblem {
                        name: field.to_owned(),
                        message: format!("{raw:?} is not an integer"),
                    });
                    Value::Null
                }
            },
            Kind::Boolean => match raw {
                "true" => true.into(),
                "false" => false.into(),
                _ => {
                    problems.push(FieldProblem {
                        name: field.to_owned(),
                        message: format!("{raw:?} is not true or false"),
                    });
                    Value::Null
                }
            },
            _ => Value::String(raw.to_owned()),
        }
    }

    /// Checks `value` against shape `name`: types, required members, lengths,
    /// ranges, enums, patterns and unions. Returns every problem found.
    pub fn validate(&self, name: &str, value: &Value) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        // Each pattern is compiled once per validation, however many values
        // it checks (a 1 MiB body holds tens of thousands of identifiers),
        // and dropped with it.
        let mut patterns = Patterns::default();
        self.check(name, value, "", &mut patterns, &mut problems);
        problems
    }

    fn check<'m>(
        &'m self,
        name: &str,
        value: &Value,
        path: &str,
        patterns: &mut Patterns<'m>,
        out: &mut Vec<FieldProblem>,
    ) {
        let shape = self.shape(name);
        let mut fail = |message: String| {
            out.push(FieldProblem {
                name: at(path),
                message,
            });
        };
        match shape.kind {
            Kind::Structure => match value.as_object() {
                Some(obj) => self.check_structure(shape, obj, path, patterns, out),
                None => fail("must be an object".into()),
            },
            Kind::List => match value.as_array() {
                Some(items) => {
                    if let Some(m) = out_of(shape, items.len(), "items") {
                        fail(m);
                    }
                    let member = target(&shape.member);
                    for (i, v) in items.iter().enumerate() {
                        self.check(member, v, &format!("{path}[{i}]"), patterns, out);
                    }
                }
                None => fail("must be a list".into()),
            },
            Kind::Map => match value.as_object() {
                Some(obj) => {
                    if let Some(m) = out_of(shape, obj.len(), "entries") {
                        fail(m);
                    }
                    let (key, val) = (target(&shape.key), target(&shape.value));
                    for (k, v) in obj {
                        let as_key = Value::String(k.clone());
                        self.check(key, &as_key, &format!("{path}.{k}(key)"), patterns, out);
                        self.check(val, v, &format!("{path}.{k}"), patterns, out);
                    }
                }
                None => fail("must be a map".into()),
            },
            Kind::String => match value.as_str() {
                Some(s) => {
                    for m in Self::string_problems(name, shape, s, patterns) {
                        fail(m);
                    }
                }
                None => fail("must be a string".into()),
            },
            Kind::Integer | Kind::Long => match value.as_i64() {
                Some(n)
                    if shape.min.is_some_and(|m| (n as f64) < m)
                        || shape.max.is_some_and(|m| (n as f64) > m) =>
                {
                    fail(format!(
                        "{n} is outside {} to {}",
                        fmt_bound(shape.min),
                        fmt_bound(shape.max)
                    ));
                }
                Some(_) => {}
                None => fail("must be an integer".into()),
            },
            Kind::Boolean if !value.is_boolean() => fail("must be true or false".into()),
            _ => {}
        }
    }

    /// A structure: required members, a union's one member, and each member
    /// present against its shape.
    fn check_structure<'m>(
        &'m self,
        shape: &'m Shape<'m>,
        obj: &serde_json::Map<String, Value>,
        path: &str,
        patterns: &mut Patterns<'m>,
        out: &mut Vec<FieldProblem>,
    ) {
        for &req in &shape.required {
            if obj.get(req).is_none_or(Value::is_null) {
                out.push(FieldProblem {
                    name: join(path, req),
                    message: "is required".into(),
                });
            }
        }
        if shape.union && obj.values().filter(|v| !v.is_null()).count() != 1 {
            let names: Vec<&str> = shape.members.iter().map(|&(n, _)| n).collect();
            out.push(FieldProblem {
                name: at(path),
                message: format!("set exactly one of: {}", names.join(", ")),
            });
        }
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            if let Some(member) = shape.members.get(k) {
                self.check(member.shape, v, &join(path, k), patterns, out);
            }
        }
    }

    /// What is wrong with string `s` of shape `name`: its length, its enum,
    /// its pattern; each is reported.
    fn string_problems<'m>(
        name: &str,
        shape: &'m Shape<'m>,
        s: &str,
        patterns: &mut Patterns<'m>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let n = s.chars().count() as f64;
        if shape.min.is_some_and(|m| n < m) || shape.max.is_some_and(|m| n > m) {
            out.push(format!(
                "must be {} to {} characters long, is {}",
                fmt_bound(shape.min),
                fmt_bound(shape.max),
                n
            ));
        }
        if let Some(allowed) = shape.allowed.as_ref().filter(|a| !a.contains(&s)) {
            out.push(format!("{s:?} is not one of {}", allowed.join(", ")));
        }
        // A pattern our engines cannot compile is not enforced rather than
        // refusing every value.
        if let Some(p) = shape
            .pattern
            .as_deref()
            .filter(|_| !RELAXED_PATTERNS.contains(&name))
        {
            if patterns.get(p).is_some_and(|re| !re.is_match(s)) {
                out.push(format!("{s:?} does not match the pattern {p}"));
            }
        }
        out
    }

    /// Keeps only what shape `name` declares, recursively (a handler's
    /// records carry more than each response shows).
    pub fn project(&self, name: &str, value: &Value) -> Value {
        let shape = self.shape(name);
        match (shape.kind, value) {
            (Kind::Structure, Value::Object(obj)) => {
                let mut out = Map::new();
                for &(k, ref member) in shape.members.iter() {
                    if member.location.is_some() {
                        continue;
                    }
                    if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
                        out.insert(k.to_owned(), self.project(member.shape, v));
                    }
                }
                Value::Object(out)
            }
            (Kind::List, Value::Array(items)) => {
                let m = target(&shape.member);
                Value::Array(items.iter().map(|v| self.project(m, v)).collect())
            }
            (Kind::Map, Value::Object(obj)) => {
                let m = target(&shape.value);
                Value::Object(
                    obj.iter()
                        .map(|(k, v)| (k.clone(), self.project(m, v)))
                        .collect(),
                )
            }
            _ => value.clone(),
        }
    }
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_owned()
    } else {
        format!("{path}.{member}")
    }
}

/// The field a problem at `path` names: the body itself when empty.
fn at(path: &str) -> String {
    if path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    }
}

/// Why a list or map of `n` `what` is outside its shape's bounds.
fn out_of(shape: &Shape<'_>, n: usize, what: &str) -> Option<String> {
    let f = n as f64;
    (shape.min.is_some_and(|m| f < m) || shape.max.is_some_and(|m| f > m)).then(|| {
        format!(
            "must have {} to {} {what}, has {n}",
            fmt_bound(shape.min),
            fmt_bound(shape.max)
        )
    })
}

fn fmt_bound(b: Option<f64>) -> String {
    b.map_or_else(|| "any".into(), |v| format!("{v}"))
}

/// Percent-decodes a path segment or query component.
pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_routes_to_itself() {
        let m = model();
        assert_eq!(m.operations.len(), 73);
        for op in m.operations.values() {
            let path: String = op
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => format!("/{l}"),
                    Segment::Var(_) | Segment::Greedy(_) => "/x-1".to_owned(),
                })
                .collect();
            let (found, _) = m
                .route(&op.method, &path)
                .unwrap_or_else(|| panic!("{} {path}", op.name));
            assert_eq!(found.name, op.name, "{} {path}", op.method);
        }
    }

    #[test]
    fn the_typed_shapes_hold_all_the_model_reads() {
        let m = model();
        let raw: Value = serde_json::from_str(MODEL_JSON).unwrap();
        let raw_shapes = raw["shapes"].as_object().unwrap();
        assert_eq!(m.shapes.len(), raw_shapes.len());
        for (name, raw) in raw_shapes {
            let shape = m.shape(name);
            let kind = raw["type"].as_str().unwrap();
            assert_eq!(
                shape.kind == Kind::Other,
                kind == "timestamp",
                "{name}: {kind} read as {:?}",
                shape.kind
            );
            let members = raw["members"].as_object().map_or(0, |m| m.len());
            assert_eq!(shape.members.len(), members, "{name}");
            assert_eq!(shape.pattern.as_deref(), raw["pattern"].as_str(), "{name}");
            assert_eq!(shape.min, raw["min"].as_f64(), "{name}");
            assert_eq!(shape.max, raw["max"].as_f64(), "{name}");
            assert_eq!(shape.union, raw["union"] == true, "{name}");
            // Every reference names a shape the model has.
            let refs = shape.members.iter().map(|(_, m)| m.shape).chain(
                [&shape.member, &shape.key, &shape.value]
                    .into_iter()
                    .flatten()
                    .map(|r| r.shape),
            );
            for target in refs {
                assert!(m.shapes.get(target).is_some(), "{name} -> {target}");
            }
        }
        let located = m
            .shapes
            .iter()
            .flat_map(|(_, s)| s.members.iter().map(|(_, m)| m))
            .filter(|m| m.location.is_some_and(|l| l != Location::Other))
            .count();
        assert_eq!(located, 63 + 49 + 2, "uri, querystring and header members");
    }

    #[test]
    fn encoded_arns_stay_one_segment() {
        let (op, params) = model()
            .route("GET", "/tags/arn%3Aaws%3Avpc-lattice%3Aus-east-1%3A111122223333%3Aservice%2Fsvc-0123456789abcdef0")
            .unwrap();
        assert_eq!(op.name, "ListTagsForResource");
        assert_eq!(
            params["resourceArn"],
            "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0"
        );
    }

    #[test]
    fn validation_names_each_field() {
        let m = model();
        let input = serde_json::json!({
            "name": "Bad--Name",
            "type": "NOPE",
            "config": {"port": 70000, "protocol": "HTTP", "vpcIdentifier": "vpc-a"}
        });
        let mut problems = m.validate("CreateTargetGroupRequest", &input);
        problems.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = problems.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["config.port", "name", "type"], "{problems:?}");
        assert!(
            problems[2]
                .message
                .contains("not one of IP, LAMBDA, INSTANCE, ALB"),
            "{problems:?}"
        );
        let missing = m.validate("CreateServiceNetworkRequest", &serde_json::json!({}));
        assert_eq!(
            missing,
            vec![FieldProblem {
                name: "name".into(),
                message: "is required".into()
            }]
        );
    }

    #[test]
    fn every_model_pattern_compiles_and_look_arounds_are_enforced() {
        fn patterns(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    for (k, v) in o {
                        match (k.as_str(), v) {
                            ("pattern", Value::String(p)) => out.push(p.clone()),
                            _ => patterns(v, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| patterns(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        patterns(&serde_json::from_str(MODEL_JSON).unwrap(), &mut all);
        assert!(all.len() > 50, "{}", all.len());
        let mut guarded = 0;
        for p in &all {
            let compiled =
                Pattern::new(p).unwrap_or_else(|| panic!("pattern {p:?} does not compile"));
            if !compiled.refused.is_empty() {
                guarded += 1;
            }
        }
        // The seven name patterns, (?!...) each.
        assert_eq!(guarded, 7);
        let (guards, rest) = leading_negative_lookaheads(r"(?!a\)[)](b))(?!c)d(?!e)").unwrap();
        assert_eq!((guards, rest), (vec![r"a\)[)](b)", "c"], "d(?!e)"));
        assert!(leading_negative_lookaheads("(?!a").is_none(), "unclosed");
        assert!(
            Pattern::new("a(?!b)").is_none(),
            "a look-ahead past the start"
        );

        let compiled = |p: &str| Pattern::new(p).unwrap();
        let name = "(?!listener-)(?![-])(?!.*[-]$)(?!.*[-]{2})[a-z0-9-]+";
        assert!(compiled(name).is_match("my-listener"));
        for bad in ["listener-1", "-a", "a-", "a--b", "A", "ab\n"] {
            assert!(!compiled(name).is_match(bad), "{bad}");
        }
        let arn = r"arn:[a-z0-9\-]+:vpc-lattice:[a-zA-Z0-9\-]+:\d{12}:service/svc-[0-9a-z]{17}/listener/listener-[0-9a-z]{17}";
        let ok = "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0/listener/listener-0123456789abcdef0";
        assert!(compiled(arn).is_match(ok));
        assert!(
            !compiled(arn).is_match(&ok[..ok.len() - 1]),
            "one character short"
        );
        assert!(
            !compiled(arn).is_match(&format!("{ok}/x")),
            "anchored at the end"
        );
        // The pattern with a Unicode `.{0,1023}` that made the one-pass DFA big.
        let policy_arn = r"arn:[a-z0-9][-.a-z0-9]{0,62}:vpc-lattice:([a-z0-9][-.a-z0-9]{0,62})?:\d{12}?:[^/].{0,1023}";
        assert!(compiled(policy_arn)
            .is_match("arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-é"));
        assert!(!compiled(policy_arn).is_match("arn:aws:s3:::bucket"));
        // ECMA-262's \d: ASCII digits only.
        let account = "arn:aws:vpc-lattice:us-east-1:\u{661}\u{662}\u{663}\u{664}\u{665}\u{666}\u{667}\u{668}\u{669}\u{660}\u{661}\u{662}:service/svc-0123456789abcdef0/listener/listener-0123456789abcdef0";
        assert!(
            !compiled(arn).is_match(account),
            "Arabic-Indic digits are not \\d"
        );
        assert_eq!(ecma_classes(r"a\d[\d-]\\d"), r"a[0-9][0-9-]\\d");
        assert_eq!(ecma_classes(r"\-x"), r"\-x");
        // ECMA's \s: Unicode spaces, and U+FEFF, which Unicode does not count.
        let policy = compiled(r".*\S.*");
        assert!(policy.is_match("{\n  \"Statement\": []\n}\n"), "multi-line");
        for blank in ["", " \n\t", "\u{a0}\u{3000}", "\u{feff}"] {
            assert!(!policy.is_match(blank), "{blank:?} is only spaces");
        }
        assert!(policy.is_match("\u{85}"), "U+0085 is not an ECMA space");
    }

    #[test]
    fn a_pattern_checks_every_item_of_a_list() {
        let tg = |id: &str| serde_json::json!({"targetGroupIdentifier": id});
        let action = serde_json::json!({"forward": {"targetGroups": [
            tg("tg-0123456789abcdef0"),
            tg("tg-0123456789abcdef0-and-more"),
            tg("arn:aws:vpc-lattice:us-east-1:111122223333:targetgroup/tg-0123456789abcdef1"),
        ]}});
        let p = model().validate("RuleAction", &action);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].name, "forward.targetGroups[1].targetGroupIdentifier");
        assert!(p[0].message.contains("does not match the pattern"), "{p:?}");
    }

    #[test]
    fn unions_need_exactly_one_member() {
        let m = model();
        let both = serde_json::json!({"forward": {"targetGroups": []}, "fixedResponse": {"statusCode": 404}});
        let p = m.validate("RuleAction", &both);
        assert!(
            p.iter()
                .any(|p| p.message.starts_with("set exactly one of")),
            "{p:?}"
        );
    }

    #[test]
    fn projection_keeps_declared_members_only() {
        let m = model();
        let record =
            serde_json::json!({"id": "sn-0123456789abcdef0", "name": "x", "secret": 1, "arn": "a"});
        assert_eq!(
            m.project("CreateServiceNetworkResponse", &record),
            serde_json::json!({"id": "sn-0123456789abcdef0", "name": "x", "arn": "a"})
        );
    }
}
