//! `cargo xtask`: the jobs cargo cannot express.
//!
//! - `setup`: install what is missing (Debian packages, nightly rust-src,
//!   bpf-linker built against LLVM 22), skipping what is present.
//! - `build-ebpf`: build the eBPF object and refresh (or `--check`) the
//!   committed copy in `ebpf/prebuilt/`.
//! - `test`: set-up, eBPF drift check, fmt, clippy (host and eBPF), build,
//!   and every test, unit and privileged, under a chosen runner.
//! - `demo`: the walkthrough on two overlapping namespaces, in the foreground.
//! - `fuzz`: the fuzz targets in `fuzz/`, each for a given time.

mod bench;
mod demo;
mod fuzz;
// Only tests: a check on the sources themselves.
#[cfg(test)]
mod lint;
mod model;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Install what building and testing need, skipping what is present.
    Setup,
    /// Build the eBPF object (needs nightly rust-src and bpf-linker).
    BuildEbpf {
        /// Fail if the committed object differs from what the source builds,
        /// instead of updating it.
        #[arg(long)]
        check: bool,
    },
    /// Run the benchmarks in release (results in target/bench/).
    Bench {
        /// A few seconds' run that checks the bench works (CI runs this).
        #[arg(long)]
        smoke: bool,
        /// Skip installing missing tools.
        #[arg(long)]
        no_setup: bool,
        /// Only the data path (skips the control plane and auth parts).
        #[arg(long, conflicts_with = "abuse_only")]
        data_path_only: bool,
        /// Only the abuse scenarios (slow clients, HTTP/2 floods, large
        /// bodies; latticed's memory and others' latency under them).
        #[arg(long)]
        abuse_only: bool,
        /// Only cluster mode (mutation latency on etcd against redb, and
        /// convergence between two nodes).
        #[arg(long, conflicts_with_all = ["abuse_only", "data_path_only"])]
        cluster_only: bool,
        /// How many times each data-path case runs, taking turns with the
        /// others; the report gives the median (default 3, 1 with --smoke).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: Option<u32>,
    },
    /// Derive the embedded VPC Lattice and RAM models from the installed botocore.
    GenModel {
        /// Fail if the committed model differs instead of rewriting it.
        #[arg(long)]
        check: bool,
    },
    /// Set up, lint, build and run every test (unit and privileged).
    Test {
        /// Command the test binaries run under; default: none as root, else "sudo -E".
        #[arg(long)]
        runner: Option<String>,
        /// Skip installing missing tools.
        #[arg(long)]
        no_setup: bool,
        /// Only the tier that needs no privileges (and installs nothing):
        /// unit tests and the proxy's paths over loopback.
        #[arg(long, conflicts_with_all = ["runner", "no_setup"])]
        unit: bool,
        /// Extra arguments for the test runner (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the fuzz targets (cargo-fuzz on nightly), each for a while.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
        seconds: u64,
        /// Skip installing missing tools.
        #[arg(long)]
        no_setup: bool,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
    /// Run the walkthrough demo until Ctrl-C.
    Demo {
        /// Skip installing missing tools.
        #[arg(long)]
        no_setup: bool,
        /// 2: split the walkthrough across two hosts (namespaces joined
        /// by a link), each running a latticed, over the tunnels.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        hosts: u8,
    },
}

/// The workspace root (xtask's parent).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Prints a step heading.
pub fn step(msg: &str) {
    eprintln!("\n==> {msg}");
}

/// Runs a command, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The cargo that runs us.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

const EBPF_OBJECT: &str = "ebpf/prebuilt/latticed-ebpf.o";

/// Builds the eBPF object. Paths are remapped so the object does not depend
/// on where the repository or the toolchains live: the same source gives the
/// same bytes on every machine, which is what makes the drift check possible.
fn build_ebpf(check: bool) -> anyhow::Result<()> {
    step("building the eBPF object (nightly, build-std=core, bpf-linker)");
    let root = root();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup"));
    let rustflags = format!(
        "-Cdebuginfo=2 -Clink-arg=--btf --remap-path-prefix={}=/latticed --remap-path-prefix={cargo_home}=/cargo --remap-path-prefix={rustup_home}=/rustup",
        root.display()
    );
    run(nightly_ebpf_cargo("build")
        .args(["--target-dir", "target/bpf"])
        .env("RUSTFLAGS", rustflags)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER"))?;
    let built = root.join("target/bpf/bpfel-unknown-none/release/latticed-ebpf");
    let fresh = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    let committed_path = root.join(EBPF_OBJECT);
    let committed = std::fs::read(&committed_path).unwrap_or_default();
    if fresh == committed {
        eprintln!("{EBPF_OBJECT} matches its source ({} bytes)", fresh.len());
        return Ok(());
    }
    if check {
        bail!(
            "{EBPF_OBJECT} differs from what ebpf/ builds: run `cargo xtask build-ebpf` and commit the object"
        );
    }
    std::fs::write(&committed_path, &fresh)
        .with_context(|| format!("writing {}", committed_path.display()))?;
    eprintln!(
        "updated {EBPF_OBJECT} ({} bytes): commit it with the source change",
        fresh.len()
    );
    Ok(())
}

/// `rustup run nightly cargo SUBCOMMAND` for the eBPF crate, on the BPF
/// target with core built from source (the outer workspace stays on stable).
fn nightly_ebpf_cargo(subcommand: &str) -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(root())
        .args([
            "run",
            "nightly",
            "cargo",
            subcommand,
            "--package",
            "latticed-ebpf",
        ])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            // The workspace builds its dependencies for size and links
            // with fat LTO in one unit (Cargo.toml); the eBPF object (core
            // included) keeps opt-level 3, thin LTO and four units, so it
            // stays what the verifier accepted and byte-identical to the
            // committed one.
            "--config",
            "profile.release.package.\"*\".opt-level=3",
            "--config",
            "profile.release.lto=\"thin\"",
            "--config",
            "profile.release.codegen-units=4",
        ]);
    c
}

/// Lints the eBPF crate on its own: it only builds for the BPF target.
fn clippy_ebpf() -> anyhow::Result<()> {
    step("clippy on the eBPF crate");
    run(nightly_ebpf_cargo("clippy").args(["--target-dir", "target/bpf", "--", "-D", "warnings"]))
}

fn test(runner: Option<String>, no_setup: bool, args: &[String]) -> anyhow::Result<()> {
    let tools = if no_setup {
        setup::probe()
    } else {
        setup::setup()?
    };
    if tools.ebpf {
        // In CI the committed object must match; locally it is refreshed.
        build_ebpf(std::env::var_os("CI").is_some())?;
        clippy_ebpf()?;
    } else {
        eprintln!("eBPF toolchain unavailable: building from the committed {EBPF_OBJECT}");
    }
    step("cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy --all-targets -- -D warnings");
    run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    step("benchmark smoke (checks the bench runs; numbers not meaningful)");
    bench::bench(true)?;
    if tools.fuzz {
        // A few seconds each: every target still builds and survives its
        // seeds. The long runs are `cargo xtask fuzz`.
        fuzz::fuzz(5, &[])?;
    } else {
        eprintln!("cargo-fuzz or nightly unavailable: fuzz smoke skipped");
    }
    step("building binaries the tests run");
    run(cargo().args(["build", "--bins"]))?;

    let runner = runner.unwrap_or_else(|| {
        if is_root() {
            String::new()
        } else {
            "sudo -E".into()
        }
    });
    step(&format!(
        "running every test{}",
        if runner.is_empty() {
            String::new()
        } else {
            format!(" under {runner:?}")
        }
    ));
    let mut cmd = cargo();
    if !runner.is_empty() {
        cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", &runner);
    }
    if tools.nextest {
        cmd.args(["nextest", "run", "--no-fail-fast"]).args(args);
        return run(&mut cmd);
    }
    cmd.args(["test", "--no-fail-fast"]).args(args);
    cargo_test_with_summary(cmd)
}

/// The packages whose tests need no privileges: all but the privileged
/// suite (latticed-tests) and the eBPF crate (built for the BPF target).
const UNPRIVILEGED_PACKAGES: [&str; 4] = ["latticed", "latticed-proxy", "latticed-common", "xtask"];

/// Unit tests that need privileges anyway (entering a namespace) carry this
/// prefix in their name; the root-free tier leaves them out.
const PRIVILEGED_PREFIX: &str = "privileged_";

/// `cargo xtask test --unit`: the root-free tier, as any user, installing
/// nothing (tests/README.md).
fn unit_tests(args: &[String]) -> anyhow::Result<()> {
    let nextest = setup::probe().nextest;
    step("running the tests that need no privileges");
    let mut cmd = cargo();
    cmd.arg(if nextest { "nextest" } else { "test" });
    if nextest {
        cmd.arg("run");
    }
    cmd.arg("--no-fail-fast");
    for p in UNPRIVILEGED_PACKAGES {
        cmd.args(["-p", p]);
    }
    if nextest {
        cmd.args(["-E", &format!("not test(/{PRIVILEGED_PREFIX}/)")])
            .args(args);
        return run(&mut cmd);
    }
    cmd.args(args).args(["--", "--skip", PRIVILEGED_PREFIX]);
    cargo_test_with_summary(cmd)
}

/// Runs `cargo test`, passing its output through, and ends with one plain
/// summary line over all test binaries: cargo test's own last line belongs
/// to whichever binary ran last (often an empty doc-test run).
#[expect(clippy::print_stdout, reason = "passes the test output through")]
fn cargo_test_with_summary(mut cmd: Command) -> anyhow::Result<()> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split(';') {
                    let mut words = part.split_whitespace().rev();
                    let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let n: u64 = n.parse().unwrap_or(0);
                    match kind {
                        "passed" => passed += n,
                        "failed" => failed += n,
                        "ignored" => ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    println!("summary: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed with {status}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => setup::setup().map(|_| ()),
        Cmd::BuildEbpf { check } => build_ebpf(check),
        Cmd::GenModel { check } => model::gen_model(check),
        Cmd::Bench {
            smoke,
            no_setup,
            data_path_only,
            abuse_only,
            cluster_only,
            rounds,
        } => {
            if !no_setup {
                setup::setup()?;
            }
            let parts = if data_path_only {
                bench::Parts::DataPath
            } else if abuse_only {
                bench::Parts::Abuse
            } else if cluster_only {
                bench::Parts::Cluster
            } else {
                bench::Parts::All
            };
            bench::bench_with(smoke, parts, rounds)
        }
        Cmd::Test {
            unit: true, args, ..
        } => unit_tests(&args),
        Cmd::Test {
            runner,
            no_setup,
            args,
            ..
        } => test(runner, no_setup, &args),
        Cmd::Demo { no_setup, hosts } => demo::demo(no_setup, hosts),
        Cmd::Fuzz {
            seconds,
            no_setup,
            targets,
        } => {
            let tools = if no_setup {
                setup::probe()
            } else {
                setup::setup()?
            };
            if !tools.fuzz {
                bail!("cargo-fuzz and a nightly toolchain are needed: run `cargo xtask setup`");
            }
            fuzz::fuzz(seconds, &targets)
        }
    }
}
