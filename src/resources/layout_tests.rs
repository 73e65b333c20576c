//! Guards of the layout: no domain reaches into another domain's files, and
//! the catalog in `docs/resources.md` lists exactly the registry's steps.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::spec::EnvSpec;

/// The domains, each a folder of step kinds with a `register`.
const DOMAINS: [&str; 12] = [
    "security",
    "network",
    "data",
    "events",
    "database",
    "compute",
    "batch",
    "edge",
    "observability",
    "dns",
    "compliance",
    "config",
];
/// Folders that are not domains: step kinds several domains share, SDK
/// helpers, cross-domain reads, and test scaffolding.
const SHARED: [&str; 2] = ["common", "sdk"];
const ABOVE_DOMAINS: [&str; 3] = ["baseline", "inventory", "preflight"];
const TEST_SUPPORT: [&str; 1] = ["testing"];
/// Re-exports of `inventory` at the top of `resources`.
const INVENTORY_REEXPORTS: [&str; 2] = ["discovery", "sweep"];

fn resources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/resources")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level `resources` modules a file names: through
/// `crate::resources::x` (also inside `crate::resources::{x, y::z}`), and
/// through `super::` paths, resolved from where the file sits.
fn named_modules(source: &str, folder: Option<&str>, is_mod_rs: bool) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in source.match_indices("crate::resources::") {
        let rest = &source[i + "crate::resources::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                names.insert(ident(item.trim()));
            }
        } else {
            names.insert(ident(rest));
        }
    }
    // `super::` from a domain's file is its own domain; `super::super::` is
    // the top. From `mod.rs` of a folder, or a top-level file, `super::` is
    // the top.
    let top_prefix = match (folder, is_mod_rs) {
        (Some(_), false) => "super::super::",
        _ => "super::",
    };
    for (i, _) in source.match_indices(top_prefix) {
        if top_prefix == "super::" && source[..i].ends_with("super::") {
            continue;
        }
        names.insert(ident(&source[i + top_prefix.len()..]));
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Which top-level module `name` belongs to, if it is a domain or inventory.
fn layer_of(name: &str) -> Option<&str> {
    if DOMAINS.contains(&name) || ABOVE_DOMAINS.contains(&name) {
        Some(name)
    } else if INVENTORY_REEXPORTS.contains(&name) {
        Some("inventory")
    } else {
        None
    }
}

/// Every import across domains: `(file, the other domain it names)`. A
/// domain may name its own files, `common`, `sdk` and the foundation; shared
/// and foundation files may name no domain; `inventory`, the top `mod.rs`
/// (which composes the domains) and test scaffolding may name any.
fn cross_domain_imports(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for path in files {
        let rel = path.strip_prefix(root).unwrap();
        let folder = (rel.components().count() > 1).then(|| {
            rel.components()
                .next()
                .unwrap()
                .as_os_str()
                .to_str()
                .unwrap()
        });
        let is_mod_rs = rel.file_name().is_some_and(|f| f == "mod.rs");
        let exempt = match folder {
            None => is_mod_rs || rel == Path::new("layout_tests.rs"),
            Some(f) => ABOVE_DOMAINS.contains(&f) || TEST_SUPPORT.contains(&f),
        };
        if exempt {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap();
        for name in named_modules(&source, folder, is_mod_rs) {
            if let Some(layer) = layer_of(&name)
                && Some(layer) != folder
            {
                bad.push((rel.display().to_string(), layer.to_owned()));
            }
        }
    }
    bad
}

#[test]
fn every_folder_is_a_domain_or_a_known_shared_room() {
    let known: BTreeSet<&str> = DOMAINS
        .iter()
        .chain(&SHARED)
        .chain(&ABOVE_DOMAINS)
        .chain(&TEST_SUPPORT)
        .copied()
        .collect();
    for entry in fs::read_dir(resources_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(
                known.contains(name.as_str()),
                "src/resources/{name}/ is new: add it to DOMAINS (a domain with a register()) \
                 or to the shared rooms in layout_tests.rs"
            );
        }
    }
}

#[test]
fn no_domain_imports_another_domains_files() {
    let bad = cross_domain_imports(&resources_dir());
    assert!(
        bad.is_empty(),
        "a domain's files may use another domain's resources only through the step \
         context's outputs; shared vocabulary goes in model.rs, shared step kinds in \
         common/: {bad:#?}"
    );
}

#[test]
fn the_import_guard_sees_every_way_of_naming_another_domain() {
    let root = std::env::temp_dir().join(format!("payops-layout-{}", std::process::id()));
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("mod.rs", "use compute::x;\n");
    write("compute/mod.rs", "use super::edge::listener;\n");
    write(
        "compute/lambda.rs",
        "use super::lambda_code;\nuse crate::resources::{model::Function, observability::alarms};\n",
    );
    write("edge/api.rs", "use super::super::compute::lambda;\n");
    write("sdk/elb.rs", "use crate::resources::edge::listener::SSL;\n");
    write("traffic.rs", "use crate::resources::sweep;\n");
    write(
        "inventory/sweep.rs",
        "use crate::resources::observability::alarms;\n",
    );
    write("testing/elb.rs", "use crate::resources::edge::listener;\n");
    write(
        "network/vpc.rs",
        "use crate::resources::common::iam_role;\nmod tests { use super::*; }\n",
    );
    let bad = cross_domain_imports(&root);
    fs::remove_dir_all(&root).unwrap();
    let bad: Vec<(&str, &str)> = bad.iter().map(|(f, d)| (f.as_str(), d.as_str())).collect();
    assert_eq!(
        bad,
        [
            ("compute/lambda.rs", "observability"),
            ("compute/mod.rs", "edge"),
            ("edge/api.rs", "compute"),
            ("sdk/elb.rs", "edge"),
            ("traffic.rs", "inventory"),
        ]
    );
}

const BEGIN: &str = "<!-- step index: generated from the registry; PAYOPS_UPDATE_DOCS=1 cargo nextest run step_index rewrites it -->";
const END: &str = "<!-- end of step index -->";

/// The step index of `docs/resources.md`, from the registry.
fn step_index() -> String {
    let mut out = format!("{BEGIN}\n\n| # | step | kind | domain |\n| --- | --- | --- | --- |\n");
    for (i, (id, kind, domain)) in super::registry(&EnvSpec::default())
        .catalog()
        .iter()
        .enumerate()
    {
        out.push_str(&format!("| {} | `{id}` | {kind} | {domain} |\n", i + 1));
    }
    out.push('\n');
    out.push_str(END);
    out
}

#[test]
fn the_step_index_in_docs_lists_exactly_the_registrys_steps() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/resources.md");
    let doc = fs::read_to_string(&path).unwrap();
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/resources.md has no step index between `{BEGIN}` and `{END}`");
    };
    let current = &doc[begin..end + END.len()];
    let wanted = step_index();
    if current != wanted && std::env::var_os("PAYOPS_UPDATE_DOCS").is_some() {
        fs::write(&path, doc.replace(current, &wanted)).unwrap();
        return;
    }
    assert!(
        current == wanted,
        "the step index in docs/resources.md is not the registry's: run \
         `PAYOPS_UPDATE_DOCS=1 cargo nextest run step_index` and describe the new steps \
         in the tables above it\n--- in the docs\n{current}\n--- in the registry\n{wanted}"
    );
}
