//! The listeners operations of the VPC Lattice API.

use serde_json::json;

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateListener", create),
    ("GetListener", |c| {
        Ok(Outcome::Read(listener_of(c)?.to_value()))
    }),
    ("ListListeners", |c| {
        let svc = c.resolve::<rec::Service>(c.get("serviceIdentifier"))?;
        let items = sorted(c.state.children::<rec::Listener>(svc.id()));
        c.page_of(&items, Resource::to_value)
    }),
    ("UpdateListener", |c| {
        let mut l = c.touched(listener_of(c)?);
        l.default_action = c.action("defaultAction")?;
        put(l)
    }),
    ("DeleteListener", |c| {
        let state = c.state;
        let l = listener_of(c)?;
        let mut changes = deleted(state, l);
        for r in state.children::<rec::Rule>(l.id()) {
            changes.extend(deleted(state, r));
        }
        write(changes, json!({}))
    }),
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let q = &c.settings.quotas;
    let svc = c.resolve::<rec::Service>(c.get("serviceIdentifier"))?;
    let sid = svc.id();
    let name = c.get("name");
    let mine: Vec<&rec::Listener> = c.state.children(sid).collect();
    name_free(&mine, |l| &l.name, name, ("service", sid))?;
    if mine.len() >= q.listeners_per_service {
        return Err(ApiError::quota(
            "LISTENER",
            "listeners-per-service",
            q.listeners_per_service,
        ));
    }
    let protocol: cfg::ListenerProtocol = c.req("protocol")?;
    let port = c.opt("port")?.unwrap_or(match protocol {
        cfg::ListenerProtocol::Http => 80,
        _ => 443,
    });
    if let Some(l) = mine.iter().find(|l| l.port == port) {
        return Err(ApiError::conflict(
            "LISTENER",
            l.id(),
            format!(
                "port {port} of service {sid} is already taken by listener {}",
                l.name
            ),
        ));
    }
    check_one_protocol_per_port(c.state, svc, port, protocol)?;
    put(rec::Listener {
        meta: c.meta(Kind::Listener, |id| format!("{}/listener/{id}", svc.arn()))?,
        name: name.to_owned(),
        protocol,
        port,
        default_action: c.action("defaultAction")?,
        service_id: sid.to_owned(),
        service_arn: svc.arn().to_owned(),
    })
}

/// Services share VIPs once each has had its own. One VIP:port speaks one
/// protocol: a TLS_PASSTHROUGH listener beside an HTTPS one would splice
/// TLS clients past the HTTPS service's auth policy.
fn check_one_protocol_per_port(
    state: &State,
    svc: &rec::Service,
    port: u32,
    protocol: cfg::ListenerProtocol,
) -> Result<(), ApiError> {
    let clash = state
        .of_kind::<rec::Service>()
        .filter(|o| o.vip == svc.vip && o.id() != svc.id())
        .flat_map(|o| state.children::<rec::Listener>(o.id()))
        .find(|l| l.port == port && l.protocol != protocol);
    match clash {
        Some(l) => Err(ApiError::conflict(
            "LISTENER",
            l.id(),
            format!(
                "port {port} of this service's address {} is used by a {} listener of service {}; one address and port serve one protocol",
                svc.vip,
                wire(&l.protocol),
                l.service_id
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;

    /// A listener or rule forwarding to a group that does not exist is
    /// ResourceNotFoundException, as AWS answers, naming the field.
    #[test]
    fn an_unknown_target_group_is_not_found() {
        let mut api = Api::new();
        let [_, svc, l, _] = api.service_in_network();
        let fwd = json!({"forward": {"targetGroups": [{"targetGroupIdentifier": "tg-0123456789abcdef0"}]}});
        let e = api.err(
            "CreateListener",
            json!({"serviceIdentifier": svc, "name": "web2", "protocol": "HTTP", "port": 8080, "defaultAction": fwd}),
        );
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
        assert!(
            e.message
                .contains("defaultAction.forward.targetGroups[0].targetGroupIdentifier"),
            "{e}"
        );
        let e = api.err(
            "CreateRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "name": "to-nowhere", "priority": 4,
                "match": {"httpMatch": {"method": "GET"}}, "action": fwd}),
        );
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
        assert!(e.message.contains("action.forward"), "{e}");
    }

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
