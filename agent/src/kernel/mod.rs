//! The kernel side: everything latticed creates in the kernel, and how it
//! removes it again.
//!
//! - [`routes`]: over rtnetlink, the `local 169.254.171.0/24 dev lo` route in
//!   each managed namespace, tagged with protocol [`routes::RTPROT_LATTICED`]
//!   so that `ip route show table local proto 171` lists exactly ours.
//! - [`steering`]: per client namespace, the sk_lookup program with its maps
//!   and link, pinned under the bpffs root.
//! - [`bpffs`]: mounting bpffs and removing pins a crashed run left behind.
//! - [`record`]: the list of namespaces we touched, so a restart after a crash
//!   knows where to look for our routes.

pub mod bpffs;
pub mod record;
pub mod routes;
pub mod steering;
