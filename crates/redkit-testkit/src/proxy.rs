//! A loopback TCP proxy that adds latency, drops traffic or cuts connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
struct State {
    latency_us: AtomicU64,
    drop_traffic: AtomicBool,
    refuse: AtomicBool,
    cuts: watch::Sender<u64>,
    connections: AtomicU64,
}

/// A TCP proxy on 127.0.0.1 in front of one server. It runs on the tokio runtime that
/// started it and stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy that forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy addr: {e}"))
            .port();
        let (cuts, _) = watch::channel(0);
        let state = Arc::new(State {
            latency_us: AtomicU64::new(0),
            drop_traffic: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            cuts,
            connections: AtomicU64::new(0),
        });
        let target = target.to_string();
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if st.refuse.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, Arc::clone(&st)));
                tokio::spawn(pump(sr, cw, Arc::clone(&st)));
            }
        });
        Proxy { port, state, task }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Delays every chunk of traffic in both directions.
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.state.latency_us.store(us, Ordering::Release);
    }

    /// While on, bytes are read and thrown away: connections stay open but go silent.
    pub fn drop_traffic(&self, on: bool) {
        self.state.drop_traffic.store(on, Ordering::Release);
    }

    /// While on, new connections are closed as soon as they are accepted.
    pub fn refuse(&self, on: bool) {
        self.state.refuse.store(on, Ordering::Release);
    }

    /// Closes every open connection now (new ones are accepted unless refused).
    pub fn cut(&self) {
        self.state.cuts.send_modify(|n| *n += 1);
    }

    /// How many connections the proxy has accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<State>,
) {
    let mut cuts = state.cuts.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = cuts.changed() => return,
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        let latency = state.latency_us.load(Ordering::Acquire);
        if latency > 0 {
            tokio::select! {
                _ = cuts.changed() => return,
                _ = tokio::time::sleep(Duration::from_micros(latency)) => {}
            }
        }
        if state.drop_traffic.load(Ordering::Acquire) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
