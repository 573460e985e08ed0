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
    let instances = id(&aws(&[
        "create-target-group",
        "--name",
        "instances",
        "--type",
        "INSTANCE",
        "--config",
        &format!(
            r#"{{"port":8080,"protocol":"HTTP","vpcIdentifier":"{vpc_a}","healthCheck":{{"path":"/health","healthCheckIntervalSeconds":5}}}}"#
        ),
    ])?);
    aws(&[
        "register-targets",
        "--target-group-identifier",
        &instances,
        "--targets",
        &format!("id={INSTANCE}"),
    ])?;
    let function = id(&aws(&[
        "create-target-group",
        "--name",
        "function",
        "--type",
        "LAMBDA",
        "--config",
        r#"{"lambdaEventStructureVersion":"V2"}"#,
    ])?);
    aws(&[
        "register-targets",
        "--target-group-identifier",
        &function,
        "--targets",
        &format!("id={FUNCTION}"),
    ])?;
    let app_b = id(&aws(&[
        "create-target-group",
        "--name",
        "app-in-vpc-b",
        "--type",
        "IP",
        "--config",
        &format!(r#"{{"port":8080,"protocol":"HTTP","vpcIdentifier":"{vpc_b}"}}"#),
    ])?);
    aws(&[
        "register-targets",
        "--target-group-identifier",
        &app_b,
        "--targets",
        "id=10.0.16.10",
    ])?;

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
        &forward(&[(&instances, 2), (&function, 1)]),
    ])?);
    for (priority, path, tg) in [
        ("1", "/to-instance", &instances),
        ("2", "/to-function", &function),
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
    let sn = id(&aws(&["create-service-network", "--name", "demo-net"])?);
    for svc in [&svc1, &svc2] {
        aws(&[
            "create-service-network-service-association",
            "--service-network-identifier",
            &sn,
            "--service-identifier",
            &id(svc),
        ])?;
    }
    for vpc in [vpc_a, vpc_b] {
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
