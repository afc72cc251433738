//! A port of Seldon 2.9.1's `MergePodSpecs` / `MergeContainers`
//! (`controllers/reconcilers/common/patch_utils.go`) and `updateCapabilities`
//! (`controllers/reconcilers/server/server_reconciler.go`), which lean on
//! `dario.cat/mergo` v1.0.0 with `WithOverride` and `WithAppendSlice`.
//!
//! The merge works on JSON values of the same Go type. mergo's rules, as
//! they fall out for Kubernetes API types:
//! - struct and pointer-to-struct: absent destination takes the source
//!   whole; otherwise fields are merged one by one;
//! - maps (`nodeSelector`, `resources.limits`, ...): key by key, the source
//!   value wins even when it is empty;
//! - slices: **appended** (destination first), never merged by key;
//! - scalars: a non-zero source wins; a zero source (`false`, `0`, `""`)
//!   never overrides a set destination;
//! - `IntOrString` (probe ports): mergo merges its three fields one by one,
//!   so a string source wins and a number source cannot replace a string.

use serde_json::{Map, Value};

/// The fields of Seldon's own `v1alpha1.PodSpec` (the Server override type).
/// `ToV1PodSpec` round-trips through JSON, so any other field of a Server's
/// `podSpec` is dropped before the merge.
const SERVER_PODSPEC_FIELDS: &[&str] = &[
    "volumes",
    "initContainers",
    "containers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "nodeSelector",
    "serviceAccountName",
    "automountServiceAccountToken",
    "nodeName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "securityContext",
    "imagePullSecrets",
    "hostname",
    "subdomain",
    "affinity",
    "schedulerName",
    "tolerations",
    "hostAliases",
    "priorityClassName",
    "priority",
    "dnsConfig",
    "readinessGates",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
];

/// Fields whose Go type is a map (merged key by key), relative to a pod spec
/// or a container. Everything else that is an object is a struct.
const MAP_FIELDS: &[&str] = &["nodeSelector", "overhead", "limits", "requests"];

/// Env var whose value the Server's capabilities rewrite.
pub const CAPABILITIES_ENV: &str = "SELDON_SERVER_CAPABILITIES";

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

/// mergo `Merge(dst, src, WithOverride, WithAppendSlice)` for two values of
/// the same Go struct type, represented as JSON objects.
pub fn merge_struct(dst: &mut Map<String, Value>, src: &Map<String, Value>) {
    for (key, s) in src {
        if s.is_null() {
            continue; // a nil pointer, map or slice in the source changes nothing
        }
        match dst.get_mut(key) {
            None | Some(Value::Null) => {
                // Absent destination: mergo sets the source (zero scalars stay
                // zero, which JSON spells as absent or as the zero value alike).
                dst.insert(key.clone(), s.clone());
            }
            Some(d) => merge_field(key, d, s),
        }
    }
}

fn merge_field(key: &str, d: &mut Value, s: &Value) {
    match (d, s) {
        (Value::Object(dm), Value::Object(sm)) => {
            if MAP_FIELDS.contains(&key) {
                // Go map: every source key wins, even an empty value.
                for (k, v) in sm {
                    dm.insert(k.clone(), v.clone());
                }
            } else {
                merge_struct(dm, sm);
            }
        }
        (Value::Array(da), Value::Array(sa)) => {
            // WithAppendSlice: destination first, then the source. This is
            // the quirk that duplicates env entries, ports and volumes that
            // both sides define: kept on purpose, Seldon does the same.
            da.extend(sa.iter().cloned());
        }
        // IntOrString, merged field by field by mergo: a number cannot
        // replace a string (its Type field is the zero value).
        (Value::String(_), Value::Number(_)) => {}
        (d, s) => {
            if !is_zero(s) {
                *d = s.clone();
            }
        }
    }
}

/// `MergePodSpecs(serverConfig.spec.podSpec, server.spec.podSpec)`.
///
/// Starts from the ServerConfig's pod spec; with an override, merges it
/// (override wins, lists appended) and then rebuilds `containers` with
/// [`merge_containers`].
pub fn merge_pod_specs(
    server_config_pod_spec: &Map<String, Value>,
    override_spec: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut dst = server_config_pod_spec.clone();
    let Some(raw_override) = override_spec else {
        return dst;
    };
    let v1_override: Map<String, Value> = raw_override
        .iter()
        .filter(|(k, _)| SERVER_PODSPEC_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    merge_struct(&mut dst, &v1_override);
    let existing = containers_of(server_config_pod_spec);
    let overrides = containers_of(&v1_override);
    let merged = merge_containers(&existing, &overrides);
    if merged.is_empty() {
        dst.remove("containers");
    } else {
        dst.insert("containers".into(), Value::Array(merged));
    }
    dst
}

fn containers_of(spec: &Map<String, Value>) -> Vec<Value> {
    spec.get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn container_name(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

/// `MergeContainers(existing, overrides)`: override containers first, in
/// override order (merged into every same-named ServerConfig container),
/// then the ServerConfig containers that no override named, in their order.
pub fn merge_containers(existing: &[Value], overrides: &[Value]) -> Vec<Value> {
    let mut out = Vec::with_capacity(existing.len() + overrides.len());
    for o in overrides {
        let mut found = false;
        for e in existing {
            if container_name(o) == container_name(e) {
                found = true;
                let mut merged = e.clone();
                if let (Value::Object(m), Value::Object(om)) = (&mut merged, o) {
                    merge_struct(m, om);
                }
                out.push(merged);
            }
        }
        if !found {
            out.push(o.clone());
        }
    }
    for e in existing {
        if !overrides
            .iter()
            .any(|o| container_name(o) == container_name(e))
        {
            out.push(e.clone());
        }
    }
    out
}

/// `updateCapabilities`: in every container, every env entry named
/// `SELDON_SERVER_CAPABILITIES` becomes `capabilities` joined by commas, or,
/// when only `extraCapabilities` is set, the old value + "," + the extras.
/// Like Seldon, the rewritten entry keeps only name and value (a
/// `valueFrom` is dropped).
pub fn update_capabilities(
    capabilities: &[String],
    extra_capabilities: &[String],
    pod_spec: &mut Map<String, Value>,
) {
    if capabilities.is_empty() && extra_capabilities.is_empty() {
        return;
    }
    let Some(Value::Array(containers)) = pod_spec.get_mut("containers") else {
        return;
    };
    for container in containers {
        let Some(Value::Array(env)) = container.get_mut("env") else {
            continue;
        };
        for entry in env.iter_mut() {
            if entry.get("name").and_then(Value::as_str) != Some(CAPABILITIES_ENV) {
                continue;
            }
            let value = if !capabilities.is_empty() {
                capabilities.join(",")
            } else {
                let old = entry.get("value").and_then(Value::as_str).unwrap_or("");
                format!("{},{}", old, extra_capabilities.join(","))
            };
            *entry = serde_json::json!({ "name": CAPABILITIES_ENV, "value": value });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    struct Case {
        name: &'static str,
        base: Value,
        over: Option<Value>,
        want: Value,
    }

    #[test]
    fn merge_pod_specs_follows_mergo_rules() {
        let cases = vec![
            Case {
                name: "no override keeps the ServerConfig pod spec",
                base: json!({"containers":[{"name":"a","image":"x"}]}),
                over: None,
                want: json!({"containers":[{"name":"a","image":"x"}]}),
            },
            Case {
                name: "override container with the same name: non-zero fields win",
                base: json!({"containers":[{"name":"a","image":"x","imagePullPolicy":"Always"}]}),
                over: Some(json!({"containers":[{"name":"a","image":"y"}]})),
                want: json!({"containers":[{"name":"a","image":"y","imagePullPolicy":"Always"}]}),
            },
            Case {
                name: "env lists are appended, duplicates kept (Seldon quirk)",
                base: json!({"containers":[{"name":"a","env":[{"name":"A","value":"1"}]}]}),
                over: Some(
                    json!({"containers":[{"name":"a","env":[{"name":"A","value":"2"},{"name":"B","value":"3"}]}]}),
                ),
                want: json!({"containers":[{"name":"a","env":[{"name":"A","value":"1"},{"name":"A","value":"2"},{"name":"B","value":"3"}]}]}),
            },
            Case {
                name: "new override containers come first, untouched ones after",
                base: json!({"containers":[{"name":"a"},{"name":"b"}]}),
                over: Some(json!({"containers":[{"name":"c"},{"name":"b","image":"bb"}]})),
                want: json!({"containers":[{"name":"c"},{"name":"b","image":"bb"},{"name":"a"}]}),
            },
            Case {
                name: "resources maps merge key by key",
                base: json!({"containers":[{"name":"a","resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}),
                over: Some(
                    json!({"containers":[{"name":"a","resources":{"limits":{"memory":"2Gi"},"requests":{"cpu":"100m"}}}]}),
                ),
                want: json!({"containers":[{"name":"a","resources":{"limits":{"cpu":"1","memory":"2Gi"},"requests":{"cpu":"100m"}}}]}),
            },
            Case {
                name: "a zero override never clears a set field",
                base: json!({"terminationGracePeriodSeconds":120,"automountServiceAccountToken":true,"containers":[]}),
                over: Some(
                    json!({"terminationGracePeriodSeconds":0,"automountServiceAccountToken":false}),
                ),
                want: json!({"terminationGracePeriodSeconds":120,"automountServiceAccountToken":true}),
            },
            Case {
                name: "a zero override fills an absent pointer field",
                base: json!({"containers":[{"name":"a"}]}),
                over: Some(json!({"automountServiceAccountToken":false})),
                want: json!({"automountServiceAccountToken":false,"containers":[{"name":"a"}]}),
            },
            Case {
                name: "tolerations and volumes are appended",
                base: json!({"tolerations":[{"key":"a"}],"volumes":[{"name":"v1"}],"containers":[{"name":"a"}]}),
                over: Some(json!({"tolerations":[{"key":"b"}],"volumes":[{"name":"v2"}]})),
                want: json!({"tolerations":[{"key":"a"},{"key":"b"}],"volumes":[{"name":"v1"},{"name":"v2"}],"containers":[{"name":"a"}]}),
            },
            Case {
                name: "nested structs merge field by field",
                base: json!({"securityContext":{"runAsUser":1000,"fsGroup":2000},"containers":[{"name":"a"}]}),
                over: Some(json!({"securityContext":{"runAsUser":1001}})),
                want: json!({"securityContext":{"runAsUser":1001,"fsGroup":2000},"containers":[{"name":"a"}]}),
            },
            Case {
                name: "fields outside Seldon's PodSpec type are dropped from the override",
                base: json!({"containers":[{"name":"a"}]}),
                over: Some(json!({"hostUsers":false,"os":{"name":"linux"}})),
                want: json!({"containers":[{"name":"a"}]}),
            },
            Case {
                name: "a number port cannot replace a string port (IntOrString quirk)",
                base: json!({"containers":[{"name":"a","livenessProbe":{"httpGet":{"port":"http"}}}]}),
                over: Some(
                    json!({"containers":[{"name":"a","livenessProbe":{"httpGet":{"port":9000,"path":"/live"}}}]}),
                ),
                want: json!({"containers":[{"name":"a","livenessProbe":{"httpGet":{"port":"http","path":"/live"}}}]}),
            },
            Case {
                name: "node selector map: key-wise, override wins",
                base: json!({"nodeSelector":{"a":"1","b":"2"},"containers":[{"name":"a"}]}),
                over: Some(json!({"nodeSelector":{"b":"3"}})),
                want: json!({"nodeSelector":{"a":"1","b":"3"},"containers":[{"name":"a"}]}),
            },
            Case {
                name: "null override fields change nothing",
                base: json!({"containers":[{"name":"a","image":"x"}]}),
                over: Some(json!({"containers":null,"volumes":null})),
                want: json!({"containers":[{"name":"a","image":"x"}]}),
            },
        ];
        for c in cases {
            let base = obj(c.base);
            let over = c.over.map(obj);
            let got = merge_pod_specs(&base, over.as_ref());
            assert_eq!(Value::Object(got), c.want, "case: {}", c.name);
        }
    }

    #[test]
    fn capabilities_rule() {
        let spec = json!({"containers":[{"name":"a","env":[{"name":CAPABILITIES_ENV,"value":"mlserver,sklearn"},{"name":"X","value":"1"}]},{"name":"b"}]});
        let cases: Vec<(&str, Vec<&str>, Vec<&str>, &str)> = vec![
            ("none set: unchanged", vec![], vec![], "mlserver,sklearn"),
            ("capabilities replace", vec!["a", "b"], vec![], "a,b"),
            ("extra appended", vec![], vec!["c"], "mlserver,sklearn,c"),
            ("capabilities win over extra", vec!["a"], vec!["c"], "a"),
        ];
        for (name, caps, extra, want) in cases {
            let mut s = obj(spec.clone());
            let caps: Vec<String> = caps.into_iter().map(String::from).collect();
            let extra: Vec<String> = extra.into_iter().map(String::from).collect();
            update_capabilities(&caps, &extra, &mut s);
            assert_eq!(
                s["containers"][0]["env"][0]["value"],
                json!(want),
                "case: {name}"
            );
            assert_eq!(
                s["containers"][0]["env"][1]["value"],
                json!("1"),
                "case: {name}"
            );
        }
    }
}
