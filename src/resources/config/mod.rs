//! Configuration: the env's outputs as SSM parameters, for the functions.

pub mod ssm_parameters;

use super::registry::{Registry, dep};

pub fn register(r: &mut Registry) {
    // Configuration: published last, from everything above.
    let everything = r.ids();
    r.add(
        "ssm-parameters",
        ssm_parameters::Parameters,
        everything
            .into_iter()
            .map(|id| dep(id, "its outputs are published as configuration parameters"))
            .collect(),
    );
}
