//! A real Kubernetes control plane on loopback, the envtest way: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, built from Go modules by `tools/k8s/build.sh`
//! and started as processes on free ports, each under its own watchdog shell so that nothing
//! outlives the test process.
//!
//! The apiserver serves with a certificate of a CA made for this run, authorizes with RBAC,
//! knows one admin identity (a static token in group `system:masters`) and signs
//! service-account tokens (so `kubectl create token` and the TokenRequest API work). The
//! controller manager runs the controllers a workload needs (deployment, replicaset, disruption,
//! garbage collector, namespace, service account) and no node lifecycle controller, so a Node
//! the tests create is never tainted. There is no kubelet: pods are scheduled, and their status
//! is whatever a test writes.
//!
//! Every request is written to an audit log, so a test can say which requests an identity made.

mod audit;
mod binaries;
mod pki;

pub use audit::AuditedRequest;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock, PoisonError},
    time::Duration,
};

use crate::{
    Error, Result, loopback,
    watchdog::{Watchdog, free_port},
};

/// etcd on tmpfs-like settings starts in about a second; the apiserver installs its built-in
/// resources and RBAC roles in a few more. Generous, for a loaded 2-core CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The admin identity's bearer token (loopback only, one run only).
const ADMIN_TOKEN: &str = "testkit-admin-token";
/// The controllers a Deployment, its PodDisruptionBudget and a namespace's lifecycle need.
const CONTROLLERS: &str =
    "deployment,replicaset,disruption,garbagecollector,namespace,serviceaccount";
/// Metadata of every request: who, which verb, which resource, which answer.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

/// One started component: its watchdog, and how to start it again.
struct Component {
    name: &'static str,
    dir: PathBuf,
    command: Vec<String>,
    watchdog: Option<Watchdog>,
}

/// The path of `name`, one of the binaries `tools/k8s` builds.
pub(crate) fn binary(name: &str) -> Result<PathBuf> {
    Ok(binaries::dir()?.join(name))
}

/// A running control plane owned by the test process.
pub struct ControlPlane {
    dir: PathBuf,
    apiserver_port: u16,
    kubeconfig: PathBuf,
    ca: PathBuf,
    components: Mutex<Vec<Component>>,
}

impl ControlPlane {
    /// The control plane of this test binary, started on first use. Statics are never dropped:
    /// the watchdogs stop it when the binary exits.
    pub fn shared() -> Result<&'static ControlPlane> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        match SHARED.get_or_init(|| ControlPlane::start().map_err(|e| e.to_string())) {
            Ok(plane) => Ok(plane),
            Err(message) => Err(Error::Shared(message.clone())),
        }
    }

    /// Starts etcd, the apiserver, the controller manager and the scheduler; returns once the
    /// apiserver is ready and the controller manager has made the `default` service account.
    pub fn start() -> Result<ControlPlane> {
        let bin = binaries::dir()?;
        let temp = tempfile::Builder::new().prefix("testkit-k8s-").tempdir();
        // Kept rather than auto-deleted: etcd's watchdog deletes it even after this process dies.
        let dir = temp.map_err(Error::TempDir)?.keep();
        let pki = pki::write(&dir.join("pki"))?;
        let apiserver_port = free_port()?;
        let plane = ControlPlane {
            kubeconfig: dir.join("admin.kubeconfig"),
            ca: pki.ca.clone(),
            apiserver_port,
            components: Mutex::new(Vec::new()),
            dir,
        };
        plane.write_kubeconfig(&plane.kubeconfig, "admin", ADMIN_TOKEN)?;
        let etcd_port = plane.start_etcd(bin)?;
        plane.start_apiserver(bin, etcd_port, &pki)?;
        plane.start_controllers(bin, &pki)?;
        Ok(plane)
    }

    /// The apiserver's URL, such as `https://127.0.0.1:6443`.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The admin's kubeconfig (group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA that signed the apiserver's serving certificate, as a PEM file.
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// The apiserver's audit log: one JSON event per line.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// Every answered request `username` made so far, from the audit log, oldest first.
    pub fn requests_of(&self, username: &str) -> Vec<AuditedRequest> {
        let log = fs::read_to_string(self.audit_log()).unwrap_or_default();
        audit::requests(&log, username)
    }

    /// A kubeconfig for `user` authenticating with bearer `token`, written beside the admin's.
    pub fn kubeconfig_for(&self, user: &str, token: &str) -> Result<PathBuf> {
        let path = self
            .dir
            .join(format!("{user}-{:08x}.kubeconfig", rand::random::<u32>()));
        self.write_kubeconfig(&path, user, token)?;
        Ok(path)
    }

    /// `kubectl` as the admin.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.binary("kubectl"));
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// `helm` as the admin, its caches and config inside the control plane's directory.
    pub fn helm(&self) -> Command {
        let mut command = Command::new(self.binary("helm"));
        command.env("KUBECONFIG", &self.kubeconfig);
        for (variable, sub) in [
            ("HELM_CACHE_HOME", "helm/cache"),
            ("HELM_CONFIG_HOME", "helm/config"),
            ("HELM_DATA_HOME", "helm/data"),
        ] {
            command.env(variable, self.dir.join(sub));
        }
        command
    }

    /// Runs `kubectl args` as the admin; its stdout, or an error with its stderr.
    pub fn run_kubectl(&self, args: &[&str]) -> Result<String> {
        run(self.kubectl().args(args))
    }

    /// A new namespace named `prefix-` and a random suffix, for one test's objects.
    pub fn create_namespace(&self, prefix: &str) -> Result<String> {
        let name = format!("{prefix}-{:06x}", rand::random::<u32>() >> 8);
        self.run_kubectl(&["create", "namespace", &name])?;
        Ok(name)
    }

    /// Applies the CustomResourceDefinition in `file` and waits until it is Established.
    pub fn apply_crd(&self, file: &Path) -> Result<()> {
        let applied =
            self.run_kubectl(&["apply", "-o", "name", "-f", &file.display().to_string()])?;
        self.run_kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            applied.trim(),
        ])?;
        Ok(())
    }

    /// Removes what `spec_path` points at (a path under the `spec` schema of CRD `crd`'s first
    /// version, such as `onCritical/enum`), as an older CRD without that rule would have had
    /// it: objects today's schema refuses can then be stored. [`Self::apply_crd`] puts it back.
    pub fn relax_crd(&self, crd: &str, spec_path: &str) -> Result<()> {
        let path = format!(
            "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/{spec_path}"
        );
        let patch = format!(r#"[{{"op": "remove", "path": "{path}"}}]"#);
        self.run_kubectl(&["patch", "crd", crd, "--type=json", "-p", &patch])?;
        Ok(())
    }

    /// A service account `namespace/name` that may read pods cluster-wide, as a cluster's
    /// Prometheus has, and a file holding its token: what [`crate::PromServer::discovering`]
    /// needs. The namespace must exist.
    pub fn pod_reader(&self, namespace: &str, name: &str) -> Result<crate::KubernetesPods> {
        let binding = format!("{namespace}-{name}");
        let account = format!("{namespace}:{name}");
        self.run_kubectl(&["create", "serviceaccount", name, "-n", namespace])?;
        self.run_kubectl(&[
            "create",
            "clusterrole",
            &binding,
            "--verb=get,list,watch",
            "--resource=pods",
        ])?;
        self.run_kubectl(&[
            "create",
            "clusterrolebinding",
            &binding,
            "--clusterrole",
            &binding,
            "--serviceaccount",
            &account,
        ])?;
        let token_file = self.dir.join(format!("{binding}.token"));
        let token = self.service_account_token(namespace, name)?;
        fs::write(&token_file, token).map_err(|e| Error::Write(token_file.clone(), e))?;
        Ok(crate::KubernetesPods {
            api_server: self.server(),
            ca_file: self.ca.clone(),
            token_file,
        })
    }

    /// A token for service account `namespace/name` from the TokenRequest API.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let token =
            self.run_kubectl(&["create", "token", name, "-n", namespace, "--duration=2h"])?;
        Ok(token.trim().to_owned())
    }

    /// Stops the apiserver and starts it again on the same port and etcd: every watch breaks
    /// and its watch cache starts afresh. Returns once it is ready again.
    pub fn restart_apiserver(&self) -> Result<()> {
        let mut components = self.components.lock().expect("components lock");
        let apiserver = components
            .iter_mut()
            .find(|c| c.name == "kube-apiserver")
            .expect("the apiserver was started");
        if let Some(watchdog) = apiserver.watchdog.take() {
            watchdog.stop_keeping_dir()?;
        }
        let mut watchdog =
            Watchdog::spawn(Command::new("/bin/sh"), &apiserver.dir, &apiserver.command)?;
        let ready = watchdog.wait_until_ready(
            (self.apiserver_port, &apiserver.dir),
            READY_TIMEOUT,
            POLL_INTERVAL,
            || self.apiserver_answers(),
        );
        apiserver.watchdog = Some(watchdog);
        ready
    }

    /// The path of `name`, one of the binaries `tools/k8s` builds (`kubectl`, `helm`, …).
    pub fn binary(&self, name: &str) -> PathBuf {
        binaries::dir()
            .expect("the binaries were found when the control plane started")
            .join(name)
    }

    fn write_kubeconfig(&self, path: &Path, user: &str, token: &str) -> Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testkit\n  cluster:\n    server: {server}\n    \
             certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n\
             - name: testkit\n  context: {{cluster: testkit, user: {user}}}\ncurrent-context: testkit\n",
            server = self.server(),
            ca = self.ca.display(),
        );
        fs::write(path, text).map_err(|e| Error::Write(path.to_owned(), e))
    }

    /// Starts `command` under a watchdog whose directory is `dir` (its log is `server.log`).
    fn launch(&self, name: &'static str, dir: PathBuf, command: Vec<String>) -> Result<usize> {
        fs::create_dir_all(&dir).map_err(|e| Error::Write(dir.clone(), e))?;
        let watchdog = Watchdog::spawn(Command::new("/bin/sh"), &dir, &command)?;
        let mut components = self.components.lock().expect("components lock");
        components.push(Component {
            name,
            dir,
            command,
            watchdog: Some(watchdog),
        });
        Ok(components.len() - 1)
    }

    /// Waits on component `index` until `ready` holds.
    fn wait(&self, index: usize, port: u16, ready: impl FnMut() -> bool) -> Result<()> {
        let mut components = self.components.lock().expect("components lock");
        let component = &mut components[index];
        let watchdog = component.watchdog.as_mut().expect("launched");
        watchdog.wait_until_ready((port, &component.dir), READY_TIMEOUT, POLL_INTERVAL, ready)
    }

    /// etcd owns the whole directory: its watchdog, the last to stop, deletes it.
    fn start_etcd(&self, bin: &Path) -> Result<u16> {
        let (client, peer) = (free_port()?, free_port()?);
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let command = vec![
            bin.join("etcd").display().to_string(),
            "--name=testkit".into(),
            format!("--data-dir={}", self.dir.join("etcd-data").display()),
            format!("--listen-client-urls={}", url(client)),
            format!("--advertise-client-urls={}", url(client)),
            format!("--listen-peer-urls={}", url(peer)),
            format!("--initial-advertise-peer-urls={}", url(peer)),
            format!("--initial-cluster=testkit={}", url(peer)),
            // Test data need not survive a power cut; fsync would dominate start-up and writes.
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        let index = self.launch("etcd", self.dir.clone(), command)?;
        self.wait(index, client, || {
            matches!(loopback::http(client, "GET", "/health"), Ok((200, body)) if body.contains("true"))
        })?;
        Ok(client)
    }

    fn start_apiserver(&self, bin: &Path, etcd_port: u16, pki: &pki::Files) -> Result<()> {
        let dir = self.dir.join("kube-apiserver");
        let tokens = self.dir.join("pki/tokens.csv");
        fs::write(
            &tokens,
            format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n"),
        )
        .map_err(|e| Error::Write(tokens.clone(), e))?;
        let audit_policy = self.dir.join("audit-policy.yaml");
        fs::write(&audit_policy, AUDIT_POLICY)
            .map_err(|e| Error::Write(audit_policy.clone(), e))?;
        let command = vec![
            bin.join("kube-apiserver").display().to_string(),
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            // Without it the apiserver looks for a default route, which a sandbox may not have;
            // a loopback address cannot be published as the `kubernetes` Service's endpoint.
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            // It taints new Nodes not-ready until the node lifecycle controller, which does not
            // run here, clears the taint; the tests' Nodes are ready as created.
            "--disable-admission-plugins=TaintNodesByCondition".into(),
            format!("--secure-port={}", self.apiserver_port),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!(
                "--service-account-key-file={}",
                pki.service_account_public_key.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            // etcd keeps little history, so a watch that resumes from a resource version a few
            // seconds old after a restart is answered 410 Gone, as on a busy cluster.
            "--etcd-compaction-interval=2s".into(),
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", self.audit_log().display()),
            "--audit-log-mode=blocking".into(),
            format!("--cert-dir={}", dir.join("certs").display()),
        ];
        let index = self.launch("kube-apiserver", dir, command)?;
        self.wait(index, self.apiserver_port, || self.apiserver_answers())
    }

    /// `/readyz` says `ok`, asked through kubectl with the admin's kubeconfig.
    fn apiserver_answers(&self) -> bool {
        matches!(self.run_kubectl(&["get", "--raw", "/readyz"]), Ok(body) if body.trim() == "ok")
    }

    fn start_controllers(&self, bin: &Path, pki: &pki::Files) -> Result<()> {
        let kubeconfig = self.kubeconfig.display().to_string();
        // No serving port: nothing here scrapes or probes them.
        let common = |name: &str| {
            vec![
                bin.join(name).display().to_string(),
                format!("--kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
            ]
        };
        let mut manager = common("kube-controller-manager");
        manager.extend([
            format!("--controllers={CONTROLLERS}"),
            format!("--root-ca-file={}", pki.ca.display()),
            "--use-service-account-credentials=false".into(),
            // The tests' own Deployments settle in seconds, not at a production pace.
            "--concurrent-deployment-syncs=5".into(),
        ]);
        let manager_index = self.launch(
            "kube-controller-manager",
            self.dir.join("kube-controller-manager"),
            manager,
        )?;
        let scheduler_index = self.launch(
            "kube-scheduler",
            self.dir.join("kube-scheduler"),
            common("kube-scheduler"),
        )?;
        // The service account controller makes `default` in every namespace: the controller
        // manager is working once `default/default` exists.
        self.wait(manager_index, self.apiserver_port, || {
            self.run_kubectl(&["get", "serviceaccount", "default", "-n", "default"])
                .is_ok()
        })?;
        // The scheduler has no endpoint to ask; it has started if it has not exited. The
        // tests see it work when their pods are bound.
        self.wait(scheduler_index, self.apiserver_port, || true)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let components = self
            .components
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        // In reverse: etcd, started first, stops last and deletes the directory.
        while let Some(mut component) = components.pop() {
            if let Some(watchdog) = component.watchdog.take() {
                watchdog.stop_and_delete();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command`; its stdout, or an error naming it with its stderr.
fn run(command: &mut Command) -> Result<String> {
    let line = format!("{command:?}");
    let out = command
        .output()
        .map_err(|e| Error::Spawn(line.clone(), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command(
            line,
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kubernetes version `tools/k8s/go.mod` pins.
    fn pinned_version() -> String {
        let go_mod = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/k8s/go.mod");
        let text = fs::read_to_string(go_mod).unwrap();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("k8s.io/kubernetes v"))
            .expect("go.mod requires k8s.io/kubernetes");
        line.split_whitespace().nth(1).unwrap().to_owned()
    }

    #[test]
    fn a_started_control_plane_reports_its_version_runs_workloads_and_is_gone_when_dropped() {
        let plane = ControlPlane::start().unwrap();
        let version = plane.run_kubectl(&["get", "--raw", "/version"]).unwrap();
        assert!(
            version.contains(&format!("\"gitVersion\": \"{}\"", pinned_version())),
            "{version}"
        );

        // The controller manager turns a Deployment into a ReplicaSet and pods.
        let namespace = plane.create_namespace("smoke").unwrap();
        plane
            .run_kubectl(&[
                "create",
                "deployment",
                "web",
                "--image=shortener:test",
                "--replicas=2",
                "-n",
                &namespace,
            ])
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let pods = plane
                .run_kubectl(&["get", "pods", "-n", &namespace, "-o", "name"])
                .unwrap();
            if pods.lines().count() == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no pods: {pods:?}");
            std::thread::sleep(POLL_INTERVAL);
        }

        // A TokenRequest token authenticates as its service account.
        let token = plane.service_account_token(&namespace, "default").unwrap();
        let kubeconfig = plane.kubeconfig_for("default", &token).unwrap();
        let whoami = run(plane.kubectl().env("KUBECONFIG", &kubeconfig).args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]))
        .unwrap();
        assert_eq!(whoami, format!("system:serviceaccount:{namespace}:default"));

        let (dir, server) = (plane.dir.clone(), plane.server());
        drop(plane);
        assert!(!dir.exists(), "{} is left behind", dir.display());
        let port = server.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
