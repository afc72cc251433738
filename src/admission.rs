//! From an AdmissionReview body to an AdmissionReview answer: parses with
//! `kube::core::admission`, checks scope cheaply, gathers the lookups, asks
//! the pure core, and logs one structured line per decision.

use std::sync::Arc;
use std::time::Instant;

use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOp,
};
use kube::core::DynamicObject;

use crate::cache::desired::DesiredCache;
use crate::cache::Caches;

use crate::core::model::{ModelError, ServerConfig};
use crate::core::mutate::{decide, scope, Decision, Gvk, Inputs, Operation, Scope, Settings};
use crate::metrics::Metrics;

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
        let review: AdmissionReview<DynamicObject> = match serde_json::from_str(text) {
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
        let mut req: AdmissionRequest<DynamicObject> = match review.try_into() {
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
        req: &AdmissionRequest<DynamicObject>,
        object: Option<DynamicObject>,
        old_object: Option<DynamicObject>,
    ) -> (AdmissionResponse, &'static str) {
        let base = AdmissionResponse::from(req);
        let operation = match req.operation {
            KubeOp::Create => Operation::Create,
            KubeOp::Update => Operation::Update,
            _ => Operation::Other,
        };
        let namespace = req.namespace.clone().unwrap_or_default();
        let gvk = Gvk {
            group: &req.kind.group,
            version: &req.kind.version,
            kind: &req.kind.kind,
        };
        // Cheap scope check on the typed metadata before anything else.
        let owner_value = object.as_ref().map(
            |o| serde_json::json!({"metadata": {"ownerReferences": o.metadata.owner_references}}),
        );
        let object_meta_only = owner_value.as_ref();
        let in_scope = if req.sub_resource.is_some() {
            Scope::Out("subresource")
        } else {
            scope(gvk, operation, &namespace, object_meta_only, &self.settings)
        };
        let (kind, server_name) = match in_scope {
            Scope::Out(reason) => {
                tracing::debug!(uid = %req.uid, namespace, name = %req.name, reason, "out of scope");
                return (base, "out_of_scope");
            }
            Scope::In { kind, server } => (kind, server),
        };
        let object = match object.map(into_value) {
            Some(Ok(v)) => v,
            _ => {
                return (
                    base.deny("serverconfig-webhook: the request's object could not be read"),
                    "denied",
                )
            }
        };

        let caches = &self.caches;
        let decision = {
            {
                let server = caches.server(&namespace, &server_name).await;
                let server_ok = server.as_deref().and_then(|r| r.as_ref().ok());
                let server_err = server.as_deref().and_then(|r| r.as_ref().err());
                if let Some(e) = server_err {
                    let d = Decision::Denied {
                        message: format!("serverconfig-webhook: {e}"),
                    };
                    return self.finish(req, base, d, &namespace);
                }
                let sc_name = server_ok
                    .map(|s| s.server_config.clone())
                    .unwrap_or_default();
                // What was built from this Server and ServerConfig version
                // before, if anything: then the ServerConfig is not parsed.
                let built = server_ok.zip(caches.server_config_version(&namespace, &sc_name));
                let built = built.and_then(|(s, rv)| self.desired.cached(s, &rv));
                let config = if sc_name.is_empty() || built.is_some() {
                    None
                } else {
                    caches.server_config(&namespace, &sc_name).await
                };
                let controller_config = if sc_name.is_empty() {
                    None
                } else {
                    caches.cached_server_config(&self.settings.controller_namespace, &sc_name)
                };
                let (config_ok, config_err) = split(config.as_deref());
                let config_err_text = config_err.map(ToString::to_string);
                let desired_now = match (built, server_ok, config_ok) {
                    (Some(d), _, _) => Some(d),
                    (None, Some(s), Some(c)) => Some(self.desired.get(s, c)),
                    _ => None,
                };
                // The stored object (UPDATE only) keeps immutable fields
                // and the keys a placeholder copied into the template.
                let old_value = match operation {
                    Operation::Update => old_object.and_then(|o| into_value(o).ok()),
                    _ => None,
                };
                let inputs = Inputs {
                    server: server_ok,
                    config: config_ok,
                    config_error: config_err_text.as_deref(),
                    controller_config: controller_config.as_deref().and_then(|r| r.as_ref().ok()),
                    old_object: old_value.as_ref(),
                    desired: desired_now.as_deref(),
                };
                decide(operation, kind, &namespace, &object, inputs, &self.settings)
            }
        };
        self.finish(req, base, decision, &namespace)
    }

    fn finish(
        &self,
        req: &AdmissionRequest<DynamicObject>,
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

fn split(
    r: Option<&Result<ServerConfig, ModelError>>,
) -> (Option<&ServerConfig>, Option<&ModelError>) {
    match r {
        Some(Ok(c)) => (Some(c), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    }
}

fn with_warnings(mut r: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        r.warnings = Some(warnings);
    }
    r
}

/// The object as JSON, moving its body instead of re-encoding it: only the
/// (small) typed metadata is serialised.
fn into_value(o: DynamicObject) -> Result<serde_json::Value, serde_json::Error> {
    let metadata = serde_json::to_value(&o.metadata)?;
    let mut v = match o.data {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(t) = o.types {
        v.insert(
            "apiVersion".into(),
            serde_json::Value::String(t.api_version),
        );
        v.insert("kind".into(), serde_json::Value::String(t.kind));
    }
    v.insert("metadata".into(), metadata);
    Ok(serde_json::Value::Object(v))
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
