//! The defaults the API server applies to a pod template (Kubernetes
//! `pkg/apis/core/v1/defaults.go` plus the declarative `+default` markers),
//! and the semantic normalisation used to compare a computed template with
//! a stored one. Together they make the webhook's patch a fixed point:
//! an object it already fixed, re-admitted with the API server's defaults
//! filled in, compares equal and gets no patch.

use serde_json::{Map, Value};

use super::quantity::canonical_value;

/// Scalar fields whose Go type is a pointer, so that an explicit `false`,
/// `0` or `""` is stored and differs from "unset". Every other zero scalar
/// is dropped by Go's `omitempty` and compares equal to absent.
const POINTER_SCALARS: &[&str] = &[
    "automountServiceAccountToken",
    "enableServiceLinks",
    "shareProcessNamespace",
    "setHostnameAsFQDN",
    "hostUsers",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "priority",
    "privileged",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "defaultMode",
    "mode",
    "optional",
    "expirationSeconds",
    "tolerationSeconds",
];

/// Defaults `SetDefaults_PodSpec`, `SetDefaults_Container`, probes, ports,
/// volumes, resource lists and field selectors, as the API server does for
/// the pod template of a StatefulSet or Deployment.
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    // The v1 <-> internal conversion keeps the deprecated `serviceAccount`
    // equal to `serviceAccountName` (filling the latter from it if unset).
    let account = match (spec.get("serviceAccountName"), spec.get("serviceAccount")) {
        (Some(Value::String(n)), _) if !n.is_empty() => Some(n.clone()),
        (_, Some(Value::String(d))) if !d.is_empty() => Some(d.clone()),
        _ => None,
    };
    match account {
        Some(a) => {
            spec.insert("serviceAccountName".into(), Value::String(a.clone()));
            spec.insert("serviceAccount".into(), Value::String(a));
        }
        None => {
            spec.remove("serviceAccount");
        }
    }
    set_if_empty(spec, "dnsPolicy", "ClusterFirst");
    set_if_empty(spec, "restartPolicy", "Always");
    set_if_empty(spec, "schedulerName", "default-scheduler");
    if is_absent(spec.get("securityContext")) {
        spec.insert("securityContext".into(), Value::Object(Map::new()));
    }
    if is_absent(spec.get("terminationGracePeriodSeconds")) {
        spec.insert("terminationGracePeriodSeconds".into(), Value::from(30));
    }
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(key) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c);
            }
        }
    }
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            default_volume(v);
        }
    }
    round_resource_list(spec.get_mut("overhead"));
    if let Some(Value::Object(r)) = spec.get_mut("resources") {
        round_resource_list(r.get_mut("limits"));
        round_resource_list(r.get_mut("requests"));
    }
}

/// Defaults a `PersistentVolumeClaimSpec` (volumeMode, resource lists).
pub fn default_pvc_spec(spec: &mut Map<String, Value>) {
    set_if_empty(spec, "volumeMode", "Filesystem");
    if let Some(Value::Object(r)) = spec.get_mut("resources") {
        round_resource_list(r.get_mut("limits"));
        round_resource_list(r.get_mut("requests"));
    }
}

fn is_absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

fn set_if_empty(m: &mut Map<String, Value>, key: &str, value: &str) {
    let empty = match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    if empty {
        m.insert(key.into(), Value::String(value.into()));
    }
}

fn default_container(c: &mut Map<String, Value>) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let policy = if image_defaults_to_always(image) {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_if_empty(c, "imagePullPolicy", policy);
    set_if_empty(c, "terminationMessagePath", "/dev/termination-log");
    set_if_empty(c, "terminationMessagePolicy", "File");
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_if_empty(p, "protocol", "TCP");
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = c.get_mut(probe) {
            for (field, default) in [
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ] {
                let zero = p.get(field).and_then(Value::as_i64).unwrap_or(0) == 0;
                if zero {
                    p.insert(field.into(), Value::from(default));
                }
            }
            default_handler(p);
        }
    }
    if let Some(Value::Object(l)) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(Value::Object(h)) = l.get_mut(hook) {
                default_handler(h);
            }
        }
    }
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut() {
            if let Some(Value::Object(f)) = e.pointer_mut("/valueFrom/fieldRef") {
                set_if_empty(f, "apiVersion", "v1");
            }
        }
    }
    if let Some(Value::Object(r)) = c.get_mut("resources") {
        round_resource_list(r.get_mut("limits"));
        round_resource_list(r.get_mut("requests"));
    }
}

fn default_handler(h: &mut Map<String, Value>) {
    if let Some(Value::Object(g)) = h.get_mut("httpGet") {
        set_if_empty(g, "path", "/");
        set_if_empty(g, "scheme", "HTTP");
    }
    if let Some(Value::Object(g)) = h.get_mut("grpc") {
        if is_absent(g.get("service")) {
            g.insert("service".into(), Value::String(String::new()));
        }
    }
}

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Map<String, Value>) {
    if !VOLUME_SOURCES.iter().any(|k| !is_absent(v.get(*k))) {
        v.insert("emptyDir".into(), Value::Object(Map::new()));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(Value::Object(s)) = v.get_mut(key) {
            if is_absent(s.get("defaultMode")) {
                s.insert("defaultMode".into(), Value::from(420));
            }
            default_field_refs(s);
        }
    }
    if let Some(Value::Array(sources)) = v.get_mut("projected").and_then(|p| p.get_mut("sources")) {
        for s in sources.iter_mut() {
            if let Some(Value::Object(t)) = s.get_mut("serviceAccountToken") {
                if is_absent(t.get("expirationSeconds")) {
                    t.insert("expirationSeconds".into(), Value::from(3600));
                }
            }
            if let Some(Value::Object(d)) = s.get_mut("downwardAPI") {
                default_field_refs(d);
            }
        }
    }
    if let Some(Value::Object(h)) = v.get_mut("hostPath") {
        if is_absent(h.get("type")) {
            h.insert("type".into(), Value::String(String::new()));
        }
    }
    if let Some(Value::Object(e)) = v.get_mut("emptyDir") {
        if let Some(limit) = e.get("sizeLimit").and_then(|q| canonical_value(q, false)) {
            e.insert("sizeLimit".into(), Value::String(limit));
        }
    }
    if let Some(Value::Object(spec)) = v
        .get_mut("ephemeral")
        .and_then(|e| e.pointer_mut("/volumeClaimTemplate/spec"))
    {
        default_pvc_spec(spec);
    }
}

fn default_field_refs(source: &mut Map<String, Value>) {
    if let Some(Value::Array(items)) = source.get_mut("items") {
        for item in items.iter_mut() {
            if let Some(Value::Object(f)) = item.get_mut("fieldRef") {
                set_if_empty(f, "apiVersion", "v1");
            }
        }
    }
}

fn round_resource_list(list: Option<&mut Value>) {
    if let Some(Value::Object(m)) = list {
        for v in m.values_mut() {
            if let Some(c) = canonical_value(v, true) {
                *v = Value::String(c);
            }
        }
    }
}

/// Whether `SetDefaults_Container` picks `Always` for this image: the tag is
/// `latest`, or there is neither tag nor digest. Empty or unparsable
/// references get `IfNotPresent`, as `parsers.ParseImageName` fails on them.
fn image_defaults_to_always(image: &str) -> bool {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace()) {
        return false;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let repo_path = name.rsplit_once(':').map_or(name, |(r, _)| r);
    // The repository path (after the registry) must be lower case.
    let path_after_registry = repo_path
        .split_once('/')
        .map_or(repo_path, |(first, rest)| {
            if first.contains('.') || first.contains(':') || first == "localhost" {
                rest
            } else {
                repo_path
            }
        });
    if path_after_registry.chars().any(|c| c.is_ascii_uppercase()) {
        return false;
    }
    let tag = last_segment.split_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some(t), _) => t == "latest",
        (None, Some(_)) => false,
        (None, None) => true,
    }
}

/// Semantic form for comparison: drops nulls, empty strings, lists and
/// objects, and zero scalars that Go's `omitempty` would not store, and
/// writes quantities in canonical form. Two values with the same normal
/// form are stored identically by the API server.
pub fn normalize(v: &Value) -> Value {
    normalize_in(None, v).unwrap_or(Value::Null)
}

fn normalize_in(key: Option<&str>, v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(false) => keep_zero(key).then(|| v.clone()),
        Value::Number(n) if n.as_f64() == Some(0.0) => keep_zero(key).then(|| v.clone()),
        Value::String(s) if s.is_empty() => keep_zero(key).then(|| v.clone()),
        Value::String(s) if key.is_some_and(is_quantity_key) => {
            let canonical = canonical_value(v, false).unwrap_or_else(|| s.clone());
            // `divisor` is a non-pointer Quantity: Go writes its zero as "0".
            (!(key == Some("divisor") && canonical == "0")).then_some(Value::String(canonical))
        }
        Value::Array(a) => {
            let items: Vec<Value> = a
                .iter()
                .map(|x| normalize_in(None, x).unwrap_or_else(|| Value::Object(Map::new())))
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(m) => {
            let quantity_map = key.is_some_and(|k| matches!(k, "limits" | "requests" | "overhead"));
            let out: Map<String, Value> = m
                .iter()
                .filter_map(|(k, x)| {
                    let child = if quantity_map {
                        Some(canonical_value(x, false).map_or_else(|| x.clone(), Value::String))
                    } else {
                        normalize_in(Some(k), x)
                    };
                    child.map(|c| (k.clone(), c))
                })
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => Some(v.clone()),
    }
}

/// Whether `normalize(raw) == *normalized`, without building the normal
/// form of `raw` (the hot path compares every stored template this way).
pub fn eq_normalized(normalized: &Value, raw: &Value) -> bool {
    eq_in(None, raw, Some(normalized).filter(|n| !n.is_null()))
}

fn is_none_in(key: Option<&str>, raw: &Value) -> bool {
    match raw {
        Value::Null => true,
        Value::Bool(false) => !keep_zero(key),
        Value::Number(n) if n.as_f64() == Some(0.0) => !keep_zero(key),
        Value::String(s) if s.is_empty() => !keep_zero(key),
        Value::String(_) if key == Some("divisor") => {
            canonical_value(raw, false).as_deref() == Some("0")
        }
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => {
            let quantity_map = key.is_some_and(|k| matches!(k, "limits" | "requests" | "overhead"));
            !quantity_map && m.iter().all(|(k, x)| is_none_in(Some(k), x))
                || quantity_map && m.is_empty()
        }
        _ => false,
    }
}

fn eq_in(key: Option<&str>, raw: &Value, want: Option<&Value>) -> bool {
    if is_none_in(key, raw) {
        return want.is_none();
    }
    let Some(want) = want else { return false };
    match raw {
        Value::String(s) if key.is_some_and(is_quantity_key) => {
            let canonical = canonical_value(raw, false).unwrap_or_else(|| s.clone());
            want.as_str() == Some(canonical.as_str())
        }
        Value::Array(a) => {
            let Some(w) = want.as_array() else {
                return false;
            };
            a.len() == w.len()
                && a.iter().zip(w).all(|(x, wx)| {
                    if is_none_in(None, x) {
                        wx.as_object().is_some_and(|o| o.is_empty())
                    } else {
                        eq_in(None, x, Some(wx))
                    }
                })
        }
        Value::Object(m) => {
            let Some(w) = want.as_object() else {
                return false;
            };
            let quantity_map = key.is_some_and(|k| matches!(k, "limits" | "requests" | "overhead"));
            let mut count = 0;
            for (k, x) in m {
                if quantity_map {
                    count += 1;
                    let c = canonical_value(x, false).map_or_else(|| x.clone(), Value::String);
                    if w.get(k) != Some(&c) {
                        return false;
                    }
                    continue;
                }
                if is_none_in(Some(k), x) {
                    continue;
                }
                count += 1;
                if !eq_in(Some(k), x, w.get(k)) {
                    return false;
                }
            }
            count == w.len()
        }
        _ => raw == want,
    }
}

fn keep_zero(key: Option<&str>) -> bool {
    key.is_some_and(|k| POINTER_SCALARS.contains(&k))
}

fn is_quantity_key(k: &str) -> bool {
    matches!(k, "sizeLimit" | "storage" | "divisor")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_pull_policy_defaults() {
        let cases = [
            ("", false),
            ("nginx", true),
            ("nginx:latest", true),
            ("nginx:1.2", false),
            ("docker.io/seldonio/mlserver:1.6.1", false),
            ("localhost:5000/app", true),
            ("localhost:5000/app:v1", false),
            ("repo@sha256:abc", false),
            ("repo:latest@sha256:abc", true),
            ("Bad/Upper", false),
        ];
        for (image, always) in cases {
            assert_eq!(image_defaults_to_always(image), always, "image {image:?}");
        }
    }

    #[test]
    fn pod_spec_defaults() {
        let mut spec = json!({
            "containers":[{"name":"a","image":"x:1","ports":[{"containerPort":80}],
              "readinessProbe":{"httpGet":{"port":80}},
              "resources":{"limits":{"cpu":"0.5"}},
              "env":[{"name":"P","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]}],
            "volumes":[{"name":"v"},{"name":"s","secret":{"secretName":"s"}}]
        });
        default_pod_spec(spec.as_object_mut().unwrap());
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        let mut sa = json!({"serviceAccountName": "runner", "containers": []});
        default_pod_spec(sa.as_object_mut().unwrap());
        assert_eq!(
            sa["serviceAccount"], "runner",
            "conversion mirrors the deprecated field"
        );
        let mut old_style = json!({"serviceAccount": "legacy", "containers": []});
        default_pod_spec(old_style.as_object_mut().unwrap());
        assert_eq!(old_style["serviceAccountName"], "legacy");
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/");
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
    }

    #[test]
    fn eq_normalized_agrees_with_normalize() {
        let samples = [
            json!({"hostNetwork":false,"resources":{},"args":[],"image":"","x":null,"limits":{"cpu":"1000m"}}),
            json!({"limits":{"cpu":"1"}}),
            json!({"automountServiceAccountToken":false}),
            json!({}),
            json!({"containers":[{"name":"a","env":[{"name":"X","valueFrom":{"resourceFieldRef":{"divisor":"0","resource":"r"}}}]},{}]}),
            json!({"containers":[{"name":"a","env":[{"name":"X","valueFrom":{"resourceFieldRef":{"resource":"r"}}}]},{"x":null}]}),
            json!({"volumes":[{"name":"v","emptyDir":{"sizeLimit":"1024Mi"}}]}),
            json!({"volumes":[{"name":"v","emptyDir":{"sizeLimit":"1Gi"}}]}),
            json!({"a":[1,2],"b":{"c":0}}),
            json!({"a":[1,2,3]}),
            json!(null),
        ];
        for a in &samples {
            for b in &samples {
                assert_eq!(
                    eq_normalized(&normalize(a), b),
                    normalize(a) == normalize(b),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn normalize_treats_go_zero_values_as_absent() {
        let a = json!({"hostNetwork":false,"resources":{},"args":[],"image":"","x":null,"limits":{"cpu":"1000m"}});
        let b = json!({"limits":{"cpu":"1"}});
        assert_eq!(normalize(&a), normalize(&b));
        let p = json!({"automountServiceAccountToken":false});
        assert_ne!(normalize(&p), normalize(&json!({})));
    }
}
