//! The command lines' habits a user relies on, with the real binary.

use std::process::Command;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");

/// As the seed's tools did: without `--config`, `relay forward` reads ./tokyo-config.json and
/// `relay receive` ./frankfurt-config.json when there is one, and says so. (Each file here has a
/// typo'd key, so the command stops at once with the file named, before any network use.)
#[test]
fn the_seeds_config_files_are_read_from_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    // Each command stops at once without a file: forward has no receiver, receive a bad duration.
    for (command, file, stop) in [
        ("forward", "tokyo-config.json", vec![]),
        (
            "receive",
            "frankfurt-config.json",
            vec!["--duration", "nan"],
        ),
    ] {
        let run = |extra: &[&str]| {
            let out = Command::new(RELAY)
                .arg(command)
                .args(&stop)
                .args(extra)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1));
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        let err = run(&[]);
        assert!(!err.contains(file), "no file, nothing said: {err}");
        std::fs::write(dir.path().join(file), r#"{"duration_sekunden": 5}"#).unwrap();
        let err = run(&[]);
        assert!(
            err.contains(&format!(
                "relay {command}: reading ./{file} (no --config given)"
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("config file {file} is not valid"))
                && err.contains("duration_sekunden"),
            "{err}"
        );
        // --config wins over the local file.
        std::fs::write(dir.path().join("other.json"), "{}").unwrap();
        let err = run(&["--config", "other.json"]);
        assert!(!err.contains(file), "{err}");
    }
}

/// `relay doctor` reads the host without privileges, says what it found, and fails only for
/// what would block (here: an interface that is not there).
#[test]
fn doctor_reports_findings_and_fails_only_on_what_blocks() {
    let out = Command::new(RELAY)
        .args(["doctor", "--iface", "lo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for topic in [
        "cpu isolation",
        "interrupts",
        "socket buffers",
        "io_uring",
        "clock",
        "interface",
    ] {
        assert!(text.contains(topic), "{topic} missing: {text}");
    }
    let out = Command::new(RELAY)
        .args(["doctor", "--iface", "nosuchif0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("BLOCK interface       no interface nosuchif0"));
}
