//! The accept loop: HTTP/1.1 connections under two limits `axum::serve`
//! does not offer.
//!
//! - **Header-read timeout** (`TENANCY_HEADER_READ_TIMEOUT_MS`, 30 s like
//!   PostgREST's Warp): a client that trickles a request's headers, or keeps
//!   a connection idle between requests, is disconnected when the time is
//!   up — slow clients cannot pin connections (slowloris).
//! - **Connection cap** (`TENANCY_MAX_CONNECTIONS`): past it the loop stops
//!   accepting until a connection closes, instead of failing `accept` with
//!   `EMFILE` once the process runs out of file descriptors — which would
//!   also starve the database pool and jobs of sockets.
//!
//! Shutdown is graceful: the loop stops accepting, every connection
//! finishes the request it is serving and closes, and the task ends when the
//! last one has (the caller bounds the wait).

use axum::extract::Request;
use axum::response::Response;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Limits of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request's line and headers (`None`: unlimited).
    pub header_read_timeout: Option<Duration>,
}

impl ConnLimits {
    /// From the settings: `max_connections` 0 = the open-file limit less
    /// 256; `header_read_timeout_ms` 0 = none.
    pub fn new(max_connections: usize, header_read_timeout_ms: u64) -> ConnLimits {
        let max_connections = match max_connections {
            0 => open_file_limit().saturating_sub(256).max(16),
            n => n,
        }
        // a semaphore's permits, and `acquire_many` takes a u32
        .min(u32::MAX as usize >> 1);
        ConnLimits {
            max_connections,
            header_read_timeout: (header_read_timeout_ms > 0)
                .then(|| Duration::from_millis(header_read_timeout_ms)),
        }
    }
}

/// The soft `RLIMIT_NOFILE` (1024 where it cannot be read).
fn open_file_limit() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given and nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            return usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
        }
    }
    1024
}

/// Serve `svc` on `listener` until `stop` turns true (see the module docs).
pub fn serve<L, S>(
    mut listener: L,
    svc: S,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    L: axum::serve::Listener,
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (closing_tx, closing) = watch::channel(false);
        let mut last_warning: Option<std::time::Instant> = None;
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stop.wait_for(|s| *s) => break,
            };
            if slots.available_permits() == 0 {
                metrics::counter!("tenancy_proxy_connection_limit_reached_total").increment(1);
                // once a minute at most: a flood must not flood the log too
                let now = std::time::Instant::now();
                if last_warning.is_none_or(|t| now.duration_since(t) > Duration::from_secs(60)) {
                    last_warning = Some(now);
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; new clients wait until one closes"
                    );
                }
            }
            let (io, _addr) = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => break,
            };
            let svc = svc.clone();
            let mut closing = closing.clone();
            tokio::spawn(async move {
                let _slot = permit;
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout);
                let hyper_svc =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        tower::ServiceExt::oneshot(svc.clone(), req.map(axum::body::Body::new))
                    });
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), hyper_svc);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    }
                    _ = async { closing.wait_for(|c| *c).await.map(drop) } => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        let _ = closing_tx.send(true);
        // every connection holds a slot until it has closed
        let _ = slots.acquire_many(limits.max_connections as u32).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_settings() {
        let l = ConnLimits::new(10, 0);
        assert_eq!(l.max_connections, 10);
        assert_eq!(l.header_read_timeout, None);
        let l = ConnLimits::new(0, 1500);
        assert!(l.max_connections >= 16);
        assert_eq!(l.header_read_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(
            ConnLimits::new(usize::MAX, 1).max_connections,
            u32::MAX as usize >> 1
        );
    }
}
