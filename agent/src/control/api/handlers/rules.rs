//! The rules operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateRule", create),
    ("GetRule", |c| {
        Ok(Outcome::Read(
            rule_of(c.state, c.input, c.get("ruleIdentifier"))?.clone(),
        ))
    }),
    ("ListRules", |c| {
        let l = listener_of(c.state, c.input)?;
        let items = sorted(c.state.children(s(l, "id"), Kind::Rule));
        c.page(items, Value::clone)
    }),
    ("UpdateRule", |c| {
        let r = rule_of(c.state, c.input, c.get("ruleIdentifier"))?;
        let rec = updated_rule(c, r, c.input)?;
        write(vec![Change::Put(s(r, "id").to_owned(), rec.clone())], rec)
    }),
    ("BatchUpdateRule", batch_update),
    ("DeleteRule", |c| {
        let r = rule_of(c.state, c.input, c.get("ruleIdentifier"))?;
        let mut changes = vec![Change::Delete(s(r, "id").to_owned())];
        changes.extend(dependents(c.state, s(r, "id")));
        write(changes, json!({}))
    }),
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let input = c.input;
    let q = &c.settings.quotas;
    let l = listener_of(c.state, input)?;
    let lid = s(l, "id");
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
        "name": c.get("name"), "priority": input["priority"], "match": input["match"], "action": action,
        "isDefault": false, "listenerId": lid, "serviceId": s(l, "serviceId"),
    }));
    rec["arn"] = format!("{}/rule/{id}", s(l, "arn")).into();
    write(vec![Change::Put(id, rec.clone())], rec)
}

/// Each update of the batch succeeds or fails on its own; two that claim
/// one priority cannot both succeed.
fn batch_update(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    listener_of(c.state, c.input)?;
    let (mut changes, mut ok, mut failed) = (Vec::new(), Vec::<Value>::new(), Vec::new());
    for u in c.input["rules"].as_array().into_iter().flatten() {
        let ident = s(u, "ruleIdentifier");
        let updated = rule_of(c.state, c.input, ident)
            .and_then(|r| updated_rule(c, r, u))
            .and_then(
                |rec| match ok.iter().find(|o| o["priority"] == rec["priority"]) {
                    Some(o) => Err(ApiError::conflict(
                        "RULE",
                        s(o, "id"),
                        format!(
                            "priority {} is claimed by rule {} in the same batch",
                            rec["priority"],
                            s(o, "name")
                        ),
                    )),
                    None => Ok(rec),
                },
            );
        match updated {
            Ok(rec) => {
                changes.push(Change::Put(s(&rec, "id").to_owned(), rec.clone()));
                ok.push(rec);
            }
            Err(e) => failed.push(json!({"ruleIdentifier": ident, "failureCode": e.code, "failureMessage": e.message})),
        }
    }
    write(changes, json!({"successful": ok, "unsuccessful": failed}))
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;
    use super::*;

    fn rule(svc: &Value, l: &Value, name: &str, priority: u32, tg: &str) -> Value {
        json!({"serviceIdentifier": svc, "listenerIdentifier": l, "name": name, "priority": priority,
            "match": {"httpMatch": {"pathMatch": {"match": {"prefix": format!("/{name}")}}}},
            "action": {"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}}})
    }

    #[test]
    fn priorities_are_unique_per_listener() {
        let mut api = Api::new();
        let [_, svc, l, tg] = api.service_in_network();
        let (svc, l) = (json!(svc), json!(l));
        let a = api.ok("CreateRule", rule(&svc, &l, "alpha", 1, &tg));
        assert_eq!(
            a["action"]["forward"]["targetGroups"][0]["weight"], 1,
            "{a}"
        );
        let e = api.err("CreateRule", rule(&svc, &l, "beta", 1, &tg));
        assert_eq!(e.code, "ConflictException", "{e}");
        let b = api.ok("CreateRule", rule(&svc, &l, "beta", 2, &tg));
        let e = api.err(
            "UpdateRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "ruleIdentifier": b["id"], "priority": 1}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        let got = api.ok(
            "GetRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "ruleIdentifier": a["id"]}),
        );
        assert_eq!(got["priority"], 1);
        let listed = api.ok(
            "ListRules",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l}),
        );
        assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
        api.ok(
            "DeleteRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "ruleIdentifier": a["id"]}),
        );
        api.ok(
            "UpdateRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "ruleIdentifier": b["id"], "priority": 1}),
        );
    }

    #[test]
    fn a_batch_applies_each_update_on_its_own() {
        let mut api = Api::new();
        let [_, svc, l, tg] = api.service_in_network();
        let (svc, l) = (json!(svc), json!(l));
        let a = api.ok("CreateRule", rule(&svc, &l, "alpha", 1, &tg))["id"].clone();
        let b = api.ok("CreateRule", rule(&svc, &l, "beta", 2, &tg))["id"].clone();
        let c = api.ok("CreateRule", rule(&svc, &l, "gamma", 3, &tg))["id"].clone();
        let out = api.ok(
            "BatchUpdateRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "rules": [
                {"ruleIdentifier": a, "priority": 10},
                {"ruleIdentifier": b, "priority": 10},
                {"ruleIdentifier": "rule-00000000000000000", "priority": 11},
                {"ruleIdentifier": c, "match": {"httpMatch": {"method": "POST"}}}]}),
        );
        let ok: Vec<&Value> = out["successful"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["id"])
            .collect();
        assert_eq!(ok, [&a, &c], "{out}");
        let failed = Api::failure_codes(&out);
        assert_eq!(
            failed,
            ["ConflictException", "ResourceNotFoundException"],
            "{out}"
        );
        let get = |api: &mut Api, r: &Value| {
            api.ok(
                "GetRule",
                json!({"serviceIdentifier": svc, "listenerIdentifier": l, "ruleIdentifier": r}),
            )
        };
        assert_eq!(get(&mut api, &a)["priority"], 10);
        assert_eq!(get(&mut api, &b)["priority"], 2);
        assert_eq!(get(&mut api, &c)["match"]["httpMatch"]["method"], "POST");
    }
}
