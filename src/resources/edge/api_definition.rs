//! What the payments REST API looks like: its request models (JSON Schema),
//! its validator, and its three methods with their integrations. Computed from
//! the env's outputs, hashed (the hash names the deployment, so the API is
//! redeployed only when this changes), and compared field by field with what
//! API Gateway holds.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One validator for every method: bodies and parameters both.
pub const VALIDATOR: &str = "payops-body-and-parameters";
pub use crate::resources::model::API_STAGE as STAGE;
use crate::spec::{ApiAccess, ApiAuth};
/// API Gateway gives up on an integration after 29 s.
pub const INTEGRATION_TIMEOUT_MS: i32 = 29_000;
pub const JSON: &str = "application/json";
/// Every method requires the caller to say what it sends.
pub const REQUIRED_HEADER: &str = "method.request.header.Content-Type";

/// Requests per second the stage accepts (steady and burst) before API
/// Gateway answers 429, well below the account's regional limit.
pub const THROTTLE_RATE: f64 = 100.0;
pub const THROTTLE_BURST: i32 = 200;

/// Access log lines: who called what and how it went. No bodies, headers or
/// query strings, so no card data can end up in the logs.
pub const ACCESS_LOG_FORMAT: &str = concat!(
    r#"{"requestId":"$context.requestId","extendedRequestId":"$context.extendedRequestId","#,
    r#""ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","#,
    r#""httpMethod":"$context.httpMethod","resourcePath":"$context.resourcePath","#,
    r#""status":"$context.status","protocol":"$context.protocol","#,
    r#""responseLength":"$context.responseLength","#,
    r#""integrationLatency":"$context.integrationLatency","#,
    r#""integrationStatus":"$context.integrationStatus","#,
    r#""xrayTraceId":"$context.xrayTraceId","errorMessage":"$context.error.message"}"#
);

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    pub name: &'static str,
    pub schema: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Integration {
    /// AWS_PROXY to a function (by its unqualified ARN).
    Lambda { function_arn: String },
    /// HTTP_PROXY through the VPC link to the NLB (and on to the ALB).
    VpcLink {
        connection_id: String,
        uri: String,
        skip_tls_verification: bool,
    },
}

impl Integration {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Lambda { .. } => "AWS_PROXY",
            Self::VpcLink { .. } => "HTTP_PROXY",
        }
    }

    /// The integration URI as API Gateway stores it.
    pub fn uri(&self, region: &str, partition: &str) -> String {
        match self {
            Self::Lambda { function_arn } => format!(
                "arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
            ),
            Self::VpcLink { uri, .. } => uri.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Method {
    /// `/payments/validate`
    pub path: &'static str,
    pub http_method: &'static str,
    pub model: &'static str,
    pub integration: Integration,
}

/// How every method authorizes its callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Authorization {
    /// `AWS_IAM` or `NONE`, as API Gateway names them.
    pub kind: &'static str,
    pub api_key_required: bool,
}

impl Authorization {
    pub fn of(auth: ApiAuth) -> Self {
        match auth {
            ApiAuth::Iam => Self {
                kind: "AWS_IAM",
                api_key_required: false,
            },
            ApiAuth::ApiKey => Self {
                kind: "NONE",
                api_key_required: true,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Definition {
    pub models: Vec<Model>,
    pub methods: Vec<Method>,
    pub authorization: Authorization,
    /// The API's resource policy; None when every caller that authenticates
    /// may call. Part of the definition because API Gateway applies a changed
    /// policy only with the next deployment.
    pub policy: Option<Value>,
}

/// What the env's integrations point at.
pub struct Targets {
    pub validation_function: String,
    pub fraud_function: String,
    pub vpc_link: String,
    /// Where API Gateway sends POST /payments through the link.
    pub payments_uri: String,
    /// True for payops' self-signed ALB certificate (nothing to verify it against).
    pub skip_tls_verification: bool,
    pub access: ApiAccess,
    /// `arn:aws:execute-api:<region>:<account>:<api id>`: what the policy
    /// governs (written out in full: API Gateway stores the `execute-api:/*`
    /// shorthand expanded, which would read back as a difference).
    pub execute_arn: String,
    /// `arn:aws:iam::<account>:root`: the env's own account.
    pub account_root: String,
}

const INVOKE: &str = "execute-api:Invoke";

/// The resource policy for `--api-allow`: with IAM auth, the listed accounts
/// (and the env's own) may call; with API keys, anyone holding a key. Calls
/// from outside the listed networks and VPC endpoints are denied (one
/// statement, so a call matching either is let through).
pub fn resource_policy(t: &Targets) -> Option<Value> {
    let access = &t.access;
    if access.allow.is_empty() {
        return None;
    }
    let resource = format!("{}/*", t.execute_arn);
    let principal = match access.auth {
        ApiAuth::Iam => {
            let partition = t.account_root.split(':').nth(1).unwrap_or("aws");
            let mut roots: Vec<String> = std::iter::once(t.account_root.clone())
                .chain(
                    access
                        .accounts()
                        .iter()
                        .map(|a| format!("arn:{partition}:iam::{a}:root")),
                )
                .collect();
            roots.sort();
            roots.dedup();
            json!({ "AWS": roots })
        }
        ApiAuth::ApiKey => json!("*"),
    };
    let mut statements = vec![json!({
        "Sid": "PayopsAllowCallers",
        "Effect": "Allow",
        "Principal": principal,
        "Action": INVOKE,
        "Resource": resource,
    })];
    let networks = access.networks();
    let endpoints = access.vpc_endpoints();
    if !networks.is_empty() || !endpoints.is_empty() {
        let mut condition = serde_json::Map::new();
        if !networks.is_empty() {
            condition.insert("NotIpAddress".into(), json!({ "aws:SourceIp": networks }));
        }
        if !endpoints.is_empty() {
            condition.insert(
                "StringNotEquals".into(),
                json!({ "aws:SourceVpce": endpoints }),
            );
        }
        statements.push(json!({
            "Sid": "PayopsDenyOtherNetworks",
            "Effect": "Deny",
            "Principal": "*",
            "Action": INVOKE,
            "Resource": resource,
            "Condition": condition,
        }));
    }
    Some(json!({ "Version": "2012-10-17", "Statement": statements }))
}

fn payment_schema() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "Payment",
        "type": "object",
        "required": ["transactionId", "customerId", "merchantId", "amount", "currency", "cardNumber"],
        "additionalProperties": false,
        "properties": {
            "transactionId": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" },
            "customerId": { "type": "string", "minLength": 1, "maxLength": 128 },
            "merchantId": { "type": "string", "minLength": 1, "maxLength": 128 },
            "amount": { "type": "number", "minimum": 0, "exclusiveMinimum": true },
            "currency": { "type": "string", "pattern": "^[A-Z]{3}$" },
            "cardNumber": { "type": "string", "pattern": "^[0-9 -]{12,23}$" },
            "expiryMonth": { "type": "integer", "minimum": 1, "maximum": 12 },
            "expiryYear": { "type": "integer", "minimum": 2000, "maximum": 2100 },
            "description": { "type": "string", "maxLength": 256 }
        }
    })
}

fn fraud_check_schema() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "FraudCheck",
        "type": "object",
        "required": ["transactionId", "customerId", "amount", "currency"],
        "additionalProperties": false,
        "properties": {
            "transactionId": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" },
            "customerId": { "type": "string", "minLength": 1, "maxLength": 128 },
            "merchantId": { "type": "string", "minLength": 1, "maxLength": 128 },
            "amount": { "type": "number", "minimum": 0, "exclusiveMinimum": true },
            "currency": { "type": "string", "pattern": "^[A-Z]{3}$" },
            "country": { "type": "string", "pattern": "^[A-Z]{2}$" }
        }
    })
}

pub fn definition(t: &Targets) -> Definition {
    Definition {
        authorization: Authorization::of(t.access.auth),
        policy: resource_policy(t),
        models: vec![
            Model {
                name: "Payment",
                schema: payment_schema(),
            },
            Model {
                name: "FraudCheck",
                schema: fraud_check_schema(),
            },
        ],
        methods: vec![
            Method {
                path: "/payments",
                http_method: "POST",
                model: "Payment",
                integration: Integration::VpcLink {
                    connection_id: t.vpc_link.clone(),
                    uri: t.payments_uri.clone(),
                    skip_tls_verification: t.skip_tls_verification,
                },
            },
            Method {
                path: "/payments/validate",
                http_method: "POST",
                model: "Payment",
                integration: Integration::Lambda {
                    function_arn: t.validation_function.clone(),
                },
            },
            Method {
                path: "/payments/fraud-check",
                http_method: "POST",
                model: "FraudCheck",
                integration: Integration::Lambda {
                    function_arn: t.fraud_function.clone(),
                },
            },
        ],
    }
}

impl Definition {
    /// A short hash of the whole definition (and the validator and access-log
    /// settings it is deployed with): the deployment's name.
    pub fn fingerprint(&self) -> String {
        let doc = json!({
            "definition": self,
            "validator": VALIDATOR,
            "requiredHeader": REQUIRED_HEADER,
            "timeout": INTEGRATION_TIMEOUT_MS,
        });
        let digest = Sha256::digest(canonical(&doc).as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Every resource path the methods need, parents first.
    pub fn paths(&self) -> Vec<String> {
        let mut paths = std::collections::BTreeSet::new();
        for m in &self.methods {
            let mut path = String::new();
            for part in m.path.split('/').filter(|p| !p.is_empty()) {
                path.push('/');
                path.push_str(part);
                paths.insert(path.clone());
            }
        }
        let mut out: Vec<String> = paths.into_iter().collect();
        out.sort_by_key(|p| (p.matches('/').count(), p.clone()));
        out
    }
}

/// JSON with object keys sorted, so equal documents hash equally.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// `deployment description` for a definition hash.
pub fn deployment_description(fingerprint: &str) -> String {
    format!("payops definition {fingerprint}")
}

/// `https://<host>/payments` for a certificate's domain: a wildcard
/// certificate covers `payments.<domain>`.
pub fn payments_uri(host: &str) -> String {
    let host = host
        .strip_prefix("*.")
        .map_or_else(|| host.to_owned(), |rest| format!("payments.{rest}"));
    format!("https://{host}/payments")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        Targets {
            validation_function: "arn:aws:lambda:us-east-1:1:function:v".into(),
            fraud_function: "arn:aws:lambda:us-east-1:1:function:f".into(),
            vpc_link: "vl-1".into(),
            payments_uri: "https://nlb.example/payments".into(),
            skip_tls_verification: true,
            access: ApiAccess::default(),
            execute_arn: "arn:aws:execute-api:us-east-1:123456789012:abc123".into(),
            account_root: "arn:aws:iam::123456789012:root".into(),
        }
    }

    fn with_access(access: &str) -> Targets {
        Targets {
            access: access.parse().unwrap(),
            ..targets()
        }
    }

    #[test]
    fn every_route_needs_a_signature_by_default_and_a_key_in_api_key_mode() {
        let iam = definition(&targets());
        assert_eq!(iam.authorization.kind, "AWS_IAM");
        assert!(!iam.authorization.api_key_required);
        assert_eq!(iam.policy, None, "no callers listed: no resource policy");
        let keys = definition(&with_access("api-key"));
        assert_eq!(keys.authorization.kind, "NONE");
        assert!(keys.authorization.api_key_required);
        assert_ne!(
            iam.fingerprint(),
            keys.fingerprint(),
            "a changed mode redeploys"
        );
    }

    #[test]
    fn listed_accounts_and_networks_make_a_policy_that_refuses_the_rest() {
        let def = definition(&with_access(
            "iam,111122223333,10.0.0.0/8,vpce-0123456789abcdef0",
        ));
        let policy = def.policy.expect("a policy");
        let allow = &policy["Statement"][0];
        assert_eq!(allow["Effect"], "Allow");
        assert_eq!(
            allow["Principal"]["AWS"],
            json!([
                "arn:aws:iam::111122223333:root",
                "arn:aws:iam::123456789012:root"
            ])
        );
        assert_eq!(
            allow["Resource"],
            "arn:aws:execute-api:us-east-1:123456789012:abc123/*"
        );
        let deny = &policy["Statement"][1];
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(
            deny["Condition"]["NotIpAddress"]["aws:SourceIp"],
            json!(["10.0.0.0/8"])
        );
        assert_eq!(
            deny["Condition"]["StringNotEquals"]["aws:SourceVpce"],
            json!(["vpce-0123456789abcdef0"])
        );
        // Accounts only: nothing to deny by network.
        let accounts = resource_policy(&with_access("iam,111122223333")).unwrap();
        assert_eq!(accounts["Statement"].as_array().unwrap().len(), 1);
        // API keys: anyone with a key, from the listed networks.
        let keys = resource_policy(&with_access("api-key,203.0.113.0/24")).unwrap();
        assert_eq!(keys["Statement"][0]["Principal"], "*");
    }

    #[test]
    fn the_fingerprint_changes_with_the_definition_only() {
        let a = definition(&targets());
        assert_eq!(a.fingerprint(), definition(&targets()).fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        let mut t = targets();
        t.vpc_link = "vl-2".into();
        assert_ne!(a.fingerprint(), definition(&t).fingerprint());
        let mut t = targets();
        t.skip_tls_verification = false;
        assert_ne!(a.fingerprint(), definition(&t).fingerprint());
    }

    #[test]
    fn resources_are_created_parents_first() {
        assert_eq!(
            definition(&targets()).paths(),
            ["/payments", "/payments/fraud-check", "/payments/validate"]
        );
    }

    #[test]
    fn lambda_integrations_use_the_invocation_uri() {
        let i = Integration::Lambda {
            function_arn: "arn:aws:lambda:eu-west-1:1:function:v".into(),
        };
        assert_eq!(
            i.uri("eu-west-1", "aws"),
            "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:1:function:v/invocations"
        );
        assert_eq!(i.type_name(), "AWS_PROXY");
    }

    #[test]
    fn payments_uri_follows_the_certificate_name() {
        assert_eq!(
            payments_uri("api.example.com"),
            "https://api.example.com/payments"
        );
        assert_eq!(
            payments_uri("*.example.com"),
            "https://payments.example.com/payments"
        );
    }

    #[test]
    fn access_logs_hold_no_request_content() {
        let format: Value = serde_json::from_str(ACCESS_LOG_FORMAT).unwrap();
        let fields = format.as_object().unwrap();
        assert!(fields.contains_key("requestId") && fields.contains_key("status"));
        for v in fields.values() {
            let v = v.as_str().unwrap();
            assert!(
                !v.contains("body") && !v.contains("input") && !v.contains("header"),
                "{v}"
            );
        }
    }
}
