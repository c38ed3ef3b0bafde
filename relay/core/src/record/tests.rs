//! Records through [`Recorded::record`]: CSV rows cell by cell, and the split adding up.

use super::*;
use crate::stats::ComponentSummary;

fn record_all(records: &[Record], csv: &mut impl Write) -> Recorded {
    let mut recorded = Recorded::default();
    Recorded::write_header(csv).unwrap();
    for r in records {
        recorded.record(r, csv).unwrap();
    }
    recorded
}

/// The split's top-level parts' averages summed (µs), checking that `present` of them exist.
fn sum_of_parts(s: &split::SplitSummary, present: usize) -> f64 {
    let parts = [
        s.exchange_to_relay,
        s.relay_dwell,
        s.network,
        s.kernel,
        s.application,
        s.arbitration,
        s.serve,
    ];
    assert_eq!(parts.iter().flatten().count(), present, "{s:?}");
    parts.iter().flatten().map(|p| p.avg_us).sum()
}

#[test]
fn split_parts_sum_to_end_to_end() {
    let e = 1_000_000_000u64;
    let recorded = record_all(
        &[Record {
            event_time_ns: Some(e),
            relay_rx_ns: Some(e + 1_000_000),
            relay_tx_ns: Some(e + 1_000_500),
            nic: Some((e + 119_000_500, NicSource::Software)),
            socket_ns: Some(e + 119_000_500),
            app_ns: e + 119_031_000,
            done_ns: e + 119_031_400,
            ..Record::default()
        }],
        &mut std::io::sink(),
    );
    let s = recorded.split.summary();
    let sum = sum_of_parts(&s, 5);
    // frankfurt_time - E = 119_031_400 ns, to the nanosecond.
    assert!((sum - 119_031.4).abs() < 1e-9, "{sum}");
    assert_eq!(recorded.end_to_end.summary().unwrap().avg_ms, 119.031);
    assert_eq!(s.kernel_to_socket.unwrap().avg_us, 0.0);
    assert!(s.arbitration.is_none() && s.serve.is_none());
}

/// Arbitrated and served (`--mode both --serve-ws`): the two local parts join the sum, and
/// `frankfurt_time` is when the message was served.
#[test]
fn arbitration_and_serving_join_the_split_and_frankfurt_time() {
    let e = 1_000_000_000u64;
    let mut csv = Vec::new();
    let recorded = record_all(
        &[Record {
            event_time_ns: Some(e),
            relay_rx_ns: Some(e + 1_000_000),
            relay_tx_ns: Some(e + 1_000_500),
            nic: Some((e + 119_000_500, NicSource::Ebpf)),
            app_ns: e + 119_031_000,
            done_ns: e + 119_031_400,
            arbitrated_ns: Some(e + 119_033_400),
            served_ns: Some(e + 119_036_400),
            ..Record::default()
        }],
        &mut csv,
    );
    let s = recorded.split.summary();
    let sum = sum_of_parts(&s, 7);
    assert!((sum - 119_036.4).abs() < 1e-9, "{sum}");
    assert_eq!(
        (s.arbitration.unwrap().avg_us, s.serve.unwrap().avg_us),
        (2.0, 3.0)
    );
    assert_eq!(recorded.end_to_end.summary().unwrap().avg_ms, 119.036);
    let text = String::from_utf8(csv).unwrap();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(
        row[csv::column("frankfurt_time").unwrap()],
        (e + 119_036_400).to_string()
    );
    assert_eq!(row[csv::column("arbitration_us").unwrap()], "2.000");
    assert_eq!(row[csv::column("serve_us").unwrap()], "3.000");
}

#[test]
fn csv_rows_carry_the_seed_columns() {
    let mut csv = Vec::new();
    let records = [
        Record {
            sequence: 1,
            epoch: 7,
            event_time_ns: Some(1_704_672_345_123_000_000),
            relay_rx_ns: Some(1_704_672_345_234_000_000),
            relay_tx_ns: Some(1_704_672_345_234_010_000),
            nic: Some((1_704_672_345_455_000_000, NicSource::Ebpf)),
            socket_ns: Some(1_704_672_345_455_000_200),
            app_ns: 1_704_672_345_455_900_000,
            done_ns: 1_704_672_345_456_000_000,
            payload_len: 100,
            fragments: 1,
            ..Record::default()
        },
        Record {
            sequence: 2,
            app_ns: 4,
            done_ns: 5,
            event_time_micros: true,
            ..Record::default()
        },
    ];
    let recorded = record_all(&records, &mut csv);
    let text = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], csv::header());
    for line in &lines {
        assert_eq!(line.split(',').count(), csv::COLUMNS.len(), "{line}");
    }
    assert_eq!(
        lines[1],
        "1,1704672345123,1704672345234000000,1704672345456000000,333.000000,221.990000,7,1704672345234010000,10.000,100,1,0,\
         1704672345455000000,ebpf,1704672345455000200,1704672345455900000,220990.000,900.000,100.000,,"
    );
    assert_eq!(lines[2], "2,,,5,,,0,,,0,0,0,,,,4,,,0.001,,");
    assert_eq!(recorded.messages, 2);
    assert_eq!(recorded.without_event_time, 1);
    assert_eq!(recorded.end_to_end.summary().unwrap().avg_ms, 333.0);
    let split = recorded.split.summary();
    let part = |c: Option<ComponentSummary>| c.unwrap().p50_us;
    assert_eq!(split.exchange_to_relay.unwrap().avg_us, 111_000.0);
    assert_eq!(split.relay_dwell.unwrap().avg_us, 10.0);
    assert_eq!(split.network.unwrap().avg_us, 220_990.0);
    assert_eq!(split.kernel.unwrap().avg_us, 900.0);
    assert_eq!(split.kernel_to_socket.unwrap().avg_us, 0.2);
    assert_eq!(split.socket_to_app.unwrap().avg_us, 899.8);
    assert_eq!(split.application.unwrap().count, 2);
    assert!((part(split.kernel) - 900.0).abs() < 1.0);
    assert_eq!(
        recorded.nic_sources,
        NicSourceCounts {
            ebpf: 1,
            none: 1,
            ..NicSourceCounts::default()
        }
    );
}

#[test]
fn forged_or_broken_stamps_are_counted_and_kept_out_of_every_figure() {
    let now = 1_764_000_000_000_000_000u64;
    let good = Record {
        sequence: 1,
        event_time_ns: Some(now - 120_000_000),
        relay_rx_ns: Some(now - 119_000_000),
        relay_tx_ns: Some(now - 118_990_000),
        app_ns: now - 1_000,
        done_ns: now,
        ..Record::default()
    };
    let forged = [
        // What the issue saw: i64 overflow in a debug build, -7427245693328 ms in release.
        Record {
            sequence: 2,
            event_time_ns: Some(u64::MAX),
            relay_tx_ns: Some(0),
            ..good.clone()
        },
        Record {
            sequence: 3,
            relay_rx_ns: Some(u64::MAX - 5),
            ..good.clone()
        },
        // A relay clock two hours off.
        Record {
            sequence: 4,
            relay_tx_ns: Some(now - 7_200_000_000_000),
            ..good.clone()
        },
    ];
    let mut csv = Vec::new();
    let mut records = vec![good.clone()];
    records.extend(forged);
    let recorded = record_all(&records, &mut csv);
    assert_eq!((recorded.messages, recorded.implausible_timestamps), (4, 3));
    let e2e = recorded.end_to_end.summary().unwrap();
    assert_eq!((e2e.count, e2e.min_ms, e2e.max_ms), (1, 120.0, 120.0));
    assert_eq!(recorded.backbone.summary().unwrap().count, 1);
    assert_eq!(recorded.split.summary().relay_dwell.unwrap().count, 1);
    let text = String::from_utf8(csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let column = |name: &str| csv::COLUMNS.iter().position(|c| *c == name).unwrap();
    for row in &rows[1..] {
        let cells: Vec<&str> = row.split(',').collect();
        for name in [
            "end_to_end_latency_ms",
            "backbone_latency_ms",
            "relay_dwell_us",
            "network_us",
        ] {
            assert_eq!(cells[column(name)], "", "{name} in {row}");
        }
    }
    // Just inside the bound is believed.
    let inside = Record {
        relay_tx_ns: Some(now - MAX_PLAUSIBLE_NS),
        ..good.clone()
    };
    let recorded = record_all(&[inside], &mut std::io::sink());
    assert_eq!(recorded.implausible_timestamps, 0);
}
