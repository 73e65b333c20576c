//! The RDS Proxy's role (`iam-role:db-proxy`): RDS assumes it to read the
//! database credentials the proxy logs in with, one secret per database user
//! (RDS User Guide, rds-proxy-secrets-arns): the master secret and
//! `payops_app`'s. It may read exactly those two secrets, by ARN, and
//! decrypt with their key only through Secrets Manager (RDS User Guide,
//! "Setting up AWS Identity and Access Management (IAM) policies" for RDS
//! Proxy: `kms:ViaService` `secretsmanager.<region>.amazonaws.com`).
//!
//! The generated secrets are encrypted with the env's logs/secrets key
//! (`kms-key:logs`, see db_secret.rs), not the database key (which encrypts
//! the cluster's storage): the proxy never touches storage, so it gets no
//! grant on the database key. An operator's master secret
//! (`--db-secret-arn`) is encrypted with a key payops does not know: the
//! role names only the logs key (for the app secret), and the operator's
//! key policy must let the role decrypt (docs/resources.md).

use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::engine::StepCx;
use crate::spec::DbSecret;

use crate::resources::common::iam_role::Role;
use crate::resources::context::Context;

pub const STEP: &str = "iam-role:db-proxy";
/// The role's outputs are `DbProxyRoleArn` and `DbProxyRoleName`.
pub const OUTPUT_PREFIX: &str = "DbProxy";
const SECRET_INPUT: (&str, &str) = ("secret:db-master", "DbSecretArn");
/// payops_app's secret (always payops', even with `--db-secret-arn`).
pub const APP_SECRET_INPUT: (&str, &str) = ("secret:db-app", "DbAppSecretArn");
/// The one inline policy.
pub const POLICY: &str = "read-db-secrets";
const KEY_INPUT: (&str, &str) = ("kms-key:logs", "LogsKmsKeyArn");

pub fn role() -> Role {
    Role::new(
        "db-proxy",
        "rds.amazonaws.com",
        "Lets this payops env's RDS Proxy read the Aurora master and payops_app secrets",
        OUTPUT_PREFIX,
    )
    .with_policies(policies)
}

/// The secret the proxy logs in with: the generated one, or the operator's.
pub fn secret_arn<'a>(cx: &'a Context, step: &'a StepCx<'_>) -> Result<&'a str, AwsError> {
    Ok(match &cx.spec.db_secret {
        DbSecret::Existing(arn) => arn,
        DbSecret::Generated => step.output(SECRET_INPUT.0, SECRET_INPUT.1)?,
    })
}

/// payops_app's secret, the proxy's second credential.
pub fn app_secret_arn<'a>(step: &'a StepCx<'_>) -> Result<&'a str, AwsError> {
    Ok(step.output(APP_SECRET_INPUT.0, APP_SECRET_INPUT.1)?)
}

fn policies(cx: &Context, step: &StepCx<'_>) -> Result<Vec<(String, Value)>, AwsError> {
    let statements = vec![
        json!({
            "Sid": "ReadTheDatabaseSecrets",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [secret_arn(cx, step)?, app_secret_arn(step)?],
        }),
        // Both generated secrets use the logs/secrets key; an operator's
        // master secret uses a key its own policy must open (see above).
        json!({
            "Sid": "DecryptTheSecretsThroughSecretsManager",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": step.output(KEY_INPUT.0, KEY_INPUT.1)?,
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": format!("secretsmanager.{}.amazonaws.com", cx.region)
                }
            }
        }),
    ];
    Ok(vec![(
        POLICY.to_owned(),
        json!({ "Version": "2012-10-17", "Statement": statements }),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StepId;
    use crate::resources::testing;

    const SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:payops/pr1/db-master-AbCdEf";
    const APP_SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:payops/pr1/db-app-GhIjKl";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/logs";

    fn policy_of(cx: &Context) -> Value {
        let id = StepId::from(STEP);
        let events = testing::Events::default();
        let inputs = testing::outputs(&[
            (SECRET_INPUT.0, SECRET_INPUT.1, SECRET),
            (APP_SECRET_INPUT.0, APP_SECRET_INPUT.1, APP_SECRET),
            (KEY_INPUT.0, KEY_INPUT.1, KEY),
        ])
        .into_iter()
        .map(|(k, r)| (StepId::from(k), r))
        .collect();
        let step = testing::step_cx(&id, inputs, &events);
        let mut all = policies(cx, &step).unwrap();
        assert_eq!(all.len(), 1);
        let (name, doc) = all.pop().unwrap();
        assert_eq!(name, POLICY);
        doc
    }

    /// RDS User Guide, rds-proxy-iam-setup: GetSecretValue on each secret
    /// the proxy uses, kms:Decrypt on their key via Secrets Manager.
    #[test]
    fn the_proxy_may_read_exactly_the_two_secrets_and_decrypt_only_through_secrets_manager() {
        let cx = testing::context(testing::clients());
        let doc = policy_of(&cx);
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[0]["Action"],
            json!(["secretsmanager:GetSecretValue"])
        );
        assert_eq!(statements[0]["Resource"], json!([SECRET, APP_SECRET]));
        assert_eq!(statements[1]["Action"], json!(["kms:Decrypt"]));
        assert_eq!(statements[1]["Resource"], KEY);
        assert_eq!(
            statements[1]["Condition"]["StringEquals"]["kms:ViaService"],
            "secretsmanager.us-east-1.amazonaws.com"
        );
        // Nothing else: no wildcard resource anywhere.
        assert!(!doc.to_string().contains("\"*\""), "{doc}");
    }

    #[test]
    fn only_rds_in_this_account_may_assume_it() {
        let cx = testing::context(testing::clients());
        let trust = role().trust_policy(&cx);
        let s = &trust["Statement"][0];
        assert_eq!(s["Principal"]["Service"], "rds.amazonaws.com");
        assert_eq!(
            s["Condition"]["StringEquals"]["aws:SourceAccount"],
            testing::ACCOUNT
        );
    }

    #[test]
    fn an_operators_master_secret_is_named_beside_the_app_secret_and_no_other_key_is_guessed() {
        let mut cx = testing::context(testing::clients());
        let theirs = "arn:aws:secretsmanager:us-east-1:123456789012:secret:theirs-XyZ123";
        cx.spec.db_secret = DbSecret::Existing(theirs.into());
        let doc = policy_of(&cx);
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements[0]["Resource"], json!([theirs, APP_SECRET]));
        // Only the app secret's key: the operator's is theirs to open.
        assert_eq!(statements[1]["Resource"], KEY);
        assert_eq!(statements.len(), 2);
    }
}
