//! TLS_PASSTHROUGH listeners: TLS is not terminated. The proxy peeks at the
//! ClientHello for the server name (services sharing a VIP:port are told
//! apart by it), picks a target of the listener's TCP target group, and
//! splices bytes both ways. The target holds the certificate.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};

use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use crate::{
    access_log::Record,
    routing::{Action, ListenerKey, Served},
    Dataplane,
};

/// Largest ClientHello read while looking for the server name.
const MAX_HELLO: usize = 16 * 1024;

/// Reads the ClientHello from `stream` for its SNI (`None`: a complete
/// ClientHello without one). The bytes read are returned too: they go to
/// the target before the splice starts.
///
/// Read, not peeked: a peek returns at once while any byte is waiting, so
/// waiting for the rest of a partial ClientHello by peeking spun the
/// worker (3,000 partial ClientHellos held a core). A read waits.
async fn read_hello(stream: &mut TcpStream) -> std::io::Result<(Option<String>, Vec<u8>)> {
    use tokio::io::AsyncReadExt as _;
    let mut hello = Vec::new();
    let mut chunk = [0u8; 2048];
    // Fed each read's bytes as they come: it keeps what it has parsed.
    let mut acceptor = rustls::server::Acceptor::default();
    loop {
        let room = (MAX_HELLO - hello.len()).min(chunk.len());
        if room == 0 {
            return Err(std::io::Error::other("ClientHello larger than 16 KiB"));
        }
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        hello.extend_from_slice(&chunk[..n]);
        let mut rd = &chunk[..n];
        while !rd.is_empty() {
            if acceptor.read_tls(&mut rd)? == 0 {
                break;
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok((sni, hello));
            }
            Ok(None) => {}
            Err((e, _)) => return Err(std::io::Error::other(e)),
        }
    }
}

/// Copies both ways until either side ends, or until nothing has moved
/// either way for `idle`.
pub(crate) async fn splice<U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    client: TcpStream,
    upstream: &mut U,
    idle: std::time::Duration,
) -> (u64, u64) {
    let activity = Arc::new(crate::activity::Activity::without_heads());
    let mut client = crate::activity::IdleIo {
        inner: client,
        activity: Arc::clone(&activity),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, upstream);
    tokio::pin!(copy);
    loop {
        let wait = idle
            .saturating_sub(activity.idle_for())
            .max(std::time::Duration::from_millis(50));
        tokio::select! {
            r = copy.as_mut() => return r.unwrap_or_default(),
            () = tokio::time::sleep(wait) => if activity.idle_for() >= idle {
                return (0, 0);
            },
        }
    }
}

/// Serves one passthrough connection.
pub(crate) async fn serve(
    dp: &Arc<Dataplane>,
    key: ListenerKey,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    let start = Instant::now();
    let started_at = SystemTime::now();
    let (sni, hello) =
        match tokio::time::timeout(dp.config.header_read_timeout, read_hello(&mut client)).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "not a TLS ClientHello; closing");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "no ClientHello in time; closing");
                return;
            }
        };
    let served: Option<Arc<Served>> = dp
        .routes
        .load()
        .listeners
        .get(&key)
        .and_then(|v| v.route(sni.as_deref()).cloned());
    let Some(served) = served else {
        tracing::debug!(%peer, ?sni, "no TLS_PASSTHROUGH service for this server name");
        return;
    };
    let Action::Forward(forward) = &served.listener.default_action else {
        return;
    };
    let Some(group) = forward.pick() else { return };
    let crate::routing::GroupKind::Hosts { ns, .. } = &group.kind else {
        return;
    };
    let Some(target) = group.next_target() else {
        tracing::warn!(service = %served.listener.service, target_group = %group.name, "no target for a TLS_PASSTHROUGH connection");
        return;
    };
    let mut upstream = match dp.connector.connect(*ns, target.addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(service = %served.listener.service, target = %target.addr, error = %e, "target connection failed");
            return;
        }
    };
    let to_target = start.elapsed();
    if let Err(e) = upstream.write_all(&hello).await {
        tracing::warn!(service = %served.listener.service, target = %target.addr, error = %e, "target connection failed");
        return;
    }
    let (up, down) = splice(client, &mut upstream, dp.config.idle_timeout).await;
    let up = up + hello.len() as u64;
    let took = start.elapsed();
    served.listener.metrics.record(0, took);
    group.metrics.record(0, took);
    let spliced = Spliced {
        started_at,
        took,
        to_target,
        bytes: (up, down),
        sni: sni.as_deref(),
        peer,
    };
    spliced.log(dp, &served, group, target);
}

/// A passthrough connection once it ended.
struct Spliced<'a> {
    started_at: SystemTime,
    took: std::time::Duration,
    to_target: std::time::Duration,
    /// Bytes from the client (ClientHello included), and to it.
    bytes: (u64, u64),
    sni: Option<&'a str>,
    peer: SocketAddr,
}

impl Spliced<'_> {
    /// Its access log line: no HTTP fields, protocol TCP.
    fn log(
        &self,
        dp: &Dataplane,
        served: &Served,
        group: &crate::routing::TargetGroupRoute,
        target: &crate::routing::Target,
    ) {
        let network = &served.network;
        let record = Record {
            start_time: crate::time::iso8601(self.started_at),
            request_method: "-",
            request_path: "-",
            protocol: "TCP",
            response_code: 0,
            bytes_received: self.bytes.0,
            bytes_sent: self.bytes.1,
            duration: u64::try_from(self.took.as_millis()).unwrap_or(u64::MAX),
            request_to_target_duration: u64::try_from(self.to_target.as_millis()).unwrap_or(0),
            response_from_target_duration: 0,
            user_agent: "-",
            host_header: "-",
            server_name_indication: self.sni.unwrap_or("-"),
            ssl_cipher: "-",
            tls_version: "-",
            source_ip_port: self.peer.to_string(),
            target_ip_port: SocketAddr::to_string(&target.addr),
            target_group_arn: &group.arn,
            service_arn: &served.listener.service_arn,
            service_network_arn: &network.arn,
            source_vpc_arn: &network.vpc_arn,
            source_vpc_id: &network.vpc_id,
            destination_vpc_id: "-",
            caller_principal: "-",
            resolved_user: "-",
            auth_denied_reason: "-",
            request_id: "-",
            grpc_response_code: "-",
            failure_reason: "-",
        };
        dp.access_log
            .log(&[&served.listener.logs, &network.logs], &record);
    }
}
