//! SQS: a queue's URL by name, its tags, and the error codes SQS answers.
//!
//! SQS speaks JSON but stays compatible with its old query API: the SDK takes
//! an error's code from the `x-amzn-query-error` header when AWS sends it
//! (`AWS.SimpleQueueService.NonExistentQueue`), and from the JSON `__type`
//! otherwise (`QueueDoesNotExist`, what an emulator without the header
//! gives). Each list holds both spellings.

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::tags::TagMap;

use crate::resources::context::Context;

/// No queue of that name or URL.
pub const NO_QUEUE: [&str; 2] = [
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];
/// CreateQueue within 60 s of deleting a queue of the same name.
pub const DELETED_RECENTLY: [&str; 2] = [
    "AWS.SimpleQueueService.QueueDeletedRecently",
    "QueueDeletedRecently",
];
/// CreateQueue of an existing name with different attributes or tags (with
/// the same ones it answers the existing queue's URL).
pub const NAME_EXISTS: [&str; 2] = ["QueueAlreadyExists", "QueueNameExists"];

/// The URL of the queue named `name`, if there is one.
pub async fn queue_url(cx: &Context, name: &str) -> Result<Option<String>, AwsError> {
    const OP: &str = "sqs:GetQueueUrl";
    let out = cx
        .clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .op(OP);
    match absent_on(out, &NO_QUEUE)? {
        Some(out) => Ok(Some(required(out.queue_url(), OP, "QueueUrl")?.to_owned())),
        None => Ok(None),
    }
}

pub async fn tags_of(cx: &Context, queue_url: &str) -> Result<TagMap, AwsError> {
    // A queue URL ends with the account and the queue's name.
    if let Some(name) = queue_url.rsplit('/').next()
        && let Some(tags) = cx.listed_tags(&cx.arn("sqs", name)).await
    {
        return Ok(tags);
    }
    let out = cx
        .clients
        .sqs
        .list_queue_tags()
        .queue_url(queue_url)
        .send()
        .await
        .op("sqs:ListQueueTags")?;
    Ok(out
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}
