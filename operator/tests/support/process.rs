//! The released operator binary as a process of its own, the way the chart runs it: leader
//! election on, authenticated as the chart's ServiceAccount.

use std::process::{Child, Command, Stdio};

use super::{Cluster, OPERATOR_NAMESPACE, installed};

/// A `memory-operator run` process, killed when dropped.
pub struct OperatorProcess(Child);

impl OperatorProcess {
    /// Starts candidate `identity` for Lease `lease` (in the operator's namespace, held for
    /// `lease_seconds`), querying the cluster's scripted Prometheus; with `namespace`, it
    /// watches only that namespace.
    pub fn start(
        cluster: &Cluster,
        identity: &str,
        lease: &str,
        lease_seconds: u64,
        namespace: Option<&str>,
    ) -> OperatorProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_memory-operator"));
        command
            .arg("run")
            .env("KUBECONFIG", &installed().operator_kubeconfig)
            .env("PROMETHEUS_URL", cluster.prometheus.url())
            .env("OPERATOR_LISTEN", "127.0.0.1:0")
            .env("LEADER_ELECTION", "true")
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env("LEASE_NAME", lease)
            .env("LEASE_DURATION", format!("{lease_seconds}s"))
            .env("POD_NAME", identity)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(namespace) = namespace {
            command.env("WATCH_NAMESPACE", namespace);
        }
        OperatorProcess(command.spawn().expect("memory-operator starts"))
    }

    /// Sends SIGTERM, as a kubelet does to stop a pod, and waits up to `within` for the exit;
    /// whether it exited successfully in time.
    pub fn terminate(&mut self, within: std::time::Duration) -> bool {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    /// Kills the process at once (SIGKILL), as a node failure would.
    pub fn kill(&mut self) {
        self.0.kill().expect("killing the operator");
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
