//! The listeners operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// Handles `op`, one of this resource's operations (see
/// [`super::OPERATIONS`]).
pub(super) fn handle(c: &Ctx<'_>, op: &str) -> Result<Outcome, ApiError> {
    let state = c.state;
    let input = c.input;
    let q = &c.settings.quotas;
    match op {
        "CreateListener" => {
            let svc = state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
            let sid = s(svc, "id");
            let name = c.get("name");
            let mine = c.new_child(Kind::Listener, "serviceId", sid, "service", "listener")?;
            if mine.len() >= q.listeners_per_service {
                return Err(ApiError::quota(
                    "LISTENER",
                    "listeners-per-service",
                    q.listeners_per_service,
                ));
            }
            let protocol = c.get("protocol");
            let port = input["port"]
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
            // Services share VIPs once each has had its own. One VIP:port
            // speaks one protocol: a TLS_PASSTHROUGH listener beside an
            // HTTPS one would splice TLS clients past the HTTPS service's
            // auth policy.
            let vip = s(svc, "_vip");
            let clash = state
                .of_kind(Kind::Service)
                .filter(|o| s(o, "_vip") == vip && s(o, "id") != sid)
                .flat_map(|o| state.children(s(o, "id"), Kind::Listener))
                .find(|l| l["port"].as_u64() == Some(port) && s(l, "protocol") != protocol);
            if let Some(l) = clash {
                return Err(ApiError::conflict(
                    "LISTENER",
                    s(l, "id"),
                    format!(
                        "port {port} of this service's address {vip} is used by a {} listener of service {}; one address and port serve one protocol",
                        s(l, "protocol"),
                        s(l, "serviceId")
                    ),
                ));
            }
            let action = c.action("defaultAction", &input["defaultAction"])?;
            let (id, mut rec) = c.record(
                Kind::Listener,
                json!({
                    "name": name, "protocol": protocol, "port": port, "defaultAction": action,
                    "serviceId": sid, "serviceArn": s(svc, "arn"),
                }),
            );
            rec["arn"] = format!("{}/listener/{id}", s(svc, "arn")).into();
            write(vec![Change::Put(id, rec.clone())], rec)
        }
        "GetListener" => Ok(Outcome::Read(listener_of(state, input)?.clone())),
        "ListListeners" => {
            let svc = state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
            let items = sorted(state.children(s(svc, "id"), Kind::Listener));
            c.page(items, Value::clone)
        }
        "UpdateListener" => {
            let l = listener_of(state, input)?;
            let mut rec = c.touched(l);
            rec["defaultAction"] = c.action("defaultAction", &input["defaultAction"])?;
            write(vec![Change::Put(s(l, "id").to_owned(), rec.clone())], rec)
        }
        "DeleteListener" => {
            let l = listener_of(state, input)?;
            let mut changes = vec![Change::Delete(s(l, "id").to_owned())];
            for r in state.children(s(l, "id"), Kind::Rule) {
                changes.push(Change::Delete(s(r, "id").to_owned()));
                changes.extend(dependents(state, s(r, "id")));
            }
            changes.extend(dependents(state, s(l, "id")));
            write(changes, json!({}))
        }
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}
