//! Compliance: the env's AWS Config rules (managed rules scoped to the
//! env's tag) and the route of their NON_COMPLIANT results to the
//! remediation function (compute's `config-remediation`) and the env's
//! alerts topic. The recorder the rules need is the account baseline's
//! (`baseline/config_recorder.rs`), not the env's: without one the rules
//! step creates nothing and says so.

pub mod compliance_rule;
pub mod config_rules;

use super::model::Function;
use super::registry::{Registry, dep};

pub fn register(r: &mut Registry) {
    r.add_step(config_rules::ConfigRules::new(vec![dep(
        config_rules::DB_KEY_INPUT.0,
        "the RDS storage rule checks that the env's databases are encrypted with this key \
         (its ARN is the rule's kmsKeyId)",
    )]));
    r.add(
        compliance_rule::STEP,
        compliance_rule::ComplianceRule,
        vec![
            dep(
                Function::Remediation.step_id(),
                "the rule's target, which may be invoked for this rule only (down removes the \
                 rule and the function's permission before the function)",
            ),
            dep(
                compliance_rule::TOPIC_INPUT.0,
                "the rule's second target: the raw finding goes to the env's alerts topic",
            ),
            dep(
                config_rules::STEP,
                "the pattern names the env's Config rules (and down stops the route to the \
                 remediation before the rules go)",
            ),
        ],
    );
}
