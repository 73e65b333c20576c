//! The batch tier (`--batch on`): an EC2 Auto Scaling group of Graviton
//! instances in the private subnets that runs the nightly settlement report
//! (`batch/settlement_report.py`) from the transactions table to the audit
//! bucket. Its role, instance profile, log group, launch template, group and
//! target-tracking policies; its security group is the network domain's,
//! its EBS key the security domain's, its alarms the observability domain's.
//! Optional per env like the event backbone: the steps stay in the graph and
//! are not wanted with `--batch off` (`up` removes them).

pub mod autoscaling_group;
pub mod instance_profile;
pub mod launch_template;
pub mod scaling_policy;
pub mod user_data;

use serde_json::json;

use crate::resources::common::iam_role::Role;
use crate::resources::common::log_group::LogGroup;

use super::registry::{Registry, dep};

const ROLE_STEP: &str = "iam-role:batch";
const LOG_GROUP_STEP: &str = "log-group:batch";
const LOG_GROUP_ARN: (&str, &str) = (LOG_GROUP_STEP, "BatchLogGroupArn");
const TABLE_ARN: (&str, &str) = ("dynamodb-table:transactions", "TransactionsTableArn");
const BUCKET_ARN: (&str, &str) = ("s3-bucket:audit", "AuditBucketArn");
const TABLE_KEY: (&str, &str) = ("kms-key:dynamodb", "DynamoDbKmsKeyArn");
const BUCKET_KEY: (&str, &str) = ("kms-key:s3", "S3KmsKeyArn");
/// Where the report goes in the audit bucket (and all the role may write).
pub const REPORT_PREFIX: &str = "settlement-reports/";

/// The actions of AWS's AmazonSSMManagedInstanceCore (so operators reach the
/// instances through Session Manager, with no SSH and no inbound rule), as
/// named actions: payops attaches no managed policy (see iam_role.rs). AWS
/// scopes them to `*` itself: they act on the calling instance.
const SSM_CORE_ACTIONS: [&str; 22] = [
    "ssm:DescribeAssociation",
    "ssm:GetDeployablePatchSnapshotForInstance",
    "ssm:GetDocument",
    "ssm:DescribeDocument",
    "ssm:GetManifest",
    "ssm:ListAssociations",
    "ssm:ListInstanceAssociations",
    "ssm:PutInventory",
    "ssm:PutComplianceItems",
    "ssm:PutConfigurePackageResult",
    "ssm:UpdateAssociationStatus",
    "ssm:UpdateInstanceAssociationStatus",
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
];

/// The instances' role: Session Manager, the agent's metrics and logs, and
/// exactly the data the report reads and writes.
pub fn batch_role() -> Role {
    Role::new(
        "batch",
        "ec2.amazonaws.com",
        "Lets this payops env's batch instances run the settlement report and be managed by SSM",
        "Batch",
    )
    .trusting_ec2_instances()
    .wanted_when(|cx| cx.spec.batch.on)
    .with_policies(|cx, step| {
        let log_group = step.output(LOG_GROUP_ARN.0, LOG_GROUP_ARN.1)?;
        let table = step.output(TABLE_ARN.0, TABLE_ARN.1)?;
        let bucket = step.output(BUCKET_ARN.0, BUCKET_ARN.1)?;
        let table_key = step.output(TABLE_KEY.0, TABLE_KEY.1)?;
        let bucket_key = step.output(BUCKET_KEY.0, BUCKET_KEY.1)?;
        let via = |service: &str| format!("{service}.{}.amazonaws.com", cx.region);
        Ok(vec![
            (
                "managed-instance".to_owned(),
                json!({
                    "Version": "2012-10-17",
                    "Statement": [
                        { "Sid": "SessionManager", "Effect": "Allow", "Action": SSM_CORE_ACTIONS, "Resource": "*" },
                        {
                            // The agent's memory metric only.
                            "Sid": "AgentMetrics",
                            "Effect": "Allow",
                            "Action": "cloudwatch:PutMetricData",
                            "Resource": "*",
                            "Condition": { "StringEquals": { "cloudwatch:namespace": user_data::AGENT_NAMESPACE } }
                        },
                        {
                            "Sid": "ReportLog",
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                            "Resource": [log_group, format!("{log_group}:*")]
                        }
                    ]
                }),
            ),
            (
                "settlement-report".to_owned(),
                json!({
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ReadProcessedPaymentsByStatus",
                            "Effect": "Allow",
                            "Action": "dynamodb:Query",
                            "Resource": [table, format!("{table}/index/status-timestamp-index")]
                        },
                        {
                            "Sid": "WriteTheReport",
                            "Effect": "Allow",
                            "Action": "s3:PutObject",
                            "Resource": format!("{bucket}/{REPORT_PREFIX}*")
                        },
                        {
                            "Sid": "TableKey",
                            "Effect": "Allow",
                            "Action": "kms:Decrypt",
                            "Resource": table_key,
                            "Condition": { "StringEquals": { "kms:ViaService": via("dynamodb") } }
                        },
                        {
                            "Sid": "BucketKey",
                            "Effect": "Allow",
                            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                            "Resource": bucket_key,
                            "Condition": { "StringEquals": { "kms:ViaService": via("s3") } }
                        }
                    ]
                }),
            ),
        ])
    })
}

pub fn register(r: &mut Registry) {
    use launch_template as lt;
    r.add(
        LOG_GROUP_STEP,
        LogGroup::new("batch", 30, "Batch").wanted_when(|cx| cx.spec.batch.on),
        vec![dep(
            "kms-key:logs",
            "the group is encrypted with the logs key, whose policy lets CloudWatch Logs use it",
        )],
    );
    r.add(
        ROLE_STEP,
        batch_role(),
        vec![
            dep(
                LOG_GROUP_STEP,
                "the role's policy names the log group's ARN",
            ),
            dep(
                TABLE_ARN.0,
                "the role may query the transactions table's ARN",
            ),
            dep(
                BUCKET_ARN.0,
                "the role may write reports under the audit bucket's ARN",
            ),
            dep(
                TABLE_KEY.0,
                "the role may decrypt with the table's key, through DynamoDB",
            ),
            dep(
                BUCKET_KEY.0,
                "the role may encrypt with the bucket's key, through S3",
            ),
        ],
    );
    r.add(
        instance_profile::STEP,
        instance_profile::InstanceProfile,
        vec![dep(
            ROLE_STEP,
            "the profile holds the role (and down removes it from the profile before the role goes)",
        )],
    );
    r.add(
        lt::STEP,
        lt::LaunchTemplate,
        vec![
            dep(lt::PROFILE_INPUT.0, "the template names the instance profile's ARN"),
            dep(lt::SG_INPUT.0, "the instances are in the batch security group"),
            dep(
                lt::KEY_INPUT.0,
                "the root volume is encrypted with the EBS key, whose policy lets Auto Scaling use it",
            ),
            dep(LOG_GROUP_STEP, "the user data sends the report's log to the group"),
            dep(lt::TABLE_INPUT.0, "the user data names the transactions table"),
            dep(lt::BUCKET_INPUT.0, "the user data names the audit bucket"),
        ],
    );
    r.add(
        autoscaling_group::STEP,
        autoscaling_group::AutoScalingGroupStep,
        vec![
            dep(
                lt::STEP,
                "the group launches an explicit version of the template (and down deletes the \
                 group, with its instances, before the template, profile, role and group)",
            ),
            dep(
                autoscaling_group::SUBNETS_INPUT.0,
                "the instances run in the private subnets",
            ),
        ],
    );
    for metric in scaling_policy::Metric::ALL {
        r.add(
            metric.step_id(),
            scaling_policy::ScalingPolicy::new(metric),
            vec![dep(autoscaling_group::STEP, "the policy scales the group")],
        );
    }
}
