//! GuardDuty's detector: one per account and region, adopted when it exists.
//!
//! AWS rules encoded here (docs/aws-rules: GuardDuty):
//! - CreateDetector when a detector exists fails with BadRequestException
//!   "The request is rejected because a detector already exists for the
//!   current account." [GD:API_CreateDetector, tfaws#11780]: ListDetectors
//!   first, and a create that loses a race to another creator adopts the
//!   winner instead of failing.
//! - A detector that is gone answers BadRequestException "... the input
//!   detectorId is not owned by the current account." [tfaws guardduty
//!   detector.go]: gone, not a failure.
//! - A new detector turns on every optional protection plan (bar runtime
//!   monitoring) unless `features` says otherwise, each billed: payops sets
//!   them explicitly to what an env runs (S3, RDS logins, Lambda network).
//! - payops never deletes a detector it did not create, and never changes
//!   one it adopted unless the operator asks (`--enable-suspended-detector`).

use std::collections::HashMap;

use aws_sdk_guardduty::Client;
use aws_sdk_guardduty::types::{
    DetectorFeature, DetectorFeatureConfiguration, DetectorStatus, FeatureStatus,
    FindingPublishingFrequency,
};

use crate::aws::{AwsError, OpResult, required};
use crate::tags;

use super::{ItemReport, Owner, SCOPE, SCOPE_TAG};

pub const ITEM: &str = "guardduty-detector";

/// How often updates of existing findings are published (new findings go
/// out within about five minutes whatever this says).
pub const FREQUENCY: FindingPublishingFrequency = FindingPublishingFrequency::SixHours;

/// The protection plans payops asks for when it creates the detector: on
/// for what an env runs, off for what it does not (each is billed).
const FEATURES: [(DetectorFeature, bool); 6] = [
    (DetectorFeature::S3DataEvents, true),
    (DetectorFeature::RdsLoginEvents, true),
    (DetectorFeature::LambdaNetworkLogs, true),
    (DetectorFeature::EksAuditLogs, false),
    (DetectorFeature::EbsMalwareProtection, false),
    (DetectorFeature::RuntimeMonitoring, false),
];

/// The EventBridge pattern of GuardDuty findings of severity HIGH or above
/// (High 7.0-8.9, Critical 9.0-10.0). Severity is a number in the event:
/// a string match never fires, so this is a numeric comparison. Findings
/// reach only the region's default bus [EBR:events-ref-guardduty]. For the
/// HIGH-severity rule of the baseline's next slice (issue 17).
pub fn high_findings_pattern() -> serde_json::Value {
    serde_json::json!({
        "source": ["aws.guardduty"],
        "detail-type": ["GuardDuty Finding"],
        "detail": {"severity": [{"numeric": [">=", 7]}]}
    })
}

const ALREADY_EXISTS: &str = "detector already exists";
const NOT_OWNED: &str = "not owned by the current account";

/// The region's detector as AWS has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detector {
    pub id: String,
    pub enabled: bool,
    pub frequency: Option<String>,
    pub owner: Owner,
}

fn is_bad_request_saying(err: &AwsError, words: &str) -> bool {
    matches!(err, AwsError::Api { code: Some(c), message, .. }
        if c == "BadRequestException" && message.contains(words))
}

fn owner_of(tags: Option<&HashMap<String, String>>) -> Owner {
    let tag = |k: &str| tags.and_then(|t| t.get(k)).map(String::as_str);
    if tag(tags::MANAGED_BY) == Some(tags::MANAGER) && tag(SCOPE_TAG) == Some(SCOPE) {
        Owner::Payops
    } else {
        Owner::Adopted
    }
}

/// The region's detector, if there is one.
pub async fn find(gd: &Client) -> Result<Option<Detector>, AwsError> {
    let mut ids: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = gd
            .list_detectors()
            .set_next_token(token.take())
            .send()
            .await
            .op("guardduty:ListDetectors")?;
        ids.extend(out.detector_ids().iter().cloned());
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    match ids.as_slice() {
        [] => Ok(None),
        [id] => get(gd, id).await,
        // AWS holds one per region; more means an emulator or a bug, and
        // payops will not guess which one is the account's.
        _ => Err(AwsError::Ambiguous {
            what: "GuardDuty detectors in this region".into(),
            ids,
        }),
    }
}

async fn get(gd: &Client, id: &str) -> Result<Option<Detector>, AwsError> {
    let out = match gd
        .get_detector()
        .detector_id(id)
        .send()
        .await
        .op("guardduty:GetDetector")
    {
        Ok(out) => out,
        // Deleted between the listing and this read.
        Err(e) if is_bad_request_saying(&e, NOT_OWNED) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(Detector {
        id: id.to_owned(),
        enabled: out.status() == Some(&DetectorStatus::Enabled),
        frequency: out
            .finding_publishing_frequency()
            .map(|f| f.as_str().to_owned()),
        owner: owner_of(out.tags()),
    }))
}

fn report(d: &Detector, action: &'static str, notes: Vec<String>) -> ItemReport {
    ItemReport {
        item: ITEM,
        id: Some(d.id.clone()),
        owner: Some(d.owner),
        state: if d.enabled { "enabled" } else { "suspended" }.into(),
        action,
        notes,
    }
}

fn absent(action: &'static str) -> ItemReport {
    ItemReport {
        item: ITEM,
        id: None,
        owner: None,
        state: "absent".into(),
        action,
        notes: Vec::new(),
    }
}

/// What `status` shows: a read, nothing else.
pub async fn observe(gd: &Client) -> Result<ItemReport, AwsError> {
    Ok(match find(gd).await? {
        None => absent("observed"),
        Some(d) => {
            let notes = adopted_notes(&d, false);
            report(&d, "observed", notes)
        }
    })
}

fn adopted_notes(d: &Detector, will_enable: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if d.owner != Owner::Adopted {
        return notes;
    }
    if !d.enabled && !will_enable {
        notes.push(
            "suspended: GuardDuty is not watching this region; payops leaves an adopted \
             detector as its owner set it (`payops baseline up --enable-suspended-detector` \
             re-enables it)"
                .into(),
        );
    }
    if let Some(f) = &d.frequency
        && f != FREQUENCY.as_str()
    {
        notes.push(format!(
            "publishes finding updates every {f} (payops would choose {}); left as its owner set it",
            FREQUENCY.as_str()
        ));
    }
    notes
}

/// Makes sure the region has an enabled detector: creates one (tagged as
/// payops') when there is none, adopts the one there is, and brings a
/// payops-created one back to its settings. An adopted detector is changed
/// only to re-enable it, and only with `enable_suspended`.
pub async fn ensure(
    gd: &Client,
    now: &str,
    enable_suspended: bool,
) -> Result<ItemReport, AwsError> {
    if let Some(d) = find(gd).await? {
        return reconcile(gd, d, enable_suspended).await;
    }
    let created = gd
        .create_detector()
        .enable(true)
        .finding_publishing_frequency(FREQUENCY)
        .tags(tags::MANAGED_BY, tags::MANAGER)
        .tags(SCOPE_TAG, SCOPE)
        .tags(tags::CREATED_AT, now)
        .set_features(Some(
            FEATURES
                .iter()
                .map(|(name, on)| {
                    DetectorFeatureConfiguration::builder()
                        .name(name.clone())
                        .status(if *on {
                            FeatureStatus::Enabled
                        } else {
                            FeatureStatus::Disabled
                        })
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .op("guardduty:CreateDetector");
    match created {
        Ok(out) => {
            let id = required(out.detector_id(), "guardduty:CreateDetector", "DetectorId")?;
            let d = Detector {
                id: id.to_owned(),
                enabled: true,
                frequency: Some(FREQUENCY.as_str().to_owned()),
                owner: Owner::Payops,
            };
            Ok(report(&d, "created", Vec::new()))
        }
        // Someone made one between our listing and our create: theirs.
        Err(e) if is_bad_request_saying(&e, ALREADY_EXISTS) => match find(gd).await? {
            Some(d) => reconcile(gd, d, enable_suspended).await,
            None => Err(AwsError::Conflict(format!(
                "{e}; yet ListDetectors lists none: run again"
            ))),
        },
        Err(e) => Err(e),
    }
}

async fn reconcile(
    gd: &Client,
    d: Detector,
    enable_suspended: bool,
) -> Result<ItemReport, AwsError> {
    let wrong_frequency = d.frequency.as_deref() != Some(FREQUENCY.as_str());
    match d.owner {
        Owner::Payops if !d.enabled || wrong_frequency => {
            gd.update_detector()
                .detector_id(&d.id)
                .enable(true)
                .finding_publishing_frequency(FREQUENCY)
                .send()
                .await
                .op("guardduty:UpdateDetector")?;
            let fixed = Detector {
                enabled: true,
                frequency: Some(FREQUENCY.as_str().to_owned()),
                ..d
            };
            Ok(report(&fixed, "updated", Vec::new()))
        }
        Owner::Payops => Ok(report(&d, "in-sync", Vec::new())),
        Owner::Adopted if !d.enabled && enable_suspended => {
            // Only what the operator consented to: its frequency, plans and
            // tags stay as their owner set them.
            gd.update_detector()
                .detector_id(&d.id)
                .enable(true)
                .send()
                .await
                .op("guardduty:UpdateDetector")?;
            let notes = adopted_notes(&d, true);
            let enabled = Detector { enabled: true, ..d };
            Ok(report(&enabled, "re-enabled", notes))
        }
        Owner::Adopted => {
            let notes = adopted_notes(&d, false);
            Ok(report(&d, "adopted", notes))
        }
    }
}

/// Deletes the detector if payops created it; an adopted one is kept.
pub async fn destroy(gd: &Client) -> Result<ItemReport, AwsError> {
    let Some(d) = find(gd).await? else {
        return Ok(absent("absent"));
    };
    if d.owner == Owner::Adopted {
        return Ok(report(
            &d,
            "kept",
            vec!["not created by payops (no payops:scope tag): never deleted".into()],
        ));
    }
    match gd
        .delete_detector()
        .detector_id(&d.id)
        .send()
        .await
        .op("guardduty:DeleteDetector")
    {
        Ok(_) => {}
        Err(e) if is_bad_request_saying(&e, NOT_OWNED) => {}
        Err(e) => return Err(e),
    }
    // Requested is not done: look again.
    if let Some(left) = find(gd).await?
        && left.id == d.id
    {
        return Err(AwsError::Conflict(format!(
            "guardduty:DeleteDetector answered but detector {} is still listed",
            d.id
        )));
    }
    Ok(ItemReport {
        state: "absent".into(),
        ..report(&d, "deleted", Vec::new())
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_guardduty::operation::create_detector::{
        CreateDetectorError, CreateDetectorOutput,
    };
    use aws_sdk_guardduty::operation::delete_detector::DeleteDetectorOutput;
    use aws_sdk_guardduty::operation::get_detector::{GetDetectorError, GetDetectorOutput};
    use aws_sdk_guardduty::operation::list_detectors::ListDetectorsOutput;
    use aws_sdk_guardduty::operation::update_detector::UpdateDetectorOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    const ID: &str = "12abc34d567e8fa901bc2d34e56789f0";
    /// AWS's words (API_CreateDetector; tfaws guardduty/detector.go).
    const EXISTS: &str =
        "The request is rejected because a detector already exists for the current account.";
    const GONE: &str =
        "The request is rejected because the input detectorId is not owned by the current account.";

    fn bad_request(message: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code("BadRequestException")
            .message(message)
            .build()
    }

    fn gd(rules: &[&Rule]) -> Client {
        mock_client!(aws_sdk_guardduty, RuleMode::MatchAny, rules)
    }

    fn listed(ids: &'static [&'static str]) -> Rule {
        mock!(Client::list_detectors).then_output(move || {
            ListDetectorsOutput::builder()
                .set_detector_ids(Some(ids.iter().map(|s| (*s).to_owned()).collect()))
                .build()
        })
    }

    fn detector(status: DetectorStatus, frequency: &'static str, ours: bool) -> Rule {
        mock!(Client::get_detector)
            .match_requests(|r| r.detector_id() == Some(ID))
            .then_output(move || {
                let mut out = GetDetectorOutput::builder()
                    .service_role("arn:aws:iam::123456789012:role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty")
                    .status(status.clone())
                    .finding_publishing_frequency(frequency.into())
                    .tags("team", "security");
                if ours {
                    out = out
                        .tags(tags::MANAGED_BY, tags::MANAGER)
                        .tags(SCOPE_TAG, SCOPE);
                }
                out.build()
            })
    }

    fn update() -> Rule {
        mock!(Client::update_detector).then_output(|| UpdateDetectorOutput::builder().build())
    }

    fn delete() -> Rule {
        mock!(Client::delete_detector).then_output(|| DeleteDetectorOutput::builder().build())
    }

    #[tokio::test]
    async fn no_detector_creates_one_enabled_every_six_hours_tagged_as_payops() {
        let create = mock!(Client::create_detector)
            .match_requests(|r| {
                let tags = r.tags().cloned().unwrap_or_default();
                let features: Vec<(String, String)> = r
                    .features()
                    .iter()
                    .map(|f| {
                        (
                            f.name().unwrap().as_str().to_owned(),
                            f.status().unwrap().as_str().to_owned(),
                        )
                    })
                    .collect();
                r.enable() == Some(true)
                    && r.finding_publishing_frequency() == Some(&FindingPublishingFrequency::SixHours)
                    && tags.get(tags::MANAGED_BY).map(String::as_str) == Some("payops")
                    && tags.get(SCOPE_TAG).map(String::as_str) == Some(SCOPE)
                    && !tags.contains_key(tags::ENV)
                    // Every plan said, none left to AWS's all-on default.
                    && features.len() == 6
                    && features.contains(&("RUNTIME_MONITORING".into(), "DISABLED".into()))
                    && features.contains(&("S3_DATA_EVENTS".into(), "ENABLED".into()))
            })
            .then_output(|| CreateDetectorOutput::builder().detector_id(ID).build());
        let client = gd(&[&listed(&[]), &create]);
        let r = ensure(&client, "2026-12-06T00:00:00Z", false)
            .await
            .unwrap();
        assert_eq!(r.action, "created");
        assert_eq!(r.owner, Some(Owner::Payops));
        assert_eq!(r.id.as_deref(), Some(ID));
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_create_refused_because_one_exists_adopts_it_and_never_fails() {
        // First listing: none (another creator was faster); then theirs.
        let list_first_empty = mock!(Client::list_detectors)
            .sequence()
            .output(|| {
                ListDetectorsOutput::builder()
                    .set_detector_ids(Some(vec![]))
                    .build()
            })
            .output(|| ListDetectorsOutput::builder().detector_ids(ID).build())
            .build();
        let create = mock!(Client::create_detector)
            .then_error(|| CreateDetectorError::generic(bad_request(EXISTS)));
        let update = update();
        let client = gd(&[
            &list_first_empty,
            &create,
            &detector(DetectorStatus::Enabled, "ONE_HOUR", false),
            &update,
        ]);
        let r = ensure(&client, "now", false).await.unwrap();
        assert_eq!(r.action, "adopted");
        assert_eq!(r.owner, Some(Owner::Adopted));
        assert_eq!(r.id.as_deref(), Some(ID));
        assert_eq!(create.num_calls(), 1);
        // Another team's frequency stays theirs, and says so.
        assert_eq!(update.num_calls(), 0);
        assert!(r.notes.iter().any(|n| n.contains("ONE_HOUR")), "{r:?}");
    }

    #[tokio::test]
    async fn an_adopted_suspended_detector_is_reported_and_left_alone_without_consent() {
        let update = update();
        let client = gd(&[
            &listed(&[ID]),
            &detector(DetectorStatus::Disabled, "SIX_HOURS", false),
            &update,
        ]);
        let r = ensure(&client, "now", false).await.unwrap();
        assert_eq!((r.action, r.state.as_str()), ("adopted", "suspended"));
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("--enable-suspended-detector")),
            "{r:?}"
        );
        assert_eq!(update.num_calls(), 0);
    }

    #[tokio::test]
    async fn consent_re_enables_an_adopted_detector_and_changes_nothing_else() {
        let update = mock!(Client::update_detector)
            .match_requests(|r| {
                r.detector_id() == Some(ID)
                    && r.enable() == Some(true)
                    && r.finding_publishing_frequency().is_none()
                    && r.features().is_empty()
            })
            .then_output(|| UpdateDetectorOutput::builder().build());
        let client = gd(&[
            &listed(&[ID]),
            &detector(DetectorStatus::Disabled, "FIFTEEN_MINUTES", false),
            &update,
        ]);
        let r = ensure(&client, "now", true).await.unwrap();
        assert_eq!((r.action, r.state.as_str()), ("re-enabled", "enabled"));
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_converged_payops_detector_takes_no_mutating_call() {
        let client = gd(&[
            &listed(&[ID]),
            &detector(DetectorStatus::Enabled, "SIX_HOURS", true),
        ]);
        let r = ensure(&client, "now", false).await.unwrap();
        assert_eq!((r.action, r.owner), ("in-sync", Some(Owner::Payops)));
    }

    #[tokio::test]
    async fn a_payops_detector_that_drifted_is_put_back() {
        let update = mock!(Client::update_detector)
            .match_requests(|r| {
                r.enable() == Some(true)
                    && r.finding_publishing_frequency()
                        == Some(&FindingPublishingFrequency::SixHours)
            })
            .then_output(|| UpdateDetectorOutput::builder().build());
        let client = gd(&[
            &listed(&[ID]),
            &detector(DetectorStatus::Disabled, "ONE_HOUR", true),
            &update,
        ]);
        let r = ensure(&client, "now", false).await.unwrap();
        assert_eq!((r.action, r.state.as_str()), ("updated", "enabled"));
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn destroy_never_deletes_an_adopted_detector() {
        let delete = delete();
        let client = gd(&[
            &listed(&[ID]),
            &detector(DetectorStatus::Enabled, "SIX_HOURS", false),
            &delete,
        ]);
        let r = destroy(&client).await.unwrap();
        assert_eq!((r.action, r.owner), ("kept", Some(Owner::Adopted)));
        assert_eq!(delete.num_calls(), 0);
    }

    #[tokio::test]
    async fn destroy_deletes_the_detector_payops_created_and_looks_again() {
        let list = mock!(Client::list_detectors)
            .sequence()
            .output(|| ListDetectorsOutput::builder().detector_ids(ID).build())
            .output(|| {
                ListDetectorsOutput::builder()
                    .set_detector_ids(Some(vec![]))
                    .build()
            })
            .build();
        let delete = mock!(Client::delete_detector)
            .match_requests(|r| r.detector_id() == Some(ID))
            .then_output(|| DeleteDetectorOutput::builder().build());
        let client = gd(&[
            &list,
            &detector(DetectorStatus::Enabled, "SIX_HOURS", true),
            &delete,
        ]);
        let r = destroy(&client).await.unwrap();
        assert_eq!((r.action, r.state.as_str()), ("deleted", "absent"));
        assert_eq!(delete.num_calls(), 1);
        assert_eq!(list.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_detector_gone_between_listing_and_reading_is_absent() {
        let get =
            mock!(Client::get_detector).then_error(|| GetDetectorError::generic(bad_request(GONE)));
        let client = gd(&[&listed(&[ID]), &get]);
        assert_eq!(observe(&client).await.unwrap().state, "absent");
    }

    /// EventBridge's matching for what the pattern uses: exact values and
    /// `{"numeric": [op, n]}` on a number (a string never matches numerically).
    fn matches(pattern: &serde_json::Value, event: &serde_json::Value) -> bool {
        use serde_json::Value;
        match pattern {
            Value::Object(fields) => fields
                .iter()
                .all(|(k, p)| event.get(k).is_some_and(|e| matches(p, e))),
            Value::Array(allowed) => allowed.iter().any(|a| match a {
                Value::Object(o) if o.contains_key("numeric") => {
                    let rule = o["numeric"].as_array().unwrap();
                    let (op, n) = (rule[0].as_str().unwrap(), rule[1].as_f64().unwrap());
                    event.as_f64().is_some_and(|v| match op {
                        ">=" => v >= n,
                        ">" => v > n,
                        "<" => v < n,
                        "<=" => v <= n,
                        "=" => v == n,
                        _ => false,
                    })
                }
                a => a == event,
            }),
            _ => false,
        }
    }

    /// A GuardDuty finding as EventBridge delivers it (GuardDuty user guide,
    /// guardduty_findings_eventbridge: the "GuardDuty Finding" event; fields
    /// of the finding abridged).
    fn finding_event(severity: f64, kind: &str) -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": "c8c4daa7-a20c-2f03-0070-b7393dd542ad",
            "detail-type": "GuardDuty Finding",
            "source": "aws.guardduty",
            "account": "123456789012",
            "time": "2026-12-06T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "schemaVersion": "2.0",
                "accountId": "123456789012",
                "region": "us-east-1",
                "partition": "aws",
                "id": "16afba5c5c43e07c9e3e5e2e544e95df",
                "arn": "arn:aws:guardduty:us-east-1:123456789012:detector/123456789012/finding/16afba5c5c43e07c9e3e5e2e544e95df",
                "type": kind,
                "resource": {"resourceType": "Instance"},
                "service": {
                    "serviceName": "guardduty",
                    "detectorId": "123456789012",
                    "action": {"actionType": "NETWORK_CONNECTION"},
                    "count": 1
                },
                "severity": severity,
                "createdAt": "2026-12-06T11:58:00.000Z",
                "updatedAt": "2026-12-06T11:58:00.000Z",
                "title": "Sample finding",
                "description": "Sample finding"
            }
        })
    }

    #[test]
    fn the_high_findings_pattern_takes_high_and_critical_and_nothing_below() {
        let p = high_findings_pattern();
        assert!(matches(
            &p,
            &finding_event(8.0, "Backdoor:EC2/C&CActivity.B!DNS")
        ));
        assert!(matches(
            &p,
            &finding_event(7.0, "CryptoCurrency:EC2/BitcoinTool.B!DNS")
        ));
        assert!(matches(
            &p,
            &finding_event(9.5, "AttackSequence:S3/CompromisedData")
        ));
        assert!(!matches(
            &p,
            &finding_event(5.0, "Recon:EC2/PortProbeUnprotectedPort")
        ));
        assert!(!matches(
            &p,
            &finding_event(6.9, "UnauthorizedAccess:EC2/SSHBruteForce")
        ));
        // A severity as a string (what a naive pattern expects) never matches.
        let mut as_string = finding_event(8.0, "Backdoor:EC2/C&CActivity.B!DNS");
        as_string["detail"]["severity"] = "8.0".into();
        assert!(!matches(&p, &as_string));
        // Another source with the same shape does not either.
        let mut other = finding_event(8.0, "Backdoor:EC2/C&CActivity.B!DNS");
        other["source"] = "payops.payments".into();
        assert!(!matches(&p, &other));
    }

    #[tokio::test]
    async fn two_detectors_in_one_region_are_not_guessed_between() {
        let client = gd(&[&listed(&[ID, "other"])]);
        let err = find(&client).await.unwrap_err();
        assert!(matches!(err, AwsError::Ambiguous { .. }), "{err}");
    }
}
