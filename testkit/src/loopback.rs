//! A minimal HTTP/1.1 client for the test servers' plain-HTTP endpoints on loopback (health,
//! readiness, reload), so that waiting for a server needs no async runtime.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, Ipv4Addr, TcpStream},
    time::Duration,
};

/// Sends `method path` to `127.0.0.1:port`; returns the status and the body.
pub(crate) fn http(port: u16, method: &str, path: &str) -> io::Result<(u16, String)> {
    http_at(IpAddr::V4(Ipv4Addr::LOCALHOST), port, method, path)
}

/// Sends `method path` to `ip:port`; returns the status and the body.
pub(crate) fn http_at(
    ip: IpAddr,
    port: u16,
    method: &str,
    path: &str,
) -> io::Result<(u16, String)> {
    let address = (ip, port).into();
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
