//! The single parameters step of earlier payops versions (`ssm-parameters`),
//! which published every output at the end of `up`, and the keeper of the
//! env's parameter path on `down`.
//!
//! Its step keeps the old id, so an old state's record of it still names a
//! step. On `up` each domain's step takes over the parameters it still
//! publishes (it finds them by name and re-tags them with its own step id,
//! values untouched: no window in which a function misses its
//! configuration); what is still tagged for the old step after all of them
//! ran is an output no step produces any more, and this step deletes it.
//! That costs one DescribeParameters on a converged env and writes nothing,
//! so depending on every domain's step holds nothing back.
//!
//! On `down` it runs before the domains' steps (it depends on them) and
//! deletes every parameter of the env's under the path, whichever step's
//! tag it carries: the whole path goes, even a parameter whose other tags
//! drifted (which a domain's step, filtering on all of its tags, would not
//! see).

use async_trait::async_trait;

use crate::aws::AwsError;
use crate::engine::{
    Applied, Change, Dependency, Observation, Record, Removed, Step, StepCx, StepError, StepId,
};
use crate::resources::context::Context;
use crate::tags::{self, TagMap};

use super::ssm_parameters::{delete_names, tagged};

/// The old single step's id (and the tag its parameters carry).
pub const STEP: &str = "ssm-parameters";

pub struct RetiredParameters {
    id: StepId,
    deps: Vec<Dependency>,
}

impl RetiredParameters {
    pub fn new(deps: Vec<Dependency>) -> Self {
        Self {
            id: StepId::from(STEP),
            deps,
        }
    }

    /// The tags that make a parameter the env's: `payops:env` and
    /// `payops:managed-by`, plus the old step's id when `step` is given.
    fn ownership(cx: &Context, step: Option<&str>) -> TagMap {
        let mut wanted = TagMap::from([
            (tags::ENV.to_owned(), cx.env().to_string()),
            (tags::MANAGED_BY.to_owned(), tags::MANAGER.to_owned()),
        ]);
        if let Some(step) = step {
            wanted.insert(tags::STEP.to_owned(), step.to_owned());
        }
        wanted
    }

    /// The old step's parameters that no domain's step took over.
    async fn leftovers(cx: &Context) -> Result<Vec<String>, AwsError> {
        Ok(tagged(cx, &Self::ownership(cx, Some(STEP)))
            .await?
            .into_keys()
            .collect())
    }

    /// Every parameter of the env's under its path.
    async fn all_ours(cx: &Context) -> Result<Vec<String>, AwsError> {
        Ok(tagged(cx, &Self::ownership(cx, None))
            .await?
            .into_keys()
            .collect())
    }

    fn record(names: &[String]) -> Record {
        names.iter().fold(Record::default(), |r, name| {
            r.resource(format!("parameter:{name}"), name)
        })
    }
}

#[async_trait]
impl Step<Context> for RetiredParameters {
    fn id(&self) -> &StepId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "ssm:retired-parameters"
    }

    fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }

    /// Never wanted: unwanted while an older payops' parameters are there.
    async fn observe(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Observation, StepError> {
        let names = Self::leftovers(cx).await?;
        Ok(if names.is_empty() {
            Observation::NotWanted
        } else {
            Observation::Unwanted {
                record: Self::record(&names),
            }
        })
    }

    async fn ensure(&self, cx: &Context, step: &StepCx<'_>) -> Result<Applied, StepError> {
        let names = Self::leftovers(cx).await?;
        if names.is_empty() {
            return Ok(Applied::new(Change::Unchanged, Record::default()));
        }
        step.progress(format!(
            "deleting {} parameters no step publishes any more",
            names.len()
        ));
        delete_names(cx, &names).await?;
        let notes = names
            .iter()
            .map(|n| format!("deleted {n}, an output payops no longer produces"))
            .collect();
        Ok(Applied::new(Change::Deleted, Record::default()).with_notes(notes))
    }

    async fn destroy(&self, cx: &Context, step: &StepCx<'_>) -> Result<Removed, StepError> {
        let names = Self::all_ours(cx).await?;
        if names.is_empty() {
            return Ok(Removed::AlreadyAbsent);
        }
        step.progress(format!("deleting the env's {} parameters", names.len()));
        delete_names(cx, &names).await?;
        Ok(Removed::Deleted {
            notes: vec![format!(
                "deleted the {} parameters under {}",
                names.len(),
                cx.names.parameter_path()
            )],
        })
    }

    /// The final sweep: any parameter of the env's left under the path.
    async fn remains(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Observation, StepError> {
        let names = Self::all_ours(cx).await?;
        Ok(if names.is_empty() {
            Observation::Missing
        } else {
            Observation::Unwanted {
                record: Self::record(&names),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ssm::Client;
    use aws_sdk_ssm::operation::delete_parameters::DeleteParametersOutput;
    use aws_sdk_ssm::operation::describe_parameters::{
        DescribeParametersInput, DescribeParametersOutput,
    };
    use aws_sdk_ssm::types::ParameterMetadata;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    fn filters_step(r: &DescribeParametersInput) -> Option<&str> {
        r.parameter_filters()
            .iter()
            .find(|f| f.key() == "tag:payops:step")
            .map(|f| f.values()[0].as_str())
    }

    /// DescribeParameters answering `legacy` to the old step's filter and
    /// `all` to the env's.
    fn described(legacy: &'static [&'static str], all: &'static [&'static str]) -> [Rule; 2] {
        let page = |names: &'static [&'static str]| {
            names
                .iter()
                .fold(DescribeParametersOutput::builder(), |b, n| {
                    b.parameters(ParameterMetadata::builder().name(*n).build())
                })
                .build()
        };
        [
            mock!(Client::describe_parameters)
                .match_requests(|r| filters_step(r) == Some(STEP))
                .then_output(move || page(legacy)),
            mock!(Client::describe_parameters)
                .match_requests(|r| {
                    filters_step(r).is_none()
                        && r.parameter_filters()
                            .iter()
                            .any(|f| f.key() == "tag:payops:env" && f.values() == ["pr1"])
                })
                .then_output(move || page(all)),
        ]
    }

    fn deletes(names: &'static [&'static str]) -> Rule {
        mock!(Client::delete_parameters)
            .match_requests(move |r| r.names() == names)
            .then_output(|| DeleteParametersOutput::builder().build())
    }

    #[tokio::test]
    async fn a_converged_env_has_nothing_to_retire_and_up_writes_nothing() {
        let [legacy, all] = described(&[], &["/payops/pr1/VpcId"]);
        let mut clients = testing::clients();
        // No DeleteParameters rule: a delete would fail the test.
        clients.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&legacy, &all]);
        let cx = testing::context(clients);
        let (id, events) = (StepId::from(STEP), testing::Events::default());
        let step = RetiredParameters::new(vec![]);
        let cx_step = testing::step_cx(&id, Default::default(), &events);
        assert_eq!(
            step.observe(&cx, &cx_step).await.unwrap(),
            Observation::NotWanted
        );
        let applied = step.ensure(&cx, &cx_step).await.unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(all.num_calls(), 0, "up looks only for the old step's");
    }

    #[tokio::test]
    async fn up_deletes_what_only_the_old_step_still_owns() {
        let [legacy, all] = described(&["/payops/pr1/OldOutput"], &[]);
        let delete = deletes(&["/payops/pr1/OldOutput"]);
        let mut clients = testing::clients();
        clients.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&legacy, &all, &delete]);
        let cx = testing::context(clients);
        let (id, events) = (StepId::from(STEP), testing::Events::default());
        let applied = RetiredParameters::new(vec![])
            .ensure(&cx, &testing::step_cx(&id, Default::default(), &events))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Deleted);
        assert_eq!(delete.num_calls(), 1);
    }

    /// `down` takes the whole path, whichever step's tag a parameter
    /// carries, and the final sweep looks at the whole path too.
    #[tokio::test]
    async fn down_deletes_every_parameter_of_the_env_under_the_path() {
        let [legacy, all] = described(&[], &["/payops/pr1/VpcId", "/payops/pr1/TableName"]);
        // In name order: DescribeParameters' pages are gathered by name.
        let delete = deletes(&["/payops/pr1/TableName", "/payops/pr1/VpcId"]);
        let mut clients = testing::clients();
        clients.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&legacy, &all, &delete]);
        let cx = testing::context(clients);
        let (id, events) = (StepId::from(STEP), testing::Events::default());
        let step = RetiredParameters::new(vec![]);
        let cx_step = testing::step_cx(&id, Default::default(), &events);
        let Observation::Unwanted { record } = step.remains(&cx, &cx_step).await.unwrap() else {
            panic!("the sweep must see the parameters left")
        };
        assert_eq!(record.resources.len(), 2);
        assert!(matches!(
            step.destroy(&cx, &cx_step).await.unwrap(),
            Removed::Deleted { .. }
        ));
        assert_eq!(delete.num_calls(), 1);
    }
}
