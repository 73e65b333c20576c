//! The web ACL's logging: blocked requests only, to the env's
//! `aws-waf-logs-...` bucket.
//!
//! One logging configuration per ACL, and PutLoggingConfiguration replaces
//! it whole (WAF API reference, PutLoggingConfiguration), so a drifted one is
//! simply put again. The destination must be named `aws-waf-logs-*` (WAF
//! refuses others); the bucket's policy lets `delivery.logs.amazonaws.com`
//! write (see `common/s3_bucket.rs`). The filter keeps records whose action
//! is BLOCK and drops the rest: allowed payment traffic is not copied into
//! logs, and the volume stays that of attacks.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_wafv2::types::{
    ActionCondition, ActionValue, Condition, Filter, FilterBehavior, FilterRequirement,
    LoggingConfiguration, LoggingFilter,
};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::wafv2::{self, NONEXISTENT, built};

const OP: &str = "wafv2:PutLoggingConfiguration";
const ACL_INPUT: (&str, &str) = ("web-acl", "WebAclArn");
const BUCKET_INPUT: (&str, &str) = ("s3-bucket:waf-logs", "WafLogBucketArn");

pub struct WafLogging;

pub struct FoundLogging {
    acl_arn: String,
    destinations: Vec<String>,
    filter: Option<LoggingFilter>,
}

pub enum Fix {
    Put,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Put => f.write_str("log blocked requests (only) to the WAF log bucket"),
        }
    }
}

/// Keep BLOCK, drop everything else.
pub fn blocked_only() -> Result<LoggingFilter, AwsError> {
    let blocked = Condition::builder()
        .action_condition(built(
            OP,
            ActionCondition::builder()
                .action(ActionValue::Block)
                .build(),
        )?)
        .build();
    let keep = built(
        OP,
        Filter::builder()
            .behavior(FilterBehavior::Keep)
            .requirement(FilterRequirement::MeetsAny)
            .conditions(blocked)
            .build(),
    )?;
    built(
        OP,
        LoggingFilter::builder()
            .filters(keep)
            .default_behavior(FilterBehavior::Drop)
            .build(),
    )
}

impl WafLogging {
    async fn put(&self, cx: &Context, acl_arn: &str, bucket_arn: &str) -> Result<(), AwsError> {
        let config = built(
            OP,
            LoggingConfiguration::builder()
                .resource_arn(acl_arn)
                .log_destination_configs(bucket_arn)
                .logging_filter(blocked_only()?)
                .build(),
        )?;
        cx.clients
            .wafv2
            .put_logging_configuration()
            .logging_configuration(config)
            .send()
            .await
            .op(OP)?;
        Ok(())
    }
}

#[async_trait]
impl Resource for WafLogging {
    type Found = FoundLogging;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "wafv2:logging-configuration"
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundLogging>, AwsError> {
        let name = cx.names.web_acl();
        let mut found = Vec::new();
        for acl in wafv2::web_acls(cx).await? {
            if acl.name != name {
                continue;
            }
            // The ACL's own step refuses one that is not ours; its logging
            // is not this step's either.
            if !wafv2::tags_of(cx, &acl.arn)
                .await?
                .is_some_and(|t| cx.is_ours(&t))
            {
                continue;
            }
            let out = cx
                .clients
                .wafv2
                .get_logging_configuration()
                .resource_arn(&acl.arn)
                .send()
                .await
                .op("wafv2:GetLoggingConfiguration");
            if let Some(config) =
                absent_on(out, &[NONEXISTENT])?.and_then(|o| o.logging_configuration().cloned())
            {
                found.push(FoundLogging {
                    acl_arn: acl.arn,
                    destinations: config.log_destination_configs().to_vec(),
                    filter: config.logging_filter().cloned(),
                });
            }
        }
        Ok(found)
    }

    fn describe(&self, found: &FoundLogging) -> String {
        format!("logging of {}", found.acl_arn)
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundLogging, AwsError> {
        let acl_arn = step.output(ACL_INPUT.0, ACL_INPUT.1)?;
        let bucket_arn = step.output(BUCKET_INPUT.0, BUCKET_INPUT.1)?;
        self.put(cx, acl_arn, bucket_arn).await?;
        Ok(FoundLogging {
            acl_arn: acl_arn.to_owned(),
            destinations: vec![bucket_arn.to_owned()],
            filter: Some(blocked_only()?),
        })
    }

    async fn diff(
        &self,
        _cx: &Context,
        step: &StepCx<'_>,
        found: &FoundLogging,
    ) -> Result<Vec<Fix>, AwsError> {
        let bucket_arn = step.output(BUCKET_INPUT.0, BUCKET_INPUT.1)?;
        let in_sync =
            found.destinations == [bucket_arn] && found.filter.as_ref() == Some(&blocked_only()?);
        Ok(if in_sync { Vec::new() } else { vec![Fix::Put] })
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundLogging,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Put => {
                let bucket_arn = step.output(BUCKET_INPUT.0, BUCKET_INPUT.1)?;
                self.put(cx, &found.acl_arn, bucket_arn).await?;
                found.destinations = vec![bucket_arn.to_owned()];
                found.filter = Some(blocked_only()?);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundLogging) -> Record {
        Record::default().resource("logged_acl", &found.acl_arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundLogging,
    ) -> Result<Vec<String>, AwsError> {
        let out = cx
            .clients
            .wafv2
            .delete_logging_configuration()
            .resource_arn(&found.acl_arn)
            .send()
            .await
            .op("wafv2:DeleteLoggingConfiguration");
        absent_on(out, &[NONEXISTENT])?;
        Ok(Vec::new())
    }
}
