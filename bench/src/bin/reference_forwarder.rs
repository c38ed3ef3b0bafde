//! The reference forwarder, written the way the seed experiment does it: a tokio multi-thread
//! runtime, tokio-tungstenite over rustls (tokio-rustls), a tokio `UdpSocket`, and each text
//! message forwarded as one UDP datagram holding the payload as-is (no header, no sequence).
//!
//! It trusts the same roots as the relay (Mozilla's plus `--ca-file`), so the TLS work is alike.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::StreamExt;
use relay_core::binance::Endpoint;
use relay_core::tls;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(
    name = "reference-forwarder",
    about = "Seed-style forwarder: tokio + tokio-tungstenite + tokio-rustls + tokio UdpSocket"
)]
struct Args {
    /// Exchange WebSocket URL (wss:// or ws://).
    #[arg(long)]
    url: String,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Where to send each message.
    #[arg(long, value_name = "HOST:PORT")]
    to: SocketAddr,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reference-forwarder: error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(forward(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reference-forwarder: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn forward(args: Args) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(&args.url)?;
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .context("connecting to the exchange")?;
    tcp.set_nodelay(true)?;
    let udp = UdpSocket::bind("0.0.0.0:0").await?;
    udp.connect(args.to).await?;
    eprintln!(
        "reference-forwarder: forwarding {} to {}",
        endpoint.url, args.to
    );
    if endpoint.tls {
        let ca_pem = match &args.ca_file {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        };
        let connector = tokio_rustls::TlsConnector::from(tls::client_config(ca_pem.as_deref())?);
        let name = ServerName::try_from(endpoint.host.clone()).context("TLS server name")?;
        let stream = connector
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        pump(endpoint.url.as_str(), stream, &udp).await
    } else {
        pump(endpoint.url.as_str(), tcp, &udp).await
    }
}

/// WebSocket handshake, then every data message out as one datagram.
async fn pump<S>(url: &str, stream: S, udp: &UdpSocket) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .context("WebSocket handshake")?;
    while let Some(message) = ws.next().await {
        match message.context("reading the WebSocket")? {
            Message::Text(text) => {
                let _ = udp.send(text.as_bytes()).await;
            }
            Message::Binary(bytes) => {
                let _ = udp.send(&bytes).await;
            }
            Message::Close(_) => bail!("the exchange closed the WebSocket"),
            // tokio-tungstenite answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    bail!("the exchange ended the stream")
}
