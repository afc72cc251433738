//! Leader election on a `coordination.k8s.io/v1` Lease: every replica
//! serves admissions, only the holder runs the sync loop. Optimistic
//! concurrency (resourceVersion on replace) makes two holders of the record
//! impossible; the timing below keeps two replicas from *acting* as holder
//! at once even when their wall clocks disagree.
//!
//! No replica compares another's `renewTime` with its own wall clock. Each
//! remembers the record it last read and the instant, on its own monotonic
//! clock, at which it saw that record change; another holder's Lease counts
//! as expired only once `leaseDurationSeconds` has passed on that clock
//! without a change (client-go's rule). The holder, for its part, stops
//! leading when it has not renewed within `renew_deadline`, strictly shorter
//! than the duration, measured from the instant it *sent* its last
//! successful renewal: that is before the API server stored it, hence before
//! any other replica saw it, so the holder steps down at least
//! `duration - renew_deadline` before anyone may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
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
    /// How long another replica waits, after it last saw the Lease change,
    /// before it may take the Lease over.
    pub duration: Duration,
    /// How often the holder renews and others read the Lease again.
    pub renew_every: Duration,
    /// The holder stops leading when its last successful renewal was sent
    /// this long ago; shorter than `duration`.
    pub renew_deadline: Duration,
}

impl LeaseConfig {
    /// The settings for a lease `duration`: renewal (and the others'
    /// retries) every fifth of it, so that a holder gets three tries before
    /// its renew deadline of two thirds of it (client-go's 10 s of 15 s);
    /// the last third is the margin in which a holder that stepped down
    /// stops its writes before anyone may take over.
    pub fn new(namespace: String, name: String, identity: String, duration: Duration) -> Self {
        LeaseConfig {
            namespace,
            name,
            identity,
            duration,
            renew_every: duration / 5,
            renew_deadline: duration * 2 / 3,
        }
    }
}

/// What a replica makes of the Lease it has just read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// There is no Lease yet: create it with this replica as the holder.
    Create,
    /// Free (no holder, released), this replica's own, or another holder's
    /// that was not renewed for its duration: write this replica in.
    Take,
    /// Another replica holds it; it cannot expire before `until` (on this
    /// replica's monotonic clock).
    Wait { holder: String, until: Instant },
}

/// The Lease record a replica last read and when, on its monotonic clock,
/// it saw it change: the only time another holder's lease is judged by.
#[derive(Clone, Debug, Default)]
pub struct Observer {
    last: Option<(LeaseSpec, Instant)>,
}

impl Observer {
    /// Judges the Lease read at `now` (`None`: there is none), for the
    /// replica `me`; `fallback` is the duration of a record that names
    /// none. Pure: no I/O, the clock is the argument.
    pub fn judge(
        &mut self,
        lease: Option<&LeaseSpec>,
        me: &str,
        fallback: Duration,
        now: Instant,
    ) -> Verdict {
        let Some(spec) = lease else {
            self.last = None;
            return Verdict::Create;
        };
        let seen_at = match &self.last {
            Some((prev, at)) if prev == spec => *at,
            _ => {
                self.last = Some((spec.clone(), now));
                now
            }
        };
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        if holder.is_empty() || holder == me {
            return Verdict::Take;
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(fallback, Duration::from_secs);
        let until = seen_at + duration;
        if now >= until {
            Verdict::Take
        } else {
            Verdict::Wait {
                holder: holder.to_string(),
                until,
            }
        }
    }
}

/// Whether a holder whose last successful renewal was sent at `renewed`
/// still leads at `now`: only before `renewed + renew_deadline`. Pure.
pub fn still_leading(renewed: Option<Instant>, renew_deadline: Duration, now: Instant) -> bool {
    renewed.is_some_and(|t| now.saturating_duration_since(t) < renew_deadline)
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// One attempt to acquire or renew; `Ok(true)` when this replica holds it.
/// `observer` remembers the record read, for the next attempts' verdicts.
async fn try_hold(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observer: &mut Observer,
) -> Result<bool, kube::Error> {
    let secs = i32::try_from(cfg.duration.as_secs().max(1)).unwrap_or(15);
    let found = api.get_opt(&cfg.name).await?;
    let empty = LeaseSpec::default();
    let spec = found.as_ref().map(|l| l.spec.as_ref().unwrap_or(&empty));
    let verdict = observer.judge(spec, &cfg.identity, cfg.duration, Instant::now());
    match (verdict, found) {
        (Verdict::Wait { .. }, _) => Ok(false),
        (Verdict::Create, _) | (Verdict::Take, None) => {
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
        (Verdict::Take, Some(mut lease)) => {
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

/// Publishes `leading` on `tx` when it changed.
fn publish(tx: &watch::Sender<bool>, cfg: &LeaseConfig, leading: bool) {
    if *tx.borrow() != leading {
        tracing::info!(identity = %cfg.identity, leading, "leadership changed");
        let _ = tx.send(leading);
    }
}

/// Runs the election until `stop` is cancelled, then gives the lease up;
/// publishes whether this replica leads on the returned channel. The
/// handle ends once the lease is released. Cancel `stop` only once what
/// leads has stopped writing: the next holder may start at once.
pub fn elect(
    client: Client,
    cfg: LeaseConfig,
    stop: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let mut observer = Observer::default();
        // when the last successful renewal (or acquisition) was sent
        let mut renewed: Option<Instant> = None;
        loop {
            // step down by our own deadline before anything else
            if !still_leading(renewed, cfg.renew_deadline, Instant::now()) {
                renewed = None;
            }
            publish(&tx, &cfg, renewed.is_some());
            let sent = Instant::now();
            // a holder's attempt may not outlive its deadline, nor anyone's
            // the next retry
            let limit = renewed.map_or(sent + cfg.renew_every, |t| t + cfg.renew_deadline);
            let outcome = tokio::select! {
                r = try_hold(&api, &cfg, &mut observer) => Some(r),
                () = tokio::time::sleep_until(limit.into()) => None,
                () = stop.cancelled() => break,
            };
            match outcome {
                Some(Ok(true)) => renewed = Some(sent),
                Some(Ok(false)) => renewed = None,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, lease = %cfg.name, "lease renewal failed");
                }
                None => {
                    tracing::warn!(lease = %cfg.name, "lease renewal timed out");
                }
            }
            if !still_leading(renewed, cfg.renew_deadline, Instant::now()) {
                renewed = None;
            }
            publish(&tx, &cfg, renewed.is_some());
            // the next try, or the step-down deadline if it comes first
            let wake = renewed.map_or(sent + cfg.renew_every, |t| {
                (sent + cfg.renew_every).min(t + cfg.renew_deadline)
            });
            tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => {}
                () = stop.cancelled() => break,
            }
        }
        let leading = *tx.borrow();
        let _ = tx.send(false);
        if leading {
            release(&api, &cfg).await;
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    const ME: &str = "replica-a";
    const OTHER: &str = "replica-b";
    const D: Duration = Duration::from_secs(15);

    /// This replica's wall clock during the reads (never read by `judge`).
    const WALL: i64 = 1_800_000_000;

    /// A record as `holder` would write it, with its `renewTime` `skew`
    /// seconds off this replica's wall clock (`WALL`) and `renewals`
    /// telling renewals apart.
    fn spec(holder: Option<&str>, skew: i64, renewals: i64) -> LeaseSpec {
        let at = Timestamp::from_second(WALL)
            .and_then(|t| t.checked_add(SignedDuration::from_secs(skew + renewals)))
            .ok();
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(15),
            renew_time: holder.and(at.map(MicroTime)),
            ..LeaseSpec::default()
        }
    }

    /// What the verdict should be.
    #[derive(Debug, PartialEq)]
    enum Want {
        Create,
        Take,
        /// Wait, with the lease valid until this many ms after the start.
        WaitUntil(u64),
    }

    #[test]
    fn verdicts() {
        let other = || spec(Some(OTHER), 0, 0);
        let mut long = spec(Some(OTHER), 0, 0);
        long.lease_duration_seconds = Some(30);
        let mut unset = spec(Some(OTHER), 0, 0);
        unset.lease_duration_seconds = None;
        // (case, reads at ms after the start with what they return, the
        // verdict of the last read)
        type Read = (u64, Option<LeaseSpec>);
        let cases: Vec<(&str, Vec<Read>, Want)> = vec![
            ("no lease", vec![(0, None)], Want::Create),
            (
                "empty holder",
                vec![(0, Some(spec(Some(""), 0, 0)))],
                Want::Take,
            ),
            (
                "released (no holder, no renewTime)",
                vec![(0, Some(spec(None, 0, 0)))],
                Want::Take,
            ),
            (
                "own lease, renewTime long past",
                vec![(0, Some(spec(Some(ME), -3600, 0)))],
                Want::Take,
            ),
            (
                "other's renewTime 20 s ahead of our clock, first read",
                vec![(0, Some(spec(Some(OTHER), 20, 0)))],
                Want::WaitUntil(15_000),
            ),
            (
                "other's renewTime 20 s behind our clock, first read",
                vec![(0, Some(spec(Some(OTHER), -20, 0)))],
                Want::WaitUntil(15_000),
            ),
            (
                "unchanged for less than the duration",
                vec![(0, Some(other())), (14_999, Some(other()))],
                Want::WaitUntil(15_000),
            ),
            (
                "unchanged for the duration",
                vec![(0, Some(other())), (15_000, Some(other()))],
                Want::Take,
            ),
            (
                "unchanged for more, renewTime 20 s ahead",
                vec![
                    (0, Some(spec(Some(OTHER), 20, 0))),
                    (16_000, Some(spec(Some(OTHER), 20, 0))),
                ],
                Want::Take,
            ),
            (
                "unchanged for more, renewTime 20 s behind",
                vec![
                    (0, Some(spec(Some(OTHER), -20, 0))),
                    (16_000, Some(spec(Some(OTHER), -20, 0))),
                ],
                Want::Take,
            ),
            (
                "a renewal resets the timer",
                vec![
                    (0, Some(other())),
                    (10_000, Some(spec(Some(OTHER), 0, 1))),
                    (16_000, Some(spec(Some(OTHER), 0, 1))),
                ],
                Want::WaitUntil(25_000),
            ),
            (
                "renewed, then unchanged for the duration",
                vec![
                    (0, Some(other())),
                    (10_000, Some(spec(Some(OTHER), 0, 1))),
                    (25_000, Some(spec(Some(OTHER), 0, 1))),
                ],
                Want::Take,
            ),
            (
                "a new holder resets the timer",
                vec![
                    (0, Some(other())),
                    (14_000, Some(spec(Some("replica-c"), 0, 0))),
                    (20_000, Some(spec(Some("replica-c"), 0, 0))),
                ],
                Want::WaitUntil(29_000),
            ),
            (
                "the record's duration, not ours",
                vec![(0, Some(long.clone())), (20_000, Some(long))],
                Want::WaitUntil(30_000),
            ),
            (
                "no duration in the record: ours",
                vec![(0, Some(unset.clone())), (15_000, Some(unset))],
                Want::Take,
            ),
            (
                "deleted and created again: a new record",
                vec![(0, Some(other())), (10_000, None), (16_000, Some(other()))],
                Want::WaitUntil(31_000),
            ),
        ];
        let t0 = Instant::now();
        for (case, reads, want) in cases {
            let mut observer = Observer::default();
            let mut got = None;
            for (at, lease) in &reads {
                got = Some(observer.judge(lease.as_ref(), ME, D, t0 + Duration::from_millis(*at)));
            }
            let got = match got {
                Some(Verdict::Create) => Want::Create,
                Some(Verdict::Take) => Want::Take,
                Some(Verdict::Wait { holder, until }) => {
                    assert_ne!(holder, ME, "{case}");
                    Want::WaitUntil(
                        u64::try_from(until.duration_since(t0).as_millis()).unwrap_or(u64::MAX),
                    )
                }
                None => panic!("{case}: no reads"),
            };
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn step_down_deadline() {
        let cfg = LeaseConfig::new("ns".into(), "l".into(), ME.into(), D);
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // (case, last successful renewal sent at, now, still leading)
        let cases: Vec<(&str, Option<Instant>, Instant, bool)> = vec![
            ("never renewed", None, ms(0), false),
            ("just renewed", Some(ms(0)), ms(0), true),
            ("renewed 9.999 s ago", Some(ms(0)), ms(9_999), true),
            (
                "renewed 10 s ago: the deadline",
                Some(ms(0)),
                ms(10_000),
                false,
            ),
            (
                "renewed 14.9 s ago: before the others' expiry, still down",
                Some(ms(0)),
                ms(14_900),
                false,
            ),
            (
                "renewal sent after now (clock read earlier)",
                Some(ms(5)),
                ms(0),
                true,
            ),
        ];
        for (case, renewed, now, want) in cases {
            assert_eq!(
                still_leading(renewed, cfg.renew_deadline, now),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn timings_leave_a_margin() {
        // (duration, renew every, renew deadline)
        let cases: [(u64, u64, u64); 4] = [
            (15_000, 3_000, 10_000),
            (6_000, 1_200, 4_000),
            (60_000, 12_000, 40_000),
            (1_000, 200, 666),
        ];
        for (d, every, deadline) in cases {
            let cfg =
                LeaseConfig::new("ns".into(), "l".into(), ME.into(), Duration::from_millis(d));
            assert_eq!(cfg.renew_every, Duration::from_millis(every), "{d} ms");
            assert_eq!(
                cfg.renew_deadline.as_millis(),
                u128::from(deadline),
                "{d} ms"
            );
            // three tries fit before the deadline, which the others' expiry follows
            assert!(cfg.renew_every * 3 < cfg.renew_deadline, "{d} ms");
            assert!(cfg.renew_deadline < cfg.duration, "{d} ms");
        }
    }
}
