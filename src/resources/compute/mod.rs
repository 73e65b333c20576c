//! Compute: the payment functions (code shipped in the binary), their roles
//! and log groups, and the wait for their network interfaces on teardown.

pub mod event_source_mapping;
pub mod function_roles;
pub mod lambda_code;
pub mod lambda_enis;
pub mod lambda_function;
#[rustfmt::skip]
mod vendored_driver;

use super::model::{Function, REMEDIATION_INPUTS, SgRole};
use super::registry::{Registry, dep, function_config_deps};

pub fn register(r: &mut Registry) {
    // Compute: the payment functions. Each gets a log group payops creates
    // first (so its retention and KMS key are ours, not Lambda's defaults) and
    // a role allowed exactly what the function touches.
    for f in Function::ALL {
        r.add(
            f.log_step(),
            lambda_function::log_group(f),
            vec![dep(
                "kms-key:logs",
                "the group is encrypted with the logs key, whose policy lets CloudWatch Logs use it",
            )],
        );
    }
    let own_log_group = |f: Function| {
        dep(
            f.log_step(),
            "the role may write only to the function's own log group (its ARN is in the policy)",
        )
    };
    r.add(
        Function::Validation.role_step(),
        function_roles::role(Function::Validation),
        vec![
            own_log_group(Function::Validation),
            dep(
                "db-proxy",
                "the role may connect to the database through the proxy only (its id is in \
                 the rds-db:connect grant)",
            ),
        ],
    );
    r.add(
        Function::Fraud.role_step(),
        function_roles::role(Function::Fraud),
        vec![
            own_log_group(Function::Fraud),
            dep(
                "dynamodb-table:fraud-rules",
                "the role may read the fraud-rules table (its ARN is in the policy)",
            ),
            dep(
                "dynamodb-table:transactions",
                "the role may query the transactions table's customer index only",
            ),
            dep(
                "kms-key:dynamodb",
                "the role may decrypt with the tables' key, through DynamoDB only",
            ),
        ],
    );
    r.add(
        Function::Transaction.role_step(),
        function_roles::role(Function::Transaction),
        vec![
            own_log_group(Function::Transaction),
            dep(
                "dynamodb-table:transactions",
                "the role may write transactions (the table's ARN is in the policy)",
            ),
            dep(
                "s3-bucket:audit",
                "the role may write audit records under the bucket's audit prefix",
            ),
            dep(
                "sns-topic:failed-transactions",
                "the role may publish failed payments to this topic",
            ),
            dep(
                "kms-key:dynamodb",
                "the role may use the tables' key, through DynamoDB only",
            ),
            dep(
                "kms-key:s3",
                "the role may encrypt audit records with the bucket's key, through S3 only",
            ),
            dep(
                "kms-key:logs",
                "the role may use the failed-transactions topic's key, through SNS only",
            ),
            dep(
                "kms-key:parameters",
                "the role may decrypt the card-hash SecureString (and that parameter only) with \
                 the parameters key, through Parameter Store",
            ),
            dep(
                function_roles::CONSUMER_QUEUE_INPUT.0,
                "with the event backbone, the role may send settlement requests to the \
                 processing queue only (its ARN is in the policy)",
            ),
            dep(
                function_roles::EVENTS_KEY_INPUT.0,
                "with the event backbone, the role may encrypt messages for the processing \
                 queue with the events key, through SQS only",
            ),
        ],
    );
    r.add(
        Function::QueueConsumer.role_step(),
        function_roles::role(Function::QueueConsumer),
        vec![
            own_log_group(Function::QueueConsumer),
            dep(
                function_roles::CONSUMER_QUEUE_INPUT.0,
                "the role may consume the processing queue only (its ARN is in the policy)",
            ),
            dep(
                function_roles::EVENTS_KEY_INPUT.0,
                "the role may decrypt the queue's messages with the events key, through SQS only",
            ),
            dep(
                "dynamodb-table:transactions",
                "the role may settle transactions (the table's ARN is in the policy)",
            ),
            dep(
                "kms-key:dynamodb",
                "the role may use the tables' key, through DynamoDB only",
            ),
        ],
    );
    r.add(
        Function::Migration.role_step(),
        function_roles::role(Function::Migration),
        vec![
            own_log_group(Function::Migration),
            dep(
                "db-proxy",
                "the role may connect to the database through the proxy only (its id is in \
                 the rds-db:connect grant)",
            ),
            dep(
                function_roles::MASTER_USER_INPUT.0,
                "the migration logs in as the cluster's master user, whom the grant names",
            ),
            dep(
                function_roles::APP_SECRET_INPUT.0,
                "the role may read payops_app's secret only (its ARN is in the policy)",
            ),
            dep(
                "kms-key:logs",
                "the role may decrypt payops_app's secret with its key, through Secrets \
                 Manager only",
            ),
        ],
    );
    r.add(
        Function::LogTransform.role_step(),
        function_roles::role(Function::LogTransform),
        vec![own_log_group(Function::LogTransform)],
    );
    r.add(
        Function::Remediation.role_step(),
        function_roles::role(Function::Remediation),
        vec![
            own_log_group(Function::Remediation),
            dep(
                "vpc",
                "the role may create flow logs on the env's VPC only (its id is in the policy)",
            ),
            dep(
                "iam-role:flow-logs",
                "the role may pass the flow-logs role only, and only to VPC Flow Logs",
            ),
            dep(
                "sns-topic:system-errors",
                "the role may publish its reports to this topic only",
            ),
            dep(
                "kms-key:logs",
                "the topic is encrypted with the logs key, which the role may use through SNS only",
            ),
        ],
    );
    r.add(
        Function::Rotation.role_step(),
        function_roles::role(Function::Rotation),
        vec![
            own_log_group(Function::Rotation),
            dep(
                "kms-key:logs",
                "the role may decrypt and encrypt the secret's values with the logs/secrets key",
            ),
            dep(
                SgRole::Rotation.step_id(),
                "while the function's group from before it left the VPC is there, Lambda may \
                 still hold interfaces in it and releases them with this role: it keeps the \
                 ENI permissions until then",
            ),
        ],
    );
    // The wait covers every group a function uses or used (the model says
    // which), and every function's role: on teardown no role goes while
    // Lambda may still need it to release an interface.
    let mut eni_deps: Vec<_> = SgRole::of_functions()
        .into_iter()
        .map(|g| {
            dep(
                g.step_id(),
                "the functions' network interfaces use this group (or used it, in an env an \
                 older payops made): on teardown it can go only after Lambda released them \
                 (20-45 minutes on AWS)",
            )
        })
        .collect();
    eni_deps.push(dep(
        "subnets:private",
        "the functions' network interfaces are in these subnets: on teardown they can go \
         only after Lambda released them",
    ));
    eni_deps.extend(Function::ALL.map(|f| {
        dep(
            f.role_step(),
            "Lambda releases the network interfaces with the function's role: on teardown the \
             roles stay until the interfaces are gone",
        )
    }));
    r.add_step(lambda_enis::LambdaEnis::new("lambda-enis", eni_deps));
    for f in Function::ALL {
        let mut deps = vec![
            dep(f.role_step(), "the function runs with this role"),
            dep(
                f.log_step(),
                "the function logs to this group, which must exist (with retention and KMS) \
                 before Lambda would create one of its own",
            ),
        ];
        if let Some(group) = f.security_group() {
            deps.extend([
                dep(
                    "subnets:private",
                    "the function's network interfaces go in the private subnets",
                ),
                dep(
                    group.step_id(),
                    "the function's network interfaces use its security group",
                ),
                dep(
                    "security-group-rules",
                    "the group's egress rules let the function reach the AWS APIs it calls",
                ),
            ]);
        }
        if f == Function::Remediation {
            deps.extend(REMEDIATION_INPUTS.iter().map(|(_, (from, _))| {
                dep(
                    *from,
                    "the function is told this id in its environment (what it may fix, where it \
                     reports)",
                )
            }));
        }
        deps.push(dep(
            "lambda-enis",
            if f.security_group().is_some() {
                "on teardown the functions go first, then the wait for their network \
                 interfaces"
            } else {
                "on teardown the function goes first (an env an older payops made may still \
                 have it in the VPC), then the wait for its network interfaces"
            },
        ));
        r.add(f.step_id(), lambda_function::LambdaFunction::new(f), deps);
    }
    r.add(
        event_source_mapping::STEP,
        event_source_mapping::QueueConsumerMapping,
        vec![
            dep(
                Function::QueueConsumer.step_id(),
                "the mapping invokes this function (and down deletes the mapping before the \
                 function, so Lambda stops polling for it first)",
            ),
            dep(
                event_source_mapping::QUEUE_INPUT.0,
                "the mapping reads this queue, whose visibility timeout Lambda checks against \
                 the function's timeout (and down deletes the mapping before the queue)",
            ),
            dep(
                Function::QueueConsumer.role_step(),
                "Lambda checks at creation that the function's role may receive from the \
                 queue: its policy must be in place first",
            ),
        ]
        .into_iter()
        .chain(function_config_deps())
        .collect(),
    );
}
