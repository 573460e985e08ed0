//! Sharing between accounts: RAM's resource shares and invitations, and
//! what a share lets its principals do with Lattice's resources.
//!
//! A share names resources (service networks, services) its owner owns,
//! principals (account ids, the owner's organisation) and, per resource
//! type, a permission: the `vpc-lattice` actions a principal may take on
//! the shared resources. An account in the owner's organisation is
//! associated at once; any other gets an invitation and is associated once
//! it accepts. The one rule of access is [`grants`]: every Lattice handler
//! that lets a non-owner act asks it, and ending a share removes the
//! associations its principals made through it in the same write.

use super::{
    permissions::{actions_of, resource_type, ResourceType, RESOURCE_TYPES},
    *,
};

/// This API's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("ram:CreateResourceShare", create),
    ("ram:GetResourceShares", get_shares),
    ("ram:UpdateResourceShare", update),
    ("ram:DeleteResourceShare", delete),
    ("ram:AssociateResourceShare", |c| associate(c, true)),
    ("ram:DisassociateResourceShare", |c| associate(c, false)),
    ("ram:GetResourceShareAssociations", get_associations),
    ("ram:ListResources", list_resources),
    ("ram:ListPrincipals", list_principals),
    ("ram:GetResourceShareInvitations", get_invitations),
    ("ram:AcceptResourceShareInvitation", |c| answer(c, true)),
    ("ram:RejectResourceShareInvitation", |c| answer(c, false)),
    ("ram:ListPendingInvitationResources", pending_resources),
    ("ram:ListResourceTypes", |c| {
        let items: Vec<Value> = RESOURCE_TYPES
            .iter()
            .map(|t| json!({"resourceType": t.name, "serviceName": "vpc-lattice", "resourceRegionScope": "REGIONAL"}))
            .collect();
        c.ram_page("resourceTypes", &items, |v| v.clone())
    }),
    // Sharing within an organisation needs no invitation in latticed:
    // accounts say their organisation when they are added.
    ("ram:EnableSharingWithAwsOrganization", |_| {
        Ok(Outcome::Read(json!({"returnValue": true})))
    }),
];

/// Seconds since the epoch of an ISO 8601 time as handlers get it
/// (`2026-12-06T10:00:00.000Z`), RAM's form of time.
pub(super) fn epoch(iso: &str) -> f64 {
    let num = |r: std::ops::Range<usize>| iso.get(r).and_then(|s| s.parse::<u32>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return 0.0;
    };
    let ms = num(20..23).unwrap_or(0);
    let days = latticed_proxy::time::days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    secs as f64 + f64::from(ms) / 1000.0
}

/// The store key of the share at `arn`.
fn share_key(arn: &str) -> String {
    format!(
        "{}{}",
        rec::SHARE,
        arn.rsplit('/').next().unwrap_or_default()
    )
}

/// Whether principal `p` of a share (an account id or an organisation
/// ARN) stands for account `who` of organisation `org`.
fn names(p: &str, who: &str, org: Option<&str>) -> bool {
    p == who
        || org.is_some_and(|o| {
            p.starts_with("arn:aws:organizations::") && p.ends_with(&format!("/{o}"))
        })
}

/// What account `who` (of organisation `org`) may do with others'
/// resources through shares and resource policies: resource ARN -> what is
/// granted. Only associated principals of active shares count. `replaced` stands a share's new
/// version (or its deletion) in for the stored one, to see what a change
/// would leave.
pub(super) fn grants(
    state: &State,
    who: &str,
    org: Option<&str>,
    replaced: Option<(&str, Option<&rec::Share>)>,
) -> BTreeMap<String, Granted> {
    let stored = state
        .shares_by_key()
        .filter(|(k, _)| replaced.is_none_or(|(r, _)| r != k.as_str()))
        .map(|(_, s)| s);
    let mut out: BTreeMap<String, Granted> = BTreeMap::new();
    for share in stored.chain(replaced.and_then(|(_, s)| s)) {
        if share.status != "ACTIVE" || !reaches(share, who, org) {
            continue;
        }
        for arn in share.resources.keys() {
            let Some(t) = resource_type(arn) else {
                continue;
            };
            let actions = actions_of(state, share, t);
            out.entry(arn.clone()).or_default().allow.extend(actions);
        }
    }
    // Resource policies grant as shares do (AWS makes a share into one);
    // what a policy denies is denied whatever grants it.
    for (arn, (allowed, denied)) in policy_grants(state, who) {
        let g = out.entry(arn).or_default();
        g.allow.extend(allowed);
        g.deny.extend(denied);
    }
    out.retain(|_, g| !g.allow.is_empty());
    out
}

/// What an account may do with another's resource: the actions shares and
/// resource policies allow it, less those a policy denies.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Granted {
    /// Allowed actions (patterns).
    pub(super) allow: Vec<String>,
    /// Denied actions (patterns): they win.
    pub(super) deny: Vec<String>,
}

impl Granted {
    /// Whether `action` is allowed and not denied.
    pub(super) fn permits(&self, action: &str) -> bool {
        super::permissions::allows(&self.allow, action)
            && !super::permissions::allows(&self.deny, action)
    }
}

/// A statement of a resource policy, as sharing reads it.
#[derive(Debug, PartialEq)]
pub(super) struct PolicyStatement {
    /// Allow (true) or Deny.
    allow: bool,
    /// Account ids it names (`*`: every account).
    principals: Vec<String>,
    /// Actions, as written (wildcards allowed).
    actions: Vec<String>,
    /// Whether it has conditions, which latticed does not evaluate: an
    /// Allow with conditions grants nothing, a Deny with them denies
    /// always (the safe reading of each).
    conditional: bool,
}

/// The statements of resource policy `text`, or what is wrong with it,
/// naming the place. PutResourcePolicy checks policies with it, and
/// [`grants`] reads them with it: one reading of a policy.
pub(super) fn policy_statements(text: &str) -> Result<Vec<PolicyStatement>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err("needs a Statement (an object or a list of them)".into()),
    };
    let strings = |v: Option<&Value>, at: &str| -> Result<Vec<String>, String> {
        match v {
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{at}: every item must be a string"))
                })
                .collect(),
            _ => Err(format!("{at}: must be a string or a list of strings")),
        }
    };
    statements
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let at = format!("Statement[{i}]");
            let allow = match st.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return Err(format!("{at}.Effect: must be Allow or Deny")),
            };
            let principals = match st.get("Principal") {
                Some(Value::String(s)) if s == "*" => vec!["*".to_owned()],
                Some(Value::Object(o)) => strings(o.get("AWS"), &format!("{at}.Principal.AWS"))?
                    .into_iter()
                    .map(|p| {
                        match p
                            .strip_prefix("arn:aws:iam::")
                            .and_then(|r| r.strip_suffix(":root"))
                        {
                            Some(acct) => acct.to_owned(),
                            None => p,
                        }
                    })
                    .collect(),
                _ => return Err(format!("{at}.Principal: must be * or {{\"AWS\": ...}}")),
            };
            let actions = strings(st.get("Action"), &format!("{at}.Action"))?;
            Ok(PolicyStatement {
                allow,
                principals,
                actions,
                conditional: st.get("Condition").is_some(),
            })
        })
        .collect()
}

/// Whether statement principal `p` names account `who` (an IAM role or
/// user of the account counts as the account: latticed's API keys sign as
/// accounts).
fn names_account(p: &str, who: &str) -> bool {
    p == "*" || p == who || p.split(':').nth(4) == Some(who)
}

/// The actions resource policies give account `who` on others' networks
/// and services, and those they deny: (allowed, denied) per ARN.
fn policy_grants(state: &State, who: &str) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let policies = state
        .records
        .range(RESOURCE_POLICY.to_owned()..)
        .take_while(|(k, _)| k.starts_with(RESOURCE_POLICY));
    for (key, rec) in policies {
        let Record::ResourcePolicy(p) = rec else {
            continue;
        };
        let id = key.trim_start_matches(RESOURCE_POLICY);
        let Some(arn) = state.records.get(id).map(Record::arn) else {
            continue;
        };
        if owner(arn) == who || resource_type(arn).is_none() {
            continue;
        }
        let Ok(statements) = policy_statements(&p.policy) else {
            continue;
        };
        let entry = out.entry(arn.to_owned()).or_default();
        for st in statements
            .iter()
            .filter(|st| st.principals.iter().any(|p| names_account(p, who)))
        {
            match (st.allow, st.conditional) {
                (true, false) => entry.0.extend(st.actions.iter().cloned()),
                (true, true) => {}
                (false, _) => entry.1.extend(st.actions.iter().cloned()),
            }
        }
    }
    out
}

/// The associations made by other accounts through shares that `share`'s
/// new version (`None`: deleted) no longer backs: they go with it, as
/// AWS removes a consumer's associations when it loses the share.
fn orphaned(c: &Ctx<'_>, key: &str, share: Option<&rec::Share>) -> Vec<Change> {
    let state = c.state;
    let mut lost = Vec::new();
    let mut seen: BTreeMap<String, BTreeMap<String, Granted>> = BTreeMap::new();
    let mut still = |who: &str, arn: &str| {
        let g = seen
            .entry(who.to_owned())
            .or_insert_with(|| grants(state, who, c.settings.org(who), Some((key, share))));
        g.contains_key(arn)
    };
    for a in state.of_kind::<rec::SnVpc>() {
        let who = owner(a.arn());
        if owner(&a.service_network_arn) != who && !still(who, &a.service_network_arn) {
            lost.extend(deleted(state, a));
        }
    }
    for a in state.of_kind::<rec::SnService>() {
        let who = owner(a.arn());
        let gone = [&a.service_network_arn, &a.service_arn]
            .into_iter()
            .any(|arn| owner(arn) != who && !still(who, arn));
        if gone {
            lost.extend(deleted(state, a));
        }
    }
    lost
}

/// The caller's share named by `resourceShareArn`. Another account's is
/// unknown to it.
pub(super) fn owned_share<'a>(c: &Ctx<'a>) -> Result<&'a rec::Share, ApiError> {
    let field = "resourceShareArn";
    let arn = c.get(field);
    check_arn(field, arn)?;
    match c.state.records.get(&share_key(arn)) {
        Some(Record::Share(s))
            if s.resource_share_arn == arn && s.owning_account_id == c.caller =>
        {
            Ok(s)
        }
        _ => Err(ApiError::ram(
            "UnknownResourceException",
            format!("{field}: resource share {arn} was not found"),
        )),
    }
}

/// Refuses a value at `field` that is not an ARN.
fn check_arn(field: &str, arn: &str) -> Result<(), ApiError> {
    if arn.starts_with("arn:") && arn.split(':').count() >= 6 {
        Ok(())
    } else {
        Err(ApiError::ram(
            "MalformedArnException",
            format!("{field}: {arn:?} is not an ARN"),
        ))
    }
}

/// The share's new resources: each an ARN of a service network or service
/// the caller owns (a resource shared with it cannot be shared on).
fn checked_resources<'a>(c: &Ctx<'a>, arns: &'a [String]) -> Result<Vec<&'a str>, ApiError> {
    let mut out = Vec::new();
    for (i, arn) in arns.iter().enumerate() {
        let field = format!("resourceArns[{i}]");
        check_arn(&field, arn)?;
        let exists = match resource_type(arn) {
            Some(t) if t.name == RESOURCE_TYPES[0].name => {
                c.state.resolve::<rec::ServiceNetwork>(arn).is_ok()
            }
            Some(_) => c.state.resolve::<rec::Service>(arn).is_ok(),
            None => {
                return Err(ApiError::ram(
                    "InvalidParameterException",
                    format!(
                        "{field}: {arn} is not a service network or service; latticed shares those"
                    ),
                ))
            }
        };
        if !exists {
            return Err(ApiError::ram(
                "UnknownResourceException",
                format!("{field}: {arn} was not found"),
            ));
        }
        if owner(arn) != c.caller {
            return Err(ApiError::ram(
                "OperationNotPermittedException",
                format!(
                    "{field}: {arn} belongs to account {}; only its owner may share it",
                    owner(arn)
                ),
            ));
        }
        out.push(arn.as_str());
    }
    Ok(out)
}

/// A new principal of `share`: associated at once within the owner's
/// organisation; an external account is invited (if the share allows
/// external principals).
fn principal(
    c: &Ctx<'_>,
    share: &rec::Share,
    field: &str,
    p: &str,
) -> Result<rec::ShareMember, ApiError> {
    let now = epoch(&c.now);
    let own_org = c.settings.org(c.caller);
    let member = |status: &str, external: bool, invitation| rec::ShareMember {
        status: status.into(),
        creation_time: now,
        last_updated_time: now,
        external,
        invitation,
    };
    if p.starts_with("arn:aws:organizations::") {
        let org = p.rsplit('/').next().unwrap_or_default();
        if p.contains(":organization/") && own_org == Some(org) {
            return Ok(member("ASSOCIATED", false, None));
        }
        return Err(ApiError::ram(
            "InvalidParameterException",
            format!("{field}: {p} is not the organisation of account {} ({}); latticed shares with accounts and with the owner's own organisation", c.caller, own_org.unwrap_or("none")),
        ));
    }
    if !crate::accounts::is_account_id(p) {
        return Err(ApiError::ram(
            "InvalidParameterException",
            format!("{field}: {p:?} is neither an account id (12 digits) nor an organisation ARN"),
        ));
    }
    if p == c.caller {
        return Err(ApiError::ram(
            "InvalidParameterException",
            format!("{field}: {p} owns the share; it cannot also be its principal"),
        ));
    }
    if own_org.is_some() && c.settings.org(p) == own_org {
        return Ok(member("ASSOCIATED", false, None));
    }
    if !share.allow_external_principals {
        return Err(ApiError::ram(
            "OperationNotPermittedException",
            format!("{field}: account {p} is outside the owner's organisation and the share does not allow external principals"),
        ));
    }
    let invitation = rec::Invitation {
        arn: format!(
            "arn:aws:ram:{}:{}:resource-share-invitation/{}",
            c.settings.naming.region,
            c.caller,
            super::super::uuid()
        ),
        status: "PENDING".into(),
        timestamp: now,
    };
    Ok(member("ASSOCIATING", true, Some(invitation)))
}

/// Adds the input's resources and principals to `share`.
fn add_members(c: &Ctx<'_>, share: &mut rec::Share) -> Result<(), ApiError> {
    if c.input.get("sources").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::ram(
            "InvalidParameterException",
            "sources: latticed shares with accounts and organisations, not service principals",
        ));
    }
    let now = epoch(&c.now);
    let arns: Vec<String> = c.opt("resourceArns")?.unwrap_or_default();
    for arn in checked_resources(c, &arns)? {
        share
            .resources
            .entry(arn.to_owned())
            .or_insert(rec::ShareMember {
                status: "ASSOCIATED".into(),
                creation_time: now,
                last_updated_time: now,
                external: false,
                invitation: None,
            });
    }
    let principals: Vec<String> = c.opt("principals")?.unwrap_or_default();
    for (i, p) in principals.iter().enumerate() {
        if !share.principals.contains_key(p) {
            let m = principal(c, share, &format!("principals[{i}]"), p)?;
            share.principals.insert(p.clone(), m);
        }
    }
    share.last_updated_time = now;
    Ok(())
}

/// The permissions the input names (`permissionArns`), one per resource
/// type.
fn named_permissions(c: &Ctx<'_>) -> Result<BTreeMap<String, rec::PermissionRef>, ApiError> {
    let mut out = BTreeMap::new();
    let arns: Vec<String> = c.opt("permissionArns")?.unwrap_or_default();
    for (i, arn) in arns.iter().enumerate() {
        let field = format!("permissionArns[{i}]");
        let (t, version) = super::permissions::usable(c, &field, arn, None)?;
        if out
            .insert(
                t.name.to_owned(),
                rec::PermissionRef {
                    arn: arn.clone(),
                    version,
                },
            )
            .is_some()
        {
            return Err(ApiError::ram(
                "InvalidParameterException",
                format!(
                    "{field}: a share has one permission per resource type; {} is named twice",
                    t.name
                ),
            ));
        }
    }
    Ok(out)
}

/// The share as RAM answers it.
fn share_view(s: &rec::Share) -> Value {
    let mut v = rec::json(s);
    if s.tags.is_empty() {
        if let Some(o) = v.as_object_mut() {
            o.remove("tags");
        }
    }
    v
}

/// Writes `share` (and drops what it no longer backs); answers `result`.
pub(super) fn replace_share(
    c: &Ctx<'_>,
    share: rec::Share,
    result: Value,
) -> Result<Outcome, ApiError> {
    let key = share_key(&share.resource_share_arn);
    let mut changes = orphaned(c, &key, Some(&share));
    changes.push(Change::Put(key, Record::Share(share)));
    write(changes, with_token(c, result))
}

/// `result` with the input's client token, which RAM answers with.
pub(super) fn with_token(c: &Ctx<'_>, mut result: Value) -> Value {
    if let Some(t) = c.input.get("clientToken").filter(|t| t.is_string()) {
        result["clientToken"] = t.clone();
    }
    result
}

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    if c.input
        .get("resourceShareConfiguration")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::ram(
            "InvalidParameterException",
            "resourceShareConfiguration: latticed has no organisation membership to retain sharing across",
        ));
    }
    let owned = c
        .state
        .shares()
        .filter(|s| s.owning_account_id == c.caller)
        .count();
    if owned >= MAX_SHARES {
        return Err(ApiError::ram(
            "ResourceShareLimitExceededException",
            format!(
                "account {} already owns {MAX_SHARES} resource shares",
                c.caller
            ),
        ));
    }
    let now = epoch(&c.now);
    let mut share = rec::Share {
        resource_share_arn: format!(
            "arn:aws:ram:{}:{}:resource-share/{}",
            c.settings.naming.region,
            c.caller,
            super::super::uuid()
        ),
        name: c.get("name").to_owned(),
        owning_account_id: c.caller.to_owned(),
        allow_external_principals: c.opt("allowExternalPrincipals")?.unwrap_or(true),
        status: "ACTIVE".into(),
        feature_set: "STANDARD".into(),
        creation_time: now,
        last_updated_time: now,
        tags: ram_tags(c)?,
        seq: c.state.next_seq,
        resources: BTreeMap::new(),
        principals: BTreeMap::new(),
        permissions: named_permissions(c)?,
    };
    add_members(c, &mut share)?;
    let result = json!({"resourceShare": share_view(&share)});
    replace_share(c, share, result)
}

/// The input's RAM tags, with only the user's keys.
pub(super) fn ram_tags(c: &Ctx<'_>) -> Result<Vec<rec::RamTag>, ApiError> {
    let tags: Vec<rec::RamTag> = c.opt("tags")?.unwrap_or_default();
    user_tag_keys("tags", tags.iter().map(|t| t.key.as_str()))?;
    Ok(tags)
}

/// Resource shares an account may own at once (AWS's default quota).
const MAX_SHARES: usize = 5000;

fn update(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let mut share = owned_share(c)?.clone();
    if let Some(name) = c.opt::<String>("name")? {
        share.name = name;
    }
    if let Some(allow) = c.opt::<bool>("allowExternalPrincipals")? {
        if !allow {
            if let Some(p) = share.principals.iter().find(|(_, m)| m.external) {
                return Err(ApiError::ram(
                    "InvalidStateTransitionException",
                    format!("allowExternalPrincipals: the share still has external principal {}; disassociate it first", p.0),
                ));
            }
        }
        share.allow_external_principals = allow;
    }
    share.last_updated_time = epoch(&c.now);
    let result = json!({"resourceShare": share_view(&share)});
    replace_share(c, share, result)
}

fn delete(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let share = owned_share(c)?;
    let key = share_key(&share.resource_share_arn);
    let mut changes = orphaned(c, &key, None);
    changes.push(Change::Delete(key));
    write(changes, with_token(c, json!({"returnValue": true})))
}

fn associate(c: &Ctx<'_>, add: bool) -> Result<Outcome, ApiError> {
    let mut share = owned_share(c)?.clone();
    let before = share.clone();
    if add {
        add_members(c, &mut share)?;
    } else {
        let arns: Vec<String> = c.opt("resourceArns")?.unwrap_or_default();
        let principals: Vec<String> = c.opt("principals")?.unwrap_or_default();
        for (field, list, members) in [
            ("resourceArns", &arns, &mut share.resources),
            ("principals", &principals, &mut share.principals),
        ] {
            for (i, x) in list.iter().enumerate() {
                if members.remove(x).is_none() {
                    return Err(ApiError::ram(
                        "UnknownResourceException",
                        format!("{field}[{i}]: {x} is not associated with the share"),
                    ));
                }
            }
        }
        share.last_updated_time = epoch(&c.now);
    }
    // The associations the call changed, in their new state.
    let status = if add { None } else { Some("DISASSOCIATED") };
    let mut out = Vec::new();
    for (kind, new, old) in [
        ("RESOURCE", &share.resources, &before.resources),
        ("PRINCIPAL", &share.principals, &before.principals),
    ] {
        let changed = new
            .iter()
            .filter(|(k, _)| !old.contains_key(*k))
            .chain(old.iter().filter(|(k, _)| !new.contains_key(*k)));
        for (entity, m) in changed {
            out.push(association_view(&share, kind, entity, m, status));
        }
    }
    replace_share(c, share, json!({"resourceShareAssociations": out}))
}

/// One association of a share as RAM answers it.
fn association_view(
    s: &rec::Share,
    kind: &str,
    entity: &str,
    m: &rec::ShareMember,
    status: Option<&str>,
) -> Value {
    json!({
        "resourceShareArn": s.resource_share_arn,
        "resourceShareName": s.name,
        "associatedEntity": entity,
        "associationType": kind,
        "status": status.unwrap_or(&m.status),
        "creationTime": m.creation_time,
        "lastUpdatedTime": m.last_updated_time,
        "external": m.external,
    })
}

/// Whether `s` is shared with the caller (its principal association is
/// in place).
pub(super) fn shared_with(c: &Ctx<'_>, s: &rec::Share) -> bool {
    reaches(s, c.caller, c.settings.org(c.caller))
}

/// Whether share `s` reaches account `who` (of organisation `org`): `who`
/// does not own it and is, or is in, one of its associated principals.
fn reaches(s: &rec::Share, who: &str, org: Option<&str>) -> bool {
    s.owning_account_id != who
        && s.principals
            .iter()
            .any(|(p, m)| m.status == "ASSOCIATED" && names(p, who, org))
}

/// The shares `resourceOwner` selects: the caller's (`SELF`) or those
/// shared with it (`OTHER-ACCOUNTS`).
fn by_owner<'a>(c: &'a Ctx<'a>) -> impl Iterator<Item = &'a rec::Share> + 'a {
    let mine = c.get("resourceOwner") == "SELF";
    c.state.shares().filter(move |s| {
        if mine {
            s.owning_account_id == c.caller
        } else {
            shared_with(c, s)
        }
    })
}

/// Whether `s` passes the input's `resourceShareArns` filter.
fn listed(c: &Ctx<'_>, s: &rec::Share) -> bool {
    match c.input["resourceShareArns"].as_array() {
        Some(arns) => arns.iter().any(|a| a == &s.resource_share_arn),
        None => true,
    }
}

fn get_shares(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let status = c.input["resourceShareStatus"].as_str();
    let name = c.input["name"].as_str();
    let permission = c.input["permissionArn"].as_str();
    let tag_filters: Vec<Value> = c.opt("tagFilters")?.unwrap_or_default();
    let items: Vec<&rec::Share> = by_owner(c)
        .filter(|s| listed(c, s))
        .filter(|s| status.is_none_or(|x| s.status == x))
        .filter(|s| name.is_none_or(|x| s.name == x))
        .filter(|s| {
            permission.is_none_or(|p| {
                RESOURCE_TYPES
                    .iter()
                    .any(|t| super::permissions::used(s, t).0 == p)
            })
        })
        .filter(|s| {
            tag_filters.iter().all(|f| {
                let key = f["tagKey"].as_str();
                let values = f["tagValues"].as_array();
                s.tags.iter().any(|t| {
                    key.is_none_or(|k| t.key == k)
                        && values.is_none_or(|vs| vs.iter().any(|v| v == &t.value))
                })
            })
        })
        .collect();
    c.ram_page("resourceShares", &items, |s| share_view(s))
}

fn get_associations(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let principals = c.get("associationType") == "PRINCIPAL";
    let resource = c.input["resourceArn"].as_str();
    let principal = c.input["principal"].as_str();
    if principals && resource.is_some() || !principals && principal.is_some() {
        return Err(ApiError::ram(
            "InvalidParameterException",
            "resourceArn filters RESOURCE associations and principal PRINCIPAL ones",
        ));
    }
    let status = c.input["associationStatus"].as_str();
    let mut items = Vec::new();
    for s in c.state.shares().filter(|s| listed(c, s)) {
        let own = s.owning_account_id == c.caller;
        if !own && !shared_with(c, s) {
            continue;
        }
        let (kind, members) = if principals {
            ("PRINCIPAL", &s.principals)
        } else {
            ("RESOURCE", &s.resources)
        };
        let org = c.settings.org(c.caller);
        for (entity, m) in members {
            // A recipient sees the resources and its own association only.
            if !own && principals && !names(entity, c.caller, org) {
                continue;
            }
            if resource.or(principal).is_some_and(|x| x != entity)
                || status.is_some_and(|x| x != m.status)
            {
                continue;
            }
            items.push(association_view(s, kind, entity, m, None));
        }
    }
    c.ram_page("resourceShareAssociations", &items, Value::clone)
}

/// Whether `arn` passes the input's `resourceType` filter.
fn of_type(c: &Ctx<'_>, arn: &str) -> Result<bool, ApiError> {
    match c.input["resourceType"].as_str() {
        None => Ok(true),
        Some(want) => {
            let known = RESOURCE_TYPES
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(want));
            if !known {
                return Err(ApiError::ram(
                    "InvalidResourceTypeException",
                    format!("resourceType: {want:?} is not one of {}", type_names()),
                ));
            }
            Ok(resource_type(arn).is_some_and(|t| t.name.eq_ignore_ascii_case(want)))
        }
    }
}

/// The resource types latticed shares, for errors.
pub(super) fn type_names() -> String {
    RESOURCE_TYPES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_resources(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let principal = c.input["principal"].as_str();
    let arns = c.input["resourceArns"].as_array();
    let mut items = Vec::new();
    for s in by_owner(c).filter(|s| listed(c, s)) {
        if principal.is_some_and(|p| !s.principals.contains_key(p)) {
            continue;
        }
        for (arn, m) in &s.resources {
            if !of_type(c, arn)? || arns.is_some_and(|a| !a.iter().any(|x| x == arn)) {
                continue;
            }
            items.push(json!({
                "arn": arn,
                "type": resource_type(arn).map_or("", |t: &ResourceType| t.name),
                "resourceShareArn": s.resource_share_arn,
                "status": "AVAILABLE",
                "creationTime": m.creation_time,
                "lastUpdatedTime": m.last_updated_time,
                "resourceRegionScope": "REGIONAL",
            }));
        }
    }
    c.ram_page("resources", &items, Value::clone)
}

fn list_principals(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let resource = c.input["resourceArn"].as_str();
    let wanted = c.input["principals"].as_array();
    let org = c.settings.org(c.caller);
    let mine = c.get("resourceOwner") == "SELF";
    let mut items = Vec::new();
    for s in by_owner(c).filter(|s| listed(c, s)) {
        if resource.is_some_and(|r| !s.resources.contains_key(r)) {
            continue;
        }
        let mut any = false;
        for arn in s.resources.keys() {
            any |= of_type(c, arn)?;
        }
        if !any && c.input["resourceType"].is_string() {
            continue;
        }
        for (p, m) in &s.principals {
            if (!mine && !names(p, c.caller, org))
                || wanted.is_some_and(|w| !w.iter().any(|x| x == p))
            {
                continue;
            }
            items.push(json!({
                "id": p,
                "resourceShareArn": s.resource_share_arn,
                "creationTime": m.creation_time,
                "lastUpdatedTime": m.last_updated_time,
                "external": m.external,
            }));
        }
    }
    c.ram_page("principals", &items, Value::clone)
}

/// The invitations to the caller: (share, the invitation).
fn invitations<'a>(c: &Ctx<'a>) -> Vec<(&'a rec::Share, &'a rec::Invitation)> {
    c.state
        .shares()
        .filter_map(|s| {
            let m = s.principals.get(c.caller)?;
            Some((s, m.invitation.as_ref()?))
        })
        .collect()
}

/// How long an invitation stays open, as in RAM.
const INVITATION_TTL: f64 = 7.0 * 86_400.0;

/// An invitation's status now: a pending one past [`INVITATION_TTL`] has
/// expired.
fn status_of<'a>(c: &Ctx<'_>, i: &'a rec::Invitation) -> &'a str {
    if i.status == "PENDING" && epoch(&c.now) - i.timestamp > INVITATION_TTL {
        "EXPIRED"
    } else {
        &i.status
    }
}

fn invitation_view(c: &Ctx<'_>, s: &rec::Share, i: &rec::Invitation) -> Value {
    json!({
        "resourceShareInvitationArn": i.arn,
        "resourceShareName": s.name,
        "resourceShareArn": s.resource_share_arn,
        "senderAccountId": s.owning_account_id,
        "receiverAccountId": c.caller,
        "invitationTimestamp": i.timestamp,
        "status": status_of(c, i),
    })
}

fn get_invitations(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let arns = c.input["resourceShareInvitationArns"].as_array();
    let items: Vec<Value> = invitations(c)
        .into_iter()
        .filter(|(s, i)| listed(c, s) && arns.is_none_or(|a| a.iter().any(|x| x == &i.arn)))
        .map(|(s, i)| invitation_view(c, s, i))
        .collect();
    c.ram_page("resourceShareInvitations", &items, Value::clone)
}

/// The caller's invitation named by `resourceShareInvitationArn`.
fn invitation<'a>(c: &Ctx<'a>) -> Result<(&'a rec::Share, &'a rec::Invitation), ApiError> {
    let arn = c.get("resourceShareInvitationArn");
    check_arn("resourceShareInvitationArn", arn)?;
    invitations(c)
        .into_iter()
        .find(|(_, i)| i.arn == arn)
        .ok_or_else(|| {
            ApiError::ram(
                "ResourceShareInvitationArnNotFoundException",
                format!(
                    "resourceShareInvitationArn: no invitation {arn} to account {}",
                    c.caller
                ),
            )
        })
}

fn answer(c: &Ctx<'_>, accept: bool) -> Result<Outcome, ApiError> {
    let (share, inv) = invitation(c)?;
    match status_of(c, inv) {
        "ACCEPTED" => {
            return Err(ApiError::ram(
                "ResourceShareInvitationAlreadyAcceptedException",
                format!("invitation {} was already accepted", inv.arn),
            ))
        }
        "REJECTED" => {
            return Err(ApiError::ram(
                "ResourceShareInvitationAlreadyRejectedException",
                format!("invitation {} was already rejected", inv.arn),
            ))
        }
        "EXPIRED" => {
            return Err(ApiError::ram(
                "ResourceShareInvitationExpiredException",
                format!(
                    "invitation {} expired 7 days after it was sent; the owner may share again",
                    inv.arn
                ),
            ))
        }
        _ => {}
    }
    let now = epoch(&c.now);
    let mut share = share.clone();
    let m = share
        .principals
        .get_mut(c.caller)
        .ok_or_else(|| ApiError::internal("the invitation's principal vanished"))?;
    m.status = if accept {
        "ASSOCIATED"
    } else {
        "DISASSOCIATED"
    }
    .into();
    m.last_updated_time = now;
    let mut inv = inv.clone();
    inv.status = if accept { "ACCEPTED" } else { "REJECTED" }.into();
    m.invitation = Some(inv.clone());
    let view = invitation_view(c, &share, &inv);
    replace_share(c, share, json!({"resourceShareInvitation": view}))
}

fn pending_resources(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let (share, inv) = invitation(c)?;
    let status = status_of(c, inv);
    if status != "PENDING" {
        return Err(ApiError::ram(
            "OperationNotPermittedException",
            format!("invitation {} is {status}, not pending", inv.arn),
        ));
    }
    let items: Vec<Value> = share
        .resources
        .iter()
        .map(|(arn, m)| {
            json!({"arn": arn, "type": resource_type(arn).map_or("", |t| t.name),
                "resourceShareArn": share.resource_share_arn, "status": "AVAILABLE",
                "creationTime": m.creation_time, "lastUpdatedTime": m.last_updated_time,
                "resourceRegionScope": "REGIONAL"})
        })
        .collect();
    c.ram_page("resources", &items, Value::clone)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{Api, OTHER};

    const OWNER: &str = "111122223333";

    /// The default account's network `net-a` with its service `shop`;
    /// returns their ARNs.
    fn network_with_service(api: &mut Api) -> (String, String) {
        let [sn, svc, ..] = api.service_in_network();
        let arn = |api: &mut Api, op: &str, k: &str, id: &str| {
            api.ok(op, json!({ k: id }))["arn"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        (
            arn(api, "GetServiceNetwork", "serviceNetworkIdentifier", &sn),
            arn(api, "GetService", "serviceIdentifier", &svc),
        )
    }

    fn share(api: &mut Api, resources: &[&str], extra: Value) -> String {
        let mut input = json!({"name": "to-b", "resourceArns": resources, "principals": [OTHER]});
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        let out = api.ram_ok("CreateResourceShare", input);
        out["resourceShare"]["resourceShareArn"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn accept_invitation(api: &mut Api) {
        api.as_account(OTHER);
        let inv = api.ram_ok("GetResourceShareInvitations", json!({}));
        let arn = inv["resourceShareInvitations"][0]["resourceShareInvitationArn"].clone();
        assert_eq!(
            inv["resourceShareInvitations"][0]["status"], "PENDING",
            "{inv}"
        );
        let out = api.ram_ok(
            "AcceptResourceShareInvitation",
            json!({"resourceShareInvitationArn": arn}),
        );
        assert_eq!(
            out["resourceShareInvitation"]["status"], "ACCEPTED",
            "{out}"
        );
        let e = api.ram_err(
            "AcceptResourceShareInvitation",
            json!({"resourceShareInvitationArn": arn}),
        );
        assert_eq!(
            e.code, "ResourceShareInvitationAlreadyAcceptedException",
            "{e}"
        );
    }

    fn names(list: &Value) -> Vec<&str> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect()
    }

    /// An account outside the owner's organisation is invited; until it
    /// accepts, the network is hidden from it. Then it sees the network,
    /// associates its own VPC and service with it, and the owner sees
    /// those associations too.
    #[test]
    fn a_shared_network_is_the_recipients_to_join_once_it_accepts() {
        let mut api = Api::new();
        let (sn, _) = network_with_service(&mut api);
        let share_arn = share(&mut api, &[&sn], json!({}));
        let assoc = api.ram_ok(
            "GetResourceShareAssociations",
            json!({"associationType": "PRINCIPAL"}),
        );
        assert_eq!(
            assoc["resourceShareAssociations"][0]["status"], "ASSOCIATING",
            "{assoc}"
        );
        api.as_account(OTHER);
        let vpc = json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-bb"});
        let e = api.err("CreateServiceNetworkVpcAssociation", vpc.clone());
        assert_eq!(e.code, "AccessDeniedException", "{e}");
        assert!(names(&api.ok("ListServiceNetworks", json!({}))).is_empty());
        accept_invitation(&mut api);
        assert_eq!(names(&api.ok("ListServiceNetworks", json!({}))), ["net-a"]);
        let shared = api.ram_ok(
            "GetResourceShares",
            json!({"resourceOwner": "OTHER-ACCOUNTS"}),
        );
        assert_eq!(
            shared["resourceShares"][0]["resourceShareArn"],
            share_arn.as_str(),
            "{shared}"
        );
        let listed = api.ram_ok("ListResources", json!({"resourceOwner": "OTHER-ACCOUNTS"}));
        assert_eq!(listed["resources"][0]["arn"], sn.as_str(), "{listed}");
        assert_eq!(listed["resources"][0]["type"], "vpc-lattice:ServiceNetwork");
        let a = api.ok("CreateServiceNetworkVpcAssociation", vpc);
        assert!(
            a["arn"].as_str().unwrap().contains(&format!(":{OTHER}:")),
            "{a}"
        );
        let own = api.ok("CreateService", json!({"name": "b-svc"}));
        api.ok(
            "CreateServiceNetworkServiceAssociation",
            json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": own["id"]}),
        );
        api.as_account(OWNER);
        let seen = api.ok(
            "ListServiceNetworkVpcAssociations",
            json!({"serviceNetworkIdentifier": sn}),
        );
        assert_eq!(seen["items"][0]["vpcId"], "vpc-bb", "{seen}");
        let got = api.ok("GetServiceNetwork", json!({"serviceNetworkIdentifier": sn}));
        assert_eq!(got["numberOfAssociatedVPCs"], 1, "{got}");
        assert_eq!(got["numberOfAssociatedServices"], 2, "{got}");
        // The recipient sees the network but may not change it.
        api.as_account(OTHER);
        for (op, input) in [
            (
                "UpdateServiceNetwork",
                json!({"serviceNetworkIdentifier": sn, "authType": "NONE"}),
            ),
            (
                "DeleteServiceNetwork",
                json!({"serviceNetworkIdentifier": sn}),
            ),
            (
                "PutAuthPolicy",
                json!({"resourceIdentifier": sn, "policy": "{}"}),
            ),
        ] {
            let e = api.err(op, input);
            assert_eq!(e.code, "AccessDeniedException", "{op}: {e}");
        }
    }

    /// A customer-managed permission that leaves out the service
    /// association lets the recipient associate VPCs only; a new version
    /// changes nothing for a share until the share is moved to it.
    #[test]
    fn a_customer_permission_allows_only_what_it_names() {
        let mut api = Api::new();
        api.settings.orgs = [
            (OWNER.to_owned(), "o-a1b2c3d4e5".to_owned()),
            (OTHER.to_owned(), "o-a1b2c3d4e5".to_owned()),
        ]
        .into();
        let (sn, _) = network_with_service(&mut api);
        let tpl = r#"{"Effect": "Allow", "Action": ["vpc-lattice:CreateServiceNetworkVpcAssociation", "vpc-lattice:GetServiceNetwork"]}"#;
        let p = api.ram_ok(
            "CreatePermission",
            json!({"name": "vpc-only", "resourceType": "vpc-lattice:ServiceNetwork", "policyTemplate": tpl}),
        );
        let perm = p["permission"]["arn"].as_str().unwrap().to_owned();
        assert_eq!(p["permission"]["permissionType"], "CUSTOMER_MANAGED", "{p}");
        let share_arn = share(&mut api, &[&sn], json!({"permissionArns": [perm]}));
        // One organisation: associated at once, no invitation.
        api.as_account(OTHER);
        let inv = api.ram_ok("GetResourceShareInvitations", json!({}));
        assert_eq!(inv["resourceShareInvitations"], json!([]), "{inv}");
        api.ok(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-bb"}),
        );
        let own = api.ok("CreateService", json!({"name": "b-svc"}))["id"].clone();
        let svc_assoc = json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": own});
        let e = api.err("CreateServiceNetworkServiceAssociation", svc_assoc.clone());
        assert_eq!(e.code, "AccessDeniedException", "{e}");
        assert!(
            e.message.contains("CreateServiceNetworkServiceAssociation"),
            "{e}"
        );
        api.as_account(OWNER);
        let all = r#"{"Effect": "Allow", "Action": "vpc-lattice:*"}"#;
        let v2 = api.ram_ok(
            "CreatePermissionVersion",
            json!({"permissionArn": perm, "policyTemplate": all}),
        );
        assert_eq!(v2["permission"]["version"], "2", "{v2}");
        api.as_account(OTHER);
        api.err("CreateServiceNetworkServiceAssociation", svc_assoc.clone());
        api.as_account(OWNER);
        api.ram_ok(
            "AssociateResourceSharePermission",
            json!({"resourceShareArn": share_arn, "permissionArn": perm, "replace": true}),
        );
        let used = api.ram_ok(
            "ListResourceSharePermissions",
            json!({"resourceShareArn": share_arn}),
        );
        assert_eq!(used["permissions"][0]["version"], "2", "{used}");
        api.as_account(OTHER);
        api.ok("CreateServiceNetworkServiceAssociation", svc_assoc);
        // A permission in use stays.
        api.as_account(OWNER);
        let e = api.ram_err("DeletePermission", json!({"permissionArn": perm}));
        assert_eq!(e.code, "OperationNotPermittedException", "{e}");
    }

    /// A shared service goes into the recipient's own network and shows in
    /// its service directory with the owner's ARN; removing the recipient
    /// from the share removes every association it made through it.
    #[test]
    fn ending_a_share_removes_what_the_recipient_joined_through_it() {
        let mut api = Api::new();
        let (sn, svc) = network_with_service(&mut api);
        let share_arn = share(&mut api, &[&sn, &svc], json!({}));
        accept_invitation(&mut api);
        let dir = api.ok("ListServices", json!({}));
        assert_eq!(names(&dir), ["shop"]);
        assert!(
            dir["items"][0]["arn"]
                .as_str()
                .unwrap()
                .contains(&format!(":{OWNER}:")),
            "{dir}"
        );
        let own_sn = api.ok("CreateServiceNetwork", json!({"name": "net-b"}))["id"].clone();
        api.ok(
            "CreateServiceNetworkServiceAssociation",
            json!({"serviceNetworkIdentifier": own_sn, "serviceIdentifier": svc}),
        );
        api.ok(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-bb"}),
        );
        api.as_account(OWNER);
        api.ram_ok(
            "DisassociateResourceShare",
            json!({"resourceShareArn": share_arn, "principals": [OTHER]}),
        );
        api.as_account(OTHER);
        assert!(names(&api.ok("ListServices", json!({}))).is_empty());
        assert!(names(&api.ok("ListServiceNetworks", json!({}))) == ["net-b"]);
        let left = api.ok(
            "ListServiceNetworkServiceAssociations",
            json!({"serviceNetworkIdentifier": own_sn}),
        );
        assert_eq!(left["items"], json!([]), "{left}");
        let left = api.ok(
            "ListServiceNetworkVpcAssociations",
            json!({"vpcIdentifier": "vpc-bb"}),
        );
        assert_eq!(left["items"], json!([]), "{left}");
        let e = api.err("GetService", json!({"serviceIdentifier": svc}));
        assert_eq!(e.code, "AccessDeniedException", "{e}");
        // The owner's own association is untouched.
        api.as_account(OWNER);
        let mine = api.ok(
            "ListServiceNetworkServiceAssociations",
            json!({"serviceIdentifier": svc}),
        );
        assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    }

    /// Another account cannot see, change, delete or reuse a share or a
    /// permission, nor share what it does not own; every input it gets
    /// wrong is named.
    #[test]
    fn shares_and_permissions_are_their_owners_alone() {
        let mut api = Api::new();
        let (sn, _) = network_with_service(&mut api);
        let tpl = r#"{"Effect": "Allow", "Action": "vpc-lattice:GetServiceNetwork"}"#;
        let perm = api.ram_ok(
            "CreatePermission",
            json!({"name": "get-only", "resourceType": "vpc-lattice:ServiceNetwork", "policyTemplate": tpl}),
        )["permission"]["arn"]
            .clone();
        let share_arn = share(&mut api, &[&sn], json!({}));
        api.as_account(OTHER);
        for (op, input) in [
            (
                "UpdateResourceShare",
                json!({"resourceShareArn": share_arn, "name": "mine"}),
            ),
            (
                "DeleteResourceShare",
                json!({"resourceShareArn": share_arn}),
            ),
            (
                "AssociateResourceShare",
                json!({"resourceShareArn": share_arn, "principals": ["333344445555"]}),
            ),
            (
                "DisassociateResourceShare",
                json!({"resourceShareArn": share_arn, "principals": [OTHER]}),
            ),
            (
                "AssociateResourceSharePermission",
                json!({"resourceShareArn": share_arn, "permissionArn": perm}),
            ),
            (
                "CreatePermissionVersion",
                json!({"permissionArn": perm, "policyTemplate": tpl}),
            ),
            ("DeletePermission", json!({"permissionArn": perm})),
            (
                "TagResource",
                json!({"resourceShareArn": share_arn, "tags": [{"key": "k", "value": "v"}]}),
            ),
            (
                "UntagResource",
                json!({"resourceArn": perm, "tagKeys": ["k"]}),
            ),
            (
                "DisassociateResourceSharePermission",
                json!({"resourceShareArn": share_arn, "permissionArn": perm}),
            ),
            (
                "SetDefaultPermissionVersion",
                json!({"permissionArn": perm, "permissionVersion": 1}),
            ),
            (
                "DeletePermissionVersion",
                json!({"permissionArn": perm, "permissionVersion": 1}),
            ),
        ] {
            let e = api.ram_err(op, input);
            assert_eq!(e.code, "UnknownResourceException", "{op}: {e}");
        }
        let e = api.ram_err(
            "CreateResourceShare",
            json!({"name": "steal", "resourceArns": [sn], "principals": ["333344445555"]}),
        );
        assert_eq!(e.code, "OperationNotPermittedException", "{e}");
        let mine = api.ram_ok("GetResourceShares", json!({"resourceOwner": "SELF"}));
        assert_eq!(mine["resourceShares"], json!([]), "{mine}");
        api.as_account(OWNER);
        for (input, code, field) in [
            (
                json!({"name": "x", "principals": [OWNER]}),
                "InvalidParameterException",
                "principals[0]",
            ),
            (
                json!({"name": "x", "principals": ["12"]}),
                "InvalidParameterException",
                "principals[0]",
            ),
            (
                json!({"name": "x", "principals": ["arn:aws:organizations::111122223333:organization/o-zzzzzzzzzz"]}),
                "InvalidParameterException",
                "principals[0]",
            ),
            (
                json!({"name": "x", "principals": [OTHER], "allowExternalPrincipals": false}),
                "OperationNotPermittedException",
                "principals[0]",
            ),
            (
                json!({"name": "x", "resourceArns": ["sn-1"]}),
                "MalformedArnException",
                "resourceArns[0]",
            ),
            (
                json!({"name": "x", "resourceArns": ["arn:aws:vpc-lattice:us-east-1:111122223333:targetgroup/tg-00000000000000000"]}),
                "InvalidParameterException",
                "resourceArns[0]",
            ),
            (
                json!({"name": "x", "permissionArns": ["arn:aws:ram:us-east-1:111122223333:permission/none"]}),
                "UnknownResourceException",
                "permissionArns[0]",
            ),
        ] {
            let e = api.ram_err("CreateResourceShare", input.clone());
            assert_eq!(e.code, code, "{input}: {e}");
            assert!(e.message.contains(field), "{input}: {e}");
        }
        for (tpl, code, field) in [
            (
                r#"{"Effect": "Deny", "Action": "vpc-lattice:GetService"}"#,
                "InvalidPolicyException",
                "Effect",
            ),
            (
                r#"{"Effect": "Allow", "Action": "vpc-lattice:DeleteService"}"#,
                "InvalidPolicyException",
                "Action[0]",
            ),
            (
                r#"{"Effect": "Allow", "Action": "vpc-lattice:GetService", "Condition": {}}"#,
                "MalformedPolicyTemplateException",
                "Condition",
            ),
            (
                "not json",
                "MalformedPolicyTemplateException",
                "policyTemplate",
            ),
        ] {
            let e = api.ram_err(
                "CreatePermission",
                json!({"name": "p2", "resourceType": "vpc-lattice:Service", "policyTemplate": tpl}),
            );
            assert_eq!(e.code, code, "{tpl}: {e}");
            assert!(e.message.contains(field), "{tpl}: {e}");
        }
        let e = api.ram_err(
            "CreatePermission",
            json!({"name": "get-only", "resourceType": "vpc-lattice:ServiceNetwork", "policyTemplate": tpl}),
        );
        assert_eq!(e.code, "PermissionAlreadyExistsException", "{e}");
        let listed = api.ram_ok(
            "ListPermissions",
            json!({"resourceType": "vpc-lattice:ServiceNetwork"}),
        );
        let kinds: Vec<&str> = listed["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["permissionType"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["AWS_MANAGED", "CUSTOMER_MANAGED"], "{listed}");
    }

    /// RAM's times are the handlers' ISO 8601 times in seconds.
    #[test]
    fn ram_times_are_the_same_instants() {
        for secs in [0u64, 1_796_515_200, 1_796_515_200 + 86_399] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + 250);
            let iso = latticed_proxy::time::iso8601(t);
            assert_eq!(super::epoch(&iso), secs as f64 + 0.25, "{iso}");
        }
        assert_eq!(super::epoch("now"), 0.0);
    }

    /// A resource policy grants another account what it allows, as a share
    /// does; a Deny wins; a conditional Allow grants nothing; a policy
    /// latticed cannot read is refused, naming the place.
    #[test]
    fn a_resource_policy_grants_as_a_share_does() {
        let mut api = Api::new();
        let (sn, _) = network_with_service(&mut api);
        let policy = |statements: Value| json!({"resourceArn": sn, "policy": json!({"Version": "2012-10-17", "Statement": statements}).to_string()});
        let allow = json!({"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
            "Action": ["vpc-lattice:CreateServiceNetworkVpcAssociation", "vpc-lattice:GetServiceNetwork"], "Resource": "*"});
        api.ok("PutResourcePolicy", policy(json!([allow])));
        api.as_account(OTHER);
        assert_eq!(names(&api.ok("ListServiceNetworks", json!({}))), ["net-a"]);
        api.ok(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-bb"}),
        );
        let own = api.ok("CreateService", json!({"name": "b-svc"}))["id"].clone();
        let e = api.err(
            "CreateServiceNetworkServiceAssociation",
            json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": own}),
        );
        assert_eq!(e.code, "AccessDeniedException", "{e}");
        api.as_account(OWNER);
        let deny =
            json!({"Effect": "Deny", "Principal": {"AWS": OTHER}, "Action": "vpc-lattice:Get*"});
        api.ok("PutResourcePolicy", policy(json!([allow, deny])));
        api.as_account(OTHER);
        assert!(names(&api.ok("ListServiceNetworks", json!({}))).is_empty());
        api.as_account(OWNER);
        let conditional = json!({"Effect": "Allow", "Principal": "*", "Action": "vpc-lattice:*",
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}});
        api.ok("PutResourcePolicy", policy(json!([conditional])));
        api.as_account(OTHER);
        assert!(names(&api.ok("ListServiceNetworks", json!({}))).is_empty());
        api.as_account(OWNER);
        for (bad, at) in [
            (
                json!({"Effect": "Maybe", "Principal": "*", "Action": "*"}),
                "Statement[0].Effect",
            ),
            (
                json!({"Effect": "Allow", "Principal": "someone", "Action": "*"}),
                "Statement[0].Principal",
            ),
            (
                json!({"Effect": "Allow", "Principal": "*", "Action": [1]}),
                "Statement[0].Action",
            ),
        ] {
            let e = api.err("PutResourcePolicy", policy(json!([bad])));
            assert!(e.message.contains(at), "{e}");
        }
    }

    /// A shared resource that its owner deletes leaves the share.
    #[test]
    fn a_deleted_resource_leaves_its_shares() {
        let mut api = Api::new();
        let svc = api.ok("CreateService", json!({"name": "alone"}));
        let arn = svc["arn"].as_str().unwrap().to_owned();
        let share_arn = share(&mut api, &[&arn], json!({}));
        api.ok("DeleteService", json!({"serviceIdentifier": svc["id"]}));
        let listed = api.ram_ok(
            "ListResources",
            json!({"resourceOwner": "SELF", "resourceShareArns": [share_arn]}),
        );
        assert_eq!(listed["resources"], json!([]), "{listed}");
    }

    /// A rejected invitation gives nothing and cannot be accepted later.
    #[test]
    fn a_rejected_invitation_shares_nothing() {
        let mut api = Api::new();
        let (sn, _) = network_with_service(&mut api);
        let share_arn = share(&mut api, &[&sn], json!({}));
        api.as_account(OTHER);
        let inv = api.ram_ok("GetResourceShareInvitations", json!({}));
        let arn = inv["resourceShareInvitations"][0]["resourceShareInvitationArn"].clone();
        let out = api.ram_ok(
            "RejectResourceShareInvitation",
            json!({"resourceShareInvitationArn": arn}),
        );
        assert_eq!(
            out["resourceShareInvitation"]["status"], "REJECTED",
            "{out}"
        );
        let e = api.ram_err(
            "AcceptResourceShareInvitation",
            json!({"resourceShareInvitationArn": arn}),
        );
        assert_eq!(
            e.code, "ResourceShareInvitationAlreadyRejectedException",
            "{e}"
        );
        assert!(names(&api.ok("ListServiceNetworks", json!({}))).is_empty());
        let e = api.err(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-bb"}),
        );
        assert_eq!(e.code, "AccessDeniedException", "{e}");
        api.as_account(OWNER);
        let assoc = api.ram_ok(
            "GetResourceShareAssociations",
            json!({"associationType": "PRINCIPAL", "resourceShareArns": [share_arn]}),
        );
        assert_eq!(
            assoc["resourceShareAssociations"][0]["status"], "DISASSOCIATED",
            "{assoc}"
        );
        // Another invitation for a stranger: the wrong account cannot answer it.
        let e = api.ram_err(
            "AcceptResourceShareInvitation",
            json!({"resourceShareInvitationArn": arn}),
        );
        assert_eq!(e.code, "ResourceShareInvitationArnNotFoundException", "{e}");
    }

    /// An invitation left pending for seven days expires: it says so and
    /// can no longer be accepted.
    #[test]
    fn an_invitation_expires_after_seven_days() {
        let mut api = Api::new();
        let (sn, _) = network_with_service(&mut api);
        share(&mut api, &[&sn], json!({}));
        api.as_account(OTHER);
        api.now = "2026-12-12T23:59:00.000Z".into();
        let inv = api.ram_ok("GetResourceShareInvitations", json!({}));
        assert_eq!(
            inv["resourceShareInvitations"][0]["status"], "PENDING",
            "{inv}"
        );
        api.now = "2026-12-13T00:00:01.000Z".into();
        let inv = api.ram_ok("GetResourceShareInvitations", json!({}));
        let inv = &inv["resourceShareInvitations"][0];
        assert_eq!(inv["status"], "EXPIRED", "{inv}");
        let e = api.ram_err(
            "AcceptResourceShareInvitation",
            json!({"resourceShareInvitationArn": inv["resourceShareInvitationArn"]}),
        );
        assert_eq!(e.code, "ResourceShareInvitationExpiredException", "{e}");
        assert!(names(&api.ok("ListServiceNetworks", json!({}))).is_empty());
    }

    /// Deleting a share ends the recipient's access and answers with the
    /// client token; pages of RAM's lists follow their tokens.
    #[test]
    fn a_deleted_share_shares_nothing_and_lists_page() {
        let mut api = Api::new();
        let (sn, _) = network_with_service(&mut api);
        let arns: Vec<String> = (0..3).map(|_| share(&mut api, &[&sn], json!({}))).collect();
        let first = api.ram_ok(
            "GetResourceShares",
            json!({"resourceOwner": "SELF", "maxResults": 2}),
        );
        assert_eq!(
            first["resourceShares"].as_array().unwrap().len(),
            2,
            "{first}"
        );
        let rest = api.ram_ok(
            "GetResourceShares",
            json!({"resourceOwner": "SELF", "maxResults": 2, "nextToken": first["nextToken"]}),
        );
        assert_eq!(
            rest["resourceShares"].as_array().unwrap().len(),
            1,
            "{rest}"
        );
        assert!(rest.get("nextToken").is_none(), "{rest}");
        accept_invitation(&mut api);
        api.as_account(OWNER);
        for arn in &arns {
            let out = api.ram_ok(
                "DeleteResourceShare",
                json!({"resourceShareArn": arn, "clientToken": "t-1"}),
            );
            assert_eq!(out["returnValue"], true);
            assert_eq!(out["clientToken"], "t-1");
        }
        api.as_account(OTHER);
        assert!(names(&api.ok("ListServiceNetworks", json!({}))).is_empty());
    }

    /// Every Lattice operation that changes something, tried as another
    /// account against each of the owner's resources it can name, before
    /// and after the owner shares its network and service with it: each is
    /// refused and changes nothing. With the share, only the two
    /// associations the default permissions allow go through, and the
    /// recipient may delete what it made, not the owner's. Driven by the
    /// model, so an operation added later is tried too.
    #[test]
    fn no_change_reaches_another_accounts_resources_shared_or_not() {
        let mut api = Api::new();
        let [sn, svc, l, tg] = api.service_in_network();
        let arn_of = |api: &mut Api, op: &str, input: Value| {
            api.ok(op, input)["arn"].as_str().unwrap().to_owned()
        };
        let sn = arn_of(
            &mut api,
            "GetServiceNetwork",
            json!({"serviceNetworkIdentifier": sn}),
        );
        let svc = arn_of(&mut api, "GetService", json!({"serviceIdentifier": svc}));
        let l = arn_of(
            &mut api,
            "GetListener",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l}),
        );
        let tg = arn_of(
            &mut api,
            "GetTargetGroup",
            json!({"targetGroupIdentifier": tg}),
        );
        let rule = arn_of(
            &mut api,
            "CreateRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "name": "path-a", "priority": 1,
                "match": {"httpMatch": {"pathMatch": {"match": {"prefix": "/a"}}}},
                "action": {"fixedResponse": {"statusCode": 404}}}),
        );
        let als = arn_of(
            &mut api,
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": svc, "destinationArn": "arn:aws:logs:us-east-1:111122223333:log-group:x"}),
        );
        let snva = arn_of(
            &mut api,
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-aa"}),
        );
        let snsa = api.ok(
            "ListServiceNetworkServiceAssociations",
            json!({"serviceNetworkIdentifier": sn}),
        )["items"][0]["arn"]
            .as_str()
            .unwrap()
            .to_owned();
        let rgw = arn_of(
            &mut api,
            "CreateResourceGateway",
            json!({"name": "gw-a", "vpcIdentifier": "vpc-aa"}),
        );
        let rcfg = arn_of(
            &mut api,
            "CreateResourceConfiguration",
            json!({"name": "db-a", "type": "SINGLE", "resourceGatewayIdentifier": rgw, "portRanges": ["5432"],
                "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.20"}}}),
        );
        let snra = arn_of(
            &mut api,
            "CreateServiceNetworkResourceAssociation",
            json!({"serviceNetworkIdentifier": sn, "resourceConfigurationIdentifier": rcfg}),
        );
        let dv = arn_of(
            &mut api,
            "StartDomainVerification",
            json!({"domainName": "a.example.com"}),
        );
        let values = |resource: &str| {
            json!({
                "serviceNetworkIdentifier": sn, "serviceIdentifier": svc, "listenerIdentifier": l,
                "ruleIdentifier": rule, "targetGroupIdentifier": tg, "accessLogSubscriptionIdentifier": als,
                "serviceNetworkVpcAssociationIdentifier": snva, "serviceNetworkServiceAssociationIdentifier": snsa,
                "resourceIdentifier": resource, "resourceArn": resource, "vpcIdentifier": "vpc-bb",
                "name": "b-thing", "authType": "AWS_IAM", "policy": "{}", "protocol": "HTTP", "priority": 7,
                "defaultAction": {"fixedResponse": {"statusCode": 404}},
                "action": {"fixedResponse": {"statusCode": 404}},
                "match": {"httpMatch": {"pathMatch": {"match": {"prefix": "/b"}}}},
                "rules": [{"ruleIdentifier": rule, "priority": 9}], "targets": [{"id": "10.0.0.9"}],
                "tags": {"k": "v"}, "tagKeys": ["k"], "securityGroupIds": ["sg-0123456789abcdef0"],
                "destinationArn": "arn:aws:logs:us-east-1:222233334444:log-group:b",
                "healthCheck": {"enabled": false}, "type": "IP",
                "resourceGatewayIdentifier": rgw, "resourceConfigurationIdentifier": rcfg,
                "serviceNetworkResourceAssociationIdentifier": snra,
                "resourceEndpointAssociationIdentifier": "rea-0123456789abcdef0",
                "domainVerificationIdentifier": dv,
            })
        };
        let m = super::super::super::model::model();
        let mutations: Vec<(&str, Vec<&str>)> = m
            .operations
            .iter()
            .filter(|(n, _)| !n.starts_with("Get") && !n.starts_with("List"))
            .filter(|(n, _)| super::super::unsupported(n).is_none())
            .map(|(n, o)| {
                let shape = o.input.as_deref().unwrap_or_default();
                (n.as_str(), m.required(shape))
            })
            // Creating one's own resource names nothing of another's.
            .filter(|(_, req)| {
                req.iter()
                    .any(|r| r.ends_with("Identifier") || *r == "resourceArn")
            })
            .collect();
        assert!(mutations.len() >= 28, "{}", mutations.len());
        // `allowed`: the operations the share allows, with their input.
        let try_all = |api: &mut Api, allowed: &[(&str, Value)]| {
            let mut done = Vec::new();
            for (op, req) in &mutations {
                if let Some((_, input)) = allowed.iter().find(|(a, _)| a == op) {
                    done.push(
                        api.ok(op, input.clone())["arn"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    );
                    continue;
                }
                for resource in [&sn, &svc] {
                    let all = values(resource);
                    let input: serde_json::Map<String, Value> = req
                        .iter()
                        .map(|k| ((*k).to_owned(), all[*k].clone()))
                        .collect();
                    let input = Value::Object(input);
                    let e = api.err(op, input.clone());
                    assert!(
                        matches!(
                            e.code,
                            "AccessDeniedException" | "ResourceNotFoundException"
                        ),
                        "{op} {input}: {e}"
                    );
                }
            }
            done
        };
        api.as_account(OTHER);
        try_all(&mut api, &[]);
        api.as_account(OWNER);
        share(&mut api, &[&sn, &svc], json!({}));
        accept_invitation(&mut api);
        let own = api.ok("CreateService", json!({"name": "b-svc"}))["id"].clone();
        let associate = [
            (
                "CreateServiceNetworkServiceAssociation",
                json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": own}),
            ),
            (
                "CreateServiceNetworkVpcAssociation",
                json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-bb"}),
            ),
        ];
        let made = try_all(&mut api, &associate);
        assert_eq!(made.len(), 2, "{made:?}");
        // What it made is its to delete; what the owner made is not.
        let e = api.err(
            "DeleteServiceNetworkVpcAssociation",
            json!({"serviceNetworkVpcAssociationIdentifier": snva}),
        );
        assert_eq!(e.code, "AccessDeniedException", "{e}");
        for arn in made {
            let op = if arn.contains("vpcassociation") {
                (
                    "DeleteServiceNetworkVpcAssociation",
                    "serviceNetworkVpcAssociationIdentifier",
                )
            } else {
                (
                    "DeleteServiceNetworkServiceAssociation",
                    "serviceNetworkServiceAssociationIdentifier",
                )
            };
            api.ok(op.0, json!({ op.1: arn }));
        }
    }
}
