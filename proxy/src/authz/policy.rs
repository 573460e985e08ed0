//! The policy language: parse and validate once, evaluate per request.
//!
//! Semantics follow IAM's for resource-based policies:
//! - a matching Deny statement wins; else a matching Allow allows; else the
//!   policy does not allow (implicit deny);
//! - within a Condition, operators AND, keys AND, a key's values OR (NOR
//!   for negated operators);
//! - a key missing from the request makes positive operators false and
//!   negated ones true, except `...IfExists` (true) and `Null`;
//! - `ForAnyValue:` needs one request value to pass, `ForAllValues:` every
//!   one (and passes when the key is missing); a plain operator on a key with
//!   several values behaves as `ForAnyValue:` (negated: none may match);
//! - `*` and `?` are wildcards in Action, Resource, `...Like` and `Arn...`
//!   values; actions match case-insensitively, resources case-sensitively.

use std::{borrow::Cow, net::IpAddr};

use serde_json::Value;

use super::{Context, ACTION};

/// Largest policy accepted, as Lattice allows.
pub const MAX_POLICY_BYTES: usize = 10 * 1024;

/// Why a policy is refused; says where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PolicyError {
    /// JSON path in the policy, e.g. `Statement[1].Condition.StringLike`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// Which statement decided, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An Allow matched (its Sid or `Statement[i]`).
    Allow(String),
    /// A Deny matched.
    Deny(String),
    /// Nothing matched.
    NoMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct Statement {
    id: String,
    effect: Effect,
    principals: Option<(Vec<PrincipalPattern>, bool)>,
    actions: (Vec<String>, bool),
    resources: (Vec<String>, bool),
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
enum PrincipalPattern {
    /// `*` or `{"AWS": "*"}`: everyone, anonymous included.
    Anyone,
    /// An account (`123456789012` or `arn:aws:iam::123456789012:root`).
    Account(String),
    /// A role: matches the role and its sessions.
    Role { account: String, name: String },
    /// Any other ARN, matched exactly.
    Arn(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    String,
    StringIgnoreCase,
    StringLike,
    Numeric(NumOp),
    Bool,
    Ip,
    Arn,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    None,
    ForAny,
    ForAll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    SourceVpc,
    SourceVpcOwnerAccount,
    ServiceNetworkArn,
    ServiceArn,
    Port,
    RequestMethod,
    RequestPath,
    RequestHeader(String),
    RequestQueryString(String),
    PrincipalArn,
    PrincipalOrgId,
    PrincipalType,
    PrincipalAccount,
    SourceIp,
    SecureTransport,
}

/// The condition keys latticed knows, for error messages.
pub const KEYS: &[&str] = &[
    "vpc-lattice-svcs:SourceVpc",
    "vpc-lattice-svcs:SourceVpcOwnerAccount",
    "vpc-lattice-svcs:ServiceNetworkArn",
    "vpc-lattice-svcs:ServiceArn",
    "vpc-lattice-svcs:Port",
    "vpc-lattice-svcs:RequestMethod",
    "vpc-lattice-svcs:RequestPath",
    "vpc-lattice-svcs:RequestHeader/NAME",
    "vpc-lattice-svcs:RequestQueryString/KEY",
    "aws:PrincipalArn",
    "aws:PrincipalOrgID",
    "aws:PrincipalType",
    "aws:PrincipalAccount",
    "aws:SourceIp",
    "aws:SecureTransport",
];

#[derive(Debug, Clone)]
struct Condition {
    family: Family,
    negated: bool,
    set: SetOp,
    if_exists: bool,
    key: Key,
    values: Vec<String>,
    numbers: Vec<f64>,
    nets: Vec<(IpAddr, u8)>,
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(err(
                "policy",
                format!(
                    "is {} bytes; policies may be at most {MAX_POLICY_BYTES}",
                    text.len()
                ),
            ));
        }
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| err("policy", format!("is not valid JSON: {e}")))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| err("policy", "must be a JSON object"))?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(err(
                    k.as_str(),
                    "is not a policy element (Version, Id, Statement)",
                ));
            }
        }
        match obj.get("Version").and_then(Value::as_str) {
            Some("2012-10-17" | "2008-10-17") | None => {}
            Some(v) => {
                return Err(err(
                    "Version",
                    format!("{v:?} is not 2012-10-17 or 2008-10-17"),
                ))
            }
        }
        let statements: Vec<&Value> = match obj.get("Statement") {
            Some(Value::Array(a)) if !a.is_empty() => a.iter().collect(),
            Some(s @ Value::Object(_)) => vec![s],
            Some(_) => {
                return Err(err(
                    "Statement",
                    "must be a statement or a non-empty list of them",
                ))
            }
            None => return Err(err("Statement", "is required")),
        };
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(i, s)| Statement::parse(i, s))
            .collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }

    /// Evaluates the policy for one request.
    pub fn evaluate(&self, ctx: &Context<'_>) -> Decision {
        // The caller's account and role, split out once for every statement.
        let who = ctx.principal.map(|p| Caller {
            arn: &p.arn,
            account: p.account(),
            role: p.role_name(),
        });
        let mut allow = None;
        for s in &self.statements {
            if !s.applies(ctx, who.as_ref()) {
                continue;
            }
            match s.effect {
                Effect::Deny => return Decision::Deny(s.id.clone()),
                Effect::Allow => {
                    allow.get_or_insert(&s.id);
                }
            }
        }
        allow.map_or(Decision::NoMatch, |id| Decision::Allow(id.clone()))
    }
}

/// Strings of a value that may be one string or a list of them.
fn strings(path: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(err(path, "values must be strings, numbers or booleans")),
    };
    match v {
        Value::Array(a) if a.is_empty() => Err(err(path, "must not be an empty list")),
        Value::Array(a) => a.iter().map(one).collect(),
        other => one(other).map(|s| vec![s]),
    }
}

/// A statement's id: its `Sid`, or its place in the policy.
fn sid(base: &str, v: Option<&Value>) -> Result<String, PolicyError> {
    match v {
        None => Ok(base.to_owned()),
        Some(Value::String(s)) if s.chars().all(|c| c.is_ascii_alphanumeric()) && !s.is_empty() => {
            Ok(s.clone())
        }
        Some(_) => Err(err(
            format!("{base}.Sid"),
            "must be a non-empty string of letters and digits",
        )),
    }
}

fn effect(base: &str, v: Option<&Value>) -> Result<Effect, PolicyError> {
    match v.and_then(Value::as_str) {
        Some("Allow") => Ok(Effect::Allow),
        Some("Deny") => Ok(Effect::Deny),
        Some(e) => Err(err(
            format!("{base}.Effect"),
            format!("{e:?} is not Allow or Deny"),
        )),
        None => Err(err(format!("{base}.Effect"), "is required (Allow or Deny)")),
    }
}

/// A statement's `Condition`: operator -> key -> values, each value
/// parsed as the operator's family reads it.
fn conditions(cpath: &str, c: &Value) -> Result<Vec<Condition>, PolicyError> {
    let ops = c
        .as_object()
        .ok_or_else(|| err(cpath, "must be an object of operators"))?;
    let mut conditions = Vec::new();
    for (op, keys) in ops {
        let opath = format!("{cpath}.{op}");
        let (family, negated, set, if_exists) = operator(&opath, op)?;
        let keys = keys
            .as_object()
            .ok_or_else(|| err(&opath, "must be an object of condition keys"))?;
        for (key, values) in keys {
            let kpath = format!("{opath}.{key}");
            let mut cond = Condition {
                family,
                negated,
                set,
                if_exists,
                key: parse_key(&kpath, key)?,
                numbers: Vec::new(),
                nets: Vec::new(),
                values: Vec::new(),
            };
            cond.read_values(&kpath, strings(&kpath, values)?)?;
            conditions.push(cond);
        }
    }
    Ok(conditions)
}

impl Condition {
    /// Checks `values` against the operator's family and keeps them in the
    /// form evaluation compares.
    fn read_values(&mut self, kpath: &str, values: Vec<String>) -> Result<(), PolicyError> {
        match self.family {
            Family::Numeric(_) => {
                for v in &values {
                    self.numbers.push(
                        v.parse::<f64>()
                            .map_err(|_| err(kpath, format!("{v:?} is not a number")))?,
                    );
                }
            }
            Family::Ip => {
                for v in &values {
                    self.nets.push(parse_cidr(v).ok_or_else(|| {
                        err(kpath, format!("{v:?} is not an IP address or CIDR"))
                    })?);
                }
            }
            Family::Bool | Family::Null => {
                if let Some(v) = values
                    .iter()
                    .find(|v| !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false"))
                {
                    return Err(err(kpath, format!("{v:?} is not true or false")));
                }
            }
            Family::Arn => {
                if let Some(v) = values.iter().find(|v| *v != "*" && !v.starts_with("arn:")) {
                    return Err(err(kpath, format!("{v:?} is not an ARN")));
                }
            }
            _ => {}
        }
        self.values = match self.family {
            Family::StringIgnoreCase => values.iter().map(|v| v.to_lowercase()).collect(),
            _ => values,
        };
        Ok(())
    }
}

impl Statement {
    fn parse(i: usize, v: &Value) -> Result<Self, PolicyError> {
        let base = format!("Statement[{i}]");
        let obj = v
            .as_object()
            .ok_or_else(|| err(&base, "must be an object"))?;
        for k in obj.keys() {
            if !matches!(
                k.as_str(),
                "Sid"
                    | "Effect"
                    | "Principal"
                    | "NotPrincipal"
                    | "Action"
                    | "NotAction"
                    | "Resource"
                    | "NotResource"
                    | "Condition"
            ) {
                return Err(err(format!("{base}.{k}"), "is not a statement element"));
            }
        }
        let id = sid(&base, obj.get("Sid"))?;
        let effect = effect(&base, obj.get("Effect"))?;
        let principals = match (obj.get("Principal"), obj.get("NotPrincipal")) {
            (Some(_), Some(_)) => {
                return Err(err(&base, "has both Principal and NotPrincipal"));
            }
            (Some(p), None) => Some((principals(&format!("{base}.Principal"), p)?, false)),
            (None, Some(p)) => Some((principals(&format!("{base}.NotPrincipal"), p)?, true)),
            (None, None) => {
                return Err(err(
                    &base,
                    "needs Principal or NotPrincipal (auth policies are resource-based)",
                ))
            }
        };
        let actions = pair(&base, obj, "Action", "NotAction")?;
        for a in &actions.0 {
            if a != "*" && !a.contains(':') {
                return Err(err(
                    format!("{base}.Action"),
                    format!("{a:?} is not service:action (e.g. {ACTION})"),
                ));
            }
        }
        let resources = pair(&base, obj, "Resource", "NotResource")?;
        for r in &resources.0 {
            if r != "*" && !r.starts_with("arn:") {
                return Err(err(
                    format!("{base}.Resource"),
                    format!("{r:?} is not * or an ARN"),
                ));
            }
        }
        let conditions = match obj.get("Condition") {
            Some(c) => conditions(&format!("{base}.Condition"), c)?,
            None => Vec::new(),
        };
        Ok(Self {
            id,
            effect,
            principals,
            actions,
            resources,
            conditions,
        })
    }

    fn applies(&self, ctx: &Context<'_>, who: Option<&Caller<'_>>) -> bool {
        if let Some((list, negated)) = &self.principals {
            let hit = list.iter().any(|p| p.matches(who));
            if hit == *negated {
                return false;
            }
        }
        let action_hit = self.actions.0.iter().any(|a| glob(a, ACTION, true));
        if action_hit == self.actions.1 {
            return false;
        }
        let resource_hit = self
            .resources
            .0
            .iter()
            .any(|r| glob(r, ctx.resource, false));
        if resource_hit == self.resources.1 {
            return false;
        }
        self.conditions.iter().all(|c| c.holds(ctx))
    }
}

fn pair(
    base: &str,
    obj: &serde_json::Map<String, Value>,
    yes: &str,
    no: &str,
) -> Result<(Vec<String>, bool), PolicyError> {
    match (obj.get(yes), obj.get(no)) {
        (Some(_), Some(_)) => Err(err(base, format!("has both {yes} and {no}"))),
        (Some(v), None) => Ok((strings(&format!("{base}.{yes}"), v)?, false)),
        (None, Some(v)) => Ok((strings(&format!("{base}.{no}"), v)?, true)),
        (None, None) => Err(err(base, format!("needs {yes} or {no}"))),
    }
}

fn principals(path: &str, v: &Value) -> Result<Vec<PrincipalPattern>, PolicyError> {
    let list = match v {
        Value::String(s) if s == "*" => return Ok(vec![PrincipalPattern::Anyone]),
        Value::Object(o) => {
            for k in o.keys() {
                if k != "AWS" {
                    return Err(err(
                        format!("{path}.{k}"),
                        "only AWS principals are supported (\"*\", account ids and IAM ARNs)",
                    ));
                }
            }
            let aws = o.get("AWS").ok_or_else(|| err(path, "needs \"AWS\""))?;
            strings(&format!("{path}.AWS"), aws)?
        }
        _ => return Err(err(path, "must be \"*\" or {\"AWS\": ...}")),
    };
    list.iter()
        .map(|p| {
            if p == "*" {
                return Ok(PrincipalPattern::Anyone);
            }
            if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(PrincipalPattern::Account(p.clone()));
            }
            let parts: Vec<&str> = p.splitn(6, ':').collect();
            let account_ok = parts
                .get(4)
                .is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()));
            if p.contains(['*', '?']) || (parts.len() == 6 && !account_ok) {
                return Err(err(
                    format!("{path}.AWS"),
                    format!("{p:?} is not *, a 12-digit account id or an IAM/STS ARN without wildcards (use a condition on aws:PrincipalArn for patterns)"),
                ));
            }
            match parts[..] {
                ["arn", _, "iam", "", account, "root"] => {
                    Ok(PrincipalPattern::Account(account.to_owned()))
                }
                ["arn", _, "iam", "", account, res] if res.starts_with("role/") => {
                    let name = res.rsplit('/').next().unwrap_or_default().to_owned();
                    Ok(PrincipalPattern::Role {
                        account: account.to_owned(),
                        name,
                    })
                }
                ["arn", _, "iam" | "sts", "", _, res] if !res.is_empty() => {
                    Ok(PrincipalPattern::Arn(p.clone()))
                }
                _ => Err(err(
                    format!("{path}.AWS"),
                    format!("{p:?} is not *, a 12-digit account id or an IAM/STS ARN"),
                )),
            }
        })
        .collect()
}

/// The caller as statements look at it.
#[derive(Debug)]
struct Caller<'a> {
    arn: &'a str,
    account: Option<&'a str>,
    role: Option<&'a str>,
}

impl PrincipalPattern {
    fn matches(&self, who: Option<&Caller<'_>>) -> bool {
        match (self, who) {
            (Self::Anyone, _) => true,
            (_, None) => false,
            (Self::Account(a), Some(p)) => p.account == Some(a.as_str()),
            (Self::Arn(arn), Some(p)) => p.arn == arn,
            (Self::Role { account, name }, Some(p)) => {
                p.role == Some(name.as_str()) && p.account == Some(account.as_str())
            }
        }
    }
}

fn operator(path: &str, op: &str) -> Result<(Family, bool, SetOp, bool), PolicyError> {
    let (set, rest) = if let Some(r) = op.strip_prefix("ForAnyValue:") {
        (SetOp::ForAny, r)
    } else if let Some(r) = op.strip_prefix("ForAllValues:") {
        (SetOp::ForAll, r)
    } else {
        (SetOp::None, op)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        _ => (rest, false),
    };
    let (family, negated) = match base {
        "StringEquals" => (Family::String, false),
        "StringNotEquals" => (Family::String, true),
        "StringEqualsIgnoreCase" => (Family::StringIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (Family::StringIgnoreCase, true),
        "StringLike" => (Family::StringLike, false),
        "StringNotLike" => (Family::StringLike, true),
        "NumericEquals" => (Family::Numeric(NumOp::Eq), false),
        "NumericNotEquals" => (Family::Numeric(NumOp::Eq), true),
        "NumericLessThan" => (Family::Numeric(NumOp::Lt), false),
        "NumericLessThanEquals" => (Family::Numeric(NumOp::Le), false),
        "NumericGreaterThan" => (Family::Numeric(NumOp::Gt), false),
        "NumericGreaterThanEquals" => (Family::Numeric(NumOp::Ge), false),
        "Bool" => (Family::Bool, false),
        "IpAddress" => (Family::Ip, false),
        "NotIpAddress" => (Family::Ip, true),
        "ArnEquals" | "ArnLike" => (Family::Arn, false),
        "ArnNotEquals" | "ArnNotLike" => (Family::Arn, true),
        "Null" => (Family::Null, false),
        _ => {
            return Err(err(
                path,
                format!("{op:?} is not a supported condition operator (String*, Numeric*, Bool, IpAddress, NotIpAddress, Arn*, Null; with IfExists, ForAnyValue:, ForAllValues:)"),
            ))
        }
    };
    if family == Family::Null && (if_exists || set != SetOp::None) {
        return Err(err(path, "Null takes neither IfExists nor a set operator"));
    }
    Ok((family, negated, set, if_exists))
}

fn parse_key(path: &str, key: &str) -> Result<Key, PolicyError> {
    let lower = key.to_ascii_lowercase();
    let k = if let Some(name) = lower.strip_prefix("vpc-lattice-svcs:requestheader/") {
        if name.is_empty() {
            return Err(err(path, "RequestHeader/ needs a header name"));
        }
        Key::RequestHeader(name.to_owned())
    } else if lower.starts_with("vpc-lattice-svcs:requestquerystring/") {
        // Query keys are case-sensitive: keep the policy's spelling.
        let name = &key["vpc-lattice-svcs:RequestQueryString/".len()..];
        if name.is_empty() {
            return Err(err(path, "RequestQueryString/ needs a key"));
        }
        Key::RequestQueryString(name.to_owned())
    } else {
        match lower.as_str() {
            "vpc-lattice-svcs:sourcevpc" => Key::SourceVpc,
            "vpc-lattice-svcs:sourcevpcowneraccount" => Key::SourceVpcOwnerAccount,
            "vpc-lattice-svcs:servicenetworkarn" => Key::ServiceNetworkArn,
            "vpc-lattice-svcs:servicearn" => Key::ServiceArn,
            "vpc-lattice-svcs:port" => Key::Port,
            "vpc-lattice-svcs:requestmethod" => Key::RequestMethod,
            "vpc-lattice-svcs:requestpath" => Key::RequestPath,
            "aws:principalarn" => Key::PrincipalArn,
            "aws:principalorgid" => Key::PrincipalOrgId,
            "aws:principaltype" => Key::PrincipalType,
            "aws:principalaccount" => Key::PrincipalAccount,
            "aws:sourceip" => Key::SourceIp,
            "aws:securetransport" => Key::SecureTransport,
            _ => {
                return Err(err(
                    path,
                    format!(
                        "{key:?} is not a condition key latticed knows ({})",
                        KEYS.join(", ")
                    ),
                ))
            }
        }
    };
    Ok(k)
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Glob with `*` (any run) and `?` (one character).
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        // The common case (ARNs, paths, actions), without allocating.
        return glob_units(
            pattern.as_bytes(),
            text.as_bytes(),
            |a, b| {
                if ignore_case {
                    a.eq_ignore_ascii_case(&b)
                } else {
                    a == b
                }
            },
            b'*',
            b'?',
        );
    }
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.chars().flat_map(char::to_lowercase).collect(),
            text.chars().flat_map(char::to_lowercase).collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    glob_units(&p, &t, |a, b| a == b, '*', '?')
}

/// Iterative glob over any units, backtracking to the last `*`.
fn glob_units<T: Copy + PartialEq>(
    p: &[T],
    t: &[T],
    eq: impl Fn(T, T) -> bool,
    star_unit: T,
    one_unit: T,
) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] != star_unit && (p[pi] == one_unit || eq(p[pi], t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == star_unit {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == star_unit {
        pi += 1;
    }
    pi == p.len()
}

/// ARN comparison: six `:`-separated parts, each a glob.
fn arn_match(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| glob(p, a, false))
}

impl Condition {
    /// The request's values for the key (none when absent).
    fn request_values<'a>(&self, ctx: &'a Context<'a>) -> Vec<Cow<'a, str>> {
        let one = |s: &'a str| vec![Cow::Borrowed(s)];
        match &self.key {
            Key::SourceVpc => one(ctx.source_vpc),
            Key::SourceVpcOwnerAccount => one(ctx.source_vpc_owner),
            Key::ServiceNetworkArn => one(ctx.service_network_arn),
            Key::ServiceArn => one(ctx.service_arn),
            Key::Port => vec![Cow::Owned(ctx.port.to_string())],
            Key::RequestMethod => one(ctx.method),
            Key::RequestPath => one(ctx.path),
            Key::RequestHeader(name) => ctx
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(Cow::Borrowed)
                .collect(),
            // Keys and values decoded: `?%61ction=` is `action`.
            Key::RequestQueryString(name) => crate::head::query_pairs(ctx.query)
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v)
                .collect(),
            Key::PrincipalArn => ctx.principal.map(|p| one(&p.arn)).unwrap_or_default(),
            Key::PrincipalOrgId => ctx
                .principal
                .and_then(|p| p.org_id.as_deref())
                .map(one)
                .unwrap_or_default(),
            Key::PrincipalType => one(ctx.principal.map_or("Anonymous", |p| p.kind())),
            Key::PrincipalAccount => ctx
                .principal
                .and_then(|p| p.account())
                .map(one)
                .unwrap_or_default(),
            Key::SourceIp => vec![Cow::Owned(ctx.source_ip.to_string())],
            Key::SecureTransport => one(if ctx.secure { "true" } else { "false" }),
        }
    }

    /// Whether one request value matches any policy value (before negation).
    fn matches(&self, v: &str) -> bool {
        match self.family {
            Family::String => self.values.iter().any(|p| p == v),
            Family::StringIgnoreCase => {
                let v = v.to_lowercase();
                self.values.contains(&v)
            }
            Family::StringLike => self.values.iter().any(|p| glob(p, v, false)),
            Family::Numeric(op) => v.parse::<f64>().is_ok_and(|x| {
                self.numbers.iter().any(|n| match op {
                    NumOp::Eq => x == *n,
                    NumOp::Lt => x < *n,
                    NumOp::Le => x <= *n,
                    NumOp::Gt => x > *n,
                    NumOp::Ge => x >= *n,
                })
            }),
            Family::Bool => self.values.iter().any(|p| p.eq_ignore_ascii_case(v)),
            Family::Ip => v
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.nets.iter().any(|n| in_cidr(ip, *n))),
            Family::Arn => self.values.iter().any(|p| arn_match(p, v)),
            Family::Null => false,
        }
    }

    fn holds(&self, ctx: &Context<'_>) -> bool {
        let values = self.request_values(ctx);
        if self.family == Family::Null {
            let want_absent = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return values.is_empty() == want_absent;
        }
        let test = |v: &Cow<'_, str>| self.matches(v) != self.negated;
        if values.is_empty() {
            return match self.set {
                SetOp::ForAll => true,
                SetOp::ForAny => false,
                SetOp::None => self.if_exists || self.negated,
            };
        }
        match self.set {
            SetOp::ForAny => values.iter().any(test),
            SetOp::ForAll => values.iter().all(test),
            SetOp::None if self.negated => !values.iter().any(|v| self.matches(v)),
            SetOp::None => values.iter().any(|v| self.matches(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Principal;

    const SVC: &str = "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0";
    const SN: &str =
        "arn:aws:vpc-lattice:us-east-1:111122223333:servicenetwork/sn-0123456789abcdef0";

    struct Req {
        principal: Option<Principal>,
        method: &'static str,
        path: &'static str,
        query: &'static str,
        headers: Vec<(&'static str, &'static str)>,
        vpc: &'static str,
        port: u16,
        ip: &'static str,
        secure: bool,
    }

    fn role(session: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:sts::111122223333:assumed-role/app/{session}"),
            org_id: Some("o-a1b2c3d4e5".into()),
            session_name: Some(session.into()),
        }
    }

    fn req() -> Req {
        Req {
            principal: Some(role("s1")),
            method: "GET",
            path: "/orders/42",
            query: "",
            headers: vec![],
            vpc: "vpc-b",
            port: 443,
            ip: "10.0.16.7",
            secure: true,
        }
    }

    fn decide(policy: &str, r: &Req) -> Decision {
        let p = Policy::parse(policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
        let mut headers = http::HeaderMap::new();
        for (k, v) in &r.headers {
            headers.append(*k, v.parse().unwrap());
        }
        let resource = format!("{SVC}{}", r.path);
        let ctx = Context {
            principal: r.principal.as_ref(),
            resource: &resource,
            method: r.method,
            path: r.path,
            headers: &headers,
            query: r.query,
            source_vpc: r.vpc,
            source_vpc_owner: "111122223333",
            service_network_arn: SN,
            service_arn: SVC,
            port: r.port,
            source_ip: r.ip.parse().unwrap(),
            secure: r.secure,
        };
        p.evaluate(&ctx)
    }

    /// A policy of one Allow statement with `extra` merged in.
    fn allow(extra: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"A","Effect":"Allow","Principal":"*","Action":"vpc-lattice-svcs:Invoke","Resource":"*"{extra}}}]}}"#
        )
    }

    fn cond(c: &str) -> String {
        allow(&format!(r#","Condition":{c}"#))
    }

    fn allowed(d: &Decision) -> bool {
        matches!(d, Decision::Allow(_))
    }

    #[test]
    fn the_policy_table() {
        use Decision::*;
        let with = |f: &dyn Fn(&mut Req)| {
            let mut r = req();
            f(&mut r);
            r
        };
        let anon = with(&|r| r.principal = None);
        let two_headers = with(&|r| r.headers = vec![("x-team", "blue"), ("x-team", "green")]);
        let deny_b = r#"{"Statement":[
            {"Sid":"All","Effect":"Allow","Principal":"*","Action":"*","Resource":"*"},
            {"Sid":"NoB","Effect":"Deny","Principal":"*","Action":"*","Resource":"*","Condition":{"StringEquals":{"vpc-lattice-svcs:SourceVpc":"vpc-b"}}}]}"#;
        let cases: Vec<(&str, String, Req, bool)> = vec![
            // Principals.
            (
                "star allows anonymous",
                allow(""),
                with(&|r| r.principal = None),
                true,
            ),
            (
                "AWS star allows anonymous too",
                allow("").replace(r#""Principal":"*""#, r#""Principal":{"AWS":"*"}"#),
                anon_clone(&anon),
                true,
            ),
            (
                "account principal allows its sessions",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""Principal":{"AWS":"111122223333"}"#,
                ),
                req(),
                true,
            ),
            (
                "account principal refuses anonymous",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""Principal":{"AWS":"111122223333"}"#,
                ),
                anon_clone(&anon),
                false,
            ),
            (
                "root ARN means the account",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""Principal":{"AWS":"arn:aws:iam::111122223333:root"}"#,
                ),
                req(),
                true,
            ),
            (
                "other account refused",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""Principal":{"AWS":"444455556666"}"#,
                ),
                req(),
                false,
            ),
            (
                "role ARN allows its sessions",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""Principal":{"AWS":"arn:aws:iam::111122223333:role/app"}"#,
                ),
                req(),
                true,
            ),
            (
                "other role refused",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""Principal":{"AWS":"arn:aws:iam::111122223333:role/web"}"#,
                ),
                req(),
                false,
            ),
            (
                "exact session ARN",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""Principal":{"AWS":["arn:aws:sts::111122223333:assumed-role/app/s1"]}"#,
                ),
                req(),
                true,
            ),
            (
                "NotPrincipal excludes the listed",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""NotPrincipal":{"AWS":"arn:aws:iam::111122223333:role/app"}"#,
                ),
                req(),
                false,
            ),
            (
                "NotPrincipal includes the rest",
                allow("").replace(
                    r#""Principal":"*""#,
                    r#""NotPrincipal":{"AWS":"arn:aws:iam::111122223333:role/app"}"#,
                ),
                anon_clone(&anon),
                true,
            ),
            // Actions and resources.
            (
                "action wildcard",
                allow("").replace("vpc-lattice-svcs:Invoke", "vpc-lattice-svcs:*"),
                req(),
                true,
            ),
            (
                "action case-insensitive",
                allow("").replace("vpc-lattice-svcs:Invoke", "VPC-LATTICE-SVCS:invoke"),
                req(),
                true,
            ),
            (
                "other action",
                allow("").replace("vpc-lattice-svcs:Invoke", "s3:GetObject"),
                req(),
                false,
            ),
            (
                "NotAction of another action applies",
                allow("").replace(
                    r#""Action":"vpc-lattice-svcs:Invoke""#,
                    r#""NotAction":"s3:*""#,
                ),
                req(),
                true,
            ),
            (
                "NotAction of Invoke does not",
                allow("").replace(
                    r#""Action":"vpc-lattice-svcs:Invoke""#,
                    r#""NotAction":"vpc-lattice-svcs:Invoke""#,
                ),
                req(),
                false,
            ),
            (
                "resource with path prefix",
                allow("").replace(
                    r#""Resource":"*""#,
                    &format!(r#""Resource":"{SVC}/orders/*""#),
                ),
                req(),
                true,
            ),
            (
                "resource other path",
                allow("").replace(
                    r#""Resource":"*""#,
                    &format!(r#""Resource":"{SVC}/admin/*""#),
                ),
                req(),
                false,
            ),
            (
                "resource is case-sensitive",
                allow("").replace(
                    r#""Resource":"*""#,
                    &format!(r#""Resource":"{SVC}/ORDERS/*""#),
                ),
                req(),
                false,
            ),
            (
                "resource ? wildcard",
                allow("").replace(
                    r#""Resource":"*""#,
                    &format!(r#""Resource":"{SVC}/orders/4?""#),
                ),
                req(),
                true,
            ),
            (
                "NotResource excludes",
                allow("").replace(
                    r#""Resource":"*""#,
                    &format!(r#""NotResource":"{SVC}/orders/*""#),
                ),
                req(),
                false,
            ),
            // Deny overrides.
            (
                "explicit deny wins over allow",
                deny_b.to_owned(),
                req(),
                false,
            ),
            (
                "deny not matching leaves allow",
                deny_b.to_owned(),
                with(&|r| r.vpc = "vpc-a"),
                true,
            ),
            // String operators.
            (
                "StringEquals method",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:RequestMethod":"GET"}}"#),
                req(),
                true,
            ),
            (
                "StringEquals is case-sensitive",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:RequestMethod":"get"}}"#),
                req(),
                false,
            ),
            (
                "StringEqualsIgnoreCase",
                cond(r#"{"StringEqualsIgnoreCase":{"vpc-lattice-svcs:RequestMethod":"get"}}"#),
                req(),
                true,
            ),
            (
                "StringNotEquals",
                cond(r#"{"StringNotEquals":{"vpc-lattice-svcs:RequestMethod":["POST","PUT"]}}"#),
                req(),
                true,
            ),
            (
                "StringNotEquals hit",
                cond(r#"{"StringNotEquals":{"vpc-lattice-svcs:RequestMethod":["GET","PUT"]}}"#),
                req(),
                false,
            ),
            (
                "StringNotEqualsIgnoreCase",
                cond(r#"{"StringNotEqualsIgnoreCase":{"vpc-lattice-svcs:RequestMethod":"get"}}"#),
                req(),
                false,
            ),
            (
                "StringLike path",
                cond(r#"{"StringLike":{"vpc-lattice-svcs:RequestPath":"/orders/*"}}"#),
                req(),
                true,
            ),
            (
                "StringLike is case-sensitive",
                cond(r#"{"StringLike":{"vpc-lattice-svcs:RequestPath":"/Orders/*"}}"#),
                req(),
                false,
            ),
            (
                "StringNotLike",
                cond(r#"{"StringNotLike":{"vpc-lattice-svcs:RequestPath":"/admin*"}}"#),
                req(),
                true,
            ),
            (
                "values OR",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:SourceVpc":["vpc-a","vpc-b"]}}"#),
                req(),
                true,
            ),
            (
                "keys AND",
                cond(
                    r#"{"StringEquals":{"vpc-lattice-svcs:SourceVpc":"vpc-b","vpc-lattice-svcs:RequestMethod":"POST"}}"#,
                ),
                req(),
                false,
            ),
            (
                "operators AND",
                cond(
                    r#"{"StringEquals":{"vpc-lattice-svcs:SourceVpc":"vpc-b"},"StringLike":{"vpc-lattice-svcs:RequestPath":"/x*"}}"#,
                ),
                req(),
                false,
            ),
            (
                "key names are case-insensitive",
                cond(r#"{"StringEquals":{"VPC-LATTICE-SVCS:SOURCEVPC":"vpc-b"}}"#),
                req(),
                true,
            ),
            // Headers and query strings.
            (
                "header exact",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:RequestHeader/x-team":"blue"}}"#),
                with(&|r| r.headers = vec![("x-team", "blue")]),
                true,
            ),
            (
                "header name case-insensitive",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:RequestHeader/X-Team":"blue"}}"#),
                with(&|r| r.headers = vec![("x-team", "blue")]),
                true,
            ),
            (
                "missing header: positive false",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:RequestHeader/x-team":"blue"}}"#),
                req(),
                false,
            ),
            (
                "missing header: negated true",
                cond(r#"{"StringNotEquals":{"vpc-lattice-svcs:RequestHeader/x-team":"blue"}}"#),
                req(),
                true,
            ),
            (
                "missing header: IfExists true",
                cond(
                    r#"{"StringEqualsIfExists":{"vpc-lattice-svcs:RequestHeader/x-team":"blue"}}"#,
                ),
                req(),
                true,
            ),
            (
                "present header: IfExists checks",
                cond(
                    r#"{"StringEqualsIfExists":{"vpc-lattice-svcs:RequestHeader/x-team":"blue"}}"#,
                ),
                with(&|r| r.headers = vec![("x-team", "red")]),
                false,
            ),
            (
                "multi-valued: plain is any",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:RequestHeader/x-team":"green"}}"#),
                two_headers_clone(&two_headers),
                true,
            ),
            (
                "multi-valued: ForAllValues needs all",
                cond(
                    r#"{"ForAllValues:StringEquals":{"vpc-lattice-svcs:RequestHeader/x-team":"green"}}"#,
                ),
                two_headers_clone(&two_headers),
                false,
            ),
            (
                "multi-valued: ForAllValues all in set",
                cond(
                    r#"{"ForAllValues:StringEquals":{"vpc-lattice-svcs:RequestHeader/x-team":["green","blue"]}}"#,
                ),
                two_headers_clone(&two_headers),
                true,
            ),
            (
                "ForAllValues on missing key is true",
                cond(
                    r#"{"ForAllValues:StringEquals":{"vpc-lattice-svcs:RequestHeader/x-team":"green"}}"#,
                ),
                req(),
                true,
            ),
            (
                "ForAnyValue on missing key is false",
                cond(
                    r#"{"ForAnyValue:StringEquals":{"vpc-lattice-svcs:RequestHeader/x-team":"green"}}"#,
                ),
                req(),
                false,
            ),
            (
                "ForAnyValue:StringLike",
                cond(
                    r#"{"ForAnyValue:StringLike":{"vpc-lattice-svcs:RequestHeader/x-team":"gr*"}}"#,
                ),
                two_headers_clone(&two_headers),
                true,
            ),
            (
                "multi-valued negated: none may match",
                cond(r#"{"StringNotEquals":{"vpc-lattice-svcs:RequestHeader/x-team":"green"}}"#),
                two_headers_clone(&two_headers),
                false,
            ),
            (
                "query string value",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:RequestQueryString/id":"7 x"}}"#),
                with(&|r| r.query = "a=1&id=7%20x"),
                true,
            ),
            (
                "query string keys are case-sensitive",
                cond(r#"{"StringEquals":{"vpc-lattice-svcs:RequestQueryString/ID":"7"}}"#),
                with(&|r| r.query = "id=7"),
                false,
            ),
            (
                "query string multi-valued",
                cond(
                    r#"{"ForAllValues:StringLike":{"vpc-lattice-svcs:RequestQueryString/tag":"t*"}}"#,
                ),
                with(&|r| r.query = "tag=t1&tag=t2"),
                true,
            ),
            // Numeric, Bool, Null, IP, ARN.
            (
                "NumericEquals port",
                cond(r#"{"NumericEquals":{"vpc-lattice-svcs:Port":443}}"#),
                req(),
                true,
            ),
            (
                "NumericLessThan port",
                cond(r#"{"NumericLessThan":{"vpc-lattice-svcs:Port":"443"}}"#),
                req(),
                false,
            ),
            (
                "NumericGreaterThanEquals",
                cond(r#"{"NumericGreaterThanEquals":{"vpc-lattice-svcs:Port":"443"}}"#),
                req(),
                true,
            ),
            (
                "NumericNotEquals",
                cond(r#"{"NumericNotEquals":{"vpc-lattice-svcs:Port":[80,8080]}}"#),
                req(),
                true,
            ),
            (
                "Bool secure transport",
                cond(r#"{"Bool":{"aws:SecureTransport":"true"}}"#),
                with(&|r| r.secure = false),
                false,
            ),
            (
                "Bool is case-insensitive",
                cond(r#"{"Bool":{"aws:SecureTransport":"TRUE"}}"#),
                req(),
                true,
            ),
            (
                "Null true when absent",
                cond(r#"{"Null":{"aws:PrincipalOrgID":"true"}}"#),
                anon_clone(&anon),
                true,
            ),
            (
                "Null false when present",
                cond(r#"{"Null":{"aws:PrincipalOrgID":"false"}}"#),
                req(),
                true,
            ),
            (
                "IpAddress in CIDR",
                cond(r#"{"IpAddress":{"aws:SourceIp":"10.0.16.0/20"}}"#),
                req(),
                true,
            ),
            (
                "IpAddress outside",
                cond(r#"{"IpAddress":{"aws:SourceIp":["192.168.0.0/16","10.0.0.1"]}}"#),
                req(),
                false,
            ),
            (
                "NotIpAddress",
                cond(r#"{"NotIpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#),
                req(),
                true,
            ),
            (
                "ArnLike principal",
                cond(
                    r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:sts::111122223333:assumed-role/app/*"}}"#,
                ),
                req(),
                true,
            ),
            (
                "ArnEquals service",
                cond(&format!(
                    r#"{{"ArnEquals":{{"vpc-lattice-svcs:ServiceArn":"{SVC}"}}}}"#
                )),
                req(),
                true,
            ),
            (
                "ArnNotLike network",
                cond(
                    r#"{"ArnNotLike":{"vpc-lattice-svcs:ServiceNetworkArn":"arn:aws:vpc-lattice:*:*:servicenetwork/sn-0123456789abcdef0"}}"#,
                ),
                req(),
                false,
            ),
            (
                "ArnLike on anonymous: missing is false",
                cond(r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:sts::*:*"}}"#),
                anon_clone(&anon),
                false,
            ),
            (
                "org id",
                cond(r#"{"StringEquals":{"aws:PrincipalOrgID":"o-a1b2c3d4e5"}}"#),
                req(),
                true,
            ),
            (
                "principal type anonymous refused",
                cond(r#"{"StringNotEqualsIgnoreCase":{"aws:PrincipalType":"anonymous"}}"#),
                anon_clone(&anon),
                false,
            ),
            (
                "principal type of a session",
                cond(r#"{"StringEquals":{"aws:PrincipalType":"AssumedRole"}}"#),
                req(),
                true,
            ),
            (
                "source VPC owner",
                cond(
                    r#"{"StringEquals":{"vpc-lattice-svcs:SourceVpcOwnerAccount":"111122223333"}}"#,
                ),
                req(),
                true,
            ),
        ];
        assert!(cases.len() >= 50, "{} cases", cases.len());
        for (name, policy, r, want) in &cases {
            let got = decide(policy, r);
            assert_eq!(allowed(&got), *want, "{name}: {got:?}");
        }
        // Which statement decided is reported.
        assert_eq!(decide(deny_b, &req()), Deny("NoB".into()));
        assert_eq!(
            decide(deny_b, &with(&|r| r.vpc = "vpc-a")),
            Allow("All".into())
        );
        assert_eq!(
            decide(&cond(r#"{"Bool":{"aws:SecureTransport":"false"}}"#), &req()),
            NoMatch
        );
        assert_eq!(
            decide(&allow("").replace(r#""Sid":"A","#, ""), &req()),
            Allow("Statement[0]".into())
        );
    }

    fn anon_clone(r: &Req) -> Req {
        Req {
            principal: r.principal.clone(),
            headers: r.headers.clone(),
            ..*r
        }
    }

    fn two_headers_clone(r: &Req) -> Req {
        anon_clone(r)
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        let e = |p: &str| Policy::parse(p).unwrap_err().to_string();
        assert!(e(&"x".repeat(MAX_POLICY_BYTES + 1)).contains("at most 10240"));
        assert!(e("{").contains("not valid JSON"));
        assert!(e("[]").contains("JSON object"));
        assert!(e(r#"{"Statement":[]}"#).contains("non-empty"));
        assert!(e(r#"{"Version":"2020-01-01","Statement":{}}"#).contains("Version"));
        assert!(e(r#"{"Statement":{"Effect":"Maybe"}}"#).starts_with("Statement[0].Effect"));
        assert!(
            e(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#)
                .contains("Principal or NotPrincipal")
        );
        assert!(
            e(&allow("").replace(r#""Principal":"*""#, r#""Principal":{"Service":"x"}"#))
                .contains("only AWS principals")
        );
        assert!(e(&allow("").replace(
            r#""Principal":"*""#,
            r#""Principal":{"AWS":"arn:aws:iam::1:role/*"}"#
        ))
        .contains("is not *"));
        assert!(
            e(&allow("").replace("vpc-lattice-svcs:Invoke", "Invoke")).contains("service:action")
        );
        assert!(e(&cond(r#"{"StringEqualz":{"aws:SourceIp":"x"}}"#))
            .contains("not a supported condition operator"));
        assert!(e(&cond(r#"{"StringEquals":{"aws:Nope":"x"}}"#)).contains("not a condition key"));
        assert!(e(&cond(
            r#"{"NumericEquals":{"vpc-lattice-svcs:Port":"http"}}"#
        ))
        .contains("not a number"));
        assert!(e(&cond(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}"#)).contains("CIDR"));
        assert!(e(&cond(r#"{"Bool":{"aws:SecureTransport":"yes"}}"#)).contains("true or false"));
        assert!(e(&cond(r#"{"StringEquals":{"aws:SourceIp":[]}}"#)).contains("empty list"));
        assert!(e(&cond(r#"{"NullIfExists":{"aws:SourceIp":"true"}}"#)).contains("Null takes"));
        assert!(e(&allow(r#","Foo":1"#)).contains("Statement[0].Foo"));
    }

    #[test]
    fn globs() {
        assert!(glob("a*c", "abbbc", false));
        assert!(glob("a?c", "abc", false));
        assert!(!glob("a?c", "abbc", false));
        assert!(glob("*", "", false));
        assert!(glob("A*", "abc", true));
        assert!(!glob("A*", "abc", false));
        assert!(glob("*/x/*", "/a/x/b", false));
    }
}
