//! The tags operations of the VPC Lattice API.

use serde_json::json;

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("TagResource", |c| {
        let given: rec::Tags = c.req("tags")?;
        user_tag_keys("tags", given.keys().map(String::as_str))?;
        edit_tags(c, |tags| {
            tags.extend(given);
            if tags.len() > 50 {
                return Err(ApiError::field(
                    "tags",
                    format!(
                        "a resource may have at most 50 tags; this would give it {}",
                        tags.len()
                    ),
                ));
            }
            Ok(())
        })
    }),
    ("UntagResource", |c| {
        let keys: Vec<String> = c.req("tagKeys")?;
        edit_tags(c, |tags| {
            for k in &keys {
                tags.remove(k);
            }
            Ok(())
        })
    }),
    ("ListTagsForResource", |c| {
        let (_, mut r) = tagged(c)?;
        let tags = r.tags_mut().and_then(Option::take).unwrap_or_default();
        Ok(Outcome::Read(json!({ "tags": tags })))
    }),
];

/// The resource `resourceArn` names: its id and a copy of its record.
fn tagged<'a>(c: &Ctx<'a>) -> Result<(&'a str, Record), ApiError> {
    let arn = c.get("resourceArn");
    let id = arn.rsplit('/').next().unwrap_or_default();
    let (id, r) = c
        .state
        .records
        .get_key_value(id)
        .filter(|(_, r)| !arn.is_empty() && r.arn() == arn)
        .ok_or_else(|| ApiError::not_found("RESOURCE", arn))?;
    c.check_owner(arn, arn, "RESOURCE")?;
    Ok((id.as_str(), r.clone()))
}

/// Tag/Untag: `edit` changes the resource's tags, or refuses.
fn edit_tags(
    c: &Ctx<'_>,
    edit: impl FnOnce(&mut rec::Tags) -> Result<(), ApiError>,
) -> Result<Outcome, ApiError> {
    let (id, mut r) = tagged(c)?;
    let Some(slot) = r.tags_mut() else {
        return Err(ApiError::not_found("RESOURCE", c.get("resourceArn")));
    };
    let mut tags = slot.take().unwrap_or_default();
    edit(&mut tags)?;
    *slot = Some(tags);
    write(vec![Change::Put(id.to_owned(), r)], json!({}))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Api;

    #[test]
    fn tags_are_added_removed_and_bounded_per_resource() {
        let mut api = Api::new();
        let svc = api.ok(
            "CreateService",
            json!({"name": "shop", "tags": {"team": "web"}}),
        );
        let arn = svc["arn"].clone();
        let tags = |api: &mut Api| {
            api.ok("ListTagsForResource", json!({"resourceArn": arn}))["tags"].clone()
        };
        assert_eq!(tags(&mut api), json!({"team": "web"}));
        api.ok(
            "TagResource",
            json!({"resourceArn": arn, "tags": {"env": "prod", "team": "shop"}}),
        );
        assert_eq!(tags(&mut api), json!({"env": "prod", "team": "shop"}));
        api.ok(
            "UntagResource",
            json!({"resourceArn": arn, "tagKeys": ["team", "absent"]}),
        );
        assert_eq!(tags(&mut api), json!({"env": "prod"}));
        let many: serde_json::Map<String, serde_json::Value> =
            (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
        let e = api.err("TagResource", json!({"resourceArn": arn, "tags": many}));
        assert!(e.message.contains("at most 50 tags"), "{e}");
        let forged = arn
            .as_str()
            .unwrap()
            .replace("111122223333", "999999999999");
        let e = api.err("ListTagsForResource", json!({"resourceArn": forged}));
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
    }

    /// Keys beginning with `aws:` are AWS's: refused when tagging and when
    /// creating, in either case, naming the key.
    #[test]
    fn aws_tag_keys_are_refused() {
        let mut api = Api::new();
        let arn = api.ok("CreateService", json!({"name": "shop"}))["arn"].clone();
        for key in ["aws:team", "AWS:team", "Aws:x"] {
            let e = api.err(
                "TagResource",
                json!({"resourceArn": arn, "tags": {key: "v"}}),
            );
            assert_eq!(e.code, "ValidationException", "{e}");
            assert!(e.message.contains(&format!("tags.{key}")), "{e}");
        }
        let e = api.err(
            "CreateServiceNetwork",
            json!({"name": "net-a", "tags": {"aws:x": "v"}}),
        );
        assert!(e.message.contains("tags.aws:x"), "{e}");
        let e = api.ram_err(
            "CreateResourceShare",
            json!({"name": "s", "tags": [{"key": "aws:x", "value": "v"}]}),
        );
        assert_eq!(e.code, "InvalidParameterException", "{e}");
        api.ok(
            "TagResource",
            json!({"resourceArn": arn, "tags": {"awsx": "v", "team:aws": "v"}}),
        );
    }
}
