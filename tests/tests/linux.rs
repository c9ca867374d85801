//! Linux end to end: an unmodified Linux 6.1 (tests/guest/linux, built by
//! scripts/build-guest) boots under Bulkhead in Bochs, finds virtio-blk and virtio-net,
//! writes and reads back a pattern on /dev/vda, pings the gateway and powers off.

use bulkhead_tests::{boot_image, bundle_files, linux_guest, manifest_value, Checked};

const CMDLINE: &str = "console=ttyS0,115200 panic=-1 reboot=t io_delay=none nolapic tsc=reliable \
     no_timer_check bulkhead.checks=blk,net,workload,clock";

/// One Linux VM with an 8 MiB RAM disk (read-only if `read_only`) and a network card; with
/// `hvc0`, also a virtio-console that is the kernel's console instead of COM1.
fn linux_conf(read_only: bool, hvc0: bool) -> String {
    let cmdline = if hvc0 {
        CMDLINE.replace("console=ttyS0,115200", "console=hvc0")
    } else {
        CMDLINE.to_string()
    };
    format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\nmemory = \"64M\"\n\
         console-timestamps = true\ncmdline = \"{cmdline}\"\nvirtio-console = {hvc0}\n\
         [[vm.linux.virtio-blk]]\nsize = \"8M\"\nread-only = {read_only}\n\
         [[vm.linux.virtio-net]]\nmac = \"52:54:00:12:34:56\"\n"
    )
}

fn boot_linux(read_only: bool) -> Checked {
    boot_linux_with(read_only, false)
}

fn boot_linux_with(read_only: bool, hvc0: bool) -> Checked {
    let dir = linux_guest();
    let files = [dir.join("bzImage"), dir.join("initramfs.cpio.lz4")];
    let (_tmp, image) = bundle_files(&linux_conf(read_only, hvc0), &files);
    boot_image(&image, "corei7_skylake_x", 600)
}

/// Whether every guest check passed, judged from the transcript alone (so the negative test
/// below can show this judgement rejects a failing guest).
fn linux_passed(run: &Checked, pattern: &str) -> Result<(), String> {
    let out = &run.outcome;
    for needle in [
        "guest: userspace up uptime=",
        "guest: virtio-blk: found /dev/vda size=8388608",
        &format!("guest: PASS virtio-blk pattern sha256={pattern}"),
        "guest: virtio-net: found eth0 mac=52:54:00:12:34:56",
        "guest: PASS virtio-net ping 192.0.2.1 received=3/3",
        "guest: ALL PASS",
    ] {
        if !out.guest_said("linux", needle) {
            return Err(format!("the guest did not print {needle:?}"));
        }
    }
    let stopped = "vm linux: stopped: guest powered off (ACPI S5)";
    if !out.saw(stopped) {
        return Err(format!("missing {stopped:?}"));
    }
    if out.exit.as_ref().map(|e| (e.code, e.name.as_str())) != Some((0, "ok")) {
        return Err("the kernel did not end with exit status 0 (ok)".into());
    }
    for bad in [
        "guest: FAIL",
        "FAILED",
        "unhandled exit",
        "hypervisor bug",
        "Kernel panic",
    ] {
        if out.contains(bad) {
            return Err(format!("found {bad:?}"));
        }
    }
    Ok(())
}

/// The `+ticks` prefix of the console line containing `needle`.
fn ticks_of(run: &Checked, needle: &str) -> u64 {
    let line = run
        .outcome
        .transcript
        .lines()
        .find(|l| l.starts_with("[linux +") && l.contains(needle))
        .unwrap_or_else(|| panic!("no timestamped linux console line contains {needle:?}"));
    let start = line.find(" +").expect("console timestamp") + 2;
    line[start..]
        .split(']')
        .next()
        .and_then(|t| t.parse().ok())
        .expect("ticks")
}

#[test]
fn linux_boots_and_uses_virtio_blk_and_net() {
    let dir = linux_guest();
    let pattern = manifest_value(&dir, "blk_pattern_sha256");
    let run = boot_linux(false);
    if let Err(why) = linux_passed(&run, &pattern) {
        run.saw(&format!("<linux check failed: {why}>"));
    }
    // The devices did their work through the virtqueues, and their IRQs reached the guest.
    run.saw("vm linux: virtio-blk at 0xd0000000 irq 5: requests=")
        .saw("vm linux: virtio-net at 0xd0001000 irq 6: requests=");
    // KVM's PV interface (kvm-pv, on by default for Linux): the guest finds KVM's leaves at
    // 0x40000100, registers kvmclock and prefers it over the TSC (invariant TSC hidden).
    assert!(
        run.outcome
            .guest_said("linux", "clocksource: Switched to clocksource kvm-clock"),
        "the guest did not switch to kvm-clock"
    );
    // 100,000 clock_gettime calls through the vDSO on kvm-clock: it never went backwards.
    run.said(
        "linux",
        "guest: PASS clock clocksource=kvm-clock calls=100000 backwards=0",
    );
    assert!(
        run.line("vm linux: kvm-pv: ")
            .starts_with("vm linux: kvm-pv: clock wall-clock steal"),
        "kvmclock, its wall clock and steal time enabled: {}",
        run.line("vm linux: kvm-pv: ")
    );
    assert!(
        run.exit_count("linux", "EPT violation").unwrap_or(0) > 0,
        "virtio-mmio accesses are EPT violations"
    );
    assert!(
        run.exit_count("linux", "HLT").unwrap_or(0) > 0,
        "the idle guest halts and is woken"
    );
    let injected = run.line("vm linux: exits: hypercalls=");
    assert!(
        !injected.contains("interrupts-injected=0 "),
        "timer and device interrupts were injected: {injected}"
    );
    // Boot time, recorded (not judged): emulated ticks from the first VM entry and the
    // guest's own uptime when userspace started.
    let ticks = ticks_of(&run, "guest: userspace up");
    let uptime = run
        .guest_line("linux", "guest: userspace up uptime=")
        .rsplit('=')
        .next()
        .unwrap_or("?")
        .to_string();
    eprintln!("linux boot: userspace after {ticks} TSC ticks from the first VM entry; guest uptime {uptime} s");
}

/// virtio-console (virtio 1.2 §5.3) as Linux's console (`console=hvc0`): the same checks pass,
/// the console bytes travel through the device's transmit queue, and the VM takes a fraction
/// of the I/O exits it takes with the UART (one exit per byte there).
#[test]
fn linux_on_a_virtio_console_passes_with_few_io_exits() {
    let dir = linux_guest();
    let pattern = manifest_value(&dir, "blk_pattern_sha256");
    let uart = boot_linux(false);
    let hvc = boot_linux_with(false, true);
    if let Err(why) = linux_passed(&hvc, &pattern) {
        hvc.saw(&format!("<linux check failed on hvc0: {why}>"));
    }
    let console = hvc.line("vm linux: virtio-console at 0xd0002000 irq 7: requests=");
    assert!(!console.contains("requests=0 "), "{console}");
    let io = |run: &Checked| run.exit_count("linux", "I/O instruction").unwrap_or(0);
    let (io_uart, io_hvc) = (io(&uart), io(&hvc));
    eprintln!("linux boot I/O exits: console=ttyS0 {io_uart}, console=hvc0 {io_hvc}");
    assert!(
        io_hvc * 4 < io_uart,
        "hvc0 took {io_hvc} I/O exits, ttyS0 {io_uart}"
    );
}

/// A read-only disk makes the guest's blk check fail; the judgement above must reject it.
#[test]
fn a_failing_guest_check_fails_the_judgement() {
    let dir = linux_guest();
    let pattern = manifest_value(&dir, "blk_pattern_sha256");
    let run = boot_linux(true);
    run.said("linux", "guest: FAIL virtio-blk write")
        .said("linux", "guest: FAILED 1 checks")
        .not_saw("guest: ALL PASS");
    assert!(
        linux_passed(&run, &pattern).is_err(),
        "a failing guest check must fail the Linux test"
    );
}

/// The boot-protocol loader against the real guest kernel (the unit tests use synthetic
/// headers): the values docs/vm-platform.md relies on.
#[test]
fn the_loader_accepts_the_real_guest_kernel() {
    let image = std::fs::read(linux_guest().join("bzImage")).expect("read bzImage");
    let h = vm::linux::parse_header(&image).expect("a valid bzImage");
    assert!(
        h.version >= vm::linux::MIN_PROTOCOL,
        "boot protocol {:#x}",
        h.version
    );
    assert_ne!(h.xloadflags & vm::linux::XLF_KERNEL_64, 0, "64-bit entry");
    assert_eq!(
        h.pref_address, 0x100_0000,
        "docs/vm-platform.md: loads at 16 MiB"
    );
    assert!(
        h.init_size > 0 && h.init_size < 64 << 20,
        "init_size {:#x}",
        h.init_size
    );
}

/// A Linux VM that reboots through the ACPI reset register at the end of its init.
fn reboot_conf(extra: &str) -> String {
    format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
         memory = \"64M\"\n{extra}cmdline = \"console=ttyS0,115200 quiet panic=-1 reboot=acpi \
         io_delay=none nolapic tsc=reliable no_timer_check bulkhead.checks=none bulkhead.end=reboot\"\n"
    )
}

/// A guest's `reboot` (issue 12): Linux with `reboot=acpi` writes the FADT's reset value to
/// port 0xCF9; the VM ends with its report and, by default (`on-reboot = "restart"`), starts
/// again from its configuration. The guest reboots at the end of each boot; after its second
/// reboot the third boot's first console line opens the shell, whose `stop` ends the run.
#[test]
fn a_guest_reboot_starts_the_vm_again() {
    use bulkhead_boot::serial_input::Feed;
    use bulkhead_boot::transcript::kernel_messages;
    let dir = linux_guest();
    let files = [dir.join("bzImage"), dir.join("initramfs.cpio.lz4")];
    let (_tmp, image) = bundle_files(&reboot_conf(""), &files);
    let input = vec![
        Feed::new(
            "vm linux: rebooting (on-reboot = \"restart\"; reboot 2 of this run)",
            "",
        ),
        Feed::new("[linux] ", "\x01"),
        Feed::new("bulkhead> ", "stop linux\r"),
    ];
    let run = bulkhead_tests::boot_with_input(&image, "corei7_skylake_x", input, 400);
    run.exited(0, "ok");
    let t = &run.outcome.transcript;
    let messages: Vec<&str> = kernel_messages(t).collect();
    let count = |prefix: &str| messages.iter().filter(|m| m.starts_with(prefix)).count();
    assert_eq!(
        count("vm linux: stopped: guest reset (ACPI reset register) (RIP "),
        2,
        "{t}"
    );
    for n in 1..=2 {
        let line = format!("vm linux: rebooting (on-reboot = \"restart\"; reboot {n} of this run)");
        assert_eq!(count(&line), 1, "{line:?}: {t}");
    }
    assert_eq!(
        count("vm linux: restarting from its configuration (1 vCPU(s); rebuilt in "),
        2,
        "{t}"
    );
    assert_eq!(
        count("vm linux: stopped: stopped by the operator (shell `stop`) (RIP "),
        1,
        "{t}"
    );
    assert_eq!(count("vm linux: stopped: "), 3, "{t}");
    // Each of the first two boots ran its init to the end and asked Linux to restart.
    let guest = |needle: &str| {
        bulkhead_boot::transcript::guest_lines(t, "linux")
            .filter(|l| l.trim().ends_with(needle))
            .count()
    };
    assert_eq!(guest("guest: ALL PASS"), 2, "{t}");
    // Linux's own line before it writes the reset register (kernel/reboot.c).
    assert_eq!(guest("] reboot: Restarting system"), 2, "{t}");
    assert!(!t.contains("[shell] vm linux: started again"), "{t}");
}

/// With `on-reboot = "stop"` the guest's reboot ends its VM, and with it the run.
#[test]
fn on_reboot_stop_ends_the_vm_at_its_reboot() {
    let dir = linux_guest();
    let files = [dir.join("bzImage"), dir.join("initramfs.cpio.lz4")];
    let (_tmp, image) = bundle_files(&reboot_conf("on-reboot = \"stop\"\n"), &files);
    let run = boot_image(&image, "corei7_skylake_x", 300);
    run.exited(0, "ok")
        .said("linux", "guest: ALL PASS")
        .saw("vm linux: stopped: guest reset (ACPI reset register) (RIP ")
        .not_saw("vm linux: rebooting")
        .not_saw("restarting from its configuration");
}
