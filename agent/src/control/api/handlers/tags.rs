//! The tags operations of the VPC Lattice API.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// Handles `op`, one of this resource's operations (see
/// [`super::OPERATIONS`]).
pub(super) fn handle(c: &Ctx<'_>, op: &str) -> Result<Outcome, ApiError> {
    let state = c.state;
    let input = c.input;
    match op {
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            let arn = c.get("resourceArn");
            let id = arn.rsplit('/').next().unwrap_or_default();
            let rec = state
                .records
                .get(id)
                .filter(|r| s(r, "arn") == arn)
                .ok_or_else(|| ApiError::not_found("RESOURCE", arn))?;
            let mut tags = rec["tags"].as_object().cloned().unwrap_or_default();
            match op {
                "ListTagsForResource" => return Ok(Outcome::Read(json!({"tags": tags}))),
                "TagResource" => {
                    for (k, v) in input["tags"].as_object().into_iter().flatten() {
                        tags.insert(k.clone(), v.clone());
                    }
                    if tags.len() > 50 {
                        return Err(ApiError::field(
                            "tags",
                            format!(
                                "a resource may have at most 50 tags; this would give it {}",
                                tags.len()
                            ),
                        ));
                    }
                }
                _ => {
                    for k in input["tagKeys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        tags.remove(k);
                    }
                }
            }
            let mut r = rec.clone();
            r["tags"] = Value::Object(tags);
            write(vec![Change::Put(id.to_owned(), r)], json!({}))
        }
        o => Err(ApiError::unsupported(o, "this operation's resources")),
    }
}
