//! From an AdmissionReview body to an AdmissionReview answer: parses with
//! `kube::core::admission`, checks scope cheaply, gathers the lookups, asks
//! the pure core, and logs one structured line per decision.

use std::sync::Arc;
use std::time::Instant;

use tracing::field::Empty;
use tracing::Span;

mod raw;

use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOp,
};

use crate::cache::desired::DesiredCache;
use crate::cache::inputs::{Lookups, Misses};
use crate::cache::Caches;

use crate::core::bounds::{check_json, Limits};
use crate::core::mutate::{
    audit_annotations, decide, out_of_scope_audit_annotations, scope, within_api_server_limits,
    Applied, Decision, Gvk, Operation, Scope, Settings,
};
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

/// The span of one review (an OTel server span when tracing is on; a
/// disabled span, which records nothing, when it is off). Its attributes
/// are names, the steps' results and sizes, never object contents; the
/// list is in docs/reference.md ("Traces").
pub fn review_span() -> Span {
    tracing::info_span!(
        "admission",
        otel.kind = "server",
        admission.uid = Empty,
        admission.operation = Empty,
        admission.kind = Empty,
        k8s.namespace.name = Empty,
        admission.name = Empty,
        admission.dry_run = Empty,
        admission.scope = Empty,
        admission.scope_reason = Empty,
        admission.server = Empty,
        admission.serverconfig = Empty,
        admission.lookup = Empty,
        admission.decision = Empty,
        admission.reason = Empty,
        admission.patch_ops = Empty,
        admission.patch_bytes = Empty,
        admission.outcome = Empty,
    )
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
        self.review_in(body, &review_span()).await
    }

    /// Answers one review body, recording its steps on `span` (made by
    /// [`review_span`], its parent already set by the caller).
    pub async fn review_in(&self, body: &[u8], span: &Span) -> Answer {
        let answer = self.answer(body, span).await;
        if answer.status != 200 {
            span.record("admission.outcome", "invalid");
        }
        answer
    }

    async fn answer(&self, body: &[u8], span: &Span) -> Answer {
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
        record_request(span, &req);
        let (response, outcome) = self.respond(&req, object, old_object, span).await;
        span.record("admission.outcome", outcome);
        self.metrics
            .admission(outcome, started.elapsed().as_secs_f64());
        let body = encode_review(response);
        Answer { status: 200, body }
    }

    /// The answer to one request: scope, the bounded objects, the lookups,
    /// the decision.
    async fn respond(
        &self,
        req: &AdmissionRequest<RawObject>,
        object: Option<RawObject>,
        old_object: Option<RawObject>,
        span: &Span,
    ) -> (AdmissionResponse, &'static str) {
        let mut base = AdmissionResponse::from(req);
        let operation = operation_of(req);
        let namespace = req.namespace.clone().unwrap_or_default();
        let (kind, server_name) = match self.scope_of(req, operation, &namespace, object.as_ref()) {
            Scope::Out(reason) => {
                tracing::debug!(uid = %req.uid, namespace, name = %req.name, reason, "out of scope");
                base.audit_annotations = out_of_scope_audit_annotations();
                span.record("admission.scope", "out");
                span.record("admission.scope_reason", reason);
                return (base, "out_of_scope");
            }
            Scope::In { kind, server } => (kind, server),
        };
        span.record("admission.scope", "in");
        let (object, old_object) = match bounded_objects(operation, object, old_object) {
            Ok(objects) => objects,
            Err(e) => {
                let message = e.to_string();
                return self.finish(req, base, Decision::Denied { message }, &namespace, span);
            }
        };
        let found = Lookups::new(
            &self.caches,
            &self.settings.controller_namespace,
            Misses::DirectGet,
        )
        .with_desired(&self.desired)
        .for_server(&namespace, &server_name)
        .await;
        record_lookup(span, &server_name, &found);
        let decision = match found.server_error() {
            Some(message) => Decision::Denied { message },
            None => decide(
                operation,
                kind,
                &namespace,
                &object,
                found.inputs(old_object.as_ref()),
                &self.settings,
            ),
        };
        span.record("admission.decision", decision.outcome());
        self.finish(req, base, decision, &namespace, span)
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

    /// The response for a decision, with its audit annotations, and its
    /// one log line.
    fn finish(
        &self,
        req: &AdmissionRequest<RawObject>,
        mut base: AdmissionResponse,
        decision: Decision,
        namespace: &str,
        span: &Span,
    ) -> (AdmissionResponse, &'static str) {
        let outcome = decision.outcome();
        let dry_run = req.dry_run;
        base.audit_annotations = audit_annotations(&decision);
        match decision {
            Decision::Unchanged {
                reason, warnings, ..
            } => {
                tracing::info!(uid = %req.uid, namespace, name = %req.name, kind = %req.kind.kind,
                    operation = ?req.operation, dry_run, outcome, reason, warnings = warnings.len(), "admission");
                span.record("admission.reason", reason);
                (with_warnings(base, warnings), outcome)
            }
            Decision::Patched {
                patch,
                applied: Applied { source, hash },
                warnings,
            } => {
                tracing::info!(uid = %req.uid, namespace, name = %req.name, kind = %req.kind.kind,
                    operation = ?req.operation, dry_run, outcome, source, hash, ops = patch.0.len(), "admission");
                span.record("admission.patch_ops", patch.0.len());
                match base.clone().with_patch(patch) {
                    Ok(r) => {
                        if let Some(bytes) = &r.patch {
                            span.record("admission.patch_bytes", bytes.len());
                        }
                        (with_warnings(r, warnings), outcome)
                    }
                    Err(e) => {
                        let message = format!("serverconfig-webhook: could not encode patch: {e}");
                        base.audit_annotations = audit_annotations(&Decision::Denied {
                            message: message.clone(),
                        });
                        (base.deny(message), "denied")
                    }
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

/// The request's names on the span: uid, operation, kind, namespace and
/// object name (names only, no contents).
fn record_request(span: &Span, req: &AdmissionRequest<RawObject>) {
    if span.is_disabled() {
        return;
    }
    span.record("admission.uid", req.uid.as_str());
    span.record("admission.operation", tracing::field::debug(&req.operation));
    span.record("admission.kind", req.kind.kind.as_str());
    span.record("k8s.namespace.name", req.namespace.as_deref().unwrap_or(""));
    span.record("admission.name", req.name.as_str());
    span.record("admission.dry_run", req.dry_run);
}

/// What the lookups found, on the span: the Server's name, the
/// ServerConfig it names, and whether they were there.
fn record_lookup(span: &Span, server_name: &str, found: &crate::cache::inputs::Found) {
    if span.is_disabled() {
        return;
    }
    span.record("admission.server", server_name);
    let result = match (found.server_error(), found.server()) {
        (Some(_), _) => "error",
        (None, None) => "server_not_found",
        (None, Some(server)) => {
            span.record("admission.serverconfig", server.server_config.as_str());
            "found"
        }
    };
    span.record("admission.lookup", result);
}

/// The admission operation, as the core names it.
fn operation_of(req: &AdmissionRequest<RawObject>) -> Operation {
    match req.operation {
        KubeOp::Create => Operation::Create,
        KubeOp::Update => Operation::Update,
        _ => Operation::Other,
    }
}

/// The in-scope review's objects as trees, each within the size bounds:
/// `object`, and on UPDATE the stored `oldObject` (it keeps immutable fields
/// and the keys a placeholder copied into the template). The raw text goes
/// as soon as its tree is built.
fn bounded_objects(
    operation: Operation,
    object: Option<RawObject>,
    old_object: Option<RawObject>,
) -> Result<(serde_json::Value, Option<serde_json::Value>), ObjectError> {
    let object = parse_bounded(&object.ok_or(ObjectError::Missing)?, "object")?;
    let old_object = match (operation, old_object) {
        (Operation::Update, Some(o)) => Some(parse_bounded(&o, "oldObject")?),
        _ => None,
    };
    Ok((object, old_object))
}

/// The object as a JSON tree, if it is within the size bounds; else the
/// denial naming what is too large.
fn parse_bounded(o: &RawObject, what: &'static str) -> Result<serde_json::Value, ObjectError> {
    check_json(o.text(), Limits::default())
        .map_err(|source| ObjectError::TooLarge { what, source })?;
    serde_json::from_str(o.text()).map_err(|source| ObjectError::Unreadable { what, source })
}

/// Why an in-scope review's object is refused before any lookup; the
/// message is what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The review carries no object.
    #[error("serverconfig-webhook: the request's object could not be read")]
    Missing,
    /// Past the size bounds ([`Limits`]).
    #[error("serverconfig-webhook: the request's {what} is too large for a Seldon Server workload: {source}")]
    TooLarge {
        what: &'static str,
        #[source]
        source: crate::core::bounds::BoundsError,
    },
    /// Not JSON the object's type can hold.
    #[error("serverconfig-webhook: the request's {what} could not be read: {source}")]
    Unreadable {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The response with the warnings, bounded to what the API server passes
/// on unaltered.
fn with_warnings(mut r: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        r.warnings = Some(within_api_server_limits(warnings));
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
