//! The internal ALB's TLS certificate when the operator gives none
//! (`--certificate-arn`): payops generates a self-signed ECDSA P-256
//! certificate, imports it into ACM (tagged), re-imports it in place before
//! it expires and deletes it on `down`.
//!
//! Self-signed is enough here: the ALB is internal and only the NLB reaches
//! it, and API Gateway's VPC-link integration is told not to verify it (see
//! `rest_api.rs`). The private key exists only in memory, for the import: it
//! is never written to state, outputs or logs.

use std::fmt;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use async_trait::async_trait;
use aws_sdk_acm::types::{CertificateStatus, CertificateType, Filters, KeyAlgorithm};
use aws_smithy_types::Blob;

use crate::aws::{AwsError, OpResult, absent_on, required, retry_on_codes};
use crate::engine::{Record, StepCx};
use crate::spec::Certificate as CertificateSpec;
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::{Resource, keep_the_one_in_use};
use crate::resources::sdk::acm;
use crate::tags::describe_tag_fix;

/// How long a generated certificate is valid.
const VALID_DAYS: u64 = 365;
/// Re-imported (same ARN, so the listener follows) when fewer days are left.
const RENEW_WITHIN_DAYS: i64 = 30;
const DAY: u64 = 24 * 60 * 60;

pub struct SelfSignedCertificate;

pub struct FoundCertificate {
    arn: String,
    not_after: Option<i64>,
    status: Option<CertificateStatus>,
    tags: TagMap,
    /// A listener presents it (ACM's InUseBy).
    in_use: bool,
}

pub enum Fix {
    Renew { days_left: Option<i64> },
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Renew { days_left: Some(d) } if *d >= 0 => write!(
                f,
                "re-import a fresh self-signed certificate ({d} days left)"
            ),
            Self::Renew { .. } => {
                f.write_str("re-import a fresh self-signed certificate (expired)")
            }
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

/// The certificate's validity from `now`: from yesterday (clocks disagree by
/// minutes, not days) to `VALID_DAYS` ahead.
fn validity(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let days = i64::try_from(VALID_DAYS).unwrap_or(365);
    (
        now - time::Duration::days(1),
        now + time::Duration::days(days),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The names in the certificate: the env's own name first (how payops finds
/// the certificate again), then what internal ALB and NLB DNS names look
/// like in the region, so clients inside the VPC that do check names can.
pub fn subject_names(cx: &Context) -> Vec<String> {
    vec![
        cx.names.certificate_domain(),
        format!("*.{}.elb.amazonaws.com", cx.region),
        format!("*.elb.{}.amazonaws.com", cx.region),
    ]
}

/// A self-signed certificate and its key, both PEM.
pub struct Generated {
    pub certificate: String,
    pub private_key: String,
}

pub fn generate(cx: &Context) -> Result<Generated, AwsError> {
    let failed = |e: rcgen::Error| {
        AwsError::Conflict(format!("could not generate the ALB's certificate: {e}"))
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(subject_names(cx)).map_err(failed)?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, cx.names.certificate_domain());
    name.push(rcgen::DnType::OrganizationName, "payops (self-signed)");
    params.distinguished_name = name;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    (params.not_before, params.not_after) = validity(OffsetDateTime::now_utc());
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial)
        .map_err(|e| AwsError::Conflict(format!("no randomness for a serial number: {e}")))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
    let certificate = params.self_signed(&key).map_err(failed)?;
    Ok(Generated {
        certificate: certificate.pem(),
        private_key: key.serialize_pem(),
    })
}

impl SelfSignedCertificate {
    async fn describe(
        &self,
        cx: &Context,
        arn: &str,
    ) -> Result<Option<FoundCertificate>, AwsError> {
        let out = cx
            .clients
            .acm
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .op("acm:DescribeCertificate");
        let Some(out) = absent_on(out, &["ResourceNotFoundException"])? else {
            return Ok(None);
        };
        let detail = required(out.certificate(), "acm:DescribeCertificate", "Certificate")?;
        let tags: TagMap = match cx.listed_tags(arn).await {
            Some(tags) => tags,
            None => cx
                .clients
                .acm
                .list_tags_for_certificate()
                .certificate_arn(arn)
                .send()
                .await
                .op("acm:ListTagsForCertificate")?
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned()))
                .collect(),
        };
        cx.check_ours(format!("ACM certificate {arn}"), &tags)?;
        if detail.r#type() != Some(&CertificateType::Imported) {
            return Err(AwsError::Conflict(format!(
                "ACM certificate {arn} is tagged for this env but was not imported by payops"
            )));
        }
        Ok(Some(FoundCertificate {
            arn: arn.to_owned(),
            not_after: detail.not_after().map(|t| t.secs()),
            status: detail.status().cloned(),
            tags,
            in_use: !detail.in_use_by().is_empty(),
        }))
    }

    /// Certificates whose first name is the env's certificate domain.
    async fn candidates(&self, cx: &Context) -> Result<Vec<String>, AwsError> {
        let domain = cx.names.certificate_domain();
        let pages: Vec<_> = cx
            .clients
            .acm
            .list_certificates()
            // ListCertificates shows only RSA certificates unless asked.
            .includes(
                Filters::builder()
                    .key_types(KeyAlgorithm::EcPrime256v1)
                    .build(),
            )
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut arns = Vec::new();
        for page in pages {
            let page = page.op("acm:ListCertificates")?;
            arns.extend(
                page.certificate_summary_list()
                    .iter()
                    .filter(|c| c.domain_name() == Some(domain.as_str()))
                    .filter_map(|c| c.certificate_arn().map(str::to_owned)),
            );
        }
        Ok(arns)
    }
}

#[async_trait]
impl Resource for SelfSignedCertificate {
    type Found = FoundCertificate;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "acm:certificate"
    }

    /// Only while the operator gives no certificate of their own.
    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.certificate == CertificateSpec::SelfSigned
    }

    async fn find(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<Vec<FoundCertificate>, AwsError> {
        // The recorded one first, and every other tagged for the step: an
        // import whose answer was lost leaves a second one, which `down`
        // must remove too.
        let recorded = step.previous_resource("certificate").map(str::to_owned);
        let mut found = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for arn in recorded.into_iter().chain(self.candidates(cx).await?) {
            if seen.insert(arn.clone())
                && let Some(f) = self.describe(cx, &arn).await?
            {
                found.push(f);
            }
        }
        Ok(found)
    }

    fn describe(&self, found: &FoundCertificate) -> String {
        found.arn.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundCertificate, AwsError> {
        let generated = generate(cx)?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let out = cx
            .clients
            .acm
            .import_certificate()
            .certificate(Blob::new(generated.certificate.into_bytes()))
            .private_key(Blob::new(generated.private_key.into_bytes()))
            .set_tags(Some(acm::tags(&tags)))
            .send()
            .await
            .op("acm:ImportCertificate")?;
        let arn = required(
            out.certificate_arn(),
            "acm:ImportCertificate",
            "CertificateArn",
        )?;
        step.remember("certificate", arn);
        let not_after = unix_now() + VALID_DAYS * DAY;
        Ok(FoundCertificate {
            arn: arn.to_owned(),
            not_after: i64::try_from(not_after).ok(),
            status: Some(CertificateStatus::Issued),
            tags,
            in_use: false,
        })
    }

    /// ImportCertificate has no idempotency token: a retried import whose
    /// first answer was lost leaves a second certificate tagged for the step.
    fn create_may_duplicate(&self) -> bool {
        true
    }

    /// The one a listener presents (else the recorded one, which `find` lists
    /// first); the others were never handed to anything. Two in use: payops
    /// does not guess.
    fn keep_of_duplicates(&self, found: &[FoundCertificate]) -> Option<usize> {
        keep_the_one_in_use(found, |c| c.in_use)
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundCertificate,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let days_left = found.not_after.map(|t| (t - now).div_euclid(DAY as i64));
        let usable = found.status.as_ref() == Some(&CertificateStatus::Issued);
        if !usable || days_left.is_none_or(|d| d < RENEW_WITHIN_DAYS) {
            fixes.push(Fix::Renew { days_left });
        }
        let missing = cx.tagger.missing(step.id().as_str(), &found.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: &mut FoundCertificate,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Renew { .. } => {
                // Re-importing into the same ARN keeps every listener on it.
                let generated = generate(cx)?;
                cx.clients
                    .acm
                    .import_certificate()
                    .certificate_arn(&found.arn)
                    .certificate(Blob::new(generated.certificate.into_bytes()))
                    .private_key(Blob::new(generated.private_key.into_bytes()))
                    .send()
                    .await
                    .op("acm:ImportCertificate")?;
                found.not_after = i64::try_from(unix_now() + VALID_DAYS * DAY).ok();
                found.status = Some(CertificateStatus::Issued);
            }
            Fix::Tags(tags) => {
                cx.clients
                    .acm
                    .add_tags_to_certificate()
                    .certificate_arn(&found.arn)
                    .set_tags(Some(acm::tags(&tags)))
                    .send()
                    .await
                    .op("acm:AddTagsToCertificate")?;
                found.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundCertificate) -> Record {
        Record::default()
            .resource("certificate", &found.arn)
            .output("AlbCertificateArn", &found.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundCertificate,
    ) -> Result<Vec<String>, AwsError> {
        // ACM keeps a certificate "in use" for a while after the listener
        // that used it is gone.
        let progress = |m: String| step.progress(m);
        retry_on_codes(
            format!("deleting {}", found.arn),
            &["ResourceInUseException"],
            cx.budgets.certificate_release,
            &progress,
            || async {
                let deleted = cx
                    .clients
                    .acm
                    .delete_certificate()
                    .certificate_arn(&found.arn)
                    .send()
                    .await
                    .op("acm:DeleteCertificate");
                absent_on(deleted, &["ResourceNotFoundException"]).map(drop)
            },
        )
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_acm::Client;
    use aws_sdk_acm::operation::{
        add_tags_to_certificate::AddTagsToCertificateOutput,
        delete_certificate::{DeleteCertificateError, DeleteCertificateOutput},
        describe_certificate::DescribeCertificateOutput,
        import_certificate::ImportCertificateOutput,
        list_certificates::ListCertificatesOutput,
        list_tags_for_certificate::ListTagsForCertificateOutput,
    };
    use aws_sdk_acm::types::{CertificateDetail, CertificateSummary};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use aws_smithy_types::DateTime;

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const STEP: &str = "acm-certificate:alb";
    const ARN: &str = "arn:aws:acm:us-east-1:123456789012:certificate/c-1";
    const DOMAIN: &str = "alb.pr1.payops.internal";

    fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.acm = mock_client!(aws_sdk_acm, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn listed() -> Rule {
        mock!(Client::list_certificates)
            .match_requests(|r| {
                r.includes()
                    .is_some_and(|i| i.key_types() == [KeyAlgorithm::EcPrime256v1])
            })
            .then_output(|| {
                ListCertificatesOutput::builder()
                    .certificate_summary_list(
                        CertificateSummary::builder()
                            .certificate_arn(ARN)
                            .domain_name(DOMAIN)
                            .build(),
                    )
                    // Someone else's certificate for another name is not looked at.
                    .certificate_summary_list(
                        CertificateSummary::builder()
                            .certificate_arn("arn:aws:acm:us-east-1:123456789012:certificate/x")
                            .domain_name("example.com")
                            .build(),
                    )
                    .build()
            })
    }

    fn described(days_left: i64) -> Rule {
        mock!(Client::describe_certificate)
            .match_requests(|r| r.certificate_arn() == Some(ARN))
            .then_output(move || {
                let now = i64::try_from(unix_now()).unwrap();
                DescribeCertificateOutput::builder()
                    .certificate(
                        CertificateDetail::builder()
                            .certificate_arn(ARN)
                            .domain_name(DOMAIN)
                            .r#type(CertificateType::Imported)
                            .status(CertificateStatus::Issued)
                            .not_after(DateTime::from_secs(now + days_left * DAY as i64))
                            .build(),
                    )
                    .build()
            })
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_certificate).then_output(move || {
            ListTagsForCertificateOutput::builder()
                .set_tags(Some(acm::tags(&tags)))
                .build()
        })
    }

    fn empty_list() -> Rule {
        mock!(Client::list_certificates).then_output(|| ListCertificatesOutput::builder().build())
    }

    #[test]
    fn a_generated_certificate_is_a_pem_pair_naming_the_env_and_the_elb_domains() {
        let cx = testing::context(testing::clients());
        let g = generate(&cx).unwrap();
        assert!(g.certificate.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(g.private_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            subject_names(&cx),
            [
                DOMAIN,
                "*.us-east-1.elb.amazonaws.com",
                "*.elb.us-east-1.amazonaws.com"
            ]
        );
        // Two runs never share a key or a serial number.
        assert_ne!(generate(&cx).unwrap().private_key, g.private_key);
    }

    #[test]
    fn validity_starts_yesterday_across_a_leap_day() {
        let now = time::macros::datetime!(2024-03-01 12:00 UTC);
        let (from, to) = validity(now);
        assert_eq!(from.date(), time::macros::date!(2024 - 02 - 29));
        assert_eq!(to.date(), time::macros::date!(2025 - 03 - 01));
    }

    #[tokio::test]
    async fn imports_a_tagged_self_signed_certificate_when_none_exists() {
        let import = mock!(Client::import_certificate)
            .match_requests(|r| {
                let cert = std::str::from_utf8(r.certificate().unwrap().as_ref()).unwrap();
                let key = std::str::from_utf8(r.private_key().unwrap().as_ref()).unwrap();
                r.certificate_arn().is_none()
                    && cert.contains("BEGIN CERTIFICATE")
                    && key.contains("BEGIN PRIVATE KEY")
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == "payops:step" && t.value() == Some(STEP))
            })
            .then_output(|| {
                ImportCertificateOutput::builder()
                    .certificate_arn(ARN)
                    .build()
            });
        let cx = context(&[&empty_list(), &import]);
        let applied = testing::ensure(&cx, STEP, SelfSignedCertificate, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["AlbCertificateArn"], ARN);
        // The private key is nowhere in what payops records.
        assert!(!format!("{:?}", applied.record).contains("PRIVATE"));
        assert_eq!(import.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_owned_certificate_with_time_left_is_adopted_without_mutating_calls() {
        let cx = context(&[&listed(), &described(200), &tagged(testing::our_tags(STEP))]);
        let applied = testing::ensure(&cx, STEP, SelfSignedCertificate, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_certificate_with_our_name_but_not_our_tags_is_refused() {
        let cx = context(&[&listed(), &described(200), &tagged(TagMap::new())]);
        let err = testing::ensure(&cx, STEP, SelfSignedCertificate, &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert!(
            testing::destroy(&cx, STEP, SelfSignedCertificate)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_expiring_certificate_is_reimported_in_place_and_tags_repaired() {
        let mut tags = testing::our_tags(STEP);
        tags.remove("CostCenter");
        let reimport = mock!(Client::import_certificate)
            .match_requests(|r| r.certificate_arn() == Some(ARN) && r.tags().is_empty())
            .then_output(|| {
                ImportCertificateOutput::builder()
                    .certificate_arn(ARN)
                    .build()
            });
        let retag = mock!(Client::add_tags_to_certificate)
            .match_requests(|r| r.tags().len() == 1 && r.tags()[0].key() == "CostCenter")
            .then_output(|| AddTagsToCertificateOutput::builder().build());
        let cx = context(&[&listed(), &described(10), &tagged(tags), &reimport, &retag]);
        let Observation::Present { drift, .. } =
            testing::observe(&cx, STEP, SelfSignedCertificate, &[])
                .await
                .unwrap()
        else {
            panic!("present");
        };
        assert!(drift[0].contains("re-import"), "{drift:?}");
        let applied = testing::ensure(&cx, STEP, SelfSignedCertificate, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((reimport.num_calls(), retag.num_calls()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn delete_waits_while_acm_still_sees_it_in_use() {
        let delete = mock!(Client::delete_certificate)
            .sequence()
            .error(|| {
                DeleteCertificateError::generic(testing::error_meta("ResourceInUseException"))
            })
            .times(2)
            .output(|| DeleteCertificateOutput::builder().build())
            .build();
        let cx = context(&[
            &listed(),
            &described(200),
            &tagged(testing::our_tags(STEP)),
            &delete,
        ]);
        let removed = testing::destroy(&cx, STEP, SelfSignedCertificate)
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 3);
        let cx = context(&[&empty_list()]);
        assert_eq!(
            testing::destroy(&cx, STEP, SelfSignedCertificate)
                .await
                .unwrap(),
            Removed::AlreadyAbsent
        );
    }

    #[test]
    fn an_operators_certificate_makes_payops_own_unwanted() {
        let mut cx = testing::context(testing::clients());
        assert!(SelfSignedCertificate.wanted(&cx));
        cx.spec.certificate =
            CertificateSpec::Acm("arn:aws:acm:us-east-1:123456789012:certificate/mine".into());
        assert!(!SelfSignedCertificate.wanted(&cx));
    }

    #[test]
    fn of_two_imports_for_one_step_the_one_in_use_is_kept_else_the_recorded_one() {
        let cert = |arn: &str, in_use: bool| FoundCertificate {
            arn: arn.into(),
            not_after: None,
            status: Some(CertificateStatus::Issued),
            tags: TagMap::new(),
            in_use,
        };
        let r = SelfSignedCertificate;
        assert_eq!(
            r.keep_of_duplicates(&[cert("recorded", false), cert("presented", true)]),
            Some(1)
        );
        assert_eq!(
            r.keep_of_duplicates(&[cert("recorded", false), cert("extra", false)]),
            Some(0)
        );
        assert_eq!(
            r.keep_of_duplicates(&[cert("a", true), cert("b", true)]),
            None
        );
    }
}
