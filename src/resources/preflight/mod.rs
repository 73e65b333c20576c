//! Preflight: what an env needs of the account, checked before `up` changes
//! anything, so that a new or crowded account is refused before the first
//! create instead of half-way through. One check per file; each reads only.
//!
//! Above the domains like `inventory`: a check knows what the env will
//! create (NAT gateways, functions, the VPC) and what AWS allows.

pub mod aurora_class;
pub mod credentials;
pub mod elastic_ips;
pub mod lambda_concurrency;
pub mod vpc_quotas;
pub mod zones;

use serde::Serialize;

use crate::aws::AwsError;
use crate::resources::context::Context;

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    /// The env cannot be built as asked: `up` refuses.
    Problem,
    /// AWS did not answer the read (a permission, or an emulator without the
    /// API): said, but not a refusal, since nothing is known to be wrong.
    NotChecked,
}

/// One check's result: what was found, with its numbers, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// As a JSON object, in the order the check gives them.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "as_object")]
    pub numbers: Vec<(&'static str, i64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

fn as_object<S: serde::Serializer>(
    numbers: &[(&'static str, i64)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(numbers.len()))?;
    for (k, v) in numbers {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

impl Check {
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            numbers: Vec::new(),
            remedy: None,
        }
    }

    pub fn problem(
        name: &'static str,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self {
            name,
            status: Status::Problem,
            detail: detail.into(),
            numbers: Vec::new(),
            remedy: Some(remedy.into()),
        }
    }

    /// A read AWS refused or does not serve.
    pub fn not_checked(name: &'static str, err: &AwsError) -> Self {
        Self {
            name,
            status: Status::NotChecked,
            detail: format!("not checked: {err}"),
            numbers: Vec::new(),
            remedy: None,
        }
    }

    pub fn with_numbers(mut self, numbers: &[(&'static str, i64)]) -> Self {
        self.numbers = numbers.to_vec();
        self
    }

    /// One line: `name: ok|PROBLEM|not checked: detail[; remedy]`.
    pub fn line(&self) -> String {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Problem => "PROBLEM",
            Status::NotChecked => "not checked",
        };
        let detail = self
            .detail
            .strip_prefix("not checked: ")
            .unwrap_or(&self.detail);
        match &self.remedy {
            Some(remedy) => format!("{}: {status}: {detail}; {remedy}", self.name),
            None => format!("{}: {status}: {detail}", self.name),
        }
    }
}

/// Quotas payops cannot read without Service Quotas (a crate payops does
/// not carry): AWS's documented defaults per region, which an operator whose
/// quota was raised (or an emulator run that does not enforce quotas) sets
/// through `PAYOPS_QUOTA_VPCS`, `PAYOPS_QUOTA_INTERNET_GATEWAYS` and, over
/// EC2's own `vpc-max-elastic-ips`, `PAYOPS_QUOTA_ELASTIC_IPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    pub vpcs: i64,
    pub internet_gateways: i64,
    pub elastic_ips: Option<i64>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            vpcs: 5,
            internet_gateways: 5,
            elastic_ips: None,
        }
    }
}

impl Quotas {
    /// From `PAYOPS_QUOTA_*` as `var` answers them; a value that is not a
    /// positive number is an error naming the variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let read = |name: &str| -> Result<Option<i64>, String> {
            match var(name) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<i64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(format!("{name}={v:?} is not a positive number")),
                },
            }
        };
        let d = Self::default();
        Ok(Self {
            vpcs: read("PAYOPS_QUOTA_VPCS")?.unwrap_or(d.vpcs),
            internet_gateways: read("PAYOPS_QUOTA_INTERNET_GATEWAYS")?
                .unwrap_or(d.internet_gateways),
            elastic_ips: read("PAYOPS_QUOTA_ELASTIC_IPS")?,
        })
    }
}

/// Whether `new` more of something fit under `quota` beside the `in_use`
/// the region already has.
pub fn quota_fits(quota: i64, in_use: i64, new: i64) -> bool {
    new <= 0 || in_use + new <= quota
}

/// What the account-wide checks found, and what `up` does with it.
#[derive(Debug)]
pub struct Preflight {
    pub checks: Vec<Check>,
    /// For `--reserved-concurrency auto`: whether the reservations fit.
    pub reservations_fit: bool,
}

impl Preflight {
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Problem)
    }

    pub fn refused(&self) -> bool {
        self.problems().next().is_some()
    }
}

/// Every check that needs the env's context (credentials were proved by
/// opening it), reading only, concurrently.
pub async fn run(cx: &Context, quotas: Quotas) -> Preflight {
    let (zones, aurora, (lambda, fits), eips, vpcs, igws) = tokio::join!(
        zones::check(cx),
        aurora_class::check(cx),
        lambda_concurrency::check(cx),
        elastic_ips::check(cx, quotas),
        vpc_quotas::vpcs(cx, quotas),
        vpc_quotas::internet_gateways(cx, quotas),
    );
    Preflight {
        checks: vec![zones, aurora, lambda, eips, vpcs, igws],
        reservations_fit: fits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_holds_what_fits_beside_what_the_region_uses() {
        assert!(quota_fits(5, 2, 3));
        assert!(!quota_fits(5, 3, 3));
        // Nothing new (a re-run on an existing env) always fits, even over quota.
        assert!(quota_fits(5, 7, 0));
    }

    #[test]
    fn quotas_default_to_awss_documented_values_and_take_overrides() {
        let none = Quotas::from_vars(|_| None).unwrap();
        assert_eq!(none, Quotas::default());
        assert_eq!((none.vpcs, none.internet_gateways), (5, 5));
        let raised = Quotas::from_vars(|k| (k == "PAYOPS_QUOTA_VPCS").then(|| "20".into()));
        assert_eq!(raised.unwrap().vpcs, 20);
        let bad = Quotas::from_vars(|k| (k == "PAYOPS_QUOTA_ELASTIC_IPS").then(|| "0".into()));
        assert!(bad.unwrap_err().contains("PAYOPS_QUOTA_ELASTIC_IPS"));
    }

    #[test]
    fn in_json_the_numbers_are_an_object() {
        let c = Check::ok("elastic-ips", "fine").with_numbers(&[("quota", 5), ("in_use", 3)]);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"name":"elastic-ips","status":"ok","detail":"fine","numbers":{"quota":5,"in_use":3}}"#
        );
    }

    #[test]
    fn a_line_says_the_status_the_numbers_and_the_remedy() {
        let c = Check::problem("elastic-ips", "3 needed, 4 of 5 in use", "use --nat single");
        assert_eq!(
            c.line(),
            "elastic-ips: PROBLEM: 3 needed, 4 of 5 in use; use --nat single"
        );
        let e = AwsError::Conflict("AccessDenied".into());
        assert_eq!(
            Check::not_checked("lambda-concurrency", &e).line(),
            "lambda-concurrency: not checked: AccessDenied"
        );
    }
}
