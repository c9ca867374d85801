//! The benchmark figures, parsed from the runs' serial transcripts (host-tested in
//! `tests.rs`): exit round trips, virtio, Linux, console, sizes.

use super::{Figure, SEC_BLK, SEC_EXITS, SEC_LINUX, SEC_NET, SEC_SIZE};

// ---- transcript parsing ---------------------------------------------------------------------

/// The first line of `text` containing `needle`.
pub fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(needle))
}

/// The value of the whitespace-separated `key=value` token in `line`.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// [`field`] as a number.
pub fn num(line: &str, key: &str) -> Option<f64> {
    field(line, key)?.parse().ok()
}

/// The selftest guest's `BENCH <name> median=<cycles> ...` median.
pub fn selftest_median(transcript: &str, name: &str) -> Option<f64> {
    num(
        line_with(transcript, &format!("guest selftest: BENCH {name} "))?,
        "median",
    )
}

/// The ticks of a console timestamp `[<vm> +<ticks>] ...` on `line`.
pub fn console_ticks(line: &str) -> Option<u64> {
    let start = line.find(" +")? + 2;
    line[start..].split(']').next()?.trim().parse().ok()
}

/// The ticks of the console line of `vm` containing `needle`.
pub fn ticks_of(transcript: &str, vm: &str, needle: &str) -> Option<u64> {
    let prefix = format!("[{vm} +");
    transcript
        .lines()
        .filter(|l| l.contains(&prefix))
        .find(|l| l.contains(needle))
        .and_then(console_ticks)
}

/// The Linux kernel's printk timestamp (`[    0.559125] text`) of the first message
/// containing `needle`, in seconds. Also finds it after a Bulkhead console prefix.
pub fn printk_seconds(transcript: &str, needle: &str) -> Option<f64> {
    let line = line_with(transcript, needle)?;
    line.split('[')
        .skip(1)
        .filter_map(|part| part.split(']').next())
        .map(str::trim)
        .filter(|t| t.contains('.'))
        .find_map(|t| t.parse().ok())
}

/// The per-VM memory report: (total, VMCS and bitmaps, EPT, device state) in bytes.
pub fn memory_beyond_ram(transcript: &str, vm: &str) -> Option<[u64; 4]> {
    let key = format!("vm {vm}: memory beyond guest RAM: ");
    let line = line_with(transcript, &key)?;
    let rest = &line[line.find(&key)? + key.len()..];
    let total = rest.split_whitespace().next()?.parse().ok()?;
    let grab = |label: &str| -> Option<u64> {
        let i = rest.find(label)? + label.len();
        rest[i..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some([
        total,
        grab("VMCS and bitmaps")?,
        grab("EPT")?,
        grab("device state")?,
    ])
}

/// The sizes of an ELF64 file's PT_LOAD segments: (count, bytes in the file, bytes in memory).
pub fn elf_load_sizes(elf: &[u8]) -> Option<(u64, u64, u64)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    // ELF64 (class 2), little-endian (data 1).
    if elf.get(0..4)? != b"\x7fELF" || elf.get(4)? != &2 || elf.get(5)? != &1 {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    let (mut count, mut file, mut mem) = (0, 0, 0);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? == 1 {
            count += 1;
            file += u64_at(ph + 0x20)?;
            mem += u64_at(ph + 0x28)?;
        }
    }
    Some((count, file, mem))
}

// ---- figures from transcripts ---------------------------------------------------------------

const SELFTEST_METHOD: &str = "selftest guest under Bulkhead: RDTSC before and after, median of 64 samples after a warm-up (includes the RDTSC pair)";

/// The exit round-trip figures from the selftest run.
pub fn selftest_figures(transcript: &str) -> Vec<Figure> {
    let rows: [(&str, &str, &str); 9] = [
        ("cpuid", "CPUID", ""),
        ("hypercall-nop", "no-op hypercall (VMCALL NOP)", ""),
        (
            "multicall-1",
            "multicall, per operation, n = 1",
            "; call time / n",
        ),
        (
            "multicall-8",
            "multicall, per operation, n = 8",
            "; call time / n",
        ),
        (
            "multicall-32",
            "multicall, per operation, n = 32",
            "; call time / n",
        ),
        ("pio-in", "port I/O in (unclaimed port 0x2F0)", ""),
        ("pio-out", "port I/O out (COM1 scratch 0x3FF)", ""),
        ("mmio-read", "MMIO read (virtio MagicValue)", ""),
        ("mmio-write", "MMIO write (virtio QueueSel)", ""),
    ];
    let mut figures: Vec<Figure> = rows
        .iter()
        .map(|(key, label, extra)| {
            Figure::new(
                SEC_EXITS,
                label,
                selftest_median(transcript, key),
                "TSC ticks",
                &format!("{SELFTEST_METHOD}{extra}"),
            )
        })
        .collect();
    // The console byte: the hypervisor's handling time per UART THR write (issue 9: at most
    // about 400), and the guest-side round trip.
    let console = line_with(transcript, "guest selftest: BENCH console-byte ");
    figures.push(Figure::new(
        SEC_EXITS,
        "console byte (UART THR write)",
        console.and_then(|l| num(l, "handler")),
        "TSC ticks",
        "selftest guest: 2,048 OUTs to COM1's THR (0x3F8, 64 lines of 32 bytes); EXIT_STATS I/O ticks delta / I/O exit count delta: the hypervisor's handling per exit, VM exit to the next entry's bookkeeping",
    ));
    figures.push(Figure::new(
        SEC_EXITS,
        "console byte (UART THR write), guest round trip",
        console.and_then(|l| num(l, "median")),
        "TSC ticks",
        &format!("{SELFTEST_METHOD}; per byte of a 32-byte line"),
    ));
    // Switching the vCPU's extended state (XSAVE of every offered component + XRSTOR and
    // the XCR0 loads, or FXSAVE/FXRSTOR without XSAVE) once per VM switch (issue 13).
    let xstate = line_with(transcript, "vm selftest: extended state: ");
    figures.push(Figure::new(
        SEC_EXITS,
        "extended state (XSAVE) switch, per VM switch",
        xstate.and_then(|l| num(l, "avg")),
        "TSC ticks",
        "the selftest VM's report: ticks of XSETBV + XSAVE after each run and XSETBV + XRSTOR + XSETBV before it, divided by the number of runs (kernel/src/vmm/xsave.rs)",
    ));
    figures
}

/// The virtio-blk and virtio-net figures from the virtio-client run.
pub fn virtio_figures(transcript: &str) -> Vec<Figure> {
    let mut out = Vec::new();
    let mib = 1024.0 * 1024.0;
    for (key, label) in [
        ("blk-read-4k", "sequential read, 4 KiB requests"),
        ("blk-write-4k", "sequential write, 4 KiB requests"),
        ("blk-read-64k", "sequential read, 64 KiB requests"),
        ("blk-write-64k", "sequential write, 64 KiB requests"),
    ] {
        let line = line_with(transcript, &format!("guest virtio-client: BENCH {key} "));
        let get = |k: &str| line.and_then(|l| num(l, k));
        let bytes = get("bytes").filter(|b| *b > 0.0);
        let per_mib = |k: &str| Some(get(k)? * mib / bytes?);
        let how = "virtio-client guest (virtio-drivers 0.13), 16 MiB pass, 16 requests in flight";
        out.push(Figure::new(
            SEC_BLK,
            &format!("{label}: exits per MiB"),
            per_mib("exits"),
            "exits/MiB",
            &format!("{how}; EXIT_STATS hypercall before and after (all exit reasons, interrupt handling included)"),
        ));
        out.push(Figure::new(
            SEC_BLK,
            &format!("{label}: interrupts per MiB"),
            per_mib("interrupts"),
            "interrupts/MiB",
            &format!("{how}; device interrupts injected and taken by the guest's IRQ 5 handler (interrupt window opened after each completion batch)"),
        ));
        out.push(Figure::new(
            SEC_BLK,
            &format!("{label}: throughput"),
            get("kib_per_s").map(|k| k / 1024.0),
            "MiB/s (virtual)",
            &format!("{how}; bytes / RDTSC ticks of the pass, at the TSC rate of CPUID leaf 0x16"),
        ));
    }
    let ping = line_with(transcript, "guest virtio-client: BENCH ping ");
    let get = |k: &str| ping.and_then(|l| num(l, k));
    // Each echo is two packets: the request sent and the reply received.
    let packets = get("n").filter(|n| *n > 0.0).map(|n| 2.0 * n);
    let per_k = |k: &str| Some(get(k)? * 1000.0 / packets?);
    let how = "virtio-client guest: 1,000 ICMP echoes to the gateway, one at a time, polled; 2 packets per echo";
    out.push(Figure::new(
        SEC_NET,
        "exits per 1,000 packets",
        per_k("exits"),
        "exits",
        &format!("{how}; EXIT_STATS hypercall before and after"),
    ));
    out.push(Figure::new(
        SEC_NET,
        "interrupts per 1,000 packets",
        per_k("interrupts"),
        "interrupts",
        &format!("{how}; device interrupts injected and taken by the IRQ 6 handler (interrupt window opened after each echo)"),
    ));
    out.push(Figure::new(
        SEC_NET,
        "ping round trip (median)",
        get("median"),
        "TSC ticks",
        &format!("{how}; RDTSC from before the request is queued to the reply's arrival, median of 1,000"),
    ));
    let mhz = line_with(transcript, "guest virtio-client: ram=").and_then(|l| num(l, "tsc-mhz"));
    out.push(Figure::new(
        SEC_NET,
        "ping round trip (median), in virtual time",
        get("median")
            .zip(mhz.filter(|m| *m > 0.0))
            .map(|(t, m)| t / m),
        "µs (virtual)",
        "the median above / the TSC rate of CPUID leaf 0x16 (tsc-mhz)",
    ));
    out
}

/// Walls and transcripts of the two Linux runs.
#[derive(Debug, Default, Clone)]
pub struct LinuxRuns<'a> {
    pub bulkhead: &'a str,
    pub bulkhead_wall: Option<f64>,
    pub bare: &'a str,
    pub bare_wall: Option<f64>,
}

/// The Linux guest figures: under Bulkhead, bare, and their ratios.
pub fn linux_figures(r: &LinuxRuns<'_>) -> Vec<Figure> {
    let mut out = Vec::new();
    let s = SEC_LINUX;
    let bk = r.bulkhead;
    let tick_method =
        "hypervisor console timestamp (TSC ticks since the first VM entry) of the guest's line";
    let up = ticks_of(bk, "linux", "guest: userspace up");
    out.push(Figure::new(
        s,
        "Bulkhead: VM entry to userspace",
        up.map(|t| t as f64),
        "TSC ticks",
        &format!("{tick_method} `guest: userspace up`"),
    ));
    // The workload's ticks: from the console line before `workload sha256` (the guest prints
    // nothing in between) to that line.
    let sha_ticks = workload_ticks(bk, "guest: workload sha256");
    out.push(Figure::new(
        s,
        "Bulkhead: CPU-bound workload (sha256 of 2 MiB), hypervisor ticks",
        sha_ticks.map(|t| t as f64),
        "TSC ticks",
        "difference of the hypervisor console timestamps of the guest line before the workload and of `guest: workload sha256`",
    ));
    let uptime =
        |t: &str| line_with(t, "guest: userspace up uptime=").and_then(|l| num(l, "uptime"));
    let sha_ms = |t: &str| line_with(t, "guest: workload sha256 ").and_then(|l| num(l, "ms"));
    let spawn_ms = |t: &str| line_with(t, "guest: workload spawn ").and_then(|l| num(l, "ms"));
    let run_init = |t: &str| printk_seconds(t, "Run /init as init process");
    type Probe = fn(&str) -> Option<f64>;
    let probes: [(&str, &str, &str, Probe); 4] = [
        (
            "kernel start to /init (printk clock)",
            "s (guest)",
            "the guest kernel's printk timestamp of `Run /init as init process` (sched_clock)",
            run_init,
        ),
        (
            "uptime at userspace",
            "s (guest)",
            "/proc/uptime (jiffies, 10 ms) printed by /init in `guest: userspace up`",
            uptime,
        ),
        (
            "CPU-bound workload (sha256 of 2 MiB)",
            "ms (guest)",
            "/init's `workload sha256 ms=` (/proc/uptime before and after, 10 ms resolution)",
            sha_ms,
        ),
        (
            "fork+exec workload (20 × /bin/true)",
            "ms (guest)",
            "/init's `workload spawn ms=` (/proc/uptime before and after, 10 ms resolution)",
            spawn_ms,
        ),
    ];
    for (label, unit, method, probe) in probes {
        let a = probe(r.bulkhead);
        let b = probe(r.bare);
        out.push(Figure::new(
            s,
            &format!("Bulkhead: {label}"),
            a,
            unit,
            method,
        ));
        out.push(Figure::new(
            s,
            &format!("bare Bochs: {label}"),
            b,
            unit,
            method,
        ));
        out.push(Figure::new(
            s,
            &format!("ratio Bulkhead / bare: {label}"),
            a.zip(b.filter(|b| *b > 0.0)).map(|(a, b)| a / b),
            "×",
            "the two figures above, divided",
        ));
    }
    // The guests' own idea of the TSC rate: the clocks above are only comparable when the
    // two runs agree on it (and on the PIT they calibrate against).
    let tsc_mhz = |t: &str| {
        // "tsc: Detected <f> MHz TSC" after calibration, "... MHz processor" with
        // tsc_early_khz (the value given on the command line).
        let l = t.lines().find(|l| {
            l.contains("tsc: Detected ")
                && (l.ends_with(" MHz TSC") || l.ends_with(" MHz processor"))
        })?;
        let i = l.find("tsc: Detected ")? + "tsc: Detected ".len();
        let rest = &l[i..];
        rest.strip_suffix(" MHz TSC")
            .or_else(|| rest.strip_suffix(" MHz processor"))?
            .trim()
            .parse()
            .ok()
    };
    for (who, t) in [("Bulkhead", r.bulkhead), ("bare Bochs", r.bare)] {
        out.push(Figure::new(
            s,
            &format!("{who}: guest kernel's TSC frequency"),
            tsc_mhz(t),
            "MHz",
            "the guest kernel's `tsc: Detected <f> MHz TSC|processor` (both runs pass tsc_early_khz = the Bochs TSC rate)",
        ));
    }
    out.push(Figure::new(
        s,
        "Bulkhead: host wall time of the run",
        r.bulkhead_wall,
        "s (host)",
        "host clock around the Bochs process (emulator speed, not guest time; informative)",
    ));
    out.push(Figure::new(
        s,
        "bare Bochs: host wall time of the run",
        r.bare_wall,
        "s (host)",
        "host clock around the Bochs process (emulator speed, not guest time; informative)",
    ));
    out
}

/// Ticks from the guest console line before the one containing `needle` to that line.
pub fn workload_ticks(transcript: &str, needle: &str) -> Option<u64> {
    let stamped: Vec<(&str, u64)> = transcript
        .lines()
        .filter(|l| l.starts_with("[linux +"))
        .filter_map(|l| Some((l, console_ticks(l)?)))
        .collect();
    let i = stamped.iter().position(|(l, _)| l.contains(needle))?;
    let end = stamped[i].1;
    let start = stamped[..i]
        .iter()
        .rev()
        .find(|(l, _)| l.contains("guest: "))?
        .1;
    end.checked_sub(start)
}

/// Image sizes and the per-VM memory figures.
pub fn size_figures(
    kernel_elf: Option<&[u8]>,
    bios_bytes: Option<u64>,
    uefi_bytes: Option<u64>,
    vms: &[(&str, &str, &str)],
) -> Vec<Figure> {
    let s = SEC_SIZE;
    let mut out = Vec::new();
    let loads = kernel_elf.and_then(elf_load_sizes);
    out.push(Figure::new(
        s,
        "hypervisor kernel ELF, file size",
        kernel_elf.map(|e| e.len() as f64),
        "bytes",
        "size of target/x86_64-unknown-none/release/bulkhead (with symbols)",
    ));
    out.push(Figure::new(
        s,
        "hypervisor kernel, loaded segments in memory",
        loads.map(|(_, _, m)| m as f64),
        "bytes",
        "sum of p_memsz of the ELF's PT_LOAD program headers (code, data, bss)",
    ));
    out.push(Figure::new(
        s,
        "hypervisor kernel, loaded segments in the file",
        loads.map(|(_, f, _)| f as f64),
        "bytes",
        "sum of p_filesz of the ELF's PT_LOAD program headers",
    ));
    out.push(Figure::new(
        s,
        "BIOS disk image (no bundle)",
        bios_bytes.map(|b| b as f64),
        "bytes",
        "size of bulkhead-bios.img from the bootloader crate, kernel only",
    ));
    out.push(Figure::new(
        s,
        "UEFI disk image (no bundle)",
        uefi_bytes.map(|b| b as f64),
        "bytes",
        "size of bulkhead-uefi.img from the bootloader crate, kernel only",
    ));
    for (transcript, vm, desc) in vms {
        let m = memory_beyond_ram(transcript, vm);
        let method =
            "the hypervisor's allocation count at VM creation (`memory beyond guest RAM` line)";
        for (i, part) in ["total", "VMCS and bitmaps", "EPT", "device state"]
            .iter()
            .enumerate()
        {
            out.push(Figure::new(
                s,
                &format!("memory beyond guest RAM, {desc}: {part}"),
                m.map(|m| m[i] as f64),
                "bytes",
                method,
            ));
        }
    }
    out
}

fn vm_exit_count(transcript: &str, vm: &str, reason: &str) -> Option<f64> {
    let prefix = format!("vm {vm}: exits: {reason} ");
    crate::transcript::kernel_messages(transcript)
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| num(rest, "count"))
}

/// Linux's boot exits with its console on COM1 and on virtio-console (issue 9: the UART costs
/// an exit per byte, virtio-console a few per line).
pub fn console_figures(ttys0: &str, hvc0: &str) -> Vec<Figure> {
    let how = "Linux test guest, boot to poweroff with the workload check, exits from the VM's statistics";
    let mut out = Vec::new();
    for (console, t) in [("ttyS0", ttys0), ("hvc0", hvc0)] {
        out.push(Figure::new(
            SEC_LINUX,
            &format!("boot exits, console={console}"),
            vm_exit_count(t, "linux", "total"),
            "exits",
            how,
        ));
        out.push(Figure::new(
            SEC_LINUX,
            &format!("boot I/O exits, console={console}"),
            vm_exit_count(t, "linux", "I/O instruction"),
            "exits",
            how,
        ));
    }
    out
}
