//! RAM's permissions: what a share lets its principals do with each type
//! of shared resource. Each resource type has an AWS-managed default that
//! allows every action Lattice shares for it; an account may write its own
//! (customer-managed, versioned) allowing fewer, and a share names the one
//! it uses per type. Also RAM's tags, on shares and permissions.

use serde::Deserialize;

use super::{
    sharing::{epoch, owned_share, replace_share, with_token},
    *,
};

/// A type of resource latticed shares.
#[derive(Debug)]
pub(super) struct ResourceType {
    /// RAM's name for it.
    pub(super) name: &'static str,
    /// What its ARNs hold before the id.
    arn_path: &'static str,
    /// The AWS-managed permission every share of it uses by default.
    managed: &'static str,
    /// The `vpc-lattice` actions a share of it may allow (all, by default).
    actions: &'static [&'static str],
}

/// Service networks and services, as in Lattice.
pub(super) const RESOURCE_TYPES: [ResourceType; 2] = [
    ResourceType {
        name: "vpc-lattice:ServiceNetwork",
        arn_path: ":servicenetwork/sn-",
        managed: "AWSRAMDefaultPermissionServiceNetwork",
        actions: &[
            "vpc-lattice:CreateServiceNetworkServiceAssociation",
            "vpc-lattice:CreateServiceNetworkVpcAssociation",
            "vpc-lattice:GetServiceNetwork",
        ],
    },
    ResourceType {
        name: "vpc-lattice:Service",
        arn_path: ":service/svc-",
        managed: "AWSRAMDefaultPermissionService",
        actions: &[
            "vpc-lattice:CreateServiceNetworkServiceAssociation",
            "vpc-lattice:GetService",
        ],
    },
];

/// The type of the resource at `arn`, if latticed shares it.
pub(super) fn resource_type(arn: &str) -> Option<&'static ResourceType> {
    if !arn.starts_with("arn:aws:vpc-lattice:") {
        return None;
    }
    RESOURCE_TYPES.iter().find(|t| arn.contains(t.arn_path))
}

/// The ARN of an AWS-managed permission.
fn managed_arn(t: &ResourceType) -> String {
    format!("arn:aws:ram::aws:permission/{}", t.managed)
}

/// The permission (ARN, version) share `s` uses for type `t`.
pub(super) fn used(s: &rec::Share, t: &ResourceType) -> (String, u32) {
    match s.permissions.get(t.name) {
        Some(p) => (p.arn.clone(), p.version),
        None => (managed_arn(t), 1),
    }
}

/// The store key of a customer-managed permission's ARN.
fn key_of(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix("arn:aws:ram:")?;
    let mut parts = rest.splitn(3, ':');
    let (_region, account, path) = (parts.next()?, parts.next()?, parts.next()?);
    let name = path.strip_prefix("permission/")?;
    Some(format!("{}{account}/{name}", rec::PERMISSION))
}

/// The customer-managed permission at `arn`.
fn stored<'a>(state: &'a State, arn: &str) -> Option<&'a rec::Permission> {
    match state.records.get(&key_of(arn)?) {
        Some(Record::Permission(p)) if p.arn == arn => Some(p),
        _ => None,
    }
}

/// The actions share `s` allows on resources of type `t`.
pub(super) fn actions_of(state: &State, s: &rec::Share, t: &ResourceType) -> Vec<String> {
    let (arn, version) = used(s, t);
    if arn == managed_arn(t) {
        return t.actions.iter().map(|a| (*a).to_owned()).collect();
    }
    stored(state, &arn)
        .and_then(|p| p.versions.get(&version))
        .map(|v| v.actions.clone())
        .unwrap_or_default()
}

/// Whether `actions` (as a permission writes them, with wildcards) allow
/// `action`. Action names are case-insensitive, as in IAM.
pub(super) fn allows(actions: &[String], action: &str) -> bool {
    actions
        .iter()
        .any(|p| latticed_proxy::authz::policy::glob(p, action, true))
}

/// A permission the caller may attach, named at `field`: an AWS-managed
/// one or its own. Returns its type and the version to use (`version`, or
/// the default).
pub(super) fn usable(
    c: &Ctx<'_>,
    field: &str,
    arn: &str,
    version: Option<u32>,
) -> Result<(&'static ResourceType, u32), ApiError> {
    if let Some(t) = RESOURCE_TYPES.iter().find(|t| managed_arn(t) == arn) {
        if version.is_some_and(|v| v != 1) {
            return Err(ApiError::ram(
                "InvalidParameterException",
                format!("permissionVersion: {arn} has version 1 only"),
            ));
        }
        return Ok((t, 1));
    }
    let p = own(c, field, arn)?;
    let version = version_in(p, version.unwrap_or(p.default_version))?;
    Ok((type_of(p)?, version))
}

/// The type of customer-managed permission `p`.
fn type_of(p: &rec::Permission) -> Result<&'static ResourceType, ApiError> {
    RESOURCE_TYPES
        .iter()
        .find(|t| t.name == p.resource_type)
        .ok_or_else(|| ApiError::internal(format!("permission {} has an unknown type", p.arn)))
}

/// `v`, if `p` has that version.
fn version_in(p: &rec::Permission, v: u32) -> Result<u32, ApiError> {
    if p.versions.contains_key(&v) {
        Ok(v)
    } else {
        Err(ApiError::ram(
            "InvalidParameterException",
            format!("permissionVersion: {} has no version {v}", p.arn),
        ))
    }
}

/// Writes `p`, answering `result`.
fn saved(p: rec::Permission, result: Value) -> Result<Outcome, ApiError> {
    let key = key_of(&p.arn).ok_or_else(|| ApiError::internal("a permission ARN without a key"))?;
    write(vec![Change::Put(key, Record::Permission(p))], result)
}

/// The caller's customer-managed permission named at `field`.
fn own<'a>(c: &Ctx<'a>, field: &str, arn: &str) -> Result<&'a rec::Permission, ApiError> {
    match stored(c.state, arn) {
        Some(p) if owner(&p.arn) == c.caller => Ok(p),
        _ => Err(ApiError::ram(
            "UnknownResourceException",
            format!("{field}: permission {arn} was not found"),
        )),
    }
}

/// A policy template: the statement of a resource policy without its
/// principal and resource, which the share supplies.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Template {
    #[serde(rename = "Effect")]
    effect: String,
    #[serde(rename = "Action")]
    action: OneOrMany,
    #[serde(rename = "Sid", default)]
    _sid: Option<String>,
    #[serde(rename = "Condition", default)]
    condition: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The actions of policy template `text` for resources of type `t`, each
/// checked to be one Lattice shares for that type.
fn template_actions(t: &ResourceType, text: &str) -> Result<Vec<String>, ApiError> {
    let bad = |m: String| ApiError::ram("MalformedPolicyTemplateException", m);
    let tpl: Template = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "policyTemplate: {e} (expected {{\"Effect\": \"Allow\", \"Action\": [...]}})"
        ))
    })?;
    if !tpl.effect.eq_ignore_ascii_case("Allow") {
        return Err(ApiError::ram(
            "InvalidPolicyException",
            format!(
                "policyTemplate.Effect: {:?}: a permission allows; it must be Allow",
                tpl.effect
            ),
        ));
    }
    if tpl.condition.is_some() {
        return Err(bad(
            "policyTemplate.Condition: latticed does not evaluate conditions in permissions".into(),
        ));
    }
    let actions = match tpl.action {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(v) => v,
    };
    if actions.is_empty() {
        return Err(bad("policyTemplate.Action: names no action".into()));
    }
    for (i, a) in actions.iter().enumerate() {
        if !t
            .actions
            .iter()
            .any(|x| latticed_proxy::authz::policy::glob(a, x, true))
        {
            return Err(ApiError::ram(
                "InvalidPolicyException",
                format!(
                    "policyTemplate.Action[{i}]: {a:?} allows none of the actions shared for {}: {}",
                    t.name,
                    t.actions.join(", ")
                ),
            ));
        }
    }
    Ok(actions)
}

/// Versions a customer-managed permission may have (AWS's limit).
const MAX_VERSIONS: usize = 5;
/// Customer-managed permissions an account may have.
const MAX_PERMISSIONS: usize = 1000;

/// This API's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("ram:ListPermissions", list),
    ("ram:GetPermission", get),
    ("ram:CreatePermission", create),
    ("ram:CreatePermissionVersion", create_version),
    ("ram:ListPermissionVersions", list_versions),
    ("ram:SetDefaultPermissionVersion", set_default),
    ("ram:DeletePermission", delete),
    ("ram:DeletePermissionVersion", delete_version),
    ("ram:ListResourceSharePermissions", share_permissions),
    ("ram:AssociateResourceSharePermission", associate),
    ("ram:DisassociateResourceSharePermission", disassociate),
    ("ram:TagResource", |c| tag(c, true)),
    ("ram:UntagResource", |c| tag(c, false)),
];

/// A permission's version as RAM summarises it (`detail` adds the policy).
fn view(t: &ResourceType, p: Option<&rec::Permission>, version: u32, detail: bool) -> Value {
    let (arn, name, default, created, updated, kind) = match p {
        Some(p) => (
            p.arn.clone(),
            p.name.clone(),
            p.default_version,
            p.versions
                .get(&version)
                .map_or(p.creation_time, |v| v.creation_time),
            p.last_updated_time,
            "CUSTOMER_MANAGED",
        ),
        // AWS-managed permissions date from Lattice's launch.
        None => (
            managed_arn(t),
            t.managed.to_owned(),
            1,
            1_669_852_800.0,
            1_669_852_800.0,
            "AWS_MANAGED",
        ),
    };
    let mut v = json!({
        "arn": arn, "version": version.to_string(), "defaultVersion": version == default,
        "name": name, "resourceType": t.name, "status": "ATTACHABLE",
        "creationTime": created, "lastUpdatedTime": updated,
        "isResourceTypeDefault": p.is_none(), "permissionType": kind, "featureSet": "STANDARD",
    });
    if let Some(tags) = p.map(|p| &p.tags).filter(|t| !t.is_empty()) {
        v["tags"] = rec::json(tags);
    }
    if detail {
        let actions = match p {
            Some(p) => p
                .versions
                .get(&version)
                .map(|v| v.actions.clone())
                .unwrap_or_default(),
            None => t.actions.iter().map(|a| (*a).to_owned()).collect(),
        };
        v["permission"] = json!({"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions}]})
        .to_string()
        .into();
    }
    v
}

/// The caller's customer-managed permissions.
fn mine<'a>(c: &'a Ctx<'a>) -> impl Iterator<Item = &'a rec::Permission> + 'a {
    let prefix = format!("{}{}/", rec::PERMISSION, c.caller);
    c.state
        .records
        .range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, v)| match v {
            Record::Permission(p) => Some(p),
            _ => None,
        })
}

/// The resource type named at input `field`.
fn type_at(c: &Ctx<'_>, field: &str) -> Result<Option<&'static ResourceType>, ApiError> {
    match c.input[field].as_str() {
        None => Ok(None),
        Some(want) => RESOURCE_TYPES
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(want))
            .map(Some)
            .ok_or_else(|| {
                ApiError::ram(
                    "InvalidParameterException",
                    format!(
                        "{field}: {want:?} is not one of {}",
                        super::sharing::type_names()
                    ),
                )
            }),
    }
}

fn list(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let want = type_at(c, "resourceType")?;
    let kind = c.input["permissionType"].as_str().unwrap_or("ALL");
    let mut items = Vec::new();
    if kind != "CUSTOMER_MANAGED" {
        for t in RESOURCE_TYPES
            .iter()
            .filter(|t| want.is_none_or(|w| w.name == t.name))
        {
            items.push(view(t, None, 1, false));
        }
    }
    if kind != "AWS_MANAGED" {
        for p in mine(c).filter(|p| want.is_none_or(|w| w.name == p.resource_type)) {
            items.push(view(type_of(p)?, Some(p), p.default_version, false));
        }
    }
    c.ram_page("permissions", &items, Value::clone)
}

/// The permission at `permissionArn` (an AWS-managed one, or the caller's):
/// its type and record.
fn named<'a>(
    c: &Ctx<'a>,
) -> Result<(&'static ResourceType, Option<&'a rec::Permission>), ApiError> {
    let arn = c.get("permissionArn");
    if let Some(t) = RESOURCE_TYPES.iter().find(|t| managed_arn(t) == arn) {
        return Ok((t, None));
    }
    let p = own(c, "permissionArn", arn)?;
    Ok((type_of(p)?, Some(p)))
}

/// The caller's customer-managed permission at `permissionArn`; AWS's own
/// cannot be changed.
fn changeable<'a>(c: &Ctx<'a>) -> Result<&'a rec::Permission, ApiError> {
    match named(c)? {
        (_, Some(p)) => Ok(p),
        (_, None) => Err(ApiError::ram(
            "OperationNotPermittedException",
            format!(
                "permissionArn: {} is AWS-managed and cannot be changed",
                c.get("permissionArn")
            ),
        )),
    }
}

fn get(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let (t, p) = named(c)?;
    let version = match (c.opt::<u32>("permissionVersion")?, p) {
        (Some(v), Some(p)) => version_in(p, v)?,
        (None, Some(p)) => p.default_version,
        (Some(1) | None, None) => 1,
        (Some(v), None) => {
            return Err(ApiError::ram(
                "InvalidParameterException",
                format!(
                    "permissionVersion: {} has version 1 only, not {v}",
                    managed_arn(t)
                ),
            ))
        }
    };
    Ok(Outcome::Read(
        json!({"permission": view(t, p, version, true)}),
    ))
}

fn put_permission(c: &Ctx<'_>, p: rec::Permission, version: u32) -> Result<Outcome, ApiError> {
    let out = view(type_of(&p)?, Some(&p), version, false);
    saved(p, with_token(c, json!({"permission": out})))
}

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let t = type_at(c, "resourceType")?
        .ok_or_else(|| ApiError::field("resourceType", "is required"))?;
    let name = c.get("name");
    if name.starts_with("AWSRAM") {
        return Err(ApiError::ram(
            "InvalidParameterException",
            format!("name: {name}: names starting AWSRAM are AWS's"),
        ));
    }
    let arn = format!(
        "arn:aws:ram:{}:{}:permission/{name}",
        c.settings.naming.region, c.caller
    );
    if stored(c.state, &arn).is_some() {
        return Err(ApiError::ram(
            "PermissionAlreadyExistsException",
            format!(
                "name: account {} already has a permission named {name}",
                c.caller
            ),
        ));
    }
    if mine(c).count() >= MAX_PERMISSIONS {
        return Err(ApiError::ram(
            "PermissionLimitExceededException",
            format!(
                "account {} already has {MAX_PERMISSIONS} permissions",
                c.caller
            ),
        ));
    }
    let policy_template = c.get("policyTemplate").to_owned();
    let actions = template_actions(t, &policy_template)?;
    let now = epoch(&c.now);
    let p = rec::Permission {
        arn,
        name: name.to_owned(),
        resource_type: t.name.to_owned(),
        default_version: 1,
        versions: [(
            1,
            rec::PermissionVersion {
                actions,
                policy_template,
                creation_time: now,
            },
        )]
        .into(),
        creation_time: now,
        last_updated_time: now,
        tags: super::sharing::ram_tags(c)?,
        seq: c.state.next_seq,
    };
    put_permission(c, p, 1)
}

fn create_version(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let mut p = changeable(c)?.clone();
    if p.versions.len() >= MAX_VERSIONS {
        return Err(ApiError::ram(
            "PermissionVersionsLimitExceededException",
            format!(
                "permissionArn: {} has {MAX_VERSIONS} versions; delete one first",
                p.arn
            ),
        ));
    }
    let t = type_of(&p)?;
    let policy_template = c.get("policyTemplate").to_owned();
    let actions = template_actions(t, &policy_template)?;
    let now = epoch(&c.now);
    let version = p.versions.keys().max().copied().unwrap_or(0) + 1;
    p.versions.insert(
        version,
        rec::PermissionVersion {
            actions,
            policy_template,
            creation_time: now,
        },
    );
    // As in RAM, a new version becomes the default for new shares; shares
    // that use the permission keep the version they have.
    p.default_version = version;
    p.last_updated_time = now;
    put_permission(c, p, version)
}

fn list_versions(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let (t, p) = named(c)?;
    let items: Vec<Value> = match p {
        Some(p) => p
            .versions
            .keys()
            .map(|v| view(t, Some(p), *v, false))
            .collect(),
        None => vec![view(t, None, 1, false)],
    };
    c.ram_page("permissions", &items, Value::clone)
}

fn set_default(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let mut p = changeable(c)?.clone();
    p.default_version = version_in(&p, c.req("permissionVersion")?)?;
    p.last_updated_time = epoch(&c.now);
    saved(p, with_token(c, json!({"returnValue": true})))
}

/// The shares that use version `version` (any, if `None`) of `arn`.
fn users<'a>(
    c: &Ctx<'a>,
    arn: &'a str,
    version: Option<u32>,
) -> impl Iterator<Item = &'a rec::Share> + 'a {
    c.state.shares().filter(move |s| {
        s.permissions
            .values()
            .any(|p| p.arn == arn && version.is_none_or(|v| v == p.version))
    })
}

fn delete(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let p = changeable(c)?;
    if let Some(s) = users(c, &p.arn, None).next() {
        return Err(ApiError::ram(
            "OperationNotPermittedException",
            format!(
                "permissionArn: {} is used by resource share {}",
                p.arn, s.resource_share_arn
            ),
        ));
    }
    let key = key_of(&p.arn).ok_or_else(|| ApiError::internal("a permission ARN without a key"))?;
    write(
        vec![Change::Delete(key)],
        with_token(
            c,
            json!({"returnValue": true, "permissionStatus": "DELETED"}),
        ),
    )
}

fn delete_version(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let mut p = changeable(c)?.clone();
    let v = version_in(&p, c.req("permissionVersion")?)?;
    if v == p.default_version {
        return Err(ApiError::ram(
            "InvalidParameterException",
            format!(
                "permissionVersion: {v} is the default version of {}; set another first",
                p.arn
            ),
        ));
    }
    if let Some(s) = users(c, &p.arn, Some(v)).next() {
        return Err(ApiError::ram(
            "OperationNotPermittedException",
            format!(
                "permissionVersion: version {v} is used by resource share {}",
                s.resource_share_arn
            ),
        ));
    }
    p.versions.remove(&v);
    p.last_updated_time = epoch(&c.now);
    saved(
        p,
        with_token(
            c,
            json!({"returnValue": true, "permissionStatus": "ATTACHABLE"}),
        ),
    )
}

/// The share at `resourceShareArn` that the caller owns or that is shared
/// with it.
fn share_of<'a>(c: &Ctx<'a>) -> Result<&'a rec::Share, ApiError> {
    let arn = c.get("resourceShareArn");
    c.state
        .shares()
        .find(|s| {
            s.resource_share_arn == arn
                && (s.owning_account_id == c.caller || super::sharing::shared_with(c, s))
        })
        .ok_or_else(|| {
            ApiError::ram(
                "UnknownResourceException",
                format!("resourceShareArn: resource share {arn} was not found"),
            )
        })
}

fn share_permissions(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let s = share_of(c)?;
    let mut items = Vec::new();
    for t in &RESOURCE_TYPES {
        let in_use = s.permissions.contains_key(t.name)
            || s.resources
                .keys()
                .any(|r| resource_type(r).is_some_and(|x| x.name == t.name));
        if !in_use {
            continue;
        }
        let (arn, version) = used(s, t);
        let p = stored(c.state, &arn);
        items.push(view(t, p, version, false));
    }
    c.ram_page("permissions", &items, Value::clone)
}

fn associate(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let share = owned_share(c)?;
    let arn = c.get("permissionArn");
    let (t, version) = usable(c, "permissionArn", arn, c.opt("permissionVersion")?)?;
    let replace = c.opt::<bool>("replace")?.unwrap_or(false);
    let has_own = share.permissions.contains_key(t.name);
    if has_own && !replace {
        return Err(ApiError::ram(
            "InvalidParameterException",
            format!(
                "permissionArn: the share already has a permission for {}; set replace to swap it",
                t.name
            ),
        ));
    }
    let mut share = share.clone();
    share.permissions.insert(
        t.name.to_owned(),
        rec::PermissionRef {
            arn: arn.to_owned(),
            version,
        },
    );
    share.last_updated_time = epoch(&c.now);
    replace_share(c, share, json!({"returnValue": true}))
}

fn disassociate(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let share = owned_share(c)?;
    let arn = c.get("permissionArn");
    let Some(t) = share
        .permissions
        .iter()
        .find(|(_, p)| p.arn == arn)
        .map(|(t, _)| t.clone())
    else {
        return Err(ApiError::ram(
            "UnknownResourceException",
            format!("permissionArn: {arn} is not associated with the share"),
        ));
    };
    // The type goes back to its AWS-managed default.
    let mut share = share.clone();
    share.permissions.remove(&t);
    share.last_updated_time = epoch(&c.now);
    replace_share(c, share, json!({"returnValue": true}))
}

/// RAM's TagResource and UntagResource, on shares and permissions.
fn tag(c: &Ctx<'_>, add: bool) -> Result<Outcome, ApiError> {
    let (share, perm) = match (
        c.input["resourceShareArn"].as_str(),
        c.input["resourceArn"].as_str(),
    ) {
        (Some(_), None) => (Some(owned_share(c)?), None),
        (None, Some(arn)) => (None, Some(own(c, "resourceArn", arn)?)),
        _ => {
            return Err(ApiError::ram(
                "InvalidParameterException",
                "set exactly one of resourceShareArn and resourceArn",
            ))
        }
    };
    let mut tags = share.map_or_else(
        || perm.map(|p| p.tags.clone()).unwrap_or_default(),
        |s| s.tags.clone(),
    );
    if add {
        let new: Vec<rec::RamTag> = c.req("tags")?;
        user_tag_keys("tags", new.iter().map(|t| t.key.as_str()))?;
        for t in new {
            tags.retain(|x| x.key != t.key);
            tags.push(t);
        }
        if tags.len() > 50 {
            return Err(ApiError::ram(
                "TagLimitExceededException",
                "tags: a resource has at most 50 tags",
            ));
        }
    } else {
        let keys: Vec<String> = c.req("tagKeys")?;
        tags.retain(|t| !keys.contains(&t.key));
    }
    if let Some(s) = share {
        let mut s = s.clone();
        s.tags = tags;
        return replace_share(c, s, json!({}));
    }
    let Some(mut p) = perm.cloned() else {
        return Err(ApiError::internal("tagging nothing"));
    };
    p.tags = tags;
    saved(p, json!({}))
}
