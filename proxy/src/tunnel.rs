//! Tunnels between agents: how a request handled on the client's node
//! reaches a target on another node, after Istio ztunnel's HBONE.
//!
//! Each pair of nodes shares one HTTP/2 connection over mutual TLS (the
//! dialer's, made on first use, closed when idle). Each connection the data
//! path would have opened to a target on the other node is instead one
//! `CONNECT` stream on it, naming the target's address and its VPC. The
//! receiving node checks that the address is a target of a group it hosts
//! in that VPC, connects to it from inside the VPC from the source pool
//! (the target sees 169.254.171.x, as on one host) and splices the two.
//!
//! So everything above a connection (TLS to HTTPS targets, HTTP/1.1 and
//! HTTP/2 exchanges, pooling, TLS_PASSTHROUGH bytes) is the same code on
//! one host and across hosts: only where the connection comes from differs
//! (see `upstream::NsConnector::connect`).
//!
//! - [`identity`]: the cluster CA and each node's certificate.
//! - [`client`]: one [`Peer`] per other node, dialing and opening streams.
//! - [`server`]: accepting peers, authorizing and carrying streams.

pub mod client;
pub mod identity;
pub mod server;

pub use client::{Peer, Settings, TunnelStream};
pub use identity::NodeIdentity;
pub use server::{Hosted, Server};

/// The request header naming the target's VPC (the target's address alone
/// is ambiguous: VPCs overlap).
pub const VPC_HEADER: &str = "latticed-vpc";

/// The response header with the receiving node's reason for refusing or
/// failing a stream.
pub const ERROR_HEADER: &str = "latticed-error";

/// Errors of tunnels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer could not be reached or its connection failed recently;
    /// streams fail at once until the next attempt.
    #[error("node {node} unreachable over its tunnel ({addr}): {reason}")]
    Unreachable {
        /// The peer node.
        node: std::sync::Arc<str>,
        /// Its tunnel address.
        addr: std::net::SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The peer answered the CONNECT with an error.
    #[error("node {node} refused the stream to {target}: {status} {reason}")]
    Refused {
        /// The peer node.
        node: std::sync::Arc<str>,
        /// The target asked for.
        target: std::net::SocketAddr,
        /// Its status.
        status: u16,
        /// Its reason.
        reason: String,
    },
    /// The stream failed after the connection was up.
    #[error("stream to {target} through node {node}: {reason}")]
    Stream {
        /// The peer node.
        node: std::sync::Arc<str>,
        /// The target asked for.
        target: std::net::SocketAddr,
        /// What failed.
        reason: String,
    },
}
