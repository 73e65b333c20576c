//! Ownership and cost-allocation tags.
//!
//! Ownership tags are how payops recognises its own resources without a state
//! file, and the only thing `down` and `destroy-all` trust: a resource with
//! one of our names but without our tags is never adopted nor deleted.

use std::collections::BTreeMap;

use crate::naming::EnvName;

pub const ENV: &str = "payops:env";
pub const STEP: &str = "payops:step";
pub const MANAGED_BY: &str = "payops:managed-by";
pub const CREATED_AT: &str = "payops:created-at";
/// `true` on every resource of an env brought up with `up --protect`:
/// `destroy-all` never removes such an env.
pub const PROTECTED: &str = "payops:protected";
pub const MANAGER: &str = "payops";
/// The region of the env an account-wide resource (an IAM role) serves: IAM
/// is global, so the same env name in two regions of one account must not
/// take each other's roles. Regional resources do not need it.
pub const REGION: &str = "payops:region";
/// On what `down` keeps on purpose (a final snapshot, the key it needs to be
/// restored), saying why: it belongs to no env any more, so no step adopts
/// it, discovery does not count it as an env, and neither the final sweep nor
/// `destroy-all` removes it.
pub const RETAINED: &str = "payops:retained";
/// `true` on a final snapshot kept by `down --final-snapshot` (before
/// `payops:retained` existed, the only mark of one).
pub const FINAL_SNAPSHOT: &str = "payops:final-snapshot";

/// Whether `tags` mark something `down` kept on purpose.
pub fn is_retained(tags: &TagMap) -> bool {
    tags.contains_key(RETAINED) || tags.get(FINAL_SNAPSHOT).map(String::as_str) == Some("true")
}

pub type TagMap = BTreeMap<String, String>;

/// Who a found resource belongs to, by its tags.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    Ours,
    /// Managed by payops for another env: never touch it.
    OtherEnv(String),
    /// Not tagged as payops': someone else's, whatever its name.
    Foreign,
    /// An account-wide resource of the env of the same name in another
    /// region (see [`global_ownership`]): never touch it.
    OtherRegion(String),
}

pub fn ownership(tags: &TagMap, env: &EnvName) -> Ownership {
    if tags.get(MANAGED_BY).map(String::as_str) != Some(MANAGER) {
        return Ownership::Foreign;
    }
    match tags.get(ENV) {
        Some(e) if e == env.as_str() => Ownership::Ours,
        Some(e) => Ownership::OtherEnv(e.clone()),
        None => Ownership::Foreign,
    }
}

/// Who an account-wide resource (IAM role, dashboard) belongs to: the env
/// tags as for any resource, then the region it serves. Without a
/// `payops:region` tag (made by a version before it existed) the caller must
/// prove the region some other way: `Ours` here only says the env matches.
pub fn global_ownership(tags: &TagMap, env: &EnvName, region: &str) -> Ownership {
    match ownership(tags, env) {
        Ownership::Ours => match tags.get(REGION) {
            Some(r) if r != region => Ownership::OtherRegion(r.clone()),
            _ => Ownership::Ours,
        },
        other => other,
    }
}

/// "add tags CostCenter, Name": how a tag fix reads in `status`.
pub fn describe_tag_fix(tags: &TagMap) -> String {
    format!(
        "add tags {}",
        tags.keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The tags every resource of one env gets.
#[derive(Clone, Debug)]
pub struct Tagger {
    env: EnvName,
    cost_center: String,
    /// This run's timestamp, used as `payops:created-at` for what it creates.
    now: String,
    /// `Some` sets `payops:protected`; `None` leaves whatever is there.
    protected: Option<bool>,
}

impl Tagger {
    pub fn new(env: EnvName, cost_center: impl Into<String>, now: impl Into<String>) -> Self {
        Self {
            env,
            cost_center: cost_center.into(),
            now: now.into(),
            protected: None,
        }
    }

    pub fn protect(mut self, protected: Option<bool>) -> Self {
        self.protected = protected;
        self
    }

    pub fn env(&self) -> &EnvName {
        &self.env
    }

    /// Tags for a resource created now by `step`.
    pub fn for_create(&self, step: &str) -> TagMap {
        self.desired(step, None)
    }

    /// The full desired set; `created_at` keeps the first creation time.
    fn desired(&self, step: &str, created_at: Option<&str>) -> TagMap {
        let mut tags = TagMap::from([
            (ENV.into(), self.env.to_string()),
            (STEP.into(), step.into()),
            (MANAGED_BY.into(), MANAGER.into()),
            (
                CREATED_AT.into(),
                created_at.unwrap_or(&self.now).to_owned(),
            ),
            ("Project".into(), "payops".into()),
            ("Environment".into(), self.env.to_string()),
            ("CostCenter".into(), self.cost_center.clone()),
        ]);
        if let Some(protected) = self.protected {
            tags.insert(PROTECTED.into(), protected.to_string());
        }
        tags
    }

    /// Tags to add or overwrite on an existing resource so it carries the
    /// desired set. Tags others added are left alone; `payops:created-at` is
    /// kept as first written. Empty when in sync.
    pub fn missing(&self, step: &str, existing: &TagMap) -> TagMap {
        let created_at = existing.get(CREATED_AT).map(String::as_str);
        self.desired(step, created_at)
            .into_iter()
            .filter(|(k, v)| existing.get(k) != Some(v))
            .collect()
    }
}

/// Turns any SDK's tag list into a map.
pub fn to_map<T>(
    tags: impl IntoIterator<Item = T>,
    kv: impl Fn(&T) -> (Option<&str>, Option<&str>),
) -> TagMap {
    tags.into_iter()
        .filter_map(|t| {
            let (k, v) = kv(&t);
            Some((k?.to_owned(), v.unwrap_or_default().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagger() -> Tagger {
        Tagger::new(
            EnvName::parse("pr1").unwrap(),
            "cc-42",
            "2026-11-23T00:00:00Z",
        )
    }

    #[test]
    fn created_resources_carry_ownership_and_cost_tags() {
        let tags = tagger().for_create("vpc");
        assert_eq!(tags[ENV], "pr1");
        assert_eq!(tags[STEP], "vpc");
        assert_eq!(tags[MANAGED_BY], "payops");
        assert_eq!(tags[CREATED_AT], "2026-11-23T00:00:00Z");
        assert_eq!(tags["Project"], "payops");
        assert_eq!(tags["Environment"], "pr1");
        assert_eq!(tags["CostCenter"], "cc-42");
    }

    #[test]
    fn reconcile_keeps_the_first_creation_time_and_foreign_tags() {
        let mut existing = tagger().for_create("vpc");
        existing.insert(CREATED_AT.into(), "2020-01-01T00:00:00Z".into());
        existing.insert("team".into(), "payments".into());
        assert!(tagger().missing("vpc", &existing).is_empty());
        existing.remove("CostCenter");
        let missing = tagger().missing("vpc", &existing);
        assert_eq!(
            missing,
            TagMap::from([("CostCenter".into(), "cc-42".into())])
        );
    }

    #[test]
    fn protection_is_set_when_asked_and_otherwise_left_as_it_is() {
        let protected = tagger().protect(Some(true));
        assert_eq!(protected.for_create("vpc")[PROTECTED], "true");
        let mut existing = protected.for_create("vpc");
        assert!(
            tagger().missing("vpc", &existing).is_empty(),
            "None keeps it"
        );
        existing.insert(PROTECTED.into(), "true".into());
        let lifted = tagger().protect(Some(false)).missing("vpc", &existing);
        assert_eq!(lifted[PROTECTED], "false");
    }

    #[test]
    fn ownership_requires_both_manager_and_env() {
        let env = EnvName::parse("pr1").unwrap();
        let ours = tagger().for_create("vpc");
        assert_eq!(ownership(&ours, &env), Ownership::Ours);
        let other = Tagger::new(EnvName::parse("pr2").unwrap(), "x", "t").for_create("vpc");
        assert_eq!(ownership(&other, &env), Ownership::OtherEnv("pr2".into()));
        let mut forged = ours.clone();
        forged.remove(MANAGED_BY);
        assert_eq!(ownership(&forged, &env), Ownership::Foreign);
        assert_eq!(ownership(&TagMap::new(), &env), Ownership::Foreign);
    }

    #[test]
    fn an_account_wide_resource_of_another_region_is_not_ours() {
        let env = EnvName::parse("pr1").unwrap();
        let mut tags = tagger().for_create("iam-role:x");
        assert_eq!(global_ownership(&tags, &env, "us-east-1"), Ownership::Ours);
        tags.insert(REGION.into(), "us-east-1".into());
        assert_eq!(global_ownership(&tags, &env, "us-east-1"), Ownership::Ours);
        assert_eq!(
            global_ownership(&tags, &env, "us-west-2"),
            Ownership::OtherRegion("us-east-1".into())
        );
        let other = EnvName::parse("pr2").unwrap();
        assert_eq!(
            global_ownership(&tags, &other, "us-east-1"),
            Ownership::OtherEnv("pr1".into())
        );
    }
}
