//! The payments REST API (`payops-<env>-api`, regional): request models and
//! a validator on every method, `POST /payments/validate` and
//! `POST /payments/fraud-check` to their functions (Lambda proxy),
//! `POST /payments` through the VPC link to the NLB and on to the ALB's
//! blue/green target groups. Stage `v1` traces with X-Ray, writes access logs
//! to a KMS-encrypted log group, throttles, and sends metrics.
//!
//! The definition (`api_definition.rs`) is compared field by field with what
//! API Gateway holds and repaired in place; the stage serves a deployment
//! named after the definition's hash, so `up` redeploys only when the
//! definition changed. The functions' resource policies let only this API, on
//! its own method and path, invoke them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigateway::types::{
    ConnectionType, EndpointConfiguration, EndpointType, IntegrationType, Op, PatchOperation,
    TlsConfig,
};
use serde_json::Value;

use crate::aws::{AwsError, Budget, OpResult, absent_on, required, retry_on_codes};
use crate::engine::{Record, StepCx};
use crate::spec::Certificate as CertificateSpec;
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::edge::api_account;
use crate::resources::edge::api_definition::{
    self, ACCESS_LOG_FORMAT, Authorization, Definition, INTEGRATION_TIMEOUT_MS, Integration, JSON,
    Method, REQUIRED_HEADER, STAGE, THROTTLE_BURST, THROTTLE_RATE, Targets, VALIDATOR,
};
use crate::resources::model::Function;
use crate::resources::resource::{Resource, keep_the_one_in_use, recorded_first};
use crate::resources::sdk::lambda;
use crate::tags::describe_tag_fix;

const APIGATEWAY_PRINCIPAL: &str = "apigateway.amazonaws.com";
const ACCESS_LOG_STEP: (&str, &str) = ("log-group:api-access", "ApiAccessLogGroupArn");
/// API Gateway allows about one DeleteRestApi per 30 seconds per account.
const DELETE_BUDGET: Budget = Budget::new(Duration::from_secs(10 * 60));

pub struct RestApi;

/// The functions API Gateway invokes, and the method and path each serves.
const INVOKED: [(Function, &str); 2] = [
    (Function::Validation, "/payments/validate"),
    (Function::Fraud, "/payments/fraud-check"),
];

fn statement_id(f: Function) -> String {
    format!("payops-api-{}", f.slug())
}

pub struct FoundApi {
    id: String,
    name: String,
    tags: TagMap,
    /// The resource policy as API Gateway returns it (escaped JSON).
    policy: Option<String>,
    /// Has stage `v1` (looked up only when `find` sees more than one API).
    deployed: bool,
}

/// The stage settings payops owns, as UpdateStage patch operations.
type Patches = Vec<(String, String)>;

pub enum Fix {
    AccountLogging,
    Definition(Vec<String>),
    Permission(Function),
    Deploy { fingerprint: String },
    Stage(Patches),
    Tags(TagMap),
    StageTags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccountLogging => {
                f.write_str("set API Gateway's account-wide CloudWatch Logs role (none is set)")
            }
            Self::Definition(changes) => write!(f, "{}", changes.join("; ")),
            Self::Permission(func) => write!(
                f,
                "let this API invoke {} (POST only, on its path)",
                func.slug()
            ),
            Self::Deploy { fingerprint } => {
                write!(f, "deploy definition {fingerprint} to stage {STAGE}")
            }
            Self::Stage(patches) => write!(
                f,
                "set stage {STAGE} {}",
                patches
                    .iter()
                    .map(|(p, _)| p.trim_start_matches('/'))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::StageTags(t) => write!(f, "stage {STAGE}: {}", describe_tag_fix(t)),
        }
    }
}

/// API Gateway's maps (tags, request models, ...) in payops' ordered form.
pub(super) fn map<K: Clone + Ord, V: Clone>(m: Option<&HashMap<K, V>>) -> BTreeMap<K, V> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// What API Gateway holds for the API, as far as payops compares it.
#[derive(Default)]
struct Actual {
    root: Option<String>,
    /// path -> resource id
    resources: BTreeMap<String, String>,
    /// model name -> (id, schema)
    models: BTreeMap<String, Value>,
    /// (id, validates body, validates parameters)
    validator: Option<(String, bool, bool)>,
    /// Other validators of payops' name: a retried CreateRequestValidator
    /// whose first answer was lost makes a second (names are not unique).
    extra_validators: Vec<String>,
    /// (path, method) present with the right settings / integration
    methods: BTreeMap<(String, String), (bool, bool)>,
    /// (path, method) that exist but are not in the definition
    extra_methods: Vec<(String, String)>,
}

/// Whether a method (GetMethod's answer, or one GetResources embeds: the
/// same fields) is as `m` wants it.
macro_rules! method_matches {
    ($method:expr, $m:expr, $auth:expr, $validator:expr) => {
        $method.authorization_type() == Some($auth.kind)
            && $method.api_key_required().unwrap_or(false) == $auth.api_key_required
            && $validator.is_some()
            && $method.request_validator_id() == $validator
            && map($method.request_models())
                == BTreeMap::from([(JSON.to_owned(), $m.model.to_owned())])
            && map($method.request_parameters())
                == BTreeMap::from([(REQUIRED_HEADER.to_owned(), true)])
    };
}

/// Whether an integration (GetIntegration's answer, or the one an embedded
/// method carries) is as `m` wants it.
macro_rules! integration_matches {
    ($i:expr, $m:expr, $cx:expr) => {{
        let i = &$i;
        let base = i.r#type() == Some(&integration_type(&$m.integration))
            && i.http_method() == Some("POST")
            && i.uri() == Some($m.integration.uri(&$cx.region, $cx.partition()).as_str());
        match &$m.integration {
            Integration::Lambda { .. } => base,
            Integration::VpcLink {
                connection_id,
                skip_tls_verification,
                ..
            } => {
                base && i.connection_type() == Some(&ConnectionType::VpcLink)
                    && i.connection_id() == Some(connection_id.as_str())
                    && i.tls_config()
                        .is_some_and(|t| t.insecure_skip_verification())
                        == *skip_tls_verification
            }
        }
    }};
}

fn integration_type(i: &Integration) -> IntegrationType {
    match i {
        Integration::Lambda { .. } => IntegrationType::AwsProxy,
        Integration::VpcLink { .. } => IntegrationType::HttpProxy,
    }
}

impl RestApi {
    fn arn(cx: &Context, id: &str) -> String {
        format!(
            "arn:{}:apigateway:{}::/restapis/{id}",
            cx.partition(),
            cx.region
        )
    }

    fn stage_arn(cx: &Context, id: &str) -> String {
        format!("{}/stages/{STAGE}", Self::arn(cx, id))
    }

    fn endpoint(cx: &Context, id: &str) -> String {
        let suffix = if cx.partition() == "aws-cn" {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://{id}.execute-api.{}.{suffix}/{STAGE}", cx.region)
    }

    fn source_arn(cx: &Context, id: &str, path: &str) -> String {
        cx.arn("execute-api", &format!("{id}/*/POST{path}"))
    }

    async fn targets(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        id: &str,
    ) -> Result<Targets, AwsError> {
        let (payments_uri, skip_tls_verification) = match &cx.spec.certificate {
            // API Gateway verifies the backend's certificate against the URI's
            // host unless told not to; payops' own is self-signed.
            CertificateSpec::SelfSigned => (
                api_definition::payments_uri(step.output("load-balancer:nlb", "NlbDnsName")?),
                true,
            ),
            // An operator's certificate is verified: the URI names its domain
            // (the VPC link still decides where the connection goes).
            CertificateSpec::Acm(arn) => {
                let out = cx
                    .clients
                    .acm
                    .describe_certificate()
                    .certificate_arn(arn)
                    .send()
                    .await
                    .op("acm:DescribeCertificate")?;
                let domain = out.certificate().and_then(|c| c.domain_name()).ok_or(
                    AwsError::Incomplete {
                        op: "acm:DescribeCertificate",
                        field: "DomainName",
                    },
                )?;
                (api_definition::payments_uri(domain), false)
            }
        };
        Ok(Targets {
            validation_function: step
                .output(
                    &Function::Validation.step_id(),
                    &Function::Validation.arn_output(),
                )?
                .to_owned(),
            fraud_function: step
                .output(&Function::Fraud.step_id(), &Function::Fraud.arn_output())?
                .to_owned(),
            vpc_link: step.output("vpc-link", "VpcLinkId")?.to_owned(),
            payments_uri,
            skip_tls_verification,
            access: cx.spec.api.clone(),
            execute_arn: cx.arn("execute-api", id),
            account_root: cx.account_root_arn(),
        })
    }

    async fn read(&self, cx: &Context, id: &str, def: &Definition) -> Result<Actual, AwsError> {
        let gw = &cx.clients.apigateway;
        let mut actual = Actual::default();
        let pages: Vec<_> = gw
            .get_resources()
            .rest_api_id(id)
            // Each method with its integration in the same answer, rather
            // than a GetMethod and a GetIntegration per method.
            .embed("methods")
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut methods_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut embedded: BTreeMap<(String, String), aws_sdk_apigateway::types::Method> =
            BTreeMap::new();
        for page in pages {
            for r in page.op("apigateway:GetResources")?.items() {
                let (Some(rid), Some(path)) = (r.id(), r.path()) else {
                    continue;
                };
                if path == "/" {
                    actual.root = Some(rid.to_owned());
                } else {
                    actual.resources.insert(path.to_owned(), rid.to_owned());
                }
                for (verb, method) in r.resource_methods().into_iter().flatten() {
                    embedded.insert((path.to_owned(), verb.clone()), method.clone());
                }
                methods_of.insert(
                    path.to_owned(),
                    r.resource_methods()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default(),
                );
            }
        }
        let models = gw
            .get_models()
            .rest_api_id(id)
            .limit(500)
            .send()
            .await
            .op("apigateway:GetModels")?;
        for m in models.items() {
            if let (Some(name), Some(schema)) = (m.name(), m.schema()) {
                let schema = serde_json::from_str(schema).unwrap_or(Value::Null);
                actual.models.insert(name.to_owned(), schema);
            }
        }
        (actual.validator, actual.extra_validators) = Self::validators(cx, id).await?;
        let wanted: BTreeSet<(String, String)> = def
            .methods
            .iter()
            .map(|m| (m.path.to_owned(), m.http_method.to_owned()))
            .collect();
        for (path, methods) in &methods_of {
            for m in methods {
                let key = (path.clone(), m.clone());
                if !wanted.contains(&key) {
                    actual.extra_methods.push(key);
                }
            }
        }
        for m in &def.methods {
            let Some(rid) = actual.resources.get(m.path) else {
                continue;
            };
            let validator = actual.validator.as_ref().map(|v| v.0.as_str());
            // Embedded only with its integration: without one (not embedded,
            // or an emulator that leaves it out) the method is read alone.
            // Only an embedded answer that matches is taken as is: one that
            // differs is read again, method and integration, before it is
            // called drift (LocalStack embeds a VPC-link integration without
            // fields its GetIntegration returns).
            if let Some((method, integration)) = embedded
                .get(&(m.path.to_owned(), m.http_method.to_owned()))
                .and_then(|e| Some((e, e.method_integration()?)))
                && method_matches!(method, m, def.authorization, validator)
                && integration_matches!(integration, m, cx)
            {
                actual
                    .methods
                    .insert((m.path.to_owned(), m.http_method.to_owned()), (true, true));
                continue;
            }
            let state = self
                .method_state(
                    cx,
                    id,
                    rid,
                    m,
                    def.authorization,
                    actual.validator.as_ref().map(|v| v.0.as_str()),
                )
                .await?;
            if let Some(state) = state {
                actual
                    .methods
                    .insert((m.path.to_owned(), m.http_method.to_owned()), state);
            }
        }
        Ok(actual)
    }

    /// (method settings right, integration right), or None if the method is missing.
    async fn method_state(
        &self,
        cx: &Context,
        api: &str,
        resource: &str,
        m: &Method,
        auth: Authorization,
        validator: Option<&str>,
    ) -> Result<Option<(bool, bool)>, AwsError> {
        let gw = &cx.clients.apigateway;
        let got = gw
            .get_method()
            .rest_api_id(api)
            .resource_id(resource)
            .http_method(m.http_method)
            .send()
            .await
            .op("apigateway:GetMethod");
        let Some(method) = absent_on(got, &["NotFoundException"])? else {
            return Ok(None);
        };
        let method_ok = method_matches!(method, m, auth, validator);
        let got = gw
            .get_integration()
            .rest_api_id(api)
            .resource_id(resource)
            .http_method(m.http_method)
            .send()
            .await
            .op("apigateway:GetIntegration");
        let integration_ok = match absent_on(got, &["NotFoundException"])? {
            None => false,
            Some(i) => integration_matches!(i, m, cx),
        };
        Ok(Some((method_ok, integration_ok)))
    }

    fn compare(def: &Definition, actual: &Actual) -> Vec<String> {
        let mut changes = Vec::new();
        for model in &def.models {
            match actual.models.get(model.name) {
                None => changes.push(format!("create model {}", model.name)),
                Some(schema) if *schema != model.schema => {
                    changes.push(format!("update model {}", model.name))
                }
                Some(_) => {}
            }
        }
        match &actual.validator {
            None => changes.push(format!("create request validator {VALIDATOR}")),
            Some((_, true, true)) => {}
            Some(_) => changes.push(format!("validate bodies and parameters ({VALIDATOR})")),
        }
        if !actual.extra_validators.is_empty() {
            changes.push(format!(
                "delete {} duplicate request validator(s) {VALIDATOR}",
                actual.extra_validators.len()
            ));
        }
        for path in def.paths() {
            if !actual.resources.contains_key(&path) {
                changes.push(format!("create resource {path}"));
            }
        }
        let wanted_paths = def.paths();
        for path in actual.resources.keys() {
            if !wanted_paths.contains(path) {
                changes.push(format!("delete unexpected resource {path}"));
            }
        }
        for (path, method) in &actual.extra_methods {
            if wanted_paths.contains(path) {
                changes.push(format!("delete unexpected method {method} {path}"));
            }
        }
        for m in &def.methods {
            match actual
                .methods
                .get(&(m.path.to_owned(), m.http_method.to_owned()))
            {
                None => changes.push(format!("create method {} {}", m.http_method, m.path)),
                Some((false, _)) => changes.push(format!(
                    "re-create method {} {} (authorization, validator, model or parameters)",
                    m.http_method, m.path
                )),
                Some((true, false)) => changes.push(format!(
                    "update the {} integration of {} {}",
                    m.integration.type_name(),
                    m.http_method,
                    m.path
                )),
                Some((true, true)) => {}
            }
        }
        changes
    }

    /// payops' request validator and the other validators of its name. Of
    /// several (a retried create whose first answer was lost), the lowest id
    /// is the one kept, so every run picks the same one.
    async fn validators(
        cx: &Context,
        id: &str,
    ) -> Result<(Option<(String, bool, bool)>, Vec<String>), AwsError> {
        let validators = cx
            .clients
            .apigateway
            .get_request_validators()
            .rest_api_id(id)
            .limit(500)
            .send()
            .await
            .op("apigateway:GetRequestValidators")?;
        let mut ours: Vec<(String, bool, bool)> = validators
            .items()
            .iter()
            .filter(|v| v.name() == Some(VALIDATOR))
            .filter_map(|v| {
                Some((
                    v.id()?.to_owned(),
                    v.validate_request_body(),
                    v.validate_request_parameters(),
                ))
            })
            .collect();
        ours.sort();
        let mut ours = ours.into_iter();
        let kept = ours.next();
        Ok((kept, ours.map(|(vid, ..)| vid).collect()))
    }

    /// Brings the API's definition to `def`; every operation is idempotent.
    async fn reconcile(&self, cx: &Context, id: &str, def: &Definition) -> Result<(), AwsError> {
        let gw = &cx.clients.apigateway;
        let mut actual = self.read(cx, id, def).await?;
        for model in &def.models {
            let schema = model.schema.to_string();
            match actual.models.get(model.name) {
                None => {
                    gw.create_model()
                        .rest_api_id(id)
                        .name(model.name)
                        .content_type(JSON)
                        .schema(schema)
                        .send()
                        .await
                        .op("apigateway:CreateModel")?;
                }
                Some(have) if *have != model.schema => {
                    gw.update_model()
                        .rest_api_id(id)
                        .model_name(model.name)
                        .patch_operations(patch("/schema", &schema))
                        .send()
                        .await
                        .op("apigateway:UpdateModel")?;
                }
                Some(_) => {}
            }
        }
        let validator = match &actual.validator {
            None => {
                let out = gw
                    .create_request_validator()
                    .rest_api_id(id)
                    .name(VALIDATOR)
                    .validate_request_body(true)
                    .validate_request_parameters(true)
                    .send()
                    .await
                    .op("apigateway:CreateRequestValidator")?;
                required(out.id(), "apigateway:CreateRequestValidator", "id")?;
                // The SDK may have retried a create that AWS applied: look
                // again, so that the methods point at the validator every
                // later run keeps, and the others go below.
                let (kept, extra) = Self::validators(cx, id).await?;
                actual.extra_validators = extra;
                let kept = kept.map(|(vid, ..)| vid);
                required(kept.as_deref(), "apigateway:GetRequestValidators", "id")?.to_owned()
            }
            Some((vid, body, params)) => {
                if !(*body && *params) {
                    gw.update_request_validator()
                        .rest_api_id(id)
                        .request_validator_id(vid)
                        .patch_operations(patch("/validateRequestBody", "true"))
                        .patch_operations(patch("/validateRequestParameters", "true"))
                        .send()
                        .await
                        .op("apigateway:UpdateRequestValidator")?;
                }
                vid.clone()
            }
        };
        let wanted_paths = def.paths();
        // Deepest first, so a parent's deletion never leaves an orphan to trip on.
        let mut unexpected: Vec<(String, String)> = actual
            .resources
            .iter()
            .filter(|(p, _)| !wanted_paths.contains(p))
            .map(|(p, r)| (p.clone(), r.clone()))
            .collect();
        unexpected.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
        for (path, rid) in unexpected {
            let deleted = gw
                .delete_resource()
                .rest_api_id(id)
                .resource_id(&rid)
                .send()
                .await
                .op("apigateway:DeleteResource");
            absent_on(deleted, &["NotFoundException"])?;
            actual.resources.remove(&path);
        }
        for path in &wanted_paths {
            if actual.resources.contains_key(path) {
                continue;
            }
            let (parent, part) = path.rsplit_once('/').unwrap_or(("", path));
            let parent_id = if parent.is_empty() {
                actual.root.clone()
            } else {
                actual.resources.get(parent).cloned()
            }
            .ok_or_else(|| AwsError::Conflict(format!("REST API {id}: no parent for {path}")))?;
            let out = gw
                .create_resource()
                .rest_api_id(id)
                .parent_id(parent_id)
                .path_part(part)
                .send()
                .await
                .op("apigateway:CreateResource")?;
            let rid = required(out.id(), "apigateway:CreateResource", "id")?;
            actual.resources.insert(path.clone(), rid.to_owned());
        }
        for (path, method) in &actual.extra_methods {
            if let Some(rid) = actual.resources.get(path) {
                let deleted = gw
                    .delete_method()
                    .rest_api_id(id)
                    .resource_id(rid)
                    .http_method(method)
                    .send()
                    .await
                    .op("apigateway:DeleteMethod");
                absent_on(deleted, &["NotFoundException"])?;
            }
        }
        for m in &def.methods {
            let rid = actual.resources.get(m.path).cloned().ok_or_else(|| {
                AwsError::Conflict(format!("REST API {id}: no resource {}", m.path))
            })?;
            let state = self
                .method_state(cx, id, &rid, m, def.authorization, Some(&validator))
                .await?;
            let recreate = matches!(state, Some((false, _)));
            if recreate {
                // A retried delete whose first answer was lost meets the
                // method gone: that is the delete done.
                let deleted = gw
                    .delete_method()
                    .rest_api_id(id)
                    .resource_id(&rid)
                    .http_method(m.http_method)
                    .send()
                    .await
                    .op("apigateway:DeleteMethod");
                absent_on(deleted, &["NotFoundException"])?;
            }
            if state.is_none() || recreate {
                gw.put_method()
                    .rest_api_id(id)
                    .resource_id(&rid)
                    .http_method(m.http_method)
                    .authorization_type(def.authorization.kind)
                    .api_key_required(def.authorization.api_key_required)
                    .request_validator_id(&validator)
                    .request_models(JSON, m.model)
                    .request_parameters(REQUIRED_HEADER, true)
                    .send()
                    .await
                    .op("apigateway:PutMethod")?;
            }
            if state.is_none() || recreate || matches!(state, Some((_, false))) {
                let mut put = gw
                    .put_integration()
                    .rest_api_id(id)
                    .resource_id(&rid)
                    .http_method(m.http_method)
                    .r#type(integration_type(&m.integration))
                    .integration_http_method("POST")
                    .uri(m.integration.uri(&cx.region, cx.partition()))
                    .timeout_in_millis(INTEGRATION_TIMEOUT_MS);
                if let Integration::VpcLink {
                    connection_id,
                    skip_tls_verification,
                    ..
                } = &m.integration
                {
                    put = put
                        .connection_type(ConnectionType::VpcLink)
                        .connection_id(connection_id)
                        .tls_config(
                            TlsConfig::builder()
                                .insecure_skip_verification(*skip_tls_verification)
                                .build(),
                        );
                }
                put.send().await.op("apigateway:PutIntegration")?;
            }
        }
        // Last, once no method points at them any more.
        for vid in &actual.extra_validators {
            let deleted = gw
                .delete_request_validator()
                .rest_api_id(id)
                .request_validator_id(vid)
                .send()
                .await
                .op("apigateway:DeleteRequestValidator");
            absent_on(deleted, &["NotFoundException"])?;
        }
        Ok(())
    }

    /// The stage settings that differ, as patch operations.
    fn stage_patches(
        stage: Option<&aws_sdk_apigateway::operation::get_stage::GetStageOutput>,
        log_group_arn: &str,
    ) -> Patches {
        let mut patches = Vec::new();
        let mut want = |path: &str, value: String| patches.push((path.to_owned(), value));
        if !stage.is_some_and(|s| s.tracing_enabled()) {
            want("/tracingEnabled", "true".into());
        }
        let logs = stage.and_then(|s| s.access_log_settings());
        if logs.and_then(|l| l.destination_arn()) != Some(log_group_arn) {
            want(
                "/accessLogSettings/destinationArn",
                log_group_arn.to_owned(),
            );
        }
        if logs.and_then(|l| l.format()) != Some(ACCESS_LOG_FORMAT) {
            want("/accessLogSettings/format", ACCESS_LOG_FORMAT.to_owned());
        }
        let all = stage
            .and_then(|s| s.method_settings())
            .and_then(|m| m.get("*/*"));
        if !all.is_some_and(|m| m.metrics_enabled()) {
            want("/*/*/metrics/enabled", "true".into());
        }
        if all.map(|m| m.throttling_burst_limit()) != Some(THROTTLE_BURST) {
            want("/*/*/throttling/burstLimit", THROTTLE_BURST.to_string());
        }
        if all.map(|m| m.throttling_rate_limit()) != Some(THROTTLE_RATE) {
            want("/*/*/throttling/rateLimit", format!("{THROTTLE_RATE}"));
        }
        // Data tracing would log whole request bodies, card numbers included.
        if all.is_some_and(|m| m.data_trace_enabled()) {
            want("/*/*/logging/dataTrace", "false".into());
        }
        patches
    }

    async fn permission_ok(
        &self,
        cx: &Context,
        f: Function,
        id: &str,
        path: &str,
    ) -> Result<bool, AwsError> {
        let source = Self::source_arn(cx, id, path);
        let sid = statement_id(f);
        lambda::grants(cx, &f.name(cx), None, &sid, APIGATEWAY_PRINCIPAL, &source).await
    }

    async fn remove_permission(&self, cx: &Context, f: Function) -> Result<(), AwsError> {
        let removed = cx
            .clients
            .lambda
            .remove_permission()
            .function_name(f.name(cx))
            .statement_id(statement_id(f))
            .send()
            .await
            .op("lambda:RemovePermission");
        absent_on(removed, &["ResourceNotFoundException"]).map(drop)
    }

    async fn stage(
        &self,
        cx: &Context,
        id: &str,
    ) -> Result<Option<aws_sdk_apigateway::operation::get_stage::GetStageOutput>, AwsError> {
        let got = cx
            .clients
            .apigateway
            .get_stage()
            .rest_api_id(id)
            .stage_name(STAGE)
            .send()
            .await
            .op("apigateway:GetStage");
        absent_on(got, &["NotFoundException"])
    }
}

/// What to say when the resource policy API Gateway holds is not the one
/// wanted (None when they mean the same).
fn policy_change(wanted: Option<&Value>, held: Option<&str>) -> Option<&'static str> {
    match (wanted, held.filter(|h| !h.is_empty())) {
        (None, None) => None,
        (None, Some(_)) => Some("remove the resource policy (no --api-allow callers)"),
        (Some(_), None) => Some("set the resource policy (only --api-allow callers)"),
        (Some(w), Some(h)) if crate::aws::policy::same(h, &w.to_string()) => None,
        (Some(_), Some(_)) => Some("update the resource policy (--api-allow callers)"),
    }
}

fn patch(path: &str, value: &str) -> PatchOperation {
    PatchOperation::builder()
        .op(Op::Replace)
        .path(path)
        .value(value)
        .build()
}

#[async_trait]
impl Resource for RestApi {
    type Found = FoundApi;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "apigateway:rest-api"
    }

    /// A retried CreateStage, CreateResource or PutMethod meets what its lost
    /// first attempt made: API Gateway answers `ConflictException`.
    fn already_exists(&self) -> &'static [&'static str] {
        &["ConflictException"]
    }

    /// Every API of the env's name (a retried create can have made two), the
    /// recorded one first: `down` removes them all.
    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundApi>, AwsError> {
        let name = cx.names.rest_api();
        let pages: Vec<_> = cx
            .clients
            .apigateway
            .get_rest_apis()
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut found = Vec::new();
        for page in pages {
            for api in page.op("apigateway:GetRestApis")?.items() {
                if api.name() != Some(name.as_str()) {
                    continue;
                }
                let id = required(api.id(), "apigateway:GetRestApis", "id")?;
                let tags = map(api.tags());
                cx.check_ours(format!("REST API {id}"), &tags)?;
                found.push(FoundApi {
                    id: id.to_owned(),
                    name: name.clone(),
                    tags,
                    policy: api.policy().map(str::to_owned),
                    deployed: false,
                });
            }
        }
        if found.len() > 1 {
            recorded_first(&mut found, step.previous_resource("rest_api"), |a| &a.id);
            for api in &mut found {
                api.deployed = self.stage(cx, &api.id).await?.is_some();
            }
        }
        Ok(found)
    }

    /// CreateRestApi has no idempotency token and names are not unique: a
    /// retried create whose first answer was lost leaves a second API.
    fn create_may_duplicate(&self) -> bool {
        true
    }

    /// The one with stage `v1`; an extra from a retried create was never
    /// deployed.
    fn keep_of_duplicates(&self, found: &[FoundApi]) -> Option<usize> {
        keep_the_one_in_use(found, |a| a.deployed)
    }

    /// Only the API: the Lambda permissions `delete` also removes name the
    /// statement ids the kept API uses.
    async fn delete_duplicate(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundApi,
    ) -> Result<Vec<String>, AwsError> {
        self.delete_api(cx, step, &found.id).await?;
        Ok(Vec::new())
    }

    fn describe(&self, found: &FoundApi) -> String {
        format!("{} ({})", found.id, found.name)
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundApi, AwsError> {
        let name = cx.names.rest_api();
        let tags = cx.tagger.for_create(step.id().as_str());
        let out = cx
            .clients
            .apigateway
            .create_rest_api()
            .name(&name)
            .description("payops payments API")
            .endpoint_configuration(
                EndpointConfiguration::builder()
                    .types(EndpointType::Regional)
                    .build(),
            )
            .set_tags(Some(tags.clone().into_iter().collect()))
            .send()
            .await
            .op("apigateway:CreateRestApi")?;
        let id = required(out.id(), "apigateway:CreateRestApi", "id")?.to_owned();
        step.remember("rest_api", &id);
        Ok(FoundApi {
            id,
            name,
            tags,
            policy: None,
            deployed: false,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundApi,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        if api_account::logging_role(cx).await?.is_none() {
            fixes.push(Fix::AccountLogging);
        }
        let def = api_definition::definition(&self.targets(cx, step, &found.id).await?);
        let fingerprint = def.fingerprint();
        let mut changes = Self::compare(&def, &self.read(cx, &found.id, &def).await?);
        if let Some(change) = policy_change(def.policy.as_ref(), found.policy.as_deref()) {
            changes.push(change.into());
        }
        if !changes.is_empty() {
            fixes.push(Fix::Definition(changes));
        }
        for (f, path) in INVOKED {
            if !self.permission_ok(cx, f, &found.id, path).await? {
                fixes.push(Fix::Permission(f));
            }
        }
        let stage = self.stage(cx, &found.id).await?;
        let deployed = match stage.as_ref().and_then(|s| s.deployment_id()) {
            Some(deployment) => {
                let got = cx
                    .clients
                    .apigateway
                    .get_deployment()
                    .rest_api_id(&found.id)
                    .deployment_id(deployment)
                    .send()
                    .await
                    .op("apigateway:GetDeployment");
                absent_on(got, &["NotFoundException"])?
                    .and_then(|d| d.description().map(str::to_owned))
            }
            None => None,
        };
        if deployed.as_deref()
            != Some(api_definition::deployment_description(&fingerprint).as_str())
        {
            fixes.push(Fix::Deploy { fingerprint });
        }
        let log_group = step.output(ACCESS_LOG_STEP.0, ACCESS_LOG_STEP.1)?;
        let patches = Self::stage_patches(stage.as_ref(), log_group);
        if !patches.is_empty() {
            fixes.push(Fix::Stage(patches));
        }
        if let Some(stage) = &stage {
            let missing = cx.tagger.missing(step.id().as_str(), &map(stage.tags()));
            if !missing.is_empty() {
                fixes.push(Fix::StageTags(missing));
            }
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
        found: &mut FoundApi,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let gw = &cx.clients.apigateway;
        match fix {
            Fix::AccountLogging => {
                let progress = |m: String| step.progress(m);
                if let Some(note) = api_account::ensure_logging_role(cx, &progress).await? {
                    step.progress(note);
                }
            }
            Fix::Definition(_) => {
                let def = api_definition::definition(&self.targets(cx, step, &found.id).await?);
                self.reconcile(cx, &found.id, &def).await?;
                if policy_change(def.policy.as_ref(), found.policy.as_deref()).is_some() {
                    // Empty removes the policy; either way API Gateway
                    // applies it with the deployment that follows.
                    let policy = def
                        .policy
                        .as_ref()
                        .map(Value::to_string)
                        .unwrap_or_default();
                    gw.update_rest_api()
                        .rest_api_id(&found.id)
                        .patch_operations(patch("/policy", &policy))
                        .send()
                        .await
                        .op("apigateway:UpdateRestApi")?;
                    found.policy = Some(policy).filter(|p| !p.is_empty());
                }
            }
            Fix::Permission(f) => {
                let path = INVOKED
                    .iter()
                    .find(|(g, _)| *g == f)
                    .map_or("/", |(_, p)| p);
                self.remove_permission(cx, f).await?;
                cx.clients
                    .lambda
                    .add_permission()
                    .function_name(f.name(cx))
                    .statement_id(statement_id(f))
                    .action("lambda:InvokeFunction")
                    .principal(APIGATEWAY_PRINCIPAL)
                    .source_arn(Self::source_arn(cx, &found.id, path))
                    .send()
                    .await
                    .op("lambda:AddPermission")?;
            }
            Fix::Deploy { fingerprint } => {
                let out = gw
                    .create_deployment()
                    .rest_api_id(&found.id)
                    .description(api_definition::deployment_description(&fingerprint))
                    .send()
                    .await
                    .op("apigateway:CreateDeployment")?;
                let deployment = required(out.id(), "apigateway:CreateDeployment", "id")?;
                if self.stage(cx, &found.id).await?.is_some() {
                    gw.update_stage()
                        .rest_api_id(&found.id)
                        .stage_name(STAGE)
                        .patch_operations(patch("/deploymentId", deployment))
                        .send()
                        .await
                        .op("apigateway:UpdateStage")?;
                } else {
                    gw.create_stage()
                        .rest_api_id(&found.id)
                        .stage_name(STAGE)
                        .deployment_id(deployment)
                        .description("payops payments API, version 1")
                        .tracing_enabled(true)
                        .set_tags(Some(
                            cx.tagger
                                .for_create(step.id().as_str())
                                .into_iter()
                                .collect(),
                        ))
                        .send()
                        .await
                        .op("apigateway:CreateStage")?;
                }
            }
            Fix::Stage(patches) => {
                let ops = patches.iter().map(|(p, v)| patch(p, v)).collect();
                gw.update_stage()
                    .rest_api_id(&found.id)
                    .stage_name(STAGE)
                    .set_patch_operations(Some(ops))
                    .send()
                    .await
                    .op("apigateway:UpdateStage")?;
            }
            Fix::Tags(tags) => {
                gw.tag_resource()
                    .resource_arn(Self::arn(cx, &found.id))
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .op("apigateway:TagResource")?;
                found.tags.extend(tags);
            }
            Fix::StageTags(tags) => {
                gw.tag_resource()
                    .resource_arn(Self::stage_arn(cx, &found.id))
                    .set_tags(Some(tags.into_iter().collect()))
                    .send()
                    .await
                    .op("apigateway:TagResource")?;
            }
        }
        Ok(())
    }

    fn record(&self, cx: &Context, found: &FoundApi) -> Record {
        Record::default()
            .resource("rest_api", &found.id)
            .output("RestApiId", &found.id)
            .output("ApiEndpoint", Self::endpoint(cx, &found.id))
            .output("ApiStageName", STAGE)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundApi,
    ) -> Result<Vec<String>, AwsError> {
        self.delete_api(cx, step, &found.id).await?;
        // The functions go later in the walk; their statements naming this
        // API would otherwise outlive it if they were kept.
        for (f, _) in INVOKED {
            self.remove_permission(cx, f).await?;
        }
        Ok(Vec::new())
    }
}

impl RestApi {
    /// DeleteRestApi, through API Gateway's account-wide throttle on it.
    async fn delete_api(&self, cx: &Context, step: &StepCx<'_>, id: &str) -> Result<(), AwsError> {
        let progress = |m: String| step.progress(m);
        retry_on_codes(
            format!("deleting REST API {id}"),
            &["TooManyRequestsException"],
            DELETE_BUDGET,
            &progress,
            || async {
                let deleted = cx
                    .clients
                    .apigateway
                    .delete_rest_api()
                    .rest_api_id(id)
                    .send()
                    .await
                    .op("apigateway:DeleteRestApi");
                absent_on(deleted, &["NotFoundException"]).map(drop)
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_apigateway::Client;
    use aws_sdk_apigateway::operation::{
        create_deployment::CreateDeploymentOutput,
        create_model::CreateModelOutput,
        create_request_validator::CreateRequestValidatorOutput,
        create_resource::CreateResourceOutput,
        create_rest_api::CreateRestApiOutput,
        create_stage::CreateStageOutput,
        delete_rest_api::{DeleteRestApiError, DeleteRestApiOutput},
        get_account::GetAccountOutput,
        get_deployment::GetDeploymentOutput,
        get_integration::{GetIntegrationError, GetIntegrationOutput},
        get_method::{GetMethodError, GetMethodOutput},
        get_models::GetModelsOutput,
        get_request_validators::GetRequestValidatorsOutput,
        get_resources::GetResourcesOutput,
        get_rest_apis::GetRestApisOutput,
        get_stage::{GetStageError, GetStageOutput},
        put_integration::PutIntegrationOutput,
        put_method::PutMethodOutput,
        update_stage::UpdateStageOutput,
    };
    use aws_sdk_apigateway::types::{
        AccessLogSettings, Method as ApiMethod, MethodSetting, Model as ApiModel, RequestValidator,
        Resource as ApiResource, RestApi as ApiRestApi,
    };
    use aws_sdk_lambda::operation::{
        add_permission::AddPermissionOutput,
        get_policy::{GetPolicyError, GetPolicyOutput},
        remove_permission::{RemovePermissionError, RemovePermissionOutput},
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use serde_json::json;

    use super::*;
    use crate::engine::{Change, Observation, Removed, StepId};
    use crate::resources::testing;

    const STEP: &str = "rest-api:payments";
    const NLB_DNS: &str = "payops-pr1-nlb-1.elb.us-east-1.amazonaws.com";
    const LOGS: &str =
        "arn:aws:logs:us-east-1:123456789012:log-group:/payops/pr1/api-gateway/access";

    fn fn_arn(f: Function) -> String {
        format!(
            "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-{}",
            f.slug()
        )
    }

    fn inputs() -> Vec<(&'static str, Record)> {
        let v = fn_arn(Function::Validation);
        let f = fn_arn(Function::Fraud);
        let mut out = testing::outputs(&[
            ("vpc-link", "VpcLinkId", "vl-1"),
            ("load-balancer:nlb", "NlbDnsName", NLB_DNS),
            ("log-group:api-access", "ApiAccessLogGroupArn", LOGS),
        ]);
        out.push((
            "lambda-function:payment-validation",
            Record::default().output("ValidationFunctionArn", v),
        ));
        out.push((
            "lambda-function:fraud-detection",
            Record::default().output("FraudFunctionArn", f),
        ));
        out
    }

    fn definition() -> Definition {
        definition_for(&crate::spec::ApiAccess::default())
    }

    fn definition_for(access: &crate::spec::ApiAccess) -> Definition {
        api_definition::definition(&Targets {
            validation_function: fn_arn(Function::Validation),
            fraud_function: fn_arn(Function::Fraud),
            vpc_link: "vl-1".into(),
            payments_uri: format!("https://{NLB_DNS}/payments"),
            skip_tls_verification: true,
            access: access.clone(),
            execute_arn: "arn:aws:execute-api:us-east-1:123456789012:api-1".into(),
            account_root: "arn:aws:iam::123456789012:root".into(),
        })
    }

    fn rid(path: &str) -> String {
        format!("r{}", path.replace('/', "-"))
    }

    /// Validators of payops' name, checking bodies and parameters.
    fn validators(ids: &[&str]) -> GetRequestValidatorsOutput {
        let mut out = GetRequestValidatorsOutput::builder();
        for id in ids {
            out = out.items(
                RequestValidator::builder()
                    .id(*id)
                    .name(VALIDATOR)
                    .validate_request_body(true)
                    .validate_request_parameters(true)
                    .build(),
            );
        }
        out.build()
    }

    fn account() -> Rule {
        mock!(Client::get_account).then_output(|| {
            GetAccountOutput::builder()
                .cloudwatch_role_arn("arn:aws:iam::123456789012:role/logs")
                .build()
        })
    }

    fn apis(tags: TagMap) -> Rule {
        apis_with_policy(tags, None)
    }

    fn apis_with_policy(tags: TagMap, policy: Option<String>) -> Rule {
        mock!(Client::get_rest_apis).then_output(move || {
            GetRestApisOutput::builder()
                .items(
                    ApiRestApi::builder()
                        .id("api-1")
                        .name("payops-pr1-api")
                        .set_tags(Some(tags.clone().into_iter().collect()))
                        .set_policy(policy.clone())
                        .build(),
                )
                .build()
        })
    }

    /// API Gateway holding exactly the definition, deployed as `deployed`.
    fn in_sync(deployed: &'static str) -> Vec<Rule> {
        in_sync_with(deployed, &definition(), definition().authorization)
    }

    /// API Gateway holding `def` (its methods authorized as `held`),
    /// deployed as `deployed`.
    fn in_sync_with(deployed: &'static str, def: &Definition, held: Authorization) -> Vec<Rule> {
        let def = def.clone();
        let resources = {
            let mut out = GetResourcesOutput::builder()
                .items(ApiResource::builder().id("root").path("/").build());
            for path in def.paths() {
                let methods = def
                    .methods
                    .iter()
                    .filter(|m| m.path == path)
                    .map(|m| (m.http_method.to_owned(), ApiMethod::builder().build()))
                    .collect();
                out = out.items(
                    ApiResource::builder()
                        .id(rid(&path))
                        .path(&path)
                        .set_resource_methods(Some(methods))
                        .build(),
                );
            }
            out.build()
        };
        let models = def.models.clone();
        let methods = def.methods.clone();
        let integrations = def.methods.clone();
        let fp = def.fingerprint();
        vec![
            mock!(Client::get_resources).then_output(move || resources.clone()),
            mock!(Client::get_models).then_output(move || {
                let mut out = GetModelsOutput::builder();
                for m in &models {
                    out = out.items(
                        ApiModel::builder()
                            .name(m.name)
                            .schema(m.schema.to_string())
                            .build(),
                    );
                }
                out.build()
            }),
            mock!(Client::get_request_validators).then_output(|| validators(&["val-1"])),
            mock!(Client::get_method).then_compute_output(move |r| {
                let m = methods
                    .iter()
                    .find(|m| rid(m.path) == r.resource_id().unwrap_or_default())
                    .unwrap();
                GetMethodOutput::builder()
                    .http_method("POST")
                    .authorization_type(held.kind)
                    .api_key_required(held.api_key_required)
                    .request_validator_id("val-1")
                    .request_models(JSON, m.model)
                    .request_parameters(REQUIRED_HEADER, true)
                    .build()
            }),
            mock!(Client::get_integration).then_compute_output(move |r| {
                let m = integrations
                    .iter()
                    .find(|m| rid(m.path) == r.resource_id().unwrap_or_default())
                    .unwrap();
                let mut out = GetIntegrationOutput::builder()
                    .r#type(integration_type(&m.integration))
                    .http_method("POST")
                    .uri(m.integration.uri("us-east-1", "aws"));
                if let Integration::VpcLink { connection_id, .. } = &m.integration {
                    out = out
                        .connection_type(ConnectionType::VpcLink)
                        .connection_id(connection_id)
                        .tls_config(
                            TlsConfig::builder()
                                .insecure_skip_verification(true)
                                .build(),
                        );
                }
                out.build()
            }),
            mock!(Client::get_stage).then_output(|| stage("dep-1")),
            mock!(Client::get_deployment)
                .match_requests(|r| r.deployment_id() == Some("dep-1"))
                .then_output(move || {
                    let description = if deployed == "current" {
                        api_definition::deployment_description(&fp)
                    } else {
                        api_definition::deployment_description(deployed)
                    };
                    GetDeploymentOutput::builder()
                        .description(description)
                        .build()
                }),
        ]
    }

    fn stage(deployment: &str) -> GetStageOutput {
        GetStageOutput::builder()
            .deployment_id(deployment)
            .stage_name(STAGE)
            .tracing_enabled(true)
            .access_log_settings(
                AccessLogSettings::builder()
                    .destination_arn(LOGS)
                    .format(ACCESS_LOG_FORMAT)
                    .build(),
            )
            .method_settings(
                "*/*",
                MethodSetting::builder()
                    .metrics_enabled(true)
                    .throttling_burst_limit(THROTTLE_BURST)
                    .throttling_rate_limit(THROTTLE_RATE)
                    .data_trace_enabled(false)
                    .build(),
            )
            .set_tags(Some(testing::our_tags(STEP).into_iter().collect()))
            .build()
    }

    fn permissions() -> Rule {
        mock!(aws_sdk_lambda::Client::get_policy).then_compute_output(|r| {
            let f = if r.function_name() == Some("payops-pr1-payment-validation") {
                Function::Validation
            } else {
                Function::Fraud
            };
            let path = INVOKED.iter().find(|(g, _)| *g == f).unwrap().1;
            GetPolicyOutput::builder()
                .policy(
                    json!({"Statement": [{
                        "Sid": statement_id(f),
                        "Effect": "Allow",
                        "Principal": {"Service": APIGATEWAY_PRINCIPAL},
                        "Action": "lambda:InvokeFunction",
                        "Condition": {"ArnLike": {"AWS:SourceArn":
                            format!("arn:aws:execute-api:us-east-1:123456789012:api-1/*/POST{path}")}}
                    }]})
                    .to_string(),
                )
                .build()
        })
    }

    fn context(api: &[&Rule], lambda: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.apigateway = mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, api);
        clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, lambda);
        testing::context(clients)
    }

    #[tokio::test]
    async fn a_deployed_api_in_sync_is_adopted_without_mutating_calls() {
        let rules = in_sync("current");
        let mut api: Vec<&Rule> = rules.iter().collect();
        let (listing, acct) = (apis(testing::our_tags(STEP)), account());
        api.extend([&listing, &acct]);
        let perms = permissions();
        let cx = context(&api, &[&perms]);
        let applied = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
        assert_eq!(applied.record.outputs["RestApiId"], "api-1");
        assert_eq!(
            applied.record.outputs["ApiEndpoint"],
            "https://api-1.execute-api.us-east-1.amazonaws.com/v1"
        );
    }

    #[tokio::test]
    async fn a_changed_definition_is_redeployed_and_nothing_else_moves() {
        let rules = in_sync("0123456789abcdef");
        let deploy = mock!(Client::create_deployment)
            .match_requests(|r| {
                r.description()
                    == Some(
                        api_definition::deployment_description(&definition().fingerprint())
                            .as_str(),
                    )
            })
            .then_output(|| CreateDeploymentOutput::builder().id("dep-2").build());
        let point = mock!(Client::update_stage)
            .match_requests(|r| {
                r.patch_operations().len() == 1
                    && r.patch_operations()[0].path() == Some("/deploymentId")
                    && r.patch_operations()[0].value() == Some("dep-2")
            })
            .then_output(|| UpdateStageOutput::builder().build());
        let mut api: Vec<&Rule> = rules.iter().collect();
        let (listing, acct) = (apis(testing::our_tags(STEP)), account());
        api.extend([&listing, &acct, &deploy, &point]);
        let perms = permissions();
        let cx = context(&api, &[&perms]);
        let applied = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(applied.notes.len(), 1, "{:?}", applied.notes);
        assert_eq!((deploy.num_calls(), point.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_stage_created_again_after_a_lost_answer_adopts_what_it_made() {
        // No stage at the first looks (the comparison, then the deploy);
        // then the stage the lost first CreateStage made. Its retry meets
        // it: API Gateway answers `ConflictException` ("Stage already
        // exists").
        let stage_seq = mock!(Client::get_stage)
            .sequence()
            .error(|| {
                aws_sdk_apigateway::operation::get_stage::GetStageError::generic(
                    testing::error_meta("NotFoundException"),
                )
            })
            .times(2)
            .output(|| stage("dep-1"))
            .repeatedly()
            .build();
        let deploy = mock!(Client::create_deployment)
            .then_output(|| CreateDeploymentOutput::builder().id("dep-2").build());
        let create_stage = mock!(Client::create_stage).then_error(|| {
            aws_sdk_apigateway::operation::create_stage::CreateStageError::generic(
                testing::error_meta("ConflictException"),
            )
        });
        let rules = in_sync("current");
        let (listing, acct) = (apis(testing::our_tags(STEP)), account());
        // Before the in-sync rules, whose GetStage finds the stage at once.
        let mut api: Vec<&Rule> = vec![&stage_seq, &deploy, &create_stage, &listing, &acct];
        api.extend(rules.iter());
        let perms = permissions();
        let cx = context(&api, &[&perms]);
        let applied = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.record.outputs["RestApiId"], "api-1");
        assert_eq!(create_stage.num_calls(), 1);
        assert_eq!(stage_seq.num_calls(), 3, "looked again after the conflict");
    }

    #[tokio::test]
    async fn a_second_validator_a_retried_create_made_is_deleted_and_the_methods_stay() {
        // CreateRequestValidator has no token and names are not unique: a
        // retry whose first answer was lost leaves two. The methods point at
        // the lowest id, which every run keeps; the other goes.
        let two =
            mock!(Client::get_request_validators).then_output(|| validators(&["val-2", "val-1"]));
        let delete = mock!(Client::delete_request_validator)
            .match_requests(|r| r.request_validator_id() == Some("val-2"))
            .then_output(|| {
                aws_sdk_apigateway::operation::delete_request_validator::DeleteRequestValidatorOutput::builder().build()
            });
        let rules = in_sync("current");
        let (listing, acct) = (apis(testing::our_tags(STEP)), account());
        let mut api: Vec<&Rule> = vec![&two, &delete, &listing, &acct];
        api.extend(rules.iter());
        let perms = permissions();
        let cx = context(&api, &[&perms]);
        let applied = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated, "{:?}", applied.notes);
        assert_eq!(
            applied.notes,
            vec![format!(
                "delete 1 duplicate request validator(s) {VALIDATOR}"
            )]
        );
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_api_with_our_name_but_not_our_tags_is_refused() {
        let listing = apis(TagMap::new());
        let cx = context(&[&listing], &[]);
        let err = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert!(testing::destroy(&cx, STEP, RestApi).await.is_err());
    }

    #[tokio::test]
    async fn creates_the_api_its_validated_methods_integrations_permissions_and_stage() {
        let none =
            mock!(Client::get_rest_apis).then_output(|| GetRestApisOutput::builder().build());
        let create = mock!(Client::create_rest_api)
            .match_requests(|r| {
                r.name() == Some("payops-pr1-api")
                    && r.endpoint_configuration().map(|e| e.types())
                        == Some(&[EndpointType::Regional][..])
                    && r.tags().is_some_and(|t| t["payops:step"] == STEP)
            })
            .then_output(|| CreateRestApiOutput::builder().id("api-1").build());
        let root = mock!(Client::get_resources).then_output(|| {
            GetResourcesOutput::builder()
                .items(ApiResource::builder().id("root").path("/").build())
                .build()
        });
        let no_models =
            mock!(Client::get_models).then_output(|| GetModelsOutput::builder().build());
        // None at the comparison and before the create, then the one it made.
        let no_validators = mock!(Client::get_request_validators)
            .sequence()
            .output(|| GetRequestValidatorsOutput::builder().build())
            .times(2)
            .output(|| validators(&["val-1"]))
            .build();
        let model = mock!(Client::create_model)
            .match_requests(|r| r.content_type() == Some(JSON) && r.schema().is_some())
            .then_output(|| CreateModelOutput::builder().build());
        let validator = mock!(Client::create_request_validator)
            .match_requests(|r| {
                r.validate_request_body() == Some(true)
                    && r.validate_request_parameters() == Some(true)
            })
            .then_output(|| CreateRequestValidatorOutput::builder().id("val-1").build());
        let resource = mock!(Client::create_resource).then_compute_output(|r| {
            let parent = r.parent_id().unwrap();
            let path = if parent == "root" {
                format!("/{}", r.path_part().unwrap())
            } else {
                format!("/payments/{}", r.path_part().unwrap())
            };
            CreateResourceOutput::builder().id(rid(&path)).build()
        });
        let no_method = mock!(Client::get_method)
            .then_error(|| GetMethodError::generic(testing::error_meta("NotFoundException")));
        let no_integration = mock!(Client::get_integration)
            .then_error(|| GetIntegrationError::generic(testing::error_meta("NotFoundException")));
        let methods = Arc::new(Mutex::new(Vec::new()));
        let seen = methods.clone();
        let put_method = mock!(Client::put_method)
            .match_requests(move |r| {
                seen.lock()
                    .unwrap()
                    .push(r.resource_id().unwrap().to_owned());
                r.request_validator_id() == Some("val-1")
                    && r.authorization_type() == Some("AWS_IAM")
                    && r.api_key_required() == Some(false)
                    && r.request_parameters().is_some_and(|p| p[REQUIRED_HEADER])
                    && r.request_models().is_some_and(|m| m.contains_key(JSON))
            })
            .then_output(|| PutMethodOutput::builder().build());
        let vpc_link_integration = mock!(Client::put_integration)
            .match_requests(|r| r.resource_id() == Some("r-payments"))
            .then_compute_output(|r| {
                assert_eq!(r.r#type(), Some(&IntegrationType::HttpProxy));
                assert_eq!(r.connection_type(), Some(&ConnectionType::VpcLink));
                assert_eq!(r.connection_id(), Some("vl-1"));
                assert_eq!(
                    r.uri(),
                    Some(format!("https://{NLB_DNS}/payments").as_str())
                );
                assert_eq!(
                    r.tls_config().map(|t| t.insecure_skip_verification()),
                    Some(true)
                );
                PutIntegrationOutput::builder().build()
            });
        let lambda_integration = mock!(Client::put_integration).then_compute_output(|r| {
            assert_eq!(r.r#type(), Some(&IntegrationType::AwsProxy));
            assert_eq!(r.integration_http_method(), Some("POST"));
            assert!(r.uri().unwrap().ends_with("/invocations"), "{:?}", r.uri());
            PutIntegrationOutput::builder().build()
        });
        let no_stage = mock!(Client::get_stage)
            .then_error(|| GetStageError::generic(testing::error_meta("NotFoundException")));
        let deploy = mock!(Client::create_deployment)
            .then_output(|| CreateDeploymentOutput::builder().id("dep-1").build());
        let create_stage = mock!(Client::create_stage)
            .match_requests(|r| {
                r.stage_name() == Some(STAGE)
                    && r.deployment_id() == Some("dep-1")
                    && r.tracing_enabled() == Some(true)
                    && r.tags().is_some_and(|t| t["payops:env"] == "pr1")
            })
            .then_output(|| CreateStageOutput::builder().build());
        let settings = mock!(Client::update_stage)
            .match_requests(|r| {
                let value = |path: &str| {
                    r.patch_operations()
                        .iter()
                        .find(|p| p.path() == Some(path))
                        .and_then(|p| p.value())
                };
                value("/accessLogSettings/destinationArn") == Some(LOGS)
                    && value("/*/*/metrics/enabled") == Some("true")
                    && value("/*/*/throttling/burstLimit") == Some("200")
                    && value("/tracingEnabled") == Some("true")
            })
            .then_output(|| UpdateStageOutput::builder().build());
        let no_policy = mock!(aws_sdk_lambda::Client::get_policy).then_error(|| {
            GetPolicyError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let no_statement = mock!(aws_sdk_lambda::Client::remove_permission).then_error(|| {
            RemovePermissionError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let allow = mock!(aws_sdk_lambda::Client::add_permission)
            .match_requests(|r| {
                r.principal() == Some(APIGATEWAY_PRINCIPAL)
                    && r.source_arn().is_some_and(|a| {
                        a == "arn:aws:execute-api:us-east-1:123456789012:api-1/*/POST/payments/validate"
                            || a == "arn:aws:execute-api:us-east-1:123456789012:api-1/*/POST/payments/fraud-check"
                    })
            })
            .then_output(|| AddPermissionOutput::builder().build());
        let acct = account();
        let cx = context(
            &[
                &none,
                &create,
                &acct,
                &root,
                &no_models,
                &no_validators,
                &model,
                &validator,
                &resource,
                &no_method,
                &no_integration,
                &put_method,
                &vpc_link_integration,
                &lambda_integration,
                &no_stage,
                &deploy,
                &create_stage,
                &settings,
            ],
            &[&no_policy, &no_statement, &allow],
        );
        let applied = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(model.num_calls(), 2);
        assert_eq!(validator.num_calls(), 1);
        assert_eq!(resource.num_calls(), 3);
        assert_eq!(put_method.num_calls(), 3);
        assert_eq!(
            vpc_link_integration.num_calls() + lambda_integration.num_calls(),
            3
        );
        assert_eq!(allow.num_calls(), 2);
        assert_eq!(
            (
                deploy.num_calls(),
                create_stage.num_calls(),
                settings.num_calls()
            ),
            (1, 1, 1)
        );
        // Each method on its own resource, children created under their parent.
        let mut on = methods.lock().unwrap().clone();
        on.sort();
        assert_eq!(
            on,
            [
                "r-payments",
                "r-payments-fraud-check",
                "r-payments-validate"
            ]
        );
    }

    #[tokio::test]
    async fn data_tracing_is_reported_as_drift() {
        let mut s = stage("dep-1");
        s.method_settings = Some(
            [(
                "*/*".to_owned(),
                MethodSetting::builder()
                    .metrics_enabled(true)
                    .throttling_burst_limit(THROTTLE_BURST)
                    .throttling_rate_limit(THROTTLE_RATE)
                    .data_trace_enabled(true)
                    .build(),
            )]
            .into(),
        );
        let patches = RestApi::stage_patches(Some(&s), LOGS);
        assert_eq!(
            patches,
            [("/*/*/logging/dataTrace".to_owned(), "false".to_owned())]
        );
        assert_eq!(RestApi::stage_patches(Some(&stage("dep-1")), LOGS), []);
        assert_eq!(RestApi::stage_patches(None, LOGS).len(), 6);
    }

    #[tokio::test]
    async fn an_unexpected_method_or_resource_is_reported() {
        let def = definition();
        let mut actual = Actual::default();
        for path in def.paths() {
            actual.resources.insert(path.clone(), rid(&path));
        }
        actual.resources.insert("/admin".into(), "r-admin".into());
        actual.validator = Some(("val-1".into(), true, true));
        actual.models = def
            .models
            .iter()
            .map(|m| (m.name.to_owned(), m.schema.clone()))
            .collect();
        for m in &def.methods {
            actual
                .methods
                .insert((m.path.to_owned(), "POST".into()), (true, true));
        }
        actual
            .extra_methods
            .push(("/payments".into(), "DELETE".into()));
        let changes = RestApi::compare(&def, &actual);
        assert_eq!(
            changes,
            [
                "delete unexpected resource /admin",
                "delete unexpected method DELETE /payments"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delete_waits_out_api_gateways_throttle_and_removes_the_permissions() {
        let delete = mock!(Client::delete_rest_api)
            .sequence()
            .error(|| DeleteRestApiError::generic(testing::error_meta("TooManyRequestsException")))
            .output(|| DeleteRestApiOutput::builder().build())
            .build();
        let remove = mock!(aws_sdk_lambda::Client::remove_permission)
            .match_requests(|r| {
                r.statement_id()
                    .is_some_and(|s| s.starts_with("payops-api-"))
            })
            .then_output(|| RemovePermissionOutput::builder().build());
        let listing = apis(testing::our_tags(STEP));
        let cx = context(&[&listing, &delete], &[&remove]);
        let removed = testing::destroy(&cx, STEP, RestApi).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!((delete.num_calls(), remove.num_calls()), (2, 2));
        let none =
            mock!(Client::get_rest_apis).then_output(|| GetRestApisOutput::builder().build());
        let cx = context(&[&none], &[]);
        assert_eq!(
            testing::destroy(&cx, STEP, RestApi).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }

    /// CreateRestApi has no client token: a create whose answer was lost
    /// and that the SDK retried leaves a second API of the same name. The
    /// deployed one is kept; the extra goes alone, the Lambda permissions
    /// (which the kept API's calls need) stay.
    #[tokio::test]
    async fn an_extra_api_from_a_retried_create_goes_alone_and_the_deployed_one_stays() {
        let two = mock!(Client::get_rest_apis).then_output(|| {
            let api = |id: &str| {
                ApiRestApi::builder()
                    .id(id)
                    .name("payops-pr1-api")
                    .set_tags(Some(testing::our_tags(STEP).into_iter().collect()))
                    .build()
            };
            GetRestApisOutput::builder()
                .items(api("api-extra"))
                .items(api("api-deployed"))
                .build()
        });
        let deployed = mock!(Client::get_stage)
            .match_requests(|r| r.rest_api_id() == Some("api-deployed"))
            .then_output(|| GetStageOutput::builder().stage_name(STAGE).build());
        let undeployed = mock!(Client::get_stage)
            .then_error(|| GetStageError::generic(testing::error_meta("NotFoundException")));
        let delete = mock!(Client::delete_rest_api)
            .match_requests(|r| r.rest_api_id() == Some("api-extra"))
            .then_output(|| DeleteRestApiOutput::builder().build());
        let cx = context(&[&two, &deployed, &undeployed, &delete], &[]);
        let events = testing::Events::default();
        let id = StepId::from(STEP);
        let step = testing::step_cx(&id, Default::default(), &events);
        let mut found = RestApi.find(&cx, &step).await.unwrap();
        let keep = RestApi.keep_of_duplicates(&found).unwrap();
        assert_eq!(found[keep].id, "api-deployed");
        let extra = found.remove(1 - keep);
        RestApi.delete_duplicate(&cx, &step, extra).await.unwrap();
        // A RemovePermission would find no rule in the Lambda mock and fail.
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn observe_names_what_differs() {
        let rules = in_sync("current");
        let mut api: Vec<&Rule> = rules.iter().collect();
        let no_role =
            mock!(Client::get_account).then_output(|| GetAccountOutput::builder().build());
        let listing = apis(testing::our_tags(STEP));
        api.extend([&listing, &no_role]);
        let perms = permissions();
        let cx = context(&api, &[&perms]);
        let Observation::Present { drift, .. } = testing::observe(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap()
        else {
            panic!("present");
        };
        assert_eq!(
            drift,
            ["set API Gateway's account-wide CloudWatch Logs role (none is set)"]
        );
    }

    /// AWS's echo of a resource policy: the JSON with its quotes escaped.
    fn echoed(policy: &Value) -> String {
        policy.to_string().replace('"', "\\\"")
    }

    #[tokio::test]
    async fn open_methods_are_re_created_signed_and_redeployed() {
        // Every env before authorization was configurable: NONE, no key.
        let open = Authorization {
            kind: "NONE",
            api_key_required: false,
        };
        let rules = in_sync_with("current", &definition(), open);
        let mut api: Vec<&Rule> = rules.iter().collect();
        let (listing, acct) = (apis(testing::our_tags(STEP)), account());
        api.extend([&listing, &acct]);
        let perms = permissions();
        let cx = context(&api, &[&perms]);
        let Observation::Present { drift, .. } = testing::observe(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap()
        else {
            panic!("present");
        };
        assert_eq!(drift.len(), 1, "{drift:?}");
        for path in ["/payments", "/payments/validate", "/payments/fraud-check"] {
            assert!(
                drift[0].contains(&format!("re-create method POST {path} (authorization")),
                "{drift:?}"
            );
        }
    }

    #[tokio::test]
    async fn api_key_mode_is_held_as_wanted_and_iam_mode_is_not() {
        let keys: crate::spec::ApiAccess = "api-key".parse().unwrap();
        let def = definition_for(&keys);
        let rules = in_sync_with("current", &def, def.authorization);
        let mut api: Vec<&Rule> = rules.iter().collect();
        let (listing, acct) = (apis(testing::our_tags(STEP)), account());
        api.extend([&listing, &acct]);
        let perms = permissions();
        let mut cx = context(&api, &[&perms]);
        cx.spec.api = keys;
        let applied = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
        // The same API, wanted with IAM: its methods are not as wanted.
        cx.spec.api = crate::spec::ApiAccess::default();
        let Observation::Present { drift, .. } = testing::observe(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap()
        else {
            panic!("present");
        };
        assert!(
            drift.iter().any(|d| d.contains("re-create method")),
            "{drift:?}"
        );
    }

    #[tokio::test]
    async fn listed_callers_set_the_resource_policy_and_an_escaped_echo_of_it_is_no_drift() {
        let access: crate::spec::ApiAccess = "iam,10.0.0.0/8".parse().unwrap();
        let def = definition_for(&access);
        let wanted = def.policy.clone().expect("a policy");
        let rules = in_sync_with("current", &def, def.authorization);
        let set_policy = mock!(Client::update_rest_api)
            .match_requests(move |r| {
                r.patch_operations().len() == 1
                    && r.patch_operations()[0].path() == Some("/policy")
                    && r.patch_operations()[0]
                        .value()
                        .and_then(|v| serde_json::from_str::<Value>(v).ok())
                        == Some(wanted.clone())
            })
            .then_output(|| {
                aws_sdk_apigateway::operation::update_rest_api::UpdateRestApiOutput::builder()
                    .build()
            });
        let (listing, acct) = (apis(testing::our_tags(STEP)), account());
        let mut api: Vec<&Rule> = rules.iter().collect();
        api.extend([&listing, &acct, &set_policy]);
        let perms = permissions();
        let mut cx = context(&api, &[&perms]);
        cx.spec.api = access.clone();
        let applied = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap();
        assert_eq!(set_policy.num_calls(), 1);
        assert_eq!(
            applied.notes,
            ["set the resource policy (only --api-allow callers)"]
        );

        // API Gateway echoes it escaped: read as the same document.
        let held = apis_with_policy(
            testing::our_tags(STEP),
            Some(echoed(def.policy.as_ref().unwrap())),
        );
        let mut api: Vec<&Rule> = rules.iter().collect();
        api.extend([&held, &acct]);
        let mut cx = context(&api, &[&perms]);
        cx.spec.api = access;
        let applied = testing::ensure(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);

        // No callers listed any more: the policy goes.
        let cx = context(&api, &[&perms]);
        let Observation::Present { drift, .. } = testing::observe(&cx, STEP, RestApi, &inputs())
            .await
            .unwrap()
        else {
            panic!("present");
        };
        assert!(
            drift
                .iter()
                .any(|d| d.contains("remove the resource policy")),
            "{drift:?}"
        );
    }
}
