//! The receiver's CSV: one row per delivered message, the seed's six columns first, then ours.
//! The one column list; readers (the lab, the tests) find columns by name with [`column`].

/// The columns, in file order.
pub const COLUMNS: [&str; 21] = [
    // The seed experiment's columns.
    "sequence_id",
    "binance_time",
    "tokyo_time",
    "frankfurt_time",
    "end_to_end_latency_ms",
    "backbone_latency_ms",
    // Ours.
    "epoch",
    "relay_send_time",
    "relay_dwell_us",
    "payload_bytes",
    "fragments",
    "reordered",
    "nic_time",
    "nic_source",
    "socket_time",
    "app_time",
    "network_us",
    "kernel_us",
    "application_us",
    "arbitration_us",
    "serve_us",
];

/// How many of [`COLUMNS`] are the seed experiment's.
pub const SEED_COLUMNS: usize = 6;

/// The header line (without the line end).
pub fn header() -> String {
    COLUMNS.join(",")
}

/// The index of the column called `name`.
pub fn column(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| *c == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_columns_come_first() {
        assert_eq!(
            COLUMNS[..SEED_COLUMNS].join(","),
            "sequence_id,binance_time,tokyo_time,frankfurt_time,end_to_end_latency_ms,backbone_latency_ms"
        );
        assert_eq!(column("backbone_latency_ms"), Some(5));
        assert_eq!(column("serve_us"), Some(COLUMNS.len() - 1));
        assert_eq!(column("nope"), None);
    }
}
