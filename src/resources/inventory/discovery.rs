//! Finding every payops env in the account and region from ownership tags,
//! without any state file.
//!
//! The Resource Groups Tagging API does not cover every resource type (and
//! emulators cover fewer: LocalStack's misses KMS, S3 and SNS), so it is
//! combined with cheap calls on types every env has: VPCs (EC2 tags) and KMS
//! aliases under `alias/payops/`, trusted only through their key's tags.

use std::collections::BTreeMap;

use aws_sdk_resourcegroupstagging::types::TagFilter;

use crate::aws::{AwsError, Clients, OpResult, absent_on};
use crate::naming::EnvName;
use crate::tags::{self, TagMap};

use crate::resources::sdk::tagging;

/// What discovery learnt of one env.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    /// The earliest `payops:created-at` seen on its resources.
    pub created_at: Option<String>,
    /// Any of its resources says `payops:protected=true`.
    pub protected: bool,
    /// How many of its resources discovery saw (a lower bound).
    pub seen: usize,
}

impl Discovered {
    fn note(&mut self, tags: &TagMap) {
        self.seen += 1;
        if let Some(at) = tags.get(tags::CREATED_AT)
            && self.created_at.as_ref().is_none_or(|c| at < c)
        {
            self.created_at = Some(at.clone());
        }
        if tags.get(tags::PROTECTED).map(String::as_str) == Some("true") {
            self.protected = true;
        }
    }
}

/// The env a resource belongs to, if its tags say payops manages it.
fn env_of(tags: &TagMap) -> Option<String> {
    if tags.get(tags::MANAGED_BY).map(String::as_str) != Some(tags::MANAGER) {
        return None;
    }
    let env = tags.get(tags::ENV)?;
    // A tag that is not a valid env name was not written by payops.
    EnvName::parse(env).ok().map(|_| env.clone())
}

/// Something `down` kept on purpose (tagged `payops:retained`): a final
/// snapshot of an env's database, or the KMS key it needs to be restored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Retained {
    /// The env it was kept from.
    pub env: String,
    /// Its ARN (a KMS key's id).
    pub resource: String,
    pub why: String,
}

/// The account's envs, and what `down` kept of removed ones.
#[derive(Debug, Default)]
pub struct Inventory {
    pub envs: BTreeMap<String, Discovered>,
    pub retained: Vec<Retained>,
}

/// The envs of the account in `region` (the clients' region).
pub async fn inventory(clients: &Clients, region: &str) -> Result<Inventory, AwsError> {
    let mut inventory = Inventory::default();
    let (tagged, vpcs, keys) = tokio::try_join!(
        tagging_api(clients, region),
        vpc_tags(clients),
        alias_key_tags(clients)
    )?;
    for (arn, tags) in tagged.iter().chain(&vpcs).chain(&keys) {
        // What `down` kept on purpose (a final snapshot and its key) is no
        // env: counting it would list the removed env forever.
        if tags::is_retained(tags) {
            if let Some(env) = env_of(tags) {
                inventory.retained.push(Retained {
                    env,
                    resource: arn.clone(),
                    why: tags
                        .get(tags::RETAINED)
                        .cloned()
                        .unwrap_or_else(|| "final snapshot".into()),
                });
            }
            continue;
        }
        if let Some(env) = env_of(tags) {
            inventory.envs.entry(env).or_default().note(tags);
        }
    }
    inventory
        .retained
        .sort_by(|a, b| (&a.env, &a.resource).cmp(&(&b.env, &b.resource)));
    inventory.retained.dedup();
    Ok(inventory)
}

/// The aliases of the envs' live keys, and of keys kept for a snapshot.
const ALIAS_PREFIXES: [&str; 2] = ["alias/payops/", "alias/payops-retained/"];

/// (ARN, tags) of everything the tagging API lists as payops' in `region`:
/// not the account-wide roles of the envs of other regions (IAM is global),
/// which would make a ghost env here.
async fn tagging_api(clients: &Clients, region: &str) -> Result<Vec<(String, TagMap)>, AwsError> {
    let pages: Vec<_> = clients
        .tagging
        .get_resources()
        .tag_filters(
            TagFilter::builder()
                .key(tags::MANAGED_BY)
                .values(tags::MANAGER)
                .build(),
        )
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut all = Vec::new();
    for page in pages {
        for mapping in page.op("tagging:GetResources")?.resource_tag_mapping_list() {
            let Some(arn) = mapping.resource_arn().filter(|a| !lingers(a)) else {
                continue;
            };
            let tags = tagging::tags_of(mapping);
            if tagging::global_elsewhere(arn, &tags, region) {
                continue;
            }
            all.push((arn.to_owned(), tags));
        }
    }
    Ok(all)
}

/// Resources the tagging API keeps listing after `down`: KMS keys wait out
/// their deletion window, deleted NAT gateways stay visible for a while. An
/// env's live keys are found through their aliases instead.
fn lingers(arn: &str) -> bool {
    (arn.contains(":kms:") && arn.contains(":key/")) || arn.contains(":natgateway/")
}

async fn vpc_tags(clients: &Clients) -> Result<Vec<(String, TagMap)>, AwsError> {
    let out = clients
        .ec2
        .describe_vpcs()
        .filters(crate::resources::sdk::ec2::tag_filter(
            tags::MANAGED_BY,
            tags::MANAGER,
        ))
        .send()
        .await
        .op("ec2:DescribeVpcs")?;
    Ok(out
        .vpcs()
        .iter()
        .map(|v| {
            (
                v.vpc_id().unwrap_or_default().to_owned(),
                crate::resources::sdk::ec2::tag_map(v.tags()),
            )
        })
        .collect())
}

/// Keys behind `alias/payops/...` and `alias/payops-retained/...` aliases,
/// by their tags (the alias name alone proves nothing: anyone can create one).
async fn alias_key_tags(clients: &Clients) -> Result<Vec<(String, TagMap)>, AwsError> {
    let pages: Vec<_> = clients
        .kms
        .list_aliases()
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut keys = Vec::new();
    for page in pages {
        for alias in page.op("kms:ListAliases")?.aliases() {
            if alias
                .alias_name()
                .is_some_and(|n| ALIAS_PREFIXES.iter().any(|p| n.starts_with(p)))
                && let Some(key) = alias.target_key_id()
            {
                keys.push(key.to_owned());
            }
        }
    }
    let mut all = Vec::new();
    for key in keys {
        let listed = clients
            .kms
            .list_resource_tags()
            .key_id(&key)
            .send()
            .await
            .op("kms:ListResourceTags");
        if let Some(out) = absent_on(listed, &["NotFoundException"])? {
            all.push((
                key,
                tags::to_map(out.tags(), |t| (Some(t.tag_key()), Some(t.tag_value()))),
            ));
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
    use aws_sdk_ec2::types::{Tag as Ec2Tag, Vpc};
    use aws_sdk_kms::operation::list_aliases::ListAliasesOutput;
    use aws_sdk_kms::operation::list_resource_tags::ListResourceTagsOutput;
    use aws_sdk_kms::types::{AliasListEntry, Tag as KmsTag};
    use aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput;
    use aws_sdk_resourcegroupstagging::types::{ResourceTagMapping, Tag};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    fn ours(env: &str, created: &str, protected: bool) -> Vec<(String, String)> {
        let mut t = vec![
            (tags::MANAGED_BY.to_owned(), tags::MANAGER.to_owned()),
            (tags::ENV.to_owned(), env.to_owned()),
            (tags::CREATED_AT.to_owned(), created.to_owned()),
        ];
        if protected {
            t.push((tags::PROTECTED.to_owned(), "true".to_owned()));
        }
        t
    }

    #[tokio::test]
    async fn envs_are_found_by_ownership_tags_and_never_by_names_alone() {
        let tagged =
            mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
                let mapping = |t: Vec<(String, String)>| {
                    ResourceTagMapping::builder()
                        .resource_arn("arn:aws:sns:us-east-1:1:x")
                        .set_tags(Some(
                            t.into_iter()
                                .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                                .collect(),
                        ))
                        .build()
                };
                GetResourcesOutput::builder()
                    .resource_tag_mapping_list(mapping(ours("pr1", "2026-11-20T00:00:00Z", false)))
                    // A key pending deletion of an env that is gone.
                    .resource_tag_mapping_list(
                        ResourceTagMapping::builder()
                            .resource_arn("arn:aws:kms:us-east-1:1:key/k-old")
                            .set_tags(Some(
                                ours("gone", "2026-01-01T00:00:00Z", false)
                                    .into_iter()
                                    .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                                    .collect(),
                            ))
                            .build(),
                    )
                    .resource_tag_mapping_list(mapping(ours("pr1", "2026-11-19T00:00:00Z", false)))
                    .build()
            });
        let vpcs = mock!(aws_sdk_ec2::Client::describe_vpcs).then_output(|| {
            DescribeVpcsOutput::builder()
                .vpcs(
                    Vpc::builder()
                        .set_tags(Some(
                            ours("prod", "2026-01-01T00:00:00Z", true)
                                .into_iter()
                                .map(|(k, v)| Ec2Tag::builder().key(k).value(v).build())
                                .collect(),
                        ))
                        .build(),
                )
                .build()
        });
        // An alias with our naming pattern on a key without our tags: someone
        // else's, and no env.
        let aliases = mock!(aws_sdk_kms::Client::list_aliases).then_output(|| {
            ListAliasesOutput::builder()
                .aliases(
                    AliasListEntry::builder()
                        .alias_name("alias/payops/impostor/s3")
                        .target_key_id("k-foreign")
                        .build(),
                )
                .aliases(
                    AliasListEntry::builder()
                        .alias_name("alias/aws/s3")
                        .target_key_id("k-aws")
                        .build(),
                )
                .build()
        });
        let key_tags = mock!(aws_sdk_kms::Client::list_resource_tags)
            .match_requests(|r| r.key_id() == Some("k-foreign"))
            .then_output(|| {
                ListResourceTagsOutput::builder()
                    .tags(
                        KmsTag::builder()
                            .tag_key("team")
                            .tag_value("x")
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let mut clients = testing::clients();
        clients.tagging =
            mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [&tagged]);
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&vpcs]);
        clients.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&aliases, &key_tags]);
        let envs = inventory(&clients, testing::REGION).await.unwrap().envs;
        assert_eq!(envs.keys().collect::<Vec<_>>(), ["pr1", "prod"]);
        assert_eq!(
            envs["pr1"].created_at.as_deref(),
            Some("2026-11-19T00:00:00Z")
        );
        assert_eq!(envs["pr1"].seen, 2);
        assert!(!envs["pr1"].protected);
        assert!(envs["prod"].protected);
    }

    #[tokio::test]
    async fn what_down_kept_is_listed_as_retained_not_as_an_env() {
        let tagged =
            mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
                let mut t = ours("pr9", "2026-11-20T00:00:00Z", false);
                t.push((
                    tags::RETAINED.to_owned(),
                    "final snapshot of payops-pr9-aurora".to_owned(),
                ));
                GetResourcesOutput::builder()
                    .resource_tag_mapping_list(
                        ResourceTagMapping::builder()
                            .resource_arn("arn:aws:rds:us-east-1:1:cluster-snapshot:s-9")
                            .set_tags(Some(
                                t.into_iter()
                                    .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                                    .collect(),
                            ))
                            .build(),
                    )
                    .build()
            });
        let vpcs = mock!(aws_sdk_ec2::Client::describe_vpcs)
            .then_output(|| DescribeVpcsOutput::builder().build());
        let aliases = mock!(aws_sdk_kms::Client::list_aliases)
            .then_output(|| ListAliasesOutput::builder().build());
        let mut clients = testing::clients();
        clients.tagging =
            mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [&tagged]);
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&vpcs]);
        clients.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&aliases]);
        let found = inventory(&clients, testing::REGION).await.unwrap();
        assert!(found.envs.is_empty(), "{:?}", found.envs);
        assert_eq!(
            found.retained,
            [Retained {
                env: "pr9".into(),
                resource: "arn:aws:rds:us-east-1:1:cluster-snapshot:s-9".into(),
                why: "final snapshot of payops-pr9-aurora".into(),
            }]
        );
    }

    #[tokio::test]
    async fn the_roles_of_an_env_in_another_region_make_no_env_here() {
        // IAM is global: the tagging API may list the roles of env `twin` of
        // us-west-2 when asked in us-east-1, where `twin` has nothing.
        let tagged =
            mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
                let role = |name: &str, env: &str, region: &str| {
                    let mut t = ours(env, "2026-11-20T00:00:00Z", false);
                    t.push((tags::REGION.to_owned(), region.to_owned()));
                    ResourceTagMapping::builder()
                        .resource_arn(format!("arn:aws:iam::1:role/{name}"))
                        .set_tags(Some(
                            t.into_iter()
                                .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                                .collect(),
                        ))
                        .build()
                };
                GetResourcesOutput::builder()
                    .resource_tag_mapping_list(role("payops-twin-us-west-2-x", "twin", "us-west-2"))
                    .resource_tag_mapping_list(role("payops-dr-us-east-1-x", "dr", "us-east-1"))
                    .build()
            });
        let vpcs = mock!(aws_sdk_ec2::Client::describe_vpcs)
            .then_output(|| DescribeVpcsOutput::builder().build());
        let aliases = mock!(aws_sdk_kms::Client::list_aliases)
            .then_output(|| ListAliasesOutput::builder().build());
        let mut clients = testing::clients();
        clients.tagging =
            mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [&tagged]);
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&vpcs]);
        clients.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&aliases]);
        let found = inventory(&clients, "us-east-1").await.unwrap();
        assert_eq!(found.envs.keys().collect::<Vec<_>>(), ["dr"]);
    }
}
