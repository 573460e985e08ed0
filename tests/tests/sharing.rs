//! Sharing between accounts with the stock AWS CLI's `ram` and
//! `vpc-lattice` commands, on real namespaces whose CIDRs overlap: account
//! A shares a service network and a service with account B (outside A's
//! organisation, so B is invited and accepts); B's clients reach A's
//! services through them; an auth policy keys on B's caller and B's VPC;
//! a customer-managed permission withholds the service association; all
//! of it survives SIGKILL; unsharing cuts B off. Needs root.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::time::Duration;

use latticed_tests::*;
use serde_json::{json, Value};

const A: &str = "111122223333";
const B: &str = "222233334444";
const B_ORG: &str = "o-bbbbbbbbbb";

/// Account B, in its own organisation, and a CLI that signs as it.
fn account_b(l: &Latticed) -> Aws {
    let creds =
        account(l, &["add", "--account-id", B, "--organization-id", B_ORG]).expect("account add");
    let file = l.state().join("b-credentials");
    std::fs::write(&file, creds).unwrap();
    let b = Aws {
        endpoint: l.aws().endpoint,
        credentials: file,
    };
    wait_until(Duration::from_secs(5), || {
        b.ram(&["get-resource-share-invitations"]).is_ok()
    });
    b
}

/// B accepts its pending invitation to share `share` (B is outside A's
/// organisation, so every share reaches it as an invitation).
fn accept(b: &Aws, share: &str) {
    let inv = b.ram_ok(&[
        "get-resource-share-invitations",
        "--resource-share-arns",
        share,
    ]);
    let inv = &inv["resourceShareInvitations"][0];
    assert_eq!(inv["status"], "PENDING", "{inv}");
    assert_eq!(inv["senderAccountId"], A, "{inv}");
    let arn = inv["resourceShareInvitationArn"].as_str().unwrap();
    let out = b.ram_ok(&[
        "accept-resource-share-invitation",
        "--resource-share-invitation-arn",
        arn,
    ]);
    assert_eq!(
        out["resourceShareInvitation"]["status"], "ACCEPTED",
        "{out}"
    );
}

/// A shares `resource` with B (with `extra` arguments); returns the
/// share's ARN once B has accepted.
fn share(a: &Aws, b: &Aws, name: &str, resource: &str, extra: &[&str]) -> String {
    let args = [
        "create-resource-share",
        "--name",
        name,
        "--resource-arns",
        resource,
        "--principals",
        B,
    ];
    let out = a.ram_ok(&[&args[..], extra].concat());
    let arn = out["resourceShare"]["resourceShareArn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        arn.starts_with(&format!("arn:aws:ram:us-east-1:{A}:resource-share/")),
        "{arn}"
    );
    accept(b, &arn);
    arn
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
// Long: one walkthrough, in the order a user takes it; each step builds on the last.
fn shared_networks_and_services_carry_another_accounts_clients_until_unshared() {
    let a_vpc = Vpc::new("a");
    let b_vpc = Vpc::new("b");
    let mut l = Latticed::start_api_with(&["--quota", "service-networks-per-vpc=3"]);
    std::fs::write(
        l.state().join("inventory.json"),
        json!({"vpcs": {b_vpc.name(): B}}).to_string(),
    )
    .unwrap();
    let a = l.aws();
    let b = account_b(&l);

    // A's network, with A's service in front of the app in A's VPC.
    let net_a = a.ok(&["create-service-network", "--name", "net-a"]);
    let (shop, _) = a.service_to_app(s(&net_a["id"]), ("shop", "app-shop"), a_vpc.name());
    let vpc_assoc = [
        "create-service-network-vpc-association",
        "--service-network-identifier",
        s(&net_a["arn"]),
        "--vpc-identifier",
        b_vpc.name(),
    ];
    // Not shared yet: B may not use it.
    let e = b.run(&vpc_assoc).unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException", "{e}");
    let share_net = share(&a, &b, "net-a-to-b", s(&net_a["arn"]), &[]);
    let principals = a.ram_ok(&["list-principals", "--resource-owner", "SELF"]);
    assert_eq!(principals["principals"][0]["id"], B, "{principals}");
    assert_eq!(
        principals["principals"][0]["external"], true,
        "{principals}"
    );
    let shared = b.ram_ok(&["list-resources", "--resource-owner", "OTHER-ACCOUNTS"]);
    assert_eq!(shared["resources"][0]["arn"], net_a["arn"], "{shared}");
    // B associates its own VPC (10.0.16.0/20, as A's) and its client
    // reaches A's service by its DNS name.
    b.ok(&vpc_assoc);
    let shop_url = format!("http://{}/", s(&shop["dnsEntry"]["domainName"]));
    wait_until(Duration::from_secs(10), || b_vpc.curl(&shop_url).is_ok());
    assert_eq!(echo(&b_vpc.curl(&shop_url).unwrap())["app"], a_vpc.name());

    // A's service shared on its own; B puts it into B's network. Its auth
    // policy admits only B's role calling from B's VPC.
    let net_a2 = a.ok(&["create-service-network", "--name", "net-a2"]);
    let (ledger, _) = a.service_to_app(s(&net_a2["id"]), ("ledger", "app-ledger"), a_vpc.name());
    let role = format!("arn:aws:sts::{B}:assumed-role/client/s1");
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": role}, "Action": "vpc-lattice-svcs:Invoke",
        "Resource": "*", "Condition": {"StringEquals": {
            "aws:PrincipalAccount": B, "aws:PrincipalOrgID": B_ORG,
            "vpc-lattice-svcs:SourceVpcOwnerAccount": B}}}]});
    a.ok(&[
        "update-service",
        "--service-identifier",
        s(&ledger["id"]),
        "--auth-type",
        "AWS_IAM",
    ]);
    a.ok(&[
        "put-auth-policy",
        "--resource-identifier",
        s(&ledger["id"]),
        "--policy",
        &policy.to_string(),
    ]);
    let share_svc = share(&a, &b, "ledger-to-b", s(&ledger["arn"]), &[]);
    // B's service directory holds it, with A's account in its ARN.
    let dir = b.ok(&["list-services"]);
    let found: Vec<&Value> = dir["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["arn"] == ledger["arn"])
        .collect();
    assert_eq!(found.len(), 1, "{dir}");
    assert!(
        s(&found[0]["arn"]).contains(&format!(":{A}:service/")),
        "{dir}"
    );
    let net_b = b.ok(&["create-service-network", "--name", "net-b"]);
    b.ok(&[
        "create-service-network-service-association",
        "--service-network-identifier",
        s(&net_b["id"]),
        "--service-identifier",
        s(&ledger["arn"]),
    ]);
    b.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        s(&net_b["id"]),
        "--vpc-identifier",
        b_vpc.name(),
    ]);
    let (role_key, role_secret) = add_principal(l.state(), &role, &[]);
    let (a_key, a_secret) = add_principal(
        l.state(),
        &format!("arn:aws:sts::{A}:assumed-role/client/s1"),
        &[],
    );
    let ledger_url = format!("http://{}/", s(&ledger["dnsEntry"]["domainName"]));
    let call = |key: &str, secret: &str| {
        let user = format!("{key}:{secret}");
        let mut args = vec!["-w", "\n%{http_code}"];
        if !key.is_empty() {
            args.extend([
                "--aws-sigv4",
                "aws:amz:us-east-1:vpc-lattice-svcs",
                "--user",
                &user,
            ]);
        }
        let out = curl_in(&b_vpc.ns, &ledger_url, &args).unwrap_or_default();
        let (body, status) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (status.to_owned(), body.to_owned())
    };
    wait_until(Duration::from_secs(10), || {
        call(&role_key, &role_secret).0 == "200"
    });
    let (_, body) = call(&role_key, &role_secret);
    let answer = echo(&body);
    assert_eq!(answer["app"], a_vpc.name());
    // B's caller is of B's organisation because its account is.
    assert_eq!(
        answer["latticeIdentity"],
        format!("Principal={role}; PrincipalOrgID={B_ORG}; Type=AWS_IAM")
    );
    assert_eq!(call("", "").0, "403", "anonymous");
    assert_eq!(call(&a_key, &a_secret).0, "403", "A's own role is not B's");

    // A customer-managed permission without the service association: B
    // may associate its VPC with the network, not its own service.
    let template = json!({"Effect": "Allow", "Action": [
        "vpc-lattice:CreateServiceNetworkVpcAssociation", "vpc-lattice:GetServiceNetwork"]});
    let perm = a.ram_ok(&[
        "create-permission",
        "--name",
        "vpc-only",
        "--resource-type",
        "vpc-lattice:ServiceNetwork",
        "--policy-template",
        &template.to_string(),
    ]);
    let perm_arn = s(&perm["permission"]["arn"]).to_owned();
    let net_c = a.ok(&["create-service-network", "--name", "net-c"]);
    share(
        &a,
        &b,
        "net-c-to-b",
        s(&net_c["arn"]),
        &["--permission-arns", &perm_arn],
    );
    let b_own = b.ok(&["create-service", "--name", "b-own"]);
    let e = b
        .run(&[
            "create-service-network-service-association",
            "--service-network-identifier",
            s(&net_c["arn"]),
            "--service-identifier",
            s(&b_own["id"]),
        ])
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException", "{e}");
    b.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        s(&net_c["arn"]),
        "--vpc-identifier",
        b_vpc.name(),
    ]);
    // What is shared is still A's alone to change.
    for args in [
        vec![
            "delete-service-network",
            "--service-network-identifier",
            s(&net_a["arn"]),
        ],
        vec![
            "update-service",
            "--service-identifier",
            s(&ledger["arn"]),
            "--auth-type",
            "NONE",
        ],
        vec![
            "delete-auth-policy",
            "--resource-identifier",
            s(&ledger["arn"]),
        ],
    ] {
        let e = b.run(&args).unwrap_err();
        assert_eq!(code(&e), "AccessDeniedException", "{args:?}: {e}");
    }
    let e = b
        .ram(&["delete-resource-share", "--resource-share-arn", &share_net])
        .unwrap_err();
    assert_eq!(code(&e), "UnknownResourceException", "{e}");

    // Accounts, shares and permissions survive SIGKILL; B's traffic too.
    l.stop_with(libc::SIGKILL);
    l.spawn_and_wait_ready().expect("restart");
    let shares = a.ram_ok(&["get-resource-shares", "--resource-owner", "SELF"]);
    assert_eq!(
        shares["resourceShares"].as_array().unwrap().len(),
        3,
        "{shares}"
    );
    let perms = a.ram_ok(&["list-permissions", "--permission-type", "CUSTOMER_MANAGED"]);
    assert_eq!(perms["permissions"][0]["arn"], perm_arn.as_str(), "{perms}");
    let used = a.ram_ok(&[
        "list-resource-share-permissions",
        "--resource-share-arn",
        &share_net,
    ]);
    assert_eq!(
        used["permissions"][0]["name"], "AWSRAMDefaultPermissionServiceNetwork",
        "{used}"
    );
    wait_until(Duration::from_secs(10), || b_vpc.curl(&shop_url).is_ok());
    assert_eq!(call(&role_key, &role_secret).0, "200");

    // Unsharing cuts B off: its association with A's network goes, and
    // with it the route to A's service; so does the shared service.
    a.ram_ok(&[
        "disassociate-resource-share",
        "--resource-share-arn",
        &share_net,
        "--principals",
        B,
    ]);
    wait_until(Duration::from_secs(10), || b_vpc.curl(&shop_url).is_err());
    let e = b
        .run(&[
            "get-service-network",
            "--service-network-identifier",
            s(&net_a["arn"]),
        ])
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException", "{e}");
    let left = b.ok(&[
        "list-service-network-vpc-associations",
        "--vpc-identifier",
        b_vpc.name(),
    ]);
    let nets: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| s(&i["serviceNetworkName"]))
        .collect();
    assert_eq!(nets, ["net-b", "net-c"], "{left}");
    a.ram_ok(&["delete-resource-share", "--resource-share-arn", &share_svc]);
    wait_until(Duration::from_secs(10), || {
        call(&role_key, &role_secret).0 != "200"
    });
    let assoc = b.ok(&[
        "list-service-network-service-associations",
        "--service-network-identifier",
        s(&net_b["id"]),
    ]);
    assert_eq!(assoc["items"], json!([]), "{assoc}");
}
