//! The records of the env's private zone (see the domain's doc):
//! `payments.<zone>` PRIMARY / SECONDARY failover aliases and `alb.<zone>`.
//!
//! Rules of Route 53 (API ChangeResourceRecordSets, AliasTarget):
//! - an alias to an ALB names the ALB's DNS name and the ALB's
//!   *CanonicalHostedZoneId* (ELB's zone for the region, not the env's zone),
//!   and has no TTL;
//! - EvaluateTargetHealth is false: with true, Route 53 counts *every*
//!   target group of the ALB that has targets, green included during a
//!   deploy, so a half-deployed green would fail the PRIMARY over. The
//!   health checks (CloudWatch alarms) say when to fail over;
//! - a batch is transactional, so one UPSERT batch writes all three: the
//!   name never has a PRIMARY without its SECONDARY;
//! - a DELETE must carry the record exactly as it is (every value), so
//!   `down` echoes what it listed; a record already gone answers
//!   InvalidChangeBatch ("not found"), after which the step lists again.
//!
//! Records have no tags: they are the env's because they are in the env's
//! zone under the names payops gives them.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecordSet, ResourceRecordSetFailover,
    RrType,
};

use crate::aws::{AwsError, OpResult, built};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::route53 as sdk;

use super::health_check::Check;
use super::{fqdn, hosted_zone, zone_name};

pub const STEP: &str = "dns-records:payments";

/// (step, DNS name output, canonical hosted zone id output) of the ALBs.
const ALB: (&str, &str, &str) = (
    "load-balancer:alb",
    "AlbDnsName",
    "AlbCanonicalHostedZoneId",
);
const MAINTENANCE_ALB: (&str, &str, &str) = (
    "load-balancer:maintenance",
    "MaintenanceAlbDnsName",
    "MaintenanceAlbCanonicalHostedZoneId",
);

pub const PRIMARY_ID: &str = "primary";
pub const SECONDARY_ID: &str = "maintenance";

/// `payments.<zone>`.
pub fn payments_name(cx: &Context) -> String {
    format!("payments.{}", zone_name(cx))
}

/// `alb.<zone>`.
pub fn alb_name(cx: &Context) -> String {
    format!("alb.{}", zone_name(cx))
}

/// One record as payops writes it and compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub name: String,
    pub set_identifier: Option<String>,
    pub failover: Option<ResourceRecordSetFailover>,
    /// (DNS name, hosted zone id), the DNS name normalized.
    pub alias: (String, String),
    pub health_check: Option<String>,
}

impl Want {
    fn of(set: &ResourceRecordSet) -> Option<Self> {
        let alias = set.alias_target()?;
        Some(Self {
            name: fqdn(set.name()),
            set_identifier: set.set_identifier().map(str::to_owned),
            failover: set.failover().cloned(),
            alias: (fqdn(alias.dns_name()), alias.hosted_zone_id().to_owned()),
            health_check: set.health_check_id().map(str::to_owned),
        })
    }

    /// Same record (name, type A, set identifier): what an UPSERT replaces.
    fn same_record(&self, set: &ResourceRecordSet) -> bool {
        fqdn(set.name()) == self.name
            && set.r#type() == &RrType::A
            && set.set_identifier() == self.set_identifier.as_deref()
    }

    fn sdk(&self) -> Result<ResourceRecordSet, AwsError> {
        const OP: &str = "route53:ChangeResourceRecordSets";
        built(
            OP,
            ResourceRecordSet::builder()
                .name(&self.name)
                .r#type(RrType::A)
                .set_set_identifier(self.set_identifier.clone())
                .set_failover(self.failover.clone())
                .set_health_check_id(self.health_check.clone())
                .alias_target(built(
                    OP,
                    AliasTarget::builder()
                        .dns_name(&self.alias.0)
                        .hosted_zone_id(&self.alias.1)
                        .evaluate_target_health(false)
                        .build(),
                )?)
                .build(),
        )
    }
}

/// The three records, from the ALBs' and checks' outputs.
pub fn desired(cx: &Context, step: &StepCx<'_>) -> Result<Vec<Want>, AwsError> {
    let alias = |(lb, dns, zone): (&str, &str, &str)| -> Result<(String, String), AwsError> {
        Ok((
            fqdn(step.output(lb, dns)?),
            step.output(lb, zone)?.to_owned(),
        ))
    };
    let check = |c: Check| -> Result<String, AwsError> {
        Ok(step.output(&c.step_id(), c.output_key())?.to_owned())
    };
    let payments = fqdn(&payments_name(cx));
    Ok(vec![
        Want {
            name: payments.clone(),
            set_identifier: Some(PRIMARY_ID.into()),
            failover: Some(ResourceRecordSetFailover::Primary),
            alias: alias(ALB)?,
            health_check: Some(check(Check::Primary)?),
        },
        Want {
            name: payments,
            set_identifier: Some(SECONDARY_ID.into()),
            failover: Some(ResourceRecordSetFailover::Secondary),
            alias: alias(MAINTENANCE_ALB)?,
            health_check: Some(check(Check::Maintenance)?),
        },
        Want {
            name: fqdn(&alb_name(cx)),
            set_identifier: None,
            failover: None,
            alias: alias(ALB)?,
            health_check: None,
        },
    ])
}

pub struct Records;

pub struct FoundRecords {
    zone_id: String,
    /// payops' names' record sets, as listed.
    sets: Vec<ResourceRecordSet>,
}

pub enum Fix {
    /// One transactional batch: UPSERT these (by SetIdentifier or name),
    /// DELETE the listed sets under payops' names that are not wanted.
    Write { upsert: Vec<String>, stale: usize },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { upsert, stale } => {
                write!(f, "write {}", upsert.join(", "))?;
                if *stale > 0 {
                    write!(f, "; delete {stale} stale record(s)")?;
                }
                Ok(())
            }
        }
    }
}

fn label(w: &Want) -> String {
    match &w.set_identifier {
        Some(id) => format!("{} ({id})", w.name.trim_end_matches('.')),
        None => w.name.trim_end_matches('.').to_owned(),
    }
}

/// The changes that make `sets` the desired records: UPSERTs of what is
/// missing or differs, DELETEs (echoing the listing) of sets under payops'
/// names that no desired record is.
pub fn changes(want: &[Want], sets: &[ResourceRecordSet]) -> (Vec<Want>, Vec<ResourceRecordSet>) {
    let upsert: Vec<Want> = want
        .iter()
        .filter(|w| !sets.iter().any(|s| Want::of(s).as_ref() == Some(*w)))
        .cloned()
        .collect();
    let stale: Vec<ResourceRecordSet> = sets
        .iter()
        .filter(|s| !want.iter().any(|w| w.same_record(s)))
        .cloned()
        .collect();
    (upsert, stale)
}

async fn write(
    cx: &Context,
    zone_id: &str,
    upsert: &[Want],
    delete: &[ResourceRecordSet],
) -> Result<(), AwsError> {
    const OP: &str = "route53:ChangeResourceRecordSets";
    if upsert.is_empty() && delete.is_empty() {
        return Ok(());
    }
    let mut batch = Vec::new();
    for w in upsert {
        batch.push(built(
            OP,
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(w.sdk()?)
                .build(),
        )?);
    }
    for s in delete {
        batch.push(built(
            OP,
            Change::builder()
                .action(ChangeAction::Delete)
                .resource_record_set(s.clone())
                .build(),
        )?);
    }
    let out = cx
        .clients
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(built(
            OP,
            ChangeBatch::builder()
                .comment("payops")
                .set_changes(Some(batch))
                .build(),
        )?)
        .send()
        .await
        .op(OP)?;
    if let Some(info) = out.change_info() {
        sdk::wait_in_sync(&cx.clients.route53, info.id()).await?;
    }
    Ok(())
}

/// The record sets under payops' names in the zone.
async fn listed(cx: &Context, zone_id: &str) -> Result<Vec<ResourceRecordSet>, AwsError> {
    let names = [fqdn(&payments_name(cx)), fqdn(&alb_name(cx))];
    let mut all = Vec::new();
    let mut start: Option<(String, RrType, Option<String>)> = None;
    loop {
        let mut req = cx
            .clients
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id);
        if let Some((name, kind, id)) = &start {
            req = req
                .start_record_name(name)
                .start_record_type(kind.clone())
                .set_start_record_identifier(id.clone());
        }
        let out = req.send().await.op("route53:ListResourceRecordSets")?;
        all.extend(
            out.resource_record_sets()
                .iter()
                .filter(|s| names.contains(&fqdn(s.name())))
                .cloned(),
        );
        match (
            out.is_truncated(),
            out.next_record_name(),
            out.next_record_type(),
        ) {
            (true, Some(name), Some(kind)) => {
                let next = (
                    name.to_owned(),
                    kind.clone(),
                    out.next_record_identifier().map(str::to_owned),
                );
                if start.as_ref() == Some(&next) {
                    return Ok(all);
                }
                start = Some(next);
            }
            _ => return Ok(all),
        }
    }
}

#[async_trait]
impl Resource for Records {
    type Found = FoundRecords;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "route53:record-sets"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.dns
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRecords>, AwsError> {
        let zones = hosted_zone::env_zones(cx).await?;
        let [zone] = zones.as_slice() else {
            // No zone, no records; several: the zone step reports it.
            return Ok(Vec::new());
        };
        let sets = listed(cx, &zone.id).await?;
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![FoundRecords {
            zone_id: zone.id.clone(),
            sets,
        }])
    }

    fn describe(&self, found: &FoundRecords) -> String {
        format!(
            "{} record set(s) in zone {}",
            found.sets.len(),
            found.zone_id
        )
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundRecords, AwsError> {
        let zone_id = step
            .output(hosted_zone::STEP, "PrivateHostedZoneId")?
            .to_owned();
        let want = desired(cx, step)?;
        write(cx, &zone_id, &want, &[]).await?;
        Ok(FoundRecords {
            zone_id,
            sets: want.iter().map(Want::sdk).collect::<Result<_, _>>()?,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundRecords,
    ) -> Result<Vec<Fix>, AwsError> {
        let want = desired(cx, step)?;
        let (upsert, stale) = changes(&want, &found.sets);
        if upsert.is_empty() && stale.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![Fix::Write {
            upsert: upsert.iter().map(label).collect(),
            stale: stale.len(),
        }])
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundRecords,
        _fix: Fix,
    ) -> Result<(), AwsError> {
        let want = desired(cx, step)?;
        let (upsert, stale) = changes(&want, &found.sets);
        write(cx, &found.zone_id, &upsert, &stale).await?;
        found.sets = want.iter().map(Want::sdk).collect::<Result<_, _>>()?;
        Ok(())
    }

    fn record(&self, cx: &Context, found: &FoundRecords) -> Record {
        Record::default()
            .resource("hosted_zone", &found.zone_id)
            .output("PaymentsDnsName", payments_name(cx))
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundRecords,
    ) -> Result<Vec<String>, AwsError> {
        // Echo the listing exactly. One already gone fails the whole batch
        // (InvalidChangeBatch): list again and delete what is left, once.
        match write(cx, &found.zone_id, &[], &found.sets).await {
            Err(e) if e.is_code(&["InvalidChangeBatch"]) => {
                let left = listed(cx, &found.zone_id).await?;
                write(cx, &found.zone_id, &[], &left).await?;
            }
            other => other?,
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_route53::Client;
    use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
    use aws_smithy_mocks::mock;

    use super::*;
    use crate::engine::StepId;
    use crate::resources::dns::fake;
    use crate::resources::testing;

    /// ELB's canonical zone for us-east-1: what an alias to an ALB names,
    /// never the env's own zone.
    const ELB_ZONE: &str = "Z35SXDOTRQ7X7K";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            ("hosted-zone:private", "PrivateHostedZoneId", "Z1"),
            (
                "load-balancer:alb",
                "AlbDnsName",
                "internal-payops-pr1-alb-1.us-east-1.elb.amazonaws.com",
            ),
            ("load-balancer:alb", "AlbCanonicalHostedZoneId", ELB_ZONE),
            (
                "load-balancer:maintenance",
                "MaintenanceAlbDnsName",
                "Internal-payops-pr1-maint-2.us-east-1.elb.amazonaws.com",
            ),
            (
                "load-balancer:maintenance",
                "MaintenanceAlbCanonicalHostedZoneId",
                ELB_ZONE,
            ),
            (
                "health-check:payments-primary",
                "PaymentsPrimaryHealthCheckId",
                "hc-p",
            ),
            (
                "health-check:payments-maintenance",
                "PaymentsMaintenanceHealthCheckId",
                "hc-m",
            ),
        ])
    }

    fn want() -> Vec<Want> {
        let cx = testing::context(testing::clients());
        let events = testing::Events::default();
        let id = StepId::from(STEP);
        let inputs = inputs()
            .into_iter()
            .map(|(k, r)| (StepId::from(k), r))
            .collect();
        desired(&cx, &testing::step_cx(&id, inputs, &events)).unwrap()
    }

    #[test]
    fn payments_fails_over_from_the_alb_to_the_maintenance_alb_on_their_checks() {
        let w = want();
        assert_eq!(w.len(), 3);
        let (primary, secondary, alb) = (&w[0], &w[1], &w[2]);
        assert_eq!(primary.name, "payments.pr1.payops.internal.");
        assert_eq!(primary.failover, Some(ResourceRecordSetFailover::Primary));
        assert_eq!(primary.health_check.as_deref(), Some("hc-p"));
        assert_eq!(
            primary.alias,
            (
                "internal-payops-pr1-alb-1.us-east-1.elb.amazonaws.com.".into(),
                ELB_ZONE.into()
            )
        );
        assert_eq!(secondary.name, primary.name);
        assert_ne!(secondary.set_identifier, primary.set_identifier);
        assert_eq!(
            secondary.failover,
            Some(ResourceRecordSetFailover::Secondary)
        );
        assert_eq!(secondary.health_check.as_deref(), Some("hc-m"));
        assert_eq!(
            secondary.alias.0,
            "internal-payops-pr1-maint-2.us-east-1.elb.amazonaws.com."
        );
        assert_eq!(alb.name, "alb.pr1.payops.internal.");
        assert_eq!(
            (alb.failover.as_ref(), alb.health_check.as_ref()),
            (None, None)
        );
        for w in &w {
            let set = w.sdk().unwrap();
            let target = set.alias_target().unwrap();
            // The ALB's canonical zone, not the private zone Z1; no TTL;
            // target health not evaluated (green would count).
            assert_eq!(target.hosted_zone_id(), ELB_ZONE);
            assert!(!target.evaluate_target_health());
            assert_eq!(set.ttl(), None);
        }
    }

    #[test]
    fn what_route53_answers_for_the_records_is_converged_and_drift_is_one_upsert() {
        let w = want();
        // Route 53 answers names with a trailing dot, lowercase.
        let listed: Vec<ResourceRecordSet> = w.iter().map(|w| w.sdk().unwrap()).collect();
        let (upsert, stale) = changes(&w, &listed);
        assert!(upsert.is_empty() && stale.is_empty());
        let mut drifted = listed.clone();
        drifted[1] = Want {
            health_check: Some("hc-old".into()),
            ..w[1].clone()
        }
        .sdk()
        .unwrap();
        drifted.push(
            Want {
                set_identifier: Some("old".into()),
                ..w[1].clone()
            }
            .sdk()
            .unwrap(),
        );
        let (upsert, stale) = changes(&w, &drifted);
        assert_eq!(upsert, [w[1].clone()]);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].set_identifier(), Some("old"));
    }

    /// A DELETE must carry the record exactly as it is: `down` echoes the
    /// listing, in one transactional batch.
    #[tokio::test]
    async fn down_deletes_exactly_what_it_listed_in_one_batch() {
        let w = want();
        let listed: Vec<ResourceRecordSet> = w.iter().map(|w| w.sdk().unwrap()).collect();
        let expected = listed.clone();
        let change = mock!(Client::change_resource_record_sets)
            .match_requests(move |r| {
                let changes = r.change_batch().unwrap().changes();
                r.hosted_zone_id() == Some("Z1")
                    && changes.iter().all(|c| c.action() == &ChangeAction::Delete)
                    && changes
                        .iter()
                        .map(|c| c.resource_record_set().unwrap().clone())
                        .collect::<Vec<_>>()
                        == expected
            })
            .then_output(|| {
                ChangeResourceRecordSetsOutput::builder()
                    .change_info(fake::change_info("C3"))
                    .build()
            });
        let cx = fake::context(&[&change, &fake::in_sync()]);
        let events = testing::Events::default();
        let id = StepId::from(STEP);
        let step = testing::step_cx(&id, Default::default(), &events);
        Records
            .delete(
                &cx,
                &step,
                FoundRecords {
                    zone_id: "Z1".into(),
                    sets: listed,
                },
            )
            .await
            .unwrap();
        assert_eq!(change.num_calls(), 1);
    }
}
