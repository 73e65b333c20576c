//! The IAM role AWS Config's recorder uses to read resource configurations
//! and deliver them to the snapshots bucket.
//!
//! AWS rules encoded here (Config developer guide, iamrole-permissions):
//! - The role trusts `config.amazonaws.com`, scoped with
//!   `AWS:SourceAccount` (the confused deputy).
//! - Reading configurations: the managed policy
//!   `arn:aws:iam::aws:policy/service-role/AWS_ConfigRole` (the
//!   `service-role/` path; the older `AWSConfigRole` is deprecated).
//! - Delivery is the role's own grant: `s3:PutObject` on
//!   `{bucket}/AWSLogs/{account}/Config/*` with
//!   `s3:x-amz-acl = bucket-owner-full-control`, `s3:GetBucketAcl` on the
//!   bucket, and for an SSE-KMS bucket `kms:GenerateDataKey` + `kms:Decrypt`
//!   on its key (CG:s3-kms-key-policy).
//! - IAM is eventually consistent: the recorder and delivery channel may
//!   refuse a just-made role for a while (retried in `config_recorder`).

use serde_json::{Value, json};

use crate::aws::{AwsError, OpResult, absent_on, policy, required};
use crate::resources::sdk::iam as sdk;
use crate::tags::{self, TagMap};

use super::{Account, ItemReport, Owner, check_ours, config_bucket, missing_tags, owner_of};

pub const ITEM: &str = "config-role";
/// IAM is global; the region keeps two regions' baselines apart, and no env
/// name makes `payops-baseline-...` (see `naming`).
pub fn role_name(acct: &Account<'_>) -> String {
    format!("payops-baseline-config-{}", acct.region)
}
const DELIVERY_POLICY: &str = "config-delivery";
pub const MANAGED_POLICY: &str = "service-role/AWS_ConfigRole";

pub fn managed_policy_arn(acct: &Account<'_>) -> String {
    format!("arn:{}:iam::aws:policy/{MANAGED_POLICY}", acct.partition())
}

pub fn trust_policy(acct: &Account<'_>) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "config.amazonaws.com" },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "AWS:SourceAccount": acct.id } }
        }]
    })
}

/// What the recorder needs to deliver to the snapshots bucket, and no more.
pub fn delivery_policy(acct: &Account<'_>, key_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DeliverSnapshots",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": config_bucket::delivery_objects(acct),
                "Condition": { "StringEquals": {
                    "s3:x-amz-acl": "bucket-owner-full-control"
                } }
            },
            {
                "Sid": "CheckTheBucket",
                "Effect": "Allow",
                "Action": "s3:GetBucketAcl",
                "Resource": config_bucket::arn(acct)
            },
            {
                "Sid": "EncryptSnapshots",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": key_arn
            }
        ]
    })
}

struct Found {
    arn: String,
    trust: String,
    tags: TagMap,
}

async fn find(acct: &Account<'_>) -> Result<Option<Found>, AwsError> {
    let got = acct
        .clients
        .iam
        .get_role()
        .role_name(role_name(acct))
        .send()
        .await
        .op("iam:GetRole");
    let Some(out) = absent_on(got, &["NoSuchEntity"])? else {
        return Ok(None);
    };
    let role = required(out.role(), "iam:GetRole", "Role")?;
    // GetRole's tags are the role's (up to 50, all IAM allows).
    let tags = tags::to_map(role.tags(), |t| (Some(t.key()), Some(t.value())));
    Ok(Some(Found {
        arn: role.arn().to_owned(),
        trust: role
            .assume_role_policy_document()
            .unwrap_or_default()
            .to_owned(),
        tags,
    }))
}

/// Makes sure the role exists with its trust, AWS's managed policy and the
/// delivery grant; its report and ARN. A role under the name that payops
/// did not tag is refused.
pub async fn ensure(acct: &Account<'_>, key_arn: &str) -> Result<(ItemReport, String), AwsError> {
    let iam = &acct.clients.iam;
    let name = role_name(acct);
    let trust = trust_policy(acct).to_string();
    let mut fixed = Vec::new();
    let (found, created) = match find(acct).await? {
        Some(role) => (role, false),
        None => {
            let out = iam
                .create_role()
                .role_name(&name)
                .assume_role_policy_document(&trust)
                .description("payops account baseline: AWS Config recorder")
                .set_tags(Some(sdk::tags(&acct.tags())))
                .send()
                .await
                .op("iam:CreateRole");
            match out {
                Ok(out) => {
                    let role = required(out.role(), "iam:CreateRole", "Role")?;
                    let made = Found {
                        arn: role.arn().to_owned(),
                        trust: trust.clone(),
                        tags: acct.tags(),
                    };
                    (made, true)
                }
                // CreateRole has no idempotency token: the SDK's retry of a
                // call whose answer was lost (or a second env's `up` at the
                // same moment) meets the role that call made, and IAM
                // answers EntityAlreadyExists (CreateRole's documented
                // error). Look again: it is used only if it carries the
                // baseline's tags (checked below), as common/iam_role.rs does.
                Err(e) if e.is_code(&["EntityAlreadyExists"]) => match find(acct).await? {
                    Some(role) => (role, false),
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    };
    let arn = if created {
        found.arn
    } else {
        let role = found;
        check_ours(format!("IAM role {name}"), &role.tags)?;
        if !policy::same(&role.trust, &trust) {
            iam.update_assume_role_policy()
                .role_name(&name)
                .policy_document(&trust)
                .send()
                .await
                .op("iam:UpdateAssumeRolePolicy")?;
            fixed.push("trust");
        }
        let missing = missing_tags(acct, &role.tags);
        if !missing.is_empty() {
            iam.tag_role()
                .role_name(&name)
                .set_tags(Some(sdk::tags(&missing)))
                .send()
                .await
                .op("iam:TagRole")?;
            fixed.push("tags");
        }
        role.arn
    };

    let attached = iam
        .list_attached_role_policies()
        .role_name(&name)
        .send()
        .await
        .op("iam:ListAttachedRolePolicies")?;
    let managed = managed_policy_arn(acct);
    if !attached
        .attached_policies()
        .iter()
        .any(|p| p.policy_arn() == Some(managed.as_str()))
    {
        iam.attach_role_policy()
            .role_name(&name)
            .policy_arn(&managed)
            .send()
            .await
            .op("iam:AttachRolePolicy")?;
        fixed.push("AWS_ConfigRole");
    }

    let desired = delivery_policy(acct, key_arn).to_string();
    let current = absent_on(
        iam.get_role_policy()
            .role_name(&name)
            .policy_name(DELIVERY_POLICY)
            .send()
            .await
            .op("iam:GetRolePolicy"),
        &["NoSuchEntity"],
    )?;
    if !current.is_some_and(|c| policy::same(c.policy_document(), &desired)) {
        iam.put_role_policy()
            .role_name(&name)
            .policy_name(DELIVERY_POLICY)
            .policy_document(desired)
            .send()
            .await
            .op("iam:PutRolePolicy")?;
        fixed.push("delivery policy");
    }

    let report = if created {
        ItemReport::ours(ITEM, &name, "created")
    } else if fixed.is_empty() {
        ItemReport::ours(ITEM, &name, "in-sync")
    } else {
        ItemReport::ours(ITEM, &name, "updated")
            .with_note(format!("put back: {}", fixed.join(", ")))
    };
    Ok((report, arn))
}

pub async fn observe(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    Ok(match find(acct).await? {
        None => ItemReport::absent(ITEM, "observed"),
        Some(role) => ItemReport {
            owner: Some(owner_of(&role.tags)),
            ..ItemReport::ours(ITEM, role_name(acct), "observed")
        },
    })
}

/// Deletes the role (its inline policy and attachment first) if payops
/// created it.
pub async fn destroy(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    let name = role_name(acct);
    let Some(role) = find(acct).await? else {
        return Ok(ItemReport::absent(ITEM, "absent"));
    };
    if owner_of(&role.tags) == Owner::Adopted {
        return Ok(ItemReport {
            owner: Some(Owner::Adopted),
            ..ItemReport::ours(ITEM, &name, "kept")
        }
        .with_note("not tagged as payops' baseline role: never deleted"));
    }
    let iam = &acct.clients.iam;
    absent_on(
        iam.delete_role_policy()
            .role_name(&name)
            .policy_name(DELIVERY_POLICY)
            .send()
            .await
            .op("iam:DeleteRolePolicy"),
        &["NoSuchEntity"],
    )?;
    // DeleteRole fails (DeleteConflict) while any policy is attached.
    absent_on(
        iam.detach_role_policy()
            .role_name(&name)
            .policy_arn(managed_policy_arn(acct))
            .send()
            .await
            .op("iam:DetachRolePolicy"),
        &["NoSuchEntity"],
    )?;
    absent_on(
        iam.delete_role()
            .role_name(&name)
            .send()
            .await
            .op("iam:DeleteRole"),
        &["NoSuchEntity"],
    )?;
    Ok(ItemReport {
        state: "absent".into(),
        ..ItemReport::ours(ITEM, &name, "deleted")
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_iam::Client;
    use aws_sdk_iam::operation::attach_role_policy::AttachRolePolicyOutput;
    use aws_sdk_iam::operation::delete_role::DeleteRoleOutput;
    use aws_sdk_iam::operation::get_role::GetRoleOutput;
    use aws_sdk_iam::operation::get_role_policy::GetRolePolicyOutput;
    use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput;
    use aws_sdk_iam::operation::put_role_policy::PutRolePolicyOutput;
    use aws_sdk_iam::operation::update_assume_role_policy::UpdateAssumeRolePolicyOutput;
    use aws_sdk_iam::types::{AttachedPolicy, Role, Tag};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k";

    fn with_iam(rules: &[&Rule]) -> crate::aws::Clients {
        let mut c = testing::clients();
        c.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, rules);
        c
    }

    fn role(ours: bool) -> Rule {
        mock!(Client::get_role).then_output(move || role_output(ours))
    }

    fn role_output(ours: bool) -> GetRoleOutput {
        let c = testing::clients();
        let a = testing::account(&c);
        let mut r = Role::builder()
            .path("/")
            .role_name(role_name(&a))
            .role_id("AROAEXAMPLE")
            .arn("arn:aws:iam::123456789012:role/payops-baseline-config-us-east-1")
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            // IAM echoes the trust URL-encoded.
            .assume_role_policy_document(
                percent_encoding::utf8_percent_encode(
                    &trust_policy(&a).to_string(),
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .to_string(),
            );
        if ours {
            for (k, v) in a.tags() {
                r = r.tags(Tag::builder().key(k).value(v).build().unwrap());
            }
        }
        GetRoleOutput::builder().role(r.build().unwrap()).build()
    }

    fn mutations() -> [Rule; 4] {
        [
            mock!(Client::update_assume_role_policy)
                .then_output(|| UpdateAssumeRolePolicyOutput::builder().build()),
            mock!(Client::attach_role_policy)
                .then_output(|| AttachRolePolicyOutput::builder().build()),
            mock!(Client::put_role_policy).then_output(|| PutRolePolicyOutput::builder().build()),
            mock!(Client::delete_role).then_output(|| DeleteRoleOutput::builder().build()),
        ]
    }

    #[tokio::test]
    async fn a_converged_role_takes_no_mutating_call() {
        let c = testing::clients();
        let desired = delivery_policy(&testing::account(&c), KEY).to_string();
        let attached = mock!(Client::list_attached_role_policies).then_output(|| {
            ListAttachedRolePoliciesOutput::builder()
                .attached_policies(
                    AttachedPolicy::builder()
                        .policy_name("AWS_ConfigRole")
                        .policy_arn("arn:aws:iam::aws:policy/service-role/AWS_ConfigRole")
                        .build(),
                )
                .build()
        });
        let inline = mock!(Client::get_role_policy).then_output(move || {
            GetRolePolicyOutput::builder()
                .role_name("r")
                .policy_name(DELIVERY_POLICY)
                .policy_document(desired.clone())
                .build()
                .unwrap()
        });
        let m = mutations();
        let c = with_iam(&[&role(true), &attached, &inline, &m[0], &m[1], &m[2]]);
        let (r, arn) = ensure(&testing::account(&c), KEY).await.unwrap();
        assert_eq!(r.action, "in-sync");
        assert!(arn.ends_with("role/payops-baseline-config-us-east-1"));
        let calls: Vec<usize> = m.iter().map(Rule::num_calls).collect();
        assert_eq!(calls, [0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn a_role_of_that_name_payops_did_not_tag_is_refused_and_kept() {
        let m = mutations();
        let c = with_iam(&[&role(false), &m[0], &m[1], &m[2], &m[3]]);
        let err = ensure(&testing::account(&c), KEY).await.unwrap_err();
        assert!(matches!(err, AwsError::NotOurs { .. }), "{err}");
        let r = destroy(&testing::account(&c)).await.unwrap();
        assert_eq!((r.action, r.owner), ("kept", Some(Owner::Adopted)));
        let calls: Vec<usize> = m.iter().map(Rule::num_calls).collect();
        assert_eq!(calls, [0, 0, 0, 0]);
    }

    /// CreateRole whose first answer was lost: the SDK's retry meets the
    /// role the first attempt made.
    fn create_conflict() -> Rule {
        mock!(Client::create_role).then_error(|| {
            aws_sdk_iam::operation::create_role::CreateRoleError::generic(testing::error_meta(
                "EntityAlreadyExists",
            ))
        })
    }

    fn absent_then(ours: bool) -> Rule {
        mock!(Client::get_role)
            .sequence()
            .error(|| {
                aws_sdk_iam::operation::get_role::GetRoleError::generic(testing::error_meta(
                    "NoSuchEntity",
                ))
            })
            .output(move || role_output(ours))
            .build()
    }

    #[tokio::test]
    async fn a_lost_create_answer_finds_the_role_again_and_uses_it_only_if_ours() {
        let c = testing::clients();
        let desired = delivery_policy(&testing::account(&c), KEY).to_string();
        let attached = mock!(Client::list_attached_role_policies).then_output(|| {
            ListAttachedRolePoliciesOutput::builder()
                .attached_policies(
                    AttachedPolicy::builder()
                        .policy_arn("arn:aws:iam::aws:policy/service-role/AWS_ConfigRole")
                        .build(),
                )
                .build()
        });
        let inline = mock!(Client::get_role_policy).then_output(move || {
            GetRolePolicyOutput::builder()
                .role_name("r")
                .policy_name(DELIVERY_POLICY)
                .policy_document(desired.clone())
                .build()
                .unwrap()
        });
        let create = create_conflict();
        let c = with_iam(&[&absent_then(true), &create, &attached, &inline]);
        let (r, arn) = ensure(&testing::account(&c), KEY).await.unwrap();
        assert_eq!(r.action, "in-sync");
        assert!(arn.ends_with("role/payops-baseline-config-us-east-1"));
        assert_eq!(create.num_calls(), 1);

        // Someone else's role of that name: refused, not used.
        let m = mutations();
        let c = with_iam(&[&absent_then(false), &create, &m[0], &m[1], &m[2]]);
        let err = ensure(&testing::account(&c), KEY).await.unwrap_err();
        assert!(matches!(err, AwsError::NotOurs { .. }), "{err}");
        let calls: Vec<usize> = m.iter().take(3).map(Rule::num_calls).collect();
        assert_eq!(calls, [0, 0, 0]);

        // Gone again (deleted in between): the conflict stands.
        let gone = mock!(Client::get_role).then_error(|| {
            aws_sdk_iam::operation::get_role::GetRoleError::generic(testing::error_meta(
                "NoSuchEntity",
            ))
        });
        let c = with_iam(&[&gone, &create]);
        let err = ensure(&testing::account(&c), KEY).await.unwrap_err();
        assert!(err.is_code(&["EntityAlreadyExists"]), "{err}");
    }

    #[test]
    fn only_this_accounts_config_may_assume_the_role() {
        let c = testing::clients();
        let t = trust_policy(&testing::account(&c));
        let st = &t["Statement"][0];
        assert_eq!(st["Principal"]["Service"], "config.amazonaws.com");
        assert_eq!(
            st["Condition"]["StringEquals"]["AWS:SourceAccount"],
            "123456789012"
        );
        assert_eq!(
            managed_policy_arn(&testing::account(&c)),
            "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"
        );
    }

    #[test]
    fn the_role_may_deliver_only_under_configs_prefix_with_the_config_key() {
        let c = testing::clients();
        let key = "arn:aws:kms:us-east-1:123456789012:key/k";
        let p = delivery_policy(&testing::account(&c), key);
        let s = p["Statement"].as_array().unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0]["Resource"],
            "arn:aws:s3:::payops-baseline-config-123456789012-us-east-1/AWSLogs/123456789012/Config/*"
        );
        assert_eq!(
            s[0]["Condition"]["StringEquals"]["s3:x-amz-acl"],
            "bucket-owner-full-control"
        );
        assert_eq!(s[2]["Resource"], key);
        assert!(
            !p.to_string().contains("\"*\""),
            "no wildcard resource: {p:#}"
        );
    }
}
