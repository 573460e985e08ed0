//! The auth and resource policies operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("PutAuthPolicy", put_auth),
    ("GetAuthPolicy", |c| {
        let (key, owner) = auth_policy_of(c)?;
        match c.state.records.get(&key) {
            Some(Record::AuthPolicy(p)) => Ok(Outcome::Read(answer(p, &owner))),
            _ => Err(ApiError::not_found(
                "AUTH_POLICY",
                c.get("resourceIdentifier"),
            )),
        }
    }),
    ("DeleteAuthPolicy", |c| {
        let (key, _) = auth_policy_of(c)?;
        if !c.state.records.contains_key(&key) {
            return Err(ApiError::not_found(
                "AUTH_POLICY",
                c.get("resourceIdentifier"),
            ));
        }
        write(vec![Change::Delete(key)], json!({}))
    }),
    ("PutResourcePolicy", |c| {
        let (key, _) = resource_policy_of(c)?;
        let policy = c.get("policy");
        // Read as sharing reads it: it grants other accounts access.
        super::sharing::policy_statements(policy).map_err(|e| ApiError::field("policy", e))?;
        let p = rec::ResourcePolicy {
            policy: policy.to_owned(),
        };
        write(vec![Change::Put(key, Record::ResourcePolicy(p))], json!({}))
    }),
    ("GetResourcePolicy", |c| {
        let (key, arn) = resource_policy_of(c)?;
        match c.state.records.get(&key) {
            Some(p @ Record::ResourcePolicy(_)) => Ok(Outcome::Read(p.to_value())),
            _ => Err(ApiError::not_found("RESOURCE_POLICY", arn)),
        }
    }),
    ("DeleteResourcePolicy", |c| {
        let (key, arn) = resource_policy_of(c)?;
        if !c.state.records.contains_key(&key) {
            return Err(ApiError::not_found("RESOURCE_POLICY", arn));
        }
        write(vec![Change::Delete(key)], json!({}))
    }),
];

fn put_auth(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let (key, owner) = auth_policy_of(c)?;
    let policy = c.get("policy");
    if let Err(e) = latticed_proxy::authz::Policy::parse(policy) {
        return Err(ApiError::field("policy", e.to_string()));
    }
    let created = match c.state.records.get(&key) {
        Some(Record::AuthPolicy(p)) => p.created_at.clone(),
        _ => c.now.clone(),
    };
    let p = rec::AuthPolicy {
        policy: policy.to_owned(),
        created_at: created,
        last_updated_at: c.now.clone(),
        resource_id: owner.id.to_owned(),
    };
    let out = answer(&p, &owner);
    write(vec![Change::Put(key, Record::AuthPolicy(p))], out)
}

/// A policy as Get/PutAuthPolicy answer it: in force only where the auth
/// type is AWS_IAM.
fn answer(p: &rec::AuthPolicy, owner: &Owner<'_>) -> Value {
    let mut out = rec::json(p);
    out["state"] = match owner.auth_type {
        cfg::AuthType::AwsIam => "Active",
        cfg::AuthType::None => "Inactive",
    }
    .into();
    out
}

/// The record key of the auth policy of the service network or service
/// `resourceIdentifier` names, and that resource.
fn auth_policy_of<'a>(c: &Ctx<'a>) -> Result<(String, Owner<'a>), ApiError> {
    let owner = sn_or_service(c, c.get("resourceIdentifier"))?;
    Ok((format!("{AUTH_POLICY}{}", owner.id), owner))
}

/// The record key of the resource policy of the resource `resourceArn`
/// names, and the ARN.
fn resource_policy_of<'a>(c: &Ctx<'a>) -> Result<(String, &'a str), ApiError> {
    let arn = c.get("resourceArn");
    let owner = arn.rsplit('/').next().unwrap_or_default();
    if c.state.records.get(owner).is_none_or(|r| r.arn() != arn) {
        return Err(ApiError::not_found("RESOURCE", arn));
    }
    c.check_owner(arn, arn, "RESOURCE")?;
    Ok((format!("{RESOURCE_POLICY}{owner}"), arn))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;

    const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"vpc-lattice-svcs:Invoke","Resource":"*"}]}"#;

    #[test]
    fn an_auth_policy_is_checked_and_active_only_under_aws_iam() {
        let mut api = Api::new();
        let svc = api.ok("CreateService", json!({"name": "shop"}))["id"].clone();
        let e = api.err(
            "PutAuthPolicy",
            json!({"resourceIdentifier": svc, "policy": r#"{"Statement":[{"Effect":"Maybe"}]}"#}),
        );
        assert!(e.message.starts_with("policy: "), "{e}");
        let put = api.ok(
            "PutAuthPolicy",
            json!({"resourceIdentifier": svc, "policy": POLICY}),
        );
        assert_eq!(put["state"], "Inactive", "{put}");
        api.ok(
            "UpdateService",
            json!({"serviceIdentifier": svc, "authType": "AWS_IAM"}),
        );
        let got = api.ok("GetAuthPolicy", json!({"resourceIdentifier": svc}));
        assert_eq!(got["state"], "Active", "{got}");
        assert_eq!(got["policy"], POLICY);
        api.ok("DeleteAuthPolicy", json!({"resourceIdentifier": svc}));
        let e = api.err("GetAuthPolicy", json!({"resourceIdentifier": svc}));
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
        let e = api.err("DeleteAuthPolicy", json!({"resourceIdentifier": svc}));
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
        let e = api.err(
            "PutAuthPolicy",
            json!({"resourceIdentifier": "tg-00000000000000000", "policy": POLICY}),
        );
        assert!(e.message.contains("resourceIdentifier"), "{e}");
    }

    #[test]
    fn a_resource_policy_belongs_to_an_existing_resource_and_goes_with_it() {
        let mut api = Api::new();
        let sn = api.ok("CreateServiceNetwork", json!({"name": "net-a"}));
        let arn = sn["arn"].clone();
        let e = api.err(
            "PutResourcePolicy",
            json!({"resourceArn": arn, "policy": "[1, 2]"}),
        );
        assert!(e.message.contains("policy"), "{e}");
        api.ok(
            "PutResourcePolicy",
            json!({"resourceArn": arn, "policy": POLICY}),
        );
        assert_eq!(
            api.ok("GetResourcePolicy", json!({"resourceArn": arn}))["policy"],
            POLICY
        );
        let foreign =
            "arn:aws:vpc-lattice:us-east-1:999999999999:servicenetwork/sn-00000000000000000";
        let e = api.err("GetResourcePolicy", json!({"resourceArn": foreign}));
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
        api.ok(
            "DeleteServiceNetwork",
            json!({"serviceNetworkIdentifier": sn["id"]}),
        );
        assert!(
            api.state
                .records
                .keys()
                .all(|k| !k.starts_with("resourcepolicy/")),
            "the policy went with its network"
        );
    }
}
