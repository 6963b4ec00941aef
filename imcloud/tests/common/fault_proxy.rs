//! A TCP proxy that the fault tests put on one network path (a role to an engine, or a role to another
//! role through `IMCLOUD_GRPC_ADVERTISE_ADDR`) to break that path alone, the way a network would:
//!
//! - [`Fault::None`]: bytes pass.
//! - [`Fault::Delay`]: every chunk waits this long before it is forwarded, in order (a slow path).
//! - [`Fault::Partition`]: nothing is forwarded either way, and no error is seen either: connections stay
//!   open and their bytes wait, as packets would be lost and retransmitted; new connections are accepted
//!   but not connected on. Healing forwards what waited, as TCP would once the path is back (when the
//!   peers have not given up by then).
//! - [`Fault::Reset`]: every connection is reset (RST), and so is every new one.
//!
//! The fault applies to the whole path, both directions, from the moment it is set.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Delay(Duration),
    Partition,
    Reset,
}

pub struct FaultProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (fault, rx) = watch::channel(Fault::None);
        let upstream = upstream.to_string();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), rx.clone()));
            }
        });
        FaultProxy { addr, fault, task }
    }

    /// `127.0.0.1:port`, to give a role in place of the upstream's.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.set(Fault::Reset);
        self.task.abort();
    }
}

/// One client connection: connected upstream once the path lets it through, then pumped both ways.
async fn relay(client: TcpStream, upstream: String, mut fault: watch::Receiver<Fault>) {
    let _ = client.set_nodelay(true);
    if !pass(&mut fault).await {
        let _ = client.set_zero_linger();
        return;
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::join!(pump(cr, sw, fault.clone()), pump(sr, cw, fault.clone()));
}

/// Waits while the path is partitioned (and sleeps a delay); `false` once it is reset.
async fn pass(fault: &mut watch::Receiver<Fault>) -> bool {
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::None => return true,
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                return true;
            }
            Fault::Reset => return false,
            Fault::Partition => {
                if fault.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Resolves once the path is reset (or the proxy is gone).
async fn reset(fault: &mut watch::Receiver<Fault>) {
    let _ = fault.wait_for(|f| *f == Fault::Reset).await.map(|_| ());
}

/// Copies `from` to `to` through the fault; a reset drops both halves with RST.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut fault: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = reset(&mut fault) => 0,
        };
        if n == 0 || !pass(&mut fault).await || to.write_all(&buf[..n]).await.is_err() {
            let _ = from.as_ref().set_zero_linger();
            let _ = to.as_ref().set_zero_linger();
            return;
        }
    }
}
