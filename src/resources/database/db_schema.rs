//! The customer database's schema: `up` invokes the migration function
//! (`lambda/db_migration.py`, step `lambda-function:db-migration`) once the
//! proxy's targets are available, and records the version it answers.
//!
//! The version is kept where it cannot drift from the function: a tag on
//! the migration function, `payops:db-schema-version` =
//! `<version>@<cluster resource id>/<app secret version>`. A converged `up`
//! reads that tag (ListTags: a read) and invokes nothing; a new version in
//! the shipped code (the constant below, kept equal to the handler's
//! `LATEST` by a test), a replaced cluster (a new resource id, an empty
//! database) or a new AWSCURRENT version of payops_app's secret (re-keyed
//! by an operator, or a secret made anew) makes it invoke again. The
//! migration is idempotent anyway (it applies only what `schema_version`
//! lacks, and sets payops_app's password only from a secret version the
//! database has not recorded), so a lost tag costs one no-op invocation.
//!
//! payops_app's password: the proxy logs in as payops_app with the secret
//! `payops/<env>/db-app` (RDS Proxy needs one secret per database user), so
//! the database must hold that password. The migration is told the secret's
//! ARN, reads it (its role may read that secret only), sets the password as
//! a SCRAM verifier computed in the function (the password itself never
//! reaches the server, its logs or pg_stat_statements) and takes payops_app
//! out of `rds_iam` (on Aurora a member of rds_iam cannot log in with a
//! password, and the proxy logs in with the password).
//!
//! Published as `DbSchemaVersion` (the database domain's parameters step),
//! which is what turns payment validation's customer lookup on: only a
//! version the migration really answered is published.
//!
//! Emulators cannot run the handler against a database (moto answers Invoke
//! with a canned body when Docker is off; LocalStack's Lambda cannot run
//! offline). The migration always answers its own JSON or fails
//! (FunctionError), so any other successful answer means the code did not
//! run: recorded as "not verifiable" (`DbSchemaStatus`, a note, a tag of its
//! own so a second `up` does not invoke again), never as a version, so the
//! lookup stays off there. The schema itself is covered by the handler
//! tests on a real PostgreSQL (`lambda/tests/test_database.py`).

use std::fmt;

use async_trait::async_trait;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::Blob;
use serde_json::{Value, json};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::database::db_secret;
use crate::resources::model::{DB_PORT, Function};
use crate::resources::resource::Resource;

pub const STEP: &str = "db-schema";
/// The schema version the shipped migration brings a database to (the
/// handler's `LATEST`; `the_target_version_is_the_handlers_latest` checks).
pub const LATEST: u32 = 3;
/// The migration function's tag that records what it last did.
pub const TAG: &str = "payops:db-schema-version";
/// Marks an answer that did not come from the migration's code.
const UNVERIFIED: &str = "unverified:";
/// Marks a migration after which `payops_app` could not log in.
const NO_APP_LOGIN: &str = "no-app-login:";

const PROXY_INPUT: (&str, &str) = ("db-proxy", "DbProxyEndpoint");
const APP_SECRET_INPUT: (&str, &str) = (db_secret::APP_STEP, "DbAppSecretArn");
const CLUSTER_INPUT: &str = "aurora-cluster";
const NOT_FOUND: &str = "ResourceNotFoundException";

pub struct DbSchema;

/// What a migration did: the schema version, the cluster (its resource
/// id) and the version of payops_app's secret whose password it set (empty
/// where the secret's versions are unknown, and in tags an older payops
/// wrote).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    pub version: u32,
    pub cluster: String,
    pub secret: String,
}

/// What the migration function's tag says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schema {
    /// The migration answered this, and `payops_app` could log in through
    /// the proxy and read `customers`.
    Verified(Migrated),
    /// Migrated, but `payops_app` could not log in through the proxy: the
    /// lookup stays off, since it would answer 503 for every payment.
    NoAppLogin(Migrated),
    /// The invocation answered without running the migration (an
    /// emulator): nothing is known about the database.
    Unverifiable(Migrated),
    /// Never migrated (or the tag is unreadable).
    Unknown,
}

impl Schema {
    fn migrated(&self) -> Option<&Migrated> {
        match self {
            Self::Verified(m) | Self::NoAppLogin(m) | Self::Unverifiable(m) => Some(m),
            Self::Unknown => None,
        }
    }
}

pub struct Found {
    function_arn: String,
    schema: Schema,
}

#[derive(Debug)]
pub enum Fix {
    Migrate {
        from: Schema,
    },
    /// The schema is current, but payops_app's secret has a version the
    /// database was not given.
    AppPassword,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Migrate {
                from: Schema::Verified(m),
            } => write!(
                f,
                "migrate the schema from version {} to {LATEST}",
                m.version
            ),
            Self::Migrate { .. } => write!(f, "migrate the schema to version {LATEST}"),
            Self::AppPassword => f.write_str(
                "set payops_app's password from its secret's current version (the proxy logs \
                 in with it)",
            ),
        }
    }
}

fn parse_tag(value: Option<&str>) -> Schema {
    let Some(value) = value else {
        return Schema::Unknown;
    };
    // Secret version ids are UUIDs (AWS: 32-64 characters of letters,
    // digits and hyphens), cluster resource ids and ARNs have no `/`.
    let (kind, rest) = if let Some(rest) = value.strip_prefix(UNVERIFIED) {
        (UNVERIFIED, rest)
    } else if let Some(rest) = value.strip_prefix(NO_APP_LOGIN) {
        (NO_APP_LOGIN, rest)
    } else {
        ("", value)
    };
    let Some((version, cluster)) = rest.split_once('@') else {
        return Schema::Unknown;
    };
    let Ok(version) = version.parse() else {
        return Schema::Unknown;
    };
    let (cluster, secret) = cluster.split_once('/').unwrap_or((cluster, ""));
    let m = Migrated {
        version,
        cluster: cluster.to_owned(),
        secret: secret.to_owned(),
    };
    match kind {
        UNVERIFIED => Schema::Unverifiable(m),
        NO_APP_LOGIN => Schema::NoAppLogin(m),
        _ => Schema::Verified(m),
    }
}

fn tag_value(schema: &Schema) -> Option<String> {
    let kind = match schema {
        Schema::Verified(_) => "",
        Schema::Unverifiable(_) => UNVERIFIED,
        Schema::NoAppLogin(_) => NO_APP_LOGIN,
        Schema::Unknown => return None,
    };
    let m = schema.migrated()?;
    Some(format!("{kind}{}@{}/{}", m.version, m.cluster, m.secret))
}

/// What the migration's answer says. `function_error` is Lambda's
/// `FunctionError` (the handler raised: the database refused, a migration
/// failed): a failure with the handler's message. A successful answer that is
/// not the migration's JSON did not come from its code. `secret` is the app
/// secret's version the step saw; the answer's own (the version the
/// migration read and set) wins.
pub fn interpret(
    function_error: Option<&str>,
    payload: &[u8],
    cluster: &str,
    secret: &str,
) -> Result<(Schema, Option<String>), AwsError> {
    let text = String::from_utf8_lossy(payload);
    let short: String = text.chars().take(300).collect();
    if let Some(kind) = function_error {
        return Err(AwsError::Conflict(format!(
            "the schema migration failed ({kind}): {short}; see the function's log group \
             /payops/<env>/lambda/db-migration"
        )));
    }
    let answer: Option<Value> = serde_json::from_slice(payload).ok();
    let version = answer
        .as_ref()
        .filter(|a| a["migration"] == "payops")
        .and_then(|a| a["schemaVersion"].as_u64());
    let app_login = answer.as_ref().map(|a| &a["appLogin"]);
    let migrated = Migrated {
        version: LATEST,
        cluster: cluster.to_owned(),
        secret: answer
            .as_ref()
            .and_then(|a| a["appPassword"]["secretVersion"].as_str())
            .unwrap_or(secret)
            .to_owned(),
    };
    match version {
        Some(v) if v == u64::from(LATEST) && app_login.is_some_and(|l| l["ok"] == true) => {
            Ok((Schema::Verified(migrated), None))
        }
        Some(v) if v == u64::from(LATEST) => Ok((
            Schema::NoAppLogin(migrated),
            Some(format!(
                "schema at version {LATEST}, but payops_app could not log in through the proxy \
                 ({}): DbSchemaVersion is not published, so the customer lookup stays off \
                 (docs/architecture.md, the database code)",
                app_login
                    .and_then(|l| l["reason"].as_str())
                    .unwrap_or("no reason given")
            )),
        )),
        Some(v) => Err(AwsError::Conflict(format!(
            "the schema migration answered version {v}, not {LATEST}: the deployed function \
             is not the code of this payops (run `payops up` again once the function step \
             converged)"
        ))),
        None => Ok((
            Schema::Unverifiable(migrated),
            Some(format!(
                "schema not verifiable: the migration function answered {short:?} without \
                 running the migration (an emulator's canned answer); DbSchemaVersion is not \
                 published, so the customer lookup stays off"
            )),
        )),
    }
}

fn function_arn(cx: &Context) -> String {
    cx.arn(
        "lambda",
        &format!("function:{}", Function::Migration.name(cx)),
    )
}

/// The version of payops_app's secret the step sees (AWSCURRENT), or ""
/// where Secrets Manager did not say.
fn secret_version<'a>(step: &'a StepCx<'_>) -> &'a str {
    step.input_resource(db_secret::APP_STEP, db_secret::VERSION_RESOURCE)
        .unwrap_or_default()
}

/// The cluster the schema is in: its resource id (`cluster-...`), which a
/// replaced cluster does not share, or its ARN where RDS gives none.
fn cluster_id(step: &StepCx<'_>) -> Result<String, AwsError> {
    match step.output(CLUSTER_INPUT, "AuroraClusterResourceId") {
        Ok(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Ok(step.output(CLUSTER_INPUT, "AuroraClusterArn")?.to_owned()),
    }
}

async fn migrate(cx: &Context, step: &StepCx<'_>, arn: &str) -> Result<Found, AwsError> {
    let cluster = cluster_id(step)?;
    // Where to connect comes with the invocation, not from SSM: the
    // parameters step of this domain publishes what this step answers.
    let event = json!({
        "targetVersion": LATEST,
        "host": step.output(PROXY_INPUT.0, PROXY_INPUT.1)?,
        "port": DB_PORT,
        "database": step.output(CLUSTER_INPUT, "AuroraDatabaseName")?,
        "user": step.output(CLUSTER_INPUT, "DbMasterUsername")?,
        // Only the ARN: the function reads the password itself.
        "appSecretArn": step.output(APP_SECRET_INPUT.0, APP_SECRET_INPUT.1)?,
    });
    step.progress(format!("invoking the schema migration (version {LATEST})"));
    let out = cx
        .clients
        .lambda
        .invoke()
        .function_name(arn)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(event.to_string()))
        .send()
        .await
        .op("lambda:Invoke")?;
    let payload = out.payload().map(Blob::as_ref).unwrap_or_default();
    let (schema, why) = interpret(
        out.function_error(),
        payload,
        &cluster,
        secret_version(step),
    )?;
    if let Some(why) = &why {
        step.progress(why);
    }
    let value = tag_value(&schema).expect("a known schema");
    cx.clients
        .lambda
        .tag_resource()
        .resource(arn)
        .tags(TAG, value)
        .send()
        .await
        .op("lambda:TagResource")?;
    Ok(Found {
        function_arn: arn.to_owned(),
        schema,
    })
}

#[async_trait]
impl Resource for DbSchema {
    type Found = Found;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "postgresql:schema"
    }

    /// The migration function's tag; nothing when the function is absent.
    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<Found>, AwsError> {
        let arn = function_arn(cx);
        let out = cx
            .clients
            .lambda
            .list_tags()
            .resource(&arn)
            .send()
            .await
            .op("lambda:ListTags");
        let Some(out) = absent_on(out, &[NOT_FOUND])? else {
            return Ok(Vec::new());
        };
        let schema = parse_tag(out.tags().and_then(|t| t.get(TAG)).map(String::as_str));
        if schema == Schema::Unknown {
            return Ok(Vec::new());
        }
        Ok(vec![Found {
            function_arn: arn,
            schema,
        }])
    }

    fn describe(&self, found: &Found) -> String {
        match &found.schema {
            Schema::Verified(m) => format!("schema version {}", m.version),
            Schema::Unverifiable(_) => "schema (not verifiable)".to_owned(),
            Schema::NoAppLogin(m) => {
                format!("schema version {} (payops_app cannot log in)", m.version)
            }
            Schema::Unknown => "schema (unknown)".to_owned(),
        }
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<Found, AwsError> {
        migrate(cx, step, &function_arn(cx)).await
    }

    async fn diff(
        &self,
        _cx: &Context,
        step: &StepCx<'_>,
        found: &Found,
    ) -> Result<Vec<Fix>, AwsError> {
        let cluster = cluster_id(step)?;
        let Some(m) = found
            .schema
            .migrated()
            .filter(|m| m.version == LATEST && m.cluster == cluster)
        else {
            return Ok(vec![Fix::Migrate {
                from: found.schema.clone(),
            }]);
        };
        if m.secret != secret_version(step) {
            return Ok(vec![Fix::AppPassword]);
        }
        Ok(Vec::new())
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut Found,
        _fix: Fix,
    ) -> Result<(), AwsError> {
        *found = migrate(cx, step, &found.function_arn.clone()).await?;
        Ok(())
    }

    /// `DbSchemaStatus` is a fixed word per state, never this run's reason
    /// (shown as progress when it is found out): the database domain's
    /// parameters step publishes it, and a converged `up`, which reads the
    /// tag instead of invoking, must publish the same value.
    fn record(&self, _cx: &Context, found: &Found) -> Record {
        match &found.schema {
            Schema::Verified(m) => Record::default()
                .output("DbSchemaVersion", m.version.to_string())
                .output("DbSchemaStatus", "verified"),
            Schema::NoAppLogin(_) => Record::default().output("DbSchemaStatus", "no-app-login"),
            _ => Record::default().output("DbSchemaStatus", "not-verifiable"),
        }
    }

    /// The schema goes with the cluster and the tag with the function: both
    /// are other steps', deleted after this one.
    async fn delete(
        &self,
        _cx: &Context,
        _step: &StepCx<'_>,
        _found: Found,
    ) -> Result<Vec<String>, AwsError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_lambda::Client;
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_sdk_lambda::operation::list_tags::{ListTagsError, ListTagsOutput};
    use aws_sdk_lambda::operation::tag_resource::TagResourceOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::Change;
    use crate::resources::testing;

    const CLUSTER: &str = "cluster-ABCDEFGHIJKL";
    const APP_SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:payops/pr1/db-app-GhIjKl";
    /// The app secret's AWSCURRENT version, as its step records it.
    const SECRET_VERSION: &str = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (
                PROXY_INPUT.0,
                PROXY_INPUT.1,
                "p.proxy-x.us-east-1.rds.amazonaws.com",
            ),
            (CLUSTER_INPUT, "AuroraClusterResourceId", CLUSTER),
            (CLUSTER_INPUT, "AuroraDatabaseName", "payments"),
            (CLUSTER_INPUT, "DbMasterUsername", "payops_admin"),
        ])
        .into_iter()
        .chain([(
            db_secret::APP_STEP,
            Record::default()
                .output(APP_SECRET_INPUT.1, APP_SECRET)
                .resource(db_secret::VERSION_RESOURCE, SECRET_VERSION),
        )])
        .collect()
    }

    fn tags(value: Option<&'static str>) -> Rule {
        mock!(Client::list_tags).then_output(move || {
            let mut t = HashMap::new();
            if let Some(v) = value {
                t.insert(TAG.to_owned(), v.to_owned());
            }
            ListTagsOutput::builder().set_tags(Some(t)).build()
        })
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn answered(body: &'static str, error: Option<&'static str>) -> Rule {
        mock!(Client::invoke)
            .match_requests(|r| {
                let event: Value =
                    serde_json::from_slice(r.payload().expect("a payload").as_ref()).unwrap();
                r.invocation_type() == Some(&InvocationType::RequestResponse)
                    && event["targetVersion"] == LATEST
                    && event["user"] == "payops_admin"
                    && event["database"] == "payments"
                    && event["host"] == "p.proxy-x.us-east-1.rds.amazonaws.com"
                    && event["appSecretArn"] == APP_SECRET
                    // The ARN only: the function reads the password itself.
                    && !event.to_string().contains("password")
            })
            .then_output(move || {
                InvokeOutput::builder()
                    .status_code(200)
                    .set_function_error(error.map(str::to_owned))
                    .payload(Blob::new(body))
                    .build()
            })
    }

    fn tagging(expected: &'static str) -> Rule {
        mock!(Client::tag_resource)
            .match_requests(move |r| {
                r.tags().and_then(|t| t.get(TAG)).map(String::as_str) == Some(expected)
            })
            .then_output(|| TagResourceOutput::builder().build())
    }

    #[tokio::test]
    async fn a_first_up_migrates_and_records_the_version_it_answered() {
        let list = tags(None);
        let invoke = answered(
            r#"{"migration": "payops", "schemaVersion": 3, "applied": [1, 2, 3], "notes": [], "appLogin": {"ok": true}}"#,
            None,
        );
        let tag = tagging("3@cluster-ABCDEFGHIJKL/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111");
        let cx = cx_with(&[&list, &invoke, &tag]);
        let applied = testing::ensure(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(invoke.num_calls(), 1);
        assert_eq!(tag.num_calls(), 1);
        assert_eq!(applied.record.outputs["DbSchemaVersion"], "3");
    }

    #[tokio::test]
    async fn a_current_schema_is_read_from_the_tag_and_nothing_is_invoked() {
        let list = tags(Some(
            "3@cluster-ABCDEFGHIJKL/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
        ));
        let invoke = answered("{}", None);
        let tag = tagging("never");
        let cx = cx_with(&[&list, &invoke, &tag]);
        let applied = testing::ensure(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!((invoke.num_calls(), tag.num_calls()), (0, 0));
        assert_eq!(applied.record.outputs["DbSchemaVersion"], "3");
    }

    #[tokio::test]
    async fn an_older_version_or_a_replaced_cluster_is_migrated_again() {
        for old in [
            // An older payops' tag: version 2, no secret version.
            "2@cluster-ABCDEFGHIJKL",
            "3@cluster-REPLACED0000/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
        ] {
            let list = tags(Some(old));
            let invoke = answered(
                r#"{"migration": "payops", "schemaVersion": 3, "applied": [3], "notes": [], "appLogin": {"ok": true}}"#,
                None,
            );
            let tag = tagging("3@cluster-ABCDEFGHIJKL/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111");
            let cx = cx_with(&[&list, &invoke, &tag]);
            let obs = testing::observe(&cx, STEP, DbSchema, &inputs())
                .await
                .unwrap();
            let crate::engine::Observation::Present { drift, .. } = obs else {
                panic!("present")
            };
            assert_eq!(drift.len(), 1, "{old}: {drift:?}");
            let applied = testing::ensure(&cx, STEP, DbSchema, &inputs())
                .await
                .unwrap();
            assert_eq!(applied.change, Change::Updated, "{old}");
            assert_eq!(invoke.num_calls(), 1, "{old}");
        }
    }

    #[tokio::test]
    async fn an_emulators_canned_answer_is_recorded_as_not_verifiable_never_as_a_version() {
        // moto with Docker off answers every Invoke with this body.
        let list = tags(None);
        let invoke = answered("Simple Lambda happy path OK", None);
        let tag = tagging("unverified:3@cluster-ABCDEFGHIJKL/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111");
        let cx = cx_with(&[&list, &invoke, &tag]);
        let applied = testing::ensure(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        assert!(!applied.record.outputs.contains_key("DbSchemaVersion"));
        let first = applied.record.outputs["DbSchemaStatus"].clone();
        assert_eq!(first, "not-verifiable");
        let (_, why) = interpret(None, b"Simple Lambda happy path OK", "cluster-A", "v").unwrap();
        let why = why.expect("a reason");
        assert!(why.starts_with("schema not verifiable"), "{why}");
        assert!(why.contains("Simple Lambda happy path OK"), "{why}");
        // And a second run reads the tag instead of invoking again, and
        // records the same outputs (the parameters step publishes them).
        let list = tags(Some(
            "unverified:3@cluster-ABCDEFGHIJKL/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
        ));
        let invoke = answered("{}", None);
        let cx = cx_with(&[&list, &invoke]);
        let applied = testing::ensure(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(invoke.num_calls(), 0);
        assert!(!applied.record.outputs.contains_key("DbSchemaVersion"));
        assert_eq!(applied.record.outputs["DbSchemaStatus"], first);
    }

    #[tokio::test]
    async fn a_failed_migration_fails_the_step_with_the_handlers_message_and_records_nothing() {
        let list = tags(None);
        let invoke = answered(
            r#"{"errorMessage": "permission denied for schema public", "errorType": "DatabaseError"}"#,
            Some("Unhandled"),
        );
        let tag = tagging("never");
        let cx = cx_with(&[&list, &invoke, &tag]);
        let err = testing::ensure(&cx, STEP, DbSchema, &inputs())
            .await
            .expect_err("failed")
            .to_string();
        assert!(err.contains("permission denied for schema public"), "{err}");
        assert_eq!(tag.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_schema_payops_app_cannot_log_in_to_is_recorded_but_never_published() {
        let list = tags(None);
        let invoke = answered(
            r#"{"migration": "payops", "schemaVersion": 3, "applied": [1, 2, 3], "notes": [],
                "appLogin": {"ok": false, "reason": "database refused the connection (28000)"}}"#,
            None,
        );
        let tag =
            tagging("no-app-login:3@cluster-ABCDEFGHIJKL/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111");
        let cx = cx_with(&[&list, &invoke, &tag]);
        let applied = testing::ensure(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        assert!(!applied.record.outputs.contains_key("DbSchemaVersion"));
        assert_eq!(applied.record.outputs["DbSchemaStatus"], "no-app-login");
        let answer = br#"{"migration": "payops", "schemaVersion": 3,
            "appLogin": {"ok": false, "reason": "database refused the connection (28000)"}}"#;
        let (_, why) = interpret(None, answer, "cluster-A", "v").unwrap();
        assert!(why.is_some_and(|w| w.contains("(28000)")));
        // Converged: a second run does not invoke again, and records the same.
        let list = tags(Some(
            "no-app-login:3@cluster-ABCDEFGHIJKL/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
        ));
        let invoke = answered("{}", None);
        let cx = cx_with(&[&list, &invoke]);
        let applied = testing::ensure(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        assert_eq!((applied.change, invoke.num_calls()), (Change::Unchanged, 0));
        assert_eq!(applied.record.outputs["DbSchemaStatus"], "no-app-login");
    }

    #[test]
    fn a_version_other_than_the_shipped_one_is_refused() {
        let err = interpret(
            None,
            br#"{"migration": "payops", "schemaVersion": 1}"#,
            CLUSTER,
            SECRET_VERSION,
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains("answered version 1, not 3"), "{err}");
    }

    /// An operator re-keyed payops_app's secret (put-secret-value), or it
    /// was made anew: the proxy now logs in with a password the database
    /// was never given. `plan` says so; `up` invokes the migration, which
    /// sets it, and records the version it answered.
    #[tokio::test]
    async fn a_new_version_of_the_app_secret_has_the_migration_set_the_password() {
        let list = tags(Some("3@cluster-ABCDEFGHIJKL/an-older-version"));
        let invoke = answered(
            r#"{"migration": "payops", "schemaVersion": 3, "applied": [], "notes": [],
                "appPassword": {"set": true, "secretVersion": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"},
                "appLogin": {"ok": true}}"#,
            None,
        );
        let tag = tagging("3@cluster-ABCDEFGHIJKL/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111");
        let cx = cx_with(&[&list, &invoke, &tag]);
        let obs = testing::observe(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        let crate::engine::Observation::Present { drift, .. } = obs else {
            panic!("present")
        };
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(drift[0].contains("payops_app's password"), "{drift:?}");
        let applied = testing::ensure(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((invoke.num_calls(), tag.num_calls()), (1, 1));
        assert_eq!(applied.record.outputs["DbSchemaVersion"], "3");
    }

    /// The version recorded is the one the migration read and set, not the
    /// one the step saw before invoking (a re-key in between is caught by
    /// the next `up`).
    #[test]
    fn the_recorded_secret_version_is_the_one_the_migration_answered() {
        let answer = br#"{"migration": "payops", "schemaVersion": 3, "appLogin": {"ok": true},
            "appPassword": {"set": false, "secretVersion": "newer"}}"#;
        let (schema, _) = interpret(None, answer, CLUSTER, "seen").unwrap();
        assert_eq!(schema.migrated().unwrap().secret, "newer");
        let (schema, _) = interpret(None, b"canned", CLUSTER, "seen").unwrap();
        assert_eq!(schema.migrated().unwrap().secret, "seen");
    }

    #[tokio::test]
    async fn no_migration_function_means_no_schema() {
        let list = mock!(Client::list_tags)
            .then_error(|| ListTagsError::generic(testing::error_meta(NOT_FOUND)));
        let cx = cx_with(&[&list]);
        let obs = testing::observe(&cx, STEP, DbSchema, &inputs())
            .await
            .unwrap();
        assert!(matches!(obs, crate::engine::Observation::Missing));
    }

    /// The Rust side's target is the handler's LATEST: the last migration's
    /// number in `lambda/db_migration.py`.
    #[test]
    fn the_target_version_is_the_handlers_latest() {
        let source = include_str!("../../../lambda/db_migration.py");
        let numbers: Vec<u32> = source
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0].trim() == "(")
            .filter_map(|w| w[1].trim().trim_end_matches(',').parse().ok())
            .collect();
        assert_eq!(numbers.last(), Some(&LATEST), "{numbers:?}");
        assert!(source.contains("LATEST = MIGRATIONS[-1][0]"));
    }

    #[test]
    fn tags_round_trip() {
        let m = |secret: &str| Migrated {
            version: 3,
            cluster: CLUSTER.into(),
            secret: secret.into(),
        };
        for s in [
            Schema::Verified(m(SECRET_VERSION)),
            Schema::Unverifiable(m(SECRET_VERSION)),
            Schema::NoAppLogin(m("")),
        ] {
            assert_eq!(parse_tag(tag_value(&s).as_deref()), s);
        }
        // An older payops' tag has no secret version.
        assert_eq!(
            parse_tag(Some("2@cluster-ABCDEFGHIJKL")),
            Schema::Verified(Migrated {
                version: 2,
                cluster: CLUSTER.into(),
                secret: String::new(),
            })
        );
        assert_eq!(parse_tag(Some("garbage")), Schema::Unknown);
    }
}
