//! The seal against an implementation we did not write: `tests/seal_interop.py` builds HKDF and
//! AES-256-GCM from PROTOCOL.md with Python's `cryptography` package (OpenSSL). It opens what
//! the relay seals, and the relay opens what it seals as a receiver, so the document, not only
//! our code, defines the format.
//!
//! Needs `python3` with `cryptography` (`cargo xtask test` installs it); without it the test fails
//! with instructions, never skips.

use std::io::Write;
use std::process::{Command, Stdio};

use relay_core::seal::{seal_counter, Direction, Secret};
use relay_core::wire::{flags, Block, Header, Kind, NakRange, Writer};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seal_interop.py");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn datagram(header: Header, fill: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut buf = vec![0u8; 1472];
    let mut w = Writer::new(
        &mut buf,
        Header {
            flags: flags::SEALED,
            ..header
        },
    );
    fill(&mut w);
    let len = w.finish();
    buf.truncate(len);
    buf
}

#[test]
fn python_cryptography_opens_our_seal_and_we_open_its() {
    let secret_bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
    let secret = Secret::new(&secret_bytes).unwrap();
    let data = datagram(
        Header {
            relay_tx_ns: 1_700_000_000_123_456_789,
            ..Header::new(Kind::Data, 0x8badf00d, 2, 77)
        },
        |w| {
            assert!(w.push_block(Block::default(), br#"{"e":"trade","t":1}"#));
            assert!(w.push_block(Block::default(), br#"{"e":"trade","t":2}"#));
        },
    );
    let mut sealed = data.clone();
    assert!(secret.sealer(Direction::Relay).seal(&mut sealed));
    let nak = datagram(Header::new(Kind::Nak, 0x8badf00d, 0, 70), |w| {
        assert!(w.push_range(NakRange { first: 70, len: 7 }));
    });
    let request = format!(
        r#"{{"secret":"{}","sealed":"{}","to_seal":"{}"}}"#,
        hex(&secret_bytes),
        hex(&sealed),
        hex(&nak)
    );
    let mut child = match Command::new("python3")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("python3 could not be started ({e}); run `cargo xtask test`"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python side failed (it needs the 'cryptography' package: `cargo xtask test` \
         installs it, or `python3 -m pip install cryptography`):\n{stderr}"
    );
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let opened = unhex(reply["opened"].as_str().unwrap());
    let seal_at = data.len() - relay_core::wire::SEAL_LEN;
    assert_eq!(
        opened[..seal_at],
        data[..seal_at],
        "Python decrypts our body"
    );
    let theirs = unhex(reply["sealed"].as_str().unwrap());
    assert_eq!(seal_counter(&theirs), Some(12345));
    let mut opener = secret.opener(Direction::Receiver);
    let ours = opener.open(&theirs).expect("we open Python's seal");
    let nak_seal_at = nak.len() - relay_core::wire::SEAL_LEN;
    assert_eq!(
        ours[..nak_seal_at],
        nak[..nak_seal_at],
        "we decrypt Python's body"
    );
    assert!(secret.opener(Direction::Relay).open(&theirs).is_err());
}
