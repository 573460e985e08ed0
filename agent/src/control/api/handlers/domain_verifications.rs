//! Domain verifications: an account proves it controls a domain by
//! publishing a TXT record, as AWS documents it (a record `_LABEL` in the
//! domain holding `vpc-lattice:VALUE`). The daemon looks the record up
//! through the host's resolver and marks the verification VERIFIED
//! ([`State::pending_verifications`], [`State::verified`]); one left
//! PENDING for [`TIMEOUT_HOURS`] has timed out. A verified domain covers
//! its subdomains.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::{resources::is_domain_name, *};

/// How long a verification may stay pending.
pub const TIMEOUT_HOURS: u64 = 72;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("StartDomainVerification", start),
    ("GetDomainVerification", |c| {
        let d = c.resolve::<rec::DomainVerification>(c.get("domainVerificationIdentifier"))?;
        Ok(Outcome::Read(view(c, d)))
    }),
    ("ListDomainVerifications", |c| {
        c.page_of(&sorted(c.mine::<rec::DomainVerification>()), |d| view(c, d))
    }),
    ("DeleteDomainVerification", |c| {
        let d = c.resolve::<rec::DomainVerification>(c.get("domainVerificationIdentifier"))?;
        let user = c
            .state
            .of_kind::<rec::ResourceConfiguration>()
            .find(|r| r.domain_verification_id.as_deref() == Some(d.id()));
        if let Some(r) = user {
            return Err(ApiError::conflict(
                "DOMAIN_VERIFICATION",
                d.id(),
                format!("resource configuration {} uses it", r.id()),
            ));
        }
        write(deleted(c.state, d), json!({}))
    }),
];

/// The status of `d` now: a pending verification past the timeout has
/// timed out.
pub(super) fn status_now<'a>(now: &str, d: &'a rec::DomainVerification) -> &'a str {
    let age = super::sharing::epoch(now) - super::sharing::epoch(&d.meta.created_at);
    if d.status == "PENDING" && age > (TIMEOUT_HOURS * 3600) as f64 {
        "VERIFICATION_TIMED_OUT"
    } else {
        &d.status
    }
}

fn view(c: &Ctx<'_>, d: &rec::DomainVerification) -> Value {
    let mut v = d.to_value();
    v["status"] = status_now(&c.now, d).into();
    v
}

fn start(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let domain = c
        .get("domainName")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if !is_domain_name(&domain) {
        return Err(ApiError::field(
            "domainName",
            format!("{domain:?} is not a domain name"),
        ));
    }
    if let Some(d) = c
        .mine::<rec::DomainVerification>()
        .find(|d| d.domain_name == domain)
    {
        return Err(ApiError::conflict(
            "DOMAIN_VERIFICATION",
            d.id(),
            format!("account {} already verifies {domain}", c.caller),
        ));
    }
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    put(rec::DomainVerification {
        meta: c.meta_at(Kind::DomainVerification, "domainverification")?,
        domain_name: domain,
        status: "PENDING".into(),
        txt_method_config: rec::TxtMethod {
            name: format!("_{}", super::super::random_string(14, alphabet)),
            value: format!("vpc-lattice:{}", super::super::random_string(11, alphabet)),
        },
        last_verified_time: None,
    })
}

/// A TXT lookup the daemon owes a pending verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCheck {
    /// The verification's id.
    pub id: String,
    /// The record's full name.
    pub name: String,
    /// The value that proves it.
    pub value: String,
}

impl State {
    /// The verifications still pending at `now` (not timed out), with the
    /// record each waits for.
    pub fn pending_verifications(&self, now: &str) -> Vec<PendingCheck> {
        self.of_kind::<rec::DomainVerification>()
            .filter(|d| status_now(now, d) == "PENDING")
            .map(|d| PendingCheck {
                id: d.id().to_owned(),
                name: format!("{}.{}", d.txt_method_config.name, d.domain_name),
                value: d.txt_method_config.value.clone(),
            })
            .collect()
    }

    /// The change that marks verification `id` VERIFIED at `now`, if it is
    /// still pending.
    pub fn verified(&self, id: &str, now: &str) -> Option<Mutation> {
        let d = self.get::<rec::DomainVerification>(id)?;
        if status_now(now, d) != "PENDING" {
            return None;
        }
        let mut d = d.touched(now);
        d.status = "VERIFIED".into();
        d.last_verified_time = Some(now.to_owned());
        let result = d.to_value();
        Some(Mutation {
            changes: vec![Change::Put(id.to_owned(), d.into_record())],
            result,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;

    #[test]
    fn a_verification_waits_for_its_record_then_is_verified_or_times_out() {
        let mut api = Api::new();
        let e = api.err(
            "StartDomainVerification",
            json!({"domainName": "not a domain"}),
        );
        assert!(e.message.contains("domainName"), "{e}");
        let d = api.ok(
            "StartDomainVerification",
            json!({"domainName": "Example.com."}),
        );
        assert_eq!(d["status"], "PENDING", "{d}");
        assert_eq!(d["domainName"], "example.com", "{d}");
        let txt = &d["txtMethodConfig"];
        assert!(txt["name"].as_str().unwrap().starts_with('_'), "{d}");
        assert!(
            txt["value"].as_str().unwrap().starts_with("vpc-lattice:"),
            "{d}"
        );
        let e = api.err(
            "StartDomainVerification",
            json!({"domainName": "example.com"}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        // What the daemon asks, and what it writes once the record is seen.
        let pending = api.state.pending_verifications(&api.now);
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].name,
            format!("{}.example.com", txt["name"].as_str().unwrap())
        );
        let id = d["id"].as_str().unwrap().to_owned();
        let m = api.state.verified(&id, &api.now).unwrap();
        api.state.apply(&m.changes);
        let got = api.ok(
            "GetDomainVerification",
            json!({"domainVerificationIdentifier": d["arn"]}),
        );
        assert_eq!(got["status"], "VERIFIED", "{got}");
        assert!(got["lastVerifiedTime"].is_string(), "{got}");
        assert!(api.state.pending_verifications(&api.now).is_empty());
        assert!(api.state.verified(&id, &api.now).is_none());
        // Another, left pending past the timeout.
        let other = api.ok(
            "StartDomainVerification",
            json!({"domainName": "other.example.org"}),
        );
        api.now = "2026-12-09T00:00:01.000Z".into();
        let got = api.ok(
            "GetDomainVerification",
            json!({"domainVerificationIdentifier": other["id"]}),
        );
        assert_eq!(got["status"], "VERIFICATION_TIMED_OUT", "{got}");
        assert!(api.state.pending_verifications(&api.now).is_empty());
        let listed = api.ok("ListDomainVerifications", json!({}));
        assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
        // In use by a configuration, it stays.
        let g = api.ok(
            "CreateResourceGateway",
            json!({"name": "gw-a", "vpcIdentifier": "vpc-aa"}),
        )["id"]
            .clone();
        let r = api.ok(
            "CreateResourceConfiguration",
            json!({"name": "db-main", "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["5432"],
                "customDomainName": "db.example.com", "domainVerificationIdentifier": id,
                "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.20"}}}),
        );
        assert_eq!(r["domainVerificationId"], id.as_str(), "{r}");
        let got = api.ok(
            "GetResourceConfiguration",
            json!({"resourceConfigurationIdentifier": r["id"]}),
        );
        assert_eq!(got["domainVerificationStatus"], "VERIFIED", "{got}");
        let e = api.err(
            "DeleteDomainVerification",
            json!({"domainVerificationIdentifier": id}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        api.ok(
            "DeleteResourceConfiguration",
            json!({"resourceConfigurationIdentifier": r["id"]}),
        );
        api.ok(
            "DeleteDomainVerification",
            json!({"domainVerificationIdentifier": id}),
        );
    }
}
