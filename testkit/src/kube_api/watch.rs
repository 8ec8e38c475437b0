//! Watches: a chunked response of one JSON event per line, fed from the store's event log.

use std::{convert::Infallible, future, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::header,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::{
    sync::{mpsc, watch as signal},
    time::{Instant, interval_at, sleep},
};
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use super::{
    ChangeType, Shared, http::Request, object::present, registry::ResourceType,
    selector::Selectors, status::Failure, store::Entry,
};

/// Bookmarks only move a client's resume point forward; once a second keeps a test's
/// watchers current without flooding its logs.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Lines a slow client may leave unread before the watch waits for it.
const LINE_BUFFER: usize = 64;

type Line = Result<String, Infallible>;

/// What one watch sends: which objects, and how.
#[derive(Debug)]
struct Watch {
    rt: &'static ResourceType,
    namespace: Option<String>,
    selectors: Selectors,
    metadata_only: bool,
    bookmarks: bool,
}

/// Starts a watch on the request's collection, as its query asks, and streams it.
pub(crate) fn serve(shared: &Arc<Shared>, request: &Request) -> Result<Response, Failure> {
    let target = &request.target;
    let number = |name: &str| {
        let parse = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| Failure::bad_request(format!("invalid {name} {v:?}")))
        };
        request.param(name).map(parse).transpose()
    };
    let since = number("resourceVersion")?.filter(|rv| *rv != 0);
    let timeout = number("timeoutSeconds")?.map(Duration::from_secs);
    let send_initial = request.flag("sendInitialEvents");
    let watch = Watch {
        rt: target.rt,
        namespace: target.namespace.clone(),
        selectors: request.selectors()?,
        metadata_only: request.metadata_only(),
        bookmarks: request.flag("allowWatchBookmarks"),
    };
    let (initial, cursor, wake) = {
        let store = shared.store();
        // Subscribed under the lock, before reading: no write can slip between the two.
        let wake = store.wake_on_write();
        match since {
            Some(rv) if !send_initial => (Vec::new(), rv, wake),
            // No version (or 0), or a streaming list: the current state first, as ADDED.
            _ => {
                let mut lines: Vec<String> = store
                    .list(watch.rt, watch.namespace.as_deref())
                    .filter(|object| watch.selectors.matches(object))
                    .map(|object| watch.line("ADDED", object))
                    .collect();
                if send_initial {
                    lines.push(watch.bookmark(store.rv(), true));
                }
                (lines, store.rv(), wake)
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Line>(LINE_BUFFER);
    let span = tracing::debug_span!(
        "watch",
        kind = watch.rt.kind,
        namespace = target.namespace(),
        since = cursor
    );
    tokio::spawn(
        watch
            .pump(shared.clone(), initial, cursor, wake, timeout, tx)
            .instrument(span),
    );
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    Ok((content_type, Body::from_stream(ReceiverStream::new(rx))).into_response())
}

impl Watch {
    /// Sends `initial`, then every matching write after `cursor`, until the timeout, the
    /// client hangs up, or the server stops.
    async fn pump(
        self,
        shared: Arc<Shared>,
        initial: Vec<String>,
        mut cursor: u64,
        mut wake: signal::Receiver<u64>,
        timeout: Option<Duration>,
        tx: mpsc::Sender<Line>,
    ) {
        let mut shutdown = shared.shutdown.clone();
        let deadline = async {
            match timeout {
                Some(timeout) => sleep(timeout).await,
                None => future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut bookmarks = interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        let mut pending = initial;
        loop {
            let gone = {
                let store = shared.store();
                wake.borrow_and_update();
                match store.entries_after(cursor) {
                    Ok(entries) => {
                        pending.extend(entries.iter().filter_map(|entry| self.render(entry)));
                        cursor = store.rv();
                        None
                    }
                    Err(floor) => Some(Failure::gone(format!(
                        "too old resource version: {cursor} ({floor})"
                    ))),
                }
            };
            if let Some(gone) = gone {
                let line = json!({ "type": "ERROR", "object": gone.body() });
                let _ = tx.send(Ok(format!("{line}\n"))).await;
                return;
            }
            for line in pending.drain(..) {
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            tracing::debug!(cursor, "waiting for writes");
            tokio::select! {
                () = &mut deadline => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = tx.closed() => return,
                changed = wake.changed() => if changed.is_err() { return },
                _ = bookmarks.tick(), if self.bookmarks => pending.push(self.bookmark(cursor, false)),
            }
        }
    }

    /// The line for a logged write, if this watch sees it. An object that starts or stops
    /// matching the selectors is `ADDED` or `DELETED`, as the API's watch cache sends it.
    fn render(&self, entry: &Entry) -> Option<String> {
        let change = &entry.change;
        if entry.rt != self.rt
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != change.namespace)
        {
            return None;
        }
        let matches_now = self.selectors.matches(&change.object);
        let matched_before = entry
            .old
            .as_ref()
            .is_some_and(|old| self.selectors.matches(old));
        let event_type = match (change.change_type, matched_before, matches_now) {
            (ChangeType::Modified, true, true) => "MODIFIED",
            (ChangeType::Added, _, true) | (ChangeType::Modified, false, true) => "ADDED",
            (ChangeType::Deleted, _, true) | (ChangeType::Modified, true, false) => "DELETED",
            (_, _, false) => return None,
        };
        Some(self.line(event_type, &change.object))
    }

    fn line(&self, event_type: &str, object: &Value) -> String {
        let event = json!({ "type": event_type, "object": present(object, self.metadata_only) });
        format!("{event}\n")
    }

    /// A `BOOKMARK`: only a `resourceVersion` (and the end-of-initial-events mark, if asked).
    fn bookmark(&self, rv: u64, initial_events_end: bool) -> String {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let (api_version, kind) = if self.metadata_only {
            ("meta.k8s.io/v1", "PartialObjectMetadata")
        } else {
            (self.rt.api_version, self.rt.kind)
        };
        let event = json!({
            "type": "BOOKMARK",
            "object": { "apiVersion": api_version, "kind": kind, "metadata": metadata },
        });
        format!("{event}\n")
    }
}
