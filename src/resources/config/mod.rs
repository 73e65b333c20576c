//! Configuration: the env's outputs as SSM parameters, for the functions.
//!
//! One step per domain publishes that domain's outputs as soon as its steps
//! are done, so the writes spread over the run instead of piling up in one
//! step at the end that waits for everything (the slowest chain, the
//! database's instances, would otherwise hold back every parameter).

pub mod retired_parameters;
pub mod ssm_parameters;

use super::model::parameters_step;
use super::registry::{Registry, dep};

pub fn register(r: &mut Registry) {
    let mut published = Vec::new();
    for (domain, ids) in r.ids_by_domain() {
        let step = parameters_step(domain);
        let resource = if domain == "security" {
            ssm_parameters::Parameters::with_secrets()
        } else if domain == "batch" {
            ssm_parameters::Parameters::outputs_only().wanted_when(|cx| cx.spec.batch.on)
        } else if domain == "dns" {
            ssm_parameters::Parameters::outputs_only().wanted_when(|cx| cx.spec.dns)
        } else {
            ssm_parameters::Parameters::outputs_only()
        };
        let mut deps: Vec<_> = ids
            .into_iter()
            .map(|id| dep(id, "its outputs are published as configuration parameters"))
            .collect();
        if domain == "security" {
            deps.push(dep(
                ssm_parameters::secrets_reader_role(),
                "the card-hash SecureString moves to the parameters key only once the one \
                 function that reads it may decrypt with that key (no failed cold start between)",
            ));
        }
        r.add(step.clone(), resource, deps);
        published.push(step);
    }
    r.add_step(retired_parameters::RetiredParameters::new(
        published
            .into_iter()
            .map(|id| {
                dep(
                    id,
                    "the old single step's parameters are removed only after each domain's step \
                     has taken over the ones it still publishes",
                )
            })
            .collect(),
    ));
}
