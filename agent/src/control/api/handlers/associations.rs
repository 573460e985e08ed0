//! The associations operations of the VPC Lattice API.

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateServiceNetworkServiceAssociation", create_service),
    ("GetServiceNetworkServiceAssociation", |c| {
        let a = party::<rec::SnService>(c, "serviceNetworkServiceAssociationIdentifier")?;
        Ok(Outcome::Read(a.to_value()))
    }),
    ("ListServiceNetworkServiceAssociations", |c| {
        one_filter(c, "serviceNetworkIdentifier", "serviceIdentifier")?;
        let sn = c.optional_id::<rec::ServiceNetwork>("serviceNetworkIdentifier")?;
        let svc = c.optional_id::<rec::Service>("serviceIdentifier")?;
        let items = sorted(parties_of::<rec::SnService>(c).filter(|a| {
            sn.is_none_or(|x| a.service_network_id == x) && svc.is_none_or(|x| a.service_id == x)
        }));
        c.page_of(&items, Resource::to_value)
    }),
    ("DeleteServiceNetworkServiceAssociation", |c| {
        deleted_association::<rec::SnService>(c, "serviceNetworkServiceAssociationIdentifier")
    }),
    ("CreateServiceNetworkVpcAssociation", create_vpc),
    ("GetServiceNetworkVpcAssociation", |c| {
        let a = party::<rec::SnVpc>(c, "serviceNetworkVpcAssociationIdentifier")?;
        Ok(Outcome::Read(a.to_value()))
    }),
    ("ListServiceNetworkVpcAssociations", |c| {
        one_filter(c, "serviceNetworkIdentifier", "vpcIdentifier")?;
        let sn = c.optional_id::<rec::ServiceNetwork>("serviceNetworkIdentifier")?;
        let vpc = c.input["vpcIdentifier"].as_str();
        let items = sorted(parties_of::<rec::SnVpc>(c).filter(|a| {
            sn.is_none_or(|x| a.service_network_id == x) && vpc.is_none_or(|x| a.vpc_id == x)
        }));
        c.page_of(&items, Resource::to_value)
    }),
    ("UpdateServiceNetworkVpcAssociation", |c| {
        let a = c.resolve::<rec::SnVpc>(c.get("serviceNetworkVpcAssociationIdentifier"))?;
        let mut a = c.touched(a);
        a.security_group_ids = c.req("securityGroupIds")?;
        put(a)
    }),
    ("DeleteServiceNetworkVpcAssociation", |c| {
        deleted_association::<rec::SnVpc>(c, "serviceNetworkVpcAssociationIdentifier")
    }),
];

/// Refuses a list of associations that names neither of its filters: AWS
/// requires one.
fn one_filter(c: &Ctx<'_>, a: &str, b: &str) -> Result<(), ApiError> {
    if c.input[a].is_string() || c.input[b].is_string() {
        Ok(())
    } else {
        Err(ApiError::field(a, format!("set {a} or {b}")))
    }
}

/// The accounts an association concerns: its creator (whose account its
/// ARN is in) and the owners of what it joins. Each of them sees it and
/// may delete it, as in Lattice, where an association with a shared
/// resource has an ARN in both accounts.
trait Parties: Resource {
    fn parties(&self) -> [&str; 3];
}

impl Parties for rec::SnService {
    fn parties(&self) -> [&str; 3] {
        [
            owner(self.arn()),
            owner(&self.service_network_arn),
            owner(&self.service_arn),
        ]
    }
}

impl Parties for rec::SnVpc {
    fn parties(&self) -> [&str; 3] {
        let me = owner(self.arn());
        [me, owner(&self.service_network_arn), me]
    }
}

/// The association `ident_field` names, if it concerns the caller.
fn party<'a, R: Parties>(c: &Ctx<'a>, ident_field: &str) -> Result<&'a R, ApiError> {
    let ident = c.get(ident_field);
    let a = c.state.resolve::<R>(ident)?;
    if a.parties().contains(&c.caller) {
        Ok(a)
    } else {
        c.check_owner(a.arn(), ident, R::KIND.type_name())
            .map(|()| a)
    }
}

/// The associations that concern the caller.
fn parties_of<'a, R: Parties>(c: &Ctx<'a>) -> impl Iterator<Item = &'a R> + use<'a, R> {
    let caller = c.caller;
    c.state
        .of_kind::<R>()
        .filter(move |a| a.parties().contains(&caller))
}

/// What a share must allow to associate with another account's network
/// or service.
const ASSOCIATE_SERVICE: &str = "vpc-lattice:CreateServiceNetworkServiceAssociation";

fn create_service(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let state = c.state;
    let sn =
        c.resolve_for::<rec::ServiceNetwork>(c.get("serviceNetworkIdentifier"), ASSOCIATE_SERVICE)?;
    let svc = c.resolve_for::<rec::Service>(c.get("serviceIdentifier"), ASSOCIATE_SERVICE)?;
    if let Some(a) = state
        .children::<rec::SnService>(svc.id())
        .find(|a| a.service_network_id == sn.id())
    {
        return Err(ApiError::conflict(
            "SERVICE_NETWORK_SERVICE_ASSOCIATION",
            a.id(),
            "the service is already associated with this service network",
        ));
    }
    put(rec::SnService {
        meta: c.meta_at(Kind::SnService, "servicenetworkserviceassociation")?,
        status: "ACTIVE".into(),
        created_by: c.caller.to_owned(),
        service_network_id: sn.id().to_owned(),
        service_network_arn: sn.arn().to_owned(),
        service_network_name: sn.name.clone(),
        service_id: svc.id().to_owned(),
        service_arn: svc.arn().to_owned(),
        service_name: svc.name.clone(),
        custom_domain_name: svc.custom_domain_name.clone(),
        dns_entry: Some(svc.dns_entry.clone()),
    })
}

fn create_vpc(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let (state, q) = (c.state, &c.settings.quotas);
    let sn = c.resolve_for::<rec::ServiceNetwork>(
        c.get("serviceNetworkIdentifier"),
        "vpc-lattice:CreateServiceNetworkVpcAssociation",
    )?;
    let vpc = c.get("vpcIdentifier");
    check_vpc(c, "vpcIdentifier", vpc)?;
    let of_vpc: Vec<&rec::SnVpc> = state.children(&format!("vpc:{vpc}")).collect();
    if let Some(a) = of_vpc.iter().find(|a| a.service_network_id == sn.id()) {
        return Err(ApiError::conflict(
            "SERVICE_NETWORK_VPC_ASSOCIATION",
            a.id(),
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
    put(rec::SnVpc {
        meta: c.meta_at(Kind::SnVpc, "servicenetworkvpcassociation")?,
        status: "ACTIVE".into(),
        created_by: c.caller.to_owned(),
        vpc_id: vpc.to_owned(),
        security_group_ids: c.opt("securityGroupIds")?.unwrap_or_default(),
        service_network_id: sn.id().to_owned(),
        service_network_arn: sn.arn().to_owned(),
        service_network_name: sn.name.clone(),
    })
}

/// A Delete* of an association: it goes with what depends on it, and the
/// answer shows it deleting.
fn deleted_association<R: Parties>(c: &Ctx<'_>, ident_field: &str) -> Result<Outcome, ApiError> {
    let a = party::<R>(c, ident_field)?;
    let mut out = a.to_value();
    out["status"] = "DELETE_IN_PROGRESS".into();
    write(deleted(c.state, a), out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;

    #[test]
    fn association_lists_need_one_filter() {
        let mut api = Api::new();
        for (op, field) in [
            ("ListServiceNetworkServiceAssociations", "serviceIdentifier"),
            ("ListServiceNetworkVpcAssociations", "vpcIdentifier"),
        ] {
            let e = api.err(op, json!({}));
            assert_eq!(e.code, "ValidationException", "{e}");
            assert!(e.message.contains(field), "{op}: {e}");
        }
    }

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
