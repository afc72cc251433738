//! Review bodies as the API server sends them for the stock controller's
//! StatefulSets (built from the real 2.9.1 ServerConfigs in the controller
//! namespace, owned by the fixture's Servers), and the check that an answer
//! really fixed the object: the patch applied gives the namespace's images
//! (for `serve`), or that it allows the object and does nothing else (for
//! the floor).

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::support;

/// The fixture written by `e2e bench-fixture` (tests/e2e/harness/bench/bench_fixture.go).
#[derive(Debug, Deserialize)]
pub struct Fixture {
    pub url: String,
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub pid: u32,
    pub controller_namespace: String,
    pub namespaces: usize,
    pub servers: Vec<FixtureServer>,
    #[serde(default)]
    pub serve_args: Vec<String>,
}

/// One Server of the fixture.
#[derive(Debug, Deserialize)]
pub struct FixtureServer {
    pub namespace: String,
    pub name: String,
    pub server_config: String,
    pub base: String,
    pub uid: String,
}

/// One request body and what it is about.
pub struct Body {
    pub uid: String,
    pub namespace: String,
    pub object: Value,
    pub bytes: bytes::Bytes,
}

/// `n` CREATE reviews spread evenly over the fixture's Servers.
pub fn bodies(fx: &Fixture, n: usize) -> anyhow::Result<Vec<Body>> {
    if fx.servers.is_empty() {
        bail!("the fixture has no Servers");
    }
    let n = n.clamp(1, fx.servers.len());
    let stride = fx.servers.len() / n;
    (0..n)
        .map(|i| {
            let s = &fx.servers[i * stride];
            let mut server = support::server(
                &s.namespace,
                &s.name,
                &s.server_config,
                json!({"statefulSetPersistentVolumeClaimRetentionPolicy":
                    {"whenDeleted": "Retain", "whenScaled": "Retain"}}),
            );
            server["metadata"]["uid"] = json!(s.uid);
            // what the stock controller found: the released config of that
            // name in its own namespace
            let ctl = support::real_server_config(
                &s.base,
                &fx.controller_namespace,
                &s.server_config,
                |img| img.to_string(),
            );
            let object = support::controller_statefulset(&server, &ctl);
            let uid = format!("bench-{i:05}");
            let review = json!({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
                "uid": uid,
                "kind":{"group":"apps","version":"v1","kind":"StatefulSet"},
                "resource":{"group":"apps","version":"v1","resource":"statefulsets"},
                "requestKind":{"group":"apps","version":"v1","kind":"StatefulSet"},
                "requestResource":{"group":"apps","version":"v1","resource":"statefulsets"},
                "name": s.name, "namespace": s.namespace, "operation":"CREATE",
                "userInfo":{"username":"system:serviceaccount:seldon-system:seldon-v2-controller-manager",
                    "uid":"6c1f0f9e-0d3c-4a59-9a55-1b2d3c4e5f60",
                    "groups":["system:serviceaccounts","system:serviceaccounts:seldon-system","system:authenticated"]},
                "object": object, "oldObject": null, "dryRun": false,
                "options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions","fieldManager":"manager"}}});
            Ok(Body {
                uid,
                namespace: s.namespace.clone(),
                object,
                bytes: serde_json::to_vec(&review)?.into(),
            })
        })
        .collect()
}

/// Checks that `answer` is the webhook's allow-with-patch for `body` and
/// that the patch, applied, gives every container the namespace's own
/// image (`harbor.test/<namespace>/...`, see tests/e2e/harness/k8s/fixtures.go).
pub fn check_mutation(body: &Body, answer: &[u8]) -> anyhow::Result<()> {
    let review: Value = serde_json::from_slice(answer).context("answer is not JSON")?;
    let r = &review["response"];
    if r["uid"] != json!(body.uid) {
        bail!("answer uid {} != request uid {}", r["uid"], body.uid);
    }
    if r["allowed"] != json!(true) {
        bail!("not allowed: {}", r["status"]);
    }
    if r["patchType"] != json!("JSONPatch") {
        bail!("no JSONPatch in the answer: {r}");
    }
    let patch = base64::engine::general_purpose::STANDARD
        .decode(
            r["patch"]
                .as_str()
                .ok_or_else(|| anyhow!("patch is not a string"))?,
        )
        .context("patch is not base64")?;
    let patch: json_patch::Patch = serde_json::from_slice(&patch).context("patch")?;
    let mut object = body.object.clone();
    json_patch::patch(&mut object, &patch).context("applying the patch")?;
    let images = support::images(&object);
    let want = format!("harbor.test/{}/", body.namespace);
    if images.is_empty() || images.iter().any(|i| !i.starts_with(&want)) {
        bail!("patched images {images:?} are not the namespace's own ({want}...)");
    }
    Ok(())
}

/// Checks that `answer` is an allow for `body` with nothing else: the
/// floor's answer (no patch, no warnings, no status).
pub fn check_allowed(body: &Body, answer: &[u8]) -> anyhow::Result<()> {
    let review: Value = serde_json::from_slice(answer).context("answer is not JSON")?;
    if review["apiVersion"] != json!("admission.k8s.io/v1")
        || review["kind"] != json!("AdmissionReview")
    {
        bail!("not an admission.k8s.io/v1 AdmissionReview: {review}");
    }
    let r = &review["response"];
    if r["uid"] != json!(body.uid) {
        bail!("answer uid {} != request uid {}", r["uid"], body.uid);
    }
    if r["allowed"] != json!(true) {
        bail!("not allowed: {}", r["status"]);
    }
    for key in ["patch", "patchType", "warnings"] {
        if !r[key].is_null() {
            bail!("the answer has a {key}: {r}");
        }
    }
    Ok(())
}
