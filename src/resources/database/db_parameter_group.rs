//! The cluster parameter group: what payops requires of the database engine,
//! above all `rds.force_ssl = 1` (PCI: cardholder data only over TLS).
//!
//! A group's family is fixed at creation, so the group is named per major
//! version (`payops-<env>-aurora-pg16`); `up` with a new major creates the
//! new group beside the old one.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_rds::types::{ApplyMethod, Parameter};

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::model::DB_ENGINE;
use crate::resources::resource::Resource;
use crate::resources::sdk::rds;
use crate::tags::describe_tag_fix;

/// The parameters payops sets, and why.
pub const PARAMETERS: [(&str, &str); 4] = [
    // Refuse every connection that is not TLS.
    ("rds.force_ssl", "1"),
    // Log statements slower than a second: slow queries show in the
    // exported postgresql log without logging every statement.
    ("log_min_duration_statement", "1000"),
    // ... but never the values bound to them. A statement logged by
    // log_min_duration_statement (or any statement logging) is followed by
    // `DETAIL: parameters: $1 = '...'` with each bind value in full: the
    // default is -1. With card data in those values, the exported log (and
    // CloudWatch Logs behind it) would hold cardholder data. 0 disables
    // logging bind values (PostgreSQL 13+, "What to Log":
    // https://www.postgresql.org/docs/13/runtime-config-logging.html);
    // payops allows Aurora PostgreSQL 13 and later only (spec.rs). Literals
    // written into the SQL text itself are still logged: the functions bind
    // their values.
    ("log_parameter_max_length", "0"),
    // The same for the statement reported with an error. PostgreSQL's
    // default is already 0; it is set so that a changed default or a manual
    // edit of the group shows as drift instead of leaking values silently.
    // Both are dynamic in the aurora-postgresql13+ cluster parameter groups
    // (DescribeDBClusterParameters: ApplyType dynamic, -1 to 1073741823), so
    // `ApplyMethod::Immediate` applies them without a reboot.
    ("log_parameter_max_length_on_error", "0"),
];

pub struct DbParameterGroup;

pub struct FoundGroup {
    name: String,
    arn: String,
    family: String,
    /// The user-set values of the parameters payops manages.
    values: BTreeMap<String, String>,
    tags: TagMap,
}

pub enum Fix {
    Parameters(Vec<(&'static str, &'static str)>),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parameters(p) => {
                let set: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "set {}", set.join(", "))
            }
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

/// `aurora-postgresql16` for version `16.x`.
pub fn family(major: &str) -> String {
    format!("{}{major}", DB_ENGINE)
}

/// The parameters whose value is not what payops wants.
pub fn parameter_drift(values: &BTreeMap<String, String>) -> Vec<(&'static str, &'static str)> {
    PARAMETERS
        .into_iter()
        .filter(|(k, v)| values.get(*k).map(String::as_str) != Some(*v))
        .collect()
}

impl DbParameterGroup {
    async fn get(&self, cx: &Context) -> Result<Option<FoundGroup>, AwsError> {
        const OP: &str = "rds:DescribeDBClusterParameterGroups";
        let name = cx.names.db_parameter_group(cx.spec.database.major());
        let out = cx
            .clients
            .rds
            .describe_db_cluster_parameter_groups()
            .db_cluster_parameter_group_name(&name)
            .send()
            .await
            .op(OP);
        let Some(out) = absent_on(out, &["DBParameterGroupNotFound"])? else {
            return Ok(None);
        };
        let Some(group) = out.db_cluster_parameter_groups().first() else {
            return Ok(None);
        };
        let arn = required(group.db_cluster_parameter_group_arn(), OP, "Arn")?.to_owned();
        let tags = rds::list_tags(cx, &arn).await?;
        cx.check_ours(format!("DB cluster parameter group {name}"), &tags)?;
        let family = group
            .db_parameter_group_family()
            .unwrap_or_default()
            .to_owned();
        let values = self.values(cx, &name).await?;
        Ok(Some(FoundGroup {
            name,
            arn,
            family,
            values,
            tags,
        }))
    }

    async fn values(&self, cx: &Context, name: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let pages: Vec<_> = cx
            .clients
            .rds
            .describe_db_cluster_parameters()
            .db_cluster_parameter_group_name(name)
            .source("user")
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut values = BTreeMap::new();
        for page in pages {
            let page = page.op("rds:DescribeDBClusterParameters")?;
            for p in page.parameters() {
                if let (Some(k), Some(v)) = (p.parameter_name(), p.parameter_value())
                    && PARAMETERS.iter().any(|(name, _)| name == &k)
                {
                    values.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Ok(values)
    }
}

#[async_trait]
impl Resource for DbParameterGroup {
    type Found = FoundGroup;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "rds:db-cluster-parameter-group"
    }

    /// CreateDBClusterParameterGroup meets the group its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["DBParameterGroupAlreadyExists"]
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundGroup>, AwsError> {
        Ok(self.get(cx).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundGroup) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundGroup, AwsError> {
        const OP: &str = "rds:CreateDBClusterParameterGroup";
        let name = cx.names.db_parameter_group(cx.spec.database.major());
        let family = family(cx.spec.database.major());
        let tags = cx.tagger.for_create(step.id().as_str());
        let created = cx
            .clients
            .rds
            .create_db_cluster_parameter_group()
            .db_cluster_parameter_group_name(&name)
            .db_parameter_group_family(&family)
            .description("payops Aurora PostgreSQL: TLS only")
            .set_tags(Some(rds::rds_tags(&tags)))
            .send()
            .await
            .op(OP);
        match created {
            Ok(out) => {
                let group = required(
                    out.db_cluster_parameter_group(),
                    OP,
                    "DBClusterParameterGroup",
                )?;
                let arn = required(group.db_cluster_parameter_group_arn(), OP, "Arn")?;
                step.remember("db-parameter-group", arn);
                Ok(FoundGroup {
                    name,
                    arn: arn.to_owned(),
                    family,
                    // The parameters are set by `fix`, right after.
                    values: BTreeMap::new(),
                    tags,
                })
            }
            Err(e) if e.is_code(&["DBParameterGroupAlreadyExists"]) => self.get(cx).await?.ok_or(e),
            Err(e) => Err(e),
        }
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundGroup,
    ) -> Result<Vec<Fix>, AwsError> {
        let want = family(cx.spec.database.major());
        if found.family != want {
            return Err(AwsError::Conflict(format!(
                "DB cluster parameter group {} is of family {}, not {want}: delete it (it is \
                 payops' own) and run `payops up` again",
                found.name, found.family
            )));
        }
        let mut fixes = Vec::new();
        let drift = parameter_drift(&found.values);
        if !drift.is_empty() {
            fixes.push(Fix::Parameters(drift));
        }
        let missing = cx.tagger.missing(step.id().as_str(), &found.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: &mut FoundGroup,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Parameters(params) => {
                cx.clients
                    .rds
                    .modify_db_cluster_parameter_group()
                    .db_cluster_parameter_group_name(&found.name)
                    .set_parameters(Some(
                        params
                            .iter()
                            .map(|(k, v)| {
                                Parameter::builder()
                                    .parameter_name(*k)
                                    .parameter_value(*v)
                                    // All of them are dynamic: no reboot needed.
                                    .apply_method(ApplyMethod::Immediate)
                                    .build()
                            })
                            .collect(),
                    ))
                    .send()
                    .await
                    .op("rds:ModifyDBClusterParameterGroup")?;
                for (k, v) in params {
                    found.values.insert(k.to_owned(), v.to_owned());
                }
            }
            Fix::Tags(missing) => {
                rds::add_tags(cx, &found.arn, &missing).await?;
                found.tags.extend(missing);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundGroup) -> Record {
        Record::default()
            .resource("db-parameter-group", &found.arn)
            .output("DbClusterParameterGroupName", &found.name)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundGroup,
    ) -> Result<Vec<String>, AwsError> {
        let deleted = cx
            .clients
            .rds
            .delete_db_cluster_parameter_group()
            .db_cluster_parameter_group_name(&found.name)
            .send()
            .await
            .op("rds:DeleteDBClusterParameterGroup");
        absent_on(deleted, &["DBParameterGroupNotFound"])?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_rds::Client;
    use aws_sdk_rds::operation::create_db_cluster_parameter_group::CreateDbClusterParameterGroupOutput;
    use aws_sdk_rds::operation::describe_db_cluster_parameter_groups::{
        DescribeDBClusterParameterGroupsError, DescribeDbClusterParameterGroupsOutput,
    };
    use aws_sdk_rds::operation::describe_db_cluster_parameters::DescribeDbClusterParametersOutput;
    use aws_sdk_rds::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_rds::operation::modify_db_cluster_parameter_group::ModifyDbClusterParameterGroupOutput;
    use aws_sdk_rds::types::DbClusterParameterGroup;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation};
    use crate::resources::testing;

    const STEP: &str = "db-parameter-group";
    const NAME: &str = "payops-pr1-aurora-pg16";
    const ARN: &str = "arn:aws:rds:us-east-1:123456789012:cluster-pg:payops-pr1-aurora-pg16";
    const BIND_VALUES_OFF: [(&str, &str); 2] = [
        ("log_parameter_max_length", "0"),
        ("log_parameter_max_length_on_error", "0"),
    ];

    fn group() -> DbClusterParameterGroup {
        DbClusterParameterGroup::builder()
            .db_cluster_parameter_group_name(NAME)
            .db_cluster_parameter_group_arn(ARN)
            .db_parameter_group_family("aurora-postgresql16")
            .build()
    }

    fn described() -> Rule {
        mock!(Client::describe_db_cluster_parameter_groups)
            .match_requests(|r| r.db_cluster_parameter_group_name() == Some(NAME))
            .then_output(|| {
                DescribeDbClusterParameterGroupsOutput::builder()
                    .db_cluster_parameter_groups(group())
                    .build()
            })
    }

    fn tagged() -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_name() == Some(ARN))
            .then_output(|| {
                ListTagsForResourceOutput::builder()
                    .set_tag_list(Some(rds::rds_tags(&testing::our_tags(STEP))))
                    .build()
            })
    }

    /// The user-set parameters DescribeDBClusterParameters answers.
    fn user_values(values: &'static [(&'static str, &'static str)]) -> Rule {
        mock!(Client::describe_db_cluster_parameters)
            .match_requests(|r| {
                r.db_cluster_parameter_group_name() == Some(NAME) && r.source() == Some("user")
            })
            .then_output(move || {
                DescribeDbClusterParametersOutput::builder()
                    .set_parameters(Some(
                        values
                            .iter()
                            .map(|(k, v)| {
                                Parameter::builder()
                                    .parameter_name(*k)
                                    .parameter_value(*v)
                                    .build()
                            })
                            .collect(),
                    ))
                    .build()
            })
    }

    /// A ModifyDBClusterParameterGroup setting exactly `want`, immediately.
    fn modify(want: &'static [(&'static str, &'static str)]) -> Rule {
        mock!(Client::modify_db_cluster_parameter_group)
            .match_requests(move |r| {
                let sent: Vec<(&str, &str)> = r
                    .parameters()
                    .iter()
                    .map(|p| {
                        (
                            p.parameter_name().unwrap_or_default(),
                            p.parameter_value().unwrap_or_default(),
                        )
                    })
                    .collect();
                r.db_cluster_parameter_group_name() == Some(NAME)
                    && sent == want
                    && r.parameters()
                        .iter()
                        .all(|p| p.apply_method() == Some(&ApplyMethod::Immediate))
            })
            .then_output(|| {
                ModifyDbClusterParameterGroupOutput::builder()
                    .db_cluster_parameter_group_name(NAME)
                    .build()
            })
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[test]
    fn bind_parameter_values_are_never_logged() {
        // log_min_duration_statement logs statements; without these two,
        // PostgreSQL appends every bind value (card data) to them in full.
        for (k, v) in BIND_VALUES_OFF {
            assert!(PARAMETERS.contains(&(k, v)), "{k}={v}");
        }
        assert!(PARAMETERS.contains(&("log_min_duration_statement", "1000")));
    }

    #[tokio::test]
    async fn a_group_that_logs_bind_values_is_repaired_in_place() {
        // A group made before payops set the two: only its first two values.
        let describe = described();
        let tags = tagged();
        let values = user_values(&[
            ("rds.force_ssl", "1"),
            ("log_min_duration_statement", "1000"),
        ]);
        let cx = cx_with(&[&describe, &tags, &values]);
        let Observation::Present { drift, .. } = testing::observe(&cx, STEP, DbParameterGroup, &[])
            .await
            .unwrap()
        else {
            panic!("present");
        };
        assert_eq!(
            drift,
            ["set log_parameter_max_length=0, log_parameter_max_length_on_error=0"]
        );

        let modify = modify(&BIND_VALUES_OFF);
        let cx = cx_with(&[&describe, &tags, &values, &modify]);
        let applied = testing::ensure(&cx, STEP, DbParameterGroup, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(modify.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_value_someone_turned_back_on_is_drift() {
        let describe = described();
        let tags = tagged();
        let values = user_values(&[
            ("rds.force_ssl", "1"),
            ("log_min_duration_statement", "1000"),
            ("log_parameter_max_length", "-1"),
            ("log_parameter_max_length_on_error", "0"),
        ]);
        let modify = modify(&[("log_parameter_max_length", "0")]);
        let cx = cx_with(&[&describe, &tags, &values, &modify]);
        let applied = testing::ensure(&cx, STEP, DbParameterGroup, &[])
            .await
            .unwrap();
        assert_eq!(applied.notes, ["set log_parameter_max_length=0"]);
        assert_eq!(modify.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_converged_group_makes_no_mutating_call() {
        let describe = described();
        let tags = tagged();
        let values = user_values(&PARAMETERS);
        // No Modify rule: a call would fail the test.
        let cx = cx_with(&[&describe, &tags, &values]);
        let applied = testing::ensure(&cx, STEP, DbParameterGroup, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_new_group_gets_every_parameter_at_once() {
        let describe = mock!(Client::describe_db_cluster_parameter_groups).then_error(|| {
            DescribeDBClusterParameterGroupsError::generic(testing::error_meta(
                "DBParameterGroupNotFound",
            ))
        });
        let create = mock!(Client::create_db_cluster_parameter_group)
            .match_requests(|r| {
                r.db_cluster_parameter_group_name() == Some(NAME)
                    && r.db_parameter_group_family() == Some("aurora-postgresql16")
            })
            .then_output(|| {
                CreateDbClusterParameterGroupOutput::builder()
                    .db_cluster_parameter_group(group())
                    .build()
            });
        let modify = modify(&PARAMETERS);
        let cx = cx_with(&[&describe, &create, &modify]);
        let applied = testing::ensure(&cx, STEP, DbParameterGroup, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!((create.num_calls(), modify.num_calls()), (1, 1));
        assert_eq!(applied.record.outputs["DbClusterParameterGroupName"], NAME);
    }

    /// Nothing at the first look, the group the lost first attempt made at
    /// the next; the retried CreateDBClusterParameterGroup (no client token)
    /// meets it: `DBParameterGroupAlreadyExists`.
    fn retried_create() -> [Rule; 2] {
        let describe = mock!(Client::describe_db_cluster_parameter_groups)
            .sequence()
            .error(|| {
                DescribeDBClusterParameterGroupsError::generic(testing::error_meta(
                    "DBParameterGroupNotFound",
                ))
            })
            .output(|| {
                DescribeDbClusterParameterGroupsOutput::builder()
                    .db_cluster_parameter_groups(group())
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_cluster_parameter_group).then_error(|| {
            aws_sdk_rds::operation::create_db_cluster_parameter_group::CreateDBClusterParameterGroupError::generic(
                testing::error_meta("DBParameterGroupAlreadyExists"),
            )
        });
        [describe, create]
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let [describe, create] = retried_create();
        let values = user_values(&PARAMETERS);
        let cx = cx_with(&[&describe, &create, &tagged(), &values]);
        let applied = testing::ensure(&cx, STEP, DbParameterGroup, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["DbClusterParameterGroupName"], NAME);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_create_conflict_with_a_group_not_ours_is_refused() {
        let [describe, create] = retried_create();
        let untagged = mock!(Client::list_tags_for_resource)
            .then_output(|| ListTagsForResourceOutput::builder().build());
        let cx = cx_with(&[&describe, &create, &untagged]);
        let err = testing::ensure(&cx, STEP, DbParameterGroup, &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    #[test]
    fn tls_is_forced_and_only_wrong_values_are_drift() {
        assert!(PARAMETERS.contains(&("rds.force_ssl", "1")));
        let mut values = BTreeMap::new();
        assert_eq!(parameter_drift(&values).len(), PARAMETERS.len());
        for (k, v) in PARAMETERS {
            values.insert(k.to_owned(), v.to_owned());
        }
        assert!(parameter_drift(&values).is_empty());
        values.insert("rds.force_ssl".into(), "0".into());
        assert_eq!(parameter_drift(&values), [("rds.force_ssl", "1")]);
    }

    #[test]
    fn the_family_follows_the_major_version() {
        assert_eq!(family("16"), "aurora-postgresql16");
    }
}
