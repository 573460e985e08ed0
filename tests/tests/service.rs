//! Running as a systemd service: the unit installs and verifies, and logs are
//! fit for journald and filtered by RUST_LOG.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::process::Command;

use latticed_tests::*;

#[test]
fn install_script_installs_a_unit_that_systemd_analyze_accepts() {
    let dir = std::env::temp_dir().join(format!("latticed-install-{}", unique()));
    let status = Command::new(workspace_root().join("scripts/install.sh"))
        .arg("--prefix")
        .arg(&dir)
        .arg("--unit-dir")
        .arg(dir.join("units"))
        .arg("--iproute-dir")
        .arg(dir.join("iproute"))
        .arg("--binary")
        .arg(bin("latticed"))
        .arg("--no-enable")
        .status()
        .expect("install.sh");
    assert!(status.success());
    let unit = dir.join("units/latticed.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains(&format!(
            "ExecStart={}/bin/latticed run --state-dir /var/lib/latticed --api-listen 127.0.0.1:7390",
            dir.display()
        )),
        "{text}"
    );
    assert!(text.contains("Type=notify"));
    assert!(text.contains("CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN"));
    assert_eq!(
        std::fs::read_to_string(dir.join("iproute/latticed.conf")).unwrap(),
        "171 latticed\n"
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 even for unknown keys; anything it prints is a defect.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logs_suit_journald_and_follow_rust_log() {
    let dir = std::env::temp_dir().join(format!("latticed-logs-{}", unique()));
    std::fs::create_dir_all(dir.join("netns")).unwrap();
    for ns in ["vpc-aa", "vpc-bb"] {
        std::fs::write(dir.join("netns").join(ns), b"").unwrap();
    }
    let config = dir.join("config.json");
    std::fs::write(&config, two_service_config("vpc-aa", "vpc-bb").to_string()).unwrap();
    let check = |env: &[(&str, &str)]| {
        let out = Command::new(bin("latticed"))
            .arg("check")
            .arg("--config")
            .arg(&config)
            .arg("--netns-dir")
            .arg(dir.join("netns"))
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let journal = check(&[("JOURNAL_STREAM", "8:1234")]);
    let first = journal.lines().next().expect("a log line");
    assert!(
        first.trim_start().starts_with("INFO"),
        "journald lines carry no timestamp: {first:?}"
    );
    assert!(!journal.contains('\u{1b}'), "no colour codes for journald");
    assert!(journal.contains("configuration is valid"));
    assert!(
        check(&[("RUST_LOG", "warn")]).is_empty(),
        "RUST_LOG=warn hides info lines"
    );
    let terminal = check(&[]);
    assert!(
        terminal.starts_with("20"),
        "a timestamp outside journald: {terminal:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
