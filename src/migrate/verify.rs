//! Pure verification checks after a move, like the seed's Test Cases 1
//! and 2: the objects are in the target; for a Server, its StatefulSet has
//! the images of the target's ServerConfig (merged with the Server's
//! podSpec) and Pods labelled `seldon-server-name` carry them. No I/O.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::core::desired::{desired, SERVER_NAME_LABEL};
use crate::core::model::{ModelError, Server, ServerConfig};

/// Container name -> image.
pub type Images = BTreeMap<String, String>;

/// One verification check, with its current outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What is checked (`Server seldon-system/mlserver: StatefulSet`).
    pub subject: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The checks still failing when verification gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failing(pub Vec<Check>);

impl std::fmt::Display for Failing {
    /// `subject: detail; subject: detail`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", c.subject, c.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for Failing {}

fn check(subject: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        subject: subject.to_string(),
        ok,
        detail: detail.into(),
    }
}

/// Why the images a Server should get cannot be told.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The Server or its ServerConfig does not read as one.
    #[error(transparent)]
    Object(#[from] ModelError),
    /// The Server names a ServerConfig that is not there.
    #[error("ServerConfig {namespace}/{name} does not exist")]
    NoServerConfig { namespace: String, name: String },
    /// The merged pod spec leaves a container without an image.
    #[error("ServerConfig {namespace}/{name} gives container {container:?} no image")]
    NoImage {
        namespace: String,
        name: String,
        container: String,
    },
}

/// Container name -> image of the pod template the Server should get: its
/// ServerConfig's pod spec merged with the Server's `podSpec`, as the
/// controller (and the webhook) merge them. Errors when the ServerConfig is
/// missing or leaves a container without an image.
pub fn expected_images(server: &Value, config: Option<&Value>) -> Result<Images, ImagesError> {
    let server = Server::from_value(server)?;
    let ns = &server.meta.namespace;
    let Some(config) = config else {
        return Err(ImagesError::NoServerConfig {
            namespace: ns.clone(),
            name: server.server_config.clone(),
        });
    };
    let config = ServerConfig::from_value(config)?;
    let d = desired(&server, &config);
    let mut out = BTreeMap::new();
    for c in d
        .pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        if image.is_empty() {
            return Err(ImagesError::NoImage {
                namespace: ns.clone(),
                name: config.meta.name.clone(),
                container: name.to_string(),
            });
        }
        out.insert(name.to_string(), image.to_string());
    }
    Ok(out)
}

/// Container name -> image of a pod spec.
pub fn images(pod_spec: Option<&Value>) -> Images {
    pod_spec
        .and_then(|p| p.get("containers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                c.get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

/// The containers whose image differs from `want`, as `name=got (want w)`.
fn wrong_images(got: &Images, want: &Images) -> Vec<String> {
    want.iter()
        .filter(|(n, w)| got.get(*n) != Some(*w))
        .map(|(n, w)| match got.get(n) {
            Some(g) if !g.is_empty() => format!("{n}={g} (want {w})"),
            Some(_) => format!("{n} has no image (want {w})"),
            None => format!("{n} missing (want {w})"),
        })
        .collect()
}

/// The object exists in the target.
pub fn present(subject: &str, found: bool) -> Check {
    if found {
        check(subject, true, "present")
    } else {
        check(subject, false, "not found")
    }
}

/// The `uid` of an object's controller ownerReference.
fn controller_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
}

/// The Server's StatefulSet exists, is controlled by this Server (not a
/// leftover of a deleted one of the same name: its ownerReference carries
/// `server_uid`, when given) and has the expected images.
pub fn statefulset(
    subject: &str,
    expected: &Result<Images, ImagesError>,
    sts: Option<&Value>,
    server_uid: &str,
) -> Check {
    let want = match expected {
        Ok(w) => w,
        Err(e) => return check(subject, false, format!("cannot tell the images: {e}")),
    };
    let Some(sts) = sts else {
        return check(subject, false, "no StatefulSet yet");
    };
    if !server_uid.is_empty() && controller_uid(sts) != Some(server_uid) {
        return check(
            subject,
            false,
            format!(
                "the StatefulSet belongs to another Server object (owner uid {:?}), not uid {server_uid}",
                controller_uid(sts).unwrap_or("none")
            ),
        );
    }
    let got = images(sts.pointer("/spec/template/spec"));
    let wrong = wrong_images(&got, want);
    if wrong.is_empty() {
        check(subject, true, format!("images {}", fmt_images(want)))
    } else {
        check(
            subject,
            false,
            format!("wrong images: {}", wrong.join(", ")),
        )
    }
}

/// Pods labelled `seldon-server-name=<server>` and controlled by the
/// StatefulSet (when it has a uid): at least its replicas, each with the
/// expected images in its spec. (Whether they run depends on nodes pulling
/// the images; that is not waited for.)
pub fn pods(
    subject: &str,
    expected: &Result<Images, ImagesError>,
    sts: Option<&Value>,
    pods: &[Value],
) -> Check {
    let Ok(want) = expected else {
        return check(subject, false, "cannot tell the images");
    };
    let Some(sts) = sts else {
        return check(subject, false, "no StatefulSet yet");
    };
    let replicas = sts
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let sts_uid = sts.pointer("/metadata/uid").and_then(Value::as_str);
    let live: Vec<&Value> = pods
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| sts_uid.is_none() || controller_uid(p) == sts_uid)
        .collect();
    let mut bad = Vec::new();
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    for p in &live {
        let name = p
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let wrong = wrong_images(&images(p.get("spec")), want);
        if !wrong.is_empty() {
            bad.push(format!("{name}: {}", wrong.join(", ")));
        }
        let phase = p
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Unknown");
        *phases.entry(phase.to_string()).or_default() += 1;
    }
    let phases = phases
        .iter()
        .map(|(p, n)| format!("{n} {p}"))
        .collect::<Vec<_>>()
        .join(", ");
    if !bad.is_empty() {
        return check(subject, false, format!("wrong images: {}", bad.join("; ")));
    }
    if (live.len() as u64) < replicas {
        return check(
            subject,
            false,
            format!(
                "{} of {replicas} Pod(s) labelled {SERVER_NAME_LABEL}",
                live.len()
            ),
        );
    }
    check(
        subject,
        true,
        format!(
            "{} Pod(s) labelled {SERVER_NAME_LABEL} with the images ({phases})",
            live.len()
        ),
    )
}

fn fmt_images(m: &Images) -> String {
    m.iter()
        .map(|(n, i)| format!("{n}={i}"))
        .collect::<Vec<_>>()
        .join(" ")
}
