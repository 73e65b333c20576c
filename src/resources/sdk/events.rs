//! EventBridge: tags in its shape, a resource's tags, and the error codes it
//! answers.

use aws_sdk_eventbridge::types::Tag;

use crate::aws::{AwsError, OpResult, absent_on, built};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

/// No bus, rule or target of that name.
pub const NOT_FOUND: [&str; 1] = ["ResourceNotFoundException"];
/// CreateEventBus of a name that exists.
pub const ALREADY_EXISTS: [&str; 1] = ["ResourceAlreadyExistsException"];

pub fn tags(op: &'static str, tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| built(op, Tag::builder().key(k).value(v).build()))
        .collect()
}

/// The tags of a bus or rule, by ARN.
pub async fn tags_of(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    let out = cx
        .clients
        .events
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .op("events:ListTagsForResource")?;
    Ok(tags::to_map(out.tags(), |t| {
        (Some(t.key()), Some(t.value()))
    }))
}

pub async fn tag(cx: &Context, arn: &str, missing: &TagMap) -> Result<(), AwsError> {
    const OP: &str = "events:TagResource";
    cx.clients
        .events
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(tags(OP, missing)?))
        .send()
        .await
        .op(OP)?;
    Ok(())
}

/// PutTargets and RemoveTargets answer 200 even when entries failed: a
/// FailedEntryCount above 0 is an error.
pub fn failed_entries<'a>(
    op: &'static str,
    count: i32,
    entries: impl Iterator<Item = (Option<&'a str>, Option<&'a str>, Option<&'a str>)>,
) -> Result<(), AwsError> {
    if count == 0 {
        return Ok(());
    }
    let what: Vec<String> = entries
        .map(|(id, code, message)| {
            format!(
                "{}: {} {}",
                id.unwrap_or("?"),
                code.unwrap_or_default(),
                message.unwrap_or_default()
            )
        })
        .collect();
    Err(AwsError::Api {
        op,
        code: None,
        message: format!("{count} entries failed: {}", what.join("; ")),
    })
}

/// The ids of a rule's targets.
pub async fn target_ids(cx: &Context, bus: &str, rule: &str) -> Result<Vec<String>, AwsError> {
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let out = cx
            .clients
            .events
            .list_targets_by_rule()
            .rule(rule)
            .event_bus_name(bus)
            .set_next_token(token)
            .send()
            .await
            .op("events:ListTargetsByRule");
        // The rule gone meanwhile: no targets.
        let Some(out) = absent_on(out, &NOT_FOUND)? else {
            return Ok(ids);
        };
        ids.extend(out.targets().iter().map(|t| t.id().to_owned()));
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(ids);
        }
    }
}

pub async fn remove_targets(
    cx: &Context,
    bus: &str,
    rule: &str,
    ids: Vec<String>,
) -> Result<(), AwsError> {
    const OP: &str = "events:RemoveTargets";
    if ids.is_empty() {
        return Ok(());
    }
    let out = cx
        .clients
        .events
        .remove_targets()
        .rule(rule)
        .event_bus_name(bus)
        .set_ids(Some(ids))
        .send()
        .await
        .op(OP);
    // The rule gone meanwhile: its targets went with it.
    let Some(out) = absent_on(out, &NOT_FOUND)? else {
        return Ok(());
    };
    failed_entries(
        OP,
        out.failed_entry_count(),
        out.failed_entries()
            .iter()
            .map(|e| (e.target_id(), e.error_code(), e.error_message())),
    )
}

/// Deletes a rule: its targets first, as AWS refuses DeleteRule while a rule
/// has targets ("Rule can't be deleted since it has targets"). Gone already
/// is success.
pub async fn delete_rule(cx: &Context, bus: &str, rule: &str) -> Result<(), AwsError> {
    let ids = target_ids(cx, bus, rule).await?;
    remove_targets(cx, bus, rule, ids).await?;
    let result = cx
        .clients
        .events
        .delete_rule()
        .name(rule)
        .event_bus_name(bus)
        .send()
        .await
        .op("events:DeleteRule");
    absent_on(result, &NOT_FOUND)?;
    Ok(())
}

/// The names of the rules on a bus.
pub async fn rule_names(cx: &Context, bus: &str) -> Result<Vec<String>, AwsError> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let out = cx
            .clients
            .events
            .list_rules()
            .event_bus_name(bus)
            .set_next_token(token)
            .send()
            .await
            .op("events:ListRules");
        let Some(out) = absent_on(out, &NOT_FOUND)? else {
            return Ok(names);
        };
        names.extend(
            out.rules()
                .iter()
                .filter_map(|r| r.name().map(str::to_owned)),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(names);
        }
    }
}
