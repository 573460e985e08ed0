//! The target groups and targets operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateTargetGroup", create),
    ("GetTargetGroup", get),
    ("ListTargetGroups", list),
    ("UpdateTargetGroup", update),
    ("DeleteTargetGroup", delete),
    ("RegisterTargets", register),
    ("DeregisterTargets", deregister),
    ("ListTargets", list_targets),
];

/// Members of `config` that a LAMBDA group has no use for.
const NOT_FOR_LAMBDA: [&str; 6] = [
    "port",
    "protocol",
    "protocolVersion",
    "vpcIdentifier",
    "ipAddressType",
    "healthCheck",
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let q = &c.settings.quotas;
    c.check_new(
        Kind::TargetGroup,
        "target group",
        "target-groups",
        q.target_groups,
    )?;
    let ty = c.get("type");
    let config = if ty == "LAMBDA" {
        lambda_config(&c.input["config"])?
    } else {
        hosts_config(c, ty)?
    };
    let (id, rec) = c.record(
        Kind::TargetGroup,
        json!({
            "name": c.get("name"), "type": ty, "config": config, "status": "ACTIVE", "_targets": [],
        }),
    );
    c.created(id, rec, "targetgroup")
}

/// A LAMBDA group's `config`: only the event structure version, V1 unless
/// given.
fn lambda_config(given: &Value) -> Result<Value, ApiError> {
    let mut config = if given.is_object() {
        given.clone()
    } else {
        json!({})
    };
    if let Some(k) = NOT_FOR_LAMBDA.iter().find(|k| config.get(**k).is_some()) {
        return Err(ApiError::field(
            &format!("config.{k}"),
            "does not apply to LAMBDA target groups",
        ));
    }
    if config.get("lambdaEventStructureVersion").is_none() {
        config["lambdaEventStructureVersion"] = "V1".into();
    }
    Ok(config)
}

/// The `config` of a group of `ty` IP, INSTANCE or ALB: port, protocol and
/// an existing VPC required; IPV4 and HTTP1 unless given.
fn hosts_config(c: &Ctx<'_>, ty: &str) -> Result<Value, ApiError> {
    let mut config = c.input["config"].clone();
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
        c.settings,
        "config.vpcIdentifier",
        s(&config, "vpcIdentifier"),
    )?;
    if config.get("ipAddressType").is_none() && ty == "IP" {
        config["ipAddressType"] = "IPV4".into();
    }
    if config.get("protocolVersion").is_none() {
        config["protocolVersion"] = "HTTP1".into();
    }
    Ok(config)
}

fn get(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let tg = c
        .state
        .resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
    Ok(Outcome::Read(tg_view(c.state, tg)))
}

fn list(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let input = c.input;
    let items: Vec<&Value> = sorted(c.state.of_kind(Kind::TargetGroup))
        .into_iter()
        .filter(|t| {
            input
                .get("vpcIdentifier")
                .is_none_or(|v| t["config"]["vpcIdentifier"] == *v)
        })
        .filter(|t| input.get("targetGroupType").is_none_or(|v| t["type"] == *v))
        .collect();
    c.page(items, |t| {
        let mut v = tg_view(c.state, t);
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

fn update(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let tg = c
        .state
        .resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
    let mut rec = c.touched(tg);
    rec["config"]["healthCheck"] = c.input["healthCheck"].clone();
    write(
        vec![Change::Put(s(tg, "id").to_owned(), rec.clone())],
        tg_view(c.state, &rec),
    )
}

fn delete(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let state = c.state;
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

fn register(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let limit = c.settings.quotas.targets_per_target_group;
    let tg = c
        .state
        .resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
    let ty = s(tg, "type").to_owned();
    edit_targets(c, |targets, tid, port| {
        if let Some(why) = not_a_target_of(&ty, targets, tid) {
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

/// Why `tid` cannot be a target of a group of type `ty` holding `targets`.
fn not_a_target_of(ty: &str, targets: &[Value], tid: &str) -> Option<String> {
    match ty {
        "IP" => tid
            .parse::<std::net::Ipv4Addr>()
            .is_err()
            .then(|| format!("{tid} is not an IPv4 address")),
        "INSTANCE" => {
            (!tid.starts_with("i-")).then(|| format!("{tid} is not an instance id (i-...)"))
        }
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
        // Stored groups were validated against the model's enum; a type
        // added there later gets no silent default here.
        other => Some(format!("target group type {other:?} takes no targets here")),
    }
}

fn deregister(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    edit_targets(c, |targets, tid, port| {
        let before = targets.len();
        targets.retain(|x| !(s(x, "id") == tid && x["port"] == *port));
        if targets.len() < before {
            Ok(())
        } else {
            Err(("TargetNotFound", "the target is not registered".into()))
        }
    })
}

fn list_targets(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let tg = c
        .state
        .resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
    let used = !tg_users(c.state, s(tg, "id")).is_empty();
    let filter: Vec<&Value> = c.input["targets"]
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
                    s(f, "id") == s(t, "id") && f.get("port").is_none_or(|p| *p == t["port"])
                })
        })
        .map(|t| {
            let mut v = t.clone();
            // A target in use gets its health from the data path (the
            // daemon fills `_group` targets in); until a snapshot holds
            // it, it is INITIAL.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;
    use super::*;

    fn ip_group(api: &mut Api, name: &str, vpc: &str) -> Result<Value, ApiError> {
        api.call(
            "CreateTargetGroup",
            json!({"name": name, "type": "IP",
                "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": vpc}}),
        )
    }

    #[test]
    fn groups_take_the_config_their_type_needs() {
        let mut api = Api::new();
        let tg = ip_group(&mut api, "group-a", "vpc-aa").unwrap();
        assert_eq!(tg["config"]["ipAddressType"], "IPV4", "{tg}");
        assert_eq!(tg["config"]["protocolVersion"], "HTTP1", "{tg}");
        let e = ip_group(&mut api, "group-b", "vpc-nowhere").unwrap_err();
        assert!(e.message.contains("config.vpcIdentifier"), "{e}");
        let e = api.err(
            "CreateTargetGroup",
            json!({"name": "group-c", "type": "INSTANCE", "config": {"port": 80, "protocol": "HTTP"}}),
        );
        assert!(
            e.message.contains("config.vpcIdentifier: is required"),
            "{e}"
        );
        let e = api.err(
            "CreateTargetGroup",
            json!({"name": "fn-a", "type": "LAMBDA", "config": {"port": 80}}),
        );
        assert!(
            e.message.contains("config.port: does not apply to LAMBDA"),
            "{e}"
        );
        let f = api.ok(
            "CreateTargetGroup",
            json!({"name": "fn-a", "type": "LAMBDA"}),
        );
        assert_eq!(f["config"]["lambdaEventStructureVersion"], "V1", "{f}");
        let listed = api.ok("ListTargetGroups", json!({"targetGroupType": "LAMBDA"}));
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
        let listed = api.ok("ListTargetGroups", json!({"vpcIdentifier": "vpc-aa"}));
        assert_eq!(listed["items"][0]["port"], 8080, "{listed}");
    }

    #[test]
    fn targets_are_checked_per_type_and_reported_one_by_one() {
        let mut api = Api::with_quotas(Quotas {
            targets_per_target_group: 2,
            ..Quotas::default()
        });
        let tg = ip_group(&mut api, "group-a", "vpc-aa").unwrap()["id"].clone();
        let out = api.ok(
            "RegisterTargets",
            json!({"targetGroupIdentifier": tg, "targets": [
                {"id": "10.0.16.10"}, {"id": "i-0123456789abcdef0"}, {"id": "10.0.16.11", "port": 9090},
                {"id": "10.0.16.12"}]}),
        );
        assert_eq!(out["successful"].as_array().unwrap().len(), 2, "{out}");
        assert_eq!(
            out["successful"][0]["port"], 8080,
            "the group's port: {out}"
        );
        let failed = Api::failure_codes(&out);
        assert_eq!(failed, ["InvalidTarget", "ServiceQuotaExceeded"], "{out}");
        let listed = api.ok("ListTargets", json!({"targetGroupIdentifier": tg}));
        assert_eq!(listed["items"][0]["status"], "UNUSED", "{listed}");
        let out = api.ok(
            "DeregisterTargets",
            json!({"targetGroupIdentifier": tg, "targets": [{"id": "10.0.16.10"}, {"id": "10.0.16.99"}]}),
        );
        assert_eq!(
            out["unsuccessful"][0]["failureCode"], "TargetNotFound",
            "{out}"
        );
        let listed = api.ok("ListTargets", json!({"targetGroupIdentifier": tg}));
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");

        let f = api.ok(
            "CreateTargetGroup",
            json!({"name": "fn-a", "type": "LAMBDA"}),
        )["id"]
            .clone();
        let arn = "arn:aws:lambda:us-east-1:111122223333:function:one";
        let out = api.ok(
            "RegisterTargets",
            json!({"targetGroupIdentifier": f, "targets": [{"id": arn},
                {"id": "arn:aws:lambda:us-east-1:111122223333:function:two"}]}),
        );
        assert_eq!(
            out["unsuccessful"][0]["failureMessage"], "a LAMBDA target group holds one function",
            "{out}"
        );
    }

    #[test]
    fn a_group_in_use_is_kept_and_shows_its_services() {
        let mut api = Api::new();
        let [_, svc, l, tg] = api.service_in_network();
        let got = api.ok("GetTargetGroup", json!({"targetGroupIdentifier": tg}));
        assert_eq!(got["serviceArns"].as_array().unwrap().len(), 1, "{got}");
        api.ok(
            "RegisterTargets",
            json!({"targetGroupIdentifier": tg, "targets": [{"id": "10.0.16.10"}]}),
        );
        let listed = api.ok("ListTargets", json!({"targetGroupIdentifier": tg}));
        assert_eq!(listed["items"][0]["status"], "INITIAL", "{listed}");
        let e = api.err("DeleteTargetGroup", json!({"targetGroupIdentifier": tg}));
        assert_eq!(e.code, "ConflictException", "{e}");
        assert!(e.message.contains(&l), "{e}");
        api.ok(
            "UpdateListener",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l,
                "defaultAction": {"fixedResponse": {"statusCode": 404}}}),
        );
        let hc = json!({"enabled": true, "path": "/health"});
        let got = api.ok(
            "UpdateTargetGroup",
            json!({"targetGroupIdentifier": tg, "healthCheck": hc}),
        );
        assert_eq!(got["config"]["healthCheck"]["path"], "/health", "{got}");
        api.ok("DeleteTargetGroup", json!({"targetGroupIdentifier": tg}));
    }
}
