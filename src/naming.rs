//! Env names and every name derived from them.
//!
//! AWS limits are checked once, on the env name, before any API call: if the
//! env name is valid, every derived name fits every limit (a unit test walks
//! them all at the maximum length). Nothing is ever truncated, so two envs can
//! never collide on a shortened name.

use std::fmt;

/// Longest env name. The tightest limit is 32 characters for load balancer
/// and target group names (`payops-<env>-green` needs 13 of them), and a few
/// more characters are kept for names later resources will derive.
pub const MAX_ENV_LEN: usize = 16;

/// The rule in one sentence, shown with every refusal.
pub const ENV_RULE: &str = "an env name is 1-16 characters of lowercase letters, digits and single \
     hyphens, starting with a letter and not ending with a hyphen (e.g. pr123, staging, perf-2)";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid env name {name:?}: {problem}; {ENV_RULE}")]
    Env { name: String, problem: String },
    #[error("invalid region {0:?}: expected a region code such as us-east-1 or eu-west-2")]
    Region(String),
}

impl EnvName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let fail = |problem: String| {
            Err(NameError::Env {
                name: name.to_owned(),
                problem,
            })
        };
        if name.is_empty() {
            return fail("it is empty".into());
        }
        if name.len() > MAX_ENV_LEN {
            return fail(format!(
                "it is {} characters long, at most {MAX_ENV_LEN} fit AWS's 32-character \
                 load balancer and target group names",
                name.chars().count()
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            let why = if c.is_ascii_uppercase() {
                "S3 bucket and RDS names are lowercase"
            } else {
                "S3 bucket and RDS names take only letters, digits and hyphens"
            };
            let hint = suggestion(name)
                .map(|s| format!(" (try {s:?})"))
                .unwrap_or_default();
            return fail(format!("{c:?} is not allowed: {why}{hint}"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return fail("it must start with a letter (RDS identifiers do)".into());
        }
        if name.ends_with('-') {
            return fail("it must not end with a hyphen".into());
        }
        // The account baseline's resources are named `payops-baseline-...`
        // (resources::baseline): no env may make the same names.
        if name == "baseline" || name.starts_with("baseline-") {
            return fail(
                "names starting with \"baseline\" are reserved for the account baseline \
                 (`payops baseline`)"
                    .into(),
            );
        }
        if name.contains("--") {
            return fail(
                "it must not contain two hyphens in a row (RDS identifiers cannot)".into(),
            );
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `--env-prefix` of `destroy-all`: which envs a sweep may reach.
///
/// A prefix matches only at a name boundary, because the letters `pr` of a
/// pull-request prefix are also the first letters of `prod`, `preprod` and
/// `prometheus`: a plain `starts_with` would let the nightly sweep remove
/// them. Env names are letters, then digits or hyphen-separated parts, so the
/// boundaries are: the end of the name, a hyphen after the prefix, a digit
/// after a prefix ending in a letter (`pr` → `pr123`), or anything after a
/// prefix that itself ends in a hyphen (`pr-` → `pr-7`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvPrefix(String);

/// The prefix rule in one sentence, shown with every refusal.
pub const PREFIX_RULE: &str = "an env prefix is 1-16 characters of lowercase letters, digits \
     and single hyphens, starting with a letter (e.g. pr, pr-, feat)";

impl EnvPrefix {
    /// Checks a prefix against the env-name alphabet, so a typo (`PR`,
    /// `pr_`) is refused instead of silently matching nothing. A trailing
    /// hyphen is allowed (`pr-` is a prefix, not a name). An empty prefix is
    /// refused: `--env-prefix "$UNSET"` in a CI job must not turn into a sweep
    /// of every env (leaving the flag out says that, on purpose).
    pub fn parse(prefix: &str) -> Result<Self, String> {
        let problem = if prefix.is_empty() {
            Some("it is empty (leave out --env-prefix to mean every env)".to_owned())
        } else if prefix.len() > MAX_ENV_LEN {
            Some(format!(
                "it is longer than an env name can be ({MAX_ENV_LEN} characters)"
            ))
        } else if let Some(c) = prefix
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            Some(format!("{c:?} is not allowed"))
        } else if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
            Some("it must start with a letter, as every env name does".to_owned())
        } else if prefix.contains("--") {
            Some("it must not contain two hyphens in a row, as no env name does".to_owned())
        } else {
            None
        };
        match problem {
            Some(p) => Err(format!("invalid env prefix {prefix:?}: {p}; {PREFIX_RULE}")),
            None => Ok(Self(prefix.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether env `name` is within this prefix; see [`prefix_matches`].
    pub fn matches(&self, name: &str) -> bool {
        prefix_matches(&self.0, name)
    }
}

/// Whether env `name` lies within `prefix` at a name boundary: `name` is
/// `prefix`, or continues it with a hyphen, or with a digit after a prefix
/// ending in a letter, or with anything after a prefix ending in a hyphen.
/// The empty prefix matches every env.
pub fn prefix_matches(prefix: &str, name: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let Some(next) = rest.chars().next() else {
        return true; // the whole name
    };
    next == '-'
        || prefix.ends_with('-')
        || (next.is_ascii_digit() && prefix.ends_with(|c: char| c.is_ascii_lowercase()))
}

/// The valid name closest to a refused one (`PR_123` → `pr-123`), if there
/// is one: lowercased, every other character a hyphen, hyphens collapsed.
fn suggestion(name: &str) -> Option<String> {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let collapsed = mapped
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    EnvName::parse(&collapsed).ok().map(|n| n.0)
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the shape of a region code (not whether it exists: new regions
/// appear and the SDK will say so).
pub fn validate_region(region: &str) -> Result<(), NameError> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err(NameError::Region(region.to_owned()))
    }
}

/// Derived names for one env in one account and region.
#[derive(Clone, Debug)]
pub struct Names {
    env: EnvName,
    account_id: String,
    region: String,
}

/// The purposes of the env's customer-managed KMS keys. `parameters`
/// encrypts the SecureString parameters: a key of its own, so reading the
/// card-hash key needs a grant no topic or log group implies. `ebs` (the
/// batch tier's volumes) exists only with `--batch on`.
pub const KEY_PURPOSES: [&str; 7] = [
    "database",
    "dynamodb",
    "s3",
    "logs",
    "events",
    "parameters",
    "ebs",
];

impl Names {
    pub fn new(env: EnvName, account_id: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            env,
            account_id: account_id.into(),
            region: region.into(),
        }
    }

    pub fn env(&self) -> &EnvName {
        &self.env
    }

    /// `payops-<env>-<suffix>`: names for most resources (and `Name` tags).
    pub fn resource(&self, suffix: &str) -> String {
        format!("payops-{}-{suffix}", self.env)
    }

    pub fn kms_alias(&self, purpose: &str) -> String {
        format!("alias/payops/{}/{purpose}", self.env)
    }

    /// Prefix of every alias of this env, to find them all.
    pub fn kms_alias_prefix(&self) -> String {
        format!("alias/payops/{}/", self.env)
    }

    /// S3 names are global: account and region make ours unique.
    pub fn audit_bucket(&self) -> String {
        format!(
            "payops-{}-audit-{}-{}",
            self.env, self.account_id, self.region
        )
    }

    pub fn table(&self, name: &str) -> String {
        self.resource(name)
    }

    pub fn topic(&self, name: &str) -> String {
        self.resource(name)
    }

    /// SQS queue names: at most 80 characters (letters, digits, `-`, `_`).
    pub fn queue(&self, name: &str) -> String {
        self.resource(name)
    }

    /// The transaction log's bucket: like the audit bucket's name, with
    /// account and region (S3 names are global).
    pub fn transaction_log_bucket(&self) -> String {
        format!(
            "payops-{}-txlog-{}-{}",
            self.env, self.account_id, self.region
        )
    }

    /// The transaction log's Firehose stream: `payops-<env>-transaction-log`
    /// (Firehose: 1-64 of letters, digits, `_.-`).
    pub fn delivery_stream(&self) -> String {
        self.resource("transaction-log")
    }

    /// The env's custom event bus: `payops-<env>-payments` (EventBridge: at
    /// most 256 of `.-_/` letters and digits, never `default`).
    pub fn event_bus(&self) -> String {
        self.resource("payments")
    }

    /// The env's X-Ray sampling rule: `payops-<env>-payments`. X-Ray allows
    /// 32 characters (RuleName: 1-32, API_SamplingRule; tfaws
    /// xray/sampling_rule.go), exactly what the longest env name (16) makes;
    /// a unit test holds the two together.
    pub fn sampling_rule(&self) -> String {
        self.resource("payments")
    }

    /// An EventBridge rule: `payops-<env>-<rule>` (at most 64 characters).
    pub fn event_rule(&self, rule: EventRule) -> String {
        self.resource(rule.suffix())
    }

    /// The env's rule on AWS Config's compliance changes:
    /// `payops-<env>-compliance-change`, on the default bus (AWS service
    /// events reach only that one).
    pub fn compliance_rule(&self) -> String {
        self.resource("compliance-change")
    }

    /// An env's AWS Config rule: `payops-<env>-<check>` (Config: at most 128
    /// characters).
    pub fn config_rule(&self, check: &str) -> String {
        self.resource(check)
    }

    /// `payops-<env>-<region>-<name>`. IAM is global: a role name without
    /// the region would be shared by the env of the same name in another
    /// region of the account (a DR twin), whose `up` would rewrite its
    /// policies and whose `down` would delete it. At the longest env name and
    /// region it is 61 characters of IAM's 64 (a unit test checks).
    pub fn role(&self, name: &str) -> String {
        format!("payops-{}-{}-{name}", self.env, self.region)
    }

    /// `payops-<env>-<name>`: the region-blind role name of versions before
    /// the region was part of it, looked for so an existing env is adopted
    /// (not duplicated) and `down` leaves no orphan.
    pub fn legacy_role(&self, name: &str) -> String {
        self.resource(name)
    }

    /// `payops-<env>-<region>`: CloudWatch dashboards are account-wide ("All
    /// dashboards in your account are global, not region-specific", PutDashboard
    /// API reference), so the region keeps a twin env's apart.
    pub fn dashboard(&self) -> String {
        format!("payops-{}-{}", self.env, self.region)
    }

    /// `payops-<env>`: the dashboard name of versions before the region was
    /// part of it.
    pub fn legacy_dashboard(&self) -> String {
        format!("payops-{}", self.env)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn log_group(&self, name: &str) -> String {
        format!("/payops/{}/{name}", self.env)
    }

    /// `/payops/<env>/`: the SSM path every configuration value lives under.
    pub fn parameter_path(&self) -> String {
        format!("/payops/{}/", self.env)
    }

    pub fn load_balancer(&self, name: &str) -> String {
        self.resource(name)
    }

    pub fn target_group(&self, name: &str) -> String {
        self.resource(name)
    }

    pub fn function(&self, name: &str) -> String {
        self.resource(name)
    }

    /// ALB access logs need SSE-S3 (ELB cannot write to an SSE-KMS bucket), so
    /// they get a bucket of their own beside the SSE-KMS audit bucket.
    pub fn alb_logs_bucket(&self) -> String {
        format!(
            "payops-{}-alb-logs-{}-{}",
            self.env, self.account_id, self.region
        )
    }

    /// AWS WAF delivers logs only to a bucket whose name starts with
    /// `aws-waf-logs-` (WAF developer guide, "Sending web ACL traffic logs to
    /// an Amazon S3 bucket"). There is no room left for `payops-` at the
    /// longest env name and region (63 characters at most): ownership is in
    /// the tags, as for every bucket.
    pub fn waf_logs_bucket(&self) -> String {
        format!(
            "aws-waf-logs-{}-{}-{}",
            self.env, self.account_id, self.region
        )
    }

    /// The web ACL, also the `WebACL` dimension of its CloudWatch metrics.
    pub fn web_acl(&self) -> String {
        self.resource("waf")
    }

    pub fn rest_api(&self) -> String {
        self.resource("api")
    }

    /// The usage plan of the payments API's keys (`--api-auth api-key`).
    pub fn usage_plan(&self) -> String {
        self.resource("api-clients")
    }

    pub fn api_key(&self) -> String {
        self.resource("api-key")
    }

    pub fn vpc_link(&self) -> String {
        self.resource("vpc-link")
    }

    /// The name in the env's self-signed ALB certificate: a DNS name nobody
    /// else can own (`.internal` is reserved for private use), unique per env
    /// so payops finds the certificate again by it.
    pub fn certificate_domain(&self) -> String {
        format!("alb.{}.payops.internal", self.env)
    }

    /// The Aurora cluster: `payops-<env>-aurora`.
    pub fn db_cluster(&self) -> String {
        self.resource("aurora")
    }

    /// Where RDS exports the cluster's PostgreSQL log (RDS chooses the name).
    pub fn db_log_group(&self) -> String {
        format!("/aws/rds/cluster/{}/postgresql", self.db_cluster())
    }

    /// Aurora instance `slot` (0 = the first, preferred writer): `payops-<env>-aurora-1`, ...
    pub fn db_instance(&self, slot: usize) -> String {
        self.resource(&format!("aurora-{}", slot + 1))
    }

    pub fn db_subnet_group(&self) -> String {
        self.resource("db")
    }

    /// The cluster parameter group, per major version (a group's family is
    /// fixed, so a major upgrade needs a new group).
    pub fn db_parameter_group(&self, major: &str) -> String {
        self.resource(&format!("aurora-pg{major}"))
    }

    /// The RDS Proxy in front of the cluster: `payops-<env>-db-proxy`.
    pub fn db_proxy(&self) -> String {
        self.resource("db-proxy")
    }

    /// The proxy's read-only endpoint (the readers): `payops-<env>-db-proxy-ro`.
    pub fn db_proxy_read_only(&self) -> String {
        self.resource("db-proxy-ro")
    }

    /// The master credentials' secret: `payops/<env>/db-master`.
    pub fn db_secret(&self) -> String {
        format!("payops/{}/db-master", self.env)
    }

    /// The application user's secret, which the RDS Proxy logs in as
    /// `payops_app` with: `payops/<env>/db-app`.
    pub fn db_app_secret(&self) -> String {
        format!("payops/{}/db-app", self.env)
    }

    /// Every derived name with the AWS rule it must satisfy, so one test can
    /// prove the env-name rule is strict enough.
    pub fn all(&self) -> Vec<(NameKind, String)> {
        let mut all = vec![
            (NameKind::S3Bucket, self.audit_bucket()),
            (NameKind::LoadBalancer, self.load_balancer("alb")),
            (NameKind::LoadBalancer, self.load_balancer("nlb")),
            (NameKind::TargetGroup, self.target_group("blue")),
            (NameKind::TargetGroup, self.target_group("green")),
            (NameKind::TargetGroup, self.target_group("alb")),
            (NameKind::IamRole, self.role("flow-logs")),
            (NameKind::IamRole, self.role("transaction-processing")),
            (
                NameKind::LambdaFunction,
                self.resource("transaction-processing"),
            ),
            (NameKind::LambdaFunction, self.resource("secret-rotation")),
            (
                NameKind::LambdaFunction,
                self.function("payment-validation"),
            ),
            (NameKind::LambdaFunction, self.function("fraud-detection")),
            (NameKind::IamRole, self.role("payment-validation")),
            (NameKind::IamRole, self.role("fraud-detection")),
            (NameKind::S3Bucket, self.alb_logs_bucket()),
            (NameKind::S3Bucket, self.waf_logs_bucket()),
            (
                NameKind::LogGroup,
                self.log_group("lambda/transaction-processing"),
            ),
            (NameKind::RdsIdentifier, self.db_cluster()),
            (
                NameKind::RdsIdentifier,
                self.db_instance(usize::from(crate::spec::Database::MAX_READERS)),
            ),
            (NameKind::RdsIdentifier, self.db_parameter_group("16")),
            (NameKind::RdsIdentifier, self.db_proxy()),
            (NameKind::RdsIdentifier, self.db_proxy_read_only()),
            (NameKind::IamRole, self.role("db-proxy")),
            (
                NameKind::RdsIdentifier,
                format!("{}-final-20261231235959", self.db_cluster()),
            ),
            (NameKind::DynamoDbTable, self.table("transactions")),
            (NameKind::DynamoDbTable, self.table("fraud-rules")),
            (NameKind::SnsTopic, self.topic("failed-transactions")),
            (NameKind::LogGroup, self.log_group("vpc-flow-logs")),
            (NameKind::SqsQueue, self.queue("payments-processing-dlq")),
            (NameKind::SqsQueue, self.queue("payments-analytics-dlq")),
            (NameKind::SqsQueue, self.queue("payments-events-dlq")),
            (
                NameKind::EventRule,
                self.event_rule(EventRule::PaymentSucceeded),
            ),
            (NameKind::EventRule, self.event_rule(EventRule::DbFailover)),
            (NameKind::EventRule, self.compliance_rule()),
            (NameKind::IamRole, self.role("config-remediation")),
            (
                NameKind::LambdaFunction,
                self.function("config-remediation"),
            ),
            (
                NameKind::ConfigRule,
                self.config_rule("s3-bucket-level-public-access-prohibited"),
            ),
            (NameKind::IamRole, self.role("secret-rotation")),
            (NameKind::IamRole, self.role("transaction-log-transform")),
            (NameKind::IamRole, self.role("transaction-log-delivery")),
            (
                NameKind::LambdaFunction,
                self.function("transaction-log-transform"),
            ),
            (NameKind::S3Bucket, self.transaction_log_bucket()),
            (NameKind::DeliveryStream, self.delivery_stream()),
            (NameKind::Dashboard, self.dashboard()),
            (NameKind::SamplingRule, self.sampling_rule()),
        ];
        for purpose in KEY_PURPOSES {
            all.push((NameKind::KmsAlias, self.kms_alias(purpose)));
        }
        all
    }
}

/// The env's EventBridge rules. Their names and ARNs follow from the env, so
/// the policies that let a rule deliver (queue, topic and key policies) can
/// name it before it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventRule {
    /// Payment succeeded (env bus) -> the analytics queue.
    PaymentSucceeded,
    /// Payment failed (env bus) -> the failed-transactions topic.
    PaymentFailed,
    /// Failover/failure of the env's Aurora cluster (default bus: AWS service
    /// events reach only that one) -> the system-errors topic.
    DbFailover,
}

impl EventRule {
    pub const ALL: [Self; 3] = [
        Self::PaymentSucceeded,
        Self::PaymentFailed,
        Self::DbFailover,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Self::PaymentSucceeded => "payment-succeeded",
            Self::PaymentFailed => "payment-failed",
            Self::DbFailover => "db-failover",
        }
    }

    /// Whether the rule is on the account's default bus (else the env's).
    pub fn on_default_bus(self) -> bool {
        matches!(self, Self::DbFailover)
    }
}

/// AWS naming rules for the kinds of names payops derives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    S3Bucket,
    LoadBalancer,
    TargetGroup,
    IamRole,
    LambdaFunction,
    RdsIdentifier,
    DynamoDbTable,
    SnsTopic,
    LogGroup,
    KmsAlias,
    SqsQueue,
    EventRule,
    Dashboard,
    DeliveryStream,
    SamplingRule,
    ConfigRule,
}

impl NameKind {
    /// Whether `name` satisfies AWS's rule for this kind; `Err` says which.
    pub fn check(self, name: &str) -> Result<(), String> {
        let len = name.len();
        let alnum_hyphen = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let fail = |why: &str| Err(format!("{self:?} {name:?}: {why}"));
        match self {
            Self::S3Bucket => {
                if !(3..=63).contains(&len) {
                    return fail("must be 3-63 characters");
                }
                if !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                {
                    return fail("lowercase letters, digits, dots and hyphens only");
                }
                if name.starts_with(['-', '.']) || name.ends_with(['-', '.']) {
                    return fail("must begin and end with a letter or digit");
                }
            }
            Self::LoadBalancer | Self::TargetGroup => {
                if !(1..=32).contains(&len) {
                    return fail("must be 1-32 characters");
                }
                if !alnum_hyphen(name) || name.starts_with('-') || name.ends_with('-') {
                    return fail("letters, digits and inner hyphens only");
                }
                if self == Self::LoadBalancer && name.starts_with("internal-") {
                    return fail("must not start with internal-");
                }
            }
            Self::IamRole | Self::LambdaFunction => {
                if !(1..=64).contains(&len) {
                    return fail("must be 1-64 characters");
                }
            }
            Self::RdsIdentifier => {
                if !(1..=63).contains(&len) {
                    return fail("must be 1-63 characters");
                }
                if !name.starts_with(|c: char| c.is_ascii_alphabetic())
                    || name.ends_with('-')
                    || name.contains("--")
                    || !alnum_hyphen(name)
                {
                    return fail("letter first, no trailing or double hyphen");
                }
            }
            Self::DynamoDbTable => {
                if !(3..=255).contains(&len) {
                    return fail("must be 3-255 characters");
                }
            }
            Self::SnsTopic => {
                if !(1..=256).contains(&len) {
                    return fail("must be 1-256 characters");
                }
            }
            Self::LogGroup => {
                if !(1..=512).contains(&len) {
                    return fail("must be 1-512 characters");
                }
            }
            Self::SqsQueue | Self::Dashboard => {
                let max = if self == Self::SqsQueue { 80 } else { 255 };
                if !(1..=max).contains(&len) {
                    return fail(&format!("must be 1-{max} characters"));
                }
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return fail("letters, digits, hyphens and underscores only");
                }
            }
            Self::EventRule | Self::DeliveryStream => {
                if !(1..=64).contains(&len) {
                    return fail("must be 1-64 characters");
                }
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    return fail("letters, digits, '.', '-' and '_' only");
                }
            }
            Self::SamplingRule => {
                if !(1..=32).contains(&len) {
                    return fail("must be 1-32 characters");
                }
            }
            // PutConfigRule: ConfigRuleName is 1-128 characters
            // [CA:API_ConfigRule].
            Self::ConfigRule => {
                if !(1..=128).contains(&len) {
                    return fail("must be 1-128 characters");
                }
            }
            Self::KmsAlias => {
                if !name.starts_with("alias/") || name.starts_with("alias/aws/") {
                    return fail("must start with alias/ and not alias/aws/");
                }
                if len > 256 {
                    return fail("must be at most 256 characters");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_env_names() {
        for ok in ["pr123", "staging", "perf-2", "a", "abcdefghijklmnop"] {
            assert!(EnvName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_names_that_would_break_an_aws_rule_and_says_why() {
        let cases = [
            ("", "empty"),
            ("PR123", "try \"pr123\""),
            (
                "pr_123",
                "'_' is not allowed: S3 bucket and RDS names take only letters, digits and hyphens (try \"pr-123\")",
            ),
            ("Bad_Name", "(try \"bad-name\")"),
            ("1_pr", "'_' is not allowed"),
            ("1pr", "start with a letter"),
            ("pr-", "end with a hyphen"),
            ("pr--1", "two hyphens"),
            ("abcdefghijklmnopq", "17 characters"),
        ];
        for (name, why) in cases {
            let err = EnvName::parse(name).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
            assert!(err.contains("1-16 characters"), "{name}: {err}");
        }
    }

    #[test]
    fn suggests_a_name_only_when_the_suggestion_is_itself_valid() {
        let err = |name: &str| EnvName::parse(name).unwrap_err().to_string();
        assert!(
            err("PR 123!").contains("(try \"pr-123\")"),
            "{}",
            err("PR 123!")
        );
        assert!(!err("1_pr").contains("try"), "{}", err("1_pr"));
        assert!(!err("_").contains("try"), "{}", err("_"));
    }

    #[test]
    fn every_derived_name_fits_its_limit_at_the_longest_env_name() {
        // Worst case: the longest env name, a 12-digit account and the longest
        // region code in use.
        let env = EnvName::parse(&format!("a{}", "b-".repeat(7) + "c")).unwrap();
        assert_eq!(env.as_str().len(), MAX_ENV_LEN);
        let names = Names::new(env, "123456789012", "ap-southeast-7");
        for (kind, name) in names.all() {
            kind.check(&name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn name_rules_reject_what_aws_rejects() {
        assert!(NameKind::TargetGroup.check(&"a".repeat(33)).is_err());
        assert!(NameKind::TargetGroup.check("payops-x-").is_err());
        assert!(NameKind::S3Bucket.check("Payops").is_err());
        assert!(NameKind::S3Bucket.check(&"a".repeat(64)).is_err());
        assert!(NameKind::RdsIdentifier.check("a--b").is_err());
        assert!(NameKind::RdsIdentifier.check("1abc").is_err());
        assert!(NameKind::KmsAlias.check("alias/aws/foo").is_err());
        assert!(NameKind::KmsAlias.check("payops/foo").is_err());
        assert!(NameKind::SqsQueue.check(&"a".repeat(81)).is_err());
        assert!(NameKind::SqsQueue.check("payops-x.fifo").is_err());
        assert!(NameKind::SqsQueue.check(&"a".repeat(80)).is_ok());
        assert!(NameKind::EventRule.check(&"a".repeat(65)).is_err());
        assert!(NameKind::EventRule.check("payops/x").is_err());
        assert!(NameKind::EventRule.check(&"a.b_c-".repeat(10)).is_ok());
        assert!(NameKind::ConfigRule.check(&"a".repeat(129)).is_err());
        assert!(NameKind::ConfigRule.check(&"a".repeat(128)).is_ok());
        assert!(NameKind::LoadBalancer.check("internal-x").is_err());
        assert!(NameKind::SamplingRule.check(&"a".repeat(33)).is_err());
        assert!(NameKind::SamplingRule.check(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn the_sampling_rule_name_is_exactly_x_rays_limit_at_the_longest_env_name() {
        let env = EnvName::parse(&"a".repeat(MAX_ENV_LEN)).unwrap();
        let rule = Names::new(env, "123456789012", "us-east-1").sampling_rule();
        // A longer env name would need another rule name: it cannot grow.
        assert_eq!(rule.len(), 32, "{rule}");
    }

    #[test]
    fn account_wide_names_carry_the_region_and_fit_at_the_longest() {
        let names = Names::new(EnvName::parse("twin").unwrap(), "123456789012", "us-west-2");
        assert_eq!(names.role("flow-logs"), "payops-twin-us-west-2-flow-logs");
        assert_eq!(names.legacy_role("flow-logs"), "payops-twin-flow-logs");
        assert_eq!(names.dashboard(), "payops-twin-us-west-2");
        assert_eq!(names.legacy_dashboard(), "payops-twin");
        // The longest role name: 16-character env, 14-character region, the
        // longest purpose: 61 of IAM's 64 characters.
        let env = EnvName::parse(&format!("a{}", "b-".repeat(7) + "c")).unwrap();
        let longest =
            Names::new(env, "123456789012", "ap-southeast-7").role("transaction-processing");
        assert_eq!(longest.len(), 61, "{longest}");
        NameKind::IamRole.check(&longest).unwrap();
        assert!(NameKind::Dashboard.check("payops-x.y").is_err());
    }

    #[test]
    fn audit_bucket_includes_account_and_region() {
        let names = Names::new(EnvName::parse("pr1").unwrap(), "123456789012", "eu-west-2");
        assert_eq!(
            names.audit_bucket(),
            "payops-pr1-audit-123456789012-eu-west-2"
        );
    }

    #[test]
    fn a_prefix_matches_only_at_a_name_boundary() {
        // (prefix, env name, matches)
        let cases = [
            ("pr", "pr", true),
            ("pr", "pr7", true),
            ("pr", "pr123", true),
            ("pr", "pr-7", true),
            ("pr", "pr-45-b", true),
            ("pr", "prod", false),
            ("pr", "preprod", false),
            ("pr", "prometheus", false),
            ("pr", "prx", false),
            ("pr", "p", false),
            ("pr", "staging", false),
            ("pr-", "pr-7", true),
            ("pr-", "pr-abc", true),
            ("pr-", "pr7", false),
            ("pr-", "pr", false),
            ("feat", "feature1", false),
            ("feat", "feat1", true),
            ("feat", "feat-login", true),
            // A prefix ending in a digit stops at that number: pr1 is not pr12.
            ("pr1", "pr1", true),
            ("pr1", "pr1-b", true),
            ("pr1", "pr12", false),
            ("pr1", "pr1a", false),
            ("perf-2", "perf-2", true),
            ("perf-2", "perf-20", false),
            ("", "prod", true),
            ("", "pr7", true),
        ];
        for (prefix, name, want) in cases {
            assert_eq!(prefix_matches(prefix, name), want, "{prefix:?} / {name:?}");
            if !prefix.is_empty() {
                let parsed = EnvPrefix::parse(prefix).unwrap();
                assert_eq!(parsed.matches(name), want, "{prefix:?} / {name:?}");
            }
        }
    }

    #[test]
    fn env_prefixes_take_the_env_name_alphabet() {
        for ok in [
            "pr",
            "pr-",
            "p",
            "feat",
            "pr1",
            "perf-2",
            "abcdefghijklmnop",
        ] {
            assert_eq!(EnvPrefix::parse(ok).unwrap().as_str(), ok);
        }
        for (bad, why) in [
            ("", "empty"),
            ("PR", "'P' is not allowed"),
            ("pr_", "'_' is not allowed"),
            ("pr*", "'*' is not allowed"),
            ("1pr", "start with a letter"),
            ("-pr", "start with a letter"),
            ("pr--", "two hyphens"),
            ("abcdefghijklmnopq", "longer than an env name"),
        ] {
            let err = EnvPrefix::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains(PREFIX_RULE), "{bad:?}: {err}");
        }
    }

    #[test]
    fn region_shape_is_checked() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-7",
        ] {
            validate_region(ok).unwrap();
        }
        for bad in ["", "useast1", "US-EAST-1", "us-east", "us-east-x"] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }
}
