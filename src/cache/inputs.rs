//! The one lookup layer: turns the caches into the core's [`Inputs`] for a
//! workload's Server. Admission, the sync loop and `doctor` all ask here,
//! so all three see the same Server, ServerConfig and controller-namespace
//! ServerConfig for a workload, found the same way: the Server and its
//! ServerConfig in the workload's own namespace, the controller
//! namespace's ServerConfig of that name from the cache only.

use std::sync::Arc;

use serde_json::Value;

use super::desired::DesiredCache;
use super::{Caches, Lookup};
use crate::core::desired::Desired;
use crate::core::model::{Server, ServerConfig};
use crate::core::mutate::Inputs;
use crate::core::names::is_valid_name;

/// What a miss in the caches means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misses {
    /// Ask the API server (rate limited, a name not found remembered for a
    /// while): admission, where an object may be newer than the watch.
    DirectGet,
    /// A miss is the answer: the sync loop (its trigger comes after the
    /// cache holds the change) and `doctor` (a snapshot of the cluster).
    CacheOnly,
}

/// Where and how to look.
#[derive(Clone, Copy)]
pub struct Lookups<'a> {
    caches: &'a Caches,
    controller_namespace: &'a str,
    misses: Misses,
    desired: Option<&'a DesiredCache>,
}

/// What the lookups found for one Server, owned; [`Found::inputs`] lends
/// it to the core.
#[derive(Default)]
pub struct Found {
    server: Lookup<Server>,
    config: Lookup<ServerConfig>,
    config_error: Option<String>,
    controller_config: Lookup<ServerConfig>,
    desired: Option<Arc<Desired>>,
}

impl<'a> Lookups<'a> {
    /// Lookups in `caches`, with `controller_namespace` as the stock
    /// controller's namespace.
    pub fn new(caches: &'a Caches, controller_namespace: &'a str, misses: Misses) -> Self {
        Lookups {
            caches,
            controller_namespace,
            misses,
            desired: None,
        }
    }

    /// Reuses and keeps desired workloads in `cache` (admission's hot path:
    /// with a hit, the ServerConfig is not even parsed).
    pub fn with_desired(self, cache: &'a DesiredCache) -> Self {
        Lookups {
            desired: Some(cache),
            ..self
        }
    }

    /// The Server `namespace/server_name`, the ServerConfig it names in the
    /// same namespace, and the controller namespace's of that name. Names
    /// that are not Kubernetes names are never looked up (the core refuses
    /// them).
    pub async fn for_server(&self, namespace: &str, server_name: &str) -> Found {
        let mut found = Found::default();
        if !is_valid_name(server_name) {
            return found;
        }
        found.server = self.server(namespace, server_name).await;
        let Some(server) = found.server() else {
            return found;
        };
        let sc_name = server.server_config.clone();
        if !is_valid_name(&sc_name) {
            return found;
        }
        let built = self.built_before(namespace, server, &sc_name);
        if built.is_none() {
            found.config = self.server_config(namespace, &sc_name).await;
            found.config_error = match found.config.as_deref() {
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            };
        }
        found.controller_config = self
            .caches
            .cached_server_config(self.controller_namespace, &sc_name);
        found.desired = built.or_else(|| self.build(&found));
        found
    }

    async fn server(&self, namespace: &str, name: &str) -> Lookup<Server> {
        match self.misses {
            Misses::DirectGet => self.caches.server(namespace, name).await,
            Misses::CacheOnly => self.caches.cached_server(namespace, name),
        }
    }

    async fn server_config(&self, namespace: &str, name: &str) -> Lookup<ServerConfig> {
        match self.misses {
            Misses::DirectGet => self.caches.server_config(namespace, name).await,
            Misses::CacheOnly => self.caches.cached_server_config(namespace, name),
        }
    }

    /// What was built from this Server and the cached ServerConfig version
    /// before, if anything.
    fn built_before(
        &self,
        namespace: &str,
        server: &Server,
        sc_name: &str,
    ) -> Option<Arc<Desired>> {
        let cache = self.desired?;
        let version = self.caches.server_config_version(namespace, sc_name)?;
        cache.cached(server, &version)
    }

    /// The desired workload, built and kept when there is a desired cache.
    fn build(&self, found: &Found) -> Option<Arc<Desired>> {
        let cache = self.desired?;
        Some(cache.get(found.server()?, found.config()?))
    }
}

impl Found {
    /// The Server, when it exists and could be read.
    pub fn server(&self) -> Option<&Server> {
        self.server.as_deref().and_then(|r| r.as_ref().ok())
    }

    /// Why the Server found could not be read, as the client sees it.
    pub fn server_error(&self) -> Option<String> {
        match self.server.as_deref() {
            Some(Err(e)) => Some(format!("serverconfig-webhook: {e}")),
            _ => None,
        }
    }

    /// The Server's ServerConfig in its own namespace, when it could be read.
    pub fn config(&self) -> Option<&ServerConfig> {
        self.config.as_deref().and_then(|r| r.as_ref().ok())
    }

    /// The controller namespace's ServerConfig of that name.
    pub fn controller_config(&self) -> Option<&ServerConfig> {
        self.controller_config
            .as_deref()
            .and_then(|r| r.as_ref().ok())
    }

    /// The core's inputs for a review of this Server's workload;
    /// `old_object` is the stored object on UPDATE.
    pub fn inputs<'a>(&'a self, old_object: Option<&'a Value>) -> Inputs<'a> {
        Inputs {
            server: self.server(),
            config: self.config(),
            config_error: self.config_error.as_deref(),
            controller_config: self.controller_config(),
            old_object,
            desired: self.desired.as_deref(),
        }
    }
}
