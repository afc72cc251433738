//! The HTTPS shell over real TLS: good and bad reviews, limits, certificate
//! rotation through the kubelet's `..data` swap, and graceful drain. The
//! caches are pre-filled in process (no API server is involved here; the
//! end-to-end suite covers that).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use serverconfig_webhook::cache::Caches;
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

async fn start(limits: Limits) -> Running {
    start_with(limits, None).await
}

async fn start_with(limits: Limits, client_ca: Option<std::path::PathBuf>) -> Running {
    let tmp = tempfile::tempdir().expect("tmp");
    let generated = pair();
    let secret = SecretDir::new(tmp.path(), &generated.cert, &generated.key);
    let metrics = Arc::new(Metrics::new());
    let objects = vec![
        serde_json::from_value(the_server()).expect("server object"),
        serde_json::from_value(team_config()).expect("config object"),
    ];
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
    let done = tokio::spawn(srv.run(async move {
        let _ = rx.await;
    }));
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
        metrics.contains("serverconfig_webhook_cache_objects{kind=\"ServerConfig\"} 1"),
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
    let next = pair();
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
