//! API Gateway's account-level setting that stage logging needs.
//!
//! API Gateway writes a stage's access logs with the role named in the
//! region's account settings (`cloudwatchRoleArn`); without it, enabling
//! access logging fails ("CloudWatch Logs role ARN must be set in account
//! settings"). That setting is one per account and region, shared by every
//! API, so it is handled like other singletons: a role already set is used as
//! it is and never changed; only when none is set does payops create one
//! (`payops-apigateway-cloudwatch`, allowed to write to `/payops/*` log
//! groups only) and set it. It belongs to no env: `down` leaves both in
//! place, since other envs' stages log through them.

use serde_json::json;

use crate::aws::{AwsError, OpResult, absent_on};
use crate::tags;

use crate::resources::context::Context;
use crate::resources::sdk::iam::{retry_while_propagating, role_not_yet_usable};

/// The role payops creates when the account has none (IAM is global: one
/// role serves every region).
pub const ROLE_NAME: &str = "payops-apigateway-cloudwatch";
const POLICY_NAME: &str = "payops-access-logs";

/// The role the region's API Gateway logs with, if one is set.
pub async fn logging_role(cx: &Context) -> Result<Option<String>, AwsError> {
    let out = cx
        .clients
        .apigateway
        .get_account()
        .send()
        .await
        .op("apigateway:GetAccount")?;
    Ok(out
        .cloudwatch_role_arn()
        .filter(|a| !a.is_empty())
        .map(str::to_owned))
}

fn trust_policy(cx: &Context) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "apigateway.amazonaws.com" },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "aws:SourceAccount": cx.account_id } }
        }]
    })
    .to_string()
}

/// Writes access logs to payops' log groups, in any region (the account
/// setting is per region, the role is not).
fn policy(cx: &Context) -> String {
    let logs = |resource: &str| {
        format!(
            "arn:{}:logs:*:{}:log-group:{resource}",
            cx.partition(),
            cx.account_id
        )
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WritePayopsLogGroups",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": [logs("/payops/*"), logs("/payops/*:log-stream:*")]
            },
            {
                // API Gateway checks the destination exists by listing groups.
                "Sid": "FindLogGroups",
                "Effect": "Allow",
                "Action": ["logs:DescribeLogGroups"],
                "Resource": logs("*")
            }
        ]
    })
    .to_string()
}

/// The ARN of role `payops-apigateway-cloudwatch` if it exists (and is
/// payops': otherwise an error).
async fn existing_role(cx: &Context) -> Result<Option<String>, AwsError> {
    let got = cx
        .clients
        .iam
        .get_role()
        .role_name(ROLE_NAME)
        .send()
        .await
        .op("iam:GetRole");
    let Some(out) = absent_on(got, &["NoSuchEntity"])? else {
        return Ok(None);
    };
    let role = out.role().ok_or(AwsError::Incomplete {
        op: "iam:GetRole",
        field: "Role",
    })?;
    let ours = role
        .tags()
        .iter()
        .any(|t| t.key() == tags::MANAGED_BY && t.value() == tags::MANAGER);
    if !ours {
        return Err(AwsError::NotOurs {
            what: format!("IAM role {ROLE_NAME}"),
            owner: "it has no payops ownership tags".into(),
        });
    }
    Ok(Some(role.arn().to_owned()))
}

/// The account's logging role: the one already set, or one payops creates and
/// sets. Returns a note for the summary when it changed the account.
pub async fn ensure_logging_role(
    cx: &Context,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Option<String>, AwsError> {
    if logging_role(cx).await?.is_some() {
        return Ok(None);
    }
    let iam = &cx.clients.iam;
    let arn = match existing_role(cx).await? {
        Some(arn) => arn,
        None => {
            let role_tags = [
                (tags::MANAGED_BY, tags::MANAGER),
                ("payops:scope", "account"),
                ("Project", "payops"),
            ]
            .into_iter()
            .filter_map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .ok()
            })
            .collect();
            let created = iam
                .create_role()
                .role_name(ROLE_NAME)
                .assume_role_policy_document(trust_policy(cx))
                .description(
                    "API Gateway writes stage access logs to payops log groups (account-wide, \
                     shared by every payops env)",
                )
                .set_tags(Some(role_tags))
                .send()
                .await
                .op("iam:CreateRole");
            match created {
                Ok(created) => {
                    created
                        .role()
                        .map(|r| r.arn().to_owned())
                        .ok_or(AwsError::Incomplete {
                            op: "iam:CreateRole",
                            field: "Role",
                        })?
                }
                // Another env's first `up` in this account made it a moment
                // ago: the same role, if it is payops'.
                Err(e) if e.is_code(&["EntityAlreadyExists"]) => match existing_role(cx).await? {
                    Some(arn) => arn,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    };
    iam.put_role_policy()
        .role_name(ROLE_NAME)
        .policy_name(POLICY_NAME)
        .policy_document(policy(cx))
        .send()
        .await
        .op("iam:PutRolePolicy")?;
    // A role just created may be refused for a while: "The role ARN does not
    // have required permissions set to API Gateway".
    let propagating =
        |e: &AwsError| role_not_yet_usable(e) || e.to_string().contains("required permissions");
    retry_while_propagating(
        cx,
        "setting API Gateway's CloudWatch Logs role",
        progress,
        propagating,
        |_| async {
            cx.clients
                .apigateway
                .update_account()
                .patch_operations(
                    aws_sdk_apigateway::types::PatchOperation::builder()
                        .op(aws_sdk_apigateway::types::Op::Replace)
                        .path("/cloudwatchRoleArn")
                        .value(&arn)
                        .build(),
                )
                .send()
                .await
                .op("apigateway:UpdateAccount")
        },
    )
    .await?;
    Ok(Some(format!(
        "set API Gateway's account-wide CloudWatch Logs role to {arn} (none was set; shared by \
         every env, never removed by down)"
    )))
}

#[cfg(test)]
mod tests {
    use aws_sdk_apigateway::operation::get_account::GetAccountOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    #[tokio::test]
    async fn an_account_role_already_set_is_left_alone() {
        let account = mock!(aws_sdk_apigateway::Client::get_account).then_output(|| {
            GetAccountOutput::builder()
                .cloudwatch_role_arn("arn:aws:iam::123456789012:role/theirs")
                .build()
        });
        let mut clients = testing::clients();
        clients.apigateway = mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, [&account]);
        let cx = testing::context(clients);
        // No IAM call is mocked: any would fail the test.
        assert_eq!(ensure_logging_role(&cx, &|_| {}).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_role_payops_creates_its_shared_one_and_waits_for_iam() {
        use aws_sdk_apigateway::operation::update_account::{
            UpdateAccountError, UpdateAccountOutput,
        };
        use aws_sdk_iam::operation::{
            create_role::CreateRoleOutput, get_role::GetRoleError,
            put_role_policy::PutRolePolicyOutput,
        };
        let account = mock!(aws_sdk_apigateway::Client::get_account)
            .then_output(|| GetAccountOutput::builder().build());
        let update = mock!(aws_sdk_apigateway::Client::update_account)
            .match_requests(|r| {
                r.patch_operations()[0].path() == Some("/cloudwatchRoleArn")
                    && r.patch_operations()[0].value()
                        == Some("arn:aws:iam::123456789012:role/payops-apigateway-cloudwatch")
            })
            .sequence()
            .error(|| {
                UpdateAccountError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("BadRequestException")
                        .message(
                            "The role ARN does not have required permissions set to API Gateway",
                        )
                        .build(),
                )
            })
            .output(|| UpdateAccountOutput::builder().build())
            .build();
        let missing = mock!(aws_sdk_iam::Client::get_role)
            .then_error(|| GetRoleError::generic(testing::error_meta("NoSuchEntity")));
        let create = mock!(aws_sdk_iam::Client::create_role)
            .match_requests(|r| {
                r.role_name() == Some(ROLE_NAME)
                    && r.tags().iter().any(|t| t.key() == tags::MANAGED_BY)
                    // Shared by every env: it carries no env tag, so no env's
                    // `down` or sweep takes it.
                    && !r.tags().iter().any(|t| t.key() == tags::ENV)
                    && r.assume_role_policy_document().unwrap().contains("apigateway.amazonaws.com")
            })
            .then_output(|| {
                CreateRoleOutput::builder()
                    .role(
                        aws_sdk_iam::types::Role::builder()
                            .role_name(ROLE_NAME)
                            .role_id("r")
                            .path("/")
                            .arn("arn:aws:iam::123456789012:role/payops-apigateway-cloudwatch")
                            .create_date(aws_smithy_types::DateTime::from_secs(0))
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let policy = mock!(aws_sdk_iam::Client::put_role_policy)
            .then_output(|| PutRolePolicyOutput::builder().build());
        let mut clients = testing::clients();
        clients.apigateway =
            mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, [&account, &update]);
        clients.iam = mock_client!(
            aws_sdk_iam,
            RuleMode::MatchAny,
            [&missing, &create, &policy]
        );
        let cx = testing::context(clients);
        let note = ensure_logging_role(&cx, &|_| {}).await.unwrap().unwrap();
        assert!(note.contains("never removed by down"), "{note}");
        assert_eq!((create.num_calls(), update.num_calls()), (1, 2));
    }

    #[tokio::test]
    async fn a_role_another_env_created_a_moment_ago_is_used_if_it_is_payops() {
        use aws_sdk_apigateway::operation::update_account::UpdateAccountOutput;
        use aws_sdk_iam::operation::{
            create_role::CreateRoleError,
            get_role::{GetRoleError, GetRoleOutput},
            put_role_policy::PutRolePolicyOutput,
        };
        const ARN: &str = "arn:aws:iam::123456789012:role/payops-apigateway-cloudwatch";
        let account = mock!(aws_sdk_apigateway::Client::get_account)
            .then_output(|| GetAccountOutput::builder().build());
        let update = mock!(aws_sdk_apigateway::Client::update_account)
            .match_requests(|r| r.patch_operations()[0].value() == Some(ARN))
            .then_output(|| UpdateAccountOutput::builder().build());
        // Not there when looked for, there when created: two first `up`s raced.
        let get = mock!(aws_sdk_iam::Client::get_role)
            .sequence()
            .error(|| GetRoleError::generic(testing::error_meta("NoSuchEntity")))
            .output(|| {
                GetRoleOutput::builder()
                    .role(
                        aws_sdk_iam::types::Role::builder()
                            .role_name(ROLE_NAME)
                            .role_id("r")
                            .path("/")
                            .arn(ARN)
                            .create_date(aws_smithy_types::DateTime::from_secs(0))
                            .tags(
                                aws_sdk_iam::types::Tag::builder()
                                    .key(tags::MANAGED_BY)
                                    .value(tags::MANAGER)
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .build();
        let create = mock!(aws_sdk_iam::Client::create_role)
            .then_error(|| CreateRoleError::generic(testing::error_meta("EntityAlreadyExists")));
        let policy = mock!(aws_sdk_iam::Client::put_role_policy)
            .then_output(|| PutRolePolicyOutput::builder().build());
        let mut clients = testing::clients();
        clients.apigateway =
            mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, [&account, &update]);
        clients.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&get, &create, &policy]);
        let cx = testing::context(clients);
        assert!(ensure_logging_role(&cx, &|_| {}).await.unwrap().is_some());
        assert_eq!((get.num_calls(), update.num_calls()), (2, 1));
    }

    #[test]
    fn the_shared_role_writes_only_to_payops_log_groups() {
        let cx = testing::context(testing::clients());
        let doc: serde_json::Value = serde_json::from_str(&policy(&cx)).unwrap();
        let write = &doc["Statement"][0];
        assert_eq!(
            write["Resource"][0],
            "arn:aws:logs:*:123456789012:log-group:/payops/*"
        );
        assert!(
            !doc.to_string().contains("\"logs:*\""),
            "no wildcard action: {doc}"
        );
        let trust: serde_json::Value = serde_json::from_str(&trust_policy(&cx)).unwrap();
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"],
            "123456789012"
        );
    }
}
