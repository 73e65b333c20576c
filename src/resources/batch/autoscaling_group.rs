//! The batch tier's Auto Scaling group `payops-<env>-batch`, in the private
//! subnets, on an explicit version of the batch launch template.
//!
//! Real-AWS rules (tf group.go; EC2 Auto Scaling user guide):
//! - nothing refreshes instances when the template changes: the group names
//!   an explicit version (never `$Latest`/`$Default`, which AutoRollback
//!   refuses and which would hide the change), and payops moves it and starts
//!   an instance refresh itself (Rolling, MinHealthy 100 / MaxHealthy 200:
//!   a new instance is up before an old one goes; SkipMatching), waiting for
//!   `Successful`. A refresh already running (InstanceRefreshInProgress) is
//!   cancelled and the new one started.
//! - desired capacity belongs to the scaling policies once the group runs:
//!   `up` sets it only when the env's requested capacity changed (compared
//!   with what the last `up` recorded), else every `up` would undo target
//!   tracking.
//! - teardown drains first: min = max = desired = 0, wait until no instance
//!   is left (their network interfaces would block the security group),
//!   then DeleteAutoScalingGroup, retried while AWS says ResourceInUse or
//!   ScalingActivityInProgress, and wait until the group is gone. ForceDelete
//!   returns before the instances are gone.
//! - a just-made instance profile may be unknown to Auto Scaling for seconds
//!   (ValidationError "Invalid IAM Instance Profile"): retried.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, Filter, InstanceRefreshStatus, LaunchTemplateSpecification,
    RefreshPreferences, Tag,
};

use crate::aws::{AwsError, OpResult, Poll, poll_until, retry_on_codes};
use crate::engine::{Record, StepCx};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;

pub const STEP: &str = "autoscaling-group:batch";
pub const TEMPLATE_INPUT: (&str, &str) = ("launch-template:batch", "BatchLaunchTemplateId");
pub const VERSION_INPUT: (&str, &str) = ("launch-template:batch", "BatchLaunchTemplateVersion");
pub const SUBNETS_INPUT: (&str, &str) = ("subnets:private", "PrivateSubnetIds");

/// New instances count as healthy 2 minutes after launch (the agent and the
/// timer are up by then); the refresh and scaling use it.
const INSTANCE_WARMUP: i32 = 120;

pub struct AutoScalingGroupStep;

pub struct FoundGroup {
    name: String,
    arn: String,
    template_id: Option<String>,
    version: Option<String>,
    min: i32,
    max: i32,
    desired: i32,
    subnets: Vec<String>,
    in_service: usize,
    instances: usize,
    tags: TagMap,
}

#[derive(Debug)]
pub enum Fix {
    /// Min/max (and desired when the requested capacity changed), subnets.
    Settings {
        min: i32,
        max: i32,
        desired: Option<i32>,
        subnets: Vec<String>,
    },
    /// Another template (or version): instances refreshed when there are any.
    Template {
        id: String,
        version: String,
    },
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fix::Settings {
                min, max, desired, ..
            } => match desired {
                Some(d) => write!(f, "set capacity {min}-{d}-{max} and subnets"),
                None => write!(f, "set size {min}..{max} and subnets"),
            },
            Fix::Template { version, .. } => write!(
                f,
                "move to launch template version {version} and refresh the instances"
            ),
            Fix::Tags(t) => f.write_str(&tags::describe_tag_fix(t)),
        }
    }
}

fn name(cx: &Context) -> String {
    cx.names.resource("batch")
}

fn subnets(step: &StepCx<'_>) -> Result<Vec<String>, AwsError> {
    let mut s: Vec<String> = step
        .output(SUBNETS_INPUT.0, SUBNETS_INPUT.1)?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    s.sort();
    Ok(s)
}

fn desired_tags(cx: &Context, step: &str) -> TagMap {
    ec2::desired_tags(cx, step, &name(cx))
}

fn asg_tags(group: &str, tags: &TagMap) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .resource_id(group)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                // The instances carry the env's ownership tags too.
                .propagate_at_launch(true)
                .build()
        })
        .collect()
}

fn found(g: &AutoScalingGroup) -> Option<FoundGroup> {
    let mut subnets: Vec<String> = g
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    subnets.sort();
    Some(FoundGroup {
        name: g.auto_scaling_group_name()?.to_owned(),
        arn: g.auto_scaling_group_arn().unwrap_or_default().to_owned(),
        template_id: g
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .map(str::to_owned),
        version: g
            .launch_template()
            .and_then(|t| t.version())
            .map(str::to_owned),
        min: g.min_size()?,
        max: g.max_size()?,
        desired: g.desired_capacity()?,
        subnets,
        in_service: g
            .instances()
            .iter()
            .filter(|i| {
                i.lifecycle_state()
                    .is_some_and(|s| s.as_str() == "InService")
            })
            .count(),
        instances: g.instances().len(),
        tags: g
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect(),
    })
}

async fn describe(cx: &Context, name: &str) -> Result<Option<FoundGroup>, AwsError> {
    let out = cx
        .clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .op("autoscaling:DescribeAutoScalingGroups")?;
    Ok(out
        .auto_scaling_groups()
        .iter()
        // A group being deleted is already going.
        .filter(|g| g.status() != Some("Delete in progress"))
        .find_map(found))
}

/// Polls a refresh until it ends; anything but Successful is an error.
async fn wait_for_refresh(
    cx: &Context,
    step: &StepCx<'_>,
    group: &str,
    id: &str,
) -> Result<(), AwsError> {
    let progress = |m: String| step.progress(m);
    poll_until(
        format!("the instance refresh of {group}"),
        cx.budgets.instance_refresh,
        &progress,
        || async {
            let out = cx
                .clients
                .autoscaling
                .describe_instance_refreshes()
                .auto_scaling_group_name(group)
                .instance_refresh_ids(id)
                .send()
                .await
                .op("autoscaling:DescribeInstanceRefreshes")?;
            let status = out
                .instance_refreshes()
                .first()
                .and_then(|r| r.status().cloned());
            match status {
                Some(InstanceRefreshStatus::Successful) => Ok(Poll::Ready(())),
                Some(
                    s @ (InstanceRefreshStatus::Failed
                    | InstanceRefreshStatus::Cancelled
                    | InstanceRefreshStatus::RollbackSuccessful
                    | InstanceRefreshStatus::RollbackFailed),
                ) => Err(AwsError::Conflict(format!(
                    "the instance refresh {id} of {group} ended {}",
                    s.as_str()
                ))),
                Some(s) => Ok(Poll::Pending(s.as_str().to_owned())),
                None => Ok(Poll::Pending("not listed yet".into())),
            }
        },
    )
    .await
}

/// Starts a refresh onto the group's current version, cancelling one
/// already running (it would roll onto the version being replaced), and
/// waits until it succeeds.
pub async fn refresh(cx: &Context, step: &StepCx<'_>, group: &str) -> Result<(), AwsError> {
    let client = &cx.clients.autoscaling;
    let start = || async {
        client
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .strategy(aws_sdk_autoscaling::types::RefreshStrategy::Rolling)
            .preferences(
                RefreshPreferences::builder()
                    .min_healthy_percentage(100)
                    .max_healthy_percentage(200)
                    .skip_matching(true)
                    .instance_warmup(INSTANCE_WARMUP)
                    .build(),
            )
            .send()
            .await
            .op("autoscaling:StartInstanceRefresh")
    };
    let started = match start().await {
        Err(e) if e.is_code(&["InstanceRefreshInProgress"]) => {
            step.progress(format!(
                "{group}: cancelling the instance refresh in progress"
            ));
            let cancelled = client
                .cancel_instance_refresh()
                .auto_scaling_group_name(group)
                .send()
                .await
                .op("autoscaling:CancelInstanceRefresh");
            crate::aws::absent_on(cancelled, &["ActiveInstanceRefreshNotFound"])?;
            // Cancelling takes a while: Start answers InProgress until done.
            let progress = |m: String| step.progress(m);
            retry_on_codes(
                format!("starting the instance refresh of {group}"),
                &["InstanceRefreshInProgress"],
                cx.budgets.instance_refresh,
                &progress,
                start,
            )
            .await?
        }
        other => other?,
    };
    let id = started.instance_refresh_id().unwrap_or_default().to_owned();
    step.progress(format!("{group}: instance refresh {id} started"));
    wait_for_refresh(cx, step, group, &id).await
}

#[async_trait]
impl Resource for AutoScalingGroupStep {
    type Found = FoundGroup;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "autoscaling:group"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.batch.on
    }

    /// CreateAutoScalingGroup of a name that exists (a lost answer retried).
    fn already_exists(&self) -> &'static [&'static str] {
        &["AlreadyExists"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundGroup>, AwsError> {
        let Some(g) = describe(cx, &name(cx)).await? else {
            return Ok(Vec::new());
        };
        // Never adopt a group of that name that is not this env's.
        Ok(if ec2::is_owned_by(cx, step.id().as_str(), &g.tags) {
            vec![g]
        } else {
            Vec::new()
        })
    }

    fn describe(&self, g: &FoundGroup) -> String {
        g.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundGroup, AwsError> {
        let name = name(cx);
        let template = step.output(TEMPLATE_INPUT.0, TEMPLATE_INPUT.1)?;
        let version = step.output(VERSION_INPUT.0, VERSION_INPUT.1)?;
        let subnets = subnets(step)?;
        let b = &cx.spec.batch;
        let tags = desired_tags(cx, step.id().as_str());
        let progress = |m: String| step.progress(m);
        crate::resources::sdk::iam::retry_while_propagating(
            cx,
            "creating the batch group",
            &progress,
            |e| {
                e.is_code(&["ValidationError"])
                    && e.to_string()
                        .to_ascii_lowercase()
                        .contains("instance profile")
            },
            |_| async {
                cx.clients
                    .autoscaling
                    .create_auto_scaling_group()
                    .auto_scaling_group_name(&name)
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_id(template)
                            .version(version)
                            .build(),
                    )
                    .min_size(b.min as i32)
                    .max_size(b.max as i32)
                    .desired_capacity(b.desired as i32)
                    .vpc_zone_identifier(subnets.join(","))
                    .health_check_type("EC2")
                    .default_instance_warmup(INSTANCE_WARMUP)
                    .set_tags(Some(asg_tags(&name, &tags)))
                    .send()
                    .await
                    .op("autoscaling:CreateAutoScalingGroup")
            },
        )
        .await?;
        step.remember("autoscaling_group", &name);
        describe(cx, &name).await?.ok_or_else(|| {
            AwsError::Conflict(format!("group {name} was created but is not listed"))
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        g: &FoundGroup,
    ) -> Result<Vec<Fix>, AwsError> {
        let b = &cx.spec.batch;
        let mut fixes = Vec::new();
        let (min, max) = (b.min as i32, b.max as i32);
        // Desired only when the env asks for another capacity than the last
        // `up` recorded (the policies own it otherwise); without a record,
        // only when the group's is outside the range.
        let recorded = step
            .previous()
            .and_then(|r| r.outputs.get("BatchDesiredCapacity"))
            .and_then(|d| d.parse::<u32>().ok());
        let desired = match recorded {
            Some(r) if r != b.desired => Some(b.desired as i32),
            _ if g.desired < min || g.desired > max => Some(b.desired as i32),
            _ => None,
        };
        let subnets = subnets(step)?;
        if g.min != min
            || g.max != max
            || desired.is_some_and(|d| d != g.desired)
            || g.subnets != subnets
        {
            fixes.push(Fix::Settings {
                min,
                max,
                desired: desired.filter(|d| *d != g.desired),
                subnets,
            });
        }
        let template = step.output(TEMPLATE_INPUT.0, TEMPLATE_INPUT.1)?;
        let version = step.output(VERSION_INPUT.0, VERSION_INPUT.1)?;
        if g.template_id.as_deref() != Some(template) || g.version.as_deref() != Some(version) {
            fixes.push(Fix::Template {
                id: template.to_owned(),
                version: version.to_owned(),
            });
        }
        let missing = ec2::missing_tags(cx, step.id().as_str(), &g.name, &g.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        g: &mut FoundGroup,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let client = &cx.clients.autoscaling;
        match fix {
            Fix::Settings {
                min,
                max,
                desired,
                subnets,
            } => {
                client
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&g.name)
                    .min_size(min)
                    .max_size(max)
                    .set_desired_capacity(desired)
                    .vpc_zone_identifier(subnets.join(","))
                    .send()
                    .await
                    .op("autoscaling:UpdateAutoScalingGroup")?;
                (g.min, g.max) = (min, max);
                if let Some(d) = desired {
                    g.desired = d;
                }
                g.subnets = subnets;
            }
            Fix::Template { id, version } => {
                client
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&g.name)
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_id(&id)
                            .version(&version)
                            .build(),
                    )
                    .send()
                    .await
                    .op("autoscaling:UpdateAutoScalingGroup")?;
                g.template_id = Some(id);
                g.version = Some(version);
                // Nothing to roll in an empty group: the next launch uses it.
                if g.in_service > 0 {
                    refresh(cx, step, &g.name).await?;
                }
            }
            Fix::Tags(t) => {
                client
                    .create_or_update_tags()
                    .set_tags(Some(asg_tags(&g.name, &t)))
                    .send()
                    .await
                    .op("autoscaling:CreateOrUpdateTags")?;
                g.tags.extend(t);
            }
        }
        Ok(())
    }

    fn record(&self, cx: &Context, g: &FoundGroup) -> Record {
        Record::default()
            .resource("autoscaling_group", &g.name)
            .output("BatchAutoScalingGroupName", &g.name)
            .output("BatchAutoScalingGroupArn", &g.arn)
            // What the env asked for, so a later `up` sets desired only when
            // that changes.
            .output("BatchDesiredCapacity", cx.spec.batch.desired.to_string())
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        g: FoundGroup,
    ) -> Result<Vec<String>, AwsError> {
        let client = &cx.clients.autoscaling;
        let progress = |m: String| step.progress(m);
        if g.min != 0 || g.max != 0 || g.desired != 0 {
            client
                .update_auto_scaling_group()
                .auto_scaling_group_name(&g.name)
                .min_size(0)
                .max_size(0)
                .desired_capacity(0)
                .send()
                .await
                .op("autoscaling:UpdateAutoScalingGroup")?;
        }
        if g.instances > 0 {
            poll_until(
                format!("the instances of {} to terminate", g.name),
                cx.budgets.autoscaling_drain,
                &progress,
                || async {
                    Ok(match describe(cx, &g.name).await? {
                        Some(now) if now.instances > 0 => {
                            Poll::Pending(format!("{} instances left", now.instances))
                        }
                        _ => Poll::Ready(()),
                    })
                },
            )
            .await?;
        }
        let deleted = retry_on_codes(
            format!("deleting {}", g.name),
            &["ResourceInUse", "ScalingActivityInProgress"],
            cx.budgets.autoscaling_drain,
            &progress,
            || async {
                client
                    .delete_auto_scaling_group()
                    .auto_scaling_group_name(&g.name)
                    .send()
                    .await
                    .op("autoscaling:DeleteAutoScalingGroup")
            },
        )
        .await;
        // Already gone: "AutoScalingGroup name not found" (ValidationError).
        match deleted {
            Err(e) if e.is_code(&["ValidationError"]) && e.to_string().contains("not found") => {}
            other => {
                other?;
            }
        }
        poll_until(
            format!("{} to be deleted", g.name),
            cx.budgets.autoscaling_drain,
            &progress,
            || async {
                let out = client
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(&g.name)
                    .send()
                    .await
                    .op("autoscaling:DescribeAutoScalingGroups")?;
                Ok(match out.auto_scaling_groups().first() {
                    None => Poll::Ready(()),
                    Some(x) => Poll::Pending(x.status().unwrap_or("deleting").to_owned()),
                })
            },
        )
        .await?;
        Ok(Vec::new())
    }
}

/// The env's groups by their ownership tags (for the final sweep): names.
pub async fn owned_groups(
    clients: &crate::aws::Clients,
    env: &crate::naming::EnvName,
) -> Result<Vec<String>, AwsError> {
    let pages: Vec<_> = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", tags::MANAGED_BY))
                .values(tags::MANAGER)
                .build(),
        )
        .filters(
            Filter::builder()
                .name(format!("tag:{}", tags::ENV))
                .values(env.as_str())
                .build(),
        )
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut names = Vec::new();
    for page in pages {
        let page = page.op("autoscaling:DescribeAutoScalingGroups")?;
        names.extend(
            page.auto_scaling_groups()
                .iter()
                .filter_map(|g| g.auto_scaling_group_name().map(str::to_owned)),
        );
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Change, Record};
    use crate::resources::testing;
    use aws_sdk_autoscaling::operation as op;
    use aws_sdk_autoscaling::types::{Instance, LifecycleState, TagDescription};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn inputs(version: &str) -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (TEMPLATE_INPUT.0, TEMPLATE_INPUT.1, "lt-1"),
            (VERSION_INPUT.0, VERSION_INPUT.1, version),
            (SUBNETS_INPUT.0, SUBNETS_INPUT.1, "subnet-b,subnet-a"),
        ])
    }

    fn group(version: &str, desired: i32, in_service: usize) -> AutoScalingGroup {
        let tags = ec2::desired_tags(
            &testing::context(testing::clients()),
            STEP,
            "payops-pr1-batch",
        );
        AutoScalingGroup::builder()
            .auto_scaling_group_name("payops-pr1-batch")
            .auto_scaling_group_arn("arn:asg")
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id("lt-1")
                    .version(version)
                    .build(),
            )
            .min_size(0)
            .max_size(2)
            .desired_capacity(desired)
            .vpc_zone_identifier("subnet-a,subnet-b")
            .set_instances(Some(
                (0..in_service)
                    .map(|i| {
                        Instance::builder()
                            .instance_id(format!("i-{i}"))
                            .lifecycle_state(LifecycleState::InService)
                            .build()
                    })
                    .collect(),
            ))
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| TagDescription::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build()
    }

    fn describe_rule(g: AutoScalingGroup) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups).then_output(move || {
            op::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(g.clone())
                .build()
        })
    }

    fn cx(client: aws_sdk_autoscaling::Client) -> Context {
        let mut clients = testing::clients();
        clients.autoscaling = client;
        let mut cx = testing::context(clients);
        cx.spec.batch.on = true;
        cx.budgets.instance_refresh = crate::aws::Budget::new(std::time::Duration::from_secs(60));
        cx
    }

    #[tokio::test]
    async fn a_converged_group_makes_no_call_even_when_scaling_moved_desired() {
        // Target tracking moved desired to 2: not the env's to undo.
        let list = describe_rule(group("3", 2, 2));
        let cx = cx(mock_client!(
            aws_sdk_autoscaling,
            RuleMode::MatchAny,
            [&list]
        ));
        let applied = testing::ensure(&cx, STEP, AutoScalingGroupStep, &inputs("3"))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_version_moves_the_group_and_refreshes_its_instances_after_a_running_refresh_is_cancelled()
     {
        let list = describe_rule(group("3", 1, 1));
        let update = mock!(aws_sdk_autoscaling::Client::update_auto_scaling_group)
            .match_requests(|r| r.launch_template().and_then(|t| t.version()) == Some("4"))
            .then_output(|| {
                op::update_auto_scaling_group::UpdateAutoScalingGroupOutput::builder().build()
            });
        let busy = mock!(aws_sdk_autoscaling::Client::start_instance_refresh).then_error(|| {
            op::start_instance_refresh::StartInstanceRefreshError::generic(testing::error_meta(
                "InstanceRefreshInProgress",
            ))
        });
        let start = mock!(aws_sdk_autoscaling::Client::start_instance_refresh)
            .match_requests(|r| {
                let p = r.preferences().unwrap();
                (
                    p.min_healthy_percentage(),
                    p.max_healthy_percentage(),
                    p.skip_matching(),
                ) == (Some(100), Some(200), Some(true))
            })
            .then_output(|| {
                op::start_instance_refresh::StartInstanceRefreshOutput::builder()
                    .instance_refresh_id("r-1")
                    .build()
            });
        let cancel =
            mock!(aws_sdk_autoscaling::Client::cancel_instance_refresh).then_output(|| {
                op::cancel_instance_refresh::CancelInstanceRefreshOutput::builder().build()
            });
        let status = |s: InstanceRefreshStatus| {
            mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes).then_output(move || {
                op::describe_instance_refreshes::DescribeInstanceRefreshesOutput::builder()
                    .instance_refreshes(
                        aws_sdk_autoscaling::types::InstanceRefresh::builder()
                            .instance_refresh_id("r-1")
                            .status(s.clone())
                            .build(),
                    )
                    .build()
            })
        };
        let (running, done) = (
            status(InstanceRefreshStatus::InProgress),
            status(InstanceRefreshStatus::Successful),
        );
        let cx = cx(mock_client!(
            aws_sdk_autoscaling,
            RuleMode::Sequential,
            [&list, &update, &busy, &cancel, &start, &running, &done]
        ));
        let applied = testing::ensure(&cx, STEP, AutoScalingGroupStep, &inputs("4"))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((cancel.num_calls(), start.num_calls()), (1, 1));
        assert_eq!(done.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_empty_group_moves_to_the_new_version_without_a_refresh() {
        let list = describe_rule(group("3", 0, 0));
        let update =
            mock!(aws_sdk_autoscaling::Client::update_auto_scaling_group).then_output(|| {
                op::update_auto_scaling_group::UpdateAutoScalingGroupOutput::builder().build()
            });
        // No StartInstanceRefresh rule: a call would fail the test.
        let cx = cx(mock_client!(
            aws_sdk_autoscaling,
            RuleMode::MatchAny,
            [&list, &update]
        ));
        testing::ensure(&cx, STEP, AutoScalingGroupStep, &inputs("4"))
            .await
            .unwrap();
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn down_drains_the_instances_before_deleting_and_waits_until_the_group_is_gone() {
        let busy = describe_rule(group("3", 1, 1));
        let drain = mock!(aws_sdk_autoscaling::Client::update_auto_scaling_group)
            .match_requests(|r| {
                (r.min_size(), r.max_size(), r.desired_capacity()) == (Some(0), Some(0), Some(0))
            })
            .then_output(|| {
                op::update_auto_scaling_group::UpdateAutoScalingGroupOutput::builder().build()
            });
        let terminating = describe_rule(group("3", 0, 1));
        let drained = describe_rule(group("3", 0, 0));
        let in_use =
            mock!(aws_sdk_autoscaling::Client::delete_auto_scaling_group).then_error(|| {
                op::delete_auto_scaling_group::DeleteAutoScalingGroupError::generic(
                    testing::error_meta("ScalingActivityInProgress"),
                )
            });
        let delete =
            mock!(aws_sdk_autoscaling::Client::delete_auto_scaling_group).then_output(|| {
                op::delete_auto_scaling_group::DeleteAutoScalingGroupOutput::builder().build()
            });
        let gone =
            mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups).then_output(|| {
                op::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput::builder().build()
            });
        let cx = cx(mock_client!(
            aws_sdk_autoscaling,
            RuleMode::Sequential,
            [
                &busy,
                &drain,
                &terminating,
                &drained,
                &in_use,
                &delete,
                &gone
            ]
        ));
        testing::destroy(&cx, STEP, AutoScalingGroupStep)
            .await
            .unwrap();
        assert_eq!(
            (drain.num_calls(), delete.num_calls(), gone.num_calls()),
            (1, 1, 1)
        );
    }
}
