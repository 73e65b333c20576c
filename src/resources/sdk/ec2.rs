//! Helpers every EC2 resource shares: ownership filters, tags at creation,
//! tag repair, and deleting what AWS is slow to let go of.

use std::future::Future;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::aws::{AwsError, OpResult, absent_on, retry_on_codes};
use crate::engine::StepCx;
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

/// Filters matching what `step` of this env created. EC2 resources are tagged
/// in the create call itself, so a resource without these tags was not made
/// by payops (or was made and failed before existing).
pub fn owned_by(cx: &Context, step: &str) -> Vec<Filter> {
    vec![
        tag_filter(tags::MANAGED_BY, tags::MANAGER),
        tag_filter(tags::ENV, cx.env().as_str()),
        tag_filter(tags::STEP, step),
    ]
}

/// What any step of the env owns: [`owned_by`] without the step.
pub fn env_owned(cx: &Context) -> Vec<Filter> {
    vec![
        tag_filter(tags::MANAGED_BY, tags::MANAGER),
        tag_filter(tags::ENV, cx.env().as_str()),
    ]
}

/// The same test as [`owned_by`], on tags already read: emulators ignore
/// some tag filters (moto on DescribeNatGateways), so every find checks again.
pub fn is_owned_by(cx: &Context, step: &str, tags: &TagMap) -> bool {
    cx.is_ours(tags) && tags.get(tags::STEP).map(String::as_str) == Some(step)
}

pub fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

pub fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    let mut f = Filter::builder().name(name);
    for v in values {
        f = f.values(v);
    }
    f.build()
}

/// The desired tags of one EC2 resource: ownership, cost and `Name`.
pub fn desired_tags(cx: &Context, step: &str, name: &str) -> TagMap {
    let mut tags = cx.tagger.for_create(step);
    tags.insert("Name".into(), name.into());
    tags
}

pub fn tag_spec(cx: &Context, resource: ResourceType, step: &str, name: &str) -> TagSpecification {
    tag_spec_with(cx, resource, step, name, &TagMap::new())
}

/// [`tag_spec`] plus `extra` tags of the resource's own.
pub fn tag_spec_with(
    cx: &Context,
    resource: ResourceType,
    step: &str,
    name: &str,
    extra: &TagMap,
) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource);
    let mut tags = desired_tags(cx, step, name);
    tags.extend(extra.clone());
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(k).value(v).build());
    }
    spec.build()
}

pub fn tag_map(tags: &[Tag]) -> TagMap {
    tags::to_map(tags, |t| (t.key(), t.value()))
}

/// Tags to add so the resource carries the desired set (empty: in sync).
pub fn missing_tags(cx: &Context, step: &str, name: &str, existing: &TagMap) -> TagMap {
    let mut missing = cx.tagger.missing(step, existing);
    if existing.get("Name").map(String::as_str) != Some(name) {
        missing.insert("Name".into(), name.into());
    }
    missing
}

pub async fn add_tags(cx: &Context, resource_id: &str, tags: &TagMap) -> Result<(), AwsError> {
    let mut req = cx.clients.ec2.create_tags().resources(resource_id);
    for (k, v) in tags {
        req = req.tags(Tag::builder().key(k).value(v).build());
    }
    req.send().await.op("ec2:CreateTags")?;
    Ok(())
}

/// Calls `call` until it succeeds, waiting (with backoff and progress) while
/// AWS answers one of `busy` (typically DependencyViolation: ENIs, NAT
/// addresses and other dependents let go slowly on real AWS), within the
/// dependency budget. An answer in `gone` means it was deleted already.
pub async fn delete_patiently<T, F, Fut>(
    cx: &Context,
    step: &StepCx<'_>,
    what: impl AsRef<str>,
    busy: &[&str],
    gone: &[&str],
    mut call: F,
) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let progress = |m: String| step.progress(m);
    retry_on_codes(
        what,
        busy,
        cx.budgets.dependency_violation,
        &progress,
        || {
            let attempt = call();
            async move { absent_on(attempt.await, gone).map(drop) }
        },
    )
    .await
}

/// The find of most EC2 steps: one `Describe*` call filtered by the step's
/// ownership tags ([`owned_by`]), each item turned into the step's found type
/// by `$found` (which has a `tags` field), then checked again on the tags read
/// ([`is_owned_by`]): emulators ignore some tag filters.
macro_rules! find_owned {
    ($cx:expr, $step:expr, $describe:ident, $op:literal, $items:ident, $found:expr) => {{
        let step_id = $step.id().as_str();
        // One describe of everything of this type the env owns, shared by
        // its steps (four security groups, four route tables, ...); each
        // step keeps its own below.
        let out = $cx
            .shared_read($op, || async {
                $cx.clients
                    .ec2
                    .$describe()
                    .set_filters(Some($crate::resources::sdk::ec2::env_owned($cx)))
                    .send()
                    .await
                    .op($op)
            })
            .await?;
        Ok::<Vec<_>, $crate::aws::AwsError>(
            out.$items()
                .iter()
                .filter_map($found)
                .filter(|f| $crate::resources::sdk::ec2::is_owned_by($cx, step_id, &f.tags))
                .collect(),
        )
    }};
}
pub(crate) use find_owned;
