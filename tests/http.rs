//! The HTTPS shell over real TLS: good and bad reviews, limits, certificate
//! rotation through the kubelet's `..data` swap, and graceful drain. The
//! caches are pre-filled in process (no API server is involved here; the
//! end-to-end suite covers that).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use serverconfig_webhook::cache::Caches;
use serverconfig_webhook::core::bounds::MAX_LIST_ENTRIES;
use serverconfig_webhook::core::mutate::{OnMissing, Settings};
use serverconfig_webhook::metrics::Metrics;
use serverconfig_webhook::server::{tls, Limits, Readiness, Server, BODY_LIMIT};
use support::tls::{client, leaf_der, pair, served_leaf, SecretDir};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP: &str = "financial-mlops-pytorch";

struct Running {
    addr: std::net::SocketAddr,
    metrics_addr: std::net::SocketAddr,
    ca: String,
    secret: SecretDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    _tmp: tempfile::TempDir,
}

fn team_config() -> Value {
    real_server_config("mlserver", APP, "mlserver-config", |old| {
        format!("harbor.test/team/{}", old.rsplit('/').next().unwrap_or(old))
    })
}

fn the_server() -> Value {
    server(APP, "mlserver", "mlserver-config", json!({}))
}

/// What the caches hold: the team's Server and ServerConfig, a Server with
/// an empty `serverConfig`, and one whose ServerConfig's pod spec is not a
/// valid pod spec.
fn cached_objects() -> Vec<Value> {
    let mut broken = team_config();
    broken["metadata"]["name"] = json!("broken-config");
    broken["spec"]["podSpec"]["containers"] = json!("not a list");
    vec![
        the_server(),
        team_config(),
        server(APP, "empty", "", json!({})),
        server(APP, "broken", "broken-config", json!({})),
        broken,
    ]
}

async fn start(limits: Limits) -> Running {
    start_with(limits, None).await
}

async fn start_with(limits: Limits, client_ca: Option<std::path::PathBuf>) -> Running {
    let tmp = tempfile::tempdir().expect("tmp");
    let generated = pair();
    let secret = SecretDir::new(tmp.path(), &generated.cert, &generated.key);
    let metrics = Arc::new(Metrics::new());
    let objects: Vec<kube::core::DynamicObject> = cached_objects()
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("cached object"))
        .collect();
    let caches = Caches::from_objects(objects, metrics.clone());
    let files = tls::CertFiles {
        cert: secret.cert(),
        key: secret.key(),
        client_ca: client_ca.clone(),
        reload_interval: Duration::from_millis(200),
    };
    let store = Arc::new(tls::CertStore::default());
    let fp = tls::initial_load(&store, &files).expect("initial cert");
    let config = tls::server_config(store.clone(), client_ca.as_deref()).expect("tls config");
    tokio::spawn(tls::reload_loop(store.clone(), files, fp, metrics.clone()));
    let admission = Arc::new(Admission {
        desired: Default::default(),
        settings: Settings {
            controller_namespace: "seldon-system".into(),
            on_missing: OnMissing::Auto,
        },
        caches: caches.clone(),
        metrics,
    });
    let readiness = Readiness::new(caches, store);
    let srv = Server::bind(
        "127.0.0.1:0".parse().expect("addr"),
        Some("127.0.0.1:0".parse().expect("addr")),
        config,
        admission,
        readiness,
        limits,
    )
    .await
    .expect("bind");
    let addr = srv.local_addr().expect("addr");
    let metrics_addr = srv.metrics_addr().expect("metrics addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        let _ = rx.await;
        cancel.cancel();
    });
    let done = tokio::spawn(srv.run(shutdown));
    Running {
        addr,
        metrics_addr,
        ca: generated.ca_cert,
        secret,
        stop: Some(tx),
        done,
        _tmp: tmp,
    }
}

fn review(operation: &str, object: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "e911857d-c318-11e8-bbad-025000000001",
            "kind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
            "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:seldon-system:seldon-v2-controller-manager"},
            "object": object, "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

fn incoming() -> Value {
    controller_statefulset(
        &the_server(),
        &placeholder(
            "seldon-system",
            "mlserver-config",
            &["rclone", "agent", "mlserver"],
        ),
    )
}

async fn post(
    c: &reqwest::Client,
    addr: std::net::SocketAddr,
    body: Vec<u8>,
    ctype: &str,
) -> reqwest::Response {
    c.post(format!("https://localhost:{}/mutate", addr.port()))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .expect("request sent")
}

fn decode_patch(resp: &Value) -> json_patch::Patch {
    use base64::Engine;
    let b64 = resp["response"]["patch"]
        .as_str()
        .expect("patch is a base64 string, as for a Go []byte");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 patch");
    serde_json::from_slice(&bytes).expect("json patch")
}

#[tokio::test]
async fn good_review_gets_a_patch_over_http1_and_http2() {
    let srv = start(Limits::default()).await;
    for h2 in [false, true] {
        let c = client(&[&srv.ca], h2);
        let obj = incoming();
        let resp = post(
            &c,
            srv.addr,
            serde_json::to_vec(&review("CREATE", &obj)).expect("json"),
            "application/json",
        )
        .await;
        assert_eq!(resp.status(), 200);
        let want_version = if h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(resp.version(), want_version);
        let body: Value = resp.json().await.expect("json body");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(
            body["response"]["uid"],
            "e911857d-c318-11e8-bbad-025000000001"
        );
        assert_eq!(body["response"]["allowed"], true);
        assert_eq!(body["response"]["patchType"], "JSONPatch");
        let audit = &body["response"]["auditAnnotations"];
        assert_eq!(audit["outcome"], "patched", "{body}");
        assert_eq!(audit["source"], format!("{APP}/mlserver-config"), "{body}");
        let mut fixed = obj.clone();
        json_patch::patch(&mut fixed, &decode_patch(&body)).expect("patch applies");
        assert!(
            images(&fixed)
                .iter()
                .all(|i| i.starts_with("harbor.test/team/")),
            "{:?}",
            images(&fixed)
        );
    }
    let metrics = reqwest::get(format!("http://{}/metrics", srv.metrics_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("serverconfig_webhook_admissions_total{outcome=\"patched\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("serverconfig_webhook_cache_objects{kind=\"ServerConfig\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_requests_get_specific_answers() {
    let srv = start(Limits::default()).await;
    let c = client(&[&srv.ca], false);
    // (name, body, content type, status, text in the body)
    let mut no_request = review("CREATE", &incoming());
    no_request
        .as_object_mut()
        .expect("object")
        .remove("request");
    let mut v1beta1 = review("CREATE", &incoming());
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{not json".to_vec(),
            "application/json",
            400,
            "not an AdmissionReview",
        ),
        (
            "JSON that is not a review",
            b"{\"hello\":1}".to_vec(),
            "application/json",
            400,
            "not an AdmissionReview",
        ),
        (
            "review of another version",
            serde_json::to_vec(&v1beta1).expect("json"),
            "application/json",
            400,
            "expected apiVersion admission.k8s.io/v1",
        ),
        (
            "review without request",
            serde_json::to_vec(&no_request).expect("json"),
            "application/json",
            400,
            "has no request",
        ),
        (
            "bytes that are not UTF-8 in a field the review ignores",
            [
                &b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"x\":\""[..],
                &[0xfe, 0xff],
                &b"\"}"[..],
            ]
            .concat(),
            "application/json",
            400,
            "not UTF-8",
        ),
        (
            "wrong content type",
            b"{}".to_vec(),
            "text/plain",
            415,
            "content type must be application/json",
        ),
        (
            "oversize body",
            vec![b' '; BODY_LIMIT + 1],
            "application/json",
            413,
            "",
        ),
    ];
    for (name, body, ctype, status, text) in cases {
        let resp = post(&c, srv.addr, body, ctype).await;
        assert_eq!(resp.status().as_u16(), status, "case {name}");
        let got = resp.text().await.expect("body");
        assert!(got.contains(text), "case {name}: {got}");
        if status == 400 {
            let v: Value = serde_json::from_str(&got).expect("an AdmissionReview answer");
            assert_eq!(v["response"]["allowed"], false, "case {name}");
        }
    }
    // The server is still healthy after all of that.
    let resp = post(
        &c,
        srv.addr,
        serde_json::to_vec(&review("CREATE", &incoming())).expect("json"),
        "application/json",
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_400() {
    let srv = start(Limits::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut out)).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("HTTPS only"), "{out}");
}

#[tokio::test]
async fn certificate_rotation_through_data_swap_while_requests_flow() {
    let mut srv = start(Limits::default()).await;
    let first = leaf_der(&srv.secret_pem_cert());
    assert_eq!(
        served_leaf(srv.addr, &[&srv.ca]).await.expect("handshake"),
        first
    );
    // the first pair lives 1 day, the next 30: the gauge says which is served
    assert_expiry_in_days(&srv, 1).await;
    let next = serverconfig_webhook::certs::generate(&["localhost".into(), "127.0.0.1".into()], 30)
        .expect("certs");
    let both = [srv.ca.clone(), next.ca_cert.clone()];
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (failures, sent, stop) = (failures.clone(), sent.clone(), stop.clone());
        let addr = srv.addr;
        let both = both.clone();
        load.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&review("CREATE", &incoming())).expect("json");
            while !stop.load(Ordering::SeqCst) {
                // A new client each time so every request does a handshake.
                let c = client(&[&both[0], &both[1]], false);
                let ok = c
                    .post(format!("https://localhost:{}/mutate", addr.port()))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                sent.fetch_add(1, Ordering::SeqCst);
                if !ok {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A broken pair first: the last good certificate must stay.
    srv.secret.swap("not a certificate", "not a key");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        served_leaf(srv.addr, &[&srv.ca])
            .await
            .expect("still served"),
        first
    );
    assert_expiry_in_days(&srv, 1).await;
    // Then the real rotation.
    let swapped = std::time::Instant::now();
    srv.secret.swap(&next.cert, &next.key);
    let want = leaf_der(&next.cert);
    let mut seen = false;
    while swapped.elapsed() < Duration::from_secs(5) {
        if served_leaf(srv.addr, &[&next.ca_cert])
            .await
            .is_ok_and(|d| d == want)
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "new certificate not served within 5 s");
    assert_expiry_in_days(&srv, 30).await;
    assert!(
        swapped.elapsed() <= Duration::from_secs(2),
        "took {:?}",
        swapped.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.expect("load task");
    }
    assert!(sent.load(Ordering::SeqCst) > 10, "load ran");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "failed requests during rotation"
    );
    let _ = srv.stop.take().map(|s| s.send(()));
}

/// The expiry gauge names a certificate that ends `days` from now (the
/// generator backdates by a minute; a minute either way is allowed).
async fn assert_expiry_in_days(srv: &Running, days: i64) {
    let text = scrape(srv).await;
    let name = "serverconfig_webhook_tls_certificate_expiry_timestamp_seconds ";
    let value: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name}in {text}"))
        .trim()
        .parse()
        .expect("integer gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let want = now + days * 86_400 - 60;
    assert!(
        (value - want).abs() <= 60,
        "expiry {value}, want about {want} ({days} days from now)"
    );
}

impl Running {
    fn secret_pem_cert(&self) -> String {
        std::fs::read_to_string(self.secret.cert()).expect("cert")
    }
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_readiness_goes_false() {
    let limits = Limits {
        shutdown_delay: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let mut srv = start(limits).await;
    let ready = reqwest::get(format!("http://{}/readyz", srv.metrics_addr))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    // A request whose body arrives slowly, so it is in flight at shutdown.
    let body = serde_json::to_vec(&review("CREATE", &incoming())).expect("json");
    let (head, tail) = body.split_at(body.len() / 2);
    let (head, tail) = (
        bytes::Bytes::copy_from_slice(head),
        bytes::Bytes::copy_from_slice(tail),
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    tx.send(Ok(head)).await.expect("first half");
    let c = client(&[&srv.ca], false);
    let url = format!("https://localhost:{}/mutate", srv.addr.port());
    let in_flight = tokio::spawn(support::tls::post_streamed(c, url, rx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = srv.stop.take().map(|s| s.send(()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = reqwest::get(format!("http://{}/readyz", srv.metrics_addr))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "readiness goes false at once");
    tokio::time::sleep(Duration::from_millis(700)).await; // past the shutdown delay: listener closed
    assert!(
        tokio::net::TcpStream::connect(srv.addr).await.is_err(),
        "listener should be closed"
    );
    tx.send(Ok(tail)).await.expect("second half");
    drop(tx);
    let resp = in_flight
        .await
        .expect("task")
        .expect("in-flight request completed");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["response"]["allowed"], true, "{v}");
    srv.done
        .await
        .expect("server task")
        .expect("server exits cleanly");
}

/// A client certificate (clientAuth) signed by a fresh CA: (CA PEM, identity PEM).
fn client_identity() -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["kube-apiserver".to_string()]).expect("params");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &issuer).expect("client cert");
    (
        ca_cert.pem(),
        format!("{}{}", cert.pem(), key.serialize_pem()),
    )
}

#[tokio::test]
async fn client_ca_requires_a_certificate_from_that_ca() {
    let (api_ca, api_identity) = client_identity();
    let (_, stranger_identity) = client_identity();
    let dir = tempfile::tempdir().expect("tmp");
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, &api_ca).expect("write ca");
    let srv = start_with(Limits::default(), Some(ca_path)).await;
    let body = serde_json::to_vec(&review("CREATE", &incoming())).expect("json");
    let url = format!("https://localhost:{}/mutate", srv.addr.port());
    let with_identity = |pem: Option<&str>| {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(srv.ca.as_bytes()).expect("ca"))
            .http1_only();
        if let Some(pem) = pem {
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
        }
        b.build().expect("client")
    };
    let send = |c: reqwest::Client| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            c.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        }
    };
    let ok = send(with_identity(Some(&api_identity)))
        .await
        .expect("the API server's certificate is accepted");
    assert_eq!(ok.status(), 200);
    assert!(
        send(with_identity(None)).await.is_err(),
        "no client certificate: handshake refused"
    );
    assert!(
        send(with_identity(Some(&stranger_identity))).await.is_err(),
        "certificate from another CA: refused"
    );
}

/// A good review still gets its patch: the server survived what came before.
/// The metrics listener's `/metrics` text.
async fn scrape(srv: &Running) -> String {
    reqwest::get(format!("http://{}/metrics", srv.metrics_addr))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}

async fn assert_healthy(srv: &Running) {
    let c = client(&[&srv.ca], false);
    let resp = post(
        &c,
        srv.addr,
        serde_json::to_vec(&review("CREATE", &incoming())).expect("json"),
        "application/json",
    )
    .await;
    assert_eq!(resp.status(), 200, "server still healthy");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(v["response"]["patch"].is_string(), "{v}");
}

/// `incoming()` re-owned by Server `owner` (the controller names the
/// StatefulSet after its Server).
fn owned_by(owner: &str) -> Value {
    let mut obj = incoming();
    obj["metadata"]["name"] = json!(owner);
    obj["metadata"]["ownerReferences"][0]["name"] = json!(owner);
    obj
}

#[tokio::test]
async fn reviews_the_rules_cannot_serve_get_specific_answers() {
    let srv = start(Limits::default()).await;
    let c = client(&[&srv.ca], false);
    let mut no_object = review("CREATE", &incoming());
    no_object["request"]
        .as_object_mut()
        .expect("request")
        .remove("object");
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "mlserver", "namespace": APP,
            "ownerReferences": incoming()["metadata"]["ownerReferences"]},
        "data": {"k": "v"}});
    let mut other_kind = review("CREATE", &config_map);
    other_kind["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    other_kind["request"]["resource"] =
        json!({"group": "", "version": "v1", "resource": "configmaps"});
    let mut numeric_template = incoming();
    numeric_template["spec"]["template"] = json!(1);
    // someone who cannot read the namespace makes up a review for its
    // Server: without the Server's uid, the same answer as no Server
    let mut forged = incoming();
    forged["metadata"]["ownerReferences"][0]["uid"] = json!("guessed-uid");
    forged["spec"]["template"]["spec"] = json!({});
    let mut query_name = incoming();
    query_name["metadata"]["ownerReferences"][0]["name"] = json!("srv?x=1");
    let mut long_args = incoming();
    long_args["spec"]["template"]["spec"]["containers"][1]["args"] =
        json!(vec![""; MAX_LIST_ENTRIES + 1]);
    // (name, review, allowed, text in the message or warnings)
    let cases: Vec<(&str, Value, bool, &str)> = vec![
        ("request without object", no_object, true, ""),
        ("object of another kind", other_kind, true, ""),
        (
            "owner is a Server that does not exist",
            review("CREATE", &owned_by("ghost")),
            false,
            "Server financial-mlops-pytorch/ghost (uid \"1111-2222\") named by the controller owner reference does not exist",
        ),
        (
            "owner reference with another uid than the Server's",
            review("CREATE", &forged),
            false,
            "Server financial-mlops-pytorch/mlserver (uid \"guessed-uid\") named by the controller owner reference does not exist",
        ),
        (
            "owner reference whose name is not a Kubernetes name",
            review("CREATE", &query_name),
            false,
            "the controller owner reference names Server \"srv?x=1\", which is not a valid Kubernetes name",
        ),
        (
            "a list longer than a Seldon pod spec holds",
            review("CREATE", &long_args),
            false,
            "the request's object is too large for a Seldon Server workload: spec.template.spec.containers[1].args has more than 1000 entries",
        ),
        (
            "Server with an empty serverConfig",
            review("CREATE", &owned_by("empty")),
            false,
            "Server financial-mlops-pytorch/empty has an empty spec.serverConfig",
        ),
        (
            "a spec.template that is not an object",
            review("CREATE", &numeric_template),
            false,
            "the object's spec.template is not a JSON object",
        ),
        (
            "ServerConfig whose pod spec is not a pod spec",
            review("CREATE", &owned_by("broken")),
            false,
            "cannot apply ServerConfig financial-mlops-pytorch/broken-config: ServerConfig financial-mlops-pytorch/broken-config: spec.podSpec is not a valid pod spec",
        ),
    ];
    for (name, body, allowed, text) in cases {
        let resp = post(
            &c,
            srv.addr,
            serde_json::to_vec(&body).expect("json"),
            "application/json",
        )
        .await;
        assert_eq!(resp.status(), 200, "case {name}");
        let v: Value = resp.json().await.expect("json");
        let r = &v["response"];
        assert_eq!(
            r["uid"], "e911857d-c318-11e8-bbad-025000000001",
            "case {name}"
        );
        assert_eq!(r["allowed"], allowed, "case {name}: {v}");
        assert!(r.get("patch").is_none(), "case {name}: no patch: {v}");
        if allowed {
            assert!(r.get("warnings").is_none(), "case {name}: untouched: {v}");
        } else {
            let message = r["status"]["message"].as_str().unwrap_or("");
            assert!(message.contains(text), "case {name}: {message}");
        }
        assert_healthy(&srv).await;
    }
}

/// A TLS stream offering only HTTP/1.1, trusting the test CA.
async fn http1_stream(srv: &Running) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = support::tls::client_config(
        &srv.ca,
        &[b"http/1.1"],
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        None,
    );
    support::tls::connect(srv.addr, config).await.expect("TLS")
}

fn request_head(len: usize) -> String {
    format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    )
}

#[tokio::test]
async fn headers_sent_byte_by_byte_are_cut_off_at_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let srv = start(limits).await;
    let tls = http1_stream(&srv).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    // Slowloris: the headers never end, one byte every 50 ms.
    let writer = tokio::spawn(async move {
        let mut written = 0usize;
        for b in b"POST /mutate HTTP/1.1\r\nhost: localhost\r\nx-slow: "
            .iter()
            .chain(std::iter::repeat(&b'a'))
        {
            if wr.write_all(&[*b]).await.is_err() || wr.flush().await.is_err() {
                break;
            }
            written += 1;
            if written > 1200 {
                break; // a minute of trickle: the server never cut it off
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        written
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server kept a header-trickling connection open for 30 s"
    );
    assert!(
        answer.is_empty(),
        "no response, the connection is closed: {:?}",
        String::from_utf8_lossy(&answer)
    );
    writer.abort();
    assert_healthy(&srv).await;
}

#[tokio::test]
async fn a_body_sent_byte_by_byte_within_the_request_timeout_is_answered() {
    let srv = start(Limits::default()).await;
    let body = serde_json::to_vec(&review("CREATE", &incoming())).expect("json");
    let mut tls = http1_stream(&srv).await;
    tls.write_all(request_head(body.len()).as_bytes())
        .await
        .expect("head");
    tls.flush().await.expect("flush");
    // One TLS record per byte: the server sees the body in ~8,000 pieces.
    for (i, b) in body.iter().enumerate() {
        tls.write_all(&[*b]).await.expect("byte");
        tls.flush().await.expect("flush");
        if i % 1024 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the JSON body is complete (keep-alive: no EOF).
    let text = loop {
        let n = tokio::time::timeout(Duration::from_secs(30), tls.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((_, json_body)) = text.split_once("\r\n\r\n") {
            if serde_json::from_str::<Value>(json_body).is_ok() {
                break text;
            }
        }
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (_, json_body) = text.split_once("\r\n\r\n").expect("body");
    let v: Value = serde_json::from_str(json_body).expect("json");
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(v["response"]["patch"].is_string(), "{v}");
    assert_healthy(&srv).await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_at_the_request_timeout() {
    let limits = Limits {
        request_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let srv = start(limits).await;
    let body = serde_json::to_vec(&review("CREATE", &incoming())).expect("json");
    let mut tls = http1_stream(&srv).await;
    tls.write_all(request_head(body.len()).as_bytes())
        .await
        .expect("head");
    tls.write_all(&body[..body.len() / 2]).await.expect("half");
    tls.flush().await.expect("flush");
    // The rest never comes.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_healthy(&srv).await;
}

#[tokio::test]
async fn tls_1_0_and_1_1_client_hellos_get_a_protocol_version_alert() {
    use support::tls::{raw_client_hello, send_raw_hello, HelloAnswer};
    let srv = start(Limits::default()).await;
    // ECDHE-ECDSA suites with AES-GCM (TLS 1.2) and AES-CBC (TLS 1.0/1.1).
    let suites = [0xc02b, 0xc02c, 0xc009, 0xc00a, 0xc013, 0x002f];
    // The hand-made hello is good: as TLS 1.2 it gets a ServerHello.
    assert_eq!(
        send_raw_hello(srv.addr, &raw_client_hello(0x0303, &suites)).await,
        HelloAnswer::ServerHello
    );
    for (name, version) in [("TLS 1.0", 0x0301), ("TLS 1.1", 0x0302)] {
        let answer = send_raw_hello(srv.addr, &raw_client_hello(version, &suites)).await;
        assert_eq!(
            answer,
            HelloAnswer::Alert(70),
            "{name}: protocol_version alert"
        );
    }
    assert_healthy(&srv).await;
}

#[tokio::test]
async fn tls_1_2_without_an_ecdhe_aead_suite_is_refused() {
    use support::tls::{raw_client_hello, send_raw_hello, HelloAnswer};
    let srv = start(Limits::default()).await;
    // The control: one ECDHE-ECDSA-AES128-GCM suite is accepted.
    assert_eq!(
        send_raw_hello(srv.addr, &raw_client_hello(0x0303, &[0xc02b])).await,
        HelloAnswer::ServerHello
    );
    let weak: [(&str, &[u16]); 4] = [
        (
            "CBC with ECDHE",
            &[0xc009, 0xc00a, 0xc023, 0xc024, 0xc013, 0xc014],
        ),
        ("CBC with RSA key exchange", &[0x002f, 0x0035, 0x003c]),
        ("AES-GCM without forward secrecy", &[0x009c, 0x009d]),
        ("3DES and RC4", &[0x000a, 0xc012, 0x0005, 0xc011]),
    ];
    for (name, suites) in weak {
        let answer = send_raw_hello(srv.addr, &raw_client_hello(0x0303, suites)).await;
        assert_eq!(answer, HelloAnswer::Alert(40), "{name}: handshake_failure");
    }
    assert_healthy(&srv).await;
}

#[tokio::test]
async fn every_suite_the_server_accepts_is_ecdhe_with_aead() {
    let srv = start(Limits::default()).await;
    let all = rustls::crypto::ring::default_provider().cipher_suites;
    let mut accepted = Vec::new();
    for suite in &all {
        let version = match suite {
            rustls::SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
            rustls::SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
        };
        let config =
            support::tls::client_config(&srv.ca, &[b"http/1.1"], &[version], Some(vec![*suite]));
        if let Ok(tls) = support::tls::connect(srv.addr, config).await {
            let (_, conn) = tls.get_ref();
            let got = conn.negotiated_cipher_suite().expect("suite").suite();
            let v = conn.protocol_version().expect("version");
            accepted.push(format!("{v:?} {got:?}"));
        }
    }
    let allowed = [
        "TLSv1_3 TLS13_AES_256_GCM_SHA384",
        "TLSv1_3 TLS13_AES_128_GCM_SHA256",
        "TLSv1_3 TLS13_CHACHA20_POLY1305_SHA256",
        "TLSv1_2 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLSv1_2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLSv1_2 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ];
    assert!(
        accepted.iter().all(|a| allowed.contains(&a.as_str())),
        "{accepted:?}"
    );
    assert!(
        accepted.iter().any(|a| a.starts_with("TLSv1_3")),
        "{accepted:?}"
    );
    assert!(
        accepted.iter().any(|a| a.starts_with("TLSv1_2")),
        "{accepted:?}"
    );
    // A client with default settings gets TLS 1.3.
    let config = support::tls::client_config(
        &srv.ca,
        &[b"http/1.1"],
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        None,
    );
    let tls = support::tls::connect(srv.addr, config).await.expect("TLS");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_healthy(&srv).await;
}

#[tokio::test]
async fn alpn_negotiates_h2_and_http1() {
    let srv = start(Limits::default()).await;
    for (offer, want) in [
        (
            &[b"h2".as_slice(), b"http/1.1".as_slice()][..],
            b"h2".as_slice(),
        ),
        (&[b"h2".as_slice()][..], b"h2".as_slice()),
        (&[b"http/1.1".as_slice()][..], b"http/1.1".as_slice()),
    ] {
        let config = support::tls::client_config(
            &srv.ca,
            offer,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
            None,
        );
        let tls = support::tls::connect(srv.addr, config).await.expect("TLS");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(want),
            "offer {offer:?}"
        );
    }
    assert_healthy(&srv).await;
}

/// The real binary at its default log level, fed requests that carry a
/// marker in every place a secret could be (env values, annotations,
/// userInfo, headers, the kubeconfig token, malformed bodies): the
/// marker never reaches the log, while the decisions do.
#[test]
fn default_log_level_prints_no_request_contents_headers_or_tokens() {
    const MARKER: &str = "SECRET-7f3a91c2";
    let tmp = tempfile::tempdir().expect("tmp");
    let g = pair();
    let certs = SecretDir::new(tmp.path(), &g.cert, &g.key);
    let log_path = tmp.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let port = support::serve::free_port();
    let token = format!("{MARKER}-kubeconfig");
    let serve = support::serve::Serve {
        shutdown_delay: "100ms",
        log_format: "json",
        token: &token,
        stderr: Some(log),
    };
    let mut child = serve.spawn(tmp.path(), &certs, port);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let statuses = rt.block_on(async {
        support::tls::wait_for_port(port, 200).await;
        let mut secretive = incoming();
        secretive["metadata"]["annotations"]["team/api-key"] = json!(MARKER);
        secretive["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "PASSWORD", "value": MARKER}]);
        let mut good = review("CREATE", &secretive);
        good["request"]["userInfo"]["extra"] = json!({"token": [MARKER]});
        let mut unowned = secretive.clone();
        unowned["metadata"]["ownerReferences"] = json!([]);
        let bodies: Vec<Vec<u8>> = vec![
            serde_json::to_vec(&good).expect("json"),
            serde_json::to_vec(&review("UPDATE", &unowned)).expect("json"),
            format!("{{\"apiVersion\":\"admission.k8s.io/v1\",\"password\":\"{MARKER}\"").into_bytes(),
            format!("{{\"hello\":{{\"token\":\"{MARKER}\"}}}}").into_bytes(),
            // serde's type errors quote the offending string.
            format!("{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{{\"uid\":\"u\",\"dryRun\":\"{MARKER}\"}}}}").into_bytes(),
            format!("{{\"apiVersion\":\"{MARKER}\",\"kind\":\"AdmissionReview\"}}").into_bytes(),
            // ... and unknown enum values in backticks.
            format!("{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{{\"uid\":\"u\",\"operation\":\"{MARKER}\"}}}}").into_bytes(),
        ];
        let c = client(&[&g.ca_cert], false);
        let mut statuses = Vec::new();
        for body in bodies {
            let resp = c
                .post(format!("https://localhost:{port}/mutate"))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {MARKER}"))
                .header("x-api-key", MARKER)
                .body(body)
                .send()
                .await
                .expect("answered");
            statuses.push(resp.status().as_u16());
        }
        statuses
    });
    support::serve::terminate(&child);
    let _ = support::serve::exit_within(&mut child, 200);
    let _ = child.wait();
    assert_eq!(statuses, vec![200, 200, 400, 400, 400, 400, 400]);
    let text = std::fs::read_to_string(&log_path).expect("log");
    // The log is the real one: it has the decision and the rejections.
    assert!(text.contains("\"outcome\":\"denied\""), "{text}");
    assert!(
        text.contains("rejected malformed admission review"),
        "{text}"
    );
    // ... with the quoted pieces elided rather than the lines dropped.
    assert!(text.contains(r#"invalid type: string \"…\""#), "{text}");
    assert!(text.contains("unknown variant `…`"), "{text}");
    let leaks: Vec<&str> = text.lines().filter(|l| l.contains(MARKER)).collect();
    assert!(
        leaks.is_empty(),
        "log lines carrying request contents: {leaks:#?}"
    );
}

/// Reads until the server closes the connection (or `within` passes);
/// `true` when it closed.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(within, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await,
        Ok(())
    )
}

#[tokio::test]
async fn idle_connections_are_closed_on_both_ports() {
    let limits = Limits {
        first_byte_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let srv = start(limits).await;
    // a TLS connection that never sends a request
    let mut fresh = http1_stream(&srv).await;
    // a plain TCP connection to the webhook port that never starts TLS
    let mut no_tls = tokio::net::TcpStream::connect(srv.addr).await.expect("tcp");
    // the metrics port: nothing at all, and a header that never ends
    let mut metrics_idle = tokio::net::TcpStream::connect(srv.metrics_addr)
        .await
        .expect("tcp");
    let mut metrics_slow = tokio::net::TcpStream::connect(srv.metrics_addr)
        .await
        .expect("tcp");
    metrics_slow
        .write_all(b"GET /metrics HTTP/1.1\r\nx-slow: a")
        .await
        .expect("write");
    for (name, closed) in [
        (
            "fresh TLS connection",
            closed_within(&mut fresh, Duration::from_secs(10)).await,
        ),
        (
            "connection without TLS",
            closed_within(&mut no_tls, Duration::from_secs(10)).await,
        ),
        (
            "idle metrics connection",
            closed_within(&mut metrics_idle, Duration::from_secs(10)).await,
        ),
        (
            "slow metrics header",
            closed_within(&mut metrics_slow, Duration::from_secs(10)).await,
        ),
    ] {
        assert!(closed, "{name} was still open after 10 s");
    }
    let metrics = scrape(&srv).await;
    // the series exists from the start at 0: the closes must have counted
    let idle = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "serverconfig_webhook_refusals_total{listener=\"webhook\",reason=\"idle\"} ",
            )
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(idle.is_some_and(|n| n >= 1), "{metrics}");
    assert_healthy(&srv).await;
}

#[tokio::test]
async fn at_the_cap_idle_connections_make_room_and_busy_ones_do_not() {
    let limits = Limits {
        max_connections: 4,
        first_byte_timeout: Duration::from_secs(20),
        header_timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    let srv = start(limits).await;
    // four connections that send nothing fill the cap
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(srv.addr).await.expect("tcp"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // a good review still gets through: the oldest idle one makes room
    assert_healthy(&srv).await;
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(2)).await,
        "the oldest idle connection was not the one closed"
    );
    // four connections that each started a request hold their places
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut s = http1_stream(&srv).await;
        s.write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("a started request");
        s.flush().await.expect("flush");
        busy.push(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut fifth = tokio::net::TcpStream::connect(srv.addr).await.expect("tcp");
    assert!(
        closed_within(&mut fifth, Duration::from_secs(2)).await,
        "a fifth connection was kept while four busy ones hold the cap"
    );
    let metrics = scrape(&srv).await;
    assert!(metrics.contains("reason=\"evicted\""), "{metrics}");
    assert!(metrics.contains("reason=\"connection_cap\""), "{metrics}");
    drop(busy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_healthy(&srv).await;
}

#[tokio::test]
async fn bodies_past_the_in_flight_budget_get_503_and_the_budget_comes_back() {
    let limits = Limits {
        max_inflight_bytes: 1 << 20,
        ..Limits::default()
    };
    let srv = start(limits).await;
    // one request declares a 900 KiB body and sends it slowly
    let mut slow = http1_stream(&srv).await;
    slow.write_all(request_head(900 * 1024).as_bytes())
        .await
        .expect("head");
    slow.write_all(&[b' '; 1024]).await.expect("some body");
    slow.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // a second large one does not fit beside it
    let mut second = http1_stream(&srv).await;
    second
        .write_all(request_head(300 * 1024).as_bytes())
        .await
        .expect("head");
    second.flush().await.expect("flush");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_lowercase().contains("retry-after: 1"), "{text}");
    // the slow one gives up its share when it goes
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_healthy(&srv).await;
    let metrics = scrape(&srv).await;
    assert!(metrics.contains("reason=\"inflight_bytes\""), "{metrics}");
    assert!(
        metrics.contains("serverconfig_webhook_inflight_bytes 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_before_it_is_sent() {
    let srv = start(Limits::default()).await;
    let mut tls = http1_stream(&srv).await;
    tls.write_all(request_head(BODY_LIMIT + 1).as_bytes())
        .await
        .expect("head");
    tls.flush().await.expect("flush");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut answer))
        .await
        .expect("an answer without the body")
        .expect("read");
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"));
    assert_healthy(&srv).await;
}
