//! EC2 Auto Scaling's service-linked role, `AWSServiceRoleForAutoScaling`.
//!
//! Auto Scaling launches the batch group's instances as this role, so the
//! EBS key's policy must name it, and KMS refuses a policy naming a principal
//! that does not exist (MalformedPolicyDocumentException "invalid
//! principals"; a fresh account has no such role until its first group).
//! So payops makes it before the key. It is account-wide, shared by every
//! group of every team: found by its fixed name, never tagged, and never
//! deleted (`down` leaves it, like API Gateway's logging role).

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::resource::Resource;

pub const STEP: &str = "service-linked-role:autoscaling";
const SERVICE: &str = "autoscaling.amazonaws.com";
const ROLE_NAME: &str = "AWSServiceRoleForAutoScaling";

pub struct AutoScalingServiceLinkedRole;

pub struct FoundRole {
    arn: String,
}

/// Never anything to repair: AWS owns the role's policies and trust.
pub enum Fix {}

impl std::fmt::Display for Fix {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

async fn get(cx: &Context) -> Result<Option<FoundRole>, AwsError> {
    let out = absent_on(
        cx.clients
            .iam
            .get_role()
            .role_name(ROLE_NAME)
            .send()
            .await
            .op("iam:GetRole"),
        &["NoSuchEntity"],
    )?;
    Ok(out.and_then(|o| {
        o.role().map(|r| FoundRole {
            arn: r.arn().to_owned(),
        })
    }))
}

#[async_trait]
impl Resource for AutoScalingServiceLinkedRole {
    type Found = FoundRole;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "iam:service-linked-role"
    }

    /// Only the batch tier needs it (and only for the EBS key's policy).
    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.batch.on
    }

    /// Shared by the account: `down` leaves it (see `delete`).
    fn kept_by_down(&self) -> bool {
        true
    }

    /// A role that exists already (another group's launch made it, or a
    /// retried create): "has been taken" on AWS, EntityAlreadyExists on moto.
    fn already_exists(&self) -> &'static [&'static str] {
        &["InvalidInput", "EntityAlreadyExists"]
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRole>, AwsError> {
        // Without the tier the role is none of the env's business (another
        // env's or team's group may use it): not found, so never "removed".
        if !cx.spec.batch.on {
            return Ok(Vec::new());
        }
        Ok(get(cx).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundRole) -> String {
        found.arn.clone()
    }

    async fn create(&self, cx: &Context, _step: &StepCx<'_>) -> Result<FoundRole, AwsError> {
        let out = cx
            .clients
            .iam
            .create_service_linked_role()
            .aws_service_name(SERVICE)
            .send()
            .await
            .op("iam:CreateServiceLinkedRole")?;
        match out.role() {
            Some(r) => Ok(FoundRole {
                arn: r.arn().to_owned(),
            }),
            None => get(cx).await?.ok_or_else(|| {
                AwsError::Conflict(format!("{ROLE_NAME} was created but cannot be read"))
            }),
        }
    }

    async fn diff(
        &self,
        _cx: &Context,
        _step: &StepCx<'_>,
        _found: &FoundRole,
    ) -> Result<Vec<Fix>, AwsError> {
        Ok(Vec::new())
    }

    async fn fix(
        &self,
        _cx: &Context,
        _step: &StepCx<'_>,
        _found: &mut FoundRole,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {}
    }

    fn record(&self, _cx: &Context, found: &FoundRole) -> Record {
        Record::default().output("AutoScalingServiceLinkedRoleArn", &found.arn)
    }

    /// Account-wide and shared: left in place.
    async fn delete(
        &self,
        _cx: &Context,
        _step: &StepCx<'_>,
        _found: FoundRole,
    ) -> Result<Vec<String>, AwsError> {
        Ok(vec![format!(
            "{ROLE_NAME} left in place: it is the account's, shared by every Auto Scaling group"
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Change;
    use crate::resources::testing;
    use aws_sdk_iam::operation::get_role::GetRoleError;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn role() -> aws_sdk_iam::types::Role {
        aws_sdk_iam::types::Role::builder()
            .role_name(ROLE_NAME)
            .path("/aws-service-role/autoscaling.amazonaws.com/")
            .role_id("AROA")
            .arn(format!(
                "arn:aws:iam::{}:role/aws-service-role/{SERVICE}/{ROLE_NAME}",
                testing::ACCOUNT
            ))
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    }

    fn batch_on(clients: crate::aws::Clients) -> Context {
        let mut cx = testing::context(clients);
        cx.spec.batch.on = true;
        cx
    }

    #[tokio::test]
    async fn a_missing_role_is_created_for_auto_scaling_and_its_arn_is_what_the_key_names() {
        let missing = mock!(aws_sdk_iam::Client::get_role)
            .then_error(|| GetRoleError::generic(testing::error_meta("NoSuchEntity")));
        let create = mock!(aws_sdk_iam::Client::create_service_linked_role)
            .match_requests(|r| r.aws_service_name() == Some(SERVICE))
            .then_output(|| {
                aws_sdk_iam::operation::create_service_linked_role::CreateServiceLinkedRoleOutput::builder()
                    .role(role())
                    .build()
            });
        let mut clients = testing::clients();
        clients.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&missing, &create]);
        let cx = batch_on(clients);
        let applied = testing::ensure(&cx, STEP, AutoScalingServiceLinkedRole, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        assert_eq!(
            applied.record.outputs["AutoScalingServiceLinkedRoleArn"],
            crate::resources::security::kms_key::autoscaling_slr_arn(&cx)
        );
    }

    #[tokio::test]
    async fn an_existing_role_is_used_and_down_leaves_it() {
        let found = mock!(aws_sdk_iam::Client::get_role).then_output(|| {
            aws_sdk_iam::operation::get_role::GetRoleOutput::builder()
                .role(role())
                .build()
        });
        let mut clients = testing::clients();
        clients.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&found]);
        let cx = batch_on(clients);
        let applied = testing::ensure(&cx, STEP, AutoScalingServiceLinkedRole, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        // No DeleteServiceLinkedRole is mocked: a call would fail the test.
        testing::destroy(&cx, STEP, AutoScalingServiceLinkedRole)
            .await
            .unwrap();
    }
}
