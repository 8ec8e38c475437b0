//! Binding, serving, background tasks and graceful shutdown.

use std::{net::SocketAddr, sync::Arc};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::make::Shared;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{Config, Error, Result, http::app, state::AppState};

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
        // A redirect is one small write: it should leave at once, not wait for an ACK.
        let listener = listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                debug!(%error, "cannot set TCP_NODELAY");
            }
        });
        let server = axum::serve(listener, Shared::new(app(state.clone())))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let mut server = tokio::spawn(server.into_future());
        let served = tokio::select! {
            finished = &mut server => Some(finished),
            _ = shutdown.cancelled() => None,
        };
        let served = match served {
            Some(finished) => finished,
            None => {
                info!(grace = ?config.shutdown_grace, "shutting down: draining open requests");
                match tokio::time::timeout(config.shutdown_grace, &mut server).await {
                    Ok(finished) => finished,
                    Err(_) => {
                        warn!("requests still open after the grace period; closing them");
                        server.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        tasks.cancel();
        let _ = memory.await;
        let _ = flusher.await;
        state.store.close().await;
        info!("stopped");
        match served {
            Ok(result) => result.map_err(|source| Error::Io {
                context: "server failed".into(),
                source,
            }),
            Err(join) => Err(Error::Io {
                context: "server task failed".into(),
                source: std::io::Error::other(join),
            }),
        }
    }
}
