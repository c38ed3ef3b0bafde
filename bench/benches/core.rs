//! Microbenchmarks of the relay's sans-io core, per frame: wire header encode/decode, event-time
//! extraction, framing, TLS + WebSocket decode through the relay's `Session`, sealing and receiver
//! accounting. `cargo bench -p bench` (about two minutes); criterion flags still apply, e.g.
//! `cargo bench -p bench -- session` or `-- --measurement-time 5`.
//!
//! After criterion's own output, a per-frame summary (ns/frame, frames/s) is printed and written
//! to `<target>/bench/micro.md` and `micro.json`.

use std::cell::RefCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bench::samples;
use bench::session_pipe::SessionPipe;
use criterion::{BatchSize, Criterion, Throughput};
use relay_core::binance::{event_time, TimeUnit};
use relay_core::forward::framer::{Framer, DEFAULT_DATAGRAM_BUDGET};
use relay_core::harness::pipe::Pipe;
use relay_core::receive::accounting::{Accounting, AccountingConfig};
use relay_core::seal::{Direction, Secret};
use relay_wire::{message_flags, offset, Block, Header, Kind, Writer, HEADER_LEN};

/// (group, id, frames per iteration, what one frame is)
type Entry = (&'static str, &'static str, u64, &'static str);

/// Every benchmark below, for the summary.
const ENTRIES: &[Entry] = &[
    ("wire", "encode", 1, "48-byte header"),
    ("wire", "decode", 1, "datagram, 130 B payload"),
    ("event_time", "trade", 1, "trade, 140 B"),
    ("event_time", "depth_update", 1, "depthUpdate, ~3 KB"),
    ("event_time", "book_ticker", 1, "bookTicker (no E), 114 B"),
    ("framer", "book_ticker", 1, "message -> 1 datagram"),
    ("framer", "depth_3k", 1, "message -> 3 fragments"),
    (
        "session",
        "trade_record_per_frame",
        1,
        "trade frame in its own TLS record",
    ),
    (
        "session",
        "trade_64_per_record",
        64,
        "trade frame, 64 per TLS record",
    ),
    (
        "session",
        "depth_3k_record_per_frame",
        1,
        "depthUpdate frame, own record",
    ),
    (
        "tungstenite_read",
        "read_buffer_128k",
        1,
        "trade frame per read, default buffer",
    ),
    (
        "tungstenite_read",
        "read_buffer_8k",
        1,
        "trade frame per read, 8 KiB buffer",
    ),
    ("auth", "seal_small", 1, "sealing a 230 B datagram"),
    ("auth", "seal_full", 1, "sealing a 1472 B datagram"),
    ("auth", "open_full", 1, "opening a 1472 B datagram"),
    (
        "auth",
        "alt_hmac_sha256_full",
        1,
        "HMAC-SHA-256 of 1472 B (not used)",
    ),
    (
        "auth",
        "alt_gmac_full",
        1,
        "GMAC of 1448 B, body not encrypted (not used)",
    ),
    ("accounting", "single", 1, "datagram (whole message)"),
    (
        "accounting",
        "depth_fragments",
        3,
        "datagram (fragment of 3)",
    ),
];

/// A data datagram of one `payload_len`-byte message, as the relay sends it.
fn datagram(payload_len: usize) -> Vec<u8> {
    datagram_with(payload_len, 0)
}

/// [`datagram`] with header `flags` ([`relay_wire::flags::SEALED`] keeps room for a seal).
fn datagram_with(payload_len: usize, flags: u16) -> Vec<u8> {
    let header = Header {
        relay_tx_ns: 1_700_000_000_000_010_000,
        flags,
        ..Header::new(Kind::Data, 7, 1, 1)
    };
    let block = Block {
        len: 0,
        flags: message_flags::EVENT_TIME,
        relay_rx_ns: 1_700_000_000_000_000_000,
        event_time_ns: 1_699_999_999_999_000_000,
    };
    let mut buf = vec![0u8; DEFAULT_DATAGRAM_BUDGET];
    let mut writer = Writer::new(&mut buf, header);
    assert!(writer.push_block(block, &vec![b'x'; payload_len]));
    let len = writer.finish();
    buf.truncate(len);
    buf
}

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    let d = datagram(130);
    let h = Header::decode(&d).expect("valid").header;
    g.bench_function("encode", |b| {
        let mut out = [0u8; HEADER_LEN];
        b.iter(|| {
            black_box(&h).encode(&mut out);
            black_box(&out);
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let datagram = Header::decode(black_box(&d)).expect("valid");
            datagram.blocks().map(|(block, _)| block.len).sum::<u16>()
        })
    });
    g.finish();
}

fn event_times(c: &mut Criterion) {
    let mut g = c.benchmark_group("event_time");
    g.throughput(Throughput::Elements(1));
    for (id, payload) in [
        ("trade", samples::trade()),
        ("depth_update", samples::depth_3k()),
        ("book_ticker", samples::book_ticker()),
    ] {
        g.bench_function(id, |b| b.iter(|| event_time(black_box(&payload))));
    }
    g.finish();
}

fn framer(c: &mut Criterion) {
    let mut g = c.benchmark_group("framer");
    g.throughput(Throughput::Elements(1));
    for (id, payload) in [
        ("book_ticker", samples::book_ticker()),
        ("depth_3k", samples::depth_3k()),
    ] {
        let mut framer =
            Framer::new(1, DEFAULT_DATAGRAM_BUDGET, TimeUnit::Micros, false).expect("valid budget");
        // What the relay does per message of a read of one: frame, flush, and the fan-out's copy
        // into a send buffer.
        let mut buf = Vec::with_capacity(DEFAULT_DATAGRAM_BUDGET);
        let mut copy = |d: &[u8]| {
            buf.clear();
            buf.extend_from_slice(d);
            black_box(&buf);
        };
        g.bench_function(id, |b| {
            b.iter(|| {
                let seq = framer
                    .frame_message(black_box(&payload), false, 1, &mut copy)
                    .expect("fits");
                framer.flush(&mut copy);
                seq
            })
        });
    }
    g.finish();
}

fn session(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    let trade = samples::trade();
    let depth = samples::depth_3k();
    for (id, payload, frames, coalesce) in [
        ("trade_record_per_frame", &trade, 1usize, false),
        ("trade_64_per_record", &trade, 64, true),
        ("depth_3k_record_per_frame", &depth, 1, false),
    ] {
        g.throughput(Throughput::Elements(frames as u64));
        // Encrypting is the server's work: done in setup, outside the timing. Inputs are consumed
        // in the order they were made, as TLS requires.
        let pipe = RefCell::new(SessionPipe::new().expect("in-memory TLS session"));
        g.bench_function(id, |b| {
            b.iter_batched_ref(
                || pipe.borrow_mut().encode(payload, frames, coalesce),
                |bytes| {
                    let (n, _) = pipe.borrow_mut().decode(bytes);
                    assert_eq!(n, frames);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The plaintext side of the session alone: a tungstenite client reading one unmasked server
/// frame per socket read, with tungstenite's default read buffer (128 KiB; the relay's `Session`
/// sets 16 KiB because of this benchmark) and with a small one. tungstenite zero-fills the free
/// part of its read buffer before every read of the stream, so the buffer size is a per-read cost.
fn tungstenite_read(c: &mut Criterion) {
    use tungstenite::protocol::{Role, WebSocketConfig};
    let mut g = c.benchmark_group("tungstenite_read");
    g.throughput(Throughput::Elements(1));
    let payload = samples::trade();
    let mut frame = vec![0x81, 126];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&payload);
    for (id, size) in [
        ("read_buffer_128k", 128 * 1024),
        ("read_buffer_8k", 8 * 1024),
    ] {
        let config = WebSocketConfig::default().read_buffer_size(size);
        let mut ws =
            tungstenite::WebSocket::from_raw_socket(Pipe::default(), Role::Client, Some(config));
        g.bench_function(id, |b| {
            b.iter(|| {
                ws.get_mut().push_input(&frame);
                let message = ws.read().expect("a frame");
                // The next read finds nothing, as the relay's does after each socket read.
                assert!(ws.read().is_err());
                message.len()
            })
        });
    }
    g.finish();
}

/// What `--key-file` costs per datagram: the relay seals every copy it sends, the receiver opens
/// every datagram (the goal is <= 0.5 us per datagram at the relay). The two alternatives the
/// seal was chosen over run beside it on the same bytes: HMAC-SHA-256 over the whole datagram,
/// and AES-GCM authenticating the body as additional data without encrypting it.
fn auth(c: &mut Criterion) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(1));
    let secret = Secret::new(&[0x42; 32]).expect("32 bytes");
    let mut sealer = secret.sealer(Direction::Relay);
    let overhead = HEADER_LEN + relay_wire::BLOCK_HEADER_LEN + relay_wire::SEAL_LEN;
    let full = DEFAULT_DATAGRAM_BUDGET;
    for (id, len) in [("seal_small", 230), ("seal_full", full)] {
        let d = datagram_with(len - overhead, relay_wire::flags::SEALED);
        assert_eq!(d.len(), len);
        let mut copy = d.clone();
        g.bench_function(id, |b| {
            b.iter(|| {
                // The fan-out seals a fresh copy each time; so does this.
                copy.copy_from_slice(&d);
                sealer.seal(black_box(&mut copy))
            })
        });
    }
    let mut sealed = datagram_with(full - overhead, relay_wire::flags::SEALED);
    assert!(sealer.seal(&mut sealed));
    let mut opener = secret.opener(Direction::Relay);
    g.bench_function("open_full", |b| {
        b.iter(|| opener.open(black_box(&sealed)).map(<[u8]>::len))
    });
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[0x42; 32]);
    g.bench_function("alt_hmac_sha256_full", |b| {
        b.iter(|| ring::hmac::sign(&hmac, black_box(&sealed)))
    });
    let gcm = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x42; 32]).expect("key"));
    let mut counter = 0u64;
    g.bench_function("alt_gmac_full", |b| {
        b.iter(|| {
            counter += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_le_bytes());
            gcm.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(black_box(&sealed[..full - relay_wire::SEAL_LEN])),
                &mut [],
            )
        })
    });
    g.finish();
}

fn accounting(c: &mut Criterion) {
    let mut g = c.benchmark_group("accounting");
    let now = std::time::Instant::now();
    // Whole messages: one datagram each, sequences in order.
    let mut single = datagram(130);
    let mut acc = Accounting::new(AccountingConfig::default());
    let mut seq = 0u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("single", |b| {
        b.iter(|| {
            seq += 1;
            single[offset::SEQUENCE..offset::SEQUENCE + 8].copy_from_slice(&seq.to_le_bytes());
            let mut delivered = 0;
            acc.on_datagram(now, black_box(&single), &mut |m| {
                delivered += m.payload.len()
            });
            delivered
        })
    });
    // A ~3 KB depth message in three fragments, as the framer cuts it.
    let payload = samples::depth_3k();
    let mut framer =
        Framer::new(1, DEFAULT_DATAGRAM_BUDGET, TimeUnit::Micros, false).expect("budget");
    let mut fragments: Vec<Vec<u8>> = Vec::new();
    framer
        .frame_message(&payload, false, 1, &mut |d| fragments.push(d.to_vec()))
        .expect("fits");
    assert_eq!(fragments.len(), 3);
    let mut acc = Accounting::new(AccountingConfig::default());
    let mut seq = 0u64;
    g.throughput(Throughput::Elements(3));
    g.bench_function("depth_fragments", |b| {
        b.iter(|| {
            seq += 1;
            let mut delivered = 0;
            for d in fragments.iter_mut() {
                d[offset::SEQUENCE..offset::SEQUENCE + 8].copy_from_slice(&seq.to_le_bytes());
                acc.on_datagram(now, black_box(d), &mut |m| delivered += m.payload.len());
            }
            delivered
        })
    });
    g.finish();
}

/// `<target>`: CARGO_TARGET_DIR, else three levels above this executable (`<target>/release/deps`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn median_ns(criterion_dir: &Path, group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// The per-frame table from criterion's estimates (benchmarks filtered out are left out).
fn summarize(criterion_dir: &Path, out_dir: &Path) {
    let mut md = String::from(
        "| benchmark | one frame is | ns/frame (median) | frames/s |\n|---|---|---:|---:|\n",
    );
    let mut json = Vec::new();
    for &(group, id, frames, what) in ENTRIES {
        let Some(ns) = median_ns(criterion_dir, group, id) else {
            continue;
        };
        let per_frame = ns / frames as f64;
        let rate = 1e9 / per_frame;
        md.push_str(&format!(
            "| {group}/{id} | {what} | {per_frame:.1} | {} |\n",
            if rate >= 1e6 {
                format!("{:.2}M", rate / 1e6)
            } else {
                format!("{:.0}k", rate / 1e3)
            }
        ));
        json.push(serde_json::json!({
            "benchmark": format!("{group}/{id}"),
            "frame": what,
            "ns_per_frame": per_frame,
            "frames_per_sec": rate,
        }));
    }
    println!("\nPer-frame summary (median of criterion's samples):");
    // `cargo xtask bench --update-readme` sets this: the table then goes into README.md too.
    let update_readme = std::env::var_os("RELAY_BENCH_UPDATE_README").is_some();
    let written = std::fs::create_dir_all(out_dir)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            std::fs::write(
                out_dir.join("micro.json"),
                serde_json::to_string_pretty(&json).unwrap_or_default(),
            )?;
            bench::publish::publish(
                "micro",
                &md,
                &out_dir.join("micro.md"),
                update_readme,
                ("<!-- micro-table:start -->", "<!-- micro-table:end -->"),
            )
        });
    if let Err(e) = written {
        eprintln!("micro: error: {e:#}");
        std::process::exit(1);
    }
}

fn main() {
    let target = target_dir();
    let criterion_dir = target.join("criterion");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .output_directory(&criterion_dir)
        .configure_from_args();
    wire(&mut c);
    event_times(&mut c);
    framer(&mut c);
    session(&mut c);
    tungstenite_read(&mut c);
    auth(&mut c);
    accounting(&mut c);
    c.final_summary();
    summarize(&criterion_dir, &target.join("bench"));
}
