//! Readiness probes as a kubelet runs them: HTTP GET (2xx and 3xx pass) or a TCP connect,
//! against the pod's own address.

use std::net::IpAddr;

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};

use crate::loopback;

/// One HTTP GET or TCP probe against the pod's address.
pub(crate) async fn answers(container: &Container, ip: IpAddr, probe: &Probe) -> bool {
    let port_of = |port: &IntOrString| match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    };
    if let Some(get) = &probe.http_get {
        let Some(port) = port_of(&get.port) else {
            return false;
        };
        let path = get.path.clone().unwrap_or_else(|| "/".into());
        return tokio::task::spawn_blocking(move || loopback::http_at(ip, port, "GET", &path))
            .await
            .is_ok_and(|r| r.is_ok_and(|(status, _)| (200..400).contains(&status)));
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port_of(&tcp.port) else {
            return false;
        };
        return tokio::net::TcpStream::connect((ip, port)).await.is_ok();
    }
    false
}
