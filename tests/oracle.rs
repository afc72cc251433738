//! `render` against what Seldon's own operator code builds: for every case
//! folder of Seldon's output (2.9.1 StatefulSets, 2.10.2 Deployments),
//! `render` of the stock controller's workload with the case's Server and
//! ServerConfig must equal the namespace-aware build `expected.json`,
//! compared as the data's README says: `metadata.labels`,
//! `metadata.annotations` and `spec`, without this tool's
//! `serverconfig-webhook/*` keys and the controller's
//! `seldon.io/last-applied`, after the project's own defaulting of both
//! sides. The pod template is also compared with `expected.defaulted.json`,
//! what kube-apiserver 1.33 stores, which checks the defaulting port.
//!
//! The cases come from `tests/fixtures/oracle/` (the project's copy) and,
//! where it exists, from `../shared/seldon-oracle/` (every folder there,
//! including any the copy lacks; a case in both must be identical). One
//! test per folder, named after it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Map, Value};
use serverconfig_webhook::core::defaults::{default_pod_spec, default_pvc_spec, normalize};
use serverconfig_webhook::render::{read_document, render};

/// The sets of cases: StatefulSets (2.9.1) and Deployments (2.10.2).
const SETS: &[&str] = &["v2.9.1", "v2.10.2-deployment"];
/// Files a case needs.
const FILES: &[&str] = &[
    "server.yaml",
    "serverconfig.yaml",
    "stock-workload.yaml",
    "expected.json",
    "expected.defaulted.json",
];

fn main() {
    let args = Arguments::from_args();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = repo.join("tests/fixtures/oracle");
    let shared = repo.join("../shared/seldon-oracle");
    let mut cases: BTreeMap<String, (PathBuf, Option<PathBuf>)> = BTreeMap::new();
    for set in SETS {
        for (root, is_shared) in [(&copy, false), (&shared, true)] {
            for dir in case_dirs(&root.join(set)) {
                let name = format!(
                    "oracle-{set}-{}",
                    dir.file_name().and_then(|n| n.to_str()).unwrap_or("?")
                );
                let entry = cases.entry(name).or_insert_with(|| (dir.clone(), None));
                if is_shared {
                    // the shared folder is the reference; the copy must match it
                    let ours = std::mem::replace(&mut entry.0, dir);
                    entry.1 = (ours != entry.0).then_some(ours);
                }
            }
        }
    }
    let trials = cases
        .into_iter()
        .map(|(name, (dir, copy))| Trial::test(name, move || check_case(&dir, copy.as_deref())))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// The case folders under `set` (none when it does not exist).
fn case_dirs(set: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(set) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn check_case(dir: &Path, copy: Option<&Path>) -> Result<(), Failed> {
    if let Some(copy) = copy {
        for f in FILES {
            if std::fs::read(dir.join(f)).ok() != std::fs::read(copy.join(f)).ok() {
                return Err(format!(
                    "{f} differs between {} and the project's copy {}",
                    dir.display(),
                    copy.display()
                )
                .into());
            }
        }
    }
    let read = |f: &str| read_document(&dir.join(f)).map_err(|e| Failed::from(e.to_string()));
    let stock = read("stock-workload.yaml")?;
    let server = read("server.yaml")?;
    let config = read("serverconfig.yaml")?;
    let expected = read("expected.json")?;
    let stored = read("expected.defaulted.json")?;
    let rendered = render(&stock, &server, &config, "seldon-system")
        .map_err(|e| Failed::from(format!("render refused the case: {e}")))?
        .object;
    let mut problems = Vec::new();
    for part in ["/metadata/labels", "/metadata/annotations"] {
        let (got, want) = (
            without_own_keys(&rendered, part),
            without_own_keys(&expected, part),
        );
        if got != want {
            problems.push(format!("{part}: render {got:?}\n  Seldon {want:?}"));
        }
    }
    let (got, want) = (defaulted_spec(&rendered), defaulted_spec(&expected));
    if got != want {
        problems.push(format!("spec differs:\n{}", difference(&got, &want)));
    }
    let template = |v: &Value| {
        normalize(
            &defaulted_spec(v)
                .pointer("/template/spec")
                .cloned()
                .unwrap_or(Value::Null),
        )
    };
    let stored_template = normalize(
        stored
            .pointer("/spec/template/spec")
            .unwrap_or(&Value::Null),
    );
    if template(&rendered) != stored_template {
        problems.push(format!(
            "pod template differs from what kube-apiserver stores (expected.defaulted.json):\n{}",
            difference(&template(&rendered), &stored_template)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// A string map without this tool's keys and `seldon.io/last-applied`.
fn without_own_keys(object: &Value, path: &str) -> BTreeMap<String, String> {
    object
        .pointer(path)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with("serverconfig-webhook/") && *k != "seldon.io/last-applied")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// `spec` with the project's defaulting applied to the pod template and
/// the claim templates, its template metadata without this tool's keys,
/// normalised.
fn defaulted_spec(object: &Value) -> Value {
    let mut spec = object.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(pod) = spec
        .pointer_mut("/template/spec")
        .and_then(Value::as_object_mut)
    {
        default_pod_spec(pod);
    }
    if let Some(vcts) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for v in vcts {
            if let Some(s) = v.get_mut("spec").and_then(Value::as_object_mut) {
                default_pvc_spec(s);
            }
            if let Some(m) = v.as_object_mut() {
                m.remove("status");
                m.remove("apiVersion");
                m.remove("kind");
            }
        }
    }
    for part in ["labels", "annotations"] {
        let path = format!("/template/metadata/{part}");
        let kept = without_own_keys(&spec, &path);
        if let Some(meta) = spec
            .pointer_mut("/template/metadata")
            .and_then(Value::as_object_mut)
        {
            meta.insert(
                part.into(),
                Value::Object(
                    kept.into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect::<Map<_, _>>(),
                ),
            );
        }
    }
    normalize(&spec)
}

/// The first paths where two values differ, for the failure message.
fn difference(got: &Value, want: &Value) -> String {
    let patch = json_patch::diff(want, got);
    patch
        .0
        .iter()
        .take(12)
        .map(|op| {
            format!(
                "  render vs Seldon: {}",
                serde_json::to_string(op).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
