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

    /// True for an account-wide resource the env uses but does not own
    /// (a service-linked role): `down` leaves it, so the final sweep does
    /// not count it as left behind.
    fn kept_by_down(&self) -> bool {
        false
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

    /// Several found for this step: the index of the one to keep, when the
    /// others are provably extras that a retried create without an
    /// idempotency token made and nothing uses (e.g. KMS keys no alias points
    /// to). `ensure` then removes the others with `delete_duplicate`. None,
    /// the default: payops does not guess, and reports the ambiguity.
    fn keep_of_duplicates(&self, _found: &[Self::Found]) -> Option<usize> {
        None
    }

    /// True when `create` has no idempotency token and no unique name, so a
    /// retried create whose first answer was lost leaves a second resource:
    /// `ensure` then looks again right after creating and removes the extra
    /// (`keep_of_duplicates`), so the next run finds one and changes nothing.
    fn create_may_duplicate(&self) -> bool {
        false
    }

    /// Removes an extra made by a retried create (see `keep_of_duplicates`):
    /// only what is its own, never what it shares with the one kept.
    async fn delete_duplicate(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: Self::Found,
    ) -> Result<Vec<String>, AwsError> {
        self.delete(cx, step, found).await
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

/// The usual rule for [`Resource::keep_of_duplicates`]: keep the one in use
/// when exactly one is (the others were never handed to anything); none in
/// use, the first (`find` lists the recorded one first, and right after a
/// create both are fresh); several in use: payops does not guess.
pub fn keep_the_one_in_use<T>(found: &[T], in_use: impl Fn(&T) -> bool) -> Option<usize> {
    match found.iter().filter(|f| in_use(f)).count() {
        0 => Some(0),
        1 => found.iter().position(in_use),
        _ => None,
    }
}

/// Orders what `find` listed so that the id an earlier run recorded comes
/// first: the one to keep when several are found and none is in use.
pub fn recorded_first<T>(found: &mut [T], recorded: Option<&str>, id: impl Fn(&T) -> &str) {
    if let Some(recorded) = recorded {
        found.sort_by_key(|f| id(f) != recorded);
    }
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
    /// The one instance of this step, after removing the extras
    /// `keep_of_duplicates` names (what was removed, as notes).
    async fn find_one(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<(Option<R::Found>, Vec<String>), AwsError> {
        let (one, extras) = self.find_one_and_extras(cx, step).await?;
        let mut notes = Vec::new();
        for extra in extras {
            let id = self.resource.describe(&extra);
            step.progress(format!("removing {id}, an extra made by a retried create"));
            self.resource.delete_duplicate(cx, step, extra).await?;
            notes.push(format!("removed {id}, an extra made by a retried create"));
        }
        Ok((one, notes))
    }

    /// The instance to converge, and the extras the resource says may go.
    async fn find_one_and_extras(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<(Option<R::Found>, Vec<R::Found>), AwsError> {
        let mut found = self.resource.find(cx, step).await?;
        if found.len() <= 1 {
            return Ok((found.pop(), Vec::new()));
        }
        match self.resource.keep_of_duplicates(&found) {
            Some(i) if i < found.len() => {
                let keep = found.remove(i);
                Ok((Some(keep), found))
            }
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
                self.find_one(cx, step).await?.0.ok_or(e)
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
            let said = match self.resource.delete(cx, step, f).await {
                Ok(said) => said,
                // A delete whose first answer was lost is retried by the SDK
                // and can meet a half-gone resource (moto answers a retried
                // DeleteVpcEndpoints with its routes' InvalidRoute.NotFound):
                // if it is gone now, it was deleted.
                Err(e) => {
                    let left = self.resource.find(cx, step).await?;
                    if left.iter().any(|g| self.resource.describe(g) == id) {
                        return Err(e);
                    }
                    step.progress(format!("deleting {id}: {e}; it is gone all the same"));
                    Vec::new()
                }
            };
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

    fn wanted(&self, cx: &Context) -> bool {
        self.resource.wanted(cx)
    }

    async fn observe(&self, cx: &Context, step: &StepCx<'_>) -> Result<Observation, StepError> {
        let r = &self.resource;
        let (found, extras) = self.find_one_and_extras(cx, step).await?;
        let extras: Vec<String> = extras
            .iter()
            .map(|e| {
                format!(
                    "remove {}, an extra made by a retried create",
                    r.describe(e)
                )
            })
            .collect();
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
                    drift: extras
                        .into_iter()
                        .chain(drift.iter().map(ToString::to_string))
                        .collect(),
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
        let (found, mut notes) = self.find_one(cx, step).await?;
        let (mut found, mut change) = match found {
            Some(f) if notes.is_empty() => (f, Change::Unchanged),
            Some(f) => (f, Change::Updated),
            None => {
                step.progress(format!("creating {}", r.kind()));
                let mut created = self.create_or_find(cx, step).await?;
                if r.create_may_duplicate()
                    && let (Some(kept), removed) = self.find_one(cx, step).await?
                    && !removed.is_empty()
                {
                    created = kept;
                    notes.extend(removed);
                }
                (created, Change::Created)
            }
        };
        // A fix that creates a part (a route, a NAT gateway for an existing
        // address) can meet what a retried call made as well: then look
        // again and converge from what is there, once per fix (a step of
        // many parts, such as the SSM parameters, can meet several).
        let mut looked_again: Vec<String> = Vec::new();
        'converge: loop {
            for fix in r.diff(cx, step, &found).await? {
                let note = fix.to_string();
                step.progress(&note);
                match r.fix(cx, step, &mut found, fix).await {
                    Ok(()) => {}
                    Err(e) if !looked_again.contains(&note) && e.is_code(r.already_exists()) => {
                        step.progress(format!("{note}: {e}; looking again"));
                        found = self.find_one(cx, step).await?.0.ok_or(e)?;
                        looked_again.push(note);
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

    /// `find` alone: it needs no other step's outputs, `diff` may.
    async fn remains(&self, cx: &Context, step: &StepCx<'_>) -> Result<Observation, StepError> {
        if self.resource.kept_by_down() {
            return Ok(Observation::Missing);
        }
        let found = self.resource.find(cx, step).await?;
        if found.is_empty() {
            return Ok(Observation::Missing);
        }
        let record = found
            .iter()
            .enumerate()
            .fold(Record::default(), |record, (i, f)| {
                record.resource(format!("found-{i}"), self.resource.describe(f))
            });
        Ok(Observation::Unwanted { record })
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
        delete: Result<(), &'static str>,
        keep: Option<usize>,
        removed: std::sync::Arc<Mutex<Vec<&'static str>>>,
        may_duplicate: bool,
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

        fn keep_of_duplicates(&self, _: &[&'static str]) -> Option<usize> {
            self.keep
        }

        fn create_may_duplicate(&self) -> bool {
            self.may_duplicate
        }

        async fn delete_duplicate(
            &self,
            _: &Context,
            _: &StepCx<'_>,
            found: &'static str,
        ) -> Result<Vec<String>, AwsError> {
            self.removed.lock().unwrap().push(found);
            Ok(vec![])
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
            self.delete.map(|()| vec![]).map_err(api_error)
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
            delete: Ok(()),
            keep: None,
            removed: Default::default(),
            may_duplicate: false,
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
        // Looked again once per fix: the same fix meeting a conflict again is an error.
        let r = scripted(
            vec![vec!["thing-1"]],
            Ok("unused"),
            vec![Err("AlreadyExists"), Err("AlreadyExists")],
        );
        assert!(testing::ensure(&cx, "thing", r, &[]).await.is_err());
    }

    /// After `down` the steps a comparison reads from are gone, and several
    /// of one step's resources are what the sweep must report, not refuse.
    #[tokio::test]
    async fn the_sweep_reports_everything_found_without_comparing() {
        let cx = testing::context(testing::clients());
        let id = StepId::from("thing");
        let events = testing::Events::default();
        let step = testing::step_cx(&id, Default::default(), &events);
        let mut r = scripted(vec![vec!["thing-1", "thing-2"]], Ok("unused"), vec![]);
        // A comparison would fail: the sweep must not make one.
        r.drift = true;
        r.fix = Mutex::new(vec![Err("MissingInput")]);
        let Observation::Unwanted { record } = Node::new("thing", r, vec![])
            .remains(&cx, &step)
            .await
            .unwrap()
        else {
            panic!("both are leftovers");
        };
        let found: Vec<&str> = record.resources.values().map(String::as_str).collect();
        assert_eq!(found, ["thing-1", "thing-2"]);
        let none = scripted(vec![vec![]], Ok("unused"), vec![]);
        assert!(matches!(
            Node::new("thing", none, vec![])
                .remains(&cx, &step)
                .await
                .unwrap(),
            Observation::Missing
        ));
    }

    #[test]
    fn the_one_in_use_is_kept_else_the_recorded_one_and_two_in_use_are_not_guessed() {
        let mut found = vec![("a", false), ("b", true)];
        assert_eq!(keep_the_one_in_use(&found, |f| f.1), Some(1));
        found[1].1 = false;
        recorded_first(&mut found, Some("b"), |f| f.0);
        assert_eq!(found[keep_the_one_in_use(&found, |f| f.1).unwrap()].0, "b");
        assert_eq!(keep_the_one_in_use(&[true, true], |f| *f), None);
    }

    #[tokio::test]
    async fn a_delete_that_errs_but_left_nothing_behind_is_a_delete() {
        let cx = testing::context(testing::clients());
        let mut r = scripted(vec![vec!["thing-1"], vec![]], Ok("unused"), vec![]);
        r.delete = Err("InvalidRoute.NotFound");
        let removed = testing::destroy(&cx, "thing", r).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }), "{removed:?}");
        // Still there: the error stands.
        let mut r = scripted(vec![vec!["thing-1"]], Ok("unused"), vec![]);
        r.delete = Err("DependencyViolation");
        let err = testing::destroy(&cx, "thing", r).await.unwrap_err();
        assert!(err.to_string().contains("DependencyViolation"), "{err}");
    }

    #[tokio::test]
    async fn extras_a_resource_vouches_for_are_drift_then_removed_and_others_are_ambiguous() {
        let cx = testing::context(testing::clients());
        let removed = std::sync::Arc::new(Mutex::new(Vec::new()));
        let vouching = || {
            let mut r = scripted(vec![vec!["key-a", "key-b"]], Ok("unused"), vec![]);
            r.keep = Some(1);
            r.removed = removed.clone();
            r
        };
        let Observation::Present { drift, record } =
            testing::observe(&cx, "thing", vouching(), &[])
                .await
                .unwrap()
        else {
            panic!("present");
        };
        assert_eq!(drift, ["remove key-a, an extra made by a retried create"]);
        assert_eq!(record.outputs["Id"], "key-b");
        assert!(
            removed.lock().unwrap().is_empty(),
            "observe changes nothing"
        );
        let applied = testing::ensure(&cx, "thing", vouching(), &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(*removed.lock().unwrap(), ["key-a"]);
        assert_eq!(applied.record.outputs["Id"], "key-b");
        // Without the resource's word, payops does not guess.
        let r = scripted(vec![vec!["key-a", "key-b"]], Ok("unused"), vec![]);
        let err = testing::ensure(&cx, "thing", r, &[]).await.unwrap_err();
        assert!(err.to_string().contains("expected one"), "{err}");
    }

    #[tokio::test]
    async fn a_tokenless_create_looks_again_and_removes_what_its_lost_first_attempt_made() {
        let cx = testing::context(testing::clients());
        let mut r = scripted(
            vec![vec![], vec!["key-new", "key-extra"]],
            Ok("key-new"),
            vec![],
        );
        r.keep = Some(0);
        r.may_duplicate = true;
        let removed = r.removed.clone();
        let applied = testing::ensure(&cx, "thing", r, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(*removed.lock().unwrap(), ["key-extra"]);
        assert_eq!(applied.record.outputs["Id"], "key-new");
    }
}
