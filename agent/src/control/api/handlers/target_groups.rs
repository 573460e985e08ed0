//! The target groups and targets operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateTargetGroup", create),
    ("GetTargetGroup", |c| {
        let tg = c.resolve::<rec::TargetGroup>(c.get("targetGroupIdentifier"))?;
        let mut v = tg_view(c.state, tg);
        if let Some(hc) = applied_health(c, tg) {
            v["config"]["healthCheck"] = hc;
        }
        Ok(Outcome::Read(v))
    }),
    ("ListTargetGroups", list),
    ("UpdateTargetGroup", |c| {
        let tg = c.resolve::<rec::TargetGroup>(c.get("targetGroupIdentifier"))?;
        let mut tg = c.touched(tg);
        tg.config.health_check = Some(c.req("healthCheck")?);
        let mut out = tg_view(c.state, &tg);
        if let Some(hc) = applied_health(c, &tg) {
            out["config"]["healthCheck"] = hc;
        }
        write(vec![Change::Put(tg.id().to_owned(), tg.into_record())], out)
    }),
    ("DeleteTargetGroup", delete),
    ("RegisterTargets", register),
    ("DeregisterTargets", deregister),
    ("ListTargets", list_targets),
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let q = &c.settings.quotas;
    c.check_new::<rec::TargetGroup>("target group", "target-groups", q.target_groups)?;
    let ty: cfg::TargetGroupType = c.req("type")?;
    let given = c.opt("config")?;
    let config = match ty {
        cfg::TargetGroupType::Lambda => lambda_config(given)?,
        _ => hosts_config(c, ty, given)?,
    };
    put(rec::TargetGroup {
        meta: c.meta_at(Kind::TargetGroup, "targetgroup")?,
        name: c.get("name").to_owned(),
        type_: ty,
        config,
        status: "ACTIVE".into(),
        targets: vec![],
    })
}

/// A LAMBDA group's `config`: only the event structure version, V1 unless
/// given.
fn lambda_config(
    given: Option<cfg::TargetGroupConfig>,
) -> Result<cfg::TargetGroupConfig, ApiError> {
    let mut config = given.unwrap_or_default();
    let not_for_lambda = [
        ("port", config.port.is_some()),
        ("protocol", config.protocol.is_some()),
        ("protocolVersion", config.protocol_version.is_some()),
        ("vpcIdentifier", config.vpc_identifier.is_some()),
        ("ipAddressType", config.ip_address_type.is_some()),
        ("healthCheck", config.health_check.is_some()),
    ];
    if let Some((k, _)) = not_for_lambda.iter().find(|(_, given)| *given) {
        return Err(ApiError::field(
            &format!("config.{k}"),
            "does not apply to LAMBDA target groups",
        ));
    }
    config
        .lambda_event_structure_version
        .get_or_insert_with(|| "V1".into());
    Ok(config)
}

/// The `config` of a group of `ty` IP, INSTANCE or ALB: port, protocol and
/// an existing VPC required; IPV4 and HTTP1 unless given.
fn hosts_config(
    c: &Ctx<'_>,
    ty: cfg::TargetGroupType,
    given: Option<cfg::TargetGroupConfig>,
) -> Result<cfg::TargetGroupConfig, ApiError> {
    let required = || format!("is required for {} target groups", wire(&ty));
    let mut config = given.ok_or_else(|| ApiError::field("config", required()))?;
    for (k, given) in [
        ("port", config.port.is_some()),
        ("protocol", config.protocol.is_some()),
        ("vpcIdentifier", config.vpc_identifier.is_some()),
    ] {
        if !given {
            return Err(ApiError::field(&format!("config.{k}"), required()));
        }
    }
    let vpc = config.vpc_identifier.as_deref().unwrap_or_default();
    check_vpc(c, "config.vpcIdentifier", vpc)?;
    if ty == cfg::TargetGroupType::Ip {
        config.ip_address_type.get_or_insert_with(|| "IPV4".into());
    }
    config
        .protocol_version
        .get_or_insert_with(|| "HTTP1".into());
    Ok(config)
}

fn list(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let vpc = c.input["vpcIdentifier"].as_str();
    let ty: Option<cfg::TargetGroupType> = c.opt("targetGroupType")?;
    let items = sorted(c.mine::<rec::TargetGroup>().filter(|t| {
        vpc.is_none_or(|v| t.config.vpc_identifier.as_deref() == Some(v))
            && ty.is_none_or(|ty| t.type_ == ty)
    }));
    c.page_of(&items, |t| {
        let mut v = tg_view(c.state, t);
        // The summary lifts the config's members to the top.
        if let Value::Object(config) = serde_json::to_value(&t.config).unwrap_or_default() {
            for k in [
                "port",
                "protocol",
                "vpcIdentifier",
                "ipAddressType",
                "lambdaEventStructureVersion",
            ] {
                if let Some(x) = config.get(k) {
                    v[k] = x.clone();
                }
            }
        }
        v
    })
}

fn delete(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let state = c.state;
    let tg = c.resolve::<rec::TargetGroup>(c.get("targetGroupIdentifier"))?;
    let id = tg.id();
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
    let mut out = tg.to_value();
    out["status"] = "DELETE_IN_PROGRESS".into();
    write(deleted(state, tg), out)
}

fn register(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let limit = c.settings.quotas.targets_per_target_group;
    edit_targets(c, |tg, targets, t| {
        if let Some(why) = not_a_target_of(tg, targets, &t.id) {
            return Err(("InvalidTarget", why));
        }
        if !targets.contains(t) {
            if targets.len() >= limit {
                return Err((
                    "ServiceQuotaExceeded",
                    "targets-per-target-group quota reached".into(),
                ));
            }
            targets.push(t.clone());
        }
        Ok(())
    })
}

/// Why `tid` cannot be a target of group `tg` (its type and config)
/// holding `targets`.
fn not_a_target_of(
    (ty, config): (cfg::TargetGroupType, &cfg::TargetGroupConfig),
    targets: &[cfg::Target],
    tid: &str,
) -> Option<String> {
    match ty {
        cfg::TargetGroupType::Ip => {
            let v6 = config.ip_address_type.as_deref() == Some("IPV6");
            crate::control::plan::target_address(tid, v6).err()
        }
        cfg::TargetGroupType::Instance => {
            (!tid.starts_with("i-")).then(|| format!("{tid} is not an instance id (i-...)"))
        }
        cfg::TargetGroupType::Lambda => {
            if !tid.starts_with("arn:") || !tid.contains(":function:") {
                Some(format!("{tid} is not a function ARN"))
            } else if targets.iter().any(|x| x.id != tid) {
                Some("a LAMBDA target group holds one function".into())
            } else {
                None
            }
        }
        cfg::TargetGroupType::Alb => (!tid.starts_with("arn:") || !tid.contains(":loadbalancer/"))
            .then(|| format!("{tid} is not a load balancer ARN")),
    }
}

fn deregister(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    edit_targets(c, |_, targets, t| {
        let before = targets.len();
        targets.retain(|x| x != t);
        if targets.len() < before {
            Ok(())
        } else {
            Err(("TargetNotFound", "the target is not registered".into()))
        }
    })
}

fn list_targets(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let tg = c.resolve::<rec::TargetGroup>(c.get("targetGroupIdentifier"))?;
    let used = !tg_users(c.state, tg.id()).is_empty();
    let filter: Vec<cfg::Target> = c.opt("targets")?.unwrap_or_default();
    let targets: Vec<&cfg::Target> = tg
        .targets
        .iter()
        .filter(|t| {
            filter.is_empty()
                || filter
                    .iter()
                    .any(|f| f.id == t.id && f.port.is_none_or(|p| Some(p) == t.port))
        })
        .collect();
    c.page(
        &targets,
        |t| target_key(t),
        |t| {
            let mut v = json!({"id": t.id, "port": t.port});
            // A target in use gets its health from the data path (the daemon
            // fills `_group` targets in); until a snapshot holds it, it is
            // INITIAL.
            let (status, reason) = if used {
                v["_group"] = tg.name.clone().into();
                ("INITIAL", "Elb.InitialHealthChecking")
            } else {
                ("UNUSED", "TargetGroupNotInUse")
            };
            v["status"] = status.into();
            v["reasonCode"] = reason.into();
            v
        },
    )
}

/// A target's page token.
fn target_key(t: &cfg::Target) -> String {
    match t.port {
        Some(p) => format!("{}:{p}", t.id),
        None => t.id.clone(),
    }
}

/// Register/Deregister: applies `step` to each requested target of the
/// group named in the input (the port defaults to the group's) and reports
/// each target as successful or not.
fn edit_targets(
    c: &Ctx<'_>,
    mut step: impl FnMut(
        (cfg::TargetGroupType, &cfg::TargetGroupConfig),
        &mut Vec<cfg::Target>,
        &cfg::Target,
    ) -> Result<(), (&'static str, String)>,
) -> Result<Outcome, ApiError> {
    let tg = c.resolve::<rec::TargetGroup>(c.get("targetGroupIdentifier"))?;
    let mut tg = c.touched(tg);
    let asked: Vec<cfg::Target> = c.req("targets")?;
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for mut t in asked {
        t.port = t.port.or(tg.config.port);
        let answer = json!({"id": t.id, "port": t.port});
        match step((tg.type_, &tg.config), &mut tg.targets, &t) {
            Ok(()) => ok.push(answer),
            Err((code, message)) => {
                let mut f = answer;
                f["failureCode"] = code.into();
                f["failureMessage"] = message.into();
                failed.push(f);
            }
        }
    }
    write(
        vec![Change::Put(tg.id().to_owned(), tg.into_record())],
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

/// A group as Get and List answer it: with the services that use it.
/// The health check that applies to group `tg`, every default filled in, as
/// GetTargetGroup shows it: what the planner makes of the group's own
/// settings (one definition of the defaults), in the API's shape. `None`
/// for a LAMBDA group.
fn applied_health(c: &Ctx<'_>, tg: &rec::TargetGroup) -> Option<Value> {
    use latticed_proxy::routing::TargetVersion;
    let config = Config {
        target_groups: vec![State::tg_cfg(tg)],
        ..Config::default()
    };
    let plan = crate::control::plan::plan_with(
        &config,
        &c.settings.netns_dir,
        crate::control::plan::Missing::Skip,
    )
    .ok()?;
    let check = plan.target_groups.get(tg.name.as_str())?.health.as_ref()?;
    let mut v = json!({
        "enabled": check.enabled,
        "healthCheckIntervalSeconds": check.interval.as_secs(),
        "healthCheckTimeoutSeconds": check.timeout.as_secs(),
        "healthyThresholdCount": check.healthy_threshold,
        "unhealthyThresholdCount": check.unhealthy_threshold,
    });
    if let Some(p) = check.port {
        v["port"] = p.into();
    }
    // A TCP group checked by connecting has no HTTP to describe.
    if !check.tcp {
        v["protocol"] = if check.https { "HTTPS" } else { "HTTP" }.into();
        v["protocolVersion"] = match check.version {
            TargetVersion::Http1 => "HTTP1",
            _ => "HTTP2",
        }
        .into();
        v["path"] = check.path.as_str().into();
        let codes: Vec<String> = check
            .matcher
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        v["matcher"] = json!({"httpCode": codes.join(",")});
    }
    Some(v)
}

fn tg_view(state: &State, tg: &rec::TargetGroup) -> Value {
    let services: BTreeSet<&str> = state
        .idx
        .tg_users
        .get(tg.id())
        .into_iter()
        .flatten()
        .filter_map(|user| match state.records.get(user) {
            Some(Record::Listener(l)) => Some(l.service_id.as_str()),
            Some(Record::Rule(r)) => Some(r.service_id.as_str()),
            _ => None,
        })
        .filter_map(|id| state.get::<rec::Service>(id))
        .map(|svc| svc.arn())
        .collect();
    let mut v = tg.to_value();
    v["serviceArns"] = services.into_iter().collect::<Vec<_>>().into();
    v
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;
    use super::*;

    /// GetTargetGroup shows the health check that applies, defaults and
    /// all, and what the user set; a TCP group checked by connecting shows
    /// no HTTP members.
    #[test]
    fn the_health_check_that_applies_is_shown() {
        let mut api = Api::new();
        let tg = ip_group(&mut api, "web", "vpc-aa").unwrap();
        let get = |api: &mut Api, id: &Value| {
            api.ok("GetTargetGroup", json!({"targetGroupIdentifier": id}))["config"]["healthCheck"]
                .clone()
        };
        assert_eq!(
            get(&mut api, &tg["id"]),
            json!({"enabled": true, "protocol": "HTTP", "protocolVersion": "HTTP1", "path": "/",
                "healthCheckIntervalSeconds": 30, "healthCheckTimeoutSeconds": 5,
                "healthyThresholdCount": 5, "unhealthyThresholdCount": 2, "matcher": {"httpCode": "200"}})
        );
        let out = api.ok(
            "UpdateTargetGroup",
            json!({"targetGroupIdentifier": tg["id"], "healthCheck": {"path": "/health",
                "healthCheckIntervalSeconds": 10, "matcher": {"httpCode": "200-299,302"}}}),
        );
        let hc = get(&mut api, &tg["id"]);
        assert_eq!(
            out["config"]["healthCheck"], hc,
            "the update answers what Get shows"
        );
        assert_eq!(hc["path"], "/health");
        assert_eq!(hc["healthCheckIntervalSeconds"], 10);
        assert_eq!(hc["healthCheckTimeoutSeconds"], 5);
        assert_eq!(hc["matcher"]["httpCode"], "200-299,302");
        let tcp = api.ok(
            "CreateTargetGroup",
            json!({"name": "db-group", "type": "IP",
                "config": {"port": 5432, "protocol": "TCP", "vpcIdentifier": "vpc-aa"}}),
        );
        let hc = get(&mut api, &tcp["id"]);
        assert_eq!(hc["enabled"], true, "{hc}");
        assert!(
            hc.get("path").is_none() && hc.get("protocol").is_none(),
            "{hc}"
        );
    }

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
    fn an_ipv6_group_takes_ipv6_targets_and_an_ipv4_group_ipv4_ones() {
        let mut api = Api::new();
        let six = api.ok(
            "CreateTargetGroup",
            json!({"name": "six", "type": "IP", "config": {"port": 8080, "protocol": "HTTP",
                "vpcIdentifier": "vpc-aa", "ipAddressType": "IPV6"}}),
        );
        assert_eq!(six["config"]["ipAddressType"], "IPV6");
        let four = ip_group(&mut api, "four", "vpc-aa").unwrap();
        assert_eq!(four["config"]["ipAddressType"], "IPV4");
        let register = |api: &mut Api, tg: &Value, id: &str| {
            let out = api.ok(
                "RegisterTargets",
                json!({"targetGroupIdentifier": tg["id"], "targets": [{"id": id}]}),
            );
            Api::failure_codes(&out).join(",")
        };
        assert_eq!(register(&mut api, &six, "fd00:6::10"), "");
        assert_eq!(register(&mut api, &six, "10.0.16.10"), "InvalidTarget");
        assert_eq!(register(&mut api, &four, "fd00:6::10"), "InvalidTarget");
        assert_eq!(register(&mut api, &four, "10.0.16.10"), "");
        let listed = api.ok("ListTargets", json!({"targetGroupIdentifier": six["id"]}));
        assert_eq!(listed["items"][0]["id"], "fd00:6::10", "{listed}");
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
