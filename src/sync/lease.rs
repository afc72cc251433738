//! Leader election on a `coordination.k8s.io/v1` Lease: every replica
//! serves admissions, only the holder runs the sync loop. Optimistic
//! concurrency (resourceVersion on replace) makes two holders impossible;
//! a holder that cannot renew within the lease duration steps down.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::core::model::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews and others retry.
    pub renew_every: Duration,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Whether `lease` is held by someone else and still valid.
fn held_by_other(lease: &Lease, me: &str) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return false;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match &spec.renew_time {
        Some(MicroTime(t)) => t
            .checked_add(duration)
            .is_ok_and(|exp| exp > Timestamp::now()),
        None => false,
    }
}

/// One attempt to acquire or renew; `Ok(true)` when this replica holds it.
async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let secs = i32::try_from(cfg.duration.as_secs()).unwrap_or(15);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    labels: Some(
                        [(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into(),
                    ),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if held_by_other(&lease, &cfg.identity) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(secs);
            spec.renew_time = Some(now());
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the lease up (on shutdown) so another replica takes over at once.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await {
        if let Some(spec) = lease.spec.as_mut() {
            if spec.holder_identity.as_deref() == Some(cfg.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
            }
        }
    }
}

/// Runs the election until `stop` is cancelled, then gives the lease up;
/// publishes whether this replica leads on the returned channel. The
/// handle ends once the lease is released.
pub fn elect(
    client: Client,
    cfg: LeaseConfig,
    stop: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            let leading = match try_hold(&api, &cfg).await {
                Ok(true) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    true
                }
                Ok(false) => {
                    last_renewed = None;
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = %cfg.name, "lease renewal failed");
                    // Keep leading only while the lease we hold is still valid.
                    last_renewed.is_some_and(|t| t.elapsed() < cfg.duration)
                }
            };
            if *tx.borrow() != leading {
                tracing::info!(identity = %cfg.identity, leading, "leadership changed");
                let _ = tx.send(leading);
            }
            let stopping = tokio::select! {
                _ = tokio::time::sleep(cfg.renew_every) => false,
                _ = stop.cancelled() => true,
            };
            if stopping {
                let _ = tx.send(false);
                if leading {
                    release(&api, &cfg).await;
                }
                return;
            }
        }
    });
    (rx, task)
}
