//! Every rule of the env's security groups, as one step.
//!
//! Least privilege: AWS's default "all traffic out" egress rule is revoked
//! and only these flows are allowed:
//!
//! | group    | direction | port | peer            | why |
//! |----------|-----------|------|-----------------|-----|
//! | nlb      | in        | 443  | VPC CIDR        | API Gateway's VPC link reaches the NLB from ENIs in the VPC |
//! | nlb      | out       | 443  | alb group       | the NLB forwards to the ALB |
//! | alb      | in        | 443  | nlb group       | only the NLB may reach the ALB |
//! | lambda   | out       | 443  | 0.0.0.0/0       | AWS APIs (SSM, SNS, X-Ray) through the NAT gateways |
//! | lambda   | out       | 5432 | db-proxy group  | PostgreSQL, through the RDS Proxy only |
//! | db-migration | out   | 443  | 0.0.0.0/0       | Secrets Manager (payops_app's secret) through the NAT gateways |
//! | db-migration | out   | 5432 | db-proxy group  | PostgreSQL, through the RDS Proxy only |
//! | db-proxy | in        | 5432 | lambda group    | PostgreSQL from the functions |
//! | db-proxy | in        | 5432 | db-migration group | PostgreSQL from the schema migration |
//! | db-proxy | out       | 5432 | database group  | the proxy's pooled connections to Aurora |
//! | database | in        | 5432 | db-proxy group  | PostgreSQL from the proxy only |
//!
//! The schema migration has a group of its own: it logs in as the master
//! user and reads payops_app's secret, so it shares no egress with the
//! payment functions, and its only other peer is Secrets Manager's public
//! endpoint (no interface endpoint in the VPC: HTTPS out through NAT, as
//! the functions' AWS calls; minting IAM tokens is local signing).
//!
//! The functions never reach the cluster directly: the proxy pools their
//! connections (a Lambda burst would otherwise exhaust Aurora's
//! max_connections), requires TLS and IAM authentication, and is the one
//! peer the database group admits.
//!
//! The rotation function runs outside the VPC (it calls only the Secrets
//! Manager and RDS APIs), so it has no group. Envs made before still have
//! its retired `rotation` group: this step finds it with the others and
//! revokes its rules and the database group's ingress from it (no desired
//! rule names it), so that nothing references it when it is deleted.
//!
//! On teardown this step runs before the groups' own steps and revokes every
//! rule, so no group is still referenced by another when it is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{IpPermission, IpRange, SecurityGroup as Ec2Group, UserIdGroupPair};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};
use crate::tags;

use crate::resources::context::Context;
use crate::resources::model::SgRole;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;

pub struct SecurityGroupRules;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    Group(String),
    Cidr(String),
}

/// One flow: protocol and port range to or from one peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    group: String,
    egress: bool,
    protocol: String,
    from: Option<i32>,
    to: Option<i32>,
    peer: Peer,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = match (self.protocol.as_str(), self.from, self.to) {
            ("-1", _, _) => "all traffic".to_owned(),
            (p, Some(a), Some(b)) if a == b => format!("{p}/{a}"),
            (p, Some(a), Some(b)) => format!("{p}/{a}-{b}"),
            (p, _, _) => p.to_owned(),
        };
        let (dir, prep) = if self.egress {
            ("out", "to")
        } else {
            ("in", "from")
        };
        let peer = match &self.peer {
            Peer::Group(g) => g.as_str(),
            Peer::Cidr(c) => c.as_str(),
        };
        write!(f, "{} {dir} {ports} {prep} {peer}", self.group)
    }
}

pub struct FoundRules {
    groups: BTreeMap<SgRole, String>,
    rules: BTreeSet<Rule>,
}

pub enum Fix {
    Authorize(Rule, &'static str),
    Revoke(Rule),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authorize(r, _) => write!(f, "allow {r}"),
            Self::Revoke(r) => write!(f, "revoke {r}"),
        }
    }
}

fn flatten(group: &str, egress: bool, perms: &[IpPermission], out: &mut BTreeSet<Rule>) {
    for p in perms {
        let base = |peer| Rule {
            group: group.to_owned(),
            egress,
            protocol: p.ip_protocol().unwrap_or("-1").to_owned(),
            // AWS reports -1/None for "all ports"; keep ports only for tcp/udp.
            from: p.from_port().filter(|_| p.ip_protocol() != Some("-1")),
            to: p.to_port().filter(|_| p.ip_protocol() != Some("-1")),
            peer,
        };
        for r in p.ip_ranges() {
            if let Some(c) = r.cidr_ip() {
                out.insert(base(Peer::Cidr(c.to_owned())));
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                out.insert(base(Peer::Group(id.to_owned())));
            }
        }
    }
}

fn permission(rule: &Rule, description: Option<&str>) -> IpPermission {
    let mut p = IpPermission::builder()
        .ip_protocol(&rule.protocol)
        .set_from_port(rule.from)
        .set_to_port(rule.to);
    match &rule.peer {
        Peer::Cidr(c) => {
            p = p.ip_ranges(
                IpRange::builder()
                    .cidr_ip(c)
                    .set_description(description.map(str::to_owned))
                    .build(),
            )
        }
        Peer::Group(g) => {
            p = p.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(g)
                    .set_description(description.map(str::to_owned))
                    .build(),
            )
        }
    }
    p.build()
}

impl SecurityGroupRules {
    /// The rules the env wants, given its groups' ids (rules whose groups do
    /// not exist yet are left out; they come once the groups are created).
    fn desired(cx: &Context, groups: &BTreeMap<SgRole, String>) -> Vec<(Rule, &'static str)> {
        use SgRole::*;
        let tcp = |group: SgRole, egress, port, peer: Option<Peer>, why: &'static str| {
            Some((
                Rule {
                    group: groups.get(&group)?.clone(),
                    egress,
                    protocol: "tcp".into(),
                    from: Some(port),
                    to: Some(port),
                    peer: peer?,
                },
                why,
            ))
        };
        let group = |role: SgRole| groups.get(&role).cloned().map(Peer::Group);
        let vpc = Some(Peer::Cidr(cx.spec.vpc_cidr.to_string()));
        let anywhere = Some(Peer::Cidr("0.0.0.0/0".into()));
        [
            tcp(Nlb, false, 443, vpc, "HTTPS from the API Gateway VPC link"),
            tcp(Nlb, true, 443, group(Alb), "HTTPS to the internal ALB"),
            tcp(Alb, false, 443, group(Nlb), "HTTPS from the NLB only"),
            tcp(
                Lambda,
                true,
                443,
                anywhere.clone(),
                "HTTPS to AWS APIs via NAT",
            ),
            tcp(
                Lambda,
                true,
                5432,
                group(Proxy),
                "PostgreSQL to the RDS Proxy",
            ),
            tcp(
                Proxy,
                false,
                5432,
                group(Lambda),
                "PostgreSQL from the functions",
            ),
            tcp(
                Migration,
                true,
                443,
                Some(Peer::Cidr("0.0.0.0/0".into())),
                "HTTPS to Secrets Manager via NAT",
            ),
            tcp(
                Migration,
                true,
                5432,
                group(Proxy),
                "PostgreSQL to the RDS Proxy",
            ),
            tcp(
                Proxy,
                false,
                5432,
                group(Migration),
                "PostgreSQL from the schema migration",
            ),
            tcp(Proxy, true, 5432, group(Database), "PostgreSQL to Aurora"),
            tcp(
                Database,
                false,
                5432,
                group(Proxy),
                "PostgreSQL from the RDS Proxy only",
            ),
            // No inbound rule at all: operators reach the instances through
            // SSM Session Manager, which the agent dials out for.
            tcp(
                Batch,
                true,
                443,
                anywhere.clone().filter(|_| cx.spec.batch.on),
                "HTTPS to SSM, CloudWatch, DynamoDB and S3 via NAT",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[async_trait]
impl Resource for SecurityGroupRules {
    type Found = FoundRules;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:security-group-rules"
    }

    /// Authorize* meets the rule its lost first attempt added (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["InvalidPermission.Duplicate"]
    }

    /// Finds the groups by their ownership tags (the same way with or without
    /// state, up or down), then reads their rules.
    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRules>, AwsError> {
        let out = cx
            .clients
            .ec2
            .describe_security_groups()
            .filters(ec2::tag_filter(tags::MANAGED_BY, tags::MANAGER))
            .filters(ec2::tag_filter(tags::ENV, cx.env().as_str()))
            .filters(ec2::filter(
                &format!("tag:{}", tags::STEP),
                SgRole::ALL.map(SgRole::step_id),
            ))
            .send()
            .await
            .op("ec2:DescribeSecurityGroups")?;
        let mut found = FoundRules {
            groups: BTreeMap::new(),
            rules: BTreeSet::new(),
        };
        for g in out.security_groups() {
            let tags = ec2::tag_map(g.tags());
            if !cx.is_ours(&tags) {
                continue;
            }
            let (Some(id), Some(step)) = (g.group_id(), tags.get(tags::STEP)) else {
                continue;
            };
            let Some(role) = SgRole::ALL.into_iter().find(|r| r.step_id() == *step) else {
                continue;
            };
            found.groups.insert(role, id.to_owned());
            collect(g, &mut found.rules);
        }
        Ok(if found.groups.is_empty() {
            Vec::new()
        } else {
            vec![found]
        })
    }

    fn describe(&self, found: &FoundRules) -> String {
        format!(
            "{} rules on {} groups",
            found.rules.len(),
            found.groups.len()
        )
    }

    async fn create(&self, _cx: &Context, _step: &StepCx<'_>) -> Result<FoundRules, AwsError> {
        // Only reachable if the groups vanished after their steps succeeded.
        Err(AwsError::Conflict(
            "the env's security groups were not found; run `payops up` again".into(),
        ))
    }

    async fn diff(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: &FoundRules,
    ) -> Result<Vec<Fix>, AwsError> {
        let desired = Self::desired(cx, &found.groups);
        let mut fixes: Vec<Fix> = desired
            .iter()
            .filter(|(r, _)| !found.rules.contains(r))
            .map(|(r, why)| Fix::Authorize(r.clone(), why))
            .collect();
        fixes.extend(
            found
                .rules
                .iter()
                .filter(|r| !desired.iter().any(|(d, _)| d == *r))
                .map(|r| Fix::Revoke(r.clone())),
        );
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: &mut FoundRules,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let ec2 = &cx.clients.ec2;
        match fix {
            Fix::Authorize(rule, why) => {
                let perm = permission(&rule, Some(why));
                let result = if rule.egress {
                    ec2.authorize_security_group_egress()
                        .group_id(&rule.group)
                        .ip_permissions(perm)
                        .send()
                        .await
                        .op("ec2:AuthorizeSecurityGroupEgress")
                        .map(drop)
                } else {
                    ec2.authorize_security_group_ingress()
                        .group_id(&rule.group)
                        .ip_permissions(perm)
                        .send()
                        .await
                        .op("ec2:AuthorizeSecurityGroupIngress")
                        .map(drop)
                };
                // Added meanwhile (e.g. by a concurrent run): the goal is met.
                absent_on(result, &["InvalidPermission.Duplicate"])?;
                found.rules.insert(rule);
            }
            Fix::Revoke(rule) => {
                revoke(cx, &rule).await?;
                found.rules.remove(&rule);
            }
        }
        Ok(())
    }

    /// The rules have no ids worth recording: the groups' steps hold those.
    fn record(&self, _cx: &Context, _found: &FoundRules) -> Record {
        Record::default()
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundRules,
    ) -> Result<Vec<String>, AwsError> {
        for rule in &found.rules {
            revoke(cx, rule).await?;
        }
        Ok(Vec::new())
    }
}

fn collect(g: &Ec2Group, rules: &mut BTreeSet<Rule>) {
    if let Some(id) = g.group_id() {
        flatten(id, false, g.ip_permissions(), rules);
        flatten(id, true, g.ip_permissions_egress(), rules);
    }
}

async fn revoke(cx: &Context, rule: &Rule) -> Result<(), AwsError> {
    let ec2 = &cx.clients.ec2;
    let perm = permission(rule, None);
    let result = if rule.egress {
        ec2.revoke_security_group_egress()
            .group_id(&rule.group)
            .ip_permissions(perm)
            .send()
            .await
            .op("ec2:RevokeSecurityGroupEgress")
            .map(drop)
    } else {
        ec2.revoke_security_group_ingress()
            .group_id(&rule.group)
            .ip_permissions(perm)
            .send()
            .await
            .op("ec2:RevokeSecurityGroupIngress")
            .map(drop)
    };
    absent_on(
        result,
        &["InvalidPermission.NotFound", "InvalidGroup.NotFound"],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::{
        authorize_security_group_egress::AuthorizeSecurityGroupEgressOutput,
        authorize_security_group_ingress::AuthorizeSecurityGroupIngressOutput,
        describe_security_groups::DescribeSecurityGroupsOutput,
        revoke_security_group_egress::RevokeSecurityGroupEgressOutput,
        revoke_security_group_ingress::RevokeSecurityGroupIngressOutput,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;

    fn all_traffic_out() -> IpPermission {
        IpPermission::builder()
            .ip_protocol("-1")
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build()
    }

    fn tcp(port: i32, peer: &str) -> IpPermission {
        let p = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port);
        if peer.starts_with("sg-") {
            p.user_id_group_pairs(UserIdGroupPair::builder().group_id(peer).build())
                .build()
        } else {
            p.ip_ranges(IpRange::builder().cidr_ip(peer).build())
                .build()
        }
    }

    fn group(role: SgRole, ingress: Vec<IpPermission>, egress: Vec<IpPermission>) -> Ec2Group {
        let tags = testing::ec2_tags(&role.step_id());
        Ec2Group::builder()
            .group_id(format!("sg-{}", role.as_str()))
            .set_tags(Some(tags))
            .set_ip_permissions(Some(ingress))
            .set_ip_permissions_egress(Some(egress))
            .build()
    }

    fn converged() -> Vec<Ec2Group> {
        vec![
            group(
                SgRole::Nlb,
                vec![tcp(443, "10.0.0.0/16")],
                vec![tcp(443, "sg-alb")],
            ),
            group(SgRole::Alb, vec![tcp(443, "sg-nlb")], vec![]),
            group(
                SgRole::Lambda,
                vec![],
                vec![tcp(443, "0.0.0.0/0"), tcp(5432, "sg-db-proxy")],
            ),
            group(
                SgRole::Proxy,
                vec![tcp(5432, "sg-lambda"), tcp(5432, "sg-db-migration")],
                vec![tcp(5432, "sg-database")],
            ),
            group(
                SgRole::Migration,
                vec![],
                vec![tcp(443, "0.0.0.0/0"), tcp(5432, "sg-db-proxy")],
            ),
            group(SgRole::Database, vec![tcp(5432, "sg-db-proxy")], vec![]),
        ]
    }

    /// The groups as an older payops left them: the rotation function's own
    /// group, with its rules and the database group's ingress from it.
    fn with_the_retired_rotation_group() -> Vec<Ec2Group> {
        let mut groups: Vec<Ec2Group> = converged()
            .into_iter()
            .filter(|g| g.group_id() != Some("sg-database"))
            .collect();
        groups.push(group(
            SgRole::Database,
            vec![tcp(5432, "sg-db-proxy"), tcp(5432, "sg-rotation")],
            vec![],
        ));
        groups.push(group(
            SgRole::Rotation,
            vec![],
            vec![tcp(443, "0.0.0.0/0"), tcp(5432, "sg-database")],
        ));
        groups
    }

    #[tokio::test]
    async fn fresh_groups_get_least_privilege_rules_and_lose_the_default_egress() {
        let fresh = mock!(Client::describe_security_groups).then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .set_security_groups(Some(
                    SgRole::ALL
                        .iter()
                        .filter(|r| !r.retired())
                        .map(|r| group(*r, vec![], vec![all_traffic_out()]))
                        .collect(),
                ))
                .build()
        });
        let ingress = mock!(Client::authorize_security_group_ingress).then_output(|| {
            AuthorizeSecurityGroupIngressOutput::builder()
                .r#return(true)
                .build()
        });
        let egress = mock!(Client::authorize_security_group_egress).then_output(|| {
            AuthorizeSecurityGroupEgressOutput::builder()
                .r#return(true)
                .build()
        });
        let revoke = mock!(Client::revoke_security_group_egress)
            .match_requests(|r| r.ip_permissions()[0].ip_protocol() == Some("-1"))
            .then_output(|| {
                RevokeSecurityGroupEgressOutput::builder()
                    .r#return(true)
                    .build()
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&fresh, &ingress, &egress, &revoke]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "security-group-rules", SecurityGroupRules, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(ingress.num_calls(), 5);
        assert_eq!(egress.num_calls(), 6);
        // The batch group (there in this listing) gets no rule with the
        // tier off, but loses its default egress like every group.
        assert_eq!(
            revoke.num_calls(),
            7,
            "default egress revoked on every group"
        );
    }

    #[test]
    fn the_functions_reach_the_database_only_through_the_proxy() {
        let groups: BTreeMap<SgRole, String> = SgRole::ALL
            .into_iter()
            .map(|r| (r, format!("sg-{}", r.as_str())))
            .collect();
        let cx = testing::context(testing::clients());
        let rules: Vec<String> = SecurityGroupRules::desired(&cx, &groups)
            .into_iter()
            .filter(|(r, _)| r.from == Some(5432))
            .map(|(r, _)| r.to_string())
            .collect();
        assert_eq!(
            rules,
            [
                "sg-lambda out tcp/5432 to sg-db-proxy",
                "sg-db-proxy in tcp/5432 from sg-lambda",
                "sg-db-migration out tcp/5432 to sg-db-proxy",
                "sg-db-proxy in tcp/5432 from sg-db-migration",
                "sg-db-proxy out tcp/5432 to sg-database",
                "sg-database in tcp/5432 from sg-db-proxy",
            ]
        );
    }

    /// The migration's group: the proxy, and HTTPS for Secrets Manager
    /// (payops_app's secret), nothing else; the proxy admits it by name.
    #[test]
    fn the_migration_has_its_own_group_to_the_proxy_and_https_only() {
        let groups: BTreeMap<SgRole, String> = SgRole::ALL
            .into_iter()
            .map(|r| (r, format!("sg-{}", r.as_str())))
            .collect();
        let cx = testing::context(testing::clients());
        let rules: Vec<String> = SecurityGroupRules::desired(&cx, &groups)
            .into_iter()
            .map(|(r, _)| r.to_string())
            .filter(|r| r.contains("sg-db-migration"))
            .collect();
        assert_eq!(
            rules,
            [
                "sg-db-migration out tcp/443 to 0.0.0.0/0",
                "sg-db-migration out tcp/5432 to sg-db-proxy",
                "sg-db-proxy in tcp/5432 from sg-db-migration",
            ]
        );
    }

    #[tokio::test]
    async fn converged_rules_need_no_mutating_call() {
        let found = mock!(Client::describe_security_groups).then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .set_security_groups(Some(converged()))
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, [&found]);
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "security-group-rules", SecurityGroupRules, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_rule_added_again_after_a_lost_answer_is_what_was_wanted() {
        // The database group without its ingress at the first look: the
        // retried AuthorizeSecurityGroupIngress meets the rule its lost first
        // attempt added, and EC2 answers `InvalidPermission.Duplicate`. The
        // rule is the very one asked for: the goal is met (the step's
        // look-again would find it too, at the cost of another describe).
        let found = mock!(Client::describe_security_groups)
            .sequence()
            .output(|| {
                let mut groups = converged();
                groups.retain(|g| g.group_id() != Some("sg-database"));
                groups.push(group(SgRole::Database, vec![], vec![]));
                DescribeSecurityGroupsOutput::builder()
                    .set_security_groups(Some(groups))
                    .build()
            })
            .output(|| {
                DescribeSecurityGroupsOutput::builder()
                    .set_security_groups(Some(converged()))
                    .build()
            })
            .repeatedly()
            .build();
        let duplicate = mock!(Client::authorize_security_group_ingress)
            .match_requests(|r| r.group_id() == Some("sg-database"))
            .then_error(|| {
                aws_sdk_ec2::operation::authorize_security_group_ingress::AuthorizeSecurityGroupIngressError::generic(
                    testing::error_meta("InvalidPermission.Duplicate"),
                )
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &duplicate]);
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "security-group-rules", SecurityGroupRules, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(duplicate.num_calls(), 1);
    }

    #[tokio::test]
    async fn teardown_revokes_every_cross_reference() {
        let found = mock!(Client::describe_security_groups).then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .set_security_groups(Some(converged()))
                .build()
        });
        let ingress = mock!(Client::revoke_security_group_ingress).then_output(|| {
            RevokeSecurityGroupIngressOutput::builder()
                .r#return(true)
                .build()
        });
        let egress = mock!(Client::revoke_security_group_egress).then_output(|| {
            RevokeSecurityGroupEgressOutput::builder()
                .r#return(true)
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &ingress, &egress]);
        let cx = testing::context(clients);
        let removed = testing::destroy(&cx, "security-group-rules", SecurityGroupRules)
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(ingress.num_calls() + egress.num_calls(), 11);
    }

    #[tokio::test]
    async fn the_retired_rotation_group_loses_its_rules_and_the_database_ingress_from_it() {
        let found = mock!(Client::describe_security_groups).then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .set_security_groups(Some(with_the_retired_rotation_group()))
                .build()
        });
        let ingress = mock!(Client::revoke_security_group_ingress)
            .match_requests(|r| {
                r.group_id() == Some("sg-database")
                    && r.ip_permissions()[0].user_id_group_pairs()[0].group_id()
                        == Some("sg-rotation")
            })
            .then_output(|| {
                RevokeSecurityGroupIngressOutput::builder()
                    .r#return(true)
                    .build()
            });
        let egress = mock!(Client::revoke_security_group_egress)
            .match_requests(|r| r.group_id() == Some("sg-rotation"))
            .then_output(|| {
                RevokeSecurityGroupEgressOutput::builder()
                    .r#return(true)
                    .build()
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &ingress, &egress]);
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "security-group-rules", SecurityGroupRules, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        // Nothing authorized (no authorize rule is mocked); three revoked.
        assert_eq!((ingress.num_calls(), egress.num_calls()), (1, 2));
        assert!(
            applied
                .notes
                .iter()
                .any(|n| n == "revoke sg-database in tcp/5432 from sg-rotation"),
            "{:?}",
            applied.notes
        );
    }
}
