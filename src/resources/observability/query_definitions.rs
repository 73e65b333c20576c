//! CloudWatch Logs Insights saved queries for security analysis, one per
//! question an on-call engineer or auditor asks of the env's logs: which
//! payments fail and why, which requests the API rejects and from where, when
//! secret rotation failed, what traffic the VPC refused.
//!
//! Saved queries (query definitions) cannot be tagged, so ownership lives in
//! the query itself: its first line is a Logs Insights comment carrying the
//! ownership tokens (`# payops:managed-by=payops payops:env=<env> ...`), as
//! the dashboard carries them in a text widget. A definition of our name
//! without them (or with another env's) is someone else's: never adopted,
//! rewritten or deleted. Definitions are regional, like the env's log groups,
//! so the name `payops/<env>/<query>` needs no region.
//!
//! PutQueryDefinition takes a client token, which the SDK fills in once per
//! call and reuses on its retries: a create whose answer was lost returns the
//! same definition, not a second one.

use std::fmt;

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;
use crate::resources::model::Function;
use crate::resources::resource::Resource;

/// A saved query of the env.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// Rejected and failed payments by reason, from the payment functions.
    FailedPayments,
    /// API requests answered 4xx/5xx, by status and source address.
    RejectedRequests,
    /// Errors of the master secret's rotation function.
    RotationFailures,
    /// Traffic the VPC's security groups and network ACLs refused.
    RejectedFlows,
}

impl Query {
    pub const ALL: [Self; 4] = [
        Self::FailedPayments,
        Self::RejectedRequests,
        Self::RotationFailures,
        Self::RejectedFlows,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Self::FailedPayments => "failed-payments",
            Self::RejectedRequests => "rejected-requests",
            Self::RotationFailures => "rotation-failures",
            Self::RejectedFlows => "rejected-flows",
        }
    }

    pub fn step_id(self) -> String {
        format!("query-definition:{}", self.slug())
    }

    /// The log groups it reads: (their step, their name under `/payops/<env>/`).
    pub fn log_groups(self) -> Vec<(String, String)> {
        let function = |f: Function| (f.log_step(), format!("lambda/{}", f.slug()));
        match self {
            Self::FailedPayments => vec![
                function(Function::Validation),
                function(Function::Fraud),
                function(Function::Transaction),
            ],
            Self::RejectedRequests => vec![(
                "log-group:api-access".to_owned(),
                "api-gateway/access".to_owned(),
            )],
            Self::RotationFailures => vec![function(Function::Rotation)],
            Self::RejectedFlows => {
                vec![("log-group:flow-logs".to_owned(), "vpc-flow-logs".to_owned())]
            }
        }
    }

    /// The query, after the ownership line. Field names are those the env's
    /// logs carry: the functions' JSON lines (`message`, `reason`, `error`:
    /// lambda/payops_lib.py), the API's access log format
    /// (edge/api_definition.rs) and the default VPC flow log format, whose
    /// fields Logs Insights discovers (`srcAddr`, `action`, ...).
    fn body(self) -> &'static str {
        match self {
            Self::FailedPayments => concat!(
                "fields @timestamp, @log, message, reason, error, requestId\n",
                "| filter message like /rejected|failed|not published/\n",
                "| stats count(*) as payments by message, reason, error\n",
                "| sort payments desc",
            ),
            Self::RejectedRequests => concat!(
                "fields @timestamp, status, ip, httpMethod, resourcePath, errorMessage\n",
                "| filter status >= 400\n",
                "| stats count(*) as requests by status, ip, resourcePath\n",
                "| sort requests desc",
            ),
            Self::RotationFailures => concat!(
                "fields @timestamp, @message, @requestId\n",
                "| filter @message like /(?i)(error|exception|fail|timed out)/\n",
                "| sort @timestamp desc\n",
                "| limit 100",
            ),
            Self::RejectedFlows => concat!(
                "fields @timestamp, srcAddr, dstAddr, dstPort, protocol\n",
                "| filter action = \"REJECT\"\n",
                "| stats count(*) as flows by srcAddr, dstAddr, dstPort, protocol\n",
                "| sort flows desc\n",
                "| limit 50",
            ),
        }
    }
}

pub struct QueryDefinition {
    query: Query,
}

impl QueryDefinition {
    pub fn new(query: Query) -> Self {
        Self { query }
    }

    /// `payops/<env>/<query>`: the console lists saved queries as folders by `/`.
    fn name(&self, cx: &Context) -> String {
        format!("payops/{}/{}", cx.env(), self.query.slug())
    }

    fn log_group_names(&self, cx: &Context) -> Vec<String> {
        self.query
            .log_groups()
            .into_iter()
            .map(|(_, suffix)| cx.names.log_group(&suffix))
            .collect()
    }

    /// The ownership line, then the query.
    fn query_string(&self, cx: &Context, step: &StepCx<'_>) -> String {
        format!(
            "# {}={} {}={} {}={}\n{}",
            tags::MANAGED_BY,
            tags::MANAGER,
            tags::ENV,
            cx.env(),
            tags::STEP,
            step.id().as_str(),
            self.query.body()
        )
    }
}

/// The ownership tokens (`payops:<key>=<value>`) of a query's comment lines.
fn marker_tags(query: &str) -> TagMap {
    query
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .flat_map(str::split_whitespace)
        .filter_map(|token| token.split_once('='))
        .filter(|(k, _)| k.starts_with("payops:"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub struct FoundQuery {
    id: String,
    query: String,
    log_groups: Vec<String>,
}

/// PutQueryDefinition replaces the whole definition, so one fix rewrites it.
pub struct Rewrite(Vec<&'static str>);

impl fmt::Display for Rewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rewrite the saved query ({} differ)", self.0.join(", "))
    }
}

#[async_trait]
impl Resource for QueryDefinition {
    type Found = FoundQuery;
    type Fix = Rewrite;

    fn kind(&self) -> &'static str {
        "logs:query-definition"
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundQuery>, AwsError> {
        const OP: &str = "logs:DescribeQueryDefinitions";
        let name = self.name(cx);
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let out = cx
                .clients
                .logs
                .describe_query_definitions()
                .query_definition_name_prefix(&name)
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .op(OP)?;
            for d in out.query_definitions() {
                // The prefix also matches `payops/<env>/<query>-other`.
                if d.name() != Some(name.as_str()) {
                    continue;
                }
                let id = required(d.query_definition_id(), OP, "queryDefinitionId")?;
                let query = d.query_string().unwrap_or_default().to_owned();
                cx.check_ours(format!("saved query {name} ({id})"), &marker_tags(&query))?;
                found.push(FoundQuery {
                    id: id.to_owned(),
                    query,
                    log_groups: d.log_group_names().to_vec(),
                });
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        // The recorded one first (see `keep_of_duplicates`).
        let recorded = step.previous_resource("query_definition");
        crate::resources::resource::recorded_first(&mut found, recorded, |f| &f.id);
        Ok(found)
    }

    fn describe(&self, found: &FoundQuery) -> String {
        found.id.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundQuery, AwsError> {
        const OP: &str = "logs:PutQueryDefinition";
        let query = self.query_string(cx, step);
        let log_groups = self.log_group_names(cx);
        let out = cx
            .clients
            .logs
            .put_query_definition()
            .name(self.name(cx))
            .query_string(&query)
            .set_log_group_names(Some(log_groups.clone()))
            .send()
            .await
            .op(OP)?;
        let id = required(out.query_definition_id(), OP, "queryDefinitionId")?;
        step.remember("query_definition", id);
        Ok(FoundQuery {
            id: id.to_owned(),
            query,
            log_groups,
        })
    }

    /// Two of our name for one step can only be an older version's or a hand
    /// copy carrying our marker; both are the same query, and nothing points
    /// at a saved query: keep the recorded one (`find` lists it first).
    fn keep_of_duplicates(&self, _found: &[FoundQuery]) -> Option<usize> {
        Some(0)
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundQuery,
    ) -> Result<Vec<Rewrite>, AwsError> {
        let mut differ = Vec::new();
        if found.query != self.query_string(cx, step) {
            differ.push("query");
        }
        let mut want = self.log_group_names(cx);
        let mut have = found.log_groups.clone();
        want.sort();
        have.sort();
        if want != have {
            differ.push("log groups");
        }
        Ok(if differ.is_empty() {
            Vec::new()
        } else {
            vec![Rewrite(differ)]
        })
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundQuery,
        _fix: Rewrite,
    ) -> Result<(), AwsError> {
        let query = self.query_string(cx, step);
        let log_groups = self.log_group_names(cx);
        cx.clients
            .logs
            .put_query_definition()
            .query_definition_id(&found.id)
            .name(self.name(cx))
            .query_string(&query)
            .set_log_group_names(Some(log_groups.clone()))
            .send()
            .await
            .op("logs:PutQueryDefinition")?;
        found.query = query;
        found.log_groups = log_groups;
        Ok(())
    }

    /// No outputs: the name is deterministic, and each output would be one
    /// more Parameter Store write per env.
    fn record(&self, _cx: &Context, found: &FoundQuery) -> Record {
        Record::default().resource("query_definition", &found.id)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundQuery,
    ) -> Result<Vec<String>, AwsError> {
        let out = cx
            .clients
            .logs
            .delete_query_definition()
            .query_definition_id(&found.id)
            .send()
            .await
            .op("logs:DeleteQueryDefinition");
        absent_on(out, &["ResourceNotFoundException"])?;
        Ok(vec![format!("deleted saved query {}", found.id)])
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatchlogs::Client;
    use aws_sdk_cloudwatchlogs::operation::delete_query_definition::{
        DeleteQueryDefinitionError, DeleteQueryDefinitionOutput,
    };
    use aws_sdk_cloudwatchlogs::operation::describe_query_definitions::DescribeQueryDefinitionsOutput;
    use aws_sdk_cloudwatchlogs::operation::put_query_definition::PutQueryDefinitionOutput;
    use aws_sdk_cloudwatchlogs::types::QueryDefinition as CwQuery;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::Change;
    use crate::resources::testing;

    const STEP: &str = "query-definition:failed-payments";
    const NAME: &str = "payops/pr1/failed-payments";
    const GROUPS: [&str; 3] = [
        "/payops/pr1/lambda/payment-validation",
        "/payops/pr1/lambda/fraud-detection",
        "/payops/pr1/lambda/transaction-processing",
    ];

    fn ours() -> String {
        format!(
            "# payops:managed-by=payops payops:env=pr1 payops:step={STEP}\n{}",
            Query::FailedPayments.body()
        )
    }

    fn saved(id: &str, name: &str, query: &str, groups: &[&str]) -> CwQuery {
        CwQuery::builder()
            .query_definition_id(id)
            .name(name)
            .query_string(query)
            .set_log_group_names(Some(groups.iter().map(|g| (*g).to_owned()).collect()))
            .build()
    }

    fn describe(found: Vec<CwQuery>) -> Rule {
        mock!(Client::describe_query_definitions)
            .match_requests(|r| r.query_definition_name_prefix() == Some(NAME))
            .then_output(move || {
                DescribeQueryDefinitionsOutput::builder()
                    .set_query_definitions(Some(found.clone()))
                    .build()
            })
    }

    fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.logs = mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn resource() -> QueryDefinition {
        QueryDefinition::new(Query::FailedPayments)
    }

    #[tokio::test]
    async fn creates_the_query_with_its_ownership_line_and_the_payment_functions_groups() {
        // A sibling whose name only starts like ours is not ours to take.
        let sibling = saved("q-other", &format!("{NAME}-old"), "fields @message", &[]);
        let put = mock!(Client::put_query_definition)
            .match_requests(|r| {
                r.name() == Some(NAME)
                    && r.query_definition_id().is_none()
                    && r.query_string() == Some(ours().as_str())
                    && r.log_group_names() == GROUPS
            })
            .then_output(|| {
                PutQueryDefinitionOutput::builder()
                    .query_definition_id("q-1")
                    .build()
            });
        let cx = context(&[&describe(vec![sibling]), &put]);
        let applied = testing::ensure(&cx, STEP, resource(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.resources["query_definition"], "q-1");
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_query_in_sync_is_adopted_without_mutating_calls() {
        let mut groups = GROUPS;
        groups.reverse(); // AWS need not keep the order
        let cx = context(&[&describe(vec![saved("q-1", NAME, &ours(), &groups)])]);
        let applied = testing::ensure(&cx, STEP, resource(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Unchanged);
    }

    #[tokio::test]
    async fn an_edited_query_is_rewritten_in_place() {
        let edited = ours().replace("sort payments desc", "limit 5");
        let put = mock!(Client::put_query_definition)
            .match_requests(|r| {
                r.query_definition_id() == Some("q-1") && r.query_string() == Some(ours().as_str())
            })
            .then_output(|| {
                PutQueryDefinitionOutput::builder()
                    .query_definition_id("q-1")
                    .build()
            });
        let cx = context(&[
            &describe(vec![saved("q-1", NAME, &edited, &GROUPS[..1])]),
            &put,
        ]);
        let seen = testing::observe(&cx, STEP, resource(), &[]).await.unwrap();
        assert!(
            format!("{seen:?}").contains("query, log groups differ"),
            "{seen:?}"
        );
        let applied = testing::ensure(&cx, STEP, resource(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_query_of_our_name_without_our_ownership_line_is_refused() {
        let theirs = saved("q-9", NAME, "fields @message | limit 20", &GROUPS);
        let cx = context(&[&describe(vec![theirs])]);
        let err = testing::ensure(&cx, STEP, resource(), &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no payops ownership"), "{err}");
    }

    #[tokio::test]
    async fn another_envs_query_is_refused() {
        let other = ours().replace("payops:env=pr1", "payops:env=pr2");
        let cx = context(&[&describe(vec![saved("q-2", NAME, &other, &GROUPS)])]);
        let err = testing::ensure(&cx, STEP, resource(), &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("env pr2"), "{err}");
    }

    #[tokio::test]
    async fn a_query_deleted_meanwhile_is_gone_not_an_error() {
        let delete = mock!(Client::delete_query_definition)
            .match_requests(|r| r.query_definition_id() == Some("q-1"))
            .then_error(|| {
                DeleteQueryDefinitionError::generic(testing::error_meta(
                    "ResourceNotFoundException",
                ))
            });
        let cx = context(&[
            &describe(vec![saved("q-1", NAME, &ours(), &GROUPS)]),
            &delete,
        ]);
        testing::destroy(&cx, STEP, resource()).await.unwrap();
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn down_deletes_the_query() {
        let delete = mock!(Client::delete_query_definition)
            .match_requests(|r| r.query_definition_id() == Some("q-1"))
            .then_output(|| DeleteQueryDefinitionOutput::builder().success(true).build());
        let cx = context(&[
            &describe(vec![saved("q-1", NAME, &ours(), &GROUPS)]),
            &delete,
        ]);
        testing::destroy(&cx, STEP, resource()).await.unwrap();
        assert_eq!(delete.num_calls(), 1);
    }

    #[test]
    fn ownership_tokens_come_from_comment_lines_only() {
        let tags = marker_tags("# payops:env=pr1 payops:managed-by=payops\nfields payops:env=x");
        assert_eq!(tags.get("payops:env").map(String::as_str), Some("pr1"));
        assert_eq!(tags.len(), 2);
    }

    #[test]
    fn every_query_reads_log_groups_of_the_env_and_says_what_it_counts() {
        for q in Query::ALL {
            assert!(!q.log_groups().is_empty(), "{q:?}");
            assert!(
                q.log_groups()
                    .iter()
                    .all(|(step, _)| step.starts_with("log-group:")),
                "{q:?}"
            );
            // A Logs Insights query is commands joined by pipes, one per line here.
            assert!(
                q.body().lines().skip(1).all(|l| l.starts_with("| ")),
                "{q:?}"
            );
        }
    }
}
