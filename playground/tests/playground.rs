//! The playground as a newcomer runs it: it comes up with both charts installed by helm, the
//! operator's pods (run by the process kubelet with the chart's ServiceAccount) evaluate the
//! shortener's policy from what Prometheus discovered and scraped, and Ctrl-C stops everything.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Where cargo put this workspace's binaries for this test run.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_owned();
    for name in ["shortener", "memory-operator"] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run this test with `cargo test --workspace`, which builds it",
            dir.join(name).display()
        );
    }
    dir
}

fn kubectl(kubectl: &Path, kubeconfig: &str, args: &[&str]) -> String {
    let out = Command::new(kubectl)
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_playground_comes_up_runs_the_loop_and_stops_on_ctrl_c() {
    let mut playground = Command::new(env!("CARGO_BIN_EXE_playground"))
        .env("PLAYGROUND_BIN_DIR", bin_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines, seen) = mpsc::channel();
    let stdout = playground.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let next = |said: &mut Vec<String>| {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = seen
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the playground stopped talking:\n{}", said.join("\n")));
        said.push(line.clone());
        line
    };
    while next(&mut said) != "playground ready" {}
    let value = |prefix: &str| {
        said.iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{}", said.join("\n")))
            .to_owned()
    };
    let kubeconfig = value("export KUBECONFIG=");
    let kubectl_path = PathBuf::from(value("alias kubectl="));

    // The operator's pods evaluate the chart's policy from Prometheus's scrapes of the pods.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = kubectl(
            &kubectl_path,
            &kubeconfig,
            &[
                "get",
                "mempol",
                "shortener",
                "-n",
                "shop",
                "-o",
                "jsonpath={.status.state}",
            ],
        );
        if state == "Normal" {
            break;
        }
        let described = kubectl(
            &kubectl_path,
            &kubeconfig,
            &["describe", "mempol", "-n", "shop"],
        );
        assert!(
            Instant::now() < deadline,
            "the policy never turned Normal:\n{described}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let pods = kubectl(
        &kubectl_path,
        &kubeconfig,
        &["get", "pods", "-A", "-o", "wide"],
    );
    assert!(pods.contains("127.1."), "{pods}");

    let pid = playground.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let stopped = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = playground.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < stopped,
            "the playground did not stop within 90 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "the playground exited with {status}");
    let dir = Path::new(&kubeconfig).parent().unwrap();
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
