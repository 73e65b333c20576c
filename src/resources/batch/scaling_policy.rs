//! The batch group's target-tracking policies: average CPU (a metric Auto
//! Scaling publishes) and memory used (the CloudWatch agent's
//! `mem_used_percent`, which the user data makes it publish per group).
//!
//! Target tracking creates and owns its own CloudWatch alarms
//! (`TargetTracking-...`): payops never touches them, and they go with the
//! policy. The env's own alarms on both metrics are in the observability
//! domain.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_autoscaling::types::{
    CustomizedMetricSpecification, MetricDimension, MetricStatistic, MetricType,
    PredefinedMetricSpecification, ScalingPolicy as AwsPolicy, TargetTrackingConfiguration,
};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::resource::Resource;

use super::user_data::{AGENT_NAMESPACE, MEMORY_METRIC};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Cpu,
    Memory,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Cpu, Metric::Memory];

    pub fn slug(self) -> &'static str {
        match self {
            Metric::Cpu => "batch-cpu",
            Metric::Memory => "batch-memory",
        }
    }

    pub fn step_id(self) -> String {
        format!("scaling-policy:{}", self.slug())
    }

    /// Percent: room for a report's burst before a second instance.
    fn target(self) -> f64 {
        match self {
            Metric::Cpu => 60.0,
            Metric::Memory => 70.0,
        }
    }
}

pub struct ScalingPolicy {
    metric: Metric,
}

impl ScalingPolicy {
    pub fn new(metric: Metric) -> Self {
        Self { metric }
    }

    fn name(&self, cx: &Context) -> String {
        cx.names.resource(self.metric.slug())
    }

    fn configuration(&self, group: &str) -> TargetTrackingConfiguration {
        let c = TargetTrackingConfiguration::builder().target_value(self.metric.target());
        match self.metric {
            Metric::Cpu => c.predefined_metric_specification(
                PredefinedMetricSpecification::builder()
                    .predefined_metric_type(MetricType::AsgAverageCpuUtilization)
                    .build(),
            ),
            Metric::Memory => c.customized_metric_specification(
                CustomizedMetricSpecification::builder()
                    .namespace(AGENT_NAMESPACE)
                    .metric_name(MEMORY_METRIC)
                    .dimensions(
                        MetricDimension::builder()
                            .name("AutoScalingGroupName")
                            .value(group)
                            .build(),
                    )
                    .statistic(MetricStatistic::Average)
                    .build(),
            ),
        }
        .build()
    }
}

pub struct FoundPolicy {
    name: String,
    arn: String,
    configuration: Option<TargetTrackingConfiguration>,
}

pub struct Fix;

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("set the target-tracking configuration")
    }
}

fn group(cx: &Context) -> String {
    cx.names.resource("batch")
}

/// The parts payops sets, in comparable form (emulators and AWS echo more,
/// e.g. DisableScaleIn).
fn comparable(c: &TargetTrackingConfiguration) -> String {
    let predefined = c
        .predefined_metric_specification()
        .and_then(|p| p.predefined_metric_type())
        .map(|t| t.as_str().to_owned());
    let custom = c.customized_metric_specification().map(|m| {
        let mut dims: Vec<String> = m
            .dimensions()
            .iter()
            .map(|d| format!("{:?}={:?}", d.name(), d.value()))
            .collect();
        dims.sort();
        format!(
            "{:?}/{:?}/{:?}/{dims:?}",
            m.namespace(),
            m.metric_name(),
            m.statistic().map(|s| s.as_str())
        )
    });
    format!("{:?}|{predefined:?}|{custom:?}", c.target_value())
}

#[async_trait]
impl Resource for ScalingPolicy {
    type Found = FoundPolicy;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "autoscaling:scaling-policy"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.batch.on
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundPolicy>, AwsError> {
        let name = self.name(cx);
        let out = cx
            .clients
            .autoscaling
            .describe_policies()
            .auto_scaling_group_name(group(cx))
            .policy_names(&name)
            .send()
            .await
            .op("autoscaling:DescribePolicies");
        // The group itself gone: so are its policies.
        let Some(out) = absent_on(out, &["ValidationError"])? else {
            return Ok(Vec::new());
        };
        Ok(out
            .scaling_policies()
            .iter()
            .filter(|p| p.policy_name() == Some(name.as_str()))
            .map(|p: &AwsPolicy| FoundPolicy {
                name: name.clone(),
                arn: p.policy_arn().unwrap_or_default().to_owned(),
                configuration: p.target_tracking_configuration().cloned(),
            })
            .collect())
    }

    fn describe(&self, p: &FoundPolicy) -> String {
        p.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundPolicy, AwsError> {
        let name = self.name(cx);
        let configuration = self.configuration(&group(cx));
        let out = cx
            .clients
            .autoscaling
            .put_scaling_policy()
            .auto_scaling_group_name(group(cx))
            .policy_name(&name)
            .policy_type("TargetTrackingScaling")
            .target_tracking_configuration(configuration.clone())
            .send()
            .await
            .op("autoscaling:PutScalingPolicy")?;
        let mut arn = out.policy_arn().unwrap_or_default().to_owned();
        if arn.is_empty() {
            // LocalStack answers without PolicyARN: read it back, so the
            // recorded output is the same as a later `find`'s.
            arn = self
                .find(cx, step)
                .await?
                .pop()
                .map(|p| p.arn)
                .unwrap_or_default();
        }
        Ok(FoundPolicy {
            name,
            arn,
            configuration: Some(configuration),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        p: &FoundPolicy,
    ) -> Result<Vec<Fix>, AwsError> {
        let want = comparable(&self.configuration(&group(cx)));
        Ok(match &p.configuration {
            Some(c) if comparable(c) == want => Vec::new(),
            _ => vec![Fix],
        })
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        p: &mut FoundPolicy,
        _fix: Fix,
    ) -> Result<(), AwsError> {
        // PutScalingPolicy replaces the policy of that name.
        *p = self.create(cx, step).await?;
        Ok(())
    }

    fn record(&self, _cx: &Context, p: &FoundPolicy) -> Record {
        let key = match self.metric {
            Metric::Cpu => "BatchCpuScalingPolicyArn",
            Metric::Memory => "BatchMemoryScalingPolicyArn",
        };
        Record::default()
            .resource("policy", &p.name)
            .output(key, &p.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        p: FoundPolicy,
    ) -> Result<Vec<String>, AwsError> {
        absent_on(
            cx.clients
                .autoscaling
                .delete_policy()
                .auto_scaling_group_name(group(cx))
                .policy_name(&p.name)
                .send()
                .await
                .op("autoscaling:DeletePolicy"),
            &["ValidationError"],
        )?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    #[test]
    fn memory_tracks_the_agents_metric_of_this_group_and_cpu_the_predefined_one() {
        let cx = testing::context(testing::clients());
        let memory = ScalingPolicy::new(Metric::Memory).configuration(&group(&cx));
        let m = memory.customized_metric_specification().unwrap();
        assert_eq!(
            (m.namespace(), m.metric_name()),
            (Some("CWAgent"), Some("mem_used_percent"))
        );
        assert_eq!(m.dimensions()[0].value(), Some("payops-pr1-batch"));
        let cpu = ScalingPolicy::new(Metric::Cpu).configuration(&group(&cx));
        assert_eq!(
            cpu.predefined_metric_specification()
                .unwrap()
                .predefined_metric_type(),
            Some(&MetricType::AsgAverageCpuUtilization)
        );
        assert_ne!(comparable(&cpu), comparable(&memory));
        assert_eq!(comparable(&cpu), comparable(&cpu.clone()));
    }
}
