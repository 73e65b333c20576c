//! API Gateway's account-level setting that stage logging needs.
//!
//! API Gateway writes a stage's logs with the role named in the region's
//! account settings (`cloudwatchRoleArn`); without it, enabling access
//! logging fails ("CloudWatch Logs role ARN must be set in account
//! settings"). That setting is one per account and region, shared by every
//! API of every team, so it is handled like other singletons: a role already
//! set by someone else is used as it is and never changed; only when none is
//! set does payops create one (`payops-apigateway-cloudwatch`) and set it.
//!
//! The role gets exactly what AWS documents for it ("Permissions for
//! CloudWatch logging", API Gateway developer guide): trusted by
//! `apigateway.amazonaws.com`, with the managed policy
//! `AmazonAPIGatewayPushToCloudWatchLogs`. Narrower is wrong here: when the
//! setting is first made API Gateway validates the role by creating
//! `/aws/apigateway/welcome` (a role without `logs:CreateLogGroup` is refused:
//! "The role ARN does not have required permissions set to API Gateway"), and
//! the role also serves every other API's execution logs in the region. A
//! role of payops' made by an older version (payops' groups only, an
//! `aws:SourceAccount` trust condition AWS does not document for this role)
//! is brought to that. It belongs to no env: `down` leaves both in place.

use serde_json::json;

use crate::aws::{AwsError, OpResult, absent_on, policy};
use crate::tags;

use crate::resources::context::Context;
use crate::resources::sdk::iam::{retry_while_propagating, role_not_yet_usable};

/// The role payops creates when the account has none (IAM is global: one
/// role serves every region).
pub const ROLE_NAME: &str = "payops-apigateway-cloudwatch";
/// The inline policy older versions gave the role instead of AWS's.
const OLD_POLICY_NAME: &str = "payops-access-logs";
/// AWS's managed policy for API Gateway's CloudWatch role.
const MANAGED_POLICY: &str = "service-role/AmazonAPIGatewayPushToCloudWatchLogs";

fn managed_policy_arn(cx: &Context) -> String {
    format!("arn:{}:iam::aws:policy/{MANAGED_POLICY}", cx.partition())
}

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

/// The trust AWS documents for the role.
fn trust_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "apigateway.amazonaws.com" },
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

/// Role `payops-apigateway-cloudwatch` (ARN and trust document) if it exists
/// and is payops' (otherwise an error).
async fn existing_role(cx: &Context) -> Result<Option<(String, String)>, AwsError> {
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
    Ok(Some((
        role.arn().to_owned(),
        role.assume_role_policy_document()
            .unwrap_or_default()
            .to_owned(),
    )))
}

/// Brings payops' role to AWS's documented trust and managed policy; the
/// changes made, for the summary (none on a role already right: reads only).
async fn grant_documented_permissions(
    cx: &Context,
    trust: &str,
) -> Result<Vec<&'static str>, AwsError> {
    let iam = &cx.clients.iam;
    let mut changed = Vec::new();
    if !trust.is_empty() && !policy::same(trust, &trust_policy()) {
        iam.update_assume_role_policy()
            .role_name(ROLE_NAME)
            .policy_document(trust_policy())
            .send()
            .await
            .op("iam:UpdateAssumeRolePolicy")?;
        changed.push("documented trust");
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(ROLE_NAME)
        .send()
        .await
        .op("iam:ListAttachedRolePolicies")?;
    let managed = managed_policy_arn(cx);
    if !attached
        .attached_policies()
        .iter()
        .any(|p| p.policy_arn() == Some(managed.as_str()))
    {
        iam.attach_role_policy()
            .role_name(ROLE_NAME)
            .policy_arn(&managed)
            .send()
            .await
            .op("iam:AttachRolePolicy")?;
        changed.push("AmazonAPIGatewayPushToCloudWatchLogs");
    }
    let inline = iam
        .list_role_policies()
        .role_name(ROLE_NAME)
        .send()
        .await
        .op("iam:ListRolePolicies")?;
    if inline.policy_names().iter().any(|n| n == OLD_POLICY_NAME) {
        let deleted = iam
            .delete_role_policy()
            .role_name(ROLE_NAME)
            .policy_name(OLD_POLICY_NAME)
            .send()
            .await
            .op("iam:DeleteRolePolicy");
        absent_on(deleted, &["NoSuchEntity"])?;
        changed.push("no narrower inline policy");
    }
    Ok(changed)
}

/// The account's logging role: the one already set, or one payops creates and
/// sets. Returns a note for the summary when it changed the account.
pub async fn ensure_logging_role(
    cx: &Context,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Option<String>, AwsError> {
    if let Some(set) = logging_role(cx).await? {
        // Someone else's role is theirs; payops' own, set by an older
        // version, gets the permissions AWS documents.
        if set.rsplit('/').next() != Some(ROLE_NAME) {
            return Ok(None);
        }
        let Some((_, trust)) = existing_role(cx).await? else {
            return Ok(None);
        };
        let changed = grant_documented_permissions(cx, &trust).await?;
        return Ok((!changed.is_empty()).then(|| {
            format!(
                "gave API Gateway's CloudWatch Logs role {ROLE_NAME} what AWS documents for it: {}",
                changed.join(", ")
            )
        }));
    }
    let iam = &cx.clients.iam;
    let (arn, trust) = match existing_role(cx).await? {
        Some(found) => found,
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
                .assume_role_policy_document(trust_policy())
                .description(
                    "API Gateway writes stage access logs to payops log groups (account-wide, \
                     shared by every payops env)",
                )
                .set_tags(Some(role_tags))
                .send()
                .await
                .op("iam:CreateRole");
            match created {
                // Made with the documented trust: nothing to compare.
                Ok(created) => (
                    created
                        .role()
                        .map(|r| r.arn().to_owned())
                        .ok_or(AwsError::Incomplete {
                            op: "iam:CreateRole",
                            field: "Role",
                        })?,
                    String::new(),
                ),
                // Another env's first `up` in this account made it a moment
                // ago: the same role, if it is payops'.
                Err(e) if e.is_code(&["EntityAlreadyExists"]) => match existing_role(cx).await? {
                    Some(found) => found,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    };
    grant_documented_permissions(cx, &trust).await?;
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
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

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
        use aws_sdk_iam::operation::{create_role::CreateRoleOutput, get_role::GetRoleError};
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
        let [listed, attach, inline] = documented_permissions_granted();
        let mut clients = testing::clients();
        clients.apigateway =
            mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, [&account, &update]);
        clients.iam = mock_client!(
            aws_sdk_iam,
            RuleMode::MatchAny,
            [&missing, &create, &listed, &attach, &inline]
        );
        let cx = testing::context(clients);
        let note = ensure_logging_role(&cx, &|_| {}).await.unwrap().unwrap();
        assert!(note.contains("never removed by down"), "{note}");
        assert_eq!((create.num_calls(), update.num_calls()), (1, 2));
        assert_eq!(attach.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_role_another_env_created_a_moment_ago_is_used_if_it_is_payops() {
        use aws_sdk_apigateway::operation::update_account::UpdateAccountOutput;
        use aws_sdk_iam::operation::{
            create_role::CreateRoleError,
            get_role::{GetRoleError, GetRoleOutput},
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
        let [listed, attach, inline] = documented_permissions_granted();
        let mut clients = testing::clients();
        clients.apigateway =
            mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, [&account, &update]);
        clients.iam = mock_client!(
            aws_sdk_iam,
            RuleMode::MatchAny,
            [&get, &create, &listed, &attach, &inline]
        );
        let cx = testing::context(clients);
        assert!(ensure_logging_role(&cx, &|_| {}).await.unwrap().is_some());
        assert_eq!((get.num_calls(), update.num_calls()), (2, 1));
    }

    /// IAM answers for a role with no managed policy and no inline one yet,
    /// and AttachRolePolicy of AWS's managed policy.
    fn documented_permissions_granted() -> [Rule; 3] {
        use aws_sdk_iam::operation::{
            attach_role_policy::AttachRolePolicyOutput,
            list_attached_role_policies::ListAttachedRolePoliciesOutput,
            list_role_policies::ListRolePoliciesOutput,
        };
        [
            mock!(aws_sdk_iam::Client::list_attached_role_policies)
                .then_output(|| ListAttachedRolePoliciesOutput::builder().build()),
            mock!(aws_sdk_iam::Client::attach_role_policy)
                .match_requests(|r| {
                    r.role_name() == Some(ROLE_NAME)
                        && r.policy_arn()
                            == Some(
                                "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
                            )
                })
                .then_output(|| AttachRolePolicyOutput::builder().build()),
            mock!(aws_sdk_iam::Client::list_role_policies).then_output(|| {
                ListRolePoliciesOutput::builder()
                    .set_policy_names(Some(vec![]))
                    .build()
                    .unwrap()
            }),
        ]
    }

    #[test]
    fn the_role_is_trusted_as_aws_documents_with_no_undocumented_condition() {
        let trust: serde_json::Value = serde_json::from_str(&trust_policy()).unwrap();
        let statement = &trust["Statement"][0];
        assert_eq!(
            statement["Principal"]["Service"],
            "apigateway.amazonaws.com"
        );
        assert_eq!(statement["Action"], "sts:AssumeRole");
        assert!(statement.get("Condition").is_none(), "{trust}");
    }

    #[tokio::test]
    async fn payops_role_set_by_an_older_version_gets_the_documented_permissions() {
        use aws_sdk_iam::operation::{
            delete_role_policy::DeleteRolePolicyOutput, get_role::GetRoleOutput,
            list_role_policies::ListRolePoliciesOutput,
            update_assume_role_policy::UpdateAssumeRolePolicyOutput,
        };
        const ARN: &str = "arn:aws:iam::123456789012:role/payops-apigateway-cloudwatch";
        let account = mock!(aws_sdk_apigateway::Client::get_account)
            .then_output(|| GetAccountOutput::builder().cloudwatch_role_arn(ARN).build());
        // The old role: a SourceAccount condition, payops' groups only.
        let get = mock!(aws_sdk_iam::Client::get_role).then_output(|| {
            GetRoleOutput::builder()
                .role(
                    aws_sdk_iam::types::Role::builder()
                        .role_name(ROLE_NAME)
                        .role_id("r")
                        .path("/")
                        .arn(ARN)
                        .create_date(aws_smithy_types::DateTime::from_secs(0))
                        .assume_role_policy_document(
                            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"apigateway.amazonaws.com"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"aws:SourceAccount":"123456789012"}}}]}"#,
                        )
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
        });
        let trust = mock!(aws_sdk_iam::Client::update_assume_role_policy)
            .match_requests(|r| !r.policy_document().unwrap().contains("Condition"))
            .then_output(|| UpdateAssumeRolePolicyOutput::builder().build());
        let [listed, attach, _] = documented_permissions_granted();
        let old_inline = mock!(aws_sdk_iam::Client::list_role_policies).then_output(|| {
            ListRolePoliciesOutput::builder()
                .policy_names("payops-access-logs")
                .build()
                .unwrap()
        });
        let delete = mock!(aws_sdk_iam::Client::delete_role_policy)
            .match_requests(|r| r.policy_name() == Some("payops-access-logs"))
            .then_output(|| DeleteRolePolicyOutput::builder().build());
        let mut clients = testing::clients();
        clients.apigateway = mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, [&account]);
        clients.iam = mock_client!(
            aws_sdk_iam,
            RuleMode::MatchAny,
            [&get, &trust, &listed, &attach, &old_inline, &delete]
        );
        let cx = testing::context(clients);
        let note = ensure_logging_role(&cx, &|_| {}).await.unwrap().unwrap();
        assert!(
            note.contains("AmazonAPIGatewayPushToCloudWatchLogs"),
            "{note}"
        );
        assert_eq!(
            (trust.num_calls(), attach.num_calls(), delete.num_calls()),
            (1, 1, 1)
        );
    }
}
