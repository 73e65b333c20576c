//! The execution role of each payment function: trusted by Lambda for this
//! account only, with inline policies naming the exact ARNs the function uses
//! (its log group, its tables and index, the bucket prefix it writes, its
//! topic, its configuration path, its KMS keys through the service that uses
//! them). Only the ENI and X-Ray actions take `*`, because AWS offers no
//! narrower resource for them; the ENI actions only for a function in the
//! VPC (the rotation function runs outside it).

use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::engine::StepCx;

use crate::resources::common::iam_role::Role;
use crate::resources::context::Context;
use crate::resources::model::{DB_APP_USER, Function, PAN_HASH_KEY, REMEDIATION_INPUTS, SgRole};

/// The GSI fraud detection reads a customer's recent transactions through.
pub const CUSTOMER_INDEX: &str = "customerId-timestamp-index";
/// Where transaction processing writes audit records in the audit bucket.
pub const AUDIT_PREFIX: &str = "audit/transactions/";

pub fn role(function: Function) -> Role {
    let description = match function {
        Function::Validation => "payops payment validation Lambda",
        Function::Fraud => "payops fraud detection Lambda",
        Function::Transaction => "payops transaction processing Lambda",
        Function::Rotation => "payops Aurora master secret rotation Lambda",
        Function::QueueConsumer => "payops payment queue consumer Lambda",
        Function::LogTransform => "payops transaction log transform Lambda (Firehose)",
        Function::Migration => "payops customer database schema migration Lambda",
        Function::Remediation => "payops AWS Config remediation Lambda",
    };
    let role = Role::new(
        function.slug(),
        "lambda.amazonaws.com",
        description,
        function.output_prefix(),
    )
    .with_policies(move |cx, step| policies(function, cx, step));
    match function {
        Function::QueueConsumer => role.wanted_when(|cx| Function::QueueConsumer.wanted(cx)),
        Function::LogTransform => role.wanted_when(|cx| Function::LogTransform.wanted(cx)),
        _ => role,
    }
}

/// The queue the consumer reads, and the key it is encrypted with (the
/// events domain's outputs).
pub const CONSUMER_QUEUE_INPUT: (&str, &str) = (
    "sqs-queue:payments-processing",
    "PaymentsProcessingQueueArn",
);
pub const EVENTS_KEY_INPUT: (&str, &str) = ("kms-key:events", "EventsKmsKeyArn");
/// The cluster's master user name, which the migration logs in as.
pub const MASTER_USER_INPUT: (&str, &str) = ("aurora-cluster", "DbMasterUsername");
/// payops_app's secret, whose password the migration sets.
pub const APP_SECRET_INPUT: (&str, &str) = ("secret:db-app", "DbAppSecretArn");

fn statement(sid: &str, actions: &[&str], resources: Value) -> Value {
    json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources })
}

/// Use of a KMS key only when `services` call KMS on the function's behalf
/// (DynamoDB, S3, SNS, SSM), never directly.
fn kms_via(sid: &str, actions: &[&str], key: &str, services: &[&str], region: &str) -> Value {
    let via: Vec<String> = services
        .iter()
        .map(|s| format!("{s}.{region}.amazonaws.com"))
        .collect();
    json!({
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": key,
        "Condition": { "StringEquals": { "kms:ViaService": via } }
    })
}

/// Decrypt with `key` through Parameter Store, for the SecureString
/// `parameter` (an ARN) only.
fn secure_parameter_key(sid: &str, key: &str, parameter: &str, region: &str) -> Value {
    let mut grant = kms_via(sid, &["kms:Decrypt"], key, &["ssm"], region);
    grant["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"] = json!(parameter);
    grant
}

fn output<'a>(step: &'a StepCx<'_>, from: &str, key: &str) -> Result<&'a str, AwsError> {
    Ok(step.output(from, key)?)
}

/// Whether Lambda may create or release network interfaces with this role:
/// the function runs in the VPC, or a retired group it used there is still
/// found (its step is one of the role's inputs and recorded the group).
/// Lambda releases a function's interfaces with the function's role, so an
/// env made by an older payops keeps the permissions until that group (which
/// the interfaces hold) is gone; removed earlier, the interfaces and the
/// group could stay for good.
fn manages_interfaces(function: Function, step: &StepCx<'_>) -> bool {
    function.security_group().is_some()
        || SgRole::of_functions()
            .into_iter()
            .filter(|g| g.retired())
            .any(|g| {
                step.input(&g.step_id())
                    .is_some_and(|r| !r.resources.is_empty())
            })
}

/// The configuration parameters each payment function reads at cold start,
/// by name under the env's path: what its handler passes to `lib.config`
/// (a test checks the two agree).
pub fn parameters(function: Function) -> &'static [&'static str] {
    match function {
        // Where the customer database is (the proxy's endpoint, the
        // database's name) and whether its schema exists (the version the
        // migration step records): absent until then, when the handler
        // checks the payment rules only.
        Function::Validation => &[
            "MaxPaymentAmount",
            "AllowedCurrencies",
            "DbProxyEndpoint",
            "AuroraDatabaseName",
            "DbSchemaVersion",
        ],
        Function::Fraud => &[
            "FraudRulesTableName",
            "TransactionsTableName",
            "MaxPaymentAmount",
            "AllowedCurrencies",
        ],
        Function::Transaction => &[
            "TransactionsTableName",
            "AuditBucketName",
            "FailedTransactionsTopicArn",
            "S3KmsKeyArn",
            "EventBusName",
            "PaymentsProcessingQueueUrl",
            "TransactionLogStreamName",
            PAN_HASH_KEY,
            "MaxPaymentAmount",
            "AllowedCurrencies",
        ],
        Function::QueueConsumer => &["TransactionsTableName"],
        // The migration gets where to connect in its invocation (the
        // `db-schema` step passes the proxy endpoint, database and user): the
        // parameters step of the database domain publishes the schema version
        // it answers, so reading them would need that step first (a cycle).
        // The remediation is told its few ids in its environment.
        Function::Rotation
        | Function::LogTransform
        | Function::Migration
        | Function::Remediation => &[],
    }
}

/// The inline policies of `function`'s role, by name.
pub fn policies(
    function: Function,
    cx: &Context,
    step: &StepCx<'_>,
) -> Result<Vec<(String, Value)>, AwsError> {
    let prefix = function.output_prefix();
    let log_group = output(step, &function.log_step(), &format!("{prefix}LogGroupArn"))?;
    let path = cx.names.parameter_path();
    let path = path.trim_end_matches('/');
    let mut policies = vec![
        (
            "logs".to_owned(),
            json!({
                "Version": "2012-10-17",
                "Statement": [statement(
                    "WriteOwnLogGroup",
                    &["logs:CreateLogStream", "logs:PutLogEvents"],
                    json!(format!("{log_group}:*")),
                )]
            }),
        ),
        (
            "runtime".to_owned(),
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    // X-Ray has no resource-level permissions for sending
                    // traces: `*` is the only resource it accepts.
                    statement(
                        "SendTraces",
                        &["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                        json!("*"),
                    ),
                ]
            }),
        ),
    ];
    let statements = policies[1].1["Statement"]
        .as_array_mut()
        .expect("a statement list");
    if manages_interfaces(function, step) {
        // Lambda creates and removes the function's network interfaces in
        // the VPC with this role. EC2's Describe* calls have no
        // resource-level permissions and the interfaces' ids are unknown in
        // advance, so AWS requires `*` here (as its
        // AWSLambdaVPCAccessExecutionRole does).
        statements.insert(
            0,
            statement(
                "ManageVpcNetworkInterfaces",
                &[
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                json!("*"),
            ),
        );
    }
    // The payment functions read their configuration at cold start, each
    // only the parameters it names; the rotation and transform functions
    // read none.
    if !parameters(function).is_empty() {
        statements.push(statement(
            "ReadConfiguration",
            &["ssm:GetParameters"],
            json!(
                parameters(function)
                    .iter()
                    .map(|name| cx.arn("ssm", &format!("parameter{path}/{name}")))
                    .collect::<Vec<_>>()
            ),
        ));
    }
    // Versions published before the handlers read by name page the whole
    // path, and the blue alias may still serve one until a release is
    // promoted. GetParametersByPath is authorised on the path itself, not on
    // the parameters under it. The queue consumer came after: it never did.
    if !matches!(
        function,
        Function::Rotation
            | Function::QueueConsumer
            | Function::LogTransform
            | Function::Migration
            | Function::Remediation
    ) {
        statements.push(statement(
            "ReadConfigurationOfOlderVersions",
            &["ssm:GetParametersByPath"],
            json!([
                cx.arn("ssm", &format!("parameter{path}")),
                cx.arn("ssm", &format!("parameter{path}/")),
            ]),
        ));
    }
    let region = cx.region.as_str();
    match function {
        Function::Validation => {
            // Payment validation reads the customer (status, limits) through
            // the RDS Proxy with IAM authentication: connect as the app user
            // to that proxy only. The resource is the proxy's id (`prx-...`,
            // the end of its ARN), not the cluster's resource id. In the
            // runtime policy rather than a policy of its own: one fewer read
            // on every converged `up`.
            let proxy = output(step, "db-proxy", "DbProxyResourceId")?;
            policies[1].1["Statement"]
                .as_array_mut()
                .expect("a statement list")
                .push(statement(
                    "ConnectThroughTheProxy",
                    &["rds-db:connect"],
                    json!(cx.arn("rds-db", &format!("dbuser:{proxy}/{DB_APP_USER}"))),
                ));
        }
        Function::QueueConsumer => {
            let queue = output(step, CONSUMER_QUEUE_INPUT.0, CONSUMER_QUEUE_INPUT.1)?;
            let queue_key = output(step, EVENTS_KEY_INPUT.0, EVENTS_KEY_INPUT.1)?;
            let table = output(step, "dynamodb-table:transactions", "TransactionsTableArn")?;
            let table_key = output(step, "kms-key:dynamodb", "DynamoDbKmsKeyArn")?;
            policies.push((
                "queue".to_owned(),
                json!({
                    "Version": "2012-10-17",
                    "Statement": [
                        // What Lambda's poller calls with the function's
                        // role, and AWS checks before it creates the
                        // mapping (InvalidParameterValueException "The
                        // provided execution role does not have permissions
                        // to call ReceiveMessage on SQS"): on this queue only.
                        // The three of AWS's AWSLambdaSQSQueueExecutionRole;
                        // the handler itself makes no SQS call.
                        statement(
                            "ConsumeTheProcessingQueue",
                            &[
                                "sqs:ReceiveMessage",
                                "sqs:DeleteMessage",
                                "sqs:GetQueueAttributes",
                            ],
                            json!(queue),
                        ),
                        // SSE-KMS: SQS decrypts what it hands over with the
                        // receiver's permission on the queue's key.
                        kms_via("QueueKey", &["kms:Decrypt"], queue_key, &["sqs"], region),
                    ]
                }),
            ));
            policies.push((
                "data".to_owned(),
                json!({
                    "Version": "2012-10-17",
                    "Statement": [
                        // GetItem reads the claim that says which item holds
                        // the transaction; UpdateItem settles it, on a
                        // condition, so nothing else is written.
                        statement(
                            "SettleTransactions",
                            &["dynamodb:GetItem", "dynamodb:UpdateItem"],
                            json!(table),
                        ),
                        kms_via(
                            "TableKey",
                            &["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                            table_key,
                            &["dynamodb"],
                            region,
                        ),
                    ]
                }),
            ));
        }
        // The transform only reads what Firehose hands it and answers: its
        // logs and traces are all it writes.
        Function::LogTransform => {}
        Function::Remediation => policies.push(("remediation".to_owned(), remediation(cx, step)?)),
        Function::Migration => {
            // The migration logs in as the master user, through the proxy
            // with an IAM token like the payment functions: the proxy
            // requires IAM auth from every client and holds the master
            // secret itself, so this role never reads the master secret.
            // Only this proxy (its `prx-` id) and only these users: the
            // master, and `payops_app` to check, once migrated, that
            // validation's login works before `up` turns the lookup on.
            let proxy = output(step, "db-proxy", "DbProxyResourceId")?;
            let user = output(step, MASTER_USER_INPUT.0, MASTER_USER_INPUT.1)?;
            // It sets payops_app's password from payops_app's secret (the
            // one the proxy logs in with): that secret only, its key only
            // through Secrets Manager.
            let app_secret = output(step, APP_SECRET_INPUT.0, APP_SECRET_INPUT.1)?;
            let key = output(step, "kms-key:logs", "LogsKmsKeyArn")?;
            policies.push((
                "app-secret".to_owned(),
                json!({
                    "Version": "2012-10-17",
                    "Statement": [
                        statement(
                            "ReadPayopsAppsSecret",
                            &["secretsmanager:GetSecretValue"],
                            json!(app_secret),
                        ),
                        kms_via(
                            "SecretKey",
                            &["kms:Decrypt"],
                            key,
                            &["secretsmanager"],
                            region,
                        ),
                    ]
                }),
            ));
            policies[1].1["Statement"]
                .as_array_mut()
                .expect("a statement list")
                .push(statement(
                    "ConnectThroughTheProxy",
                    &["rds-db:connect"],
                    json!([
                        cx.arn("rds-db", &format!("dbuser:{proxy}/{user}")),
                        cx.arn("rds-db", &format!("dbuser:{proxy}/{DB_APP_USER}")),
                    ]),
                ));
        }
        Function::Rotation => {
            let key = output(step, "kms-key:logs", "LogsKmsKeyArn")?;
            // Secret ARNs end in `-` and 6 random characters, unknown before
            // the secret exists: `-??????` matches exactly this secret's.
            let secret = cx.arn(
                "secretsmanager",
                &format!("secret:{}-??????", cx.names.db_secret()),
            );
            let cluster = cx.arn("rds", &format!("cluster:{}", cx.names.db_cluster()));
            policies.push((
                "rotation".to_owned(),
                json!({
                    "Version": "2012-10-17",
                    "Statement": [
                        statement(
                            "RotateTheMasterSecret",
                            &[
                                "secretsmanager:DescribeSecret",
                                "secretsmanager:GetSecretValue",
                                "secretsmanager:PutSecretValue",
                                "secretsmanager:UpdateSecretVersionStage",
                            ],
                            json!(secret),
                        ),
                        // GetRandomPassword acts on no resource: AWS accepts
                        // only `*` for it.
                        statement(
                            "GeneratePasswords",
                            &["secretsmanager:GetRandomPassword"],
                            json!("*"),
                        ),
                        statement(
                            "SetTheMasterPassword",
                            &["rds:ModifyDBCluster", "rds:DescribeDBClusters"],
                            json!(cluster),
                        ),
                        kms_via(
                            "SecretKey",
                            &["kms:Decrypt", "kms:GenerateDataKey"],
                            key,
                            &["secretsmanager"],
                            region,
                        ),
                    ]
                }),
            ));
        }
        Function::Fraud => {
            let rules = output(step, "dynamodb-table:fraud-rules", "FraudRulesTableArn")?;
            let transactions = output(step, "dynamodb-table:transactions", "TransactionsTableArn")?;
            let key = output(step, "kms-key:dynamodb", "DynamoDbKmsKeyArn")?;
            policies.push((
                "data".to_owned(),
                json!({
                    "Version": "2012-10-17",
                    "Statement": [
                        statement(
                            "ReadFraudRules",
                            &["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:Query"],
                            json!(rules),
                        ),
                        statement(
                            "ReadCustomerHistory",
                            &["dynamodb:Query"],
                            json!(format!("{transactions}/index/{CUSTOMER_INDEX}")),
                        ),
                        kms_via("TablesKey", &["kms:Decrypt"], key, &["dynamodb"], region),
                    ]
                }),
            ));
        }
        Function::Transaction => {
            let table = output(step, "dynamodb-table:transactions", "TransactionsTableArn")?;
            let bucket = output(step, "s3-bucket:audit", "AuditBucketArn")?;
            let topic = output(
                step,
                "sns-topic:failed-transactions",
                "FailedTransactionsTopicArn",
            )?;
            let table_key = output(step, "kms-key:dynamodb", "DynamoDbKmsKeyArn")?;
            let bucket_key = output(step, "kms-key:s3", "S3KmsKeyArn")?;
            let logs_key = output(step, "kms-key:logs", "LogsKmsKeyArn")?;
            let parameters_key = output(step, "kms-key:parameters", "ParametersKmsKeyArn")?;
            let card_hash_key = cx.arn("ssm", &format!("parameter{path}/{PAN_HASH_KEY}"));
            policies.push((
                "data".to_owned(),
                json!({
                    "Version": "2012-10-17",
                    "Statement": [
                        // TransactWriteItems is authorised per item as
                        // PutItem; GetItem reads back a duplicate.
                        statement(
                            "WriteTransactionsOnce",
                            &["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:ConditionCheckItem"],
                            json!(table),
                        ),
                        statement(
                            "WriteAuditRecords",
                            &["s3:PutObject"],
                            json!(format!("{bucket}/{AUDIT_PREFIX}*")),
                        ),
                        statement("PublishFailures", &["sns:Publish"], json!(topic)),
                        kms_via(
                            "TableKey",
                            &["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                            table_key,
                            &["dynamodb"],
                            region,
                        ),
                        kms_via(
                            "AuditBucketKey",
                            &["kms:GenerateDataKey", "kms:Decrypt"],
                            bucket_key,
                            &["s3"],
                            region,
                        ),
                        // The failed-transactions topic is encrypted with the
                        // logs key.
                        kms_via(
                            "TopicKey",
                            &["kms:GenerateDataKey", "kms:Decrypt"],
                            logs_key,
                            &["sns"],
                            region,
                        ),
                        // The card-hash key, a SecureString: Parameter Store
                        // decrypts with the reader's permission and the
                        // parameter's ARN as encryption context, so this
                        // opens that one parameter only.
                        secure_parameter_key("CardHashKey", parameters_key, &card_hash_key, region),
                        // An env made before the parameters key has it under
                        // the logs key until `up` moves it; the function keeps
                        // reading it meanwhile. Remove once no env predates
                        // the parameters key.
                        secure_parameter_key("CardHashKeyBeforeItsOwnKey", logs_key, &card_hash_key, region),
                    ]
                }),
            ));
            // Payment events go to the env's bus only, and only while the env
            // has one. The bus's key needs no grant here: EventBridge, not
            // the producer, encrypts with it (its key policy names the bus).
            // Processed payments ask the queue consumer to settle them: send
            // to the processing queue only. SSE-KMS: SQS asks KMS for a data
            // key (and checks it with Decrypt) with the producer's
            // permissions on the queue's key, through SQS only (SQS
            // developer guide, sqs-key-management). One policy for the
            // backbone: each inline policy is one more read on every `up`.
            if cx.spec.events {
                let queue = output(step, CONSUMER_QUEUE_INPUT.0, CONSUMER_QUEUE_INPUT.1)?;
                let queue_key = output(step, EVENTS_KEY_INPUT.0, EVENTS_KEY_INPUT.1)?;
                policies.push((
                    "events".to_owned(),
                    json!({
                        "Version": "2012-10-17",
                        "Statement": [
                            statement(
                                "PublishPaymentEvents",
                                &["events:PutEvents"],
                                json!(cx.event_bus_arn()),
                            ),
                            statement("RequestSettlements", &["sqs:SendMessage"], json!(queue)),
                            // The transaction log's stream, by its
                            // deterministic ARN (the stream needs nothing
                            // from this role, nor this role from it).
                            statement(
                                "LogTransactions",
                                &["firehose:PutRecord"],
                                json!(cx.arn(
                                    "firehose",
                                    &format!("deliverystream/{}", cx.names.delivery_stream())
                                )),
                            ),
                            kms_via(
                                "ProcessingQueueKey",
                                &["kms:GenerateDataKey", "kms:Decrypt"],
                                queue_key,
                                &["sqs"],
                                region,
                            ),
                        ]
                    }),
                ));
            }
        }
    }
    Ok(policies)
}

/// The output the remediation is told as `variable` (the same the role
/// names).
fn remediation_input<'a>(step: &'a StepCx<'_>, variable: &str) -> Result<&'a str, AwsError> {
    let (_, (from, key)) = REMEDIATION_INPUTS
        .iter()
        .find(|(v, _)| *v == variable)
        .expect("a remediation input");
    output(step, from, key)
}

/// The remediation's one fix and its report: re-create the env's flow log
/// on the env's VPC, and publish to the env's alerts topic.
///
/// - `ec2:CreateFlowLogs` is authorised on the resource it watches (the
///   VPC) and on the flow log it creates (`vpc-flow-log/*`, whose id is
///   unknown before): only this VPC. Tags given at creation need
///   `ec2:CreateTags` too, allowed only as part of CreateFlowLogs
///   (`ec2:CreateAction`) [D:AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html].
/// - Publishing to CloudWatch Logs passes the delivery role to the service:
///   `iam:PassRole` of the flow-logs role only, only to VPC Flow Logs
///   [D:vpc/latest/userguide/flow-logs-iam-role.html, "Permission to pass
///   the role"].
/// - `ec2:DescribeFlowLogs` has no resource-level permissions: `*`.
/// - The topic is SSE-KMS with the logs key: SNS uses it with the
///   publisher's permissions, through SNS only.
fn remediation(cx: &Context, step: &StepCx<'_>) -> Result<Value, AwsError> {
    let vpc = remediation_input(step, "PAYOPS_VPC_ID")?;
    let flow_logs_role = remediation_input(step, "PAYOPS_FLOW_LOGS_ROLE_ARN")?;
    let topic = remediation_input(step, "PAYOPS_COMPLIANCE_TOPIC_ARN")?;
    let key = output(step, "kms-key:logs", "LogsKmsKeyArn")?;
    let flow_log = cx.arn("ec2", "vpc-flow-log/*");
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [
            statement(
                "RecreateTheEnvsFlowLog",
                &["ec2:CreateFlowLogs"],
                json!([cx.arn("ec2", &format!("vpc/{vpc}")), flow_log]),
            ),
            {
                "Sid": "TagTheFlowLogItCreates",
                "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": flow_log,
                "Condition": {"StringEquals": {"ec2:CreateAction": "CreateFlowLogs"}}
            },
            {
                "Sid": "PassTheFlowLogsRole",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": flow_logs_role,
                "Condition": {"StringEquals": {"iam:PassedToService": "vpc-flow-logs.amazonaws.com"}}
            },
            statement("ReadFlowLogs", &["ec2:DescribeFlowLogs"], json!("*")),
            statement("Report", &["sns:Publish"], json!(topic)),
            kms_via(
                "TopicKey",
                &["kms:GenerateDataKey", "kms:Decrypt"],
                key,
                &["sns"],
                &cx.region,
            ),
        ]
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::engine::Record;
    use crate::resources::testing;

    use super::*;

    const ACCT: &str = "123456789012";

    fn inputs(function: Function) -> Vec<(String, Record)> {
        let p = function.output_prefix();
        let mut v = vec![(
            function.log_step(),
            Record::default().output(
                format!("{p}LogGroupArn"),
                format!(
                    "arn:aws:logs:us-east-1:{ACCT}:log-group:/payops/pr1/lambda/{}",
                    function.slug()
                ),
            ),
        )];
        let table = format!("arn:aws:dynamodb:us-east-1:{ACCT}:table/payops-pr1-transactions");
        for (step, key, value) in [
            (
                "dynamodb-table:fraud-rules",
                "FraudRulesTableArn",
                format!("arn:aws:dynamodb:us-east-1:{ACCT}:table/payops-pr1-fraud-rules"),
            ),
            ("dynamodb-table:transactions", "TransactionsTableArn", table),
            (
                "s3-bucket:audit",
                "AuditBucketArn",
                "arn:aws:s3:::payops-pr1-audit".to_owned(),
            ),
            (
                "sns-topic:failed-transactions",
                "FailedTransactionsTopicArn",
                format!("arn:aws:sns:us-east-1:{ACCT}:payops-pr1-failed-transactions"),
            ),
            ("kms-key:dynamodb", "DynamoDbKmsKeyArn", "k-ddb".to_owned()),
            ("kms-key:s3", "S3KmsKeyArn", "k-s3".to_owned()),
            ("kms-key:logs", "LogsKmsKeyArn", "k-logs".to_owned()),
            (
                "kms-key:parameters",
                "ParametersKmsKeyArn",
                "k-parameters".to_owned(),
            ),
            ("kms-key:events", "EventsKmsKeyArn", "k-events".to_owned()),
            (
                "sqs-queue:payments-processing",
                "PaymentsProcessingQueueArn",
                format!("arn:aws:sqs:us-east-1:{ACCT}:payops-pr1-payments-processing"),
            ),
            ("db-proxy", "DbProxyResourceId", "prx-0abc".to_owned()),
            (
                "aurora-cluster",
                "DbMasterUsername",
                "payops_admin".to_owned(),
            ),
            (
                APP_SECRET_INPUT.0,
                APP_SECRET_INPUT.1,
                format!("arn:aws:secretsmanager:us-east-1:{ACCT}:secret:payops/pr1/db-app-GhIjKl"),
            ),
            ("vpc", "VpcId", "vpc-1".to_owned()),
            (
                "iam-role:flow-logs",
                "FlowLogsRoleArn",
                format!("arn:aws:iam::{ACCT}:role/payops-pr1-us-east-1-flow-logs"),
            ),
            (
                "sns-topic:system-errors",
                "SystemErrorsTopicArn",
                format!("arn:aws:sns:us-east-1:{ACCT}:payops-pr1-system-errors"),
            ),
        ] {
            v.push((step.to_owned(), Record::default().output(key, value)));
        }
        v
    }

    fn documents(function: Function) -> Vec<(String, Value)> {
        documents_with(function, inputs(function))
    }

    fn documents_with(function: Function, inputs: Vec<(String, Record)>) -> Vec<(String, Value)> {
        let cx = testing::context(testing::clients());
        let events = testing::Events::default();
        let id = crate::engine::StepId::from(function.role_step());
        let step = testing::step_cx(
            &id,
            inputs
                .into_iter()
                .map(|(k, r)| (crate::engine::StepId::from(k), r))
                .collect(),
            &events,
        );
        policies(function, &cx, &step).unwrap()
    }

    fn eni_actions(docs: &[(String, Value)]) -> Vec<String> {
        statements(docs)
            .iter()
            .flat_map(|s| strings(&s["Action"]))
            .filter(|a| a.starts_with("ec2:"))
            .collect()
    }

    #[test]
    fn only_functions_in_the_vpc_may_manage_network_interfaces() {
        for f in [Function::Validation, Function::Fraud, Function::Transaction] {
            assert!(
                eni_actions(&documents(f)).contains(&"ec2:DeleteNetworkInterface".to_owned()),
                "{f:?}"
            );
        }
        // The rotation function runs outside the VPC.
        assert_eq!(
            eni_actions(&documents(Function::Rotation)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn rotation_keeps_the_eni_permissions_while_its_old_group_is_there() {
        // An env made when rotation ran in the VPC: Lambda releases the
        // function's interfaces with this role after `up` takes it out.
        let mut with_old_group = inputs(Function::Rotation);
        with_old_group.push((
            "security-group:rotation".to_owned(),
            Record::default().resource("security_group", "sg-rotation"),
        ));
        let actions = eni_actions(&documents_with(Function::Rotation, with_old_group));
        assert!(
            actions.contains(&"ec2:DeleteNetworkInterface".to_owned()),
            "{actions:?}"
        );
        // Gone (its step recorded nothing): the permissions go too.
        let mut gone = inputs(Function::Rotation);
        gone.push(("security-group:rotation".to_owned(), Record::default()));
        assert!(eni_actions(&documents_with(Function::Rotation, gone)).is_empty());
    }

    fn statements(docs: &[(String, Value)]) -> Vec<Value> {
        docs.iter()
            .flat_map(|(_, d)| d["Statement"].as_array().unwrap().clone())
            .collect()
    }

    fn strings(v: &Value) -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn no_policy_grants_every_action_and_only_eni_and_xray_take_any_resource() {
        for f in Function::ALL {
            for s in statements(&documents(f)) {
                let actions = strings(&s["Action"]);
                assert!(
                    actions.iter().all(|a| a != "*" && !a.ends_with(":*")),
                    "{f:?}: {s}"
                );
                if strings(&s["Resource"]).contains(&"*".to_owned()) {
                    assert!(
                        actions.iter().all(|a| a.starts_with("ec2:")
                            || a.starts_with("xray:")
                            || a == "secretsmanager:GetRandomPassword"),
                        "{f:?}: `*` resource on {actions:?}"
                    );
                }
            }
        }
    }

    /// The remediation may fix the env's own VPC only (flow logs, created
    /// with the env's role) and report to the env's topic: nothing else.
    #[test]
    fn the_remediation_may_only_recreate_the_envs_flow_log_and_report() {
        let docs = documents(Function::Remediation);
        let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["logs", "runtime", "remediation"]);
        let all = statements(&docs);
        let by_sid = |sid: &str| -> Value {
            all.iter()
                .find(|s| s["Sid"] == sid)
                .unwrap_or_else(|| panic!("no {sid}"))
                .clone()
        };
        let create = by_sid("RecreateTheEnvsFlowLog");
        assert_eq!(strings(&create["Action"]), ["ec2:CreateFlowLogs"]);
        assert_eq!(
            strings(&create["Resource"]),
            [
                format!("arn:aws:ec2:us-east-1:{ACCT}:vpc/vpc-1"),
                format!("arn:aws:ec2:us-east-1:{ACCT}:vpc-flow-log/*"),
            ]
        );
        let tag = by_sid("TagTheFlowLogItCreates");
        assert_eq!(
            tag["Condition"]["StringEquals"]["ec2:CreateAction"],
            "CreateFlowLogs"
        );
        let pass = by_sid("PassTheFlowLogsRole");
        assert_eq!(
            strings(&pass["Resource"]),
            [format!(
                "arn:aws:iam::{ACCT}:role/payops-pr1-us-east-1-flow-logs"
            )]
        );
        assert_eq!(
            pass["Condition"]["StringEquals"]["iam:PassedToService"],
            "vpc-flow-logs.amazonaws.com"
        );
        assert_eq!(
            strings(&by_sid("Report")["Resource"]),
            [format!(
                "arn:aws:sns:us-east-1:{ACCT}:payops-pr1-system-errors"
            )]
        );
        // Nothing of the payment path: no data, no parameters, no VPC.
        for s in &all {
            for a in strings(&s["Action"]) {
                assert!(
                    !a.starts_with("dynamodb:")
                        && !a.starts_with("s3:")
                        && !a.starts_with("ssm:")
                        && a != "ec2:CreateNetworkInterface",
                    "{a}"
                );
            }
        }
    }

    #[test]
    fn only_transaction_processing_may_put_events_and_only_on_the_envs_bus() {
        let puts = |docs: &[(String, Value)]| -> Vec<Value> {
            statements(docs)
                .into_iter()
                .filter(|s| {
                    strings(&s["Action"])
                        .iter()
                        .any(|a| a.starts_with("events:"))
                })
                .collect()
        };
        let transaction = puts(&documents(Function::Transaction));
        assert_eq!(transaction.len(), 1, "{transaction:?}");
        assert_eq!(strings(&transaction[0]["Action"]), ["events:PutEvents"]);
        assert_eq!(
            strings(&transaction[0]["Resource"]),
            [format!(
                "arn:aws:events:us-east-1:{ACCT}:event-bus/payops-pr1-payments"
            )]
        );
        for f in [Function::Validation, Function::Fraud, Function::Rotation] {
            assert!(puts(&documents(f)).is_empty(), "{f:?}");
        }
        // Without the event backbone there is no bus to publish to.
        let mut cx = testing::context(testing::clients());
        cx.spec.events = false;
        let events = testing::Events::default();
        let id = crate::engine::StepId::from(Function::Transaction.role_step());
        let step = testing::step_cx(
            &id,
            inputs(Function::Transaction)
                .into_iter()
                .map(|(k, r)| (crate::engine::StepId::from(k), r))
                .collect(),
            &events,
        );
        let off = policies(Function::Transaction, &cx, &step).unwrap();
        assert!(puts(&off).is_empty());
    }

    #[test]
    fn transaction_processing_may_send_only_to_the_processing_queue_with_its_key_via_sqs() {
        let all = statements(&documents(Function::Transaction));
        let sends: Vec<&Value> = all
            .iter()
            .filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("sqs:")))
            .collect();
        assert_eq!(sends.len(), 1, "{sends:?}");
        assert_eq!(strings(&sends[0]["Action"]), ["sqs:SendMessage"]);
        assert_eq!(
            strings(&sends[0]["Resource"]),
            [format!(
                "arn:aws:sqs:us-east-1:{ACCT}:payops-pr1-payments-processing"
            )]
        );
        // A producer of an SSE-KMS queue needs GenerateDataKey and Decrypt
        // on the queue's key (SQS developer guide, sqs-key-management), and
        // only through SQS.
        let key = all
            .iter()
            .find(|s| s["Sid"] == "ProcessingQueueKey")
            .expect("a grant on the queue's key");
        assert_eq!(
            strings(&key["Action"]),
            ["kms:GenerateDataKey", "kms:Decrypt"]
        );
        assert_eq!(strings(&key["Resource"]), ["k-events"]);
        assert_eq!(
            key["Condition"]["StringEquals"]["kms:ViaService"],
            json!(["sqs.us-east-1.amazonaws.com"])
        );
        for f in [Function::Validation, Function::Fraud, Function::Rotation] {
            let text = serde_json::to_string(&statements(&documents(f))).unwrap();
            assert!(
                !text.contains("sqs:SendMessage") && !text.contains("k-events"),
                "{f:?}"
            );
        }
        // Without the event backbone: no queue, no grant (and its outputs,
        // absent then, are not read).
        let mut cx = testing::context(testing::clients());
        cx.spec.events = false;
        let events = testing::Events::default();
        let id = crate::engine::StepId::from(Function::Transaction.role_step());
        let without_backbone: BTreeMap<_, _> = inputs(Function::Transaction)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("sqs-queue:") && k != "kms-key:events")
            .map(|(k, r)| (crate::engine::StepId::from(k), r))
            .collect();
        let step = testing::step_cx(&id, without_backbone, &events);
        let off = policies(Function::Transaction, &cx, &step).unwrap();
        assert!(!serde_json::to_string(&off).unwrap().contains("sqs:"));
    }

    #[test]
    fn each_function_gets_exactly_its_own_resources() {
        let all = |f| {
            statements(&documents(f))
                .iter()
                .map(|s| s.to_string())
                .collect::<String>()
        };
        let validation = all(Function::Validation);
        assert!(validation.contains("/payops/pr1/lambda/payment-validation:*"));
        assert!(validation.contains("rds-db:connect"), "{validation}");
        assert!(
            validation.contains("arn:aws:rds-db:us-east-1:123456789012:dbuser:prx-0abc/payops_app"),
            "{validation}"
        );
        for f in [Function::Fraud, Function::Transaction, Function::Rotation] {
            assert!(
                !all(f).contains("rds-db:"),
                "{f:?} may connect to the database"
            );
        }
        // The migration: the master user through this proxy, nothing else
        // of the database, payops_app's secret (never the master's) and its
        // key through Secrets Manager, no parameter.
        let migration = all(Function::Migration);
        let reads: Vec<Value> = statements(&documents(Function::Migration))
            .into_iter()
            .filter(|s| {
                strings(&s["Action"])
                    .iter()
                    .any(|a| a.starts_with("secretsmanager:"))
            })
            .collect();
        assert_eq!(reads.len(), 1, "{reads:?}");
        assert_eq!(
            strings(&reads[0]["Action"]),
            ["secretsmanager:GetSecretValue"]
        );
        assert_eq!(
            strings(&reads[0]["Resource"]),
            [format!(
                "arn:aws:secretsmanager:us-east-1:{ACCT}:secret:payops/pr1/db-app-GhIjKl"
            )]
        );
        assert!(!migration.contains("db-master"), "{migration}");
        let key = statements(&documents(Function::Migration))
            .into_iter()
            .find(|s| s["Sid"] == "SecretKey")
            .expect("the secret's key");
        assert_eq!(strings(&key["Action"]), ["kms:Decrypt"]);
        assert_eq!(strings(&key["Resource"]), ["k-logs"]);
        assert_eq!(
            key["Condition"]["StringEquals"]["kms:ViaService"],
            json!(["secretsmanager.us-east-1.amazonaws.com"])
        );
        assert!(
            migration
                .contains("arn:aws:rds-db:us-east-1:123456789012:dbuser:prx-0abc/payops_admin"),
            "{migration}"
        );
        assert!(
            migration.contains("arn:aws:rds-db:us-east-1:123456789012:dbuser:prx-0abc/payops_app"),
            "{migration}"
        );
        for other in ["ssm:", "kms:Encrypt", "dynamodb:", "s3:", "sns:", "rds:"] {
            assert!(!migration.contains(other), "migration has {other}");
        }
        for other in ["dynamodb:", "s3:", "sns:", "kms:", "fraud-detection"] {
            assert!(!validation.contains(other), "validation has {other}");
        }
        let fraud = all(Function::Fraud);
        assert!(fraud.contains("table/payops-pr1-transactions/index/customerId-timestamp-index"));
        assert!(fraud.contains("table/payops-pr1-fraud-rules"));
        for other in ["dynamodb:PutItem", "s3:", "sns:", "k-logs"] {
            assert!(!fraud.contains(other), "fraud has {other}");
        }
        let transaction = all(Function::Transaction);
        assert!(transaction.contains("arn:aws:s3:::payops-pr1-audit/audit/transactions/*"));
        assert!(transaction.contains("payops-pr1-failed-transactions"));
        assert!(!transaction.contains("fraud-rules"));
        // Keys through their service only: the topic's via SNS; the
        // card-hash SecureString's via Parameter Store and for that one
        // parameter (its ARN is Parameter Store's encryption context), with
        // the parameters key and, until `up` moves an older env's value, the
        // logs key.
        let by_sid = |sid: &str| {
            statements(&documents(Function::Transaction))
                .into_iter()
                .find(|s| s["Sid"] == sid)
                .unwrap_or_else(|| panic!("no {sid}"))
        };
        let topic = by_sid("TopicKey");
        assert_eq!(topic["Resource"], "k-logs");
        assert_eq!(
            topic["Condition"]["StringEquals"]["kms:ViaService"],
            json!(["sns.us-east-1.amazonaws.com"])
        );
        let card_hash =
            format!("arn:aws:ssm:us-east-1:{ACCT}:parameter/payops/pr1/secure/PanHashKey");
        for (sid, key) in [
            ("CardHashKey", "k-parameters"),
            ("CardHashKeyBeforeItsOwnKey", "k-logs"),
        ] {
            let grant = by_sid(sid);
            assert_eq!(grant["Resource"], key, "{sid}");
            assert_eq!(grant["Action"], json!(["kms:Decrypt"]), "{sid}");
            assert_eq!(
                grant["Condition"]["StringEquals"],
                json!({
                    "kms:ViaService": ["ssm.us-east-1.amazonaws.com"],
                    "kms:EncryptionContext:PARAMETER_ARN": card_hash,
                }),
                "{sid}"
            );
        }
        for f in [
            Function::Validation,
            Function::Fraud,
            Function::QueueConsumer,
        ] {
            assert!(!all(f).contains("k-parameters"), "{f:?} may read secrets");
        }
        // Configuration: the env's path only, never another env's.
        assert!(transaction.contains(&format!(
            "arn:aws:ssm:us-east-1:{ACCT}:parameter/payops/pr1\""
        )));
        assert!(!transaction.contains("parameter/payops/pr1*"));
    }

    /// The names a handler passes to `lib.config(...)`, `*lib.PAYMENT_SETTINGS`
    /// expanded from payops_lib.py.
    fn names_in_handler(source: &str, library: &str) -> BTreeSet<String> {
        let quoted = |text: &str| -> Vec<String> {
            text.split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let settings = library
            .split_once("PAYMENT_SETTINGS = (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(inside, _)| quoted(inside))
            .expect("PAYMENT_SETTINGS in payops_lib.py");
        let (_, call) = source.split_once("lib.config(").expect("a lib.config call");
        let (args, _) = call.split_once(')').expect("a closed call");
        let mut names: BTreeSet<String> = quoted(args).into_iter().collect();
        if args.contains("*lib.PAYMENT_SETTINGS") {
            names.extend(settings);
        }
        names
    }

    #[test]
    fn each_function_may_read_exactly_the_parameters_its_handler_asks_for() {
        let library = include_str!("../../../lambda/payops_lib.py");
        for (function, source) in [
            (
                Function::Validation,
                include_str!("../../../lambda/payment_validation.py"),
            ),
            (
                Function::Fraud,
                include_str!("../../../lambda/fraud_detection.py"),
            ),
            (
                Function::Transaction,
                include_str!("../../../lambda/transaction_processing.py"),
            ),
            (
                Function::QueueConsumer,
                include_str!("../../../lambda/payment_queue_consumer.py"),
            ),
        ] {
            let asked = names_in_handler(source, library);
            let allowed: BTreeSet<String> = parameters(function)
                .iter()
                .map(|n| (*n).to_owned())
                .collect();
            assert_eq!(asked, allowed, "{function:?}");
            let read = statements(&documents(function))
                .into_iter()
                .find(|s| s["Sid"] == "ReadConfiguration")
                .expect("a ReadConfiguration statement");
            let resources = strings(&read["Resource"]);
            assert_eq!(resources.len(), allowed.len(), "{function:?}");
            for name in &allowed {
                assert!(
                    resources.contains(&format!(
                        "arn:aws:ssm:us-east-1:{ACCT}:parameter/payops/pr1/{name}"
                    )),
                    "{function:?} {name}: {resources:?}"
                );
            }
        }
        // Only transaction processing may read the card-hashing key.
        for f in [
            Function::Validation,
            Function::Fraud,
            Function::QueueConsumer,
        ] {
            assert!(!parameters(f).iter().any(|n| n.starts_with("secure/")));
        }
    }

    #[test]
    fn the_queue_consumer_may_consume_only_the_processing_queue_and_settle_transactions() {
        let all = statements(&documents(Function::QueueConsumer));
        let by_sid = |sid: &str| -> Value {
            all.iter()
                .find(|s| s["Sid"] == sid)
                .unwrap_or_else(|| panic!("no {sid} in {all:?}"))
                .clone()
        };
        // What Lambda validates at CreateEventSourceMapping, on one queue.
        let consume = by_sid("ConsumeTheProcessingQueue");
        let mut actions = strings(&consume["Action"]);
        actions.sort();
        assert_eq!(
            actions,
            [
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage"
            ]
        );
        assert_eq!(
            strings(&consume["Resource"]),
            [format!(
                "arn:aws:sqs:us-east-1:{ACCT}:payops-pr1-payments-processing"
            )]
        );
        // SSE-KMS: decrypt only, with the queue's key, through SQS only.
        let key = by_sid("QueueKey");
        assert_eq!(strings(&key["Action"]), ["kms:Decrypt"]);
        assert_eq!(strings(&key["Resource"]), ["k-events"]);
        assert_eq!(
            key["Condition"]["StringEquals"]["kms:ViaService"],
            json!(["sqs.us-east-1.amazonaws.com"])
        );
        let settle = by_sid("SettleTransactions");
        assert_eq!(
            strings(&settle["Action"]),
            ["dynamodb:GetItem", "dynamodb:UpdateItem"]
        );
        let actions: Vec<String> = all.iter().flat_map(|s| strings(&s["Action"])).collect();
        for never in [
            "sqs:SendMessage",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            "ssm:GetParametersByPath",
            "events:PutEvents",
        ] {
            assert!(!actions.contains(&never.to_owned()), "{never}");
        }
        // It runs in the VPC: Lambda manages its interfaces with this role.
        assert!(!eni_actions(&documents(Function::QueueConsumer)).is_empty());
    }

    #[test]
    fn rotation_may_touch_only_this_envs_secret_and_cluster_and_reads_no_configuration() {
        let all = statements(&documents(Function::Rotation));
        let resources: Vec<String> = all.iter().flat_map(|s| strings(&s["Resource"])).collect();
        assert!(resources.contains(&format!(
            "arn:aws:secretsmanager:us-east-1:{ACCT}:secret:payops/pr1/db-master-??????"
        )));
        assert!(resources.contains(&format!(
            "arn:aws:rds:us-east-1:{ACCT}:cluster:payops-pr1-aurora"
        )));
        let actions: Vec<String> = all.iter().flat_map(|s| strings(&s["Action"])).collect();
        assert!(actions.contains(&"rds:ModifyDBCluster".to_owned()));
        assert!(
            !actions.iter().any(|a| a.starts_with("ssm:")),
            "{actions:?}"
        );
        assert!(!actions.contains(&"secretsmanager:DeleteSecret".to_owned()));
    }
}
