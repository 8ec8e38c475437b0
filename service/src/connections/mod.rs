//! Accepting connections and answering HTTP/1.1 on each, until told to stop.
//!
//! A connection starts in its first stage (`cached`), which answers cached redirects
//! straight off the socket, and goes to hyper at the first request that stage leaves alone.
//! hyper's own HTTP/1 connection is used, without the protocol sniffing, per-connection
//! shutdown channel and per-request service clone that `axum::serve` adds: on the redirect
//! path those cost about a tenth of the service's instructions (`docs/service-memory.md`).

mod cached;
mod prefixed;

use std::{
    future::Future,
    io, mem,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker, ready},
    time::Duration,
};

use futures::task::AtomicWaker;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::{
    sync::{CancellationToken, WaitForCancellationFutureOwned},
    task::TaskTracker,
};
use tracing::{debug, warn};

use self::{
    cached::{CachedRedirects, Next},
    prefixed::Prefixed,
};
use crate::http::Front;

/// How long to wait before accepting again when the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Answers every connection `listener` accepts with `front` until `shutdown` is
/// cancelled; then stops accepting, lets each connection finish the request it is
/// answering, and returns when all are closed.
pub async fn serve(listener: TcpListener, front: Front, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) if lost_before_accepted(&error) => continue,
                Err(error) => {
                    warn!(%error, "cannot accept a connection; trying again in a second");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        connections.spawn(answer(stream, front.clone(), shutdown.clone()));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Errors that concern one connection, gone before it was accepted, not the listener.
fn lost_before_accepted(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Serves one connection until the client closes it, or until shutdown and the end of
/// the request in progress.
async fn answer(stream: TcpStream, front: Front, shutdown: CancellationToken) {
    // A redirect is one small write: it should leave at once, not wait for an ACK.
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "cannot set TCP_NODELAY");
    }
    let connection = UntilShutdown::new(CachedRedirects::new(stream, front), shutdown);
    if let Err(error) = connection.await {
        debug!(%error, "connection ended with an error");
    }
}

/// Why a connection ended early.
#[derive(Debug, Error)]
enum ConnectionError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

type HyperConnection = http1::Connection<TokioIo<Prefixed>, Front>;

/// Where a connection is in its life.
enum Stage {
    /// Answering cached redirects itself.
    Cached(CachedRedirects),
    /// Served by hyper, from the first request the first stage did not answer (boxed: a
    /// connection that never leaves the first stage does not carry hyper's room).
    Hyper(Box<HyperConnection>),
    /// Closed, or passing from the first stage to hyper.
    Closed,
}

/// Hands a connection's first stage over to hyper, which is told to stop at once if
/// shutdown has begun.
fn hyper_stage(cached: CachedRedirects, stopping: bool) -> Stage {
    let (io, front) = cached.into_hyper();
    // Answers are a head and a small body or none: one buffer and `write`, not a queue of
    // buffers for `writev` (4 % of a redirect's instructions, the same system calls).
    let mut connection = http1::Builder::new()
        .writev(false)
        .serve_connection(TokioIo::new(io), front);
    if stopping {
        Pin::new(&mut connection).graceful_shutdown();
    }
    Stage::Hyper(Box::new(connection))
}

pin_project! {
    /// A connection that is told to finish its request and close once shutdown starts.
    ///
    /// `tokio::select!` on the connection and the shutdown signal polled the signal at
    /// every wake-up of the connection, taking the lock on the token's waiters for each
    /// read and write: 5 % of a redirect's instructions. Here the signal has a waker of its
    /// own and is polled only when that waker fired (and once at the start, to register it).
    struct UntilShutdown {
        stage: Stage,
        #[pin]
        shutdown: WaitForCancellationFutureOwned,
        signal: Arc<Signal>,
        stopping: bool,
    }
}

impl UntilShutdown {
    fn new(cached: CachedRedirects, shutdown: CancellationToken) -> Self {
        UntilShutdown {
            stage: Stage::Cached(cached),
            shutdown: shutdown.cancelled_owned(),
            signal: Arc::new(Signal::new()),
            stopping: false,
        }
    }
}

/// The shutdown signal's waker: notes that the signal must be polled, and wakes the task.
struct Signal {
    /// The signal's waker fired (or it was never polled) since the signal was last polled.
    must_poll: AtomicBool,
    task: AtomicWaker,
}

impl Signal {
    fn new() -> Signal {
        Signal {
            must_poll: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.must_poll.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Future for UntilShutdown {
    type Output = Result<(), ConnectionError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.signal.task.register(cx.waker());
        if !*this.stopping && this.signal.must_poll.swap(false, Ordering::AcqRel) {
            let waker = Waker::from(Arc::clone(this.signal));
            if this
                .shutdown
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                *this.stopping = true;
                match this.stage {
                    Stage::Cached(cached) => cached.stop(),
                    Stage::Hyper(connection) => Pin::new(connection.as_mut()).graceful_shutdown(),
                    Stage::Closed => {}
                }
            }
        }
        loop {
            let next = match this.stage {
                Stage::Cached(cached) => ready!(cached.poll_answer(cx))?,
                Stage::Hyper(connection) => {
                    return Pin::new(connection).poll(cx).map_err(Into::into);
                }
                Stage::Closed => return Poll::Ready(Ok(())),
            };
            *this.stage = match (next, mem::replace(this.stage, Stage::Closed)) {
                (Next::Hyper, Stage::Cached(cached)) => hyper_stage(cached, *this.stopping),
                _ => return Poll::Ready(Ok(())),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use clap::Parser;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };
    use tokio_util::sync::CancellationToken;

    use crate::{Config, Server};

    /// Sends `request` and reads one answer's head and its empty or short body.
    async fn ask(stream: &mut TcpStream, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = vec![0; 4096];
        let read = stream.read(&mut buffer).await.unwrap();
        String::from_utf8_lossy(&buffer[..read]).into_owned()
    }

    async fn start(
        dir: &tempfile::TempDir,
    ) -> (
        SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<crate::Result<()>>,
    ) {
        let database = format!("sqlite:{}", dir.path().join("links.db").display());
        let config = Config::parse_from([
            "shortener",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &database,
        ]);
        let server = Server::bind(config).await.unwrap();
        let address = server.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        (
            address,
            shutdown.clone(),
            tokio::spawn(server.serve(shutdown)),
        )
    }

    #[tokio::test]
    async fn shutdown_answers_the_request_in_progress_closes_idle_connections_and_refuses_new_ones()
    {
        let dir = tempfile::tempdir().unwrap();
        let (address, shutdown, serving) = start(&dir).await;

        // Connected, but nothing asked yet: still in the first stage, which answers itself.
        let mut silent = TcpStream::connect(address).await.unwrap();
        let mut idle = TcpStream::connect(address).await.unwrap();
        let health = ask(&mut idle, "GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");

        let body = r#"{"url": "https://example.com/", "code": "inflight"}"#;
        let (first, rest) = body.split_at(12);
        let mut busy = TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /api/v1/links HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{first}",
            body.len()
        );
        busy.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            TcpStream::connect(address).await.is_err(),
            "a connection was accepted after shutdown"
        );
        for (name, connection) in [("idle", &mut idle), ("silent", &mut silent)] {
            let mut after = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), connection.read_to_end(&mut after))
                .await
                .unwrap_or_else(|_| panic!("the {name} connection was left open"))
                .unwrap();
            assert!(
                after.is_empty(),
                "the {name} connection got {after:?} instead of a close"
            );
        }

        let created = ask(&mut busy, rest).await;
        assert!(created.starts_with("HTTP/1.1 201"), "{created}");
        // Well within the 10 s grace: nothing is left open once the answer is sent.
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("the server still runs after its last request")
            .unwrap()
            .unwrap();
    }

    /// `answer` without its `date` line.
    fn undated(answer: &str) -> String {
        answer
            .lines()
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn a_redirect_answered_before_hyper_is_the_one_hyper_sends() {
        let dir = tempfile::tempdir().unwrap();
        let (address, shutdown, serving) = start(&dir).await;
        let mut api = TcpStream::connect(address).await.unwrap();
        let body = r#"{"url": "https://example.com/same", "code": "same01"}"#;
        let create = format!(
            "POST /api/v1/links HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let created = ask(&mut api, &create).await;
        assert!(created.starts_with("HTTP/1.1 201"), "{created}");

        // The first stage answers the first request; a `content-length` leaves the second,
        // and the connection, to hyper.
        let mut client = TcpStream::connect(address).await.unwrap();
        let first = ask(&mut client, "GET /same01 HTTP/1.1\r\nhost: t\r\n\r\n").await;
        let second = ask(
            &mut client,
            "GET /same01 HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert!(
            first.starts_with("HTTP/1.1 302 Found\r\nlocation: https://example.com/same\r\n"),
            "{first}"
        );
        assert_eq!(undated(&first), undated(&second));
        let third = ask(&mut client, "GET /same01 HTTP/1.1\r\nhost: t\r\n\r\n").await;
        assert_eq!(undated(&third), undated(&first));

        shutdown.cancel();
        drop((api, client));
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("the server still runs after shutdown")
            .unwrap()
            .unwrap();
    }
}
