//! A Linux guest snapshotted after boot and restored (issue 18): the Linux test guest runs
//! its virtio-blk and virtio-net checks and waits in its busybox shell; `snapshot linux s1`
//! takes it whole while it runs on. The running guest then leaves a mark in its /tmp and
//! powers off; `restore s1 linux` brings back the guest of the snapshot's moment, which does
//! not boot again and has no mark, reads the pattern its check wrote to its RAM disk back
//! from the device (O_DIRECT: the restored disk, not a cache), pings its gateway through the
//! restored virtio-net queues, sleeps on its restored timers and powers off again. A
//! `forever.elf` VM keeps running beside it throughout. The same with a two-vCPU guest on
//! two emulated CPUs: both vCPUs park, and after the restore the second one runs a job again.

use bulkhead_boot::serial_input::Feed;
use bulkhead_tests::{boot_with_input, boot_with_input_smp, bundle_files, linux_guest};

const PROMPT: &str = "bulkhead> ";
const ATTACHED: &str = "[shell] attached to vm linux (Ctrl-A detaches)\r\n";
const POWERED_OFF: &str = "vm linux: stopped: guest powered off (ACPI S5)";

const CONF: &str = "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
    memory = \"64M\"\ncmdline = \"console=ttyS0,115200 quiet panic=-1 reboot=t io_delay=none nolapic \
    tsc=reliable no_timer_check bulkhead.checks=blk,net bulkhead.ping=2 bulkhead.end=shell\"\n\
    [[vm.linux.virtio-blk]]\nsize = \"2M\"\n\
    [[vm.linux.virtio-net]]\nmac = \"52:54:00:12:34:56\"\n\
    [vm.keep]\nkind = \"elf64\"\nimage = \"forever.elf\"\nmemory = \"16M\"\n";

#[test]
fn a_restored_linux_guest_continues_with_its_disk_and_network() {
    let dir = linux_guest();
    let files = [
        dir.join("bzImage"),
        dir.join("initramfs.cpio.lz4"),
        bulkhead_boot::image::guest_dir().join("forever.elf"),
    ];
    let (_tmp, image) = bundle_files(CONF, &files);
    // Command lines, the hypervisor's and the guest's, start with Ctrl-U (tests/tests/
    // snapshot.rs says why: a repeated byte of `console linux` may reach the guest's tty).
    let input = vec![
        Feed::new("[linux] guest: shell (exit to power off)", "\x01"),
        Feed::new(PROMPT, "\x15snapshot linux s1\r"),
        Feed::new("[shell] snapshot s1 of vm linux: ", "\x15console linux\r"),
        Feed::new(ATTACHED, "\x15touch /tmp/after; exit\r"),
        Feed::new(POWERED_OFF, "\x01"),
        Feed::new(PROMPT, "\x15restore s1 linux\r"),
        Feed::new(
            "[shell] vm linux: started again from a snapshot",
            "\x15console linux\r",
        ),
        Feed::new(
            ATTACHED,
            "\x15dd if=/dev/vda bs=64k skip=16 count=16 iflag=direct 2>/dev/null|sha256sum\r",
        ),
        Feed::new("  -\r\n", "\x15ping -c 2 -W 2 192.0.2.1|grep received\r"),
        Feed::new(
            "packets received",
            "\x15ls /tmp/after; sleep 1; echo slept-$((6*7))\r",
        ),
        Feed::new("[linux] slept-42\r\n", "\x15exit\r"),
        Feed::new(POWERED_OFF, "\x01"),
        Feed::new(PROMPT, "\x15stop keep\r"),
    ];
    let run = boot_with_input(&image, "corei7_skylake_x", input, 900);
    let t = &run.outcome.transcript;
    run.exited(0, "ok");
    let lines: Vec<&str> = t.lines().map(|l| l.trim_end_matches('\r')).collect();
    let guest = |needle: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("[linux] "))
            .filter(|l| l.contains(needle))
            .collect()
    };
    // Booted once: the restored guest continued in its shell.
    assert_eq!(guest("guest: userspace up").len(), 1, "{t}");
    let pattern = guest("guest: PASS virtio-blk pattern sha256=");
    assert_eq!(pattern.len(), 1, "{t}");
    let sha = pattern[0].rsplit('=').next().unwrap();
    // The disk as it was at the snapshot, read from the restored device.
    assert!(
        lines.contains(&format!("[linux] {sha}  -").as_str()),
        "the restored disk does not hold the pattern {sha}: {t}"
    );
    // The restored network card still reaches the gateway.
    assert!(
        lines.contains(&"[linux] 2 packets transmitted, 2 packets received, 0% packet loss"),
        "{t}"
    );
    // What the guest did after the snapshot is not in the restored one.
    assert!(
        lines.contains(&"[linux] ls: /tmp/after: No such file or directory"),
        "{t}"
    );
    assert!(lines.contains(&"[linux] slept-42"), "{t}");
    let report = lines
        .iter()
        .find(|l| l.starts_with("[shell] snapshot s1 of vm linux: "))
        .unwrap_or_else(|| panic!("no snapshot report: {t}"));
    eprintln!("{report}");
    // Taken in steps of at most one timeslice (2,000,000 ticks by default) each, so the VM
    // beside it waited for no longer than a slice at a time; a step ends at the first chunk
    // of pages (128 scanned or 16 copied, about 300,000 ticks in Bochs) past the budget.
    let taken = t
        .lines()
        .find_map(|l| {
            l.split_once("INFO  vm linux: snapshot s1 taken (")
                .map(|x| x.1)
        })
        .unwrap_or_else(|| panic!("no snapshot log line: {t}"));
    eprintln!("{taken}");
    let steps: u64 = taken
        .split("; ")
        .nth(1)
        .and_then(|r| r.split(" step(s)").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step count: {taken}"));
    let longest: u64 = taken
        .split("the longest ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no longest step: {taken}"));
    assert!(steps >= 2, "{taken}");
    assert!(longest <= 2_400_000, "{taken}");
    assert!(report.contains(": 1 vCPU(s), 64 MiB RAM ("), "{report}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == "[shell] vm linux: started again from a snapshot (1 vCPU(s))")
            .count(),
        1,
        "{t}"
    );
    assert_eq!(t.matches(POWERED_OFF).count(), 2, "{t}");
    assert_eq!(t.matches("vm keep: first VM entry").count(), 1, "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

const SMP_CONF: &str = "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
    memory = \"64M\"\nvcpus = 2\ncmdline = \"console=ttyS0,115200 quiet panic=-1 reboot=t io_delay=none \
    tsc=reliable bulkhead.checks=none bulkhead.cpus=2 bulkhead.end=shell\"\n\
    [vm.keep]\nkind = \"elf64\"\nimage = \"forever.elf\"\nmemory = \"16M\"\n";

#[test]
fn a_restored_two_vcpu_linux_guest_runs_on_both_vcpus() {
    let dir = linux_guest();
    let files = [
        dir.join("bzImage"),
        dir.join("initramfs.cpio.lz4"),
        bulkhead_boot::image::guest_dir().join("forever.elf"),
    ];
    let (_tmp, image) = bundle_files(SMP_CONF, &files);
    let input = vec![
        Feed::new("[linux] guest: shell (exit to power off)", "\x01"),
        Feed::new(PROMPT, "\x15snapshot linux s2\r"),
        Feed::new("[shell] snapshot s2 of vm linux: ", "\x15console linux\r"),
        Feed::new(ATTACHED, "\x15exit\r"),
        Feed::new(POWERED_OFF, "\x01"),
        Feed::new(PROMPT, "\x15restore s2 linux\r"),
        Feed::new(
            "[shell] vm linux: started again from a snapshot",
            "\x15console linux\r",
        ),
        Feed::new(ATTACHED, "\x15cat /sys/devices/system/cpu/online\r"),
        Feed::new(
            "[linux] 0-1\r\n",
            "\x15taskset -c 1 sh -c 'sleep 1; echo cpu1-$((20+22))'\r",
        ),
        Feed::new("[linux] cpu1-42\r\n", "\x15exit\r"),
        Feed::new(POWERED_OFF, "\x01"),
        Feed::new(PROMPT, "\x15stop keep\r"),
    ];
    let run = boot_with_input_smp(&image, "corei7_skylake_x", 2, input, 1200);
    let t = &run.outcome.transcript;
    run.exited(0, "ok");
    let lines: Vec<&str> = t.lines().map(|l| l.trim_end_matches('\r')).collect();
    let report = lines
        .iter()
        .find(|l| l.starts_with("[shell] snapshot s2 of vm linux: "))
        .unwrap_or_else(|| panic!("no snapshot report: {t}"));
    eprintln!("{report}");
    assert!(report.contains(": 2 vCPU(s), 64 MiB RAM ("), "{report}");
    assert!(lines.contains(&"[linux] 0-1"), "{t}");
    assert!(lines.contains(&"[linux] cpu1-42"), "{t}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("[linux] ") && l.contains("guest: userspace up"))
            .count(),
        1,
        "{t}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == "[shell] vm linux: started again from a snapshot (2 vCPU(s))")
            .count(),
        1,
        "{t}"
    );
    assert_eq!(t.matches(POWERED_OFF).count(), 2, "{t}");
}
