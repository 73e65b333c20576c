//! Whole-account reads across domains: which envs exist (discovery), and
//! what is still tagged or named for an env after `down` (the final sweep).

pub mod discovery;
pub mod sweep;
