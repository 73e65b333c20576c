//! AWS WAF v2: tags in its shape, the env's web ACL by name, and its reads
//! with the lock token every write needs.
//!
//! Everything payops makes in WAF is REGIONAL (an API Gateway stage and an
//! ALB; CLOUDFRONT scope lives in us-east-1 only). UpdateWebACL and
//! DeleteWebACL take the LockToken of the latest read and fail with
//! WAFOptimisticLockException when someone changed the ACL since (WAF API
//! reference, UpdateWebACL; terraform-provider-aws `internal/service/wafv2/
//! web_acl.go` re-reads and retries): [`with_lock`] does the same.

use aws_sdk_wafv2::types::{Scope, Tag, WebAcl};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

/// The only scope payops uses.
pub const SCOPE: Scope = Scope::Regional;

/// WAF's answer for an ACL (or logging configuration) that is not there.
pub const NONEXISTENT: &str = "WAFNonexistentItemException";
/// A write with a stale lock token.
pub const STALE_LOCK: &str = "WAFOptimisticLockException";
/// How many times a write is retried with a fresh lock token: each retry
/// means someone else wrote in between, which does not go on for long.
const LOCK_ATTEMPTS: u32 = 5;

pub use crate::aws::built;

pub fn tag_list(op: &'static str, tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| built(op, Tag::builder().key(k).value(v).build()))
        .collect()
}

/// The tags of a web ACL; `None` when it is gone.
pub async fn tags_of(cx: &Context, arn: &str) -> Result<Option<TagMap>, AwsError> {
    if let Some(tags) = cx.listed_tags(arn).await {
        return Ok(Some(tags));
    }
    let out = cx
        .clients
        .wafv2
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .op("wafv2:ListTagsForResource");
    Ok(absent_on(out, &[NONEXISTENT])?.map(|o| {
        o.tag_info_for_resource()
            .map(|i| tags::to_map(i.tag_list(), |t| (Some(t.key()), Some(t.value()))))
            .unwrap_or_default()
    }))
}

pub async fn add_tags(cx: &Context, arn: &str, tags: &TagMap) -> Result<(), AwsError> {
    const OP: &str = "wafv2:TagResource";
    cx.clients
        .wafv2
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(tag_list(OP, tags)?))
        .send()
        .await
        .op(OP)?;
    Ok(())
}

/// One web ACL as ListWebACLs names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclRef {
    pub name: String,
    pub id: String,
    pub arn: String,
}

/// Every REGIONAL web ACL of the account and region (ownership not checked).
pub async fn web_acls(cx: &Context) -> Result<Vec<AclRef>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = cx
            .clients
            .wafv2
            .list_web_acls()
            .scope(SCOPE)
            .limit(100)
            .set_next_marker(marker.clone())
            .send()
            .await
            .op("wafv2:ListWebACLs")?;
        all.extend(page.web_acls().iter().filter_map(|a| {
            Some(AclRef {
                name: a.name()?.to_owned(),
                id: a.id()?.to_owned(),
                arn: a.arn()?.to_owned(),
            })
        }));
        // WAF answers a marker even on the last page when the page was
        // full; an empty page ends it too.
        match page.next_marker() {
            Some(m) if !page.web_acls().is_empty() && Some(m) != marker.as_deref() => {
                marker = Some(m.to_owned());
            }
            _ => return Ok(all),
        }
    }
}

/// The ACL and the lock token of this read; `None` when it is gone.
pub async fn get(cx: &Context, acl: &AclRef) -> Result<Option<(WebAcl, String)>, AwsError> {
    let out = cx
        .clients
        .wafv2
        .get_web_acl()
        .name(&acl.name)
        .id(&acl.id)
        .scope(SCOPE)
        .send()
        .await
        .op("wafv2:GetWebACL");
    let Some(out) = absent_on(out, &[NONEXISTENT])? else {
        return Ok(None);
    };
    let token = crate::aws::required(out.lock_token(), "wafv2:GetWebACL", "LockToken")?;
    let web_acl = crate::aws::required(out.web_acl(), "wafv2:GetWebACL", "WebACL")?;
    Ok(Some((web_acl.clone(), token.to_owned())))
}

/// Runs `write` with the lock token of a fresh read, again with a newer one
/// while WAF answers that the token is stale. `None`: the ACL is gone.
pub async fn with_lock<T, F, Fut>(
    cx: &Context,
    acl: &AclRef,
    mut write: F,
) -> Result<Option<T>, AwsError>
where
    F: FnMut(WebAcl, String) -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let mut attempt = 1;
    loop {
        let Some((current, token)) = get(cx, acl).await? else {
            return Ok(None);
        };
        match write(current, token).await {
            Err(e) if e.is_code(&[STALE_LOCK]) && attempt < LOCK_ATTEMPTS => attempt += 1,
            other => return other.map(Some),
        }
    }
}
