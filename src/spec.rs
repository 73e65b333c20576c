//! The desired shape of one env: what `up` converges to and `status` compares
//! against. Pure data and arithmetic, no AWS calls.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvSpec {
    pub vpc_cidr: Cidr,
    pub nat: NatMode,
    pub cost_center: String,
    /// `up --protect`: tag the env so `destroy-all` never removes it (`None`:
    /// leave the tag as it is).
    pub protect: Option<bool>,
}

impl Default for EnvSpec {
    fn default() -> Self {
        Self {
            vpc_cidr: "10.0.0.0/16".parse().expect("valid default"),
            nat: NatMode::PerAz,
            cost_center: "payments".into(),
            protect: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn single_nat_routes_every_az_through_the_first() {
        assert_eq!(NatMode::Single.nat_for(2), 0);
        assert!(!NatMode::Single.wants_nat(1));
        assert_eq!(NatMode::PerAz.nat_for(2), 2);
        assert!(NatMode::PerAz.wants_nat(2));
    }
}
