//! The payment functions: Python 3.12 handlers shipped inside payops
//! (`lambda_code.rs`), in the env's private subnets behind the Lambda
//! security group, with reserved concurrency, X-Ray tracing and JSON logs in a
//! log group payops created first (KMS-encrypted, bounded retention). The
//! rotation function runs outside the VPC (it calls only AWS APIs); `up`
//! takes one that an older payops put in the VPC out of it.
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

use crate::resources::common::log_group::LogGroup;
use crate::resources::compute::lambda_code::{self, Package};
use crate::resources::context::Context;
use crate::resources::model::{
    BLUE, FLOW_LOGS_CHECK, Function, GREEN, LOG_TRANSFORM_TIMEOUT_S, MIGRATION_TIMEOUT_S,
    QUEUE_CONSUMER_TIMEOUT_S, REMEDIATION_INPUTS, REMEDIATION_TIMEOUT_S,
};
use crate::resources::resource::Resource;
use crate::resources::sdk::iam::{retry_while_propagating, role_not_yet_usable};
use crate::resources::traffic;
use crate::tags::describe_tag_fix;

/// The Lambda runtime the handlers are written for.
const RUNTIME: Runtime = Runtime::Python312;
/// The only setting passed in the environment: everything else is read from
/// SSM under this path at cold start.
pub const CONFIG_PATH_VARIABLE: &str = "PAYOPS_CONFIG_PATH";
/// Days of function logs kept (the audit trail itself is in S3 for 7 years).
const LOG_RETENTION_DAYS: i32 = 90;
/// Marks the versions payops publishes: `payops:<fingerprint>` of the code and
/// configuration the version was published from.
const VERSION_PREFIX: &str = "payops:";

/// How each function is built and run: its code, size and time limit.
/// (Which functions exist, and their names, are the shared model's.)
trait Build {
    fn code(self) -> (&'static str, &'static str);
    fn description(self) -> &'static str;
    fn memory_mb(self) -> i32;
    fn timeout_s(self) -> i32;
}

impl Build for Function {
    fn code(self) -> (&'static str, &'static str) {
        match self {
            Self::Validation => lambda_code::VALIDATION,
            Self::Fraud => lambda_code::FRAUD,
            Self::Transaction => lambda_code::TRANSACTION,
            Self::Rotation => lambda_code::ROTATION,
            Self::QueueConsumer => lambda_code::QUEUE_CONSUMER,
            Self::LogTransform => lambda_code::LOG_TRANSFORM,
            Self::Migration => lambda_code::DB_MIGRATION,
            Self::Remediation => lambda_code::CONFIG_REMEDIATION,
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Validation => "payops: validates payment requests (POST /payments/validate)",
            Self::Fraud => "payops: scores payments for fraud (POST /payments/fraud-check)",
            Self::Transaction => "payops: records payments once each (POST /payments via the ALB)",
            Self::Rotation => "payops: rotates the Aurora master password (Secrets Manager)",
            Self::QueueConsumer => "payops: settles payments from the processing queue (SQS)",
            Self::LogTransform => "payops: redacts the transaction log for S3 (Firehose transform)",
            Self::Migration => "payops: migrates the customer database's schema (invoked by up)",
            Self::Remediation => "payops: remediates the env's AWS Config findings (EventBridge)",
        }
    }

    fn memory_mb(self) -> i32 {
        match self {
            Self::Validation
            | Self::Rotation
            | Self::QueueConsumer
            | Self::LogTransform
            | Self::Migration
            | Self::Remediation => 256,
            Self::Fraud | Self::Transaction => 512,
        }
    }

    /// Seconds; API Gateway gives up on an integration after 29. Rotation's
    /// testSecret waits for the cluster to apply the new password.
    fn timeout_s(self) -> i32 {
        match self {
            Self::Validation => 10,
            Self::Fraud | Self::Transaction => 20,
            Self::Rotation => 300,
            // At most the processing queue's visibility timeout / 6 (the
            // model derives one from the other).
            Self::QueueConsumer => QUEUE_CONSUMER_TIMEOUT_S,
            // Firehose waits for the answer and allows at most 5 minutes
            // (data-transformation); a buffer of at most 1 MB of small
            // records takes well under a second.
            Self::LogTransform => LOG_TRANSFORM_TIMEOUT_S,
            Self::Migration => MIGRATION_TIMEOUT_S,
            Self::Remediation => REMEDIATION_TIMEOUT_S,
        }
    }
}

/// The function's log group `/payops/<env>/lambda/<slug>` (step
/// `log-group:<slug>`), created before the function so that its retention
/// and key are payops', not Lambda's defaults.
pub fn log_group(f: Function) -> LogGroup {
    let group = LogGroup::new(
        format!("lambda/{}", f.slug()),
        LOG_RETENTION_DAYS,
        f.output_prefix(),
    );
    match f {
        Function::QueueConsumer => group.wanted_when(|cx| Function::QueueConsumer.wanted(cx)),
        Function::LogTransform => group.wanted_when(|cx| Function::LogTransform.wanted(cx)),
        _ => group,
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
    /// Empty, with no group: the function runs outside the VPC.
    subnets: Vec<String>,
    security_group: Option<String>,
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
    /// Reserve `to` executions, or (`None`) remove the reservation.
    Concurrency {
        from: Option<i32>,
        to: Option<u32>,
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
            Self::Concurrency {
                from: None,
                to: Some(to),
            } => write!(f, "reserve {to} concurrent executions"),
            Self::Concurrency {
                from: Some(n),
                to: Some(to),
            } => write!(f, "reserve {to} concurrent executions (was {n})"),
            Self::Concurrency { from, to: None } => write!(
                f,
                "remove the reservation of {} concurrent executions (share the account's pool)",
                from.unwrap_or_default()
            ),
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
    // Outside the VPC Lambda reports empty lists (or no VpcConfig at all).
    let want_subnets: BTreeSet<&str> = d.subnets.iter().map(String::as_str).collect();
    let want_groups: BTreeSet<&str> = d.security_group.iter().map(String::as_str).collect();
    if subnets != want_subnets || groups != want_groups {
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

/// The function's VPC configuration; outside the VPC, empty lists: that is
/// how UpdateFunctionConfiguration takes a function out of its VPC (AWS:
/// "To detach a function from a VPC, specify an empty list of subnet IDs and
/// security group IDs"; leaving VpcConfig out changes nothing).
fn vpc_config(d: &Desired) -> VpcConfig {
    VpcConfig::builder()
        .set_subnet_ids(Some(d.subnets.clone()))
        .set_security_group_ids(Some(d.security_group.iter().cloned().collect()))
        .build()
}

fn environment(d: &Desired) -> Environment {
    Environment::builder()
        .set_variables(Some(d.environment.clone().into_iter().collect()))
        .build()
}

/// How many of the account's executions AWS keeps unreserved: 100, or the
/// whole limit when the limit is 100 or less. New accounts have a limit of
/// 10, and AWS answers a reservation there with "decreases account's
/// UnreservedConcurrentExecution below its minimum value of [10]" (e.g.
/// aws-samples/amazon-rekognition-serverless-large-scale-image-and-video-processing#6,
/// aws-samples/alarm-context-tool#2), while a standard account (limit 1000)
/// says "[100]" (AWS docs: "Lambda requires at least 100 unreserved
/// concurrency"). So a small account cannot reserve at all.
pub fn min_unreserved(limit: i64) -> i64 {
    limit.clamp(0, 100)
}

/// The most one function may reserve, given the account's limit, its
/// unreserved pool and what the function holds already (which comes back to
/// the pool when the reservation changes).
pub fn max_reservable(limit: i64, unreserved: i64, current: i64) -> i64 {
    unreserved + current - min_unreserved(limit)
}

/// Explains a refused reservation in terms an operator can act on.
fn concurrency_refused(
    cx: &Context,
    name: &str,
    wanted: u32,
    limits: Option<(i32, i32)>,
    current: Option<i32>,
) -> AwsError {
    let (keeps, numbers) = match limits {
        Some((limit, unreserved)) => (
            format!("{}", min_unreserved(i64::from(limit))),
            format!(
                " (account limit {limit}, unreserved now {unreserved}: at most {} can be \
                 reserved for this function)",
                max_reservable(
                    i64::from(limit),
                    i64::from(unreserved),
                    i64::from(current.unwrap_or(0))
                )
                .max(0)
            ),
        ),
        None => (
            "100 (or all, below a limit of 100)".to_owned(),
            String::new(),
        ),
    };
    AwsError::Conflict(format!(
        "Lambda refused to reserve {wanted} concurrent executions for {name}: AWS keeps at \
         least {keeps} of the account's executions in {} unreserved{numbers}. Lower \
         --reserved-concurrency (now {}; `auto` reserves only what fits, `none` nothing) or \
         ask AWS Support to raise the account's Lambda concurrency quota",
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
            subnets: match f.security_group() {
                Some(_) => step
                    .output("subnets:private", "PrivateSubnetIds")?
                    .split(',')
                    .map(str::to_owned)
                    .collect(),
                None => Vec::new(),
            },
            security_group: match f.security_group() {
                Some(g) => Some(step.output(&g.step_id(), g.output_key())?.to_owned()),
                None => None,
            },
            log_group: step
                .output(&f.log_step(), &format!("{}LogGroupName", f.output_prefix()))?
                .to_owned(),
            environment: self.environment(cx, step)?,
        })
    }

    /// The function's environment: the configuration path; for the
    /// remediation also what it may fix and where it reports (see
    /// lambda/config_remediation.py), which it cannot read from the
    /// parameters: its role reads none, and what it names are ids that
    /// change only with the env.
    fn environment(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<BTreeMap<String, String>, AwsError> {
        let mut env =
            BTreeMap::from([(CONFIG_PATH_VARIABLE.to_owned(), cx.names.parameter_path())]);
        if self.function == Function::Remediation {
            for (variable, (from, key)) in REMEDIATION_INPUTS {
                env.insert(variable.to_owned(), step.output(from, key)?.to_owned());
            }
            env.insert("PAYOPS_ENV".to_owned(), cx.env().to_string());
            env.insert(
                "PAYOPS_FLOW_LOGS_RULE".to_owned(),
                cx.names.config_rule(FLOW_LOGS_CHECK),
            );
        }
        Ok(env)
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
        to: Option<u32>,
    ) -> Result<(), AwsError> {
        let Some(to) = to else {
            // The function goes back to sharing the account's pool.
            let removed = cx
                .clients
                .lambda
                .delete_function_concurrency()
                .function_name(&found.name)
                .send()
                .await
                .op("lambda:DeleteFunctionConcurrency");
            absent_on(removed, &["ResourceNotFoundException"])?;
            found.reserved = None;
            return Ok(());
        };
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

    fn wanted(&self, cx: &Context) -> bool {
        self.function.wanted(cx)
    }

    /// CreateFunction, CreateAlias and AddPermission meet what their lost
    /// first attempt made (see the trait); moto names it ConflictException.
    fn already_exists(&self) -> &'static [&'static str] {
        &["ResourceConflictException", "ConflictException"]
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
                    // Outside the VPC: no VpcConfig at all.
                    .set_vpc_config(d.security_group.is_some().then(|| vpc_config(&d)))
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
        if found.reserved != reserved.and_then(|n| i32::try_from(n).ok()) {
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

#[cfg(test)]
mod tests {
    use aws_sdk_lambda::Client;
    use aws_sdk_lambda::operation::{
        create_alias::CreateAliasOutput,
        create_function::{CreateFunctionError, CreateFunctionOutput},
        delete_function::{DeleteFunctionError, DeleteFunctionOutput},
        delete_function_concurrency::DeleteFunctionConcurrencyOutput,
        get_account_settings::GetAccountSettingsOutput,
        get_alias::{GetAliasError, GetAliasOutput},
        get_function::{GetFunctionError, GetFunctionOutput},
        get_function_configuration::GetFunctionConfigurationOutput,
        publish_version::PublishVersionOutput,
        put_function_concurrency::{PutFunctionConcurrencyError, PutFunctionConcurrencyOutput},
        update_alias::UpdateAliasOutput,
        update_function_code::UpdateFunctionCodeOutput,
        update_function_configuration::UpdateFunctionConfigurationOutput,
    };
    use aws_sdk_lambda::types::{
        AccountLimit, Concurrency, EnvironmentResponse, LastUpdateStatus, State,
        TracingConfigResponse, VpcConfigResponse,
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;
    use crate::resources::testing::elb as fake;

    const ACCT: &str = "123456789012";

    fn name(f: Function) -> String {
        format!("payops-pr1-{}", f.slug())
    }

    fn arn(f: Function) -> String {
        format!("arn:aws:lambda:us-east-1:{ACCT}:function:{}", name(f))
    }

    fn role(f: Function) -> String {
        format!("arn:aws:iam::{ACCT}:role/payops-pr1-{}", f.slug())
    }

    fn log_group(f: Function) -> String {
        format!("/payops/pr1/lambda/{}", f.slug())
    }

    fn inputs(f: Function) -> Vec<(&'static str, Record)> {
        let p = f.output_prefix();
        let role_step: &'static str = Box::leak(f.role_step().into_boxed_str());
        let log_step: &'static str = Box::leak(f.log_step().into_boxed_str());
        let mut inputs = vec![
            (
                role_step,
                Record::default().output(format!("{p}RoleArn"), role(f)),
            ),
            (
                log_step,
                Record::default().output(format!("{p}LogGroupName"), log_group(f)),
            ),
        ];
        if let Some(g) = f.security_group() {
            inputs.extend([
                (
                    "subnets:private",
                    Record::default().output("PrivateSubnetIds", "subnet-a,subnet-b,subnet-c"),
                ),
                (
                    Box::leak(g.step_id().into_boxed_str()),
                    Record::default().output(g.output_key(), "sg-lambda"),
                ),
            ]);
        }
        inputs
    }

    /// The remediation is told what it may fix and where it reports in its
    /// environment (lambda/config_remediation.py reads exactly these); the
    /// other functions only their configuration path.
    #[test]
    fn the_remediation_is_told_the_envs_vpc_flow_log_group_role_topic_and_rule() {
        let cx = testing::context(testing::clients());
        let events = testing::Events::default();
        let f = Function::Remediation;
        let id = crate::engine::StepId::from(f.step_id());
        let mut inputs: std::collections::BTreeMap<_, _> = BTreeMap::new();
        for (i, (_, (from, key))) in REMEDIATION_INPUTS.iter().enumerate() {
            inputs.insert(
                crate::engine::StepId::from(*from),
                Record::default().output(*key, format!("value-{i}")),
            );
        }
        let step = testing::step_cx(&id, inputs, &events);
        let env = LambdaFunction::new(f).environment(&cx, &step).unwrap();
        let handler = lambda_code::CONFIG_REMEDIATION.1;
        for variable in env.keys() {
            assert!(
                handler.contains(variable.as_str()) || variable == CONFIG_PATH_VARIABLE,
                "{variable}"
            );
        }
        assert_eq!(env["PAYOPS_VPC_ID"], "value-0");
        assert_eq!(env["PAYOPS_COMPLIANCE_TOPIC_ARN"], "value-3");
        assert_eq!(env["PAYOPS_ENV"], "pr1");
        assert_eq!(
            env["PAYOPS_FLOW_LOGS_RULE"],
            "payops-pr1-vpc-flow-logs-enabled"
        );
        // Every variable the handler reads is set.
        for variable in [
            "PAYOPS_ENV",
            "PAYOPS_VPC_ID",
            "PAYOPS_FLOW_LOG_GROUP",
            "PAYOPS_FLOW_LOGS_ROLE_ARN",
            "PAYOPS_COMPLIANCE_TOPIC_ARN",
            "PAYOPS_FLOW_LOGS_RULE",
        ] {
            assert!(handler.contains(variable), "{variable}");
            assert!(env.contains_key(variable), "{variable}");
        }
        // The others: the path only.
        let other = LambdaFunction::new(Function::Fraud)
            .environment(&cx, &step)
            .unwrap();
        assert_eq!(other.keys().collect::<Vec<_>>(), [CONFIG_PATH_VARIABLE]);
    }

    /// Where Lambda says the function is: outside the VPC it reports empty
    /// lists (and an empty VpcId).
    fn vpc_response(f: Function) -> VpcConfigResponse {
        if f.security_group().is_some() {
            VpcConfigResponse::builder()
                .subnet_ids("subnet-c")
                .subnet_ids("subnet-a")
                .subnet_ids("subnet-b")
                .security_group_ids("sg-lambda")
                .vpc_id("vpc-1")
                .build()
        } else {
            VpcConfigResponse::builder()
                .set_subnet_ids(Some(vec![]))
                .set_security_group_ids(Some(vec![]))
                .vpc_id("")
                .build()
        }
    }

    /// The function as Lambda describes it when it is exactly as desired.
    fn config(f: Function) -> FunctionConfigurationBuilder {
        let package = lambda_code::package(f.code());
        FunctionConfiguration::builder()
            .function_name(name(f))
            .function_arn(arn(f))
            .runtime(Runtime::Python312)
            .role(role(f))
            .handler(package.handler)
            .memory_size(f.memory_mb())
            .timeout(f.timeout_s())
            .description(f.description())
            .environment(
                EnvironmentResponse::builder()
                    .variables(CONFIG_PATH_VARIABLE, "/payops/pr1/")
                    .build(),
            )
            .vpc_config(vpc_response(f))
            .tracing_config(
                TracingConfigResponse::builder()
                    .mode(TracingMode::Active)
                    .build(),
            )
            .logging_config(
                LoggingConfig::builder()
                    .log_format(LogFormat::Json)
                    .log_group(log_group(f))
                    .build(),
            )
            .architectures(Architecture::Arm64)
            .code_sha256(package.sha256)
            .state(State::Active)
            .last_update_status(LastUpdateStatus::Successful)
    }

    use aws_sdk_lambda::types::builders::FunctionConfigurationBuilder;

    fn got(f: Function, config: FunctionConfiguration, reserved: Option<i32>) -> GetFunctionOutput {
        let mut out = GetFunctionOutput::builder()
            .configuration(config)
            .set_tags(Some(testing::our_tags(&f.step_id()).into_iter().collect()));
        if let Some(n) = reserved {
            out = out.concurrency(
                Concurrency::builder()
                    .reserved_concurrent_executions(n)
                    .build(),
            );
        }
        out.build()
    }

    fn not_found() -> GetFunctionError {
        GetFunctionError::generic(testing::error_meta("ResourceNotFoundException"))
    }

    fn context(rules: &[&Rule], elb: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, rules);
        clients.elb = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, elb);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_the_function_in_the_vpc_with_tracing_json_logs_and_a_reservation() {
        let f = Function::Validation;
        let get = mock!(Client::get_function)
            .sequence()
            .error(not_found)
            .output(move || got(f, config(f).build(), None))
            .repeatedly()
            .build();
        let sha = lambda_code::package(f.code()).sha256;
        let create = mock!(Client::create_function)
            .match_requests(move |r| {
                let vpc = r.vpc_config().unwrap();
                let logging = r.logging_config().unwrap();
                let tags = r.tags().unwrap();
                r.function_name() == Some("payops-pr1-payment-validation")
                    && r.runtime() == Some(&Runtime::Python312)
                    && r.handler() == Some("payment_validation.handler")
                    && r.role() == Some(role(f).as_str())
                    && vpc.subnet_ids() == ["subnet-a", "subnet-b", "subnet-c"]
                    && vpc.security_group_ids() == ["sg-lambda"]
                    && r.tracing_config().and_then(|t| t.mode()) == Some(&TracingMode::Active)
                    && logging.log_format() == Some(&LogFormat::Json)
                    && logging.log_group() == Some("/payops/pr1/lambda/payment-validation")
                    && r.environment().and_then(|e| e.variables()).map(|v| v.len()) == Some(1)
                    && r.environment().unwrap().variables().unwrap()[CONFIG_PATH_VARIABLE]
                        == "/payops/pr1/"
                    && tags["payops:step"] == "lambda-function:payment-validation"
                    && aws_smithy_types::base64::encode(Sha256::digest(
                        r.code().unwrap().zip_file().unwrap().as_ref(),
                    )) == sha
            })
            .then_output(|| {
                CreateFunctionOutput::builder()
                    .function_arn(arn(Function::Validation))
                    .build()
            });
        let reserve = mock!(Client::put_function_concurrency)
            .match_requests(|r| r.reserved_concurrent_executions() == Some(5))
            .then_output(|| {
                PutFunctionConcurrencyOutput::builder()
                    .reserved_concurrent_executions(5)
                    .build()
            });
        let cx = context(&[&get, &create, &reserve], &[]);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["ValidationFunctionArn"], arn(f));
        assert_eq!(
            (create.num_calls(), reserve.num_calls()),
            (1, 1),
            "{:?}",
            applied.notes
        );
    }

    #[tokio::test(start_paused = true)]
    async fn create_waits_while_the_new_role_propagates() {
        let f = Function::Fraud;
        let get = mock!(Client::get_function)
            .sequence()
            .error(not_found)
            .output(move || got(f, config(f).build(), Some(5)))
            .repeatedly()
            .build();
        let create = mock!(Client::create_function)
            .sequence()
            .error(|| {
                CreateFunctionError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("InvalidParameterValueException")
                        .message("The role defined for the function cannot be assumed by Lambda.")
                        .build(),
                )
            })
            .times(2)
            .output(|| CreateFunctionOutput::builder().build())
            .build();
        let cx = context(&[&get, &create], &[]);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 3);
    }

    #[tokio::test]
    async fn an_owned_function_in_sync_is_adopted_without_mutating_calls() {
        let f = Function::Validation;
        let get =
            mock!(Client::get_function).then_output(move || got(f, config(f).build(), Some(5)));
        let cx = context(&[&get], &[]);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn rotation_reserves_nothing_and_loses_the_1_it_held_before() {
        // Envs made before payops stopped reserving for rotation hold 1.
        let f = Function::Rotation;
        let get = mock!(Client::get_function)
            .sequence()
            .output(move || got(f, config(f).build(), Some(1)))
            .output(move || got(f, config(f).build(), None))
            .build();
        let removed = mock!(Client::delete_function_concurrency)
            .match_requests(|r| r.function_name() == Some("payops-pr1-secret-rotation"))
            .then_output(|| DeleteFunctionConcurrencyOutput::builder().build());
        let cx = context(&[&get, &removed], &[]);
        assert_eq!(f.reserved_concurrency(&cx), None);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated, "{:?}", applied.notes);
        assert_eq!(removed.num_calls(), 1);
    }

    #[tokio::test]
    async fn rotation_is_created_outside_the_vpc() {
        let f = Function::Rotation;
        let get = mock!(Client::get_function)
            .sequence()
            .error(not_found)
            .output(move || got(f, config(f).build(), None))
            .repeatedly()
            .build();
        let create = mock!(Client::create_function)
            .match_requests(|r| {
                r.function_name() == Some("payops-pr1-secret-rotation")
                    && r.vpc_config().is_none()
                    && r.timeout() == Some(300)
            })
            .then_output(|| CreateFunctionOutput::builder().build());
        // Its inputs name no subnets and no group: it does not need them.
        let cx = context(&[&get, &create], &[]);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created, "{:?}", applied.notes);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_rotation_function_an_older_payops_put_in_the_vpc_is_taken_out() {
        let f = Function::Rotation;
        let attached = config(f)
            .vpc_config(
                VpcConfigResponse::builder()
                    .subnet_ids("subnet-a")
                    .security_group_ids("sg-rotation")
                    .vpc_id("vpc-1")
                    .build(),
            )
            .build();
        let get = mock!(Client::get_function)
            .sequence()
            .output(move || got(f, attached.clone(), None))
            .output(move || got(f, config(f).build(), None))
            .repeatedly()
            .build();
        // Empty lists, not a missing VpcConfig: only they detach it.
        let detach = mock!(Client::update_function_configuration)
            .match_requests(|r| {
                r.vpc_config().is_some_and(|v| {
                    v.subnet_ids().is_empty()
                        && v.security_group_ids().is_empty()
                        && v.ipv6_allowed_for_dual_stack().is_none()
                })
            })
            .then_output(|| UpdateFunctionConfigurationOutput::builder().build());
        let cx = context(&[&get, &detach], &[]);
        let Observation::Present { drift, .. } =
            testing::observe(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
                .await
                .unwrap()
        else {
            panic!("present");
        };
        assert_eq!(drift, ["update VPC configuration"]);
        let get = mock!(Client::get_function)
            .sequence()
            .output(move || {
                got(
                    f,
                    config(f)
                        .vpc_config(
                            VpcConfigResponse::builder()
                                .subnet_ids("subnet-a")
                                .security_group_ids("sg-rotation")
                                .build(),
                        )
                        .build(),
                    None,
                )
            })
            .output(move || got(f, config(f).build(), None))
            .repeatedly()
            .build();
        let cx = context(&[&get, &detach], &[]);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated, "{:?}", applied.notes);
        assert_eq!(detach.num_calls(), 1);
        // Out of the VPC with no VpcConfig at all is in sync too.
        let bare = mock!(Client::get_function)
            .then_output(move || got(f, config(f).set_vpc_config(None).build(), None));
        let cx = context(&[&bare], &[]);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn reserved_concurrency_none_removes_an_existing_reservation() {
        let f = Function::Validation;
        let get =
            mock!(Client::get_function).then_output(move || got(f, config(f).build(), Some(5)));
        let removed = mock!(Client::delete_function_concurrency)
            .then_output(|| DeleteFunctionConcurrencyOutput::builder().build());
        let mut cx = context(&[&get, &removed], &[]);
        cx.spec.concurrency = "none".parse().unwrap();
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated, "{:?}", applied.notes);
        assert_eq!(removed.num_calls(), 1);
        // `auto` in an account that cannot hold the numbers: the same.
        let mut cx = context(&[&get, &removed], &[]);
        cx.spec.concurrency = "auto".parse().unwrap();
        cx.auto_reservations_fit = false;
        testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(removed.num_calls(), 2);
        // `auto` where they fit keeps the reservation.
        let mut cx = context(&[&get], &[]);
        cx.spec.concurrency = "auto".parse().unwrap();
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_refused_reservation_in_a_limit_10_account_says_nothing_can_be_reserved() {
        let f = Function::Validation;
        // AWS's answer in a new account (limit 10).
        let refused = mock!(Client::put_function_concurrency).then_error(|| {
            PutFunctionConcurrencyError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("InvalidParameterValueException")
                    .message(
                        "Specified ReservedConcurrentExecutions for function decreases account's \
                         UnreservedConcurrentExecution below its minimum value of [10].",
                    )
                    .build(),
            )
        });
        let settings = mock!(Client::get_account_settings).then_output(|| {
            GetAccountSettingsOutput::builder()
                .account_limit(
                    AccountLimit::builder()
                        .concurrent_executions(10)
                        .unreserved_concurrent_executions(10)
                        .build(),
                )
                .build()
        });
        let cx = context(&[&refused, &settings], &[]);
        let mut found = FoundFunction {
            name: name(f),
            arn: arn(f),
            config: config(f).build(),
            tags: TagMap::new(),
            reserved: None,
            aliases: BTreeMap::new(),
            green: None,
        };
        let err = LambdaFunction::new(f)
            .reserve(&cx, &mut found, Some(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("AWS keeps at least 10 "), "{err}");
        assert!(err.contains("account limit 10"), "{err}");
        assert!(err.contains("at most 0 can"), "{err}");
        assert!(err.contains("`auto`"), "{err}");
    }

    /// Nothing at the first look, then `then` (what the lost first attempt
    /// made); the retried CreateFunction (no client token) meets it:
    /// `ResourceConflictException` ("Function already exist").
    fn retried_create(then: fn() -> GetFunctionOutput) -> [Rule; 2] {
        let get = mock!(Client::get_function)
            .sequence()
            .error(not_found)
            .output(then)
            .repeatedly()
            .build();
        let create = mock!(Client::create_function).then_error(|| {
            CreateFunctionError::generic(testing::error_meta("ResourceConflictException"))
        });
        [get, create]
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let f = Function::Validation;
        let [get, create] = retried_create(|| {
            got(
                Function::Validation,
                config(Function::Validation).build(),
                Some(5),
            )
        });
        let cx = context(&[&get, &create], &[]);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["ValidationFunctionArn"], arn(f));
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_create_conflict_with_a_function_not_ours_is_refused() {
        let f = Function::Validation;
        let [get, create] = retried_create(|| {
            GetFunctionOutput::builder()
                .configuration(config(Function::Validation).build())
                .tags("team", "other")
                .build()
        });
        let cx = context(&[&get, &create], &[]);
        let err = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_function_with_our_name_but_not_our_tags_is_refused() {
        let f = Function::Fraud;
        let get = mock!(Client::get_function).then_output(move || {
            GetFunctionOutput::builder()
                .configuration(config(f).build())
                .tags("team", "other")
                .build()
        });
        let cx = context(&[&get], &[]);
        let err = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged"), "{err}");
        assert!(
            testing::destroy(&cx, &f.step_id(), LambdaFunction::new(f))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn drifted_code_and_configuration_are_repaired_and_waited_for() {
        let f = Function::Validation;
        let drifted = config(f)
            .code_sha256("old-code")
            .memory_size(128)
            .tracing_config(
                TracingConfigResponse::builder()
                    .mode(TracingMode::PassThrough)
                    .build(),
            )
            .set_logging_config(None)
            .build();
        let get = mock!(Client::get_function)
            .sequence()
            .output(move || got(f, drifted.clone(), Some(5)))
            .output(move || got(f, config(f).build(), Some(5)))
            .repeatedly()
            .build();
        let code = mock!(Client::update_function_code)
            .match_requests(|r| {
                r.zip_file().is_some() && r.architectures() == [Architecture::Arm64]
            })
            .then_output(|| UpdateFunctionCodeOutput::builder().build());
        let configuration = mock!(Client::update_function_configuration)
            .match_requests(|r| {
                r.memory_size() == Some(256)
                    && r.tracing_config().and_then(|t| t.mode()) == Some(&TracingMode::Active)
                    && r.logging_config().and_then(|l| l.log_group())
                        == Some("/payops/pr1/lambda/payment-validation")
            })
            .then_output(|| UpdateFunctionConfigurationOutput::builder().build());
        let cx = context(&[&get, &code, &configuration], &[]);
        let observed = testing::observe(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("present");
        };
        assert_eq!(
            drift,
            ["deploy the new code", "update memory, tracing, logging"]
        );
        let get = mock!(Client::get_function)
            .sequence()
            .output(move || {
                got(
                    f,
                    config(f)
                        .code_sha256("old-code")
                        .memory_size(128)
                        .set_logging_config(None)
                        .build(),
                    Some(5),
                )
            })
            .output(move || got(f, config(f).build(), Some(5)))
            .repeatedly()
            .build();
        let cx = context(&[&get, &code, &configuration], &[]);
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((code.num_calls(), configuration.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_refused_reservation_says_aws_keeps_100_unreserved() {
        let f = Function::Transaction;
        let refused = mock!(Client::put_function_concurrency).then_error(|| {
            PutFunctionConcurrencyError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("InvalidParameterValueException")
                    .message(
                        "Specified ReservedConcurrentExecutions for function decreases account's \
                         UnreservedConcurrentExecution below its minimum value of [100].",
                    )
                    .build(),
            )
        });
        let settings = mock!(Client::get_account_settings).then_output(|| {
            GetAccountSettingsOutput::builder()
                .account_limit(
                    AccountLimit::builder()
                        .concurrent_executions(1000)
                        .unreserved_concurrent_executions(108)
                        .build(),
                )
                .build()
        });
        let cx = context(&[&refused, &settings], &[]);
        let mut found = FoundFunction {
            name: name(f),
            arn: arn(f),
            config: config(f).build(),
            tags: TagMap::new(),
            reserved: None,
            aliases: BTreeMap::new(),
            green: None,
        };
        let err = LambdaFunction::new(f)
            .reserve(&cx, &mut found, Some(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("AWS keeps at least 100"), "{err}");
        assert!(err.contains("unreserved now 108"), "{err}");
        assert!(err.contains("at most 8 can"), "{err}");
        assert!(err.contains("--reserved-concurrency"), "{err}");
    }

    #[test]
    fn at_most_the_unreserved_pool_above_100_can_be_reserved() {
        assert_eq!(max_reservable(1000, 1000, 0), 900);
        // What the function holds comes back to the pool when it changes.
        assert_eq!(max_reservable(1000, 110, 20), 30);
        assert!(max_reservable(1000, 90, 0) < 0);
    }

    #[test]
    fn an_account_with_a_limit_of_100_or_less_keeps_it_all_unreserved() {
        assert_eq!(min_unreserved(10), 10);
        assert_eq!(min_unreserved(100), 100);
        assert_eq!(min_unreserved(1000), 100);
        assert_eq!(max_reservable(10, 10, 0), 0);
        assert_eq!(max_reservable(50, 50, 0), 0);
    }

    fn slot_rules(green_version: &'static str, green: FunctionConfiguration) -> Vec<Rule> {
        vec![
            mock!(Client::get_alias)
                .match_requests(|r| r.name() == Some(BLUE))
                .then_output(|| GetAliasOutput::builder().function_version("1").build()),
            mock!(Client::get_alias)
                .match_requests(|r| r.name() == Some(GREEN))
                .then_output(move || {
                    GetAliasOutput::builder()
                        .function_version(green_version)
                        .build()
                }),
            mock!(Client::get_function_configuration)
                .match_requests(move |r| r.qualifier() == Some(green_version))
                .then_output(move || {
                    let g = green.clone();
                    GetFunctionConfigurationOutput::builder()
                        .set_code_sha256(g.code_sha256().map(str::to_owned))
                        .set_runtime(g.runtime().cloned())
                        .set_handler(g.handler().map(str::to_owned))
                        .set_role(g.role().map(str::to_owned))
                        .set_memory_size(g.memory_size())
                        .set_timeout(g.timeout())
                        .description("payops:1234")
                        .set_environment(g.environment().cloned())
                        .set_vpc_config(g.vpc_config().cloned())
                        .set_tracing_config(g.tracing_config().cloned())
                        .set_logging_config(g.logging_config().cloned())
                        .build()
                }),
        ]
    }

    #[tokio::test]
    async fn new_code_waits_while_green_carries_traffic() {
        let f = Function::Transaction;
        let get =
            mock!(Client::get_function).then_output(move || got(f, config(f).build(), Some(10)));
        // Green serves a version with older code, and 30% of the traffic.
        let slots = slot_rules("1", config(f).code_sha256("older").build());
        let elb = fake::traffic(traffic::Weights::with_green(30));
        let mut rules: Vec<&Rule> = vec![&get];
        rules.extend(slots.iter());
        let cx = context(&rules, &elb.iter().collect::<Vec<_>>());
        let Observation::Present { drift, .. } =
            testing::observe(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
                .await
                .unwrap()
        else {
            panic!("present");
        };
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(
            drift[0].contains("green carries 30% of the traffic"),
            "{drift:?}"
        );
        let err = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("finish the release in progress first"),
            "{err}"
        );
        assert!(err.contains("payops shift --env pr1 --promote"), "{err}");
    }

    #[tokio::test]
    async fn new_code_is_released_to_an_idle_green_and_blue_keeps_serving() {
        let f = Function::Transaction;
        let get =
            mock!(Client::get_function).then_output(move || got(f, config(f).build(), Some(10)));
        let blue = mock!(Client::get_alias)
            .match_requests(|r| r.name() == Some(BLUE))
            .then_output(|| GetAliasOutput::builder().function_version("1").build());
        let green = mock!(Client::get_alias)
            .match_requests(|r| r.name() == Some(GREEN))
            .sequence()
            .output(|| GetAliasOutput::builder().function_version("1").build())
            .output(|| GetAliasOutput::builder().function_version("2").build())
            .repeatedly()
            .build();
        let old = config(f).code_sha256("older").build();
        let new = config(f).build();
        let versions = mock!(Client::get_function_configuration).then_compute_output(move |r| {
            let g = if r.qualifier() == Some("2") {
                &new
            } else {
                &old
            };
            GetFunctionConfigurationOutput::builder()
                .set_code_sha256(g.code_sha256().map(str::to_owned))
                .set_runtime(g.runtime().cloned())
                .set_handler(g.handler().map(str::to_owned))
                .set_role(g.role().map(str::to_owned))
                .set_memory_size(g.memory_size())
                .set_timeout(g.timeout())
                .set_environment(g.environment().cloned())
                .set_vpc_config(g.vpc_config().cloned())
                .set_tracing_config(g.tracing_config().cloned())
                .set_logging_config(g.logging_config().cloned())
                .build()
        });
        let sha = lambda_code::package(f.code()).sha256;
        let publish = mock!(Client::publish_version)
            .match_requests(move |r| {
                r.code_sha256() == Some(sha.as_str())
                    && r.description().is_some_and(|d| d.starts_with("payops:"))
            })
            .then_output(|| PublishVersionOutput::builder().version("2").build());
        let move_green = mock!(Client::update_alias)
            .match_requests(|r| r.name() == Some(GREEN) && r.function_version() == Some("2"))
            .then_output(|| UpdateAliasOutput::builder().build());
        let elb = fake::traffic(traffic::Weights::DEFAULT);
        let cx = context(
            &[&get, &blue, &green, &versions, &publish, &move_green],
            &elb.iter().collect::<Vec<_>>(),
        );
        let applied = testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated, "{:?}", applied.notes);
        // Blue was never touched: no UpdateAlias for it is mocked.
        assert_eq!((publish.num_calls(), move_green.num_calls()), (1, 1));
        assert_eq!(
            applied.record.outputs["TransactionBlueAliasArn"],
            format!("{}:blue", arn(f))
        );
    }

    #[tokio::test]
    async fn a_new_transaction_function_gets_both_aliases_at_its_first_version() {
        let f = Function::Transaction;
        let get =
            mock!(Client::get_function).then_output(move || got(f, config(f).build(), Some(10)));
        let no_alias = mock!(Client::get_alias)
            .sequence()
            .error(|| GetAliasError::generic(testing::error_meta("ResourceNotFoundException")))
            .times(2)
            .output(|| GetAliasOutput::builder().function_version("1").build())
            .repeatedly()
            .build();
        let version = mock!(Client::get_function_configuration).then_output(move || {
            let g = config(f).build();
            GetFunctionConfigurationOutput::builder()
                .set_code_sha256(g.code_sha256().map(str::to_owned))
                .build()
        });
        let publish = mock!(Client::publish_version)
            .then_output(|| PublishVersionOutput::builder().version("1").build());
        let create = mock!(Client::create_alias)
            .match_requests(|r| r.function_version() == Some("1"))
            .then_output(|| CreateAliasOutput::builder().build());
        let cx = context(&[&get, &no_alias, &version, &publish, &create], &[]);
        testing::ensure(&cx, &f.step_id(), LambdaFunction::new(f), &inputs(f))
            .await
            .unwrap();
        assert_eq!((publish.num_calls(), create.num_calls()), (1, 2));
    }

    #[tokio::test]
    async fn delete_removes_the_function_and_tolerates_it_gone() {
        let f = Function::Fraud;
        let get =
            mock!(Client::get_function).then_output(move || got(f, config(f).build(), Some(5)));
        let delete = mock!(Client::delete_function)
            .match_requests(|r| r.function_name() == Some("payops-pr1-fraud-detection"))
            .then_output(|| DeleteFunctionOutput::builder().build());
        let cx = context(&[&get, &delete], &[]);
        let removed = testing::destroy(&cx, &f.step_id(), LambdaFunction::new(f))
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);

        let gone = mock!(Client::delete_function).then_error(|| {
            DeleteFunctionError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let cx = context(&[&get, &gone], &[]);
        assert!(
            testing::destroy(&cx, &f.step_id(), LambdaFunction::new(f))
                .await
                .is_ok()
        );

        let none = mock!(Client::get_function).then_error(not_found);
        let cx = context(&[&none], &[]);
        assert_eq!(
            testing::destroy(&cx, &f.step_id(), LambdaFunction::new(f))
                .await
                .unwrap(),
            Removed::AlreadyAbsent
        );
    }
}
