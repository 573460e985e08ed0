//! `cargo xtask gen-model`: derives `agent/src/control/api/vpc-lattice-2022-11-30.json`
//! and `ram-2018-01-04.json` from the VPC Lattice and RAM service models in
//! the installed botocore, the authoritative description of each API
//! (operations, URIs, shapes, errors).
//!
//! Only the machine-readable part is kept (documentation stripped); keys are
//! sorted so regenerating from the same botocore gives the same bytes. The
//! agent embeds the file and drives routing, validation and response shapes
//! from it, so conformance follows the model rather than hand-copied limits.

use std::process::Command;

use anyhow::{bail, Context as _};

use crate::{root, step};

/// The derived models: botocore's service name and version, and where the
/// model lives in the repository.
pub const MODELS: [(&str, &str, &str); 2] = [
    (
        "vpc-lattice",
        "2022-11-30",
        "agent/src/control/api/vpc-lattice-2022-11-30.json",
    ),
    (
        "ram",
        "2018-01-04",
        "agent/src/control/api/ram-2018-01-04.json",
    ),
];

const SCRIPT: &str = r#"
import gzip, json, os, sys, botocore
base = os.path.join(os.path.dirname(botocore.__file__), "data", sys.argv[1], sys.argv[2])
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

/// Regenerates the model files (or, with `check`, fails if one would change).
pub fn gen_model(check: bool) -> anyhow::Result<()> {
    for (service, version, model) in MODELS {
        step(&format!("deriving the {service} model from botocore"));
        let out = Command::new("python3")
            .args(["-c", SCRIPT, service, version])
            .output()
            .context("running python3 (is botocore installed? `pip install botocore`)")?;
        if !out.status.success() {
            bail!(
                "reading the botocore model of {service}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let path = root().join(model);
        let current = std::fs::read(&path).unwrap_or_default();
        if current == out.stdout {
            eprintln!("{model} is up to date");
            continue;
        }
        if check {
            bail!(
                "{model} differs from the installed botocore's model: run `cargo xtask gen-model`"
            );
        }
        std::fs::write(&path, &out.stdout)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {model} ({} bytes)", out.stdout.len());
    }
    Ok(())
}
