//! The associations operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateServiceNetworkServiceAssociation", create_service),
    ("GetServiceNetworkServiceAssociation", |c| {
        c.read(
            Kind::SnService,
            "serviceNetworkServiceAssociationIdentifier",
        )
    }),
    ("ListServiceNetworkServiceAssociations", |c| {
        let sn = c.optional_id(Kind::ServiceNetwork, "serviceNetworkIdentifier")?;
        let svc = c.optional_id(Kind::Service, "serviceIdentifier")?;
        let items = sorted(c.state.of_kind(Kind::SnService).filter(|a| {
            sn.as_deref().is_none_or(|x| s(a, "serviceNetworkId") == x)
                && svc.as_deref().is_none_or(|x| s(a, "serviceId") == x)
        }));
        c.page(items, Value::clone)
    }),
    ("DeleteServiceNetworkServiceAssociation", |c| {
        deleted(
            c,
            Kind::SnService,
            "serviceNetworkServiceAssociationIdentifier",
        )
    }),
    ("CreateServiceNetworkVpcAssociation", create_vpc),
    ("GetServiceNetworkVpcAssociation", |c| {
        c.read(Kind::SnVpc, "serviceNetworkVpcAssociationIdentifier")
    }),
    ("ListServiceNetworkVpcAssociations", |c| {
        let sn = c.optional_id(Kind::ServiceNetwork, "serviceNetworkIdentifier")?;
        let vpc = c.input["vpcIdentifier"].as_str();
        let items = sorted(c.state.of_kind(Kind::SnVpc).filter(|a| {
            sn.as_deref().is_none_or(|x| s(a, "serviceNetworkId") == x)
                && vpc.is_none_or(|x| s(a, "vpcId") == x)
        }));
        c.page(items, Value::clone)
    }),
    ("UpdateServiceNetworkVpcAssociation", |c| {
        c.update(
            Kind::SnVpc,
            "serviceNetworkVpcAssociationIdentifier",
            &["securityGroupIds"],
        )
    }),
    ("DeleteServiceNetworkVpcAssociation", |c| {
        deleted(c, Kind::SnVpc, "serviceNetworkVpcAssociationIdentifier")
    }),
];

fn create_service(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let state = c.state;
    let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
    let svc = state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
    if let Some(a) = state
        .children(s(svc, "id"), Kind::SnService)
        .find(|a| s(a, "serviceNetworkId") == s(sn, "id"))
    {
        return Err(ApiError::conflict(
            "SERVICE_NETWORK_SERVICE_ASSOCIATION",
            s(a, "id"),
            "the service is already associated with this service network",
        ));
    }
    let (id, mut rec) = c.record(Kind::SnService, json!({
        "status": "ACTIVE", "createdBy": c.settings.naming.account,
        "serviceNetworkId": s(sn, "id"), "serviceNetworkArn": s(sn, "arn"), "serviceNetworkName": s(sn, "name"),
        "serviceId": s(svc, "id"), "serviceArn": s(svc, "arn"), "serviceName": s(svc, "name"),
    }));
    for k in ["customDomainName", "dnsEntry"] {
        if let Some(d) = svc.get(k) {
            rec[k] = d.clone();
        }
    }
    c.created(id, rec, "servicenetworkserviceassociation")
}

fn create_vpc(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let (state, q) = (c.state, &c.settings.quotas);
    let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
    let vpc = c.get("vpcIdentifier");
    check_vpc(c.settings, "vpcIdentifier", vpc)?;
    let of_vpc: Vec<&Value> = state.children(&format!("vpc:{vpc}"), Kind::SnVpc).collect();
    if let Some(a) = of_vpc
        .iter()
        .find(|a| s(a, "serviceNetworkId") == s(sn, "id"))
    {
        return Err(ApiError::conflict(
            "SERVICE_NETWORK_VPC_ASSOCIATION",
            s(a, "id"),
            format!("VPC {vpc} is already associated with this service network"),
        ));
    }
    if of_vpc.len() >= q.service_networks_per_vpc {
        return Err(ApiError::quota(
            "SERVICE_NETWORK_VPC_ASSOCIATION",
            "service-networks-per-vpc",
            q.service_networks_per_vpc,
        ));
    }
    let (id, rec) = c.record(Kind::SnVpc, json!({
        "status": "ACTIVE", "createdBy": c.settings.naming.account, "vpcId": vpc,
        "securityGroupIds": c.input.get("securityGroupIds").cloned().unwrap_or_else(|| json!([])),
        "serviceNetworkId": s(sn, "id"), "serviceNetworkArn": s(sn, "arn"), "serviceNetworkName": s(sn, "name"),
    }));
    c.created(id, rec, "servicenetworkvpcassociation")
}

/// A Delete* of an association: it goes with what depends on it, and the
/// answer shows it deleting.
fn deleted(c: &Ctx<'_>, kind: Kind, ident_field: &str) -> Result<Outcome, ApiError> {
    let a = c.state.resolve(kind, c.get(ident_field))?;
    let mut out = a.clone();
    out["status"] = "DELETE_IN_PROGRESS".into();
    let mut changes = vec![Change::Delete(s(a, "id").to_owned())];
    changes.extend(dependents(c.state, s(a, "id")));
    write(changes, out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;

    #[test]
    fn a_service_joins_a_network_once_and_carries_its_names() {
        let mut api = Api::new();
        let sn = api.ok("CreateServiceNetwork", json!({"name": "net-a"}))["id"].clone();
        let svc = api.ok(
            "CreateService",
            json!({"name": "shop", "customDomainName": "shop.example.com"}),
        );
        let input = json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": svc["id"]});
        let a = api.ok("CreateServiceNetworkServiceAssociation", input.clone());
        assert_eq!(a["dnsEntry"], svc["dnsEntry"], "{a}");
        assert_eq!(a["customDomainName"], "shop.example.com", "{a}");
        let e = api.err("CreateServiceNetworkServiceAssociation", input);
        assert_eq!(e.code, "ConflictException", "{e}");
        let got = api.ok(
            "GetServiceNetworkServiceAssociation",
            json!({"serviceNetworkServiceAssociationIdentifier": a["id"]}),
        );
        assert_eq!(got["serviceName"], "shop");
        assert_eq!(got["serviceNetworkName"], "net-a");
        let by_sn = api.ok(
            "ListServiceNetworkServiceAssociations",
            json!({"serviceNetworkIdentifier": sn}),
        );
        assert_eq!(by_sn["items"].as_array().unwrap().len(), 1, "{by_sn}");
        let e = api.err(
            "ListServiceNetworkServiceAssociations",
            json!({"serviceIdentifier": "svc-00000000000000000"}),
        );
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
        let out = api.ok(
            "DeleteServiceNetworkServiceAssociation",
            json!({"serviceNetworkServiceAssociationIdentifier": a["id"]}),
        );
        assert_eq!(out["status"], "DELETE_IN_PROGRESS");
    }

    #[test]
    fn a_vpc_joins_as_the_quota_allows_and_only_if_it_exists() {
        let mut api = Api::new();
        let a = api.ok("CreateServiceNetwork", json!({"name": "net-a"}))["id"].clone();
        let b = api.ok("CreateServiceNetwork", json!({"name": "net-b"}))["id"].clone();
        let e = api.err(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": a, "vpcIdentifier": "vpc-nowhere"}),
        );
        assert!(e.message.contains("vpcIdentifier"), "{e}");
        let e = api.err(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": a, "vpcIdentifier": "../vpc-aa"}),
        );
        assert_eq!(e.code, "ValidationException", "{e}");
        let assoc = api.ok(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": a, "vpcIdentifier": "vpc-aa"}),
        );
        assert_eq!(assoc["securityGroupIds"], json!([]), "{assoc}");
        let e = api.err(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": a, "vpcIdentifier": "vpc-aa"}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        // One service network per VPC by default, as in Lattice.
        let e = api.err(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": b, "vpcIdentifier": "vpc-aa"}),
        );
        assert_eq!(e.code, "ServiceQuotaExceededException", "{e}");
        let id = assoc["id"].clone();
        let out = api.ok(
            "UpdateServiceNetworkVpcAssociation",
            json!({"serviceNetworkVpcAssociationIdentifier": id, "securityGroupIds": ["sg-0123456789abcdef0"]}),
        );
        assert_eq!(out["securityGroupIds"][0], "sg-0123456789abcdef0", "{out}");
        let listed = api.ok(
            "ListServiceNetworkVpcAssociations",
            json!({"vpcIdentifier": "vpc-aa"}),
        );
        assert_eq!(listed["items"][0]["id"], id, "{listed}");
        api.ok(
            "DeleteServiceNetworkVpcAssociation",
            json!({"serviceNetworkVpcAssociationIdentifier": id}),
        );
        api.ok(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": b, "vpcIdentifier": "vpc-aa"}),
        );
    }
}
