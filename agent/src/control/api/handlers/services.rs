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
    let dns_entry = dns_entry(&c.settings.naming, c.caller, name, &meta.id);
    put(rec::Service {
        meta,
        name: name.to_owned(),
        auth_type: c.opt("authType")?.unwrap_or_default(),
        status: "ACTIVE".into(),
        vip: least_used_vip(c.state)?,
        dns_entry,
        custom_domain_name: c.opt("customDomainName")?,
        certificate_arn: c.opt("certificateArn")?,
    })
}

/// A new service's DNS entry, in AWS's form: `NAME-ID.LABEL.SUFFIX`, where
/// LABEL (7 hex digits) stands for the owning account in the region, and
/// the hosted zone is the region's. Both are derived (a hash), so they are
/// stable across restarts and hosts. A service keeps the name it was given
/// at creation: names never move under clients.
fn dns_entry(naming: &crate::control::Naming, owner: &str, name: &str, id: &str) -> rec::DnsEntry {
    use sha2::Digest as _;
    let label = hex::encode(sha2::Sha256::digest(format!("{owner}/{}", naming.region)));
    let zone = hex::encode(sha2::Sha256::digest(format!("zone/{}", naming.region)));
    rec::DnsEntry {
        domain_name: format!(
            "{name}-{}.{}.{}",
            id.trim_start_matches(Kind::Service.prefix()),
            &label[..7],
            naming.dns_suffix
        ),
        hosted_zone_id: Some(format!("Z{}", zone[..20].to_uppercase())),
    }
}

/// One VIP per service while they last; then the least used one, shared
/// (requests are told apart by the service's DNS name). Resources' VIPs
/// are never shared.
fn least_used_vip(state: &State) -> Result<std::net::Ipv4Addr, ApiError> {
    (u32::from(VIP_FIRST)..=u32::from(VIP_LAST))
        .map(std::net::Ipv4Addr::from)
        .filter(|ip| !state.idx.resource_vips.contains(ip))
        .map(|ip| (state.idx.vip_load.get(&ip).copied().unwrap_or(0), ip))
        .min()
        .map(|(_, ip)| ip)
        .ok_or_else(|| no_vip("SERVICE"))
}

/// A VIP no service or resource uses, for a resource configuration.
pub(super) fn free_vip(state: &State) -> Result<std::net::Ipv4Addr, ApiError> {
    (u32::from(VIP_FIRST)..=u32::from(VIP_LAST))
        .map(std::net::Ipv4Addr::from)
        .find(|ip| !state.idx.resource_vips.contains(ip) && !state.idx.vip_load.contains_key(ip))
        .ok_or_else(|| no_vip("RESOURCE_CONFIGURATION"))
}

/// Every VIP is taken.
fn no_vip(resource_type: &str) -> ApiError {
    let n = (u32::from(VIP_LAST) - u32::from(VIP_FIRST) + 1) as usize;
    let mut e = ApiError::quota(resource_type, "vips", n);
    e.message = format!(
        "all {n} VIPs ({VIP_FIRST}-{VIP_LAST}) are taken: services share VIPs only among themselves, and each resource configuration needs one of its own"
    );
    e
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
        // AWS's form: NAME-ID.LABEL.SUFFIX, LABEL 7 hex digits of the
        // owner's; a hosted zone id.
        let name = a["dnsEntry"]["domainName"].as_str().unwrap();
        let labels: Vec<&str> = name.split('.').collect();
        assert_eq!(
            labels[0],
            format!("shop-{}", id.trim_start_matches("svc-")),
            "{name}"
        );
        assert!(
            labels[1].len() == 7 && labels[1].bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        assert_eq!(labels[2..], ["example"], "{name}");
        let zone = a["dnsEntry"]["hostedZoneId"].as_str().unwrap();
        assert!(zone.starts_with('Z') && zone.len() == 21, "{zone}");
        // One account's services share the label; another's differ.
        let b = api.ok("CreateService", json!({"name": "cart-1"}));
        assert_eq!(
            s(&b["dnsEntry"], "domainName").split('.').nth(1),
            Some(labels[1])
        );
        api.as_account("222233334444");
        let other = api.ok("CreateService", json!({"name": "cart-2"}));
        assert_ne!(
            s(&other["dnsEntry"], "domainName").split('.').nth(1),
            Some(labels[1])
        );
        api.ok("DeleteService", json!({"serviceIdentifier": other["id"]}));
        api.as_account("111122223333");
        api.ok("DeleteService", json!({"serviceIdentifier": b["id"]}));
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
