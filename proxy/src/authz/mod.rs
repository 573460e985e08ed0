//! Auth policies: who may invoke a service.
//!
//! - [`policy`]: the IAM policy language as VPC Lattice uses it, parsed and
//!   validated once (on PutAuthPolicy or config load) into a form that
//!   evaluates without allocating per statement.
//! - [`principals`]: the credential store of data-path callers (access key
//!   -> secret, principal ARN, org id, session name).
//! - [`Context`]: what a request offers to conditions.
//!
//! A request to a service whose network or service has auth type AWS_IAM
//! is evaluated against the network's policy, then the service's. An
//! explicit Deny in either wins; each that applies must Allow. SigV4
//! (service `vpc-lattice-svcs`) identifies the caller; unsigned requests are
//! the anonymous principal, and a bad signature is a denial, never
//! anonymous.

pub mod policy;
pub mod principals;

use std::net::IpAddr;

use http::HeaderMap;

pub use policy::{Decision, Policy, PolicyError};
pub use principals::{Principal, Principals};

/// The action every data-path request performs.
pub const ACTION: &str = "vpc-lattice-svcs:Invoke";

/// Everything conditions and statements can look at for one request.
#[derive(Debug)]
pub struct Context<'a> {
    /// The caller, `None` for anonymous.
    pub principal: Option<&'a Principal>,
    /// `arn:...:service/svc-ID/PATH`.
    pub resource: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path (without the query).
    pub path: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Raw query string (without `?`).
    pub query: &'a str,
    /// Client VPC id (namespace name).
    pub source_vpc: &'a str,
    /// Account owning the client VPC.
    pub source_vpc_owner: &'a str,
    /// Service network ARN.
    pub service_network_arn: &'a str,
    /// Service ARN.
    pub service_arn: &'a str,
    /// Listener port.
    pub port: u16,
    /// Client address.
    pub source_ip: IpAddr,
    /// Whether the request came over TLS.
    pub secure: bool,
}

/// The outcome over both policies, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Denied; the reason goes to the access log and the 403 body.
    Deny(DenyReason),
}

/// Why a request was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// A statement denied it explicitly.
    Explicit {
        /// "service network" or "service".
        level: &'static str,
        /// Sid or `Statement[i]`.
        statement: String,
    },
    /// No statement of this policy allows it.
    NoAllow {
        /// "service network" or "service".
        level: &'static str,
    },
    /// The signature could not be verified.
    Authentication(String),
}

impl DenyReason {
    /// Short form for `authDeniedReason` in the access log.
    pub fn log_reason(&self) -> String {
        match self {
            Self::Explicit { level, statement } => {
                format!("explicit deny in the {level} policy ({statement})")
            }
            Self::NoAllow { level } => format!("no allow in the {level} policy"),
            Self::Authentication(why) => format!("authentication failed: {why}"),
        }
    }
}

/// One policy level that applies to a request: AWS_IAM with its policy
/// (`None`: no policy, so nothing is allowed).
#[derive(Debug, Clone, Copy)]
pub struct Level<'a> {
    /// "service network" or "service".
    pub name: &'static str,
    /// The policy, if one is set.
    pub policy: Option<&'a Policy>,
}

/// Evaluates the levels in order (network, then service).
pub fn evaluate(levels: &[Level<'_>], ctx: &Context<'_>) -> Verdict {
    let mut first_no_allow = None;
    for level in levels {
        match level.policy.map(|p| p.evaluate(ctx)) {
            Some(Decision::Deny(statement)) => {
                return Verdict::Deny(DenyReason::Explicit {
                    level: level.name,
                    statement,
                })
            }
            Some(Decision::Allow(_)) => {}
            Some(Decision::NoMatch) | None => {
                first_no_allow.get_or_insert(level.name);
            }
        }
    }
    match first_no_allow {
        Some(level) => Verdict::Deny(DenyReason::NoAllow { level }),
        None => Verdict::Allow,
    }
}
