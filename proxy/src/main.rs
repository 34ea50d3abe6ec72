//! tenancy-proxy binary: configuration, logging, serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use tenancy_proxy::Config;

fn main() {
    let config = Config::load();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.threads > 0 {
        rt.worker_threads(config.threads);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tenancy-proxy: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(serve(config));
}

async fn serve(config: Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info"));
    if config.log_format == "json" {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let addr: SocketAddr = match format!("{}:{}", config.server_host, config.server_port).parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("invalid server address: {e}");
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
    tracing::info!(addr = %running.addr, "listening");
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
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
