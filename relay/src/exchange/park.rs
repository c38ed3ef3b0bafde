//! [`Idle::Park`](super::Idle::Park): the shell waits in the kernel. Each connection's read, its
//! connect and the side socket's receive stay in flight on io_uring (tokio-uring), each in its own
//! pinned slot, so none is ever dropped with bytes in it and nothing is allocated per read; the
//! thread sleeps until one completes or a timer is due.

use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::time::Instant;

use futures_util::future::{Fuse, FutureExt};
use relay_core::exchange_link::ConnId;
use tokio_uring::net::{TcpStream, UdpSocket};

use super::{LinkHandler, Shell, Socket, Stop, CONNECT_TIMEOUT, READ_BUFFER, SIDE_BUFFER};

async fn read_op(stream: Rc<TcpStream>, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    stream.read(buf).await
}

async fn side_op(
    socket: Rc<UdpSocket>,
    buf: Vec<u8>,
) -> (std::io::Result<(usize, SocketAddr)>, Vec<u8>) {
    socket.recv_from(buf).await
}

/// Opens a TCP connection to `addr` (with a timeout and TCP_NODELAY).
async fn connect_op(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("connecting to {addr}: {e}")),
        Err(_) => return Err(format!("connecting to {addr} timed out")),
    };
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// How often the stop signal is looked at while nothing else happens.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(50);

pub(super) async fn run<H: LinkHandler>(shell: &mut Shell<'_, H>, stop: Stop) {
    let mut reads = [pin!(Fuse::terminated()), pin!(Fuse::terminated())];
    let mut connects = [pin!(Fuse::terminated()), pin!(Fuse::terminated())];
    let mut side = pin!(Fuse::terminated());
    let side_socket = shell.handler.side_socket();
    if let Some(socket) = &side_socket {
        side.set(side_op(socket.clone(), vec![0u8; SIDE_BUFFER]).fuse());
    }
    // Whether a connection's read is in flight.
    let mut reading = [false; 2];
    loop {
        shell.service();
        while let Some((id, addr)) = shell.next_connect() {
            connects[id.index()].set(connect_op(addr).fuse());
        }
        for id in ConnId::ALL {
            let i = id.index();
            if !shell.is_connected(id) {
                if reading[i] {
                    reads[i].set(Fuse::terminated());
                    reading[i] = false;
                }
            } else if !reading[i] {
                if let Some(Socket::Uring(stream)) = &shell.sockets[i] {
                    reads[i].set(read_op(stream.clone(), vec![0u8; READ_BUFFER]).fuse());
                    reading[i] = true;
                }
            }
        }
        if stop.is_due(Instant::now()) {
            return;
        }
        let deadline = shell.deadline().min(Instant::now() + STOP_POLL);
        // Which slot an arm fired for, and what it brought.
        enum Fired {
            Read(usize, std::io::Result<usize>, Vec<u8>),
            Connected(usize, Result<TcpStream, String>),
            Side(std::io::Result<(usize, SocketAddr)>, Vec<u8>),
            Timer,
        }
        let ([read0, read1], [connect0, connect1]) = (&mut reads, &mut connects);
        let fired = tokio::select! {
            (read, buf) = read0.as_mut() => Fired::Read(0, read, buf),
            (read, buf) = read1.as_mut() => Fired::Read(1, read, buf),
            connected = connect0.as_mut() => Fired::Connected(0, connected),
            connected = connect1.as_mut() => Fired::Connected(1, connected),
            (received, buf) = side.as_mut() => Fired::Side(received, buf),
            _ = tokio::time::sleep_until(deadline.into()) => Fired::Timer,
        };
        match fired {
            Fired::Read(i, read, buf) => {
                let id = ConnId::ALL[i];
                reading[i] = false;
                match read {
                    Ok(0) => shell.failed(id, "the exchange closed the TCP connection"),
                    Err(e) => shell.failed(id, &format!("reading from the exchange: {e}")),
                    Ok(n) => {
                        shell.input(id, &buf[..n]);
                        // The same buffer for the next read, while the connection lives.
                        if let Some(Socket::Uring(stream)) = &shell.sockets[i] {
                            reads[i].set(read_op(stream.clone(), buf).fuse());
                            reading[i] = true;
                        }
                    }
                }
            }
            Fired::Connected(i, Ok(stream)) => {
                shell.connected(ConnId::ALL[i], Socket::Uring(Rc::new(stream)));
            }
            Fired::Connected(i, Err(reason)) => shell.failed(ConnId::ALL[i], &reason),
            Fired::Side(received, buf) => {
                if let Ok((n, from)) = received {
                    shell
                        .handler
                        .on_side_datagram(&buf[..n], from, Instant::now());
                }
                if let Some(socket) = &side_socket {
                    side.set(side_op(socket.clone(), buf).fuse());
                }
            }
            Fired::Timer => {
                let now = Instant::now();
                if now >= shell.deadline() {
                    shell.timers(now);
                }
            }
        }
    }
}
