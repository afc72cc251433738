//! The Seldon controller's Deployment: which namespaces it watches, read
//! from its flags and env (`--clusterwide`, `--watch-namespaces`,
//! `--namespace`, with `$(VAR)` references resolved). Shared by `doctor`
//! and `migrate`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::Client;

/// What the controller watches, as the 2.9.1 `main.go` decides it:
/// `--clusterwide=false` watches only its own namespace (the watch list is
/// ignored); `--clusterwide=true` watches the list plus its own namespace,
/// or every namespace when the list is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerWatch {
    /// `--clusterwide`.
    pub clusterwide: bool,
    /// `--watch-namespaces`, split on commas (empties dropped).
    pub watch_namespaces: Vec<String>,
    /// `--namespace` (its own namespace; the Deployment's when absent).
    pub namespace: String,
    /// `--use-deployments-for-servers` (2.10): Servers get Deployments,
    /// which have no claim templates.
    pub use_deployments: bool,
}

impl ControllerWatch {
    /// Reads the flags of the `manager` container (else the first one);
    /// `None` when the Deployment has no container.
    pub fn from_deployment(dep: &Deployment) -> Option<ControllerWatch> {
        let own_ns = dep.metadata.namespace.clone().unwrap_or_default();
        let container = dep.spec.template.spec.as_ref().and_then(|p| {
            p.containers
                .iter()
                .find(|c| c.name == "manager")
                .or_else(|| p.containers.first())
        })?;
        // An empty value is stored without `value`: it still substitutes "".
        // `fieldRef: metadata.namespace` (POD_NAMESPACE) is the Deployment's.
        let env: BTreeMap<String, String> = container
            .env
            .iter()
            .flatten()
            .filter_map(|e| match &e.value_from {
                None => Some((e.name.clone(), e.value.clone().unwrap_or_default())),
                Some(from) => from
                    .field_ref
                    .as_ref()
                    .filter(|f| f.field_path == "metadata.namespace")
                    .map(|_| (e.name.clone(), own_ns.clone())),
            })
            .collect();
        let mut watch = ControllerWatch {
            clusterwide: false,
            watch_namespaces: Vec::new(),
            namespace: own_ns.clone(),
            use_deployments: false,
        };
        for a in container
            .args
            .iter()
            .flatten()
            .chain(container.command.iter().flatten())
        {
            let a = resolve(a, &env);
            if let Some(v) = a.strip_prefix("--clusterwide=") {
                watch.clusterwide = v == "true";
            } else if a == "--clusterwide" {
                watch.clusterwide = true;
            } else if let Some(v) = a.strip_prefix("--watch-namespaces=") {
                watch.watch_namespaces = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            } else if let Some(v) = a.strip_prefix("--use-deployments-for-servers=") {
                watch.use_deployments = v == "true";
            } else if a == "--use-deployments-for-servers" {
                watch.use_deployments = true;
            } else if let Some(v) = a.strip_prefix("--namespace=") {
                if !v.is_empty() {
                    watch.namespace = v.to_string();
                }
            }
        }
        Some(watch)
    }

    /// Whether Servers (and the other Seldon resources) in `ns` are reconciled.
    pub fn watches(&self, ns: &str) -> bool {
        if !self.clusterwide {
            return ns == self.namespace;
        }
        self.watch_namespaces.is_empty()
            || ns == self.namespace
            || self.watch_namespaces.iter().any(|w| w == ns)
    }

    /// One phrase saying what is watched (for messages).
    pub fn describe(&self) -> String {
        match (self.clusterwide, self.watch_namespaces.is_empty()) {
            (false, true) => format!("--clusterwide=false: only {}", self.namespace),
            (false, false) => format!(
                "--clusterwide=false: only {} (--watch-namespaces={} is ignored)",
                self.namespace,
                self.watch_namespaces.join(",")
            ),
            (true, true) => "clusterwide, all namespaces".to_string(),
            (true, false) => format!(
                "clusterwide, watching {} and {}",
                self.watch_namespaces.join(","),
                self.namespace
            ),
        }
    }
}

/// Resolves `$(VAR)` in a container arg from its env.
pub fn resolve(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Reads the controller Deployment; `Ok(None)` when it does not exist.
pub async fn read_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Deployment>, kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(clusterwide: &str, watch: Option<&str>) -> Deployment {
        let mut env = vec![json!({"name": "CLUSTERWIDE", "value": clusterwide})];
        env.push(match watch {
            Some(w) => json!({"name": "WATCH_NAMESPACES", "value": w}),
            None => json!({"name": "WATCH_NAMESPACES"}),
        });
        env.push(json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}));
        serde_json::from_value(json!({
            "metadata": {"name": "seldon-v2-controller-manager", "namespace": "seldon-system"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{
                "name": "manager",
                "args": ["--watch-namespaces=$(WATCH_NAMESPACES)", "--namespace=$(POD_NAMESPACE)",
                         "--clusterwide=$(CLUSTERWIDE)"],
                "env": env,
            }]}}}
        }))
        .expect("deployment")
    }

    #[test]
    fn controller_args_resolve_env_references() {
        let env = BTreeMap::from([
            ("CLUSTERWIDE".to_string(), "false".to_string()),
            ("WATCH_NAMESPACES".to_string(), "a,b".to_string()),
        ]);
        assert_eq!(
            resolve("--clusterwide=$(CLUSTERWIDE)", &env),
            "--clusterwide=false"
        );
        assert_eq!(
            resolve("--watch-namespaces=$(WATCH_NAMESPACES)", &env),
            "--watch-namespaces=a,b"
        );
    }

    #[test]
    fn watched_namespaces_follow_the_controller_rules() {
        // (clusterwide, WATCH_NAMESPACES, namespace asked, watched?)
        let cases = [
            ("false", Some(""), "seldon-system", true),
            ("false", Some(""), "team-a", false),
            ("false", Some("team-a"), "team-a", false),
            ("true", None, "team-a", true),
            ("true", Some(""), "anything", true),
            ("true", Some("team-a,team-b"), "team-b", true),
            ("true", Some("team-a"), "seldon-system", true),
            ("true", Some("team-a"), "team-c", false),
        ];
        for (cw, w, ns, want) in cases {
            let watch = ControllerWatch::from_deployment(&deployment(cw, w)).expect("container");
            assert_eq!(watch.namespace, "seldon-system");
            assert_eq!(
                watch.watches(ns),
                want,
                "clusterwide={cw} watch={w:?} ns={ns}: {}",
                watch.describe()
            );
        }
    }

    #[test]
    fn no_container_means_nothing_to_read() {
        let dep: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "x", "namespace": "seldon-system"},
            "spec": {"selector": {}, "template": {"spec": {"containers": []}}}
        }))
        .expect("deployment");
        assert_eq!(ControllerWatch::from_deployment(&dep), None);
    }
}
