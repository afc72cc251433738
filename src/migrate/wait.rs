//! Verification after a move or a rollback: evaluates the [`verify`]
//! checks against the cluster every second until all pass or the timeout,
//! printing a progress line per check when its outcome changes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::Value;

use super::api::get;
use super::plan::Kind;
use super::rollback::Key;
use super::verify::{self, Check, Failing};
use super::MigrateError;
use crate::core::desired::SERVER_NAME_LABEL;

/// Evaluates every check once.
async fn evaluate(
    client: &Client,
    present: &[Key],
    gone: &[Key],
) -> Result<Vec<Check>, MigrateError> {
    let mut out = Vec::new();
    for k in present {
        let (kind, ns, name) = k;
        let subject = format!("{kind} {ns}/{name}");
        let obj = get(client, k).await?;
        out.push(verify::present(&subject, obj.is_some()));
        let (Kind::Server, Some(server)) = (kind, obj) else {
            continue;
        };
        let sc_name = server
            .pointer("/spec/serverConfig")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let config = get(client, &(Kind::ServerConfig, ns.clone(), sc_name)).await?;
        let expected = verify::expected_images(&server, config.as_ref());
        let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        let sts = sts_api
            .get_opt(name)
            .await
            .map_err(|e| MigrateError::kube(format!("cannot read StatefulSet {ns}/{name}"), e))?
            .and_then(|s| serde_json::to_value(s).ok());
        out.push(verify::statefulset(
            &format!("{subject}: StatefulSet"),
            &expected,
            sts.as_ref(),
            server
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ));
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pods: Vec<Value> = pod_api
            .list(&ListParams::default().labels(&format!("{SERVER_NAME_LABEL}={name}")))
            .await
            .map_err(|e| MigrateError::kube(format!("cannot list Pods in {ns}"), e))?
            .items
            .iter()
            .filter_map(|p| serde_json::to_value(p).ok())
            .collect();
        out.push(verify::pods(
            &format!("{subject}: Pods"),
            &expected,
            sts.as_ref(),
            &pods,
        ));
    }
    for k in gone {
        let (kind, ns, name) = k;
        let found = get(client, k).await?.is_some();
        out.push(Check {
            subject: format!("{kind} {ns}/{name}"),
            ok: !found,
            detail: if found { "still there" } else { "gone" }.into(),
        });
    }
    Ok(out)
}

/// Re-evaluates the checks every second until all pass or `timeout`;
/// prints a line on stderr whenever a check's outcome changes (on a
/// terminal, also when its detail changes). Err carries the failing checks.
pub(super) async fn wait_verified(
    client: &Client,
    present: &[Key],
    gone: &[Key],
    timeout: Duration,
) -> Result<(), Failing> {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last: BTreeMap<String, Check> = BTreeMap::new();
    eprintln!("verifying (up to {timeout:?}):");
    loop {
        let checks = match evaluate(client, present, gone).await {
            Ok(c) => c,
            Err(e) => vec![Check {
                subject: "cluster".into(),
                ok: false,
                detail: e.to_string(),
            }],
        };
        for c in &checks {
            let changed = match last.get(&c.subject) {
                None => true,
                Some(p) => p.ok != c.ok || (tty && p.detail != c.detail),
            };
            if changed {
                eprintln!(
                    "  [{}] {}: {} ({:.1} s)",
                    if c.ok { " ok " } else { "wait" },
                    c.subject,
                    c.detail,
                    start.elapsed().as_secs_f64()
                );
            }
            last.insert(c.subject.clone(), c.clone());
        }
        let failing: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
        if failing.is_empty() {
            eprintln!("verified: {} check(s) pass", checks.len());
            return Ok(());
        }
        if start.elapsed() >= timeout {
            for c in &failing {
                eprintln!("  [FAIL] {}: {}", c.subject, c.detail);
            }
            return Err(Failing(failing.into_iter().cloned().collect()));
        }
        tokio::time::sleep(Duration::from_secs(1).min(timeout.saturating_sub(start.elapsed())))
            .await;
    }
}
