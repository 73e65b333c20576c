//! The desired shape of one env: what `up` converges to and `status` compares
//! against. Pure data and arithmetic, no AWS calls.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

mod api_access;
pub use api_access::{ApiAccess, ApiAuth, ApiCaller, api_allow};

/// Every env spans this many availability zones.
pub const AZ_COUNT: usize = 3;

/// Labels of AZ slots in names and step ids (`nat-gateway:a`). The actual AZ
/// names are discovered at run time.
pub const AZ_LABELS: [&str; AZ_COUNT] = ["a", "b", "c"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NatMode {
    /// One NAT gateway per AZ: an AZ outage does not cut the others off.
    #[default]
    PerAz,
    /// One NAT gateway for all AZs: cheaper, for short-lived envs.
    Single,
}

impl NatMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerAz => "per-az",
            Self::Single => "single",
        }
    }

    /// Index of the NAT gateway that AZ slot `az` routes through.
    pub fn nat_for(self, az: usize) -> usize {
        match self {
            Self::PerAz => az,
            Self::Single => 0,
        }
    }

    pub fn wants_nat(self, az: usize) -> bool {
        self.nat_for(az) == az
    }
}

impl FromStr for NatMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "per-az" => Ok(Self::PerAz),
            "single" => Ok(Self::Single),
            other => Err(format!("unknown NAT mode {other:?} (per-az or single)")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Public,
    Private,
    Database,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Public, Tier::Private, Tier::Database];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Database => "database",
        }
    }

    fn index(self) -> u32 {
        match self {
            Self::Public => 0,
            Self::Private => 1,
            Self::Database => 2,
        }
    }
}

/// An IPv4 CIDR block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: u32,
    prefix: u8,
}

impl Cidr {
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// The subnet of `tier` in AZ slot `az`: the VPC is cut into 16 equal
    /// blocks (prefix + 4) and the 9 subnets take the first 9, tier by tier,
    /// so the layout is fixed by the VPC CIDR alone.
    pub fn subnet(self, tier: Tier, az: usize) -> Cidr {
        let prefix = self.prefix + 4;
        let index = tier.index() * AZ_COUNT as u32 + az as u32;
        Cidr {
            addr: self.addr | (index << (32 - prefix)),
            prefix,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "invalid VPC CIDR {s:?}: {why} (e.g. 10.0.0.0/16; /16 to /24, so that 9 subnets of prefix+4 fit)"
            )
        };
        let (ip, prefix) = s.split_once('/').ok_or_else(|| bad("missing /prefix"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("prefix is not a number"))?;
        // AWS allows /16-/28 VPCs; subnets are prefix+4 and must be /28 or larger.
        if !(16..=24).contains(&prefix) {
            return Err(bad("prefix out of range"));
        }
        let addr = u32::from(ip);
        if addr & (u32::MAX >> prefix) != 0 {
            return Err(bad("host bits are set"));
        }
        Ok(Cidr { addr, prefix })
    }
}

/// Reserved concurrency of each payment function. Reserving guarantees the
/// function can scale to it and caps it there (a runaway client cannot eat
/// the account's whole pool); AWS keeps at least 100 executions of the
/// account's pool unreserved (all of them when its limit is 100 or less) and
/// refuses reservations beyond that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concurrency {
    pub validation: u32,
    pub fraud: u32,
    pub transaction: u32,
    pub reserve: Reserve,
}

/// Whether the payment functions reserve concurrency at all. New accounts
/// have a limit of 10 executions and cannot reserve any: `auto` and `none`
/// let such an account run the env, sharing the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reserve {
    /// The numbers, or `up` refuses before creating anything (the default).
    #[default]
    Always,
    /// `auto`: the numbers when the account can hold them, else none.
    IfItFits,
    /// `none`: no reservations; existing ones are removed.
    Never,
}

impl Concurrency {
    /// AWS's per-function ceiling is the account's limit (1000 by default).
    pub const MAX: u32 = 1000;
    pub const NAMES: [&str; 3] = ["validation", "fraud", "transaction"];

    pub fn total(self) -> u32 {
        self.validation + self.fraud + self.transaction
    }
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            validation: 5,
            fraud: 5,
            transaction: 10,
            reserve: Reserve::Always,
        }
    }
}

impl fmt::Display for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reserve {
            Reserve::IfItFits => return f.write_str("auto"),
            Reserve::Never => return f.write_str("none"),
            Reserve::Always => {}
        }
        write!(
            f,
            "validation={},fraud={},transaction={}",
            self.validation, self.fraud, self.transaction
        )
    }
}

impl FromStr for Concurrency {
    type Err = String;
    /// `N` (every function), `validation=N,fraud=N,transaction=N` (any of
    /// them; the others keep their defaults), `auto` (the defaults if the
    /// account can hold them, else none) or `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| {
            format!(
                "invalid reserved concurrency {s:?}: {why} (e.g. 10, \
                 validation=5,fraud=5,transaction=20, auto or none; each 1-{})",
                Self::MAX
            )
        };
        match s.trim() {
            "auto" => {
                return Ok(Self {
                    reserve: Reserve::IfItFits,
                    ..Self::default()
                });
            }
            "none" => {
                return Ok(Self {
                    reserve: Reserve::Never,
                    ..Self::default()
                });
            }
            _ => {}
        }
        let number = |v: &str| -> Result<u32, String> {
            match v.trim().parse::<u32>() {
                Ok(n) if (1..=Self::MAX).contains(&n) => Ok(n),
                _ => Err(bad(format!(
                    "{:?} is not a number from 1 to {}",
                    v.trim(),
                    Self::MAX
                ))),
            }
        };
        if !s.contains('=') {
            let n = number(s)?;
            return Ok(Self {
                validation: n,
                fraud: n,
                transaction: n,
                reserve: Reserve::Always,
            });
        }
        let mut c = Self::default();
        for part in s.split(',') {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not FUNCTION=N")))?;
            let n = number(value)?;
            match name.trim() {
                "validation" => c.validation = n,
                "fraud" => c.fraud = n,
                "transaction" => c.transaction = n,
                other => {
                    return Err(bad(format!(
                        "unknown function {other:?} (validation, fraud or transaction)"
                    )));
                }
            }
        }
        Ok(c)
    }
}

/// Where the internal ALB's TLS certificate comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Certificate {
    /// payops generates one, imports it into ACM, tags it and removes it on
    /// `down` (fine behind the NLB; API Gateway skips verifying it).
    #[default]
    SelfSigned,
    /// An ACM certificate the operator owns (e.g. for a private domain);
    /// payops uses it and never modifies or deletes it.
    Acm(String),
}

impl Certificate {
    pub fn arn(&self) -> Option<&str> {
        match self {
            Self::SelfSigned => None,
            Self::Acm(arn) => Some(arn),
        }
    }
}

impl fmt::Display for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arn().unwrap_or("self-signed"))
    }
}

impl FromStr for Certificate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "self-signed" {
            return Ok(Self::SelfSigned);
        }
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "acm"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && parts[5].starts_with("certificate/");
        if ok {
            Ok(Self::Acm(s.to_owned()))
        } else {
            Err(format!(
                "invalid certificate {s:?}: expected an ACM certificate ARN \
                 (arn:aws:acm:<region>:<account>:certificate/<id>) or self-signed"
            ))
        }
    }
}

/// The Aurora PostgreSQL cluster's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    /// Full aurora-postgresql version, e.g. `16.6`; its major picks the
    /// parameter group family (`aurora-postgresql16`).
    pub engine_version: String,
    pub instance_class: String,
    /// Readers beside the writer, spread over the AZs.
    pub readers: u8,
    /// Days of automated backups (AWS allows 1-35).
    pub backup_days: u8,
    /// `--db-capacity MIN-MAX`: Aurora Serverless v2. The cluster gets this
    /// scaling configuration and every instance is `db.serverless`;
    /// `instance_class` is then only what `--db-capacity off` returns to.
    pub capacity: Option<Capacity>,
}

impl Database {
    /// payops registers a step per instance slot (the widest graph is what
    /// `down` walks), so the reader count has a ceiling of its own, well
    /// under Aurora's 15.
    pub const MAX_READERS: u8 = 4;

    /// `16` of `16.6`.
    pub fn major(&self) -> &str {
        self.engine_version
            .split('.')
            .next()
            .unwrap_or(&self.engine_version)
    }

    pub fn instances(&self) -> usize {
        1 + usize::from(self.readers)
    }

    /// The class every instance has: `db.serverless` with a capacity.
    pub fn effective_class(&self) -> &str {
        if self.capacity.is_some() {
            SERVERLESS_CLASS
        } else {
            &self.instance_class
        }
    }

    /// The rules that span settings: `db.serverless` only with a capacity
    /// (AWS refuses a Serverless v2 instance in a cluster without a scaling
    /// configuration: InvalidDBClusterStateFault "Set the Serverless v2
    /// scaling configuration on the parent DB cluster before creating a
    /// Serverless v2 DB instance", after the cluster and its network were
    /// made), and a capacity the engine version can have.
    pub fn check(&self) -> Result<(), String> {
        match &self.capacity {
            None if self.instance_class == SERVERLESS_CLASS => Err(
                "db.serverless (Aurora Serverless v2) needs a capacity range: give --db-capacity \
                 MIN-MAX (db_capacity in payops.toml, e.g. 0.5-4), or a provisioned \
                 --db-instance-class such as db.t4g.medium or db.r6g.large"
                    .into(),
            ),
            None => Ok(()),
            Some(c) => c.check_engine(&self.engine_version),
        }
    }
}

/// The instance class of Aurora Serverless v2.
pub const SERVERLESS_CLASS: &str = "db.serverless";

/// An Aurora Serverless v2 capacity range in ACUs (1 ACU is about 2 GiB of
/// memory with its CPU and network), kept in half ACUs: AWS takes steps of
/// 0.5 only (API reference, ServerlessV2ScalingConfiguration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    min_halves: u16,
    max_halves: u16,
}

impl Capacity {
    /// AWS's ceiling on recent engine versions (128 on older ones).
    pub const MAX_ACUS: u16 = 256;
    /// Older engine versions stop here.
    pub const OLD_MAX_ACUS: u16 = 128;

    /// The default of a new env: see README ("Aurora capacity").
    pub const DEFAULT: Capacity = Capacity {
        min_halves: 1,
        max_halves: 8,
    };

    pub fn min(self) -> f64 {
        f64::from(self.min_halves) / 2.0
    }

    pub fn max(self) -> f64 {
        f64::from(self.max_halves) / 2.0
    }

    /// Whether the instances may pause at 0 ACUs.
    pub fn pauses(self) -> bool {
        self.min_halves == 0
    }

    /// Whether AWS's answer (doubles) is this range.
    pub fn matches(self, min: Option<f64>, max: Option<f64>) -> bool {
        min == Some(self.min()) && max == Some(self.max())
    }

    /// The range the engine version can have. AWS publishes it per version
    /// (DescribeDBEngineVersions ServerlessV2FeaturesSupport, which the
    /// preflight reads); this is the documented table, so that a range no
    /// version of the line can have is refused before any call: 0 ACUs
    /// (auto-pause) from aurora-postgresql 13.15, 14.12, 15.7 and 16.3; up to
    /// 256 from 13.13, 14.10, 15.5 and 16.1, 128 before.
    pub fn check_engine(self, version: &str) -> Result<(), String> {
        if self.pauses() && !at_least(version, &[(13, 15), (14, 12), (15, 7), (16, 3)]) {
            return Err(format!(
                "Aurora Serverless v2 capacity {self}: a minimum of 0 ACUs (auto-pause) needs \
                 aurora-postgresql 13.15, 14.12, 15.7, 16.3 or later, not {version}: use a \
                 minimum of 0.5 or a newer --db-version"
            ));
        }
        if self.max_halves > 2 * Self::OLD_MAX_ACUS
            && !at_least(version, &[(13, 13), (14, 10), (15, 5), (16, 1)])
        {
            return Err(format!(
                "Aurora Serverless v2 capacity {self}: aurora-postgresql {version} scales to \
                 {} ACUs at most (256 needs 13.13, 14.10, 15.5, 16.1 or later)",
                Self::OLD_MAX_ACUS
            ));
        }
        Ok(())
    }
}

/// Whether `version` (MAJOR.MINOR) is at least the minor given for its
/// major; majors above every listed one qualify, below none.
fn at_least(version: &str, floors: &[(u32, u32)]) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match floors.iter().find(|(m, _)| *m == major) {
        Some((_, floor)) => minor >= *floor,
        None => floors.iter().all(|(m, _)| major > *m),
    }
}

/// `0.5-4`, as given.
impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min(), self.max())
    }
}

impl FromStr for Capacity {
    type Err = String;
    /// `MIN-MAX` in ACUs: steps of 0.5, 0 <= MIN <= MAX, 1 <= MAX <= 256
    /// (AWS: "the maximum capacity must be higher than 0.5 ACUs").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "invalid Aurora Serverless v2 capacity {s:?}: {why} (MIN-MAX in ACUs, e.g. \
                 0.5-4: steps of 0.5, MIN from 0 (auto-pause) or 0.5, MAX from 1 to {}, MIN \
                 at most MAX; or off)",
                Self::MAX_ACUS
            )
        };
        let (min, max) = s
            .trim()
            .split_once('-')
            .ok_or_else(|| bad("expected MIN-MAX"))?;
        let halves = |v: &str| -> Result<u16, String> {
            let v = v.trim();
            let n: f64 = v
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| bad(&format!("{v:?} is not a number of ACUs")))?;
            let h = n * 2.0;
            if h.fract() != 0.0 {
                return Err(bad(&format!("{v} is not a multiple of 0.5")));
            }
            if h > f64::from(2 * Self::MAX_ACUS) {
                return Err(bad(&format!("{v} is above {} ACUs", Self::MAX_ACUS)));
            }
            Ok(h as u16)
        };
        let (min_halves, max_halves) = (halves(min)?, halves(max)?);
        if max_halves < 2 {
            return Err(bad("MAX must be at least 1 ACU"));
        }
        if min_halves > max_halves {
            return Err(bad("MIN is above MAX"));
        }
        Ok(Self {
            min_halves,
            max_halves,
        })
    }
}

/// `--db-capacity MIN-MAX|off`: `None` is off (provisioned instances).
pub fn parse_capacity(s: &str) -> Result<Option<Capacity>, String> {
    match s.trim() {
        "off" => Ok(None),
        other => other.parse().map(Some),
    }
}

/// The flag, checked as it is read and kept as given.
pub fn check_capacity(s: &str) -> Result<String, String> {
    parse_capacity(s).map(|_| s.trim().to_owned())
}

/// How state and the VPC tag record it.
pub fn capacity_str(c: Option<Capacity>) -> String {
    c.map_or_else(|| "off".to_owned(), |c| c.to_string())
}

impl Default for Database {
    fn default() -> Self {
        Self {
            engine_version: "16.6".into(),
            instance_class: "db.r6g.large".into(),
            readers: 2,
            backup_days: 7,
            capacity: Some(Capacity::DEFAULT),
        }
    }
}

impl fmt::Display for Database {
    /// Spaces, not commas: what every tagging API accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "version={} class={} readers={} backup-days={} capacity={}",
            self.engine_version,
            self.instance_class,
            self.readers,
            self.backup_days,
            capacity_str(self.capacity)
        )
    }
}

impl FromStr for Database {
    type Err = String;
    /// `key=value` pairs separated by spaces or commas; missing keys keep
    /// their defaults. Also what the flags are checked through.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A record without `capacity` predates Serverless v2 in payops,
        // which refused db.serverless then: its instances are provisioned.
        let mut d = Self {
            capacity: None,
            ..Self::default()
        };
        for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid database setting {part:?}: expected KEY=VALUE"))?;
            match key {
                "version" => d.engine_version = parse_engine_version(value)?,
                "class" => d.instance_class = parse_instance_class(value)?,
                "readers" => d.readers = parse_readers(value)?,
                "backup-days" => d.backup_days = parse_backup_days(value)?,
                "capacity" => d.capacity = parse_capacity(value)?,
                other => return Err(format!("unknown database setting {other:?}")),
            }
        }
        Ok(d)
    }
}

/// `16.6`: aurora-postgresql versions are MAJOR.MINOR (13 and later).
pub fn parse_engine_version(s: &str) -> Result<String, String> {
    let ok = match s.split_once('.') {
        Some((major, minor)) => {
            major.parse::<u32>().is_ok_and(|m| m >= 13)
                && !minor.is_empty()
                && minor.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    };
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid Aurora PostgreSQL version {s:?}: expected MAJOR.MINOR, 13 or later \
             (e.g. 16.6; `aws rds describe-db-engine-versions --engine aurora-postgresql` lists them)"
        ))
    }
}

/// A class: `db.r6g.large`, `db.t4g.medium`, or `db.serverless`, which
/// [`Database::check`] accepts only with a capacity.
pub fn parse_instance_class(s: &str) -> Result<String, String> {
    if s == SERVERLESS_CLASS {
        return Ok(s.to_owned());
    }
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.first() == Some(&"db")
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid DB instance class {s:?}: expected e.g. db.r6g.large or db.t4g.medium"
        ))
    }
}

pub fn parse_readers(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(n) if n <= Database::MAX_READERS => Ok(n),
        _ => Err(format!(
            "invalid reader count {s:?}: 0 to {} readers beside the writer",
            Database::MAX_READERS
        )),
    }
}

pub fn parse_backup_days(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(n) if (1..=35).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid backup retention {s:?}: Aurora keeps automated backups 1 to 35 days"
        )),
    }
}

/// Where the cluster's master credentials come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DbSecret {
    /// payops generates the password, keeps it in a Secrets Manager secret
    /// of its own (rotated every 30 days) and force-deletes it on `down`.
    #[default]
    Generated,
    /// The operator's secret (JSON with username and password): payops
    /// creates the cluster from it and never modifies, rotates or deletes it.
    Existing(String),
}

impl DbSecret {
    pub fn arn(&self) -> Option<&str> {
        match self {
            Self::Generated => None,
            Self::Existing(arn) => Some(arn),
        }
    }
}

impl fmt::Display for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arn().unwrap_or("generated"))
    }
}

impl FromStr for DbSecret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "generated" {
            return Ok(Self::Generated);
        }
        let parts: Vec<&str> = s.splitn(7, ':').collect();
        let ok = parts.len() == 7
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "secretsmanager"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && parts[5] == "secret"
            && !parts[6].is_empty();
        if ok {
            Ok(Self::Existing(s.to_owned()))
        } else {
            Err(format!(
                "invalid secret {s:?}: expected a Secrets Manager secret ARN \
                 (arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
            ))
        }
    }
}

/// The web ACL's settings a person may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waf {
    /// Requests per IP per 5 minutes before the rate rule blocks it.
    pub rate_limit: u32,
    /// ISO 3166-1 alpha-2 codes whose requests are blocked (empty: no
    /// geographic rule at all).
    pub block_countries: Vec<String>,
}

impl Waf {
    /// The ceiling: at most 1000 requests per IP per 5 minutes.
    pub const MAX_RATE_LIMIT: u32 = 1000;
    /// AWS's floor for a rate-based rule (API reference, RateBasedStatement:
    /// Limit 10 to 2,000,000,000; older docs said 100).
    pub const MIN_RATE_LIMIT: u32 = 10;
}

impl Default for Waf {
    fn default() -> Self {
        Self {
            rate_limit: Self::MAX_RATE_LIMIT,
            block_countries: Vec::new(),
        }
    }
}

/// Recorded in state as `rate-limit=N block-countries=CC,CC`.
impl fmt::Display for Waf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate-limit={} block-countries={}",
            self.rate_limit,
            self.block_countries.join(",")
        )
    }
}

impl FromStr for Waf {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut waf = Self::default();
        for part in s.split_whitespace() {
            match part.split_once('=') {
                Some(("rate-limit", v)) => waf.rate_limit = parse_waf_rate_limit(v)?,
                Some(("block-countries", v)) => {
                    waf.block_countries = waf_block_countries(&v.split(',').collect::<Vec<_>>())?
                }
                _ => return Err(format!("invalid WAF settings {s:?}")),
            }
        }
        Ok(waf)
    }
}

/// `--events on|off` and `events = true|false` (and what state and the VPC
/// tag record: `on`/`off`).
pub fn parse_events(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("invalid events setting {s:?}: expected on or off")),
    }
}

/// How state and the VPC tag record the events setting.
pub fn events_str(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The batch tier (`--batch`, `--batch-capacity`, `--batch-instance-type`):
/// an Auto Scaling group of Graviton instances that runs the nightly
/// settlement report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub on: bool,
    pub min: u32,
    pub desired: u32,
    pub max: u32,
    /// An arm64 (Graviton) type: the template's AMI is the arm64 one.
    pub instance_type: String,
}

impl Batch {
    /// Off for a new env: a PR env rarely needs the nightly report, and the
    /// tier's customer-managed key and group are left out of a cheap env.
    pub const DEFAULT_ON: bool = false;
    /// The most instances `--batch-capacity` may ask for (a report needs one).
    pub const MAX_INSTANCES: u32 = 10;
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            on: Self::DEFAULT_ON,
            min: 0,
            desired: 0,
            max: 2,
            instance_type: "t4g.small".into(),
        }
    }
}

/// `--batch-capacity MIN-DESIRED-MAX` (`0-1-2`): MIN <= DESIRED <= MAX <= 10.
pub fn parse_batch_capacity(s: &str) -> Result<(u32, u32, u32), String> {
    let bad = || {
        format!(
            "invalid batch capacity {s:?}: expected MIN-DESIRED-MAX with MIN <= DESIRED <= MAX <= {}",
            Batch::MAX_INSTANCES
        )
    };
    let parts: Vec<u32> = s
        .trim()
        .split('-')
        .map(|p| p.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [min, desired, max] if min <= desired && desired <= max && max <= Batch::MAX_INSTANCES => {
            Ok((min, desired, max))
        }
        _ => Err(bad()),
    }
}

/// `--batch-instance-type`: a Graviton (arm64) type such as `t4g.small` or
/// `m7g.large`, since the template's AMI is Amazon Linux for arm64; an x86
/// type would fail every launch.
pub fn parse_batch_instance_type(s: &str) -> Result<String, String> {
    let s = s.trim().to_ascii_lowercase();
    // Graviton families have a `g` after the generation digit: t4g, m7gd,
    // c6gn, im4gn (m7i, m7a, g5 do not).
    let graviton = s.split_once('.').is_some_and(|(family, size)| {
        !size.is_empty()
            && family.chars().all(|c| c.is_ascii_alphanumeric())
            && family
                .find(|c: char| c.is_ascii_digit())
                .is_some_and(|i| family[i..].contains('g'))
    });
    if graviton {
        Ok(s)
    } else {
        Err(format!(
            "invalid batch instance type {s:?}: expected a Graviton (arm64) type such as t4g.small"
        ))
    }
}

impl fmt::Display for Batch {
    /// `on,t4g.small,0-0-2`: what state records (the VPC tag with spaces).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{}-{}-{}",
            events_str(self.on),
            self.instance_type,
            self.min,
            self.desired,
            self.max
        )
    }
}

impl std::str::FromStr for Batch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([',', ' ']).collect();
        let [on, instance_type, capacity] = parts[..] else {
            return Err(format!("invalid recorded batch setting {s:?}"));
        };
        let (min, desired, max) = parse_batch_capacity(capacity)?;
        Ok(Self {
            on: parse_events(on)?,
            instance_type: parse_batch_instance_type(instance_type)?,
            min,
            desired,
            max,
        })
    }
}

/// `--dns on|off` and `dns = true|false` (recorded `on`/`off`, like events).
pub fn parse_dns(s: &str) -> Result<bool, String> {
    parse_events(s).map_err(|_| format!("invalid dns setting {s:?}: expected on or off"))
}

pub fn parse_waf_rate_limit(s: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (Waf::MIN_RATE_LIMIT..=Waf::MAX_RATE_LIMIT).contains(n))
        .ok_or_else(|| {
            format!(
                "invalid WAF rate limit {s:?}: {} to {} requests per IP per 5 minutes",
                Waf::MIN_RATE_LIMIT,
                Waf::MAX_RATE_LIMIT
            )
        })
}

/// Two-letter country codes, upper-cased, deduplicated and sorted (so the
/// order of flags or file entries changes nothing); empty entries are
/// skipped, so `--waf-block-countries ""` means none. Whether AWS knows a
/// code is checked against the SDK's list when the rules are built.
pub fn waf_block_countries<S: AsRef<str>>(list: &[S]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in list.iter().flat_map(|i| i.as_ref().split(',')) {
        let code = item.trim().to_ascii_uppercase();
        if code.is_empty() {
            continue;
        }
        if code.len() != 2 || !code.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "invalid country code {item:?}: expected an ISO 3166-1 alpha-2 code such as CN"
            ));
        }
        out.push(code);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvSpec {
    pub vpc_cidr: Cidr,
    pub nat: NatMode,
    pub cost_center: String,
    pub certificate: Certificate,
    pub concurrency: Concurrency,
    /// `up --protect`: tag the env so `destroy-all` never removes it (`None`:
    /// leave the tag as it is).
    pub protect: Option<bool>,
    pub database: Database,
    pub db_secret: DbSecret,
    /// `down --final-snapshot`: keep a snapshot of the cluster (tagged) when
    /// it is deleted. Only `down` sets it.
    pub final_snapshot: bool,
    /// `--alert-email`: the email subscriptions of the alarm topics. `None`:
    /// never configured, payops leaves the topics' email subscriptions alone;
    /// `Some` (even empty): exactly these addresses.
    pub alert_emails: Option<Vec<String>>,
    /// `--api-auth` and `--api-allow`: who may call the payments API.
    pub api: ApiAccess,
    /// `--waf-rate-limit`, `--waf-block-countries`.
    pub waf: Waf,
    /// The zone IDs an earlier `up` chose (recorded, never a flag): kept so
    /// that the env stays in the same zones. Empty: payops chooses.
    pub zone_ids: Vec<String>,
    /// `--events on|off`: the event backbone (SQS queues with their
    /// dead-letter queues and alarms). Off leaves it out of a cheap PR env.
    pub events: bool,
    /// `--batch on|off` and its capacity and instance type.
    pub batch: Batch,
    /// `--dns on|off`: the env's private Route 53 zone with the payments
    /// failover records, their health checks and alarms, and the
    /// maintenance ALB they fail over to. Off leaves them out of a cheap PR
    /// env.
    pub dns: bool,
}

impl Default for EnvSpec {
    fn default() -> Self {
        Self {
            vpc_cidr: "10.0.0.0/16".parse().expect("valid default"),
            nat: NatMode::PerAz,
            cost_center: "payments".into(),
            certificate: Certificate::SelfSigned,
            concurrency: Concurrency::default(),
            protect: None,
            database: Database::default(),
            db_secret: DbSecret::Generated,
            final_snapshot: false,
            alert_emails: None,
            api: ApiAccess::default(),
            waf: Waf::default(),
            zone_ids: Vec::new(),
            events: true,
            batch: Batch::default(),
            // Off until the DNS steps have run on both emulators in CI
            // (issue 20): `--dns on` (or `dns = true`) turns them on.
            dns: false,
        }
    }
}

/// Longest email address SMTP can deliver to (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

/// Checks an alert email address before any AWS call: SNS would accept a
/// malformed one and send its confirmation nowhere. Deliberately plain:
/// `local@domain.tld`, no spaces, no display names, no IP literals.
pub fn parse_alert_email(s: &str) -> Result<String, String> {
    let s = s.trim();
    let bad = |why: &str| {
        Err(format!(
            "invalid alert email {s:?}: {why} (expected an address such as oncall@example.com)"
        ))
    };
    if s.is_empty() {
        return bad("it is empty");
    }
    if s.len() > MAX_EMAIL_LEN {
        return bad("it is longer than 254 characters");
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return bad("it has no @");
    };
    if local.is_empty() || local.len() > 64 {
        return bad("the part before @ must be 1-64 characters");
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return bad("the part before @ has a character an address cannot have");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    if !domain_ok {
        return bad("the domain must be a DNS name such as example.com");
    }
    Ok(s.to_owned())
}

/// Validated, without duplicates (addresses compare case-insensitively),
/// sorted: the order of flags or file entries changes nothing.
pub fn alert_emails<S: AsRef<str>>(list: &[S]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in list {
        let email = parse_alert_email(item.as_ref())?;
        if !out.iter().any(|e| e.eq_ignore_ascii_case(&email)) {
            out.push(email);
        }
    }
    out.sort_by_key(|e| e.to_ascii_lowercase());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serverless_needs_a_capacity_and_provisioned_classes_do_not() {
        assert_eq!(
            parse_instance_class("db.r6g.large").as_deref(),
            Ok("db.r6g.large")
        );
        assert!(parse_instance_class("db.large").is_err());
        let mut d = Database {
            instance_class: SERVERLESS_CLASS.into(),
            capacity: None,
            ..Database::default()
        };
        let err = d.check().unwrap_err();
        assert!(
            err.contains("Serverless v2") && err.contains("--db-capacity"),
            "{err}"
        );
        d.capacity = Some("0.5-4".parse().unwrap());
        assert_eq!(d.check(), Ok(()));
        assert_eq!(d.effective_class(), SERVERLESS_CLASS);
        // A capacity makes every instance db.serverless whatever the class.
        d.instance_class = "db.r6g.large".into();
        assert_eq!(d.effective_class(), SERVERLESS_CLASS);
        d.capacity = None;
        assert_eq!(d.effective_class(), "db.r6g.large");
    }

    #[test]
    fn capacity_follows_aws_bounds_and_half_acu_steps() {
        for (text, min, max) in [
            ("0.5-4", 0.5, 4.0),
            ("0-1", 0.0, 1.0),
            ("1-256", 1.0, 256.0),
            (" 2.5 - 2.5 ", 2.5, 2.5),
            ("8-8", 8.0, 8.0),
        ] {
            let c: Capacity = text.parse().unwrap();
            assert_eq!((c.min(), c.max()), (min, max), "{text}");
            assert!(c.matches(Some(min), Some(max)));
        }
        for (bad, why) in [
            ("0.25-4", "multiple of 0.5"),
            ("0.5-4.2", "multiple of 0.5"),
            ("4-2", "MIN is above MAX"),
            ("0-0.5", "at least 1 ACU"),
            ("0.5-257", "above 256"),
            ("0.5-256.5", "above 256"),
            ("4", "expected MIN-MAX"),
            ("x-4", "not a number"),
            ("-1-4", "not a number"),
            ("0.5-inf", "not a number"),
        ] {
            let err = bad.parse::<Capacity>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(parse_capacity("off"), Ok(None));
        assert_eq!(check_capacity(" 0.5-4 ").as_deref(), Ok("0.5-4"));
        assert!(check_capacity("on").is_err());
    }

    #[test]
    fn capacity_is_checked_against_the_engine_version() {
        let pausing: Capacity = "0-4".parse().unwrap();
        for ok in ["16.3", "16.6", "15.7", "14.12", "13.15", "17.1"] {
            assert_eq!(pausing.check_engine(ok), Ok(()), "{ok}");
        }
        for old in ["16.2", "15.6", "14.11", "13.14"] {
            let err = pausing.check_engine(old).unwrap_err();
            assert!(
                err.contains("0 ACUs") && err.contains("0.5"),
                "{old}: {err}"
            );
        }
        let big: Capacity = "0.5-256".parse().unwrap();
        assert_eq!(big.check_engine("16.1"), Ok(()));
        assert_eq!(big.check_engine("13.13"), Ok(()));
        let err = big.check_engine("15.4").unwrap_err();
        assert!(err.contains("128 ACUs"), "{err}");
        let ok: Capacity = "0.5-128".parse().unwrap();
        assert_eq!(ok.check_engine("15.4"), Ok(()));
        // The default works with the default engine.
        assert_eq!(Database::default().check(), Ok(()));
    }

    #[test]
    fn the_record_keeps_the_capacity_and_an_old_record_is_provisioned() {
        let d = Database::default();
        assert_eq!(d.capacity, Some(Capacity::DEFAULT));
        assert_eq!(
            d.to_string(),
            "version=16.6 class=db.r6g.large readers=2 backup-days=7 capacity=0.5-4"
        );
        assert_eq!(d.to_string().parse::<Database>(), Ok(d.clone()));
        let off = Database {
            capacity: None,
            ..d
        };
        assert_eq!(off.to_string().parse::<Database>(), Ok(off.clone()));
        // What payops recorded before Serverless v2: provisioned instances.
        let old: Database = "version=16.6 class=db.r6g.large readers=2 backup-days=7"
            .parse()
            .unwrap();
        assert_eq!(old.capacity, None);
        // The VPC tag (spaces become commas on the way back).
        let tagged: Database = "version=16.6,class=db.r6g.large,readers=2,capacity=0-8"
            .parse()
            .unwrap();
        assert_eq!(
            tagged.capacity.map(|c| c.to_string()).as_deref(),
            Some("0-8")
        );
    }

    #[test]
    fn subnets_are_laid_out_by_tier_then_az() {
        let vpc: Cidr = "10.0.0.0/16".parse().unwrap();
        assert_eq!(vpc.subnet(Tier::Public, 0).to_string(), "10.0.0.0/20");
        assert_eq!(vpc.subnet(Tier::Public, 2).to_string(), "10.0.32.0/20");
        assert_eq!(vpc.subnet(Tier::Private, 0).to_string(), "10.0.48.0/20");
        assert_eq!(vpc.subnet(Tier::Database, 2).to_string(), "10.0.128.0/20");
        let small: Cidr = "172.16.4.0/24".parse().unwrap();
        assert_eq!(
            small.subnet(Tier::Database, 2).to_string(),
            "172.16.4.128/28"
        );
    }

    #[test]
    fn all_nine_subnets_are_distinct() {
        let vpc: Cidr = "10.1.0.0/16".parse().unwrap();
        let mut all: Vec<String> = Tier::ALL
            .iter()
            .flat_map(|&t| (0..AZ_COUNT).map(move |az| vpc.subnet(t, az).to_string()))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 9);
    }

    #[test]
    fn bad_cidrs_are_refused_with_the_rule() {
        for bad in [
            "10.0.0.0",
            "10.0.0.1/16",
            "10.0.0.0/8",
            "10.0.0.0/25",
            "x/16",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains("/16 to /24"), "{bad}: {err}");
        }
    }

    #[test]
    fn reserved_concurrency_parses_one_number_or_per_function_values() {
        let c: Concurrency = "20".parse().unwrap();
        assert_eq!((c.validation, c.fraud, c.transaction), (20, 20, 20));
        let c: Concurrency = "transaction=50, fraud=7".parse().unwrap();
        assert_eq!((c.validation, c.fraud, c.transaction), (5, 7, 50));
        assert_eq!(c.to_string().parse::<Concurrency>().unwrap(), c);
        for (text, reserve) in [("auto", Reserve::IfItFits), ("none", Reserve::Never)] {
            let c: Concurrency = text.parse().unwrap();
            assert_eq!(c.reserve, reserve);
            assert_eq!(c.to_string(), text, "recorded as the operator said it");
        }
        assert_eq!("7".parse::<Concurrency>().unwrap().reserve, Reserve::Always);
        for bad in ["0", "1001", "x", "refunds=3", "validation"] {
            let err = bad.parse::<Concurrency>().unwrap_err();
            assert!(err.contains("each 1-1000"), "{bad}: {err}");
        }
    }

    #[test]
    fn certificates_are_an_acm_arn_or_self_signed() {
        assert_eq!(
            "self-signed".parse::<Certificate>().unwrap(),
            Certificate::SelfSigned
        );
        let arn = "arn:aws:acm:eu-west-1:123456789012:certificate/abc-123";
        assert_eq!(arn.parse::<Certificate>().unwrap().arn(), Some(arn));
        for bad in [
            "",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:acm:eu-west-1:1234:certificate/x",
        ] {
            assert!(bad.parse::<Certificate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn alert_emails_are_plain_addresses_deduplicated_and_sorted() {
        assert_eq!(
            parse_alert_email(" oncall+payops@example.co.uk ").unwrap(),
            "oncall+payops@example.co.uk"
        );
        for bad in [
            "",
            "oncall",
            "@example.com",
            "oncall@",
            "oncall@localhost",
            "on call@example.com",
            "oncall@exa_mple.com",
            "oncall@-example.com",
            "Ops <ops@example.com>",
            "a..b@example.com",
            "oncall@example.c0m",
        ] {
            let err = parse_alert_email(bad).unwrap_err();
            assert!(err.contains("invalid alert email"), "{bad}: {err}");
        }
        assert_eq!(
            alert_emails(&["b@example.com", "A@example.com", "a@EXAMPLE.com"]).unwrap(),
            ["A@example.com", "b@example.com"]
        );
        assert!(alert_emails(&["ok@example.com", "nope"]).is_err());
    }

    #[test]
    fn waf_settings_are_checked_normalised_and_round_trip_through_the_record() {
        assert_eq!(parse_waf_rate_limit("1000"), Ok(1000));
        assert_eq!(parse_waf_rate_limit("10"), Ok(10));
        assert!(parse_waf_rate_limit("9").is_err(), "below AWS's floor");
        assert!(
            parse_waf_rate_limit("1001").is_err(),
            "above the issue's ceiling"
        );
        assert_eq!(
            waf_block_countries(&["ru,cn", "CN", ""]).unwrap(),
            ["CN", "RU"]
        );
        assert!(waf_block_countries(&["China"]).is_err());
        assert!(waf_block_countries(&["C1"]).is_err());
        let waf = Waf {
            rate_limit: 500,
            block_countries: vec!["CN".into(), "RU".into()],
        };
        assert_eq!(waf.to_string().parse::<Waf>(), Ok(waf));
        assert_eq!(
            Waf::default().to_string().parse::<Waf>(),
            Ok(Waf::default())
        );
        assert!("rate=5".parse::<Waf>().is_err());
    }

    #[test]
    fn single_nat_routes_every_az_through_the_first() {
        assert_eq!(NatMode::Single.nat_for(2), 0);
        assert!(!NatMode::Single.wants_nat(1));
        assert_eq!(NatMode::PerAz.nat_for(2), 2);
        assert!(NatMode::PerAz.wants_nat(2));
    }
}
