//! virtio end to end with an independent driver: the `virtio-client` guest uses the
//! `virtio-drivers` crate (rcore-os; nobody here wrote it) against Bulkhead's virtio-mmio
//! block and network devices.

use bulkhead_boot::image::guest_dir;
use bulkhead_tests::{boot_image, bundle_files, bundle_image, Checked};

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

/// Heap budgets (issue 9, finding 1): a guest writes every block of a copy-on-write disk over
/// a 2 MiB archive image whose overlay budget (`heap-budget = "512K"`, less what its device
/// takes at creation) holds 118 blocks. Exactly those writes succeed and read back; the other
/// 394 are refused with IOERR, leave the image's data intact and are counted; the VM's growth
/// was reserved at creation, the heap's high-water mark is printed, and the selftest VM beside
/// it passes.
#[test]
fn a_guest_cannot_grow_the_hypervisor_heap_beyond_its_budget() {
    const BLOCKS: usize = 512;
    const BUDGET: u64 = 512 * 1024;
    /// What the device set is charged at creation per device (kernel
    /// `VirtioDevices::heap_estimate`), deducted from `heap-budget`.
    const PER_DEVICE: u64 = 32 * 1024;
    let overlay = BUDGET - PER_DEVICE;
    let writable = (overlay / virtio::ramdisk::OVERLAY_BLOCK_COST) as usize;
    let tmp = tempfile::tempdir().expect("temporary directory");
    let img = tmp.path().join("fill.img");
    let data: Vec<u8> = (0..BLOCKS * 4096).map(|i| (i / 4096) as u8).collect();
    std::fs::write(&img, data).expect("write the disk image");
    let conf = "[vm.fill]\nkind = \"elf64\"\nimage = \"disk-fill.elf\"\nmemory = \"16M\"\n\
                heap-budget = \"512K\"\n[[vm.fill.virtio-blk]]\nimage = \"fill.img\"\n\
                [vm.selftest]\nkind = \"elf64\"\nimage = \"selftest.elf\"\nmemory = \"16M\"\n\
                [[vm.selftest.virtio-blk]]\nsize = \"1M\"\n";
    let files = [
        img,
        guest_dir().join("disk-fill.elf"),
        guest_dir().join("selftest.elf"),
    ];
    let (_dir, image) = bundle_files(conf, &files);
    let run = boot_image(&image, "corei7_skylake_x", 300);
    run.exited(0, "ok")
        .said(
            "fill",
            &format!(
                "disk-fill: blocks={BLOCKS} written={writable} refused={} verified={writable} intact={}",
                BLOCKS - writable,
                BLOCKS - writable
            ),
        )
        .saw("[fill] guest disk-fill: PASS budget-respected")
        .saw("[selftest] guest selftest: DONE passed=21 failed=0")
        .not_saw("FAIL");
    let dev = run.line("vm fill: virtio-blk at ");
    assert!(
        dev.contains(&format!("budget-exceeded={} ", BLOCKS - writable)),
        "{dev}"
    );
    let heap = run.line("heap: ");
    assert!(
        heap.contains(&format!(
            "reserved for guest-driven growth {} KiB",
            overlay / 1024
        )),
        "{heap}"
    );
    eprintln!("disk-fill: {heap}");
}

/// The whole VM's worst case is checked against what is really left of the heap (issue 9,
/// finding 7): eight VMs whose RAM disks each fit a per-disk check but not all together. The
/// VMs that do not fit are not started, with the numbers; the hypervisor does not panic and the
/// others run.
#[test]
fn vms_whose_worst_case_does_not_fit_are_refused_not_a_panic() {
    let mut conf = String::new();
    for (i, size) in [
        "46M", "12288000", "3060736", "751104", "179200", "512", "512", "512",
    ]
    .iter()
    .enumerate()
    {
        conf += &format!(
            "[vm.v{i}]\nkind = \"elf64\"\nimage = \"selftest.elf\"\nmemory = \"16M\"\n\
             [[vm.v{i}.virtio-blk]]\nsize = \"{size}\"\n"
        );
    }
    let (_dir, image) = bundle_image(&conf, &["selftest.elf"]);
    let run = boot_image(&image, "corei7_skylake_x", 400);
    run.not_saw("PANIC").not_saw("hypervisor bug");
    let t = &run.outcome.transcript;
    let refused = t.matches("not started: its worst case needs").count();
    let ran = t.matches("guest selftest: DONE passed=21 failed=0").count();
    assert!(refused >= 1, "no VM was refused\n{t}");
    assert_eq!(ran + refused, 8, "{ran} ran, {refused} refused\n{t}");
    run.saw(&format!(
        "bulkhead: all VMs stopped ({ran} ran, {refused} could not start)"
    ))
    .exited(32, "bad-configuration");
}
