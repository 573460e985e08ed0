//! `cargo xtask gen-model`: derives `agent/src/control/api/vpc-lattice-2022-11-30.json`
//! from the VPC Lattice service model in the installed botocore, the
//! authoritative description of the API (operations, URIs, shapes, errors).
//!
//! Only the machine-readable part is kept (documentation stripped); keys are
//! sorted so regenerating from the same botocore gives the same bytes. The
//! agent embeds the file and drives routing, validation and response shapes
//! from it, so conformance follows the model rather than hand-copied limits.

use std::process::Command;

use anyhow::{bail, Context as _};

use crate::{root, step};

/// Where the derived model lives in the repository.
pub const MODEL: &str = "agent/src/control/api/vpc-lattice-2022-11-30.json";

const SCRIPT: &str = r#"
import gzip, json, os, sys, botocore
base = os.path.join(os.path.dirname(botocore.__file__), "data", "vpc-lattice", "2022-11-30")
path = os.path.join(base, "service-2.json")
raw = open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()
model = json.loads(raw)
def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in ("documentation", "documentationUrl")}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x
out = strip(model)
out["metadata"]["latticedSource"] = "botocore " + botocore.__version__
sys.stdout.write(json.dumps(out, sort_keys=True, separators=(",", ":")) + "\n")
"#;

/// Regenerates the model file (or, with `check`, fails if it would change).
pub fn gen_model(check: bool) -> anyhow::Result<()> {
    step("deriving the VPC Lattice model from botocore");
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .output()
        .context("running python3 (is botocore installed? `pip install botocore`)")?;
    if !out.status.success() {
        bail!(
            "reading the botocore model: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = root().join(MODEL);
    let current = std::fs::read(&path).unwrap_or_default();
    if current == out.stdout {
        eprintln!("{MODEL} is up to date");
        return Ok(());
    }
    if check {
        bail!("{MODEL} differs from the installed botocore's model: run `cargo xtask gen-model`");
    }
    std::fs::write(&path, &out.stdout).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {MODEL} ({} bytes)", out.stdout.len());
    Ok(())
}
