//! The seed experiment's JSON config files (`tokyo-config.json`, `frankfurt-config.json`), with
//! their keys kept as users know them, plus a few keys of ours. Unknown keys are an error, so a
//! typo is reported instead of silently ignored. Command-line flags override every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// `tokyo-config.json`: the relay (forwarder) side.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokyoConfig {
    pub binance_ws_url: Option<String>,
    /// With `frankfurt_port`: the receiver to forward to (the seed's single target).
    pub frankfurt_private_ip: Option<String>,
    pub frankfurt_port: Option<u16>,
    pub reconnect_max_delay_secs: Option<u64>,
    /// Further receivers as "HOST:PORT" (fan-out).
    pub receivers: Option<Vec<String>>,
    /// Streams to SUBSCRIBE to after connecting.
    pub streams: Option<Vec<String>>,
    pub core: Option<usize>,
    /// Like `--idle`: "spin" or "park".
    pub idle: Option<super::forward::IdleArg>,
    pub ca_file: Option<PathBuf>,
    pub datagram_budget: Option<usize>,
    pub bind: Option<SocketAddr>,
    pub tos: Option<u32>,
    pub send_buffer_bytes: Option<usize>,
    pub heartbeat_interval_ms: Option<u64>,
    pub retransmit_buffer_mb: Option<usize>,
    pub key_file: Option<PathBuf>,
    /// Like `--rotate-after`, e.g. "23h".
    pub rotate_after: Option<String>,
    pub metrics: Option<SocketAddr>,
}

/// `frankfurt-config.json`: the receiver side.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrankfurtConfig {
    pub mode: Option<String>,
    pub binance_ws_url: Option<String>,
    pub listen_port: Option<u16>,
    /// More relays' ports, after `listen_port` (see `relay receive --port`).
    pub listen_ports: Option<Vec<u16>>,
    pub duration_secs: Option<u64>,
    pub output_file: Option<PathBuf>,
    /// Address to listen on (default 0.0.0.0).
    pub listen_address: Option<std::net::IpAddr>,
    pub ca_file: Option<PathBuf>,
    pub streams: Option<Vec<String>>,
    pub recv_buffer_bytes: Option<usize>,
    pub busy_poll: Option<bool>,
    pub iface: Option<String>,
    pub ebpf_mode: Option<String>,
    pub hw_timestamps: Option<bool>,
    pub no_recovery: Option<bool>,
    pub key_file: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
    pub hlog: Option<PathBuf>,
    pub serve_ws: Option<SocketAddr>,
    pub serve_queue: Option<usize>,
    pub serve_udp: Option<SocketAddr>,
}

/// A duration given in seconds on the command line or in a config file; must be positive.
pub fn positive_secs(name: &str, secs: f64) -> anyhow::Result<std::time::Duration> {
    if !(secs.is_finite() && secs > 0.0) {
        anyhow::bail!("{name} must be a positive number of seconds, got {secs}");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The seed's habit: without `--config`, a command reads its config file from the current
/// directory when there is one (`tokyo-config.json`, `frankfurt-config.json`), and says so.
pub fn load_or_local<T: DeserializeOwned + Default>(
    path: Option<&Path>,
    local: &str,
    command: &str,
) -> anyhow::Result<T> {
    if path.is_none() && Path::new(local).is_file() {
        eprintln!("relay {command}: reading ./{local} (no --config given)");
        return load(Some(Path::new(local)));
    }
    load(path)
}

/// Reads a config file, naming the file and the offending line in every error.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("config file {} is not valid", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_deployment_samples_are_valid_config_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let tokyo: TokyoConfig = load(Some(&dir.join("tokyo-config.json"))).unwrap();
        assert_eq!(tokyo.core, Some(3));
        assert!(
            tokyo.bind.is_some(),
            "a fixed send port, for the NAKs' security group rule"
        );
        assert!(tokyo.key_file.is_some() && tokyo.metrics.is_some());
        let frankfurt: FrankfurtConfig = load(Some(&dir.join("frankfurt-config.json"))).unwrap();
        assert_eq!(frankfurt.listen_port, Some(8080));
        assert!(
            frankfurt.key_file.is_some() && frankfurt.iface.is_some() && frankfurt.hlog.is_some()
        );
        // The feed applications take: both paths arbitrated, served locally; the direct path
        // in the relay's URL form, so the same event matches across the two.
        assert_eq!(frankfurt.mode.as_deref(), Some("both"));
        assert!(frankfurt.serve_ws.is_some_and(|a| a.ip().is_loopback()));
        assert_eq!(frankfurt.binance_ws_url, tokyo.binance_ws_url);
    }

    #[test]
    fn reads_the_seed_files_as_written() {
        let (_d, tokyo) = write(
            r#"{ "binance_ws_url": "wss://stream.binance.com:9443/ws/btcusdt@bookTicker",
                 "frankfurt_private_ip": "10.1.1.5", "frankfurt_port": 8080, "reconnect_max_delay_secs": 30 }"#,
        );
        let t: TokyoConfig = load(Some(&tokyo)).unwrap();
        assert_eq!(t.frankfurt_port, Some(8080));
        assert_eq!(t.reconnect_max_delay_secs, Some(30));
        let (_d, frankfurt) = write(
            r#"{ "mode": "baseline", "binance_ws_url": "wss://stream.binance.com:9443/ws/btcusdt@bookTicker",
                 "listen_port": 8080, "duration_secs": 300, "output_file": "results.json" }"#,
        );
        let f: FrankfurtConfig = load(Some(&frankfurt)).unwrap();
        assert_eq!(f.mode.as_deref(), Some("baseline"));
        assert_eq!(f.duration_secs, Some(300));
    }

    #[test]
    fn typos_and_bad_json_are_errors_that_name_the_file() {
        let (_d, path) = write(r#"{ "frankfurt_prot": 8080 }"#);
        let err = format!("{:#}", load::<TokyoConfig>(Some(&path)).unwrap_err());
        assert!(
            err.contains("config.json") && err.contains("frankfurt_prot"),
            "{err}"
        );
        let (_d, path) = write("{ not json");
        assert!(load::<FrankfurtConfig>(Some(&path)).is_err());
        assert!(load::<FrankfurtConfig>(Some(Path::new("/nonexistent/x.json"))).is_err());
    }
}
