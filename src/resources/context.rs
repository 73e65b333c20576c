//! What every resource step sees: the env's names, tags and desired shape,
//! the SDK clients, and the account it runs in.

use std::time::Duration;

use tokio::sync::OnceCell;

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
        }
    }

    pub fn env(&self) -> &EnvName {
        self.names.env()
    }

    /// `aws`, or the partition of China / GovCloud regions, for ARNs.
    pub fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// `arn:<partition>:<service>:<region>:<account>:<resource>`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition(),
            self.region,
            self.account_id
        )
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
