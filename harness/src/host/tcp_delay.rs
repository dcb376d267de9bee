//! A TCP proxy that delays what it forwards: an upstream address in, a loopback port out, for
//! a replica host behind a slow link (this kernel has no netem). Every chunk read from one side
//! is written to the other `delay` after it was read, in order, in both directions, so the
//! round trip grows by twice the delay and the bandwidth is kept. The delay can change while
//! connections are open; it applies to chunks read after the change.
//!
//! Threads: one accepting, three per connection (a reader per direction, whose chunks go
//! through a channel to a writer that waits out each chunk's moment). Dropping the proxy
//! shuts every socket and joins them all.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;
const ACCEPT_POLL: Duration = Duration::from_millis(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    delay_us: AtomicU64,
    stop: AtomicBool,
    /// Every socket of every connection, shut down on drop so their threads end.
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

pub struct DelayProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards each connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            delay_us: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept(listener, upstream, &shared))
        };
        Ok(DelayProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }
}

fn accept(listener: TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                // Its own thread: a connect into a partition waits up to CONNECT_TIMEOUT.
                let shared_ = Arc::clone(shared);
                let connecting = std::thread::spawn(move || {
                    if let Err(e) = forward(client, upstream, &shared_) {
                        eprintln!("harness: delay proxy to {upstream}: {e}");
                    }
                });
                shared
                    .threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(connecting);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                eprintln!("harness: delay proxy accept: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Connects `client` to `upstream` through two delayed pipes. A client whose upstream cannot
/// be reached is closed, as a refused connection would be.
fn forward(client: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_nodelay(true)?;
    let server = TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT)?;
    server.set_nodelay(true)?;
    {
        let mut sockets = shared.sockets.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock `drop` shuts the sockets under: a connection made while
        // the proxy ends is closed here.
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        sockets.push(client.try_clone()?);
        sockets.push(server.try_clone()?);
    }
    let mut threads = Vec::new();
    for (from, to) in [(client.try_clone()?, server.try_clone()?), (server, client)] {
        threads.extend(pipe(from, to, shared));
    }
    shared
        .threads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(threads);
    Ok(())
}

/// One direction: a reader stamps each chunk with its moment, a writer delivers it then.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: &Arc<Shared>) -> [JoinHandle<()>; 2] {
    let (send, recv) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = {
        let shared = Arc::clone(shared);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let delay = Duration::from_micros(shared.delay_us.load(Ordering::SeqCst));
                        if send
                            .send((Instant::now() + delay, buf[..n].to_vec()))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            // Dropping `send` tells the writer the stream ended.
        })
    };
    let writer = std::thread::spawn(move || {
        for (due, chunk) in recv {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        // The end of this direction reaches the other side after the data (a half close).
        let _ = to.shutdown(Shutdown::Write);
    });
    [reader, writer]
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for socket in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            // Closed by the peer already is fine.
            let _ = socket.shutdown(Shutdown::Both);
        }
        // A connecting thread adds its pipes' threads as it ends: join until none is left.
        loop {
            let threads: Vec<_> = self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_in_order_after_the_delay_in_both_directions() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = echo.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = echo.accept().unwrap();
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).unwrap();
            conn.write_all(&buf).unwrap();
        });
        let proxy = DelayProxy::start(upstream).unwrap();
        proxy.set_delay(Duration::from_millis(40));
        let mut conn = TcpStream::connect(proxy.addr).unwrap();
        let start = Instant::now();
        conn.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        conn.read_exact(&mut back).unwrap();
        let round_trip = start.elapsed();
        assert_eq!(&back, b"hello");
        assert!(round_trip >= Duration::from_millis(80), "{round_trip:?}");
        assert!(round_trip < Duration::from_secs(2), "{round_trip:?}");
        server.join().unwrap();
        drop(proxy);
    }
}
