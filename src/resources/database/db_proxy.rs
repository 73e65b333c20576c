//! The RDS Proxy `payops-<env>-db-proxy` in front of the Aurora cluster: the
//! functions' only way to the database (their security group reaches the
//! proxy's, and only the proxy's reaches the database's). It pools the
//! functions' connections, so a burst of Lambda invocations does not exhaust
//! Aurora's max_connections, and it keeps them through a failover.
//!
//! - Engine family POSTGRESQL (it covers Aurora PostgreSQL, Serverless v2
//!   included).
//! - Clients authenticate with IAM only (`IAMAuth=REQUIRED`: an
//!   `rds-db:connect` grant on the proxy, no password) over TLS
//!   (`RequireTLS`; AWS's IAM authentication needs TLS anyway). The proxy
//!   logs in to the database with a password from Secrets Manager
//!   (`AuthScheme=SECRETS`), and it needs one secret per database user it
//!   logs in as (RDS User Guide, rds-proxy-secrets-arns): the auth list
//!   holds the master secret (the migration logs in as the master user) and
//!   `payops/<env>/db-app` (payment validation logs in as `payops_app`),
//!   both with IAM required. It reads only their AWSCURRENT versions, so a
//!   single-user rotation of the master secret carries over to the proxy
//!   (AWS: alternating-users rotation would break it).
//!   `ClientPasswordAuthType` is SCRAM-SHA-256, the PostgreSQL method
//!   Aurora PostgreSQL defaults to (MD5 is legacy).
//! - In the database subnets (no internet route; AWS requires at least two
//!   in different zones, and the database subnets are one per zone), with
//!   its own security group.
//! - Idle client connections close after 15 minutes: a Lambda execution
//!   environment that AWS froze or reclaimed keeps its connection open, and
//!   the proxy should not hold those for AWS's default 30 minutes.
//! - Debug logging off: it would log SQL text, card data included.
//!
//! Drift put back by ModifyDBProxy (whose `Auth` replaces the whole list):
//! TLS, the auth list (an env made before the app secret gains it),
//! authentication settings, idle timeout,
//! security groups, role, debug logging. The subnets cannot change in place
//! (payops then says so rather than replace the proxy on its own).
//!
//! Real AWS: creating takes minutes (Terraform allows 30), deleting too (it
//! allows 60); both are waited for here, with progress. A just-created role
//! may not be usable by RDS yet: CreateDBProxy is retried within the IAM
//! propagation budget. The proxy depends on its role, group, subnets and
//! secret but not on the cluster, so on a fresh env it is created while the
//! cluster and its instances are (the targets step joins them).

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_rds::types::{
    AuthScheme, ClientPasswordAuthType, DbProxy as SdkProxy, DbProxyStatus, EngineFamily,
    IamAuthMode, UserAuthConfig,
};

use crate::aws::{AwsError, OpResult, Poll, absent_on, poll_until, required, wait_until_gone};
use crate::engine::{Record, StepCx};
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::database::db_proxy_role;
use crate::resources::model::SgRole;
use crate::resources::resource::Resource;
use crate::resources::sdk::{iam, rds};

pub const STEP: &str = "db-proxy";
const SUBNETS_INPUT: (&str, &str) = ("subnets:database", "DatabaseSubnetIds");
const ROLE_INPUT: (&str, &str) = (db_proxy_role::STEP, "DbProxyRoleArn");
const ENGINE_FAMILY: &str = "POSTGRESQL";
/// Seconds (AWS: 1-28,800, default 1,800); see the module comment.
pub const IDLE_CLIENT_TIMEOUT: i32 = 900;
const NOT_FOUND: &str = "DBProxyNotFoundFault";

pub struct DbProxy;

pub struct FoundProxy {
    pub proxy: SdkProxy,
    pub name: String,
    pub arn: String,
    tags: TagMap,
}

#[derive(Debug)]
pub enum Fix {
    /// Created or modified, not `available` yet: wait (a run killed during
    /// the wait resumes here).
    Wait(String),
    /// Settings ModifyDBProxy puts back, by name.
    Modify(Vec<&'static str>),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wait(status) => write!(f, "wait for the proxy to become available ({status})"),
            Self::Modify(fields) => write!(f, "update {}", fields.join(", ")),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

/// What the proxy should be, from the step's inputs.
struct Desired {
    /// The master secret, then payops_app's.
    secrets: [String; 2],
    role: String,
    security_group: String,
    subnets: BTreeSet<String>,
}

fn desired(cx: &Context, step: &StepCx<'_>) -> Result<Desired, AwsError> {
    let proxy_sg = SgRole::Proxy;
    Ok(Desired {
        secrets: [
            db_proxy_role::secret_arn(cx, step)?.to_owned(),
            db_proxy_role::app_secret_arn(step)?.to_owned(),
        ],
        role: step.output(ROLE_INPUT.0, ROLE_INPUT.1)?.to_owned(),
        security_group: step
            .output(&proxy_sg.step_id(), proxy_sg.output_key())?
            .to_owned(),
        subnets: step
            .output(SUBNETS_INPUT.0, SUBNETS_INPUT.1)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// AWS refuses a proxy in fewer than two subnets (in different zones):
/// said before any call, with the reason.
fn check_subnets(subnets: &BTreeSet<String>) -> Result<(), AwsError> {
    if subnets.len() < 2 {
        return Err(AwsError::Conflict(format!(
            "an RDS Proxy needs at least two subnets in different availability zones; the env \
             has {} database subnet(s)",
            subnets.len()
        )));
    }
    Ok(())
}

/// The auth list: one entry per database user the proxy logs in as, each
/// with IAM required of clients.
fn auth(secrets: &[String; 2]) -> Vec<UserAuthConfig> {
    let [master, app] = secrets;
    [
        (
            master,
            "payops: the Aurora master user (the schema migration); clients use IAM \
             authentication",
        ),
        (
            app,
            "payops: payops_app (payment validation); clients use IAM authentication",
        ),
    ]
    .into_iter()
    .map(|(secret, description)| {
        UserAuthConfig::builder()
            .description(description)
            .auth_scheme(AuthScheme::Secrets)
            .secret_arn(secret)
            .iam_auth(IamAuthMode::Required)
            .client_password_auth_type(ClientPasswordAuthType::PostgresScramSha256)
            .build()
    })
    .collect()
}

/// The settings that differ from `d` (ModifyDBProxy puts them all back).
fn drift(p: &SdkProxy, d: &Desired) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if p.require_tls() != Some(true) {
        fields.push("TLS required");
    }
    // The list's order means nothing to RDS: compared as a set of secrets.
    let secrets: BTreeSet<&str> = p.auth().iter().filter_map(|a| a.secret_arn()).collect();
    let wanted: BTreeSet<&str> = d.secrets.iter().map(String::as_str).collect();
    if secrets != wanted || p.auth().len() != wanted.len() {
        fields.push("auth list (the master and payops_app secrets)");
    }
    let settings_ok = p.auth().iter().all(|a| {
        a.auth_scheme() == Some(&AuthScheme::Secrets)
            && a.iam_auth() == Some(&IamAuthMode::Required)
            && a.client_password_auth_type() == Some(&ClientPasswordAuthType::PostgresScramSha256)
    });
    if !settings_ok {
        fields.push("authentication (IAM required, SCRAM)");
    }
    if p.idle_client_timeout() != Some(IDLE_CLIENT_TIMEOUT) {
        fields.push("idle client timeout");
    }
    let groups: BTreeSet<&str> = p
        .vpc_security_group_ids()
        .iter()
        .map(String::as_str)
        .collect();
    if groups != BTreeSet::from([d.security_group.as_str()]) {
        fields.push("security groups");
    }
    if p.role_arn() != Some(d.role.as_str()) {
        fields.push("role");
    }
    if p.debug_logging() == Some(true) {
        fields.push("debug logging");
    }
    fields
}

/// Refuses what only a new proxy could change.
fn immutable(p: &SdkProxy, d: &Desired) -> Result<(), AwsError> {
    let name = p.db_proxy_name().unwrap_or_default();
    if p.engine_family() != Some(ENGINE_FAMILY) {
        return Err(AwsError::Conflict(format!(
            "RDS Proxy {name} is for engine family {}, not {ENGINE_FAMILY}: the family cannot \
             change in place (delete the proxy, then run `payops up` again)",
            p.engine_family().unwrap_or("?")
        )));
    }
    let subnets: BTreeSet<String> = p.vpc_subnet_ids().iter().cloned().collect();
    if subnets != d.subnets {
        return Err(AwsError::Conflict(format!(
            "RDS Proxy {name} is in subnets {subnets:?}, not the env's database subnets {:?}: \
             a proxy's subnets cannot change in place (delete the proxy, then run `payops up` \
             again)",
            d.subnets
        )));
    }
    Ok(())
}

/// Statuses from which a proxy does not become available by itself.
const NEVER_AVAILABLE: [&str; 5] = [
    "incompatible-network",
    "insufficient-resource-limits",
    "suspended",
    "suspending",
    "deleting",
];

fn availability(name: &str, found: FoundProxy) -> Result<Poll<FoundProxy>, AwsError> {
    let status = found
        .proxy
        .status()
        .map(DbProxyStatus::as_str)
        .map(str::to_owned);
    rds::availability_among(
        &format!("RDS Proxy {name}"),
        status.as_deref(),
        &NEVER_AVAILABLE,
        &format!("see `aws rds describe-db-proxies --db-proxy-name {name}`"),
        found,
    )
}

/// Whether a CreateDBProxy error says the role is not usable by RDS yet.
/// RDS answers InvalidParameterValue naming the role (unconfirmed wording,
/// so any InvalidParameterValue about a role counts), besides the messages
/// other services send for a role still propagating.
fn role_propagating(e: &AwsError) -> bool {
    if iam::role_not_yet_usable(e) {
        return true;
    }
    match e {
        AwsError::Api { code, message, .. } => {
            code.as_deref() == Some("InvalidParameterValue")
                && message.to_ascii_lowercase().contains("role")
        }
        _ => false,
    }
}

/// The env's proxy by its name (RDS addresses proxies by name; the ARN ends
/// in a random id), refused unless tagged as this env's.
pub async fn get(cx: &Context) -> Result<Option<FoundProxy>, AwsError> {
    const OP: &str = "rds:DescribeDBProxies";
    let name = cx.names.db_proxy();
    let out = cx
        .clients
        .rds
        .describe_db_proxies()
        .db_proxy_name(&name)
        .send()
        .await
        .op(OP);
    let Some(out) = absent_on(out, &[NOT_FOUND])? else {
        return Ok(None);
    };
    let Some(proxy) = out
        .db_proxies()
        .iter()
        .find(|p| p.db_proxy_name() == Some(name.as_str()))
    else {
        return Ok(None);
    };
    let arn = required(proxy.db_proxy_arn(), OP, "DBProxyArn")?.to_owned();
    let tags = rds::list_tags(cx, &arn).await?;
    cx.check_ours(format!("RDS Proxy {name}"), &tags)?;
    Ok(Some(FoundProxy {
        proxy: proxy.clone(),
        name,
        arn,
        tags,
    }))
}

/// The proxy's resource id (`prx-...`, the last part of its ARN): what
/// `rds-db:connect` grants name, not the cluster's resource id.
pub fn resource_id(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

impl DbProxy {
    async fn wait_available(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<FoundProxy, AwsError> {
        let name = cx.names.db_proxy();
        let progress = |m: String| step.progress(m);
        poll_until(
            format!("RDS Proxy {name} to become available"),
            cx.budgets.db_proxy,
            &progress,
            || async {
                match get(cx).await? {
                    Some(f) => availability(&name, f),
                    None => Ok(Poll::Pending("not listed yet".to_owned())),
                }
            },
        )
        .await
    }
}

#[async_trait]
impl Resource for DbProxy {
    type Found = FoundProxy;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "rds:db-proxy"
    }

    /// CreateDBProxy meets the proxy its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["DBProxyAlreadyExistsFault"]
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundProxy>, AwsError> {
        Ok(get(cx).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundProxy) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundProxy, AwsError> {
        const OP: &str = "rds:CreateDBProxy";
        let d = desired(cx, step)?;
        check_subnets(&d.subnets)?;
        let name = cx.names.db_proxy();
        let tags = rds::rds_tags(&cx.tagger.for_create(step.id().as_str()));
        let progress = |m: String| step.progress(m);
        let created = iam::retry_while_propagating(
            cx,
            &format!("creating RDS Proxy {name}"),
            &progress,
            role_propagating,
            |_| async {
                cx.clients
                    .rds
                    .create_db_proxy()
                    .db_proxy_name(&name)
                    .engine_family(EngineFamily::Postgresql)
                    .set_auth(Some(auth(&d.secrets)))
                    .role_arn(&d.role)
                    .set_vpc_subnet_ids(Some(d.subnets.iter().cloned().collect()))
                    .vpc_security_group_ids(&d.security_group)
                    .require_tls(true)
                    .idle_client_timeout(IDLE_CLIENT_TIMEOUT)
                    .debug_logging(false)
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .op(OP)
            },
        )
        .await;
        match created {
            Ok(out) => {
                if let Some(arn) = out.db_proxy().and_then(|p| p.db_proxy_arn()) {
                    step.remember("proxy", arn);
                }
            }
            // Made by a lost first answer, a concurrent or a killed run:
            // `get` (in the wait) checks it is ours.
            Err(e) if e.is_code(self.already_exists()) => {}
            Err(e) => return Err(e),
        }
        step.progress(format!("waiting for {name} (several minutes on AWS)"));
        self.wait_available(cx, step).await
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundProxy,
    ) -> Result<Vec<Fix>, AwsError> {
        let d = desired(cx, step)?;
        immutable(&found.proxy, &d)?;
        let mut fixes = Vec::new();
        match found.proxy.status().map(DbProxyStatus::as_str) {
            Some("available") => {}
            other => fixes.push(Fix::Wait(other.unwrap_or("unknown").to_owned())),
        }
        let fields = drift(&found.proxy, &d);
        if !fields.is_empty() {
            fixes.push(Fix::Modify(fields));
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
        found: &mut FoundProxy,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Wait(_) => *found = self.wait_available(cx, step).await?,
            Fix::Modify(_) => {
                // ModifyDBProxy refuses a proxy that is not available.
                *found = self.wait_available(cx, step).await?;
                let d = desired(cx, step)?;
                cx.clients
                    .rds
                    .modify_db_proxy()
                    .db_proxy_name(&found.name)
                    .set_auth(Some(auth(&d.secrets)))
                    .require_tls(true)
                    .idle_client_timeout(IDLE_CLIENT_TIMEOUT)
                    .debug_logging(false)
                    .role_arn(&d.role)
                    .security_groups(&d.security_group)
                    .send()
                    .await
                    .op("rds:ModifyDBProxy")?;
                *found = self.wait_available(cx, step).await?;
            }
            Fix::Tags(missing) => {
                rds::add_tags(cx, &found.arn, &missing).await?;
                found.tags.extend(missing);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundProxy) -> Record {
        Record::default()
            .resource("proxy", &found.arn)
            .output("DbProxyArn", &found.arn)
            .output("DbProxyName", &found.name)
            .output("DbProxyResourceId", resource_id(&found.arn))
            .output(
                "DbProxyEndpoint",
                found.proxy.endpoint().unwrap_or_default(),
            )
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundProxy,
    ) -> Result<Vec<String>, AwsError> {
        if found.proxy.status() != Some(&DbProxyStatus::Deleting) {
            // AWS deletes the proxy's endpoints and target groups with it.
            let deleted = cx
                .clients
                .rds
                .delete_db_proxy()
                .db_proxy_name(&found.name)
                .send()
                .await
                .op("rds:DeleteDBProxy");
            absent_on(deleted, &[NOT_FOUND])?;
        }
        // Asynchronous: until it is gone, its network interfaces hold its
        // security group (DeleteSecurityGroup: DependencyViolation).
        let progress = |m: String| step.progress(m);
        wait_until_gone(
            format!("RDS Proxy {} to be deleted", found.name),
            cx.budgets.db_proxy,
            &progress,
            &[NOT_FOUND],
            || async {
                cx.clients
                    .rds
                    .describe_db_proxies()
                    .db_proxy_name(&found.name)
                    .send()
                    .await
                    .op("rds:DescribeDBProxies")
            },
            |o| {
                rds::status_or_deleting(
                    o.db_proxies()
                        .first()
                        .and_then(|p| p.status())
                        .map(DbProxyStatus::as_str),
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
    use aws_sdk_rds::operation::create_db_proxy::{CreateDBProxyError, CreateDbProxyOutput};
    use aws_sdk_rds::operation::delete_db_proxy::DeleteDbProxyOutput;
    use aws_sdk_rds::operation::describe_db_proxies::{
        DescribeDBProxiesError, DescribeDbProxiesOutput,
    };
    use aws_sdk_rds::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_rds::operation::modify_db_proxy::ModifyDbProxyOutput;
    use aws_sdk_rds::types::UserAuthConfigInfo;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;

    const ARN: &str = "arn:aws:rds:us-east-1:123456789012:db-proxy:prx-0123456789abcdef0";
    const SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:payops/pr1/db-master-AbCdEf";
    const APP_SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:payops/pr1/db-app-GhIjKl";
    const ROLE: &str = "arn:aws:iam::123456789012:role/payops-pr1-us-east-1-db-proxy";

    fn entry(secret: &str) -> UserAuthConfigInfo {
        UserAuthConfigInfo::builder()
            .auth_scheme(AuthScheme::Secrets)
            .secret_arn(secret)
            .iam_auth(IamAuthMode::Required)
            .client_password_auth_type(ClientPasswordAuthType::PostgresScramSha256)
            .build()
    }

    fn inputs(subnets: &str) -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            ("secret:db-master", "DbSecretArn", SECRET),
            (
                db_proxy_role::APP_SECRET_INPUT.0,
                db_proxy_role::APP_SECRET_INPUT.1,
                APP_SECRET,
            ),
            (ROLE_INPUT.0, ROLE_INPUT.1, ROLE),
            (
                "security-group:db-proxy",
                "DbProxySecurityGroupId",
                "sg-proxy",
            ),
            (SUBNETS_INPUT.0, SUBNETS_INPUT.1, subnets),
        ])
    }

    fn proxy(status: DbProxyStatus) -> SdkProxy {
        SdkProxy::builder()
            .db_proxy_name("payops-pr1-db-proxy")
            .db_proxy_arn(ARN)
            .status(status)
            .engine_family("POSTGRESQL")
            .endpoint("payops-pr1-db-proxy.proxy-abc.us-east-1.rds.amazonaws.com")
            .vpc_subnet_ids("subnet-a")
            .vpc_subnet_ids("subnet-b")
            .vpc_subnet_ids("subnet-c")
            .vpc_security_group_ids("sg-proxy")
            // AWS may list the entries in any order.
            .auth(entry(APP_SECRET))
            .auth(entry(SECRET))
            .role_arn(ROLE)
            .require_tls(true)
            .idle_client_timeout(IDLE_CLIENT_TIMEOUT)
            .debug_logging(false)
            .build()
    }

    fn described(p: SdkProxy) -> DescribeDbProxiesOutput {
        DescribeDbProxiesOutput::builder().db_proxies(p).build()
    }

    fn not_found() -> DescribeDBProxiesError {
        DescribeDBProxiesError::generic(testing::error_meta(NOT_FOUND))
    }

    fn tags(step: &str) -> Rule {
        let list = rds::rds_tags(&testing::our_tags(step));
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

    const SUBNETS: &str = "subnet-a,subnet-b,subnet-c";

    #[tokio::test]
    async fn a_converged_proxy_makes_no_mutating_call() {
        let describe = mock!(Client::describe_db_proxies)
            .then_output(|| described(proxy(DbProxyStatus::Available)));
        let t = tags(STEP);
        let cx = cx_with(&[&describe, &t]);
        let applied = testing::ensure(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
        let r = &applied.record;
        assert_eq!(r.outputs["DbProxyResourceId"], "prx-0123456789abcdef0");
        assert!(r.outputs["DbProxyEndpoint"].contains(".proxy-"));
    }

    #[tokio::test(start_paused = true)]
    async fn creates_a_tls_only_iam_authenticated_proxy_and_waits_until_available() {
        let describe = mock!(Client::describe_db_proxies)
            .sequence()
            .error(not_found)
            .output(|| described(proxy(DbProxyStatus::Creating)))
            .output(|| described(proxy(DbProxyStatus::Available)))
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_proxy)
            .match_requests(|r| {
                // One entry per database user (RDS User Guide,
                // rds-proxy-secrets-arns), each with IAM required of clients.
                let secrets: Vec<_> = r.auth().iter().filter_map(|a| a.secret_arn()).collect();
                r.require_tls() == Some(true)
                    && r.engine_family() == Some(&aws_sdk_rds::types::EngineFamily::Postgresql)
                    && secrets == [SECRET, APP_SECRET]
                    && r.auth().iter().all(|a| {
                        a.iam_auth() == Some(&IamAuthMode::Required)
                            && a.auth_scheme() == Some(&AuthScheme::Secrets)
                            && a.client_password_auth_type()
                                == Some(&ClientPasswordAuthType::PostgresScramSha256)
                    })
                    && r.role_arn() == Some(ROLE)
                    && r.vpc_subnet_ids().len() == 3
                    && r.vpc_security_group_ids() == ["sg-proxy"]
                    && r.debug_logging() == Some(false)
                    && r.idle_client_timeout() == Some(IDLE_CLIENT_TIMEOUT)
                    && r.tags().iter().any(|t| t.key() == Some(crate::tags::STEP))
            })
            .then_output(|| {
                CreateDbProxyOutput::builder()
                    .db_proxy(proxy(DbProxyStatus::Creating))
                    .build()
            });
        let t = tags(STEP);
        let cx = cx_with(&[&describe, &create, &t]);
        let applied = testing::ensure(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        // Waited: one describe before, then creating, then available.
        assert!(describe.num_calls() >= 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_role_rds_cannot_use_yet_is_retried_within_the_propagation_budget() {
        let describe = mock!(Client::describe_db_proxies)
            .sequence()
            .error(not_found)
            .output(|| described(proxy(DbProxyStatus::Available)))
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_proxy)
            .sequence()
            .error(|| {
                CreateDBProxyError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("InvalidParameterValue")
                        .message("IAM role arn:aws:iam::123456789012:role/x is not valid")
                        .build(),
                )
            })
            .output(|| {
                CreateDbProxyOutput::builder()
                    .db_proxy(proxy(DbProxyStatus::Creating))
                    .build()
            })
            .build();
        let t = tags(STEP);
        let cx = cx_with(&[&describe, &create, &t]);
        let applied = testing::ensure(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_create_answer_adopts_the_proxy_it_made() {
        let describe = mock!(Client::describe_db_proxies)
            .sequence()
            .error(not_found)
            .output(|| described(proxy(DbProxyStatus::Available)))
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_proxy).then_error(|| {
            CreateDBProxyError::generic(testing::error_meta("DBProxyAlreadyExistsFault"))
        });
        let t = tags(STEP);
        let cx = cx_with(&[&describe, &create, &t]);
        let applied = testing::ensure(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["DbProxyArn"], ARN);
    }

    #[tokio::test]
    async fn a_proxy_of_the_same_name_not_tagged_as_ours_is_never_adopted() {
        let describe = mock!(Client::describe_db_proxies)
            .then_output(|| described(proxy(DbProxyStatus::Available)));
        let foreign = mock!(Client::list_tags_for_resource)
            .then_output(|| ListTagsForResourceOutput::builder().build());
        let cx = cx_with(&[&describe, &foreign]);
        let err = testing::ensure(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("payops-pr1-db-proxy"), "{err}");
    }

    #[tokio::test]
    async fn fewer_than_two_subnets_are_refused_before_any_create() {
        let describe = mock!(Client::describe_db_proxies).then_error(not_found);
        let create =
            mock!(Client::create_db_proxy).then_output(|| CreateDbProxyOutput::builder().build());
        let cx = cx_with(&[&describe, &create]);
        let err = testing::ensure(&cx, STEP, DbProxy, &inputs("subnet-a"))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("at least two subnets"), "{err}");
        assert_eq!(create.num_calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn tls_auth_idle_timeout_and_groups_that_drifted_are_put_back() {
        let drifted = || {
            let mut p = proxy(DbProxyStatus::Available);
            p.require_tls = Some(false);
            p.idle_client_timeout = Some(1800);
            p.vpc_security_group_ids = Some(vec!["sg-proxy".into(), "sg-other".into()]);
            p.auth = Some(vec![
                UserAuthConfigInfo::builder()
                    .auth_scheme(AuthScheme::Secrets)
                    .secret_arn(SECRET)
                    .iam_auth(IamAuthMode::Disabled)
                    .build(),
                entry(APP_SECRET),
            ]);
            p
        };
        let describe = mock!(Client::describe_db_proxies)
            .sequence()
            .output(move || described(drifted()))
            .times(2)
            .output(|| described(proxy(DbProxyStatus::Available)))
            .repeatedly()
            .build();
        let modify = mock!(Client::modify_db_proxy)
            .match_requests(|r| {
                r.require_tls() == Some(true)
                    && r.idle_client_timeout() == Some(IDLE_CLIENT_TIMEOUT)
                    && r.security_groups() == ["sg-proxy"]
                    && r.auth().len() == 2
                    && r.auth()
                        .iter()
                        .all(|a| a.iam_auth() == Some(&IamAuthMode::Required))
            })
            .then_output(|| ModifyDbProxyOutput::builder().build());
        let t = tags(STEP);
        let cx = cx_with(&[&describe, &modify, &t]);
        let obs = testing::observe(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .unwrap();
        let crate::engine::Observation::Present { drift, .. } = obs else {
            panic!("present")
        };
        assert_eq!(
            drift,
            [
                "update TLS required, authentication (IAM required, SCRAM), idle client \
                 timeout, security groups"
            ]
        );
        let applied = testing::ensure(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(modify.num_calls(), 1);
    }

    /// An env made before payops_app had a secret: its proxy's auth list
    /// holds the master secret only. `plan` says so; `up` puts the whole list
    /// back (ModifyDBProxy's Auth replaces it), the master entry kept.
    #[tokio::test(start_paused = true)]
    async fn an_auth_list_without_the_app_secret_is_drift_and_gets_both_entries() {
        let older = || {
            let mut p = proxy(DbProxyStatus::Available);
            p.auth = Some(vec![entry(SECRET)]);
            p
        };
        let describe = mock!(Client::describe_db_proxies)
            .sequence()
            .output(move || described(older()))
            .times(2)
            .output(|| described(proxy(DbProxyStatus::Available)))
            .repeatedly()
            .build();
        let modify = mock!(Client::modify_db_proxy)
            .match_requests(|r| {
                let secrets: BTreeSet<_> = r.auth().iter().filter_map(|a| a.secret_arn()).collect();
                secrets == BTreeSet::from([SECRET, APP_SECRET])
                    && r.auth().iter().all(|a| {
                        a.iam_auth() == Some(&IamAuthMode::Required)
                            && a.auth_scheme() == Some(&AuthScheme::Secrets)
                    })
            })
            .then_output(|| ModifyDbProxyOutput::builder().build());
        let t = tags(STEP);
        let cx = cx_with(&[&describe, &modify, &t]);
        let obs = testing::observe(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .unwrap();
        let crate::engine::Observation::Present { drift, .. } = obs else {
            panic!("present")
        };
        assert_eq!(
            drift,
            ["update auth list (the master and payops_app secrets)"]
        );
        let applied = testing::ensure(&cx, STEP, DbProxy, &inputs(SUBNETS))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(modify.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn teardown_waits_until_the_proxy_is_gone() {
        let describe = mock!(Client::describe_db_proxies)
            .sequence()
            .output(|| described(proxy(DbProxyStatus::Available)))
            .output(|| described(proxy(DbProxyStatus::Deleting)))
            .times(2)
            .error(not_found)
            .build();
        let delete =
            mock!(Client::delete_db_proxy).then_output(|| DeleteDbProxyOutput::builder().build());
        let t = tags(STEP);
        let cx = cx_with(&[&describe, &delete, &t]);
        let removed = testing::destroy(&cx, STEP, DbProxy).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
        assert_eq!(describe.num_calls(), 4, "polled until DBProxyNotFoundFault");
    }

    #[test]
    fn a_proxy_that_cannot_become_available_ends_the_wait() {
        let found = FoundProxy {
            proxy: proxy(DbProxyStatus::IncompatibleNetwork),
            name: "p".into(),
            arn: ARN.into(),
            tags: TagMap::new(),
        };
        let err = availability("payops-pr1-db-proxy", found)
            .err()
            .expect("terminal")
            .to_string();
        assert!(err.contains("incompatible-network"), "{err}");
    }

    #[test]
    fn the_connect_grant_names_the_proxy_id_not_the_clusters() {
        assert_eq!(resource_id(ARN), "prx-0123456789abcdef0");
    }
}
