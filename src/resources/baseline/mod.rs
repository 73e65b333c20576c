//! The account baseline: what one account and region holds once, shared by
//! every env there (GuardDuty's detector today; the Config recorder, X-Ray's
//! encryption setting and API Gateway's logging role belong here too).
//!
//! These are not env steps: an env's graph owns what carries its
//! `payops:env` tag and `down` removes all of it, while a singleton may
//! predate payops (another team's) and must outlive every env. So each item
//! is found from AWS alone, adopted when it exists, created only when it
//! does not, and tagged only when payops created it: the tag is the record of
//! ownership that survives a fresh machine (see docs/architecture.md).

pub mod guardduty;

use serde::Serialize;

/// Who an existing baseline item belongs to, by its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// Tagged by payops when it created it: `baseline down` removes it.
    Payops,
    /// Found without payops' tag: someone else's, never changed without the
    /// operator's consent and never deleted.
    Adopted,
}

/// The tag payops puts on a baseline item it created, beside
/// `payops:managed-by=payops`. Baseline items carry no `payops:env`, so env
/// discovery, an env's final sweep and `destroy-all` never see them.
pub const SCOPE_TAG: &str = "payops:scope";
pub const SCOPE: &str = "account-baseline";

/// What one baseline item looks like now, and what a command did to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemReport {
    /// e.g. `guardduty-detector`.
    pub item: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Absent when the item does not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// What the item is doing: e.g. `enabled`, `suspended`, `absent`.
    pub state: String,
    /// What the command did: `created`, `adopted`, `updated`, `in-sync`,
    /// `deleted`, `kept`, `absent`, `refused` or, for `status`, `observed`.
    pub action: &'static str,
    /// Anything the operator should know (a suspended detector, a setting
    /// left as another team chose it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}
