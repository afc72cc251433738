//! Warnings the admission response carries about the desired workload.

use std::collections::BTreeSet;

use serde_json::Value;

use super::super::desired::{mounts_without_volume, Desired};

/// Warnings about the desired workload itself: containers without an
/// image, duplicate container names.
pub(super) fn desired_warnings(want: &Desired, source: &str) -> Vec<String> {
    let containers: Vec<&Value> = want
        .pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let name_of = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut warnings: Vec<String> = containers
        .iter()
        .filter(|c| {
            c.get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        })
        .map(|c| {
            format!(
                "serverconfig-webhook: container {:?} has no image in ServerConfig {source}",
                name_of(c)
            )
        })
        .collect();
    let names: BTreeSet<String> = containers.iter().map(|c| name_of(c)).collect();
    if names.len() != containers.len() {
        warnings.push(format!(
            "serverconfig-webhook: merging Server and ServerConfig {source} gives duplicate container names"
        ));
    }
    warnings
}

/// Warnings about a Deployment built from the ServerConfig: volume mounts
/// without a volume, which the API server refuses for a Deployment (it has
/// no claim templates to provide them).
pub(super) fn deployment_warnings(want: &Desired, source: &str) -> Vec<String> {
    let claims: BTreeSet<&str> = want
        .volume_claim_templates
        .iter()
        .filter_map(|v| v.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    mounts_without_volume(&want.pod_spec)
        .into_iter()
        .map(|(container, volume)| {
            let defined = if claims.contains(volume.as_str()) {
                "defines only as a volumeClaimTemplate; a Deployment has none"
            } else {
                "does not define"
            };
            format!(
                "serverconfig-webhook: container {container:?} mounts volume {volume:?}, which ServerConfig {source} {defined}, so the API server refuses it: add {volume:?} to spec.podSpec.volumes (an emptyDir, or a persistentVolumeClaim)"
            )
        })
        .collect()
}

/// The longest warning the API server passes on whole, in characters: past
/// [`WARNINGS_MAX_RUNES`] in all it cuts every warning to this length.
pub const WARNING_MAX_RUNES: usize = 256;

/// The most characters of warnings the API server passes on for one request
/// before it starts cutting and dropping them.
pub const WARNINGS_MAX_RUNES: usize = 4096;

/// The warnings as the API server will pass them on, unaltered: repeats
/// dropped (it drops them too), each longer than [`WARNING_MAX_RUNES`] cut
/// with an ellipsis, and as many as fit in [`WARNINGS_MAX_RUNES`], the last
/// one then saying how many more `serverconfig-webhook render` shows.
pub fn within_api_server_limits(warnings: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let unique: Vec<String> = warnings
        .into_iter()
        .filter(|w| !w.is_empty() && seen.insert(w.clone()))
        .map(|w| shorten(&w, WARNING_MAX_RUNES))
        .collect();
    let total: usize = unique.iter().map(|w| w.chars().count()).sum();
    if total <= WARNINGS_MAX_RUNES {
        return unique;
    }
    let room = WARNINGS_MAX_RUNES - more_warnings(unique.len()).chars().count();
    let mut kept = Vec::new();
    let mut written = 0;
    for w in &unique {
        let len = w.chars().count();
        if written + len > room {
            break;
        }
        written += len;
        kept.push(w.clone());
    }
    let dropped = unique.len() - kept.len();
    kept.push(more_warnings(dropped));
    kept
}

/// The last warning when some did not fit.
fn more_warnings(dropped: usize) -> String {
    format!(
        "serverconfig-webhook: {dropped} more warnings not shown (the API server's limit); `serverconfig-webhook render` shows them all"
    )
}

/// The text cut to at most `max` characters, the last one an ellipsis when
/// it was cut (on a character boundary).
pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runes(ws: &[String]) -> usize {
        ws.iter().map(|w| w.chars().count()).sum()
    }

    #[test]
    fn warnings_fit_what_the_api_server_passes_on() {
        let long = "é".repeat(WARNING_MAX_RUNES + 40);
        let many: Vec<String> = (0..40)
            .map(|i| format!("{i:03} {}", "w".repeat(196)))
            .collect();
        // (name, input, kept whole, cut, summary names how many dropped)
        type Case = (&'static str, Vec<String>, usize, usize, Option<usize>);
        let cases: Vec<Case> = vec![
            ("none", vec![], 0, 0, None),
            ("short ones pass", vec!["a".into(), "b".into()], 2, 0, None),
            (
                "repeats dropped",
                vec!["a".into(), "a".into(), "".into()],
                1,
                0,
                None,
            ),
            ("a long one cut", vec![long.clone()], 0, 1, None),
            ("too many in all", many.clone(), 19, 0, Some(21)),
        ];
        for (name, input, whole, cut, dropped) in cases {
            let out = within_api_server_limits(input.clone());
            assert!(
                runes(&out) <= WARNINGS_MAX_RUNES,
                "{name}: {} runes",
                runes(&out)
            );
            assert!(
                out.iter().all(|w| w.chars().count() <= WARNING_MAX_RUNES),
                "{name}"
            );
            let kept_whole = out.iter().filter(|w| input.contains(w)).count();
            let kept_cut = out.iter().filter(|w| w.ends_with('…')).count();
            assert_eq!((kept_whole, kept_cut), (whole, cut), "{name}: {out:?}");
            match dropped {
                Some(n) => assert_eq!(out.last(), Some(&more_warnings(n)), "{name}"),
                None => assert_eq!(out.len(), whole + cut, "{name}"),
            }
        }
        let cut = within_api_server_limits(vec![long.clone()]).remove(0);
        assert!(long.starts_with(cut.trim_end_matches('…')));
    }
}
