//! Who may call the payments API, and how they prove who they are.
//!
//! Secure by default: every route needs a SigV4-signed call (`iam`) unless the
//! operator chooses API keys for callers that cannot sign. Independently, a
//! list of callers (networks, VPC endpoints, accounts) turns on a resource
//! policy that refuses everyone else before any authorization runs.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// How a caller authenticates on every payments route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ApiAuth {
    /// SigV4-signed calls by an IAM principal allowed `execute-api:Invoke`.
    #[default]
    Iam,
    /// An API key (header `x-api-key`) of the env's usage plan, which
    /// throttles and caps each key.
    ApiKey,
}

impl ApiAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iam => "iam",
            Self::ApiKey => "api-key",
        }
    }
}

impl FromStr for ApiAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iam" => Ok(Self::Iam),
            "api-key" => Ok(Self::ApiKey),
            other => Err(format!(
                "unknown API authorization {other:?} (iam or api-key)"
            )),
        }
    }
}

/// One entry of `--api-allow`: where a call may come from, or whose it may be.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiCaller {
    /// Source addresses (`aws:SourceIp`), IPv4 or IPv6.
    Network(String),
    /// An interface VPC endpoint for execute-api (`aws:SourceVpce`).
    VpcEndpoint(String),
    /// Another AWS account whose IAM principals may call (IAM auth only).
    Account(String),
}

impl fmt::Display for ApiCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(s) | Self::VpcEndpoint(s) | Self::Account(s) => f.write_str(s),
        }
    }
}

const CALLER_FORMS: &str = "a CIDR (203.0.113.0/24), a VPC endpoint id (vpce-0123456789abcdef0) \
                            or a 12-digit AWS account id";

impl FromStr for ApiCaller {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |why: &str| {
            Err(format!(
                "invalid API caller {s:?}: {why}; expected {CALLER_FORMS}"
            ))
        };
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Self::Account(s.to_owned()));
        }
        if let Some(id) = s.strip_prefix("vpce-") {
            let hex = id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            return if hex && (id.len() == 8 || id.len() == 17) {
                Ok(Self::VpcEndpoint(s.to_owned()))
            } else {
                bad("a VPC endpoint id is vpce- and 8 or 17 lowercase hex digits")
            };
        }
        let Some((addr, bits)) = s.split_once('/') else {
            return bad("not a CIDR, endpoint or account");
        };
        let (Ok(addr), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u8>()) else {
            return bad("not a CIDR");
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return bad("the prefix length is too long");
        }
        if bits == 0 {
            return bad("a /0 admits every address: leave --api-allow out instead");
        }
        Ok(Self::Network(format!("{addr}/{bits}")))
    }
}

/// What `--api-auth` and `--api-allow` ask for, together.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ApiAccess {
    pub auth: ApiAuth,
    /// Sorted, no duplicates. Empty: no resource policy.
    pub allow: Vec<ApiCaller>,
}

/// payops records the access settings in one VPC tag (as it does the rest of
/// the shape, so a fresh machine keeps them); a tag value holds 256 characters.
const MAX_RECORDED_LEN: usize = 256;

impl ApiAccess {
    /// Checks a combination: accounts can only be admitted by their signed
    /// calls, and the list must fit where payops records it.
    pub fn new(auth: ApiAuth, mut allow: Vec<ApiCaller>) -> Result<Self, String> {
        allow.sort();
        allow.dedup();
        if auth == ApiAuth::ApiKey
            && let Some(account) = allow.iter().find(|c| matches!(c, ApiCaller::Account(_)))
        {
            return Err(format!(
                "API caller {account}: an account can only be admitted with --api-auth iam (API \
                 key calls are not signed, so API Gateway cannot tell whose they are); admit its \
                 networks or VPC endpoints instead"
            ));
        }
        let access = Self { auth, allow };
        let len = access.to_string().len();
        if len > MAX_RECORDED_LEN {
            return Err(format!(
                "--api-allow lists {len} characters of callers; payops records them in a tag of \
                 at most {MAX_RECORDED_LEN}: admit wider networks or a VPC endpoint instead of \
                 many small ranges"
            ));
        }
        Ok(access)
    }

    pub fn networks(&self) -> Vec<&str> {
        self.allow
            .iter()
            .filter_map(|c| match c {
                ApiCaller::Network(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn vpc_endpoints(&self) -> Vec<&str> {
        self.allow
            .iter()
            .filter_map(|c| match c {
                ApiCaller::VpcEndpoint(v) => Some(v.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn accounts(&self) -> Vec<&str> {
        self.allow
            .iter()
            .filter_map(|c| match c {
                ApiCaller::Account(a) => Some(a.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// `iam` or `api-key`, then the callers: `iam,203.0.113.0/24,vpce-0abc12345`.
impl fmt::Display for ApiAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.auth.as_str())?;
        for c in &self.allow {
            write!(f, ",{c}")?;
        }
        Ok(())
    }
}

impl FromStr for ApiAccess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',').map(str::trim).filter(|p| !p.is_empty());
        let auth = parts.next().unwrap_or("iam").parse::<ApiAuth>()?;
        let allow = parts.map(str::parse).collect::<Result<Vec<_>, _>>()?;
        Self::new(auth, allow)
    }
}

/// `--api-allow` values (or the file's `api_allow`): `any` alone clears the list.
pub fn api_allow<S: AsRef<str>>(list: &[S]) -> Result<Vec<ApiCaller>, String> {
    if let [only] = list
        && only.as_ref().trim() == "any"
    {
        return Ok(Vec::new());
    }
    list.iter().map(|c| c.as_ref().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_networks_endpoints_or_accounts() {
        assert_eq!(
            "10.1.0.0/16".parse(),
            Ok(ApiCaller::Network("10.1.0.0/16".into()))
        );
        assert_eq!(
            "2001:db8::/32".parse(),
            Ok(ApiCaller::Network("2001:db8::/32".into()))
        );
        assert_eq!(
            "vpce-0123456789abcdef0".parse(),
            Ok(ApiCaller::VpcEndpoint("vpce-0123456789abcdef0".into()))
        );
        assert_eq!(
            "111122223333".parse(),
            Ok(ApiCaller::Account("111122223333".into()))
        );
        for bad in [
            "0.0.0.0/0",
            "10.0.0.0/33",
            "10.0.0.0",
            "vpce-XYZ",
            "1111",
            "example.com",
        ] {
            let err = bad.parse::<ApiCaller>().unwrap_err();
            assert!(err.contains("expected a CIDR"), "{bad}: {err}");
        }
    }

    #[test]
    fn api_keys_cannot_admit_an_account() {
        let err = ApiAccess::new(
            ApiAuth::ApiKey,
            vec![ApiCaller::Account("111122223333".into())],
        )
        .unwrap_err();
        assert!(err.contains("--api-auth iam"), "{err}");
        assert!(
            ApiAccess::new(
                ApiAuth::Iam,
                vec![ApiCaller::Account("111122223333".into())]
            )
            .is_ok()
        );
    }

    #[test]
    fn the_recorded_form_reads_back_as_it_was_written() {
        let access: ApiAccess = "api-key,vpce-0123456789abcdef0,10.0.0.0/8,10.0.0.0/8"
            .parse()
            .unwrap();
        assert_eq!(access.auth, ApiAuth::ApiKey);
        assert_eq!(
            access.to_string(),
            "api-key,10.0.0.0/8,vpce-0123456789abcdef0"
        );
        assert_eq!(access.to_string().parse::<ApiAccess>(), Ok(access));
        assert_eq!("iam".parse::<ApiAccess>(), Ok(ApiAccess::default()));
    }

    #[test]
    fn a_list_longer_than_its_tag_is_refused() {
        let many: Vec<ApiCaller> = (0..20)
            .map(|i| ApiCaller::Network(format!("198.51.{i}.0/24")))
            .collect();
        let err = ApiAccess::new(ApiAuth::Iam, many).unwrap_err();
        assert!(err.contains("at most 256"), "{err}");
    }

    #[test]
    fn any_alone_clears_the_list() {
        assert_eq!(api_allow(&["any"]), Ok(vec![]));
        assert!(api_allow(&["any", "10.0.0.0/8"]).is_err());
    }
}
