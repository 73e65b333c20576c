//! Listeners:
//!
//! - the ALB's HTTPS listener on 443: TLS 1.2 or newer (TLS 1.3 policy with
//!   1.2 fallback), the env's certificate, and one forward action to the blue
//!   and green target groups by weight. `up` creates it at blue 100 / green 0
//!   and from then on leaves the weights to the operator (`payops shift`); it
//!   repairs the action only if it no longer forwards to both groups.
//! - the NLB's TCP listener on 443, forwarding to the ALB's target group
//!   (TLS passes through to the ALB).
//! - with `--dns on`, the maintenance ALB's HTTPS listener on 443 (same TLS
//!   policy and certificate as the ALB's): one fixed-response action, 503
//!   `{"error":"MAINTENANCE"}` in JSON, the payments SECONDARY answer. A
//!   fixed response can set no header (ELB FixedResponseActionConfig has
//!   only status, content type and body), so there is no Retry-After: the
//!   body says to retry.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, Listener as ElbListener,
    ProtocolEnum,
};

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::spec::Certificate as CertificateSpec;
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::model::HTTPS_PORT;
use crate::resources::resource::Resource;
use crate::resources::sdk::elb;
use crate::resources::traffic::{self, Weights};
use crate::tags::describe_tag_fix;

/// TLS 1.3 with TLS 1.2 for older clients; nothing older.
pub const SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

/// The maintenance answer: Service Unavailable, in the API's error shape.
pub const MAINTENANCE_STATUS: &str = "503";
pub const MAINTENANCE_CONTENT_TYPE: &str = "application/json";
pub const MAINTENANCE_BODY: &str =
    r#"{"error":"MAINTENANCE","message":"payments are briefly unavailable; retry shortly"}"#;

/// The maintenance listener's only action.
pub fn maintenance_action() -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(
            FixedResponseActionConfig::builder()
                .status_code(MAINTENANCE_STATUS)
                .content_type(MAINTENANCE_CONTENT_TYPE)
                .message_body(MAINTENANCE_BODY)
                .build(),
        )
        .build()
}

/// Whether `actions` is exactly the maintenance answer.
fn answers_maintenance(actions: &[Action]) -> bool {
    matches!(actions, [a] if a.r#type() == Some(&ActionTypeEnum::FixedResponse)
    && a.fixed_response_config().is_some_and(|c| {
        c.status_code() == Some(MAINTENANCE_STATUS)
            && c.content_type() == Some(MAINTENANCE_CONTENT_TYPE)
            && c.message_body() == Some(MAINTENANCE_BODY)
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    AlbHttps,
    NlbTcp,
    MaintenanceHttps,
}

impl ListenerKind {
    fn load_balancer(self) -> &'static str {
        match self {
            Self::AlbHttps => "alb",
            Self::NlbTcp => "nlb",
            Self::MaintenanceHttps => "maint",
        }
    }

    fn protocol(self) -> ProtocolEnum {
        match self {
            Self::AlbHttps | Self::MaintenanceHttps => ProtocolEnum::Https,
            Self::NlbTcp => ProtocolEnum::Tcp,
        }
    }
}

pub struct Listener {
    kind: ListenerKind,
}

impl Listener {
    pub fn new(kind: ListenerKind) -> Self {
        Self { kind }
    }

    /// The certificate the ALB presents: the operator's, or the one payops
    /// imported. ALB takes only certificates of its own region.
    fn certificate(&self, cx: &Context, step: &StepCx<'_>) -> Result<String, AwsError> {
        match &cx.spec.certificate {
            CertificateSpec::Acm(arn) => {
                let region = arn.split(':').nth(3).unwrap_or_default();
                if region != cx.region {
                    return Err(AwsError::Conflict(format!(
                        "certificate {arn} is in {region}, but an ALB in {} can only use an ACM \
                         certificate of its own region",
                        cx.region
                    )));
                }
                Ok(arn.clone())
            }
            CertificateSpec::SelfSigned => Ok(step
                .output("acm-certificate:alb", "AlbCertificateArn")?
                .to_owned()),
        }
    }

    fn target_groups<'a>(step: &'a StepCx<'_>) -> Result<(&'a str, &'a str), AwsError> {
        Ok((
            step.output("target-group:blue", "BlueTargetGroupArn")?,
            step.output("target-group:green", "GreenTargetGroupArn")?,
        ))
    }

    fn nlb_forward(step: &StepCx<'_>) -> Result<Action, AwsError> {
        Ok(Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(step.output("target-group:alb", "NlbTargetGroupArn")?)
            .build())
    }
}

pub struct FoundListener {
    arn: String,
    listener: ElbListener,
    tags: TagMap,
}

pub enum Fix {
    /// Port, protocol, certificate or TLS policy.
    Settings(Vec<&'static str>),
    /// The default action no longer forwards to both slots (or, for the NLB,
    /// to the ALB): reset it.
    Forward,
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Settings(what) => write!(f, "update {}", what.join(", ")),
            Self::Forward => f.write_str(
                "forward to the target groups again (the default action was replaced; \
                 weights start over at blue 100% / green 0%)",
            ),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

#[async_trait]
impl Resource for Listener {
    type Found = FoundListener;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        match self.kind {
            ListenerKind::AlbHttps => "elbv2:https-listener",
            ListenerKind::NlbTcp => "elbv2:tcp-listener",
            ListenerKind::MaintenanceHttps => "elbv2:maintenance-listener",
        }
    }

    /// The maintenance listener exists only with the env's DNS (`--dns`).
    fn wanted(&self, cx: &Context) -> bool {
        self.kind != ListenerKind::MaintenanceHttps || cx.spec.dns
    }

    /// CreateListener meets the listener its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["DuplicateListener"]
    }

    /// Found through its load balancer's name (no inputs on teardown).
    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundListener>, AwsError> {
        let name = cx.names.load_balancer(self.kind.load_balancer());
        let Some(lb) = elb::load_balancer(cx, &name).await? else {
            return Ok(Vec::new());
        };
        let Some(lb_arn) = lb.load_balancer_arn() else {
            return Ok(Vec::new());
        };
        let out = cx
            .clients
            .elb
            .describe_listeners()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .op("elbv2:DescribeListeners");
        let Some(out) = absent_on(out, &["LoadBalancerNotFound"])? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for l in out
            .listeners()
            .iter()
            .filter(|l| l.port() == Some(HTTPS_PORT))
        {
            let arn = required(l.listener_arn(), "elbv2:DescribeListeners", "ListenerArn")?;
            let tags = elb::tags_of(cx, arn).await?;
            cx.check_ours(format!("listener {arn}"), &tags)?;
            found.push(FoundListener {
                arn: arn.to_owned(),
                listener: l.clone(),
                tags,
            });
        }
        Ok(found)
    }

    fn describe(&self, found: &FoundListener) -> String {
        found.arn.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundListener, AwsError> {
        let (lb_step, lb_key) = match self.kind {
            ListenerKind::AlbHttps => ("load-balancer:alb", "AlbArn"),
            ListenerKind::NlbTcp => ("load-balancer:nlb", "NlbArn"),
            ListenerKind::MaintenanceHttps => ("load-balancer:maintenance", "MaintenanceAlbArn"),
        };
        let tags = cx.tagger.for_create(step.id().as_str());
        let mut req = cx
            .clients
            .elb
            .create_listener()
            .load_balancer_arn(step.output(lb_step, lb_key)?)
            .port(HTTPS_PORT)
            .protocol(self.kind.protocol())
            .set_tags(Some(elb::tag_list(&tags)));
        req = match self.kind {
            ListenerKind::AlbHttps => {
                let (blue, green) = Self::target_groups(step)?;
                req.ssl_policy(SSL_POLICY)
                    .certificates(
                        Certificate::builder()
                            .certificate_arn(self.certificate(cx, step)?)
                            .build(),
                    )
                    // The weights start here; after this they are the operator's.
                    .default_actions(traffic::forward(blue, green, Weights::DEFAULT))
            }
            ListenerKind::NlbTcp => req.default_actions(Self::nlb_forward(step)?),
            ListenerKind::MaintenanceHttps => req
                .ssl_policy(SSL_POLICY)
                .certificates(
                    Certificate::builder()
                        .certificate_arn(self.certificate(cx, step)?)
                        .build(),
                )
                .default_actions(maintenance_action()),
        };
        let out = req.send().await.op("elbv2:CreateListener")?;
        let listener = out
            .listeners()
            .first()
            .cloned()
            .ok_or(AwsError::Incomplete {
                op: "elbv2:CreateListener",
                field: "Listeners",
            })?;
        let arn = required(
            listener.listener_arn(),
            "elbv2:CreateListener",
            "ListenerArn",
        )?
        .to_owned();
        step.remember("listener", &arn);
        Ok(FoundListener {
            arn,
            listener,
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundListener,
    ) -> Result<Vec<Fix>, AwsError> {
        let l = &found.listener;
        let mut settings = Vec::new();
        if l.protocol() != Some(&self.kind.protocol()) {
            settings.push("protocol");
        }
        let mut fixes = Vec::new();
        if self.kind == ListenerKind::MaintenanceHttps {
            if l.ssl_policy() != Some(SSL_POLICY) {
                settings.push("TLS policy");
            }
            let want = self.certificate(cx, step)?;
            let have: Vec<&str> = l
                .certificates()
                .iter()
                .filter_map(|c| c.certificate_arn())
                .collect();
            if have != [want.as_str()] {
                settings.push("certificate");
            }
            if !answers_maintenance(l.default_actions()) {
                fixes.push(Fix::Forward);
            }
        }
        match self.kind {
            ListenerKind::MaintenanceHttps => {}
            ListenerKind::AlbHttps => {
                if l.ssl_policy() != Some(SSL_POLICY) {
                    settings.push("TLS policy");
                }
                let want = self.certificate(cx, step)?;
                let have: Vec<&str> = l
                    .certificates()
                    .iter()
                    .filter_map(|c| c.certificate_arn())
                    .collect();
                if have != [want.as_str()] {
                    settings.push("certificate");
                }
                let (blue, green) = Self::target_groups(step)?;
                // Any weights are fine: they are the operator's.
                if traffic::weights_in(l.default_actions(), blue, green).is_none() {
                    fixes.push(Fix::Forward);
                }
            }
            ListenerKind::NlbTcp => {
                let want = step.output("target-group:alb", "NlbTargetGroupArn")?;
                let forwards = matches!(
                    l.default_actions(),
                    [a] if a.r#type() == Some(&ActionTypeEnum::Forward)
                        && (a.target_group_arn() == Some(want)
                            || a.forward_config().is_some_and(|f| {
                                matches!(f.target_groups(), [t] if t.target_group_arn() == Some(want))
                            }))
                );
                if !forwards {
                    fixes.push(Fix::Forward);
                }
            }
        }
        if !settings.is_empty() {
            fixes.insert(0, Fix::Settings(settings));
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
        found: &mut FoundListener,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let elb = &cx.clients.elb;
        match fix {
            Fix::Settings(_) => {
                let mut req = elb
                    .modify_listener()
                    .listener_arn(&found.arn)
                    .port(HTTPS_PORT)
                    .protocol(self.kind.protocol());
                if self.kind != ListenerKind::NlbTcp {
                    req = req.ssl_policy(SSL_POLICY).certificates(
                        Certificate::builder()
                            .certificate_arn(self.certificate(cx, step)?)
                            .build(),
                    );
                }
                req.send().await.op("elbv2:ModifyListener")?;
            }
            Fix::Forward => {
                let action = match self.kind {
                    ListenerKind::AlbHttps => {
                        let (blue, green) = Self::target_groups(step)?;
                        traffic::forward(blue, green, Weights::DEFAULT)
                    }
                    ListenerKind::NlbTcp => Self::nlb_forward(step)?,
                    ListenerKind::MaintenanceHttps => maintenance_action(),
                };
                elb.modify_listener()
                    .listener_arn(&found.arn)
                    .default_actions(action)
                    .send()
                    .await
                    .op("elbv2:ModifyListener")?;
            }
            Fix::Tags(tags) => {
                elb::add_tags(cx, &found.arn, &tags).await?;
                found.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundListener) -> Record {
        let key = match self.kind {
            ListenerKind::AlbHttps => "AlbListenerArn",
            ListenerKind::NlbTcp => "NlbListenerArn",
            ListenerKind::MaintenanceHttps => "MaintenanceListenerArn",
        };
        Record::default()
            .resource("listener", &found.arn)
            .output(key, &found.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundListener,
    ) -> Result<Vec<String>, AwsError> {
        let deleted = cx
            .clients
            .elb
            .delete_listener()
            .listener_arn(&found.arn)
            .send()
            .await
            .op("elbv2:DeleteListener");
        absent_on(deleted, &["ListenerNotFound"])?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::Client;
    use aws_sdk_elasticloadbalancingv2::operation::{
        create_listener::CreateListenerOutput, delete_listener::DeleteListenerOutput,
        describe_listeners::DescribeListenersOutput, describe_tags::DescribeTagsOutput,
        modify_listener::ModifyListenerOutput,
    };
    use aws_sdk_elasticloadbalancingv2::types::{FixedResponseActionConfig, TagDescription};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;
    use crate::resources::testing::elb as fake;

    const STEP: &str = "listener:alb-https";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            ("load-balancer:alb", "AlbArn", fake::ALB),
            ("load-balancer:nlb", "NlbArn", fake::NLB),
            ("target-group:blue", "BlueTargetGroupArn", fake::BLUE),
            ("target-group:green", "GreenTargetGroupArn", fake::GREEN),
            ("target-group:alb", "NlbTargetGroupArn", fake::TO_ALB),
            ("acm-certificate:alb", "AlbCertificateArn", fake::CERT),
        ])
    }

    fn listeners(listeners: Vec<ElbListener>) -> Rule {
        mock!(Client::describe_listeners).then_output(move || {
            DescribeListenersOutput::builder()
                .set_listeners(Some(listeners.clone()))
                .build()
        })
    }

    fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.elb = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_an_https_listener_on_tls_1_2_plus_starting_all_on_blue() {
        let create = mock!(Client::create_listener)
            .match_requests(|r| {
                r.load_balancer_arn() == Some(fake::ALB)
                    && r.port() == Some(443)
                    && r.protocol() == Some(&ProtocolEnum::Https)
                    && r.ssl_policy() == Some(SSL_POLICY)
                    && r.certificates()[0].certificate_arn() == Some(fake::CERT)
                    && traffic::weights_in(r.default_actions(), fake::BLUE, fake::GREEN)
                        == Some(Weights {
                            blue: 100,
                            green: 0,
                        })
                    && r.tags().iter().any(|t| t.value() == Some(STEP))
            })
            .then_output(|| {
                CreateListenerOutput::builder()
                    .listeners(fake::https_listener(Weights::DEFAULT))
                    .build()
            });
        let cx = context(&[
            &fake::describe_load_balancers(),
            &listeners(vec![]),
            &create,
            &fake::describe_tags(),
        ]);
        let applied = testing::ensure(&cx, STEP, Listener::new(ListenerKind::AlbHttps), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["AlbListenerArn"], fake::HTTPS);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn the_operators_weights_are_not_drift() {
        let shifted = listeners(vec![fake::https_listener(Weights::with_green(30))]);
        let cx = context(&[
            &fake::describe_load_balancers(),
            &shifted,
            &fake::describe_tags(),
        ]);
        let applied = testing::ensure(&cx, STEP, Listener::new(ListenerKind::AlbHttps), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    /// No listener at the first look, the one the lost first attempt made
    /// at the next; the retried CreateListener (no client token) meets it on
    /// the same port: `DuplicateListener`.
    fn retried_create() -> [Rule; 2] {
        let describe = mock!(Client::describe_listeners)
            .sequence()
            .output(|| DescribeListenersOutput::builder().build())
            .output(|| {
                DescribeListenersOutput::builder()
                    .listeners(fake::https_listener(Weights::DEFAULT))
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_listener).then_error(|| {
            aws_sdk_elasticloadbalancingv2::operation::create_listener::CreateListenerError::generic(
                testing::error_meta("DuplicateListener"),
            )
        });
        [describe, create]
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let [describe, create] = retried_create();
        let cx = context(&[
            &fake::describe_load_balancers(),
            &describe,
            &create,
            &fake::describe_tags(),
        ]);
        let applied = testing::ensure(&cx, STEP, Listener::new(ListenerKind::AlbHttps), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["AlbListenerArn"], fake::HTTPS);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_create_conflict_with_a_listener_not_ours_is_refused() {
        let [describe, create] = retried_create();
        let untagged = mock!(Client::describe_tags).then_output(|| {
            DescribeTagsOutput::builder()
                .tag_descriptions(TagDescription::builder().resource_arn(fake::HTTPS).build())
                .build()
        });
        let cx = context(&[
            &fake::describe_load_balancers(),
            &describe,
            &create,
            &untagged,
        ]);
        let err = testing::ensure(&cx, STEP, Listener::new(ListenerKind::AlbHttps), &inputs())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_listener_not_tagged_as_ours_is_refused() {
        let untagged = mock!(Client::describe_tags).then_output(|| {
            DescribeTagsOutput::builder()
                .tag_descriptions(TagDescription::builder().resource_arn(fake::HTTPS).build())
                .build()
        });
        let cx = context(&[
            &fake::describe_load_balancers(),
            &listeners(vec![fake::https_listener(Weights::DEFAULT)]),
            &untagged,
        ]);
        let err = testing::ensure(&cx, STEP, Listener::new(ListenerKind::AlbHttps), &inputs())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
    }

    #[tokio::test]
    async fn an_old_tls_policy_and_a_replaced_action_are_repaired() {
        let mut drifted = fake::https_listener(Weights::DEFAULT);
        drifted.ssl_policy = Some("ELBSecurityPolicy-2016-08".into());
        drifted.default_actions = Some(vec![
            Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    FixedResponseActionConfig::builder()
                        .status_code("503")
                        .build(),
                )
                .build(),
        ]);
        let settings = mock!(Client::modify_listener)
            .match_requests(|r| {
                r.ssl_policy() == Some(SSL_POLICY) && r.default_actions().is_empty()
            })
            .then_output(|| ModifyListenerOutput::builder().build());
        let forward = mock!(Client::modify_listener)
            .match_requests(|r| {
                traffic::weights_in(r.default_actions(), fake::BLUE, fake::GREEN)
                    == Some(Weights::DEFAULT)
            })
            .then_output(|| ModifyListenerOutput::builder().build());
        let cx = context(&[
            &fake::describe_load_balancers(),
            &listeners(vec![drifted]),
            &fake::describe_tags(),
            &settings,
            &forward,
        ]);
        let applied = testing::ensure(&cx, STEP, Listener::new(ListenerKind::AlbHttps), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((settings.num_calls(), forward.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_operator_certificate_must_be_in_the_albs_region() {
        let mut cx = context(&[]);
        cx.spec.certificate =
            CertificateSpec::Acm("arn:aws:acm:eu-west-1:123456789012:certificate/x".into());
        let step_id = crate::engine::StepId::from(STEP);
        let events = testing::Events::default();
        let step = testing::step_cx(&step_id, Default::default(), &events);
        let err = Listener::new(ListenerKind::AlbHttps)
            .certificate(&cx, &step)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only use an ACM certificate of its own region"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_nlb_listener_forwards_tcp_to_the_alb_group() {
        let nlb_listeners = mock!(Client::describe_listeners)
            .match_requests(|r| r.load_balancer_arn() == Some(fake::NLB))
            .then_output(|| DescribeListenersOutput::builder().build());
        let create = mock!(Client::create_listener)
            .match_requests(|r| {
                r.protocol() == Some(&ProtocolEnum::Tcp)
                    && r.port() == Some(443)
                    && r.certificates().is_empty()
                    && r.default_actions()[0].target_group_arn() == Some(fake::TO_ALB)
            })
            .then_output(|| {
                CreateListenerOutput::builder()
                    .listeners(
                        ElbListener::builder()
                            .listener_arn(fake::TCP)
                            .port(443)
                            .protocol(ProtocolEnum::Tcp)
                            .default_actions(
                                Action::builder()
                                    .r#type(ActionTypeEnum::Forward)
                                    .target_group_arn(fake::TO_ALB)
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let cx = context(&[&fake::describe_load_balancers(), &nlb_listeners, &create]);
        let applied = testing::ensure(
            &cx,
            "listener:nlb-tcp",
            Listener::new(ListenerKind::NlbTcp),
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["NlbListenerArn"], fake::TCP);
    }

    #[tokio::test]
    async fn delete_removes_the_listener_and_nothing_found_is_absent() {
        let delete = mock!(Client::delete_listener)
            .match_requests(|r| r.listener_arn() == Some(fake::HTTPS))
            .then_output(|| DeleteListenerOutput::builder().build());
        let cx = context(&[
            &fake::describe_load_balancers(),
            &listeners(vec![fake::https_listener(Weights::DEFAULT)]),
            &fake::describe_tags(),
            &delete,
        ]);
        let removed = testing::destroy(&cx, STEP, Listener::new(ListenerKind::AlbHttps))
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        let cx = context(&[&fake::describe_load_balancers(), &listeners(vec![])]);
        assert_eq!(
            testing::destroy(&cx, STEP, Listener::new(ListenerKind::AlbHttps))
                .await
                .unwrap(),
            Removed::AlreadyAbsent
        );
    }
}
