//! tenancy-proxy binary: configuration, logging, serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use tenancy_proxy::Config;

/// mimalloc: the request path allocates many short-lived strings and maps;
/// glibc malloc spent ~9 % of the proxy's CPU on them (perf, benches/proxy).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tenancy-proxy: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tenancy_proxy::config::runtime_builder(config.threads).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tenancy-proxy: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(serve(config));
}

async fn serve(config: Config) {
    let level = match tenancy_proxy::config::log_filter(&config.log_level) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tenancy-proxy: {e}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    if config.log_format == "json" {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let addr = match server_addr(&config.server_host, config.server_port).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "tenancy-proxy: invalid server-host {:?}: {e}",
                config.server_host
            );
            std::process::exit(2);
        }
    };
    let running = match tenancy_proxy::start(config, addr).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tenancy-proxy: {e}");
            std::process::exit(1);
        }
    };
    match &running.state.config.server_unix_socket {
        Some(path) => tracing::info!(target: "startup", socket = %path, "listening"),
        None => tracing::info!(target: "startup", addr = %running.addr, "listening"),
    }
    if let Some(a) = running.admin_addr {
        tracing::info!(target: "startup", addr = %a, "admin server listening");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
}

/// PostgREST's `server-host`: `*`, `*4`, `!4` (any IPv4), `*6`, `!6` (any
/// IPv6), an address, or a host name.
async fn server_addr(host: &str, port: u16) -> Result<SocketAddr, String> {
    let any = match host {
        "*" | "*4" | "!4" => Some("0.0.0.0"),
        "*6" | "!6" => Some("::"),
        _ => None,
    };
    let host = any.unwrap_or(host);
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
