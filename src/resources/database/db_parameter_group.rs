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
use crate::resources::sdk::ec2::describe_tag_fix;
use crate::resources::sdk::rds;

/// The parameters payops sets, and why.
pub const PARAMETERS: [(&str, &str); 2] = [
    // Refuse every connection that is not TLS.
    ("rds.force_ssl", "1"),
    // Log statements slower than a second: slow queries show in the
    // exported postgresql log without logging every statement's values.
    ("log_min_duration_statement", "1000"),
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
                                    // Both are dynamic: no reboot needed.
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
    use super::*;

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
