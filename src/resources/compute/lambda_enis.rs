//! The wait between deleting the functions and deleting what their network
//! interfaces use.
//!
//! Lambda functions in a VPC reach it through "hyperplane" network interfaces
//! that AWS creates per subnet and security group, shares between functions
//! and releases on its own 20-45 minutes after the last function using them
//! is gone. Until then their security groups and the private subnets cannot
//! be deleted (DependencyViolation), and the functions' roles must stay
//! (Lambda uses them to let the interfaces go).
//!
//! This step is that wait, as one visible node of the graph: the functions
//! depend on it, and it depends on the security groups, the subnets and the
//! roles, so `down` deletes the functions, then waits here (with progress),
//! then removes the rest. It waits on every group a function of the env uses
//! or used (`SgRole::of_functions`: in an env made by an older payops the
//! rotation function still has its own group), so that no role goes while
//! Lambda still needs it. It owns nothing and creates nothing: it is not a
//! `Resource`, only a `Step`.

use async_trait::async_trait;
use aws_sdk_ec2::types::{NetworkInterface, NetworkInterfaceType};

use crate::aws::{AwsError, OpResult, Poll, poll_until};
use crate::engine::{
    Applied, Change, Dependency, Observation, Record, Removed, Step, StepCx, StepError, StepId,
};
use crate::tags;

use crate::resources::context::Context;
use crate::resources::model::SgRole;
use crate::resources::sdk::ec2;

pub struct LambdaEnis {
    id: StepId,
    deps: Vec<Dependency>,
}

impl LambdaEnis {
    pub fn new(id: impl Into<StepId>, deps: Vec<Dependency>) -> Self {
        Self {
            id: id.into(),
            deps,
        }
    }
}

fn is_lambdas(eni: &NetworkInterface) -> bool {
    eni.interface_type() == Some(&NetworkInterfaceType::Lambda)
        || eni
            .description()
            .is_some_and(|d| d.starts_with("AWS Lambda VPC ENI"))
}

/// The security groups of the env's functions (now or before), found by
/// their ownership tags (no inputs on teardown).
async fn function_groups(cx: &Context) -> Result<Vec<String>, AwsError> {
    let steps: Vec<String> = SgRole::of_functions()
        .into_iter()
        .map(SgRole::step_id)
        .collect();
    let out = cx
        .clients
        .ec2
        .describe_security_groups()
        .filters(ec2::tag_filter(tags::MANAGED_BY, tags::MANAGER))
        .filters(ec2::tag_filter(tags::ENV, cx.env().as_str()))
        .filters(ec2::filter(&format!("tag:{}", tags::STEP), steps.clone()))
        .send()
        .await
        .op("ec2:DescribeSecurityGroups")?;
    let mut ids: Vec<String> = out
        .security_groups()
        .iter()
        .filter(|g| {
            let tags = ec2::tag_map(g.tags());
            steps.iter().any(|s| ec2::is_owned_by(cx, s, &tags))
        })
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Lambda's network interfaces in any of `groups`.
async fn interfaces(cx: &Context, groups: &[String]) -> Result<Vec<String>, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .ec2
        .describe_network_interfaces()
        .filters(ec2::filter("group-id", groups.iter().cloned()))
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut ids = Vec::new();
    for page in pages {
        let page = page.op("ec2:DescribeNetworkInterfaces")?;
        ids.extend(
            page.network_interfaces()
                .iter()
                .filter(|e| is_lambdas(e))
                .filter_map(|e| e.network_interface_id().map(str::to_owned)),
        );
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn record(ids: &[String]) -> Record {
    ids.iter().fold(Record::default(), |r, id| {
        r.resource(format!("eni:{id}"), id.clone())
    })
}

#[async_trait]
impl Step<Context> for LambdaEnis {
    fn id(&self) -> &StepId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "ec2:lambda-enis"
    }

    fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }

    /// Present (in sync) while a group of the functions exists, with the
    /// interfaces Lambda holds in them; missing once they are gone.
    async fn observe(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Observation, StepError> {
        let groups = function_groups(cx).await?;
        if groups.is_empty() {
            return Ok(Observation::Missing);
        }
        let ids = interfaces(cx, &groups).await?;
        Ok(Observation::Present {
            record: record(&ids),
            drift: Vec::new(),
        })
    }

    /// Nothing to create: Lambda makes the interfaces when it needs them.
    async fn ensure(&self, _cx: &Context, _step: &StepCx<'_>) -> Result<Applied, StepError> {
        Ok(Applied::new(Change::Unchanged, Record::default()))
    }

    /// Waits until Lambda has released every interface it held in the groups.
    async fn destroy(&self, cx: &Context, step: &StepCx<'_>) -> Result<Removed, StepError> {
        let groups = function_groups(cx).await?;
        if groups.is_empty() {
            return Ok(Removed::AlreadyAbsent);
        }
        let group = groups.join(", ");
        let first = interfaces(cx, &groups).await?;
        if first.is_empty() {
            return Ok(Removed::AlreadyAbsent);
        }
        let started = tokio::time::Instant::now();
        let budget = cx.budgets.dependency_violation;
        let progress = |m: String| step.progress(m);
        poll_until(
            format!(
                "Lambda to release its network interfaces in {group} (AWS takes 20-45 \
                 minutes after the functions are deleted)"
            ),
            budget,
            &progress,
            || async {
                let left = interfaces(cx, &groups).await?;
                Ok(if left.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{} still in use: {}", left.len(), left.join(", ")))
                })
            },
        )
        .await?;
        Ok(Removed::Deleted {
            notes: vec![format!(
                "Lambda released {} network interface(s) in {group} after {}s",
                first.len(),
                started.elapsed().as_secs()
            )],
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::describe_network_interfaces::DescribeNetworkInterfacesOutput;
    use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
    use aws_sdk_ec2::types::SecurityGroup;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::StepEvents;
    use crate::resources::testing;

    fn sg(id: &str, role: SgRole) -> SecurityGroup {
        SecurityGroup::builder()
            .group_id(id)
            .set_tags(Some(testing::ec2_tags(&role.step_id())))
            .build()
    }

    fn group() -> Rule {
        mock!(Client::describe_security_groups).then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .security_groups(sg("sg-lambda", SgRole::Lambda))
                .build()
        })
    }

    fn enis(ids: &[&str]) -> DescribeNetworkInterfacesOutput {
        let mut out = DescribeNetworkInterfacesOutput::builder();
        for id in ids {
            out = out.network_interfaces(
                NetworkInterface::builder()
                    .network_interface_id(*id)
                    .interface_type(NetworkInterfaceType::Lambda)
                    .description(format!(
                        "AWS Lambda VPC ENI-payops-pr1-fraud-detection-{id}"
                    ))
                    .build(),
            );
        }
        out.build()
    }

    fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    /// Keeps progress messages (testing::Events drops them).
    #[derive(Default)]
    struct Progress(Mutex<Vec<String>>);
    impl StepEvents for Progress {
        fn progress(&self, _: &StepId, m: &str) {
            self.0.lock().unwrap().push(m.to_owned());
        }
        fn remember(&self, _: &StepId, _: &str, _: &str) {}
    }

    async fn destroy(cx: &Context, events: &Progress) -> Result<Removed, StepError> {
        let id = StepId::from("lambda-enis");
        let step = StepCx::standalone(&id, Default::default(), None, events);
        LambdaEnis::new("lambda-enis", vec![])
            .destroy(cx, &step)
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn teardown_waits_until_lambda_released_its_interfaces_and_says_so() {
        let eni = mock!(Client::describe_network_interfaces)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("group-id") && f.values() == ["sg-lambda"])
            })
            .sequence()
            .output(|| enis(&["eni-1", "eni-2"]))
            .output(|| enis(&["eni-1", "eni-2"]))
            .output(|| enis(&["eni-2"]))
            .output(|| enis(&[]))
            .build();
        let cx = context(&[&group(), &eni]);
        let events = Progress::default();
        let removed = destroy(&cx, &events).await.unwrap();
        let Removed::Deleted { notes } = removed else {
            panic!("expected the wait to be reported");
        };
        assert!(
            notes[0].contains("released 2 network interface(s) in sg-lambda"),
            "{notes:?}"
        );
        let progress = events.0.lock().unwrap();
        assert_eq!(progress.len(), 2, "{progress:?}");
        assert!(progress[0].contains("20-45 minutes"), "{}", progress[0]);
        assert!(
            progress[0].contains("2 still in use: eni-1, eni-2"),
            "{}",
            progress[0]
        );
        assert!(
            progress[1].contains("1 still in use: eni-2"),
            "{}",
            progress[1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_budget_naming_what_is_left() {
        let eni = mock!(Client::describe_network_interfaces).then_output(|| enis(&["eni-9"]));
        let mut cx = context(&[&group(), &eni]);
        cx.budgets.dependency_violation = crate::aws::Budget::new(Duration::from_secs(120));
        let err = destroy(&cx, &Progress::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("gave up after"), "{err}");
        assert!(err.contains("eni-9"), "{err}");
    }

    #[tokio::test]
    async fn nothing_to_wait_for_is_already_absent() {
        let none = mock!(Client::describe_network_interfaces).then_output(|| enis(&[]));
        let cx = context(&[&group(), &none]);
        assert_eq!(
            destroy(&cx, &Progress::default()).await.unwrap(),
            Removed::AlreadyAbsent
        );
        let no_group = mock!(Client::describe_security_groups)
            .then_output(|| DescribeSecurityGroupsOutput::builder().build());
        let cx = context(&[&no_group]);
        assert_eq!(
            destroy(&cx, &Progress::default()).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }

    #[test]
    fn the_groups_waited_on_are_every_group_a_function_uses_or_used() {
        let mut used: Vec<SgRole> = crate::resources::model::Function::ALL
            .iter()
            .filter_map(|f| f.security_group())
            .collect();
        used.dedup();
        used.sort();
        used.dedup();
        assert_eq!(used, [SgRole::Lambda, SgRole::Migration]);
        // And the rotation function's, from before it left the VPC.
        assert_eq!(
            SgRole::of_functions(),
            [SgRole::Lambda, SgRole::Migration, SgRole::Rotation]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn teardown_waits_for_the_interfaces_of_every_function_group() {
        // An env made by an older payops: the rotation function had its own
        // group, and Lambda still holds an interface there after the Lambda
        // and migration groups' are gone.
        let groups = mock!(Client::describe_security_groups)
            .match_requests(|r| {
                r.filters().iter().any(|f| {
                    f.name() == Some("tag:payops:step")
                        && f.values()
                            == [
                                "security-group:lambda",
                                "security-group:db-migration",
                                "security-group:rotation",
                            ]
                })
            })
            .then_output(|| {
                DescribeSecurityGroupsOutput::builder()
                    .security_groups(sg("sg-lambda", SgRole::Lambda))
                    .security_groups(sg("sg-migration", SgRole::Migration))
                    .security_groups(sg("sg-rotation", SgRole::Rotation))
                    // Another env's group, which a lax filter let through.
                    .security_groups(
                        SecurityGroup::builder()
                            .group_id("sg-other")
                            .tags(
                                aws_sdk_ec2::types::Tag::builder()
                                    .key("payops:step")
                                    .value("security-group:lambda")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let eni = mock!(Client::describe_network_interfaces)
            .match_requests(|r| {
                r.filters().iter().any(|f| {
                    f.name() == Some("group-id")
                        && f.values() == ["sg-lambda", "sg-migration", "sg-rotation"]
                })
            })
            .sequence()
            .output(|| enis(&["eni-lambda", "eni-migration", "eni-rotation"]))
            .output(|| enis(&["eni-rotation"]))
            .output(|| enis(&[]))
            .build();
        let cx = context(&[&groups, &eni]);
        let events = Progress::default();
        let Removed::Deleted { notes } = destroy(&cx, &events).await.unwrap() else {
            panic!("expected the wait to be reported");
        };
        assert!(
            notes[0].contains(
                "released 3 network interface(s) in sg-lambda, sg-migration, sg-rotation"
            ),
            "{notes:?}"
        );
        assert_eq!(
            eni.num_calls(),
            3,
            "waited until the rotation group's went too"
        );
        let progress = events.0.lock().unwrap();
        assert!(
            progress
                .last()
                .unwrap()
                .contains("1 still in use: eni-rotation"),
            "{progress:?}"
        );
    }

    #[tokio::test]
    async fn other_interfaces_in_the_group_are_not_waited_for() {
        let mixed = mock!(Client::describe_network_interfaces).then_output(|| {
            DescribeNetworkInterfacesOutput::builder()
                .network_interfaces(
                    NetworkInterface::builder()
                        .network_interface_id("eni-instance")
                        .interface_type(NetworkInterfaceType::Interface)
                        .build(),
                )
                .build()
        });
        let cx = context(&[&group(), &mixed]);
        assert_eq!(
            destroy(&cx, &Progress::default()).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }
}
