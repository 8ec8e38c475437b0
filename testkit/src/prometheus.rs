//! A throwaway Prometheus scraping given targets every second, for tests that
//! need the real query engine and real scrapes.

use std::{
    collections::BTreeMap,
    fs,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::{
    Error, Result, loopback,
    watchdog::{Watchdog, discard, free_port},
};

/// Debian's `prometheus` package puts the server here.
const BINARY: &str = "/usr/bin/prometheus";
/// Prometheus replays its WAL and opens its TSDB in well under this on a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Every second, so tests see a change within a couple of seconds.
const GLOBAL: &str = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n";

/// One scrape target: an address and the labels its series get (for example `pod`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// A target at `address` whose series carry `labels`.
    pub fn new<'a>(
        address: impl Into<String>,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        Target {
            address: address.into(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

/// Pods to discover through a Kubernetes apiserver (`kubernetes_sd_configs`, role `pod`), as a
/// cluster's Prometheus does: it scrapes every container port named `http` of a Running pod and
/// labels the series with the pod's `namespace` and `pod`.
#[derive(Clone, Debug)]
pub struct KubernetesPods {
    /// The apiserver's URL.
    pub api_server: String,
    /// The CA that signed the apiserver's certificate.
    pub ca_file: PathBuf,
    /// A file holding the bearer token Prometheus authenticates with.
    pub token_file: PathBuf,
}

/// A Prometheus server owned by the test process, scraping every second.
#[derive(Debug)]
pub struct PromServer {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    watchdog: Option<Watchdog>,
}

impl PromServer {
    /// Starts Prometheus on a free loopback port scraping `targets`; returns once it is ready.
    pub fn start(targets: &[Target]) -> Result<PromServer> {
        let temp = tempfile::Builder::new().prefix("testkit-prom-").tempdir();
        // Kept rather than auto-deleted: the watchdog must delete it even after this process dies.
        let dir = temp.map_err(Error::TempDir)?.keep();
        let mut server = PromServer {
            binary: PathBuf::from(BINARY),
            dir,
            port: free_port()?,
            watchdog: None,
        };
        server.write_config(targets)?;
        server.launch()?;
        Ok(server)
    }

    /// Starts Prometheus on a free loopback port scraping the pods it discovers in `pods`.
    /// Debian's Prometheus is built without Kubernetes discovery, so this one is the Prometheus
    /// that `tools/k8s` builds beside the control plane.
    pub fn discovering(pods: &KubernetesPods) -> Result<PromServer> {
        let temp = tempfile::Builder::new().prefix("testkit-prom-").tempdir();
        let dir = temp.map_err(Error::TempDir)?.keep();
        let mut server = PromServer {
            binary: crate::control_plane::binary("prometheus")?,
            dir,
            port: free_port()?,
            watchdog: None,
        };
        let config = format!(
            "{GLOBAL}  - job_name: kubernetes-pods\n    fallback_scrape_protocol: PrometheusText0.0.4\n    kubernetes_sd_configs:\n      - role: pod\n        \
             api_server: {}\n        tls_config: {{ca_file: {}}}\n        authorization: {{credentials_file: {}}}\n    \
             relabel_configs:\n      - {{source_labels: [__meta_kubernetes_pod_phase], regex: Running, action: keep}}\n      \
             - {{source_labels: [__meta_kubernetes_pod_container_port_name], regex: http, action: keep}}\n      \
             - {{source_labels: [__meta_kubernetes_namespace], target_label: namespace}}\n      \
             - {{source_labels: [__meta_kubernetes_pod_name], target_label: pod}}\n",
            pods.api_server,
            pods.ca_file.display(),
            pods.token_file.display(),
        );
        let path = server.dir.join("prometheus.yml");
        fs::write(&path, config).map_err(|source| Error::Write(path, source))?;
        server.launch()?;
        Ok(server)
    }

    /// The base URL of the HTTP API, such as `http://127.0.0.1:9090`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the scrape targets and reloads the configuration.
    pub fn set_targets(&self, targets: &[Target]) -> Result<()> {
        self.write_config(targets)?;
        let (status, body) = http(self.port, "POST", "/-/reload")?;
        if status != 200 {
            return Err(Error::Prometheus(format!(
                "reload answered {status}: {body}"
            )));
        }
        Ok(())
    }

    /// Stops Prometheus, keeping its data for [`PromServer::restart`]; a no-op when stopped.
    pub fn stop(&mut self) -> Result<()> {
        match self.watchdog.take() {
            Some(watchdog) => watchdog.stop_keeping_dir(),
            None => Ok(()),
        }
    }

    /// Starts again on the same port and data (stopping first if running); waits until ready.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Waits until every target has been scraped successfully at least once.
    pub fn wait_for_targets_up(&self, count: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, body) = http(self.port, "GET", "/api/v1/query?query=sum(up)")?;
            // The answer holds `"value":[<time>,"<sum>"]`; the sum is the number of targets up.
            let up = body
                .rsplit_once(",\"")
                .and_then(|(_, rest)| rest.split('"').next())
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0);
            if up >= count as f64 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Prometheus(format!(
                    "{up} of {count} targets up after {timeout:?}: {body}"
                )));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn write_config(&self, targets: &[Target]) -> Result<()> {
        let mut config = format!("{GLOBAL}  - job_name: test\n    static_configs:\n");
        for target in targets {
            config.push_str(&format!("      - targets: ['{}']\n", target.address));
            if !target.labels.is_empty() {
                config.push_str("        labels:\n");
                for (name, value) in &target.labels {
                    config.push_str(&format!("          {name}: '{value}'\n"));
                }
            }
        }
        let path = self.dir.join("prometheus.yml");
        fs::write(&path, config).map_err(|source| Error::Write(path, source))
    }

    fn launch(&mut self) -> Result<()> {
        let dir = self.dir.display();
        let command = [
            self.binary.display().to_string(),
            format!("--config.file={dir}/prometheus.yml"),
            format!("--storage.tsdb.path={dir}/data"),
            format!("--web.listen-address=127.0.0.1:{}", self.port),
            "--web.enable-lifecycle".to_owned(),
        ];
        self.watchdog = Some(Watchdog::spawn(
            Command::new("/bin/sh"),
            &self.dir,
            &command,
        )?);
        let port = self.port;
        let watchdog = self.watchdog.as_mut().expect("launched");
        watchdog.wait_until_ready((port, &self.dir), READY_TIMEOUT, POLL_INTERVAL, || {
            matches!(http(port, "GET", "/-/ready"), Ok((200, _)))
        })
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        discard(self.watchdog.take(), &self.dir);
    }
}

/// [`loopback::http`] with failures as Prometheus errors.
fn http(port: u16, method: &str, path: &str) -> Result<(u16, String)> {
    loopback::http(port, method, path)
        .map_err(|e| Error::Prometheus(format!("{method} {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{Ipv4Addr, TcpListener},
    };

    use super::*;

    /// A one-line metrics endpoint, served from a thread for as long as the test runs.
    fn exporter(metric: &'static str) -> String {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                let body = format!("{metric}\n");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        address
    }

    #[test]
    fn a_started_server_scrapes_its_targets_with_their_labels() -> Result<()> {
        let target = Target::new(exporter("demo_value 42"), [("pod", "web-1")]);
        let server = PromServer::start(std::slice::from_ref(&target))?;
        server.wait_for_targets_up(1, Duration::from_secs(30))?;
        let (status, body) = http(server.port, "GET", "/api/v1/query?query=demo_value")?;
        assert_eq!(status, 200);
        assert!(
            body.contains("\"pod\":\"web-1\"") && body.contains("\"42\""),
            "{body}"
        );
        Ok(())
    }

    #[test]
    fn a_stopped_server_refuses_queries_until_restarted() -> Result<()> {
        let mut server = PromServer::start(&[])?;
        server.stop()?;
        assert!(http(server.port, "GET", "/-/ready").is_err());
        server.restart()?;
        assert_eq!(http(server.port, "GET", "/-/ready")?.0, 200);
        let dir = server.dir.clone();
        drop(server);
        assert!(!dir.exists());
        Ok(())
    }

    #[test]
    fn targets_can_change_while_running() -> Result<()> {
        let server = PromServer::start(&[])?;
        let target = Target::new(exporter("demo_value 7"), [("pod", "web-2")]);
        server.set_targets(&[target])?;
        server.wait_for_targets_up(1, Duration::from_secs(30))
    }
}
