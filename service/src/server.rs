//! Binding, serving, background tasks and graceful shutdown.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::{Config, Error, Result, connections, http::app, state::AppState};

/// A shortener bound to its port, ready to serve.
pub struct Server {
    config: Config,
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Connects to the database and binds the listen address.
    pub async fn bind(config: Config) -> Result<Server> {
        let state = AppState::build(&config).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Io {
                context: format!("cannot listen on {}", config.listen),
                source,
            })?;
        Ok(Server {
            config,
            listener,
            state,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Io {
            context: "cannot read the bound address".into(),
            source,
        })
    }

    /// The shared state, for tests that look inside.
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, drains open
    /// requests (at most the configured grace), flushes clicks and closes the pool.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<()> {
        let Server {
            config,
            listener,
            state,
        } = self;
        let tasks = CancellationToken::new();
        let memory = tokio::spawn(
            state
                .memory
                .clone()
                .run(config.monitor_interval, tasks.clone())
                .instrument(info_span!("memory_manager")),
        );
        let flusher = tokio::spawn(
            state
                .clone()
                .flush_clicks_every(config.click_flush_interval, tasks.clone())
                .instrument(info_span!("click_flusher")),
        );
        info!(address = %listener.local_addr().map_err(|source| Error::Io { context: "cannot read the bound address".into(), source })?, "serving");
        let mut server = tokio::spawn(connections::serve(
            listener,
            app(state.clone()),
            shutdown.clone(),
        ));
        let served = tokio::select! {
            finished = &mut server => finished,
            _ = shutdown.cancelled() => {
                info!(grace = ?config.shutdown_grace, "shutting down: draining open requests");
                match tokio::time::timeout(config.shutdown_grace, &mut server).await {
                    Ok(finished) => finished,
                    Err(_) => {
                        warn!("requests still open after the grace period; closing them");
                        server.abort();
                        Ok(())
                    }
                }
            }
        };
        tasks.cancel();
        let _ = memory.await;
        let _ = flusher.await;
        state.store.close().await;
        info!("stopped");
        served.map_err(|join| Error::Io {
            context: "server task failed".into(),
            source: std::io::Error::other(join),
        })
    }
}
