//! Settings, resolved once before a command runs: flags and environment
//! variables first, then payops.toml (its `[env.<name>]` table before its top
//! level), then what the env's last `up` recorded, then defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_config::retry::RetryMode;
use serde::Deserialize;

use crate::aws::config::AwsSettings;
use crate::cli::{GlobalArgs, OutputFormat, Shape};
use crate::naming::{self, EnvName};
use crate::spec::{
    self, ApiAccess, ApiAuth, Batch, Certificate, Cidr, Concurrency, Database, DbSecret, EnvSpec,
    NatMode, Waf, parse_backup_days, parse_engine_version, parse_instance_class, parse_readers,
};

pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_CONFIG: &str = "payops.toml";
pub const DEFAULT_PARALLELISM: usize = 8;
pub const DEFAULT_OUTPUTS_FILE: &str = "cfn-outputs/flat-outputs.json";
/// Attempts per AWS call; throttling during provisioning is normal.
/// `PAYOPS_MAX_ATTEMPTS` overrides it.
pub const MAX_ATTEMPTS: u32 = 10;
/// How the SDK retries: standard (exponential back-off with jitter per
/// call), as the Terraform provider does. Adaptive mode also rate-limits the
/// whole client after a throttle, and under the fault proxy that made `up`
/// 4-8 times slower (docs/architecture.md has the figures).
/// `PAYOPS_RETRY_MODE=standard|adaptive` overrides it.
pub const RETRY_MODE: RetryMode = RetryMode::Standard;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("settings file {path}: {key}: {reason}")]
    Value {
        path: String,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Name(#[from] naming::NameError),
}

/// payops.toml
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    region: Option<String>,
    parallelism: Option<u16>,
    state_dir: Option<PathBuf>,
    /// `s3://BUCKET/PREFIX` for the shared backend.
    state: Option<String>,
    outputs_file: Option<PathBuf>,
    vpc_cidr: Option<String>,
    nat: Option<String>,
    cost_center: Option<String>,
    certificate_arn: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    reserved_concurrency: Option<String>,
    db_version: Option<String>,
    db_instance_class: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    db_readers: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    db_backup_days: Option<String>,
    db_secret_arn: Option<String>,
    /// Aurora Serverless v2 `MIN-MAX` ACUs, or `off`.
    db_capacity: Option<String>,
    /// Email subscriptions of the alarm topics (`[]`: none).
    alert_emails: Option<Vec<String>>,
    api_auth: Option<String>,
    /// Callers the API's resource policy admits (`[]`: no restriction).
    api_allow: Option<Vec<String>>,
    #[serde(default, deserialize_with = "number_or_text")]
    waf_rate_limit: Option<String>,
    waf_block_countries: Option<Vec<String>>,
    /// The event backbone (default on).
    events: Option<bool>,
    /// The batch tier (default off), its `MIN-DESIRED-MAX` and instance type.
    batch: Option<bool>,
    batch_capacity: Option<String>,
    batch_instance_type: Option<String>,
    /// The private zone with the failover records (default on).
    dns: Option<bool>,
    /// Envs `destroy-all` never removes, whatever its flags: the account's
    /// blocklist (prod, staging), kept in the file so a sweep's command line
    /// cannot forget it. Top level only: it is about the fleet, not one env.
    #[serde(default)]
    never_destroy: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, FileShape>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileShape {
    vpc_cidr: Option<String>,
    nat: Option<String>,
    cost_center: Option<String>,
    certificate_arn: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    reserved_concurrency: Option<String>,
    db_version: Option<String>,
    db_instance_class: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    db_readers: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    db_backup_days: Option<String>,
    db_secret_arn: Option<String>,
    db_capacity: Option<String>,
    alert_emails: Option<Vec<String>>,
    api_auth: Option<String>,
    api_allow: Option<Vec<String>>,
    #[serde(default, deserialize_with = "number_or_text")]
    waf_rate_limit: Option<String>,
    waf_block_countries: Option<Vec<String>>,
    events: Option<bool>,
    batch: Option<bool>,
    batch_capacity: Option<String>,
    batch_instance_type: Option<String>,
    dns: Option<bool>,
}

/// `reserved_concurrency = 10` and `reserved_concurrency = "transaction=20"`
/// are both natural in TOML.
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(i64),
        Text(String),
    }
    Ok(Option::<Value>::deserialize(d)?.map(|v| match v {
        Value::Number(n) => n.to_string(),
        Value::Text(t) => t,
    }))
}

impl FileConfig {
    /// Alert emails are refused as soon as the file is read, before any AWS
    /// call (SNS would accept a malformed address and mail nobody).
    fn check_alert_emails(&self, path: &str) -> Result<(), SettingsError> {
        let lists = std::iter::once(("alert_emails".to_owned(), &self.alert_emails)).chain(
            self.env
                .iter()
                .map(|(env, s)| (format!("env.{env}.alert_emails"), &s.alert_emails)),
        );
        for (key, list) in lists {
            if let Some(list) = list {
                spec::alert_emails(list).map_err(|reason| SettingsError::Value {
                    path: path.to_owned(),
                    key,
                    reason,
                })?;
            }
        }
        Ok(())
    }

    /// API settings likewise: a bad caller must not reach a resource policy.
    fn check_api_access(&self, path: &str) -> Result<(), SettingsError> {
        let sections = std::iter::once((String::new(), &self.api_auth, &self.api_allow)).chain(
            self.env
                .iter()
                .map(|(env, s)| (format!("env.{env}."), &s.api_auth, &s.api_allow)),
        );
        for (prefix, auth, allow) in sections {
            let bad = |key: &str, reason: String| SettingsError::Value {
                path: path.to_owned(),
                key: format!("{prefix}{key}"),
                reason,
            };
            if let Some(auth) = auth {
                auth.parse::<ApiAuth>().map_err(|e| bad("api_auth", e))?;
            }
            if let Some(allow) = allow {
                spec::api_allow(allow).map_err(|e| bad("api_allow", e))?;
            }
        }
        Ok(())
    }

    /// Every `never_destroy` entry must be a valid env name: a typo such as
    /// `Prod` would otherwise protect nothing, silently.
    fn check_never_destroy(&self, path: &str) -> Result<(), SettingsError> {
        for name in &self.never_destroy {
            EnvName::parse(name).map_err(|e| SettingsError::Value {
                path: path.to_owned(),
                key: "never_destroy".to_owned(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The envs `destroy-all` must never remove (checked when the file was read).
    pub fn never_destroy(&self) -> Vec<EnvName> {
        self.never_destroy
            .iter()
            .filter_map(|n| EnvName::parse(n).ok())
            .collect()
    }

    /// Reads `path`, or payops.toml if present; none at all is fine.
    pub fn load(path: Option<&Path>) -> Result<(Self, String), SettingsError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok((Self::default(), shown));
            }
            Err(e) => {
                return Err(SettingsError::File {
                    path: shown,
                    reason: e.to_string(),
                });
            }
        };
        let config: Self = toml::from_str(&text).map_err(|e| SettingsError::File {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        config.check_alert_emails(&shown)?;
        config.check_api_access(&shown)?;
        config.check_never_destroy(&shown)?;
        Ok((config, shown))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose(u8),
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub aws: AwsSettings,
    pub parallelism: usize,
    pub output: OutputFormat,
    pub verbosity: Verbosity,
    pub yes: bool,
    pub state_dir: PathBuf,
    /// `s3://BUCKET/PREFIX`: the shared backend instead of `state_dir`.
    pub state_url: Option<String>,
    pub outputs_file: PathBuf,
    pub file: FileConfig,
    pub file_path: String,
}

impl Settings {
    pub fn resolve(args: &GlobalArgs) -> Result<Self, SettingsError> {
        let (file, file_path) = FileConfig::load(args.config.as_deref())?;
        let region = args
            .region
            .clone()
            .or_else(|| file.region.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        naming::validate_region(&region)?;
        Ok(Self {
            aws: AwsSettings {
                region,
                profile: args.profile.clone(),
                endpoint_url: args.endpoint_url.clone().filter(|u| !u.is_empty()),
                max_attempts: max_attempts()?,
                retry_mode: retry_mode()?,
            },
            parallelism: args
                .parallelism
                .or(file.parallelism)
                .map_or(DEFAULT_PARALLELISM, usize::from),
            output: args.output,
            verbosity: match (args.quiet, args.verbose) {
                (true, _) => Verbosity::Quiet,
                (false, 0) => Verbosity::Normal,
                (false, n) => Verbosity::Verbose(n),
            },
            yes: args.yes,
            state_dir: args
                .state_dir
                .clone()
                .or_else(|| file.state_dir.clone())
                .unwrap_or_else(|| PathBuf::from(".payops")),
            state_url: args
                .state
                .clone()
                .or_else(|| file.state.clone())
                .filter(|s| !s.is_empty()),
            outputs_file: file
                .outputs_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUTS_FILE)),
            file,
            file_path,
        })
    }

    /// The env's desired shape. `recorded` holds the settings of the env's
    /// last `up`, so `status` without flags compares against the same shape.
    pub fn spec(
        &self,
        env: &EnvName,
        flags: &Shape,
        recorded: &BTreeMap<String, String>,
    ) -> Result<EnvSpec, SettingsError> {
        let per_env = self.file.env.get(env.as_str());
        let top = FileShape {
            vpc_cidr: self.file.vpc_cidr.clone(),
            nat: self.file.nat.clone(),
            cost_center: self.file.cost_center.clone(),
            certificate_arn: self.file.certificate_arn.clone(),
            reserved_concurrency: self.file.reserved_concurrency.clone(),
            db_version: self.file.db_version.clone(),
            db_instance_class: self.file.db_instance_class.clone(),
            db_readers: self.file.db_readers.clone(),
            db_backup_days: self.file.db_backup_days.clone(),
            db_secret_arn: self.file.db_secret_arn.clone(),
            db_capacity: self.file.db_capacity.clone(),
            alert_emails: self.file.alert_emails.clone(),
            api_auth: self.file.api_auth.clone(),
            api_allow: self.file.api_allow.clone(),
            waf_rate_limit: self.file.waf_rate_limit.clone(),
            waf_block_countries: self.file.waf_block_countries.clone(),
            events: self.file.events,
            batch: self.file.batch,
            batch_capacity: self.file.batch_capacity.clone(),
            batch_instance_type: self.file.batch_instance_type.clone(),
            dns: self.file.dns,
        };
        let pick = |flag: Option<String>, key: &str, get: fn(&FileShape) -> Option<&String>| {
            flag.or_else(|| per_env.and_then(get).cloned())
                .or_else(|| get(&top).cloned())
                .or_else(|| recorded.get(key).cloned())
        };
        let bad = |key: &str, reason: String| SettingsError::Value {
            path: self.file_path.clone(),
            key: key.to_owned(),
            reason,
        };
        let defaults = EnvSpec::default();
        let vpc_cidr = match pick(flags.vpc_cidr.map(|c| c.to_string()), "vpc_cidr", |s| {
            s.vpc_cidr.as_ref()
        }) {
            Some(s) => s.parse::<Cidr>().map_err(|e| bad("vpc_cidr", e))?,
            None => defaults.vpc_cidr,
        };
        let nat = match pick(flags.nat.map(|n| n.as_str().to_owned()), "nat", |s| {
            s.nat.as_ref()
        }) {
            Some(s) => s.parse::<NatMode>().map_err(|e| bad("nat", e))?,
            None => defaults.nat,
        };
        let cost_center = pick(flags.cost_center.clone(), "cost_center", |s| {
            s.cost_center.as_ref()
        })
        .unwrap_or(defaults.cost_center);
        let certificate = match pick(
            flags.certificate_arn.as_ref().map(ToString::to_string),
            "certificate",
            |s| s.certificate_arn.as_ref(),
        ) {
            Some(s) => s
                .parse::<Certificate>()
                .map_err(|e| bad("certificate_arn", e))?,
            None => defaults.certificate,
        };
        let concurrency = match pick(
            flags.reserved_concurrency.map(|c| c.to_string()),
            "reserved_concurrency",
            |s| s.reserved_concurrency.as_ref(),
        ) {
            Some(s) => s
                .parse::<Concurrency>()
                .map_err(|e| bad("reserved_concurrency", e))?,
            None => defaults.concurrency,
        };
        let protect = match flags
            .protect
            .map(|p| p.to_string())
            .or_else(|| recorded.get("protect").cloned())
        {
            Some(p) => Some(
                p.parse::<bool>()
                    .map_err(|e| bad("protect", e.to_string()))?,
            ),
            None => None,
        };
        // Each database setting on its own: flag, file, then what the last
        // `up` recorded (all of them together, as `database`), then default.
        let recorded_db = match recorded.get("database") {
            Some(d) => d.parse::<Database>().map_err(|e| bad("database", e))?,
            None => Database::default(),
        };
        let file_or_flag =
            |flag: Option<String>, get: fn(&FileShape) -> Option<&String>| -> Option<String> {
                flag.or_else(|| per_env.and_then(get).cloned())
                    .or_else(|| get(&top).cloned())
            };
        // Where a setting was given: 0 the flag, 1 the env's table, 2 the
        // file's top level (the more specific, the lower).
        let given = |flag: Option<String>,
                     get: fn(&FileShape) -> Option<&String>|
         -> Option<(u8, String)> {
            flag.map(|v| (0, v))
                .or_else(|| per_env.and_then(get).map(|v| (1, v.clone())))
                .or_else(|| get(&top).map(|v| (2, v.clone())))
        };
        let class_given = given(flags.db_instance_class.clone(), |s| {
            s.db_instance_class.as_ref()
        });
        let capacity_given = given(flags.db_capacity.clone(), |s| s.db_capacity.as_ref());
        // A provisioned class asks for provisioned instances unless a range
        // is given as specifically (`db_instance_class` in the env's table
        // beats `db_capacity` at the top level; at the same level the range
        // wins and the class is what `off` returns to); db.serverless alone
        // keeps the recorded range. Else the record, then the default
        // (Serverless v2 for a new env).
        let provisioned_class = class_given
            .as_ref()
            .filter(|(_, c)| c != spec::SERVERLESS_CLASS)
            .map(|(level, _)| *level);
        let capacity = match (capacity_given, provisioned_class) {
            (Some((level, v)), class) if class.is_none_or(|c| level <= c) => {
                spec::parse_capacity(&v).map_err(|e| bad("db_capacity", e))?
            }
            (_, Some(_)) => None,
            (_, None) => recorded_db.capacity,
        };
        let class_given = class_given.map(|(_, c)| c);
        let database = Database {
            capacity,
            engine_version: match file_or_flag(flags.db_version.clone(), |s| s.db_version.as_ref())
            {
                Some(v) => parse_engine_version(&v).map_err(|e| bad("db_version", e))?,
                None => recorded_db.engine_version,
            },
            instance_class: match class_given {
                Some(v) => parse_instance_class(&v).map_err(|e| bad("db_instance_class", e))?,
                None => recorded_db.instance_class,
            },
            readers: match file_or_flag(flags.db_readers.map(|n| n.to_string()), |s| {
                s.db_readers.as_ref()
            }) {
                Some(v) => parse_readers(&v).map_err(|e| bad("db_readers", e))?,
                None => recorded_db.readers,
            },
            backup_days: match file_or_flag(flags.db_backup_days.map(|n| n.to_string()), |s| {
                s.db_backup_days.as_ref()
            }) {
                Some(v) => parse_backup_days(&v).map_err(|e| bad("db_backup_days", e))?,
                None => recorded_db.backup_days,
            },
        };
        database.check().map_err(|e| bad("db_capacity", e))?;
        let db_secret = match pick(
            flags.db_secret_arn.as_ref().map(ToString::to_string),
            "db_secret",
            |s| s.db_secret_arn.as_ref(),
        ) {
            Some(s) => s.parse::<DbSecret>().map_err(|e| bad("db_secret_arn", e))?,
            None => defaults.db_secret,
        };
        // A list, so not through `pick`: flags, then the file, then the
        // record (comma-joined; empty = none).
        let alert_emails = if !flags.alert_email.is_empty() {
            Some(flags.alert_email.clone())
        } else {
            per_env
                .and_then(|s| s.alert_emails.clone())
                .or_else(|| top.alert_emails.clone())
                .or_else(|| {
                    recorded.get("alert_emails").map(|r| {
                        r.split(',')
                            .filter(|e| !e.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                })
        };
        let alert_emails = match alert_emails {
            Some(list) => Some(spec::alert_emails(&list).map_err(|e| bad("alert_emails", e))?),
            None => None,
        };
        let api = api_access(flags, per_env, &top, recorded).map_err(|e| bad("api_access", e))?;
        let waf = resolve_waf(flags, per_env, &top, recorded).map_err(|(k, e)| bad(k, e))?;
        // Flag, the env's file section, the file's top level, what the last
        // `up` recorded, then on.
        let events = match flags
            .events
            .or_else(|| per_env.and_then(|s| s.events))
            .or(top.events)
        {
            Some(on) => on,
            None => match recorded.get("events") {
                Some(r) => spec::parse_events(r).map_err(|e| bad("events", e))?,
                None => defaults.events,
            },
        };
        let batch = resolve_batch(flags, per_env, &top, recorded).map_err(|(k, e)| bad(k, e))?;
        let dns = match flags
            .dns
            .or_else(|| per_env.and_then(|s| s.dns))
            .or(top.dns)
        {
            Some(on) => on,
            None => match recorded.get("dns") {
                Some(r) => spec::parse_dns(r).map_err(|e| bad("dns", e))?,
                None => defaults.dns,
            },
        };
        Ok(EnvSpec {
            vpc_cidr,
            nat,
            cost_center,
            certificate,
            concurrency,
            protect,
            database,
            db_secret,
            final_snapshot: false,
            alert_emails,
            api,
            waf,
            // Only ever recorded: the zones an earlier `up` chose.
            zone_ids: recorded
                .get("zone_ids")
                .map(|z| {
                    z.split(',')
                        .filter(|z| !z.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            events,
            batch,
            dns,
        })
    }
}

/// `--api-auth` and `--api-allow` each on their own: flag, the env's file
/// section, the file's top level, then what the last `up` recorded.
fn api_access(
    flags: &Shape,
    per_env: Option<&FileShape>,
    top: &FileShape,
    recorded: &BTreeMap<String, String>,
) -> Result<ApiAccess, String> {
    let recorded = match recorded.get("api_access") {
        Some(r) => r.parse::<ApiAccess>()?,
        None => ApiAccess::default(),
    };
    let auth = match flags
        .api_auth
        .map(|a| a.as_str().to_owned())
        .or_else(|| per_env.and_then(|s| s.api_auth.clone()))
        .or_else(|| top.api_auth.clone())
    {
        Some(a) => a.parse::<ApiAuth>()?,
        None => recorded.auth,
    };
    let allow = if !flags.api_allow.is_empty() {
        spec::api_allow(&flags.api_allow)?
    } else {
        match per_env
            .and_then(|s| s.api_allow.as_ref())
            .or(top.api_allow.as_ref())
        {
            Some(list) => spec::api_allow(list)?,
            None => recorded.allow,
        }
    };
    ApiAccess::new(auth, allow)
}

/// Each WAF setting on its own: flag, file (env, then top level), then what
/// the last `up` recorded (both together, as `waf`), then the default.
fn resolve_waf(
    flags: &Shape,
    per_env: Option<&FileShape>,
    top: &FileShape,
    recorded: &BTreeMap<String, String>,
) -> Result<Waf, (&'static str, String)> {
    let recorded = match recorded.get("waf") {
        Some(w) => w.parse::<Waf>().map_err(|e| ("waf", e))?,
        None => Waf::default(),
    };
    let rate_limit = match flags.waf_rate_limit.map(|n| n.to_string()).or_else(|| {
        per_env
            .and_then(|s| s.waf_rate_limit.clone())
            .or_else(|| top.waf_rate_limit.clone())
    }) {
        Some(v) => spec::parse_waf_rate_limit(&v).map_err(|e| ("waf_rate_limit", e))?,
        None => recorded.rate_limit,
    };
    let block_countries = match flags.waf_block_countries.clone().or_else(|| {
        per_env
            .and_then(|s| s.waf_block_countries.clone())
            .or_else(|| top.waf_block_countries.clone())
    }) {
        Some(list) => spec::waf_block_countries(&list).map_err(|e| ("waf_block_countries", e))?,
        None => recorded.block_countries,
    };
    Ok(Waf {
        rate_limit,
        block_countries,
    })
}

/// `--batch`, `--batch-capacity` and `--batch-instance-type` each on their
/// own: flag, the env's file section, the file's top level, then what the
/// last `up` recorded, then the defaults (off for a new env).
fn resolve_batch(
    flags: &Shape,
    per_env: Option<&FileShape>,
    top: &FileShape,
    recorded: &BTreeMap<String, String>,
) -> Result<Batch, (&'static str, String)> {
    let recorded = match recorded.get("batch") {
        Some(b) => b.parse::<Batch>().map_err(|e| ("batch", e))?,
        None => Batch::default(),
    };
    let text = |flag: Option<String>, get: fn(&FileShape) -> Option<&String>| {
        flag.or_else(|| per_env.and_then(get).cloned())
            .or_else(|| get(top).cloned())
    };
    let on = flags
        .batch
        .or_else(|| per_env.and_then(|s| s.batch))
        .or(top.batch)
        .unwrap_or(recorded.on);
    let (min, desired, max) =
        match text(flags.batch_capacity.clone(), |s| s.batch_capacity.as_ref()) {
            Some(v) => spec::parse_batch_capacity(&v).map_err(|e| ("batch_capacity", e))?,
            None => (recorded.min, recorded.desired, recorded.max),
        };
    let instance_type = match text(flags.batch_instance_type.clone(), |s| {
        s.batch_instance_type.as_ref()
    }) {
        Some(v) => spec::parse_batch_instance_type(&v).map_err(|e| ("batch_instance_type", e))?,
        None => recorded.instance_type,
    };
    Ok(Batch {
        on,
        min,
        desired,
        max,
        instance_type,
    })
}

fn max_attempts() -> Result<u32, SettingsError> {
    match std::env::var("PAYOPS_MAX_ATTEMPTS") {
        Err(_) => Ok(MAX_ATTEMPTS),
        Ok(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=50).contains(n))
            .ok_or_else(|| SettingsError::Value {
                path: "environment".into(),
                key: "PAYOPS_MAX_ATTEMPTS".into(),
                reason: format!("{v:?} is not a number from 1 to 50"),
            }),
    }
}

fn retry_mode() -> Result<RetryMode, SettingsError> {
    parse_retry_mode(std::env::var("PAYOPS_RETRY_MODE").ok().as_deref())
}

fn parse_retry_mode(value: Option<&str>) -> Result<RetryMode, SettingsError> {
    match value {
        None => Ok(RETRY_MODE),
        Some("standard") => Ok(RetryMode::Standard),
        Some("adaptive") => Ok(RetryMode::Adaptive),
        Some(v) => Err(SettingsError::Value {
            path: "environment".into(),
            key: "PAYOPS_RETRY_MODE".into(),
            reason: format!("{v:?} is not standard or adaptive"),
        }),
    }
}

/// The shape as recorded in state after an `up`.
pub fn record_spec(spec: &EnvSpec) -> BTreeMap<String, String> {
    let mut recorded = BTreeMap::from([
        ("vpc_cidr".to_owned(), spec.vpc_cidr.to_string()),
        ("nat".to_owned(), spec.nat.as_str().to_owned()),
        ("cost_center".to_owned(), spec.cost_center.clone()),
        ("certificate".to_owned(), spec.certificate.to_string()),
        (
            "reserved_concurrency".to_owned(),
            spec.concurrency.to_string(),
        ),
    ]);
    recorded.insert("database".to_owned(), spec.database.to_string());
    recorded.insert("db_secret".to_owned(), spec.db_secret.to_string());
    if let Some(protect) = spec.protect {
        recorded.insert("protect".to_owned(), protect.to_string());
    }
    recorded.insert("api_access".to_owned(), spec.api.to_string());
    if let Some(emails) = &spec.alert_emails {
        recorded.insert("alert_emails".to_owned(), emails.join(","));
    }
    recorded.insert("waf".to_owned(), spec.waf.to_string());
    if !spec.zone_ids.is_empty() {
        recorded.insert("zone_ids".to_owned(), spec.zone_ids.join(","));
    }
    recorded.insert(
        "events".to_owned(),
        spec::events_str(spec.events).to_owned(),
    );
    recorded.insert("batch".to_owned(), spec.batch.to_string());
    recorded.insert("dns".to_owned(), spec::events_str(spec.dns).to_owned());
    recorded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_standard_unless_the_environment_asks_for_adaptive() {
        assert_eq!(parse_retry_mode(None).unwrap(), RetryMode::Standard);
        assert_eq!(
            parse_retry_mode(Some("adaptive")).unwrap(),
            RetryMode::Adaptive
        );
        let err = parse_retry_mode(Some("legacy")).unwrap_err().to_string();
        assert!(err.contains("PAYOPS_RETRY_MODE"), "{err}");
    }

    fn settings(toml: &str) -> Settings {
        let file: FileConfig = toml::from_str(toml).unwrap();
        Settings {
            aws: AwsSettings {
                region: DEFAULT_REGION.into(),
                profile: None,
                endpoint_url: None,
                max_attempts: MAX_ATTEMPTS,
                retry_mode: RETRY_MODE,
            },
            parallelism: DEFAULT_PARALLELISM,
            output: OutputFormat::Text,
            verbosity: Verbosity::Normal,
            yes: false,
            state_dir: ".payops".into(),
            state_url: None,
            outputs_file: DEFAULT_OUTPUTS_FILE.into(),
            file,
            file_path: "payops.toml".into(),
        }
    }

    #[test]
    fn db_capacity_comes_from_the_flag_the_file_the_record_then_the_default() {
        let env = EnvName::parse("pr1").unwrap();
        let none = BTreeMap::new();
        let plain = settings("");
        let capacity = |s: &Settings, flags: &Shape, rec: &BTreeMap<String, String>| {
            s.spec(&env, flags, rec)
                .map(|spec| spec.database.capacity.map(|c| c.to_string()))
        };
        // A new env: Serverless v2 at the default range.
        assert_eq!(
            capacity(&plain, &Shape::default(), &none)
                .unwrap()
                .as_deref(),
            Some("0.5-4")
        );
        // An env recorded before Serverless v2 stays provisioned.
        let old = BTreeMap::from([(
            "database".to_owned(),
            "version=16.6,class=db.r6g.large,readers=2,backup-days=7".to_owned(),
        )]);
        assert_eq!(capacity(&plain, &Shape::default(), &old).unwrap(), None);
        // The flag; then a later `up` without it keeps what was recorded.
        let flags = Shape {
            db_capacity: Some("1-8".into()),
            ..Shape::default()
        };
        let spec = plain.spec(&env, &flags, &old).unwrap();
        assert_eq!(spec.database.effective_class(), "db.serverless");
        let recorded = record_spec(&spec);
        assert_eq!(
            capacity(&plain, &Shape::default(), &recorded)
                .unwrap()
                .as_deref(),
            Some("1-8")
        );
        // `off`, or a provisioned class given alone, goes back to provisioned.
        let off = Shape {
            db_capacity: Some("off".into()),
            ..Shape::default()
        };
        assert_eq!(capacity(&plain, &off, &recorded).unwrap(), None);
        let class = Shape {
            db_instance_class: Some("db.t4g.medium".into()),
            ..Shape::default()
        };
        let spec = plain.spec(&env, &class, &recorded).unwrap();
        assert_eq!(spec.database.effective_class(), "db.t4g.medium");
        // The file: the env's table before the top level.
        let file = settings("db_capacity = \"0.5-2\"\n[env.pr1]\ndb_capacity = \"0-16\"\n");
        assert_eq!(
            capacity(&file, &Shape::default(), &none)
                .unwrap()
                .as_deref(),
            Some("0-16")
        );
        // The env's table asking for a class beats a range at the top level;
        // at the same level the range wins.
        let file =
            settings("db_capacity = \"0.5-2\"\n[env.pr1]\ndb_instance_class = \"db.t4g.medium\"\n");
        assert_eq!(capacity(&file, &Shape::default(), &none).unwrap(), None);
        let file = settings("db_capacity = \"0.5-2\"\ndb_instance_class = \"db.t4g.medium\"\n");
        assert_eq!(
            capacity(&file, &Shape::default(), &none)
                .unwrap()
                .as_deref(),
            Some("0.5-2")
        );
        let bad = settings("db_capacity = \"0.3-2\"\n");
        let err = bad.spec(&env, &Shape::default(), &none).unwrap_err();
        assert!(err.to_string().contains("db_capacity"), "{err}");
    }

    #[test]
    fn db_serverless_without_a_capacity_is_refused_before_any_call() {
        let env = EnvName::parse("pr1").unwrap();
        let flags = Shape {
            db_instance_class: Some("db.serverless".into()),
            db_capacity: Some("off".into()),
            ..Shape::default()
        };
        let err = settings("")
            .spec(&env, &flags, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a capacity range"), "{err}");
        // db.serverless alone keeps (or gets) a range: accepted.
        let alone = Shape {
            db_instance_class: Some("db.serverless".into()),
            ..Shape::default()
        };
        let spec = settings("").spec(&env, &alone, &BTreeMap::new()).unwrap();
        assert_eq!(spec.database.capacity, Some(spec::Capacity::DEFAULT));
        // A range the engine version cannot have.
        let old_engine = Shape {
            db_version: Some("15.4".into()),
            db_capacity: Some("0-4".into()),
            ..Shape::default()
        };
        let err = settings("")
            .spec(&env, &old_engine, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto-pause"), "{err}");
    }

    #[test]
    fn batch_comes_from_the_flag_then_the_file_then_the_record_then_off() {
        let env = EnvName::parse("pr1").unwrap();
        let none = BTreeMap::new();
        let plain = settings("");
        let fresh = plain.spec(&env, &Shape::default(), &none).unwrap().batch;
        assert_eq!(fresh, Batch::default());
        assert!(!fresh.on);
        let flags = Shape {
            batch: Some(true),
            batch_capacity: Some("1-1-3".into()),
            ..Shape::default()
        };
        let spec = plain.spec(&env, &flags, &none).unwrap();
        assert_eq!(record_spec(&spec)["batch"], "on,t4g.small,1-1-3");
        // A later run without the flags keeps the recorded choice.
        let recorded = record_spec(&spec);
        let again = plain.spec(&env, &Shape::default(), &recorded).unwrap();
        assert_eq!(again.batch, spec.batch);
        // Only the instance type given: the recorded capacity stays.
        let bigger = Shape {
            batch_instance_type: Some("m7g.large".into()),
            ..Shape::default()
        };
        let b = plain.spec(&env, &bigger, &recorded).unwrap().batch;
        assert_eq!((b.on, b.min, b.desired, b.max), (true, 1, 1, 3));
        assert_eq!(b.instance_type, "m7g.large");
        let file = settings("batch = true\n[env.pr1]\nbatch = false\n");
        assert!(
            !file
                .spec(&env, &Shape::default(), &recorded)
                .unwrap()
                .batch
                .on
        );
        assert!(spec::parse_batch_capacity("2-1-3").is_err());
        assert!(spec::parse_batch_capacity("0-0-11").is_err());
        assert!(spec::parse_batch_capacity("0-0").is_err());
        for x86 in ["t3.small", "m7i.large", "g5.xlarge", "m5zn.large", "t4g"] {
            assert!(spec::parse_batch_instance_type(x86).is_err(), "{x86}");
        }
        for arm in ["t4g.small", "m7gd.large", "c6gn.xlarge", "im4gn.large"] {
            assert!(spec::parse_batch_instance_type(arm).is_ok(), "{arm}");
        }
    }

    #[test]
    fn dns_comes_from_the_flag_then_the_file_then_the_record_then_off() {
        let env = EnvName::parse("pr1").unwrap();
        let plain = settings("");
        let none = BTreeMap::new();
        let off = BTreeMap::from([("dns".to_owned(), "off".to_owned())]);
        assert!(!plain.spec(&env, &Shape::default(), &none).unwrap().dns);
        let on = BTreeMap::from([("dns".to_owned(), "on".to_owned())]);
        assert!(plain.spec(&env, &Shape::default(), &on).unwrap().dns);
        let spec = plain.spec(&env, &Shape::default(), &off).unwrap();
        assert!(!spec.dns);
        assert_eq!(record_spec(&spec)["dns"], "off");
        let flags = Shape {
            dns: Some(true),
            ..Shape::default()
        };
        assert!(plain.spec(&env, &flags, &off).unwrap().dns);
        let file = settings("dns = true\n[env.pr1]\ndns = false\n");
        assert!(!file.spec(&env, &Shape::default(), &none).unwrap().dns);
        assert!(spec::parse_dns("maybe").is_err());
    }

    #[test]
    fn events_come_from_the_flag_then_the_file_then_the_record_then_on() {
        let env = EnvName::parse("pr1").unwrap();
        let none = BTreeMap::new();
        let off = BTreeMap::from([("events".to_owned(), "off".to_owned())]);
        let plain = settings("");
        assert!(plain.spec(&env, &Shape::default(), &none).unwrap().events);
        // A later `up` without the flag keeps what the last one recorded.
        let spec = plain.spec(&env, &Shape::default(), &off).unwrap();
        assert!(!spec.events);
        assert_eq!(record_spec(&spec)["events"], "off");
        let flags = Shape {
            events: Some(true),
            ..Shape::default()
        };
        assert!(plain.spec(&env, &flags, &off).unwrap().events);
        let file = settings("events = true\n[env.pr1]\nevents = false\n");
        assert!(!file.spec(&env, &Shape::default(), &none).unwrap().events);
        let top = settings("events = true\n");
        assert!(top.spec(&env, &Shape::default(), &off).unwrap().events);
        assert!(spec::parse_events("maybe").is_err());
        assert!(!spec::parse_events("OFF").unwrap());
    }

    #[test]
    fn flags_beat_the_env_table_which_beats_the_file_which_beats_the_record() {
        let s = settings(
            r#"
            nat = "single"
            cost_center = "file"
            [env.pr1]
            cost_center = "pr1-table"
            "#,
        );
        let env = EnvName::parse("pr1").unwrap();
        let recorded = BTreeMap::from([
            ("vpc_cidr".to_owned(), "10.7.0.0/16".to_owned()),
            ("nat".to_owned(), "per-az".to_owned()),
        ]);
        let spec = s.spec(&env, &Shape::default(), &recorded).unwrap();
        assert_eq!(spec.cost_center, "pr1-table");
        assert_eq!(spec.nat, NatMode::Single);
        assert_eq!(spec.vpc_cidr.to_string(), "10.7.0.0/16");
        let flags = Shape {
            nat: Some(NatMode::PerAz),
            ..Shape::default()
        };
        assert_eq!(s.spec(&env, &flags, &recorded).unwrap().nat, NatMode::PerAz);
        let other = EnvName::parse("pr2").unwrap();
        let spec = s.spec(&other, &Shape::default(), &BTreeMap::new()).unwrap();
        assert_eq!(spec.cost_center, "file");
        assert_eq!(spec.vpc_cidr.to_string(), "10.0.0.0/16");
    }

    #[test]
    fn a_bad_value_in_the_file_names_the_file_and_key() {
        let s = settings("vpc_cidr = \"10.0.0.0/8\"");
        let err = s
            .spec(
                &EnvName::parse("pr1").unwrap(),
                &Shape::default(),
                &BTreeMap::new(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("settings file payops.toml: vpc_cidr:"),
            "{err}"
        );
    }

    #[test]
    fn certificate_and_concurrency_come_from_the_file_or_the_record() {
        let s = settings(
            r#"
            reserved_concurrency = 12
            [env.pr1]
            reserved_concurrency = "transaction=30"
            certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/c-1"
            "#,
        );
        let spec = s
            .spec(
                &EnvName::parse("pr1").unwrap(),
                &Shape::default(),
                &BTreeMap::new(),
            )
            .unwrap();
        assert_eq!(spec.concurrency.transaction, 30);
        assert_eq!(spec.concurrency.validation, 5);
        assert_eq!(
            spec.certificate.arn(),
            Some("arn:aws:acm:us-east-1:123456789012:certificate/c-1")
        );
        let spec = s
            .spec(
                &EnvName::parse("pr2").unwrap(),
                &Shape::default(),
                &BTreeMap::new(),
            )
            .unwrap();
        assert_eq!(spec.concurrency.fraud, 12);
        assert_eq!(spec.certificate, Certificate::SelfSigned);
        // What `up` recorded comes back unchanged.
        let recorded = record_spec(&spec);
        let again = settings("")
            .spec(
                &EnvName::parse("pr2").unwrap(),
                &Shape::default(),
                &recorded,
            )
            .unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn api_access_comes_from_flags_then_the_file_then_the_record() {
        let s = settings(
            r#"
            api_auth = "api-key"
            [env.pr1]
            api_allow = ["10.0.0.0/8"]
            "#,
        );
        let pr1 = EnvName::parse("pr1").unwrap();
        let spec = s.spec(&pr1, &Shape::default(), &BTreeMap::new()).unwrap();
        assert_eq!(spec.api.to_string(), "api-key,10.0.0.0/8");
        // Each on its own: the flag changes the mode, the list stays.
        let flags = Shape {
            api_auth: Some(ApiAuth::Iam),
            ..Shape::default()
        };
        let spec = s.spec(&pr1, &flags, &BTreeMap::new()).unwrap();
        assert_eq!(spec.api.to_string(), "iam,10.0.0.0/8");
        // Recorded, it comes back without file or flags; `any` clears the list.
        let recorded = record_spec(&spec);
        let again = settings("")
            .spec(&pr1, &Shape::default(), &recorded)
            .unwrap();
        assert_eq!(again.api, spec.api);
        let flags = Shape {
            api_allow: vec!["any".into()],
            ..Shape::default()
        };
        let cleared = settings("").spec(&pr1, &flags, &recorded).unwrap();
        assert_eq!(cleared.api.to_string(), "iam");
        // Accounts need signed calls.
        let flags = Shape {
            api_auth: Some(ApiAuth::ApiKey),
            api_allow: vec!["111122223333".into()],
            ..Shape::default()
        };
        let err = settings("").spec(&pr1, &flags, &recorded).unwrap_err();
        assert!(err.to_string().contains("--api-auth iam"), "{err}");
    }

    #[test]
    fn a_bad_api_caller_in_the_file_is_refused_on_reading_it() {
        let file: FileConfig = toml::from_str("[env.pr1]\napi_allow = [\"0.0.0.0/0\"]").unwrap();
        let err = file.check_api_access("payops.toml").unwrap_err();
        assert!(
            err.to_string().contains("env.pr1.api_allow") && err.to_string().contains("/0"),
            "{err}"
        );
    }

    #[test]
    fn alert_emails_come_from_flags_then_the_file_then_the_record() {
        let s = settings(
            r#"
            alert_emails = ["ops@example.com"]
            [env.pr1]
            alert_emails = []
            "#,
        );
        let pr1 = EnvName::parse("pr1").unwrap();
        let pr2 = EnvName::parse("pr2").unwrap();
        let none = BTreeMap::new();
        // An empty list in the file means no subscriptions at all.
        assert_eq!(
            s.spec(&pr1, &Shape::default(), &none).unwrap().alert_emails,
            Some(vec![])
        );
        let spec = s.spec(&pr2, &Shape::default(), &none).unwrap();
        assert_eq!(spec.alert_emails, Some(vec!["ops@example.com".to_owned()]));
        let flags = Shape {
            alert_email: vec!["b@example.com".into(), "a@example.com".into()],
            ..Shape::default()
        };
        let spec = s.spec(&pr2, &flags, &none).unwrap();
        assert_eq!(
            spec.alert_emails,
            Some(vec!["a@example.com".to_owned(), "b@example.com".to_owned()])
        );
        // Recorded by `up`, read back the same; never configured stays None.
        let again = settings("").spec(&pr2, &Shape::default(), &record_spec(&spec));
        assert_eq!(again.unwrap().alert_emails, spec.alert_emails);
        let empty = EnvSpec {
            alert_emails: Some(vec![]),
            ..EnvSpec::default()
        };
        let again = settings("").spec(&pr2, &Shape::default(), &record_spec(&empty));
        assert_eq!(again.unwrap().alert_emails, Some(vec![]));
        assert_eq!(
            settings("")
                .spec(&pr2, &Shape::default(), &none)
                .unwrap()
                .alert_emails,
            None
        );
    }

    #[test]
    fn a_bad_alert_email_in_the_file_is_refused_on_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payops.toml");
        std::fs::write(
            &path,
            "[env.pr1]\nalert_emails = [\"ops@example.com\", \"nobody\"]\n",
        )
        .unwrap();
        let err = FileConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("env.pr1.alert_emails"), "{err}");
        assert!(err.contains("invalid alert email \"nobody\""), "{err}");
    }

    #[test]
    fn never_destroy_lists_env_names_at_the_top_level_only() {
        let s = settings(r#"never_destroy = ["prod", "staging"]"#);
        let names: Vec<String> = s
            .file
            .never_destroy()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["prod", "staging"]);
        assert!(settings("").file.never_destroy().is_empty());
        // A per-env table has no business naming the fleet's blocklist.
        assert!(toml::from_str::<FileConfig>("[env.pr1]\nnever_destroy = [\"x\"]").is_err());
    }

    #[test]
    fn a_bad_never_destroy_name_is_refused_on_reading_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payops.toml");
        std::fs::write(&path, "never_destroy = [\"prod\", \"Staging\"]\n").unwrap();
        let err = FileConfig::load(Some(&path)).unwrap_err();
        assert!(matches!(err, SettingsError::Value { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("never_destroy"), "{err}");
        assert!(err.contains("\"Staging\""), "{err}");
        std::fs::write(&path, "never_destroy = \"prod\"\n").unwrap();
        assert!(
            FileConfig::load(Some(&path)).is_err(),
            "a list, not a string"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        assert!(toml::from_str::<FileConfig>("natt = \"single\"").is_err());
    }
}
