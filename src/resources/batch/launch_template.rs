//! The batch instances' launch template `payops-<env>-batch`.
//!
//! Real-AWS rules it encodes (unit-tested below, emulators enforce none):
//! - IMDSv2 only (`HttpTokens=required`, hop limit 1: a container on the
//!   instance cannot reach the metadata service);
//! - the root volume encrypted with the env's EBS key (a CMK, whose policy
//!   lets Auto Scaling's service-linked role use it);
//! - no SSH key: operators use SSM Session Manager;
//! - the AMI: the current Amazon Linux 2023 arm64 image from its public SSM
//!   parameter, resolved only when the template is created; afterwards the
//!   default version's image is kept, so a no-op `up` does not roll every
//!   instance each time AWS publishes an image (CDK's `cachedInContext`).
//!
//! A change (instance type, user data, key, ...) is a new version made the
//! default; the group then moves to that version number and refreshes its
//! instances (`autoscaling_group.rs`).

use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType,
    ResponseLaunchTemplateData, Tag, VolumeType,
};

use crate::aws::{AwsError, OpResult, absent_on, client_token, required};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;

use super::user_data;

pub const STEP: &str = "launch-template:batch";
pub const PROFILE_INPUT: (&str, &str) = ("instance-profile:batch", "BatchInstanceProfileArn");
pub const SG_INPUT: (&str, &str) = ("security-group:batch", "BatchSecurityGroupId");
pub const KEY_INPUT: (&str, &str) = ("kms-key:ebs", "EbsKmsKeyArn");
pub const LOG_GROUP_INPUT: (&str, &str) = ("log-group:batch", "BatchLogGroupName");
pub const TABLE_INPUT: (&str, &str) = ("dynamodb-table:transactions", "TransactionsTableName");
pub const BUCKET_INPUT: (&str, &str) = ("s3-bucket:audit", "AuditBucketName");

/// Amazon Linux 2023 for arm64 (Graviton), as AWS publishes it.
pub const AMI_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64";
/// AL2023's root device.
const ROOT_DEVICE: &str = "/dev/xvda";
/// GiB: at least the AMI's snapshot (8), room for logs and dnf.
const ROOT_VOLUME_GIB: i32 = 20;

pub struct LaunchTemplate;

/// A block device mapping: (device, encrypted, key, volume type, GiB).
pub type Volume = (
    String,
    Option<bool>,
    Option<String>,
    Option<String>,
    Option<i32>,
);

/// What payops sets in a version, in comparable form (sorted, normalised).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub image_id: String,
    pub instance_type: String,
    pub profile_arn: Option<String>,
    pub security_groups: Vec<String>,
    pub http_tokens: Option<String>,
    pub http_endpoint: Option<String>,
    pub hop_limit: Option<i32>,
    pub volumes: Vec<Volume>,
    pub key_name: Option<String>,
    pub user_data: Option<String>,
    /// Tags for the instances and volumes (resource type, tags).
    pub tags: Vec<(String, TagMap)>,
}

impl Config {
    fn of(data: &ResponseLaunchTemplateData) -> Self {
        let mut security_groups = data.security_group_ids().to_vec();
        security_groups.sort();
        let md = data.metadata_options();
        let mut volumes: Vec<_> = data
            .block_device_mappings()
            .iter()
            .map(|b| {
                let ebs = b.ebs();
                (
                    b.device_name().unwrap_or_default().to_owned(),
                    ebs.and_then(|e| e.encrypted()),
                    ebs.and_then(|e| e.kms_key_id()).map(str::to_owned),
                    ebs.and_then(|e| e.volume_type())
                        .map(|v| v.as_str().to_owned()),
                    ebs.and_then(|e| e.volume_size()),
                )
            })
            .collect();
        volumes.sort();
        // Only the instances' and volumes' (what payops sets): LocalStack
        // also echoes the template's own tags here.
        let mut tags: Vec<_> = data
            .tag_specifications()
            .iter()
            .filter(|t| {
                matches!(
                    t.resource_type(),
                    Some(ResourceType::Instance | ResourceType::Volume)
                )
            })
            .map(|t| {
                (
                    t.resource_type()
                        .map(|r| r.as_str().to_owned())
                        .unwrap_or_default(),
                    ec2::tag_map(t.tags()),
                )
            })
            .collect();
        tags.sort();
        Self {
            image_id: data.image_id().unwrap_or_default().to_owned(),
            instance_type: data
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            profile_arn: data
                .iam_instance_profile()
                .and_then(|p| p.arn())
                .map(str::to_owned),
            security_groups,
            http_tokens: md
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str().to_owned()),
            http_endpoint: md
                .and_then(|m| m.http_endpoint())
                .map(|t| t.as_str().to_owned()),
            hop_limit: md.and_then(|m| m.http_put_response_hop_limit()),
            volumes,
            key_name: data.key_name().map(str::to_owned),
            user_data: data.user_data().map(str::to_owned),
            tags,
        }
    }

    /// The version's data as EC2 takes it.
    fn request(&self) -> RequestLaunchTemplateData {
        let mut data = RequestLaunchTemplateData::builder()
            .image_id(&self.image_id)
            .instance_type(InstanceType::from(self.instance_type.as_str()))
            .set_iam_instance_profile(self.profile_arn.as_ref().map(|arn| {
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .arn(arn)
                    .build()
            }))
            .set_security_group_ids(Some(self.security_groups.clone()))
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .set_http_tokens(
                        self.http_tokens
                            .as_deref()
                            .map(LaunchTemplateHttpTokensState::from),
                    )
                    .set_http_endpoint(
                        self.http_endpoint
                            .as_deref()
                            .map(LaunchTemplateInstanceMetadataEndpointState::from),
                    )
                    .set_http_put_response_hop_limit(self.hop_limit)
                    .build(),
            )
            .set_user_data(self.user_data.clone());
        for (device, encrypted, key, kind, size) in &self.volumes {
            data = data.block_device_mappings(
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name(device)
                    .ebs(
                        LaunchTemplateEbsBlockDeviceRequest::builder()
                            .set_encrypted(*encrypted)
                            .set_kms_key_id(key.clone())
                            .set_volume_type(kind.as_deref().map(VolumeType::from))
                            .set_volume_size(*size)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        for (resource, tags) in &self.tags {
            data = data.tag_specifications(
                LaunchTemplateTagSpecificationRequest::builder()
                    .resource_type(ResourceType::from(resource.as_str()))
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build())
                            .collect(),
                    ))
                    .build(),
            );
        }
        data.build()
    }

    /// What differs from `desired`, in words (for `status` and `plan`).
    fn differences(&self, desired: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |what: &str, differs: bool| {
            if differs {
                out.push(what.to_owned());
            }
        };
        check(
            &format!(
                "instance type {} -> {}",
                self.instance_type, desired.instance_type
            ),
            self.instance_type != desired.instance_type,
        );
        check("instance profile", self.profile_arn != desired.profile_arn);
        check(
            "security groups",
            self.security_groups != desired.security_groups,
        );
        check(
            "metadata options (IMDSv2)",
            (&self.http_tokens, &self.http_endpoint, self.hop_limit)
                != (
                    &desired.http_tokens,
                    &desired.http_endpoint,
                    desired.hop_limit,
                ),
        );
        check(
            "root volume (encryption key)",
            self.volumes != desired.volumes,
        );
        check("SSH key", self.key_name != desired.key_name);
        check(
            "user data (settlement job)",
            self.user_data != desired.user_data,
        );
        check("instance and volume tags", self.tags != desired.tags);
        check("image", self.image_id != desired.image_id);
        out
    }
}

/// The config payops wants, keeping `image_id` (the current version's, or
/// the freshly resolved one for a new template).
pub fn desired(cx: &Context, step: &StepCx<'_>, image_id: &str) -> Result<Config, AwsError> {
    let name = cx.names.resource("batch");
    let mut tags: Vec<(String, TagMap)> = [ResourceType::Instance, ResourceType::Volume]
        .into_iter()
        .map(|r| {
            // Without `payops:created-at`: it is this run's time, so every
            // `up` would see new tags and roll a version. The group's
            // propagated tags give the instances theirs.
            let mut t = ec2::desired_tags(cx, "autoscaling-group:batch", &name);
            t.remove(crate::tags::CREATED_AT);
            (r.as_str().to_owned(), t)
        })
        .collect();
    tags.sort();
    Ok(Config {
        image_id: image_id.to_owned(),
        instance_type: cx.spec.batch.instance_type.clone(),
        profile_arn: Some(step.output(PROFILE_INPUT.0, PROFILE_INPUT.1)?.to_owned()),
        security_groups: vec![step.output(SG_INPUT.0, SG_INPUT.1)?.to_owned()],
        http_tokens: Some("required".into()),
        http_endpoint: Some("enabled".into()),
        hop_limit: Some(1),
        volumes: vec![(
            ROOT_DEVICE.to_owned(),
            Some(true),
            Some(step.output(KEY_INPUT.0, KEY_INPUT.1)?.to_owned()),
            Some("gp3".into()),
            Some(ROOT_VOLUME_GIB),
        )],
        key_name: None,
        user_data: Some(user_data::user_data(&user_data::Settings {
            table: step.output(TABLE_INPUT.0, TABLE_INPUT.1)?,
            bucket: step.output(BUCKET_INPUT.0, BUCKET_INPUT.1)?,
            region: &cx.region,
            log_group: step.output(LOG_GROUP_INPUT.0, LOG_GROUP_INPUT.1)?,
        })),
        tags,
    })
}

pub struct FoundTemplate {
    id: String,
    default_version: i64,
    latest_version: i64,
    tags: TagMap,
    /// The default version's data.
    config: Option<Config>,
}

pub enum Fix {
    /// A new version with `desired`, made the default.
    NewVersion {
        changes: Vec<String>,
        desired: Box<Config>,
    },
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fix::NewVersion { changes, .. } => {
                write!(
                    f,
                    "new version ({}); the group refreshes its instances",
                    changes.join(", ")
                )
            }
            Fix::Tags(t) => f.write_str(&crate::tags::describe_tag_fix(t)),
        }
    }
}

async fn latest_ami(cx: &Context) -> Result<String, AwsError> {
    let out = cx
        .clients
        .ssm
        .get_parameter()
        .name(AMI_PARAMETER)
        .send()
        .await
        .op("ssm:GetParameter")?;
    let value = out.parameter().and_then(|p| p.value());
    Ok(required(value, "ssm:GetParameter", "Parameter.Value")?.to_owned())
}

async fn version_config(cx: &Context, id: &str, version: i64) -> Result<Option<Config>, AwsError> {
    let out = cx
        .clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions(version.to_string())
        .send()
        .await
        .op("ec2:DescribeLaunchTemplateVersions")?;
    Ok(out
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .map(Config::of))
}

#[async_trait]
impl Resource for LaunchTemplate {
    type Found = FoundTemplate;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:launch-template"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.batch.on
    }

    /// A second CreateLaunchTemplate of the name (a lost answer retried
    /// with another token).
    fn already_exists(&self) -> &'static [&'static str] {
        &["InvalidLaunchTemplateName.AlreadyExistsException"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundTemplate>, AwsError> {
        let listed: Vec<(String, i64, i64, TagMap)> = ec2::find_owned!(
            cx,
            step,
            describe_launch_templates,
            "ec2:DescribeLaunchTemplates",
            launch_templates,
            |t: &aws_sdk_ec2::types::LaunchTemplate| {
                Some(Listed {
                    id: t.launch_template_id()?.to_owned(),
                    default: t.default_version_number()?,
                    latest: t.latest_version_number()?,
                    tags: ec2::tag_map(t.tags()),
                })
            }
        )?
        .into_iter()
        .map(|l: Listed| (l.id, l.default, l.latest, l.tags))
        .collect();
        let mut found = Vec::new();
        for (id, default_version, latest_version, tags) in listed {
            let config = version_config(cx, &id, default_version).await?;
            found.push(FoundTemplate {
                id,
                default_version,
                latest_version,
                tags,
                config,
            });
        }
        Ok(found)
    }

    fn describe(&self, t: &FoundTemplate) -> String {
        format!("{} (version {})", t.id, t.default_version)
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundTemplate, AwsError> {
        let name = cx.names.resource("batch");
        let image = latest_ami(cx).await?;
        let config = desired(cx, step, &image)?;
        let out = cx
            .clients
            .ec2
            .create_launch_template()
            .launch_template_name(&name)
            .version_description("payops")
            .launch_template_data(config.request())
            .client_token(client_token(&[cx.env().as_str(), STEP, &name, &image]))
            .tag_specifications(ec2::tag_spec(
                cx,
                ResourceType::LaunchTemplate,
                step.id().as_str(),
                &name,
            ))
            .send()
            .await
            .op("ec2:CreateLaunchTemplate")?;
        let t = required(
            out.launch_template(),
            "ec2:CreateLaunchTemplate",
            "LaunchTemplate",
        )?;
        let id = required(
            t.launch_template_id(),
            "ec2:CreateLaunchTemplate",
            "LaunchTemplateId",
        )?;
        step.remember("launch_template", id);
        Ok(FoundTemplate {
            id: id.to_owned(),
            default_version: t.default_version_number().unwrap_or(1),
            latest_version: t.latest_version_number().unwrap_or(1),
            tags: ec2::desired_tags(cx, step.id().as_str(), &name),
            config: Some(config),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        t: &FoundTemplate,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        // The image stays what the default version has: never re-resolved.
        let image = match &t.config {
            Some(c) if !c.image_id.is_empty() => c.image_id.clone(),
            _ => latest_ami(cx).await?,
        };
        let want = desired(cx, step, &image)?;
        let changes = match &t.config {
            Some(c) => c.differences(&want),
            None => vec!["the default version cannot be read".into()],
        };
        if !changes.is_empty() {
            fixes.push(Fix::NewVersion {
                changes,
                desired: Box::new(want),
            });
        }
        let name = cx.names.resource("batch");
        let missing = ec2::missing_tags(cx, step.id().as_str(), &name, &t.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        t: &mut FoundTemplate,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::NewVersion { desired, .. } => {
                // The token names the version it follows and what it holds:
                // a retried call gets the version its lost answer made.
                let token = client_token(&[
                    cx.env().as_str(),
                    STEP,
                    &t.latest_version.to_string(),
                    &format!("{desired:?}"),
                ]);
                let out = cx
                    .clients
                    .ec2
                    .create_launch_template_version()
                    .launch_template_id(&t.id)
                    .version_description("payops")
                    .launch_template_data(desired.request())
                    .client_token(token)
                    .send()
                    .await
                    .op("ec2:CreateLaunchTemplateVersion")?;
                let version = required(
                    out.launch_template_version()
                        .and_then(|v| v.version_number()),
                    "ec2:CreateLaunchTemplateVersion",
                    "VersionNumber",
                )?;
                cx.clients
                    .ec2
                    .modify_launch_template()
                    .launch_template_id(&t.id)
                    .default_version(version.to_string())
                    .send()
                    .await
                    .op("ec2:ModifyLaunchTemplate")?;
                t.default_version = version;
                t.latest_version = t.latest_version.max(version);
                t.config = Some(*desired);
            }
            Fix::Tags(tags) => {
                ec2::add_tags(cx, &t.id, &tags).await?;
                t.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, t: &FoundTemplate) -> Record {
        let image = t
            .config
            .as_ref()
            .map(|c| c.image_id.clone())
            .unwrap_or_default();
        Record::default()
            .resource("launch_template", &t.id)
            .output("BatchLaunchTemplateId", &t.id)
            .output("BatchLaunchTemplateVersion", t.default_version.to_string())
            .output("BatchAmiId", image)
    }

    /// After the group (it depends on the template): AWS refuses nothing
    /// here, but instances launched from a deleted template cannot be
    /// replaced.
    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        t: FoundTemplate,
    ) -> Result<Vec<String>, AwsError> {
        absent_on(
            cx.clients
                .ec2
                .delete_launch_template()
                .launch_template_id(&t.id)
                .send()
                .await
                .op("ec2:DeleteLaunchTemplate"),
            &[
                "InvalidLaunchTemplateId.NotFound",
                "InvalidLaunchTemplateId.Malformed",
            ],
        )?;
        Ok(Vec::new())
    }
}

struct Listed {
    id: String,
    default: i64,
    latest: i64,
    tags: TagMap,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/ebs";
    const AMI: &str = "ami-065b1b834d2a83a7a";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (
                PROFILE_INPUT.0,
                PROFILE_INPUT.1,
                "arn:aws:iam::123456789012:instance-profile/p",
            ),
            (SG_INPUT.0, SG_INPUT.1, "sg-batch"),
            (KEY_INPUT.0, KEY_INPUT.1, KEY),
            (LOG_GROUP_INPUT.0, LOG_GROUP_INPUT.1, "/payops/pr1/batch"),
            (TABLE_INPUT.0, TABLE_INPUT.1, "payops-pr1-transactions"),
            (BUCKET_INPUT.0, BUCKET_INPUT.1, "payops-pr1-audit"),
        ])
    }

    fn cx(clients: crate::aws::Clients) -> Context {
        let mut cx = testing::context(clients);
        cx.spec.batch.on = true;
        cx
    }

    /// The request's data as EC2 would echo it.
    fn echo(data: &RequestLaunchTemplateData) -> ResponseLaunchTemplateData {
        let md = data.metadata_options().unwrap();
        ResponseLaunchTemplateData::builder()
            .set_image_id(data.image_id().map(str::to_owned))
            .set_instance_type(data.instance_type().cloned())
            .iam_instance_profile(
                aws_sdk_ec2::types::LaunchTemplateIamInstanceProfileSpecification::builder()
                    .set_arn(
                        data.iam_instance_profile()
                            .and_then(|p| p.arn())
                            .map(str::to_owned),
                    )
                    .build(),
            )
            .set_security_group_ids(Some(data.security_group_ids().to_vec()))
            .metadata_options(
                aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptions::builder()
                    .set_http_tokens(md.http_tokens().cloned())
                    .set_http_endpoint(md.http_endpoint().cloned())
                    .set_http_put_response_hop_limit(md.http_put_response_hop_limit())
                    .build(),
            )
            .set_block_device_mappings(Some(
                data.block_device_mappings()
                    .iter()
                    .map(|b| {
                        let e = b.ebs().unwrap();
                        aws_sdk_ec2::types::LaunchTemplateBlockDeviceMapping::builder()
                            .set_device_name(b.device_name().map(str::to_owned))
                            .ebs(
                                aws_sdk_ec2::types::LaunchTemplateEbsBlockDevice::builder()
                                    .set_encrypted(e.encrypted())
                                    .set_kms_key_id(e.kms_key_id().map(str::to_owned))
                                    .set_volume_type(e.volume_type().cloned())
                                    .set_volume_size(e.volume_size())
                                    .build(),
                            )
                            .build()
                    })
                    .collect(),
            ))
            .set_user_data(data.user_data().map(str::to_owned))
            .set_tag_specifications(Some(
                data.tag_specifications()
                    .iter()
                    .map(|t| {
                        aws_sdk_ec2::types::LaunchTemplateTagSpecification::builder()
                            .set_resource_type(t.resource_type().cloned())
                            .set_tags(Some(t.tags().to_vec()))
                            .build()
                    })
                    .collect(),
            ))
            .build()
    }

    fn listed() -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(|| {
            aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput::builder()
                .launch_templates(
                    aws_sdk_ec2::types::LaunchTemplate::builder()
                        .launch_template_id("lt-1")
                        .launch_template_name("payops-pr1-batch")
                        .default_version_number(1)
                        .latest_version_number(1)
                        .set_tags(Some(testing::ec2_tags(STEP).into_iter().map(|t| {
                            if t.key() == Some("Name") {
                                Tag::builder().key("Name").value("payops-pr1-batch").build()
                            } else {
                                t
                            }
                        }).collect()))
                        .build(),
                )
                .build()
        })
    }

    fn version_of(data: ResponseLaunchTemplateData) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_ec2::Client::describe_launch_template_versions).then_output(move || {
            aws_sdk_ec2::operation::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput::builder()
                .launch_template_versions(
                    aws_sdk_ec2::types::LaunchTemplateVersion::builder()
                        .version_number(1)
                        .launch_template_data(data.clone())
                        .build(),
                )
                .build()
        })
    }

    /// The desired data for `instance_type`, as the step would send it.
    fn data(instance_type: &str) -> RequestLaunchTemplateData {
        let mut cx = cx(testing::clients());
        cx.spec.batch.instance_type = instance_type.into();
        let events = testing::Events::default();
        let id = crate::engine::StepId::from(STEP);
        let step = testing::step_cx(
            &id,
            inputs().into_iter().map(|(k, r)| (k.into(), r)).collect(),
            &events,
        );
        desired(&cx, &step, AMI).unwrap().request()
    }

    #[test]
    fn the_template_requires_imdsv2_encrypts_with_the_cmk_and_has_no_ssh_key() {
        let d = data("t4g.small");
        let md = d.metadata_options().unwrap();
        assert_eq!(
            md.http_tokens(),
            Some(&LaunchTemplateHttpTokensState::Required)
        );
        assert_eq!(md.http_put_response_hop_limit(), Some(1));
        assert_eq!(
            md.http_endpoint(),
            Some(&LaunchTemplateInstanceMetadataEndpointState::Enabled)
        );
        let [root] = d.block_device_mappings() else {
            panic!("one volume")
        };
        let ebs = root.ebs().unwrap();
        assert_eq!(root.device_name(), Some(ROOT_DEVICE));
        assert_eq!((ebs.encrypted(), ebs.kms_key_id()), (Some(true), Some(KEY)));
        assert!(d.key_name().is_none());
        assert_eq!(d.security_group_ids(), ["sg-batch"]);
        assert_eq!(d.instance_type(), Some(&InstanceType::from("t4g.small")));
    }

    #[tokio::test]
    async fn a_new_template_takes_the_current_arm64_ami_from_ssm() {
        let ssm = mock!(aws_sdk_ssm::Client::get_parameter)
            .match_requests(|r| r.name() == Some(AMI_PARAMETER))
            .then_output(|| {
                aws_sdk_ssm::operation::get_parameter::GetParameterOutput::builder()
                    .parameter(aws_sdk_ssm::types::Parameter::builder().value(AMI).build())
                    .build()
            });
        let none = mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(|| {
            aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput::builder().build()
        });
        let create = mock!(aws_sdk_ec2::Client::create_launch_template)
            .match_requests(|r| {
                r.client_token().is_some()
                    && r.launch_template_data().and_then(|d| d.image_id()) == Some(AMI)
                    && r.tag_specifications().len() == 1
            })
            .then_output(|| {
                aws_sdk_ec2::operation::create_launch_template::CreateLaunchTemplateOutput::builder(
                )
                .launch_template(
                    aws_sdk_ec2::types::LaunchTemplate::builder()
                        .launch_template_id("lt-1")
                        .default_version_number(1)
                        .latest_version_number(1)
                        .build(),
                )
                .build()
            });
        let mut clients = testing::clients();
        clients.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&ssm]);
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&none, &create]);
        let applied = testing::ensure(&cx(clients), STEP, LaunchTemplate, &inputs())
            .await
            .unwrap();
        assert_eq!(create.num_calls(), 1);
        assert_eq!(applied.record.outputs["BatchAmiId"], AMI);
        assert_eq!(applied.record.outputs["BatchLaunchTemplateVersion"], "1");
    }

    #[tokio::test]
    async fn a_converged_template_keeps_its_ami_without_asking_ssm_and_changes_nothing() {
        // The default version has an older image than SSM would say: kept.
        let mut old = data("t4g.small");
        old.image_id = Some("ami-older".into());
        let (list, version) = (listed(), version_of(echo(&old)));
        let mut clients = testing::clients();
        // No SSM rule: a GetParameter would fail the test.
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&list, &version]);
        let applied = testing::ensure(&cx(clients), STEP, LaunchTemplate, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, crate::engine::Change::Unchanged);
        assert_eq!(applied.record.outputs["BatchAmiId"], "ami-older");
    }

    #[tokio::test]
    async fn another_instance_type_is_a_new_default_version_with_the_same_ami() {
        let mut old = data("t4g.small");
        old.image_id = Some("ami-older".into());
        let (list, version) = (listed(), version_of(echo(&old)));
        let create = mock!(aws_sdk_ec2::Client::create_launch_template_version)
            .match_requests(|r| {
                let d = r.launch_template_data().unwrap();
                d.instance_type() == Some(&InstanceType::from("m7g.large"))
                    && d.image_id() == Some("ami-older")
                    && r.client_token().is_some()
            })
            .then_output(|| {
                aws_sdk_ec2::operation::create_launch_template_version::CreateLaunchTemplateVersionOutput::builder()
                    .launch_template_version(
                        aws_sdk_ec2::types::LaunchTemplateVersion::builder().version_number(2).build(),
                    )
                    .build()
            });
        let modify = mock!(aws_sdk_ec2::Client::modify_launch_template)
            .match_requests(|r| r.default_version() == Some("2"))
            .then_output(|| {
                aws_sdk_ec2::operation::modify_launch_template::ModifyLaunchTemplateOutput::builder(
                )
                .build()
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&list, &version, &create, &modify]
        );
        let mut cx = cx(clients);
        cx.spec.batch.instance_type = "m7g.large".into();
        let applied = testing::ensure(&cx, STEP, LaunchTemplate, &inputs())
            .await
            .unwrap();
        assert_eq!((create.num_calls(), modify.num_calls()), (1, 1));
        assert_eq!(applied.record.outputs["BatchLaunchTemplateVersion"], "2");
    }
}
