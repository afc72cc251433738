//! The admission response's audit annotations: the trail of every decision
//! in the API server's audit log, beside the Events. The API server prefixes
//! each key with the webhook's name (`<webhook>/outcome`); the keys and
//! values are listed in docs/reference.md ("Audit annotations").

use std::collections::HashMap;

use super::warnings::shorten;
use super::Decision;

/// The longest value written, in characters: a denial's message is cut to
/// it (the client still gets the whole message).
pub const AUDIT_VALUE_MAX_RUNES: usize = 1024;

/// `patched`, `unchanged`, `denied` or `out_of_scope`.
const OUTCOME: &str = "outcome";
/// `<namespace>/<serverconfig>` applied, or found applied.
const SOURCE: &str = "source";
/// The content hash applied (the workload's `serverconfig-webhook/hash`).
const HASH: &str = "hash";
/// Why: the unchanged reason code, or the denial's message.
const REASON: &str = "reason";

/// The audit annotations of one in-scope decision: its outcome; the source
/// and hash when a ServerConfig was applied or found applied; the reason
/// when it was left unchanged or denied.
pub fn audit_annotations(decision: &Decision) -> HashMap<String, String> {
    let mut out = HashMap::from([(OUTCOME.to_string(), decision.outcome().to_string())]);
    let (applied, reason) = match decision {
        Decision::Patched { applied, .. } => (Some(applied), None),
        Decision::Unchanged {
            reason, applied, ..
        } => (applied.as_ref(), Some((*reason).to_string())),
        Decision::Denied { message } => (None, Some(shorten(message, AUDIT_VALUE_MAX_RUNES))),
    };
    if let Some(a) = applied {
        out.insert(SOURCE.into(), a.source.clone());
        out.insert(HASH.into(), a.hash.clone());
    }
    if let Some(reason) = reason {
        out.insert(REASON.into(), reason);
    }
    out
}

/// The audit annotations of a review the webhook left alone because the
/// object is not a Server's workload.
pub fn out_of_scope_audit_annotations() -> HashMap<String, String> {
    HashMap::from([(OUTCOME.to_string(), "out_of_scope".to_string())])
}

#[cfg(test)]
mod tests {
    use super::super::Applied;
    use super::*;

    fn applied() -> Applied {
        Applied {
            source: "team-a/mlserver".into(),
            hash: "abc123".into(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_decision_has_its_annotations() {
        let long = "x".repeat(AUDIT_VALUE_MAX_RUNES + 10);
        let cut = shorten(&long, AUDIT_VALUE_MAX_RUNES);
        let cases: Vec<(&str, Decision, HashMap<String, String>)> = vec![
            (
                "patched",
                Decision::Patched {
                    patch: json_patch::Patch(vec![]),
                    applied: applied(),
                    warnings: vec!["w".into()],
                },
                map(&[
                    ("outcome", "patched"),
                    ("source", "team-a/mlserver"),
                    ("hash", "abc123"),
                ]),
            ),
            (
                "already applied",
                Decision::Unchanged {
                    reason: "already-applied",
                    applied: Some(applied()),
                    warnings: vec![],
                },
                map(&[
                    ("outcome", "unchanged"),
                    ("source", "team-a/mlserver"),
                    ("hash", "abc123"),
                    ("reason", "already-applied"),
                ]),
            ),
            (
                "missing ServerConfig",
                Decision::Unchanged {
                    reason: "serverconfig-missing",
                    applied: None,
                    warnings: vec![],
                },
                map(&[("outcome", "unchanged"), ("reason", "serverconfig-missing")]),
            ),
            (
                "denied",
                Decision::Denied {
                    message: "serverconfig-webhook: no".into(),
                },
                map(&[
                    ("outcome", "denied"),
                    ("reason", "serverconfig-webhook: no"),
                ]),
            ),
            (
                "denied, long message",
                Decision::Denied {
                    message: long.clone(),
                },
                map(&[("outcome", "denied"), ("reason", &cut)]),
            ),
        ];
        for (name, decision, want) in cases {
            assert_eq!(audit_annotations(&decision), want, "{name}");
        }
        assert_eq!(cut.chars().count(), AUDIT_VALUE_MAX_RUNES);
        assert_eq!(
            out_of_scope_audit_annotations(),
            map(&[("outcome", "out_of_scope")])
        );
    }
}
