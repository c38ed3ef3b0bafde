//! `--metrics ADDR:PORT`: the live figures as a Prometheus endpoint (`GET /metrics`), served by
//! a thread of its own. The threads that own the figures (the report printer with the
//! counters, the receiver's recorder with the latency histograms) each write their part of the
//! page about once a second; the hot threads never touch it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;

/// How often the figures behind the page are refreshed.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// The page, in parts (one per writing thread), joined when served.
#[derive(Clone, Default)]
pub struct Board(Arc<Mutex<Vec<String>>>);

/// Which part of the page a thread writes.
#[derive(Clone, Copy, Debug)]
pub enum Part {
    Counters = 0,
    Latency = 1,
}

impl Board {
    pub fn set(&self, part: Part, text: String) {
        let mut parts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = part as usize;
        if parts.len() <= at {
            parts.resize(at + 1, String::new());
        }
        parts[at] = text;
    }

    pub fn page(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).concat()
    }
}

/// With `--metrics ADDR:PORT`, a board served there (binding fails now, before the run).
pub fn board_for(addr: Option<SocketAddr>, who: &str) -> anyhow::Result<Option<Board>> {
    let Some(addr) = addr else { return Ok(None) };
    let board = Board::default();
    serve(addr, board.clone(), who)?;
    Ok(Some(board))
}

/// Serves `board` on `addr` until the process ends; binding fails here, before the run.
pub fn serve(addr: SocketAddr, board: Board, who: &str) -> anyhow::Result<()> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("--metrics {addr}: {e}"))?;
    let bound = server.server_addr().to_ip().map_or(addr, |a| a);
    eprintln!("{who}: metrics on http://{bound}/metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let header = tiny_http::Header::from_bytes(
                        "Content-Type",
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                    .expect("a valid header");
                    tiny_http::Response::from_string(board.page()).with_header(header)
                } else {
                    tiny_http::Response::from_string("not found: the figures are at /metrics\n")
                        .with_status_code(404)
                };
                // A client that went away is its own business.
                let _ = request.respond(response);
            }
        })
        .context("spawning the metrics thread")?;
    Ok(())
}
