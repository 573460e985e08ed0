//! DNS lookups latticed makes as a client: the TXT records that prove a
//! domain verification, asked of the host's resolver as AWS asks public
//! DNS, and a DNS resource's addresses, asked from inside its gateway's
//! VPC. The wire format is hickory-proto's, as the per-namespace resolver's
//! is; the answer is bounded in size and time and checked to be the answer
//! to this question from this server.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use tokio::net::UdpSocket;

/// Errors of a lookup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name is not a DNS name.
    #[error("{0:?} is not a DNS name")]
    Name(String),
    /// Sending or receiving failed.
    #[error("asking {server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{server} did not answer within {timeout:?}")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// The wait.
        timeout: Duration,
    },
    /// The name has no address of the family asked.
    #[error("{0} has no address")]
    NoAddress(String),
    /// The server answered with an error other than "no such name".
    #[error("{server} answered {code}")]
    Failed {
        /// The server.
        server: SocketAddr,
        /// Its answer.
        code: ResponseCode,
    },
}

/// The largest answer read (a UDP DNS message needs no more).
const MAX_ANSWER: usize = 4096;

/// The TXT strings at `name` (each record's strings joined, as TXT values
/// are read), asked of `server` over UDP. No such name is no records.
pub async fn txt(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<String>, Error> {
    let io = |source| Error::Io { server, source };
    let socket = UdpSocket::bind(local_for(server)).await.map_err(io)?;
    let Some(answer) = ask(&socket, server, name, RecordType::TXT, timeout).await? else {
        return Ok(Vec::new());
    };
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// Where a socket asking `server` binds: any address of its family, any
/// port.
pub fn local_for(server: SocketAddr) -> SocketAddr {
    if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

/// The addresses of `name` (AAAA when `v6`, else A) and how long they may
/// be kept (the least TTL of the records), asked of `server` through
/// `socket`, which the caller made where the question must come from (a
/// gateway's VPC). No such name, or no address, is an error.
pub async fn addresses(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    v6: bool,
    timeout: Duration,
) -> Result<(Vec<IpAddr>, Duration), Error> {
    let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
    let answer = ask(socket, server, name, rtype, timeout)
        .await?
        .ok_or_else(|| Error::NoAddress(name.to_owned()))?;
    let mut ttl = u32::MAX;
    let mut out = Vec::new();
    for r in &answer.answers {
        let ip = match &r.data {
            RData::A(a) if !v6 => IpAddr::V4(a.0),
            RData::AAAA(a) if v6 => IpAddr::V6(a.0),
            _ => continue,
        };
        ttl = ttl.min(r.ttl);
        out.push(ip);
    }
    if out.is_empty() {
        return Err(Error::NoAddress(name.to_owned()));
    }
    Ok((out, Duration::from_secs(u64::from(ttl))))
}

/// Asks `server` the one question (`name`, `rtype`) through `socket`, and
/// returns its answer (`None`: no such name). Datagrams from elsewhere, or
/// not answering this query, are ignored until the deadline.
async fn ask(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Option<Message>, Error> {
    let qname = Name::from_ascii(name).map_err(|_| Error::Name(name.to_owned()))?;
    let mut m = Message::query();
    let mut id = [0u8; 2];
    let _ = getrandom::fill(&mut id);
    m.metadata.id = u16::from_be_bytes(id);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(qname, rtype));
    let query = m.to_vec().map_err(|_| Error::Name(name.to_owned()))?;
    let io = |source| Error::Io { server, source };
    socket.send_to(&query, server).await.map_err(io)?;
    let mut buf = vec![0u8; MAX_ANSWER];
    let deadline = tokio::time::Instant::now() + timeout;
    let answer = loop {
        let got = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
        let (n, from) = match got {
            Err(_) => return Err(Error::Timeout { server, timeout }),
            Ok(r) => r.map_err(io)?,
        };
        if from != server {
            continue;
        }
        let Ok(a) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if a.metadata.id == m.metadata.id && a.metadata.message_type == MessageType::Response {
            break a;
        }
    };
    match answer.metadata.response_code {
        ResponseCode::NoError => Ok(Some(answer)),
        ResponseCode::NXDomain => Ok(None),
        code => Err(Error::Failed { server, code }),
    }
}

/// The host's resolver: the first nameserver of `/etc/resolv.conf`.
pub fn host_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    crate::dns::nameservers(&text).into_iter().next()
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{rdata::TXT, Record};

    use super::*;

    /// A one-shot server on loopback that answers the first query with
    /// `answer(query)`.
    async fn server(answer: impl Fn(&Message) -> Message + Send + 'static) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            s.send_to(&answer(&q).to_vec().unwrap(), from)
                .await
                .unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn txt_records_are_read_and_a_missing_name_is_none() {
        let addr = server(|q| {
            let mut a = Message::response(q.metadata.id, q.metadata.op_code);
            let name = q.queries[0].name().clone();
            a.add_answer(Record::from_rdata(
                name,
                60,
                RData::TXT(TXT::new(vec!["vpc-lattice:".into(), "abc".into()])),
            ));
            a
        })
        .await;
        let got = txt(addr, "_x.example.com", Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(got, ["vpc-lattice:abc"]);
        let addr = server(|q| {
            let mut a = Message::response(q.metadata.id, q.metadata.op_code);
            a.metadata.response_code = ResponseCode::NXDomain;
            a
        })
        .await;
        assert!(txt(addr, "_x.example.com", Duration::from_secs(2))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn addresses_of_the_family_asked_with_the_least_ttl() {
        use hickory_proto::rr::rdata::{A, AAAA};
        let addr = server(|q| {
            let mut a = Message::response(q.metadata.id, q.metadata.op_code);
            let name = q.queries[0].name().clone();
            if q.queries[0].query_type() == RecordType::A {
                for (ip, ttl) in [([10, 0, 16, 20], 30), ([10, 0, 16, 21], 5)] {
                    a.add_answer(Record::from_rdata(
                        name.clone(),
                        ttl,
                        RData::A(A(ip.into())),
                    ));
                }
            }
            a
        })
        .await;
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (got, ttl) = addresses(&socket, addr, "db.internal", false, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(
            got,
            [
                "10.0.16.20".parse::<IpAddr>().unwrap(),
                "10.0.16.21".parse().unwrap()
            ]
        );
        assert_eq!(ttl, Duration::from_secs(5));
        // Asked for AAAA, a server with only A records: no address.
        let addr = server(|q| {
            let mut a = Message::response(q.metadata.id, q.metadata.op_code);
            let name = q.queries[0].name().clone();
            if q.queries[0].query_type() == RecordType::AAAA {
                a.add_answer(Record::from_rdata(
                    name,
                    60,
                    RData::AAAA(AAAA(std::net::Ipv6Addr::LOCALHOST)),
                ));
            }
            a
        })
        .await;
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (got, _) = addresses(&socket, addr, "db.internal", true, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(got, [IpAddr::from(std::net::Ipv6Addr::LOCALHOST)]);
        let addr = server(|q| Message::response(q.metadata.id, q.metadata.op_code)).await;
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let e = addresses(&socket, addr, "db.internal", false, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NoAddress(_)), "{e}");
    }

    #[tokio::test]
    async fn a_wrong_id_or_silence_is_a_timeout_and_a_failure_is_named() {
        let addr = server(|q| {
            let mut a = Message::response(q.metadata.id.wrapping_add(1), q.metadata.op_code);
            a.metadata.response_code = ResponseCode::NoError;
            a
        })
        .await;
        let e = txt(addr, "_x.example.com", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        let addr = server(|q| {
            let mut a = Message::response(q.metadata.id, q.metadata.op_code);
            a.metadata.response_code = ResponseCode::ServFail;
            a
        })
        .await;
        let e = txt(addr, "_x.example.com", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("Server Failure") || e.to_string().contains("SERVFAIL"),
            "{e}"
        );
        let e = txt(addr, "bad name with spaces..", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Name(_)), "{e}");
    }
}
