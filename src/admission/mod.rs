//! From an AdmissionReview body to an AdmissionReview answer: parses with
//! `kube::core::admission`, checks scope cheaply, gathers the lookups, asks
//! the pure core, and logs one structured line per decision.

use std::sync::Arc;
use std::time::Instant;

mod raw;

use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOp,
};

use crate::cache::desired::DesiredCache;
use crate::cache::Caches;

use crate::core::bounds::{check_json, Limits};
use crate::core::model::{Server, ServerConfig};
use crate::core::mutate::{decide, scope, Decision, Gvk, Inputs, Operation, Scope, Settings};
use crate::core::names::is_valid_name;
use crate::metrics::Metrics;
pub use raw::RawObject;

/// Everything the handler needs, shared by all requests.
pub struct Admission {
    pub settings: Settings,
    pub caches: Arc<Caches>,
    pub metrics: Arc<Metrics>,
    /// The desired workload per Server, reused while neither the Server nor
    /// its ServerConfig changes (keyed by their uid and resourceVersion).
    pub desired: DesiredCache,
}

/// The HTTP-independent answer: status code and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

fn invalid(status: u16, message: String, metrics: &Metrics, started: Instant) -> Answer {
    metrics.admission("invalid", started.elapsed().as_secs_f64());
    tracing::warn!(outcome = "invalid", reason = %elide_quoted(&message), "rejected malformed admission review");
    let review = AdmissionResponse::invalid(message).into_review();
    Answer {
        status,
        body: serde_json::to_vec(&review).unwrap_or_default(),
    }
}

/// The message with every quoted piece ("…" or `…`) elided: parse errors
/// quote pieces of the body, which may be secrets, and the log must not
/// carry them (the client still gets the full message).
fn elide_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' || c == '`' {
            let mut escaped = false;
            for q in chars.by_ref() {
                if q == c && !escaped {
                    out.push('…');
                    out.push(c);
                    break;
                }
                escaped = q == '\\' && !escaped;
            }
        }
    }
    out
}

impl Admission {
    /// Answers one review body.
    pub async fn review(&self, body: &[u8]) -> Answer {
        let started = Instant::now();
        // JSON is UTF-8; `from_slice` skips the strings of ignored fields
        // without checking them (found by fuzzing), so check first.
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(e) => {
                return invalid(
                    400,
                    format!("request body is not an AdmissionReview: not UTF-8: {e}"),
                    &self.metrics,
                    started,
                )
            }
        };
        let review: AdmissionReview<RawObject> = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                return invalid(
                    400,
                    format!("request body is not an AdmissionReview: {e}"),
                    &self.metrics,
                    started,
                )
            }
        };
        if review.types.api_version != "admission.k8s.io/v1"
            || review.types.kind != "AdmissionReview"
        {
            return invalid(
                400,
                format!(
                    "expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got {:?} {:?}",
                    review.types.api_version, review.types.kind
                ),
                &self.metrics,
                started,
            );
        }
        let mut req: AdmissionRequest<RawObject> = match review.try_into() {
            Ok(r) => r,
            Err(_) => {
                return invalid(
                    400,
                    "the AdmissionReview has no request".into(),
                    &self.metrics,
                    started,
                )
            }
        };
        let object = req.object.take();
        let old_object = req.old_object.take();
        let (response, outcome) = self.respond(&req, object, old_object).await;
        self.metrics
            .admission(outcome, started.elapsed().as_secs_f64());
        let body = encode_review(response);
        Answer { status: 200, body }
    }

    async fn respond(
        &self,
        req: &AdmissionRequest<RawObject>,
        object: Option<RawObject>,
        old_object: Option<RawObject>,
    ) -> (AdmissionResponse, &'static str) {
        let base = AdmissionResponse::from(req);
        let operation = match req.operation {
            KubeOp::Create => Operation::Create,
            KubeOp::Update => Operation::Update,
            _ => Operation::Other,
        };
        let namespace = req.namespace.clone().unwrap_or_default();
        let (kind, server_name) = match self.scope_of(req, operation, &namespace, object.as_ref()) {
            Scope::Out(reason) => {
                tracing::debug!(uid = %req.uid, namespace, name = %req.name, reason, "out of scope");
                return (base, "out_of_scope");
            }
            Scope::In { kind, server } => (kind, server),
        };
        // In scope: within the size bounds, and only then a tree (the raw
        // text goes as soon as the tree is built).
        let object = match object.map(|o| parse_bounded(&o, "object")) {
            Some(Ok(v)) => v,
            Some(Err(message)) => return (base.deny(message), "denied"),
            None => {
                return (
                    base.deny("serverconfig-webhook: the request's object could not be read"),
                    "denied",
                )
            }
        };
        // The stored object (UPDATE only) keeps immutable fields and the
        // keys a placeholder copied into the template.
        let old_value = match (operation, old_object) {
            (Operation::Update, Some(o)) => match parse_bounded(&o, "oldObject") {
                Ok(v) => Some(v),
                Err(message) => return (base.deny(message), "denied"),
            },
            _ => None,
        };
        let looked_up = self.look_up(&namespace, &server_name).await;
        if let Some(message) = looked_up.server_error() {
            return self.finish(req, base, Decision::Denied { message }, &namespace);
        }
        let config_err_text = looked_up.config_error();
        let inputs = Inputs {
            server: looked_up.server(),
            config: looked_up.config(),
            config_error: config_err_text.as_deref(),
            controller_config: looked_up.controller_config(),
            old_object: old_value.as_ref(),
            desired: looked_up.desired.as_deref(),
        };
        let decision = decide(operation, kind, &namespace, &object, inputs, &self.settings);
        self.finish(req, base, decision, &namespace)
    }

    /// The cheap scope check, on the kind, operation, namespace and owner
    /// references only.
    fn scope_of(
        &self,
        req: &AdmissionRequest<RawObject>,
        operation: Operation,
        namespace: &str,
        object: Option<&RawObject>,
    ) -> Scope {
        if req.sub_resource.is_some() {
            return Scope::Out("subresource");
        }
        let gvk = Gvk {
            group: &req.kind.group,
            version: &req.kind.version,
            kind: &req.kind.kind,
        };
        let owners = object
            .map(|o| serde_json::json!({"metadata": {"ownerReferences": o.owner_references()}}));
        scope(gvk, operation, namespace, owners.as_ref(), &self.settings)
    }

    /// The Server, its ServerConfig and the controller namespace's, from the
    /// caches (a direct GET on a miss); names that are not Kubernetes
    /// names are never looked up (the core refuses them).
    async fn look_up(&self, namespace: &str, server_name: &str) -> LookedUp {
        let caches = &self.caches;
        let mut found = LookedUp::default();
        if !is_valid_name(server_name) {
            return found;
        }
        found.server = caches.server(namespace, server_name).await;
        let Some(s) = found.server() else {
            return found;
        };
        let sc_name = s.server_config.clone();
        if !is_valid_name(&sc_name) {
            return found;
        }
        // What was built from this Server and ServerConfig version before,
        // if anything: then the ServerConfig is not parsed.
        let built = caches
            .server_config_version(namespace, &sc_name)
            .and_then(|rv| self.desired.cached(s, &rv));
        if built.is_none() {
            found.config = caches.server_config(namespace, &sc_name).await;
        }
        found.controller_config =
            caches.cached_server_config(&self.settings.controller_namespace, &sc_name);
        found.desired = match (built, found.config()) {
            (Some(d), _) => Some(d),
            (None, Some(c)) => found.server().map(|s| self.desired.get(s, c)),
            _ => None,
        };
        found
    }

    fn finish(
        &self,
        req: &AdmissionRequest<RawObject>,
        base: AdmissionResponse,
        decision: Decision,
        namespace: &str,
    ) -> (AdmissionResponse, &'static str) {
        let outcome = decision.outcome();
        let dry_run = req.dry_run;
        match decision {
            Decision::Unchanged { reason, warnings } => {
                tracing::info!(uid = %req.uid, namespace, name = %req.name, kind = %req.kind.kind,
                    operation = ?req.operation, dry_run, outcome, reason, warnings = warnings.len(), "admission");
                (with_warnings(base, warnings), outcome)
            }
            Decision::Patched {
                patch,
                source,
                hash,
                warnings,
            } => {
                tracing::info!(uid = %req.uid, namespace, name = %req.name, kind = %req.kind.kind,
                    operation = ?req.operation, dry_run, outcome, source, hash, ops = patch.0.len(), "admission");
                match base.clone().with_patch(patch) {
                    Ok(r) => (with_warnings(r, warnings), outcome),
                    Err(e) => (
                        base.deny(format!("serverconfig-webhook: could not encode patch: {e}")),
                        "denied",
                    ),
                }
            }
            Decision::Denied { message } => {
                tracing::info!(uid = %req.uid, namespace, name = %req.name, kind = %req.kind.kind,
                    operation = ?req.operation, dry_run, outcome, message, "admission");
                (base.deny(message), outcome)
            }
        }
    }
}

/// What [`Admission::look_up`] found.
#[derive(Default)]
struct LookedUp {
    server: crate::cache::Lookup<Server>,
    config: crate::cache::Lookup<ServerConfig>,
    controller_config: crate::cache::Lookup<ServerConfig>,
    desired: Option<std::sync::Arc<crate::core::desired::Desired>>,
}

impl LookedUp {
    fn server(&self) -> Option<&Server> {
        self.server.as_deref().and_then(|r| r.as_ref().ok())
    }

    /// Why the Server found could not be read.
    fn server_error(&self) -> Option<String> {
        match self.server.as_deref() {
            Some(Err(e)) => Some(format!("serverconfig-webhook: {e}")),
            _ => None,
        }
    }

    fn config(&self) -> Option<&ServerConfig> {
        self.config.as_deref().and_then(|r| r.as_ref().ok())
    }

    fn config_error(&self) -> Option<String> {
        match self.config.as_deref() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    fn controller_config(&self) -> Option<&ServerConfig> {
        self.controller_config
            .as_deref()
            .and_then(|r| r.as_ref().ok())
    }
}

/// The object as a JSON tree, if it is within the size bounds; else the
/// denial naming what is too large.
fn parse_bounded(o: &RawObject, what: &str) -> Result<serde_json::Value, String> {
    check_json(o.text(), Limits::default())
        .map_err(|e| format!("serverconfig-webhook: the request's {what} is too large for a Seldon Server workload: {e}"))?;
    serde_json::from_str(o.text())
        .map_err(|e| format!("serverconfig-webhook: the request's {what} could not be read: {e}"))
}

fn with_warnings(mut r: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        r.warnings = Some(warnings);
    }
    r
}

/// Encodes the answer. kube-core writes `patch` (a Go `[]byte`) as a JSON
/// array of numbers; the API server also reads the standard form, a base64
/// string, which is four times smaller and much cheaper to write.
fn encode_review(mut response: AdmissionResponse) -> Vec<u8> {
    use base64::Engine;
    let patch = response.patch.take();
    let review = response.into_review();
    let Some(patch) = patch else {
        return serde_json::to_vec(&review).unwrap_or_default();
    };
    let mut value = match serde_json::to_value(&review) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    if let Some(r) = value
        .get_mut("response")
        .and_then(serde_json::Value::as_object_mut)
    {
        r.insert(
            "patch".into(),
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch)),
        );
    }
    serde_json::to_vec(&value).unwrap_or_default()
}
