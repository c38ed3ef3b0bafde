//! What the pipeline tests share: a pipeline opened and handshaken, and the networks they use.
#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use relay_core::harness::{NetworkConfig, Pipeline, PipelineConfig};
use relay_core::receive::accounting::AccountingConfig;

pub const MS: Duration = Duration::from_millis(1);

/// `config` with neither NAKs nor answers: the accounting's own semantics.
pub fn without_recovery(config: PipelineConfig) -> PipelineConfig {
    PipelineConfig {
        retransmit: None,
        accounting: AccountingConfig {
            recovery: None,
            ..config.accounting
        },
        ..config
    }
}

/// A pipeline whose exchange connection is open (the handshake done in memory).
pub fn open(config: PipelineConfig) -> Pipeline {
    let mut p = Pipeline::new(config);
    p.run_for(10 * MS);
    assert!(
        p.exchange.is_open(),
        "the handshake completes in memory: {:?}",
        p.notices
    );
    p
}

/// A lossy, jittery, reordering relay -> receiver network.
pub fn lossy(loss: f64) -> NetworkConfig {
    NetworkConfig {
        delay: 20 * MS,
        jitter: Duration::from_micros(500),
        loss,
        duplicate: 0.01,
        fifo: false,
    }
}
