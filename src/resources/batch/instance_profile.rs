//! The batch instances' instance profile: how EC2 hands them the batch role.
//!
//! IAM is global, so the profile carries the region like the roles
//! (`payops-<env>-<region>-batch`, tagged `payops:region`) and ownership
//! compares it. A profile holds at most one role.

use std::fmt;

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::{self, Ownership, TagMap};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::iam;

pub const STEP: &str = "instance-profile:batch";
pub const ROLE_INPUT: (&str, &str) = ("iam-role:batch", "BatchRoleName");

pub struct InstanceProfile;

pub struct FoundProfile {
    name: String,
    arn: String,
    roles: Vec<String>,
    tags: TagMap,
}

#[derive(Debug, PartialEq)]
pub enum Fix {
    /// Roles other than the batch role (a profile holds one).
    RemoveRole(String),
    AddRole(String),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fix::RemoveRole(r) => write!(f, "remove role {r}"),
            Fix::AddRole(r) => write!(f, "add role {r}"),
            Fix::Tags(t) => f.write_str(&tags::describe_tag_fix(t)),
        }
    }
}

fn name(cx: &Context) -> String {
    cx.names.role("batch")
}

fn desired_tags(cx: &Context, step: &str) -> TagMap {
    let mut t = cx.tagger.for_create(step);
    t.insert(tags::REGION.to_owned(), cx.region.clone());
    t
}

#[async_trait]
impl Resource for InstanceProfile {
    type Found = FoundProfile;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "iam:instance-profile"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.batch.on
    }

    /// CreateInstanceProfile meets the profile its lost first attempt made.
    fn already_exists(&self) -> &'static [&'static str] {
        &["EntityAlreadyExists"]
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundProfile>, AwsError> {
        let name = name(cx);
        let got = cx
            .clients
            .iam
            .get_instance_profile()
            .instance_profile_name(&name)
            .send()
            .await
            .op("iam:GetInstanceProfile");
        let Some(out) = absent_on(got, &["NoSuchEntity"])? else {
            return Ok(Vec::new());
        };
        let p = required(
            out.instance_profile(),
            "iam:GetInstanceProfile",
            "InstanceProfile",
        )?;
        let mut tag_map = tags::to_map(p.tags(), |t| (Some(t.key()), Some(t.value())));
        if tag_map.is_empty() {
            // Emulators (and older API answers) leave tags out of Get.
            let listed = cx
                .clients
                .iam
                .list_instance_profile_tags()
                .instance_profile_name(&name)
                .send()
                .await
                .op("iam:ListInstanceProfileTags")?;
            tag_map = tags::to_map(listed.tags(), |t| (Some(t.key()), Some(t.value())));
        }
        // Never adopt what is not this env's (in this region): `up` then
        // fails on the taken name, `down` leaves it alone.
        if tags::global_ownership(&tag_map, cx.env(), &cx.region) != Ownership::Ours {
            return Ok(Vec::new());
        }
        Ok(vec![FoundProfile {
            name,
            arn: p.arn().to_owned(),
            roles: p.roles().iter().map(|r| r.role_name().to_owned()).collect(),
            tags: tag_map,
        }])
    }

    fn describe(&self, p: &FoundProfile) -> String {
        p.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundProfile, AwsError> {
        let name = name(cx);
        let tag_map = desired_tags(cx, step.id().as_str());
        let out = cx
            .clients
            .iam
            .create_instance_profile()
            .instance_profile_name(&name)
            .set_tags(Some(iam::tags(&tag_map)))
            .send()
            .await
            .op("iam:CreateInstanceProfile")?;
        let p = required(
            out.instance_profile(),
            "iam:CreateInstanceProfile",
            "InstanceProfile",
        )?;
        step.remember("instance_profile", &name);
        // The role is added by `fix`, right after (the trait's contract).
        Ok(FoundProfile {
            name,
            arn: p.arn().to_owned(),
            roles: Vec::new(),
            tags: tag_map,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        p: &FoundProfile,
    ) -> Result<Vec<Fix>, AwsError> {
        let role = step.output(ROLE_INPUT.0, ROLE_INPUT.1)?;
        let mut fixes: Vec<Fix> = p
            .roles
            .iter()
            .filter(|r| *r != role)
            .map(|r| Fix::RemoveRole(r.clone()))
            .collect();
        if !p.roles.iter().any(|r| r == role) {
            fixes.push(Fix::AddRole(role.to_owned()));
        }
        let mut missing = cx.tagger.missing(step.id().as_str(), &p.tags);
        if p.tags.get(tags::REGION) != Some(&cx.region) {
            missing.insert(tags::REGION.to_owned(), cx.region.clone());
        }
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        p: &mut FoundProfile,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let client = &cx.clients.iam;
        match fix {
            Fix::RemoveRole(role) => {
                client
                    .remove_role_from_instance_profile()
                    .instance_profile_name(&p.name)
                    .role_name(&role)
                    .send()
                    .await
                    .op("iam:RemoveRoleFromInstanceProfile")?;
                p.roles.retain(|r| *r != role);
            }
            Fix::AddRole(role) => {
                client
                    .add_role_to_instance_profile()
                    .instance_profile_name(&p.name)
                    .role_name(&role)
                    .send()
                    .await
                    .op("iam:AddRoleToInstanceProfile")?;
                p.roles.push(role);
            }
            Fix::Tags(t) => {
                client
                    .tag_instance_profile()
                    .instance_profile_name(&p.name)
                    .set_tags(Some(iam::tags(&t)))
                    .send()
                    .await
                    .op("iam:TagInstanceProfile")?;
                p.tags.extend(t);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, p: &FoundProfile) -> Record {
        Record::default()
            .resource("instance_profile", &p.name)
            .output("BatchInstanceProfileArn", &p.arn)
            .output("BatchInstanceProfileName", &p.name)
    }

    /// Its role first: IAM refuses to delete a profile that holds one
    /// (DeleteConflict), and the role's own delete refuses while a profile
    /// holds it.
    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        p: FoundProfile,
    ) -> Result<Vec<String>, AwsError> {
        let client = &cx.clients.iam;
        for role in &p.roles {
            absent_on(
                client
                    .remove_role_from_instance_profile()
                    .instance_profile_name(&p.name)
                    .role_name(role)
                    .send()
                    .await
                    .op("iam:RemoveRoleFromInstanceProfile"),
                &["NoSuchEntity"],
            )?;
        }
        absent_on(
            client
                .delete_instance_profile()
                .instance_profile_name(&p.name)
                .send()
                .await
                .op("iam:DeleteInstanceProfile"),
            &["NoSuchEntity"],
        )?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Change;
    use crate::resources::testing;
    use aws_sdk_iam::operation::get_instance_profile::GetInstanceProfileError;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const ROLE: &str = "payops-pr1-us-east-1-batch";

    fn cx(iam: aws_sdk_iam::Client) -> Context {
        let mut clients = testing::clients();
        clients.iam = iam;
        let mut cx = testing::context(clients);
        cx.spec.batch.on = true;
        cx
    }

    fn profile(roles: &[&str]) -> aws_sdk_iam::types::InstanceProfile {
        let mut tag_map = testing::our_tags(STEP);
        tag_map.insert(tags::REGION.into(), testing::REGION.into());
        aws_sdk_iam::types::InstanceProfile::builder()
            .path("/")
            .instance_profile_name(ROLE)
            .instance_profile_id("AIPA")
            .arn(format!(
                "arn:aws:iam::{}:instance-profile/{ROLE}",
                testing::ACCOUNT
            ))
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .set_roles(Some(
                roles
                    .iter()
                    .map(|r| {
                        aws_sdk_iam::types::Role::builder()
                            .role_name(*r)
                            .path("/")
                            .role_id("AROA")
                            .arn(format!("arn:aws:iam::{}:role/{r}", testing::ACCOUNT))
                            .create_date(aws_smithy_types::DateTime::from_secs(0))
                            .build()
                            .unwrap()
                    })
                    .collect(),
            ))
            .set_tags(Some(iam::tags(&tag_map)))
            .build()
            .unwrap()
    }

    fn role_input() -> Vec<(&'static str, Record)> {
        testing::outputs(&[(ROLE_INPUT.0, ROLE_INPUT.1, ROLE)])
    }

    #[tokio::test]
    async fn a_new_profile_is_tagged_with_the_region_and_gets_the_batch_role() {
        let missing = mock!(aws_sdk_iam::Client::get_instance_profile)
            .then_error(|| GetInstanceProfileError::generic(testing::error_meta("NoSuchEntity")));
        let create = mock!(aws_sdk_iam::Client::create_instance_profile)
            .match_requests(|r| {
                r.instance_profile_name() == Some(ROLE)
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == tags::REGION && t.value() == testing::REGION)
            })
            .then_output(|| {
                aws_sdk_iam::operation::create_instance_profile::CreateInstanceProfileOutput::builder()
                    .instance_profile(profile(&[]))
                    .build()
            });
        let add = mock!(aws_sdk_iam::Client::add_role_to_instance_profile)
            .match_requests(|r| r.role_name() == Some(ROLE))
            .then_output(|| {
                aws_sdk_iam::operation::add_role_to_instance_profile::AddRoleToInstanceProfileOutput::builder().build()
            });
        let cx = cx(mock_client!(
            aws_sdk_iam,
            RuleMode::MatchAny,
            [&missing, &create, &add]
        ));
        let applied = testing::ensure(&cx, STEP, InstanceProfile, &role_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!((create.num_calls(), add.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_converged_profile_makes_no_call_and_down_removes_the_role_first() {
        let get = mock!(aws_sdk_iam::Client::get_instance_profile).then_output(|| {
            aws_sdk_iam::operation::get_instance_profile::GetInstanceProfileOutput::builder()
                .instance_profile(profile(&[ROLE]))
                .build()
        });
        let remove = mock!(aws_sdk_iam::Client::remove_role_from_instance_profile)
            .match_requests(|r| r.role_name() == Some(ROLE))
            .then_output(|| {
                aws_sdk_iam::operation::remove_role_from_instance_profile::RemoveRoleFromInstanceProfileOutput::builder().build()
            });
        let delete = mock!(aws_sdk_iam::Client::delete_instance_profile).then_output(|| {
            aws_sdk_iam::operation::delete_instance_profile::DeleteInstanceProfileOutput::builder()
                .build()
        });
        let cx = cx(mock_client!(
            aws_sdk_iam,
            RuleMode::MatchAny,
            [&get, &remove, &delete]
        ));
        let applied = testing::ensure(&cx, STEP, InstanceProfile, &role_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(remove.num_calls() + delete.num_calls(), 0);
        testing::destroy(&cx, STEP, InstanceProfile).await.unwrap();
        assert_eq!((remove.num_calls(), delete.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn another_regions_profile_is_never_adopted() {
        let get = mock!(aws_sdk_iam::Client::get_instance_profile).then_output(|| {
            let mut p = profile(&[ROLE]);
            p.tags = Some(iam::tags(&{
                let mut t = testing::our_tags(STEP);
                t.insert(tags::REGION.into(), "eu-west-1".into());
                t
            }));
            aws_sdk_iam::operation::get_instance_profile::GetInstanceProfileOutput::builder()
                .instance_profile(p)
                .build()
        });
        let cx = cx(mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&get]));
        // Not found as the env's: `down` touches nothing (no Remove/Delete
        // is mocked: a call would fail the test), and `up` would create
        // (and fail on the taken name) rather than adopt.
        testing::destroy(&cx, STEP, InstanceProfile).await.unwrap();
        let observed = testing::observe(&cx, STEP, InstanceProfile, &role_input())
            .await
            .unwrap();
        assert!(format!("{observed:?}").contains("Missing"), "{observed:?}");
    }
}
