//! A security group payops no longer creates, found in envs made before: the
//! rotation function's group from when that function ran in the VPC.
//!
//! Its step keeps the old step id, so the group is found by the same
//! ownership tags (and the state's record of it) as when it was made. Nothing
//! creates it; both `up` and `down` remove it, each as its walk allows:
//!
//! - `down` runs it where the live groups' steps run: after the functions,
//!   the wait for Lambda's interfaces (`lambda-enis` covers this group) and
//!   the rules step (which revokes the database group's ingress from it), so
//!   it deletes patiently, as any group.
//! - `up` runs it before the rules and the functions (they depend on the
//!   groups), so on an upgrade the group is still referenced by the database
//!   group's rule and holds the attached function's interfaces. AWS refuses
//!   to delete a group in that state (DependencyViolation), and Lambda lets
//!   the interfaces go 20-45 minutes after the function left the VPC. `up`
//!   therefore deletes the group only when nothing uses it, and otherwise
//!   keeps it without waiting (a free group costs nothing), saying why: the
//!   same `up` revokes the rule and takes the function out of the VPC, and
//!   the next `up` or `down` removes the group. Until then its id stays in
//!   the record, which keeps the ENI permissions in the rotation role (Lambda
//!   releases the interfaces with the function's role).
//!
//! Whether it is in use is asked of EC2 before deleting, not only read from
//! DeleteSecurityGroup's answer: the emulators delete a group that is still
//! referenced or has interfaces, where AWS refuses.

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{
    Applied, Change, Dependency, Observation, Record, Removed, Step, StepCx, StepError, StepId,
};

use crate::resources::context::Context;
use crate::resources::model::SgRole;
use crate::resources::sdk::ec2;

/// The record key of the group's id (as the live groups' steps record it).
pub const RECORD_KEY: &str = "security_group";

/// What DeleteSecurityGroup answers while the group is in use, and when it
/// is gone already.
const BUSY: &[&str] = &["DependencyViolation", "InvalidGroup.InUse"];
const GONE: &[&str] = &["InvalidGroup.NotFound"];

pub struct RetiredSecurityGroup {
    id: StepId,
    deps: Vec<Dependency>,
}

impl RetiredSecurityGroup {
    pub fn new(role: SgRole, deps: Vec<Dependency>) -> Self {
        Self {
            id: StepId::from(role.step_id()),
            deps,
        }
    }

    /// The env's groups tagged for this step.
    async fn find(&self, cx: &Context) -> Result<Vec<String>, AwsError> {
        let step = self.id.as_str();
        let out = cx
            .clients
            .ec2
            .describe_security_groups()
            .set_filters(Some(ec2::owned_by(cx, step)))
            .send()
            .await
            .op("ec2:DescribeSecurityGroups")?;
        let mut ids: Vec<String> = out
            .security_groups()
            .iter()
            .filter(|g| ec2::is_owned_by(cx, step, &ec2::tag_map(g.tags())))
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn record(ids: &[String]) -> Record {
        match ids {
            [] => Record::default(),
            [one] => Record::default().resource(RECORD_KEY, one),
            many => many.iter().fold(Record::default(), |r, id| {
                r.resource(format!("{RECORD_KEY}:{id}"), id)
            }),
        }
    }
}

/// Why AWS would refuse to delete `group` now, if it would: network
/// interfaces in it (Lambda's, released 20-45 minutes after the function
/// left), or another group's rule naming it.
pub async fn in_use(cx: &Context, group: &str) -> Result<Option<String>, AwsError> {
    let enis = cx
        .clients
        .ec2
        .describe_network_interfaces()
        .filters(ec2::filter("group-id", [group]))
        .send()
        .await
        .op("ec2:DescribeNetworkInterfaces")?;
    let enis: Vec<&str> = enis
        .network_interfaces()
        .iter()
        .filter_map(|e| e.network_interface_id())
        .collect();
    if !enis.is_empty() {
        return Ok(Some(format!(
            "network interface(s) {} still use it (Lambda releases them 20-45 minutes after \
             the function left the VPC)",
            enis.join(", ")
        )));
    }
    // Two calls: EC2 ANDs filters, and a reference may be either way.
    for filter in ["ip-permission.group-id", "egress.ip-permission.group-id"] {
        let out = cx
            .clients
            .ec2
            .describe_security_groups()
            .filters(ec2::filter(filter, [group]))
            .send()
            .await
            .op("ec2:DescribeSecurityGroups")?;
        let others: Vec<&str> = out
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .filter(|id| *id != group)
            .collect();
        if !others.is_empty() {
            return Ok(Some(format!(
                "a rule of {} still names it",
                others.join(", ")
            )));
        }
    }
    Ok(None)
}

async fn delete_once(cx: &Context, group: &str) -> Result<(), AwsError> {
    let deleted = cx
        .clients
        .ec2
        .delete_security_group()
        .group_id(group)
        .send()
        .await
        .op("ec2:DeleteSecurityGroup");
    absent_on(deleted, GONE).map(drop)
}

#[async_trait]
impl Step<Context> for RetiredSecurityGroup {
    fn id(&self) -> &StepId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "ec2:retired-security-group"
    }

    fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }

    /// Never wanted: unwanted while an older payops' group is still there.
    async fn observe(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Observation, StepError> {
        let ids = self.find(cx).await?;
        Ok(if ids.is_empty() {
            Observation::NotWanted
        } else {
            Observation::Unwanted {
                record: Self::record(&ids),
            }
        })
    }

    /// Deletes the group if nothing uses it any more; otherwise keeps it for
    /// a later run, without waiting (see the module's comment).
    async fn ensure(&self, cx: &Context, step: &StepCx<'_>) -> Result<Applied, StepError> {
        let mut kept = Vec::new();
        let mut notes = Vec::new();
        for group in self.find(cx).await? {
            let busy = match in_use(cx, &group).await? {
                Some(why) => Some(why),
                None => {
                    step.progress(format!("deleting {group}, a group payops no longer uses"));
                    match delete_once(cx, &group).await {
                        Ok(()) => None,
                        Err(e) if e.is_code(BUSY) => Some(e.to_string()),
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            match busy {
                None => notes.push(format!("deleted {group}, a group payops no longer uses")),
                Some(why) => {
                    notes.push(format!(
                        "kept {group} for now, a group payops no longer uses: {why}; the next \
                         `up` or `down` removes it"
                    ));
                    kept.push(group);
                }
            }
        }
        let change = if notes.len() > kept.len() {
            Change::Deleted
        } else {
            Change::Unchanged
        };
        Ok(Applied::new(change, Self::record(&kept)).with_notes(notes))
    }

    /// Deletes the group, waiting while AWS says it is still in use.
    async fn destroy(&self, cx: &Context, step: &StepCx<'_>) -> Result<Removed, StepError> {
        let ids = self.find(cx).await?;
        if ids.is_empty() {
            return Ok(Removed::AlreadyAbsent);
        }
        let mut notes = Vec::new();
        for group in ids {
            step.progress(format!("deleting {group}"));
            ec2::delete_patiently(
                cx,
                step,
                format!("deleting {group}"),
                BUSY,
                GONE,
                || async {
                    cx.clients
                        .ec2
                        .delete_security_group()
                        .group_id(&group)
                        .send()
                        .await
                        .op("ec2:DeleteSecurityGroup")
                },
            )
            .await?;
            notes.push(format!("deleted {group}, a group payops no longer uses"));
        }
        Ok(Removed::Deleted { notes })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::delete_security_group::{
        DeleteSecurityGroupError, DeleteSecurityGroupOutput,
    };
    use aws_sdk_ec2::operation::describe_network_interfaces::DescribeNetworkInterfacesOutput;
    use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
    use aws_sdk_ec2::types::{NetworkInterface, NetworkInterfaceType, SecurityGroup};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    const STEP: &str = "security-group:rotation";

    fn step() -> RetiredSecurityGroup {
        RetiredSecurityGroup::new(SgRole::Rotation, vec![])
    }

    /// DescribeSecurityGroups by ownership tags finds the old group; by a
    /// rule's peer (`referenced_by`) it finds the groups whose rules name it.
    fn groups(referenced_by: &'static [&'static str]) -> Rule {
        mock!(Client::describe_security_groups).then_compute_output(move |r| {
            let by_peer = r.filters().iter().any(|f| {
                f.name()
                    .is_some_and(|n| n.ends_with("ip-permission.group-id"))
            });
            let mut out = DescribeSecurityGroupsOutput::builder();
            if by_peer {
                for id in referenced_by {
                    out = out.security_groups(SecurityGroup::builder().group_id(*id).build());
                }
            } else {
                out = out.security_groups(
                    SecurityGroup::builder()
                        .group_id("sg-rotation")
                        .set_tags(Some(testing::ec2_tags(STEP)))
                        .build(),
                );
            }
            out.build()
        })
    }

    fn enis(ids: &'static [&'static str]) -> Rule {
        mock!(Client::describe_network_interfaces)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("group-id") && f.values() == ["sg-rotation"])
            })
            .then_output(move || {
                let mut out = DescribeNetworkInterfacesOutput::builder();
                for id in ids {
                    out = out.network_interfaces(
                        NetworkInterface::builder()
                            .network_interface_id(*id)
                            .interface_type(NetworkInterfaceType::Lambda)
                            .build(),
                    );
                }
                out.build()
            })
    }

    fn delete() -> Rule {
        mock!(Client::delete_security_group)
            .match_requests(|r| r.group_id() == Some("sg-rotation"))
            .then_output(|| DeleteSecurityGroupOutput::builder().build())
    }

    fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    async fn ensure(cx: &Context) -> Applied {
        let id = StepId::from(STEP);
        let events = testing::Events::default();
        step()
            .ensure(cx, &testing::step_cx(&id, Default::default(), &events))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn up_keeps_the_old_group_while_the_database_group_still_names_it() {
        let delete = delete();
        let cx = context(&[&groups(&["sg-database"]), &enis(&[]), &delete]);
        let applied = ensure(&cx).await;
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(
            delete.num_calls(),
            0,
            "AWS would refuse: DependencyViolation"
        );
        assert!(
            applied.notes[0].contains("a rule of sg-database still names it"),
            "{:?}",
            applied.notes
        );
        assert!(applied.notes[0].contains("the next `up` or `down` removes it"));
        // Kept in the record: the rotation role keeps its ENI permissions.
        assert_eq!(applied.record.resources[RECORD_KEY], "sg-rotation");
    }

    #[tokio::test]
    async fn up_keeps_the_old_group_while_lambda_holds_interfaces_in_it() {
        let delete = delete();
        let cx = context(&[&groups(&[]), &enis(&["eni-1"]), &delete]);
        let applied = ensure(&cx).await;
        assert_eq!(delete.num_calls(), 0);
        assert!(applied.notes[0].contains("eni-1"), "{:?}", applied.notes);
        assert!(applied.notes[0].contains("20-45 minutes"));
    }

    #[tokio::test]
    async fn up_deletes_the_old_group_once_nothing_uses_it() {
        let delete = delete();
        let cx = context(&[&groups(&[]), &enis(&[]), &delete]);
        let applied = ensure(&cx).await;
        assert_eq!(applied.change, Change::Deleted);
        assert_eq!(delete.num_calls(), 1);
        assert_eq!(applied.record, Record::default());
    }

    #[tokio::test]
    async fn up_does_not_wait_when_aws_still_refuses() {
        // Free by EC2's answers, but AWS refuses all the same (an interface
        // it had not listed yet): kept for later, no retries.
        let refused = mock!(Client::delete_security_group).then_error(|| {
            DeleteSecurityGroupError::generic(testing::error_meta("DependencyViolation"))
        });
        let cx = context(&[&groups(&[]), &enis(&[]), &refused]);
        let applied = ensure(&cx).await;
        assert_eq!(refused.num_calls(), 1);
        assert_eq!(applied.change, Change::Unchanged);
        assert!(
            applied.notes[0].contains("kept sg-rotation"),
            "{:?}",
            applied.notes
        );
    }

    #[tokio::test]
    async fn a_new_env_has_nothing_to_remove() {
        let none = mock!(Client::describe_security_groups)
            .then_output(|| DescribeSecurityGroupsOutput::builder().build());
        let cx = context(&[&none]);
        let id = StepId::from(STEP);
        let events = testing::Events::default();
        let step_cx = testing::step_cx(&id, Default::default(), &events);
        assert_eq!(
            step().observe(&cx, &step_cx).await.unwrap(),
            Observation::NotWanted
        );
        assert_eq!(
            step().destroy(&cx, &step_cx).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }

    #[tokio::test(start_paused = true)]
    async fn down_waits_until_aws_lets_the_group_go() {
        let delete = mock!(Client::delete_security_group)
            .sequence()
            .error(|| DeleteSecurityGroupError::generic(testing::error_meta("DependencyViolation")))
            .times(2)
            .output(|| DeleteSecurityGroupOutput::builder().build())
            .build();
        let cx = context(&[&groups(&[]), &delete]);
        let id = StepId::from(STEP);
        let events = testing::Events::default();
        let step_cx = testing::step_cx(&id, Default::default(), &events);
        assert!(matches!(
            step().observe(&cx, &step_cx).await.unwrap(),
            Observation::Unwanted { .. }
        ));
        let removed = step().destroy(&cx, &step_cx).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 3);
    }
}
