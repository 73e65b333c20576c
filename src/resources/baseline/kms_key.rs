//! The baseline's customer-managed KMS keys, one per purpose: the security
//! alerts topic's, the exported GuardDuty findings', AWS Config's
//! snapshots' and X-Ray's traces'.
//!
//! AWS rules encoded here:
//! - A service principal can use a key only if its key policy says so (no
//!   IAM policy can grant a service): EventBridge publishing to an SSE-KMS
//!   topic needs `kms:GenerateDataKey*` + `kms:Decrypt`, scoped with
//!   `aws:SourceArn` and the topic's `kms:EncryptionContext:aws:sns:topicArn`
//!   (SNS developer guide, sns-key-management: "Enable compatibility between
//!   event sources from AWS services and encrypted topics"); without it the
//!   only symptom is FailedInvocations on the rule [cdk#10996].
//! - GuardDuty exporting findings needs `kms:GenerateDataKey` with
//!   `aws:SourceAccount` and `aws:SourceArn` = the detector's ARN (GuardDuty
//!   user guide, guardduty_exportfindings); the key must be symmetric and in
//!   the bucket's region.
//! - X-Ray names no service principal for a key policy: the principal that
//!   calls PutEncryptionConfig lets X-Ray use the key through a grant
//!   (`kms:CreateGrant`, `kms:DescribeKey`), and whoever reads traces needs
//!   `kms:Decrypt`, all of it through X-Ray (X-Ray developer guide,
//!   security_iam_service-with-iam, "User permissions for encryption"). So
//!   the statement names X-Ray as `kms:ViaService`
//!   `xray.<region>.amazonaws.com` and the account as `kms:CallerAccount`,
//!   as AWS's own `aws/xray` key does; `aws:SourceArn` and
//!   `aws:SourceAccount` are for service principals and X-Ray sets neither.
//!   Symmetric keys only; if X-Ray loses the key it stops storing traces
//!   (xray-console-encryption).
//! - A key policy must let the account administer the key, or KMS refuses it
//!   (and no IAM policy could ever grant access again).
//! - A key cannot be deleted, only scheduled (7-30 days); its alias must be
//!   deleted explicitly, and an alias that exists is reused only once its key
//!   proved to be payops' baseline key [aws-cdk#4336, pulumi-aws-native#1138].

use std::time::Duration;

use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
use serde_json::{Value, json};

use crate::aws::{AwsError, Budget, OpResult, absent_on, policy, required, retry_on_codes};
use crate::resources::sdk::kms as sdk;
use crate::tags::{self, TagMap};

use super::{Account, ItemReport, Owner, check_ours, missing_tags, owner_of};

/// Days a scheduled key waits before KMS deletes it: AWS's default and
/// longest, since findings or alerts may still need it.
pub const PENDING_WINDOW_DAYS: i32 = 30;

/// KMS answers NotFoundException for a key just created, for a moment.
const NEW_KEY_VISIBILITY: Budget = Budget {
    total: Duration::from_secs(60),
    first_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(10),
};

/// One baseline key.
#[derive(Clone, Debug)]
pub struct Spec {
    pub item: &'static str,
    pub alias: &'static str,
    description: &'static str,
    /// The findings key names the detector that may use it.
    detector_id: Option<String>,
}

pub const ALERTS: Spec = Spec {
    item: "alerts-key",
    alias: "alias/payops-baseline/security-alerts",
    description: "payops account baseline: security alerts topic (GuardDuty HIGH findings)",
    detector_id: None,
};

pub const FINDINGS: Spec = Spec {
    item: "findings-key",
    alias: "alias/payops-baseline/guardduty-findings",
    description: "payops account baseline: exported GuardDuty findings",
    detector_id: None,
};

/// Config's snapshots key: the delivery channel encrypts what it writes to
/// the snapshots bucket with it.
pub const CONFIG: Spec = Spec {
    item: "config-key",
    alias: "alias/payops-baseline/config-snapshots",
    description: "payops account baseline: AWS Config configuration snapshots and history",
    detector_id: None,
};

/// X-Ray's traces key: the region's encryption setting names it (see
/// `xray_encryption`).
pub const XRAY: Spec = Spec {
    item: "xray-key",
    alias: "alias/payops-baseline/xray-traces",
    description: "payops account baseline: X-Ray traces (encryption setting of the region)",
    detector_id: None,
};

impl Spec {
    /// The findings key as the detector `detector_id` needs it.
    pub fn findings(_acct: &Account<'_>, detector_id: &str) -> Self {
        Self {
            detector_id: Some(detector_id.to_owned()),
            ..FINDINGS
        }
    }
}

/// The key policy of `spec`. In a key policy `"Resource": "*"` means "this
/// key".
pub fn key_policy(acct: &Account<'_>, spec: &Spec) -> Value {
    let mut statements = vec![json!({
        "Sid": "AccountAdministersTheKey",
        "Effect": "Allow",
        "Principal": { "AWS": acct.root_arn() },
        "Action": "kms:*",
        "Resource": "*"
    })];
    if spec.item == ALERTS.item {
        statements.push(json!({
            // The baseline rule publishes HIGH findings to the encrypted
            // topic: SNS asks KMS for a data key on EventBridge's behalf,
            // with the topic's ARN as encryption context.
            "Sid": "BaselineRulePublishesToTheAlertsTopic",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "aws:SourceAccount": acct.id,
                    "kms:EncryptionContext:aws:sns:topicArn": acct.topic_arn()
                },
                "ArnLike": { "aws:SourceArn": acct.rule_arn() }
            }
        }));
    }
    if let (true, Some(detector)) = (spec.item == FINDINGS.item, &spec.detector_id) {
        statements.push(json!({
            // GuardDuty encrypts the findings it exports with a data key of
            // this key, for this account's detector only.
            "Sid": "GuardDutyEncryptsExportedFindings",
            "Effect": "Allow",
            "Principal": { "Service": "guardduty.amazonaws.com" },
            "Action": "kms:GenerateDataKey",
            "Resource": "*",
            "Condition": { "StringEquals": {
                "aws:SourceAccount": acct.id,
                "aws:SourceArn": acct.detector_arn(detector)
            } }
        }));
    }
    if spec.item == CONFIG.item {
        statements.push(json!({
            // The recorder's role gets its use of the key from its own IAM
            // policy (the account statement above delegates to IAM); Config
            // itself also writes with the service principal (always with
            // its service-linked role, and as a fallback), so it is named
            // here, for this account only (CG:s3-kms-key-policy).
            "Sid": "ConfigEncryptsSnapshots",
            "Effect": "Allow",
            "Principal": { "Service": "config.amazonaws.com" },
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": { "StringEquals": { "aws:SourceAccount": acct.id } }
        }));
    }
    if spec.item == XRAY.item {
        statements.push(json!({
            // X-Ray encrypts with a grant that the principal configuring it
            // creates through X-Ray, and decrypts for readers through X-Ray:
            // this account's principals, only by way of X-Ray in this region.
            "Sid": "XRayEncryptsTraces",
            "Effect": "Allow",
            "Principal": { "AWS": "*" },
            "Action": ["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt"],
            "Resource": "*",
            "Condition": { "StringEquals": {
                "kms:CallerAccount": acct.id,
                "kms:ViaService": format!("xray.{}.amazonaws.com", acct.region)
            } }
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The key an alias (or any key id or ARN) names, with its tags.
pub(super) struct Found {
    pub id: String,
    pub arn: String,
    pub enabled: bool,
    pub tags: TagMap,
}

/// The key `alias` names: an alias, a key id or a key ARN, as DescribeKey
/// takes them.
pub(super) async fn find(acct: &Account<'_>, alias: &str) -> Result<Option<Found>, AwsError> {
    let kms = &acct.clients.kms;
    let described = kms
        .describe_key()
        .key_id(alias)
        .send()
        .await
        .op("kms:DescribeKey");
    let Some(out) = absent_on(described, &["NotFoundException"])? else {
        return Ok(None);
    };
    let md = required(out.key_metadata(), "kms:DescribeKey", "KeyMetadata")?;
    let id = md.key_id().to_owned();
    let tags = kms
        .list_resource_tags()
        .key_id(&id)
        .send()
        .await
        .op("kms:ListResourceTags")?;
    Ok(Some(Found {
        arn: required(md.arn(), "kms:DescribeKey", "Arn")?.to_owned(),
        enabled: md.key_state() == Some(&KeyState::Enabled),
        tags: tags::to_map(tags.tags(), |t| (Some(t.tag_key()), Some(t.tag_value()))),
        id,
    }))
}

/// Makes sure the key exists with its policy, rotation and tags; its report
/// and ARN. A key under the alias that payops did not tag is refused.
pub async fn ensure(acct: &Account<'_>, spec: &Spec) -> Result<(ItemReport, String), AwsError> {
    match find(acct, spec.alias).await? {
        Some(key) => {
            check_ours(
                format!("KMS alias {} (key {})", spec.alias, key.id),
                &key.tags,
            )?;
            if key.enabled {
                reconcile(acct, spec, key).await
            } else {
                // Ours but disabled or pending deletion (a `baseline down`
                // that stopped halfway): a new key takes the alias.
                create(acct, spec, true).await
            }
        }
        None => create(acct, spec, false).await,
    }
}

async fn create(
    acct: &Account<'_>,
    spec: &Spec,
    alias_exists: bool,
) -> Result<(ItemReport, String), AwsError> {
    let kms = &acct.clients.kms;
    let out = kms
        .create_key()
        .description(spec.description)
        .key_spec(KeySpec::SymmetricDefault)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .policy(key_policy(acct, spec).to_string())
        .set_tags(Some(sdk::tags(&acct.tags())))
        .send()
        .await
        .op("kms:CreateKey")?;
    let md = required(out.key_metadata(), "kms:CreateKey", "KeyMetadata")?;
    let id = md.key_id().to_owned();
    let arn = required(md.arn(), "kms:CreateKey", "Arn")?.to_owned();
    let quiet = |_: String| {};
    retry_on_codes(
        format!("enabling rotation of {id}"),
        &["NotFoundException"],
        NEW_KEY_VISIBILITY,
        &quiet,
        || async {
            kms.enable_key_rotation()
                .key_id(&id)
                .send()
                .await
                .op("kms:EnableKeyRotation")
                .map(drop)
        },
    )
    .await?;
    let pointed = if alias_exists {
        kms.update_alias()
            .alias_name(spec.alias)
            .target_key_id(&id)
            .send()
            .await
            .op("kms:UpdateAlias")
            .map(drop)
    } else {
        kms.create_alias()
            .alias_name(spec.alias)
            .target_key_id(&id)
            .send()
            .await
            .op("kms:CreateAlias")
            .map(drop)
    };
    match pointed {
        Ok(()) => Ok((ItemReport::ours(spec.item, &id, "created"), arn)),
        // Another run (a second env's `up`) created the key first: its key
        // is the baseline's, this one goes.
        Err(e) if e.is_code(&["AlreadyExistsException"]) => {
            kms.schedule_key_deletion()
                .key_id(&id)
                .pending_window_in_days(7)
                .send()
                .await
                .op("kms:ScheduleKeyDeletion")?;
            let Some(winner) = find(acct, spec.alias).await? else {
                return Err(e);
            };
            check_ours(
                format!("KMS alias {} (key {})", spec.alias, winner.id),
                &winner.tags,
            )?;
            reconcile(acct, spec, winner).await
        }
        Err(e) => Err(e),
    }
}

async fn reconcile(
    acct: &Account<'_>,
    spec: &Spec,
    key: Found,
) -> Result<(ItemReport, String), AwsError> {
    let kms = &acct.clients.kms;
    let mut fixed = Vec::new();
    let current = kms
        .get_key_policy()
        .key_id(&key.id)
        .policy_name("default")
        .send()
        .await
        .op("kms:GetKeyPolicy")?;
    let desired = key_policy(acct, spec).to_string();
    if !policy::same(current.policy().unwrap_or_default(), &desired) {
        kms.put_key_policy()
            .key_id(&key.id)
            .policy_name("default")
            .policy(desired)
            .send()
            .await
            .op("kms:PutKeyPolicy")?;
        fixed.push("key policy");
    }
    let rotation = kms
        .get_key_rotation_status()
        .key_id(&key.id)
        .send()
        .await
        .op("kms:GetKeyRotationStatus")?;
    if !rotation.key_rotation_enabled() {
        kms.enable_key_rotation()
            .key_id(&key.id)
            .send()
            .await
            .op("kms:EnableKeyRotation")?;
        fixed.push("rotation");
    }
    let missing = missing_tags(acct, &key.tags);
    if !missing.is_empty() {
        kms.tag_resource()
            .key_id(&key.id)
            .set_tags(Some(sdk::tags(&missing)))
            .send()
            .await
            .op("kms:TagResource")?;
        fixed.push("tags");
    }
    let report = if fixed.is_empty() {
        ItemReport::ours(spec.item, &key.id, "in-sync")
    } else {
        ItemReport::ours(spec.item, &key.id, "updated")
            .with_note(format!("put back: {}", fixed.join(", ")))
    };
    Ok((report, key.arn))
}

/// What `status` shows.
pub async fn observe(acct: &Account<'_>, spec: &Spec) -> Result<ItemReport, AwsError> {
    Ok(match find(acct, spec.alias).await? {
        None => ItemReport::absent(spec.item, "observed"),
        Some(key) => ItemReport {
            owner: Some(owner_of(&key.tags)),
            state: if key.enabled {
                "enabled"
            } else {
                "not-enabled"
            }
            .into(),
            ..ItemReport::ours(spec.item, &key.id, "observed")
        },
    })
}

/// Deletes the alias and schedules the key, if payops created it.
pub async fn destroy(acct: &Account<'_>, spec: &Spec) -> Result<ItemReport, AwsError> {
    let Some(key) = find(acct, spec.alias).await? else {
        return Ok(ItemReport::absent(spec.item, "absent"));
    };
    if owner_of(&key.tags) == Owner::Adopted {
        return Ok(ItemReport {
            owner: Some(Owner::Adopted),
            ..ItemReport::ours(spec.item, &key.id, "kept")
        }
        .with_note("not tagged as payops' baseline key: never deleted"));
    }
    let kms = &acct.clients.kms;
    absent_on(
        kms.delete_alias()
            .alias_name(spec.alias)
            .send()
            .await
            .op("kms:DeleteAlias"),
        &["NotFoundException"],
    )?;
    if key.enabled {
        let scheduled = kms
            .schedule_key_deletion()
            .key_id(&key.id)
            .pending_window_in_days(PENDING_WINDOW_DAYS)
            .send()
            .await
            .op("kms:ScheduleKeyDeletion");
        // Already pending deletion: what was asked.
        absent_on(scheduled, &["KMSInvalidStateException"])?;
    }
    Ok(ItemReport {
        state: "pending-deletion".into(),
        ..ItemReport::ours(spec.item, &key.id, "deleted")
    }
    .with_note(format!(
        "KMS deletes the key after {PENDING_WINDOW_DAYS} days (kms cancel-key-deletion undoes it)"
    )))
}

#[cfg(test)]
mod tests {
    use aws_sdk_kms::Client;
    use aws_sdk_kms::operation::create_alias::{CreateAliasError, CreateAliasOutput};
    use aws_sdk_kms::operation::create_key::CreateKeyOutput;
    use aws_sdk_kms::operation::delete_alias::DeleteAliasOutput;
    use aws_sdk_kms::operation::describe_key::{DescribeKeyError, DescribeKeyOutput};
    use aws_sdk_kms::operation::enable_key_rotation::EnableKeyRotationOutput;
    use aws_sdk_kms::operation::get_key_policy::GetKeyPolicyOutput;
    use aws_sdk_kms::operation::get_key_rotation_status::GetKeyRotationStatusOutput;
    use aws_sdk_kms::operation::list_resource_tags::ListResourceTagsOutput;
    use aws_sdk_kms::operation::put_key_policy::PutKeyPolicyOutput;
    use aws_sdk_kms::operation::schedule_key_deletion::ScheduleKeyDeletionOutput;
    use aws_sdk_kms::operation::tag_resource::TagResourceOutput;
    use aws_sdk_kms::types::{KeyMetadata, Tag};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::resources::baseline::{SCOPE, SCOPE_TAG};
    use crate::resources::testing;

    const KEY: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    fn with_kms(rules: &[&Rule]) -> crate::aws::Clients {
        let mut c = testing::clients();
        c.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, rules);
        c
    }

    fn described(state: KeyState) -> Rule {
        mock!(Client::describe_key).then_output(move || {
            DescribeKeyOutput::builder()
                .key_metadata(
                    KeyMetadata::builder()
                        .key_id(KEY)
                        .arn(format!("arn:aws:kms:us-east-1:123456789012:key/{KEY}"))
                        .key_state(state.clone())
                        .build()
                        .unwrap(),
                )
                .build()
        })
    }

    fn no_alias() -> Rule {
        mock!(Client::describe_key).then_error(|| {
            DescribeKeyError::generic(
                ErrorMetadata::builder()
                    .code("NotFoundException")
                    .message("Alias arn:aws:kms:us-east-1:123456789012:alias/payops-baseline/security-alerts is not found.")
                    .build(),
            )
        })
    }

    fn tagged(ours: bool) -> Rule {
        mock!(Client::list_resource_tags).then_output(move || {
            let tag = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().unwrap();
            let mut out = ListResourceTagsOutput::builder().tags(tag("team", "security"));
            if ours {
                for (k, v) in testing::account(&testing::clients()).tags() {
                    out = out.tags(tag(&k, &v));
                }
            }
            out.build()
        })
    }

    fn policy_now(p: String) -> Rule {
        mock!(Client::get_key_policy)
            .then_output(move || GetKeyPolicyOutput::builder().policy(p.clone()).build())
    }

    fn rotation(on: bool) -> Rule {
        mock!(Client::get_key_rotation_status).then_output(move || {
            GetKeyRotationStatusOutput::builder()
                .key_rotation_enabled(on)
                .build()
        })
    }

    #[test]
    fn the_alerts_key_lets_only_the_baseline_rule_use_it_for_the_alerts_topic() {
        let c = testing::clients();
        let p = key_policy(&testing::account(&c), &ALERTS);
        let s = p["Statement"].as_array().unwrap();
        assert_eq!(s.len(), 2, "{p:#}");
        assert_eq!(s[0]["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
        assert_eq!(s[0]["Action"], "kms:*");
        let events = &s[1];
        assert_eq!(events["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(
            events["Action"],
            json!(["kms:GenerateDataKey*", "kms:Decrypt"])
        );
        assert_eq!(
            events["Condition"]["ArnLike"]["aws:SourceArn"],
            "arn:aws:events:us-east-1:123456789012:rule/payops-baseline-guardduty-high"
        );
        assert_eq!(
            events["Condition"]["StringEquals"]["kms:EncryptionContext:aws:sns:topicArn"],
            "arn:aws:sns:us-east-1:123456789012:payops-baseline-security-alerts"
        );
        assert_eq!(
            events["Condition"]["StringEquals"]["aws:SourceAccount"],
            "123456789012"
        );
    }

    #[test]
    fn the_findings_key_lets_guardduty_generate_data_keys_for_this_detector_only() {
        let c = testing::clients();
        let a = testing::account(&c);
        let p = key_policy(&a, &Spec::findings(&a, "d1"));
        let s = p["Statement"].as_array().unwrap();
        assert_eq!(s.len(), 2, "{p:#}");
        let gd = &s[1];
        assert_eq!(gd["Principal"]["Service"], "guardduty.amazonaws.com");
        assert_eq!(gd["Action"], "kms:GenerateDataKey");
        assert_eq!(
            gd["Condition"]["StringEquals"]["aws:SourceArn"],
            "arn:aws:guardduty:us-east-1:123456789012:detector/d1"
        );
        assert_eq!(
            gd["Condition"]["StringEquals"]["aws:SourceAccount"],
            "123456789012"
        );
        // Nothing for events, and no service gets kms:*.
        assert!(!p.to_string().contains("events.amazonaws.com"));
    }

    #[test]
    fn the_config_key_lets_config_use_it_for_this_account_only() {
        let c = testing::clients();
        let p = key_policy(&testing::account(&c), &CONFIG);
        let s = p["Statement"].as_array().unwrap();
        assert_eq!(s.len(), 2, "{p:#}");
        let config = &s[1];
        assert_eq!(config["Principal"]["Service"], "config.amazonaws.com");
        assert_eq!(
            config["Action"],
            json!(["kms:Decrypt", "kms:GenerateDataKey"])
        );
        assert_eq!(
            config["Condition"]["StringEquals"]["aws:SourceAccount"],
            "123456789012"
        );
        assert!(!p.to_string().contains("guardduty.amazonaws.com"));
    }

    #[test]
    fn the_xray_key_lets_this_accounts_principals_use_it_only_through_xray() {
        let c = testing::clients();
        let p = key_policy(&testing::account(&c), &XRAY);
        let s = p["Statement"].as_array().unwrap();
        assert_eq!(s.len(), 2, "{p:#}");
        let xray = &s[1];
        // What X-Ray's guide asks of the key: a grant by the configuring
        // principal, and Decrypt for readers.
        assert_eq!(
            xray["Action"],
            json!(["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt"])
        );
        let cond = &xray["Condition"]["StringEquals"];
        assert_eq!(cond["kms:ViaService"], "xray.us-east-1.amazonaws.com");
        assert_eq!(cond["kms:CallerAccount"], "123456789012");
        // No service may use it directly, and no other purpose's statement.
        assert!(!p.to_string().contains("\"Service\""), "{p:#}");
        assert_ne!(XRAY.alias, ALERTS.alias);
    }

    #[tokio::test]
    async fn no_key_creates_one_rotating_tagged_with_its_policy_and_alias() {
        let create = mock!(Client::create_key)
            .match_requests(|r| {
                let tags: Vec<(&str, &str)> = r
                    .tags()
                    .iter()
                    .map(|t| (t.tag_key(), t.tag_value()))
                    .collect();
                r.key_spec() == Some(&KeySpec::SymmetricDefault)
                    && r.policy()
                        .is_some_and(|p| p.contains("events.amazonaws.com"))
                    && tags.contains(&(SCOPE_TAG, SCOPE))
                    && !tags.iter().any(|(k, _)| *k == tags::ENV)
            })
            .then_output(|| {
                CreateKeyOutput::builder()
                    .key_metadata(
                        KeyMetadata::builder()
                            .key_id(KEY)
                            .arn(format!("arn:aws:kms:us-east-1:123456789012:key/{KEY}"))
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let rotate = mock!(Client::enable_key_rotation)
            .then_output(|| EnableKeyRotationOutput::builder().build());
        let alias = mock!(Client::create_alias)
            .match_requests(|r| {
                r.alias_name() == Some(ALERTS.alias) && r.target_key_id() == Some(KEY)
            })
            .then_output(|| CreateAliasOutput::builder().build());
        let c = with_kms(&[&no_alias(), &create, &rotate, &alias]);
        let (r, arn) = ensure(&testing::account(&c), &ALERTS).await.unwrap();
        assert_eq!((r.action, r.owner), ("created", Some(Owner::Payops)));
        assert!(arn.ends_with(KEY));
        assert_eq!((rotate.num_calls(), alias.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_converged_key_takes_no_mutating_call() {
        let c = testing::clients();
        let desired = key_policy(&testing::account(&c), &ALERTS).to_string();
        let [put, rotate, tag] = mutations();
        let c = with_kms(&[
            &described(KeyState::Enabled),
            &tagged(true),
            &policy_now(desired),
            &rotation(true),
            &put,
            &rotate,
            &tag,
        ]);
        let (r, _) = ensure(&testing::account(&c), &ALERTS).await.unwrap();
        assert_eq!(r.action, "in-sync");
        let calls = (put.num_calls(), rotate.num_calls(), tag.num_calls());
        assert_eq!(calls, (0, 0, 0));

        // Drifted: another policy, rotation off, a tag gone: all put back.
        let c = with_kms(&[
            &described(KeyState::Enabled),
            &tagged(false),
            &policy_now(r#"{"Statement":[]}"#.into()),
            &rotation(false),
            &put,
            &rotate,
            &tag,
        ]);
        // Not ours (no scope tag): refused before anything changes.
        assert!(ensure(&testing::account(&c), &ALERTS).await.is_err());
        assert_eq!(put.num_calls(), 0);
    }

    fn mutations() -> [Rule; 3] {
        [
            mock!(Client::put_key_policy).then_output(|| PutKeyPolicyOutput::builder().build()),
            mock!(Client::enable_key_rotation)
                .then_output(|| EnableKeyRotationOutput::builder().build()),
            mock!(Client::tag_resource).then_output(|| TagResourceOutput::builder().build()),
        ]
    }

    #[tokio::test]
    async fn a_drifted_key_gets_its_policy_and_rotation_back() {
        let [put, rotate, tag] = mutations();
        let c = with_kms(&[
            &described(KeyState::Enabled),
            &tagged(true),
            &policy_now(r#"{"Version":"2012-10-17","Statement":[]}"#.into()),
            &rotation(false),
            &put,
            &rotate,
            &tag,
        ]);
        let (r, _) = ensure(&testing::account(&c), &ALERTS).await.unwrap();
        assert_eq!(r.action, "updated");
        let calls = (put.num_calls(), rotate.num_calls(), tag.num_calls());
        assert_eq!(calls, (1, 1, 0));
    }

    #[tokio::test]
    async fn a_key_under_the_baseline_alias_without_payops_tags_is_refused_and_never_deleted() {
        let delete =
            mock!(Client::delete_alias).then_output(|| DeleteAliasOutput::builder().build());
        let schedule = mock!(Client::schedule_key_deletion)
            .then_output(|| ScheduleKeyDeletionOutput::builder().build());
        let c = with_kms(&[
            &described(KeyState::Enabled),
            &tagged(false),
            &delete,
            &schedule,
        ]);
        let err = ensure(&testing::account(&c), &ALERTS).await.unwrap_err();
        assert!(matches!(err, AwsError::NotOurs { .. }), "{err}");
        let r = destroy(&testing::account(&c), &ALERTS).await.unwrap();
        assert_eq!((r.action, r.owner), ("kept", Some(Owner::Adopted)));
        assert_eq!((delete.num_calls(), schedule.num_calls()), (0, 0));
    }

    #[tokio::test]
    async fn a_lost_alias_race_schedules_the_new_key_and_uses_the_winner() {
        let describe = mock!(Client::describe_key)
            .sequence()
            .error(|| {
                DescribeKeyError::generic(
                    ErrorMetadata::builder().code("NotFoundException").build(),
                )
            })
            .output(|| {
                DescribeKeyOutput::builder()
                    .key_metadata(
                        KeyMetadata::builder()
                            .key_id("winner")
                            .arn("arn:aws:kms:us-east-1:123456789012:key/winner")
                            .key_state(KeyState::Enabled)
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .build();
        let create = mock!(Client::create_key).then_output(|| {
            CreateKeyOutput::builder()
                .key_metadata(
                    KeyMetadata::builder()
                        .key_id("loser")
                        .arn("arn:aws:kms:us-east-1:123456789012:key/loser")
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let rotate = mock!(Client::enable_key_rotation)
            .then_output(|| EnableKeyRotationOutput::builder().build());
        let alias = mock!(Client::create_alias).then_error(|| {
            CreateAliasError::generic(
                ErrorMetadata::builder()
                    .code("AlreadyExistsException")
                    .message("An alias with the name arn:aws:kms:us-east-1:123456789012:alias/payops-baseline/security-alerts already exists")
                    .build(),
            )
        });
        let schedule = mock!(Client::schedule_key_deletion)
            .match_requests(|r| r.key_id() == Some("loser"))
            .then_output(|| ScheduleKeyDeletionOutput::builder().build());
        let c = testing::clients();
        let desired = key_policy(&testing::account(&c), &ALERTS).to_string();
        let c = with_kms(&[
            &describe,
            &create,
            &rotate,
            &alias,
            &schedule,
            &tagged(true),
            &policy_now(desired),
            &rotation(true),
        ]);
        let (r, arn) = ensure(&testing::account(&c), &ALERTS).await.unwrap();
        assert_eq!((r.action, r.id.as_deref()), ("in-sync", Some("winner")));
        assert!(arn.ends_with("winner"));
        assert_eq!(schedule.num_calls(), 1);
    }

    #[tokio::test]
    async fn destroy_deletes_the_alias_then_schedules_payops_key_for_thirty_days() {
        let delete = mock!(Client::delete_alias)
            .match_requests(|r| r.alias_name() == Some(FINDINGS.alias))
            .then_output(|| DeleteAliasOutput::builder().build());
        let schedule = mock!(Client::schedule_key_deletion)
            .match_requests(|r| r.key_id() == Some(KEY) && r.pending_window_in_days() == Some(30))
            .then_output(|| ScheduleKeyDeletionOutput::builder().build());
        let c = with_kms(&[
            &described(KeyState::Enabled),
            &tagged(true),
            &delete,
            &schedule,
        ]);
        let r = destroy(&testing::account(&c), &FINDINGS).await.unwrap();
        assert_eq!(
            (r.action, r.state.as_str()),
            ("deleted", "pending-deletion")
        );
        assert_eq!((delete.num_calls(), schedule.num_calls()), (1, 1));
    }
}
