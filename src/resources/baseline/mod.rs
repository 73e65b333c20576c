//! The account baseline: what one account and region holds once, shared by
//! every env there. Today: GuardDuty's detector, the security alerts for its
//! HIGH findings (a KMS key, an SNS topic, an EventBridge rule) and the
//! export of its findings (a KMS key, an S3 bucket, a publishing
//! destination), AWS Config's recorder with its delivery channel (a KMS
//! key, a versioned S3 bucket, an IAM role, the recorder), and X-Ray's
//! encryption setting (a KMS key, the setting). API Gateway's logging role
//! belongs here too (issue 17).
//!
//! These are not env steps: an env's graph owns what carries its
//! `payops:env` tag and `down` removes all of it, while the baseline must
//! outlive every env (and its singletons may predate payops). So each item
//! is found from AWS alone, by a name no env can make (env names cannot
//! start with `baseline`, see `naming`) or, for the singletons, by asking
//! the service, and tagged `payops:scope=account-baseline` when payops
//! created it: that tag is the record of ownership, and it survives a fresh
//! machine (see docs/architecture.md); Config's recorder and channel take no
//! tags, so their name `payops-baseline` is that record, and X-Ray's
//! encryption setting has neither, so the tags of the key it names are.
//! Only the singletons (the detector, its publishing destination, the
//! Config recorder, X-Ray's encryption setting) are ever adopted; an item under one of
//! payops' baseline names without payops' tags is refused, never used.

pub mod alerts_topic;
pub mod config_bucket;
pub mod config_recorder;
pub mod config_role;
pub mod findings_bucket;
pub mod findings_rule;
pub mod guardduty;
pub mod kms_key;
pub mod publishing;
pub mod xray_encryption;

use serde::Serialize;

use crate::aws::{AwsError, Clients};
use crate::tags::{self, TagMap};

/// Who an existing baseline item belongs to, by its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// Tagged by payops when it created it: `baseline down` removes it.
    Payops,
    /// Found without payops' tag: someone else's, never changed without the
    /// operator's consent and never deleted.
    Adopted,
}

/// The tag payops puts on a baseline item it created, beside
/// `payops:managed-by=payops`. Baseline items carry no `payops:env`, so env
/// discovery, an env's final sweep and `destroy-all` never see them.
pub const SCOPE_TAG: &str = "payops:scope";
pub const SCOPE: &str = "account-baseline";

/// What one baseline item looks like now, and what a command did to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemReport {
    /// e.g. `guardduty-detector`.
    pub item: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Absent when the item does not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// What the item is doing: e.g. `enabled`, `suspended`, `absent`.
    pub state: String,
    /// What the command did: `created`, `adopted`, `updated`, `in-sync`,
    /// `deleted`, `kept`, `absent`, `not-needed`, `refused` or, for
    /// `status`, `observed`; `waiting` only in progress, while AWS settles
    /// (then `state` says what it waits for).
    pub action: &'static str,
    /// Anything the operator should know (a suspended detector, a setting
    /// left as another team chose it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl ItemReport {
    /// An item that does not exist.
    pub fn absent(item: &'static str, action: &'static str) -> Self {
        Self {
            item,
            id: None,
            owner: None,
            state: "absent".into(),
            action,
            notes: Vec::new(),
        }
    }

    /// An item payops created (or found tagged as its own).
    pub fn ours(item: &'static str, id: impl Into<String>, action: &'static str) -> Self {
        Self {
            item,
            id: Some(id.into()),
            owner: Some(Owner::Payops),
            state: "present".into(),
            action,
            notes: Vec::new(),
        }
    }

    /// A progress line while `item` waits on AWS (never in a report).
    pub fn waiting(item: &'static str, what: String) -> Self {
        Self {
            item,
            id: None,
            owner: Some(Owner::Payops),
            state: what,
            action: "waiting",
            notes: Vec::new(),
        }
    }

    fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// Whether `tags` say payops created the item for the baseline.
pub fn owner_of(tags: &TagMap) -> Owner {
    if tags.get(tags::MANAGED_BY).map(String::as_str) == Some(tags::MANAGER)
        && tags.get(SCOPE_TAG).map(String::as_str) == Some(SCOPE)
        && !tags.contains_key(tags::ENV)
    {
        Owner::Payops
    } else {
        Owner::Adopted
    }
}

/// Refuses an item found under one of payops' baseline names that payops
/// did not create: it is not ours to use, change or delete.
pub fn check_ours(what: impl std::fmt::Display, tags: &TagMap) -> Result<(), AwsError> {
    match owner_of(tags) {
        Owner::Payops => Ok(()),
        Owner::Adopted => Err(AwsError::NotOurs {
            what: what.to_string(),
            owner: format!(
                "it has no {SCOPE_TAG}={SCOPE} tag, so it is not the account baseline payops made"
            ),
        }),
    }
}

/// Tags payops missing on a baseline item it owns (others' tags stay).
pub fn missing_tags(acct: &Account<'_>, existing: &TagMap) -> TagMap {
    let mut desired = acct.tags();
    if let Some(at) = existing.get(tags::CREATED_AT) {
        desired.insert(tags::CREATED_AT.into(), at.clone());
    }
    desired
        .into_iter()
        .filter(|(k, v)| existing.get(k) != Some(v))
        .collect()
}

/// The account and region the baseline is for, and the clients to reach it.
pub struct Account<'a> {
    pub clients: &'a Clients,
    pub id: String,
    pub region: String,
    /// `payops:created-at` of what this run creates.
    pub now: String,
}

impl Account<'_> {
    pub fn partition(&self) -> &'static str {
        crate::resources::context::partition(&self.region)
    }

    /// `arn:<partition>:<service>:<region>:<account>:<resource>`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        crate::resources::context::arn(&self.region, &self.id, service, resource)
    }

    pub fn root_arn(&self) -> String {
        format!("arn:{}:iam::{}:root", self.partition(), self.id)
    }

    /// The tags of a baseline item payops creates: ownership and scope, the
    /// cost tag, and no `payops:env` (no env owns it).
    pub fn tags(&self) -> TagMap {
        TagMap::from([
            (tags::MANAGED_BY.into(), tags::MANAGER.into()),
            (SCOPE_TAG.into(), SCOPE.into()),
            (tags::CREATED_AT.into(), self.now.clone()),
            ("Project".into(), "payops".into()),
            ("Environment".into(), "account-baseline".into()),
        ])
    }

    pub fn detector_arn(&self, detector_id: &str) -> String {
        self.arn("guardduty", &format!("detector/{detector_id}"))
    }

    pub fn topic_arn(&self) -> String {
        self.arn("sns", ALERTS_TOPIC)
    }

    pub fn rule_arn(&self) -> String {
        self.arn("events", &format!("rule/{HIGH_FINDINGS_RULE}"))
    }

    /// S3 names are global: account and region make it unique, and no env
    /// name makes `payops-baseline-...` (see `naming`).
    pub fn findings_bucket(&self) -> String {
        format!("payops-baseline-findings-{}-{}", self.id, self.region)
    }

    pub fn findings_bucket_arn(&self) -> String {
        format!("arn:{}:s3:::{}", self.partition(), self.findings_bucket())
    }
}

/// The SNS topic the HIGH findings go to.
pub const ALERTS_TOPIC: &str = "payops-baseline-security-alerts";
/// The EventBridge rule (default bus) that sends them.
pub const HIGH_FINDINGS_RULE: &str = "payops-baseline-guardduty-high";

/// What `baseline up` (and an env's `up`) may change.
#[derive(Clone, Copy, Debug, Default)]
pub struct Consent {
    /// Re-enable an adopted detector that is suspended.
    pub enable_suspended_detector: bool,
}

/// Makes sure the baseline exists, in dependency order; each item's report
/// as it went. `progress` hears of each item as it is done.
pub async fn ensure(
    acct: &Account<'_>,
    consent: Consent,
    progress: &(dyn Fn(&ItemReport) + Send + Sync),
) -> Result<Vec<ItemReport>, AwsError> {
    let mut done = Vec::new();
    let mut push = |r: ItemReport| {
        progress(&r);
        done.push(r);
    };
    let gd = &acct.clients.guardduty;
    let detector = guardduty::ensure(gd, &acct.now, consent.enable_suspended_detector).await?;
    let detector_id = detector
        .id
        .clone()
        .ok_or_else(|| AwsError::Conflict("GuardDuty's detector has no id after ensure".into()))?;
    push(detector);

    // Alerts: key, then the topic it encrypts, then the rule that publishes.
    let (key, alerts_key) = kms_key::ensure(acct, &kms_key::ALERTS).await?;
    push(key);
    let (topic, topic_arn) = alerts_topic::ensure(acct, &alerts_key).await?;
    push(topic);
    push(findings_rule::ensure(acct, &topic_arn).await?);

    // Export: a destination someone else made is adopted, and then payops'
    // bucket and key are not needed.
    let existing = publishing::find(gd, &detector_id).await?;
    if let Some(theirs) = existing.as_ref().filter(|d| d.owner == Owner::Adopted) {
        for item in [kms_key::FINDINGS.item, findings_bucket::ITEM] {
            push(ItemReport::absent(item, "not-needed").with_note(
                "GuardDuty already exports this detector's findings elsewhere (adopted)",
            ));
        }
        push(publishing::adopted(theirs));
    } else {
        let findings = kms_key::Spec::findings(acct, &detector_id);
        let (key, findings_key) = kms_key::ensure(acct, &findings).await?;
        push(key);
        push(findings_bucket::ensure(acct, &findings_key, &detector_id).await?);
        push(publishing::ensure(acct, &detector_id, &findings_key, existing).await?);
    }

    // AWS Config: a recorder someone else made is adopted as it is, and then
    // payops' key, bucket and role are not needed. Otherwise the key, the
    // bucket it encrypts and the role come first: the recorder needs the
    // role, its delivery channel the bucket (see config_recorder).
    let recorder = config_recorder::find(&acct.clients.config).await?;
    if let Some(theirs) = recorder.as_ref().filter(|r| r.owner == Owner::Adopted) {
        for item in [kms_key::CONFIG.item, config_bucket::ITEM, config_role::ITEM] {
            push(
                ItemReport::absent(item, "not-needed").with_note(
                    "the region already has another team's AWS Config recorder (adopted)",
                ),
            );
        }
        push(config_recorder::adopted(theirs));
    } else {
        let (key, config_key) = kms_key::ensure(acct, &kms_key::CONFIG).await?;
        push(key);
        push(config_bucket::ensure(acct, &config_key).await?);
        let (role, role_arn) = config_role::ensure(acct, &config_key).await?;
        push(role);
        let bucket = config_bucket::name(acct);
        push(config_recorder::ensure(acct, &role_arn, &bucket, &config_key, recorder).await?);
    }

    // X-Ray: a setting with someone else's key is adopted as it is, and then
    // payops' key is not needed. Otherwise the key first: the setting names
    // it, and X-Ray checks it may use it.
    let setting = xray_encryption::find(acct).await?;
    if setting.owner == Some(Owner::Adopted) {
        push(
            ItemReport::absent(kms_key::XRAY.item, "not-needed").with_note(
                "X-Ray already encrypts this region's traces with another key (adopted)",
            ),
        );
        push(xray_encryption::adopted(&setting));
    } else {
        let (key, xray_key) = kms_key::ensure(acct, &kms_key::XRAY).await?;
        push(key);
        let waiting = |what: String| progress(&ItemReport::waiting(xray_encryption::ITEM, what));
        push(xray_encryption::ensure(acct, &xray_key, setting, &waiting).await?);
    }
    Ok(done)
}

/// What `status` shows: reads only.
pub async fn observe(acct: &Account<'_>) -> Result<Vec<ItemReport>, AwsError> {
    let gd = &acct.clients.guardduty;
    let detector = guardduty::observe(gd).await?;
    let detector_id = detector.id.clone();
    let mut items = vec![
        detector,
        kms_key::observe(acct, &kms_key::ALERTS).await?,
        alerts_topic::observe(acct).await?,
        findings_rule::observe(acct).await?,
        kms_key::observe(acct, &kms_key::FINDINGS).await?,
        findings_bucket::observe(acct).await?,
    ];
    items.push(match &detector_id {
        Some(id) => publishing::observe(gd, id).await?,
        None => ItemReport::absent(publishing::ITEM, "observed"),
    });
    items.push(kms_key::observe(acct, &kms_key::CONFIG).await?);
    items.push(config_bucket::observe(acct).await?);
    items.push(config_role::observe(acct).await?);
    items.push(config_recorder::observe(&acct.clients.config).await?);
    items.push(kms_key::observe(acct, &kms_key::XRAY).await?);
    items.push(xray_encryption::observe(acct).await?);
    Ok(items)
}

/// What `up` would do to one baseline item, from what `observe` saw: for
/// `payops plan`, which changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub item: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `create`, `adopt`, `in-sync`, `not-needed` or `refused`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The singletons `up` adopts as it finds them; any other item found under
/// payops' names without its tags is refused.
const ADOPTABLE: [&str; 4] = [
    guardduty::ITEM,
    publishing::ITEM,
    config_recorder::ITEM,
    xray_encryption::ITEM,
];

/// What `up` would do to each item `observe` reported. An adopted
/// singleton makes the items payops would have made for it not needed (the
/// findings export's key and bucket; the recorder's key, bucket and role;
/// X-Ray's key). Items of payops' own are `in-sync` as far as a read of
/// their existence and owner goes: `up` also puts back settings that
/// drifted, which `plan` does not compare.
pub fn plan(observed: &[ItemReport]) -> Vec<Planned> {
    let adopted = |item: &str| {
        observed
            .iter()
            .any(|r| r.item == item && r.owner == Some(Owner::Adopted))
    };
    let served_by = |item: &str| -> Option<&'static str> {
        [
            (kms_key::FINDINGS.item, publishing::ITEM),
            (findings_bucket::ITEM, publishing::ITEM),
            (kms_key::CONFIG.item, config_recorder::ITEM),
            (config_bucket::ITEM, config_recorder::ITEM),
            (config_role::ITEM, config_recorder::ITEM),
            (kms_key::XRAY.item, xray_encryption::ITEM),
        ]
        .into_iter()
        .find(|(dependent, singleton)| *dependent == item && adopted(singleton))
        .map(|(_, singleton)| singleton)
    };
    observed
        .iter()
        .map(|r| {
            let (action, why) = match (r.owner, served_by(r.item)) {
                (_, Some(singleton)) => (
                    "not-needed",
                    Some(format!("{singleton} is adopted: payops makes none for it")),
                ),
                (None, None) => ("create", None),
                (Some(Owner::Payops), None) => ("in-sync", None),
                (Some(Owner::Adopted), None) if ADOPTABLE.contains(&r.item) => {
                    ("adopt", r.notes.first().cloned())
                }
                (Some(Owner::Adopted), None) => (
                    "refused",
                    Some(format!(
                        "found under payops' baseline name without its {SCOPE_TAG}={SCOPE} tag: \
                         `up` refuses to use it"
                    )),
                ),
            };
            Planned {
                item: r.item,
                id: r.id.clone(),
                action,
                why,
            }
        })
        .collect()
}

/// Removes what payops created, dependents first: X-Ray's setting (back to
/// its default encryption) and key, Config's recorder, role, bucket and key,
/// the export (destination, bucket, key), the alerts (rule, topic, key),
/// then the detector. Adopted
/// items stay; the caller has made sure no env is left.
pub async fn destroy(acct: &Account<'_>) -> Result<Vec<ItemReport>, AwsError> {
    let gd = &acct.clients.guardduty;
    let detector = guardduty::find(gd).await?;
    let mut items = Vec::new();
    // X-Ray first: its default encryption back (if it names payops' key)
    // before the key it names is scheduled for deletion.
    let quiet = |_: String| {};
    items.push(xray_encryption::destroy(acct, &quiet).await?);
    items.push(kms_key::destroy(acct, &kms_key::XRAY).await?);
    // Then Config: the recorder stops and goes before the role it uses
    // and the bucket and key it delivers with.
    items.push(config_recorder::destroy(&acct.clients.config).await?);
    items.push(config_role::destroy(acct).await?);
    items.push(config_bucket::destroy(acct).await?);
    items.push(kms_key::destroy(acct, &kms_key::CONFIG).await?);
    items.push(match &detector {
        Some(d) => publishing::destroy(gd, &d.id).await?,
        None => ItemReport::absent(publishing::ITEM, "absent"),
    });
    items.push(findings_bucket::destroy(acct).await?);
    items.push(kms_key::destroy(acct, &kms_key::FINDINGS).await?);
    items.push(findings_rule::destroy(acct).await?);
    items.push(alerts_topic::destroy(acct).await?);
    items.push(kms_key::destroy(acct, &kms_key::ALERTS).await?);
    items.push(guardduty::destroy(gd).await?);
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_creates_what_is_missing_adopts_singletons_and_refuses_squatters() {
        let adopted = |item| ItemReport {
            owner: Some(Owner::Adopted),
            ..ItemReport::ours(item, "theirs", "observed")
        };
        let observed = vec![
            adopted(guardduty::ITEM),
            ItemReport::ours(kms_key::ALERTS.item, "k", "observed"),
            ItemReport::absent(alerts_topic::ITEM, "observed"),
            adopted(findings_rule::ITEM),
            adopted(config_recorder::ITEM),
            ItemReport::absent(kms_key::CONFIG.item, "observed"),
            ItemReport::absent(config_role::ITEM, "observed"),
            ItemReport::absent(kms_key::XRAY.item, "observed"),
            ItemReport::absent(xray_encryption::ITEM, "observed"),
        ];
        let actions: Vec<(&str, &str)> =
            plan(&observed).iter().map(|p| (p.item, p.action)).collect();
        assert_eq!(
            actions,
            [
                (guardduty::ITEM, "adopt"),
                (kms_key::ALERTS.item, "in-sync"),
                (alerts_topic::ITEM, "create"),
                // A rule of payops' name someone else made: `up` refuses it.
                (findings_rule::ITEM, "refused"),
                (config_recorder::ITEM, "adopt"),
                (kms_key::CONFIG.item, "not-needed"),
                (config_role::ITEM, "not-needed"),
                (kms_key::XRAY.item, "create"),
                (xray_encryption::ITEM, "create"),
            ]
        );
        // X-Ray with another team's key: payops' key is not needed.
        let p = plan(&[
            ItemReport::absent(kms_key::XRAY.item, "observed"),
            adopted(xray_encryption::ITEM),
        ]);
        assert_eq!((p[0].action, p[1].action), ("not-needed", "adopt"));
    }

    #[test]
    fn only_payops_scope_tags_without_an_env_make_an_item_ours() {
        let ours = TagMap::from([
            (tags::MANAGED_BY.into(), tags::MANAGER.into()),
            (SCOPE_TAG.into(), SCOPE.into()),
        ]);
        assert_eq!(owner_of(&ours), Owner::Payops);
        // An env's resource is never the baseline's.
        let mut env = ours.clone();
        env.insert(tags::ENV.into(), "pr1".into());
        assert_eq!(owner_of(&env), Owner::Adopted);
        // payops' managed-by alone (an env step's) is not enough.
        let managed = TagMap::from([(tags::MANAGED_BY.into(), tags::MANAGER.into())]);
        assert_eq!(owner_of(&managed), Owner::Adopted);
        let err = check_ours("SNS topic t", &managed).unwrap_err();
        assert!(matches!(err, AwsError::NotOurs { .. }), "{err}");
        assert!(check_ours("SNS topic t", &ours).is_ok());
    }
}
