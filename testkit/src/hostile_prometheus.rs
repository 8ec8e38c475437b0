//! A Prometheus that misbehaves on purpose, to test what the operator reads and for how
//! long: every query is answered with a huge body, with a body that trickles in, with a
//! redirect to another server, or with many series.

use std::{convert::Infallible, net::Ipv4Addr, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{OriginalUri, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::stream::{self, StreamExt};

use crate::{Error, Result};

/// How a [`HostilePrometheus`] answers every query.
#[derive(Clone, Debug)]
pub enum Misbehaviour {
    /// A well-formed answer of about `bytes` bytes, streamed without a `Content-Length`.
    Huge { bytes: u64 },
    /// A well-formed, small answer, one byte every `every`.
    Trickle { every: Duration },
    /// `307 Temporary Redirect` to the same path and query on the server at `base`.
    RedirectTo { base: String },
    /// A well-formed answer with `series` series of one pod each.
    Series { series: usize },
}

/// A running hostile Prometheus on a free loopback port.
#[derive(Clone, Debug)]
pub struct HostilePrometheus {
    url: String,
}

impl HostilePrometheus {
    /// Serves `/api/v1/query` and `/api/v1/query_range`, misbehaving as told.
    pub async fn start(misbehaviour: Misbehaviour) -> Result<HostilePrometheus> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(Error::Port)?;
        let address = listener.local_addr().map_err(Error::Port)?;
        let app = Router::new()
            .route("/api/v1/query", get(answer).post(answer))
            .route("/api/v1/query_range", get(answer).post(answer))
            .with_state(misbehaviour);
        tokio::spawn(axum::serve(listener, app).into_future());
        Ok(HostilePrometheus {
            url: format!("http://{address}"),
        })
    }

    /// The base URL, such as `http://127.0.0.1:9090`.
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

const HEAD: &str = r#"{"status":"success","data":{"resultType":"vector","result":["#;
const TAIL: &str = "]}}";

fn series(index: usize) -> String {
    format!(r#"{{"metric":{{"pod":"pod-{index}"}},"value":[1700000000,"1"]}}"#)
}

async fn answer(
    State(misbehaviour): State<Misbehaviour>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match misbehaviour {
        Misbehaviour::Huge { bytes } => {
            // Series in chunks of about 64 KiB, until `bytes` have been sent.
            let chunk: String = (0..900).map(|i| series(i) + ",").collect();
            let chunks = bytes / chunk.len() as u64 + 1;
            let body = stream::iter([Bytes::from(HEAD)])
                .chain(stream::iter(0..chunks).map(move |_| Bytes::from(chunk.clone())))
                .chain(stream::iter([Bytes::from(series(0) + TAIL)]))
                .map(Ok::<_, Infallible>);
            (json, Body::from_stream(body)).into_response()
        }
        Misbehaviour::Trickle { every } => {
            let whole = format!("{HEAD}{}{TAIL}", series(0)).into_bytes();
            let body = stream::iter(whole).then(move |byte| async move {
                tokio::time::sleep(every).await;
                Ok::<_, Infallible>(Bytes::from(vec![byte]))
            });
            (json, Body::from_stream(body)).into_response()
        }
        Misbehaviour::RedirectTo { base } => {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let location = format!("{}{path}", base.trim_end_matches('/'));
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response()
        }
        Misbehaviour::Series { series: count } => {
            let all: Vec<String> = (0..count).map(series).collect();
            (json, format!("{HEAD}{}{TAIL}", all.join(","))).into_response()
        }
    }
}
