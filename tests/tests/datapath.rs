//! The data path on real kernel objects: namespaces made with `ip netns`,
//! the real sk_lookup program, real rtnetlink routes, curl as the client.
//! Needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{thread, time::Duration};

use latticed_tests::*;

#[test]
fn steers_vip_to_proxy_and_target_sees_snat_source() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let latticed = Latticed::start(&two_service_config(a.name(), b.name()));

    let body = b
        .curl(&format!("{SVC_A}hello?x=1"))
        .expect("svc-a from vpc-b");
    let answer = echo(&body);
    assert_eq!(
        answer["app"],
        a.name(),
        "svc-a is served by the app in vpc-a"
    );
    assert_eq!(answer["path"], "/hello");
    let client = answer["client"].as_str().unwrap();
    assert!(
        in_source_pool(client),
        "target saw {client}, not a 169.254.171.192-252 source"
    );
    assert_eq!(
        answer["xForwardedFor"], "10.0.16.10",
        "X-Forwarded-For is the real client"
    );

    // Inspectable: pins with clear names, a link per client namespace.
    let mut pinned = latticed.pinned();
    pinned.sort();
    let mut want = vec![a.name().to_owned(), b.name().to_owned()];
    want.sort();
    assert_eq!(pinned, want);
    let files: Vec<String> = std::fs::read_dir(latticed.bpffs_root.join(b.name()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in [
        "steer_to_proxy",
        "steer_link",
        "steer_vips",
        "steer_listener",
        "steer_stats",
        "steer_sg_rules",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not pinned: {files:?}");
    }
    assert_eq!(sk_lookup_links(b.ns.inode()), 1);
    let routes = b.ns.latticed_routes();
    assert!(
        routes.contains("local 169.254.171.0/24") && routes.contains("local fd00:ec2:80::/64"),
        "local routes of both families in vpc-b: {routes}"
    );
}

#[test]
fn overlapping_cidrs_work_both_ways_at_once() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let _latticed = Latticed::start(&two_service_config(a.name(), b.name()));
    let (an, bn) = (a.name().to_owned(), b.name().to_owned());
    thread::scope(|s| {
        let ab = s.spawn(|| {
            for _ in 0..20 {
                let ans = echo(&a.curl(SVC_B).expect("vpc-a -> svc-b"));
                assert_eq!(ans["app"], bn.as_str());
            }
        });
        let ba = s.spawn(|| {
            for _ in 0..20 {
                let ans = echo(&b.curl(SVC_A).expect("vpc-b -> svc-a"));
                assert_eq!(ans["app"], an.as_str());
            }
        });
        ab.join().unwrap();
        ba.join().unwrap();
    });
}

#[test]
fn unassociated_namespace_and_unconfigured_vips_are_refused() {
    let a = Vpc::new("a");
    let mut b = Vpc::new("b");
    let outsider = Vpc::new("c");
    let _latticed = Latticed::start(&two_service_config(a.name(), b.name()));
    for url in [SVC_A, SVC_B] {
        let err = outsider
            .curl(url)
            .expect_err("an unassociated namespace must not reach services");
        assert_eq!(err.0, CURL_COULDNT_CONNECT, "{url}: {err:?}");
    }
    // Associated namespace, but a VIP or port nobody configured.
    for url in ["http://169.254.171.12/", "http://169.254.171.10:81/"] {
        let err = b.curl(url).expect_err("unconfigured VIP:port");
        assert_eq!(err.0, CURL_COULDNT_CONNECT, "{url}: {err:?}");
    }
    // Still refused when a local process listens on the wildcard address at
    // that port: the range belongs to latticed.
    let mut squatter = b.ns.command(bin("latticed-echo"));
    squatter.args(["--name", "squatter", "--listen", "0.0.0.0:81"]);
    b.ns.spawn(squatter);
    wait_until(Duration::from_secs(5), || {
        curl_in(&b.ns, "http://127.0.0.1:81/", &[]).is_ok()
    });
    let err = b
        .curl("http://169.254.171.10:81/")
        .expect_err("sk_lookup refuses unconfigured ports in the range");
    assert_eq!(err.0, CURL_COULDNT_CONNECT);
}

#[test]
fn sigterm_removes_routes_links_and_pins() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let mut latticed = Latticed::start(&two_service_config(a.name(), b.name()));
    assert!(b.curl(SVC_A).is_ok());
    assert_eq!(latticed.pinned().len(), 2);
    let status = latticed.stop_with(libc::SIGTERM);
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(!latticed.bpffs_root.exists(), "pin root removed");
    for vpc in [&a, &b] {
        assert_eq!(
            vpc.ns.latticed_routes(),
            "",
            "routes left in {}",
            vpc.name()
        );
        assert_eq!(
            sk_lookup_links(vpc.ns.inode()),
            0,
            "links left in {}",
            vpc.name()
        );
    }
    assert!(!latticed.run_dir.join("namespaces").exists());
    // And the VIP is gone for clients.
    assert!(b.curl(SVC_A).is_err());
    assert!(latticed.log_text().contains("steering detached"));
}

#[test]
fn restart_after_sigkill_cleans_up_and_serves() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let mut latticed = Latticed::start(&two_service_config(a.name(), b.name()));
    let status = latticed.stop_with(libc::SIGKILL);
    assert!(!status.success());
    // The crash left its pins and link: clients are refused, not hung.
    assert_eq!(latticed.pinned().len(), 2, "pins survive SIGKILL");
    assert_eq!(sk_lookup_links(b.ns.inode()), 1);
    assert_eq!(b.curl(SVC_A).unwrap_err().0, CURL_COULDNT_CONNECT);

    latticed
        .spawn_and_wait_ready()
        .expect("restart after SIGKILL");
    assert!(
        latticed.log_text().contains("left behind"),
        "the restart reports what it cleaned"
    );
    assert_eq!(
        sk_lookup_links(b.ns.inode()),
        1,
        "exactly one link again, not two"
    );
    let routes = b.ns.latticed_routes();
    assert_eq!(
        routes.lines().count(),
        2,
        "one route per family, not duplicated: {routes}"
    );
    assert!(
        routes.contains("169.254.171.0/24") && routes.contains("fd00:ec2:80::/64"),
        "{routes}"
    );
    assert_eq!(
        echo(&b.curl(SVC_A).expect("serves after restart"))["app"],
        a.name()
    );
    assert_eq!(
        echo(&a.curl(SVC_B).expect("serves after restart"))["app"],
        b.name()
    );
}
