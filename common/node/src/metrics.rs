//! Prometheus metrics: named gauges with help text, served in the text exposition format on
//! `--metrics.port` by a small HTTP responder.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node's metrics. Cloning gives another handle to the same values.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<BTreeMap<String, (&'static str, f64)>>>,
}

impl Metrics {
    /// Sets a gauge (`name` may carry labels: `ferrum_peers_skipped{reason="late"}`).
    pub fn set(&self, name: impl Into<String>, help: &'static str, value: f64) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).insert(name.into(), (help, value));
    }

    /// Adds to a counter-like gauge.
    pub fn add(&self, name: impl Into<String>, help: &'static str, delta: f64) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = m.entry(name.into()).or_insert((help, 0.0));
        entry.1 += delta;
    }

    /// The current value of a gauge.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).get(name).map(|v| v.1)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut last_family = "";
        for (name, (help, value)) in m.iter() {
            let family = name.split('{').next().unwrap_or(name);
            if family != last_family {
                out.push_str(&format!("# HELP {family} {help}\n# TYPE {family} gauge\n"));
                last_family = family;
            }
            out.push_str(&format!("{name} {value}\n"));
        }
        out
    }

    /// Serves `/metrics` (any path) on `127.0.0.1:port`, or `0.0.0.0:port` with `public`,
    /// until the task is dropped. Returns the bound port.
    pub async fn serve(&self, port: u16, public: bool) -> std::io::Result<u16> {
        let host = if public { "0.0.0.0" } else { "127.0.0.1" };
        let listener = tokio::net::TcpListener::bind((host, port)).await?;
        let bound = listener.local_addr()?.port();
        let metrics = self.clone();
        tokio::spawn(async move {
            loop {
                // An accept error (out of file descriptors, a reset connection) is passing: pause
                // and go on, so one bad moment does not end the endpoint for the node's life.
                let mut socket = match listener.accept().await {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let body = metrics.render();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    // The request itself does not matter; read what is there and answer. A client
                    // that sends nothing is dropped after a few seconds, not held forever.
                    let read = tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut buf)).await;
                    if read.is_err() {
                        return;
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let write = async {
                        socket.write_all(head.as_bytes()).await?;
                        socket.write_all(body.as_bytes()).await
                    };
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), write).await;
                });
            }
        });
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_families_once_and_serves_them() {
        let m = Metrics::default();
        m.set("ferrum_window", "Current window.", 7.0);
        m.add("ferrum_peers_skipped{reason=\"late\"}", "Peers skipped, by reason.", 1.0);
        m.add("ferrum_peers_skipped{reason=\"late\"}", "Peers skipped, by reason.", 2.0);
        m.set("ferrum_peers_skipped{reason=\"missing\"}", "Peers skipped, by reason.", 1.0);
        let text = m.render();
        assert_eq!(text.matches("# TYPE ferrum_peers_skipped gauge").count(), 1, "{text}");
        assert!(
            text.contains("ferrum_peers_skipped{reason=\"late\"} 3\n") && text.contains("ferrum_window 7\n"),
            "{text}"
        );
        let port = m.serve(0, false).await.expect("serve");
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut got = String::new();
        s.read_to_string(&mut got).await.expect("read");
        assert!(got.starts_with("HTTP/1.1 200 OK") && got.contains("ferrum_window 7"), "{got}");
    }
}
