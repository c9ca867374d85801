//! virtio end to end with an independent driver: the `virtio-client` guest uses the
//! `virtio-drivers` crate (rcore-os; nobody here wrote it) against Bulkhead's virtio-mmio
//! block and network devices.

use bulkhead_tests::{boot_image, bundle_image, Checked};

const CONF: &str = r#"
[vm.virtio]
kind = "elf64"
image = "virtio-client.elf"
memory = "32M"

[[vm.virtio.virtio-blk]]
size = "20M"

[[vm.virtio.virtio-net]]
mac = "52:54:00:12:34:56"
"#;

/// A counter from the hypervisor's device line, e.g. `notifications=` of the virtio-blk.
fn device_counter(run: &Checked, device: &str, name: &str) -> u64 {
    let line = run.line(&format!("vm virtio: {device} at "));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

/// A `key=value` from the guest line containing `needle`.
fn guest_value(run: &Checked, needle: &str, key: &str) -> u64 {
    let line = run.guest_line("virtio", needle);
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim_start_matches('~').parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
fn virtio_drivers_client_uses_blk_and_net() {
    let (_dir, image) = bundle_image(CONF, &["virtio-client.elf"]);
    let run = boot_image(&image, "corei7_skylake_x", 400);
    run.exited(0, "ok");
    for check in [
        "blk-capacity",
        "blk-write-read",
        "blk-flush",
        "blk-out-of-range",
        "blk-large-request",
        "blk-batch-32",
        "blk-interrupt",
        "net-arp",
        "net-ping",
        "net-ping-1000",
    ] {
        run.said("virtio", &format!("guest virtio-client: PASS {check}"));
    }
    run.said("virtio", "guest virtio-client: DONE passed=10 failed=0")
        .not_saw("FAIL")
        .said("virtio", "net arp: 192.0.2.1 is at 02:00:00:00:00:01");
    // 32 requests queued at once (16 at a time: virtio-drivers' queue size) cost a handful
    // of notifications, not 32: the device suppresses notifications while it has work.
    let batch_mmio = guest_value(&run, "blk batch write:", "mmio_exits");
    assert!(
        batch_mmio <= 8,
        "32 queued writes took {batch_mmio} MMIO exits"
    );
    let requests = device_counter(&run, "virtio-blk", "requests");
    let notifications = device_counter(&run, "virtio-blk", "notifications");
    assert!(requests > 8000, "{requests} blk requests");
    assert!(
        notifications * 4 < requests,
        "{notifications} notifications for {requests} requests"
    );
    assert_eq!(device_counter(&run, "virtio-blk", "bad-accesses"), 0);
    assert!(
        device_counter(&run, "virtio-net", "requests") >= 2006,
        "1003 pings and an ARP each way"
    );
}
