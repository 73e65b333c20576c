//! What every resource step sees: the env's names, tags and desired shape,
//! the SDK clients, and the account it runs in.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_resourcegroupstagging::types::TagFilter;
use tokio::sync::{OnceCell, Semaphore};

use crate::aws::{AwsError, Budget, Clients, OpResult};
use crate::naming::{EnvName, Names};
use crate::resources::zones::{self, Zone};
use crate::spec::EnvSpec;
use crate::tags::{self, Ownership, TagMap, Tagger};

/// How long payops waits for AWS before giving up, per kind of wait.
#[derive(Clone, Copy, Debug)]
pub struct Budgets {
    /// NAT gateways take 1-5 minutes to become available or deleted.
    pub nat_gateway: Duration,
    /// Security groups, subnets and VPCs refuse deletion while ENIs (Lambda's
    /// hyperplane ENIs: up to 45 minutes) still use them.
    pub dependency_violation: Budget,
    /// DynamoDB tables: create and delete usually take seconds to a minute.
    pub table: Duration,
    /// IAM is eventually consistent: a new role may not be usable for seconds.
    pub iam_propagation: Budget,
    /// Lambda functions in a VPC stay Pending (or InProgress after an update)
    /// until their network interfaces exist: usually a minute or two.
    pub lambda: Duration,
    /// Load balancers take 2-5 minutes to become active.
    pub load_balancer: Duration,
    /// REST API VPC links take 8-12 minutes to become AVAILABLE, and minutes
    /// more to go.
    pub vpc_link: Budget,
    /// ACM refuses to delete a certificate a listener let go of a moment ago.
    pub certificate_release: Budget,
    /// ELB checks an access-log bucket by writing to it, and right after the
    /// bucket policy is set it may still be refused for a while.
    pub log_bucket_check: Budget,
    /// AWS WAF: right after a web ACL or the resource it protects is created,
    /// AssociateWebACL answers WAFUnavailableEntityException for up to ~10
    /// minutes (terraform-provider-aws#17527, #29080), and a removed
    /// association may hold up DeleteWebACL for a moment.
    pub waf_propagation: Budget,
    /// Aurora clusters take 3-4 minutes to create and minutes to delete.
    pub aurora: Budget,
    /// Aurora instances take ~10 minutes to create and 10-12 to delete.
    pub aurora_instance: Budget,
    /// RDS Proxies take minutes to create and to delete (Terraform allows 30
    /// and 60).
    pub db_proxy: Budget,
    /// An instance refresh replaces instances one warm-up at a time: minutes
    /// per instance on AWS.
    pub instance_refresh: Budget,
    /// An Auto Scaling group's instances take minutes to terminate, and the
    /// group minutes more to go.
    pub autoscaling_drain: Budget,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            nat_gateway: Duration::from_secs(15 * 60),
            dependency_violation: Budget::new(Duration::from_secs(50 * 60)),
            table: Duration::from_secs(15 * 60),
            iam_propagation: Budget::new(Duration::from_secs(120)),
            lambda: Duration::from_secs(15 * 60),
            load_balancer: Duration::from_secs(15 * 60),
            vpc_link: Budget {
                first_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(30),
                ..Budget::new(Duration::from_secs(25 * 60))
            },
            certificate_release: Budget::new(Duration::from_secs(10 * 60)),
            log_bucket_check: Budget::new(Duration::from_secs(3 * 60)),
            waf_propagation: Budget::new(Duration::from_secs(10 * 60)),
            aurora: Budget {
                first_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(30),
                ..Budget::new(Duration::from_secs(30 * 60))
            },
            aurora_instance: Budget {
                first_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(30),
                ..Budget::new(Duration::from_secs(45 * 60))
            },
            db_proxy: Budget {
                first_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(30),
                ..Budget::new(Duration::from_secs(60 * 60))
            },
            instance_refresh: Budget {
                first_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(30),
                ..Budget::new(Duration::from_secs(60 * 60))
            },
            autoscaling_drain: Budget {
                first_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(20),
                ..Budget::new(Duration::from_secs(20 * 60))
            },
        }
    }
}

pub struct Context {
    pub names: Names,
    pub tagger: Tagger,
    pub spec: EnvSpec,
    pub clients: Clients,
    pub account_id: String,
    pub region: String,
    pub budgets: Budgets,
    /// For `--reserved-concurrency auto`: whether the account can hold the
    /// reservations (preflight's answer, set before any step runs).
    pub auto_reservations_fit: bool,
    azs: OnceCell<(Vec<Zone>, Vec<String>)>,
    /// The env's resources and their tags as the tagging API listed them,
    /// once per run (see [`Context::listed_tags`]).
    listing: OnceCell<Option<Listing>>,
    /// Writes to Parameter Store in flight at once, across every step of
    /// the run (see [`SSM_WRITE_CONCURRENCY`]).
    pub ssm_writes: Semaphore,
    /// Reads several steps share (see [`Context::shared_read`]), by key.
    memos: Mutex<HashMap<&'static str, Arc<OnceCell<Memo>>>>,
}

/// Parameter Store's standard throughput (40 transactions a second, shared
/// by GetParameter, GetParameters and PutParameter across the account and
/// region) also serves every function's cold start and the other envs'
/// runs: a run keeps at most this many writes in flight (a PutParameter
/// takes tens of milliseconds), and a throttled one is retried like any
/// other call.
pub const SSM_WRITE_CONCURRENCY: usize = 3;

/// One shared read's answer, and the counter's generation when it started.
struct Memo {
    generation: u64,
    value: Arc<dyn Any + Send + Sync>,
}

/// What [`Context::listed_tags`] lists (tagging API resource types).
const LISTED_SERVICES: [&str; 11] = [
    "acm",
    // By service: moto does not match `cloudwatch:alarm` or `logs:log-group`.
    "cloudwatch",
    "logs",
    "elasticloadbalancing",
    "kms:key",
    "s3",
    "sqs",
    "dynamodb:table",
    "sns",
    "rds",
    "wafv2",
];

/// One listing of the env's tagged resources, and when it was taken.
struct Listing {
    /// The counter's generation when the listing started: it is good only
    /// while no step has changed anything since.
    generation: u64,
    tags: Arc<BTreeMap<String, TagMap>>,
}

/// `aws`, or the partition of `region` if it is a China or GovCloud one.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `arn:<partition>:<service>:<region>:<account>:<resource>`.
pub fn arn(region: &str, account: &str, service: &str, resource: &str) -> String {
    format!(
        "arn:{}:{service}:{region}:{account}:{resource}",
        partition(region)
    )
}

impl Context {
    pub fn new(
        names: Names,
        tagger: Tagger,
        spec: EnvSpec,
        clients: Clients,
        account_id: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            names,
            tagger,
            spec,
            clients,
            account_id: account_id.into(),
            region: region.into(),
            budgets: Budgets::default(),
            auto_reservations_fit: true,
            azs: OnceCell::new(),
            listing: OnceCell::new(),
            ssm_writes: Semaphore::new(SSM_WRITE_CONCURRENCY),
            memos: Mutex::new(HashMap::new()),
        }
    }

    pub fn env(&self) -> &EnvName {
        self.names.env()
    }

    /// `aws`, or the partition of China / GovCloud regions, for ARNs.
    pub fn partition(&self) -> &'static str {
        partition(&self.region)
    }

    /// `arn:<partition>:<service>:<region>:<account>:<resource>`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        arn(&self.region, &self.account_id, service, resource)
    }

    /// The env's custom event bus's ARN (it follows from the name).
    pub fn event_bus_arn(&self) -> String {
        self.arn("events", &format!("event-bus/{}", self.names.event_bus()))
    }

    /// An env rule's ARN: `rule/<name>` on the default bus,
    /// `rule/<bus>/<name>` on a custom one.
    pub fn event_rule_arn(&self, rule: crate::naming::EventRule) -> String {
        let name = self.names.event_rule(rule);
        if rule.on_default_bus() {
            self.arn("events", &format!("rule/{name}"))
        } else {
            self.arn("events", &format!("rule/{}/{name}", self.names.event_bus()))
        }
    }

    /// The env's rule on AWS Config's compliance changes (default bus): the
    /// topic policy and the remediation function's permission name it
    /// before it exists.
    pub fn compliance_rule_arn(&self) -> String {
        self.arn("events", &format!("rule/{}", self.names.compliance_rule()))
    }

    pub fn account_root_arn(&self) -> String {
        format!("arn:{}:iam::{}:root", self.partition(), self.account_id)
    }

    /// The env's `AZ_COUNT` zone names, in slot order (see `zones`).
    pub async fn availability_zones(&self) -> Result<&[String], AwsError> {
        Ok(&self.zones_and_names().await?.1)
    }

    /// The env's zones, by ID and name: the ones its spec keeps, else the
    /// lowest usable zone IDs (`zones::choose`). Asked once per run.
    pub async fn zones(&self) -> Result<&[Zone], AwsError> {
        Ok(&self.zones_and_names().await?.0)
    }

    async fn zones_and_names(&self) -> Result<&(Vec<Zone>, Vec<String>), AwsError> {
        self.azs
            .get_or_try_init(|| async {
                let out = self
                    .clients
                    .ec2
                    .describe_availability_zones()
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("state")
                            .values("available")
                            .build(),
                    )
                    .send()
                    .await
                    .op("ec2:DescribeAvailabilityZones")?;
                let available: Vec<Zone> = out
                    .availability_zones()
                    .iter()
                    // Not Local Zones or Wavelength Zones (opt-in, few services).
                    .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
                    .filter_map(|z| {
                        let name = z.zone_name()?.to_owned();
                        let id = z.zone_id().map_or_else(|| name.clone(), str::to_owned);
                        Some(Zone { id, name })
                    })
                    .collect();
                let zones = zones::choose(&self.region, &available, &self.spec.zone_ids)
                    .map_err(AwsError::Conflict)?;
                let names = zones.iter().map(|z| z.name.clone()).collect();
                Ok((zones, names))
            })
            .await
    }

    /// `read`'s answer, shared by every step of the run that asks for `key`
    /// (one describe of all the env's security groups rather than one per
    /// step): read at most once while no step changes anything. A step's
    /// change (a mutating call) makes the next ask read again, and an
    /// answer whose read began before a change the caller may depend on is
    /// never handed out: the caller then reads for itself.
    pub async fn shared_read<T, F, Fut>(
        &self,
        key: &'static str,
        read: F,
    ) -> Result<Arc<T>, AwsError>
    where
        T: Any + Send + Sync,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let counter = &self.clients.counter;
        if !counter.tracks_changes() {
            return Ok(Arc::new(read().await?));
        }
        let asked_at = counter.generation();
        let cell = {
            let mut memos = self.memos.lock().expect("memo lock");
            let cell = memos.entry(key).or_default();
            if cell.get().is_some_and(|m| m.generation != asked_at) {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let memo = cell
            .get_or_try_init(|| async {
                let generation = counter.generation();
                let value: Arc<dyn Any + Send + Sync> = Arc::new(read().await?);
                Ok::<_, AwsError>(Memo { generation, value })
            })
            .await?;
        if memo.generation == asked_at
            && let Ok(value) = memo.value.clone().downcast::<T>()
        {
            return Ok(value);
        }
        Ok(Arc::new(read().await?))
    }

    /// The tags of `arn` if the env's tagging-API listing has it: one
    /// listing (a page per 100 resources) per run stands in for a tag read
    /// per resource, which is most of what a converged `up`, `status` or
    /// `plan` reads.
    ///
    /// Only ever a positive answer. `None` (not listed, the listing failed
    /// or is out of date) sends the caller to the service's own tag read:
    /// the tagging API is eventually consistent, so a resource tagged a
    /// moment ago may be missing from it, and the listing is taken at most
    /// once and trusted only while no step of this run has made a change
    /// (a run that changes things reads tags as before).
    pub async fn listed_tags(&self, arn: &str) -> Option<TagMap> {
        self.listing().await?.tags.get(arn).cloned()
    }

    /// The env's listing, taken on first use, if it may be trusted now.
    async fn listing(&self) -> Option<&Listing> {
        let counter = &self.clients.counter;
        if !counter.tracks_changes() {
            return None;
        }
        let listing = self
            .listing
            .get_or_init(|| async {
                let generation = counter.generation();
                match self.list_env_tags().await {
                    Ok(tags) => Some(Listing {
                        generation,
                        tags: Arc::new(tags),
                    }),
                    Err(e) => {
                        tracing::debug!(
                            "no tagging-API listing of the env, reading tags one by one: {e}"
                        );
                        None
                    }
                }
            })
            .await
            .as_ref()?;
        (listing.generation == counter.generation()).then_some(listing)
    }

    /// The ARNs of the env's listing whose ARN and tags satisfy `wanted`, or
    /// None when there is no listing to trust (as [`Context::listed_tags`]):
    /// the same answer as asking the tagging API for them now.
    pub async fn listed_where(
        &self,
        wanted: impl Fn(&str, &TagMap) -> bool,
    ) -> Option<Vec<String>> {
        let listing = self.listing().await?;
        Some(
            listing
                .tags
                .iter()
                .filter(|(arn, tags)| wanted(arn, tags))
                .map(|(arn, _)| arn.clone())
                .collect(),
        )
    }

    async fn list_env_tags(&self) -> Result<BTreeMap<String, TagMap>, AwsError> {
        let pages: Vec<_> = self
            .clients
            .tagging
            .get_resources()
            .tag_filters(
                TagFilter::builder()
                    .key(tags::ENV)
                    .values(self.env().as_str())
                    .build(),
            )
            // The services whose tag reads look here (`sdk::*::tags_of`):
            // not SSM's parameters, most of an env and read otherwise.
            .set_resource_type_filters(Some(
                LISTED_SERVICES.iter().map(|s| (*s).to_owned()).collect(),
            ))
            .resources_per_page(100)
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut all = BTreeMap::new();
        for page in pages {
            for mapping in page.op("tagging:GetResources")?.resource_tag_mapping_list() {
                if let Some(arn) = mapping.resource_arn() {
                    let tags = tags::to_map(mapping.tags(), |t| (Some(t.key()), Some(t.value())));
                    all.insert(arn.to_owned(), tags);
                }
            }
        }
        Ok(all)
    }

    pub fn is_ours(&self, tags: &TagMap) -> bool {
        tags::ownership(tags, self.env()) == Ownership::Ours
    }

    /// Refuses a found resource that is not tagged as this env's.
    pub fn check_ours(&self, what: impl std::fmt::Display, tags: &TagMap) -> Result<(), AwsError> {
        Self::refuse_unless_ours(what, tags::ownership(tags, self.env()))
    }

    /// Refuses a found account-wide resource (an IAM role) unless it is
    /// tagged as this env's and not as another region's (see
    /// [`tags::global_ownership`]).
    pub fn check_ours_global(
        &self,
        what: impl std::fmt::Display,
        tags: &TagMap,
    ) -> Result<(), AwsError> {
        Self::refuse_unless_ours(what, tags::global_ownership(tags, self.env(), &self.region))
    }

    fn refuse_unless_ours(what: impl std::fmt::Display, owner: Ownership) -> Result<(), AwsError> {
        match owner {
            Ownership::Ours => Ok(()),
            Ownership::OtherEnv(env) => Err(AwsError::NotOurs {
                what: what.to_string(),
                owner: format!("it belongs to payops env {env}"),
            }),
            Ownership::Foreign => Err(AwsError::NotOurs {
                what: what.to_string(),
                owner: "it has no payops ownership tags".into(),
            }),
            Ownership::OtherRegion(region) => Err(AwsError::NotOurs {
                what: what.to_string(),
                owner: format!(
                    "it belongs to the env of the same name in region {region} (IAM is global)"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput;
    use aws_sdk_resourcegroupstagging::types::{ResourceTagMapping, Tag};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use crate::resources::testing;

    const ALARM: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:payops-pr1-x";

    #[tokio::test]
    async fn one_listing_serves_every_tag_lookup_until_a_step_changes_something() {
        let listing = mock!(aws_sdk_resourcegroupstagging::Client::get_resources)
            .match_requests(|r| {
                r.tag_filters()
                    .iter()
                    .any(|f| f.key() == Some("payops:env") && f.values() == ["pr1"])
            })
            .then_output(|| {
                GetResourcesOutput::builder()
                    .resource_tag_mapping_list(
                        ResourceTagMapping::builder()
                            .resource_arn(ALARM)
                            .tags(
                                Tag::builder()
                                    .key("payops:env")
                                    .value("pr1")
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .build()
            });
        let mut clients = testing::clients();
        clients.tagging = mock_client!(
            aws_sdk_resourcegroupstagging,
            RuleMode::MatchAny,
            [&listing]
        );
        // As if the counter saw every call (mocks do not count theirs).
        clients.counter = clients.counter.attached();
        let cx = testing::context(clients);
        let tags = cx.listed_tags(ALARM).await.expect("listed");
        assert_eq!(tags["payops:env"], "pr1");
        // Not listed: the caller reads the service's own tags.
        assert_eq!(cx.listed_tags(&format!("{ALARM}-other")).await, None);
        assert_eq!(listing.num_calls(), 1, "listed once per run");
        // After a change, the listing is never trusted again (nor retaken).
        cx.clients.counter.note_change();
        assert_eq!(cx.listed_tags(ALARM).await, None);
        assert_eq!(listing.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_shared_read_is_read_once_until_a_step_changes_something() {
        let mut clients = testing::clients();
        clients.counter = clients.counter.attached();
        let cx = testing::context(clients);
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let read = || async {
            Ok::<_, crate::aws::AwsError>(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        };
        assert_eq!(*cx.shared_read("k", read).await.unwrap(), 0);
        assert_eq!(*cx.shared_read("k", read).await.unwrap(), 0, "shared");
        cx.clients.counter.note_change();
        assert_eq!(*cx.shared_read("k", read).await.unwrap(), 1, "read again");
        assert_eq!(*cx.shared_read("k", read).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn without_a_counter_that_sees_every_change_nothing_is_reused() {
        let cx = testing::context(testing::clients());
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let read = || async {
            Ok::<_, crate::aws::AwsError>(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        };
        assert_eq!(*cx.shared_read("k", read).await.unwrap(), 0);
        assert_eq!(*cx.shared_read("k", read).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_refused_listing_sends_every_lookup_to_the_service() {
        let mut clients = testing::clients();
        clients.counter = clients.counter.attached();
        let cx = testing::context(clients);
        assert_eq!(cx.listed_tags(ALARM).await, None);
    }
}
