//! Blue/green traffic: the weights of the internal ALB's HTTPS listener
//! between the blue and green target groups, and the version each alias of
//! transaction processing serves.
//!
//! The weights belong to the operator once the listener exists: `up` creates
//! it at blue 100 / green 0 and never changes them again; `payops shift` moves
//! them (and `status` shows them).

use std::fmt;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupStickinessConfig, TargetGroupTuple,
};
use serde::Serialize;

use crate::aws::{AwsError, OpResult, absent_on};

use crate::resources::context::Context;
use crate::resources::model::{BLUE, Function, GREEN, HTTPS_PORT, SHIFT_GATE};
use crate::resources::sdk::cloudwatch;
use crate::resources::sdk::elb;

/// Listener weights (ALB takes 0-999 per target group; payops writes
/// percentages, an operator may have written anything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub blue: u32,
    pub green: u32,
}

impl Weights {
    pub const DEFAULT: Weights = Weights {
        blue: 100,
        green: 0,
    };

    /// `green` percent to green, the rest to blue.
    pub fn with_green(green: u32) -> Self {
        let green = green.min(100);
        Self {
            blue: 100 - green,
            green,
        }
    }

    /// Green's share of the traffic, rounded to a whole percent.
    pub fn green_percent(self) -> u32 {
        let total = self.blue + self.green;
        (self.green * 100 + total / 2)
            .checked_div(total)
            .unwrap_or(0)
    }

    pub fn blue_percent(self) -> u32 {
        if self.blue + self.green == 0 {
            0
        } else {
            100 - self.green_percent()
        }
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blue {}% / green {}%",
            self.blue_percent(),
            self.green_percent()
        )
    }
}

/// Everything `shift` and `status` need to know about the env's traffic.
#[derive(Clone, Debug, Serialize)]
pub struct Traffic {
    pub listener_arn: String,
    pub blue_target_group: String,
    pub green_target_group: String,
    pub weights: Weights,
    pub blue_version: Option<String>,
    pub green_version: Option<String>,
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |v: &Option<String>| {
            v.as_deref()
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default()
        };
        write!(
            f,
            "blue {}%{} / green {}%{}",
            self.weights.blue_percent(),
            v(&self.blue_version),
            self.weights.green_percent(),
            v(&self.green_version)
        )
    }
}

/// The forward action of the listener: every request to one of the two
/// target groups by weight, no stickiness (a shift takes effect at once).
pub fn forward(blue_tg: &str, green_tg: &str, w: Weights) -> Action {
    let weight = |n: u32| i32::try_from(n).unwrap_or(999);
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(blue_tg)
                        .weight(weight(w.blue))
                        .build(),
                )
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(green_tg)
                        .weight(weight(w.green))
                        .build(),
                )
                .target_group_stickiness_config(
                    TargetGroupStickinessConfig::builder()
                        .enabled(false)
                        .build(),
                )
                .build(),
        )
        .build()
}

/// The weights of `blue_tg` and `green_tg` in a listener's default actions,
/// if it forwards to exactly those two.
pub fn weights_in(actions: &[Action], blue_tg: &str, green_tg: &str) -> Option<Weights> {
    let [action] = actions else {
        return None;
    };
    if action.r#type() != Some(&ActionTypeEnum::Forward) {
        return None;
    }
    let groups = action.forward_config()?.target_groups();
    let weight_of = |arn: &str| {
        groups
            .iter()
            .find(|g| g.target_group_arn() == Some(arn))
            .map(|g| u32::try_from(g.weight().unwrap_or(1)).unwrap_or(0))
    };
    if groups.len() != 2 {
        return None;
    }
    Some(Weights {
        blue: weight_of(blue_tg)?,
        green: weight_of(green_tg)?,
    })
}

/// The listener, target groups and weights, or None while the env has no
/// such listener (or it is not ours).
async fn listener(cx: &Context) -> Result<Option<(String, String, String, Weights)>, AwsError> {
    let Some(alb) = elb::load_balancer(cx, &cx.names.load_balancer("alb")).await? else {
        return Ok(None);
    };
    let Some(alb_arn) = alb.load_balancer_arn() else {
        return Ok(None);
    };
    if !cx.is_ours(&elb::tags_of(cx, alb_arn).await?) {
        return Ok(None);
    }
    let blue = elb::target_group(cx, &cx.names.target_group(BLUE)).await?;
    let green = elb::target_group(cx, &cx.names.target_group(GREEN)).await?;
    let (Some(blue), Some(green)) = (
        blue.and_then(|t| t.target_group_arn().map(str::to_owned)),
        green.and_then(|t| t.target_group_arn().map(str::to_owned)),
    ) else {
        return Ok(None);
    };
    let out = cx
        .clients
        .elb
        .describe_listeners()
        .load_balancer_arn(alb_arn)
        .send()
        .await
        .op("elbv2:DescribeListeners");
    let Some(out) = absent_on(out, &["LoadBalancerNotFound", "ListenerNotFound"])? else {
        return Ok(None);
    };
    for l in out.listeners() {
        if l.port() != Some(HTTPS_PORT) {
            continue;
        }
        if let (Some(arn), Some(w)) = (
            l.listener_arn(),
            weights_in(l.default_actions(), &blue, &green),
        ) {
            return Ok(Some((arn.to_owned(), blue, green, w)));
        }
    }
    Ok(None)
}

/// The current weights, or None while the listener does not exist.
pub async fn weights(cx: &Context) -> Result<Option<Weights>, AwsError> {
    Ok(listener(cx).await?.map(|(_, _, _, w)| w))
}

/// The env's traffic as AWS has it now.
pub async fn read(cx: &Context) -> Result<Option<Traffic>, AwsError> {
    let Some((listener_arn, blue_target_group, green_target_group, weights)) = listener(cx).await?
    else {
        return Ok(None);
    };
    let function = Function::Transaction.name(cx);
    let mut versions = Vec::new();
    for alias in [BLUE, GREEN] {
        let got = cx
            .clients
            .lambda
            .get_alias()
            .function_name(&function)
            .name(alias)
            .send()
            .await
            .op("lambda:GetAlias");
        versions.push(
            absent_on(got, &["ResourceNotFoundException"])?
                .and_then(|a| a.function_version().map(str::to_owned)),
        );
    }
    let green_version = versions.pop().flatten();
    let blue_version = versions.pop().flatten();
    Ok(Some(Traffic {
        listener_arn,
        blue_target_group,
        green_target_group,
        weights,
        blue_version,
        green_version,
    }))
}

/// Sets the listener's weights.
pub async fn set(cx: &Context, traffic: &mut Traffic, weights: Weights) -> Result<(), AwsError> {
    cx.clients
        .elb
        .modify_listener()
        .listener_arn(&traffic.listener_arn)
        .default_actions(forward(
            &traffic.blue_target_group,
            &traffic.green_target_group,
            weights,
        ))
        .send()
        .await
        .op("elbv2:ModifyListener")?;
    traffic.weights = weights;
    Ok(())
}

/// Points alias blue at the version green serves (the end of a release).
pub async fn blue_takes_green_version(cx: &Context, traffic: &mut Traffic) -> Result<(), AwsError> {
    let Some(version) = traffic.green_version.clone() else {
        return Err(AwsError::Conflict(
            "alias green of transaction processing does not exist: run `payops up` first".into(),
        ));
    };
    cx.clients
        .lambda
        .update_alias()
        .function_name(Function::Transaction.name(cx))
        .name(BLUE)
        .function_version(&version)
        .send()
        .await
        .op("lambda:UpdateAlias")?;
    traffic.blue_version = Some(version);
    Ok(())
}

/// One of the env's CloudWatch alarms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alarm {
    pub name: String,
    pub firing: bool,
}

/// The env's shift-gate alarms (request-path errors and latency, see
/// `alarms.rs`): named `payops-<env>-...` like everything of the env, tagged
/// for it (the prefix alone would also match env `<env>-2`'s) and tagged
/// `payops:shift-gate=true` (a database or capacity alarm says nothing about
/// the release being shifted to). Empty while the env has none.
pub async fn alarms(cx: &Context) -> Result<Vec<Alarm>, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(cx.names.resource(""))
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut alarms = Vec::new();
    for page in pages {
        let page = page.op("cloudwatch:DescribeAlarms")?;
        let all = page
            .metric_alarms()
            .iter()
            .map(|a| (a.alarm_name(), a.alarm_arn(), a.state_value()))
            .chain(
                page.composite_alarms()
                    .iter()
                    .map(|a| (a.alarm_name(), a.alarm_arn(), a.state_value())),
            );
        for (name, arn, state) in all {
            let (Some(name), Some(arn)) = (name, arn) else {
                continue;
            };
            let tags = cloudwatch::tags_of(cx, arn).await?;
            let gate = tags.get(SHIFT_GATE).map(String::as_str) == Some("true");
            if cx.is_ours(&tags) && gate {
                alarms.push(Alarm {
                    name: name.to_owned(),
                    firing: state == Some(&aws_sdk_cloudwatch::types::StateValue::Alarm),
                });
            }
        }
    }
    alarms.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(alarms)
}

/// The green percentages to go through, from `from` to `to`, `step` points
/// at a time (all at once without a step).
pub fn plan(from: u32, to: u32, step: Option<u32>) -> Vec<u32> {
    let Some(step) = step.filter(|s| *s > 0) else {
        return vec![to];
    };
    let mut out = Vec::new();
    let mut at = from;
    while at != to {
        at = if to > at {
            (at + step).min(to)
        } else {
            at.saturating_sub(step).max(to)
        };
        out.push(at);
    }
    if out.is_empty() {
        out.push(to);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_and_handle_operator_weights() {
        assert_eq!(Weights::DEFAULT.green_percent(), 0);
        assert_eq!(
            Weights::with_green(30),
            Weights {
                blue: 70,
                green: 30
            }
        );
        assert_eq!(Weights::with_green(130).green, 100);
        let odd = Weights { blue: 1, green: 2 };
        assert_eq!((odd.blue_percent(), odd.green_percent()), (33, 67));
        let none = Weights { blue: 0, green: 0 };
        assert_eq!((none.blue_percent(), none.green_percent()), (0, 0));
        assert_eq!(Weights::with_green(10).to_string(), "blue 90% / green 10%");
    }

    #[test]
    fn shifts_go_in_steps_towards_the_target() {
        assert_eq!(plan(0, 100, Some(25)), [25, 50, 75, 100]);
        assert_eq!(plan(10, 35, Some(10)), [20, 30, 35]);
        assert_eq!(plan(60, 0, Some(25)), [35, 10, 0]);
        assert_eq!(plan(0, 40, None), [40]);
        // Already there: one step that changes nothing.
        assert_eq!(plan(40, 40, Some(10)), [40]);
    }

    #[tokio::test]
    async fn only_the_envs_shift_gate_alarms_gate_a_shift() {
        use aws_sdk_cloudwatch::Client;
        use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
        use aws_sdk_cloudwatch::operation::list_tags_for_resource::ListTagsForResourceOutput;
        use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue, Tag};
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        use crate::resources::testing;

        let arn = |n: &str| format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{n}");
        let alarm = move |n: &str, state| {
            MetricAlarm::builder()
                .alarm_name(n)
                .alarm_arn(arn(n))
                .state_value(state)
                .build()
        };
        let describe = mock!(Client::describe_alarms)
            .match_requests(|r| r.alarm_name_prefix() == Some("payops-pr1-"))
            .then_output(move || {
                DescribeAlarmsOutput::builder()
                    .metric_alarms(alarm("payops-pr1-transaction-errors", StateValue::Alarm))
                    .metric_alarms(alarm("payops-pr1-aurora-replica-lag", StateValue::Alarm))
                    .metric_alarms(alarm("payops-pr1-2-alb-5xx", StateValue::Alarm))
                    .build()
            });
        let tags = mock!(Client::list_tags_for_resource).then_compute_output(|r| {
            let name = r.resource_arn().unwrap().rsplit(':').next().unwrap();
            let (env, gate) = match name {
                "payops-pr1-transaction-errors" => ("pr1", true),
                "payops-pr1-aurora-replica-lag" => ("pr1", false),
                _ => ("pr1-2", true),
            };
            let mut out = ListTagsForResourceOutput::builder()
                .tags(Tag::builder().key("payops:env").value(env).build())
                .tags(
                    Tag::builder()
                        .key("payops:managed-by")
                        .value("payops")
                        .build(),
                );
            if gate {
                out = out.tags(
                    Tag::builder()
                        .key("payops:shift-gate")
                        .value("true")
                        .build(),
                );
            }
            out.build()
        });
        let mut clients = testing::clients();
        clients.cloudwatch =
            mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&describe, &tags]);
        let cx = testing::context(clients);
        let gates = alarms(&cx).await.unwrap();
        assert_eq!(
            gates,
            [Alarm {
                name: "payops-pr1-transaction-errors".into(),
                firing: true
            }]
        );
    }

    #[test]
    fn weights_are_read_only_from_a_forward_to_both_groups() {
        let action = forward("tg-b", "tg-g", Weights::with_green(25));
        assert_eq!(
            weights_in(std::slice::from_ref(&action), "tg-b", "tg-g"),
            Some(Weights {
                blue: 75,
                green: 25
            })
        );
        // Another pair of groups, or two actions, is not our forward.
        assert_eq!(
            weights_in(std::slice::from_ref(&action), "tg-x", "tg-g"),
            None
        );
        assert_eq!(weights_in(&[action.clone(), action], "tg-b", "tg-g"), None);
    }
}
