//! The auth and resource policies operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// Handles `op`, one of this resource's operations (see
/// [`super::OPERATIONS`]).
pub(super) fn handle(c: &Ctx<'_>, op: &str) -> Result<Outcome, ApiError> {
    let state = c.state;
    match op {
        "PutAuthPolicy" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let policy = c.get("policy");
            if let Err(e) = latticed_proxy::authz::Policy::parse(policy) {
                return Err(ApiError::field("policy", e.to_string()));
            }
            let key = format!("authpolicy/{}", s(target, "id"));
            let created = state
                .records
                .get(&key)
                .map_or(c.now.clone(), |p| s(p, "createdAt").to_owned());
            let state_name = if s(target, "authType") == "AWS_IAM" {
                "Active"
            } else {
                "Inactive"
            };
            let rec = json!({"policy": policy, "createdAt": created, "lastUpdatedAt": c.now, "resourceId": s(target, "id")});
            let mut out = rec.clone();
            out["state"] = state_name.into();
            write(vec![Change::Put(key, rec)], out)
        }
        "GetAuthPolicy" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let p = state
                .records
                .get(&format!("authpolicy/{}", s(target, "id")))
                .ok_or_else(|| ApiError::not_found("AUTH_POLICY", c.get("resourceIdentifier")))?;
            let mut out = p.clone();
            out["state"] = if s(target, "authType") == "AWS_IAM" {
                "Active"
            } else {
                "Inactive"
            }
            .into();
            Ok(Outcome::Read(out))
        }
        "DeleteAuthPolicy" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let key = format!("authpolicy/{}", s(target, "id"));
            if !state.records.contains_key(&key) {
                return Err(ApiError::not_found(
                    "AUTH_POLICY",
                    c.get("resourceIdentifier"),
                ));
            }
            write(vec![Change::Delete(key)], json!({}))
        }
        "PutResourcePolicy" | "GetResourcePolicy" | "DeleteResourcePolicy" => {
            let arn = c.get("resourceArn");
            let owner = arn.rsplit('/').next().unwrap_or_default();
            if state.records.get(owner).is_none_or(|r| s(r, "arn") != arn) {
                return Err(ApiError::not_found("RESOURCE", arn));
            }
            let key = format!("resourcepolicy/{owner}");
            match op {
                "PutResourcePolicy" => {
                    let policy = c.get("policy");
                    if serde_json::from_str::<Value>(policy)
                        .map(|v| !v.is_object())
                        .unwrap_or(true)
                    {
                        return Err(ApiError::field("policy", "is not a JSON policy document"));
                    }
                    write(vec![Change::Put(key, json!({"policy": policy}))], json!({}))
                }
                "GetResourcePolicy" => state
                    .records
                    .get(&key)
                    .map(|p| Outcome::Read(p.clone()))
                    .ok_or_else(|| ApiError::not_found("RESOURCE_POLICY", arn)),
                _ => {
                    if !state.records.contains_key(&key) {
                        return Err(ApiError::not_found("RESOURCE_POLICY", arn));
                    }
                    write(vec![Change::Delete(key)], json!({}))
                }
            }
        }
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}
