//! The services operations of the VPC Lattice API.

// The handlers' shared state, context and helpers.
use super::*;

/// The action a share must allow to show another account's service.
const GET: &str = "vpc-lattice:GetService";

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateService", create),
    ("GetService", |c| {
        let svc = c.resolve_for::<rec::Service>(c.get("serviceIdentifier"), GET)?;
        Ok(Outcome::Read(svc.to_value()))
    }),
    // The service directory: the caller's services and those shared with
    // it (the ARN names the owner's account).
    ("ListServices", |c| {
        c.page_of(&c.visible::<rec::Service>(GET), Resource::to_value)
    }),
    ("UpdateService", |c| {
        let svc = c.resolve::<rec::Service>(c.get("serviceIdentifier"))?;
        let mut svc = c.touched(svc);
        if let Some(t) = c.opt("authType")? {
            svc.auth_type = t;
        }
        if let Some(arn) = c.opt("certificateArn")? {
            svc.certificate_arn = Some(arn);
        }
        put(svc)
    }),
    ("DeleteService", delete),
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    c.check_new::<rec::Service>("service", "services", c.settings.quotas.services)?;
    let name = c.get("name");
    let meta = c.meta_at(Kind::Service, "service")?;
    let dns = format!(
        "{name}-{}.{}",
        meta.id.trim_start_matches(Kind::Service.prefix()),
        c.settings.naming.dns_suffix
    );
    put(rec::Service {
        meta,
        name: name.to_owned(),
        auth_type: c.opt("authType")?.unwrap_or_default(),
        status: "ACTIVE".into(),
        vip: least_used_vip(c.state),
        dns_entry: rec::DnsEntry {
            domain_name: dns,
            hosted_zone_id: None,
        },
        custom_domain_name: c.opt("customDomainName")?,
        certificate_arn: c.opt("certificateArn")?,
    })
}

/// One VIP per service while they last; then the least used one, shared
/// (requests are told apart by the service's DNS name).
fn least_used_vip(state: &State) -> std::net::Ipv4Addr {
    (u32::from(VIP_FIRST)..=u32::from(VIP_LAST))
        .map(|v| {
            let ip = std::net::Ipv4Addr::from(v);
            (state.idx.vip_load.get(&ip).copied().unwrap_or(0), ip)
        })
        .min()
        .map_or(VIP_FIRST, |(_, ip)| ip)
}

fn delete(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let state = c.state;
    let svc = c.resolve::<rec::Service>(c.get("serviceIdentifier"))?;
    let id = svc.id();
    if let Some(a) = state.children::<rec::SnService>(id).next() {
        return Err(ApiError::conflict("SERVICE", id, format!("service {id} is still associated with service network {}; delete association {} first", a.service_network_name, a.id())));
    }
    let mut changes = deleted(state, svc);
    for l in state.children::<rec::Listener>(id) {
        changes.push(Change::Delete(l.id().to_owned()));
        for r in state.children::<rec::Rule>(l.id()) {
            changes.push(Change::Delete(r.id().to_owned()));
        }
    }
    let mut out = svc.to_value();
    out["status"] = "DELETE_IN_PROGRESS".into();
    write(changes, out)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::Api;
    use super::*;

    #[test]
    fn a_service_gets_a_dns_name_and_its_own_address_while_they_last() {
        let mut api = Api::new();
        let a = api.ok(
            "CreateService",
            json!({"name": "shop", "customDomainName": "a.example.com"}),
        );
        let id = a["id"].as_str().unwrap();
        assert_eq!(
            a["dnsEntry"]["domainName"],
            format!("shop-{}.example", id.trim_start_matches("svc-"))
        );
        assert_eq!(a["customDomainName"], "a.example.com");
        assert_eq!(a["authType"], "NONE");
        let b = api.ok("CreateService", json!({"name": "cart"}));
        let vip = |v: &Value| {
            let svc = api.state.get::<rec::Service>(v["id"].as_str().unwrap());
            svc.unwrap().vip.to_string()
        };
        assert_eq!(vip(&a), "169.254.171.1");
        assert_eq!(vip(&b), "169.254.171.2");
        let e = api.err("CreateService", json!({"name": "shop"}));
        assert_eq!(e.code, "ConflictException", "{e}");
        api.ok(
            "UpdateService",
            json!({"serviceIdentifier": id, "authType": "AWS_IAM"}),
        );
        assert_eq!(
            api.ok("GetService", json!({"serviceIdentifier": id}))["authType"],
            "AWS_IAM"
        );
        assert_eq!(
            api.ok("ListServices", json!({}))["items"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_service_goes_with_its_listeners_and_rules_once_no_network_holds_it() {
        let mut api = Api::new();
        let [_, svc, l, tg] = api.service_in_network();
        api.ok(
            "CreateRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "name": "by-get", "priority": 1,
                "match": {"httpMatch": {"method": "GET"}},
                "action": {"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}}}),
        );
        let e = api.err("DeleteService", json!({"serviceIdentifier": svc}));
        assert_eq!(e.code, "ConflictException", "{e}");
        assert!(e.message.contains("net-a"), "{e}");
        api.dissociate(json!({"serviceIdentifier": svc}));
        let out = api.ok("DeleteService", json!({"serviceIdentifier": svc}));
        assert_eq!(out["status"], "DELETE_IN_PROGRESS");
        let left: Vec<&String> = api
            .state
            .records
            .keys()
            .filter(|k| k.starts_with("listener-") || k.starts_with("rule-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // The group is free again.
        api.ok("DeleteTargetGroup", json!({"targetGroupIdentifier": tg}));
    }
}
