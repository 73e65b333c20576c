//! `payops graph`: the steps and the reason for every edge, without AWS.

use anyhow::Result;

use crate::cli::GraphArgs;
use crate::naming::EnvName;
use crate::resources;
use crate::settings::Settings;
use crate::ui::Printer;

use super::ExitStatus;

pub fn graph(settings: &Settings, printer: Printer, args: GraphArgs) -> Result<ExitStatus> {
    // The shape is env-independent except for per-env settings; use the defaults'.
    let env = EnvName::parse("example").expect("valid");
    let spec = settings.spec(&env, &args.shape, &Default::default())?;
    let graph = resources::graph(&spec)?;
    let mut out = String::new();
    if args.dot {
        out.push_str("digraph payops {\n  rankdir=LR;\n  node [shape=box];\n");
        for step in graph.steps() {
            for dep in step.dependencies() {
                out.push_str(&format!(
                    "  \"{}\" -> \"{}\" [tooltip=\"{}\"];\n",
                    dep.on,
                    step.id(),
                    dep.reason.replace('"', "'")
                ));
            }
        }
        out.push_str("}\n");
    } else if printer.json_mode() {
        let steps: Vec<_> = graph
            .steps()
            .map(|s| {
                serde_json::json!({
                    "step": s.id().as_str(),
                    "kind": s.kind(),
                    "depends_on": s.dependencies().iter().map(|d| serde_json::json!({
                        "step": d.on.as_str(), "reason": d.reason
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        printer.json(&steps)?;
        return Ok(ExitStatus::Success);
    } else {
        // Reasons line up after the longest step id.
        let width = graph
            .steps()
            .map(|s| s.id().as_str().len())
            .max()
            .unwrap_or(0);
        for i in graph.topological_order() {
            let step = graph.step(i);
            out.push_str(&format!("{} ({})\n", step.id(), step.kind()));
            for dep in step.dependencies() {
                out.push_str(&format!(
                    "    after {:<width$} {}\n",
                    dep.on.as_str(),
                    dep.reason
                ));
            }
        }
    }
    printer.data(&out)?;
    Ok(ExitStatus::Success)
}
