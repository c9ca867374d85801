//! The benchmark report (`scripts/bench`, `bulkhead-boot bench`) in smoke mode: it is
//! produced, written as well-formed JSON, and has every figure — the exit round trips and
//! sizes measured (numbers), the rest marked skipped. The numbers themselves decide nothing.

use bulkhead_boot::bench::{
    run_bench, Options, Report, Status, SEC_BLK, SEC_EXITS, SEC_LINUX, SEC_NET, SEC_SIZE,
};

#[test]
fn smoke_benchmark_writes_a_well_formed_report() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("bench.json");
    let mut opts = Options::new();
    opts.smoke = true;
    opts.out = out.clone();
    let report = run_bench(&opts).unwrap_or_else(|e| panic!("bench --smoke failed: {e}"));

    let text = std::fs::read_to_string(&out).expect("the JSON report was written");
    let parsed =
        Report::from_json(&text).unwrap_or_else(|e| panic!("malformed JSON ({e}):\n{text}"));
    assert_eq!(parsed, report, "the JSON says what the run returned");
    assert!(parsed.smoke);
    assert_eq!(parsed.bochs_cpu, "corei7_skylake_x");
    assert_eq!(parsed.date.len(), 10, "date is YYYY-MM-DD: {}", parsed.date);

    let measured = [
        "CPUID",
        "no-op hypercall (VMCALL NOP)",
        "multicall, per operation, n = 1",
        "multicall, per operation, n = 8",
        "multicall, per operation, n = 32",
        "port I/O in (unclaimed port 0x2F0)",
        "port I/O out (COM1 scratch 0x3FF)",
        "MMIO read (virtio MagicValue)",
        "MMIO write (virtio QueueSel)",
        "hypervisor kernel ELF, file size",
        "hypervisor kernel, loaded segments in memory",
        "BIOS disk image (no bundle)",
        "UEFI disk image (no bundle)",
        "memory beyond guest RAM, selftest VM (16 MiB, virtio-blk): total",
        "memory beyond guest RAM, selftest VM (16 MiB, virtio-blk): EPT",
    ];
    for name in measured {
        let f = parsed
            .get(name)
            .unwrap_or_else(|| panic!("no figure {name:?} in\n{text}"));
        assert_eq!(f.status, Status::Measured, "{name}: {f:?}");
        assert!(
            f.value.is_some_and(|v| v.is_finite() && v > 0.0),
            "{name}: {f:?}"
        );
        assert!(!f.method.is_empty(), "{name} names its method");
    }
    let skipped = [
        "sequential read, 4 KiB requests: exits per MiB",
        "sequential write, 64 KiB requests: interrupts per MiB",
        "exits per 1,000 packets",
        "ping round trip (median)",
        "Bulkhead: VM entry to userspace",
        "ratio Bulkhead / bare: CPU-bound workload (sha256 of 2 MiB)",
        "memory beyond guest RAM, Linux VM (64 MiB, no devices): total",
    ];
    for name in skipped {
        let f = parsed
            .get(name)
            .unwrap_or_else(|| panic!("no figure {name:?} in\n{text}"));
        assert_eq!(f.status, Status::Skipped, "{name}: {f:?}");
    }
    for section in [SEC_EXITS, SEC_BLK, SEC_NET, SEC_LINUX, SEC_SIZE] {
        assert!(
            parsed.figures.iter().any(|f| f.section == section),
            "section {section}"
        );
    }
    assert!(
        parsed.missing().is_empty(),
        "not measured: {:?}",
        parsed.missing()
    );
    let md = parsed.markdown();
    assert!(md.contains("| Metric | Value | Unit | Method |"));
    eprintln!("{md}");
}
