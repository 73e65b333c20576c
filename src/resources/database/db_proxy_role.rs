//! The RDS Proxy's role (`iam-role:db-proxy`): RDS assumes it to read the
//! database credentials the proxy logs in with. It may read the master
//! secret, that one secret by ARN, and decrypt with the secret's key only
//! through Secrets Manager (RDS User Guide, "Setting up AWS Identity and
//! Access Management (IAM) policies" for RDS Proxy).
//!
//! The generated master secret is encrypted with the env's logs/secrets key
//! (`kms-key:logs`, see db_secret.rs), not the database key (which encrypts
//! the cluster's storage): the proxy never touches storage, so it gets no
//! grant on the database key. An operator's secret (`--db-secret-arn`) is
//! encrypted with a key payops does not know: the role then names no key,
//! and that key's policy must let the role decrypt (docs/resources.md).

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
const KEY_INPUT: (&str, &str) = ("kms-key:logs", "LogsKmsKeyArn");

pub fn role() -> Role {
    Role::new(
        "db-proxy",
        "rds.amazonaws.com",
        "Lets this payops env's RDS Proxy read the Aurora master secret",
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

fn policies(cx: &Context, step: &StepCx<'_>) -> Result<Vec<(String, Value)>, AwsError> {
    let mut statements = vec![json!({
        "Sid": "ReadTheMasterSecret",
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue"],
        "Resource": secret_arn(cx, step)?,
    })];
    if cx.spec.db_secret == DbSecret::Generated {
        statements.push(json!({
            "Sid": "DecryptTheSecretThroughSecretsManager",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": step.output(KEY_INPUT.0, KEY_INPUT.1)?,
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": format!("secretsmanager.{}.amazonaws.com", cx.region)
                }
            }
        }));
    }
    Ok(vec![(
        "read-master-secret".to_owned(),
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
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/logs";

    fn policy_of(cx: &Context) -> Value {
        let id = StepId::from(STEP);
        let events = testing::Events::default();
        let inputs = testing::outputs(&[
            (SECRET_INPUT.0, SECRET_INPUT.1, SECRET),
            (KEY_INPUT.0, KEY_INPUT.1, KEY),
        ])
        .into_iter()
        .map(|(k, r)| (StepId::from(k), r))
        .collect();
        let step = testing::step_cx(&id, inputs, &events);
        let mut all = policies(cx, &step).unwrap();
        assert_eq!(all.len(), 1);
        all.pop().unwrap().1
    }

    #[test]
    fn the_proxy_may_read_only_the_master_secret_and_decrypt_only_through_secrets_manager() {
        let cx = testing::context(testing::clients());
        let doc = policy_of(&cx);
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[0]["Action"],
            json!(["secretsmanager:GetSecretValue"])
        );
        assert_eq!(statements[0]["Resource"], SECRET);
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
    fn an_operators_secret_is_named_and_no_key_is_guessed() {
        let mut cx = testing::context(testing::clients());
        let theirs = "arn:aws:secretsmanager:us-east-1:123456789012:secret:theirs-XyZ123";
        cx.spec.db_secret = DbSecret::Existing(theirs.into());
        let doc = policy_of(&cx);
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0]["Resource"], theirs);
    }
}
