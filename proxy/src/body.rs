//! Request bodies: read whole, under a per-request size limit
//! (`TENANCY_MAX_BODY_BYTES`) and a budget of body bytes held by all
//! requests at once (`TENANCY_BODY_BUDGET_BYTES`).
//!
//! A body is buffered before it is checked and bound as a statement
//! parameter, and on its way to PostgreSQL it is copied a few times (the
//! statement's parameter, the protocol message, the connection's write
//! buffer): a bulk insert peaks at about six times its size in the proxy.
//! Without a budget, a few clients sending large bodies at once could take
//! the process's memory; with it, requests beyond the budget wait (up to
//! `db-pool-acquisition-timeout`) for bodies ahead of them to finish, then
//! get 503 with `Retry-After`.

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tenancy_core::postgrest::ApiError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB of body.
const UNIT: usize = 1024;

/// The shared budget of buffered body bytes.
pub struct Budget {
    permits: Arc<Semaphore>,
    /// The budget in units (the most one body may take).
    units: usize,
    /// How long a body waits for room.
    wait: Duration,
}

/// Body bytes held by one request: released when dropped.
pub struct Held(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Budget {
    /// `bytes` = 0: no budget.
    pub fn new(bytes: usize, wait: Duration) -> Budget {
        let units = match bytes {
            0 => Semaphore::MAX_PERMITS,
            b => b.div_ceil(UNIT).clamp(1, u32::MAX as usize),
        };
        Budget {
            permits: Arc::new(Semaphore::new(units)),
            units,
            wait,
        }
    }

    /// Room for `bytes` in all for a body already holding `held`.
    async fn reserve(
        &self,
        held: &mut Option<OwnedSemaphorePermit>,
        bytes: usize,
    ) -> Result<(), ApiError> {
        let have = held.as_ref().map_or(0, |p| p.num_permits());
        let want = bytes.div_ceil(UNIT);
        if want <= have {
            return Ok(());
        }
        if want > self.units {
            return Err(too_large(self.units * UNIT, "TENANCY_BODY_BUDGET_BYTES"));
        }
        let more = u32::try_from(want - have).unwrap_or(u32::MAX);
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_many_owned(more)).await {
            Ok(Ok(p)) => {
                match held {
                    Some(h) => h.merge(p),
                    None => *held = Some(p),
                }
                Ok(())
            }
            _ => {
                metrics::counter!("tenancy_proxy_body_budget_timeouts_total").increment(1);
                Err(ApiError::new(
                    503,
                    "TENANCY503",
                    "Too many request bodies are being read at once",
                )
                .hint("Retry later. TENANCY_BODY_BUDGET_BYTES bounds the body bytes the proxy holds at once.")
                .header("Retry-After", "1"))
            }
        }
    }
}

fn too_large(limit: usize, setting: &str) -> ApiError {
    ApiError::new(
        413,
        "TENANCY413",
        format!("The request body is larger than {limit} bytes"),
    )
    .hint(format!(
        "Request bodies are limited to {limit} bytes ({setting})."
    ))
}

/// Read `body` whole: at most `limit` bytes, each byte counted against
/// `budget` as it arrives, until the returned [`Held`] is dropped. A body
/// whose `Content-Length` is over either is refused before it is read; a
/// slow client holds only what it has sent.
pub async fn read(
    body: Body,
    content_length: Option<usize>,
    limit: usize,
    budget: &Budget,
) -> Result<(Bytes, Held), ApiError> {
    let mut held = None;
    if let Some(n) = content_length {
        if n > limit {
            return Err(too_large(limit, "TENANCY_MAX_BODY_BYTES"));
        }
        if n > budget.units * UNIT {
            return Err(too_large(budget.units * UNIT, "TENANCY_BODY_BUDGET_BYTES"));
        }
    }
    let mut body = body;
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                400,
                "TENANCY400",
                format!("Failed to read the request body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            return Err(too_large(limit, "TENANCY_MAX_BODY_BYTES"));
        }
        budget.reserve(&mut held, total).await?;
        parts.push(data);
    }
    let bytes = match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut all = Vec::with_capacity(total);
            for p in parts.drain(..) {
                all.extend_from_slice(&p);
            }
            Bytes::from(all)
        }
    };
    Ok((bytes, Held(held)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: Vec<&'static [u8]>) -> Body {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn limits_and_budget() {
        let budget = Budget::new(4 * UNIT, Duration::from_millis(50));
        // chunked, under both limits; bytes kept in order
        let (b, held) = read(body_of(vec![b"ab", b"cd", b"e"]), None, 100, &budget)
            .await
            .unwrap();
        assert_eq!(&b[..], b"abcde");
        assert_eq!(budget.permits.available_permits(), 3);
        drop(held);
        assert_eq!(budget.permits.available_permits(), 4);
        // over the per-request limit, declared or not
        let e = read(body_of(vec![b"abcdef"]), None, 5, &budget)
            .await
            .err()
            .unwrap();
        assert_eq!((e.status, e.code.as_str()), (413, "TENANCY413"));
        let e = read(body_of(vec![]), Some(6), 5, &budget)
            .await
            .err()
            .unwrap();
        assert_eq!(e.status, 413);
        // larger than the whole budget: 413 at once
        let e = read(body_of(vec![]), Some(5 * UNIT), usize::MAX, &budget)
            .await
            .err()
            .unwrap();
        assert_eq!(e.status, 413);
        // the budget is taken by another body: 503 after the wait, and
        // nothing is held afterwards
        let (_, first) = read(
            body_of(vec![&[0u8; 3 * UNIT]]),
            Some(3 * UNIT),
            usize::MAX,
            &budget,
        )
        .await
        .unwrap();
        let e = read(body_of(vec![&[0u8; 2 * UNIT]]), None, usize::MAX, &budget)
            .await
            .err()
            .unwrap();
        assert_eq!((e.status, e.code.as_str()), (503, "TENANCY503"));
        assert_eq!(budget.permits.available_permits(), 1);
        drop(first);
        let (b, _held) = read(body_of(vec![&[0u8; 2 * UNIT]]), None, usize::MAX, &budget)
            .await
            .unwrap();
        assert_eq!(b.len(), 2 * UNIT);
        // no budget
        let none = Budget::new(0, Duration::from_millis(1));
        assert!(
            read(body_of(vec![&[0u8; 64 * UNIT]]), None, usize::MAX, &none)
                .await
                .is_ok()
        );
    }
}
