//! Elastic IPs: one per NAT gateway (three with the default `--nat per-az`),
//! against the region's quota (EC2's `vpc-max-elastic-ips`: 5 in a new
//! account) and the addresses already allocated. Only addresses this env
//! does not hold yet are new: a re-run of `up` needs none.

use aws_sdk_ec2::types::AccountAttributeName;

use crate::aws::{AwsError, OpResult};
use crate::resources::context::Context;
use crate::resources::sdk::ec2;
use crate::spec::AZ_COUNT;
use crate::tags;

use super::{Check, Quotas, quota_fits};

pub const NAME: &str = "elastic-ips";
/// Not among the SDK's named variants (those are EC2-Classic's), but EC2
/// answers it.
const ATTRIBUTE: &str = "vpc-max-elastic-ips";

/// The region's quota, from EC2 unless the operator set one.
async fn quota(cx: &Context, quotas: Quotas) -> Result<i64, AwsError> {
    if let Some(q) = quotas.elastic_ips {
        return Ok(q);
    }
    let out = cx
        .clients
        .ec2
        .describe_account_attributes()
        .attribute_names(AccountAttributeName::from(ATTRIBUTE))
        .send()
        .await
        .op("ec2:DescribeAccountAttributes")?;
    out.account_attributes()
        .iter()
        .filter(|a| a.attribute_name() == Some(ATTRIBUTE))
        .flat_map(|a| a.attribute_values())
        .find_map(|v| v.attribute_value()?.parse::<i64>().ok())
        .ok_or(AwsError::Incomplete {
            op: "ec2:DescribeAccountAttributes",
            field: "vpc-max-elastic-ips",
        })
}

/// Addresses allocated in the region, and how many of them are this env's.
async fn in_use(cx: &Context) -> Result<(i64, i64), AwsError> {
    let out = cx
        .clients
        .ec2
        .describe_addresses()
        .send()
        .await
        .op("ec2:DescribeAddresses")?;
    let ours = out
        .addresses()
        .iter()
        .filter(|a| {
            ec2::tag_map(a.tags()).get(tags::ENV).map(String::as_str) == Some(cx.env().as_str())
        })
        .count();
    Ok((out.addresses().len() as i64, ours as i64))
}

pub async fn check(cx: &Context, quotas: Quotas) -> Check {
    let needed = (0..AZ_COUNT)
        .filter(|&az| cx.spec.nat.wants_nat(az))
        .count() as i64;
    let (quota, (used, ours)) = match tokio::try_join!(quota(cx, quotas), in_use(cx)) {
        Ok(found) => found,
        Err(e) => return Check::not_checked(NAME, &e),
    };
    let new = (needed - ours).max(0);
    let found = format!(
        "{needed} needed (--nat {}), {ours} held by this env, {new} new; {used} of {quota} in use \
         in {}",
        cx.spec.nat.as_str(),
        cx.region
    );
    let numbers = [
        ("quota", quota),
        ("in_use", used),
        ("held_by_env", ours),
        ("new", new),
    ];
    let check = if quota_fits(quota, used, new) {
        Check::ok(NAME, found)
    } else {
        Check::problem(
            NAME,
            format!("{found}: the Elastic IP quota (vpc-max-elastic-ips) is {quota}"),
            "use --nat single (one address), release unused Elastic IPs or remove envs \
             (payops down / destroy-all), or request an increase of \"EC2-VPC Elastic IPs\" \
             (Service Quotas L-0263D0A3)",
        )
    };
    check.with_numbers(&numbers)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::describe_account_attributes::DescribeAccountAttributesOutput;
    use aws_sdk_ec2::operation::describe_addresses::DescribeAddressesOutput;
    use aws_sdk_ec2::types::{AccountAttribute, AccountAttributeValue, Address, Tag};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::preflight::Status;
    use crate::resources::testing;
    use crate::spec::NatMode;

    /// EC2's answer in a new account.
    fn five() -> Rule {
        mock!(Client::describe_account_attributes)
            .match_requests(|r| r.attribute_names() == [AccountAttributeName::from(ATTRIBUTE)])
            .then_output(|| {
                DescribeAccountAttributesOutput::builder()
                    .account_attributes(
                        AccountAttribute::builder()
                            .attribute_name("vpc-max-elastic-ips")
                            .attribute_values(
                                AccountAttributeValue::builder()
                                    .attribute_value("5")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            })
    }

    fn address(n: usize, env: Option<&str>) -> Address {
        let mut a = Address::builder()
            .allocation_id(format!("eipalloc-{n}"))
            .public_ip(format!("198.51.100.{n}"))
            .domain(aws_sdk_ec2::types::DomainType::Vpc);
        if let Some(env) = env {
            a = a.tags(Tag::builder().key(tags::ENV).value(env).build());
        }
        a.build()
    }

    fn addresses(list: Vec<Address>) -> Rule {
        mock!(Client::describe_addresses).then_output(move || {
            DescribeAddressesOutput::builder()
                .set_addresses(Some(list.clone()))
                .build()
        })
    }

    fn cx(rules: &[&Rule], nat: NatMode) -> Context {
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules);
        let mut cx = testing::context(clients);
        cx.spec.nat = nat;
        cx
    }

    #[tokio::test]
    async fn a_second_env_per_az_in_a_new_account_is_refused_naming_the_quota_and_remedies() {
        let (quota, used) = (
            five(),
            addresses((0..3).map(|n| address(n, Some("other"))).collect()),
        );
        let c = check(&cx(&[&quota, &used], NatMode::PerAz), Quotas::default()).await;
        assert_eq!(c.status, Status::Problem, "{}", c.line());
        assert!(c.detail.contains("3 needed"), "{}", c.detail);
        assert!(c.detail.contains("3 of 5 in use"), "{}", c.detail);
        assert!(c.detail.contains("vpc-max-elastic-ips"), "{}", c.detail);
        assert!(c.remedy.as_deref().unwrap().contains("--nat single"));
        // One address fits.
        let c = check(&cx(&[&quota, &used], NatMode::Single), Quotas::default()).await;
        assert_eq!(c.status, Status::Ok, "{}", c.line());
    }

    #[tokio::test]
    async fn a_rerun_on_an_env_that_holds_its_addresses_needs_none() {
        let (quota, used) = (
            five(),
            addresses(
                (0..2)
                    .map(|n| address(n, Some("other")))
                    .chain((2..5).map(|n| address(n, Some("pr1"))))
                    .collect(),
            ),
        );
        let c = check(&cx(&[&quota, &used], NatMode::PerAz), Quotas::default()).await;
        assert_eq!(c.status, Status::Ok, "{}", c.line());
        assert!(c.numbers.contains(&("new", 0)));
        assert!(c.numbers.contains(&("in_use", 5)));
    }

    #[tokio::test]
    async fn an_operators_quota_replaces_ec2s_answer() {
        let used = addresses((0..5).map(|n| address(n, None)).collect());
        let raised = Quotas {
            elastic_ips: Some(10),
            ..Quotas::default()
        };
        let c = check(&cx(&[&used], NatMode::PerAz), raised).await;
        assert_eq!(c.status, Status::Ok, "{}", c.line());
    }
}
