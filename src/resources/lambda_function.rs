//! The payment functions: Python 3.12 handlers shipped inside payops
//! (`lambda_code.rs`), in the env's private subnets behind the Lambda
//! security group, with reserved concurrency, X-Ray tracing and JSON logs in a
//! log group payops created first (KMS-encrypted, bounded retention).
//!
//! Transaction processing is served through the ALB's blue and green target
//! groups, so it also gets published versions and two aliases. Blue is what
//! serves; green is the candidate. When its code or configuration changes,
//! `up` publishes a version and points green at it, but only while green
//! carries no traffic: the weights are the operator's (`payops shift`), and
//! moving a slot that serves traffic would release code without them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use async_trait::async_trait;
use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionConfiguration, LogFormat, LoggingConfig, Runtime,
    TracingConfig, TracingMode, VpcConfig,
};
use aws_smithy_types::Blob;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::aws::{AwsError, OpResult, absent_on, required, waited};
use crate::engine::{Record, StepCx};
use crate::naming::NameKind;
use crate::tags::TagMap;

use super::context::Context;
use super::ec2::describe_tag_fix;
use super::iam_role::{retry_while_propagating, role_not_yet_usable};
use super::lambda_code::{self, Package};
use super::log_group::LogGroup;
use super::resource::Resource;
use super::traffic;

/// The Lambda runtime the handlers are written for.
const RUNTIME: Runtime = Runtime::Python312;
/// The only setting passed in the environment: everything else is read from
/// SSM under this path at cold start.
pub const CONFIG_PATH_VARIABLE: &str = "PAYOPS_CONFIG_PATH";
/// Days of function logs kept (the audit trail itself is in S3 for 7 years).
const LOG_RETENTION_DAYS: i32 = 90;
pub const BLUE: &str = "blue";
pub const GREEN: &str = "green";
/// Marks the versions payops publishes: `payops:<fingerprint>` of the code and
/// configuration the version was published from.
const VERSION_PREFIX: &str = "payops:";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Function {
    Validation,
    Fraud,
    Transaction,
}

impl Function {
    pub const ALL: [Function; 3] = [Self::Validation, Self::Fraud, Self::Transaction];

    /// Names the function, its role and its log group: `payment-validation`.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Validation => "payment-validation",
            Self::Fraud => "fraud-detection",
            Self::Transaction => "transaction-processing",
        }
    }

    pub fn step_id(self) -> String {
        format!("lambda-function:{}", self.slug())
    }

    pub fn role_step(self) -> String {
        format!("iam-role:{}", self.slug())
    }

    pub fn log_step(self) -> String {
        format!("log-group:{}", self.slug())
    }

    /// `Validation`: outputs are `ValidationFunctionArn`, `ValidationRoleArn`, ...
    pub fn output_prefix(self) -> &'static str {
        match self {
            Self::Validation => "Validation",
            Self::Fraud => "Fraud",
            Self::Transaction => "Transaction",
        }
    }

    pub fn arn_output(self) -> String {
        format!("{}FunctionArn", self.output_prefix())
    }

    pub fn name(self, cx: &Context) -> String {
        cx.names.function(self.slug())
    }

    /// Its log group `/payops/<env>/lambda/<slug>` (step `log-group:<slug>`).
    pub fn log_group(self) -> LogGroup {
        LogGroup::new(
            format!("lambda/{}", self.slug()),
            LOG_RETENTION_DAYS,
            self.output_prefix(),
        )
    }

    fn code(self) -> (&'static str, &'static str) {
        match self {
            Self::Validation => lambda_code::VALIDATION,
            Self::Fraud => lambda_code::FRAUD,
            Self::Transaction => lambda_code::TRANSACTION,
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Validation => "payops: validates payment requests (POST /payments/validate)",
            Self::Fraud => "payops: scores payments for fraud (POST /payments/fraud-check)",
            Self::Transaction => "payops: records payments once each (POST /payments via the ALB)",
        }
    }

    fn memory_mb(self) -> i32 {
        match self {
            Self::Validation => 256,
            Self::Fraud | Self::Transaction => 512,
        }
    }

    /// Seconds; API Gateway gives up on an integration after 29.
    fn timeout_s(self) -> i32 {
        match self {
            Self::Validation => 10,
            Self::Fraud | Self::Transaction => 20,
        }
    }

    pub fn reserved_concurrency(self, cx: &Context) -> u32 {
        let c = cx.spec.concurrency;
        match self {
            Self::Validation => c.validation,
            Self::Fraud => c.fraud,
            Self::Transaction => c.transaction,
        }
    }

    /// Only transaction processing sits behind the blue/green target groups.
    fn has_slots(self) -> bool {
        self == Self::Transaction
    }
}

pub struct LambdaFunction {
    function: Function,
}

impl LambdaFunction {
    pub fn new(function: Function) -> Self {
        Self { function }
    }
}

/// What the function should look like, from the env and the step's inputs.
#[derive(Debug)]
struct Desired {
    package: Package,
    role: String,
    subnets: Vec<String>,
    security_group: String,
    log_group: String,
    environment: BTreeMap<String, String>,
}

impl Desired {
    /// A short hash of everything a published version freezes (code and
    /// configuration), recorded in the version's description.
    fn fingerprint(&self, f: Function) -> String {
        let mut subnets = self.subnets.clone();
        subnets.sort();
        let doc = json!({
            "code": self.package.sha256,
            "handler": self.package.handler,
            "runtime": RUNTIME.as_str(),
            "role": self.role,
            "memory": f.memory_mb(),
            "timeout": f.timeout_s(),
            "subnets": subnets,
            "securityGroup": self.security_group,
            "logGroup": self.log_group,
            "environment": self.environment,
        });
        let digest = Sha256::digest(doc.to_string().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

pub struct FoundFunction {
    name: String,
    arn: String,
    config: FunctionConfiguration,
    tags: TagMap,
    reserved: Option<i32>,
    /// Alias name -> version (transaction processing only).
    aliases: BTreeMap<String, String>,
    /// The configuration (and code hash) of the version green points at.
    green: Option<FunctionConfiguration>,
}

pub enum Fix {
    Code,
    Configuration(Vec<&'static str>),
    Concurrency {
        from: Option<i32>,
        to: u32,
    },
    Tags(TagMap),
    /// Publish the current code and configuration and point green at it (and
    /// create whichever alias is missing). `blocked` says why it must wait.
    Release {
        fingerprint: String,
        blocked: Option<String>,
    },
    /// Only blue is missing: point it where green is.
    Blue {
        version: String,
    },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code => f.write_str("deploy the new code"),
            Self::Configuration(fields) => write!(f, "update {}", fields.join(", ")),
            Self::Concurrency { from: None, to } => {
                write!(f, "reserve {to} concurrent executions")
            }
            Self::Concurrency { from: Some(n), to } => {
                write!(f, "reserve {to} concurrent executions (was {n})")
            }
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Release { blocked: None, .. } => {
                f.write_str("publish a version and point alias green at it")
            }
            Self::Release {
                blocked: Some(why), ..
            } => write!(
                f,
                "publish a version for alias green (waiting: {why}; finish the shift first)"
            ),
            Self::Blue { version } => write!(f, "create alias blue at version {version}"),
        }
    }
}

/// Where a transaction-processing version was published from.
fn version_description(fingerprint: &str) -> String {
    format!("{VERSION_PREFIX}{fingerprint}")
}

/// Which configuration fields differ from the desired ones.
fn config_drift(f: Function, c: &FunctionConfiguration, d: &Desired) -> Vec<&'static str> {
    let mut drift = Vec::new();
    if c.runtime() != Some(&RUNTIME) {
        drift.push("runtime");
    }
    if c.handler() != Some(d.package.handler.as_str()) {
        drift.push("handler");
    }
    if c.role() != Some(d.role.as_str()) {
        drift.push("role");
    }
    if c.memory_size() != Some(f.memory_mb()) {
        drift.push("memory");
    }
    if c.timeout() != Some(f.timeout_s()) {
        drift.push("timeout");
    }
    if c.description() != Some(f.description()) {
        drift.push("description");
    }
    let environment: BTreeMap<String, String> = c
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if environment != d.environment {
        drift.push("environment");
    }
    let (subnets, groups): (BTreeSet<&str>, BTreeSet<&str>) = c
        .vpc_config()
        .map(|v| {
            (
                v.subnet_ids().iter().map(String::as_str).collect(),
                v.security_group_ids().iter().map(String::as_str).collect(),
            )
        })
        .unwrap_or_default();
    let want_subnets: BTreeSet<&str> = d.subnets.iter().map(String::as_str).collect();
    if subnets != want_subnets || groups != BTreeSet::from([d.security_group.as_str()]) {
        drift.push("VPC configuration");
    }
    if c.tracing_config().and_then(|t| t.mode()) != Some(&TracingMode::Active) {
        drift.push("tracing");
    }
    let logging = c.logging_config();
    if logging.and_then(|l| l.log_group()) != Some(d.log_group.as_str())
        || logging.and_then(|l| l.log_format()) != Some(&LogFormat::Json)
    {
        drift.push("logging");
    }
    drift
}

fn logging_config(d: &Desired) -> LoggingConfig {
    LoggingConfig::builder()
        .log_format(LogFormat::Json)
        .log_group(&d.log_group)
        .build()
}

fn vpc_config(d: &Desired) -> VpcConfig {
    VpcConfig::builder()
        .set_subnet_ids(Some(d.subnets.clone()))
        .security_group_ids(&d.security_group)
        .build()
}

fn environment(d: &Desired) -> Environment {
    Environment::builder()
        .set_variables(Some(d.environment.clone().into_iter().collect()))
        .build()
}

/// AWS refuses a reservation that would leave fewer than 100 executions of
/// the account's pool unreserved. The most this function may reserve, given
/// the account's unreserved pool and what the function holds already.
pub fn max_reservable(unreserved: i64, current: i64) -> i64 {
    unreserved + current - 100
}

/// Explains a refused reservation in terms an operator can act on.
fn concurrency_refused(
    cx: &Context,
    name: &str,
    wanted: u32,
    limits: Option<(i32, i32)>,
    current: Option<i32>,
) -> AwsError {
    let numbers = match limits {
        Some((limit, unreserved)) => format!(
            " (account limit {limit}, unreserved now {unreserved}: at most {} more can be \
             reserved for this function)",
            max_reservable(i64::from(unreserved), i64::from(current.unwrap_or(0))).max(0)
        ),
        None => String::new(),
    };
    AwsError::Conflict(format!(
        "Lambda refused to reserve {wanted} concurrent executions for {name}: AWS keeps at \
         least 100 of the account's executions in {} unreserved{numbers}. Lower \
         --reserved-concurrency (now {}) or ask AWS Support to raise the account's Lambda \
         concurrency quota",
        cx.region, cx.spec.concurrency
    ))
}

impl LambdaFunction {
    fn name(&self, cx: &Context) -> Result<String, AwsError> {
        let name = self.function.name(cx);
        NameKind::LambdaFunction
            .check(&name)
            .map_err(AwsError::Conflict)?;
        Ok(name)
    }

    fn desired(&self, cx: &Context, step: &StepCx<'_>) -> Result<Desired, AwsError> {
        let f = self.function;
        Ok(Desired {
            package: lambda_code::package(f.code()),
            role: step
                .output(&f.role_step(), &format!("{}RoleArn", f.output_prefix()))?
                .to_owned(),
            subnets: step
                .output("subnets:private", "PrivateSubnetIds")?
                .split(',')
                .map(str::to_owned)
                .collect(),
            security_group: step
                .output("security-group:lambda", "LambdaSecurityGroupId")?
                .to_owned(),
            log_group: step
                .output(&f.log_step(), &format!("{}LogGroupName", f.output_prefix()))?
                .to_owned(),
            environment: BTreeMap::from([(
                CONFIG_PATH_VARIABLE.to_owned(),
                cx.names.parameter_path(),
            )]),
        })
    }

    async fn get(&self, cx: &Context, name: &str) -> Result<Option<FoundFunction>, AwsError> {
        let got = cx
            .clients
            .lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .op("lambda:GetFunction");
        let Some(out) = absent_on(got, &["ResourceNotFoundException"])? else {
            return Ok(None);
        };
        let tags: TagMap = out
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        cx.check_ours(format!("Lambda function {name}"), &tags)?;
        let config = required(out.configuration(), "lambda:GetFunction", "Configuration")?.clone();
        let arn = required(config.function_arn(), "lambda:GetFunction", "FunctionArn")?.to_owned();
        let mut found = FoundFunction {
            name: name.to_owned(),
            arn,
            config,
            tags,
            reserved: out
                .concurrency()
                .and_then(|c| c.reserved_concurrent_executions()),
            aliases: BTreeMap::new(),
            green: None,
        };
        if self.function.has_slots() {
            self.read_slots(cx, &mut found).await?;
        }
        Ok(Some(found))
    }

    async fn read_slots(&self, cx: &Context, found: &mut FoundFunction) -> Result<(), AwsError> {
        for alias in [BLUE, GREEN] {
            let got = cx
                .clients
                .lambda
                .get_alias()
                .function_name(&found.name)
                .name(alias)
                .send()
                .await
                .op("lambda:GetAlias");
            if let Some(out) = absent_on(got, &["ResourceNotFoundException"])?
                && let Some(version) = out.function_version()
            {
                found.aliases.insert(alias.to_owned(), version.to_owned());
            }
        }
        if let Some(version) = found.aliases.get(GREEN) {
            let out = cx
                .clients
                .lambda
                .get_function_configuration()
                .function_name(&found.name)
                .qualifier(version)
                .send()
                .await
                .op("lambda:GetFunctionConfiguration")?;
            found.green = Some(
                FunctionConfiguration::builder()
                    .set_code_sha256(out.code_sha256().map(str::to_owned))
                    .set_runtime(out.runtime().cloned())
                    .set_handler(out.handler().map(str::to_owned))
                    .set_role(out.role().map(str::to_owned))
                    .set_memory_size(out.memory_size())
                    .set_timeout(out.timeout())
                    .set_description(out.description().map(str::to_owned))
                    .set_environment(out.environment().cloned())
                    .set_vpc_config(out.vpc_config().cloned())
                    .set_tracing_config(out.tracing_config().cloned())
                    .set_logging_config(out.logging_config().cloned())
                    .build(),
            );
        }
        Ok(())
    }

    async fn wait_updated(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        name: &str,
    ) -> Result<(), AwsError> {
        step.progress(format!("waiting for {name} to finish updating"));
        let max = cx.budgets.lambda;
        waited(
            cx.clients
                .lambda
                .wait_until_function_updated_v2()
                .function_name(name)
                .wait(max)
                .await,
            &format!("Lambda function {name} to finish updating"),
            max,
        )?;
        Ok(())
    }

    async fn reserve(
        &self,
        cx: &Context,
        found: &mut FoundFunction,
        to: u32,
    ) -> Result<(), AwsError> {
        let put = cx
            .clients
            .lambda
            .put_function_concurrency()
            .function_name(&found.name)
            .reserved_concurrent_executions(i32::try_from(to).unwrap_or(i32::MAX))
            .send()
            .await
            .op("lambda:PutFunctionConcurrency");
        match put {
            Ok(_) => {
                found.reserved = i32::try_from(to).ok();
                Ok(())
            }
            Err(e)
                if e.is_code(&["InvalidParameterValueException", "LimitExceededException"])
                    && e.to_string().contains("UnreservedConcurrentExecution") =>
            {
                // Only to explain the refusal: the numbers help, but an answer
                // without them must not hide the real error.
                let limits = cx
                    .clients
                    .lambda
                    .get_account_settings()
                    .send()
                    .await
                    .ok()
                    .and_then(|s| {
                        let l = s.account_limit()?;
                        Some((
                            l.concurrent_executions(),
                            l.unreserved_concurrent_executions()?,
                        ))
                    });
                Err(concurrency_refused(
                    cx,
                    &found.name,
                    to,
                    limits,
                    found.reserved,
                ))
            }
            Err(e) => Err(e),
        }
    }

    async fn release(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundFunction,
        fingerprint: &str,
    ) -> Result<(), AwsError> {
        let lambda = &cx.clients.lambda;
        let sha = found.config.code_sha256().map(str::to_owned);
        // PublishVersion returns the existing version when nothing changed
        // since it was published, so a run killed after it is harmless.
        let published = lambda
            .publish_version()
            .function_name(&found.name)
            .set_code_sha256(sha)
            .description(version_description(fingerprint))
            .send()
            .await
            .op("lambda:PublishVersion")?;
        let version = required(published.version(), "lambda:PublishVersion", "Version")?.to_owned();
        step.progress(format!("published {}:{version}", found.name));
        for alias in [BLUE, GREEN] {
            let exists = found.aliases.contains_key(alias);
            // Blue moves only when it is created: releasing to it is `shift --promote`.
            if exists && alias == BLUE {
                continue;
            }
            if exists {
                lambda
                    .update_alias()
                    .function_name(&found.name)
                    .name(alias)
                    .function_version(&version)
                    .send()
                    .await
                    .op("lambda:UpdateAlias")?;
            } else {
                lambda
                    .create_alias()
                    .function_name(&found.name)
                    .name(alias)
                    .function_version(&version)
                    .description(format!("payops {alias} slot"))
                    .send()
                    .await
                    .op("lambda:CreateAlias")?;
            }
            found.aliases.insert(alias.to_owned(), version.clone());
        }
        found.aliases.clear();
        self.read_slots(cx, found).await
    }
}

#[async_trait]
impl Resource for LambdaFunction {
    type Found = FoundFunction;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "lambda:function"
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundFunction>, AwsError> {
        let name = self.name(cx)?;
        Ok(self.get(cx, &name).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundFunction) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundFunction, AwsError> {
        let name = self.name(cx)?;
        let f = self.function;
        let d = self.desired(cx, step)?;
        let tags: HashMap<String, String> = cx
            .tagger
            .for_create(step.id().as_str())
            .into_iter()
            .collect();
        let progress = |m: String| step.progress(m);
        // A role created a moment ago may not be assumable by Lambda yet.
        let created = retry_while_propagating(
            cx,
            &format!("creating {name}"),
            &progress,
            role_not_yet_usable,
            |_| async {
                cx.clients
                    .lambda
                    .create_function()
                    .function_name(&name)
                    .runtime(RUNTIME)
                    .role(&d.role)
                    .handler(&d.package.handler)
                    .code(
                        aws_sdk_lambda::types::FunctionCode::builder()
                            .zip_file(Blob::new(d.package.zip.clone()))
                            .build(),
                    )
                    .description(f.description())
                    .timeout(f.timeout_s())
                    .memory_size(f.memory_mb())
                    .architectures(Architecture::Arm64)
                    .environment(environment(&d))
                    .vpc_config(vpc_config(&d))
                    .tracing_config(TracingConfig::builder().mode(TracingMode::Active).build())
                    .logging_config(logging_config(&d))
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .op("lambda:CreateFunction")
            },
        )
        .await;
        let out = match created {
            Ok(out) => out,
            // Made by a concurrent or killed run: adopt it only if ours.
            Err(e) if e.is_code(&["ResourceConflictException"]) => {
                return match self.get(cx, &name).await? {
                    Some(found) => {
                        step.remember("function", &found.name);
                        Ok(found)
                    }
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        step.remember("function", &name);
        // In a VPC the function stays Pending until its network interfaces
        // exist; every call but reads fails until then.
        step.progress(format!("waiting for {name} to become Active"));
        let max = cx.budgets.lambda;
        waited(
            cx.clients
                .lambda
                .wait_until_function_active_v2()
                .function_name(&name)
                .wait(max)
                .await,
            &format!("Lambda function {name} to become Active"),
            max,
        )?;
        match self.get(cx, &name).await? {
            Some(found) => Ok(found),
            None => Err(AwsError::Conflict(format!(
                "Lambda function {name} vanished right after it was created ({:?})",
                out.function_arn()
            ))),
        }
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundFunction,
    ) -> Result<Vec<Fix>, AwsError> {
        let f = self.function;
        let d = self.desired(cx, step)?;
        let mut fixes = Vec::new();
        let arm64 = found.config.architectures() == [Architecture::Arm64];
        if found.config.code_sha256() != Some(d.package.sha256.as_str()) || !arm64 {
            fixes.push(Fix::Code);
        }
        let drift = config_drift(f, &found.config, &d);
        if !drift.is_empty() {
            fixes.push(Fix::Configuration(drift));
        }
        let reserved = f.reserved_concurrency(cx);
        if found.reserved != i32::try_from(reserved).ok() {
            fixes.push(Fix::Concurrency {
                from: found.reserved,
                to: reserved,
            });
        }
        let missing = cx.tagger.missing(step.id().as_str(), &found.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        if f.has_slots() {
            let fingerprint = d.fingerprint(f);
            // Compared by content, not by the description payops wrote: a
            // version published by hand from the same code counts too.
            let green_current = found.green.as_ref().is_some_and(|g| {
                g.code_sha256() == Some(d.package.sha256.as_str())
                    && config_drift(f, g, &d).iter().all(|d| *d == "description")
            });
            if !green_current {
                // Moving green while it serves would release code without the
                // operator: only a green with no traffic takes new versions.
                let blocked = if found.aliases.contains_key(GREEN) {
                    match traffic::weights(cx).await? {
                        Some(w) if w.green > 0 => Some(format!(
                            "green carries {}% of the traffic",
                            w.green_percent()
                        )),
                        _ => None,
                    }
                } else {
                    None
                };
                fixes.push(Fix::Release {
                    fingerprint,
                    blocked,
                });
            } else if !found.aliases.contains_key(BLUE)
                && let Some(version) = found.aliases.get(GREEN)
            {
                fixes.push(Fix::Blue {
                    version: version.clone(),
                });
            }
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundFunction,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let f = self.function;
        let lambda = &cx.clients.lambda;
        match fix {
            Fix::Code => {
                let d = self.desired(cx, step)?;
                lambda
                    .update_function_code()
                    .function_name(&found.name)
                    .zip_file(Blob::new(d.package.zip))
                    .architectures(Architecture::Arm64)
                    .send()
                    .await
                    .op("lambda:UpdateFunctionCode")?;
                self.wait_updated(cx, step, &found.name).await?;
                // Re-read: later fixes (publishing) need the new code's hash.
                if let Some(again) = self.get(cx, &found.name).await? {
                    *found = again;
                }
            }
            Fix::Configuration(_) => {
                let d = self.desired(cx, step)?;
                let progress = |m: String| step.progress(m);
                retry_while_propagating(
                    cx,
                    &format!("updating {}", found.name),
                    &progress,
                    role_not_yet_usable,
                    |_| async {
                        lambda
                            .update_function_configuration()
                            .function_name(&found.name)
                            .runtime(RUNTIME)
                            .role(&d.role)
                            .handler(&d.package.handler)
                            .description(f.description())
                            .timeout(f.timeout_s())
                            .memory_size(f.memory_mb())
                            .environment(environment(&d))
                            .vpc_config(vpc_config(&d))
                            .tracing_config(
                                TracingConfig::builder().mode(TracingMode::Active).build(),
                            )
                            .logging_config(logging_config(&d))
                            .send()
                            .await
                            .op("lambda:UpdateFunctionConfiguration")
                    },
                )
                .await?;
                self.wait_updated(cx, step, &found.name).await?;
                if let Some(again) = self.get(cx, &found.name).await? {
                    *found = again;
                }
            }
            Fix::Concurrency { to, .. } => self.reserve(cx, found, to).await?,
            Fix::Tags(tags) => {
                lambda
                    .tag_resource()
                    .resource(&found.arn)
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .op("lambda:TagResource")?;
                found.tags.extend(tags);
            }
            Fix::Release {
                blocked: Some(why), ..
            } => {
                return Err(AwsError::Conflict(format!(
                    "{} has new code or configuration for alias green, but {why}: finish the \
                     release in progress first (payops shift --env {} --promote, or --rollback), \
                     then run up again",
                    found.name,
                    cx.env()
                )));
            }
            Fix::Release {
                fingerprint,
                blocked: None,
            } => self.release(cx, step, found, &fingerprint).await?,
            Fix::Blue { version } => {
                lambda
                    .create_alias()
                    .function_name(&found.name)
                    .name(BLUE)
                    .function_version(&version)
                    .description("payops blue slot")
                    .send()
                    .await
                    .op("lambda:CreateAlias")?;
                found.aliases.insert(BLUE.to_owned(), version);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundFunction) -> Record {
        let p = self.function.output_prefix();
        let mut record = Record::default()
            .resource("function", &found.name)
            .output(format!("{p}FunctionArn"), &found.arn)
            .output(format!("{p}FunctionName"), &found.name);
        if self.function.has_slots() {
            for (alias, key) in [(BLUE, "Blue"), (GREEN, "Green")] {
                record = record.output(
                    format!("{p}{key}AliasArn"),
                    format!("{}:{alias}", found.arn),
                );
            }
        }
        record
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundFunction,
    ) -> Result<Vec<String>, AwsError> {
        // Deletes every version and alias with it. Its network interfaces are
        // released by AWS later: the `lambda-enis` step waits for that before
        // the security group, subnets and roles go.
        let deleted = cx
            .clients
            .lambda
            .delete_function()
            .function_name(&found.name)
            .send()
            .await
            .op("lambda:DeleteFunction");
        absent_on(deleted, &["ResourceNotFoundException"])?;
        Ok(Vec::new())
    }
}
