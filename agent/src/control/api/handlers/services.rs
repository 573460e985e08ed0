//! The services operations of the VPC Lattice API.

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
        "CreateService" => {
            c.check_new(Kind::Service, "service", "services", q.services)?;
            let name = c.get("name");
            // One VIP per service while they last; then the least used one,
            // shared (requests are told apart by the service's DNS name).
            let load: BTreeMap<u32, usize> = (u32::from(VIP_FIRST)..=u32::from(VIP_LAST))
                .map(|v| {
                    let ip = std::net::Ipv4Addr::from(v).to_string();
                    (v, state.idx.vip_load.get(&ip).map_or(0, |n| *n as usize))
                })
                .collect();
            let vip = load
                .iter()
                .min_by_key(|(addr, n)| (**n, **addr))
                .map(|(addr, _)| std::net::Ipv4Addr::from(*addr).to_string())
                .unwrap_or_default();
            let (id, mut rec) = c.record(
                Kind::Service,
                json!({
                    "name": name,
                    "authType": input["authType"].as_str().unwrap_or("NONE"),
                    "status": "ACTIVE",
                    "_vip": vip,
                }),
            );
            rec["dnsEntry"] = json!({
                "domainName": format!("{name}-{}.{}", id.trim_start_matches("svc-"), settings.naming.dns_suffix),
            });
            for k in ["customDomainName", "certificateArn"] {
                if let Some(v) = input.get(k) {
                    rec[k] = v.clone();
                }
            }
            c.created(id, rec, "service")
        }
        "GetService" => c.read(Kind::Service, "serviceIdentifier"),
        "ListServices" => c.page(sorted(state.of_kind(Kind::Service)), Value::clone),
        "UpdateService" => c.update(
            Kind::Service,
            "serviceIdentifier",
            &["authType", "certificateArn"],
        ),
        "DeleteService" => {
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
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}
