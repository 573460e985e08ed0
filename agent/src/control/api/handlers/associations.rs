//! The associations operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// Handles `op`, one of this resource's operations (see
/// [`super::OPERATIONS`]).
pub(super) fn handle(c: &Ctx<'_>, op: &str) -> Result<Outcome, ApiError> {
    let state = c.state;
    let input = c.input;
    let settings = c.settings;
    let q = &c.settings.quotas;
    match op {
        "CreateServiceNetworkServiceAssociation" => {
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
                "status": "ACTIVE", "createdBy": settings.naming.account,
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
        "GetServiceNetworkServiceAssociation" => c.read(
            Kind::SnService,
            "serviceNetworkServiceAssociationIdentifier",
        ),
        "ListServiceNetworkServiceAssociations" => {
            let sn = c.optional_id(Kind::ServiceNetwork, "serviceNetworkIdentifier")?;
            let svc = c.optional_id(Kind::Service, "serviceIdentifier")?;
            let items = sorted(state.of_kind(Kind::SnService).filter(|a| {
                sn.as_deref().is_none_or(|x| s(a, "serviceNetworkId") == x)
                    && svc.as_deref().is_none_or(|x| s(a, "serviceId") == x)
            }));
            c.page(items, Value::clone)
        }
        "DeleteServiceNetworkServiceAssociation" => {
            let a = state.resolve(
                Kind::SnService,
                c.get("serviceNetworkServiceAssociationIdentifier"),
            )?;
            let mut out = a.clone();
            out["status"] = "DELETE_IN_PROGRESS".into();
            let mut changes = vec![Change::Delete(s(a, "id").to_owned())];
            changes.extend(dependents(state, s(a, "id")));
            write(changes, out)
        }
        "CreateServiceNetworkVpcAssociation" => {
            let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
            let vpc = c.get("vpcIdentifier");
            check_vpc(settings, "vpcIdentifier", vpc)?;
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
                "status": "ACTIVE", "createdBy": settings.naming.account, "vpcId": vpc,
                "securityGroupIds": input.get("securityGroupIds").cloned().unwrap_or_else(|| json!([])),
                "serviceNetworkId": s(sn, "id"), "serviceNetworkArn": s(sn, "arn"), "serviceNetworkName": s(sn, "name"),
            }));
            c.created(id, rec, "servicenetworkvpcassociation")
        }
        "GetServiceNetworkVpcAssociation" => {
            c.read(Kind::SnVpc, "serviceNetworkVpcAssociationIdentifier")
        }
        "ListServiceNetworkVpcAssociations" => {
            let sn = c.optional_id(Kind::ServiceNetwork, "serviceNetworkIdentifier")?;
            let vpc = input["vpcIdentifier"].as_str();
            let items = sorted(state.of_kind(Kind::SnVpc).filter(|a| {
                sn.as_deref().is_none_or(|x| s(a, "serviceNetworkId") == x)
                    && vpc.is_none_or(|x| s(a, "vpcId") == x)
            }));
            c.page(items, Value::clone)
        }
        "UpdateServiceNetworkVpcAssociation" => c.update(
            Kind::SnVpc,
            "serviceNetworkVpcAssociationIdentifier",
            &["securityGroupIds"],
        ),
        "DeleteServiceNetworkVpcAssociation" => {
            let a = state.resolve(Kind::SnVpc, c.get("serviceNetworkVpcAssociationIdentifier"))?;
            let mut out = a.clone();
            out["status"] = "DELETE_IN_PROGRESS".into();
            let mut changes = vec![Change::Delete(s(a, "id").to_owned())];
            changes.extend(dependents(state, s(a, "id")));
            write(changes, out)
        }
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}
