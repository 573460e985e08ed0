//! The access log subscriptions operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// Handles `op`, one of this resource's operations (see
/// [`super::OPERATIONS`]).
pub(super) fn handle(c: &Ctx<'_>, op: &str) -> Result<Outcome, ApiError> {
    let state = c.state;
    let input = c.input;
    match op {
        "CreateAccessLogSubscription" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let dest = c.get("destinationArn");
            if let Err(e) =
                latticed_proxy::access_log::destination_path(std::path::Path::new("/"), dest)
            {
                return Err(ApiError::field("destinationArn", e.to_string()));
            }
            if let Some(a) = state
                .children(s(target, "id"), Kind::AccessLog)
                .find(|a| s(a, "destinationArn") == dest)
            {
                return Err(ApiError::conflict(
                    "ACCESS_LOG_SUBSCRIPTION",
                    s(a, "id"),
                    "this resource already logs to that destination",
                ));
            }
            let (id, mut rec) = c.record(Kind::AccessLog, json!({
                "resourceId": s(target, "id"), "resourceArn": s(target, "arn"), "destinationArn": dest,
            }));
            if let Some(t) = input.get("serviceNetworkLogType") {
                rec["serviceNetworkLogType"] = t.clone();
            }
            c.created(id, rec, "accesslogsubscription")
        }
        "GetAccessLogSubscription" => c.read(Kind::AccessLog, "accessLogSubscriptionIdentifier"),
        "ListAccessLogSubscriptions" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let items = sorted(state.children(s(target, "id"), Kind::AccessLog));
            c.page(items, Value::clone)
        }
        "UpdateAccessLogSubscription" => c.update(
            Kind::AccessLog,
            "accessLogSubscriptionIdentifier",
            &["destinationArn"],
        ),
        "DeleteAccessLogSubscription" => {
            let a = state.resolve(Kind::AccessLog, c.get("accessLogSubscriptionIdentifier"))?;
            write(vec![Change::Delete(s(a, "id").to_owned())], json!({}))
        }
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}
