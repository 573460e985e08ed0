//! The listeners operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateListener", create),
    ("GetListener", |c| {
        Ok(Outcome::Read(listener_of(c.state, c.input)?.clone()))
    }),
    ("ListListeners", |c| {
        let svc = c.state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
        let items = sorted(c.state.children(s(svc, "id"), Kind::Listener));
        c.page(items, Value::clone)
    }),
    ("UpdateListener", |c| {
        let l = listener_of(c.state, c.input)?;
        let mut rec = c.touched(l);
        rec["defaultAction"] = c.action("defaultAction", &c.input["defaultAction"])?;
        write(vec![Change::Put(s(l, "id").to_owned(), rec.clone())], rec)
    }),
    ("DeleteListener", |c| {
        let state = c.state;
        let l = listener_of(state, c.input)?;
        let mut changes = vec![Change::Delete(s(l, "id").to_owned())];
        for r in state.children(s(l, "id"), Kind::Rule) {
            changes.push(Change::Delete(s(r, "id").to_owned()));
            changes.extend(dependents(state, s(r, "id")));
        }
        changes.extend(dependents(state, s(l, "id")));
        write(changes, json!({}))
    }),
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let q = &c.settings.quotas;
    let svc = c.state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
    let sid = s(svc, "id");
    let mine = c.new_child(Kind::Listener, "serviceId", sid, "service", "listener")?;
    if mine.len() >= q.listeners_per_service {
        return Err(ApiError::quota(
            "LISTENER",
            "listeners-per-service",
            q.listeners_per_service,
        ));
    }
    let protocol = c.get("protocol");
    let port = c.input["port"]
        .as_u64()
        .unwrap_or(if protocol == "HTTP" { 80 } else { 443 });
    if let Some(l) = mine.iter().find(|l| l["port"].as_u64() == Some(port)) {
        return Err(ApiError::conflict(
            "LISTENER",
            s(l, "id"),
            format!(
                "port {port} of service {sid} is already taken by listener {}",
                s(l, "name")
            ),
        ));
    }
    check_one_protocol_per_port(c.state, svc, port, protocol)?;
    let action = c.action("defaultAction", &c.input["defaultAction"])?;
    let (id, mut rec) = c.record(
        Kind::Listener,
        json!({
            "name": c.get("name"), "protocol": protocol, "port": port, "defaultAction": action,
            "serviceId": sid, "serviceArn": s(svc, "arn"),
        }),
    );
    rec["arn"] = format!("{}/listener/{id}", s(svc, "arn")).into();
    write(vec![Change::Put(id, rec.clone())], rec)
}

/// Services share VIPs once each has had its own. One VIP:port speaks one
/// protocol: a TLS_PASSTHROUGH listener beside an HTTPS one would splice
/// TLS clients past the HTTPS service's auth policy.
fn check_one_protocol_per_port(
    state: &State,
    svc: &Value,
    port: u64,
    protocol: &str,
) -> Result<(), ApiError> {
    let (vip, sid) = (s(svc, "_vip"), s(svc, "id"));
    let clash = state
        .of_kind(Kind::Service)
        .filter(|o| s(o, "_vip") == vip && s(o, "id") != sid)
        .flat_map(|o| state.children(s(o, "id"), Kind::Listener))
        .find(|l| l["port"].as_u64() == Some(port) && s(l, "protocol") != protocol);
    match clash {
        Some(l) => Err(ApiError::conflict(
            "LISTENER",
            s(l, "id"),
            format!(
                "port {port} of this service's address {vip} is used by a {} listener of service {}; one address and port serve one protocol",
                s(l, "protocol"),
                s(l, "serviceId")
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;

    #[test]
    fn listeners_default_their_port_and_keep_to_the_quota() {
        let mut api = Api::new();
        let svc = api.ok("CreateService", json!({"name": "shop"}))["id"].clone();
        let fixed = json!({"fixedResponse": {"statusCode": 404}});
        let listener = |name: &str, protocol: &str| json!({"serviceIdentifier": svc, "name": name, "protocol": protocol, "defaultAction": fixed});
        let http = api.ok("CreateListener", listener("web", "HTTP"));
        assert_eq!(http["port"], 80);
        assert!(
            http["arn"]
                .as_str()
                .unwrap()
                .contains("/listener/listener-"),
            "{http}"
        );
        let https = api.ok("CreateListener", listener("secure", "HTTPS"));
        assert_eq!(https["port"], 443);
        let e = api.err("CreateListener", listener("third", "HTTPS"));
        assert_eq!(e.code, "ServiceQuotaExceededException", "{e}");
        let e = api.err("CreateListener", listener("web", "HTTP"));
        assert_eq!(e.code, "ConflictException", "{e}");
        let listed = api.ok("ListListeners", json!({"serviceIdentifier": svc}));
        assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    }

    #[test]
    fn a_listener_is_found_only_under_its_service_and_goes_with_its_rules() {
        let mut api = Api::new();
        let [_, svc, l, tg] = api.service_in_network();
        let other = api.ok("CreateService", json!({"name": "cart"}))["id"].clone();
        let e = api.err(
            "GetListener",
            json!({"serviceIdentifier": other, "listenerIdentifier": l}),
        );
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
        let e = api.err(
            "UpdateListener",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l,
                "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "tg-00000000000000000"}]}}}),
        );
        assert!(
            e.message
                .contains("defaultAction.forward.targetGroups[0].targetGroupIdentifier"),
            "{e}"
        );
        api.ok(
            "CreateRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "name": "by-get", "priority": 1,
                "match": {"httpMatch": {"method": "GET"}},
                "action": {"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}}}),
        );
        api.ok(
            "DeleteListener",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l}),
        );
        assert!(
            !api.state.records.keys().any(|k| k.starts_with("rule-")),
            "the rule went with its listener"
        );
    }
}
