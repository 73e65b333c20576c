//! IAM roles that AWS services assume on the env's behalf (VPC Flow Logs now,
//! Lambda functions later): a trust policy limited to one service principal
//! acting for this account, and inline policies scoped to exact ARNs.
//!
//! payops attaches no managed policy: AWS-managed ones grant `*` resources and
//! change under our feet. Every permission is an inline policy computed from
//! the step's inputs, so the role allows exactly what the env contains.

use std::fmt;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::aws::{AwsError, OpResult, absent_on, policy, required};
use crate::engine::{Record, StepCx};
use crate::naming::NameKind;
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::iam;
use crate::tags::describe_tag_fix;

/// The inline policies a role should carry, by name, computed from the env and
/// the step's inputs (so they can name the exact ARNs the role may touch).
pub type InlinePolicies =
    Box<dyn Fn(&Context, &StepCx<'_>) -> Result<Vec<(String, Value)>, AwsError> + Send + Sync>;

/// IAM's limit on the total size of a role's inline policies (whitespace
/// excluded); AWS rejects a PutRolePolicy beyond it with LimitExceeded.
const INLINE_POLICY_BUDGET: usize = 10_240;

pub struct Role {
    suffix: String,
    service: String,
    description: String,
    output_prefix: String,
    policies: InlinePolicies,
}

impl Role {
    /// A role named `cx.names.role(suffix)` that only `service` (e.g.
    /// `vpc-flow-logs.amazonaws.com`) may assume; its outputs are
    /// `<output_prefix>RoleArn` and `<output_prefix>RoleName`.
    pub fn new(
        suffix: impl Into<String>,
        service: impl Into<String>,
        description: impl Into<String>,
        output_prefix: impl Into<String>,
    ) -> Self {
        Self {
            suffix: suffix.into(),
            service: service.into(),
            description: description.into(),
            output_prefix: output_prefix.into(),
            policies: Box::new(|_, _| Ok(Vec::new())),
        }
    }

    pub fn with_policies(
        mut self,
        policies: impl Fn(&Context, &StepCx<'_>) -> Result<Vec<(String, Value)>, AwsError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.policies = Box::new(policies);
        self
    }

    /// The role's name; refused (not truncated) beyond IAM's 64 characters.
    pub fn name(&self, cx: &Context) -> Result<String, AwsError> {
        let name = cx.names.role(&self.suffix);
        NameKind::IamRole.check(&name).map_err(AwsError::Conflict)?;
        Ok(name)
    }

    /// Only the service may assume the role, and only when acting for this
    /// account: without `aws:SourceAccount` any account's use of the service
    /// could make it act with this role (the confused-deputy problem).
    pub fn trust_policy(&self, cx: &Context) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": self.service },
                "Action": "sts:AssumeRole",
                "Condition": { "StringEquals": { "aws:SourceAccount": cx.account_id } }
            }]
        })
    }

    /// The desired inline policies as documents, checked for least privilege.
    fn desired_policies(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        role: &str,
    ) -> Result<Vec<(String, String)>, AwsError> {
        let policies = (self.policies)(cx, step)?;
        let mut size = 0;
        let mut docs = Vec::with_capacity(policies.len());
        for (name, doc) in policies {
            check_least_privilege(role, &name, &doc)?;
            let doc = doc.to_string();
            size += doc.chars().filter(|c| !c.is_whitespace()).count();
            docs.push((name, doc));
        }
        if size > INLINE_POLICY_BUDGET {
            return Err(AwsError::Conflict(format!(
                "the inline policies of role {role} total {size} characters; IAM allows \
                 {INLINE_POLICY_BUDGET} per role: split the role or merge statements"
            )));
        }
        Ok(docs)
    }
}

/// Refuses any statement that grants every action (`*`, `service:*`) or
/// everything but some (`NotAction`): roles get named actions only.
fn check_least_privilege(role: &str, name: &str, doc: &Value) -> Result<(), AwsError> {
    let statements = match &doc["Statement"] {
        Value::Array(s) => s.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => Vec::new(),
    };
    let refuse = |why: String| {
        Err(AwsError::Conflict(format!(
            "inline policy {name} of role {role} {why}: payops grants named actions only"
        )))
    };
    for statement in statements {
        if statement.get("NotAction").is_some() {
            return refuse("uses NotAction".into());
        }
        let actions: Vec<&str> = match &statement["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(a) = actions.iter().find(|a| **a == "*" || a.ends_with(":*")) {
            return refuse(format!("allows every action ({a})"));
        }
    }
    Ok(())
}

pub struct FoundRole {
    name: String,
    arn: String,
    /// As IAM returns it: URL-encoded JSON.
    trust: String,
    description: Option<String>,
    tags: TagMap,
}

pub enum Fix {
    Trust,
    Description,
    PutPolicy {
        name: String,
        document: String,
        exists: bool,
    },
    DeletePolicy(String),
    Detach(String),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trust => f.write_str("update the trust policy"),
            Self::Description => f.write_str("update the description"),
            Self::PutPolicy { name, exists, .. } if *exists => {
                write!(f, "update inline policy {name}")
            }
            Self::PutPolicy { name, .. } => write!(f, "add inline policy {name}"),
            Self::DeletePolicy(name) => write!(f, "delete unexpected inline policy {name}"),
            Self::Detach(arn) => write!(
                f,
                "detach managed policy {arn} (payops attaches none: every permission is an \
                 inline policy scoped to exact ARNs)"
            ),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

async fn inline_policy_names(cx: &Context, role: &str) -> Result<Vec<String>, AwsError> {
    let items: Vec<_> = cx
        .clients
        .iam
        .list_role_policies()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    items
        .into_iter()
        .map(|r| r.op("iam:ListRolePolicies"))
        .collect()
}

async fn attached_policy_arns(cx: &Context, role: &str) -> Result<Vec<String>, AwsError> {
    let items: Vec<_> = cx
        .clients
        .iam
        .list_attached_role_policies()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    let mut arns = Vec::new();
    for item in items {
        if let Some(arn) = item.op("iam:ListAttachedRolePolicies")?.policy_arn() {
            arns.push(arn.to_owned());
        }
    }
    Ok(arns)
}

async fn instance_profiles(cx: &Context, role: &str) -> Result<Vec<String>, AwsError> {
    let items: Vec<_> = cx
        .clients
        .iam
        .list_instance_profiles_for_role()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    items
        .into_iter()
        .map(|r| {
            Ok(r.op("iam:ListInstanceProfilesForRole")?
                .instance_profile_name()
                .to_owned())
        })
        .collect()
}

async fn delete_inline_policy(cx: &Context, role: &str, name: &str) -> Result<(), AwsError> {
    let deleted = cx
        .clients
        .iam
        .delete_role_policy()
        .role_name(role)
        .policy_name(name)
        .send()
        .await
        .op("iam:DeleteRolePolicy");
    absent_on(deleted, &["NoSuchEntity"]).map(drop)
}

async fn detach_policy(cx: &Context, role: &str, arn: &str) -> Result<(), AwsError> {
    let detached = cx
        .clients
        .iam
        .detach_role_policy()
        .role_name(role)
        .policy_arn(arn)
        .send()
        .await
        .op("iam:DetachRolePolicy");
    absent_on(detached, &["NoSuchEntity"]).map(drop)
}

impl Role {
    async fn get(&self, cx: &Context, name: &str) -> Result<Option<FoundRole>, AwsError> {
        let got = cx
            .clients
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .op("iam:GetRole");
        let Some(out) = absent_on(got, &["NoSuchEntity"])? else {
            return Ok(None);
        };
        let role = required(out.role(), "iam:GetRole", "Role")?;
        let tags = iam::role_tags(cx, name).await?;
        cx.check_ours(format!("IAM role {name}"), &tags)?;
        Ok(Some(FoundRole {
            name: role.role_name().to_owned(),
            arn: role.arn().to_owned(),
            trust: role
                .assume_role_policy_document()
                .unwrap_or_default()
                .to_owned(),
            description: role.description().map(str::to_owned),
            tags,
        }))
    }
}

#[async_trait]
impl Resource for Role {
    type Found = FoundRole;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "iam:role"
    }

    /// CreateRole meets the role its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["EntityAlreadyExists"]
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRole>, AwsError> {
        let name = self.name(cx)?;
        Ok(self.get(cx, &name).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundRole) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundRole, AwsError> {
        let name = self.name(cx)?;
        let trust = self.trust_policy(cx).to_string();
        let tags = cx.tagger.for_create(step.id().as_str());
        let created = cx
            .clients
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(&trust)
            .description(&self.description)
            .set_tags(Some(iam::tags(&tags)))
            .send()
            .await
            .op("iam:CreateRole");
        let out = match created {
            Ok(out) => out,
            // Created by a concurrent or killed run a moment ago: adopt it only
            // if it carries our tags.
            Err(e) if e.is_code(&["EntityAlreadyExists"]) => {
                return match self.get(cx, &name).await? {
                    Some(found) => {
                        step.remember("role", &found.name);
                        Ok(found)
                    }
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let role = required(out.role(), "iam:CreateRole", "Role")?;
        step.remember("role", role.role_name());
        Ok(FoundRole {
            name: role.role_name().to_owned(),
            arn: role.arn().to_owned(),
            trust,
            description: Some(self.description.clone()),
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        role: &FoundRole,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        // IAM returns the trust policy URL-encoded and reformatted.
        if !policy::same(&role.trust, &self.trust_policy(cx).to_string()) {
            fixes.push(Fix::Trust);
        }
        if role.description.as_deref() != Some(self.description.as_str()) {
            fixes.push(Fix::Description);
        }
        let desired = self.desired_policies(cx, step, &role.name)?;
        let (existing, attached) = tokio::try_join!(
            inline_policy_names(cx, &role.name),
            attached_policy_arns(cx, &role.name)
        )?;
        for (name, document) in desired.iter().cloned() {
            let exists = existing.contains(&name);
            let same = if exists {
                let out = cx
                    .clients
                    .iam
                    .get_role_policy()
                    .role_name(&role.name)
                    .policy_name(&name)
                    .send()
                    .await
                    .op("iam:GetRolePolicy")?;
                policy::same(out.policy_document(), &document)
            } else {
                false
            };
            if !same {
                fixes.push(Fix::PutPolicy {
                    name,
                    document,
                    exists,
                });
            }
        }
        for name in existing {
            if !desired.iter().any(|(n, _)| *n == name) {
                fixes.push(Fix::DeletePolicy(name));
            }
        }
        fixes.extend(attached.into_iter().map(Fix::Detach));
        let missing = cx.tagger.missing(step.id().as_str(), &role.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        role: &mut FoundRole,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let iam = &cx.clients.iam;
        match fix {
            Fix::Trust => {
                let trust = self.trust_policy(cx).to_string();
                iam.update_assume_role_policy()
                    .role_name(&role.name)
                    .policy_document(&trust)
                    .send()
                    .await
                    .op("iam:UpdateAssumeRolePolicy")?;
                role.trust = trust;
            }
            Fix::Description => {
                iam.update_role()
                    .role_name(&role.name)
                    .description(&self.description)
                    .send()
                    .await
                    .op("iam:UpdateRole")?;
                role.description = Some(self.description.clone());
            }
            Fix::PutPolicy { name, document, .. } => {
                iam.put_role_policy()
                    .role_name(&role.name)
                    .policy_name(name)
                    .policy_document(document)
                    .send()
                    .await
                    .op("iam:PutRolePolicy")?;
            }
            Fix::DeletePolicy(name) => delete_inline_policy(cx, &role.name, &name).await?,
            Fix::Detach(arn) => detach_policy(cx, &role.name, &arn).await?,
            Fix::Tags(tags) => {
                iam.tag_role()
                    .role_name(&role.name)
                    .set_tags(Some(iam::tags(&tags)))
                    .send()
                    .await
                    .op("iam:TagRole")?;
                role.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, role: &FoundRole) -> Record {
        let p = &self.output_prefix;
        Record::default()
            .resource("role", &role.name)
            .output(format!("{p}RoleArn"), &role.arn)
            .output(format!("{p}RoleName"), &role.name)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        role: FoundRole,
    ) -> Result<Vec<String>, AwsError> {
        // DeleteRole fails with DeleteConflict while the role has inline or
        // managed policies or sits in an instance profile.
        let mut notes = Vec::new();
        for name in inline_policy_names(cx, &role.name).await? {
            delete_inline_policy(cx, &role.name, &name).await?;
        }
        for arn in attached_policy_arns(cx, &role.name).await? {
            detach_policy(cx, &role.name, &arn).await?;
            notes.push(format!("detached managed policy {arn} from {}", role.name));
        }
        for profile in instance_profiles(cx, &role.name).await? {
            let removed = cx
                .clients
                .iam
                .remove_role_from_instance_profile()
                .instance_profile_name(&profile)
                .role_name(&role.name)
                .send()
                .await
                .op("iam:RemoveRoleFromInstanceProfile");
            absent_on(removed, &["NoSuchEntity"])?;
            notes.push(format!(
                "removed {} from instance profile {profile}",
                role.name
            ));
        }
        let deleted = cx
            .clients
            .iam
            .delete_role()
            .role_name(&role.name)
            .send()
            .await
            .op("iam:DeleteRole");
        absent_on(deleted, &["NoSuchEntity"])?;
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_iam::types::Tag;

    use crate::tags;

    use std::sync::{Arc, Mutex};

    use aws_sdk_iam::Client;
    use aws_sdk_iam::operation::{
        create_role::CreateRoleOutput,
        delete_role::{DeleteRoleError, DeleteRoleOutput},
        delete_role_policy::DeleteRolePolicyOutput,
        detach_role_policy::DetachRolePolicyOutput,
        get_role::{GetRoleError, GetRoleOutput},
        get_role_policy::GetRolePolicyOutput,
        list_attached_role_policies::ListAttachedRolePoliciesOutput,
        list_instance_profiles_for_role::ListInstanceProfilesForRoleOutput,
        list_role_policies::ListRolePoliciesOutput,
        list_role_tags::ListRoleTagsOutput,
        put_role_policy::PutRolePolicyOutput,
        remove_role_from_instance_profile::RemoveRoleFromInstanceProfileOutput,
        tag_role::TagRoleOutput,
        update_assume_role_policy::UpdateAssumeRolePolicyOutput,
    };
    use aws_sdk_iam::types::{AttachedPolicy, InstanceProfile, Role as IamRole};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::naming::EnvName;
    use crate::resources::testing::{self, ACCOUNT, NOW};
    use crate::tags::Tagger;

    const NAME: &str = "payops-pr1-test";
    const ARN: &str = "arn:aws:iam::123456789012:role/payops-pr1-test";
    const STEP: &str = "iam-role:test";

    fn role() -> Role {
        Role::new("test", "vpc-flow-logs.amazonaws.com", "test role", "Test").with_policies(
            |cx, _| {
                Ok(vec![(
                    "deliver".to_owned(),
                    json!({
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Effect": "Allow",
                            "Action": ["logs:PutLogEvents", "logs:CreateLogStream"],
                            "Resource": cx.arn("logs", "log-group:/payops/pr1/x:*")
                        }]
                    }),
                )])
            },
        )
    }

    fn policy_doc() -> String {
        json!({
            "Statement": {
                "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/payops/pr1/x:*",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Effect": "Allow"
            },
            "Version": "2012-10-17"
        })
        .to_string()
    }

    fn url_encode(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    fn trust_doc(account: &str) -> String {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": "vpc-flow-logs.amazonaws.com" },
                "Action": "sts:AssumeRole",
                "Condition": { "StringEquals": { "aws:SourceAccount": account } }
            }]
        })
        .to_string()
    }

    fn iam_role(trust: &str) -> IamRole {
        IamRole::builder()
            .path("/")
            .role_name(NAME)
            .role_id("AROA1")
            .arn(ARN)
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .assume_role_policy_document(url_encode(trust))
            .description("test role")
            .build()
            .unwrap()
    }

    fn our_tags() -> Vec<Tag> {
        let tags = Tagger::new(EnvName::parse("pr1").unwrap(), "payments", NOW).for_create(STEP);
        iam::tags(&tags)
    }

    fn get_role(trust: String) -> Rule {
        mock!(Client::get_role)
            .match_requests(|r| r.role_name() == Some(NAME))
            .then_output(move || GetRoleOutput::builder().role(iam_role(&trust)).build())
    }

    fn list_tags(tags: Vec<Tag>) -> Rule {
        mock!(Client::list_role_tags).then_output(move || {
            ListRoleTagsOutput::builder()
                .set_tags(Some(tags.clone()))
                .build()
                .unwrap()
        })
    }

    fn list_policies(names: &'static [&'static str]) -> Rule {
        mock!(Client::list_role_policies).then_output(move || {
            ListRolePoliciesOutput::builder()
                .set_policy_names(Some(names.iter().map(|n| (*n).to_owned()).collect()))
                .build()
                .unwrap()
        })
    }

    fn get_policy(doc: String) -> Rule {
        mock!(Client::get_role_policy)
            .match_requests(|r| r.policy_name() == Some("deliver"))
            .then_output(move || {
                GetRolePolicyOutput::builder()
                    .role_name(NAME)
                    .policy_name("deliver")
                    .policy_document(url_encode(&doc))
                    .build()
                    .unwrap()
            })
    }

    fn no_attached() -> Rule {
        mock!(Client::list_attached_role_policies)
            .then_output(|| ListAttachedRolePoliciesOutput::builder().build())
    }

    fn no_role() -> Rule {
        mock!(Client::get_role)
            .then_error(|| GetRoleError::generic(testing::error_meta("NoSuchEntity")))
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_a_tagged_role_trusting_only_the_service_for_this_account() {
        let create = mock!(Client::create_role)
            .match_requests(|r| {
                let trust: Value =
                    serde_json::from_str(r.assume_role_policy_document().unwrap()).unwrap();
                let statement = &trust["Statement"][0];
                r.role_name() == Some(NAME)
                    && statement["Principal"]["Service"] == "vpc-flow-logs.amazonaws.com"
                    && statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == tags::STEP && t.value() == STEP)
            })
            .then_output(|| {
                CreateRoleOutput::builder()
                    .role(iam_role(&trust_doc(ACCOUNT)))
                    .build()
            });
        let put = mock!(Client::put_role_policy)
            .match_requests(|r| {
                r.role_name() == Some(NAME)
                    && r.policy_name() == Some("deliver")
                    && policy::same(r.policy_document().unwrap(), &policy_doc())
            })
            .then_output(|| PutRolePolicyOutput::builder().build());
        let cx = cx_with(&[
            &no_role(),
            &create,
            &put,
            &list_policies(&[]),
            &no_attached(),
        ]);
        let applied = testing::ensure(&cx, STEP, role(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["TestRoleArn"], ARN);
        assert_eq!(applied.record.outputs["TestRoleName"], NAME);
        assert_eq!(create.num_calls(), 1);
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_owned_role_in_sync_is_adopted_without_mutating_calls() {
        // IAM answers URL-encoded, reordered documents: still in sync.
        let cx = cx_with(&[
            &get_role(trust_doc(ACCOUNT)),
            &list_tags(our_tags()),
            &list_policies(&["deliver"]),
            &get_policy(policy_doc()),
            &no_attached(),
        ]);
        let applied = testing::ensure(&cx, STEP, role(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_role_with_our_name_but_not_our_tags_is_refused() {
        let foreign = vec![Tag::builder().key("team").value("other").build().unwrap()];
        let cx = cx_with(&[&get_role(trust_doc(ACCOUNT)), &list_tags(foreign)]);
        let err = testing::ensure(&cx, STEP, role(), &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("IAM role payops-pr1-test exists but is not tagged"),
            "{err}"
        );
        // Nor is it deleted by `down`.
        let err = testing::destroy(&cx, STEP, role()).await.unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
    }

    fn drifted_rules() -> Vec<Rule> {
        let mut tags = our_tags();
        tags.retain(|t| t.key() != "CostCenter");
        vec![
            // Trusts another account: a confused deputy waiting to happen.
            get_role(trust_doc("999999999999")),
            list_tags(tags),
            list_policies(&["deliver", "handmade"]),
            get_policy(policy_doc().replace("PutLogEvents", "DeleteLogGroup")),
            mock!(Client::list_attached_role_policies).then_output(|| {
                ListAttachedRolePoliciesOutput::builder()
                    .attached_policies(
                        AttachedPolicy::builder()
                            .policy_name("AdministratorAccess")
                            .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
                            .build(),
                    )
                    .build()
            }),
        ]
    }

    #[tokio::test]
    async fn observe_reports_drift_without_repairing_it() {
        let rules = drifted_rules();
        let refs: Vec<&Rule> = rules.iter().collect();
        let cx = cx_with(&refs);
        let Observation::Present { drift, .. } =
            testing::observe(&cx, STEP, role(), &[]).await.unwrap()
        else {
            panic!("expected the role to be present");
        };
        assert_eq!(
            drift,
            [
                "update the trust policy",
                "update inline policy deliver",
                "delete unexpected inline policy handmade",
                "detach managed policy arn:aws:iam::aws:policy/AdministratorAccess (payops \
                 attaches none: every permission is an inline policy scoped to exact ARNs)",
                "add tags CostCenter",
            ]
        );
    }

    #[tokio::test]
    async fn ensure_repairs_trust_policies_attachments_and_tags() {
        let trust = mock!(Client::update_assume_role_policy)
            .match_requests(|r| policy::same(r.policy_document().unwrap(), &trust_doc(ACCOUNT)))
            .then_output(|| UpdateAssumeRolePolicyOutput::builder().build());
        let put = mock!(Client::put_role_policy)
            .match_requests(|r| policy::same(r.policy_document().unwrap(), &policy_doc()))
            .then_output(|| PutRolePolicyOutput::builder().build());
        let delete = mock!(Client::delete_role_policy)
            .match_requests(|r| r.policy_name() == Some("handmade"))
            .then_output(|| DeleteRolePolicyOutput::builder().build());
        let detach = mock!(Client::detach_role_policy)
            .match_requests(|r| {
                r.policy_arn() == Some("arn:aws:iam::aws:policy/AdministratorAccess")
            })
            .then_output(|| DetachRolePolicyOutput::builder().build());
        let tag = mock!(Client::tag_role)
            .match_requests(|r| {
                r.tags().len() == 1
                    && r.tags()[0].key() == "CostCenter"
                    && r.tags()[0].value() == "payments"
            })
            .then_output(|| TagRoleOutput::builder().build());
        let mut rules = drifted_rules();
        rules.extend([
            trust.clone(),
            put.clone(),
            delete.clone(),
            detach.clone(),
            tag.clone(),
        ]);
        let refs: Vec<&Rule> = rules.iter().collect();
        let cx = cx_with(&refs);
        let applied = testing::ensure(&cx, STEP, role(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Updated);
        for rule in [&trust, &put, &delete, &detach, &tag] {
            assert_eq!(rule.num_calls(), 1);
        }
    }

    #[tokio::test]
    async fn destroy_empties_the_role_then_deletes_it() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let log = |op: &'static str| {
            let order = order.clone();
            move || order.lock().unwrap().push(op)
        };
        let (a, b, c, d) = (
            log("DeleteRolePolicy"),
            log("DetachRolePolicy"),
            log("RemoveRoleFromInstanceProfile"),
            log("DeleteRole"),
        );
        let delete_policy = mock!(Client::delete_role_policy)
            .match_requests(move |r| {
                a();
                r.policy_name() == Some("deliver")
            })
            .then_output(|| DeleteRolePolicyOutput::builder().build());
        let detach = mock!(Client::detach_role_policy)
            .match_requests(move |_| {
                b();
                true
            })
            .then_output(|| DetachRolePolicyOutput::builder().build());
        let profiles = mock!(Client::list_instance_profiles_for_role).then_output(|| {
            ListInstanceProfilesForRoleOutput::builder()
                .instance_profiles(
                    InstanceProfile::builder()
                        .path("/")
                        .instance_profile_name("legacy")
                        .instance_profile_id("AIPA1")
                        .arn("arn:aws:iam::123456789012:instance-profile/legacy")
                        .create_date(aws_smithy_types::DateTime::from_secs(0))
                        .set_roles(Some(Vec::new()))
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        });
        let remove = mock!(Client::remove_role_from_instance_profile)
            .match_requests(move |r| {
                c();
                r.instance_profile_name() == Some("legacy")
            })
            .then_output(|| RemoveRoleFromInstanceProfileOutput::builder().build());
        let delete = mock!(Client::delete_role)
            .match_requests(move |r| {
                d();
                r.role_name() == Some(NAME)
            })
            .then_output(|| DeleteRoleOutput::builder().build());
        let attached = mock!(Client::list_attached_role_policies).then_output(|| {
            ListAttachedRolePoliciesOutput::builder()
                .attached_policies(
                    AttachedPolicy::builder()
                        .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
                        .build(),
                )
                .build()
        });
        let cx = cx_with(&[
            &get_role(trust_doc(ACCOUNT)),
            &list_tags(our_tags()),
            &list_policies(&["deliver"]),
            &attached,
            &profiles,
            &delete_policy,
            &detach,
            &remove,
            &delete,
        ]);
        let removed = testing::destroy(&cx, STEP, role()).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(
            *order.lock().unwrap(),
            [
                "DeleteRolePolicy",
                "DetachRolePolicy",
                "RemoveRoleFromInstanceProfile",
                "DeleteRole"
            ]
        );
    }

    #[tokio::test]
    async fn destroy_of_a_missing_role_is_success() {
        let cx = cx_with(&[&no_role()]);
        let removed = testing::destroy(&cx, STEP, role()).await.unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn a_role_deleted_meanwhile_counts_as_gone() {
        let delete = mock!(Client::delete_role)
            .then_error(|| DeleteRoleError::generic(testing::error_meta("NoSuchEntity")));
        let profiles = mock!(Client::list_instance_profiles_for_role).then_output(|| {
            ListInstanceProfilesForRoleOutput::builder()
                .set_instance_profiles(Some(Vec::new()))
                .build()
                .unwrap()
        });
        let cx = cx_with(&[
            &get_role(trust_doc(ACCOUNT)),
            &list_tags(our_tags()),
            &list_policies(&[]),
            &no_attached(),
            &profiles,
            &delete,
        ]);
        let removed = testing::destroy(&cx, STEP, role()).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_role_name_beyond_64_characters_is_refused_before_any_call() {
        let cx = cx_with(&[]);
        let long = Role::new("x".repeat(60), "lambda.amazonaws.com", "d", "Long");
        let err = testing::ensure(&cx, "iam-role:long", long, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("1-64 characters"), "{err}");
    }

    #[tokio::test]
    async fn wildcard_actions_are_refused() {
        let greedy =
            Role::new("test", "lambda.amazonaws.com", "test role", "Test").with_policies(|_, _| {
                Ok(vec![(
                    "all".to_owned(),
                    json!({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
                )])
            });
        let cx = cx_with(&[&get_role(trust_doc(ACCOUNT)), &list_tags(our_tags())]);
        let err = testing::ensure(&cx, STEP, greedy, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("allows every action (s3:*)"), "{err}");
        let doc = json!({"Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}});
        assert!(check_least_privilege("r", "p", &doc).is_err());
        let doc = json!({"Statement": [{"Effect": "Allow", "Action": ["logs:PutLogEvents"]}]});
        assert!(check_least_privilege("r", "p", &doc).is_ok());
    }

    #[tokio::test]
    async fn inline_policies_beyond_iams_size_limit_are_refused() {
        let big = Role::new("test", "lambda.amazonaws.com", "test role", "Test").with_policies(
            |_, _| {
                let resources: Vec<String> = (0..400)
                    .map(|i| format!("arn:aws:s3:::payops-pr1-bucket/{i:04}"))
                    .collect();
                Ok(vec![(
                    "big".to_owned(),
                    json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": resources}]}),
                )])
            },
        );
        let cx = cx_with(&[&get_role(trust_doc(ACCOUNT)), &list_tags(our_tags())]);
        let err = testing::ensure(&cx, STEP, big, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("IAM allows 10240"), "{err}");
    }
}
