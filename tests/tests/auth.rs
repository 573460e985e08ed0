//! Auth policies through the data path, with real clients: curl
//! `--aws-sigv4`, botocore's SigV4 signer (signed payload and
//! UNSIGNED-PAYLOAD), anonymous requests, and forged, truncated, unknown and
//! expired signatures; identity headers to targets and to functions.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{process::Command, time::Duration};

use latticed_proxy::sigv4;
use latticed_tests::*;
use serde_json::{json, Value};

const HOST: &str = "secure.example.internal";
const APP: &str = "arn:aws:sts::111122223333:assumed-role/app/s1";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";

/// curl in `ns` to `https://HOST{path}`; returns (status, body).
fn curl(vpc: &Vpc, ca: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let out = curl_in(
        &vpc.ns,
        &format!("https://{HOST}{path}"),
        &[&["--cacert", ca, "-w", "\n%{http_code}"], extra].concat(),
    )
    .unwrap();
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

/// Headers of a GET signed at `amz_date` with `key`/`secret`.
fn signed_headers(path: &str, key: &str, secret: &str, amz_date: &str) -> Vec<String> {
    let mut h = http::HeaderMap::new();
    h.insert("host", HOST.parse().unwrap());
    h.insert("x-amz-date", amz_date.parse().unwrap());
    let req = sigv4::Request {
        method: "GET",
        raw_path: path,
        raw_query: "",
        headers: &h,
        body: b"",
    };
    let auth = sigv4::sign(
        &req,
        key,
        secret,
        "us-east-1",
        "vpc-lattice-svcs",
        amz_date,
        "host;x-amz-date",
    )
    .unwrap();
    vec![
        format!("Authorization: {auth}"),
        format!("x-amz-date: {amz_date}"),
    ]
}

fn now_amz(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    sigv4::format_amz_date((now + offset_secs) as u64)
}

#[test]
fn sigv4_principals_and_policies_through_the_data_path() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let runner = LambdaRunner::start();
    let service_policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "App", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/app"},
             "Action": "vpc-lattice-svcs:Invoke", "Resource": "*",
             "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}},
            {"Sid": "PublicReads", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke",
             "Resource": "arn:aws:vpc-lattice:*:*:service/*/public/*",
             "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "GET"}}},
            {"Sid": "NoAdmin", "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*",
             "Condition": {"StringLike": {"vpc-lattice-svcs:RequestPath": "/admin*"}}}
        ]
    });
    let network_policy = json!({
        "Statement": {"Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*",
            "Condition": {"StringEquals": {"vpc-lattice-svcs:SourceVpc": b.name()}}}
    });
    let forward = |tg: &str| json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}});
    let config = json!({
        "serviceNetworks": [{"name": "net", "authType": "AWS_IAM"}],
        "services": [{"name": "secure", "authType": "AWS_IAM", "customDomainName": HOST, "listeners": [{
            "name": "https", "protocol": "HTTPS", "defaultAction": forward("app"),
            "rules": [{"name": "function", "priority": 1,
                "match": {"httpMatch": {"pathMatch": {"match": {"exact": "/fn"}}}}, "action": forward("hello")}]}]}],
        "targetGroups": [
            {"name": "app", "type": "IP", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name()},
             "targets": [{"id": "10.0.16.10"}]},
            {"name": "hello", "type": "LAMBDA", "config": {"lambdaEventStructureVersion": "V2"},
             "targets": [{"id": "arn:aws:lambda:us-east-1:111122223333:function:hello"}]}],
        "serviceNetworkServiceAssociations": [{"serviceNetworkIdentifier": "net", "serviceIdentifier": "secure"}],
        "serviceNetworkVpcAssociations": [
            {"serviceNetworkIdentifier": "net", "vpcIdentifier": a.name()},
            {"serviceNetworkIdentifier": "net", "vpcIdentifier": b.name()}],
        "authPolicies": [
            {"resourceIdentifier": "secure", "policy": service_policy.to_string()},
            {"resourceIdentifier": "net", "policy": network_policy}],
        "accessLogSubscriptions": [{"resourceIdentifier": "net",
            "destinationArn": "arn:aws:logs:us-east-1:111122223333:log-group:auth"}]
    });
    let mut latticed = Latticed::prepare(&config);
    latticed.extra_args = vec!["--lambda-endpoint".into(), runner.endpoint.clone()];
    let (app_key, app_secret) = add_principal(
        &latticed.state_dir,
        APP,
        &["--org-id", "o-a1b2c3d4e5", "--session-name", "s1"],
    );
    let (bob_key, bob_secret) = add_principal(&latticed.state_dir, BOB, &[]);
    latticed.spawn_and_wait_ready().unwrap();
    let ca = latticed
        .state_dir
        .join("ca.pem")
        .to_str()
        .unwrap()
        .to_owned();
    let sigv4 = |key: &str, secret: &str| {
        vec![
            "--aws-sigv4".to_owned(),
            "aws:amz:us-east-1:vpc-lattice-svcs".to_owned(),
            "--user".to_owned(),
            format!("{key}:{secret}"),
        ]
    };
    let as_app = sigv4(&app_key, &app_secret);
    let as_app: Vec<&str> = as_app.iter().map(String::as_str).collect();
    let as_bob = sigv4(&bob_key, &bob_secret);
    let as_bob: Vec<&str> = as_bob.iter().map(String::as_str).collect();
    wait_until(Duration::from_secs(5), || {
        curl_in(
            &b.ns,
            &format!("https://{HOST}/public/x"),
            &["--cacert", &ca],
        )
        .is_ok()
    });

    // Anonymous: public reads pass, the rest is denied with Lattice's body.
    let (code, body) = curl(
        &b,
        &ca,
        "/public/x",
        &[
            "-H",
            "x-amzn-lattice-identity: Principal=arn:aws:iam::111122223333:root",
            // Every field only the proxy may set, forged: the target must
            // get the proxy's values alone (first values are what echo shows).
            "-H",
            "x-forwarded-for: 6.6.6.6",
            "-H",
            "x-forwarded-proto: gopher",
            "-H",
            "x-forwarded-port: 1",
            "-H",
            "x-amzn-requestid: forged",
            "-H",
            "x-amzn-lattice-network: forged",
            "-H",
            "x-amzn-lattice-target: forged",
        ],
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["latticeIdentity"], "",
        "a client's identity header never reaches the target"
    );
    assert_eq!(v["xForwardedFor"], "10.0.16.10", "{v}");
    assert_eq!(v["xForwardedProto"], "https", "{v}");
    assert_eq!(v["xForwardedPort"], "443", "{v}");
    assert_eq!(v["requestId"].as_str().unwrap().len(), 36, "{v}");
    assert!(
        v["latticeNetwork"]
            .as_str()
            .unwrap()
            .starts_with("SourceVpcArn=arn:aws:ec2:"),
        "{v}"
    );
    assert!(
        v["latticeTarget"]
            .as_str()
            .unwrap()
            .contains("ServiceArn=arn:aws:vpc-lattice:"),
        "{v}"
    );
    let (code, body) = curl(&b, &ca, "/private", &[]);
    assert_eq!(code, 403);
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = v["Message"].as_str().unwrap();
    assert!(msg.starts_with("AccessDeniedException: User: anonymous is not authorized to perform: vpc-lattice-svcs:Invoke on resource: arn:aws:vpc-lattice:"), "{msg}");
    assert!(
        msg.ends_with(
            "/private because no service-based policy allows the vpc-lattice-svcs:Invoke action"
        ),
        "{msg}"
    );

    // curl --aws-sigv4 as the app's role session: allowed, and the target
    // learns who called.
    let (code, body) = curl(&b, &ca, "/private", &as_app);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["latticeIdentity"],
        format!("Principal={APP}; PrincipalOrgID=o-a1b2c3d4e5; SessionName=s1; Type=AWS_IAM")
    );
    // A signed payload.
    let (code, _) = curl(
        &b,
        &ca,
        "/private",
        &[&as_app[..], &["--data-binary", "hello"]].concat(),
    );
    assert_eq!(code, 200);
    // An explicit deny wins over the app's allow.
    let (code, body) = curl(&b, &ca, "/admin/x", &as_app);
    assert_eq!(code, 403);
    assert!(
        body.contains("with an explicit deny in a service-based policy"),
        "{body}"
    );
    // Bob is known but not allowed.
    let (code, body) = curl(&b, &ca, "/private", &as_bob);
    assert_eq!(code, 403);
    assert!(
        body.contains(&format!("User: {BOB} is not authorized")),
        "{body}"
    );
    // The network's policy only admits vpc-b: vpc-a is denied at that level.
    let (code, body) = curl(&a, &ca, "/private", &as_app);
    assert_eq!(code, 403, "{body}");

    // botocore's signer, with a signed payload and with UNSIGNED-PAYLOAD.
    for mode in ["signed", "unsigned"] {
        let v = run_json(
            b.ns.command("python3")
                .arg(workspace_root().join("tests/apps/sigv4_client.py"))
                .args([
                    &format!("https://{HOST}/private"),
                    &app_key,
                    &app_secret,
                    mode,
                    &ca,
                    "payload",
                ]),
        );
        assert_eq!(v["status"], 200, "{mode}: {v}");
    }

    // Signatures that do not verify are denied, never treated as anonymous
    // (anonymous could read /public).
    let good = signed_headers("/public/x", &app_key, &app_secret, &now_amz(0));
    let forged =
        good[0][..good[0].len() - 1].to_owned() + if good[0].ends_with('0') { "1" } else { "0" };
    let truncated = good[0][..good[0].find(", Signature=").unwrap()].to_owned();
    let unknown = signed_headers(
        "/public/x",
        "AKIAUNKNOWNKEY000000",
        &app_secret,
        &now_amz(0),
    );
    let expired = signed_headers("/public/x", &app_key, &app_secret, &now_amz(-600));
    let future = signed_headers("/public/x", &app_key, &app_secret, &now_amz(600));
    for (what, auth, date, want) in [
        ("good", &good[0], &good[1], "200"),
        ("forged", &forged, &good[1], "InvalidSignatureException"),
        (
            "truncated",
            &truncated,
            &good[1],
            "IncompleteSignatureException",
        ),
        (
            "unknown key",
            &unknown[0],
            &unknown[1],
            "UnrecognizedClientException",
        ),
        (
            "replayed after 10 minutes",
            &expired[0],
            &expired[1],
            "InvalidSignatureException",
        ),
        (
            "from the future",
            &future[0],
            &future[1],
            "InvalidSignatureException",
        ),
    ] {
        let out = curl_in(
            &b.ns,
            &format!("https://{HOST}/public/x"),
            &[
                "--cacert",
                &ca,
                "-H",
                auth,
                "-H",
                date,
                "-D",
                "-",
                "-o",
                "/dev/null",
            ],
        )
        .unwrap();
        if want == "200" {
            assert!(out.starts_with("HTTP/2 200"), "{what}: {out}");
        } else {
            assert!(out.starts_with("HTTP/2 403"), "{what}: {out}");
            assert!(
                out.contains(&format!("x-amzn-errortype: {want}")),
                "{what}: {out}"
            );
        }
    }

    // Functions get the identity block.
    let (code, body) = curl(&b, &ca, "/fn", &as_app);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["identity"]["principal"], APP, "{v}");
    assert_eq!(v["identity"]["principalOrgID"], "o-a1b2c3d4e5");
    assert_eq!(v["identity"]["sessionName"], "s1");
    assert_eq!(v["identity"]["type"], "AWS_IAM");

    // The access log says who called and why requests were denied.
    let log = latticed.log_dir.join("auth.log");
    let mut lines: Vec<Value> = Vec::new();
    wait_until(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines.len() >= 16
    });
    let denied = lines
        .iter()
        .find(|l| l["requestPath"] == "/admin/x")
        .unwrap();
    assert_eq!(denied["responseCode"], 403);
    assert!(
        denied["authDeniedReason"]
            .as_str()
            .unwrap()
            .contains("NoAdmin"),
        "{denied}"
    );
    assert_eq!(denied["callerPrincipal"], APP);
    let forged_line = lines
        .iter()
        .filter(|l| l["responseCode"] == 403 && l["requestPath"] == "/public/x")
        .count();
    assert_eq!(forged_line, 5, "every bad signature is logged as denied");

    // A new key works without a restart; a removed one stops working.
    let (k2, s2) = add_principal(&latticed.state_dir, APP, &["--org-id", "o-a1b2c3d4e5"]);
    let as_k2 = sigv4(&k2, &s2);
    let as_k2: Vec<&str> = as_k2.iter().map(String::as_str).collect();
    wait_until(Duration::from_secs(5), || {
        curl(&b, &ca, "/private", &as_k2).0 == 200
    });
    let out = Command::new(bin("latticed"))
        .args(["principal", "remove", "--access-key-id", &k2, "--state-dir"])
        .arg(&latticed.state_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_until(Duration::from_secs(5), || {
        curl(&b, &ca, "/private", &as_k2).0 == 403
    });
}

#[test]
fn put_auth_policy_refuses_bad_policies_and_simulate_explains() {
    let latticed = Latticed::start_api();
    let aws = latticed.aws();
    let svc = aws.ok(&["create-service", "--name", "svc", "--auth-type", "AWS_IAM"]);
    let id = svc["id"].as_str().unwrap();
    for (policy, says) in [
        ("{".to_owned(), "not valid JSON"),
        (r#"{"Statement":[]}"#.to_owned(), "non-empty"),
        (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*","Condition":{"StringEqualz":{"aws:SourceIp":"x"}}}}"#.to_owned(), "StringEqualz"),
        (format!(r#"{{"Statement":{{"Sid":"{}","Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}}}"#, "A".repeat(11 * 1024)), "at most 10240"),
    ] {
        let err = aws
            .run(&["put-auth-policy", "--resource-identifier", id, "--policy", &policy])
            .unwrap_err();
        assert!(err.contains("ValidationException") && err.contains(says), "{says}: {err}");
    }
    assert!(
        aws.run(&["get-auth-policy", "--resource-identifier", id])
            .is_err(),
        "nothing was stored"
    );
    let ok = r#"{"Statement":{"Sid":"Reads","Effect":"Allow","Principal":"*","Action":"vpc-lattice-svcs:Invoke","Resource":"*","Condition":{"StringEquals":{"vpc-lattice-svcs:RequestMethod":"GET"}}}}"#;
    let put = aws.ok(&[
        "put-auth-policy",
        "--resource-identifier",
        id,
        "--policy",
        ok,
    ]);
    assert_eq!(put["state"], "Active");

    // The simulator answers for a described request and names the statement.
    let file = std::env::temp_dir().join(format!("latticed-policy-{}.json", unique()));
    std::fs::write(&file, ok).unwrap();
    let sim = |args: &[&str]| {
        let out = Command::new(bin("latticed"))
            .args(["policy", "simulate", "--policy"])
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = sim(&["--method", "GET", "--path", "/x"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("allows (statement Reads)") && text.contains("decision: ALLOW"),
        "{text}"
    );
    let (code, text) = sim(&["--method", "POST", "--path", "/x", "--principal", APP]);
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("decision: DENY (no allow in the service policy)"),
        "{text}"
    );
    let (code, _) = sim(&["--header", "no-colon"]);
    assert_eq!(code, Some(1));

    // Paths are normalised as the data path normalises them: each spelling
    // of /admin meets a deny on /admin*, and what the data path refuses
    // (400) the simulator refuses too.
    let deny = r#"{"Statement":[{"Sid":"All","Effect":"Allow","Principal":"*","Action":"*","Resource":"*"},{"Sid":"NoAdmin","Effect":"Deny","Principal":"*","Action":"*","Resource":"*","Condition":{"StringLike":{"vpc-lattice-svcs:RequestPath":"/admin*"}}}]}"#;
    std::fs::write(&file, deny).unwrap();
    for path in [
        "//admin/x",
        "/./admin/x",
        "/public/../admin/x",
        "/%61dmin/x",
    ] {
        let (code, text) = sim(&["--path", path]);
        assert_eq!(code, Some(3), "{path}: {text}");
        assert!(text.contains("request: GET /admin/x "), "{path}: {text}");
        assert!(text.contains("(NoAdmin)"), "{path}: {text}");
    }
    let (code, _) = sim(&["--path", "/public/..%2fadmin/x"]);
    assert_eq!(code, Some(1));
    let _ = std::fs::remove_file(&file);
}
