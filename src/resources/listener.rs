//! Listeners:
//!
//! - the ALB's HTTPS listener on 443: TLS 1.2 or newer (TLS 1.3 policy with
//!   1.2 fallback), the env's certificate, and one forward action to the blue
//!   and green target groups by weight. `up` creates it at blue 100 / green 0
//!   and from then on leaves the weights to the operator (`payops shift`); it
//!   repairs the action only if it no longer forwards to both groups.
//! - the NLB's TCP listener on 443, forwarding to the ALB's target group
//!   (TLS passes through to the ALB).

use std::fmt;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener as ElbListener, ProtocolEnum,
};

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::spec::Certificate as CertificateSpec;
use crate::tags::TagMap;

use super::context::Context;
use super::ec2::describe_tag_fix;
use super::elb;
use super::resource::Resource;
use super::traffic::{self, HTTPS_PORT, Weights};

/// TLS 1.3 with TLS 1.2 for older clients; nothing older.
pub const SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    AlbHttps,
    NlbTcp,
}

impl ListenerKind {
    fn load_balancer(self) -> &'static str {
        match self {
            Self::AlbHttps => "alb",
            Self::NlbTcp => "nlb",
        }
    }

    fn protocol(self) -> ProtocolEnum {
        match self {
            Self::AlbHttps => ProtocolEnum::Https,
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
        }
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
        match self.kind {
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
                if self.kind == ListenerKind::AlbHttps {
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
