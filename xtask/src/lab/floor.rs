//! The receive floor: what a user-space timestamp pair costs on this machine while the lab runs.
//!
//! The relay stamps a datagram in user space before it sends it, and the receiver stamps it in
//! user space after a blocking `recv` returns; the second stamp includes the receiver thread's
//! wake-up (tens of µs on a VM, more when other work keeps the cores busy). This probe measures
//! exactly that chain without any link: datagrams over loopback inside the frankfurt namespace,
//! stamped the same way, at the experiment's priority, during the run. The ground-truth table
//! shows it next to the backbone figure, so a flagged difference can be told apart from the link.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use relay_core::stats::{exact, ComponentSummary};
use relay_host::clock::realtime_ns;
use relay_host::cpu::set_realtime;
use relay_host::netns::run_in;

/// One probe datagram every this long: light next to the experiment's traffic.
const INTERVAL: Duration = Duration::from_millis(10);

/// The probe's sender and receiver threads; the receiver returns its samples (ns).
type Threads = (JoinHandle<Result<()>>, JoinHandle<Result<Vec<i64>>>);

/// A running probe; [`FloorProbe::stop`] (or dropping it) ends it.
pub struct FloorProbe {
    stop: Arc<AtomicBool>,
    threads: Option<Threads>,
}

impl FloorProbe {
    /// Starts probing inside namespace `netns` with SCHED_FIFO `priority`.
    pub fn start(netns: &str, priority: libc::c_int) -> Result<FloorProbe> {
        let (rx, tx) = run_in(netns, || {
            Ok((
                UdpSocket::bind("127.0.0.1:0")?,
                UdpSocket::bind("127.0.0.1:0")?,
            ))
        })?;
        tx.connect(rx.local_addr()?)?;
        rx.set_read_timeout(Some(INTERVAL * 10))?;
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("floor-rx".into())
                .spawn(move || {
                    set_realtime(priority);
                    let mut samples = Vec::new();
                    let mut buf = [0u8; 64];
                    loop {
                        match rx.recv(&mut buf) {
                            Ok(n) if n >= 8 => {
                                let now = realtime_ns() as i64;
                                let sent = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"))
                                    as i64;
                                samples.push(now - sent);
                            }
                            Ok(_) => {}
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                if stop.load(Ordering::SeqCst) {
                                    return Ok(samples);
                                }
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                })?
        };
        let sender = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("floor-tx".into())
                .spawn(move || {
                    set_realtime(priority);
                    let mut next = Instant::now();
                    while !stop.load(Ordering::SeqCst) {
                        tx.send(&realtime_ns().to_le_bytes())?;
                        next += INTERVAL;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    Ok(())
                })?
        };
        Ok(FloorProbe {
            stop,
            threads: Some((sender, receiver)),
        })
    }

    /// Stops probing; the figures of send -> receive over the probe's datagrams.
    pub fn stop(mut self) -> Result<ComponentSummary> {
        self.stop.store(true, Ordering::SeqCst);
        let (sender, receiver) = self.threads.take().expect("running");
        let sent = sender.join();
        let mut samples = receiver
            .join()
            .map_err(|_| anyhow!("the floor probe's receiver panicked"))??;
        sent.map_err(|_| anyhow!("the floor probe's sender panicked"))??;
        Ok(exact(&mut samples).unwrap_or_default())
    }
}

impl Drop for FloorProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some((sender, receiver)) = self.threads.take() {
            let _ = sender.join();
            let _ = receiver.join();
        }
    }
}
