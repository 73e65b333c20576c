//! The env's two internal load balancers, in the private subnets:
//!
//! - the ALB (`payops-<env>-alb`), whose HTTPS listener sends requests to the
//!   blue and green Lambda target groups by weight, with access logs in the
//!   env's ALB log bucket;
//! - the NLB (`payops-<env>-nlb`) in front of it, because a REST API VPC link
//!   accepts only network load balancers: API Gateway -> VPC link -> NLB
//!   (TCP 443) -> ALB (HTTPS).
//!
//! An NLB with a security group filters PrivateLink traffic by its inbound
//! rules unless told otherwise (`EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic`
//! is `on` after CreateLoadBalancer). API Gateway's VPC link reaches the NLB
//! over PrivateLink from addresses outside the VPC, so with enforcement on
//! every `POST /payments` through the link is dropped; payops turns it off
//! for PrivateLink traffic only, and keeps the rule for everything else
//! (ELB user guide, "Security groups for your Network Load Balancer").
//!
//! - with `--dns on`, the maintenance ALB (`payops-<env>-maint`): the
//!   payments SECONDARY record's target, whose one listener answers a fixed
//!   503 (see `dns`). It takes the ALB's security group: the same clients on
//!   the same port, and one group fewer to keep. No access logs: it serves
//!   no payment.
//!
//! Type and scheme cannot change after creation: a load balancer with our
//! name but another type or scheme is reported, never replaced silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::client::Waiters;
use aws_sdk_elasticloadbalancingv2::types::{
    EnforceSecurityGroupInboundRulesOnPrivateLinkTrafficEnum, IpAddressType,
    LoadBalancer as ElbLoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum,
};

use crate::aws::{AwsError, OpResult, absent_on, required, retry_while, waited};
use crate::engine::{Record, StepCx};
use crate::naming::NameKind;
use crate::tags::TagMap;

use crate::resources::common::s3_bucket::ALB_LOG_PREFIX;
use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::elb;
use crate::tags::describe_tag_fix;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbKind {
    Alb,
    Nlb,
    Maintenance,
}

impl LbKind {
    pub fn short(self) -> &'static str {
        match self {
            Self::Alb => "alb",
            Self::Nlb => "nlb",
            Self::Maintenance => "maint",
        }
    }

    fn lb_type(self) -> LoadBalancerTypeEnum {
        match self {
            Self::Alb | Self::Maintenance => LoadBalancerTypeEnum::Application,
            Self::Nlb => LoadBalancerTypeEnum::Network,
        }
    }

    fn security_group_input(self) -> (&'static str, &'static str) {
        match self {
            Self::Alb | Self::Maintenance => ("security-group:alb", "AlbSecurityGroupId"),
            Self::Nlb => ("security-group:nlb", "NlbSecurityGroupId"),
        }
    }

    /// `Alb` / `Nlb`: outputs `AlbArn`, `AlbDnsName`, ...
    fn output_prefix(self) -> &'static str {
        match self {
            Self::Alb => "Alb",
            Self::Nlb => "Nlb",
            Self::Maintenance => "MaintenanceAlb",
        }
    }
}

pub struct LoadBalancer {
    kind: LbKind,
}

impl LoadBalancer {
    pub fn new(kind: LbKind) -> Self {
        Self { kind }
    }

    fn name(&self, cx: &Context) -> Result<String, AwsError> {
        let name = cx.names.load_balancer(self.kind.short());
        NameKind::LoadBalancer
            .check(&name)
            .map_err(AwsError::Conflict)?;
        Ok(name)
    }

    /// The attributes payops sets; any other keeps AWS's default.
    fn attributes(&self, step: &StepCx<'_>) -> Result<BTreeMap<&'static str, String>, AwsError> {
        // Deletion protection stays off: `down` must be able to remove it.
        let mut attrs = BTreeMap::from([("deletion_protection.enabled", "false".to_owned())]);
        match self.kind {
            LbKind::Alb => {
                let bucket = step.output("s3-bucket:alb-logs", "AlbLogsBucketName")?;
                attrs.insert("access_logs.s3.enabled", "true".into());
                attrs.insert("access_logs.s3.bucket", bucket.to_owned());
                attrs.insert("access_logs.s3.prefix", ALB_LOG_PREFIX.into());
                // Requests with malformed headers are dropped, not passed on
                // to the functions (request smuggling).
                attrs.insert(
                    "routing.http.drop_invalid_header_fields.enabled",
                    "true".into(),
                );
            }
            LbKind::Maintenance => {
                attrs.insert(
                    "routing.http.drop_invalid_header_fields.enabled",
                    "true".into(),
                );
            }
            LbKind::Nlb => {
                // The ALB has a node per AZ: spread connections over all.
                attrs.insert("load_balancing.cross_zone.enabled", "true".into());
            }
        }
        Ok(attrs)
    }

    fn subnets(step: &StepCx<'_>) -> Result<Vec<String>, AwsError> {
        Ok(step
            .output("subnets:private", "PrivateSubnetIds")?
            .split(',')
            .map(str::to_owned)
            .collect())
    }

    async fn get(&self, cx: &Context, name: &str) -> Result<Option<FoundLoadBalancer>, AwsError> {
        let Some(lb) = elb::load_balancer(cx, name).await? else {
            return Ok(None);
        };
        let arn = required(
            lb.load_balancer_arn(),
            "elbv2:DescribeLoadBalancers",
            "LoadBalancerArn",
        )?
        .to_owned();
        let tags = elb::tags_of(cx, &arn).await?;
        cx.check_ours(format!("load balancer {name}"), &tags)?;
        Ok(Some(FoundLoadBalancer {
            name: name.to_owned(),
            arn,
            lb,
            tags,
        }))
    }

    async fn wait_active(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        arn: &str,
    ) -> Result<(), AwsError> {
        step.progress(format!(
            "waiting for {} to become active (2-5 minutes on AWS)",
            self.kind.short().to_uppercase()
        ));
        let max = cx.budgets.load_balancer;
        waited(
            cx.clients
                .elb
                .wait_until_load_balancer_available()
                .load_balancer_arns(arn)
                .wait(max)
                .await,
            &format!("load balancer {arn} to become active"),
            max,
        )?;
        Ok(())
    }
}

pub struct FoundLoadBalancer {
    name: String,
    arn: String,
    lb: ElbLoadBalancer,
    tags: TagMap,
}

pub enum Fix {
    Subnets(Vec<String>),
    SecurityGroup(String),
    /// The NLB's inbound rules applied to PrivateLink (VPC link) traffic.
    PrivateLinkFiltering(String),
    Attributes(BTreeMap<&'static str, String>),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subnets(_) => f.write_str("place it in the private subnets"),
            Self::SecurityGroup(g) => write!(f, "use security group {g} only"),
            Self::PrivateLinkFiltering(_) => f.write_str(
                "stop filtering PrivateLink traffic by the security group (it drops the VPC \
                 link's requests)",
            ),
            Self::Attributes(a) => write!(
                f,
                "set {}",
                a.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

/// Turning access logs on makes ELB write a test object to the bucket; right
/// after the bucket policy was put, S3 may not apply it yet and ELB answers
/// `InvalidConfigurationRequest: Access Denied for bucket: <name>. Please
/// check S3bucket permission` (transient: the same call succeeds moments
/// later). Any other invalid configuration is a real error.
fn log_bucket_not_yet_writable(e: &AwsError) -> bool {
    e.is_code(&["InvalidConfigurationRequest"])
        && matches!(e, AwsError::Api { message, .. } if message.contains("Access Denied for bucket"))
}

#[async_trait]
impl Resource for LoadBalancer {
    type Found = FoundLoadBalancer;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        match self.kind {
            LbKind::Alb => "elbv2:application-load-balancer",
            LbKind::Nlb => "elbv2:network-load-balancer",
            LbKind::Maintenance => "elbv2:maintenance-load-balancer",
        }
    }

    /// The maintenance ALB exists only with the env's DNS (`--dns`).
    fn wanted(&self, cx: &Context) -> bool {
        self.kind != LbKind::Maintenance || cx.spec.dns
    }

    /// CreateLoadBalancer meets the load balancer its lost first attempt made (AWS answers it only when the settings differ, and returns the balancer when they are the same) (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["DuplicateLoadBalancerName"]
    }

    async fn find(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
    ) -> Result<Vec<FoundLoadBalancer>, AwsError> {
        let name = self.name(cx)?;
        Ok(self.get(cx, &name).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundLoadBalancer) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundLoadBalancer, AwsError> {
        let name = self.name(cx)?;
        let (sg_step, sg_key) = self.kind.security_group_input();
        let tags = cx.tagger.for_create(step.id().as_str());
        let created = cx
            .clients
            .elb
            .create_load_balancer()
            .name(&name)
            .r#type(self.kind.lb_type())
            // Internal: reachable only from inside the VPC.
            .scheme(LoadBalancerSchemeEnum::Internal)
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(Self::subnets(step)?))
            .security_groups(step.output(sg_step, sg_key)?)
            .set_tags(Some(elb::tag_list(&tags)))
            .send()
            .await
            .op("elbv2:CreateLoadBalancer")?;
        let lb = created
            .load_balancers()
            .first()
            .cloned()
            .ok_or(AwsError::Incomplete {
                op: "elbv2:CreateLoadBalancer",
                field: "LoadBalancers",
            })?;
        let arn = required(
            lb.load_balancer_arn(),
            "elbv2:CreateLoadBalancer",
            "LoadBalancerArn",
        )?
        .to_owned();
        step.remember("load_balancer", &arn);
        self.wait_active(cx, step, &arn).await?;
        // Re-read: the DNS name and state are final only now.
        match self.get(cx, &name).await? {
            Some(found) => Ok(found),
            None => Ok(FoundLoadBalancer {
                name,
                arn,
                lb,
                tags,
            }),
        }
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundLoadBalancer,
    ) -> Result<Vec<Fix>, AwsError> {
        let lb = &found.lb;
        if lb.r#type() != Some(&self.kind.lb_type())
            || lb.scheme() != Some(&LoadBalancerSchemeEnum::Internal)
        {
            return Err(AwsError::Conflict(format!(
                "load balancer {} is {:?}/{:?}, payops needs an internal {}; AWS cannot change \
                 either in place: run `payops down` first",
                found.name,
                lb.r#type(),
                lb.scheme(),
                self.kind.lb_type().as_str()
            )));
        }
        let mut fixes = Vec::new();
        let want: BTreeSet<String> = Self::subnets(step)?.into_iter().collect();
        let have: BTreeSet<String> = lb
            .availability_zones()
            .iter()
            .filter_map(|az| az.subnet_id().map(str::to_owned))
            .collect();
        if have != want {
            fixes.push(Fix::Subnets(want.into_iter().collect()));
        }
        let (sg_step, sg_key) = self.kind.security_group_input();
        let group = step.output(sg_step, sg_key)?;
        if lb.security_groups() != [group] {
            fixes.push(Fix::SecurityGroup(group.to_owned()));
        } else if self.kind == LbKind::Nlb
            && lb.enforce_security_group_inbound_rules_on_private_link_traffic() != Some("off")
        {
            fixes.push(Fix::PrivateLinkFiltering(group.to_owned()));
        }
        let out = cx
            .clients
            .elb
            .describe_load_balancer_attributes()
            .load_balancer_arn(&found.arn)
            .send()
            .await
            .op("elbv2:DescribeLoadBalancerAttributes")?;
        let have: BTreeMap<&str, &str> = out
            .attributes()
            .iter()
            .filter_map(|a| Some((a.key()?, a.value()?)))
            .collect();
        let drifted: BTreeMap<&'static str, String> = self
            .attributes(step)?
            .into_iter()
            .filter(|(k, v)| have.get(k) != Some(&v.as_str()))
            .collect();
        if !drifted.is_empty() {
            fixes.push(Fix::Attributes(drifted));
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
        found: &mut FoundLoadBalancer,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let elb = &cx.clients.elb;
        match fix {
            Fix::Subnets(subnets) => {
                elb.set_subnets()
                    .load_balancer_arn(&found.arn)
                    .set_subnets(Some(subnets))
                    .send()
                    .await
                    .op("elbv2:SetSubnets")?;
            }
            Fix::SecurityGroup(group) | Fix::PrivateLinkFiltering(group) => {
                // Said on every call for the NLB, so that replacing its group
                // never turns PrivateLink filtering back on.
                let private_link = (self.kind == LbKind::Nlb)
                    .then_some(EnforceSecurityGroupInboundRulesOnPrivateLinkTrafficEnum::Off);
                elb.set_security_groups()
                    .load_balancer_arn(&found.arn)
                    .security_groups(group)
                    .set_enforce_security_group_inbound_rules_on_private_link_traffic(private_link)
                    .send()
                    .await
                    .op("elbv2:SetSecurityGroups")?;
            }
            Fix::Attributes(attrs) => {
                let attrs: Vec<LoadBalancerAttribute> = attrs
                    .into_iter()
                    .map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build())
                    .collect();
                let progress = |m: String| step.progress(m);
                retry_while(
                    format!("setting the attributes of {}", found.name),
                    log_bucket_not_yet_writable,
                    cx.budgets.log_bucket_check,
                    &progress,
                    || async {
                        elb.modify_load_balancer_attributes()
                            .load_balancer_arn(&found.arn)
                            .set_attributes(Some(attrs.clone()))
                            .send()
                            .await
                            .op("elbv2:ModifyLoadBalancerAttributes")
                    },
                )
                .await?;
            }
            Fix::Tags(tags) => {
                elb::add_tags(cx, &found.arn, &tags).await?;
                found.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundLoadBalancer) -> Record {
        let p = self.kind.output_prefix();
        let record = Record::default()
            .resource("load_balancer", &found.arn)
            .output(format!("{p}Arn"), &found.arn)
            .output(
                format!("{p}DnsName"),
                found.lb.dns_name().unwrap_or_default(),
            );
        match self.kind {
            // A Route 53 alias to an ALB names ELB's zone for the region
            // (`Z35SXDOTRQ7X7K` in us-east-1), not the env's zone: the
            // private zone's records read it here.
            LbKind::Alb | LbKind::Maintenance => record.output(
                format!("{p}CanonicalHostedZoneId"),
                found.lb.canonical_hosted_zone_id().unwrap_or_default(),
            ),
            LbKind::Nlb => record,
        }
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundLoadBalancer,
    ) -> Result<Vec<String>, AwsError> {
        let deleted = cx
            .clients
            .elb
            .delete_load_balancer()
            .load_balancer_arn(&found.arn)
            .send()
            .await
            .op("elbv2:DeleteLoadBalancer");
        if absent_on(deleted, &["LoadBalancerNotFound"])?.is_none() {
            return Ok(Vec::new());
        }
        // Its network interfaces leave the subnets only once it is gone.
        step.progress(format!("waiting for {} to be deleted", found.name));
        let max = cx.budgets.load_balancer;
        waited(
            cx.clients
                .elb
                .wait_until_load_balancers_deleted()
                .load_balancer_arns(&found.arn)
                .wait(max)
                .await,
            &format!("load balancer {} to be deleted", found.name),
            max,
        )?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::Client;
    use aws_sdk_elasticloadbalancingv2::operation::{
        create_load_balancer::CreateLoadBalancerOutput,
        delete_load_balancer::DeleteLoadBalancerOutput,
        describe_load_balancer_attributes::DescribeLoadBalancerAttributesOutput,
        describe_load_balancers::{DescribeLoadBalancersError, DescribeLoadBalancersOutput},
        describe_tags::DescribeTagsOutput,
        modify_load_balancer_attributes::ModifyLoadBalancerAttributesOutput,
        set_security_groups::SetSecurityGroupsOutput,
    };
    use aws_sdk_elasticloadbalancingv2::types::TagDescription;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;
    use crate::resources::testing::elb as fake;

    fn inputs(kind: LbKind) -> Vec<(&'static str, Record)> {
        let (sg_step, sg_key) = kind.security_group_input();
        testing::outputs(&[
            (
                "subnets:private",
                "PrivateSubnetIds",
                "subnet-a,subnet-b,subnet-c",
            ),
            (
                sg_step,
                sg_key,
                if kind == LbKind::Alb {
                    "sg-alb"
                } else {
                    "sg-nlb"
                },
            ),
            (
                "s3-bucket:alb-logs",
                "AlbLogsBucketName",
                "payops-pr1-alb-logs-123456789012-us-east-1",
            ),
        ])
    }

    fn step(kind: LbKind) -> &'static str {
        if kind == LbKind::Alb {
            "load-balancer:alb"
        } else {
            "load-balancer:nlb"
        }
    }

    /// DescribeLoadBalancers answering the fake `kind` load balancer as
    /// `edit` changes it.
    fn describe_one(kind: &'static str, edit: fn(&mut ElbLoadBalancer)) -> Rule {
        mock!(Client::describe_load_balancers).then_output(move || {
            let mut lb = fake::load_balancer(kind);
            edit(&mut lb);
            DescribeLoadBalancersOutput::builder()
                .load_balancers(lb)
                .build()
        })
    }

    fn attributes(pairs: &[(&str, &str)]) -> Rule {
        let attrs: Vec<LoadBalancerAttribute> = pairs
            .iter()
            .map(|(k, v)| LoadBalancerAttribute::builder().key(*k).value(*v).build())
            .collect();
        mock!(Client::describe_load_balancer_attributes).then_output(move || {
            DescribeLoadBalancerAttributesOutput::builder()
                .set_attributes(Some(attrs.clone()))
                .build()
        })
    }

    const ALB_ATTRIBUTES: [(&str, &str); 5] = [
        ("deletion_protection.enabled", "false"),
        ("access_logs.s3.enabled", "true"),
        (
            "access_logs.s3.bucket",
            "payops-pr1-alb-logs-123456789012-us-east-1",
        ),
        ("access_logs.s3.prefix", "alb"),
        ("routing.http.drop_invalid_header_fields.enabled", "true"),
    ];

    fn not_found() -> DescribeLoadBalancersError {
        DescribeLoadBalancersError::generic(testing::error_meta("LoadBalancerNotFound"))
    }

    fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.elb = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_an_internal_alb_in_the_private_subnets_with_access_logs() {
        let describe = mock!(Client::describe_load_balancers)
            .sequence()
            .error(not_found)
            .output(|| {
                DescribeLoadBalancersOutput::builder()
                    .load_balancers(fake::load_balancer("alb"))
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_load_balancer)
            .match_requests(|r| {
                r.name() == Some("payops-pr1-alb")
                    && r.r#type() == Some(&LoadBalancerTypeEnum::Application)
                    && r.scheme() == Some(&LoadBalancerSchemeEnum::Internal)
                    && r.subnets() == ["subnet-a", "subnet-b", "subnet-c"]
                    && r.security_groups() == ["sg-alb"]
                    && r.tags().iter().any(|t| {
                        t.key() == Some("payops:step") && t.value() == Some("load-balancer:alb")
                    })
            })
            .then_output(|| {
                CreateLoadBalancerOutput::builder()
                    .load_balancers(fake::load_balancer("alb"))
                    .build()
            });
        let modify = mock!(Client::modify_load_balancer_attributes)
            .match_requests(|r| {
                let get = |k: &str| {
                    r.attributes()
                        .iter()
                        .find(|a| a.key() == Some(k))
                        .and_then(|a| a.value())
                };
                get("access_logs.s3.enabled") == Some("true")
                    && get("access_logs.s3.bucket")
                        == Some("payops-pr1-alb-logs-123456789012-us-east-1")
                    && get("access_logs.s3.prefix") == Some("alb")
                    && get("routing.http.drop_invalid_header_fields.enabled") == Some("true")
            })
            .then_output(|| ModifyLoadBalancerAttributesOutput::builder().build());
        let defaults = attributes(&[("deletion_protection.enabled", "false")]);
        let cx = context(&[
            &describe,
            &fake::describe_tags(),
            &create,
            &defaults,
            &modify,
        ]);
        let applied = testing::ensure(
            &cx,
            step(LbKind::Alb),
            LoadBalancer::new(LbKind::Alb),
            &inputs(LbKind::Alb),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["AlbArn"], fake::ALB);
        assert!(applied.record.outputs["AlbDnsName"].starts_with("internal-payops-pr1-alb"));
        assert_eq!((create.num_calls(), modify.num_calls()), (1, 1));
    }

    /// Nothing at the first look, the NLB the lost first attempt made at the
    /// next; the retried CreateLoadBalancer (no client token) meets it:
    /// `DuplicateLoadBalancerName` (AWS answers so when the settings differ,
    /// the emulators always).
    fn retried_create() -> [Rule; 2] {
        let describe = mock!(Client::describe_load_balancers)
            .sequence()
            .error(not_found)
            .output(|| {
                DescribeLoadBalancersOutput::builder()
                    .load_balancers(fake::load_balancer("nlb"))
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_load_balancer).then_error(|| {
            aws_sdk_elasticloadbalancingv2::operation::create_load_balancer::CreateLoadBalancerError::generic(
                testing::error_meta("DuplicateLoadBalancerName"),
            )
        });
        [describe, create]
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let [describe, create] = retried_create();
        let attrs = attributes(&[
            ("deletion_protection.enabled", "false"),
            ("load_balancing.cross_zone.enabled", "true"),
        ]);
        let cx = context(&[&describe, &create, &fake::describe_tags(), &attrs]);
        let applied = testing::ensure(
            &cx,
            step(LbKind::Nlb),
            LoadBalancer::new(LbKind::Nlb),
            &inputs(LbKind::Nlb),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["NlbArn"], fake::NLB);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_create_conflict_with_a_load_balancer_not_ours_is_refused() {
        let [describe, create] = retried_create();
        let untagged = mock!(Client::describe_tags).then_output(|| {
            DescribeTagsOutput::builder()
                .tag_descriptions(TagDescription::builder().resource_arn(fake::NLB).build())
                .build()
        });
        let cx = context(&[&describe, &create, &untagged]);
        let err = testing::ensure(
            &cx,
            step(LbKind::Nlb),
            LoadBalancer::new(LbKind::Nlb),
            &inputs(LbKind::Nlb),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_owned_nlb_in_sync_is_adopted_without_mutating_calls() {
        let attrs = attributes(&[
            ("deletion_protection.enabled", "false"),
            ("load_balancing.cross_zone.enabled", "true"),
        ]);
        let cx = context(&[
            &fake::describe_load_balancers(),
            &fake::describe_tags(),
            &attrs,
        ]);
        let applied = testing::ensure(
            &cx,
            step(LbKind::Nlb),
            LoadBalancer::new(LbKind::Nlb),
            &inputs(LbKind::Nlb),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
        assert_eq!(applied.record.outputs["NlbArn"], fake::NLB);
    }

    #[tokio::test]
    async fn a_new_nlb_stops_filtering_the_vpc_links_private_link_traffic() {
        // What CreateLoadBalancer leaves: an NLB with a security group
        // enforces its inbound rules on PrivateLink traffic.
        let filtering = describe_one("nlb", |lb| {
            lb.enforce_security_group_inbound_rules_on_private_link_traffic = Some("on".into());
        });
        let attrs = attributes(&[
            ("deletion_protection.enabled", "false"),
            ("load_balancing.cross_zone.enabled", "true"),
        ]);
        let set = mock!(Client::set_security_groups)
            .match_requests(|r| {
                r.security_groups() == ["sg-nlb"]
                    && r.enforce_security_group_inbound_rules_on_private_link_traffic()
                        == Some(&EnforceSecurityGroupInboundRulesOnPrivateLinkTrafficEnum::Off)
            })
            .then_output(|| SetSecurityGroupsOutput::builder().build());
        let cx = context(&[&filtering, &fake::describe_tags(), &attrs, &set]);
        let drift = testing::observe(
            &cx,
            step(LbKind::Nlb),
            LoadBalancer::new(LbKind::Nlb),
            &inputs(LbKind::Nlb),
        )
        .await
        .unwrap();
        assert!(format!("{drift:?}").contains("PrivateLink"), "{drift:?}");
        let applied = testing::ensure(
            &cx,
            step(LbKind::Nlb),
            LoadBalancer::new(LbKind::Nlb),
            &inputs(LbKind::Nlb),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(set.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_load_balancer_with_our_name_but_not_our_tags_is_refused() {
        let untagged = mock!(Client::describe_tags).then_output(|| {
            DescribeTagsOutput::builder()
                .tag_descriptions(TagDescription::builder().resource_arn(fake::ALB).build())
                .build()
        });
        let cx = context(&[&fake::describe_load_balancers(), &untagged]);
        let err = testing::ensure(
            &cx,
            step(LbKind::Alb),
            LoadBalancer::new(LbKind::Alb),
            &inputs(LbKind::Alb),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert!(
            testing::destroy(&cx, step(LbKind::Alb), LoadBalancer::new(LbKind::Alb))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_changed_group_and_disabled_access_logs_are_repaired() {
        let mut inputs = inputs(LbKind::Alb);
        for (step, record) in &mut inputs {
            if *step == "security-group:alb" {
                *record = Record::default().output("AlbSecurityGroupId", "sg-new");
            }
        }
        let mut attrs = ALB_ATTRIBUTES.to_vec();
        attrs[1] = ("access_logs.s3.enabled", "false");
        let attrs = attributes(&attrs);
        let groups = mock!(Client::set_security_groups)
            .match_requests(|r| r.security_groups() == ["sg-new"])
            .then_output(|| SetSecurityGroupsOutput::builder().build());
        let modify = mock!(Client::modify_load_balancer_attributes)
            .match_requests(|r| r.attributes().len() == 1)
            .then_output(|| ModifyLoadBalancerAttributesOutput::builder().build());
        let cx = context(&[
            &fake::describe_load_balancers(),
            &fake::describe_tags(),
            &attrs,
            &groups,
            &modify,
        ]);
        let applied = testing::ensure(
            &cx,
            step(LbKind::Alb),
            LoadBalancer::new(LbKind::Alb),
            &inputs,
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((groups.num_calls(), modify.num_calls()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn access_logs_refused_while_the_bucket_policy_propagates_are_retried() {
        let mut attrs = ALB_ATTRIBUTES.to_vec();
        attrs[1] = ("access_logs.s3.enabled", "false");
        let attrs = attributes(&attrs);
        // What ELB answers while S3 does not apply the new bucket policy yet.
        let denied = || {
            aws_sdk_elasticloadbalancingv2::operation::modify_load_balancer_attributes::ModifyLoadBalancerAttributesError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("InvalidConfigurationRequest")
                    .message(
                        "Access Denied for bucket: payops-pr1-alb-logs-123456789012-us-east-1. \
                         Please check S3bucket permission",
                    )
                    .build(),
            )
        };
        let modify = mock!(Client::modify_load_balancer_attributes)
            .sequence()
            .error(denied)
            .times(2)
            .output(|| ModifyLoadBalancerAttributesOutput::builder().build())
            .build();
        let cx = context(&[
            &fake::describe_load_balancers(),
            &fake::describe_tags(),
            &attrs,
            &modify,
        ]);
        let applied = testing::ensure(
            &cx,
            step(LbKind::Alb),
            LoadBalancer::new(LbKind::Alb),
            &inputs(LbKind::Alb),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(modify.num_calls(), 3);

        // Another invalid configuration is not waited out.
        let invalid = mock!(Client::modify_load_balancer_attributes).then_error(|| {
            aws_sdk_elasticloadbalancingv2::operation::modify_load_balancer_attributes::ModifyLoadBalancerAttributesError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("InvalidConfigurationRequest")
                    .message("The value of 'access_logs.s3.prefix' is not valid")
                    .build(),
            )
        });
        let cx = context(&[
            &fake::describe_load_balancers(),
            &fake::describe_tags(),
            &attributes(&ALB_ATTRIBUTES.map(|(k, v)| {
                (
                    k,
                    if k == "access_logs.s3.enabled" {
                        "false"
                    } else {
                        v
                    },
                )
            })),
            &invalid,
        ]);
        let err = testing::ensure(
            &cx,
            step(LbKind::Alb),
            LoadBalancer::new(LbKind::Alb),
            &inputs(LbKind::Alb),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
        assert_eq!(invalid.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_load_balancer_of_another_type_is_a_conflict_not_a_replacement() {
        // The NLB's name answers with an application load balancer.
        let wrong = describe_one("alb", |lb| {
            lb.load_balancer_name = Some("payops-pr1-nlb".into());
        });
        let cx = context(&[&wrong, &fake::describe_tags()]);
        let err = testing::ensure(
            &cx,
            step(LbKind::Nlb),
            LoadBalancer::new(LbKind::Nlb),
            &inputs(LbKind::Nlb),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("cannot change"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn delete_waits_until_the_load_balancer_is_gone() {
        let describe = mock!(Client::describe_load_balancers)
            .sequence()
            .output(|| {
                DescribeLoadBalancersOutput::builder()
                    .load_balancers(fake::load_balancer("nlb"))
                    .build()
            })
            .times(2)
            .error(not_found)
            .repeatedly()
            .build();
        let delete = mock!(Client::delete_load_balancer)
            .match_requests(|r| r.load_balancer_arn() == Some(fake::NLB))
            .then_output(|| DeleteLoadBalancerOutput::builder().build());
        let cx = context(&[&describe, &fake::describe_tags(), &delete]);
        let removed = testing::destroy(&cx, step(LbKind::Nlb), LoadBalancer::new(LbKind::Nlb))
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
        let gone = mock!(Client::describe_load_balancers).then_error(not_found);
        let cx = context(&[&gone]);
        assert_eq!(
            testing::destroy(&cx, step(LbKind::Nlb), LoadBalancer::new(LbKind::Nlb))
                .await
                .unwrap(),
            Removed::AlreadyAbsent
        );
    }
}
