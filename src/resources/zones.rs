//! Which availability zones the env spreads over, chosen by zone ID.
//!
//! Zone names (`us-east-1a`) map to different physical zones in every
//! account; zone IDs (`use1-az1`) name the same physical zone everywhere
//! (EC2 user guide, "AZ IDs"). So payops chooses by ID, skips zones known to
//! refuse a service the env places in every zone, and keeps the IDs it chose
//! in the env's state and VPC tags: a later run keeps them even when the
//! account gains zones that sort first.

use crate::spec::AZ_COUNT;

/// One available zone of the region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// `use1-az1`; the name for an answer without one (only emulators).
    pub id: String,
    /// `us-east-1b`: what EC2 and RDS calls take.
    pub name: String,
}

/// Zones that refuse a service the env puts in each of its zones.
/// `use1-az3`: Lambda refuses VPC configs with a subnet there ("The
/// provided subnets contain availability zone Lambda doesn't support",
/// keboola/developer-portal#81), and RDS Proxy does not run there (RDS user
/// guide, RDS Proxy limitations: "US East (N. Virginia) Region does not
/// support RDS Proxy in the use1-az3 Availability Zone").
pub const UNSUPPORTED: &[(&str, &str)] =
    &[("use1-az3", "Lambda in a VPC and RDS Proxy do not run there")];

fn unsupported(id: &str) -> Option<&'static str> {
    UNSUPPORTED
        .iter()
        .find(|(zone, _)| *zone == id)
        .map(|(_, why)| *why)
}

/// The env's `AZ_COUNT` zones among the region's `available` ones: the
/// `kept` ones (IDs recorded by an earlier run; zone names for an env
/// recorded before payops kept IDs) in their order, else the lowest zone
/// IDs that every service supports. The error says why the region will not
/// do.
pub fn choose(region: &str, available: &[Zone], kept: &[String]) -> Result<Vec<Zone>, String> {
    if !kept.is_empty() {
        let mut zones = Vec::new();
        let mut gone = Vec::new();
        for k in kept {
            match available.iter().find(|z| z.id == *k || z.name == *k) {
                Some(z) => zones.push(z.clone()),
                None => gone.push(k.as_str()),
            }
        }
        if !gone.is_empty() {
            return Err(format!(
                "the env's zones are {} but {} is not available in {region} now",
                kept.join(", "),
                gone.join(", ")
            ));
        }
        return Ok(zones);
    }
    let mut usable: Vec<&Zone> = available
        .iter()
        .filter(|z| unsupported(&z.id).is_none())
        .collect();
    usable.sort_by(|a, b| a.id.cmp(&b.id));
    if usable.len() < AZ_COUNT {
        let skipped: Vec<String> = available
            .iter()
            .filter_map(|z| unsupported(&z.id).map(|why| format!("{} ({why})", z.id)))
            .collect();
        let skipped = if skipped.is_empty() {
            String::new()
        } else {
            format!(", skipping {}", skipped.join(", "))
        };
        return Err(format!(
            "region {region} has {} usable availability zones{skipped}; payops needs {AZ_COUNT}",
            usable.len()
        ));
    }
    Ok(usable.into_iter().take(AZ_COUNT).cloned().collect())
}

/// `use1-az1 (us-east-1b), ...` for messages.
pub fn describe(zones: &[Zone]) -> String {
    zones
        .iter()
        .map(|z| {
            if z.id == z.name {
                z.name.clone()
            } else {
                format!("{} ({})", z.id, z.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(id: &str, name: &str) -> Zone {
        Zone {
            id: id.into(),
            name: name.into(),
        }
    }

    /// us-east-1 as one account sees it (moto's mapping).
    fn us_east_1() -> Vec<Zone> {
        vec![
            zone("use1-az6", "us-east-1a"),
            zone("use1-az1", "us-east-1b"),
            zone("use1-az2", "us-east-1c"),
            zone("use1-az3", "us-east-1d"),
            zone("use1-az4", "us-east-1e"),
        ]
    }

    #[test]
    fn the_lowest_zone_ids_are_chosen_and_use1_az3_is_skipped() {
        let mut zones = us_east_1();
        // az3 sorts third: without the skip it would be chosen.
        zones.retain(|z| z.id != "use1-az4");
        zones.push(zone("use1-az5", "us-east-1f"));
        let chosen = choose("us-east-1", &zones, &[]).unwrap();
        assert_eq!(
            describe(&chosen),
            "use1-az1 (us-east-1b), use1-az2 (us-east-1c), use1-az5 (us-east-1f)"
        );
    }

    #[test]
    fn kept_zones_stay_even_when_lower_ids_appear() {
        let kept = vec!["use1-az6".into(), "use1-az2".into(), "use1-az4".into()];
        let chosen = choose("us-east-1", &us_east_1(), &kept).unwrap();
        let names: Vec<&str> = chosen.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(names, ["us-east-1a", "us-east-1c", "us-east-1e"]);
        // An env recorded before payops kept IDs kept zone names.
        let legacy = vec![
            "us-east-1a".into(),
            "us-east-1b".into(),
            "us-east-1c".into(),
        ];
        let chosen = choose("us-east-1", &us_east_1(), &legacy).unwrap();
        assert_eq!(chosen[0].id, "use1-az6");
    }

    #[test]
    fn a_kept_zone_that_is_gone_is_an_error_naming_it() {
        let kept = vec!["use1-az1".into(), "use1-az2".into(), "use1-az9".into()];
        let err = choose("us-east-1", &us_east_1(), &kept).unwrap_err();
        assert!(err.contains("use1-az9 is not available"), "{err}");
    }

    #[test]
    fn fewer_than_three_usable_zones_is_refused_with_the_skipped_ones() {
        let zones = vec![
            zone("use1-az1", "us-east-1a"),
            zone("use1-az2", "us-east-1b"),
            zone("use1-az3", "us-east-1c"),
        ];
        let err = choose("us-east-1", &zones, &[]).unwrap_err();
        assert_eq!(
            err,
            "region us-east-1 has 2 usable availability zones, skipping use1-az3 (Lambda in a \
             VPC and RDS Proxy do not run there); payops needs 3"
        );
    }
}
