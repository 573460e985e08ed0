//! The target groups and targets operations of the VPC Lattice API.

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
        "CreateTargetGroup" => {
            c.check_new(
                Kind::TargetGroup,
                "target group",
                "target-groups",
                q.target_groups,
            )?;
            let name = c.get("name");
            let ty = c.get("type");
            let mut config = input["config"].clone();
            if ty == "LAMBDA" {
                if !config.is_object() {
                    config = json!({});
                }
                for k in [
                    "port",
                    "protocol",
                    "protocolVersion",
                    "vpcIdentifier",
                    "ipAddressType",
                    "healthCheck",
                ] {
                    if config.get(k).is_some() {
                        return Err(ApiError::field(
                            &format!("config.{k}"),
                            "does not apply to LAMBDA target groups",
                        ));
                    }
                }
                if config.get("lambdaEventStructureVersion").is_none() {
                    config["lambdaEventStructureVersion"] = "V1".into();
                }
            } else {
                if !config.is_object() {
                    return Err(ApiError::field(
                        "config",
                        format!("is required for {ty} target groups"),
                    ));
                }
                for k in ["port", "protocol", "vpcIdentifier"] {
                    if config.get(k).is_none() {
                        return Err(ApiError::field(
                            &format!("config.{k}"),
                            format!("is required for {ty} target groups"),
                        ));
                    }
                }
                check_vpc(
                    settings,
                    "config.vpcIdentifier",
                    s(&config, "vpcIdentifier"),
                )?;
                if config.get("ipAddressType").is_none() && ty == "IP" {
                    config["ipAddressType"] = "IPV4".into();
                }
                if config.get("protocolVersion").is_none() {
                    config["protocolVersion"] = "HTTP1".into();
                }
            }
            let (id, rec) = c.record(
                Kind::TargetGroup,
                json!({
                    "name": name, "type": ty, "config": config, "status": "ACTIVE", "_targets": [],
                }),
            );
            c.created(id, rec, "targetgroup")
        }
        "GetTargetGroup" => {
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            Ok(Outcome::Read(tg_view(state, tg)))
        }
        "ListTargetGroups" => {
            let items: Vec<&Value> = sorted(state.of_kind(Kind::TargetGroup))
                .into_iter()
                .filter(|t| {
                    input
                        .get("vpcIdentifier")
                        .is_none_or(|v| t["config"]["vpcIdentifier"] == *v)
                })
                .filter(|t| input.get("targetGroupType").is_none_or(|v| t["type"] == *v))
                .collect();
            c.page(items, |t| {
                let mut v = tg_view(state, t);
                for k in [
                    "port",
                    "protocol",
                    "vpcIdentifier",
                    "ipAddressType",
                    "lambdaEventStructureVersion",
                ] {
                    if let Some(x) = t["config"].get(k) {
                        v[k] = x.clone();
                    }
                }
                v
            })
        }
        "UpdateTargetGroup" => {
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            let mut rec = c.touched(tg);
            rec["config"]["healthCheck"] = input["healthCheck"].clone();
            write(
                vec![Change::Put(s(tg, "id").to_owned(), rec.clone())],
                tg_view(state, &rec),
            )
        }
        "DeleteTargetGroup" => {
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            let id = s(tg, "id");
            let users = tg_users(state, id);
            if !users.is_empty() {
                return Err(ApiError::conflict(
                    "TARGET_GROUP",
                    id,
                    format!(
                        "target group {id} is used by {}; change those actions first",
                        users.join(", ")
                    ),
                ));
            }
            let mut out = tg.clone();
            out["status"] = "DELETE_IN_PROGRESS".into();
            let mut changes = vec![Change::Delete(id.to_owned())];
            changes.extend(dependents(state, id));
            write(changes, out)
        }
        "RegisterTargets" => {
            let limit = q.targets_per_target_group;
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            let ty = s(tg, "type").to_owned();
            edit_targets(c, |targets, tid, port| {
                let bad = match ty.as_str() {
                    "IP" => tid
                        .parse::<std::net::Ipv4Addr>()
                        .is_err()
                        .then(|| format!("{tid} is not an IPv4 address")),
                    "INSTANCE" => (!tid.starts_with("i-"))
                        .then(|| format!("{tid} is not an instance id (i-...)")),
                    "LAMBDA" => {
                        if !tid.starts_with("arn:") || !tid.contains(":function:") {
                            Some(format!("{tid} is not a function ARN"))
                        } else if targets.iter().any(|x| s(x, "id") != tid) {
                            Some("a LAMBDA target group holds one function".into())
                        } else {
                            None
                        }
                    }
                    "ALB" => (!tid.starts_with("arn:") || !tid.contains(":loadbalancer/"))
                        .then(|| format!("{tid} is not a load balancer ARN")),
                    // Stored groups were validated against the model's
                    // enum; a type added there later gets no silent
                    // default here.
                    other => Some(format!("target group type {other:?} takes no targets here")),
                };
                if let Some(why) = bad {
                    return Err(("InvalidTarget", why));
                }
                if !targets
                    .iter()
                    .any(|x| s(x, "id") == tid && x["port"] == *port)
                {
                    if targets.len() >= limit {
                        return Err((
                            "ServiceQuotaExceeded",
                            "targets-per-target-group quota reached".into(),
                        ));
                    }
                    targets.push(json!({"id": tid, "port": port}));
                }
                Ok(())
            })
        }
        "DeregisterTargets" => edit_targets(c, |targets, tid, port| {
            let before = targets.len();
            targets.retain(|x| !(s(x, "id") == tid && x["port"] == *port));
            if targets.len() < before {
                Ok(())
            } else {
                Err(("TargetNotFound", "the target is not registered".into()))
            }
        }),
        "ListTargets" => {
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            let used = !tg_users(state, s(tg, "id")).is_empty();
            let filter: Vec<&Value> = input["targets"]
                .as_array()
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            let targets: Vec<Value> = tg["_targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| {
                    filter.is_empty()
                        || filter.iter().any(|f| {
                            s(f, "id") == s(t, "id")
                                && f.get("port").is_none_or(|p| *p == t["port"])
                        })
                })
                .map(|t| {
                    let mut v = t.clone();
                    // A target in use gets its health from the data path
                    // (the daemon fills `_group` targets in); until a
                    // snapshot holds it, it is INITIAL.
                    let (status, reason) = if used {
                        v["_group"] = tg["name"].clone();
                        ("INITIAL", "Elb.InitialHealthChecking")
                    } else {
                        ("UNUSED", "TargetGroupNotInUse")
                    };
                    v["status"] = status.into();
                    v["reasonCode"] = reason.into();
                    v["_key"] = format!("{}:{}", s(t, "id"), t["port"]).into();
                    v
                })
                .collect();
            c.page(targets.iter().collect(), Value::clone)
        }
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}

/// Register/Deregister: applies `step` to each requested target of the
/// group named in the input (the port defaults to the group's) and reports
/// each target as successful or not.
fn edit_targets(
    c: &Ctx<'_>,
    mut step: impl FnMut(&mut Vec<Value>, &str, &Value) -> Result<(), (&'static str, String)>,
) -> Result<Outcome, ApiError> {
    let tg = c
        .state
        .resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
    let default_port = tg["config"]["port"].clone();
    let mut rec = c.touched(tg);
    let mut targets: Vec<Value> = rec["_targets"].as_array().cloned().unwrap_or_default();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for t in c.input["targets"].as_array().into_iter().flatten() {
        let port = t
            .get("port")
            .cloned()
            .unwrap_or_else(|| default_port.clone());
        let tid = s(t, "id");
        match step(&mut targets, tid, &port) {
            Ok(()) => ok.push(json!({"id": tid, "port": port})),
            Err((code, message)) => failed.push(
                json!({"id": tid, "port": port, "failureCode": code, "failureMessage": message}),
            ),
        }
    }
    rec["_targets"] = targets.into();
    write(
        vec![Change::Put(s(tg, "id").to_owned(), rec)],
        json!({"successful": ok, "unsuccessful": failed}),
    )
}

/// Listeners and rules whose actions use target group `id`.
fn tg_users(state: &State, id: &str) -> Vec<String> {
    state
        .idx
        .tg_users
        .get(id)
        .into_iter()
        .flatten()
        .map(|user| {
            let what = if user.starts_with(Kind::Rule.prefix()) {
                "rule"
            } else {
                "listener"
            };
            format!("{what} {user}")
        })
        .collect()
}

fn tg_view(state: &State, tg: &Value) -> Value {
    let services: BTreeSet<&str> = state
        .idx
        .tg_users
        .get(s(tg, "id"))
        .into_iter()
        .flatten()
        .filter_map(|user| state.records.get(user))
        .filter_map(|r| state.records.get(s(r, "serviceId")))
        .map(|svc| s(svc, "arn"))
        .collect();
    let mut v = tg.clone();
    v["serviceArns"] = services.into_iter().collect::<Vec<_>>().into();
    v
}
