//! The env's security groups. Their rules live in the `security-group-rules`
//! step: the groups reference each other, so all of them must exist before
//! any rule, and on teardown every cross-reference must be revoked before
//! any group can be deleted.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, SecurityGroup as Ec2Group};

use crate::aws::{AwsError, OpResult, required};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::model::SgRole;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;

/// Fixed at creation (AWS cannot change a group's description).
fn description(role: SgRole) -> &'static str {
    match role {
        SgRole::Alb => "payops internal ALB: HTTPS from the NLB only",
        SgRole::Nlb => "payops internal NLB: HTTPS from the API Gateway VPC link",
        SgRole::Lambda => "payops Lambda functions: HTTPS out, PostgreSQL to the database",
        SgRole::Database => "payops Aurora: PostgreSQL from the Lambda functions only",
        SgRole::Proxy => "payops RDS Proxy: PostgreSQL from the Lambda functions, to Aurora only",
        SgRole::Migration => {
            "payops schema migration Lambda: PostgreSQL to the RDS Proxy, HTTPS to Secrets Manager"
        }
        // Retired: never created again (retired_security_group.rs removes it).
        SgRole::Rotation => "payops secret rotation Lambda (retired)",
        SgRole::Batch => "payops batch instances: no inbound, HTTPS out (SSM, CloudWatch, S3)",
    }
}

pub struct SecurityGroup {
    role: SgRole,
}

impl SecurityGroup {
    pub fn new(role: SgRole) -> Self {
        Self { role }
    }

    fn name(&self, cx: &Context) -> String {
        cx.names.resource(self.role.as_str())
    }
}

pub struct FoundGroup {
    id: String,
    tags: TagMap,
}

pub struct TagFix(TagMap);

impl fmt::Display for TagFix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::tags::describe_tag_fix(&self.0))
    }
}

fn found(g: &Ec2Group) -> Option<FoundGroup> {
    Some(FoundGroup {
        id: g.group_id()?.to_owned(),
        tags: ec2::tag_map(g.tags()),
    })
}

#[async_trait]
impl Resource for SecurityGroup {
    type Found = FoundGroup;
    type Fix = TagFix;

    fn kind(&self) -> &'static str {
        "ec2:security-group"
    }

    /// The batch tier's group only with the tier (`--batch off` removes it).
    fn wanted(&self, cx: &Context) -> bool {
        self.role != SgRole::Batch || cx.spec.batch.on
    }

    /// CreateSecurityGroup meets the group its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["InvalidGroup.Duplicate"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundGroup>, AwsError> {
        ec2::find_owned!(
            cx,
            step,
            describe_security_groups,
            "ec2:DescribeSecurityGroups",
            security_groups,
            found
        )
    }

    fn describe(&self, g: &FoundGroup) -> String {
        g.id.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundGroup, AwsError> {
        let out = cx
            .clients
            .ec2
            .create_security_group()
            .group_name(self.name(cx))
            .description(description(self.role))
            .vpc_id(step.output("vpc", "VpcId")?)
            .tag_specifications(ec2::tag_spec(
                cx,
                ResourceType::SecurityGroup,
                step.id().as_str(),
                &self.name(cx),
            ))
            .send()
            .await
            .op("ec2:CreateSecurityGroup")?;
        let id = required(out.group_id(), "ec2:CreateSecurityGroup", "GroupId")?;
        step.remember("security_group", id);
        Ok(FoundGroup {
            id: id.to_owned(),
            tags: ec2::desired_tags(cx, step.id().as_str(), &self.name(cx)),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        g: &FoundGroup,
    ) -> Result<Vec<TagFix>, AwsError> {
        let missing = ec2::missing_tags(cx, step.id().as_str(), &self.name(cx), &g.tags);
        Ok(if missing.is_empty() {
            Vec::new()
        } else {
            vec![TagFix(missing)]
        })
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        g: &mut FoundGroup,
        fix: TagFix,
    ) -> Result<(), AwsError> {
        ec2::add_tags(cx, &g.id, &fix.0).await
    }

    fn record(&self, _cx: &Context, g: &FoundGroup) -> Record {
        Record::default()
            .resource("security_group", &g.id)
            .output(self.role.output_key(), &g.id)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        g: FoundGroup,
    ) -> Result<Vec<String>, AwsError> {
        // Lambda's hyperplane ENIs keep the group in use for up to 45 minutes
        // after the functions are deleted.
        ec2::delete_patiently(
            cx,
            step,
            &format!("deleting {}", g.id),
            &["DependencyViolation", "InvalidGroup.InUse"],
            &["InvalidGroup.NotFound"],
            || async {
                cx.clients
                    .ec2
                    .delete_security_group()
                    .group_id(&g.id)
                    .send()
                    .await
                    .op("ec2:DeleteSecurityGroup")
            },
        )
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::delete_security_group::{
        DeleteSecurityGroupError, DeleteSecurityGroupOutput,
    };
    use aws_sdk_ec2::operation::{
        create_security_group::CreateSecurityGroupOutput,
        describe_security_groups::DescribeSecurityGroupsOutput,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;

    fn group() -> Ec2Group {
        let mut tags = testing::ec2_tags("security-group:database");
        tags.retain(|t| t.key() != Some("Name"));
        tags.push(
            aws_sdk_ec2::types::Tag::builder()
                .key("Name")
                .value("payops-pr1-database")
                .build(),
        );
        Ec2Group::builder()
            .group_id("sg-db")
            .set_tags(Some(tags))
            .build()
    }

    #[tokio::test]
    async fn creates_a_named_tagged_group_in_the_env_vpc() {
        let none = mock!(Client::describe_security_groups)
            .then_output(|| DescribeSecurityGroupsOutput::builder().build());
        let create = mock!(Client::create_security_group)
            .match_requests(|r| {
                r.group_name() == Some("payops-pr1-database")
                    && r.vpc_id() == Some("vpc-1")
                    && r.tag_specifications()[0]
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some("payops:env"))
            })
            .then_output(|| {
                CreateSecurityGroupOutput::builder()
                    .group_id("sg-db")
                    .build()
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&none, &create]);
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "security-group:database",
            SecurityGroup::new(SgRole::Database),
            &[("vpc", Record::default().output("VpcId", "vpc-1"))],
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["DatabaseSecurityGroupId"], "sg-db");
    }

    /// Nothing at the first look; `then` at the next (what the lost
    /// CreateSecurityGroup made), and a CreateSecurityGroup whose retry
    /// meets it: EC2 answers `InvalidGroup.Duplicate` (the group name is
    /// unique per VPC and the call takes no client token).
    fn retried_create(then: Ec2Group) -> [aws_smithy_mocks::Rule; 2] {
        let describe = mock!(Client::describe_security_groups)
            .sequence()
            .output(|| DescribeSecurityGroupsOutput::builder().build())
            .output(move || {
                DescribeSecurityGroupsOutput::builder()
                    .security_groups(then.clone())
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_security_group).then_error(|| {
            aws_sdk_ec2::operation::create_security_group::CreateSecurityGroupError::generic(
                testing::error_meta("InvalidGroup.Duplicate"),
            )
        });
        [describe, create]
    }

    async fn ensure_after_retry(then: Ec2Group) -> Result<crate::engine::Applied, String> {
        let [describe, create] = retried_create(then);
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &create]);
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "security-group:database",
            SecurityGroup::new(SgRole::Database),
            &[("vpc", Record::default().output("VpcId", "vpc-1"))],
        )
        .await
        .map_err(|e| e.to_string());
        assert_eq!(create.num_calls(), 1);
        applied
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let applied = ensure_after_retry(group()).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["DatabaseSecurityGroupId"], "sg-db");
    }

    #[tokio::test]
    async fn a_duplicate_group_that_is_not_ours_is_the_error_it_was() {
        let mut foreign = group();
        foreign.tags = None;
        let err = ensure_after_retry(foreign).await.unwrap_err();
        assert!(err.contains("InvalidGroup.Duplicate"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn deletion_waits_out_enis_still_using_the_group() {
        let found = mock!(Client::describe_security_groups).then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .security_groups(group())
                .build()
        });
        let delete = mock!(Client::delete_security_group)
            .sequence()
            .error(|| DeleteSecurityGroupError::generic(testing::error_meta("DependencyViolation")))
            .times(3)
            .output(|| DeleteSecurityGroupOutput::builder().build())
            .build();
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &delete]);
        let cx = testing::context(clients);
        let removed = testing::destroy(
            &cx,
            "security-group:database",
            SecurityGroup::new(SgRole::Database),
        )
        .await
        .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 4);
    }
}
