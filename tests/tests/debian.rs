//! A stock distribution guest (issue 12): Debian 12's own kernel package, unmodified
//! (`scripts/build-debian-guest`), with a minimal initramfs of Debian's modules and an ext4
//! root file system on the first virtio disk, boots under Bulkhead in Bochs on two vCPUs. Its
//! virtio devices are found through the DSDT only (the kernel's virtio drivers are modules
//! and it has no command-line devices); the checks of tests/guest/linux/init then run from
//! the root file system and the guest powers off through ACPI.

use bulkhead_tests::{boot_image, bundle_files, debian_guest, manifest_value, Checked};

const CMDLINE: &str = "console=ttyS0,115200 panic=-1 reboot=t tsc=reliable root=/dev/vda \
     bulkhead.blk=/dev/vdb bulkhead.cpus=2 bulkhead.checks=blk,net,smp";

/// The VM: `kind` "linux" boots `vmlinuz` (the bzImage), "pvh" boots `vmlinux` through its
/// PVH entry note; `kvm_pv` offers KVM's paravirtual interface (the default for both).
fn debian_conf(kind: &str, image: &str, kvm_pv: bool) -> String {
    format!(
        "[vm.debian]\nkind = \"{kind}\"\nimage = \"{image}\"\ninitrd = \"initramfs.cpio.gz\"\n\
         memory = \"192M\"\nvcpus = 2\nconsole-timestamps = true\ncmdline = \"{CMDLINE}\"\n\
         kvm-pv = {kvm_pv}\n\
         [[vm.debian.virtio-blk]]\nimage = \"rootfs.ext4\"\n\
         [[vm.debian.virtio-blk]]\nsize = \"8M\"\n\
         [[vm.debian.virtio-blk]]\nsize = \"1M\"\n\
         [[vm.debian.virtio-blk]]\nsize = \"1M\"\n\
         [[vm.debian.virtio-net]]\nmac = \"52:54:00:12:34:56\"\n"
    )
}

fn boot_debian(kind: &str, kernel: &str, kvm_pv: bool) -> (Checked, std::path::PathBuf) {
    let dir = debian_guest();
    let files = [kernel, "initramfs.cpio.gz", "rootfs.ext4"].map(|f| dir.join(f));
    let (_tmp, image) = bundle_files(&debian_conf(kind, kernel, kvm_pv), &files);
    (boot_image(&image, "corei7_skylake_x", 1500), dir)
}

/// The lines every boot of the Debian guest shows, with or without the KVM interface.
fn common(run: &Checked, dir: &std::path::Path) {
    let pattern = manifest_value(dir, "blk_pattern_sha256");
    let release = manifest_value(dir, "kernel_release");
    for needle in [
        // Debian's kernel, not the test guest's.
        &format!("Linux version {release} (debian-kernel@lists.debian.org)"),
        "smp: Brought up 1 node, 2 CPUs",
        "ACPI: PM: (supports S0 S5)",
        // COM1 from the DSDT's PNP0501 (8250_pnp names it after its PNP device, 00:00).
        "00:00: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A",
        // Through the DSDT's LNRO0005 devices: the command line names no device.
        "virtio_blk virtio0: [vda] 32768 512-byte logical blocks",
        "virtio_blk virtio1: [vdb] 16384 512-byte logical blocks",
        // Devices 3 and 4 are on IRQs 10 and 11 (vm::config::DEVICE_IRQS), clear of the
        // RTC's IRQ 8, which rtc_cmos binds, and the SCI's 9.
        "virtio_blk virtio3: [vdd] 2048 512-byte logical blocks",
        // Debian's own modules, loaded by the initramfs (scripts/build-debian-guest).
        "guest: stage1: loaded 12 modules",
        "guest: stage1: root /dev/vda mounted (ext4)",
        "EXT4-fs (vda): mounted filesystem",
        "guest: userspace up uptime=",
        "guest: virtio-blk: found /dev/vdb size=8388608",
        &format!("guest: PASS virtio-blk pattern sha256={pattern}"),
        "guest: virtio-net: found eth0 mac=52:54:00:12:34:56",
        "guest: PASS virtio-net ping 192.0.2.1 received=3/3",
        "guest: PASS smp",
        "guest: ALL PASS",
    ] {
        run.said("debian", needle);
    }
    run.saw("vm debian: stopped: guest powered off (ACPI S5)")
        .saw("vm debian: virtio-blk at 0xd0003000 irq 10: requests=")
        .saw("vm debian: virtio-net at 0xd0004000 irq 11: requests=")
        .exited(0, "ok");
    // The VM's RTC starts at the machine's date (kernel/src/host_rtc.rs), not 1970; a run
    // across midnight may see yesterday's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rtc = run.guest_line("debian", "rtc_cmos rtc_cmos: setting system clock to ");
    let dated = [now, now - 86_400].iter().any(|&t| {
        let d = vm::devices::rtc::DateTime::from_unix(t);
        rtc.contains(&format!(
            "setting system clock to {:04}-{:02}-{:02}T",
            d.year, d.month, d.day
        ))
    });
    assert!(dated, "the guest's RTC is not at today's date: {rtc}");
    for bad in [
        "guest: FAIL",
        "Kernel panic",
        "unhandled exit",
        "hypervisor bug",
    ] {
        run.not_saw(bad);
    }
}

/// The `+ticks` console timestamp of the first line of VM debian containing `needle`.
fn ticks_of(run: &Checked, needle: &str) -> u64 {
    let line = run
        .outcome
        .transcript
        .lines()
        .find(|l| l.starts_with("[debian +") && l.contains(needle))
        .unwrap_or_else(|| panic!("no timestamped debian console line contains {needle:?}"));
    line["[debian +".len()..]
        .split(']')
        .next()
        .and_then(|t| t.parse().ok())
        .expect("ticks")
}

/// What a guest with KVM's interface shows (docs/hypercall-abi.md §9): Linux finds KVM's
/// signature at 0x40000100 behind Bulkhead's own, uses kvmclock's new MSRs and prefers
/// kvm-clock (invariant TSC hidden), turns on PV TLB flush (steal time with `preempted`);
/// the VM report says which areas it placed: kvmclock, the wall clock, steal time (with time
/// really stolen: two vCPUs share Bochs's one CPU) and PV EOI. Linux 6.1 prints
/// its steal-time and PV EOI registration only at debug level (`pr_debug` in
/// arch/x86/kernel/kvm.c), so the hypervisor's report is the evidence for those.
fn kvm_pv_used(run: &Checked) {
    for needle in [
        "Hypervisor detected: KVM",
        "kvm-clock: Using msrs 4b564d01 and 4b564d00",
        "clocksource: Switched to clocksource kvm-clock",
        "kvm-guest: KVM setup pv remote TLB flush",
    ] {
        run.said("debian", needle);
    }
    // POLL_CONTROL is written only by cpuidle-haltpoll, a module the initramfs does not load;
    // PV TLB flushes (tlb-flush) depend on timing.
    run.saw("vm debian: kvm-pv: clock wall-clock steal pv-eoi");
    let counters = run.line("vm debian: kvm-pv counters: ").to_string();
    eprintln!("debian: {counters}");
    let steal: u64 = counters
        .split_whitespace()
        .find_map(|w| w.strip_prefix("steal-ns="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if steal == 0 {
        // Two vCPUs on one CPU wait for each other.
        run.saw("<kvm-pv counters with steal-ns above 0>");
    }
    if !counters.ends_with(" refused-msr-writes=0") {
        // Linux writes only valid PV MSR values.
        run.saw("<kvm-pv counters ending in refused-msr-writes=0>");
    }
}

#[test]
fn debians_stock_kernel_boots_with_root_on_virtio_blk() {
    let (run, dir) = boot_debian("linux", "vmlinuz", true);
    common(&run, &dir);
    kvm_pv_used(&run);
    println!(
        "debian bzImage: userspace at {} ticks",
        ticks_of(&run, "guest: userspace up")
    );
}

/// The same kernel through its PVH entry (the ELF inside the bzImage): no decompressor runs.
#[test]
fn debians_kernel_boots_through_its_pvh_entry() {
    let (run, dir) = boot_debian("pvh", "vmlinux", true);
    common(&run, &dir);
    kvm_pv_used(&run);
    println!(
        "debian PVH: userspace at {} ticks",
        ticks_of(&run, "guest: userspace up")
    );
}

/// `kvm-pv = false` withholds KVM's interface: the same guest still boots and passes, Linux
/// detects no KVM and keeps a clocksource other than kvm-clock (the TSC), and the VM report
/// has no kvm-pv line.
#[test]
fn debian_without_kvm_pv_falls_back_to_the_tsc() {
    let (run, dir) = boot_debian("linux", "vmlinuz", false);
    common(&run, &dir);
    let switched = run.guest_line("debian", "clocksource: Switched to clocksource ");
    assert!(
        switched.ends_with("clocksource: Switched to clocksource tsc")
            || switched.ends_with("clocksource: Switched to clocksource tsc-early"),
        "{switched}"
    );
    run.not_saw("Hypervisor detected: KVM")
        .not_saw("kvm-clock")
        .not_saw("vm debian: kvm-pv");
    println!(
        "debian bzImage without kvm-pv: userspace at {} ticks",
        ticks_of(&run, "guest: userspace up")
    );
}
