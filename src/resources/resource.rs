//! The contract each resource file implements, and its adapter to the
//! engine's `Step`.
//!
//! A resource only says how to find, create, compare, fix and delete its
//! things; the adapter turns that into observe / ensure / destroy with the
//! same rules everywhere: one owned instance or an `Ambiguous` error, create
//! then converge (so a run killed after a create resumes the same way),
//! destroy everything the step owns, "already gone" is success.

use std::fmt::Display;

use async_trait::async_trait;

use crate::aws::AwsError;
use crate::engine::{
    Applied, Change, Dependency, Observation, Record, Removed, Step, StepCx, StepError, StepId,
};

use crate::resources::context::Context;

#[async_trait]
pub trait Resource: Send + Sync + 'static {
    /// What `find` returns: the resource as described by AWS.
    type Found: Send + Sync;
    /// One repair `ensure` can make; its `Display` is what `status` shows.
    type Fix: Display + Send + Sync;

    /// A short type name, e.g. `ec2:vpc`.
    fn kind(&self) -> &'static str;

    /// Whether the env's spec wants this resource (false: `up` removes it).
    fn wanted(&self, _cx: &Context) -> bool {
        true
    }

    /// Everything this step owns (recorded ids first, then names or tags),
    /// ownership already checked. Normally zero or one.
    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<Self::Found>, AwsError>;

    /// A human id for messages (`vpc-0abc`).
    fn describe(&self, found: &Self::Found) -> String;

    /// Create it (tagged at creation where the API allows). What `create`
    /// leaves unset, `diff`/`fix` converge right after.
    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<Self::Found, AwsError>;

    /// What differs from the desired shape. Must make no mutating call.
    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &Self::Found,
    ) -> Result<Vec<Self::Fix>, AwsError>;

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut Self::Found,
        fix: Self::Fix,
    ) -> Result<(), AwsError>;

    /// What to record in state and hand to dependents.
    fn record(&self, cx: &Context, found: &Self::Found) -> Record;

    /// Delete it and return once it is gone; returns notes for the summary.
    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: Self::Found,
    ) -> Result<Vec<String>, AwsError>;
}

/// A resource placed in the graph.
pub struct Node<R> {
    id: StepId,
    deps: Vec<Dependency>,
    resource: R,
}

impl<R: Resource> Node<R> {
    pub fn new(id: impl Into<StepId>, resource: R, deps: Vec<Dependency>) -> Self {
        Self {
            id: id.into(),
            deps,
            resource,
        }
    }
}

impl<R: Resource> Node<R> {
    async fn find_one(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<Option<R::Found>, AwsError> {
        let mut found = self.resource.find(cx, step).await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(AwsError::Ambiguous {
                what: self.resource.kind().to_owned(),
                ids: found.iter().map(|f| self.resource.describe(f)).collect(),
            }),
        }
    }

    async fn remove_all(&self, cx: &Context, step: &StepCx<'_>) -> Result<Removed, AwsError> {
        let found = self.resource.find(cx, step).await?;
        if found.is_empty() {
            return Ok(Removed::AlreadyAbsent);
        }
        let mut notes = Vec::new();
        for f in found {
            let id = self.resource.describe(&f);
            step.progress(format!("deleting {id}"));
            let said = self.resource.delete(cx, step, f).await?;
            if said.is_empty() {
                notes.push(format!("deleted {id}"));
            }
            notes.extend(said);
        }
        Ok(Removed::Deleted { notes })
    }
}

#[async_trait]
impl<R: Resource> Step<Context> for Node<R> {
    fn id(&self) -> &StepId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        self.resource.kind()
    }

    fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }

    async fn observe(&self, cx: &Context, step: &StepCx<'_>) -> Result<Observation, StepError> {
        let r = &self.resource;
        let found = self.find_one(cx, step).await?;
        Ok(match (found, r.wanted(cx)) {
            (None, true) => Observation::Missing,
            (None, false) => Observation::NotWanted,
            (Some(f), false) => Observation::Unwanted {
                record: r.record(cx, &f),
            },
            (Some(f), true) => {
                let drift = r.diff(cx, step, &f).await?;
                Observation::Present {
                    record: r.record(cx, &f),
                    drift: drift.iter().map(ToString::to_string).collect(),
                }
            }
        })
    }

    async fn ensure(&self, cx: &Context, step: &StepCx<'_>) -> Result<Applied, StepError> {
        let r = &self.resource;
        if !r.wanted(cx) {
            return Ok(match self.remove_all(cx, step).await? {
                Removed::Deleted { notes } => {
                    Applied::new(Change::Deleted, Record::default()).with_notes(notes)
                }
                Removed::AlreadyAbsent => Applied::new(Change::Unchanged, Record::default()),
            });
        }
        let (mut found, mut change) = match self.find_one(cx, step).await? {
            Some(f) => (f, Change::Unchanged),
            None => {
                step.progress(format!("creating {}", r.kind()));
                (r.create(cx, step).await?, Change::Created)
            }
        };
        let mut notes = Vec::new();
        for fix in r.diff(cx, step, &found).await? {
            let note = fix.to_string();
            step.progress(&note);
            r.fix(cx, step, &mut found, fix).await?;
            if change == Change::Unchanged {
                change = Change::Updated;
            }
            notes.push(note);
        }
        if change == Change::Created {
            notes.insert(0, format!("created {}", r.describe(&found)));
        }
        Ok(Applied::new(change, r.record(cx, &found)).with_notes(notes))
    }

    async fn destroy(&self, cx: &Context, step: &StepCx<'_>) -> Result<Removed, StepError> {
        Ok(self.remove_all(cx, step).await?)
    }
}
