//! Rotation of the generated master secret: Secrets Manager calls payops'
//! rotation function (lambda/secret_rotation.py) every 30 days. The function
//! may be invoked by Secrets Manager for this secret only.
//!
//! Rotation is configured without rotating at once (the password was just
//! generated). Only a secret payops generated is rotated: an operator's
//! `--db-secret-arn` is theirs to rotate.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_secretsmanager::types::RotationRulesType;

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::spec::DbSecret;

use crate::resources::context::Context;
use crate::resources::model::Function;
use crate::resources::resource::Resource;
use crate::resources::sdk::lambda;

pub const ROTATION_DAYS: i64 = 30;
const PRINCIPAL: &str = "secretsmanager.amazonaws.com";
const STATEMENT_ID: &str = "SecretsManagerRotatesTheMasterSecret";
const SECRET_INPUT: (&str, &str) = ("secret:db-master", "DbSecretArn");

pub struct SecretRotation;

pub struct FoundRotation {
    secret: String,
    function: Option<String>,
    days: Option<i64>,
}

pub enum Fix {
    Schedule,
    Permission,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Schedule => write!(
                f,
                "rotate with the env's rotation function every {ROTATION_DAYS} days"
            ),
            Self::Permission => {
                f.write_str("let Secrets Manager invoke the rotation function for this secret")
            }
        }
    }
}

fn function_arn<'a>(step: &'a StepCx<'_>) -> Result<&'a str, AwsError> {
    let f = Function::Rotation;
    Ok(step.output(&f.step_id(), &f.arn_output())?)
}

/// Whether a function policy lets Secrets Manager invoke it for `secret`.
#[cfg(test)]
fn permits(policy: &str, secret: &str) -> bool {
    crate::aws::policy::grants_service(policy, STATEMENT_ID, PRINCIPAL, secret)
}

impl SecretRotation {
    async fn permission_ok(&self, cx: &Context, secret: &str) -> Result<bool, AwsError> {
        let function = Function::Rotation.name(cx);
        lambda::grants(cx, &function, None, STATEMENT_ID, PRINCIPAL, secret).await
    }

    async fn permit(&self, cx: &Context, secret: &str) -> Result<(), AwsError> {
        let name = Function::Rotation.name(cx);
        let removed = cx
            .clients
            .lambda
            .remove_permission()
            .function_name(&name)
            .statement_id(STATEMENT_ID)
            .send()
            .await
            .op("lambda:RemovePermission");
        absent_on(removed, &["ResourceNotFoundException"])?;
        let added = cx
            .clients
            .lambda
            .add_permission()
            .function_name(&name)
            .statement_id(STATEMENT_ID)
            .action("lambda:InvokeFunction")
            .principal(PRINCIPAL)
            .source_arn(secret)
            .source_account(&cx.account_id)
            .send()
            .await
            .op("lambda:AddPermission");
        match added {
            Ok(_) => Ok(()),
            // The SDK's retry of an AddPermission whose answer was lost meets
            // the statement its first attempt added: "The statement id ...
            // provided already exists". Within `create` the step's own
            // look-again cannot help (rotation is not on yet, so `find`
            // sees nothing): the policy says whether it is the one wanted.
            Err(e)
                if e.is_code(&["ResourceConflictException"])
                    && self.permission_ok(cx, secret).await? =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn schedule(&self, cx: &Context, secret: &str, function: &str) -> Result<(), AwsError> {
        cx.clients
            .secrets
            .rotate_secret()
            .secret_id(secret)
            .rotation_lambda_arn(function)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(ROTATION_DAYS)
                    .build(),
            )
            // The password was generated moments ago; the first rotation
            // comes on schedule.
            .rotate_immediately(false)
            .send()
            .await
            .op("secretsmanager:RotateSecret")?;
        Ok(())
    }
}

#[async_trait]
impl Resource for SecretRotation {
    type Found = FoundRotation;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "secretsmanager:rotation"
    }

    /// AddPermission meets the statement its lost first attempt added (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["ResourceConflictException"]
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.db_secret == DbSecret::Generated
    }

    /// The generated secret's rotation, by the secret's name (it must be
    /// found on `down` too, without the secret step's record).
    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRotation>, AwsError> {
        const OP: &str = "secretsmanager:DescribeSecret";
        let out = cx
            .clients
            .secrets
            .describe_secret()
            .secret_id(cx.names.db_secret())
            .send()
            .await
            .op(OP);
        let Some(out) = absent_on(out, &["ResourceNotFoundException"])? else {
            return Ok(Vec::new());
        };
        let tags = crate::tags::to_map(out.tags(), |t| (t.key(), t.value()));
        if !cx.is_ours(&tags)
            || out.deleted_date().is_some()
            || out.rotation_enabled() != Some(true)
        {
            return Ok(Vec::new());
        }
        Ok(vec![FoundRotation {
            secret: required(out.arn(), OP, "ARN")?.to_owned(),
            function: out.rotation_lambda_arn().map(str::to_owned),
            days: out
                .rotation_rules()
                .and_then(RotationRulesType::automatically_after_days),
        }])
    }

    fn describe(&self, found: &FoundRotation) -> String {
        format!("rotation of {}", found.secret)
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundRotation, AwsError> {
        let secret = step.output(SECRET_INPUT.0, SECRET_INPUT.1)?.to_owned();
        let function = function_arn(step)?.to_owned();
        self.permit(cx, &secret).await?;
        self.schedule(cx, &secret, &function).await?;
        Ok(FoundRotation {
            secret,
            function: Some(function),
            days: Some(ROTATION_DAYS),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundRotation,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        if found.function.as_deref() != Some(function_arn(step)?)
            || found.days != Some(ROTATION_DAYS)
        {
            fixes.push(Fix::Schedule);
        }
        if !self.permission_ok(cx, &found.secret).await? {
            fixes.push(Fix::Permission);
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundRotation,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Schedule => {
                let function = function_arn(step)?.to_owned();
                self.schedule(cx, &found.secret, &function).await?;
                found.function = Some(function);
                found.days = Some(ROTATION_DAYS);
            }
            Fix::Permission => self.permit(cx, &found.secret).await?,
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundRotation) -> Record {
        Record::default()
            .resource("secret", &found.secret)
            .output("DbSecretRotationDays", ROTATION_DAYS.to_string())
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundRotation,
    ) -> Result<Vec<String>, AwsError> {
        let cancelled = cx
            .clients
            .secrets
            .cancel_rotate_secret()
            .secret_id(&found.secret)
            .send()
            .await
            .op("secretsmanager:CancelRotateSecret");
        absent_on(cancelled, &["ResourceNotFoundException"])?;
        Ok(vec![format!("turned off rotation of {}", found.secret)])
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_lambda::operation::{
        add_permission::AddPermissionError, get_policy::GetPolicyOutput,
        remove_permission::RemovePermissionError,
    };
    use aws_sdk_secretsmanager::operation::{
        describe_secret::DescribeSecretOutput, rotate_secret::RotateSecretOutput,
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    const SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:payops/pr1/db-master-AbCdEf";

    fn policy(source: &str, principal: &str) -> String {
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": STATEMENT_ID,
                "Effect": "Allow",
                "Principal": {"Service": principal},
                "Action": "lambda:InvokeFunction",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-secret-rotation",
                "Condition": {"ArnLike": {"AWS:SourceArn": source}}
            }]
        })
        .to_string()
    }

    const FUNCTION: &str =
        "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-secret-rotation";

    /// The secret without rotation, the statement's removal answered as
    /// nothing to remove, and an AddPermission whose retry meets the
    /// statement its lost first attempt added: `ResourceConflictException`.
    /// GetPolicy then answers `held`.
    fn context_after_retry(held: String) -> (crate::resources::context::Context, [Rule; 2]) {
        let describe = mock!(aws_sdk_secretsmanager::Client::describe_secret).then_output(|| {
            DescribeSecretOutput::builder()
                .arn(SECRET)
                .set_tags(Some(crate::resources::sdk::secrets::tags(
                    &testing::our_tags("secret:db-master"),
                )))
                .build()
        });
        let rotate = mock!(aws_sdk_secretsmanager::Client::rotate_secret)
            .match_requests(|r| r.rotation_lambda_arn() == Some(FUNCTION))
            .then_output(|| RotateSecretOutput::builder().build());
        let remove = mock!(aws_sdk_lambda::Client::remove_permission).then_error(|| {
            RemovePermissionError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let add = mock!(aws_sdk_lambda::Client::add_permission).then_error(|| {
            AddPermissionError::generic(testing::error_meta("ResourceConflictException"))
        });
        let get = mock!(aws_sdk_lambda::Client::get_policy)
            .then_output(move || GetPolicyOutput::builder().policy(&held).build());
        let mut clients = testing::clients();
        clients.secrets = mock_client!(
            aws_sdk_secretsmanager,
            RuleMode::MatchAny,
            [&describe, &rotate]
        );
        clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&remove, &add, &get]);
        (testing::context(clients), [add, rotate])
    }

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (SECRET_INPUT.0, SECRET_INPUT.1, SECRET),
            (
                "lambda-function:secret-rotation",
                "RotationFunctionArn",
                FUNCTION,
            ),
        ])
    }

    #[tokio::test]
    async fn a_permission_retried_after_a_lost_answer_adopts_the_statement_it_added() {
        let (cx, [add, rotate]) = context_after_retry(policy(SECRET, PRINCIPAL));
        let applied = testing::ensure(&cx, "secret-rotation", SecretRotation, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, crate::engine::Change::Created);
        assert_eq!((add.num_calls(), rotate.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_permission_conflict_over_a_statement_not_the_wanted_one_is_an_error() {
        let other = policy(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-x",
            PRINCIPAL,
        );
        let (cx, [_, rotate]) = context_after_retry(other);
        let err = testing::ensure(&cx, "secret-rotation", SecretRotation, &inputs())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("ResourceConflictException"),
            "{err}"
        );
        assert_eq!(rotate.num_calls(), 0);
    }

    #[test]
    fn only_secrets_manager_for_this_secret_may_invoke_the_rotation_function() {
        assert!(permits(&policy(SECRET, PRINCIPAL), SECRET));
        assert!(!permits(
            &policy(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-x",
                PRINCIPAL
            ),
            SECRET
        ));
        assert!(!permits(&policy(SECRET, "lambda.amazonaws.com"), SECRET));
        assert!(!permits("{}", SECRET));
    }
}
