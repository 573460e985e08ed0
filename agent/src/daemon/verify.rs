//! Domain verifications: the daemon looks up each pending verification's
//! TXT record through the host's resolver (or
//! `--domain-verification-resolver`), every few seconds while it is
//! pending, and records it VERIFIED through the same commit path as an API
//! call. Lookups run off the daemon's loop, bounded in time; only a found
//! record comes back to it.

// The daemon's types and imports: these methods extend `Daemon`.
use super::*;

/// How often a pending verification is looked up.
const EVERY: Duration = Duration::from_secs(10);
/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The lookups under way and their results.
#[derive(Debug)]
pub(super) struct Verifier {
    /// Where TXT records are asked; none: verifications stay pending.
    resolver: Option<std::net::SocketAddr>,
    found: mpsc::Sender<String>,
    /// Verifications whose record was found.
    pub(super) results: mpsc::Receiver<String>,
    /// Verification id -> when it was last asked.
    asked: HashMap<String, std::time::Instant>,
}

impl Verifier {
    pub(super) fn new(resolver: Option<std::net::SocketAddr>) -> Self {
        match resolver {
            Some(r) => tracing::info!(resolver = %r, "domain verifications are looked up here"),
            None => tracing::warn!(
                "no resolver for domain verifications (no nameserver in /etc/resolv.conf and no --domain-verification-resolver): they stay PENDING"
            ),
        }
        let (found, results) = mpsc::channel(64);
        Self {
            resolver,
            found,
            results,
            asked: HashMap::new(),
        }
    }
}

impl Daemon {
    /// Starts a lookup for each pending verification not asked within
    /// [`EVERY`].
    pub(super) fn sweep_verifications(&mut self) {
        let Some(api) = self.api.as_mut() else {
            return;
        };
        let Some(server) = api.verifier.resolver else {
            return;
        };
        let now = latticed_proxy::time::iso8601(std::time::SystemTime::now());
        let pending = api.state.pending_verifications(&now);
        let asked = &mut api.verifier.asked;
        asked.retain(|id, _| pending.iter().any(|p| &p.id == id));
        for p in pending {
            if asked.get(&p.id).is_some_and(|t| t.elapsed() < EVERY) {
                continue;
            }
            asked.insert(p.id.clone(), std::time::Instant::now());
            let found = api.verifier.found.clone();
            tokio::spawn(async move {
                match crate::lookup::txt(server, &p.name, LOOKUP_TIMEOUT).await {
                    Ok(values) if values.iter().any(|v| v == &p.value) => {
                        let _ = found.send(p.id).await;
                    }
                    Ok(_) => tracing::debug!(
                        id = p.id,
                        record = p.name,
                        "domain verification record not there yet"
                    ),
                    Err(e) => {
                        tracing::debug!(id = p.id, record = p.name, error = %e, "domain verification lookup")
                    }
                }
            });
        }
    }

    /// Records verification `id` VERIFIED, if it still waits.
    pub(super) async fn verification_found(&mut self, id: String) {
        let Some(api) = self.api.as_ref() else {
            return;
        };
        let now = latticed_proxy::time::iso8601(std::time::SystemTime::now());
        let Some(m) = api.state.verified(&id, &now) else {
            return;
        };
        match self
            .commit_mutation("DomainVerified", m, None, std::time::Instant::now())
            .await
        {
            Ok(Some(_)) => tracing::info!(id, "domain verified"),
            Ok(None) => tracing::info!(
                id,
                "domain verification lost to another node's change; asked again later"
            ),
            Err(e) => tracing::warn!(id, error = %e, "recording a domain verification"),
        }
    }
}
