use super::checks::{exit_code, findings, in_cpu_list, Facts, Iface, Level};
use relay_core::record::clock::ClockState;

/// A well-kept relay host: core 3 isolated and tickless, no IRQ on it, performance governor,
/// busy polling, large buffers, io_uring and BTF, a synchronised clock with the TAI offset.
fn tuned() -> Facts {
    Facts {
        cores: 4,
        relay_core: 3,
        isolated: "3".into(),
        cmdline: "quiet isolcpus=3 nohz_full=3".into(),
        irqs_on_core: Vec::new(),
        governors: Some(vec!["performance".into(); 4]),
        busy_read: Some(50),
        busy_poll: Some(50),
        rmem_max: Some(16 << 20),
        wmem_max: Some(16 << 20),
        io_uring_disabled: Some(0),
        btf: true,
        clock: Some(ClockState {
            synchronized: true,
            est_error_us: 20,
            max_error_us: 100,
            tai_offset_s: 37,
            chrony_offset_us: Some(-3.5),
        }),
        iface: Some(Iface {
            name: "eth0".into(),
            exists: true,
            driver: Some("ena".into()),
            hw_timestamps: Some((true, true)),
        }),
    }
}

fn levels(f: &Facts) -> Vec<(&'static str, Level)> {
    findings(f)
        .into_iter()
        .map(|f| (f.topic, f.level))
        .collect()
}

#[test]
fn cpu_lists_are_read_as_the_kernel_writes_them() {
    assert!(in_cpu_list("0-3,7", 2) && in_cpu_list("0-3,7", 7));
    assert!(!in_cpu_list("0-3,7", 5) && !in_cpu_list("", 0) && !in_cpu_list("x", 0));
    assert!(in_cpu_list("1", 1) && in_cpu_list(" 0-1\n", 1));
}

#[test]
fn a_tuned_host_is_all_ok() {
    let f = findings(&tuned());
    assert!(f.iter().all(|f| f.level == Level::Ok), "{f:#?}");
    assert_eq!(exit_code(&f), 0);
    let text = super::render(&f);
    assert!(text.contains("chrony offset -3.5 µs"), "{text}");
}

#[test]
fn each_shortcoming_is_named_with_its_fix() {
    let mut f = tuned();
    f.isolated = String::new();
    f.irqs_on_core = vec![("24".into(), "0-3".into())];
    f.governors = Some(vec!["performance".into(), "powersave".into()]);
    f.busy_read = Some(0);
    f.rmem_max = Some(4 << 20);
    f.clock = Some(ClockState {
        synchronized: false,
        tai_offset_s: 0,
        ..f.clock.unwrap()
    });
    f.iface.as_mut().unwrap().hw_timestamps = Some((false, false));
    let found = findings(&f);
    let text = super::render(&found);
    for expected in [
        "WARN  cpu isolation   core 3 (the relay's) is not isolated",
        "fix: add `isolcpus=3 nohz_full=3 rcu_nocbs=3`",
        "1 interrupts may run on core 3 (e.g. IRQ 24: cores 0-3)",
        "echo 0,1,2 > $irq/smp_affinity_list",
        "the powersave governor",
        "fix: cpupower frequency-set -g performance",
        "fix: sysctl -w net.core.busy_read=50 net.core.busy_poll=50",
        "net.core.rmem_max is 4194304 bytes",
        "fix: sysctl -w net.core.rmem_max=8388608",
        "the clock is not synchronised",
        "eth0 has no hardware receive stamps",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
    }
    assert_eq!(exit_code(&found), 0, "warnings do not block");
}

#[test]
fn what_would_stop_the_relay_blocks() {
    let mut f = tuned();
    f.io_uring_disabled = Some(2);
    assert!(levels(&f).contains(&("io_uring", Level::Block)));
    assert_eq!(exit_code(&findings(&f)), 1);
    let mut f = tuned();
    f.iface.as_mut().unwrap().exists = false;
    assert!(levels(&f).contains(&("interface", Level::Block)));
    assert_eq!(exit_code(&findings(&f)), 1);
}

#[test]
fn this_host_reads_without_privileges_or_panics() {
    let f = super::facts(None, Some("lo"));
    assert!(f.cores >= 1 && f.relay_core < f.cores);
    let i = f.iface.as_ref().unwrap();
    assert!(i.exists, "loopback is always there");
    assert!(f.clock.is_some());
    assert!(!findings(&f).is_empty());
}
