//! The DB subnet group: the three database subnets (one per AZ), which have
//! no route to the internet. Aurora places its instances in these.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::rds;
use crate::tags::describe_tag_fix;

const SUBNETS_INPUT: (&str, &str) = ("subnets:database", "DatabaseSubnetIds");
const DESCRIPTION: &str = "payops Aurora: the database subnets (no internet route)";

pub struct DbSubnetGroup;

pub struct FoundGroup {
    name: String,
    arn: String,
    subnets: BTreeSet<String>,
    tags: TagMap,
}

pub enum Fix {
    Subnets(BTreeSet<String>),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subnets(s) => write!(
                f,
                "use the database subnets {}",
                s.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

fn wanted_subnets(step: &StepCx<'_>) -> Result<BTreeSet<String>, AwsError> {
    Ok(step
        .output(SUBNETS_INPUT.0, SUBNETS_INPUT.1)?
        .split(',')
        .map(str::to_owned)
        .collect())
}

impl DbSubnetGroup {
    async fn get(&self, cx: &Context) -> Result<Option<FoundGroup>, AwsError> {
        let name = cx.names.db_subnet_group();
        let out = cx
            .clients
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(&name)
            .send()
            .await
            .op("rds:DescribeDBSubnetGroups");
        let Some(out) = absent_on(out, &["DBSubnetGroupNotFoundFault"])? else {
            return Ok(None);
        };
        let Some(group) = out.db_subnet_groups().first() else {
            return Ok(None);
        };
        let arn = required(
            group.db_subnet_group_arn(),
            "rds:DescribeDBSubnetGroups",
            "DBSubnetGroupArn",
        )?
        .to_owned();
        let tags = rds::list_tags(cx, &arn).await?;
        cx.check_ours(format!("DB subnet group {name}"), &tags)?;
        Ok(Some(FoundGroup {
            name,
            arn,
            subnets: group
                .subnets()
                .iter()
                .filter_map(|s| s.subnet_identifier().map(str::to_owned))
                .collect(),
            tags,
        }))
    }
}

#[async_trait]
impl Resource for DbSubnetGroup {
    type Found = FoundGroup;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "rds:db-subnet-group"
    }

    /// CreateDBSubnetGroup meets the group its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["DBSubnetGroupAlreadyExists"]
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundGroup>, AwsError> {
        Ok(self.get(cx).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundGroup) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundGroup, AwsError> {
        const OP: &str = "rds:CreateDBSubnetGroup";
        let name = cx.names.db_subnet_group();
        let subnets = wanted_subnets(step)?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let created = cx
            .clients
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(&name)
            .db_subnet_group_description(DESCRIPTION)
            .set_subnet_ids(Some(subnets.iter().cloned().collect()))
            .set_tags(Some(rds::rds_tags(&tags)))
            .send()
            .await
            .op(OP);
        match created {
            Ok(out) => {
                let group = required(out.db_subnet_group(), OP, "DBSubnetGroup")?;
                let arn = required(group.db_subnet_group_arn(), OP, "DBSubnetGroupArn")?;
                step.remember("db-subnet-group", arn);
                Ok(FoundGroup {
                    name,
                    arn: arn.to_owned(),
                    subnets,
                    tags,
                })
            }
            // Made by a concurrent or killed run: adopt it only if ours.
            Err(e) if e.is_code(&["DBSubnetGroupAlreadyExists"]) => self.get(cx).await?.ok_or(e),
            Err(e) => Err(e),
        }
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundGroup,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let subnets = wanted_subnets(step)?;
        if found.subnets != subnets {
            fixes.push(Fix::Subnets(subnets));
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
            Fix::Subnets(subnets) => {
                cx.clients
                    .rds
                    .modify_db_subnet_group()
                    .db_subnet_group_name(&found.name)
                    .db_subnet_group_description(DESCRIPTION)
                    .set_subnet_ids(Some(subnets.iter().cloned().collect()))
                    .send()
                    .await
                    .op("rds:ModifyDBSubnetGroup")?;
                found.subnets = subnets;
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
            .resource("db-subnet-group", &found.arn)
            .output("DbSubnetGroupName", &found.name)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundGroup,
    ) -> Result<Vec<String>, AwsError> {
        // The cluster's step goes first and waits until the cluster is gone,
        // so nothing uses the group any more.
        let deleted = cx
            .clients
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(&found.name)
            .send()
            .await
            .op("rds:DeleteDBSubnetGroup");
        absent_on(deleted, &["DBSubnetGroupNotFoundFault"])?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_rds::Client;
    use aws_sdk_rds::operation::create_db_subnet_group::CreateDBSubnetGroupError;
    use aws_sdk_rds::operation::describe_db_subnet_groups::{
        DescribeDBSubnetGroupsError, DescribeDbSubnetGroupsOutput,
    };
    use aws_sdk_rds::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_rds::types::{DbSubnetGroup as RdsGroup, Subnet};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::Change;
    use crate::resources::testing;

    const STEP: &str = "db-subnet-group";
    const NAME: &str = "payops-pr1-db";
    const ARN: &str = "arn:aws:rds:us-east-1:123456789012:subgrp:payops-pr1-db";
    const SUBNETS: [&str; 3] = ["subnet-a", "subnet-b", "subnet-c"];

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[(SUBNETS_INPUT.0, SUBNETS_INPUT.1, &SUBNETS.join(","))])
    }

    fn group() -> RdsGroup {
        let mut group = RdsGroup::builder()
            .db_subnet_group_name(NAME)
            .db_subnet_group_arn(ARN);
        for s in SUBNETS {
            group = group.subnets(Subnet::builder().subnet_identifier(s).build());
        }
        group.build()
    }

    /// Nothing at the first look, the group the lost first attempt made at
    /// the next; the retried CreateDBSubnetGroup (no client token) meets it:
    /// `DBSubnetGroupAlreadyExists`.
    fn retried_create() -> [Rule; 2] {
        let describe = mock!(Client::describe_db_subnet_groups)
            .match_requests(|r| r.db_subnet_group_name() == Some(NAME))
            .sequence()
            .error(|| {
                DescribeDBSubnetGroupsError::generic(testing::error_meta(
                    "DBSubnetGroupNotFoundFault",
                ))
            })
            .output(|| {
                DescribeDbSubnetGroupsOutput::builder()
                    .db_subnet_groups(group())
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_subnet_group).then_error(|| {
            CreateDBSubnetGroupError::generic(testing::error_meta("DBSubnetGroupAlreadyExists"))
        });
        [describe, create]
    }

    fn tags(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_name() == Some(ARN))
            .then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tag_list(Some(rds::rds_tags(&tags)))
                    .build()
            })
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let [describe, create] = retried_create();
        let cx = cx_with(&[&describe, &create, &tags(testing::our_tags(STEP))]);
        let applied = testing::ensure(&cx, STEP, DbSubnetGroup, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["DbSubnetGroupName"], NAME);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_create_conflict_with_a_group_not_ours_is_refused() {
        let [describe, create] = retried_create();
        let cx = cx_with(&[&describe, &create, &tags(TagMap::new())]);
        let err = testing::ensure(&cx, STEP, DbSubnetGroup, &inputs())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }
}
