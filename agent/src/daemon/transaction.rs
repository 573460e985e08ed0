//! One API call as a transaction: idempotency by client token, the change
//! planned incrementally and applied, then committed to the store, or
//! undone and answered with the error.

// The daemon's types and imports: these methods extend `Daemon`.
use super::*;

impl Daemon {
    /// Puts each listed target's health, as the data path sees it, into a
    /// ListTargets answer.
    pub(super) fn fill_health(&self, answer: &mut serde_json::Value) {
        let Some(items) = answer["items"].as_array_mut() else {
            return;
        };
        for item in items {
            let Some(group) = item["_group"].as_str() else {
                continue;
            };
            let Some(route) = self.compiled.groups.get(group) else {
                continue;
            };
            let (id, port) = (item["id"].as_str().unwrap_or(""), item["port"].as_u64());
            let found = match &route.kind {
                latticed_proxy::routing::GroupKind::Hosts { targets, .. } => targets
                    .iter()
                    .find(|t| &*t.id == id && port == Some(u64::from(t.addr.port())))
                    .map(|t| (t.health.status(), t.health.reason())),
                latticed_proxy::routing::GroupKind::Lambda(_) => Some((
                    latticed_proxy::health::Status::Unavailable,
                    latticed_proxy::health::Reason::HealthCheckDisabled,
                )),
            };
            let (status, reason) = match found {
                Some((s, r)) => (s.as_str(), r.as_str()),
                // Registered but not placed (instance missing from the
                // inventory, or its namespace is gone).
                None => ("UNAVAILABLE", Some("Target.NotRegistered")),
            };
            item["status"] = status.into();
            match reason {
                Some(r) => item["reasonCode"] = r.into(),
                None => {
                    if let Some(o) = item.as_object_mut() {
                        o.remove("reasonCode");
                    }
                }
            }
        }
    }
    /// Runs one API call: reads answer at once; a change is applied to the
    /// data path, then made durable, then acknowledged. If either step fails,
    /// state, data path and store are left as they were.
    pub(super) async fn api_call(&mut self, call: ApiCall) {
        let call_ = handlers::Call {
            op: &call.operation,
            input: &call.input,
            caller: &call.account,
        };
        let reply = self.api_outcome(call_).await;
        let _ = call.reply.send(reply);
    }
    pub(super) async fn api_outcome(
        &mut self,
        call: handlers::Call<'_>,
    ) -> Result<serde_json::Value, ApiError> {
        let handlers::Call {
            op: operation,
            input,
            caller,
        } = call;
        let token = client_token(caller, operation, input);
        // Cluster mode: the handler runs on the node's copy first. A change
        // is committed with a compare on the revision the copy was built
        // on, so a stale copy cannot commit (`Commit::Stale`: catch up,
        // plan again). A read or a refusal has no such guard: it is given
        // only once the copy has caught up with etcd, and worked out again
        // if catching up brought anything new. So a write answers without
        // an extra round trip, and every answer reflects every write any
        // node acknowledged before the call.
        let mut caught_up = self.cluster_revision().is_none();
        for _ in 0..STALE_RETRIES {
            if let Some(t) = &token {
                if let Some(answer) = self.replay(t).await? {
                    return Ok(answer);
                }
            }
            let Some(api) = self.api.as_ref() else {
                return Err(ApiError::internal("the API is not enabled"));
            };
            let now = latticed_proxy::time::iso8601(std::time::SystemTime::now());
            let t0 = std::time::Instant::now();
            let call = handlers::Call {
                op: operation,
                input,
                caller,
            };
            let outcome = handlers::handle(call, &api.state, &api.settings, now);
            if !matches!(outcome, Ok(Outcome::Write(_))) && !caught_up {
                caught_up = true;
                let before = self.cluster_revision();
                self.catch_up().await;
                if self.cluster_revision() != before {
                    continue;
                }
            }
            let mutation = match outcome? {
                Outcome::Read(mut v) => {
                    if operation == "ListTargets" {
                        self.fill_health(&mut v);
                    }
                    return Ok(v);
                }
                Outcome::Write(m) => m,
            };
            match self
                .commit_mutation(operation, mutation, token.clone(), t0)
                .await?
            {
                Some(answer) => return Ok(answer),
                None => {
                    self.catch_up().await;
                    caught_up = true;
                }
            }
        }
        Err(ApiError::internal(format!(
            "etcd: the change lost to other nodes' changes {STALE_RETRIES} times in a row; retry it"
        )))
    }

    /// Applies `mutation` to the state and the data path, then commits it
    /// (with the client token's record, if any); on any failure, undoes it
    /// everywhere. (In cluster mode the commit comes before the data path:
    /// [`Daemon::commit_then_apply`].) API calls and the daemon's own changes (a domain found
    /// verified) take this one path. `Ok(None)`: another node's mutation
    /// committed first (cluster mode); nothing was changed.
    pub(super) async fn commit_mutation(
        &mut self,
        operation: &str,
        mutation: handlers::Mutation,
        token: Option<(String, String)>,
        t0: std::time::Instant,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        let t_handle = t0.elapsed();
        let Some((undo, planned)) = self.plan_changes(&mutation.changes) else {
            return Err(ApiError::internal("the API is not enabled"));
        };
        let (plan, delta) = match planned {
            Ok(p) => p,
            Err(e) => {
                if let Some(api) = self.api.as_mut() {
                    api.state.apply(&undo);
                }
                return Err(refused(e));
            }
        };
        let t_plan = t0.elapsed();
        if self.cluster_revision().is_some() {
            return self
                .commit_then_apply(operation, mutation, token, (plan, &delta), &undo)
                .await;
        }
        let previous = match self.apply_delta(plan, Some(&delta)).await {
            Ok(previous) => previous,
            Err(e) => {
                if let Some(api) = self.api.as_mut() {
                    api.state.apply(&undo);
                }
                return Err(ApiError::internal(format!(
                    "applying the change to the data path: {e}"
                )));
            }
        };
        let t_apply = t0.elapsed();
        let token_record = token_record(token.as_ref(), &mutation.result);
        let token_record = token_record.as_ref().map(|(k, v)| (*k, v));
        let committed = match self.api.as_ref().map(|a| &a.backend) {
            Some(Backend::Local(store)) => store
                .commit(&mutation.changes, token_record)
                .map_err(|e| format!("storing the change: {e}")),
            _ => Err("the API is not enabled".to_owned()),
        };
        if let Err(e) = committed {
            if let Some(api) = self.api.as_mut() {
                api.state.apply(&undo);
            }
            let _ = self.apply(previous).await;
            return Err(ApiError::internal(e));
        }
        tracing::debug!(
            operation,
            handle_us = t_handle.as_micros() as u64,
            plan_us = (t_plan - t_handle).as_micros() as u64,
            apply_us = (t_apply - t_plan).as_micros() as u64,
            commit_us = (t0.elapsed() - t_apply).as_micros() as u64,
            "API change applied"
        );
        Ok(Some(mutation.result))
    }

    /// Puts `changes` into the state and re-plans only what they touched,
    /// through the same planner (on the neighbourhood of each touched
    /// service or group), into a shallow copy of the plan in force. Returns
    /// the changes that take them out of the state again, and the plan with
    /// what changed in it (`None` without the API). An API call and a
    /// change another node committed take this one step.
    pub(super) fn plan_changes(
        &mut self,
        changes: &[handlers::Change],
    ) -> Option<(Vec<handlers::Change>, Planned)> {
        let api = self.api.as_mut()?;
        let undo = api.state.apply(changes);
        let affected = api.state.affected(changes, &undo);
        let mut plan = self.plan.clone();
        let planned = replan(&api.state, &affected, &mut plan, &self.paths.netns_dir);
        Some((undo, planned.map(|delta| (plan, delta))))
    }

    /// The same clientToken with the same request answers what the first
    /// one did; with a different request it is a conflict.
    async fn replay(
        &self,
        (key, hash): &(String, String),
    ) -> Result<Option<serde_json::Value>, ApiError> {
        let seen = match self.api.as_ref().map(|a| &a.backend) {
            Some(Backend::Local(store)) => store.token(key).map_err(|e| e.to_string()),
            Some(Backend::Cluster(c)) => c.etcd.token(key).await.map_err(|e| e.to_string()),
            None => Ok(None),
        };
        match seen {
            Ok(Some(seen)) if seen["hash"] == hash.as_str() => Ok(Some(seen["response"].clone())),
            Ok(Some(_)) => Err(ApiError::conflict(
                "CLIENT_TOKEN",
                key,
                "the clientToken was already used with different parameters",
            )),
            Ok(None) => Ok(None),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

/// The record a clientToken keeps: the request's hash and the answer.
pub(super) fn token_record<'a>(
    token: Option<&'a (String, String)>,
    result: &serde_json::Value,
) -> Option<(&'a str, serde_json::Value)> {
    token.map(|(k, h)| {
        (
            k.as_str(),
            serde_json::json!({"hash": h, "response": result}),
        )
    })
}

/// A change planned into a copy of the plan in force: the plan, and what
/// changed in it.
pub(super) type Planned = Result<(Plan, Delta), control::ValidationError>;

/// How often a mutation is planned again after losing to another node's.
const STALE_RETRIES: usize = 8;

/// Idempotency: a call with a clientToken is keyed by account, operation
/// and token (one account's token never replays another's answer), and the
/// request (without the token) is hashed.
fn client_token(
    account: &str,
    operation: &str,
    input: &serde_json::Value,
) -> Option<(String, String)> {
    let t = input["clientToken"].as_str()?;
    let mut rest = input.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("clientToken");
    }
    Some((
        format!("{account}/{operation}/{t}"),
        sha256_hex(&rest.to_string()),
    ))
}

/// A change the planner refuses, as the API answers it. The planner checks
/// the whole configuration and names its fields by the configuration's
/// paths (`services[0].listeners[0].rules[2].priority`); the answer names
/// the request's own field (`priority`), what is left once the leading
/// resources are taken off.
fn refused(e: control::ValidationError) -> ApiError {
    ApiError::validation(
        e.0.into_iter()
            .map(|f| control::api::model::FieldProblem {
                name: request_field(&f.field).to_owned(),
                message: f.reason,
            })
            .collect(),
    )
}

/// The collections of the configuration that hold whole resources.
const RESOURCE_LISTS: [&str; 12] = [
    "serviceNetworks",
    "services",
    "listeners",
    "rules",
    "targetGroups",
    "accessLogSubscriptions",
    "authPolicies",
    "serviceNetworkServiceAssociations",
    "serviceNetworkVpcAssociations",
    "resourceGateways",
    "resourceConfigurations",
    "serviceNetworkResourceAssociations",
];

/// `path` without its leading `RESOURCE_LIST[i].` segments; the resource
/// itself (`body`) when nothing is left.
fn request_field(mut path: &str) -> &str {
    loop {
        let stripped = RESOURCE_LISTS.iter().find_map(|list| {
            let rest = path.strip_prefix(list)?.strip_prefix('[')?;
            let (index, rest) = rest.split_once(']')?;
            index.bytes().all(|b| b.is_ascii_digit()).then_some(rest)
        });
        match stripped {
            Some(rest) => path = rest.strip_prefix('.').unwrap_or(rest),
            None => break,
        }
    }
    if path.is_empty() {
        "body"
    } else {
        path
    }
}

/// Re-plans the services and target groups `affected` names into `plan`,
/// each from its neighbourhood in `state`; returns what changed.
pub(super) fn replan(
    state: &handlers::State,
    affected: &handlers::Affected,
    plan: &mut Plan,
    netns_dir: &std::path::Path,
) -> Result<Delta, control::ValidationError> {
    let exists = |ns: &str| netns_dir.join(ns).exists();
    for (ns, add) in &affected.associations {
        if !add || exists(ns) {
            plan.associate(ns, *add);
        }
    }
    let mut delta = Delta::default();
    for (id, name) in &affected.groups {
        let group = match state.group_config(id) {
            Some(c) => plan_with(&c, netns_dir, Missing::Skip)?
                .target_groups
                .remove(name.as_str()),
            None => None,
        };
        plan.set_group(name, group, exists);
        delta.groups.insert(name.clone());
    }
    for (id, name) in &affected.services {
        let service = match state.service_config(id) {
            Some(c) => plan_with(&c, netns_dir, Missing::Skip)?
                .services
                .remove(name.as_str()),
            None => None,
        };
        plan.set_service(name, service);
        delta.services.insert(name.clone());
    }
    if affected.resources {
        let planned = plan_with(&state.resource_config(), netns_dir, Missing::Skip)?;
        plan.set_resources(planned.resources);
        delta.resources = true;
    }
    Ok(delta)
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::request_field;

    #[test]
    fn a_refusal_names_the_requests_field_not_the_configurations() {
        for (path, want) in [
            ("services[0].listeners[0].rules[2].priority", "priority"),
            (
                "services[3].listeners[1].defaultAction.forward.targetGroups[0].weight",
                "defaultAction.forward.targetGroups[0].weight",
            ),
            ("targetGroups[12].healthCheck.port", "healthCheck.port"),
            ("services[0]", "body"),
            ("name", "name"),
            ("services[x].name", "services[x].name"),
        ] {
            assert_eq!(request_field(path), want, "{path}");
        }
    }
}
