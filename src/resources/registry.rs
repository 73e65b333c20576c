//! The registry: each domain adds its steps, in order, with the reason for
//! every dependency. Registry order is report order (and state files are
//! keyed on the step ids), so a domain appends; it never reorders.

use crate::engine::{Dependency, Step, StepId};

use super::context::Context;
use super::model::{FUNCTION_CONFIG_DOMAINS, parameters_step};
use super::resource::{Node, Resource};

/// A dependency edge with the reason it exists.
pub fn dep(on: impl Into<StepId>, reason: &'static str) -> Dependency {
    Dependency::on(on, reason)
}

/// Edges from a step that lets traffic reach the functions to the steps
/// that publish what the functions read (see `FUNCTION_CONFIG_DOMAINS`).
pub fn function_config_deps() -> Vec<Dependency> {
    FUNCTION_CONFIG_DOMAINS
        .iter()
        .map(|domain| {
            dep(
                parameters_step(domain),
                "the functions it sends traffic to read their configuration from these \
                 parameters and cache it per container, so they are published first",
            )
        })
        .collect()
}

/// Collects the steps in registry order (which is also the order of reports).
#[derive(Default)]
pub struct Registry {
    steps: Vec<Box<dyn Step<Context>>>,
    /// The domain that registered each step, in step order (for the catalog).
    domains: Vec<&'static str>,
    domain: &'static str,
}

impl Registry {
    /// Registers `domain`'s steps.
    pub fn domain(&mut self, domain: &'static str, register: impl FnOnce(&mut Self)) {
        self.domain = domain;
        register(self);
    }

    pub fn add(&mut self, id: impl Into<StepId>, resource: impl Resource, deps: Vec<Dependency>) {
        self.add_step(Node::new(id, resource, deps));
    }

    /// A step that is not a resource (a wait between resources).
    pub fn add_step(&mut self, step: impl Step<Context> + 'static) {
        self.steps.push(Box::new(step));
        self.domains.push(self.domain);
    }

    /// The ids registered so far, grouped by the domain that registered
    /// them, domains in order of first registration.
    pub fn ids_by_domain(&self) -> Vec<(&'static str, Vec<StepId>)> {
        let mut groups: Vec<(&'static str, Vec<StepId>)> = Vec::new();
        for (step, domain) in self.steps.iter().zip(&self.domains) {
            match groups.iter_mut().find(|(d, _)| d == domain) {
                Some((_, ids)) => ids.push(step.id().clone()),
                None => groups.push((domain, vec![step.id().clone()])),
            }
        }
        groups
    }

    /// (step id, kind, domain) of every step, in registry order: the step
    /// index of `docs/resources.md`, which a test keeps in step.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn catalog(&self) -> Vec<(StepId, &'static str, &'static str)> {
        self.steps
            .iter()
            .zip(&self.domains)
            .map(|(s, d)| (s.id().clone(), s.kind(), *d))
            .collect()
    }

    pub fn into_steps(self) -> Vec<Box<dyn Step<Context>>> {
        self.steps
    }
}
