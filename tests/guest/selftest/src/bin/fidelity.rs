//! `fidelity`: a guest cannot tell Bulkhead's vCPU from a CPU without the features it hides
//! (issue 13). VM index 0 runs the checks; VM index 1 is the partner whose extended state must
//! not leak into VM 0 (`xsave-state-survives-switches`) and which then puts its IDT in a
//! virtio-mmio window and raises `INT 0x10`, which must stop it (no store silently skipped).
//!
//! Checks (one PASS/FAIL line each, then `DONE passed=N failed=M`):
//! - `rf-injected-gp`: the #GP Bulkhead injects for MOV CR4.VMXE pushes RFLAGS.RF = 1;
//! - `cpuid-invpcid`, `cpuid-rdtscp`, `cpuid-rdpid`, `cpuid-cr4-bits`: an instruction or CR4
//!   bit works exactly when CPUID offers its feature (#UD / #GP otherwise);
//! - `invd-completes`: INVD is a no-op, the VM keeps running;
//! - `mca-zero-banks`, `tsc-adjust`, `tsc-write-moves-adjust`, `misc-enable`: the MSRs;
//! - `cr0-64bit-rules`: clearing PG, or PG and NE, or PE in 64-bit mode is #GP, CR0 unchanged;
//! - `rep-outsb` (the line itself is printed by REP OUTSB), `rep-insb`, `rep-insw-df`,
//!   `insd-addr32`: string I/O;
//! - `xsave-...`: XSETBV validation and AVX state across VM switches when XSAVE is offered,
//!   `xsave-hidden` (CR4.OSXSAVE #GP, XSETBV #UD) when it is not.

#![no_std]
#![no_main]

use guest_rt::report::{self, fail, pass, say};
use guest_rt::trap::{self, GP, UD};
use guest_rt::{cpu, hv};

guest_rt::entry!(main);

const RFLAGS_RF: u64 = 1 << 16;
const CR4_VMXE: u64 = 1 << 13;
const CR4_OSXSAVE: u64 = 1 << 18;

fn vec(f: Option<trap::Fault>) -> Option<u8> {
    f.map(|f| f.vector)
}

fn has(leaf: u32, sub: u32, reg: usize, bit: u32) -> bool {
    let max = if leaf >= 0x8000_0000 {
        cpu::cpuid(0x8000_0000, 0).eax
    } else {
        cpu::cpuid(0, 0).eax
    };
    if leaf > max {
        return false;
    }
    let r = cpu::cpuid(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx][reg] & (1 << bit) != 0
}

fn read_cr4() -> u64 {
    cpu::read_cr4()
}

/// MOV to CR4; the fault, if any.
fn write_cr4(v: u64) -> Option<trap::Fault> {
    // SAFETY: the callers set only bits without effect on this identity-mapped ring-0 guest
    // (or bits that must fault); a fault is recovered by the probe.
    unsafe { guest_rt::probe!("mov cr4, {v}", v = in(reg) v) }
}

fn rf_injected_gp() {
    let f = write_cr4(read_cr4() | CR4_VMXE);
    let rflags = trap::last_fault_rflags();
    if vec(f) == Some(GP) && rflags & RFLAGS_RF != 0 {
        pass("rf-injected-gp");
    } else {
        fail(
            "rf-injected-gp",
            format_args!("MOV CR4.VMXE gave {f:?}, pushed RFLAGS {rflags:#x}"),
        );
    }
}

/// An instruction must work iff CPUID offers it, else #UD.
fn consistent(name: &str, offered: bool, fault: Option<trap::Fault>) {
    let ok = if offered {
        fault.is_none()
    } else {
        vec(fault) == Some(UD)
    };
    if ok {
        say(format_args!(
            "{name}: {}",
            if offered { "offered" } else { "hidden" }
        ));
        pass(name);
    } else {
        fail(
            name,
            format_args!("CPUID offers it: {offered}, executing it gave {fault:?}"),
        );
    }
}

/// A CR4 bit and its CPUID location (leaf, subleaf, register index, bit).
type Cr4Bit = (&'static str, u64, (u32, u32, usize, u32));

fn cpuid_controls() {
    let desc = [0u64; 2];
    // SAFETY: INVPCID type 2 (all contexts, globals included) only flushes TLBs.
    let f = unsafe {
        guest_rt::probe!("invpcid {t}, [{d}]", t = in(reg) 2u64, d = in(reg) desc.as_ptr())
    };
    consistent("cpuid-invpcid", has(7, 0, 1, 10), f);
    // SAFETY: RDTSCP reads the TSC and TSC_AUX.
    let f = unsafe { guest_rt::probe!("rdtscp", out("eax") _, out("edx") _, out("ecx") _) };
    consistent("cpuid-rdtscp", has(0x8000_0001, 0, 3, 27), f);
    // SAFETY: RDPID reads TSC_AUX.
    let f = unsafe { guest_rt::probe!("rdpid {r}", r = out(reg) _) };
    consistent("cpuid-rdpid", has(7, 0, 2, 22), f);

    // CR4 bits (SDM Vol. 3A §2.5): settable exactly when CPUID offers the feature.
    let bits: [Cr4Bit; 9] = [
        ("MCE", 1 << 6, (1, 0, 3, 7)),
        ("UMIP", 1 << 11, (7, 0, 2, 2)),
        ("SMXE", 1 << 14, (1, 0, 2, 6)),
        ("FSGSBASE", 1 << 16, (7, 0, 1, 0)),
        ("PCIDE", 1 << 17, (1, 0, 2, 17)),
        ("OSXSAVE", CR4_OSXSAVE, (1, 0, 2, 26)),
        ("PKE", 1 << 22, (7, 0, 2, 3)),
        ("CET", 1 << 23, (7, 0, 2, 7)),
        ("PKS", 1 << 24, (7, 0, 2, 31)),
    ];
    let saved = read_cr4();
    let mut bad = None;
    let mut offered = 0;
    for (name, bit, (leaf, sub, reg, b)) in bits {
        let on = has(leaf, sub, reg, b);
        // CET needs CR0.WP (set) and PKS nothing else; PCIDE needs CR3[11:0] = 0 (it is).
        let f = write_cr4(saved | bit);
        let now = read_cr4();
        let _ = write_cr4(saved);
        let ok = if on {
            f.is_none() && now & bit != 0
        } else {
            vec(f) == Some(GP) && now == saved
        };
        offered += u32::from(on);
        if !ok && bad.is_none() {
            bad = Some((name, on, f));
        }
    }
    match bad {
        None => {
            say(format_args!("cpuid-cr4-bits: {offered} of 9 offered"));
            pass("cpuid-cr4-bits");
        }
        Some((name, on, f)) => fail(
            "cpuid-cr4-bits",
            format_args!("CR4.{name}: CPUID offers it: {on}, setting it gave {f:?}"),
        ),
    }
}

fn invd() {
    // SAFETY: INVD exits (SDM Vol. 3C §26.1.2); Bulkhead completes it as a no-op.
    let f = unsafe { guest_rt::probe!("invd") };
    if f.is_none() {
        pass("invd-completes");
    } else {
        fail("invd-completes", format_args!("INVD gave {f:?}"));
    }
}

fn msrs() {
    let mce = has(1, 0, 3, 7) && has(1, 0, 3, 14);
    let cap = cpu::rdmsr(0x179);
    let status = cpu::rdmsr(0x17a);
    let ctl = cpu::rdmsr(0x17b);
    let bank0 = cpu::rdmsr(0x400);
    if mce && cap == Ok(0) && status == Ok(0) && ctl.is_err() && bank0.is_err() {
        pass("mca-zero-banks");
    } else {
        fail(
            "mca-zero-banks",
            format_args!(
                "MCE/MCA {mce}, MCG_CAP {cap:x?}, MCG_STATUS {status:x?}, MCG_CTL {ctl:x?}, MC0_CTL {bank0:x?}"
            ),
        );
    }

    // TSC_ADJUST (SDM Vol. 3B §18.17.3): +2^40 moves the TSC by 2^40.
    const STEP: u64 = 1 << 40;
    let offered = has(7, 0, 1, 1);
    let adj0 = cpu::rdmsr(0x3b);
    let t0 = cpu::rdtsc();
    // SAFETY: only the guest's TSC moves.
    let w = unsafe { cpu::wrmsr(0x3b, STEP) };
    let t1 = cpu::rdtsc();
    let moved = t1.wrapping_sub(t0);
    if offered && adj0 == Ok(0) && w.is_ok() && (STEP..STEP + (1 << 24)).contains(&moved) {
        pass("tsc-adjust");
    } else {
        fail(
            "tsc-adjust",
            format_args!(
                "offered {offered}, TSC_ADJUST {adj0:x?}, write {w:?}, TSC moved {moved:#x}"
            ),
        );
    }
    // WRMSR IA32_TSC = 2^44 adds (2^44 - TSC) to TSC_ADJUST.
    let before = cpu::rdtsc();
    // SAFETY: only the guest's TSC moves.
    let w = unsafe { cpu::wrmsr(0x10, 1 << 44) };
    let after = cpu::rdtsc();
    let adj = cpu::rdmsr(0x3b).unwrap_or(0);
    let expect = STEP.wrapping_add((1u64 << 44).wrapping_sub(before));
    let close = |a: u64, b: u64| a.abs_diff(b) < (1 << 24);
    if w.is_ok() && close(after, 1 << 44) && close(adj, expect) {
        pass("tsc-write-moves-adjust");
    } else {
        fail(
            "tsc-write-moves-adjust",
            format_args!("write {w:?}, TSC {after:#x}, TSC_ADJUST {adj:#x}, expected {expect:#x}"),
        );
    }

    // MISC_ENABLE: TCC (3), limit CPUID (22) and xTPR (23) writable; EIST (16), MONITOR FSM
    // (18), XD disable (34) and reserved bit 1 #GP; limit CPUID caps leaf 0 at 2.
    let m0 = cpu::rdmsr(0x1a0).unwrap_or(0);
    let max0 = cpu::cpuid(0, 0).eax;
    let v = m0 | (1 << 3) | (1 << 22) | (1 << 23);
    // SAFETY: these bits change nothing the guest depends on (CPUID leaf range aside).
    let w = unsafe { cpu::wrmsr(0x1a0, v) };
    let back = cpu::rdmsr(0x1a0).unwrap_or(0);
    let limited = cpu::cpuid(0, 0).eax;
    let refused = [1u32, 16, 18, 34].map(|b| {
        // SAFETY: each write must fault and change nothing.
        unsafe { cpu::wrmsr(0x1a0, v | (1 << b)) }
            .err()
            .map(|f| f.vector)
    });
    // SAFETY: restores the original value.
    let _ = unsafe { cpu::wrmsr(0x1a0, m0) };
    let max1 = cpu::cpuid(0, 0).eax;
    if w.is_ok()
        && back == v
        && limited == 2
        && max1 == max0
        && max0 > 2
        && refused == [Some(GP); 4]
        && cpu::rdmsr(0x1a0) == Ok(m0)
    {
        pass("misc-enable");
    } else {
        fail(
            "misc-enable",
            format_args!(
                "initial {m0:#x}, wrote {v:#x}: {w:?}, read {back:#x}, CPUID.0 {max0:#x}/{limited:#x}/{max1:#x}, refused {refused:?}"
            ),
        );
    }
}

fn cr0_rules() {
    let cr0 = cpu::read_cr0();
    let try_cr0 = |v: u64| {
        // SAFETY: every value tried must fault (64-bit mode keeps PG, PE); recovered.
        unsafe { guest_rt::probe!("mov cr0, {v}", v = in(reg) v) }
    };
    let pg = try_cr0(cr0 & !(1 << 31));
    let pg_ne = try_cr0(cr0 & !((1 << 31) | (1 << 5)));
    let pe = try_cr0(cr0 & !1);
    if [vec(pg), vec(pg_ne), vec(pe)] == [Some(GP); 3] && cpu::read_cr0() == cr0 {
        pass("cr0-64bit-rules");
    } else {
        fail(
            "cr0-64bit-rules",
            format_args!(
                "clear PG {pg:?}, PG|NE {pg_ne:?}, PE {pe:?}, CR0 {:#x}",
                cpu::read_cr0()
            ),
        );
    }
}

fn string_io() {
    let line = b"guest fidelity: PASS rep-outsb\n";
    let (rcx, rsi): (u64, u64);
    // SAFETY: OUTS reads the line and writes COM1's THR.
    unsafe {
        core::arch::asm!(
            "rep outsb",
            inout("rcx") line.len() as u64 => rcx,
            inout("rsi") line.as_ptr() => rsi,
            in("dx") 0x3f8u16,
            options(nostack, readonly)
        );
    }
    if rcx == 0 && rsi == line.as_ptr() as u64 + line.len() as u64 {
        report::count_pass();
    } else {
        fail(
            "rep-outsb",
            format_args!(
                "RCX {rcx}, RSI advanced {}",
                rsi.wrapping_sub(line.as_ptr() as u64)
            ),
        );
    }

    // REP INSB from an unclaimed port: all-ones.
    let mut buf = [0u8; 64];
    let (rcx, rdi): (u64, u64);
    // SAFETY: INS writes `buf` only (16 bytes).
    unsafe {
        core::arch::asm!(
            "rep insb",
            inout("rcx") 16u64 => rcx,
            inout("rdi") buf.as_mut_ptr() => rdi,
            in("dx") 0x2f0u16,
            options(nostack)
        );
    }
    let base = buf.as_ptr() as u64;
    if rcx == 0 && rdi == base + 16 && buf[..16].iter().all(|&b| b == 0xff) && buf[16] == 0 {
        pass("rep-insb");
    } else {
        fail(
            "rep-insb",
            format_args!(
                "RCX {rcx}, RDI +{}, {:x?}",
                rdi.wrapping_sub(base),
                &buf[..17]
            ),
        );
    }

    // STD; REP INSW: RDI goes down by 2 per word.
    let mut buf = [0u16; 8];
    let (rcx, rdi): (u64, u64);
    // SAFETY: INS writes buf[7], buf[6], buf[5]; DF is cleared again.
    unsafe {
        core::arch::asm!(
            "std",
            "rep insw",
            "cld",
            inout("rcx") 3u64 => rcx,
            inout("rdi") buf.as_mut_ptr().add(7) => rdi,
            in("dx") 0x2f0u16,
            options(nostack)
        );
    }
    let base = buf.as_ptr() as u64;
    if rcx == 0 && rdi == base + 8 && buf == [0, 0, 0, 0, 0, 0xffff, 0xffff, 0xffff] {
        pass("rep-insw-df");
    } else {
        fail(
            "rep-insw-df",
            format_args!("RCX {rcx}, RDI {:#x} (base {base:#x}), {buf:x?}", rdi),
        );
    }

    // INSD with a 32-bit address size (0x67): EDI used, RDI zero-extended.
    let mut word = [0u32; 2];
    let ptr = word.as_mut_ptr() as u64;
    let rdi: u64;
    // SAFETY: the guest's memory is below 4 GiB, so EDI addresses `word[0]`.
    unsafe {
        core::arch::asm!(
            "addr32 insd",
            inout("rdi") ptr | (0xabcd << 32) => rdi,
            in("dx") 0x2f0u16,
            options(nostack)
        );
    }
    if word[0] == 0xffff_ffff && rdi == ptr + 4 {
        pass("insd-addr32");
    } else {
        fail(
            "insd-addr32",
            format_args!("word {:#x}, RDI {rdi:#x}", word[0]),
        );
    }
}

/// XGETBV(0).
fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads XCR0 (CR4.OSXSAVE is set by the caller).
    unsafe { core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi) };
    u64::from(hi) << 32 | u64::from(lo)
}

fn xsetbv(ecx: u32, v: u64) -> Option<trap::Fault> {
    // SAFETY: XCR0 values tried keep x87/SSE; a fault is recovered.
    unsafe {
        guest_rt::probe!("xsetbv", in("ecx") ecx, in("eax") v as u32, in("edx") (v >> 32) as u32)
    }
}

/// Loads YMM0-YMM3 from `p` (128 bytes).
fn load_ymm(p: &[u64; 16]) {
    // SAFETY: AVX is enabled in XCR0 and CR4.OSXSAVE; the compiler uses no vector registers
    // (soft-float target).
    unsafe {
        core::arch::asm!(
            "vmovdqu ymm0, [{p}]",
            "vmovdqu ymm1, [{p} + 32]",
            "vmovdqu ymm2, [{p} + 64]",
            "vmovdqu ymm3, [{p} + 96]",
            p = in(reg) p.as_ptr(),
            options(nostack, readonly)
        )
    };
}

fn store_ymm(p: &mut [u64; 16]) {
    // SAFETY: as `load_ymm`.
    unsafe {
        core::arch::asm!(
            "vmovdqu [{p}], ymm0",
            "vmovdqu [{p} + 32], ymm1",
            "vmovdqu [{p} + 64], ymm2",
            "vmovdqu [{p} + 96], ymm3",
            p = in(reg) p.as_mut_ptr(),
            options(nostack)
        )
    };
}

/// XSAVE offered: XSETBV validation (SDM Vol. 1 §13.3, Vol. 2D XSETBV) and YMM state that
/// survives `switches` switches to the other VM. Returns whether AVX is usable.
fn xsave(vm_index: u64, switches: u32) {
    let offered = has(1, 0, 2, 26);
    if !offered {
        let osx = write_cr4(read_cr4() | CR4_OSXSAVE);
        let x = xsetbv(0, 1);
        if vec(osx) == Some(GP) && vec(x) == Some(UD) {
            say(format_args!("xsave: hidden"));
            pass("xsave-hidden");
        } else {
            fail(
                "xsave-hidden",
                format_args!("CR4.OSXSAVE {osx:?}, XSETBV {x:?}"),
            );
        }
        return;
    }
    say(format_args!("xsave: offered"));
    let f = write_cr4(read_cr4() | CR4_OSXSAVE);
    let d = cpu::cpuid(0xd, 0);
    let supported = u64::from(d.eax) | u64::from(d.edx) << 32;
    let osxsave = has(1, 0, 2, 27);
    let initial = xgetbv();
    // Reserved/unsupported values: x87 off, AVX without SSE, bit 63, an unsupported bit,
    // XCR1 (ECX = 1).
    let unsupported = (!supported).trailing_zeros().min(62);
    let bad = [
        xsetbv(0, 0b10),
        xsetbv(0, 0b101),
        xsetbv(0, 0b11 | (1 << 63)),
        xsetbv(0, 0b11 | (1 << unsupported)),
        xsetbv(1, 0b11),
    ];
    let avx = supported & 0b111 == 0b111;
    let want = if avx { 0b111 } else { 0b11 };
    let good = xsetbv(0, want);
    let size = cpu::cpuid(0xd, 0).ebx;
    if f.is_none()
        && osxsave
        && initial == 1
        && bad.iter().all(|b| vec(*b) == Some(GP))
        && good.is_none()
        && xgetbv() == want
        && size >= if avx { 832 } else { 576 }
    {
        pass("xsave-xsetbv");
    } else {
        fail(
            "xsave-xsetbv",
            format_args!(
                "CR4 {f:?}, OSXSAVE {osxsave}, XCR0 {initial:#x} -> {:#x}, supported {supported:#x}, bad {bad:?}, good {good:?}, size {size}",
                xgetbv()
            ),
        );
    }
    if !avx {
        return;
    }
    let mine: [u64; 16] =
        core::array::from_fn(|i| ((vm_index + 1) * 0x0101_0101_0101_0101) ^ ((i as u64) << 56));
    load_ymm(&mine);
    let mut bad = None;
    for n in 0..switches {
        let _ = hv::call0(hv::IDLE, [0, 0, 0, 0]);
        let _ = cpu::cpuid(0, 0);
        let mut now = [0u64; 16];
        store_ymm(&mut now);
        if now != mine {
            bad = Some((n, now));
            break;
        }
    }
    match bad {
        None => pass("xsave-state-survives-switches"),
        Some((n, now)) => fail(
            "xsave-state-survives-switches",
            format_args!("after {n} switches: YMM0-3 {now:x?}, set {mine:x?}"),
        ),
    }
}

/// VM 1: the IDT in a virtio-mmio window; INT 0x10 must stop the VM (Bulkhead cannot deliver
/// through a device), not skip anything.
fn idt_in_mmio() -> ! {
    say(format_args!(
        "idt-in-mmio: raising INT 0x10 through an IDT at 0xd0000000"
    ));
    let idtr: [u16; 5] = [0xfff, 0, 0xd000, 0, 0];
    // SAFETY: the VM is meant to stop here.
    unsafe {
        core::arch::asm!("lidt [{p}]", "int 0x10", p = in(reg) idtr.as_ptr(), options(nostack));
    }
    fail(
        "idt-in-mmio",
        format_args!("INT 0x10 through an IDT in MMIO returned"),
    );
    report::done()
}

fn main(_ram_size: u64, vm_index: u64) -> ! {
    trap::init();
    report::start("fidelity");
    if vm_index == 1 {
        xsave(1, 100);
        idt_in_mmio();
    }
    rf_injected_gp();
    cpuid_controls();
    invd();
    msrs();
    cr0_rules();
    string_io();
    xsave(0, 100);
    report::done()
}
