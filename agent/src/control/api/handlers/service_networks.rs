//! The service networks operations of the VPC Lattice API.

use serde_json::json;

// The handlers' shared state, context and helpers.
use super::*;

/// Handles `op`, one of this resource's operations (see
/// [`super::OPERATIONS`]).
pub(super) fn handle(c: &Ctx<'_>, op: &str) -> Result<Outcome, ApiError> {
    let state = c.state;
    let input = c.input;
    let q = &c.settings.quotas;
    match op {
        "CreateServiceNetwork" => {
            c.check_new(
                Kind::ServiceNetwork,
                "service network",
                "service-networks",
                q.service_networks,
            )?;
            let name = c.get("name");
            let (id, mut rec) = c.record(
                Kind::ServiceNetwork,
                json!({
                    "name": name,
                    "authType": input["authType"].as_str().unwrap_or("NONE"),
                }),
            );
            if let Some(sc) = input.get("sharingConfig") {
                rec["sharingConfig"] = sc.clone();
            }
            c.created(id, rec, "servicenetwork")
        }
        "GetServiceNetwork" => {
            let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
            Ok(Outcome::Read(sn_with_counts(state, sn)))
        }
        "ListServiceNetworks" => c.page(sorted(state.of_kind(Kind::ServiceNetwork)), |r| {
            sn_with_counts(state, r)
        }),
        "UpdateServiceNetwork" => c.update(
            Kind::ServiceNetwork,
            "serviceNetworkIdentifier",
            &["authType"],
        ),
        "DeleteServiceNetwork" => {
            let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
            let id = s(sn, "id");
            let assocs = state.children(id, Kind::SnService).count()
                + state.children(id, Kind::SnVpc).count();
            if assocs > 0 {
                return Err(ApiError::conflict(
                    "SERVICE_NETWORK",
                    id,
                    format!(
                        "service network {id} still has {assocs} associations; delete them first"
                    ),
                ));
            }
            let mut changes = vec![Change::Delete(id.to_owned())];
            changes.extend(dependents(state, id));
            write(changes, json!({}))
        }
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}

fn sn_with_counts(state: &State, sn: &Value) -> Value {
    let id = s(sn, "id");
    let mut v = sn.clone();
    v["numberOfAssociatedServices"] = state.children(id, Kind::SnService).count().into();
    v["numberOfAssociatedVPCs"] = state.children(id, Kind::SnVpc).count().into();
    v
}
