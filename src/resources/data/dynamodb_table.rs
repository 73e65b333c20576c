//! The env's DynamoDB tables: transactions (queried by customer and by status,
//! streamed to the processors) and fraud rules. On-demand, encrypted with the
//! env's DynamoDB key, point-in-time recovery on.
//!
//! DynamoDB runs one update per table at a time and refuses the next while the
//! table or an index is still changing, so every UpdateTable below waits for
//! the table and its indexes to be ACTIVE before and after it.

// Not yet in `graph()` (the lead registers it); until then only the tests
// use it. Remove this once registered.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::operation::update_table::builders::UpdateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, Projection, ProjectionType,
    ScalarAttributeType, SseSpecification, SseStatus, SseType, StreamSpecification, StreamViewType,
    TableDescription, TableStatus, Tag,
};

use crate::aws::{
    AwsError, Budget, OpResult, Poll, absent_on, built, poll_until, required, retry_on_codes,
    waited,
};
use crate::engine::{Record, StepCx};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::dynamodb;
use crate::tags::describe_tag_fix;

const KEY_INPUT: (&str, &str) = ("kms-key:dynamodb", "DynamoDbKmsKeyArn");

/// A global secondary index: every one of ours is sorted by time.
struct Index {
    name: &'static str,
    partition_key: &'static str,
    sort_key: &'static str,
}

const TRANSACTION_INDEXES: &[Index] = &[
    Index {
        name: "customerId-timestamp-index",
        partition_key: "customerId",
        sort_key: "timestamp",
    },
    Index {
        name: "status-timestamp-index",
        partition_key: "status",
        sort_key: "timestamp",
    },
];

pub struct Table {
    /// The name's suffix (`payops-<env>-<name>`).
    name: &'static str,
    /// Prefix of the output keys (`TransactionsTableName`, ...).
    outputs: &'static str,
    partition_key: &'static str,
    /// ISO-8601 strings sort chronologically as strings.
    sort_key: Option<&'static str>,
    indexes: &'static [Index],
    stream: Option<StreamViewType>,
    /// Off by default so `down` can remove short-lived envs; `--protect` turns
    /// it on for envs that hold data worth keeping.
    pub deletion_protection: bool,
}

impl Table {
    pub fn transactions() -> Self {
        Self {
            name: "transactions",
            outputs: "Transactions",
            partition_key: "transactionId",
            sort_key: Some("timestamp"),
            indexes: TRANSACTION_INDEXES,
            // The processors need both images to see what a change changed.
            stream: Some(StreamViewType::NewAndOldImages),
            deletion_protection: false,
        }
    }

    pub fn fraud_rules() -> Self {
        Self {
            name: "fraud-rules",
            outputs: "FraudRules",
            partition_key: "ruleId",
            sort_key: None,
            indexes: &[],
            stream: None,
            deletion_protection: false,
        }
    }

    fn table_name(&self, cx: &Context) -> String {
        cx.names.table(self.name)
    }

    /// (attribute, HASH/RANGE) of the table's primary key.
    fn key_schema(&self) -> Vec<(&'static str, KeyType)> {
        let mut keys = vec![(self.partition_key, KeyType::Hash)];
        keys.extend(self.sort_key.map(|k| (k, KeyType::Range)));
        keys
    }

    /// Every attribute a key of the table or of its indexes uses (all strings).
    fn key_attributes(&self) -> Vec<&'static str> {
        let mut names: Vec<&str> = self.key_schema().into_iter().map(|(n, _)| n).collect();
        for index in self.indexes {
            names.extend([index.partition_key, index.sort_key]);
        }
        names.sort_unstable();
        names.dedup();
        names
    }
}

fn index_keys(index: &Index) -> [(&'static str, KeyType); 2] {
    [
        (index.partition_key, KeyType::Hash),
        (index.sort_key, KeyType::Range),
    ]
}

pub struct FoundTable {
    name: String,
    arn: String,
    desc: TableDescription,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    PointInTimeRecovery,
    DeletionProtection(bool),
    BillingMode,
    Encryption {
        key_arn: String,
    },
    Stream {
        from: Option<StreamViewType>,
        to: Option<StreamViewType>,
    },
    AddIndex(&'static str),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::PointInTimeRecovery => f.write_str("turn on point-in-time recovery"),
            Self::DeletionProtection(true) => f.write_str("turn on deletion protection"),
            Self::DeletionProtection(false) => f.write_str("turn off deletion protection"),
            Self::BillingMode => f.write_str("switch to on-demand (PAY_PER_REQUEST) billing"),
            Self::Encryption { .. } => f.write_str("encrypt with the env's DynamoDB KMS key"),
            Self::Stream {
                from: None,
                to: Some(to),
            } => {
                write!(f, "enable the stream ({})", to.as_str())
            }
            Self::Stream {
                from: Some(_),
                to: None,
            } => f.write_str("disable the stream"),
            Self::Stream {
                from: Some(from),
                to: Some(to),
            } => write!(
                f,
                "change the stream view type from {} to {}: DynamoDB cannot change it in place, \
                 so the stream is disabled first (consumers get a new stream ARN and lose \
                 unread records)",
                from.as_str(),
                to.as_str()
            ),
            Self::Stream {
                from: None,
                to: None,
            } => f.write_str("leave the stream off"),
            Self::AddIndex(name) => write!(
                f,
                "create index {name} (DynamoDB backfills it from existing items: can take a while)"
            ),
        }
    }
}

fn key_elements(
    op: &'static str,
    keys: &[(&str, KeyType)],
) -> Result<Vec<KeySchemaElement>, AwsError> {
    keys.iter()
        .map(|(name, kind)| {
            built(
                op,
                KeySchemaElement::builder()
                    .attribute_name(*name)
                    .key_type(kind.clone())
                    .build(),
            )
        })
        .collect()
}

fn string_attribute(op: &'static str, name: &str) -> Result<AttributeDefinition, AwsError> {
    built(
        op,
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build(),
    )
}

fn sse(key_arn: &str) -> SseSpecification {
    SseSpecification::builder()
        .enabled(true)
        .sse_type(SseType::Kms)
        .kms_master_key_id(key_arn)
        .build()
}

fn stream_spec(
    op: &'static str,
    view: Option<&StreamViewType>,
) -> Result<StreamSpecification, AwsError> {
    built(
        op,
        StreamSpecification::builder()
            .stream_enabled(view.is_some())
            .set_stream_view_type(view.cloned())
            .build(),
    )
}

fn what(name: &str) -> String {
    format!("DynamoDB table {name}")
}

/// Whether `actual` is exactly the (attribute, key type) pairs of `want`.
fn same_keys(actual: &[KeySchemaElement], want: &[(&str, KeyType)]) -> bool {
    actual.len() == want.len()
        && want.iter().all(|(name, kind)| {
            actual
                .iter()
                .any(|k| k.attribute_name() == *name && k.key_type() == kind)
        })
}

fn show_keys(keys: &[KeySchemaElement]) -> String {
    keys.iter()
        .map(|k| format!("{} {}", k.attribute_name(), k.key_type().as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_wanted(keys: &[(&str, KeyType)]) -> String {
    keys.iter()
        .map(|(n, k)| format!("{n} {}", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn stream_view(desc: &TableDescription) -> Option<StreamViewType> {
    desc.stream_specification()
        .filter(|s| s.stream_enabled())
        .and_then(|s| s.stream_view_type().cloned())
}

async fn describe(cx: &Context, name: &str) -> Result<Option<TableDescription>, AwsError> {
    let out = cx
        .clients
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .op("dynamodb:DescribeTable");
    Ok(absent_on(out, &["ResourceNotFoundException"])?.and_then(|o| o.table().cloned()))
}

async fn wait_gone(cx: &Context, name: &str) -> Result<(), AwsError> {
    let done = cx
        .clients
        .dynamodb
        .wait_until_table_not_exists()
        .table_name(name)
        .wait(cx.budgets.table)
        .await;
    waited(
        done,
        &format!("table {name} to be deleted"),
        cx.budgets.table,
    )?;
    Ok(())
}

/// Waits until the table and every index are ACTIVE: the only state in which
/// DynamoDB accepts the next update.
async fn settle(cx: &Context, step: &StepCx<'_>, name: &str) -> Result<TableDescription, AwsError> {
    let progress = |m: String| step.progress(m);
    poll_until(
        &format!("table {name} to be ACTIVE"),
        Budget::new(cx.budgets.table),
        &progress,
        || async {
            let desc = describe(cx, name).await?.ok_or_else(|| {
                AwsError::Conflict(format!(
                    "table {name} disappeared while payops was updating it"
                ))
            })?;
            if desc.table_status() != Some(&TableStatus::Active) {
                let status = desc.table_status().map_or("unknown", |s| s.as_str());
                return Ok(Poll::Pending(format!("table {status}")));
            }
            let busy = desc
                .global_secondary_indexes()
                .iter()
                .find(|i| i.index_status() != Some(&IndexStatus::Active));
            Ok(match busy {
                Some(i) => Poll::Pending(format!(
                    "index {} {}",
                    i.index_name().unwrap_or("?"),
                    i.index_status().map_or("unknown", |s| s.as_str())
                )),
                None => Poll::Ready(desc),
            })
        },
    )
    .await
}

/// Sends one UpdateTable once the table is ready for it, and waits for the
/// change to finish so the next one is accepted.
async fn update_table(
    cx: &Context,
    step: &StepCx<'_>,
    table: &mut FoundTable,
    change: impl FnOnce(UpdateTableFluentBuilder) -> UpdateTableFluentBuilder,
) -> Result<(), AwsError> {
    settle(cx, step, &table.name).await?;
    change(cx.clients.dynamodb.update_table().table_name(&table.name))
        .send()
        .await
        .op("dynamodb:UpdateTable")?;
    table.desc = settle(cx, step, &table.name).await?;
    Ok(())
}

fn is_protected_error(e: &AwsError) -> bool {
    match e {
        AwsError::Api { code, message, .. } => {
            code.as_deref() == Some("ValidationException")
                && message.to_ascii_lowercase().contains("protect")
        }
        _ => false,
    }
}

fn protected(name: &str) -> AwsError {
    AwsError::Conflict(format!(
        "DynamoDB table {name} has deletion protection on, so `down` leaves it (and its data) \
         alone; to remove it, turn protection off first (run `payops up` without --protect, or \
         `aws dynamodb update-table --table-name {name} --no-deletion-protection-enabled`), then \
         run `payops down` again"
    ))
}

#[async_trait]
impl Resource for Table {
    type Found = FoundTable;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "dynamodb:table"
    }

    /// CreateTable meets the table its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["ResourceInUseException"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundTable>, AwsError> {
        let name = self.table_name(cx);
        let Some(desc) = describe(cx, &name).await? else {
            return Ok(Vec::new());
        };
        if desc.table_status() == Some(&TableStatus::Deleting) {
            // A table being deleted cannot be used nor re-created until it is
            // gone: wait, then it is simply absent.
            step.progress(format!("waiting for table {name} to finish deleting"));
            wait_gone(cx, &name).await?;
            return Ok(Vec::new());
        }
        let arn = required(desc.table_arn(), "dynamodb:DescribeTable", "TableArn")?.to_owned();
        let tags = dynamodb::tags_of(cx, &arn).await?;
        cx.check_ours(what(&name), &tags)?;
        Ok(vec![FoundTable {
            name,
            arn,
            desc,
            tags,
        }])
    }

    fn describe(&self, found: &FoundTable) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundTable, AwsError> {
        const OP: &str = "dynamodb:CreateTable";
        let key_arn = step.output(KEY_INPUT.0, KEY_INPUT.1)?;
        let name = self.table_name(cx);
        let attributes = self
            .key_attributes()
            .into_iter()
            .map(|a| string_attribute(OP, a))
            .collect::<Result<Vec<_>, _>>()?;
        let indexes = self
            .indexes
            .iter()
            .map(|i| {
                built(
                    OP,
                    GlobalSecondaryIndex::builder()
                        .index_name(i.name)
                        .set_key_schema(Some(key_elements(OP, &index_keys(i))?))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tags = cx
            .tagger
            .for_create(step.id().as_str())
            .into_iter()
            .map(|(k, v)| built(OP, Tag::builder().key(k).value(v).build()))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = self
            .stream
            .as_ref()
            .map(|v| stream_spec(OP, Some(v)))
            .transpose()?;
        let result = cx
            .clients
            .dynamodb
            .create_table()
            .table_name(&name)
            .set_attribute_definitions(Some(attributes))
            .set_key_schema(Some(key_elements(OP, &self.key_schema())?))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .billing_mode(BillingMode::PayPerRequest)
            .sse_specification(sse(key_arn))
            .set_stream_specification(stream)
            .deletion_protection_enabled(self.deletion_protection)
            .set_tags(Some(tags.clone()))
            .send()
            .await
            .op(OP);
        let out = match result {
            Ok(out) => out,
            // Created meanwhile (a concurrent run): ours only if tagged so.
            Err(e) if e.is_code(&["ResourceInUseException"]) => {
                return self.find(cx, step).await?.pop().ok_or_else(|| {
                    AwsError::Conflict(format!(
                        "table {name} was being created or deleted by someone else; run \
                         `payops up` again"
                    ))
                });
            }
            Err(e) => return Err(e),
        };
        let arn = required(
            out.table_description().and_then(|d| d.table_arn()),
            OP,
            "TableDescription.TableArn",
        )?
        .to_owned();
        step.remember("table", &arn);
        step.progress(format!("waiting for table {name} to be ACTIVE"));
        let ready = cx
            .clients
            .dynamodb
            .wait_until_table_exists()
            .table_name(&name)
            .wait(cx.budgets.table)
            .await;
        let ready = waited(
            ready,
            &format!("table {name} to be ACTIVE"),
            cx.budgets.table,
        )?;
        let desc = ready
            .into_result()
            .op("dynamodb:DescribeTable")?
            .table()
            .cloned();
        let desc = required(desc, "dynamodb:DescribeTable", "Table")?;
        Ok(FoundTable {
            name,
            arn,
            desc,
            tags: tags::to_map(&tags, |t| (Some(t.key()), Some(t.value()))),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        table: &FoundTable,
    ) -> Result<Vec<Fix>, AwsError> {
        let key_arn = step.output(KEY_INPUT.0, KEY_INPUT.1)?;
        let desc = &table.desc;
        let down_first = "a table's keys cannot change in place: export what you need and run \
                          `payops down` first";
        let want_keys = self.key_schema();
        let wrong_type = self.key_attributes().into_iter().find(|a| {
            desc.attribute_definitions()
                .iter()
                .any(|d| d.attribute_name() == *a && d.attribute_type() != &ScalarAttributeType::S)
        });
        if let Some(attribute) = wrong_type {
            return Err(AwsError::Conflict(format!(
                "table {} defines key attribute {attribute} as a non-string type but payops keys \
                 it as a string; {down_first}",
                table.name
            )));
        }
        if !same_keys(desc.key_schema(), &want_keys) {
            return Err(AwsError::Conflict(format!(
                "table {} has keys ({}) but payops wants ({}), all strings; {down_first}",
                table.name,
                show_keys(desc.key_schema()),
                show_wanted(&want_keys)
            )));
        }
        let mut missing_indexes = Vec::new();
        for index in self.indexes {
            let existing = desc
                .global_secondary_indexes()
                .iter()
                .find(|i| i.index_name() == Some(index.name));
            let Some(existing) = existing else {
                missing_indexes.push(Fix::AddIndex(index.name));
                continue;
            };
            let projection = existing.projection().and_then(|p| p.projection_type());
            if !same_keys(existing.key_schema(), &index_keys(index))
                || projection != Some(&ProjectionType::All)
            {
                return Err(AwsError::Conflict(format!(
                    "index {} of table {} has keys ({}) and projection {} but payops wants ({}) \
                     and ALL; {down_first}",
                    index.name,
                    table.name,
                    show_keys(existing.key_schema()),
                    projection.map_or("none", |p| p.as_str()),
                    show_wanted(&index_keys(index))
                )));
            }
        }

        let mut fixes = Vec::new();
        let missing = cx.tagger.missing(step.id().as_str(), &table.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        let backups = cx
            .clients
            .dynamodb
            .describe_continuous_backups()
            .table_name(&table.name)
            .send()
            .await
            .op("dynamodb:DescribeContinuousBackups")?;
        let pitr = backups
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status());
        if pitr != Some(&PointInTimeRecoveryStatus::Enabled) {
            fixes.push(Fix::PointInTimeRecovery);
        }
        if desc.deletion_protection_enabled().unwrap_or(false) != self.deletion_protection {
            fixes.push(Fix::DeletionProtection(self.deletion_protection));
        }
        // Tables created as PROVISIONED may carry no billing summary at all.
        let billing = desc.billing_mode_summary().and_then(|b| b.billing_mode());
        if billing != Some(&BillingMode::PayPerRequest) {
            fixes.push(Fix::BillingMode);
        }
        let encrypted = desc.sse_description().is_some_and(|s| {
            matches!(
                s.status(),
                Some(SseStatus::Enabled | SseStatus::Enabling | SseStatus::Updating)
            ) && s.sse_type() == Some(&SseType::Kms)
                && s.kms_master_key_arn() == Some(key_arn)
        });
        if !encrypted {
            fixes.push(Fix::Encryption {
                key_arn: key_arn.to_owned(),
            });
        }
        let stream = stream_view(desc);
        if stream != self.stream {
            fixes.push(Fix::Stream {
                from: stream,
                to: self.stream.clone(),
            });
        }
        fixes.extend(missing_indexes);
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        table: &mut FoundTable,
        fix: Fix,
    ) -> Result<(), AwsError> {
        const OP: &str = "dynamodb:UpdateTable";
        match fix {
            Fix::Tags(missing) => {
                let tags = missing
                    .iter()
                    .map(|(k, v)| {
                        built(
                            "dynamodb:TagResource",
                            Tag::builder().key(k).value(v).build(),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                cx.clients
                    .dynamodb
                    .tag_resource()
                    .resource_arn(&table.arn)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .op("dynamodb:TagResource")?;
                table.tags.extend(missing);
            }
            Fix::PointInTimeRecovery => {
                settle(cx, step, &table.name).await?;
                let spec = built(
                    "dynamodb:UpdateContinuousBackups",
                    PointInTimeRecoverySpecification::builder()
                        .point_in_time_recovery_enabled(true)
                        .build(),
                )?;
                let progress = |m: String| step.progress(m);
                // Right after CreateTable, AWS answers
                // ContinuousBackupsUnavailableException until the table's
                // backup machinery is ready (seconds to minutes).
                retry_on_codes(
                    &format!("turning on point-in-time recovery for {}", table.name),
                    &["ContinuousBackupsUnavailableException"],
                    Budget::new(cx.budgets.table),
                    &progress,
                    || async {
                        cx.clients
                            .dynamodb
                            .update_continuous_backups()
                            .table_name(&table.name)
                            .point_in_time_recovery_specification(spec.clone())
                            .send()
                            .await
                            .op("dynamodb:UpdateContinuousBackups")
                    },
                )
                .await?;
            }
            Fix::DeletionProtection(on) => {
                update_table(cx, step, table, |u| u.deletion_protection_enabled(on)).await?;
            }
            Fix::BillingMode => {
                update_table(cx, step, table, |u| {
                    u.billing_mode(BillingMode::PayPerRequest)
                })
                .await?;
            }
            Fix::Encryption { key_arn } => {
                update_table(cx, step, table, |u| u.sse_specification(sse(&key_arn))).await?;
            }
            Fix::Stream { from, to } => {
                if from.is_some() && to.is_some() {
                    let off = stream_spec(OP, None)?;
                    update_table(cx, step, table, |u| u.stream_specification(off)).await?;
                }
                let spec = stream_spec(OP, to.as_ref())?;
                update_table(cx, step, table, |u| u.stream_specification(spec)).await?;
            }
            Fix::AddIndex(name) => {
                let index = self
                    .indexes
                    .iter()
                    .find(|i| i.name == name)
                    .ok_or_else(|| AwsError::Conflict(format!("unknown index {name}")))?;
                // UpdateTable must define the new index's key attributes; the
                // existing definitions are sent too, since some endpoints
                // replace the set rather than add to it.
                let mut attributes = table.desc.attribute_definitions().to_vec();
                for key in [index.partition_key, index.sort_key] {
                    if !attributes.iter().any(|a| a.attribute_name() == key) {
                        attributes.push(string_attribute(OP, key)?);
                    }
                }
                let create = built(
                    OP,
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name(index.name)
                        .set_key_schema(Some(key_elements(OP, &index_keys(index))?))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build(),
                )?;
                // One index per UpdateTable: AWS refuses more.
                let update = GlobalSecondaryIndexUpdate::builder().create(create).build();
                update_table(cx, step, table, |u| {
                    u.set_attribute_definitions(Some(attributes))
                        .global_secondary_index_updates(update)
                })
                .await?;
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, table: &FoundTable) -> Record {
        let p = self.outputs;
        let mut record = Record::default()
            .resource("table", &table.arn)
            .output(format!("{p}TableName"), &table.name)
            .output(format!("{p}TableArn"), &table.arn);
        // LatestStreamArn outlives a disabled stream: only a live one counts.
        if self.stream.is_some()
            && stream_view(&table.desc).is_some()
            && let Some(stream) = table.desc.latest_stream_arn()
        {
            record = record.output(format!("{p}TableStreamArn"), stream);
        }
        record
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        table: FoundTable,
    ) -> Result<Vec<String>, AwsError> {
        let name = table.name.as_str();
        if table.desc.deletion_protection_enabled() == Some(true) {
            return Err(protected(name));
        }
        let progress = |m: String| step.progress(m);
        // A table still being created or updated (an index backfilling)
        // refuses deletion with ResourceInUseException until it settles.
        retry_on_codes(
            &format!("deleting table {name}"),
            &["ResourceInUseException"],
            Budget::new(cx.budgets.table),
            &progress,
            || async {
                let result = cx
                    .clients
                    .dynamodb
                    .delete_table()
                    .table_name(name)
                    .send()
                    .await
                    .op("dynamodb:DeleteTable");
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_code(&["ResourceNotFoundException"]) => Ok(()),
                    Err(e) if is_protected_error(&e) => Err(protected(name)),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        step.progress(format!("waiting for table {name} to be deleted"));
        wait_gone(cx, name).await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::operation::create_table::CreateTableOutput;
    use aws_sdk_dynamodb::operation::delete_table::{DeleteTableError, DeleteTableOutput};
    use aws_sdk_dynamodb::operation::describe_continuous_backups::DescribeContinuousBackupsOutput;
    use aws_sdk_dynamodb::operation::describe_table::{DescribeTableError, DescribeTableOutput};
    use aws_sdk_dynamodb::operation::list_tags_of_resource::ListTagsOfResourceOutput;
    use aws_sdk_dynamodb::operation::tag_resource::TagResourceOutput;
    use aws_sdk_dynamodb::operation::update_continuous_backups::{
        UpdateContinuousBackupsError, UpdateContinuousBackupsOutput,
    };
    use aws_sdk_dynamodb::operation::update_table::UpdateTableOutput;
    use aws_sdk_dynamodb::types::{
        BillingModeSummary, ContinuousBackupsDescription, ContinuousBackupsStatus,
        GlobalSecondaryIndexDescription, PointInTimeRecoveryDescription, SseDescription,
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::naming::EnvName;
    use crate::resources::testing;
    use crate::tags::Tagger;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/ddb-key";
    const TX: &str = "payops-pr1-transactions";
    const TX_STEP: &str = "dynamodb-table:transactions";
    const TX_ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/payops-pr1-transactions";
    const STREAM_ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/payops-pr1-transactions/stream/2026-11-23T00:00:00.000";

    fn inputs() -> [(&'static str, Record); 1] {
        [(
            "kms-key:dynamodb",
            Record::default().output("DynamoDbKmsKeyArn", KEY),
        )]
    }

    fn our_tags(step: &str) -> TagMap {
        Tagger::new(EnvName::parse("pr1").unwrap(), "payments", testing::NOW).for_create(step)
    }

    fn key(name: &str, kind: KeyType) -> KeySchemaElement {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    }

    fn attr(name: &str) -> AttributeDefinition {
        string_attribute("test", name).unwrap()
    }

    fn index(name: &str, pk: &str, status: IndexStatus) -> GlobalSecondaryIndexDescription {
        GlobalSecondaryIndexDescription::builder()
            .index_name(name)
            .key_schema(key(pk, KeyType::Hash))
            .key_schema(key("timestamp", KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .index_status(status)
            .build()
    }

    /// The transactions table exactly as payops wants it.
    fn transactions(status: TableStatus) -> TableDescription {
        TableDescription::builder()
            .table_name(TX)
            .table_arn(TX_ARN)
            .table_status(status)
            .key_schema(key("transactionId", KeyType::Hash))
            .key_schema(key("timestamp", KeyType::Range))
            .set_attribute_definitions(Some(vec![
                attr("customerId"),
                attr("status"),
                attr("timestamp"),
                attr("transactionId"),
            ]))
            .global_secondary_indexes(index(
                "customerId-timestamp-index",
                "customerId",
                IndexStatus::Active,
            ))
            .global_secondary_indexes(index(
                "status-timestamp-index",
                "status",
                IndexStatus::Active,
            ))
            .billing_mode_summary(
                BillingModeSummary::builder()
                    .billing_mode(BillingMode::PayPerRequest)
                    .build(),
            )
            .sse_description(
                SseDescription::builder()
                    .status(SseStatus::Enabled)
                    .sse_type(SseType::Kms)
                    .kms_master_key_arn(KEY)
                    .build(),
            )
            .stream_specification(
                stream_spec("test", Some(&StreamViewType::NewAndOldImages)).unwrap(),
            )
            .latest_stream_arn(STREAM_ARN)
            .deletion_protection_enabled(false)
            .build()
    }

    fn described(desc: TableDescription) -> DescribeTableOutput {
        DescribeTableOutput::builder().table(desc).build()
    }

    fn not_found() -> DescribeTableError {
        DescribeTableError::generic(testing::error_meta("ResourceNotFoundException"))
    }

    fn describe_as(desc: TableDescription) -> Rule {
        mock!(Client::describe_table)
            .match_requests(|r| r.table_name() == Some(TX))
            .then_output(move || described(desc.clone()))
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_tags_of_resource)
            .match_requests(|r| r.resource_arn() == Some(TX_ARN))
            .then_output(move || {
                ListTagsOfResourceOutput::builder()
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                            .collect(),
                    ))
                    .build()
            })
    }

    fn pitr(status: PointInTimeRecoveryStatus) -> Rule {
        mock!(Client::describe_continuous_backups).then_output(move || {
            DescribeContinuousBackupsOutput::builder()
                .continuous_backups_description(
                    ContinuousBackupsDescription::builder()
                        .continuous_backups_status(ContinuousBackupsStatus::Enabled)
                        .point_in_time_recovery_description(
                            PointInTimeRecoveryDescription::builder()
                                .point_in_time_recovery_status(status.clone())
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
        })
    }

    fn enable_pitr() -> Rule {
        mock!(Client::update_continuous_backups)
            .match_requests(|r| {
                r.table_name() == Some(TX)
                    && r.point_in_time_recovery_specification()
                        .is_some_and(|s| s.point_in_time_recovery_enabled())
            })
            .then_output(|| UpdateContinuousBackupsOutput::builder().build())
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[tokio::test(start_paused = true)]
    async fn creates_the_transactions_table_with_indexes_stream_and_cmk() {
        let describe = mock!(Client::describe_table)
            .sequence()
            .error(not_found)
            .output(|| described(transactions(TableStatus::Active)))
            .repeatedly()
            .build();
        let create = mock!(Client::create_table)
            .match_requests(|r| {
                let indexes = r.global_secondary_indexes();
                let index_ok = |name: &str, pk: &str| {
                    indexes.iter().any(|i| {
                        i.index_name() == name
                            && same_keys(
                                i.key_schema(),
                                &[(pk, KeyType::Hash), ("timestamp", KeyType::Range)],
                            )
                            && i.projection().and_then(|p| p.projection_type())
                                == Some(&ProjectionType::All)
                    })
                };
                let sse = r.sse_specification();
                r.table_name() == Some(TX)
                    && same_keys(
                        r.key_schema(),
                        &[
                            ("transactionId", KeyType::Hash),
                            ("timestamp", KeyType::Range),
                        ],
                    )
                    && r.attribute_definitions().len() == 4
                    && r.attribute_definitions()
                        .iter()
                        .all(|a| a.attribute_type() == &ScalarAttributeType::S)
                    && indexes.len() == 2
                    && index_ok("customerId-timestamp-index", "customerId")
                    && index_ok("status-timestamp-index", "status")
                    && r.billing_mode() == Some(&BillingMode::PayPerRequest)
                    && r.provisioned_throughput().is_none()
                    && sse.and_then(|s| s.sse_type()) == Some(&SseType::Kms)
                    && sse.and_then(|s| s.kms_master_key_id()) == Some(KEY)
                    && r.stream_specification().is_some_and(|s| {
                        s.stream_enabled()
                            && s.stream_view_type() == Some(&StreamViewType::NewAndOldImages)
                    })
                    && r.deletion_protection_enabled() == Some(false)
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == "payops:step" && t.value() == TX_STEP)
            })
            .then_output(|| {
                CreateTableOutput::builder()
                    .table_description(transactions(TableStatus::Creating))
                    .build()
            });
        let backups = pitr(PointInTimeRecoveryStatus::Disabled);
        let enable = enable_pitr();
        let cx = cx_with(&[&describe, &create, &backups, &enable]);
        let id = crate::engine::StepId::from(TX_STEP);
        let events = testing::Events::default();
        let step = testing::step_cx(
            &id,
            inputs().into_iter().map(|(k, r)| (k.into(), r)).collect(),
            &events,
        );
        use crate::engine::Step;
        let applied = crate::resources::resource::Node::new(TX_STEP, Table::transactions(), vec![])
            .ensure(&cx, &step)
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        assert_eq!(enable.num_calls(), 1);
        let outputs = &applied.record.outputs;
        assert_eq!(outputs["TransactionsTableName"], TX);
        assert_eq!(outputs["TransactionsTableArn"], TX_ARN);
        assert_eq!(outputs["TransactionsTableStreamArn"], STREAM_ARN);
        assert_eq!(
            *events.remembered.lock().unwrap(),
            [("table".to_owned(), TX_ARN.to_owned())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn creates_the_fraud_rules_table_keyed_by_rule_without_stream() {
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/payops-pr1-fraud-rules";
        let desc = TableDescription::builder()
            .table_name("payops-pr1-fraud-rules")
            .table_arn(arn)
            .table_status(TableStatus::Active)
            .key_schema(key("ruleId", KeyType::Hash))
            .attribute_definitions(attr("ruleId"))
            .billing_mode_summary(
                BillingModeSummary::builder()
                    .billing_mode(BillingMode::PayPerRequest)
                    .build(),
            )
            .sse_description(
                SseDescription::builder()
                    .status(SseStatus::Enabled)
                    .sse_type(SseType::Kms)
                    .kms_master_key_arn(KEY)
                    .build(),
            )
            .build();
        let describe = {
            let desc = desc.clone();
            mock!(Client::describe_table)
                .sequence()
                .error(not_found)
                .output(move || described(desc.clone()))
                .repeatedly()
                .build()
        };
        let create = mock!(Client::create_table)
            .match_requests(|r| {
                r.table_name() == Some("payops-pr1-fraud-rules")
                    && same_keys(r.key_schema(), &[("ruleId", KeyType::Hash)])
                    && r.attribute_definitions().len() == 1
                    && r.global_secondary_indexes().is_empty()
                    && r.stream_specification().is_none()
                    && r.sse_specification().and_then(|s| s.kms_master_key_id()) == Some(KEY)
            })
            .then_output(move || {
                CreateTableOutput::builder()
                    .table_description(desc.clone())
                    .build()
            });
        let backups = pitr(PointInTimeRecoveryStatus::Enabled);
        let cx = cx_with(&[&describe, &create, &backups]);
        let applied = testing::ensure(
            &cx,
            "dynamodb-table:fraud-rules",
            Table::fraud_rules(),
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        assert_eq!(
            applied.record.outputs["FraudRulesTableName"],
            "payops-pr1-fraud-rules"
        );
        assert_eq!(applied.record.outputs["FraudRulesTableArn"], arn);
        assert_eq!(applied.record.outputs.len(), 2);
    }

    #[tokio::test]
    async fn an_owned_table_in_sync_is_adopted_without_mutating_calls() {
        let describe = describe_as(transactions(TableStatus::Active));
        let tags = tagged(our_tags(TX_STEP));
        let backups = pitr(PointInTimeRecoveryStatus::Enabled);
        // No rule for any create, update or tag call.
        let cx = cx_with(&[&describe, &tags, &backups]);
        let applied = testing::ensure(&cx, TX_STEP, Table::transactions(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
        assert_eq!(
            applied.record.outputs["TransactionsTableStreamArn"],
            STREAM_ARN
        );
    }

    #[tokio::test]
    async fn a_same_named_table_of_someone_else_is_refused_and_never_deleted() {
        let describe = describe_as(transactions(TableStatus::Active));
        let mut tags = TagMap::new();
        tags.insert("team".into(), "ledger".into());
        let tags = tagged(tags);
        let cx = cx_with(&[&describe, &tags]);
        let err = testing::ensure(&cx, TX_STEP, Table::transactions(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged as this env's"), "{err}");
        // No DeleteTable rule: a delete attempt would fail differently.
        let err = testing::destroy(&cx, TX_STEP, Table::transactions())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged as this env's"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn drift_is_reported_by_observe_and_repaired_by_ensure() {
        // PITR off, a cost tag gone, and the status index never created.
        let mut drifted = transactions(TableStatus::Active);
        drifted.global_secondary_indexes = Some(vec![index(
            "customerId-timestamp-index",
            "customerId",
            IndexStatus::Active,
        )]);
        drifted.attribute_definitions = Some(vec![
            attr("customerId"),
            attr("timestamp"),
            attr("transactionId"),
        ]);
        let mut tags = our_tags(TX_STEP);
        tags.remove("CostCenter");
        let describe_drifted = describe_as(drifted.clone());
        let tag_rule = tagged(tags);
        let backups = pitr(PointInTimeRecoveryStatus::Disabled);
        let cx = cx_with(&[&describe_drifted, &tag_rule, &backups]);
        let observed = testing::observe(&cx, TX_STEP, Table::transactions(), &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(drift.len(), 3, "{drift:?}");
        assert_eq!(drift[0], "add tags CostCenter");
        assert_eq!(drift[1], "turn on point-in-time recovery");
        assert!(
            drift[2].starts_with("create index status-timestamp-index"),
            "{drift:?}"
        );

        // ensure: find + settle before each change see the drifted table; after
        // the index is added the table reports it CREATING, then ACTIVE.
        let mut creating = transactions(TableStatus::Active);
        creating.global_secondary_indexes = Some(vec![
            index(
                "customerId-timestamp-index",
                "customerId",
                IndexStatus::Active,
            ),
            index("status-timestamp-index", "status", IndexStatus::Creating),
        ]);
        let describe = mock!(Client::describe_table)
            .sequence()
            .output(move || described(drifted.clone()))
            .times(3)
            .output(move || described(creating.clone()))
            .times(2)
            .output(|| described(transactions(TableStatus::Active)))
            .build();
        let tag = mock!(Client::tag_resource)
            .match_requests(|r| {
                r.resource_arn() == Some(TX_ARN)
                    && r.tags().len() == 1
                    && r.tags()[0].key() == "CostCenter"
            })
            .then_output(|| TagResourceOutput::builder().build());
        let add_index = mock!(Client::update_table)
            .match_requests(|r| {
                let [update] = r.global_secondary_index_updates() else {
                    return false;
                };
                let create = update.create().unwrap();
                create.index_name() == "status-timestamp-index"
                    && same_keys(
                        create.key_schema(),
                        &[("status", KeyType::Hash), ("timestamp", KeyType::Range)],
                    )
                    && create.projection().and_then(|p| p.projection_type())
                        == Some(&ProjectionType::All)
                    && r.attribute_definitions()
                        .iter()
                        .any(|a| a.attribute_name() == "status")
                    && r.attribute_definitions().len() == 4
            })
            .then_output(|| UpdateTableOutput::builder().build());
        let enable = enable_pitr();
        let cx = cx_with(&[&describe, &tag_rule, &backups, &tag, &enable, &add_index]);
        let applied = testing::ensure(&cx, TX_STEP, Table::transactions(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(tag.num_calls(), 1);
        assert_eq!(enable.num_calls(), 1);
        assert_eq!(add_index.num_calls(), 1);
        // It waited through CREATING until the index was ACTIVE.
        assert!(describe.is_exhausted());
    }

    #[tokio::test]
    async fn a_changed_key_schema_is_a_conflict_that_says_to_run_down() {
        let mut other = transactions(TableStatus::Active);
        other.key_schema = Some(vec![key("id", KeyType::Hash)]);
        let describe = describe_as(other);
        let tags = tagged(our_tags(TX_STEP));
        let cx = cx_with(&[&describe, &tags]);
        let err = testing::ensure(&cx, TX_STEP, Table::transactions(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot change in place"), "{err}");
        assert!(err.contains("payops down"), "{err}");
        assert!(err.contains("(id HASH)"), "{err}");
    }

    #[tokio::test]
    async fn a_key_attribute_of_another_type_is_a_conflict() {
        let mut numeric = transactions(TableStatus::Active);
        numeric.attribute_definitions = Some(vec![
            attr("customerId"),
            attr("status"),
            AttributeDefinition::builder()
                .attribute_name("timestamp")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
            attr("transactionId"),
        ]);
        let describe = describe_as(numeric);
        let tags = tagged(our_tags(TX_STEP));
        let cx = cx_with(&[&describe, &tags]);
        let err = testing::observe(&cx, TX_STEP, Table::transactions(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("key attribute timestamp"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_stream_view_is_disabled_then_re_enabled() {
        let mut keys_only = transactions(TableStatus::Active);
        keys_only.stream_specification =
            Some(stream_spec("test", Some(&StreamViewType::KeysOnly)).unwrap());
        let describe = describe_as(keys_only);
        let tags = tagged(our_tags(TX_STEP));
        let backups = pitr(PointInTimeRecoveryStatus::Enabled);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (log_off, log_on) = (order.clone(), order.clone());
        let disable = mock!(Client::update_table)
            .match_requests(move |r| {
                let hit = r
                    .stream_specification()
                    .is_some_and(|s| !s.stream_enabled() && s.stream_view_type().is_none());
                if hit {
                    log_off.lock().unwrap().push("off");
                }
                hit
            })
            .then_output(|| UpdateTableOutput::builder().build());
        let enable = mock!(Client::update_table)
            .match_requests(move |r| {
                let hit = r.stream_specification().is_some_and(|s| {
                    s.stream_enabled()
                        && s.stream_view_type() == Some(&StreamViewType::NewAndOldImages)
                });
                if hit {
                    log_on.lock().unwrap().push("on");
                }
                hit
            })
            .then_output(|| UpdateTableOutput::builder().build());
        let cx = cx_with(&[&describe, &tags, &backups, &disable, &enable]);
        let applied = testing::ensure(&cx, TX_STEP, Table::transactions(), &inputs())
            .await
            .unwrap();
        assert_eq!(*order.lock().unwrap(), ["off", "on"]);
        assert!(
            applied.notes[0].contains("disabled first"),
            "{:?}",
            applied.notes
        );
    }

    #[tokio::test(start_paused = true)]
    async fn another_kms_key_billing_mode_or_protection_is_repaired() {
        let mut drifted = transactions(TableStatus::Active);
        drifted.sse_description = Some(
            SseDescription::builder()
                .status(SseStatus::Enabled)
                .sse_type(SseType::Kms)
                .kms_master_key_arn("arn:aws:kms:us-east-1:123456789012:key/other")
                .build(),
        );
        drifted.billing_mode_summary = None;
        let describe = describe_as(drifted);
        let tags = tagged(our_tags(TX_STEP));
        let backups = pitr(PointInTimeRecoveryStatus::Enabled);
        let sse = mock!(Client::update_table)
            .match_requests(|r| {
                r.sse_specification().and_then(|s| s.kms_master_key_id()) == Some(KEY)
                    && r.sse_specification().and_then(|s| s.sse_type()) == Some(&SseType::Kms)
            })
            .then_output(|| UpdateTableOutput::builder().build());
        let billing = mock!(Client::update_table)
            .match_requests(|r| r.billing_mode() == Some(&BillingMode::PayPerRequest))
            .then_output(|| UpdateTableOutput::builder().build());
        let protect = mock!(Client::update_table)
            .match_requests(|r| r.deletion_protection_enabled() == Some(true))
            .then_output(|| UpdateTableOutput::builder().build());
        let cx = cx_with(&[&describe, &tags, &backups, &sse, &billing, &protect]);
        let applied = testing::ensure(
            &cx,
            TX_STEP,
            Table {
                deletion_protection: true,
                ..Table::transactions()
            },
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(sse.num_calls(), 1);
        assert_eq!(billing.num_calls(), 1);
        assert_eq!(protect.num_calls(), 1);
        assert_eq!(applied.notes.len(), 3, "{:?}", applied.notes);
    }

    #[tokio::test(start_paused = true)]
    async fn pitr_is_retried_while_backups_are_still_being_enabled() {
        let describe = describe_as(transactions(TableStatus::Active));
        let tags = tagged(our_tags(TX_STEP));
        let backups = pitr(PointInTimeRecoveryStatus::Disabled);
        let enable = mock!(Client::update_continuous_backups)
            .sequence()
            .error(|| {
                UpdateContinuousBackupsError::generic(testing::error_meta(
                    "ContinuousBackupsUnavailableException",
                ))
            })
            .times(2)
            .output(|| UpdateContinuousBackupsOutput::builder().build())
            .build();
        let cx = cx_with(&[&describe, &tags, &backups, &enable]);
        testing::ensure(&cx, TX_STEP, Table::transactions(), &inputs())
            .await
            .unwrap();
        assert_eq!(enable.num_calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn destroy_deletes_and_waits_until_the_table_is_gone() {
        let describe = mock!(Client::describe_table)
            .sequence()
            .output(|| described(transactions(TableStatus::Active)))
            .output(|| described(transactions(TableStatus::Deleting)))
            .error(not_found)
            .build();
        let tags = tagged(our_tags(TX_STEP));
        let delete = mock!(Client::delete_table)
            .match_requests(|r| r.table_name() == Some(TX))
            .then_output(|| DeleteTableOutput::builder().build());
        let cx = cx_with(&[&describe, &tags, &delete]);
        let removed = testing::destroy(&cx, TX_STEP, Table::transactions())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
        assert!(
            describe.is_exhausted(),
            "returned before the table was gone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_table_already_deleting_is_waited_for_then_absent() {
        let describe = mock!(Client::describe_table)
            .sequence()
            .output(|| described(transactions(TableStatus::Deleting)))
            .times(2)
            .error(not_found)
            .build();
        let cx = cx_with(&[&describe]);
        let removed = testing::destroy(&cx, TX_STEP, Table::transactions())
            .await
            .unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
        assert!(describe.is_exhausted());
    }

    #[tokio::test]
    async fn destroy_of_a_missing_table_is_success() {
        let describe = mock!(Client::describe_table).then_error(not_found);
        let cx = cx_with(&[&describe]);
        let removed = testing::destroy(&cx, TX_STEP, Table::transactions())
            .await
            .unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn a_protected_table_is_not_deleted_and_the_error_says_how() {
        let mut protected = transactions(TableStatus::Active);
        protected.deletion_protection_enabled = Some(true);
        let describe = describe_as(protected);
        let tags = tagged(our_tags(TX_STEP));
        let cx = cx_with(&[&describe, &tags]);
        let err = testing::destroy(&cx, TX_STEP, Table::transactions())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("deletion protection on"), "{err}");
        assert!(err.contains("--no-deletion-protection-enabled"), "{err}");
    }

    #[tokio::test]
    async fn protection_turned_on_meanwhile_is_reported_clearly() {
        let describe = describe_as(transactions(TableStatus::Active));
        let tags = tagged(our_tags(TX_STEP));
        let delete = mock!(Client::delete_table).then_error(|| {
            DeleteTableError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("ValidationException")
                    .message("Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.")
                    .build(),
            )
        });
        let cx = cx_with(&[&describe, &tags, &delete]);
        let err = testing::destroy(&cx, TX_STEP, Table::transactions())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("deletion protection on"), "{err}");
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn delete_is_retried_while_the_table_is_busy() {
        let describe = mock!(Client::describe_table)
            .sequence()
            .output(|| described(transactions(TableStatus::Updating)))
            .error(not_found)
            .build();
        let tags = tagged(our_tags(TX_STEP));
        let delete = mock!(Client::delete_table)
            .sequence()
            .error(|| DeleteTableError::generic(testing::error_meta("ResourceInUseException")))
            .times(2)
            .output(|| DeleteTableOutput::builder().build())
            .build();
        let cx = cx_with(&[&describe, &tags, &delete]);
        let removed = testing::destroy(&cx, TX_STEP, Table::transactions())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 3);
    }
}
