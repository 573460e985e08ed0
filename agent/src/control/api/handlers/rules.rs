//! The rules operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// Handles `op`, one of this resource's operations (see
/// [`super::OPERATIONS`]).
pub(super) fn handle(c: &Ctx<'_>, op: &str) -> Result<Outcome, ApiError> {
    let state = c.state;
    let input = c.input;
    let q = &c.settings.quotas;
    match op {
        "CreateRule" => {
            let l = listener_of(state, input)?;
            let lid = s(l, "id");
            let name = c.get("name");
            let mine = c.new_child(Kind::Rule, "listenerId", lid, "listener", "rule")?;
            if let Some(r) = mine.iter().find(|r| r["priority"] == input["priority"]) {
                return Err(ApiError::conflict(
                    "RULE",
                    s(r, "id"),
                    format!(
                        "priority {} is already used by rule {}",
                        input["priority"],
                        s(r, "name")
                    ),
                ));
            }
            if mine.len() >= q.rules_per_listener {
                return Err(ApiError::quota(
                    "RULE",
                    "rules-per-listener",
                    q.rules_per_listener,
                ));
            }
            let action = c.action("action", &input["action"])?;
            let (id, mut rec) = c.record(Kind::Rule, json!({
                "name": name, "priority": input["priority"], "match": input["match"], "action": action,
                "isDefault": false, "listenerId": lid, "serviceId": s(l, "serviceId"),
            }));
            rec["arn"] = format!("{}/rule/{id}", s(l, "arn")).into();
            write(vec![Change::Put(id, rec.clone())], rec)
        }
        "GetRule" => Ok(Outcome::Read(
            rule_of(state, input, c.get("ruleIdentifier"))?.clone(),
        )),
        "ListRules" => {
            let l = listener_of(state, input)?;
            let items = sorted(state.children(s(l, "id"), Kind::Rule));
            c.page(items, Value::clone)
        }
        "UpdateRule" => {
            let r = rule_of(state, input, c.get("ruleIdentifier"))?;
            let rec = updated_rule(c, r, input)?;
            write(vec![Change::Put(s(r, "id").to_owned(), rec.clone())], rec)
        }
        "BatchUpdateRule" => {
            listener_of(state, input)?;
            let (mut changes, mut ok, mut failed) = (Vec::new(), Vec::new(), Vec::new());
            for u in input["rules"].as_array().into_iter().flatten() {
                let ident = s(u, "ruleIdentifier");
                match rule_of(state, input, ident).and_then(|r| updated_rule(c, r, u)) {
                    Ok(rec) => {
                        changes.push(Change::Put(s(&rec, "id").to_owned(), rec.clone()));
                        ok.push(rec);
                    }
                    Err(e) => failed.push(json!({"ruleIdentifier": ident, "failureCode": e.code, "failureMessage": e.message})),
                }
            }
            write(changes, json!({"successful": ok, "unsuccessful": failed}))
        }
        "DeleteRule" => {
            let r = rule_of(state, input, c.get("ruleIdentifier"))?;
            let mut changes = vec![Change::Delete(s(r, "id").to_owned())];
            changes.extend(dependents(state, s(r, "id")));
            write(changes, json!({}))
        }
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}

fn rule_of<'a>(state: &'a State, input: &Value, ident: &str) -> Result<&'a Value, ApiError> {
    let l = listener_of(state, input)?;
    let r = state.resolve(Kind::Rule, ident)?;
    if s(r, "listenerId") != s(l, "id") {
        return Err(ApiError::not_found("RULE", ident));
    }
    Ok(r)
}

fn updated_rule(c: &Ctx<'_>, r: &Value, u: &Value) -> Result<Value, ApiError> {
    let mut rec = c.touched(r);
    if let Some(p) = u.get("priority") {
        if let Some(other) = c
            .state
            .children(s(r, "listenerId"), Kind::Rule)
            .find(|o| s(o, "id") != s(r, "id") && o["priority"] == *p)
        {
            return Err(ApiError::conflict(
                "RULE",
                s(other, "id"),
                format!("priority {p} is already used by rule {}", s(other, "name")),
            ));
        }
        rec["priority"] = p.clone();
    }
    if let Some(m) = u.get("match") {
        rec["match"] = m.clone();
    }
    if let Some(a) = u.get("action") {
        rec["action"] = c.action("action", a)?;
    }
    Ok(rec)
}
