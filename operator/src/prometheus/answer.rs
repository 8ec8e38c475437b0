//! Reading Prometheus's answer within bounds: at most `max_answer_bytes` of body and
//! `max_series` series, and never from a server the operator was not pointed at.
//!
//! A policy's query runs with the operator's time and memory, so a server that answers at
//! length, with every series it holds, or by sending the operator elsewhere must cost a
//! refusal (a `MetricsAvailable=False` reason of its own), never the operator's memory, a
//! hang or an action. The query's timeout covers the whole exchange, body included: see
//! `Prometheus::query`.

use http::{
    Request, Response, StatusCode,
    header::{AUTHORIZATION, CONTENT_LENGTH, HeaderValue, LOCATION},
};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use prometheus_http_query::response::Data;
use serde::Deserialize;
use url::Url;

use crate::{Error, Result};

/// How much of an answer the operator reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The largest answer body read, in bytes (after decompression).
    pub max_answer_bytes: u64,
    /// The most series an answer may hold.
    pub max_series: usize,
}

impl Default for Bounds {
    /// 8 MiB and 10,000 series: an evaluation's query names one Deployment's pods, whose
    /// answer is a few kilobytes a pod; a backtest's range answer is one series per pod
    /// and source, with a sample per step.
    fn default() -> Self {
        Bounds {
            max_answer_bytes: 8 << 20,
            max_series: 10_000,
        }
    }
}

/// Redirects followed within one server (same scheme, host and port) at most this often.
const MAX_REDIRECTS: usize = 3;

/// A redirect the operator will not follow.
#[derive(Clone, Debug, thiserror::Error)]
#[error("redirect to {to} refused: {why}")]
pub struct RedirectRefused {
    /// Where the server sent the operator.
    pub to: String,
    why: &'static str,
}

/// The HTTP client of one source: plain HTTP or TLS as its URL says.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// GETs `url` with `http`, following redirects only within the server first asked (same
/// scheme, host and port), a few times at most; the answer is the first that is not one.
/// Errors name the source by `source_url`, its configured URL.
pub async fn follow(
    http: &HttpClient,
    source_url: &str,
    url: Url,
    authorization: Option<&HeaderValue>,
) -> Result<Response<Incoming>> {
    let server = url.clone();
    let mut next = url;
    for hop in 0..=MAX_REDIRECTS {
        let mut request = Request::get(next.as_str());
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| failed(source_url, format!("request for {next}: {e}")))?;
        let response = http
            .request(request)
            .await
            .map_err(|e| failed(source_url, super::with_causes(&e)))?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|location| location.to_str().ok());
        let (true, Some(location)) = (response.status().is_redirection(), location) else {
            return Ok(response);
        };
        let to = next
            .join(location)
            .map_err(|e| failed(source_url, format!("redirect to {location:?}: {e}")))?;
        let refuse = |why| Error::PrometheusRedirectRefused {
            url: source_url.to_owned(),
            refused: RedirectRefused {
                to: to.to_string(),
                why,
            },
        };
        if !same_server(&server, &to) {
            return Err(refuse("only the configured server is queried"));
        }
        if hop == MAX_REDIRECTS {
            return Err(refuse("too many redirects"));
        }
        next = to;
    }
    unreachable!("the last hop returns")
}

fn same_server(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Prometheus's answer envelope.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Envelope {
    Success {
        data: Data,
    },
    Error {
        #[serde(rename = "errorType")]
        error_type: String,
        error: String,
    },
}

/// The data of the answer `response` from the server at `url`, within `bounds`.
pub async fn read(url: &str, response: Response<Incoming>, bounds: Bounds) -> Result<Data> {
    let too_large = || Error::PrometheusAnswerTooLarge {
        url: url.to_owned(),
        limit: bounds.max_answer_bytes,
    };
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
    if length.is_some_and(|length| length > bounds.max_answer_bytes) {
        return Err(too_large());
    }
    let status = response.status();
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return Err(Error::PrometheusUnauthorized {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let mut answer = response.into_body();
    let mut body = Vec::new();
    while let Some(frame) = answer.frame().await {
        let frame = frame.map_err(|e| failed(url, super::with_causes(&e)))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if (body.len() + chunk.len()) as u64 > bounds.max_answer_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let envelope = serde_json::from_slice::<Envelope>(&body).map_err(|e| {
        if status.is_success() {
            failed(url, format!("the answer is not Prometheus's: {e}"))
        } else {
            failed(url, format!("HTTP {status}"))
        }
    })?;
    let data = match envelope {
        Envelope::Success { data } => data,
        Envelope::Error { error_type, error } => {
            return Err(failed(url, format!("{error_type}: {error}")));
        }
    };
    let series = match &data {
        Data::Vector(series) => series.len(),
        Data::Matrix(series) => series.len(),
        Data::Scalar(_) => 1,
    };
    if series > bounds.max_series {
        return Err(Error::PrometheusTooManySeries {
            url: url.to_owned(),
            series,
            limit: bounds.max_series,
        });
    }
    Ok(data)
}

fn failed(url: &str, message: String) -> Error {
    Error::PrometheusFailed {
        url: url.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_is_followed_only_within_the_same_server() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(same_server(
            &url("http://prom:9090/api/v1/query"),
            &url("http://prom:9090/prometheus/api/v1/query")
        ));
        assert!(same_server(
            &url("https://prom/a"),
            &url("https://prom:443/b")
        ));
        for elsewhere in [
            "http://169.254.169.254/latest/meta-data",
            "http://prom:9091/api/v1/query",
            "https://prom:9090/api/v1/query",
        ] {
            assert!(
                !same_server(&url("http://prom:9090/api/v1/query"), &url(elsewhere)),
                "{elsewhere}"
            );
        }
    }
}
