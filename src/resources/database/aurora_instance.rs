//! One Aurora instance of the cluster: slot 0 first (promotion tier 0, the
//! preferred writer), then the readers, each in the next AZ. All are created
//! in parallel (each ~10 minutes on AWS) and each step waits for its own.
//!
//! Which instance writes is Aurora's choice (the first to come up, and any
//! reader after a failover), so the names say `aurora-1..N`, not writer or
//! reader; the endpoints (cluster = writer, reader) are the cluster's.
//!
//! Slots beyond the spec's reader count are not wanted (`up` removes them),
//! and `down` removes every slot, then the cluster: AWS refuses to delete a
//! cluster that still has instances.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_rds::types::DbInstance;

use crate::aws::{AwsError, OpResult, Poll, absent_on, poll_until, required, wait_until_gone};
use crate::engine::{Record, StepCx};
use crate::spec::AZ_COUNT;
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::model::DB_ENGINE;
use crate::resources::resource::Resource;
use crate::resources::sdk::rds;
use crate::tags::describe_tag_fix;

pub struct AuroraInstance {
    slot: usize,
}

impl AuroraInstance {
    pub fn new(slot: usize) -> Self {
        Self { slot }
    }

    pub fn step_id(slot: usize) -> String {
        format!("aurora-instance:{}", slot + 1)
    }

    /// The first instance is the one to fail over to first.
    pub fn promotion_tier(slot: usize) -> i32 {
        if slot == 0 { 0 } else { 1 }
    }
}

pub struct FoundInstance {
    id: String,
    arn: String,
    instance: DbInstance,
    tags: TagMap,
}

pub enum Fix {
    Class { from: String, to: String },
    PromotionTier(i32),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Class { from, to } => write!(f, "change the instance class from {from} to {to}"),
            Self::PromotionTier(t) => write!(f, "set promotion tier {t}"),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

impl AuroraInstance {
    async fn get(&self, cx: &Context) -> Result<Option<FoundInstance>, AwsError> {
        const OP: &str = "rds:DescribeDBInstances";
        let id = cx.names.db_instance(self.slot);
        let out = cx
            .clients
            .rds
            .describe_db_instances()
            .db_instance_identifier(&id)
            .send()
            .await
            .op(OP);
        let Some(out) = absent_on(out, &["DBInstanceNotFound", "DBInstanceNotFoundFault"])? else {
            return Ok(None);
        };
        let Some(instance) = out.db_instances().first() else {
            return Ok(None);
        };
        let tags = rds::tag_map(instance.tag_list());
        cx.check_ours(format!("Aurora instance {id}"), &tags)?;
        let cluster = cx.names.db_cluster();
        if instance.db_cluster_identifier() != Some(cluster.as_str()) {
            return Err(AwsError::Conflict(format!(
                "DB instance {id} belongs to cluster {}, not {cluster}",
                instance.db_cluster_identifier().unwrap_or("none")
            )));
        }
        Ok(Some(FoundInstance {
            arn: required(instance.db_instance_arn(), OP, "DBInstanceArn")?.to_owned(),
            id,
            instance: instance.clone(),
            tags,
        }))
    }

    async fn wait_available(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<FoundInstance, AwsError> {
        let id = cx.names.db_instance(self.slot);
        let progress = |m: String| step.progress(m);
        poll_until(
            format!("Aurora instance {id} to become available"),
            cx.budgets.aurora_instance,
            &progress,
            || async {
                match self.get(cx).await? {
                    Some(f) => {
                        let status = f.instance.db_instance_status().map(str::to_owned);
                        rds::availability(&format!("Aurora instance {id}"), status.as_deref(), f)
                    }
                    None => Ok(Poll::Pending("not listed yet".to_owned())),
                }
            },
        )
        .await
    }
}

#[async_trait]
impl Resource for AuroraInstance {
    type Found = FoundInstance;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "rds:db-instance"
    }

    /// CreateDBInstance meets the instance its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["DBInstanceAlreadyExists"]
    }

    fn wanted(&self, cx: &Context) -> bool {
        self.slot < cx.spec.database.instances()
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundInstance>, AwsError> {
        Ok(self.get(cx).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundInstance) -> String {
        found.id.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundInstance, AwsError> {
        const OP: &str = "rds:CreateDBInstance";
        let id = cx.names.db_instance(self.slot);
        let azs = cx.availability_zones().await?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let created = cx
            .clients
            .rds
            .create_db_instance()
            .db_instance_identifier(&id)
            .db_cluster_identifier(cx.names.db_cluster())
            .engine(DB_ENGINE)
            .db_instance_class(cx.spec.database.effective_class())
            .availability_zone(&azs[self.slot % AZ_COUNT])
            .promotion_tier(Self::promotion_tier(self.slot))
            .publicly_accessible(false)
            .auto_minor_version_upgrade(true)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(rds::rds_tags(&tags)))
            .send()
            .await
            .op(OP);
        match created {
            Ok(out) => {
                if let Some(arn) = out.db_instance().and_then(|i| i.db_instance_arn()) {
                    step.remember("instance", arn);
                }
            }
            Err(e) if e.is_code(&["DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault"]) => {}
            // The cluster's step sets the range before any instance is made,
            // so only a range removed behind payops' back gets here.
            Err(e)
                if e.is_code(&["InvalidDBClusterStateFault"])
                    && e.to_string()
                        .contains("Serverless v2 scaling configuration") =>
            {
                return Err(AwsError::Conflict(format!(
                    "{e}: cluster {} has no Serverless v2 capacity range, so AWS refuses \
                     db.serverless instances; run `payops up` again (the cluster's step sets \
                     --db-capacity first) or choose --db-capacity off",
                    cx.names.db_cluster()
                )));
            }
            Err(e) => return Err(e),
        }
        step.progress(format!("waiting for {id} (about 10 minutes on AWS)"));
        self.wait_available(cx, step).await
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundInstance,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        // Provisioned <-> Serverless v2 is a class change like any other;
        // the cluster's step (before this one) has set its range by now.
        let class = found.instance.db_instance_class().unwrap_or_default();
        let wanted = cx.spec.database.effective_class();
        if class != wanted {
            fixes.push(Fix::Class {
                from: class.to_owned(),
                to: wanted.to_owned(),
            });
        }
        let tier = Self::promotion_tier(self.slot);
        if found.instance.promotion_tier() != Some(tier) {
            fixes.push(Fix::PromotionTier(tier));
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
        step: &StepCx<'_>,
        found: &mut FoundInstance,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Class { to, .. } => {
                cx.clients
                    .rds
                    .modify_db_instance()
                    .db_instance_identifier(&found.id)
                    .db_instance_class(&to)
                    .apply_immediately(true)
                    .send()
                    .await
                    .op("rds:ModifyDBInstance")?;
                *found = self.wait_available(cx, step).await?;
            }
            Fix::PromotionTier(tier) => {
                cx.clients
                    .rds
                    .modify_db_instance()
                    .db_instance_identifier(&found.id)
                    .promotion_tier(tier)
                    .apply_immediately(true)
                    .send()
                    .await
                    .op("rds:ModifyDBInstance")?;
                *found = self.wait_available(cx, step).await?;
            }
            Fix::Tags(missing) => {
                rds::add_tags(cx, &found.arn, &missing).await?;
                found.tags.extend(missing);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundInstance) -> Record {
        Record::default().resource("instance", &found.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundInstance,
    ) -> Result<Vec<String>, AwsError> {
        if found.instance.db_instance_status() != Some("deleting") {
            // An Aurora instance has no snapshot of its own: the data is the
            // cluster's, which its own step deletes (or snapshots) last.
            let deleted = cx
                .clients
                .rds
                .delete_db_instance()
                .db_instance_identifier(&found.id)
                .send()
                .await
                .op("rds:DeleteDBInstance");
            absent_on(deleted, &["DBInstanceNotFound", "DBInstanceNotFoundFault"])?;
        }
        let progress = |m: String| step.progress(m);
        wait_until_gone(
            format!("Aurora instance {} to be deleted", found.id),
            cx.budgets.aurora_instance,
            &progress,
            &["DBInstanceNotFound", "DBInstanceNotFoundFault"],
            || async {
                cx.clients
                    .rds
                    .describe_db_instances()
                    .db_instance_identifier(&found.id)
                    .send()
                    .await
                    .op("rds:DescribeDBInstances")
            },
            |o| {
                rds::status_or_deleting(
                    o.db_instances()
                        .first()
                        .and_then(|i| i.db_instance_status()),
                )
            },
        )
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::operation::describe_availability_zones::DescribeAvailabilityZonesOutput;
    use aws_sdk_ec2::types::AvailabilityZone;
    use aws_sdk_rds::Client;
    use aws_sdk_rds::operation::create_db_instance::{
        CreateDBInstanceError, CreateDbInstanceOutput,
    };
    use aws_sdk_rds::operation::describe_db_instances::{
        DescribeDBInstancesError, DescribeDbInstancesOutput,
    };
    use aws_sdk_rds::operation::modify_db_instance::ModifyDbInstanceOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::Change;
    use crate::resources::testing;

    const STEP: &str = "aurora-instance:1";
    const ARN: &str = "arn:aws:rds:us-east-1:123456789012:db:payops-pr1-aurora-1";

    fn instance(tags: TagMap) -> DbInstance {
        DbInstance::builder()
            .db_instance_identifier("payops-pr1-aurora-1")
            .db_instance_arn(ARN)
            .db_cluster_identifier("payops-pr1-aurora")
            .db_instance_status("available")
            .db_instance_class("db.serverless")
            .promotion_tier(0)
            .set_tag_list(Some(rds::rds_tags(&tags)))
            .build()
    }

    /// Nothing at the first look, then `then` (what the lost first attempt
    /// made); the retried CreateDBInstance (no client token) meets it:
    /// `DBInstanceAlreadyExists`.
    fn retried_create(then: DbInstance) -> [Rule; 2] {
        let describe = mock!(Client::describe_db_instances)
            .sequence()
            .error(|| DescribeDBInstancesError::generic(testing::error_meta("DBInstanceNotFound")))
            .output(move || {
                DescribeDbInstancesOutput::builder()
                    .db_instances(then.clone())
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_instance).then_error(|| {
            CreateDBInstanceError::generic(testing::error_meta("DBInstanceAlreadyExists"))
        });
        [describe, create]
    }

    fn cx_with(rds: &[&Rule]) -> Context {
        let azs = mock!(aws_sdk_ec2::Client::describe_availability_zones).then_output(|| {
            let mut out = DescribeAvailabilityZonesOutput::builder();
            for az in ["us-east-1a", "us-east-1b", "us-east-1c"] {
                out = out.availability_zones(AvailabilityZone::builder().zone_name(az).build());
            }
            out.build()
        });
        let mut clients = testing::clients();
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, rds);
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&azs]);
        testing::context(clients)
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let [describe, create] = retried_create(instance(testing::our_tags(STEP)));
        let cx = cx_with(&[&describe, &create]);
        let applied = testing::ensure(&cx, STEP, AuroraInstance::new(0), &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.resources["instance"], ARN);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_conflict_with_an_instance_not_ours_is_refused() {
        let [describe, create] = retried_create(instance(TagMap::new()));
        let cx = cx_with(&[&describe, &create]);
        let err = testing::ensure(&cx, STEP, AuroraInstance::new(0), &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    fn described(i: DbInstance) -> DescribeDbInstancesOutput {
        DescribeDbInstancesOutput::builder().db_instances(i).build()
    }

    #[tokio::test(start_paused = true)]
    async fn switching_between_provisioned_and_serverless_changes_the_class_in_place() {
        for (now, capacity, wanted) in [
            ("db.r6g.large", Some("0.5-4"), "db.serverless"),
            ("db.serverless", None, "db.r6g.large"),
        ] {
            let describe = mock!(Client::describe_db_instances)
                .sequence()
                .output(move || {
                    let mut i = instance(testing::our_tags(STEP));
                    i.db_instance_class = Some(now.into());
                    described(i)
                })
                .output(move || {
                    let mut i = instance(testing::our_tags(STEP));
                    i.db_instance_class = Some(wanted.into());
                    described(i)
                })
                .repeatedly()
                .build();
            let modify = mock!(Client::modify_db_instance)
                .match_requests(move |r| {
                    r.db_instance_class() == Some(wanted) && r.apply_immediately() == Some(true)
                })
                .then_output(|| ModifyDbInstanceOutput::builder().build());
            let mut cx = cx_with(&[&describe, &modify]);
            cx.spec.database.capacity = capacity.map(|c| c.parse().unwrap());
            let applied = testing::ensure(&cx, STEP, AuroraInstance::new(0), &[])
                .await
                .unwrap();
            assert_eq!(modify.num_calls(), 1, "{now} -> {wanted}");
            let shown = format!("change the instance class from {now} to {wanted}");
            assert!(
                applied.notes.iter().any(|n| n.contains(&shown)),
                "{:?}",
                applied.notes
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn instances_are_created_serverless_with_a_capacity() {
        let describe = mock!(Client::describe_db_instances)
            .sequence()
            .error(|| DescribeDBInstancesError::generic(testing::error_meta("DBInstanceNotFound")))
            .output(|| described(instance(testing::our_tags(STEP))))
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_instance)
            .match_requests(|r| r.db_instance_class() == Some("db.serverless"))
            .then_output(|| CreateDbInstanceOutput::builder().build());
        let cx = cx_with(&[&describe, &create]);
        testing::ensure(&cx, STEP, AuroraInstance::new(0), &[])
            .await
            .unwrap();
        assert_eq!(create.num_calls(), 1);
    }

    /// AWS's answer to a db.serverless instance in a cluster without a
    /// range (cloudposse/terraform-aws-rds-cluster#181); emulators accept it.
    #[tokio::test(start_paused = true)]
    async fn aws_refusing_serverless_without_a_range_says_why_and_what_to_do() {
        let describe = mock!(Client::describe_db_instances).then_error(|| {
            DescribeDBInstancesError::generic(testing::error_meta("DBInstanceNotFound"))
        });
        let create = mock!(Client::create_db_instance).then_error(|| {
            CreateDBInstanceError::generic(
                aws_sdk_rds::error::ErrorMetadata::builder()
                    .code("InvalidDBClusterStateFault")
                    .message(
                        "Set the Serverless v2 scaling configuration on the parent DB cluster \
                         before creating a Serverless v2 DB instance.",
                    )
                    .build(),
            )
        });
        let cx = cx_with(&[&describe, &create]);
        let err = testing::ensure(&cx, STEP, AuroraInstance::new(0), &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("payops-pr1-aurora has no Serverless v2 capacity range")
                && err.contains("--db-capacity"),
            "{err}"
        );
    }
}
