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

    /// The error codes with which AWS answers a create call that meets what
    /// an earlier attempt of the same call made: the SDK retried a call whose
    /// answer was lost (a 5xx, a reset connection, a timeout), and APIs
    /// without an idempotency token or unique names then answer "already
    /// exists" or "conflict". On such an answer `ensure` looks again and
    /// adopts what it finds (ownership checked as always) instead of failing.
    fn already_exists(&self) -> &'static [&'static str] {
        &[]
    }

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

    /// `create`, or, when AWS answers that the create met what an earlier
    /// attempt made ([`Resource::already_exists`]), what `find` sees now.
    async fn create_or_find(&self, cx: &Context, step: &StepCx<'_>) -> Result<R::Found, AwsError> {
        match self.resource.create(cx, step).await {
            Err(e) if e.is_code(self.resource.already_exists()) => {
                step.progress(format!(
                    "{}: {e}; looking again (a retried call may have made it)",
                    self.resource.kind()
                ));
                self.find_one(cx, step).await?.ok_or(e)
            }
            created => created,
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
                (self.create_or_find(cx, step).await?, Change::Created)
            }
        };
        let mut notes = Vec::new();
        // A fix that creates a part (a route, a NAT gateway for an existing
        // address) can meet what a retried call made as well: then look
        // again and converge from what is there, once.
        let mut looked_again = false;
        'converge: loop {
            for fix in r.diff(cx, step, &found).await? {
                let note = fix.to_string();
                step.progress(&note);
                match r.fix(cx, step, &mut found, fix).await {
                    Ok(()) => {}
                    Err(e) if !looked_again && e.is_code(r.already_exists()) => {
                        step.progress(format!("{note}: {e}; looking again"));
                        found = self.find_one(cx, step).await?.ok_or(e)?;
                        looked_again = true;
                        continue 'converge;
                    }
                    Err(e) => return Err(e.into()),
                }
                if change == Change::Unchanged {
                    change = Change::Updated;
                }
                notes.push(note);
            }
            break;
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::resources::testing;

    /// A resource whose AWS is a list of answers: what `find` sees on each
    /// call, and what `create` and `fix` answer.
    struct Scripted {
        finds: Mutex<Vec<Vec<&'static str>>>,
        create: Result<&'static str, &'static str>,
        fix: Mutex<Vec<Result<(), &'static str>>>,
        drift: bool,
    }

    fn api_error(code: &'static str) -> AwsError {
        AwsError::Api {
            op: "test:Create",
            code: Some(code.into()),
            message: "answered by the retry of a call whose first answer was lost".into(),
        }
    }

    #[async_trait]
    impl Resource for Scripted {
        type Found = &'static str;
        type Fix = String;

        fn kind(&self) -> &'static str {
            "test:thing"
        }

        fn already_exists(&self) -> &'static [&'static str] {
            &["AlreadyExists"]
        }

        async fn find(&self, _: &Context, _: &StepCx<'_>) -> Result<Vec<&'static str>, AwsError> {
            let mut finds = self.finds.lock().unwrap();
            Ok(if finds.len() > 1 {
                finds.remove(0)
            } else {
                finds[0].clone()
            })
        }

        fn describe(&self, found: &&'static str) -> String {
            (*found).to_owned()
        }

        async fn create(&self, _: &Context, _: &StepCx<'_>) -> Result<&'static str, AwsError> {
            self.create.map_err(api_error)
        }

        async fn diff(
            &self,
            _: &Context,
            _: &StepCx<'_>,
            _: &&'static str,
        ) -> Result<Vec<String>, AwsError> {
            let pending = !self.fix.lock().unwrap().is_empty();
            Ok(if self.drift && pending {
                vec!["add the part".into()]
            } else {
                vec![]
            })
        }

        async fn fix(
            &self,
            _: &Context,
            _: &StepCx<'_>,
            _: &mut &'static str,
            _: String,
        ) -> Result<(), AwsError> {
            self.fix.lock().unwrap().remove(0).map_err(api_error)
        }

        fn record(&self, _: &Context, found: &&'static str) -> Record {
            Record::default().output("Id", *found)
        }

        async fn delete(
            &self,
            _: &Context,
            _: &StepCx<'_>,
            _: &'static str,
        ) -> Result<Vec<String>, AwsError> {
            Ok(vec![])
        }
    }

    fn scripted(
        finds: Vec<Vec<&'static str>>,
        create: Result<&'static str, &'static str>,
        fix: Vec<Result<(), &'static str>>,
    ) -> Scripted {
        Scripted {
            drift: !fix.is_empty(),
            finds: Mutex::new(finds),
            create,
            fix: Mutex::new(fix),
        }
    }

    #[tokio::test]
    async fn a_create_that_met_its_own_earlier_attempt_adopts_what_find_sees() {
        let cx = testing::context(testing::clients());
        let r = scripted(vec![vec![], vec!["thing-1"]], Err("AlreadyExists"), vec![]);
        let applied = testing::ensure(&cx, "thing", r, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["Id"], "thing-1");
    }

    #[tokio::test]
    async fn already_exists_with_nothing_of_ours_to_find_is_the_error_it_was() {
        let cx = testing::context(testing::clients());
        let r = scripted(vec![vec![]], Err("AlreadyExists"), vec![]);
        let err = testing::ensure(&cx, "thing", r, &[]).await.unwrap_err();
        assert!(err.to_string().contains("AlreadyExists"), "{err}");
        // Any other error is not looked into.
        let r = scripted(vec![vec![], vec!["thing-1"]], Err("LimitExceeded"), vec![]);
        let err = testing::ensure(&cx, "thing", r, &[]).await.unwrap_err();
        assert!(err.to_string().contains("LimitExceeded"), "{err}");
    }

    #[tokio::test]
    async fn a_fix_that_met_its_own_earlier_attempt_converges_from_what_is_there() {
        let cx = testing::context(testing::clients());
        let r = scripted(
            vec![vec!["thing-1"]],
            Ok("unused"),
            vec![Err("AlreadyExists"), Ok(())],
        );
        let applied = testing::ensure(&cx, "thing", r, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Updated);
        // Looked again once only: a second conflict is an error.
        let r = scripted(
            vec![vec!["thing-1"]],
            Ok("unused"),
            vec![Err("AlreadyExists"), Err("AlreadyExists")],
        );
        assert!(testing::ensure(&cx, "thing", r, &[]).await.is_err());
    }
}
