//! The service networks operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// The action a share must allow to show another account's network.
const GET: &str = "vpc-lattice:GetServiceNetwork";

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateServiceNetwork", create),
    ("GetServiceNetwork", |c| {
        let sn = c.resolve_for::<rec::ServiceNetwork>(c.get("serviceNetworkIdentifier"), GET)?;
        Ok(Outcome::Read(with_counts(c.state, sn)))
    }),
    // The caller's networks and those shared with it.
    ("ListServiceNetworks", |c| {
        c.page_of(&c.visible(GET), |sn| with_counts(c.state, sn))
    }),
    ("UpdateServiceNetwork", |c| {
        let sn = c.resolve::<rec::ServiceNetwork>(c.get("serviceNetworkIdentifier"))?;
        let mut sn = c.touched(sn);
        sn.auth_type = c.req("authType")?;
        put(sn)
    }),
    ("DeleteServiceNetwork", delete),
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    c.check_new::<rec::ServiceNetwork>(
        "service network",
        "service-networks",
        c.settings.quotas.service_networks,
    )?;
    put(rec::ServiceNetwork {
        meta: c.meta_at(Kind::ServiceNetwork, "servicenetwork")?,
        name: c.get("name").to_owned(),
        auth_type: c.opt("authType")?.unwrap_or_default(),
        sharing_config: c.opt("sharingConfig")?,
    })
}

fn delete(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let state = c.state;
    let sn = c.resolve::<rec::ServiceNetwork>(c.get("serviceNetworkIdentifier"))?;
    let id = sn.id();
    let assocs = state.children::<rec::SnService>(id).count()
        + state.children::<rec::SnVpc>(id).count()
        + state.children::<rec::SnResource>(id).count();
    if assocs > 0 {
        return Err(ApiError::conflict(
            "SERVICE_NETWORK",
            id,
            format!("service network {id} still has {assocs} associations; delete them first"),
        ));
    }
    write(deleted(state, sn), json!({}))
}

fn with_counts(state: &State, sn: &rec::ServiceNetwork) -> Value {
    let mut v = sn.to_value();
    v["numberOfAssociatedServices"] = state.children::<rec::SnService>(sn.id()).count().into();
    v["numberOfAssociatedVPCs"] = state.children::<rec::SnVpc>(sn.id()).count().into();
    v["numberOfAssociatedResourceConfigurations"] =
        state.children::<rec::SnResource>(sn.id()).count().into();
    v
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;
    use super::*;

    #[test]
    fn a_network_is_created_read_listed_updated_and_deleted() {
        let mut api = Api::new();
        let sn = api.ok("CreateServiceNetwork", json!({"name": "net-a"}));
        let id = sn["id"].as_str().unwrap();
        assert!(id.starts_with("sn-"), "{sn}");
        assert_eq!(
            sn["arn"],
            format!("arn:aws:vpc-lattice:us-east-1:111122223333:servicenetwork/{id}")
        );
        assert_eq!(sn["authType"], "NONE");
        for ident in [id, sn["arn"].as_str().unwrap()] {
            let got = api.ok(
                "GetServiceNetwork",
                json!({"serviceNetworkIdentifier": ident}),
            );
            assert_eq!(got["id"], id);
            assert_eq!(got["numberOfAssociatedServices"], 0);
        }
        let listed = api.ok("ListServiceNetworks", json!({}));
        assert_eq!(listed["items"][0]["name"], "net-a", "{listed}");
        api.ok(
            "UpdateServiceNetwork",
            json!({"serviceNetworkIdentifier": id, "authType": "AWS_IAM"}),
        );
        let got = api.ok("GetServiceNetwork", json!({"serviceNetworkIdentifier": id}));
        assert_eq!(got["authType"], "AWS_IAM");
        api.ok(
            "DeleteServiceNetwork",
            json!({"serviceNetworkIdentifier": id}),
        );
        let e = api.err("GetServiceNetwork", json!({"serviceNetworkIdentifier": id}));
        assert_eq!(e.code, "ResourceNotFoundException");
    }

    #[test]
    fn names_are_unique_and_the_quota_holds() {
        let mut api = Api::with_quotas(Quotas {
            service_networks: 2,
            ..Quotas::default()
        });
        api.ok("CreateServiceNetwork", json!({"name": "net-a"}));
        let e = api.err("CreateServiceNetwork", json!({"name": "net-a"}));
        assert_eq!(e.code, "ConflictException", "{e}");
        api.ok("CreateServiceNetwork", json!({"name": "net-b"}));
        let e = api.err("CreateServiceNetwork", json!({"name": "net-c"}));
        assert_eq!(e.code, "ServiceQuotaExceededException", "{e}");
        let e = api.err("CreateServiceNetwork", json!({"name": "Not A Name"}));
        assert_eq!(e.code, "ValidationException", "{e}");
    }

    #[test]
    fn a_network_with_associations_is_kept_until_they_go() {
        let mut api = Api::new();
        let [sn, ..] = api.service_in_network();
        let got = api.ok("GetServiceNetwork", json!({"serviceNetworkIdentifier": sn}));
        assert_eq!(got["numberOfAssociatedServices"], 1);
        let e = api.err(
            "DeleteServiceNetwork",
            json!({"serviceNetworkIdentifier": sn}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        api.dissociate(json!({"serviceNetworkIdentifier": sn}));
        api.ok(
            "DeleteServiceNetwork",
            json!({"serviceNetworkIdentifier": sn}),
        );
    }
}
