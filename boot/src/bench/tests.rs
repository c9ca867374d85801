use super::*;

const SELFTEST: &str = "\
[         1234] INFO  vm selftest: memory beyond guest RAM: 61440 bytes (VMCS and bitmaps 16384, EPT 40960, device state 4096)
guest selftest: BENCH cpuid median=1020 min=1000 n=64
guest selftest: BENCH hypercall-nop median=1500 min=1400 n=64
guest selftest: BENCH multicall-1 median=1700 min=1600 n=64
guest selftest: BENCH multicall-8 median=400 min=390 n=64
guest selftest: BENCH multicall-32 median=250 min=240 n=64
guest selftest: BENCH pio-in median=1800 min=1700 n=64
guest selftest: BENCH pio-out median=1900 min=1800 n=64
guest selftest: BENCH mmio-read median=3000 min=2900 n=64
guest selftest: BENCH mmio-write median=3100 min=3000 n=64
guest selftest: BENCH console-byte median=1022 min=1022 handler=741 n=2048
[         1300] INFO  vm selftest: extended state: xsave xcr0=0x7 switches=12 ticks=3720 avg=310
";

#[test]
fn console_figures_read_the_linux_vms_statistics() {
    let uart = "[   1] INFO  vm linux: exits: I/O instruction        count=18197 ticks=1 avg=1\n\
                [   2] INFO  vm linux: exits: total                  count=21745 ticks=9\n";
    let hvc = "[   1] INFO  vm linux: exits: I/O instruction        count=900 ticks=1 avg=1\n\
               [forge] vm linux: exits: total count=1\n\
               [   2] INFO  vm linux: exits: total                  count=3500 ticks=9\n";
    let f = console_figures(uart, hvc);
    let values: Vec<_> = f.iter().map(|f| f.value).collect();
    assert_eq!(
        values,
        [Some(21745.0), Some(18197.0), Some(3500.0), Some(900.0)]
    );
    assert!(console_figures("", "")
        .iter()
        .all(|f| f.status == Status::Missing));
}

#[test]
fn selftest_lines_give_every_exit_figure() {
    let f = selftest_figures(SELFTEST);
    assert_eq!(f.len(), 12);
    assert_eq!(f[11].value, Some(310.0), "XSAVE switch cost");
    assert!(f.iter().all(|f| f.status == Status::Measured));
    assert_eq!(f[9].name, "console byte (UART THR write)");
    assert_eq!((f[9].value, f[10].value), (Some(741.0), Some(1022.0)));
    assert_eq!(f[0].value, Some(1020.0));
    assert_eq!(f[3].name, "multicall, per operation, n = 8");
    assert_eq!(f[3].value, Some(400.0));
    assert_eq!(f[8].value, Some(3100.0));
    // A renamed line shows up as missing, not as a silent zero.
    let f = selftest_figures(&SELFTEST.replace("BENCH cpuid", "BENCH cpu-id"));
    assert_eq!(f[0].status, Status::Missing);
    assert_eq!(f[0].value, None);
}

#[test]
fn memory_line_is_parsed() {
    assert_eq!(
        memory_beyond_ram(SELFTEST, "selftest"),
        Some([61440, 16384, 40960, 4096])
    );
    assert_eq!(memory_beyond_ram(SELFTEST, "linux"), None);
}

const VIRTIO: &str = "\
guest virtio-client: ram=0x2000000 vm-index=0 tsc-mhz=50
guest virtio-client: BENCH ping n=1000 median=25000 min=20000 total=30000000 exits=12000 mmio_exits=8000 io_exits=2000 interrupts=1000
guest virtio-client: BENCH blk-write-4k bytes=16777216 ticks=100000000 requests=4096 inflight=16 exits=16384 mmio_exits=9000 kib_per_s=8192 interrupts=512
guest virtio-client: BENCH blk-read-4k bytes=16777216 ticks=100000000 requests=4096 inflight=16 exits=8192 mmio_exits=9000 kib_per_s=10240 interrupts=256
guest virtio-client: BENCH blk-write-64k bytes=16777216 ticks=100000000 requests=256 inflight=16 exits=1600 mmio_exits=900 kib_per_s=20480 interrupts=32
guest virtio-client: BENCH blk-read-64k bytes=16777216 ticks=100000000 requests=256 inflight=16 exits=1600 mmio_exits=900 kib_per_s=20480 interrupts=16
";

#[test]
fn virtio_lines_give_per_mib_and_per_packet_figures() {
    let f = virtio_figures(VIRTIO);
    let get = |n: &str| f.iter().find(|f| f.name == n).and_then(|f| f.value);
    assert_eq!(
        get("sequential write, 4 KiB requests: exits per MiB"),
        Some(1024.0)
    );
    assert_eq!(
        get("sequential write, 4 KiB requests: interrupts per MiB"),
        Some(32.0)
    );
    assert_eq!(
        get("sequential read, 4 KiB requests: throughput"),
        Some(10.0)
    );
    assert_eq!(
        get("sequential read, 64 KiB requests: interrupts per MiB"),
        Some(1.0)
    );
    assert_eq!(get("exits per 1,000 packets"), Some(6000.0));
    assert_eq!(get("interrupts per 1,000 packets"), Some(500.0));
    assert_eq!(get("ping round trip (median)"), Some(25000.0));
    assert_eq!(
        get("ping round trip (median), in virtual time"),
        Some(500.0)
    );
    assert!(f.iter().all(|f| f.status == Status::Measured), "{f:#?}");
    // Without `interrupts=` (the old guest) those rows are missing, the rest still there.
    let old = VIRTIO.replace(" interrupts=", " irqs=");
    let f = virtio_figures(&old);
    let missing: Vec<_> = f.iter().filter(|f| f.status == Status::Missing).collect();
    assert_eq!(missing.len(), 5);
    assert!(missing.iter().all(|f| f.name.contains("interrupts")));
}

const BULKHEAD_LINUX: &str = "\
[    100] INFO  vm linux: memory beyond guest RAM: 90112 bytes (VMCS and bitmaps 16384, EPT 73728, device state 0)
[linux +1000] [    0.000000] Linux version 6.1.192
[linux +1500] [    0.000000] tsc: Detected 50.000 MHz processor
[linux +2000] [    0.000000] tsc: Detected 50.001 MHz TSC
[linux +40000000] [    0.701000] Run /init as init process
[linux +41000000] guest: userspace up uptime=0.72
[linux +45000000] guest: workload sha256 bytes=2097152 ms=80
[linux +46000000] guest: workload spawn count=20 ms=20
[linux +46500000] guest: checks done uptime=0.93
";
const BARE_LINUX: &str = "\
[    0.000000] Linux version 6.1.192
[    0.000000] tsc: Detected 3499.912 MHz TSC
[    0.559125] Run /init as init process
guest: userspace up uptime=0.57
guest: workload sha256 bytes=2097152 ms=40
guest: workload spawn count=20 ms=10
";

#[test]
fn linux_lines_give_ticks_guest_times_and_ratios() {
    assert_eq!(
        console_ticks("[linux +41000000] guest: userspace up"),
        Some(41_000_000)
    );
    assert_eq!(printk_seconds(BARE_LINUX, "Run /init"), Some(0.559125));
    assert_eq!(printk_seconds(BULKHEAD_LINUX, "Run /init"), Some(0.701));
    assert_eq!(
        workload_ticks(BULKHEAD_LINUX, "guest: workload sha256"),
        Some(4_000_000)
    );
    let f = linux_figures(&LinuxRuns {
        bulkhead: BULKHEAD_LINUX,
        bulkhead_wall: Some(30.0),
        bare: BARE_LINUX,
        bare_wall: Some(5.0),
    });
    let get = |n: &str| f.iter().find(|f| f.name == n).and_then(|f| f.value);
    assert_eq!(get("Bulkhead: VM entry to userspace"), Some(41_000_000.0));
    assert_eq!(
        get("Bulkhead: CPU-bound workload (sha256 of 2 MiB), hypervisor ticks"),
        Some(4_000_000.0)
    );
    assert_eq!(get("bare Bochs: uptime at userspace"), Some(0.57));
    assert_eq!(
        get("bare Bochs: guest kernel's TSC frequency"),
        Some(3499.912)
    );
    assert_eq!(
        get("ratio Bulkhead / bare: CPU-bound workload (sha256 of 2 MiB)"),
        Some(2.0)
    );
    assert_eq!(
        get("ratio Bulkhead / bare: fork+exec workload (20 × /bin/true)"),
        Some(2.0)
    );
    assert!(f.iter().all(|f| f.status == Status::Measured), "{f:#?}");
    let mut names: Vec<_> = f.iter().map(|f| &f.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), f.len(), "figure names are unique");
    let f = linux_figures(&LinuxRuns::default());
    assert!(f.iter().all(|f| f.status == Status::Missing));
}

#[test]
fn elf_program_headers_are_summed() {
    // A minimal ELF64 header with two program headers: PT_LOAD and PT_NOTE.
    let mut e = vec![0u8; 64 + 2 * 56];
    e[0..4].copy_from_slice(b"\x7fELF");
    e[4] = 2;
    e[5] = 1;
    e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    e[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
    let ph = 64;
    e[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    e[ph + 0x20..ph + 0x28].copy_from_slice(&1000u64.to_le_bytes());
    e[ph + 0x28..ph + 0x30].copy_from_slice(&5000u64.to_le_bytes());
    let ph = 64 + 56;
    e[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
    e[ph + 0x20..ph + 0x28].copy_from_slice(&77u64.to_le_bytes());
    assert_eq!(elf_load_sizes(&e), Some((1, 1000, 5000)));
    assert_eq!(elf_load_sizes(b"not an elf"), None);
}

#[test]
fn report_round_trips_through_json_and_renders_markdown() {
    let mut figures = selftest_figures(SELFTEST);
    figures.extend(virtio_figures("").into_iter().map(Figure::skipped));
    figures.extend(size_figures(
        Some(b"x"),
        Some(10),
        None,
        &[(SELFTEST, "selftest", "t")],
    ));
    let r = Report {
        date: "2026-11-22".into(),
        bochs_cpu: "corei7_skylake_x".into(),
        bochs_version: "2.7+dfsg-1".into(),
        smoke: true,
        figures,
    };
    let back = Report::from_json(&r.to_json()).expect("parses");
    assert_eq!(back, r);
    let md = r.markdown();
    assert!(md.contains("| Metric | Value | Unit | Method |"));
    assert!(md.contains("| **Exit round trips** | | | |"));
    assert!(md.contains("| CPUID | 1,020 | TSC ticks |"));
    assert!(md.contains("| exits per 1,000 packets | skipped |"));
    assert!(md.contains("| UEFI disk image (no bundle) | missing |"));
    assert_eq!(r.missing().len(), 3, "the two ELF rows and the UEFI image");
    assert!(Report::from_json("{}").is_err());
    assert!(Report::from_json(&r.to_json().replace("\"measured\"", "\"skipped\"")).is_err());
}

#[test]
fn values_and_dates_format() {
    assert_eq!(format_value(1234567.0), "1,234,567");
    assert_eq!(format_value(12.3456), "12.35");
    assert_eq!(format_value(0.5678), "0.568");
    assert_eq!(format_value(1234.56), "1234.6");
    assert_eq!(civil_date(0), "1970-01-01");
    assert_eq!(civil_date(20_414), "2025-11-22");
}

// ---- snapshot rows ----------------------------------------------------------------------------

/// An excerpt of a `bench --only snapshot` transcript (2026-12-04), CRs and the terminal's
/// redrawn guest prompt line as they came.
const SNAPSHOT_RUN: &str = "\
[     458559612] INFO  vm linux: first VM entry\r\n\
[     460563274] INFO  vm keep: first VM entry\r\n\
[keep] guest ?: forever: running\r\n\
[linux +185040591] guest: userspace up uptime=2.54\r\n\
[linux +754012387] guest: shell (exit to power off)\r\n\
\r\n\
[shell] bulkhead shell: `help` lists the commands, Ctrl-A closes it\r\n\
bulkhead> snapshot linux s1\r\n\
[shell] pausing vm linux for snapshot s1\r\n\
bulkhead> \r\n\
[    1267348729] INFO  vm linux: snapshot s1 taken (27891377 bytes, paused 51538925 ticks; 13 step(s), the longest 2217126 ticks)\r\n\
[shell] snapshot s1 of vm linux: 1 vCPU(s), 64 MiB RAM (6294 pages not zero), 27237 KiB held, paused 1030730 us\r\n\
bulkhead> console linux\r\n\
[shell] attached to vm linux (Ctrl-A detaches)\r\n\
[    1273958152] INFO  vm linux: stopped: guest powered off (ACPI S5) (RIP 0xffffffff81193d95) after 815398527 ticks\r\n\
[shell] restoring vm linux from snapshot s1\r\n\
bulkhead> \r\n\
[    1298366582] INFO  vm linux: Linux command line: console=ttyS0,115200 quiet panic=-1 reboot=t io_delay=none nolapic tsc=reliable no_timer_check bulkhead.checks=blk,net bulkhead.ping=2 bulkhead.end=shell\r\n\
[    1311331109] INFO  vm linux: restarting from a snapshot (1 vCPU(s); rebuilt in 21366078 ticks)\r\n\
[shell] vm linux: started again from a snapshot (1 vCPU(s))\r\n\
bulkhead> console linux\r\n\
[shell] attached to vm linux (Ctrl-A detaches)\r\n\
[    1313378626] INFO  vm linux: first VM entry\r\n\
[linux +28191] \r\n\
[linux +426885] ^@sh: can't access tty; job control turned off\r\n\
[linux] / # \x08 \x08\x08 \x08\x08 \x08\x08 \x08\x08 \x08\x08 \x08 +3883643] / # echo restored-$((6*7))\r\n\
[linux +4025034] restored-42\r\n\
[    1320911665] INFO  vm linux: stopped: guest powered off (ACPI S5) (RIP 0xffffffff81193d95) after 7533026 ticks\r\n";

#[test]
fn snapshot_rows_come_from_the_hypervisor_and_shell_lines() {
    use super::snapshot::{parse, snapshot_figures};
    let r = parse(SNAPSHOT_RUN);
    assert_eq!(r.pause_ticks, Ok(51_538_925.0));
    assert_eq!(r.pause_us, Ok(1_030_730.0));
    assert_eq!(r.steps, Ok(13.0));
    assert_eq!(r.longest_step_ticks, Ok(2_217_126.0));
    assert_eq!(r.bytes, Ok(27_891_377.0));
    assert_eq!(r.kib_held, Ok(27_237.0));
    assert_eq!(r.pages_not_zero, Ok(6294.0));
    assert_eq!(r.rebuild_ticks, Ok(21_366_078.0));
    // The restored VM's first entry (its console's zero), 2,047,517 ticks after the restart
    // line; `restored-42` 4,025,034 ticks after that.
    assert_eq!(r.restore_to_entry_ticks, Ok(2_047_517.0));
    assert_eq!(r.restore_to_output_ticks, Ok(2_047_517.0 + 4_025_034.0));
    // The first boot's stamp, not a later line's.
    assert_eq!(r.boot_to_userspace_ticks, Ok(185_040_591.0));
    assert!(r.errors().is_empty(), "{:?}", r.errors());
    let f = snapshot_figures(SNAPSHOT_RUN);
    assert_eq!(f.len(), 11);
    assert!(f.iter().all(|x| x.status == Status::Measured), "{f:?}");
    assert!(f.iter().all(|x| x.section == super::snapshot::SEC_SNAPSHOT));
    assert!(snapshot_figures("")
        .iter()
        .all(|x| x.status == Status::Missing));
}

#[test]
fn snapshot_rows_match_only_anchored_lines() {
    use super::snapshot::parse;
    // A guest line that quotes the hypervisor's is not the hypervisor's line.
    let info = "[    1267348729] INFO  vm linux: snapshot s1 taken (";
    let forged = SNAPSHOT_RUN.replace(
        info,
        "[linux +5] [    1267348729] INFO  vm linux: snapshot s1 taken (",
    );
    let r = parse(&forged);
    for v in [&r.pause_ticks, &r.steps, &r.longest_step_ticks, &r.bytes] {
        let e = v.as_ref().unwrap_err();
        assert!(e.contains("vm linux: snapshot s1 taken ("), "{e}");
    }
    assert_eq!(r.kib_held, Ok(27_237.0), "the shell line still counts");
    assert_eq!(r.errors().len(), 4, "{:?}", r.errors());
    // The shell line must start its line.
    let r = parse(&SNAPSHOT_RUN.replace("[shell] snapshot s1 of", "x [shell] snapshot s1 of"));
    assert!(r
        .pages_not_zero
        .unwrap_err()
        .contains("[shell] snapshot s1 of vm linux: "));
    // Only the command's output counts, never its echo; without the restored VM's entry line
    // its console stamps have no zero.
    let r = parse(&SNAPSHOT_RUN.replace("] restored-42\r", "] restored-41\r"));
    assert!(r
        .restore_to_output_ticks
        .unwrap_err()
        .contains("restored-42"));
    assert_eq!(r.restore_to_entry_ticks, Ok(2_047_517.0));
    let no_entry = SNAPSHOT_RUN.replace("[    1313378626] INFO  vm linux: first VM entry\r\n", "");
    let r = parse(&no_entry);
    assert!(r
        .restore_to_output_ticks
        .unwrap_err()
        .contains("first VM entry"));
    assert!(r.restore_to_entry_ticks.is_err());
    assert_eq!(r.boot_to_userspace_ticks, Ok(185_040_591.0));
}

#[test]
fn snapshot_feeds_fire_on_the_transcript_in_order() {
    use crate::serial_input::FeedCursor;
    let feeds = super::snapshot::feeds();
    let mut cursor = FeedCursor::default();
    let mut typed = Vec::new();
    while let Some(bytes) = cursor.due(SNAPSHOT_RUN.as_bytes(), &feeds) {
        typed.push(String::from_utf8_lossy(bytes).into_owned());
    }
    // All but the last (`stop keep` at the prompt after the second power-off, not in the
    // excerpt), each hypervisor command after Ctrl-U.
    assert_eq!(typed.len(), feeds.len() - 1, "{typed:?}");
    assert_eq!(typed[1], "\x15snapshot linux s1\r");
    assert_eq!(typed[5], "\x15restore s1 linux\r");
    assert_eq!(typed[7], "\x15echo restored-$((6*7))\r");
    assert_eq!(
        feeds.last().map(|f| f.bytes.as_slice()),
        Some(&b"\x15stop keep\r"[..])
    );
}
