//! The rules operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateRule", create),
    ("GetRule", |c| {
        Ok(Outcome::Read(match any_rule(c, c.get("ruleIdentifier"))? {
            AnyRule::Default(l) => default_rule(l),
            AnyRule::Rule(r) => r.to_value(),
        }))
    }),
    // The listener's rules by creation, then its default rule, as AWS
    // lists them.
    ("ListRules", |c| {
        let l = listener_of(c)?;
        let mut items: Vec<Value> = sorted(c.state.children::<rec::Rule>(l.id()))
            .into_iter()
            .map(Resource::to_value)
            .collect();
        items.push(default_rule(l));
        c.page(&items, |v| s(v, "id").to_owned(), Value::clone)
    }),
    ("UpdateRule", |c| {
        match any_rule(c, c.get("ruleIdentifier"))? {
            AnyRule::Default(l) => {
                let l = updated_default(c, l, c.input)?;
                let out = default_rule(&l);
                write(vec![Change::Put(l.id().to_owned(), l.into_record())], out)
            }
            AnyRule::Rule(r) => put(updated_rule(c, r, c.input)?),
        }
    }),
    ("BatchUpdateRule", batch_update),
    ("DeleteRule", |c| {
        match any_rule(c, c.get("ruleIdentifier"))? {
            AnyRule::Default(_) => Err(ApiError::field(
                "ruleIdentifier",
                "is the listener's default rule, which goes with the listener",
            )),
            AnyRule::Rule(r) => write(deleted(c.state, r), json!({})),
        }
    }),
];

/// A rule as the API names it: one of the listener's, or its default rule.
/// The default rule is the listener's `defaultAction` seen as a rule (AWS
/// lists it with `isDefault`); it has an id of its own, derived from the
/// listener's, and no match or priority.
enum AnyRule<'a> {
    Default(&'a rec::Listener),
    Rule(&'a rec::Rule),
}

/// The id of listener `l`'s default rule.
fn default_rule_id(l: &rec::Listener) -> String {
    format!(
        "{}{}",
        Kind::Rule.prefix(),
        l.id().trim_start_matches(Kind::Listener.prefix())
    )
}

/// The ARN of rule `id` of listener `l`.
fn rule_arn(l: &rec::Listener, id: &str) -> String {
    format!("{}/rule/{id}", l.arn())
}

/// Listener `l`'s default rule, as Get and List answer it.
fn default_rule(l: &rec::Listener) -> Value {
    let id = default_rule_id(l);
    json!({
        "arn": rule_arn(l, &id), "id": id, "name": "default", "isDefault": true,
        "action": l.default_action, "createdAt": l.meta.created_at,
        "lastUpdatedAt": l.meta.last_updated_at,
    })
}

/// The rule `ident` (id or ARN) names on the input's listener.
fn any_rule<'a>(c: &Ctx<'a>, ident: &str) -> Result<AnyRule<'a>, ApiError> {
    let l = listener_of(c)?;
    let id = ident.rsplit('/').next().unwrap_or(ident);
    let default = default_rule_id(l);
    if id == default && (!ident.starts_with("arn:") || ident == rule_arn(l, &default)) {
        return Ok(AnyRule::Default(l));
    }
    rule_of(c, ident).map(AnyRule::Rule)
}

/// Listener `l` with the default action update `u` gives; the default rule
/// has only an action to change.
fn updated_default(c: &Ctx<'_>, l: &rec::Listener, u: &Value) -> Result<rec::Listener, ApiError> {
    for field in ["match", "priority"] {
        if u.get(field).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::field(
                field,
                "the default rule has no match or priority; only its action changes",
            ));
        }
    }
    let mut l = c.touched(l);
    if u.get("action").is_some_and(|v| !v.is_null()) {
        l.default_action = c.action_in(u, "action")?;
    }
    Ok(l)
}

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
        meta: c.meta(Kind::Rule, |id| rule_arn(l, id))?,
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
    let mut done = Vec::new();
    for u in c.input["rules"].as_array().into_iter().flatten() {
        let ident = s(u, "ruleIdentifier");
        // The default rule's action is the listener's.
        if let Ok(AnyRule::Default(l)) = any_rule(c, ident) {
            match updated_default(c, l, u) {
                Ok(l) => {
                    done.push(default_rule(&l));
                    changes.push(Change::Put(l.id().to_owned(), l.into_record()));
                }
                Err(e) => failed.push(json!({"ruleIdentifier": ident, "failureCode": e.code, "failureMessage": e.message})),
            }
            continue;
        }
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
    done.extend(ok.iter().map(Resource::to_value));
    write(changes, json!({"successful": done, "unsuccessful": failed}))
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
        // Two rules and the listener's default rule.
        assert_eq!(listed["items"].as_array().unwrap().len(), 3, "{listed}");
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

    /// Each listener has a default rule, as in AWS: listed last with
    /// `isDefault`, read and updated (its action is the listener's default
    /// action) by id or ARN, never given a match or priority, never deleted.
    #[test]
    fn the_default_rule_is_listed_read_and_updated() {
        let mut api = Api::new();
        let [_, svc, l, tg] = api.service_in_network();
        let at = json!({"serviceIdentifier": svc, "listenerIdentifier": l});
        let listed = api.ok("ListRules", at.clone());
        let items = listed["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{listed}");
        assert_eq!(items[0]["isDefault"], true);
        let (id, arn) = (items[0]["id"].clone(), items[0]["arn"].clone());
        assert!(
            id.as_str().unwrap().starts_with("rule-") && id.as_str().unwrap().len() == 22,
            "{id}"
        );
        let with = |extra: serde_json::Value| {
            let mut v = at.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        for ident in [&id, &arn] {
            let got = api.ok("GetRule", with(json!({"ruleIdentifier": ident})));
            assert_eq!(
                got["action"]["forward"]["targetGroups"][0]["targetGroupIdentifier"],
                tg.as_str(),
                "{got}"
            );
            assert_eq!(got["isDefault"], true);
        }
        let fixed = json!({"fixedResponse": {"statusCode": 404}});
        let out = api.ok(
            "UpdateRule",
            with(json!({"ruleIdentifier": id, "action": fixed})),
        );
        assert_eq!(out["action"], fixed, "{out}");
        let lst = api.ok("GetListener", at.clone());
        assert_eq!(lst["defaultAction"], fixed, "{lst}");
        let e = api.err(
            "UpdateRule",
            with(json!({"ruleIdentifier": id, "priority": 5})),
        );
        assert!(e.message.contains("priority"), "{e}");
        let e = api.err("DeleteRule", with(json!({"ruleIdentifier": id})));
        assert_eq!(e.code, "ValidationException", "{e}");
        let fwd = json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}});
        let out = api.ok(
            "BatchUpdateRule",
            with(json!({"rules": [{"ruleIdentifier": id, "action": fwd}]})),
        );
        assert_eq!(out["successful"][0]["isDefault"], true, "{out}");
        let lst = api.ok("GetListener", at);
        assert!(lst["defaultAction"]["forward"].is_object(), "{lst}");
    }
}
