//! Domain verifications with the stock AWS CLI: latticed looks up the TXT
//! record AWS documents (`_LABEL.DOMAIN` holding `vpc-lattice:VALUE`)
//! through a resolver, here a test DNS server on loopback standing in for
//! the host's, and marks the verification VERIFIED once the record is
//! published; a domain without it stays PENDING; the result survives
//! SIGKILL. Needs root.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{process::Command, time::Duration};

use latticed_tests::*;
use serde_json::json;

#[test]
fn a_domain_is_verified_once_its_txt_record_is_published() {
    let dir = std::env::temp_dir().join(format!("latticed-dv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let records = dir.join("records.json");
    let port_file = dir.join("port");
    std::fs::write(&records, "{}").unwrap();
    // The DNS server runs in the root namespace on loopback (the guard only
    // holds it, and ends it by PID).
    let mut holder = NetNsGuard::new("dv");
    let mut cmd = Command::new("python3");
    cmd.arg(apps_dir().join("txt_dns.py"))
        .arg(&records)
        .arg(&port_file);
    holder.spawn(cmd);
    wait_until(Duration::from_secs(5), || port_file.exists());
    let port = std::fs::read_to_string(&port_file).unwrap();
    let resolver = format!("127.0.0.1:{}", port.trim());
    let mut l = Latticed::start_api_with(&["--domain-verification-resolver", &resolver]);
    let aws = l.aws();

    let dv = aws.ok(&["start-domain-verification", "--domain-name", "example.com"]);
    assert_eq!(dv["status"], "PENDING", "{dv}");
    let other = aws.ok(&["start-domain-verification", "--domain-name", "example.org"]);
    let txt = &dv["txtMethodConfig"];
    let name = format!("{}.example.com.", txt["name"].as_str().unwrap());
    let get = |id: &serde_json::Value| {
        aws.ok(&[
            "get-domain-verification",
            "--domain-verification-identifier",
            id.as_str().unwrap(),
        ])
    };
    // Looked up, not there: still pending.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(&dv["id"])["status"], "PENDING");
    // A wrong value proves nothing.
    std::fs::write(&records, json!({&name: ["vpc-lattice:wrong"]}).to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(get(&dv["id"])["status"], "PENDING");
    std::fs::write(&records, json!({&name: [txt["value"]]}).to_string()).unwrap();
    wait_until(Duration::from_secs(25), || {
        get(&dv["id"])["status"] == "VERIFIED"
    });
    let got = get(&dv["id"]);
    assert!(got["lastVerifiedTime"].is_string(), "{got}");
    assert_eq!(get(&other["id"])["status"], "PENDING");

    l.stop_with(libc::SIGKILL);
    l.spawn_and_wait_ready().expect("restart");
    assert_eq!(get(&dv["id"])["status"], "VERIFIED");
    let listed = aws.ok(&["list-domain-verifications"]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    drop(l);
    drop(holder);
    let _ = std::fs::remove_dir_all(&dir);
}
