//! `selftest`: the Bulkhead test guest that exercises every exit handler (CPUID, VMCALL, I/O,
//! MSRs, control registers, VMX instructions, exceptions, EPT-backed MMIO, RDTSC) and prints
//! one `guest selftest: PASS <check>` / `FAIL <check>: <detail>` line per check, `BENCH`
//! lines with exit round-trip costs, and `DONE passed=<n> failed=<m>`. See
//! tests/guest/README.md for the list of checks.

#![no_std]
#![no_main]
// Checks return `Result<(), Detail>`, the failure text formatted into a fixed 240-byte buffer:
// there is no heap to box it in, and the copy costs nothing next to a VM exit.
#![allow(clippy::result_large_err)]

use guest_rt::cpu::{self, CpuidResult};
use guest_rt::hv::{self, Entry};
use guest_rt::report::{check, Detail};
use guest_rt::trap::{self, Fault, GP, UD};
use guest_rt::{detail, probe, say};

guest_rt::entry!(main);

/// An unclaimed I/O port (reads all-ones, writes ignored).
const UNCLAIMED_PORT: u16 = 0x2F0;
/// The UART's scratch register (harmless to write).
const UART_SCRATCH: u16 = 0x3FF;
/// COM1's transmit holding register.
const UART_THR: u16 = 0x3F8;
/// Not an architectural MSR and outside the hypervisor range 0x4000_0000..0x4000_00FF.
const UNKNOWN_MSR: u32 = 0x2F0;
/// The virtio-mmio region the hypervisor maps for selftest VMs.
const VIRTIO_MMIO: u64 = 0xD000_0000;
const VIRTIO_MAGIC: u32 = 0x7472_6976;
const VIRTIO_QUEUE_SEL: u64 = 0x30;

type Check = Result<(), Detail>;

fn main(ram_size: u64, vm_index: u64) -> ! {
    trap::init();
    guest_rt::report::start("selftest");
    say!("ram={ram_size:#x} vm-index={vm_index}");

    check("cpuid-hypervisor-bit", cpuid_hypervisor_bit());
    check("cpuid-vmx-hidden", cpuid_vmx_hidden());
    check("cpuid-signature", cpuid_signature());
    check("abi-version", abi_version());
    check("hypercall-nop", hypercall_nop());
    check("hypercall-console", hypercall_console());
    check("hypercall-unknown", hypercall_unknown());
    check("hypercall-bad-pointer", hypercall_bad_pointer(ram_size));
    check("multicall-8", multicall_8());
    check("exit-stats", exit_stats());
    check("io-unclaimed", io_unclaimed());
    check("msr-roundtrip", msr_roundtrip());
    check("msr-unknown-gp", msr_unknown_gp());
    check("msr-feature-control", msr_feature_control());
    check("cr4-vmxe-gp", cr4_vmxe_gp());
    check("cr-read", cr_read());
    check("vmx-ud", vmx_ud());
    check("int3-reflected", int3_reflected());
    check("mmio-virtio-magic", mmio_virtio_magic());
    check("guest-crate", guest_crate());
    check("rdtsc-monotonic", rdtsc_monotonic());

    benchmarks();
    guest_rt::report::done()
}

/// `Err` unless `got == want`.
fn expect_eq(what: &str, got: i64, want: i64) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(detail!("{what} returned {got} ({got:#x}), expected {want}"))
    }
}

/// Unwraps a hypercall's result, turning an exception into a failure detail.
fn hcall(what: &str, r: Result<i64, Fault>) -> Result<i64, Detail> {
    r.map_err(|f| detail!("{what} raised {f}"))
}

/// `Err` unless `r` is the exception `vector`.
fn expect_fault(what: &str, r: Option<Fault>, vector: u8) -> Check {
    match r {
        Some(f) if f.vector == vector => Ok(()),
        Some(f) => Err(detail!(
            "{what} raised {f}, expected {}",
            trap::vector_name(vector)
        )),
        None => Err(detail!(
            "{what} completed, expected {}",
            trap::vector_name(vector)
        )),
    }
}

fn cpuid_hypervisor_bit() -> Check {
    let r = cpu::cpuid(1, 0);
    if r.ecx & (1 << 31) != 0 {
        Ok(())
    } else {
        Err(detail!("CPUID.1:ECX = {:#010x}, bit 31 clear", r.ecx))
    }
}

fn cpuid_vmx_hidden() -> Check {
    let r = cpu::cpuid(1, 0);
    if r.ecx & (1 << 5) == 0 {
        Ok(())
    } else {
        Err(detail!("CPUID.1:ECX = {:#010x}, VMX bit 5 set", r.ecx))
    }
}

fn cpuid_signature() -> Check {
    let CpuidResult { eax, ebx, ecx, edx } = cpu::cpuid(hv::CPUID_BASE, 0);
    if [ebx, ecx, edx] != hv::SIGNATURE {
        return Err(detail!(
            "leaf 0x40000000 EBX,ECX,EDX = {ebx:#010x},{ecx:#010x},{edx:#010x}, expected \"BulkheadHV\\0\\0\""
        ));
    }
    if eax < hv::CPUID_INFO {
        return Err(detail!(
            "leaf 0x40000000 EAX (max leaf) = {eax:#x} < 0x40000001"
        ));
    }
    Ok(())
}

fn abi_version() -> Check {
    let leaf = cpu::cpuid(hv::CPUID_INFO, 0).eax;
    if u64::from(leaf) != hv::ABI_VERSION {
        return Err(detail!("CPUID.40000001h:EAX = {leaf:#x}, expected 0x10000"));
    }
    let v = hcall("VERSION", hv::call0(hv::VERSION, [0; 4]))?;
    expect_eq("VERSION", v, hv::ABI_VERSION as i64)?;
    // The tagged form (docs/hypercall-abi.md §9.2) is Bulkhead's in every VM.
    let tagged = hypercall::route::tagged(hv::VERSION);
    let v = hcall("tagged VERSION", hv::call0(tagged, [0; 4]))?;
    expect_eq(
        "tagged VERSION (RAX = 0x4248_0000)",
        v,
        hv::ABI_VERSION as i64,
    )
}

fn hypercall_nop() -> Check {
    let r = hcall("NOP", hv::call0(hv::NOP, [0; 4]))?;
    expect_eq("NOP", r, 0)
}

fn hypercall_console() -> Check {
    let mut line = guest_rt::report::Line::guest(format_args!("hello via hypercall"));
    let bytes = line.finish();
    let r = hcall("CONSOLE_WRITE", hv::console_write(bytes))?;
    expect_eq("CONSOLE_WRITE", r, bytes.len() as i64)
}

/// The published guest-side crate (`hypercall::guest`) against the real hypervisor:
/// discovery, VERSION, NOP, CONSOLE_WRITE and a 4-entry MULTICALL.
fn guest_crate() -> Check {
    use hypercall::guest;
    let v = guest::detect().ok_or_else(|| detail!("hypercall::guest::detect found no Bulkhead"))?;
    if v != hypercall::Version::CURRENT {
        return Err(detail!("detect() reported {v}"));
    }
    let v = guest::version().map_err(|e| detail!("version(): {e}"))?;
    if v != hypercall::Version::CURRENT {
        return Err(detail!("version() returned {v}"));
    }
    guest::nop().map_err(|e| detail!("nop(): {e}"))?;
    let msg = b"guest selftest: hello via the hypercall crate\n";
    let n = guest::console_write(msg).map_err(|e| detail!("console_write(): {e}"))?;
    if n != msg.len() {
        return Err(detail!("console_write() wrote {n} of {} bytes", msg.len()));
    }
    let mut batch = hypercall::multicall::Batch::new();
    for _ in 0..4 {
        batch
            .push_nop()
            .map_err(|_| detail!("Batch::push_nop failed"))?;
    }
    // SAFETY: test guests run on identity-mapped memory, so the batch's virtual address is
    // its guest-physical address, as multicall requires.
    let ran = unsafe { guest::multicall(&mut batch) }.map_err(|e| detail!("multicall(): {e}"))?;
    if ran != 4 || batch.results().any(|r| r != Ok(0)) {
        return Err(detail!("multicall ran {ran} of 4 NOPs"));
    }
    Ok(())
}

fn hypercall_unknown() -> Check {
    let r = hcall("call 0xdead", hv::call0(0xdead, [0; 4]))?;
    expect_eq("call 0xdead", r, -hv::UNKNOWN_CALL)?;
    let tagged = hypercall::route::tagged(0xdead);
    let r = hcall("tagged call 0xdead", hv::call0(tagged, [0; 4]))?;
    expect_eq("tagged call 0xdead", r, -hv::UNKNOWN_CALL)
}

fn hypercall_bad_pointer(ram_size: u64) -> Check {
    // SAFETY: the buffer lies outside guest RAM: the hypervisor must refuse it (BadAddress).
    let r = hcall("CONSOLE_WRITE", unsafe {
        hv::call(hv::CONSOLE_WRITE, [ram_size, 16, 0, 0])
    })?;
    expect_eq("CONSOLE_WRITE(gpa = RAM size, 16)", r, -hv::BAD_ADDRESS)
}

fn multicall_8() -> Check {
    let mut batch = [Entry::new(hv::NOP, 0, 0); 8];
    let r = hcall("MULTICALL", hv::multicall(&mut batch))?;
    expect_eq("MULTICALL of 8 NOPs", r, 8)?;
    for (i, e) in batch.iter().enumerate() {
        if e.result != 0 {
            return Err(detail!("entry {i} result {}, expected 0", e.result));
        }
    }
    Ok(())
}

fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn rd64(b: &[u8], off: usize) -> u64 {
    u64::from(rd32(b, off)) | u64::from(rd32(b, off + 4)) << 32
}

#[repr(C, align(8))]
struct StatsBuf([u8; 4096]);

fn exit_stats() -> Check {
    // Every CPUID this guest executed so far exited; the hypervisor's count can only be higher.
    let cpuids = cpu::cpuid_count();
    let mut buf = StatsBuf([0; 4096]);
    let n = hcall("EXIT_STATS", hv::exit_stats(&mut buf.0))?;
    if !(24..=4096).contains(&n) {
        return Err(detail!("EXIT_STATS returned {n}"));
    }
    let b = &buf.0[..n as usize];
    let (layout, count, entry_size, header_size) =
        (rd32(b, 0), rd32(b, 4), rd32(b, 8), rd32(b, 12));
    if layout != 1 || entry_size < 24 || header_size < 24 {
        return Err(detail!(
            "header layout={layout} entry_size={entry_size} header_size={header_size}"
        ));
    }
    let need = u64::from(header_size) + u64::from(count) * u64::from(entry_size);
    if need != n as u64 {
        return Err(detail!(
            "returned {n} bytes, header says {header_size} + {count} * {entry_size}"
        ));
    }
    let (mut cpuid_exits, mut vmcall_exits) = (0, 0);
    for i in 0..count as usize {
        let e = header_size as usize + i * entry_size as usize;
        match rd32(b, e) {
            hv::EXIT_CPUID => cpuid_exits = rd64(b, e + 8),
            hv::EXIT_VMCALL => vmcall_exits = rd64(b, e + 8),
            _ => {}
        }
    }
    if cpuid_exits < cpuids {
        return Err(detail!("CPUID exits {cpuid_exits} < {cpuids} executed"));
    }
    if vmcall_exits < 1 {
        return Err(detail!("VMCALL exits {vmcall_exits}, expected >= 1"));
    }
    say!(
        "exit-stats: entries={count} tick_hz={} cpuid-exits={cpuid_exits} (executed {cpuids}) vmcall-exits={vmcall_exits}",
        rd64(b, 16)
    );
    Ok(())
}

fn io_unclaimed() -> Check {
    let b = cpu::inb(UNCLAIMED_PORT);
    if b != 0xFF {
        return Err(detail!("inb({UNCLAIMED_PORT:#x}) = {b:#x}, expected 0xff"));
    }
    let l = cpu::inl(UNCLAIMED_PORT);
    if l != 0xFFFF_FFFF {
        return Err(detail!(
            "inl({UNCLAIMED_PORT:#x}) = {l:#x}, expected 0xffffffff"
        ));
    }
    Ok(())
}

fn msr_roundtrip() -> Check {
    const CASES: [(&str, u32, u64); 3] = [
        ("LSTAR", cpu::IA32_LSTAR, 0xFFFF_8000_1234_5000),
        (
            "KERNEL_GS_BASE",
            cpu::IA32_KERNEL_GS_BASE,
            0x0000_7FFF_DEAD_B000,
        ),
        ("TSC_AUX", cpu::IA32_TSC_AUX, 0x1234_5678),
    ];
    for (name, msr, value) in CASES {
        let old = cpu::rdmsr(msr).map_err(|f| detail!("rdmsr {name} raised {f}"))?;
        // SAFETY: none of these MSRs is in use by this guest (no SYSCALL, SWAPGS or RDTSCP).
        unsafe { cpu::wrmsr(msr, value) }.map_err(|f| detail!("wrmsr {name} raised {f}"))?;
        let got = cpu::rdmsr(msr).map_err(|f| detail!("rdmsr {name} raised {f}"))?;
        // SAFETY: restores the value read above.
        unsafe { cpu::wrmsr(msr, old) }.map_err(|f| detail!("restoring {name} raised {f}"))?;
        if got != value {
            return Err(detail!("{name}: wrote {value:#x}, read {got:#x}"));
        }
    }
    Ok(())
}

fn msr_unknown_gp() -> Check {
    expect_fault("rdmsr 0x2f0", cpu::rdmsr(UNKNOWN_MSR).err(), GP)?;
    // SAFETY: the MSR does not exist; the write must raise #GP and change nothing.
    let w = unsafe { cpu::wrmsr(UNKNOWN_MSR, 0) };
    expect_fault("wrmsr 0x2f0", w.err(), GP)
}

fn msr_feature_control() -> Check {
    let v = cpu::rdmsr(cpu::IA32_FEATURE_CONTROL)
        .map_err(|f| detail!("rdmsr IA32_FEATURE_CONTROL raised {f}"))?;
    if v & 1 == 0 || v & 0b110 != 0 {
        return Err(detail!(
            "IA32_FEATURE_CONTROL = {v:#x}, expected locked (bit 0) with VMX off (bits 1-2 clear)"
        ));
    }
    Ok(())
}

fn cr4_vmxe_gp() -> Check {
    let before = cpu::read_cr4();
    // SAFETY: setting VMXE is refused with #GP; had it succeeded, VMXE alone changes nothing
    // else in the guest.
    let r = unsafe { cpu::write_cr4(before | cpu::CR4_VMXE) };
    let after = cpu::read_cr4();
    expect_fault("mov cr4 (VMXE set)", r.err(), GP)?;
    if after != before {
        return Err(detail!("CR4 changed from {before:#x} to {after:#x}"));
    }
    Ok(())
}

fn cr_read() -> Check {
    let (cr0, cr4) = (cpu::read_cr0(), cpu::read_cr4());
    if cr0 & (cpu::CR0_PE | cpu::CR0_PG) != cpu::CR0_PE | cpu::CR0_PG {
        return Err(detail!("CR0 = {cr0:#x}, expected PE and PG"));
    }
    if cr4 & cpu::CR4_PAE == 0 || cr4 & cpu::CR4_VMXE != 0 {
        return Err(detail!("CR4 = {cr4:#x}, expected PAE set and VMXE clear"));
    }
    Ok(())
}

/// A would-be VMXON region (never used: VMXON must raise #UD).
#[repr(C, align(4096))]
struct Page([u8; 4096]);
static VMXON_REGION: Page = Page([0; 4096]);

fn vmx_ud() -> Check {
    let region = core::ptr::addr_of!(VMXON_REGION) as u64;
    // SAFETY: VMXON reads the 8-byte operand (the region's address, on our stack); it must
    // raise #UD in a guest, and the probe catches it.
    let r = unsafe { probe!("vmxon qword ptr [{p}]", p = in(reg) &region, options(nostack)) };
    expect_fault("vmxon", r, UD)?;
    // SAFETY: VMREAD must raise #UD in a guest; the output register holds garbage then.
    let r = unsafe {
        probe!("vmread {v}, {f}", v = out(reg) _, f = in(reg) 0x681e_u64, options(nostack))
    };
    expect_fault("vmread", r, UD)
}

fn int3_reflected() -> Check {
    let (before, _) = trap::breakpoints();
    let next: u64;
    // SAFETY: INT3 is reflected to our #BP handler, which counts it and returns to the next
    // instruction.
    unsafe {
        core::arch::asm!("lea {n}, [rip + 3f]", "int3", "3:", n = out(reg) next, options(nostack))
    };
    let (after, rip) = trap::breakpoints();
    if after != before + 1 {
        return Err(detail!(
            "#BP handler ran {} times, expected 1",
            after - before
        ));
    }
    if rip != next {
        return Err(detail!(
            "#BP frame RIP {rip:#x}, expected {next:#x} (after INT3)"
        ));
    }
    Ok(())
}

fn mmio_virtio_magic() -> Check {
    // SAFETY: the hypervisor maps the virtio-mmio region for selftest VMs; reads of these
    // registers have no side effects.
    let (magic, version, device) = unsafe {
        (
            cpu::mmio_read32(VIRTIO_MMIO),
            cpu::mmio_read32(VIRTIO_MMIO + 4),
            cpu::mmio_read32(VIRTIO_MMIO + 8),
        )
    };
    if magic != VIRTIO_MAGIC || version != 2 || device != 2 {
        return Err(detail!(
            "magic={magic:#x} version={version} device-id={device}, expected 0x74726976 2 2"
        ));
    }
    Ok(())
}

fn rdtsc_monotonic() -> Check {
    let t0 = cpu::rdtsc();
    let t1 = cpu::rdtsc();
    let _ = cpu::cpuid(0, 0);
    let t2 = cpu::rdtsc();
    if t0 < t1 && t1 < t2 {
        Ok(())
    } else {
        Err(detail!(
            "TSC reads {t0} {t1} {t2} (across a CPUID) do not increase"
        ))
    }
}

const BENCH_N: usize = 64;

/// Prints `BENCH <name> median=<cycles> min=<cycles> n=<iterations>` for `op`, timed with
/// RDTSC `BENCH_N` times; each sample is divided by `per` (operations per call of `op`).
fn bench(name: &str, per: u64, mut op: impl FnMut()) {
    let mut samples = [0u64; BENCH_N];
    op(); // warm up
    for s in samples.iter_mut() {
        let t0 = cpu::rdtsc();
        op();
        *s = cpu::rdtsc().wrapping_sub(t0) / per;
    }
    // Insertion sort: 64 samples, and much smaller code than `sort_unstable`.
    for i in 1..BENCH_N {
        let mut j = i;
        while j > 0 && samples[j - 1] > samples[j] {
            samples.swap(j - 1, j);
            j -= 1;
        }
    }
    say!(
        "BENCH {name} median={} min={} n={BENCH_N}",
        samples[BENCH_N / 2],
        samples[0]
    );
}

/// The (count, ticks) of the I/O-instruction entry of this VM's exit statistics.
fn io_exit_stats() -> Option<(u64, u64)> {
    let mut buf = StatsBuf([0; 4096]);
    let n = hv::exit_stats(&mut buf.0).ok()? as usize;
    let b = buf.0.get(..n)?;
    let (count, entry_size, header_size) = (rd32(b, 4), rd32(b, 8), rd32(b, 12));
    (0..count as usize)
        .map(|i| header_size as usize + i * entry_size as usize)
        .find(|&e| rd32(b, e) == hv::EXIT_IO)
        .map(|e| (rd64(b, e + 8), rd64(b, e + 16)))
}

/// `BENCH console-byte`: bytes written straight to COM1's THR (no LSR polling), 64 lines of
/// 32 bytes. `median`/`min` are the guest-side round trip per byte; `handler` is the
/// hypervisor's own handling time per I/O exit over the run (EXIT_STATS ticks delta / count
/// delta), the figure the console path is judged by.
fn bench_console_byte() {
    const LINE: &[u8] = b"console bench 0123456789abcdef\r\n";
    let before = io_exit_stats();
    let mut samples = [0u64; BENCH_N];
    for s in samples.iter_mut() {
        let t0 = cpu::rdtsc();
        for &b in LINE {
            cpu::outb(UART_THR, b);
        }
        *s = cpu::rdtsc().wrapping_sub(t0) / LINE.len() as u64;
    }
    let after = io_exit_stats();
    samples.sort_unstable();
    let handler = match (before, after) {
        (Some((c0, t0)), Some((c1, t1))) if c1 > c0 => (t1 - t0) / (c1 - c0),
        _ => 0,
    };
    say!(
        "BENCH console-byte median={} min={} handler={handler} n={}",
        samples[BENCH_N / 2],
        samples[0],
        BENCH_N * LINE.len()
    );
}

fn bench_multicall<const N: usize>(name: &str) {
    let mut batch = [Entry::new(hv::NOP, 0, 0); N];
    bench(name, N as u64, || {
        let _ = hv::multicall(&mut batch);
    });
}

fn benchmarks() {
    bench("cpuid", 1, || {
        let _ = cpu::cpuid(0, 0);
    });
    bench("hypercall-nop", 1, || {
        let _ = hv::call0(hv::NOP, [0; 4]);
    });
    bench_multicall::<1>("multicall-1");
    bench_multicall::<8>("multicall-8");
    bench_multicall::<32>("multicall-32");
    bench("pio-in", 1, || {
        let _ = cpu::inb(UNCLAIMED_PORT);
    });
    bench("pio-out", 1, || cpu::outb(UART_SCRATCH, 0x5A));
    bench_console_byte();
    bench("mmio-read", 1, || {
        // SAFETY: MagicValue is a read-only register of the mapped virtio region.
        let _ = unsafe { cpu::mmio_read32(VIRTIO_MMIO) };
    });
    bench("mmio-write", 1, || {
        // SAFETY: selecting queue 0 (QueueSel) changes no device state that matters here.
        unsafe { cpu::mmio_write32(VIRTIO_MMIO + VIRTIO_QUEUE_SEL, 0) };
    });
}
