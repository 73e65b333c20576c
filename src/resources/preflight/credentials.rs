//! Credentials: whom AWS takes payops for (STS GetCallerIdentity), and in
//! which region it will work. Everything else needs this first.

use crate::aws::{Clients, OpResult};

use super::Check;

pub const NAME: &str = "credentials";

pub async fn check(clients: &Clients, region: &str) -> Check {
    match clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .op("sts:GetCallerIdentity")
    {
        Ok(id) => Check::ok(
            NAME,
            format!(
                "account {} as {}, region {region}",
                id.account().unwrap_or("?"),
                id.arn().unwrap_or("?")
            ),
        ),
        Err(e) => Check::problem(
            NAME,
            format!("AWS did not accept the credentials in {region}: {e}"),
            "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), check --region, \
             or --endpoint-url for an emulator",
        ),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sts::Client;
    use aws_sdk_sts::operation::get_caller_identity::{
        GetCallerIdentityError, GetCallerIdentityOutput,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::preflight::Status;
    use crate::resources::testing;

    #[tokio::test]
    async fn names_the_account_and_identity_or_says_how_to_give_credentials() {
        let ok = mock!(Client::get_caller_identity).then_output(|| {
            GetCallerIdentityOutput::builder()
                .account("123456789012")
                .arn("arn:aws:iam::123456789012:user/ci")
                .user_id("AIDA")
                .build()
        });
        let mut clients = testing::clients();
        clients.sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&ok]);
        let c = check(&clients, "us-east-1").await;
        assert_eq!(c.status, Status::Ok);
        assert_eq!(
            c.detail,
            "account 123456789012 as arn:aws:iam::123456789012:user/ci, region us-east-1"
        );

        let refused = mock!(Client::get_caller_identity).then_error(|| {
            GetCallerIdentityError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("InvalidClientTokenId")
                    .message("The security token included in the request is invalid.")
                    .build(),
            )
        });
        clients.sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&refused]);
        let c = check(&clients, "us-east-1").await;
        assert_eq!(c.status, Status::Problem);
        assert!(c.detail.contains("InvalidClientTokenId"), "{}", c.detail);
        assert!(c.remedy.unwrap().contains("AWS_PROFILE"));
    }
}
