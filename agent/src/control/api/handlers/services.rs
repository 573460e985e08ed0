//! The services operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateService", create),
    ("GetService", |c| c.read(Kind::Service, "serviceIdentifier")),
    ("ListServices", |c| {
        c.page(sorted(c.state.of_kind(Kind::Service)), Value::clone)
    }),
    ("UpdateService", |c| {
        c.update(
            Kind::Service,
            "serviceIdentifier",
            &["authType", "certificateArn"],
        )
    }),
    ("DeleteService", delete),
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    c.check_new(
        Kind::Service,
        "service",
        "services",
        c.settings.quotas.services,
    )?;
    let name = c.get("name");
    let (id, mut rec) = c.record(
        Kind::Service,
        json!({
            "name": name,
            "authType": c.input["authType"].as_str().unwrap_or("NONE"),
            "status": "ACTIVE",
            "_vip": least_used_vip(c.state),
        }),
    );
    rec["dnsEntry"] = json!({
        "domainName": format!("{name}-{}.{}", id.trim_start_matches("svc-"), c.settings.naming.dns_suffix),
    });
    for k in ["customDomainName", "certificateArn"] {
        if let Some(v) = c.input.get(k) {
            rec[k] = v.clone();
        }
    }
    c.created(id, rec, "service")
}

/// One VIP per service while they last; then the least used one, shared
/// (requests are told apart by the service's DNS name).
fn least_used_vip(state: &State) -> String {
    (u32::from(VIP_FIRST)..=u32::from(VIP_LAST))
        .map(|v| {
            let ip = std::net::Ipv4Addr::from(v);
            let load = state
                .idx
                .vip_load
                .get(&ip.to_string())
                .copied()
                .unwrap_or(0);
            (load, v, ip)
        })
        .min()
        .map(|(_, _, ip)| ip.to_string())
        .unwrap_or_default()
}

fn delete(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let state = c.state;
    let svc = state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
    let id = s(svc, "id");
    if let Some(a) = state.children(id, Kind::SnService).next() {
        return Err(ApiError::conflict("SERVICE", id, format!("service {id} is still associated with service network {}; delete association {} first", s(a, "serviceNetworkName"), s(a, "id"))));
    }
    let mut changes = vec![Change::Delete(id.to_owned())];
    for l in state.children(id, Kind::Listener) {
        changes.push(Change::Delete(s(l, "id").to_owned()));
        for r in state.children(s(l, "id"), Kind::Rule) {
            changes.push(Change::Delete(s(r, "id").to_owned()));
        }
    }
    changes.extend(dependents(state, id));
    let mut out = svc.clone();
    out["status"] = "DELETE_IN_PROGRESS".into();
    write(changes, out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        let vip = |v: &Value| api.state.records[v["id"].as_str().unwrap()]["_vip"].clone();
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
