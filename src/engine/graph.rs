//! The dependency graph: steps plus validated edges.

use std::collections::HashMap;

use super::step::{Step, StepId};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("step id {0} is used twice")]
    DuplicateId(StepId),
    #[error("step {step} depends on {on}, which is not in the graph")]
    UnknownDependency { step: StepId, on: StepId },
    #[error("dependency cycle: {}", .0.iter().map(StepId::as_str).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<StepId>),
}

/// Which way a walk goes: `Forward` runs a step after its dependencies (up,
/// plan, status); `Reverse` runs it after its dependents (down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

pub struct Graph<C: ?Sized> {
    steps: Vec<Box<dyn Step<C>>>,
    index: HashMap<StepId, usize>,
    /// deps[i]: indices step i depends on.
    deps: Vec<Vec<usize>>,
    /// dependents[i]: indices that depend on step i.
    dependents: Vec<Vec<usize>>,
}

impl<C: ?Sized + Sync> Graph<C> {
    pub fn new(steps: Vec<Box<dyn Step<C>>>) -> Result<Self, GraphError> {
        let mut index = HashMap::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            if index.insert(step.id().clone(), i).is_some() {
                return Err(GraphError::DuplicateId(step.id().clone()));
            }
        }
        let mut deps = vec![Vec::new(); steps.len()];
        let mut dependents = vec![Vec::new(); steps.len()];
        for (i, step) in steps.iter().enumerate() {
            for dep in step.dependencies() {
                let Some(&j) = index.get(&dep.on) else {
                    return Err(GraphError::UnknownDependency {
                        step: step.id().clone(),
                        on: dep.on.clone(),
                    });
                };
                if !deps[i].contains(&j) {
                    deps[i].push(j);
                    dependents[j].push(i);
                }
            }
        }
        let graph = Self {
            steps,
            index,
            deps,
            dependents,
        };
        graph.check_acyclic()?;
        Ok(graph)
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn steps(&self) -> impl Iterator<Item = &dyn Step<C>> {
        self.steps.iter().map(|s| s.as_ref())
    }

    pub fn step(&self, i: usize) -> &dyn Step<C> {
        self.steps[i].as_ref()
    }

    pub fn position(&self, id: &StepId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The steps that must finish before step `i` may start in `direction`.
    pub fn predecessors(&self, i: usize, direction: Direction) -> &[usize] {
        match direction {
            Direction::Forward => &self.deps[i],
            Direction::Reverse => &self.dependents[i],
        }
    }

    /// The steps that wait on step `i` in `direction`.
    pub fn successors(&self, i: usize, direction: Direction) -> &[usize] {
        match direction {
            Direction::Forward => &self.dependents[i],
            Direction::Reverse => &self.deps[i],
        }
    }

    /// A deterministic topological order (registry order among equals).
    pub fn topological_order(&self) -> Vec<usize> {
        let mut pending: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut order = Vec::with_capacity(self.len());
        let mut done = vec![false; self.len()];
        while order.len() < self.len() {
            let next = (0..self.len())
                .find(|&i| !done[i] && pending[i] == 0)
                .expect("graph is acyclic");
            done[next] = true;
            order.push(next);
            for &d in &self.dependents[next] {
                pending[d] -= 1;
            }
        }
        order
    }

    fn check_acyclic(&self) -> Result<(), GraphError> {
        // Depth-first search with colours; on a back edge, report the cycle.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        fn visit<C: ?Sized + Sync>(
            g: &Graph<C>,
            i: usize,
            marks: &mut [Mark],
            path: &mut Vec<usize>,
        ) -> Result<(), GraphError> {
            marks[i] = Mark::Active;
            path.push(i);
            for &j in &g.deps[i] {
                match marks[j] {
                    Mark::Active => {
                        let start = path.iter().position(|&p| p == j).unwrap_or(0);
                        let mut cycle: Vec<StepId> = path[start..]
                            .iter()
                            .map(|&p| g.steps[p].id().clone())
                            .collect();
                        cycle.push(g.steps[j].id().clone());
                        return Err(GraphError::Cycle(cycle));
                    }
                    Mark::New => visit(g, j, marks, path)?,
                    Mark::Done => {}
                }
            }
            path.pop();
            marks[i] = Mark::Done;
            Ok(())
        }
        let mut marks = vec![Mark::New; self.len()];
        for i in 0..self.len() {
            if marks[i] == Mark::New {
                visit(self, i, &mut marks, &mut Vec::new())?;
            }
        }
        Ok(())
    }
}
