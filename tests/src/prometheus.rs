//! Reading back what the real Prometheus scraped, to time the operator against it.

use serde_json::Value;

/// One sample: Unix time in seconds and value.
pub type Point = (f64, f64);

/// The raw samples of a range-vector query (such as `metric{pod="web-0"}[2m]`) at the
/// server's now, oldest first, one list per series; empty if Prometheus does not answer.
pub async fn range_samples(
    client: &reqwest::Client,
    base_url: &str,
    promql: &str,
) -> Vec<Vec<Point>> {
    let url = format!("{base_url}/api/v1/query?query={}", encode(promql));
    let Ok(reply) = client.get(url).send().await else {
        return Vec::new();
    };
    let Ok(body) = reply.json::<Value>().await else {
        return Vec::new();
    };
    body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|series| {
            series["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|point| {
                    let time = point[0].as_f64()?;
                    let value = point[1].as_str()?.parse().ok()?;
                    Some((time, value))
                })
                .collect()
        })
        .collect()
}

/// The value of an instant query that yields one number (such as `sum(up)`); `None` if
/// Prometheus does not answer or the result is empty.
pub async fn instant_value(client: &reqwest::Client, base_url: &str, promql: &str) -> Option<f64> {
    let url = format!("{base_url}/api/v1/query?query={}", encode(promql));
    let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// A pod's usage ratio (resident over limit) at every scrape in the last `window`, oldest
/// first: the same two series, and the same division, the operator's query uses.
pub async fn usage_ratios(
    client: &reqwest::Client,
    base_url: &str,
    pod: &str,
    window: &str,
) -> Vec<Point> {
    let selector = |name: &str| format!("{name}{{pod=\"{pod}\"}}[{window}]");
    let resident = range_samples(
        client,
        base_url,
        &selector("shortener_memory_resident_bytes"),
    )
    .await;
    let limit = range_samples(client, base_url, &selector("shortener_memory_limit_bytes")).await;
    let (Some(resident), Some(limit)) = (resident.first(), limit.first()) else {
        return Vec::new();
    };
    resident
        .iter()
        .filter_map(|(time, bytes)| {
            let (_, limit) = limit.iter().find(|(t, _)| t == time)?;
            (*limit > 0.0).then(|| (*time, bytes / limit))
        })
        .collect()
}

/// The time of the first sample of the last unbroken run of samples at or above `ratio`
/// that began no later than `before` (Unix seconds): when the evidence the operator acted on
/// started.
pub fn start_of_last_run_above(points: &[Point], ratio: f64, before: f64) -> Option<f64> {
    let mut start = None;
    for (time, value) in points.iter().filter(|(t, _)| *t <= before) {
        match (start, *value >= ratio) {
            (None, true) => start = Some(*time),
            (Some(_), false) => start = None,
            _ => {}
        }
    }
    start
}

/// Percent-encodes a query parameter.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_run_above_the_mark_starts_after_the_last_dip() {
        let points = [
            (1.0, 0.5),
            (2.0, 0.95),
            (3.0, 0.7),
            (4.0, 0.92),
            (5.0, 0.97),
            (6.0, 0.99),
        ];
        assert_eq!(start_of_last_run_above(&points, 0.9, 10.0), Some(4.0));
        assert_eq!(start_of_last_run_above(&points, 0.9, 2.5), Some(2.0));
        assert_eq!(start_of_last_run_above(&points, 0.99, 5.0), None);
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode(r#"up{pod="a"}[1m]"#),
            "up%7Bpod%3D%22a%22%7D%5B1m%5D"
        );
    }
}
