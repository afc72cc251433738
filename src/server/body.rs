//! Reading a review's body under a budget: every byte held in memory by a
//! request in flight counts against one process-wide budget, so that
//! however many connections and streams send large bodies, the memory they
//! hold is bounded. A request past the budget gets 503 at once (the API
//! server fails it closed or the client retries); a body past the size
//! limit gets 413.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The budget is kept in units of this many bytes.
const UNIT: usize = 1024;

/// Bytes of request bodies that may be held at once.
pub struct Budget {
    units: Arc<Semaphore>,
    total: usize,
    metrics: Arc<Metrics>,
}

/// What one request holds of the budget; given back on drop.
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
    metrics: Arc<Metrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics
            .inflight_bytes
            .dec_by(i64::try_from(self.bytes).unwrap_or(i64::MAX));
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the limit (declared or sent).
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The budget of bytes in flight is used up.
    #[error("serverconfig-webhook holds its budget of {budget} request bytes in flight; retry")]
    OverBudget { budget: usize },
    /// The client's stream failed.
    #[error("reading the request body: {0}")]
    Read(#[source] axum::Error),
}

impl Budget {
    /// A budget of `bytes` (rounded up to whole KiB).
    pub fn new(bytes: usize, metrics: Arc<Metrics>) -> Self {
        Budget {
            units: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))),
            total: bytes,
            metrics,
        }
    }

    fn hold(&self) -> Held {
        Held {
            permit: None,
            bytes: 0,
            metrics: self.metrics.clone(),
        }
    }

    /// Grows `held` to cover `bytes`, or fails without waiting.
    fn grow(&self, held: &mut Held, bytes: usize) -> Result<(), BodyError> {
        let budget = self.total;
        let have = held.permit.as_ref().map_or(0, |p| p.num_permits());
        let need = bytes.div_ceil(UNIT).saturating_sub(have);
        if need > 0 {
            let more = u32::try_from(need)
                .ok()
                .and_then(|n| self.units.clone().try_acquire_many_owned(n).ok())
                .ok_or(BodyError::OverBudget { budget })?;
            match &mut held.permit {
                Some(p) => p.merge(more),
                None => held.permit = Some(more),
            }
        }
        if bytes > held.bytes {
            self.metrics
                .inflight_bytes
                .inc_by(i64::try_from(bytes - held.bytes).unwrap_or(i64::MAX));
            held.bytes = bytes;
        }
        Ok(())
    }
}

/// Reads `body` whole, at most `limit` bytes, holding its size against the
/// budget (the declared length up front, when there is one, so a request
/// that cannot fit is refused before a byte is read).
pub async fn read(
    budget: &Budget,
    body: Body,
    declared: Option<usize>,
    limit: usize,
) -> Result<(Bytes, Held), BodyError> {
    if declared.is_some_and(|d| d > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut held = budget.hold();
    budget.grow(&mut held, declared.unwrap_or(0))?;
    let mut data: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        let size = data.len() + chunk.len();
        if size > limit {
            return Err(BodyError::TooLarge { limit });
        }
        budget.grow(&mut held, size)?;
        data.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(data), held))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new())
    }

    #[tokio::test]
    async fn bodies_are_held_against_the_budget_until_dropped() {
        let m = metrics();
        let budget = Budget::new(8 * UNIT, m.clone());
        let (a, held_a) = read(
            &budget,
            Body::from(vec![b'x'; 5 * UNIT]),
            Some(5 * UNIT),
            100 * UNIT,
        )
        .await
        .expect("fits");
        assert_eq!(a.len(), 5 * UNIT);
        let refused = read(
            &budget,
            Body::from(vec![b'y'; 4 * UNIT]),
            Some(4 * UNIT),
            100 * UNIT,
        )
        .await;
        assert!(
            matches!(refused, Err(BodyError::OverBudget { .. })),
            "over budget while a is held"
        );
        assert!(m
            .encode()
            .contains(&format!("serverconfig_webhook_inflight_bytes {}", 5 * UNIT)));
        drop(held_a);
        let again = read(&budget, Body::from(vec![b'y'; 4 * UNIT]), None, 100 * UNIT).await;
        assert!(again.is_ok(), "fits once a is released");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_too_large_declared_or_not() {
        let budget = Budget::new(100 * UNIT, metrics());
        let declared = read(
            &budget,
            Body::from(vec![0u8; 10]),
            Some(11 * UNIT),
            10 * UNIT,
        )
        .await;
        assert!(matches!(declared, Err(BodyError::TooLarge { .. })));
        let sent = read(&budget, Body::from(vec![0u8; 11 * UNIT]), None, 10 * UNIT).await;
        assert!(matches!(sent, Err(BodyError::TooLarge { .. })));
    }
}
