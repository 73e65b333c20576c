//! The proxy's read-only endpoint `payops-<env>-db-proxy-ro`
//! (CreateDBProxyEndpoint, TargetRole READ_ONLY): reads that can lag a
//! little (a customer's limits for a report, say) go to the Aurora readers
//! through it; the proxy's default endpoint always goes to the writer.
//! Same subnets and security group as the proxy, TLS and IAM authentication
//! as the proxy's (an endpoint has no settings of its own for them).
//!
//! Found by its name; adopted only if it belongs to the env's proxy and is
//! tagged as the env's. Creation takes minutes on AWS (waited for, with
//! progress); a create whose answer was lost meets
//! DBProxyEndpointAlreadyExistsFault and adopts what it made. The proxy's
//! deletion takes its endpoints with it, but `down` deletes this one first
//! (it depends on the proxy) so that nothing is left if the proxy's delete
//! fails.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_rds::types::{DbProxyEndpoint, DbProxyEndpointStatus, DbProxyEndpointTargetRole};

use crate::aws::{AwsError, OpResult, Poll, absent_on, poll_until, required, wait_until_gone};
use crate::engine::{Record, StepCx};
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::database::db_proxy;
use crate::resources::model::SgRole;
use crate::resources::resource::Resource;
use crate::resources::sdk::rds;

pub const STEP: &str = "db-proxy-endpoint:read-only";
const SUBNETS_INPUT: (&str, &str) = ("subnets:database", "DatabaseSubnetIds");
const NOT_FOUND: [&str; 2] = ["DBProxyEndpointNotFoundFault", "DBProxyNotFoundFault"];

pub struct DbProxyReadOnlyEndpoint;

pub struct FoundEndpoint {
    endpoint: DbProxyEndpoint,
    name: String,
    arn: String,
    tags: TagMap,
}

pub enum Fix {
    Wait(String),
    SecurityGroups,
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wait(s) => write!(f, "wait for the endpoint to become available ({s})"),
            Self::SecurityGroups => f.write_str("use the proxy's security group only"),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

fn security_group<'a>(step: &'a StepCx<'_>) -> Result<&'a str, AwsError> {
    let g = SgRole::Proxy;
    Ok(step.output(&g.step_id(), g.output_key())?)
}

/// Statuses from which an endpoint does not become available by itself.
const NEVER_AVAILABLE: [&str; 3] = [
    "incompatible-network",
    "insufficient-resource-limits",
    "deleting",
];

fn status(e: &DbProxyEndpoint) -> &str {
    e.status()
        .map(DbProxyEndpointStatus::as_str)
        .unwrap_or("unknown")
}

impl DbProxyReadOnlyEndpoint {
    async fn get(&self, cx: &Context) -> Result<Option<FoundEndpoint>, AwsError> {
        const OP: &str = "rds:DescribeDBProxyEndpoints";
        let name = cx.names.db_proxy_read_only();
        let out = cx
            .clients
            .rds
            .describe_db_proxy_endpoints()
            .db_proxy_endpoint_name(&name)
            .send()
            .await
            .op(OP);
        let Some(out) = absent_on(out, &NOT_FOUND)? else {
            return Ok(None);
        };
        let Some(endpoint) = out
            .db_proxy_endpoints()
            .iter()
            .find(|e| e.db_proxy_endpoint_name() == Some(name.as_str()))
        else {
            return Ok(None);
        };
        let proxy = cx.names.db_proxy();
        if endpoint.db_proxy_name() != Some(proxy.as_str()) {
            return Err(AwsError::Conflict(format!(
                "RDS Proxy endpoint {name} belongs to proxy {}, not the env's {proxy}: payops \
                 leaves it alone (delete or rename it)",
                endpoint.db_proxy_name().unwrap_or("?")
            )));
        }
        let arn = required(endpoint.db_proxy_endpoint_arn(), OP, "DBProxyEndpointArn")?.to_owned();
        let tags = rds::list_tags(cx, &arn).await?;
        cx.check_ours(format!("RDS Proxy endpoint {name}"), &tags)?;
        Ok(Some(FoundEndpoint {
            endpoint: endpoint.clone(),
            name,
            arn,
            tags,
        }))
    }

    async fn wait_available(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<FoundEndpoint, AwsError> {
        let name = cx.names.db_proxy_read_only();
        let progress = |m: String| step.progress(m);
        poll_until(
            format!("RDS Proxy endpoint {name} to become available"),
            cx.budgets.db_proxy,
            &progress,
            || async {
                let Some(f) = self.get(cx).await? else {
                    return Ok(Poll::Pending("not listed yet".to_owned()));
                };
                let status = status(&f.endpoint).to_owned();
                rds::availability_among(
                    &format!("RDS Proxy endpoint {name}"),
                    Some(&status),
                    &NEVER_AVAILABLE,
                    &format!(
                        "see `aws rds describe-db-proxy-endpoints --db-proxy-endpoint-name {name}`"
                    ),
                    f,
                )
            },
        )
        .await
    }
}

#[async_trait]
impl Resource for DbProxyReadOnlyEndpoint {
    type Found = FoundEndpoint;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "rds:db-proxy-endpoint"
    }

    fn already_exists(&self) -> &'static [&'static str] {
        &["DBProxyEndpointAlreadyExistsFault"]
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundEndpoint>, AwsError> {
        Ok(self.get(cx).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundEndpoint) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundEndpoint, AwsError> {
        let name = cx.names.db_proxy_read_only();
        let proxy = step.output(db_proxy::STEP, "DbProxyName")?;
        let subnets: Vec<String> = step
            .output(SUBNETS_INPUT.0, SUBNETS_INPUT.1)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let tags = cx.tagger.for_create(step.id().as_str());
        let created = cx
            .clients
            .rds
            .create_db_proxy_endpoint()
            .db_proxy_name(proxy)
            .db_proxy_endpoint_name(&name)
            .set_vpc_subnet_ids(Some(subnets))
            .vpc_security_group_ids(security_group(step)?)
            .target_role(DbProxyEndpointTargetRole::ReadOnly)
            .set_tags(Some(rds::rds_tags(&tags)))
            .send()
            .await
            .op("rds:CreateDBProxyEndpoint");
        match created {
            Ok(out) => {
                if let Some(arn) = out
                    .db_proxy_endpoint()
                    .and_then(|e| e.db_proxy_endpoint_arn())
                {
                    step.remember("endpoint", arn);
                }
            }
            // A lost first answer: `get` (in the wait) checks it is ours.
            Err(e) if e.is_code(self.already_exists()) => {}
            Err(e) => return Err(e),
        }
        step.progress(format!("waiting for {name} (minutes on AWS)"));
        self.wait_available(cx, step).await
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundEndpoint,
    ) -> Result<Vec<Fix>, AwsError> {
        let e = &found.endpoint;
        if e.target_role() != Some(&DbProxyEndpointTargetRole::ReadOnly) {
            return Err(AwsError::Conflict(format!(
                "RDS Proxy endpoint {} targets {}, not READ_ONLY: the role cannot change in \
                 place (delete the endpoint, then run `payops up` again)",
                found.name,
                e.target_role().map(|r| r.as_str()).unwrap_or("?")
            )));
        }
        let mut fixes = Vec::new();
        if status(e) != "available" {
            fixes.push(Fix::Wait(status(e).to_owned()));
        }
        let groups: BTreeSet<&str> = e
            .vpc_security_group_ids()
            .iter()
            .map(String::as_str)
            .collect();
        if groups != BTreeSet::from([security_group(step)?]) {
            fixes.push(Fix::SecurityGroups);
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
        step: &StepCx<'_>,
        found: &mut FoundEndpoint,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Wait(_) => *found = self.wait_available(cx, step).await?,
            Fix::SecurityGroups => {
                cx.clients
                    .rds
                    .modify_db_proxy_endpoint()
                    .db_proxy_endpoint_name(&found.name)
                    .vpc_security_group_ids(security_group(step)?)
                    .send()
                    .await
                    .op("rds:ModifyDBProxyEndpoint")?;
                *found = self.wait_available(cx, step).await?;
            }
            Fix::Tags(missing) => {
                rds::add_tags(cx, &found.arn, &missing).await?;
                found.tags.extend(missing);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundEndpoint) -> Record {
        Record::default().resource("endpoint", &found.arn).output(
            "DbProxyReadOnlyEndpoint",
            found.endpoint.endpoint().unwrap_or_default(),
        )
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundEndpoint,
    ) -> Result<Vec<String>, AwsError> {
        if status(&found.endpoint) != "deleting" {
            let deleted = cx
                .clients
                .rds
                .delete_db_proxy_endpoint()
                .db_proxy_endpoint_name(&found.name)
                .send()
                .await
                .op("rds:DeleteDBProxyEndpoint");
            absent_on(deleted, &NOT_FOUND)?;
        }
        let progress = |m: String| step.progress(m);
        wait_until_gone(
            format!("RDS Proxy endpoint {} to be deleted", found.name),
            cx.budgets.db_proxy,
            &progress,
            &NOT_FOUND,
            || async {
                cx.clients
                    .rds
                    .describe_db_proxy_endpoints()
                    .db_proxy_endpoint_name(&found.name)
                    .send()
                    .await
                    .op("rds:DescribeDBProxyEndpoints")
            },
            |o| {
                rds::status_or_deleting(
                    o.db_proxy_endpoints()
                        .first()
                        .and_then(|e| e.status())
                        .map(DbProxyEndpointStatus::as_str),
                )
            },
        )
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_rds::Client;
    use aws_sdk_rds::operation::create_db_proxy_endpoint::CreateDBProxyEndpointError;
    use aws_sdk_rds::operation::delete_db_proxy_endpoint::DeleteDbProxyEndpointOutput;
    use aws_sdk_rds::operation::describe_db_proxy_endpoints::{
        DescribeDBProxyEndpointsError, DescribeDbProxyEndpointsOutput,
    };
    use aws_sdk_rds::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (db_proxy::STEP, "DbProxyName", "payops-pr1-db-proxy"),
            (
                "security-group:db-proxy",
                "DbProxySecurityGroupId",
                "sg-proxy",
            ),
            (
                SUBNETS_INPUT.0,
                SUBNETS_INPUT.1,
                "subnet-a,subnet-b,subnet-c",
            ),
        ])
    }

    fn endpoint(proxy: &str, status: DbProxyEndpointStatus) -> DbProxyEndpoint {
        DbProxyEndpoint::builder()
            .db_proxy_endpoint_name("payops-pr1-db-proxy-ro")
            .db_proxy_endpoint_arn(
                "arn:aws:rds:us-east-1:123456789012:db-proxy-endpoint:prx-endpoint-1",
            )
            .db_proxy_name(proxy)
            .status(status)
            .target_role(DbProxyEndpointTargetRole::ReadOnly)
            .vpc_security_group_ids("sg-proxy")
            .endpoint("payops-pr1-db-proxy-ro.endpoint.proxy-abc.us-east-1.rds.amazonaws.com")
            .build()
    }

    fn described(e: DbProxyEndpoint) -> DescribeDbProxyEndpointsOutput {
        DescribeDbProxyEndpointsOutput::builder()
            .db_proxy_endpoints(e)
            .build()
    }

    fn not_found() -> DescribeDBProxyEndpointsError {
        DescribeDBProxyEndpointsError::generic(testing::error_meta("DBProxyEndpointNotFoundFault"))
    }

    fn tags() -> Rule {
        let list = rds::rds_tags(&testing::our_tags(STEP));
        mock!(Client::list_tags_for_resource).then_output(move || {
            ListTagsForResourceOutput::builder()
                .set_tag_list(Some(list.clone()))
                .build()
        })
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    const PROXY: &str = "payops-pr1-db-proxy";

    #[tokio::test]
    async fn a_converged_endpoint_makes_no_mutating_call() {
        let describe = mock!(Client::describe_db_proxy_endpoints)
            .then_output(|| described(endpoint(PROXY, DbProxyEndpointStatus::Available)));
        let t = tags();
        let cx = cx_with(&[&describe, &t]);
        let applied = testing::ensure(&cx, STEP, DbProxyReadOnlyEndpoint, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.record.outputs["DbProxyReadOnlyEndpoint"].contains("-ro.endpoint."));
    }

    #[tokio::test(start_paused = true)]
    async fn creates_a_read_only_endpoint_and_adopts_it_after_a_lost_answer() {
        let describe = mock!(Client::describe_db_proxy_endpoints)
            .sequence()
            .error(not_found)
            .output(|| described(endpoint(PROXY, DbProxyEndpointStatus::Creating)))
            .output(|| described(endpoint(PROXY, DbProxyEndpointStatus::Available)))
            .repeatedly()
            .build();
        // The first attempt made it, its answer was lost: the SDK's retry
        // meets it.
        let create = mock!(Client::create_db_proxy_endpoint)
            .match_requests(|r| {
                r.target_role() == Some(&DbProxyEndpointTargetRole::ReadOnly)
                    && r.db_proxy_name() == Some(PROXY)
                    && r.vpc_security_group_ids() == ["sg-proxy"]
                    && r.vpc_subnet_ids().len() == 3
            })
            .then_error(|| {
                CreateDBProxyEndpointError::generic(testing::error_meta(
                    "DBProxyEndpointAlreadyExistsFault",
                ))
            });
        let t = tags();
        let cx = cx_with(&[&describe, &create, &t]);
        let applied = testing::ensure(&cx, STEP, DbProxyReadOnlyEndpoint, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_endpoint_of_another_proxy_is_left_alone() {
        let describe = mock!(Client::describe_db_proxy_endpoints)
            .then_output(|| described(endpoint("someone-else", DbProxyEndpointStatus::Available)));
        let t = tags();
        let cx = cx_with(&[&describe, &t]);
        let err = testing::ensure(&cx, STEP, DbProxyReadOnlyEndpoint, &inputs())
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.contains("someone-else"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn teardown_waits_until_the_endpoint_is_gone() {
        let describe = mock!(Client::describe_db_proxy_endpoints)
            .sequence()
            .output(|| described(endpoint(PROXY, DbProxyEndpointStatus::Available)))
            .output(|| described(endpoint(PROXY, DbProxyEndpointStatus::Deleting)))
            .error(not_found)
            .build();
        let delete = mock!(Client::delete_db_proxy_endpoint)
            .then_output(|| DeleteDbProxyEndpointOutput::builder().build());
        let t = tags();
        let cx = cx_with(&[&describe, &delete, &t]);
        let removed = testing::destroy(&cx, STEP, DbProxyReadOnlyEndpoint)
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
    }
}
