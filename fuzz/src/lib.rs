//! The agent's parsers, for the fuzz targets. The agent is a binary crate,
//! so its modules that take outside input and depend on nothing else of
//! the agent are compiled here from their own files: the fuzzer runs the
//! code the daemon runs, not a copy.
//!
//! The crate root stands in for `agent/src/control` (whose `plan` refers
//! to its siblings through `super::`).

#![allow(dead_code, unused_imports, reason = "only the parsers are driven")]

#[path = "../../agent/src/dns.rs"]
pub mod dns;

#[path = "../../agent/src/control/model.rs"]
pub mod model;
#[path = "../../agent/src/control/plan.rs"]
pub mod plan;
#[path = "../../agent/src/control/refcount.rs"]
mod refcount;
#[path = "../../agent/src/control/security_groups.rs"]
pub mod security_groups;
pub(crate) use refcount::count;

/// `agent/src/control/api/model.rs`: the service model and its validator.
#[path = "../../agent/src/control/api/model.rs"]
pub mod api_model;
