//! Aurora instance class: orderable in each zone the env's instances go to.
//! Not every zone offers every class, and CreateDBInstance in one that does
//! not fails after the VPC, keys and cluster exist. RDS lists where a class
//! can be ordered with DescribeOrderableDBInstanceOptions; an unknown class
//! is an empty list, not an error.
//!
//! Asked by engine and class only, not version: which zones have a class is
//! a matter of hardware, and the answer stays a page or two (one option per
//! engine version).
//!
//! With `--db-capacity` the class is `db.serverless`, and the range must be
//! one the engine version can have: DescribeDBEngineVersions answers its
//! ServerlessV2FeaturesSupport (MinCapacity 0 where it can auto-pause, else
//! 0.5; MaxCapacity 256 or 128), the authority over the documented table
//! the settings already checked.

use std::collections::BTreeSet;

use crate::aws::OpResult;
use crate::resources::context::Context;
use crate::resources::model::DB_ENGINE;
use crate::resources::zones;
use crate::spec::{AZ_COUNT, Capacity};

use super::Check;

pub const NAME: &str = "aurora-instance-class";
/// RDS's ceiling for this call's page size: fewest calls.
const PAGE: i32 = 1000;

/// The zone names where RDS offers `class` for Aurora in a VPC; `None`
/// when it offers it nowhere in the region.
async fn orderable_zones(cx: &Context, class: &str) -> Result<Option<BTreeSet<String>>, Check> {
    let pages: Vec<_> = cx
        .clients
        .rds
        .describe_orderable_db_instance_options()
        .engine(DB_ENGINE)
        .db_instance_class(class)
        .vpc(true)
        .max_records(PAGE)
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut found = false;
    let mut zones = BTreeSet::new();
    for page in pages {
        let page = page
            .op("rds:DescribeOrderableDBInstanceOptions")
            .map_err(|e| Check::not_checked(NAME, &e))?;
        // Some emulators ignore the class filter: only this class counts.
        for option in page
            .orderable_db_instance_options()
            .iter()
            .filter(|o| o.db_instance_class() == Some(class))
        {
            found = true;
            zones.extend(
                option
                    .availability_zones()
                    .iter()
                    .filter_map(|z| z.name().map(str::to_owned)),
            );
        }
    }
    Ok(found.then_some(zones))
}

/// The range AWS allows for the env's engine version, `None` when it does
/// not say (an emulator, or a version it does not list).
async fn capacity_bounds(cx: &Context) -> Result<Option<(f64, f64)>, Check> {
    let out = cx
        .clients
        .rds
        .describe_db_engine_versions()
        .engine(DB_ENGINE)
        .engine_version(&cx.spec.database.engine_version)
        .send()
        .await
        .op("rds:DescribeDBEngineVersions")
        .map_err(|e| Check::not_checked(NAME, &e))?;
    Ok(out
        .db_engine_versions()
        .iter()
        .filter(|v| v.engine_version() == Some(cx.spec.database.engine_version.as_str()))
        .find_map(|v| v.serverless_v2_features_support())
        .and_then(|f| Some((f.min_capacity()?, f.max_capacity()?))))
}

/// The Serverless v2 range against what the engine version allows.
async fn check_capacity(cx: &Context, capacity: Capacity) -> Option<Check> {
    let version = &cx.spec.database.engine_version;
    let (min, max) = match capacity_bounds(cx).await {
        Ok(Some(bounds)) => bounds,
        Ok(None) => return None,
        Err(not_checked) => return Some(not_checked),
    };
    if capacity.min() < min {
        return Some(Check::problem(
            NAME,
            format!(
                "Serverless v2 capacity {capacity}: aurora-postgresql {version} scales down to \
                 {min} ACUs at the least (0 needs a version with auto-pause)"
            ),
            format!(
                "a --db-capacity minimum of {min} or more (db_capacity in payops.toml), or a newer \
                 --db-version"
            ),
        ));
    }
    if capacity.max() > max {
        return Some(Check::problem(
            NAME,
            format!(
                "Serverless v2 capacity {capacity}: aurora-postgresql {version} scales up to \
                 {max} ACUs at most"
            ),
            format!(
                "a --db-capacity maximum of {max} or less (db_capacity in payops.toml), or a newer \
                 --db-version"
            ),
        ));
    }
    None
}

pub async fn check(cx: &Context) -> Check {
    let class = cx.spec.database.effective_class();
    let remedy = if cx.spec.database.capacity.is_some() {
        "Aurora Serverless v2 (--db-capacity) is not offered there: --db-capacity off with a \
         provisioned --db-instance-class, or another --region"
    } else {
        "choose a --db-instance-class (db_instance_class in payops.toml) that every zone offers, \
         e.g. db.r6g.large or db.t4g.medium, --db-capacity MIN-MAX (Serverless v2), or another \
         --region"
    };
    let zones = match cx.zones().await {
        Ok(zones) => zones,
        // The zone check says why.
        Err(e) => return Check::not_checked(NAME, &e),
    };
    // Instance slot n goes to zone n % AZ_COUNT.
    let used = &zones[..cx.spec.database.instances().min(AZ_COUNT)];
    let orderable = match orderable_zones(cx, class).await {
        Ok(Some(orderable)) => orderable,
        Ok(None) => {
            return Check::problem(
                NAME,
                format!("{class} is not offered for {DB_ENGINE} in {}", cx.region),
                remedy,
            );
        }
        Err(not_checked) => return not_checked,
    };
    let missing: Vec<zones::Zone> = used
        .iter()
        .filter(|z| !orderable.contains(&z.name))
        .cloned()
        .collect();
    if missing.is_empty() {
        if let Some(capacity) = cx.spec.database.capacity
            && let Some(problem) = check_capacity(cx, capacity).await
        {
            return problem;
        }
        let range = cx
            .spec
            .database
            .capacity
            .map(|c| format!(", {c} ACUs"))
            .unwrap_or_default();
        return Check::ok(
            NAME,
            format!("{class} orderable in {}{range}", zones::describe(used)),
        );
    }
    Check::problem(
        NAME,
        format!(
            "{class} cannot be ordered for {DB_ENGINE} in {} (the env's database instances go \
             to {})",
            zones::describe(&missing),
            zones::describe(used)
        ),
        remedy,
    )
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::operation::describe_availability_zones::DescribeAvailabilityZonesOutput;
    use aws_sdk_ec2::types::AvailabilityZone as Ec2Zone;
    use aws_sdk_rds::Client;
    use aws_sdk_rds::operation::describe_db_engine_versions::DescribeDbEngineVersionsOutput;
    use aws_sdk_rds::operation::describe_orderable_db_instance_options::DescribeOrderableDbInstanceOptionsOutput;
    use aws_sdk_rds::types::{
        AvailabilityZone, DbEngineVersion, OrderableDbInstanceOption, ServerlessV2FeaturesSupport,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::preflight::Status;
    use crate::resources::testing;

    fn us_east_1() -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_ec2::Client::describe_availability_zones).then_output(|| {
            let mut out = DescribeAvailabilityZonesOutput::builder();
            for (id, name) in [
                ("use1-az6", "us-east-1a"),
                ("use1-az1", "us-east-1b"),
                ("use1-az2", "us-east-1c"),
                ("use1-az4", "us-east-1d"),
            ] {
                out = out.availability_zones(
                    Ec2Zone::builder()
                        .zone_id(id)
                        .zone_name(name)
                        .zone_type("availability-zone")
                        .build(),
                );
            }
            out.build()
        })
    }

    /// AWS's answer: one option per engine version, each with its zones.
    fn option(version: &str, zones: &[&str]) -> OrderableDbInstanceOption {
        let mut o = OrderableDbInstanceOption::builder()
            .engine("aurora-postgresql")
            .engine_version(version)
            .db_instance_class("db.r6g.large")
            .vpc(true);
        for z in zones {
            o = o.availability_zones(AvailabilityZone::builder().name(*z).build());
        }
        o.build()
    }

    fn context_with(rds: &aws_smithy_mocks::Rule, readers: u8) -> Context {
        let ec2 = us_east_1();
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&ec2]);
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [rds]);
        let mut cx = testing::context(clients);
        cx.spec.database.readers = readers;
        cx.spec.database.capacity = None;
        cx
    }

    #[tokio::test]
    async fn a_class_missing_from_a_used_zone_is_refused_with_the_remedy() {
        // The env's zones: use1-az1 (b), use1-az2 (c), use1-az4 (d).
        let rds = mock!(Client::describe_orderable_db_instance_options)
            .match_requests(|r| {
                r.engine() == Some("aurora-postgresql")
                    && r.db_instance_class() == Some("db.r6g.large")
                    && r.vpc() == Some(true)
            })
            .then_output(|| {
                DescribeOrderableDbInstanceOptionsOutput::builder()
                    .orderable_db_instance_options(option(
                        "16.6",
                        &["us-east-1a", "us-east-1b", "us-east-1c"],
                    ))
                    .orderable_db_instance_options(option("15.4", &["us-east-1b"]))
                    .build()
            });
        let c = check(&context_with(&rds, 2)).await;
        assert_eq!(c.status, Status::Problem);
        assert_eq!(
            c.detail,
            "db.r6g.large cannot be ordered for aurora-postgresql in use1-az4 (us-east-1d) (the \
             env's database instances go to use1-az1 (us-east-1b), use1-az2 (us-east-1c), \
             use1-az4 (us-east-1d))"
        );
        assert!(c.remedy.unwrap().contains("--db-instance-class"));

        // A writer and one reader use only the first two zones.
        let c = check(&context_with(&rds, 1)).await;
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
    }

    #[tokio::test]
    async fn a_class_the_region_does_not_offer_is_refused() {
        // AWS answers an unknown class with an empty list, not an error.
        let rds = mock!(Client::describe_orderable_db_instance_options)
            .then_output(|| DescribeOrderableDbInstanceOptionsOutput::builder().build());
        let c = check(&context_with(&rds, 0)).await;
        assert_eq!(c.status, Status::Problem);
        assert_eq!(
            c.detail,
            "db.r6g.large is not offered for aurora-postgresql in us-east-1"
        );
    }

    fn serverless_context(rds: &[&aws_smithy_mocks::Rule], capacity: &str) -> Context {
        let ec2 = us_east_1();
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&ec2]);
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, rds);
        let mut cx = testing::context(clients);
        cx.spec.database.capacity = Some(capacity.parse().unwrap());
        cx
    }

    fn serverless_orderable() -> aws_smithy_mocks::Rule {
        mock!(Client::describe_orderable_db_instance_options)
            .match_requests(|r| r.db_instance_class() == Some("db.serverless"))
            .then_output(|| {
                let mut o = option("16.6", &["us-east-1b", "us-east-1c", "us-east-1d"]);
                o.db_instance_class = Some("db.serverless".into());
                DescribeOrderableDbInstanceOptionsOutput::builder()
                    .orderable_db_instance_options(o)
                    .build()
            })
    }

    /// DescribeDBEngineVersions for 16.6 with its Serverless v2 bounds.
    fn engine_bounds(min: f64, max: f64) -> aws_smithy_mocks::Rule {
        mock!(Client::describe_db_engine_versions)
            .match_requests(|r| {
                r.engine() == Some("aurora-postgresql") && r.engine_version() == Some("16.6")
            })
            .then_output(move || {
                DescribeDbEngineVersionsOutput::builder()
                    .db_engine_versions(
                        DbEngineVersion::builder()
                            .engine("aurora-postgresql")
                            .engine_version("16.6")
                            .serverless_v2_features_support(
                                ServerlessV2FeaturesSupport::builder()
                                    .min_capacity(min)
                                    .max_capacity(max)
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            })
    }

    #[tokio::test]
    async fn with_a_capacity_db_serverless_and_the_engine_bounds_are_checked() {
        let orderable = serverless_orderable();
        let bounds = engine_bounds(0.0, 256.0);
        let c = check(&serverless_context(&[&orderable, &bounds], "0-8")).await;
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        assert!(
            c.detail.starts_with("db.serverless orderable in") && c.detail.ends_with(", 0-8 ACUs"),
            "{}",
            c.detail
        );

        // A version without auto-pause and with the old ceiling.
        let bounds = engine_bounds(0.5, 128.0);
        let c = check(&serverless_context(&[&orderable, &bounds], "0-8")).await;
        assert_eq!(c.status, Status::Problem);
        assert!(c.detail.contains("scales down to 0.5 ACUs"), "{}", c.detail);
        assert!(c.remedy.unwrap().contains("--db-capacity minimum of 0.5"));
        let c = check(&serverless_context(&[&orderable, &bounds], "0.5-200")).await;
        assert_eq!(c.status, Status::Problem);
        assert!(c.detail.contains("up to 128 ACUs"), "{}", c.detail);
    }

    #[tokio::test]
    async fn a_region_without_serverless_v2_says_to_turn_it_off() {
        let rds = mock!(Client::describe_orderable_db_instance_options)
            .then_output(|| DescribeOrderableDbInstanceOptionsOutput::builder().build());
        let c = check(&serverless_context(&[&rds], "0.5-4")).await;
        assert_eq!(c.status, Status::Problem);
        assert_eq!(
            c.detail,
            "db.serverless is not offered for aurora-postgresql in us-east-1"
        );
        assert!(c.remedy.unwrap().contains("--db-capacity off"));
    }

    #[tokio::test]
    async fn an_engine_answer_without_serverless_bounds_is_not_a_problem() {
        // Emulators answer without ServerlessV2FeaturesSupport.
        let orderable = serverless_orderable();
        let versions = mock!(Client::describe_db_engine_versions)
            .then_output(|| DescribeDbEngineVersionsOutput::builder().build());
        let c = check(&serverless_context(&[&orderable, &versions], "0.5-4")).await;
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
    }
}
