//! Reading Prometheus's answer within bounds: at most `max_answer_bytes` of body and
//! `max_series` series, and never from a server the operator was not pointed at.
//!
//! A policy's query runs with the operator's time and memory, so a server that answers at
//! length, with every series it holds, or by sending the operator elsewhere must cost a
//! refusal (a `MetricsAvailable=False` reason of its own), never the operator's memory, a
//! hang or an action. The query's timeout covers the whole exchange, body included: see
//! `Prometheus::query`.

use prometheus_http_query::response::Data;
use reqwest::redirect;
use serde::Deserialize;

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

/// Follows a redirect only to the server the request was sent to, a few times at most.
pub fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let refuse = |why| RedirectRefused {
            to: attempt.url().to_string(),
            why,
        };
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        if !same_server(first, attempt.url()) {
            let refused = refuse("only the configured server is queried");
            return attempt.error(refused);
        }
        if attempt.previous().len() > MAX_REDIRECTS {
            let refused = refuse("too many redirects");
            return attempt.error(refused);
        }
        attempt.follow()
    })
}

fn same_server(a: &reqwest::Url, b: &reqwest::Url) -> bool {
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
pub async fn read(url: &str, mut response: reqwest::Response, bounds: Bounds) -> Result<Data> {
    let too_large = || Error::PrometheusAnswerTooLarge {
        url: url.to_owned(),
        limit: bounds.max_answer_bytes,
    };
    if response
        .content_length()
        .is_some_and(|length| length > bounds.max_answer_bytes)
    {
        return Err(too_large());
    }
    let status = response.status();
    if matches!(
        status,
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
    ) {
        return Err(Error::PrometheusUnauthorized {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(url, super::with_causes(&e)))?
    {
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
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
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
