//! The rules operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateRule", create),
    ("GetRule", |c| {
        Ok(Outcome::Read(
            rule_of(c, c.get("ruleIdentifier"))?.to_value(),
        ))
    }),
    ("ListRules", |c| {
        let l = listener_of(c)?;
        let items = sorted(c.state.children::<rec::Rule>(l.id()));
        c.page_of(&items, Resource::to_value)
    }),
    ("UpdateRule", |c| {
        let r = rule_of(c, c.get("ruleIdentifier"))?;
        put(updated_rule(c, r, c.input)?)
    }),
    ("BatchUpdateRule", batch_update),
    ("DeleteRule", |c| {
        let r = rule_of(c, c.get("ruleIdentifier"))?;
        write(deleted(c.state, r), json!({}))
    }),
];

fn create(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let q = &c.settings.quotas;
    let l = listener_of(c)?;
    let lid = l.id();
    let name = c.get("name");
    let mine: Vec<&rec::Rule> = c.state.children(lid).collect();
    name_free(&mine, |r| &r.name, name, ("listener", lid))?;
    let priority: u32 = c.req("priority")?;
    if let Some(r) = mine.iter().find(|r| r.priority == priority) {
        return Err(ApiError::conflict(
            "RULE",
            r.id(),
            format!("priority {priority} is already used by rule {}", r.name),
        ));
    }
    if mine.len() >= q.rules_per_listener {
        return Err(ApiError::quota(
            "RULE",
            "rules-per-listener",
            q.rules_per_listener,
        ));
    }
    put(rec::Rule {
        meta: c.meta(Kind::Rule, |id| format!("{}/rule/{id}", l.arn()))?,
        name: name.to_owned(),
        priority,
        match_: c.req("match")?,
        action: c.action("action")?,
        is_default: false,
        listener_id: lid.to_owned(),
        service_id: l.service_id.clone(),
    })
}

/// Each update of the batch succeeds or fails on its own; two that claim
/// one priority cannot both succeed.
fn batch_update(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    listener_of(c)?;
    let (mut changes, mut ok, mut failed) = (Vec::new(), Vec::<rec::Rule>::new(), Vec::new());
    for u in c.input["rules"].as_array().into_iter().flatten() {
        let ident = s(u, "ruleIdentifier");
        let updated = rule_of(c, ident)
            .and_then(|r| updated_rule(c, r, u))
            .and_then(
                |rule| match ok.iter().find(|o| o.priority == rule.priority) {
                    Some(o) => Err(ApiError::conflict(
                        "RULE",
                        o.id(),
                        format!(
                            "priority {} is claimed by rule {} in the same batch",
                            rule.priority, o.name
                        ),
                    )),
                    None => Ok(rule),
                },
            );
        match updated {
            Ok(rule) => {
                changes.push(Change::Put(rule.id().to_owned(), rule.clone().into_record()));
                ok.push(rule);
            }
            Err(e) => failed.push(json!({"ruleIdentifier": ident, "failureCode": e.code, "failureMessage": e.message})),
        }
    }
    let ok: Vec<Value> = ok.iter().map(Resource::to_value).collect();
    write(changes, json!({"successful": ok, "unsuccessful": failed}))
}

fn rule_of<'a>(c: &Ctx<'a>, ident: &str) -> Result<&'a rec::Rule, ApiError> {
    let l = listener_of(c)?;
    let r = c.resolve::<rec::Rule>(ident)?;
    if r.listener_id != l.id() {
        return Err(ApiError::not_found("RULE", ident));
    }
    Ok(r)
}

/// Rule `r` with the members update `u` (the input, or one of a batch's)
/// gives.
fn updated_rule(c: &Ctx<'_>, r: &rec::Rule, u: &Value) -> Result<rec::Rule, ApiError> {
    let mut rule = c.touched(r);
    if let Some(p) = typed::<u32>(u, "priority")? {
        if let Some(other) = c
            .state
            .children::<rec::Rule>(&r.listener_id)
            .find(|o| o.id() != r.id() && o.priority == p)
        {
            return Err(ApiError::conflict(
                "RULE",
                other.id(),
                format!("priority {p} is already used by rule {}", other.name),
            ));
        }
        rule.priority = p;
    }
    if let Some(m) = typed(u, "match")? {
        rule.match_ = m;
    }
    if u.get("action").is_some() {
        rule.action = c.action_in(u, "action")?;
    }
    Ok(rule)
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
