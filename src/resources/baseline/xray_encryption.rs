//! X-Ray's encryption setting: one per account and region, encrypting every
//! trace stored there. payops sets it to its baseline key (`kms_key::XRAY`)
//! when X-Ray uses its default encryption, and adopts any other key someone
//! chose.
//!
//! AWS rules encoded here (docs/aws-rules-new-services: X-Ray):
//! - PutEncryptionConfig {Type KMS, KeyId} replaces the region's one
//!   setting; its status goes UPDATING -> ACTIVE, which can take minutes
//!   (Terraform waits up to 15, tfaws xray/encryption_config.go). While
//!   UPDATING, X-Ray may encrypt with the old and the new setting; old traces
//!   are not re-encrypted (X-Ray developer guide, xray-console-encryption).
//! - The setting has no tags and no name: who set it is read from the key
//!   it names. A key tagged as payops' baseline key means payops set it; any
//!   other key (another team's, `aws/xray`, another account's) is adopted,
//!   never changed and never reverted.
//! - Nothing reverts the setting when its key goes: Terraform's delete of
//!   `aws_xray_encryption_config` does nothing, and with its key gone X-Ray
//!   stops storing traces. So `baseline down` puts `Type NONE` back (only
//!   when the setting names payops' key) before the key is scheduled for
//!   deletion.
//! - Symmetric keys only (API_PutEncryptionConfig): the baseline key is
//!   SYMMETRIC_DEFAULT.

use std::time::Duration;

use aws_sdk_xray::types::{EncryptionStatus, EncryptionType};

use crate::aws::{AwsError, Budget, OpResult, Poll, poll_until};
use crate::resources::sdk::kms::key_id_of;
use crate::resources::sdk::xray as sdk;

use super::{Account, ItemReport, Owner, kms_key, owner_of};

pub const ITEM: &str = "xray-encryption";

/// UPDATING -> ACTIVE: Terraform's 15 minutes.
const ACTIVE_WAIT: Budget = Budget {
    total: Duration::from_secs(15 * 60),
    first_delay: Duration::from_secs(2),
    max_delay: Duration::from_secs(20),
};

/// The region's setting as payops reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The key X-Ray reports (`Type KMS`), as it reports it; None with its
    /// default encryption (`Type NONE`).
    pub key: Option<String>,
    /// That key's id, when KMS could tell (same account, readable).
    pub key_id: Option<String>,
    pub updating: bool,
    /// Who set it, by its key's tags; None with the default encryption.
    pub owner: Option<Owner>,
}

/// The account of a key ARN (`arn:aws:kms:<region>:<account>:key/...`);
/// None for a key id or alias, which are this account's.
fn arn_account(key: &str) -> Option<&str> {
    key.strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(3))
}

/// The region's setting, and whose it is.
pub async fn find(acct: &Account<'_>) -> Result<Setting, AwsError> {
    let cfg = sdk::encryption_config(&acct.clients.xray).await?;
    let updating = cfg.status() == Some(&EncryptionStatus::Updating);
    let key = match (cfg.r#type(), cfg.key_id()) {
        (Some(EncryptionType::Kms), Some(k)) if !k.is_empty() => k.to_owned(),
        _ => {
            return Ok(Setting {
                key: None,
                key_id: None,
                updating,
                owner: None,
            });
        }
    };
    // Another account's key is never payops' baseline key here (and KMS
    // would not list its tags to this account anyway).
    if arn_account(&key).is_some_and(|a| a != acct.id) {
        return Ok(Setting {
            key: Some(key),
            key_id: None,
            updating,
            owner: Some(Owner::Adopted),
        });
    }
    let found = match kms_key::find(acct, &key).await {
        Ok(found) => found,
        // A key payops may not read is not one it made.
        Err(e) if e.is_code(&["AccessDeniedException"]) => None,
        Err(e) => return Err(e),
    };
    Ok(Setting {
        key_id: found.as_ref().map(|k| k.id.clone()),
        owner: Some(found.map_or(Owner::Adopted, |k| owner_of(&k.tags))),
        key: Some(key),
        updating,
    })
}

fn report(s: &Setting, action: &'static str) -> ItemReport {
    let Some(key) = &s.key else {
        return ItemReport {
            state: if s.updating { "updating" } else { "absent" }.into(),
            ..ItemReport::absent(ITEM, action)
        };
    };
    let mut notes = Vec::new();
    if s.owner == Some(Owner::Adopted) {
        notes.push(format!(
            "X-Ray already encrypts this region's traces with key {key}, not payops' baseline \
             key: left as its owner set it"
        ));
    }
    ItemReport {
        item: ITEM,
        id: Some(key.clone()),
        owner: s.owner,
        state: if s.updating { "updating" } else { "active" }.into(),
        action,
        notes,
    }
}

/// The report of a setting someone else chose: used as it is.
pub fn adopted(s: &Setting) -> ItemReport {
    report(s, "adopted")
}

/// What `status` shows.
pub async fn observe(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    Ok(report(&find(acct).await?, "observed"))
}

/// What one wait says while X-Ray is UPDATING.
pub type Waiting<'a> = &'a (dyn Fn(String) + Send + Sync);

/// Polls until the setting is ACTIVE again.
async fn wait_active(acct: &Account<'_>, say: Waiting<'_>) -> Result<(), AwsError> {
    let xray = &acct.clients.xray;
    poll_until(
        "X-Ray's encryption setting (UPDATING -> ACTIVE)",
        ACTIVE_WAIT,
        say,
        || async {
            let cfg = sdk::encryption_config(xray).await?;
            Ok(match cfg.status() {
                Some(EncryptionStatus::Updating) => Poll::Pending("UPDATING".into()),
                _ => Poll::Ready(()),
            })
        },
    )
    .await
}

async fn put(acct: &Account<'_>, key_arn: Option<&str>) -> Result<(), AwsError> {
    let kind = if key_arn.is_some() {
        EncryptionType::Kms
    } else {
        EncryptionType::None
    };
    acct.clients
        .xray
        .put_encryption_config()
        .r#type(kind)
        .set_key_id(key_arn.map(str::to_owned))
        .send()
        .await
        .op("xray:PutEncryptionConfig")?;
    Ok(())
}

/// Makes X-Ray encrypt with payops' baseline key `key_arn` and waits until
/// the setting is ACTIVE. `setting` is what `find` said: the default
/// encryption, or payops' own (the caller adopts anyone else's).
pub async fn ensure(
    acct: &Account<'_>,
    key_arn: &str,
    setting: Setting,
    say: Waiting<'_>,
) -> Result<ItemReport, AwsError> {
    if setting.owner == Some(Owner::Adopted) {
        return Ok(adopted(&setting));
    }
    let current = setting.key_id.as_deref() == Some(key_id_of(key_arn));
    let action = match (&setting.key, current) {
        (Some(_), true) => "in-sync",
        (None, _) => "created",
        // payops' older key (e.g. one a stopped `baseline down` scheduled):
        // X-Ray must move to the key the alias names now.
        (Some(_), false) => "updated",
    };
    if action != "in-sync" {
        put(acct, Some(key_arn)).await?;
    }
    if action != "in-sync" || setting.updating {
        wait_active(acct, say).await?;
    }
    let now = Setting {
        key: Some(key_arn.to_owned()),
        key_id: Some(key_id_of(key_arn).to_owned()),
        updating: false,
        owner: Some(Owner::Payops),
    };
    let r = report(&now, action);
    Ok(match (action, &setting.key) {
        ("updated", Some(old)) => {
            r.with_note(format!("put back: payops' baseline key (was {old})"))
        }
        _ => r,
    })
}

/// Puts X-Ray's default encryption back if the setting names payops' key,
/// so that scheduling the key for deletion cannot stop X-Ray storing
/// traces; any other setting stays.
pub async fn destroy(acct: &Account<'_>, say: Waiting<'_>) -> Result<ItemReport, AwsError> {
    let setting = find(acct).await?;
    match setting.owner {
        None => Ok(report(&setting, "absent")),
        Some(Owner::Adopted) => Ok(ItemReport {
            notes: vec!["not payops' key: the setting is never changed".into()],
            ..report(&setting, "kept")
        }),
        Some(Owner::Payops) => {
            put(acct, None).await?;
            wait_active(acct, say).await?;
            Ok(ItemReport {
                state: "absent".into(),
                notes: vec!["X-Ray uses its default encryption again".into()],
                ..report(&setting, "deleted")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_kms::operation::describe_key::{DescribeKeyError, DescribeKeyOutput};
    use aws_sdk_kms::operation::list_resource_tags::ListResourceTagsOutput;
    use aws_sdk_kms::types::{KeyMetadata, KeyState, Tag};
    use aws_sdk_xray::Client;
    use aws_sdk_xray::operation::get_encryption_config::GetEncryptionConfigOutput;
    use aws_sdk_xray::operation::put_encryption_config::PutEncryptionConfigOutput;
    use aws_sdk_xray::types::EncryptionConfig;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    const OURS: &str = "arn:aws:kms:us-east-1:123456789012:key/ours-1";
    const THEIRS: &str = "arn:aws:kms:us-east-1:123456789012:key/theirs-1";

    fn config(
        kind: EncryptionType,
        key: Option<&str>,
        status: EncryptionStatus,
    ) -> EncryptionConfig {
        EncryptionConfig::builder()
            .r#type(kind)
            .set_key_id(key.map(str::to_owned))
            .status(status)
            .build()
    }

    /// GetEncryptionConfig answering `configs` in turn (the last one again).
    fn got(configs: Vec<EncryptionConfig>) -> Rule {
        let configs = Arc::new(Mutex::new(configs));
        mock!(Client::get_encryption_config).then_output(move || {
            let mut c = configs.lock().unwrap();
            let next = if c.len() > 1 {
                c.remove(0)
            } else {
                c[0].clone()
            };
            GetEncryptionConfigOutput::builder()
                .encryption_config(next)
                .build()
        })
    }

    fn put_rule(kind: EncryptionType, key: Option<&'static str>) -> Rule {
        mock!(Client::put_encryption_config)
            .match_requests(move |r| r.r#type() == Some(&kind) && r.key_id() == key)
            .then_output(|| PutEncryptionConfigOutput::builder().build())
    }

    /// KMS knowing `OURS` (tagged as payops' baseline key) and `THEIRS`
    /// (tagged by another team).
    fn kms() -> Vec<Rule> {
        let describe = mock!(aws_sdk_kms::Client::describe_key).then_output(|| {
            DescribeKeyOutput::builder()
                .key_metadata(
                    KeyMetadata::builder()
                        .key_id("ours-1")
                        .arn(OURS)
                        .key_state(KeyState::Enabled)
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let describe_theirs = mock!(aws_sdk_kms::Client::describe_key)
            .match_requests(|r| r.key_id() == Some(THEIRS))
            .then_output(|| {
                DescribeKeyOutput::builder()
                    .key_metadata(
                        KeyMetadata::builder()
                            .key_id("theirs-1")
                            .arn(THEIRS)
                            .key_state(KeyState::Enabled)
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let tag = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().unwrap();
        let tags_theirs = mock!(aws_sdk_kms::Client::list_resource_tags)
            .match_requests(|r| r.key_id() == Some("theirs-1"))
            .then_output(move || {
                ListResourceTagsOutput::builder()
                    .tags(tag("team", "observability"))
                    .build()
            });
        let tags_ours = mock!(aws_sdk_kms::Client::list_resource_tags).then_output(move || {
            let mut out = ListResourceTagsOutput::builder();
            for (k, v) in testing::account(&testing::clients()).tags() {
                out = out.tags(tag(&k, &v));
            }
            out.build()
        });
        // Specific rules first: MatchAny takes the first that matches.
        vec![describe_theirs, describe, tags_theirs, tags_ours]
    }

    fn clients(xray: &[&Rule]) -> crate::aws::Clients {
        let mut c = testing::clients();
        c.xray = mock_client!(aws_sdk_xray, RuleMode::MatchAny, xray);
        let kms = kms();
        let refs: Vec<&Rule> = kms.iter().collect();
        c.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, &refs);
        c
    }

    fn said() -> (Arc<Mutex<Vec<String>>>, impl Fn(String) + Send + Sync) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        (lines, move |s: String| sink.lock().unwrap().push(s))
    }

    #[tokio::test(start_paused = true)]
    async fn default_encryption_gets_payops_key_and_waits_until_active() {
        let got = got(vec![
            config(EncryptionType::None, None, EncryptionStatus::Active),
            config(EncryptionType::Kms, Some(OURS), EncryptionStatus::Updating),
            config(EncryptionType::Kms, Some(OURS), EncryptionStatus::Updating),
            config(EncryptionType::Kms, Some(OURS), EncryptionStatus::Active),
        ]);
        let put = put_rule(EncryptionType::Kms, Some(OURS));
        let c = clients(&[&got, &put]);
        let acct = testing::account(&c);
        let (lines, say) = said();
        let setting = find(&acct).await.unwrap();
        assert_eq!(setting.owner, None);
        let r = ensure(&acct, OURS, setting, &say).await.unwrap();
        assert_eq!((r.action, r.owner), ("created", Some(Owner::Payops)));
        assert_eq!(r.state, "active");
        assert_eq!(put.num_calls(), 1);
        // Polled through UPDATING, saying so each time.
        assert_eq!(got.num_calls(), 4);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("UPDATING"), "{lines:?}");
    }

    #[tokio::test]
    async fn payops_key_active_takes_no_mutating_call() {
        let got = got(vec![config(
            EncryptionType::Kms,
            Some(OURS),
            EncryptionStatus::Active,
        )]);
        let put = put_rule(EncryptionType::Kms, Some(OURS));
        let c = clients(&[&got, &put]);
        let acct = testing::account(&c);
        let setting = find(&acct).await.unwrap();
        assert_eq!(setting.owner, Some(Owner::Payops));
        let (_, say) = said();
        let r = ensure(&acct, OURS, setting, &say).await.unwrap();
        assert_eq!(r.action, "in-sync");
        assert_eq!(put.num_calls(), 0);
    }

    #[tokio::test]
    async fn another_teams_key_is_adopted_never_changed_and_never_reverted() {
        let got = got(vec![config(
            EncryptionType::Kms,
            Some(THEIRS),
            EncryptionStatus::Active,
        )]);
        let put_kms = put_rule(EncryptionType::Kms, Some(OURS));
        let put_none = put_rule(EncryptionType::None, None);
        let c = clients(&[&got, &put_kms, &put_none]);
        let acct = testing::account(&c);
        let (_, say) = said();
        let setting = find(&acct).await.unwrap();
        assert_eq!(setting.owner, Some(Owner::Adopted));
        let r = ensure(&acct, OURS, setting, &say).await.unwrap();
        assert_eq!((r.action, r.owner), ("adopted", Some(Owner::Adopted)));
        assert!(r.notes[0].contains(THEIRS), "{:?}", r.notes);
        let r = destroy(&acct, &say).await.unwrap();
        assert_eq!(r.action, "kept");
        assert_eq!((put_kms.num_calls(), put_none.num_calls()), (0, 0));
    }

    #[tokio::test]
    async fn aws_managed_and_other_accounts_keys_are_adopted() {
        // Another account's key: not even asked of KMS.
        let got_other = got(vec![config(
            EncryptionType::Kms,
            Some("arn:aws:kms:us-east-1:999999999999:key/central"),
            EncryptionStatus::Active,
        )]);
        let c = clients(&[&got_other]);
        let s = find(&testing::account(&c)).await.unwrap();
        assert_eq!((s.owner, s.key_id), (Some(Owner::Adopted), None));
        // `aws/xray` (AWS's key has no payops tags), or one KMS denies.
        let got_managed = got(vec![config(
            EncryptionType::Kms,
            Some("alias/aws/xray"),
            EncryptionStatus::Active,
        )]);
        let mut c = testing::clients();
        c.xray = mock_client!(aws_sdk_xray, RuleMode::MatchAny, [&got_managed]);
        let denied = mock!(aws_sdk_kms::Client::describe_key)
            .then_error(|| DescribeKeyError::generic(testing::error_meta("AccessDeniedException")));
        c.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&denied]);
        let s = find(&testing::account(&c)).await.unwrap();
        assert_eq!(s.owner, Some(Owner::Adopted));
    }

    #[tokio::test(start_paused = true)]
    async fn down_puts_default_encryption_back_only_over_payops_key() {
        let got = got(vec![
            config(EncryptionType::Kms, Some(OURS), EncryptionStatus::Active),
            config(EncryptionType::None, None, EncryptionStatus::Updating),
            config(EncryptionType::None, None, EncryptionStatus::Active),
        ]);
        let put_none = put_rule(EncryptionType::None, None);
        let c = clients(&[&got, &put_none]);
        let (_, say) = said();
        let r = destroy(&testing::account(&c), &say).await.unwrap();
        assert_eq!((r.action, r.state.as_str()), ("deleted", "absent"));
        assert_eq!(put_none.num_calls(), 1);
        assert_eq!(got.num_calls(), 3);

        // Already the default: nothing to do.
        let got = got_none();
        let c = clients(&[&got, &put_none]);
        let r = destroy(&testing::account(&c), &say).await.unwrap();
        assert_eq!(r.action, "absent");
        assert_eq!(put_none.num_calls(), 1);
    }

    fn got_none() -> Rule {
        got(vec![config(
            EncryptionType::None,
            None,
            EncryptionStatus::Active,
        )])
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_payops_key_is_moved_to_the_current_one() {
        let got = got(vec![
            config(EncryptionType::Kms, Some(OURS), EncryptionStatus::Active),
            config(
                EncryptionType::Kms,
                Some("arn:aws:kms:us-east-1:123456789012:key/new-1"),
                EncryptionStatus::Active,
            ),
        ]);
        let put = put_rule(
            EncryptionType::Kms,
            Some("arn:aws:kms:us-east-1:123456789012:key/new-1"),
        );
        let c = clients(&[&got, &put]);
        let acct = testing::account(&c);
        let (_, say) = said();
        let setting = find(&acct).await.unwrap();
        let r = ensure(
            &acct,
            "arn:aws:kms:us-east-1:123456789012:key/new-1",
            setting,
            &say,
        )
        .await
        .unwrap();
        assert_eq!(r.action, "updated");
        assert!(r.notes[0].contains(OURS), "{:?}", r.notes);
        assert_eq!(put.num_calls(), 1);
    }

    #[test]
    fn the_key_account_is_read_from_an_arn_only() {
        assert_eq!(arn_account(OURS), Some("123456789012"));
        assert_eq!(arn_account("alias/aws/xray"), None);
        assert_eq!(arn_account("ours-1"), None);
        assert_eq!(key_id_of(OURS), "ours-1");
    }
}
