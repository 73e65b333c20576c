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
use crate::tags::{self, Ownership, TagMap};

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
    /// Whether the env's spec wants the role (see [`Self::wanted_when`]).
    wanted: fn(&Context) -> bool,
    /// The trust policy's confused-deputy condition key (see
    /// [`Self::trusting_by_external_id`]).
    account_condition: Option<&'static str>,
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
            wanted: |_| true,
            account_condition: Some("aws:SourceAccount"),
        }
    }

    /// A role for a service that names the account as `sts:ExternalId` when
    /// it assumes a role (Firehose does: its developer guide's trust policy,
    /// controlling-access, "Allow Firehose to assume an IAM role", has
    /// `"sts:ExternalId": "<account id>"`), in place of
    /// `aws:SourceAccount`.
    pub fn trusting_by_external_id(mut self) -> Self {
        self.account_condition = Some("sts:ExternalId");
        self
    }

    /// A role for EC2 instances (through an instance profile): EC2 assumes
    /// it for the instance and sets no `aws:SourceAccount`, so the trust
    /// policy is the one the EC2 user guide documents, without a condition
    /// (a condition would make the role unusable). The instance profile,
    /// which only this account can attach, is the boundary.
    pub fn trusting_ec2_instances(mut self) -> Self {
        self.account_condition = None;
        self
    }

    /// A role only some env shapes want (e.g. an optional function's): `up`
    /// removes it when `wanted` says no.
    pub fn wanted_when(mut self, wanted: fn(&Context) -> bool) -> Self {
        self.wanted = wanted;
        self
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
        let mut statement = json!({
            "Effect": "Allow",
            "Principal": { "Service": self.service },
            "Action": "sts:AssumeRole"
        });
        if let Some(key) = self.account_condition {
            statement["Condition"] = json!({ "StringEquals": { key: cx.account_id } });
        }
        json!({ "Version": "2012-10-17", "Statement": [statement] })
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
    let statements = policy::statements(doc);
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
    /// The role of this step's name, refused unless it is tagged as this
    /// env's and not as another region's.
    async fn get(&self, cx: &Context, name: &str) -> Result<Option<FoundRole>, AwsError> {
        let Some((role, tags)) = get_role(cx, name).await? else {
            return Ok(None);
        };
        cx.check_ours_global(format!("IAM role {name}"), &tags)?;
        Ok(Some(found_role(role, tags)))
    }

    /// The role of the region-blind name older versions gave it
    /// (`payops-<env>-<purpose>`), if it is provably this region's env's: its
    /// `payops:region` tag says so, or (made before that tag existed) every
    /// ARN its inline policies name is in this region. Anything else under
    /// that name (another region's twin env, whose functions use it; a role
    /// whose region cannot be told) is left alone: not adopted, not deleted.
    async fn legacy(&self, cx: &Context) -> Result<Option<FoundRole>, AwsError> {
        let name = cx.names.legacy_role(&self.suffix);
        let Some((role, tags)) = get_role(cx, &name).await? else {
            return Ok(None);
        };
        if tags::global_ownership(&tags, cx.env(), &cx.region) != Ownership::Ours {
            return Ok(None);
        }
        if !tags.contains_key(tags::REGION) && !policies_name_only(cx, &name, &cx.region).await? {
            return Ok(None);
        }
        Ok(Some(found_role(role, tags)))
    }
}

/// GetRole and the role's tags; None when there is no such role.
async fn get_role(
    cx: &Context,
    name: &str,
) -> Result<Option<(aws_sdk_iam::types::Role, TagMap)>, AwsError> {
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
    let role = required(out.role(), "iam:GetRole", "Role")?.clone();
    // GetRole returns all of a role's tags (up to IAM's 50; Terraform's
    // aws_iam_role reads them there too); ListRoleTags only when the field
    // is absent: a role without tags, or an emulator that leaves it out.
    let tags = match role.tags.as_deref() {
        Some(list) if !list.is_empty() => tags::to_map(list, |t| (Some(t.key()), Some(t.value()))),
        _ => iam::role_tags(cx, name).await?,
    };
    Ok(Some((role, tags)))
}

fn found_role(role: aws_sdk_iam::types::Role, tags: TagMap) -> FoundRole {
    FoundRole {
        name: role.role_name().to_owned(),
        arn: role.arn().to_owned(),
        trust: role
            .assume_role_policy_document()
            .unwrap_or_default()
            .to_owned(),
        description: role.description().map(str::to_owned),
        tags,
    }
}

/// Whether the role's inline policies name ARNs of `region` and of no other
/// region: what a role of an env in that region holds (every policy payops
/// writes names the env's regional log groups, tables, parameters or keys).
async fn policies_name_only(cx: &Context, role: &str, region: &str) -> Result<bool, AwsError> {
    let mut regions = std::collections::BTreeSet::new();
    for name in inline_policy_names(cx, role).await? {
        let got = cx
            .clients
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(&name)
            .send()
            .await
            .op("iam:GetRolePolicy");
        if let Some(out) = absent_on(got, &["NoSuchEntity"])? {
            regions.extend(policy::regions(out.policy_document()));
        }
    }
    Ok(regions.len() == 1 && regions.contains(region))
}

/// The tags a role should carry and lacks: the env's, and the region it
/// serves (IAM is global, see [`tags::REGION`]).
fn missing_tags(cx: &Context, step: &StepCx<'_>, existing: &TagMap) -> TagMap {
    let mut missing = cx.tagger.missing(step.id().as_str(), existing);
    if existing.get(tags::REGION) != Some(&cx.region) {
        missing.insert(tags::REGION.to_owned(), cx.region.clone());
    }
    missing
}

#[async_trait]
impl Resource for Role {
    type Found = FoundRole;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "iam:role"
    }

    fn wanted(&self, cx: &Context) -> bool {
        (self.wanted)(cx)
    }

    /// CreateRole meets the role its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["EntityAlreadyExists"]
    }

    /// The role of this region's name and, from an older version, the role
    /// of the region-blind name if it is provably this region's: an env
    /// upgraded in place keeps using (and `down` removes) the role its
    /// functions already have.
    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRole>, AwsError> {
        let name = self.name(cx)?;
        let (current, legacy) = tokio::try_join!(self.get(cx, &name), self.legacy(cx))?;
        Ok(current.into_iter().chain(legacy).collect())
    }

    /// Both names present (a run of each version, or an interrupted move):
    /// the region's name is kept and the region-blind one, provably this
    /// region's, goes.
    fn keep_of_duplicates(&self, found: &[FoundRole]) -> Option<usize> {
        (found.len() == 2).then_some(0)
    }

    fn describe(&self, found: &FoundRole) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundRole, AwsError> {
        let name = self.name(cx)?;
        let trust = self.trust_policy(cx).to_string();
        let mut tags = cx.tagger.for_create(step.id().as_str());
        tags.insert(tags::REGION.to_owned(), cx.region.clone());
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
        let missing = missing_tags(cx, step, &role.tags);
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

    const NAME: &str = "payops-pr1-us-east-1-test";
    const ARN: &str = "arn:aws:iam::123456789012:role/payops-pr1-us-east-1-test";
    /// The region-blind name of older versions.
    const LEGACY: &str = "payops-pr1-test";
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
        named_role(NAME, trust)
    }

    fn named_role(name: &str, trust: &str) -> IamRole {
        IamRole::builder()
            .path("/")
            .role_name(name)
            .role_id("AROA1")
            .arn(format!("arn:aws:iam::123456789012:role/{name}"))
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .assume_role_policy_document(url_encode(trust))
            .description("test role")
            .build()
            .unwrap()
    }

    fn our_tags() -> Vec<Tag> {
        tags_in(Some(testing::REGION))
    }

    /// The env's tags, with `payops:region` when `region` is given (roles of
    /// older versions have none).
    fn tags_in(region: Option<&str>) -> Vec<Tag> {
        let mut tags =
            Tagger::new(EnvName::parse("pr1").unwrap(), "payments", NOW).for_create(STEP);
        if let Some(region) = region {
            tags.insert(tags::REGION.into(), region.into());
        }
        iam::tags(&tags)
    }

    fn get_role(trust: String) -> Rule {
        mock!(Client::get_role)
            .match_requests(|r| r.role_name() == Some(NAME))
            .then_output(move || GetRoleOutput::builder().role(iam_role(&trust)).build())
    }

    fn list_tags(tags: Vec<Tag>) -> Rule {
        list_tags_of(NAME, tags)
    }

    fn list_tags_of(name: &'static str, tags: Vec<Tag>) -> Rule {
        mock!(Client::list_role_tags)
            .match_requests(move |r| r.role_name() == Some(name))
            .then_output(move || {
                ListRoleTagsOutput::builder()
                    .set_tags(Some(tags.clone()))
                    .build()
                    .unwrap()
            })
    }

    fn list_policies(names: &'static [&'static str]) -> Rule {
        list_policies_of(NAME, names)
    }

    fn list_policies_of(role: &'static str, names: &'static [&'static str]) -> Rule {
        mock!(Client::list_role_policies)
            .match_requests(move |r| r.role_name() == Some(role))
            .then_output(move || {
                ListRolePoliciesOutput::builder()
                    .set_policy_names(Some(names.iter().map(|n| (*n).to_owned()).collect()))
                    .build()
                    .unwrap()
            })
    }

    fn get_policy(doc: String) -> Rule {
        get_policy_of(NAME, doc)
    }

    fn get_policy_of(role: &'static str, doc: String) -> Rule {
        mock!(Client::get_role_policy)
            .match_requests(move |r| {
                r.role_name() == Some(role) && r.policy_name() == Some("deliver")
            })
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

    fn get_named(name: &'static str, trust: String) -> Rule {
        mock!(Client::get_role)
            .match_requests(move |r| r.role_name() == Some(name))
            .then_output(move || {
                GetRoleOutput::builder()
                    .role(named_role(name, &trust))
                    .build()
            })
    }

    /// Any role not mocked before is not there (the legacy name, mostly).
    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        let absent = no_role();
        let mut rules = rules.to_vec();
        rules.push(&absent);
        clients.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules);
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

    /// CreateRole has no idempotency token: a retry of a call whose answer
    /// was lost meets the role the first attempt made, and IAM answers
    /// `EntityAlreadyExists` (HTTP 409, CreateRole's documented error).
    fn create_conflict() -> Rule {
        mock!(Client::create_role).then_error(|| {
            aws_sdk_iam::operation::create_role::CreateRoleError::generic(testing::error_meta(
                "EntityAlreadyExists",
            ))
        })
    }

    /// No role at the first look, the role the lost attempt made at the next.
    fn get_role_after_create(tags: Vec<Tag>) -> [Rule; 2] {
        let get = mock!(Client::get_role)
            .match_requests(|r| r.role_name() == Some(NAME))
            .sequence()
            .error(|| GetRoleError::generic(testing::error_meta("NoSuchEntity")))
            .output(|| {
                GetRoleOutput::builder()
                    .role(iam_role(&trust_doc(ACCOUNT)))
                    .build()
            })
            .repeatedly()
            .build();
        [get, list_tags(tags)]
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let create = create_conflict();
        let [get, tags] = get_role_after_create(our_tags());
        let cx = cx_with(&[
            &get,
            &tags,
            &create,
            &list_policies(&["deliver"]),
            &get_policy(policy_doc()),
            &no_attached(),
        ]);
        let applied = testing::ensure(&cx, STEP, role(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["TestRoleArn"], ARN);
        assert_eq!(create.num_calls(), 1);
        assert_eq!(get.num_calls(), 2, "looked again after the conflict");
    }

    #[tokio::test]
    async fn a_create_conflict_with_a_role_not_ours_is_refused() {
        let foreign = vec![Tag::builder().key("team").value("other").build().unwrap()];
        let create = create_conflict();
        let [get, tags] = get_role_after_create(foreign);
        let cx = cx_with(&[&get, &tags, &create]);
        let err = testing::ensure(&cx, STEP, role(), &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exists but is not tagged"), "{err}");
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
            err.contains("IAM role payops-pr1-us-east-1-test exists but is not tagged"),
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

    /// A role of the env of the same name in another region: the same env
    /// tags, its own region tag.
    fn twin_tags() -> Vec<Tag> {
        tags_in(Some("us-west-2"))
    }

    #[tokio::test]
    async fn the_twin_envs_role_in_another_region_is_neither_changed_nor_deleted() {
        let cx = cx_with(&[&get_role(trust_doc(ACCOUNT)), &list_tags(twin_tags())]);
        let err = testing::ensure(&cx, STEP, role(), &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("belongs to the env of the same name in region us-west-2"),
            "{err}"
        );
        let err = testing::destroy(&cx, STEP, role()).await.unwrap_err();
        assert!(err.to_string().contains("us-west-2"), "{err}");
    }

    fn legacy_policy_doc(region: &str) -> String {
        policy_doc().replace("us-east-1", region)
    }

    #[tokio::test]
    async fn a_region_blind_role_of_this_region_is_adopted_and_tagged_with_the_region() {
        // Made by a version before the region was in the name: no region tag,
        // its policies name this region's log group.
        let tag = mock!(Client::tag_role)
            .match_requests(|r| {
                r.role_name() == Some(LEGACY)
                    && r.tags().len() == 1
                    && r.tags()[0].key() == tags::REGION
                    && r.tags()[0].value() == "us-east-1"
            })
            .then_output(|| TagRoleOutput::builder().build());
        let create = mock!(Client::create_role).then_output(|| CreateRoleOutput::builder().build());
        let cx = cx_with(&[
            &get_named(LEGACY, trust_doc(ACCOUNT)),
            &list_tags_of(LEGACY, tags_in(None)),
            &list_policies_of(LEGACY, &["deliver"]),
            &get_policy_of(LEGACY, legacy_policy_doc("us-east-1")),
            &no_attached(),
            &tag,
            &create,
        ]);
        let applied = testing::ensure(&cx, STEP, role(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Updated);
        // The functions keep the role they have: no new role, no outage.
        assert_eq!(create.num_calls(), 0);
        assert_eq!(tag.num_calls(), 1);
        assert_eq!(applied.record.outputs["TestRoleName"], LEGACY);
    }

    #[tokio::test]
    async fn a_region_blind_role_serving_another_region_gets_a_new_role_beside_it() {
        // The twin env in us-west-2 (or its older `up`, which rewrote the
        // policies) owns what the role's policies name.
        let create = mock!(Client::create_role)
            .match_requests(|r| {
                r.role_name() == Some(NAME)
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == tags::REGION && t.value() == "us-east-1")
            })
            .then_output(|| {
                CreateRoleOutput::builder()
                    .role(iam_role(&trust_doc(ACCOUNT)))
                    .build()
            });
        let put = mock!(Client::put_role_policy)
            .match_requests(|r| r.role_name() == Some(NAME))
            .then_output(|| PutRolePolicyOutput::builder().build());
        let delete = mock!(Client::delete_role).then_output(|| DeleteRoleOutput::builder().build());
        let tag = mock!(Client::tag_role).then_output(|| TagRoleOutput::builder().build());
        let legacy = [
            get_named(LEGACY, trust_doc(ACCOUNT)),
            list_tags_of(LEGACY, tags_in(None)),
            list_policies_of(LEGACY, &["deliver"]),
            get_policy_of(LEGACY, legacy_policy_doc("us-west-2")),
        ];
        let cx = cx_with(&[
            &legacy[0],
            &legacy[1],
            &legacy[2],
            &legacy[3],
            &create,
            &put,
            &list_policies(&[]),
            &no_attached(),
            &delete,
            &tag,
        ]);
        let applied = testing::ensure(&cx, STEP, role(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["TestRoleName"], NAME);
        assert_eq!((create.num_calls(), put.num_calls()), (1, 1));
        // `down` here finds nothing of this region's under either name.
        let cx = cx_with(&[
            &legacy[0], &legacy[1], &legacy[2], &legacy[3], &delete, &tag,
        ]);
        let removed = testing::destroy(&cx, STEP, role()).await.unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
        assert_eq!((delete.num_calls(), tag.num_calls()), (0, 0));
    }

    #[tokio::test]
    async fn down_removes_a_region_blind_role_of_this_region_and_no_other() {
        let delete = mock!(Client::delete_role)
            .match_requests(|r| r.role_name() == Some(LEGACY))
            .then_output(|| DeleteRoleOutput::builder().build());
        let profiles = mock!(Client::list_instance_profiles_for_role).then_output(|| {
            ListInstanceProfilesForRoleOutput::builder()
                .set_instance_profiles(Some(Vec::new()))
                .build()
                .unwrap()
        });
        let delete_policy = mock!(Client::delete_role_policy)
            .then_output(|| DeleteRolePolicyOutput::builder().build());
        let rules = |tags: Vec<Tag>| {
            vec![
                get_named(LEGACY, trust_doc(ACCOUNT)),
                list_tags_of(LEGACY, tags),
                list_policies_of(LEGACY, &["deliver"]),
                mock!(Client::list_attached_role_policies)
                    .then_output(|| ListAttachedRolePoliciesOutput::builder().build()),
            ]
        };
        // Tagged with this region by an `up` of this version.
        let ours = rules(our_tags());
        let mut refs: Vec<&Rule> = ours.iter().collect();
        refs.extend([&profiles, &delete_policy, &delete]);
        let removed = testing::destroy(&cx_with(&refs), STEP, role())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
        // Tagged with the twin's region: left alone.
        let twin = rules(twin_tags());
        let mut refs: Vec<&Rule> = twin.iter().collect();
        refs.extend([&profiles, &delete_policy, &delete]);
        let removed = testing::destroy(&cx_with(&refs), STEP, role())
            .await
            .unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
        assert_eq!(delete.num_calls(), 1, "no second DeleteRole");
        assert_eq!(delete_policy.num_calls(), 1, "only the first role's policy");
    }
}
