//! Target groups:
//!
//! - `payops-<env>-blue` and `payops-<env>-green`, of type lambda, each with
//!   one target: the transaction-processing alias of the same name. ELB may
//!   invoke that alias only from that target group (a resource-policy
//!   statement on the alias, added before the target is registered: AWS
//!   refuses to register a function ELB may not invoke).
//! - `payops-<env>-alb`, of type alb, TCP 443, with the internal ALB as its
//!   only target: what the NLB forwards to. AWS registers an ALB only once it
//!   has a listener on the target group's port.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetDescription, TargetGroup as ElbTargetGroup, TargetTypeEnum,
};

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::naming::NameKind;
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::model::HTTPS_PORT;
use crate::resources::model::{BLUE, Function, GREEN};
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;
use crate::resources::sdk::{elb, lambda};
use crate::tags::describe_tag_fix;

const ELB_PRINCIPAL: &str = "elasticloadbalancing.amazonaws.com";
/// Where the NLB's health checks land: answered by transaction processing
/// without touching data.
pub const HEALTH_PATH: &str = "/health";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TgKind {
    Blue,
    Green,
    /// The NLB's target group: the ALB.
    Alb,
}

impl TgKind {
    fn short(self) -> &'static str {
        match self {
            Self::Blue => BLUE,
            Self::Green => GREEN,
            Self::Alb => "alb",
        }
    }

    fn target_type(self) -> TargetTypeEnum {
        match self {
            Self::Blue | Self::Green => TargetTypeEnum::Lambda,
            Self::Alb => TargetTypeEnum::Alb,
        }
    }

    /// The resource-policy statement that lets this target group invoke its alias.
    fn statement_id(self) -> String {
        format!("payops-elb-{}", self.short())
    }

    fn output_key(self) -> &'static str {
        match self {
            Self::Blue => "BlueTargetGroupArn",
            Self::Green => "GreenTargetGroupArn",
            Self::Alb => "NlbTargetGroupArn",
        }
    }
}

pub struct TargetGroup {
    kind: TgKind,
}

impl TargetGroup {
    pub fn new(kind: TgKind) -> Self {
        Self { kind }
    }

    fn name(&self, cx: &Context) -> Result<String, AwsError> {
        let name = cx.names.target_group(self.kind.short());
        NameKind::TargetGroup
            .check(&name)
            .map_err(AwsError::Conflict)?;
        Ok(name)
    }

    /// The one target and its port.
    fn target(&self, step: &StepCx<'_>) -> Result<(String, Option<i32>), AwsError> {
        let transaction = Function::Transaction.output_prefix();
        Ok(match self.kind {
            TgKind::Blue => (
                step.output(
                    &Function::Transaction.step_id(),
                    &format!("{transaction}BlueAliasArn"),
                )?
                .to_owned(),
                None,
            ),
            TgKind::Green => (
                step.output(
                    &Function::Transaction.step_id(),
                    &format!("{transaction}GreenAliasArn"),
                )?
                .to_owned(),
                None,
            ),
            TgKind::Alb => (
                step.output("load-balancer:alb", "AlbArn")?.to_owned(),
                Some(HTTPS_PORT),
            ),
        })
    }

    async fn get(&self, cx: &Context, name: &str) -> Result<Option<FoundTargetGroup>, AwsError> {
        let Some(tg) = elb::target_group(cx, name).await? else {
            return Ok(None);
        };
        let arn = required(
            tg.target_group_arn(),
            "elbv2:DescribeTargetGroups",
            "TargetGroupArn",
        )?
        .to_owned();
        let tags = elb::tags_of(cx, &arn).await?;
        cx.check_ours(format!("target group {name}"), &tags)?;
        Ok(Some(FoundTargetGroup {
            name: name.to_owned(),
            arn,
            tg,
            tags,
        }))
    }

    async fn targets(
        &self,
        cx: &Context,
        arn: &str,
    ) -> Result<BTreeSet<(String, Option<i32>)>, AwsError> {
        let out = cx
            .clients
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .op("elbv2:DescribeTargetHealth")?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target())
            .filter_map(|t| {
                // Lambda targets have no port.
                let port = if self.kind == TgKind::Alb {
                    t.port()
                } else {
                    None
                };
                Some((t.id()?.to_owned(), port))
            })
            .collect())
    }

    /// Whether the alias' policy lets exactly this target group invoke it.
    async fn permission_in_place(
        &self,
        cx: &Context,
        alias: &str,
        tg_arn: &str,
    ) -> Result<bool, AwsError> {
        let function = Function::Transaction.name(cx);
        let sid = self.kind.statement_id();
        lambda::grants(cx, &function, Some(alias), &sid, ELB_PRINCIPAL, tg_arn).await
    }

    async fn remove_permission(&self, cx: &Context) -> Result<(), AwsError> {
        let removed = cx
            .clients
            .lambda
            .remove_permission()
            .function_name(Function::Transaction.name(cx))
            .qualifier(self.kind.short())
            .statement_id(self.kind.statement_id())
            .send()
            .await
            .op("lambda:RemovePermission");
        absent_on(removed, &["ResourceNotFoundException"]).map(drop)
    }
}

pub struct FoundTargetGroup {
    name: String,
    arn: String,
    tg: ElbTargetGroup,
    tags: TagMap,
}

pub enum Fix {
    Permission,
    Targets {
        register: (String, Option<i32>),
        deregister: Vec<(String, Option<i32>)>,
    },
    HealthCheck,
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Permission => f.write_str("let the target group invoke its alias"),
            Self::Targets {
                register,
                deregister,
            } if deregister.is_empty() => {
                write!(f, "register {}", register.0)
            }
            Self::Targets {
                register,
                deregister,
            } => write!(
                f,
                "register {} and deregister {}",
                register.0,
                deregister
                    .iter()
                    .map(|t| t.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::HealthCheck => write!(f, "health-check HTTPS {HEALTH_PATH}"),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

fn target(id: &str, port: Option<i32>) -> TargetDescription {
    TargetDescription::builder().id(id).set_port(port).build()
}

#[async_trait]
impl Resource for TargetGroup {
    type Found = FoundTargetGroup;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        match self.kind {
            TgKind::Blue | TgKind::Green => "elbv2:lambda-target-group",
            TgKind::Alb => "elbv2:alb-target-group",
        }
    }

    /// CreateTargetGroup meets the group its lost first attempt made (AWS answers it only when the settings differ; emulators always), AddPermission its statement (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["DuplicateTargetGroupName", "ResourceConflictException"]
    }

    async fn find(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
    ) -> Result<Vec<FoundTargetGroup>, AwsError> {
        let name = self.name(cx)?;
        Ok(self.get(cx, &name).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundTargetGroup) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundTargetGroup, AwsError> {
        let name = self.name(cx)?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let mut req = cx
            .clients
            .elb
            .create_target_group()
            .name(&name)
            .target_type(self.kind.target_type())
            .set_tags(Some(elb::tag_list(&tags)));
        if self.kind == TgKind::Alb {
            // TCP passthrough: TLS ends at the ALB, whose listener holds the
            // certificate.
            req = req
                .protocol(ProtocolEnum::Tcp)
                .port(HTTPS_PORT)
                .vpc_id(step.output("vpc", "VpcId")?)
                .health_check_protocol(ProtocolEnum::Https)
                .health_check_path(HEALTH_PATH)
                .matcher(Matcher::builder().http_code("200").build());
        }
        let out = req.send().await.op("elbv2:CreateTargetGroup")?;
        let tg = out
            .target_groups()
            .first()
            .cloned()
            .ok_or(AwsError::Incomplete {
                op: "elbv2:CreateTargetGroup",
                field: "TargetGroups",
            })?;
        let arn = required(
            tg.target_group_arn(),
            "elbv2:CreateTargetGroup",
            "TargetGroupArn",
        )?
        .to_owned();
        step.remember("target_group", &arn);
        Ok(FoundTargetGroup {
            name,
            arn,
            tg,
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundTargetGroup,
    ) -> Result<Vec<Fix>, AwsError> {
        let tg = &found.tg;
        if tg.target_type() != Some(&self.kind.target_type()) {
            return Err(AwsError::Conflict(format!(
                "target group {} is of type {:?}, payops needs {}; AWS cannot change it in \
                 place: run `payops down` first",
                found.name,
                tg.target_type(),
                self.kind.target_type().as_str()
            )));
        }
        let mut fixes = Vec::new();
        if matches!(self.kind, TgKind::Blue | TgKind::Green)
            && !self
                .permission_in_place(cx, self.kind.short(), &found.arn)
                .await?
        {
            fixes.push(Fix::Permission);
        }
        if self.kind == TgKind::Alb
            && (tg.health_check_protocol() != Some(&ProtocolEnum::Https)
                || tg.health_check_path() != Some(HEALTH_PATH)
                || tg.matcher().and_then(|m| m.http_code()) != Some("200"))
        {
            fixes.push(Fix::HealthCheck);
        }
        let want = self.target(step)?;
        let have = self.targets(cx, &found.arn).await?;
        if have != BTreeSet::from([want.clone()]) {
            fixes.push(Fix::Targets {
                deregister: have.into_iter().filter(|t| *t != want).collect(),
                register: want,
            });
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
        _step: &StepCx<'_>,
        found: &mut FoundTargetGroup,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let elb = &cx.clients.elb;
        match fix {
            Fix::Permission => {
                // A statement with our id but another source (a target group
                // re-created by hand) is replaced, not added beside.
                self.remove_permission(cx).await?;
                cx.clients
                    .lambda
                    .add_permission()
                    .function_name(Function::Transaction.name(cx))
                    .qualifier(self.kind.short())
                    .statement_id(self.kind.statement_id())
                    .action("lambda:InvokeFunction")
                    .principal(ELB_PRINCIPAL)
                    .source_arn(&found.arn)
                    .send()
                    .await
                    .op("lambda:AddPermission")?;
            }
            Fix::Targets {
                register,
                deregister,
            } => {
                if !deregister.is_empty() {
                    elb.deregister_targets()
                        .target_group_arn(&found.arn)
                        .set_targets(Some(
                            deregister.iter().map(|(id, p)| target(id, *p)).collect(),
                        ))
                        .send()
                        .await
                        .op("elbv2:DeregisterTargets")?;
                }
                elb.register_targets()
                    .target_group_arn(&found.arn)
                    .targets(target(&register.0, register.1))
                    .send()
                    .await
                    .op("elbv2:RegisterTargets")?;
            }
            Fix::HealthCheck => {
                elb.modify_target_group()
                    .target_group_arn(&found.arn)
                    .health_check_protocol(ProtocolEnum::Https)
                    .health_check_path(HEALTH_PATH)
                    .matcher(Matcher::builder().http_code("200").build())
                    .send()
                    .await
                    .op("elbv2:ModifyTargetGroup")?;
            }
            Fix::Tags(tags) => {
                elb::add_tags(cx, &found.arn, &tags).await?;
                found.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundTargetGroup) -> Record {
        Record::default()
            .resource("target_group", &found.arn)
            .output(self.kind.output_key(), &found.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundTargetGroup,
    ) -> Result<Vec<String>, AwsError> {
        // The listener that forwards here is deleted first (it depends on
        // this step); ELB may still call the group in use for a moment.
        ec2::delete_patiently(
            cx,
            step,
            format!("deleting {}", found.name),
            &["ResourceInUse"],
            &["TargetGroupNotFound"],
            || async {
                cx.clients
                    .elb
                    .delete_target_group()
                    .target_group_arn(&found.arn)
                    .send()
                    .await
                    .op("elbv2:DeleteTargetGroup")
            },
        )
        .await?;
        if matches!(self.kind, TgKind::Blue | TgKind::Green) {
            self.remove_permission(cx).await?;
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::Client;
    use aws_sdk_elasticloadbalancingv2::operation::{
        create_target_group::CreateTargetGroupOutput,
        delete_target_group::{DeleteTargetGroupError, DeleteTargetGroupOutput},
        describe_tags::DescribeTagsOutput,
        describe_target_groups::{DescribeTargetGroupsError, DescribeTargetGroupsOutput},
        describe_target_health::DescribeTargetHealthOutput,
        modify_target_group::ModifyTargetGroupOutput,
        register_targets::RegisterTargetsOutput,
    };
    use aws_sdk_elasticloadbalancingv2::types::{TagDescription, TargetHealthDescription};
    use aws_sdk_lambda::operation::{
        add_permission::AddPermissionOutput,
        get_policy::{GetPolicyError, GetPolicyOutput},
        remove_permission::{RemovePermissionError, RemovePermissionOutput},
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use serde_json::json;

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;
    use crate::resources::testing::elb as fake;

    const ALIAS: &str =
        "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-transaction-processing:blue";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (
                "lambda-function:transaction-processing",
                "TransactionBlueAliasArn",
                ALIAS,
            ),
            (
                "lambda-function:transaction-processing",
                "TransactionGreenAliasArn",
                "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-transaction-processing:green",
            ),
            ("load-balancer:alb", "AlbArn", fake::ALB),
            ("vpc", "VpcId", "vpc-1"),
        ])
    }

    fn policy(tg: &'static str) -> Rule {
        mock!(aws_sdk_lambda::Client::get_policy)
            .match_requests(|r| r.qualifier() == Some("blue"))
            .then_output(move || {
                GetPolicyOutput::builder()
                    .policy(
                        json!({"Statement": [{
                            "Sid": "payops-elb-blue",
                            "Effect": "Allow",
                            "Principal": {"Service": ELB_PRINCIPAL},
                            "Action": "lambda:InvokeFunction",
                            "Condition": {"ArnLike": {"AWS:SourceArn": tg}}
                        }]})
                        .to_string(),
                    )
                    .build()
            })
    }

    fn health(targets: &[(&'static str, Option<i32>)]) -> Rule {
        let targets = targets.to_vec();
        mock!(Client::describe_target_health).then_output(move || {
            let mut out = DescribeTargetHealthOutput::builder();
            for (id, port) in &targets {
                out = out.target_health_descriptions(
                    TargetHealthDescription::builder()
                        .target(target(id, *port))
                        .build(),
                );
            }
            out.build()
        })
    }

    fn context(elb: &[&Rule], lambda: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.elb = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, elb);
        clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, lambda);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_a_lambda_group_lets_it_invoke_the_alias_then_registers_it() {
        let missing = mock!(Client::describe_target_groups).then_error(|| {
            DescribeTargetGroupsError::generic(testing::error_meta("TargetGroupNotFound"))
        });
        let create = mock!(Client::create_target_group)
            .match_requests(|r| {
                r.name() == Some("payops-pr1-blue")
                    && r.target_type() == Some(&TargetTypeEnum::Lambda)
                    && r.port().is_none()
                    && r.tags()
                        .iter()
                        .any(|t| t.value() == Some("target-group:blue"))
            })
            .then_output(|| {
                CreateTargetGroupOutput::builder()
                    .target_groups(fake::target_group("blue"))
                    .build()
            });
        let no_policy = mock!(aws_sdk_lambda::Client::get_policy).then_error(|| {
            GetPolicyError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let remove = mock!(aws_sdk_lambda::Client::remove_permission).then_error(|| {
            RemovePermissionError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (o1, o2) = (order.clone(), order.clone());
        let allow = mock!(aws_sdk_lambda::Client::add_permission)
            .match_requests(move |r| {
                o1.lock().unwrap().push("permission");
                r.qualifier() == Some("blue")
                    && r.principal() == Some(ELB_PRINCIPAL)
                    && r.source_arn() == Some(fake::BLUE)
                    && r.action() == Some("lambda:InvokeFunction")
            })
            .then_output(|| AddPermissionOutput::builder().build());
        let register = mock!(Client::register_targets)
            .match_requests(move |r| {
                o2.lock().unwrap().push("register");
                r.targets().len() == 1 && r.targets()[0].id() == Some(ALIAS)
            })
            .then_output(|| RegisterTargetsOutput::builder().build());
        let cx = context(
            &[&missing, &create, &health(&[]), &register],
            &[&no_policy, &remove, &allow],
        );
        let applied = testing::ensure(
            &cx,
            "target-group:blue",
            TargetGroup::new(TgKind::Blue),
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["BlueTargetGroupArn"], fake::BLUE);
        // AWS refuses to register a function ELB may not invoke yet.
        assert_eq!(*order.lock().unwrap(), ["permission", "register"]);
    }

    #[tokio::test]
    async fn an_owned_group_in_sync_is_adopted_without_mutating_calls() {
        let cx = context(
            &[
                &fake::describe_target_groups(),
                &fake::describe_tags(),
                &health(&[(ALIAS, None)]),
            ],
            &[&policy(fake::BLUE)],
        );
        let applied = testing::ensure(
            &cx,
            "target-group:blue",
            TargetGroup::new(TgKind::Blue),
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    /// Nothing at the first look, the group the lost first attempt made at
    /// the next; the retried CreateTargetGroup (no client token) meets it:
    /// `DuplicateTargetGroupName` (AWS answers so when the settings differ,
    /// the emulators always).
    fn retried_create() -> [Rule; 2] {
        let describe = mock!(Client::describe_target_groups)
            .sequence()
            .error(|| {
                DescribeTargetGroupsError::generic(testing::error_meta("TargetGroupNotFound"))
            })
            .output(|| {
                DescribeTargetGroupsOutput::builder()
                    .target_groups(fake::target_group("blue"))
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_target_group).then_error(|| {
            aws_sdk_elasticloadbalancingv2::operation::create_target_group::CreateTargetGroupError::generic(
                testing::error_meta("DuplicateTargetGroupName"),
            )
        });
        [describe, create]
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let [describe, create] = retried_create();
        let cx = context(
            &[
                &describe,
                &create,
                &fake::describe_tags(),
                &health(&[(ALIAS, None)]),
            ],
            &[&policy(fake::BLUE)],
        );
        let applied = testing::ensure(
            &cx,
            "target-group:blue",
            TargetGroup::new(TgKind::Blue),
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["BlueTargetGroupArn"], fake::BLUE);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_create_conflict_with_a_group_not_ours_is_refused() {
        let [describe, create] = retried_create();
        let untagged = mock!(Client::describe_tags).then_output(|| {
            DescribeTagsOutput::builder()
                .tag_descriptions(TagDescription::builder().resource_arn(fake::BLUE).build())
                .build()
        });
        let cx = context(&[&describe, &create, &untagged], &[]);
        let err = testing::ensure(
            &cx,
            "target-group:blue",
            TargetGroup::new(TgKind::Blue),
            &inputs(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_group_with_our_name_but_not_our_tags_is_refused() {
        let untagged = mock!(Client::describe_tags).then_output(|| {
            DescribeTagsOutput::builder()
                .tag_descriptions(TagDescription::builder().resource_arn(fake::GREEN).build())
                .build()
        });
        let cx = context(&[&fake::describe_target_groups(), &untagged], &[]);
        let err = testing::ensure(
            &cx,
            "target-group:green",
            TargetGroup::new(TgKind::Green),
            &inputs(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
    }

    #[tokio::test]
    async fn the_nlb_group_gets_its_health_check_and_the_alb_back() {
        let drifted = mock!(Client::describe_target_groups).then_output(|| {
            let mut tg = fake::target_group("alb");
            tg.health_check_protocol = Some(ProtocolEnum::Http);
            tg.health_check_path = Some("/".into());
            DescribeTargetGroupsOutput::builder()
                .target_groups(tg)
                .build()
        });
        let modify = mock!(Client::modify_target_group)
            .match_requests(|r| {
                r.health_check_protocol() == Some(&ProtocolEnum::Https)
                    && r.health_check_path() == Some(HEALTH_PATH)
            })
            .then_output(|| ModifyTargetGroupOutput::builder().build());
        let register = mock!(Client::register_targets)
            .match_requests(|r| {
                r.targets()[0].id() == Some(fake::ALB) && r.targets()[0].port() == Some(443)
            })
            .then_output(|| RegisterTargetsOutput::builder().build());
        let cx = context(
            &[
                &drifted,
                &fake::describe_tags(),
                &health(&[]),
                &modify,
                &register,
            ],
            &[],
        );
        let applied = testing::ensure(
            &cx,
            "target-group:alb",
            TargetGroup::new(TgKind::Alb),
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((modify.num_calls(), register.num_calls()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn delete_waits_for_the_listener_to_let_go_and_removes_the_permission() {
        let delete = mock!(Client::delete_target_group)
            .sequence()
            .error(|| DeleteTargetGroupError::generic(testing::error_meta("ResourceInUse")))
            .output(|| DeleteTargetGroupOutput::builder().build())
            .build();
        let remove = mock!(aws_sdk_lambda::Client::remove_permission)
            .match_requests(|r| {
                r.qualifier() == Some("blue") && r.statement_id() == Some("payops-elb-blue")
            })
            .then_output(|| RemovePermissionOutput::builder().build());
        let cx = context(
            &[
                &fake::describe_target_groups(),
                &fake::describe_tags(),
                &delete,
            ],
            &[&remove],
        );
        let removed = testing::destroy(&cx, "target-group:blue", TargetGroup::new(TgKind::Blue))
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!((delete.num_calls(), remove.num_calls()), (2, 1));
        let missing = mock!(Client::describe_target_groups).then_error(|| {
            DescribeTargetGroupsError::generic(testing::error_meta("TargetGroupNotFound"))
        });
        let cx = context(&[&missing], &[]);
        assert_eq!(
            testing::destroy(&cx, "target-group:blue", TargetGroup::new(TgKind::Blue))
                .await
                .unwrap(),
            Removed::AlreadyAbsent
        );
    }
}
