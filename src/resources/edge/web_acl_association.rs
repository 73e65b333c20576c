//! The web ACL in front of one resource: the REST API's stage or the
//! internal ALB (one step each, `web-acl-association:<target>`).
//!
//! An association has no id and no tags: it is found by asking WAF which
//! ACL protects the target (GetWebACLForResource), and counts as this step's
//! only when that ACL is the env's (its name, and ownership tags on it). The
//! target is looked up by its deterministic name too, so `down` on a machine
//! without a state file still finds it.
//!
//! Real-AWS rules encoded here: a REST API is associated per stage, by the
//! ARN `arn:aws:apigateway:<region>::/restapis/<id>/stages/<stage>` (empty
//! account field; WAF API reference, AssociateWebACL); an ALB by its full
//! load balancer ARN. Right after the ACL or the target is created,
//! AssociateWebACL answers WAFUnavailableEntityException (sometimes
//! WAFNonexistentItemException) for up to ~10 minutes
//! (terraform-provider-aws#17527, #29080): retried within a budget.

use std::fmt;

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on, retry_on_codes};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::model::API_STAGE;
use crate::resources::resource::Resource;
use crate::resources::sdk::elb;
use crate::resources::sdk::wafv2::{self, NONEXISTENT};

/// The ACL step and its ARN output.
const ACL_INPUT: (&str, &str) = ("web-acl", "WebAclArn");
const UNAVAILABLE: &str = "WAFUnavailableEntityException";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    ApiStage,
    Alb,
}

impl Target {
    pub fn step_id(self) -> &'static str {
        match self {
            Self::ApiStage => "web-acl-association:api-stage",
            Self::Alb => "web-acl-association:alb",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::ApiStage => "the REST API stage",
            Self::Alb => "the internal ALB",
        }
    }
}

/// The stage's ARN as WAF takes it (no account; execute-api ARNs are refused).
pub fn stage_arn(cx: &Context, api_id: &str) -> String {
    format!(
        "arn:{}:apigateway:{}::/restapis/{api_id}/stages/{API_STAGE}",
        cx.partition(),
        cx.region
    )
}

pub struct Association {
    target: Target,
}

impl Association {
    pub fn new(target: Target) -> Self {
        Self { target }
    }

    /// The target from the dependencies' records (forward walks).
    fn target_from_inputs(&self, cx: &Context, step: &StepCx<'_>) -> Result<String, AwsError> {
        Ok(match self.target {
            Target::ApiStage => stage_arn(cx, step.output("rest-api:payments", "RestApiId")?),
            Target::Alb => step.output("load-balancer:alb", "AlbArn")?.to_owned(),
        })
    }

    /// The target by its name (every walk, with or without a state file).
    async fn target_by_name(&self, cx: &Context) -> Result<Option<String>, AwsError> {
        match self.target {
            Target::Alb => Ok(elb::load_balancer(cx, &cx.names.load_balancer("alb"))
                .await?
                .and_then(|lb| lb.load_balancer_arn().map(str::to_owned))),
            Target::ApiStage => {
                let name = cx.names.rest_api();
                let pages: Vec<_> = cx
                    .clients
                    .apigateway
                    .get_rest_apis()
                    .into_paginator()
                    .send()
                    .collect()
                    .await;
                for page in pages {
                    for api in page.op("apigateway:GetRestApis")?.items() {
                        // Ownership of the API is its own step's business; an
                        // API of our name that is not ours never gets our ACL
                        // because its step refuses it first.
                        if api.name() == Some(name.as_str())
                            && let Some(id) = api.id()
                        {
                            return Ok(Some(stage_arn(cx, id)));
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    async fn associate(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        acl_arn: &str,
        resource: &str,
    ) -> Result<(), AwsError> {
        let progress = |m: String| step.progress(m);
        retry_on_codes(
            format!("WAF to accept the web ACL on {}", self.target.what()),
            &[UNAVAILABLE, NONEXISTENT],
            cx.budgets.waf_propagation,
            &progress,
            || async {
                cx.clients
                    .wafv2
                    .associate_web_acl()
                    .web_acl_arn(acl_arn)
                    .resource_arn(resource)
                    .send()
                    .await
                    .op("wafv2:AssociateWebACL")
                    .map(|_| ())
            },
        )
        .await
    }
}

pub struct FoundAssociation {
    resource: String,
    acl_arn: String,
}

pub enum Fix {
    /// The env's ACL was replaced (same name, new ARN): protect the target
    /// with the current one.
    Reassociate { from: String },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reassociate { from } => {
                write!(f, "associate the env's current web ACL (not {from})")
            }
        }
    }
}

#[async_trait]
impl Resource for Association {
    type Found = FoundAssociation;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "wafv2:web-acl-association"
    }

    async fn find(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
    ) -> Result<Vec<FoundAssociation>, AwsError> {
        let Some(resource) = self.target_by_name(cx).await? else {
            return Ok(Vec::new());
        };
        let out = cx
            .clients
            .wafv2
            .get_web_acl_for_resource()
            .resource_arn(&resource)
            .send()
            .await
            .op("wafv2:GetWebACLForResource");
        let Some(acl) = absent_on(out, &[NONEXISTENT])?.and_then(|o| o.web_acl().cloned()) else {
            return Ok(Vec::new());
        };
        // Another ACL in front of our target is not this step's: `up`
        // associates the env's in its place, `down` leaves it alone.
        if acl.name() != cx.names.web_acl() {
            return Ok(Vec::new());
        }
        match wafv2::tags_of(cx, acl.arn()).await? {
            Some(tags) if cx.is_ours(&tags) => Ok(vec![FoundAssociation {
                resource,
                acl_arn: acl.arn().to_owned(),
            }]),
            _ => Ok(Vec::new()),
        }
    }

    fn describe(&self, found: &FoundAssociation) -> String {
        format!("{} -> {}", found.acl_arn, found.resource)
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundAssociation, AwsError> {
        let acl_arn = step.output(ACL_INPUT.0, ACL_INPUT.1)?;
        let resource = self.target_from_inputs(cx, step)?;
        self.associate(cx, step, acl_arn, &resource).await?;
        Ok(FoundAssociation {
            resource,
            acl_arn: acl_arn.to_owned(),
        })
    }

    async fn diff(
        &self,
        _cx: &Context,
        step: &StepCx<'_>,
        found: &FoundAssociation,
    ) -> Result<Vec<Fix>, AwsError> {
        let acl_arn = step.output(ACL_INPUT.0, ACL_INPUT.1)?;
        Ok(if found.acl_arn == acl_arn {
            Vec::new()
        } else {
            vec![Fix::Reassociate {
                from: found.acl_arn.clone(),
            }]
        })
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundAssociation,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Reassociate { .. } => {
                let acl_arn = step.output(ACL_INPUT.0, ACL_INPUT.1)?;
                self.associate(cx, step, acl_arn, &found.resource).await?;
                found.acl_arn = acl_arn.to_owned();
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundAssociation) -> Record {
        Record::default().resource("protected", &found.resource)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundAssociation,
    ) -> Result<Vec<String>, AwsError> {
        let out = cx
            .clients
            .wafv2
            .disassociate_web_acl()
            .resource_arn(&found.resource)
            .send()
            .await
            .op("wafv2:DisassociateWebACL");
        absent_on(out, &[NONEXISTENT])?;
        Ok(vec![format!("removed the web ACL from {}", found.resource)])
    }
}
