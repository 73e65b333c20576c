//! The engine: a dependency graph of steps and a concurrent walk over it.
//! It knows nothing of AWS; steps are generic over the caller's context.

mod cancel;
mod graph;
mod report;
mod step;
mod walk;

#[cfg(test)]
mod tests;

pub use cancel::CancelFlag;
pub use graph::{Direction, Graph, GraphError};
pub use report::{CriticalPath, Outcome, StepCalls, StepReport, WalkReport};
pub use step::{
    Applied, Change, Dependency, MissingInput, Observation, Record, Removed, Step, StepCx,
    StepError, StepEvents, StepId, current_step, in_step,
};
pub use walk::{Operation, WalkObserver, WalkOptions, error_chain, walk};
