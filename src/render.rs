//! `render`: the webhook's answer for files on disk, offline, through the
//! same core as `serve`. For GitOps pipelines and support engineers.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::core::model::{ModelError, Server, ServerConfig};
use crate::core::mutate::{
    decide, scope, Decision, Gvk, Inputs, OnMissing, Operation, Scope, Settings, WorkloadKind,
};

/// A bad input: exit code 2 with this one sentence.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Past [`MAX_INPUT_BYTES`].
    #[error("{} is larger than {} MiB; give one Kubernetes object", path.display(), MAX_INPUT_BYTES >> 20)]
    TooLarge { path: PathBuf },
    /// Not UTF-8.
    #[error("{}: not UTF-8 text: {source}", path.display())]
    NotText {
        path: PathBuf,
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// Not exactly one YAML or JSON document.
    #[error("{}: {source}", path.display())]
    Document {
        path: PathBuf,
        #[source]
        source: DocumentError,
    },
    /// `--statefulset` is some other kind.
    #[error(
        "--statefulset must be an apps/v1 StatefulSet or Deployment, got {api_version:?} {kind:?}"
    )]
    NotAWorkload { api_version: String, kind: String },
    /// `--server` is not a Server.
    #[error("--server: {0}")]
    Server(#[source] ModelError),
    /// `--serverconfig` is not a ServerConfig.
    #[error("--serverconfig: {0}")]
    ServerConfig(#[source] ModelError),
    /// The Server or ServerConfig is in another namespace than the workload.
    #[error("the {what} is in namespace {ns:?} but the {kind} {name:?} is in {namespace:?}; the webhook only uses objects of the workload's own namespace")]
    OtherNamespace {
        what: &'static str,
        ns: String,
        kind: String,
        name: String,
        namespace: String,
    },
    /// The workload's owner reference names another Server.
    #[error(
        "the {kind:?} {name:?} is owned by Server {owner:?}, not by the given Server {server:?}"
    )]
    OtherServer {
        kind: WorkloadKind,
        name: String,
        owner: String,
        server: String,
    },
    /// The Server names another ServerConfig.
    #[error(
        "Server {server:?} uses ServerConfig {uses:?}, but the given ServerConfig is {given:?}"
    )]
    OtherServerConfig {
        server: String,
        uses: String,
        given: String,
    },
    /// The webhook would refuse the workload; the message it would send.
    #[error("{0}")]
    Denied(String),
    /// The core's patch does not apply to its own input (a bug).
    #[error("internal error: the computed patch does not apply: {0}")]
    PatchDoesNotApply(#[source] json_patch::PatchError),
    /// The patch could not be encoded.
    #[error("cannot encode the patch: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Why a file is not exactly one YAML or JSON document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Neither YAML nor JSON, or its aliases expand past the budget.
    #[error("{0}")]
    Syntax(#[source] crate::yaml::YamlError),
    /// A second document follows the first.
    #[error("the file holds more than one document; give exactly one")]
    MoreThanOne,
    /// Only comments or nothing.
    #[error("the file holds no document")]
    Empty,
}

/// What `render` prints.
#[derive(Debug)]
pub struct Rendered {
    /// The fixed object (or the input, unchanged, when out of scope).
    pub object: Value,
    /// The JSON Patch (empty when nothing changes).
    pub patch: Value,
    /// Admission warnings the webhook would return.
    pub warnings: Vec<String>,
}

/// Largest input file `render` reads: a Kubernetes object is at most
/// 1.5 MiB in etcd, and a manifest of one with comments far less.
pub const MAX_INPUT_BYTES: u64 = 4 << 20;

/// Reads one YAML or JSON document from a file (at most
/// [`MAX_INPUT_BYTES`]; a device or pipe that never ends is cut there).
pub fn read_document(path: &Path) -> Result<Value, InputError> {
    let cannot = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|source| InputError::NotText {
        path: path.to_path_buf(),
        source,
    })?;
    parse_document(&text).map_err(|source| InputError::Document {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses one YAML (or JSON, which is YAML) document; stops at the second.
/// Aliases may not expand it past [`crate::yaml::budget`] of its length.
pub fn parse_document(text: &str) -> Result<Value, DocumentError> {
    let mut found: Option<Value> = None;
    for doc in crate::yaml::documents(text) {
        let v = doc.map_err(DocumentError::Syntax)?;
        if v.is_null() {
            continue;
        }
        if found.is_some() {
            return Err(DocumentError::MoreThanOne);
        }
        found = Some(v);
    }
    found.ok_or(DocumentError::Empty)
}

/// Applies the core to a workload, its Server and a ServerConfig: the
/// inputs checked to belong together, then the webhook's decision on a
/// CREATE applied to the workload.
pub fn render(
    workload: &Value,
    server: &Value,
    server_config: &Value,
    controller_namespace: &str,
) -> Result<Rendered, InputError> {
    let gvk = workload_gvk(workload)?;
    let server = Server::from_value(server).map_err(InputError::Server)?;
    let config = ServerConfig::from_value(server_config).map_err(InputError::ServerConfig)?;
    let namespace = same_namespace(workload, gvk.kind, &server, &config)?;
    let settings = Settings {
        controller_namespace: controller_namespace.to_string(),
        on_missing: OnMissing::Deny,
    };
    let scope = scope(
        gvk,
        Operation::Create,
        &namespace,
        Some(workload),
        &settings,
    );
    let Some(kind) = owned_by(workload, scope, &server)? else {
        return Ok(unchanged(workload, vec![]));
    };
    if server.server_config != config.meta.name {
        return Err(InputError::OtherServerConfig {
            server: server.meta.name.clone(),
            uses: server.server_config.clone(),
            given: config.meta.name.clone(),
        });
    }
    let inputs = Inputs {
        server: Some(&server),
        config: Some(&config),
        ..Inputs::default()
    };
    let decision = decide(
        Operation::Create,
        kind,
        &namespace,
        workload,
        inputs,
        &settings,
    );
    applied(workload, decision)
}

/// The workload's group, version and kind: an apps/v1 StatefulSet or
/// Deployment, or an error.
fn workload_gvk(workload: &Value) -> Result<Gvk<'_>, InputError> {
    let api_version = workload
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = workload.get("kind").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    if !(group == "apps" && version == "v1" && matches!(kind, "StatefulSet" | "Deployment")) {
        return Err(InputError::NotAWorkload {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        });
    }
    Ok(Gvk {
        group,
        version,
        kind,
    })
}

/// The workload's namespace (the Server's when the file names none), with
/// the Server and ServerConfig in it too: the webhook only ever uses
/// objects of the workload's own namespace.
fn same_namespace(
    workload: &Value,
    kind: &str,
    server: &Server,
    config: &ServerConfig,
) -> Result<String, InputError> {
    let name = workload
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = workload
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(&server.meta.namespace)
        .to_string();
    for (what, ns) in [
        ("Server", &server.meta.namespace),
        ("ServerConfig", &config.meta.namespace),
    ] {
        if !ns.is_empty() && *ns != namespace {
            return Err(InputError::OtherNamespace {
                what,
                ns: ns.clone(),
                kind: kind.to_string(),
                name: name.to_string(),
                namespace,
            });
        }
    }
    Ok(namespace)
}

/// The workload kind when the scope check finds it owned by the given
/// Server; `None` when it is out of scope; an error when another Server
/// owns it.
fn owned_by(
    workload: &Value,
    scope: Scope,
    server: &Server,
) -> Result<Option<WorkloadKind>, InputError> {
    match scope {
        Scope::Out(_) => Ok(None),
        Scope::In {
            kind,
            server: owner,
        } if owner == server.meta.name => Ok(Some(kind)),
        Scope::In {
            kind,
            server: owner,
        } => Err(InputError::OtherServer {
            kind,
            name: workload
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            owner,
            server: server.meta.name.clone(),
        }),
    }
}

/// The input, unchanged, with the webhook's warnings.
fn unchanged(workload: &Value, warnings: Vec<String>) -> Rendered {
    Rendered {
        object: workload.clone(),
        patch: Value::Array(vec![]),
        warnings,
    }
}

/// The decision applied: the patched workload and the patch, the input
/// unchanged, or the refusal as an error.
fn applied(workload: &Value, decision: Decision) -> Result<Rendered, InputError> {
    match decision {
        Decision::Unchanged { warnings, .. } => Ok(unchanged(workload, warnings)),
        Decision::Patched {
            patch, warnings, ..
        } => {
            let mut object = workload.clone();
            json_patch::patch(&mut object, &patch).map_err(InputError::PatchDoesNotApply)?;
            let patch = serde_json::to_value(&patch).map_err(InputError::Encode)?;
            Ok(Rendered {
                object,
                patch,
                warnings,
            })
        }
        Decision::Denied { message } => Err(InputError::Denied(message)),
    }
}
