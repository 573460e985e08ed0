//! `cargo xtask fuzz`: the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer,
//! nightly with AddressSanitizer), each for a given time.
//!
//! `cargo xtask test` runs every target for a few seconds, so none of them
//! stops building or crashes on its seeds unnoticed; long runs are
//! `cargo xtask fuzz --seconds 600`, and their counts go to
//! docs/security.md.
//!
//! Seeds are committed in `fuzz/seeds/TARGET` and read only; what a run
//! finds goes to `fuzz/corpus/TARGET` (not committed), and crashes to
//! `fuzz/artifacts/`.

use std::process::Command;

use anyhow::{bail, Context as _};

use crate::{root, step};

/// Every fuzz target, as named in fuzz/Cargo.toml.
pub const TARGETS: [&str; 8] = [
    "http1_head",
    "chunked",
    "path",
    "policy",
    "sigv4",
    "dns",
    "api_input",
    "config",
];

/// `rustup run nightly cargo fuzz ARGS` in `fuzz/`.
fn cargo_fuzz() -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(root().join("fuzz"))
        .args(["run", "nightly", "cargo", "fuzz"])
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    c
}

/// Builds every target, then runs each named one (all when `only` is
/// empty) for `seconds`. Fails on the first crash, naming its input.
pub fn fuzz(seconds: u64, only: &[String]) -> anyhow::Result<()> {
    for t in only {
        if !TARGETS.contains(&t.as_str()) {
            bail!(
                "no fuzz target {t:?}; the targets are {}",
                TARGETS.join(", ")
            );
        }
    }
    step("building the fuzz targets (nightly, AddressSanitizer)");
    crate::run(cargo_fuzz().args(["build", "-O"]))?;
    let fuzz_dir = root().join("fuzz");
    for target in TARGETS
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == *t))
    {
        step(&format!("fuzzing {target} for {seconds} s"));
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let out = cargo_fuzz()
            .args(["run", "-O", target])
            .arg(&corpus)
            .arg(fuzz_dir.join("seeds").join(target))
            .args([
                "--".to_owned(),
                format!("-max_total_time={seconds}"),
                "-rss_limit_mb=2048".to_owned(),
                "-print_final_stats=1".to_owned(),
            ])
            .output()
            .with_context(|| format!("running the fuzz target {target}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} failed ({}):\n{}",
                out.status,
                tail.join("\n")
            );
        }
        eprintln!("{target}: {}", summary(&log));
    }
    Ok(())
}

/// libFuzzer's closing figures: runs, time, coverage.
fn summary(log: &str) -> String {
    let runs = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done "))
        .unwrap_or("(no count)");
    let cov = log
        .lines()
        .rev()
        .find(|l| l.contains(" DONE ") || l.contains("DONE   cov"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "cov:").nth(1))
        .unwrap_or("?");
    format!("{runs}, coverage {cov}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_libfuzzers_last_lines() {
        let log = "#2\tINITED cov: 10 ft: 10\n#444660\tDONE   cov: 226 ft: 604 corp: 111/9403b exec/s: 27791\nDone 444660 runs in 16 second(s)\n";
        assert_eq!(summary(log), "444660 runs in 16 second(s), coverage 226");
    }

    #[test]
    fn every_target_has_seeds_and_a_source() {
        for t in TARGETS {
            let seeds = root().join("fuzz/seeds").join(t);
            assert!(
                std::fs::read_dir(&seeds).is_ok_and(|mut d| d.next().is_some()),
                "{} has no seeds",
                seeds.display()
            );
            assert!(root()
                .join("fuzz/fuzz_targets")
                .join(format!("{t}.rs"))
                .exists());
        }
        let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
        assert_eq!(manifest.matches("[[bin]]").count(), TARGETS.len());
    }
}
