//! Several accounts on one latticed, with the stock AWS CLI: `latticed
//! account add` prints a key that signs as the new account, which owns what
//! it creates and sees and changes only that; VPCs belong to accounts
//! through the inventory; accounts and what they own survive SIGKILL;
//! removing an account's keys ends its access. Needs root.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::time::Duration;

use latticed_tests::*;
use serde_json::json;

const B: &str = "222233334444";

#[test]
fn an_account_owns_what_it_creates_and_sees_only_that() {
    let a_vpc = Vpc::new("a");
    let b_vpc = Vpc::new("b");
    let mut l = Latticed::start_api();
    std::fs::write(
        l.state().join("inventory.json"),
        json!({"vpcs": {b_vpc.name(): B}}).to_string(),
    )
    .unwrap();
    let creds = account(&l, &["add", "--account-id", B]).expect("account add");
    assert!(
        creds.starts_with("[default]\naws_access_key_id = AKIA"),
        "{creds}"
    );
    let b_file = l.state().join("b-credentials");
    std::fs::write(&b_file, &creds).unwrap();
    let a = l.aws();
    let b = Aws {
        endpoint: a.endpoint.clone(),
        credentials: b_file,
    };
    // The running latticed takes the key within a second or two.
    wait_until(Duration::from_secs(5), || {
        b.run(&["list-service-networks"]).is_ok()
    });
    assert!(account(&l, &["list"]).unwrap().contains(B));
    for (args, want) in [
        (vec!["add", "--account-id", B], "already exists"),
        (
            vec!["add", "--account-id", "111122223333"],
            "default account",
        ),
        (vec!["add", "--account-id", "22223333"], "12 digits"),
    ] {
        let e = account(&l, &args).unwrap_err();
        assert!(e.contains(want), "{args:?}: {e}");
    }

    let net_a = a.ok(&["create-service-network", "--name", "net"]);
    let a_arn = net_a["arn"].as_str().unwrap();
    assert!(a_arn.contains(":111122223333:"), "{a_arn}");
    // B sees none of A's, and may not read or change it.
    assert_eq!(b.ok(&["list-service-networks"])["items"], json!([]));
    let e = b
        .run(&["get-service-network", "--service-network-identifier", a_arn])
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException", "{e}");
    let e = b
        .run(&[
            "delete-service-network",
            "--service-network-identifier",
            a_arn,
        ])
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException", "{e}");
    let e = b
        .run(&[
            "get-service-network",
            "--service-network-identifier",
            net_a["id"].as_str().unwrap(),
        ])
        .unwrap_err();
    assert_eq!(code(&e), "ResourceNotFoundException", "{e}");
    // Names are unique across accounts (the data plane routes by name).
    let e = b
        .run(&["create-service-network", "--name", "net"])
        .unwrap_err();
    assert_eq!(code(&e), "ConflictException", "{e}");
    // B's own network, with B's id in its ARN, and B's VPC (the inventory
    // says so) associated with it; A may not use B's VPC.
    let net_b = b.ok(&["create-service-network", "--name", "net-b"]);
    assert!(net_b["arn"].as_str().unwrap().contains(&format!(":{B}:")));
    b.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        net_b["id"].as_str().unwrap(),
        "--vpc-identifier",
        b_vpc.name(),
    ]);
    let e = a
        .run(&[
            "create-service-network-vpc-association",
            "--service-network-identifier",
            net_a["id"].as_str().unwrap(),
            "--vpc-identifier",
            b_vpc.name(),
        ])
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException", "{e}");
    // B's network holds a service of B's in front of the app in B's VPC,
    // reachable from B's VPC.
    let (svc, _) = b.service_to_app(net_b["id"].as_str().unwrap(), ("shop", "app"), b_vpc.name());
    let url = format!(
        "http://{}/",
        svc["dnsEntry"]["domainName"].as_str().unwrap()
    );
    assert_eq!(
        echo(&b_vpc.curl(&url).expect("B's service"))["app"],
        b_vpc.name()
    );
    let _ = a_vpc;

    // Accounts and what they own survive SIGKILL.
    l.stop_with(libc::SIGKILL);
    l.spawn_and_wait_ready().expect("restart");
    let listed = b.ok(&["list-service-networks"]);
    assert_eq!(listed["items"][0]["arn"], net_b["arn"], "{listed}");
    assert_eq!(
        a.ok(&["list-service-networks"])["items"][0]["arn"],
        net_a["arn"]
    );

    // Removing the account ends its keys' access.
    account(&l, &["remove", "--account-id", B]).expect("account remove");
    wait_until(Duration::from_secs(5), || {
        b.run(&["list-service-networks"]).is_err()
    });
    assert!(!account(&l, &["list"]).unwrap().contains(B));
}
