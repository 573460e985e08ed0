//! DESIGN.md's walkthrough as AWS CLI calls, shared by `cargo xtask demo`
//! and the walkthrough test so the two never drift apart.
//!
//! svc1 (HTTPS) splits 2:1 between an instance in `vpc_a` (placed by the
//! inventory, see [`inventory`]) and a function, with `/to-instance` and
//! `/to-function` rules; svc2 (HTTP) forwards to the app in `vpc_b`; one
//! service network holds both, is associated with both VPCs and logs every
//! request to `log_group`.

use serde_json::Value;

/// The instance the inventory places at 10.0.16.10 in the first VPC.
pub const INSTANCE: &str = "i-0a1b2c3d4e5f60718";
/// The function (`scripts/lambda/functions/hello.js`).
pub const FUNCTION: &str = "arn:aws:lambda:us-east-1:111122223333:function:hello";

/// What the walkthrough created.
#[derive(Debug, Clone)]
pub struct Built {
    /// svc1's generated DNS name.
    pub svc1_dns: String,
    /// svc2's generated DNS name.
    pub svc2_dns: String,
    /// The INSTANCE target group's id.
    pub instances: String,
}

/// The inventory placing [`INSTANCE`] in `vpc_a`.
pub fn inventory(vpc_a: &str) -> String {
    serde_json::json!({"instances": {INSTANCE: {"vpc": vpc_a, "address": "10.0.16.10"}}})
        .to_string()
}

fn forward(groups: &[(&str, u32)]) -> String {
    let list: Vec<String> = groups
        .iter()
        .map(|(tg, w)| format!(r#"{{"targetGroupIdentifier":"{tg}","weight":{w}}}"#))
        .collect();
    format!(r#"{{"forward":{{"targetGroups":[{}]}}}}"#, list.join(","))
}

/// Builds the walkthrough with `aws` (which runs `aws vpc-lattice ARGS`
/// and returns the answer, or fails).
pub fn build(
    aws: &mut dyn FnMut(&[&str]) -> anyhow::Result<Value>,
    vpc_a: &str,
    vpc_b: &str,
    log_group: &str,
) -> anyhow::Result<Built> {
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    let instances = target_group(
        aws,
        ("instances", "INSTANCE"),
        &format!(
            r#"{{"port":8080,"protocol":"HTTP","vpcIdentifier":"{vpc_a}","healthCheck":{{"path":"/health","healthCheckIntervalSeconds":5}}}}"#
        ),
        &format!("id={INSTANCE}"),
    )?;
    let function = target_group(
        aws,
        ("function", "LAMBDA"),
        r#"{"lambdaEventStructureVersion":"V2"}"#,
        &format!("id={FUNCTION}"),
    )?;
    let app_b = target_group(
        aws,
        ("app-in-vpc-b", "IP"),
        &format!(r#"{{"port":8080,"protocol":"HTTP","vpcIdentifier":"{vpc_b}"}}"#),
        "id=10.0.16.10",
    )?;

    let svc1 = svc1(aws, &instances, &function)?;
    let svc2 = aws(&["create-service", "--name", "svc2"])?;
    aws(&[
        "create-listener",
        "--service-identifier",
        &id(&svc2),
        "--name",
        "http",
        "--protocol",
        "HTTP",
        "--port",
        "80",
        "--default-action",
        &forward(&[(&app_b, 1)]),
    ])?;
    network(aws, [&id(&svc1), &id(&svc2)], [vpc_a, vpc_b], log_group)?;
    let name = |v: &Value| {
        v["dnsEntry"]["domainName"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Built {
        svc1_dns: name(&svc1),
        svc2_dns: name(&svc2),
        instances,
    })
}

/// svc1: HTTPS, 2:1 over the instance and the function, with a rule to
/// each by path.
fn svc1(
    aws: &mut dyn FnMut(&[&str]) -> anyhow::Result<Value>,
    instances: &str,
    function: &str,
) -> anyhow::Result<Value> {
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    let svc1 = aws(&["create-service", "--name", "svc1"])?;
    let listener = id(&aws(&[
        "create-listener",
        "--service-identifier",
        &id(&svc1),
        "--name",
        "https",
        "--protocol",
        "HTTPS",
        "--port",
        "443",
        "--default-action",
        &forward(&[(instances, 2), (function, 1)]),
    ])?);
    for (priority, path, tg) in [
        ("1", "/to-instance", instances),
        ("2", "/to-function", function),
    ] {
        aws(&[
            "create-rule",
            "--service-identifier",
            &id(&svc1),
            "--listener-identifier",
            &listener,
            "--name",
            &path[1..],
            "--priority",
            priority,
            "--match",
            &format!(r#"{{"httpMatch":{{"pathMatch":{{"match":{{"exact":"{path}"}}}}}}}}"#),
            "--action",
            &forward(&[(tg, 1)]),
        ])?;
    }
    Ok(svc1)
}

/// Service network demo-net holding `services`, associated with `vpcs`,
/// logging to `log_group`.
fn network(
    aws: &mut dyn FnMut(&[&str]) -> anyhow::Result<Value>,
    services: [&str; 2],
    vpcs: [&str; 2],
    log_group: &str,
) -> anyhow::Result<()> {
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    let sn = id(&aws(&["create-service-network", "--name", "demo-net"])?);
    for svc in services {
        aws(&[
            "create-service-network-service-association",
            "--service-network-identifier",
            &sn,
            "--service-identifier",
            svc,
        ])?;
    }
    for vpc in vpcs {
        aws(&[
            "create-service-network-vpc-association",
            "--service-network-identifier",
            &sn,
            "--vpc-identifier",
            vpc,
        ])?;
    }
    aws(&[
        "create-access-log-subscription",
        "--resource-identifier",
        &sn,
        "--destination-arn",
        log_group,
    ])?;
    Ok(())
}

/// A target group `(name, type)` with `config`, and `target` registered
/// in it: its id.
fn target_group(
    aws: &mut dyn FnMut(&[&str]) -> anyhow::Result<Value>,
    (name, ty): (&str, &str),
    config: &str,
    target: &str,
) -> anyhow::Result<String> {
    let group = aws(&[
        "create-target-group",
        "--name",
        name,
        "--type",
        ty,
        "--config",
        config,
    ])?;
    let id = group["id"].as_str().unwrap_or_default().to_owned();
    aws(&[
        "register-targets",
        "--target-group-identifier",
        &id,
        "--targets",
        target,
    ])?;
    Ok(id)
}
