//! VPCs and internet gateways per region: an env needs one of each. The
//! quotas are Service Quotas values payops does not read (no such client):
//! AWS's documented default of 5 per region is assumed, and said, unless the
//! operator sets the raised value (`Quotas`). The region's default VPC and its
//! gateway count like any other.

use aws_sdk_ec2::types::Tag;

use crate::aws::{AwsError, OpResult};
use crate::resources::context::Context;
use crate::resources::sdk::ec2;
use crate::tags;

use super::{Check, Quotas, quota_fits};

/// How many exist in the region, and whether one is this env's (`step`).
fn count(cx: &Context, all: &[&[Tag]], step: &str) -> (i64, bool) {
    let ours = all.iter().any(|t| {
        let t = ec2::tag_map(t);
        t.get(tags::ENV).map(String::as_str) == Some(cx.env().as_str())
            && t.get(tags::STEP).map(String::as_str) == Some(step)
    });
    (all.len() as i64, ours)
}

/// The verdict for one kind: `quota` (a default unless `raised`), `used`,
/// and 1 new unless the env has its own already.
fn verdict(
    name: &'static str,
    what: &str,
    variable: &str,
    (quota, raised): (i64, bool),
    (used, ours): (i64, bool),
    remedy: &str,
) -> Check {
    let new = i64::from(!ours);
    let source = if raised {
        format!("quota {quota} ({variable})")
    } else {
        format!("AWS's default quota of {quota} per region (payops cannot read Service Quotas)")
    };
    let found = format!(
        "{new} new {what} needed, {used} in {}; {source}",
        if ours {
            "use, one of them this env's"
        } else {
            "use"
        }
    );
    let numbers = [("quota", quota), ("in_use", used), ("new", new)];
    if quota_fits(quota, used, new) {
        Check::ok(name, found).with_numbers(&numbers)
    } else {
        Check::problem(
            name,
            found,
            format!(
                "{remedy}, or request an increase (Service Quotas) and set {variable} to the \
                 new value"
            ),
        )
        .with_numbers(&numbers)
    }
}

async fn vpc_tags(cx: &Context) -> Result<Vec<Vec<Tag>>, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .ec2
        .describe_vpcs()
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut all = Vec::new();
    for page in pages {
        let page = page.op("ec2:DescribeVpcs")?;
        all.extend(page.vpcs().iter().map(|v| v.tags().to_vec()));
    }
    Ok(all)
}

async fn gateway_tags(cx: &Context) -> Result<Vec<Vec<Tag>>, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .ec2
        .describe_internet_gateways()
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut all = Vec::new();
    for page in pages {
        let page = page.op("ec2:DescribeInternetGateways")?;
        all.extend(page.internet_gateways().iter().map(|g| g.tags().to_vec()));
    }
    Ok(all)
}

pub async fn vpcs(cx: &Context, quotas: Quotas) -> Check {
    const NAME: &str = "vpcs";
    match vpc_tags(cx).await {
        Ok(all) => verdict(
            NAME,
            "VPC",
            "PAYOPS_QUOTA_VPCS",
            (quotas.vpcs, quotas.vpcs != Quotas::default().vpcs),
            count(
                cx,
                &all.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                "vpc",
            ),
            "remove unused VPCs or envs (payops down / destroy-all)",
        ),
        Err(e) => Check::not_checked(NAME, &e),
    }
}

pub async fn internet_gateways(cx: &Context, quotas: Quotas) -> Check {
    const NAME: &str = "internet-gateways";
    let q = quotas.internet_gateways;
    match gateway_tags(cx).await {
        Ok(all) => verdict(
            NAME,
            "internet gateway",
            "PAYOPS_QUOTA_INTERNET_GATEWAYS",
            (q, q != Quotas::default().internet_gateways),
            count(
                cx,
                &all.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                "internet-gateway",
            ),
            "remove unused internet gateways or envs (payops down / destroy-all)",
        ),
        Err(e) => Check::not_checked(NAME, &e),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::describe_internet_gateways::DescribeInternetGatewaysOutput;
    use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
    use aws_sdk_ec2::types::{InternetGateway, Vpc};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::preflight::Status;
    use crate::resources::testing;

    fn tagged(env: &str, step: &str) -> Vec<Tag> {
        vec![
            Tag::builder().key(tags::ENV).value(env).build(),
            Tag::builder().key(tags::STEP).value(step).build(),
        ]
    }

    fn vpcs_rule(n: usize, ours: bool) -> Rule {
        mock!(Client::describe_vpcs).then_output(move || {
            let mut out = DescribeVpcsOutput::builder();
            for i in 0..n {
                let mut v = Vpc::builder().vpc_id(format!("vpc-{i}"));
                if i == 0 && ours {
                    v = v.set_tags(Some(tagged("pr1", "vpc")));
                } else if i > 0 {
                    v = v.set_tags(Some(tagged(&format!("pr{}", i + 10), "vpc")));
                }
                out = out.vpcs(v.build());
            }
            out.build()
        })
    }

    fn cx(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[tokio::test]
    async fn a_sixth_vpc_is_refused_saying_the_quota_is_the_default() {
        let five = vpcs_rule(5, false);
        let c = vpcs(&cx(&[&five]), Quotas::default()).await;
        assert_eq!(c.status, Status::Problem, "{}", c.line());
        assert!(c.detail.contains("5 in use"), "{}", c.detail);
        assert!(c.detail.contains("default quota of 5"), "{}", c.detail);
        assert!(c.remedy.unwrap().contains("PAYOPS_QUOTA_VPCS"));
        // A raised quota, said by the operator.
        let raised = Quotas {
            vpcs: 10,
            ..Quotas::default()
        };
        assert_eq!(vpcs(&cx(&[&five]), raised).await.status, Status::Ok);
    }

    #[tokio::test]
    async fn an_env_that_has_its_vpc_needs_no_new_one() {
        let five = vpcs_rule(5, true);
        let c = vpcs(&cx(&[&five]), Quotas::default()).await;
        assert_eq!(c.status, Status::Ok, "{}", c.line());
        assert!(c.numbers.contains(&("new", 0)));
    }

    #[tokio::test]
    async fn gateways_are_counted_the_same_way() {
        let gws = mock!(Client::describe_internet_gateways).then_output(|| {
            let mut out = DescribeInternetGatewaysOutput::builder();
            for i in 0..5 {
                out = out.internet_gateways(
                    InternetGateway::builder()
                        .internet_gateway_id(format!("igw-{i}"))
                        .build(),
                );
            }
            out.build()
        });
        let c = internet_gateways(&cx(&[&gws]), Quotas::default()).await;
        assert_eq!(c.status, Status::Problem, "{}", c.line());
        assert!(
            c.detail.contains("1 new internet gateway needed, 5 in use"),
            "{}",
            c.detail
        );
    }
}
