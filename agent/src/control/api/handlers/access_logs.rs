//! The access log subscriptions operations of the VPC Lattice API.

use serde_json::json;

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateAccessLogSubscription", create),
    ("GetAccessLogSubscription", |c| {
        c.read::<rec::AccessLog>("accessLogSubscriptionIdentifier")
    }),
    ("ListAccessLogSubscriptions", |c| {
        let (owner, _) = log_owner(c)?;
        let items = sorted(c.state.children::<rec::AccessLog>(owner));
        c.page_of(&items, Resource::to_value)
    }),
    ("UpdateAccessLogSubscription", |c| {
        let a = c.resolve::<rec::AccessLog>(c.get("accessLogSubscriptionIdentifier"))?;
        let log_type = a.service_network_log_type.clone();
        check_destination(c, &a.resource_id, log_type.as_deref(), Some(a.id()))?;
        let mut a = c.touched(a);
        c.get("destinationArn").clone_into(&mut a.destination_arn);
        put(a)
    }),
    ("DeleteAccessLogSubscription", |c| {
        let a = c.resolve::<rec::AccessLog>(c.get("accessLogSubscriptionIdentifier"))?;
        write(vec![Change::Delete(a.id().to_owned())], json!({}))
    }),
];

/// The service network, service or resource configuration
/// `resourceIdentifier` names: its id and ARN.
fn log_owner<'a>(c: &Ctx<'a>) -> Result<(&'a str, &'a str), ApiError> {
    let ident = c.get("resourceIdentifier");
    let id = ident.rsplit('/').next().unwrap_or(ident);
    if id.starts_with(Kind::ResourceConfiguration.prefix()) {
        let r = c.resolve::<rec::ResourceConfiguration>(ident)?;
        return Ok((r.id(), r.arn()));
    }
    let owner = sn_or_service(c, ident)?;
    Ok((owner.id, owner.arn))
}

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let (owner, arn) = log_owner(c)?;
    let log_type: Option<String> = c.opt("serviceNetworkLogType")?;
    check_destination(c, owner, log_type.as_deref(), None)?;
    put(rec::AccessLog {
        meta: c.meta_at(Kind::AccessLog, "accesslogsubscription")?,
        resource_id: owner.to_owned(),
        resource_arn: arn.to_owned(),
        destination_arn: c.get("destinationArn").to_owned(),
        service_network_log_type: log_type,
    })
}

/// The input's `destinationArn` names a destination latticed can write,
/// and no other subscription of `resource` (than `this` one), for the same
/// log type, has a destination of its type: AWS allows one subscription per
/// destination type (and per log type of a network).
fn check_destination(
    c: &Ctx<'_>,
    resource: &str,
    log_type: Option<&str>,
    this: Option<&str>,
) -> Result<(), ApiError> {
    let dest = c.get("destinationArn");
    if let Err(e) = latticed_proxy::access_log::destination_path(std::path::Path::new("/"), dest) {
        return Err(ApiError::field("destinationArn", e.to_string()));
    }
    let slot = cfg::AccessLogSubscription::slot(dest, log_type);
    let kind = slot.0;
    if let Some(a) = c.state.children::<rec::AccessLog>(resource).find(|a| {
        cfg::AccessLogSubscription::slot(&a.destination_arn, a.service_network_log_type.as_deref())
            == slot
            && Some(a.id()) != this
    }) {
        return Err(ApiError::conflict(
            "ACCESS_LOG_SUBSCRIPTION",
            a.id(),
            format!(
                "this resource already has a subscription to a {kind} destination ({}); one per destination type",
                a.destination_arn
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;

    const LOGS: &str = "arn:aws:logs:us-east-1:111122223333:log-group:lattice";
    const FILE: &str = "arn:aws:s3:::lattice-logs";
    const STREAM: &str = "arn:aws:firehose:us-east-1:111122223333:deliverystream/lattice";

    #[test]
    fn a_resource_logs_once_to_each_destination() {
        let mut api = Api::new();
        let sn = api.ok("CreateServiceNetwork", json!({"name": "net-a"}))["id"].clone();
        let sub = api.ok(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "destinationArn": LOGS}),
        );
        assert!(sub["id"].as_str().unwrap().starts_with("als-"), "{sub}");
        let e = api.err(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "destinationArn": LOGS}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        // Another destination of the same type is the same conflict.
        let e = api.err(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "destinationArn": format!("{LOGS}-2")}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        // Another log type of the network may have its own.
        api.ok(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "destinationArn": format!("{LOGS}-2"), "serviceNetworkLogType": "RESOURCE"}),
        );
        let other = api.ok(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "destinationArn": FILE}),
        );
        api.ok(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "destinationArn": STREAM}),
        );
        // Updating one onto another's destination type is the same conflict.
        let e = api.err(
            "UpdateAccessLogSubscription",
            json!({"accessLogSubscriptionIdentifier": other["id"], "destinationArn": LOGS}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        let listed = api.ok(
            "ListAccessLogSubscriptions",
            json!({"resourceIdentifier": sn}),
        );
        assert_eq!(listed["items"].as_array().unwrap().len(), 4, "{listed}");
        api.ok(
            "DeleteAccessLogSubscription",
            json!({"accessLogSubscriptionIdentifier": sub["id"]}),
        );
        let e = api.err(
            "GetAccessLogSubscription",
            json!({"accessLogSubscriptionIdentifier": sub["id"]}),
        );
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
    }

    #[test]
    fn a_destination_latticed_cannot_write_is_refused_on_create_and_update() {
        let mut api = Api::new();
        let sn = api.ok("CreateServiceNetwork", json!({"name": "net-a"}))["id"].clone();
        let bad = "arn:aws:firehose:us-east-1:111122223333:deliverystream/../../etc";
        let e = api.err(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "destinationArn": bad}),
        );
        assert!(e.message.contains("destinationArn"), "{e}");
        let sub = api.ok(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "destinationArn": LOGS}),
        );
        let e = api.err(
            "UpdateAccessLogSubscription",
            json!({"accessLogSubscriptionIdentifier": sub["id"], "destinationArn": bad}),
        );
        assert!(e.message.contains("destinationArn"), "{e}");
    }
}
