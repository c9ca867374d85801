//! The instruction-level actions: port I/O, MSRs, control registers, CPUID, XSETBV,
//! INVD/WBINVD, INT3/INT n/UD2, HLT, RDPMC, MONITOR/MWAIT and a few others.
//!
//! What the guest needs to survive, and how each action keeps it (module docs of `main`):
//! - **CR0**: PE and PG stay set. A random value is either made safe (PE|PG forced on, NW
//!   only with CD) or is one of the forms the CPU rejects with #GP in 64-bit mode
//!   (SDM Vol. 3A §2.5 and Vol. 2B MOV CR: PG cleared in IA-32e mode, PG without PE, NW
//!   without CD, bits 63:32 set). After a write that did not fault, the old CR0 is restored.
//! - **CR3**: only the current page tables with random PWT/PCD and ignored bits 11:0, or
//!   values with reserved bits above MAXPHYADDR (#GP, SDM Vol. 2B MOV CR). A CR3 pointing at
//!   anything else would kill the guest: never attempted.
//! - **CR4**: random bits; PAE cleared and LA57 changed in IA-32e mode raise #GP
//!   (Vol. 2B MOV CR), so they are attempted; the old CR4 is restored after a write that did
//!   not fault.
//! - **CR8**: 0-15, or a value with bits 63:4 set (#GP); restored after.
//! - **MSRs**: EFER, PAT and DEBUGCTL are restored after a write that did not fault (the
//!   guest's paging needs EFER.LME/LMA/NXE); FS/GS base are unused by the guest.
//! - **Port I/O**: before interrupts are ever enabled the PICs and PIT are reprogrammed
//!   ([`arm_wakeup`]); UART THR writes are rare (one in 16), and the report lines reset the
//!   UART's LCR/MCR first.
//! - **HLT** is executed only as `sti; hlt` with the PIT and PIC armed to wake it; HLT with
//!   interrupts off ends the VM and is never executed (except the final `cli; hlt`).

use crate::mem::Mem;
use crate::rng::Rng;
use crate::{probe, trace};
use guest_rt::cpu::outb;

// Port numbers (docs/vm-platform.md, Devices).
const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xA0;
const PIC2_DATA: u16 = 0xA1;
const ELCR1: u16 = 0x4D0;
const ELCR2: u16 = 0x4D1;
const PIT_CH0: u16 = 0x40;
const PIT_CMD: u16 = 0x43;
const PORT_B: u16 = 0x61;
const RTC_INDEX: u16 = 0x70;
const COM1: u16 = 0x3F8;
const COM1_SCRATCH: u16 = 0x3FF;
const DMA_PAGE: u16 = 0x80;

/// 8259A ICW1: edge triggered, cascade, ICW4 needed (8259A data sheet).
const ICW1_INIT: u8 = 0x11;
/// ICW4: 8086 mode.
const ICW4_8086: u8 = 0x01;
/// Vector base of the master PIC while interrupts may be enabled (above the exceptions).
const PIC_VECTOR_BASE: u8 = 0x20;
/// 8254 control word: channel 0, lobyte/hibyte, mode 2 (rate generator), binary.
const PIT_CH0_RATE: u8 = 0x34;
/// The wake-up timer's divisor range (1.193182 MHz input): periods of 1-10 ms. Shorter ones
/// livelock the guest, not the hypervisor: in Bochs one PIT interrupt costs this guest about
/// three exits (interrupt window, EOI to each 8259A, some 5,000-6,000 TSC ticks with the
/// handler), so with a 105 us period (divisor 125, seed 2 at iteration 24155) the next
/// interrupt is pending at every IRET, the `cli` after the HLT never runs and the VM only
/// takes interrupts until it is stopped.
const WAKE_DIVISOR: (u64, u64) = (1_193, 12_000);

/// Reprograms the PICs (vector base 0x20, only IRQ0 unmasked, every line edge-triggered)
/// and PIT channel 0 (a period of 1-10 ms, [`WAKE_DIVISOR`]), so that a sleep (`sti; hlt`, `IDLE(1)`) is
/// ended by a timer interrupt whatever the port fuzzing left behind.
pub fn arm_wakeup(rng: &mut Rng) {
    for (port, value) in [
        (PIC1_CMD, ICW1_INIT),
        (PIC1_DATA, PIC_VECTOR_BASE),
        (PIC1_DATA, 1 << 2), // ICW3: slave on IRQ2
        (PIC1_DATA, ICW4_8086),
        (PIC2_CMD, ICW1_INIT),
        (PIC2_DATA, PIC_VECTOR_BASE + 8),
        (PIC2_DATA, 2), // ICW3: slave identity 2
        (PIC2_DATA, ICW4_8086),
        (PIC1_DATA, 0xFE), // OCW1: IRQ0 only
        (PIC2_DATA, 0xFF),
    ] {
        outb(port, value);
    }
    guest_rt::cpu::outb(ELCR1, 0);
    guest_rt::cpu::outb(ELCR2, 0);
    let divisor = rng.range(WAKE_DIVISOR.0, WAKE_DIVISOR.1) as u16;
    trace!("wake-up timer: PIT divisor {divisor}");
    outb(PIT_CMD, PIT_CH0_RATE);
    outb(PIT_CH0, divisor as u8);
    outb(PIT_CH0, (divisor >> 8) as u8);
}

fn port(rng: &mut Rng) -> u16 {
    match rng.below(16) {
        0..=2 => rng.pick(&[PIC1_CMD, PIC1_DATA, PIC2_CMD, PIC2_DATA, ELCR1, ELCR2]),
        3..=5 => rng.range(0x40, 0x43) as u16,
        6 => PORT_B,
        7..=8 => rng.range(u64::from(RTC_INDEX), u64::from(RTC_INDEX) + 1) as u16,
        9..=11 => rng.range(u64::from(COM1), u64::from(COM1_SCRATCH)) as u16,
        12 => rng.range(u64::from(DMA_PAGE), u64::from(DMA_PAGE) + 0xF) as u16,
        13 => rng.pick(&[
            0x2F0, 0x3F6, 0x60, 0x64, 0x92, 0xCF8, 0xCFC, 0xCF9, 0x402, 0xE9, 0xB004, 0x604, 0x8900,
        ]),
        14 => rng.below(0x400) as u16,
        _ => rng.next() as u16,
    }
}

fn io_value(rng: &mut Rng) -> u32 {
    if rng.chance(1, 2) {
        rng.below(256) as u32
    } else {
        rng.interesting() as u32
    }
}

/// IN or OUT of 1, 2 or 4 bytes on a port weighted to the emulated devices.
pub fn pio(rng: &mut Rng) {
    let mut p = port(rng);
    let size = rng.pick(&[1u8, 1, 2, 4]);
    let out = rng.chance(1, 2);
    let value = io_value(rng);
    if out && p == COM1 && !rng.chance(1, 16) {
        // THR writes print garbage on the console: keep them rare.
        p = COM1_SCRATCH;
    }
    trace!(
        "pio {} port={p:#x} size={size} value={value:#x}",
        if out { "out" } else { "in" }
    );
    if out && p == COM1 {
        crate::console_dirty();
    }
    // SAFETY: port I/O has no memory effects on the guest; every port exits to the
    // hypervisor (all-ones I/O bitmaps). The PIC/PIT state this may leave is reset by
    // arm_wakeup before interrupts are enabled.
    unsafe {
        match (out, size) {
            (true, 1) => {
                core::arch::asm!("out dx, al", in("dx") p, in("al") value as u8, options(nomem, nostack))
            }
            (true, 2) => {
                core::arch::asm!("out dx, ax", in("dx") p, in("ax") value as u16, options(nomem, nostack))
            }
            (true, _) => {
                core::arch::asm!("out dx, eax", in("dx") p, in("eax") value, options(nomem, nostack))
            }
            (false, 1) => {
                core::arch::asm!("in al, dx", in("dx") p, out("al") _, options(nomem, nostack))
            }
            (false, 2) => {
                core::arch::asm!("in ax, dx", in("dx") p, out("ax") _, options(nomem, nostack))
            }
            (false, _) => {
                core::arch::asm!("in eax, dx", in("dx") p, out("eax") _, options(nomem, nostack))
            }
        }
    }
}

// MSRs (SDM Vol. 4 Table 2-2).
const IA32_EFER: u32 = 0xC000_0080;
const IA32_PAT: u32 = 0x277;
const IA32_DEBUGCTL: u32 = 0x1D9;
/// MSRs the hypervisor knows (vm::msr) and a few it must refuse.
const KNOWN_MSRS: &[u32] = &[
    0x10,
    0x1B,
    0x34,
    0x3A,
    0x79,
    0x8B,
    0xCE,
    0xFE,
    0x140,
    0x174,
    0x175,
    0x176,
    0x1A0,
    IA32_DEBUGCTL,
    0x200,
    0x201,
    0x20E,
    0x20F,
    0x250,
    0x258,
    0x259,
    0x268,
    0x26F,
    IA32_PAT,
    0x2FF,
    0x6E0,
    0x480,
    0x48B,
    0x491,
    0x493,
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
    0xC000_0100,
    0xC000_0101,
    0xC000_0102,
    0xC000_0103,
    0x38F,
    0xC1,
    0x186,
    0x802,
    0x830,
    0xDA0,
    0x6A0,
    0x1C9,
    0x4000_0000,
    0x4000_0001,
];

fn msr_index(rng: &mut Rng) -> u32 {
    match rng.below(8) {
        0..=3 => rng.pick(KNOWN_MSRS),
        4 => rng.below(0x2000) as u32,
        5 => 0xC000_0000 + rng.below(0x2000) as u32,
        6 => {
            let low = rng.below(0x100) as u32;
            rng.pick(&[IA32_EFER, 0x4000_0000 + low, 0xC001_0000 + low])
        }
        _ => rng.next() as u32,
    }
}

fn rdmsr_raw(msr: u32) -> Option<u64> {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no memory effects; a fault is caught by the probe.
    let fault =
        unsafe { probe!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack)) };
    fault.is_none().then(|| u64::from(hi) << 32 | u64::from(lo))
}

/// WRMSR; whether it completed without a fault.
///
/// # Safety
/// The write must not break the guest, or be undone by the caller.
unsafe fn wrmsr_raw(msr: u32, value: u64) -> bool {
    // SAFETY: the caller vouches for the write's effect; a fault is caught by the probe.
    let fault = unsafe {
        probe!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack)
        )
    };
    fault.is_none()
}

pub fn rdmsr(rng: &mut Rng) {
    let msr = msr_index(rng);
    trace!("rdmsr {msr:#x}");
    let _ = rdmsr_raw(msr);
}

pub fn wrmsr(rng: &mut Rng) {
    let msr = msr_index(rng);
    let value = match rng.below(4) {
        // The current value with a bit flipped.
        0 => rdmsr_raw(msr).unwrap_or(0) ^ (1 << rng.below(64)),
        _ => rng.interesting(),
    };
    let restore = matches!(msr, IA32_EFER | IA32_PAT | IA32_DEBUGCTL)
        .then(|| rdmsr_raw(msr))
        .flatten();
    trace!("wrmsr {msr:#x} value={value:#x}");
    // SAFETY: the MSRs the guest depends on are restored below; the others are unused by it.
    let written = unsafe { wrmsr_raw(msr, value) };
    if let (true, Some(old)) = (written, restore) {
        // SAFETY: writing back the value read before.
        let _ = unsafe { wrmsr_raw(msr, old) };
    }
}

// Control-register bits (SDM Vol. 3A §2.5).
const CR0_PE: u64 = 1 << 0;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
/// CR0 bits that exist: PE MP EM TS ET NE WP AM NW CD PG.
const CR0_DEFINED: u64 = 0xE005_003F;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const CR4_PCIDE: u64 = 1 << 17;
/// CR3 bits 11:0 are ignored without PCIDE except PWT (3) and PCD (4).
const CR3_FLAGS: u64 = 0xFFF;

fn read_cr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading a control register at CPL 0 has no side effects.
    unsafe {
        match n {
            0 => core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)),
            2 => core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)),
            3 => core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)),
            4 => core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)),
            _ => core::arch::asm!("mov {}, cr8", out(reg) v, options(nomem, nostack)),
        }
    }
    v
}

/// MOV to CRn; whether it completed without a fault.
///
/// # Safety
/// The value must keep the guest running or be rejected by the CPU.
unsafe fn write_cr(n: u8, v: u64) -> bool {
    // SAFETY: the caller vouches for the value; a fault is caught by the probe.
    let fault = unsafe {
        match n {
            0 => probe!("mov cr0, {v}", v = in(reg) v, options(nostack)),
            3 => probe!("mov cr3, {v}", v = in(reg) v, options(nostack)),
            4 => probe!("mov cr4, {v}", v = in(reg) v, options(nostack)),
            _ => probe!("mov cr8, {v}", v = in(reg) v, options(nostack)),
        }
    };
    fault.is_none()
}

pub fn cr0(rng: &mut Rng) {
    let old = read_cr(0);
    let mut v = if rng.chance(1, 2) {
        old ^ (1 << rng.below(32))
    } else {
        rng.next() & CR0_DEFINED
    };
    let form = rng.below(6);
    match form {
        // Safe: PE and PG on, NW only with CD.
        0..=1 => {
            v |= CR0_PE | CR0_PG;
            if v & CR0_NW != 0 {
                v |= CR0_CD;
            }
        }
        // #GP: clearing PG in 64-bit mode (Vol. 2B MOV CR; Vol. 3A §10.8.5.4).
        2 => v &= !CR0_PG,
        // #GP: PG without PE.
        3 => v = (v | CR0_PG) & !CR0_PE,
        // #GP: NW without CD.
        4 => v = (v | CR0_NW | CR0_PE | CR0_PG) & !CR0_CD,
        // #GP: bits 63:32 set.
        _ => v |= (CR0_PE | CR0_PG) | (1 << rng.range(32, 63)),
    }
    if form <= 1 && rng.chance(1, 2) {
        v = old;
    }
    trace!("mov cr0, {v:#x} (was {old:#x})");
    // SAFETY: the value is safe or one the CPU rejects (above); restored after.
    if unsafe { write_cr(0, v) } {
        // SAFETY: the value read before.
        let _ = unsafe { write_cr(0, old) };
    }
}

pub fn cr3(rng: &mut Rng) {
    let old = read_cr(3);
    let base = old & !CR3_FLAGS;
    let v = match rng.below(4) {
        0 => old,
        1 => base | (rng.next() & CR3_FLAGS),
        // Reserved bits 62:52 (above any MAXPHYADDR): #GP.
        2 => base | (1 << rng.range(52, 62)),
        // Bit 63 without PCIDE is reserved: #GP.
        _ => base | (1 << 63),
    };
    trace!("mov cr3, {v:#x} (was {old:#x})");
    // SAFETY: the same page tables, or a value the CPU rejects; restored after.
    if unsafe { write_cr(3, v) } {
        // SAFETY: the value read before.
        let _ = unsafe { write_cr(3, old) };
    }
}

pub fn cr4(rng: &mut Rng) {
    let old = read_cr(4);
    let v = match rng.below(5) {
        0 => old ^ (1 << rng.below(32)),
        1 => old & !CR4_PAE,
        2 => old ^ CR4_LA57,
        3 => (rng.next() & 0x00FF_FFFF) | CR4_PAE,
        _ => old | (1 << rng.range(32, 63)),
    };
    // PCIDE may be set only with CR3[11:0] = 0, which holds (0x3000): it is harmless.
    let v = if v & CR4_PCIDE != 0 && rng.chance(1, 2) {
        v & !CR4_PCIDE
    } else {
        v
    };
    trace!("mov cr4, {v:#x} (was {old:#x})");
    // SAFETY: PAE cleared and LA57 toggled are rejected by the CPU in IA-32e mode; other
    // bits do not stop a guest that uses no user pages, SSE or XSAVE; restored after.
    if unsafe { write_cr(4, v) } {
        // SAFETY: the value read before.
        let _ = unsafe { write_cr(4, old) };
    }
}

pub fn cr8(rng: &mut Rng) {
    let old = read_cr(8);
    let v = if rng.chance(3, 4) {
        rng.below(16)
    } else {
        rng.interesting() | 0x10
    };
    trace!("mov cr8, {v:#x} (was {old:#x})");
    // SAFETY: the TPR only masks local-APIC interrupts, which this guest does not use; bits
    // 63:4 raise #GP; restored after.
    if unsafe { write_cr(8, v) } {
        // SAFETY: the value read before.
        let _ = unsafe { write_cr(8, old) };
    }
}

pub fn cpuid(rng: &mut Rng) {
    let leaf = match rng.below(6) {
        0..=1 => rng.below(0x20) as u32,
        2 => 0x4000_0000 + rng.below(0x10) as u32,
        3 => 0x8000_0000 + rng.below(0x20) as u32,
        4 => rng.pick(&[0xD, 0x7, 0x4, 0xB, 0x1F, 0x14, 0x12, 0x8000_0008]),
        _ => rng.next() as u32,
    };
    let sub = if rng.chance(1, 2) {
        rng.below(4) as u32
    } else {
        rng.next() as u32
    };
    trace!("cpuid leaf={leaf:#x} subleaf={sub:#x}");
    // SAFETY: CPUID has no memory effects; RBX (reserved by LLVM) is saved and restored.
    let _ = unsafe {
        probe!(
            "mov {save}, rbx\ncpuid\nmov rbx, {save}",
            save = out(reg) _,
            inout("eax") leaf => _,
            inout("ecx") sub => _,
            out("edx") _,
            options(nostack)
        )
    };
}

pub fn xsetbv(rng: &mut Rng) {
    let (r, i) = (rng.next() as u32, rng.interesting());
    let xcr = rng.pick(&[0u32, 0, 1, r]);
    let value = rng.pick(&[1u64, 3, 7, 0, i]);
    trace!("xsetbv xcr={xcr} value={value:#x}");
    // SAFETY: XSETBV exits to the hypervisor (which offers no XSAVE); any fault is caught.
    let _ = unsafe {
        probe!("xsetbv", in("ecx") xcr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
}

pub fn invd() {
    trace!("invd");
    // SAFETY: INVD exits unconditionally (SDM Vol. 3C §26.1.2); on hardware it would drop
    // dirty cache lines, which Bochs does not model and this guest would not notice.
    let _ = unsafe { probe!("invd", options(nostack)) };
}

pub fn wbinvd() {
    trace!("wbinvd");
    // SAFETY: write-back and invalidate has no architectural effect on memory contents.
    let _ = unsafe { probe!("wbinvd", options(nostack)) };
}

pub fn int3() {
    trace!("int3");
    // SAFETY: #BP is intercepted by the hypervisor and reflected to this guest's handler.
    let _ = unsafe { probe!("int3", options(nostack)) };
}

pub fn ud2(rng: &mut Rng) {
    let which = rng.below(3);
    trace!("ud {which}");
    // SAFETY: each raises #UD (UD2; INTO is invalid in 64-bit mode, SDM Vol. 2A INTO) or
    // #DB (INT1/ICEBP, a trap), caught by the probe.
    let _ = unsafe {
        match which {
            0 => probe!("ud2", options(nostack)),
            1 => probe!(".byte 0xce", options(nostack)),
            _ => probe!(".byte 0xf1", options(nostack)),
        }
    };
}

// One `int N; ret` per vector, 4 bytes apart.
core::arch::global_asm!(
    ".pushsection .text.fuzz_int_table, \"ax\"",
    ".balign 4",
    ".global fuzz_int_table",
    "fuzz_int_table:",
    ".set fz_n, 0",
    ".rept 256",
    ".balign 4",
    ".byte 0xcd, fz_n",
    "ret",
    ".set fz_n, fz_n + 1",
    ".endr",
    ".popsection",
    options(att_syntax),
);

extern "C" {
    static fuzz_int_table: u8;
}

pub fn intn(rng: &mut Rng) {
    let n = match rng.below(4) {
        0 => rng.below(32),
        _ => rng.below(256),
    };
    trace!("int {n:#x}");
    let entry = core::ptr::addr_of!(fuzz_int_table) as u64 + 4 * n;
    crate::idt::FUZZ_SOFT_INT.store(1, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: every IDT gate is present with DPL 0; the handler sees the software-interrupt
    // flag and returns after the INT, then the entry returns here. Caller-saved registers
    // are declared clobbered.
    unsafe {
        core::arch::asm!(
            "call {e}",
            e = in(reg) entry,
            clobber_abi("C"),
        )
    };
    crate::idt::FUZZ_SOFT_INT.store(0, core::sync::atomic::Ordering::Relaxed);
}

/// `sti; hlt; cli` with a timer armed to wake it.
pub fn hlt(rng: &mut Rng) {
    arm_wakeup(rng);
    trace!("sti; hlt");
    // SAFETY: the PIT and PIC were armed just above, and every vector has a handler that
    // acknowledges the PIC and returns; STI's shadow covers the HLT.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

pub fn rdpmc(rng: &mut Rng) {
    let counter = match rng.below(4) {
        0 => rng.below(8) as u32,
        1 => 0x4000_0000 + rng.below(4) as u32,
        2 => 0x2000_0000 + rng.below(4) as u32,
        _ => rng.next() as u32,
    };
    trace!("rdpmc ecx={counter:#x}");
    // SAFETY: RDPMC reads a counter or raises #GP; no memory effects.
    let _ =
        unsafe { probe!("rdpmc", in("ecx") counter, out("eax") _, out("edx") _, options(nostack)) };
}

/// MONITOR on a scratch line, then MWAIT with random hints (sometimes with ECX[0]: an
/// interrupt is a break event even with IF = 0, SDM Vol. 2B MWAIT), or with a bad ECX (#GP).
pub fn mwait(rng: &mut Rng, mem: &Mem) {
    let line = mem.scratch(rng, 64, 64);
    let (r1, r2) = (rng.next() as u32, rng.next() as u32);
    let hints = rng.pick(&[0u32, 0x10, 0x20, 0xF0, r1]);
    let ext = rng.pick(&[0u32, 0, 1, 2, r2]);
    trace!("monitor {line:#x}; mwait eax={hints:#x} ecx={ext:#x}");
    // SAFETY: MONITOR only arms address monitoring of a scratch line; MWAIT waits at most
    // until an interrupt or a store to the line, or faults (caught).
    let _ = unsafe {
        probe!("monitor", in("rax") line, in("ecx") 0u32, in("edx") 0u32, options(nostack))
    };
    // SAFETY: as above.
    let _ = unsafe { probe!("mwait", in("eax") hints, in("ecx") ext, options(nostack)) };
}

/// RDTSCP, RDRAND, RDSEED, INVLPG, INVPCID, PAUSE, XGETBV.
pub fn misc(rng: &mut Rng, mem: &Mem) {
    let which = rng.below(7);
    let addr = mem.scratch(rng, 8, 8);
    let value = rng.interesting();
    trace!("misc {which} addr={addr:#x} value={value:#x}");
    // SAFETY: none of these writes memory; INVLPG/INVPCID only drop TLB entries; faults
    // (#UD where a feature is off, #GP for a bad INVPCID type) are caught.
    let _ = unsafe {
        match which {
            0 => probe!("rdtscp", out("eax") _, out("edx") _, out("ecx") _, options(nostack)),
            1 => probe!("rdrand {v}", v = out(reg) _, options(nostack)),
            2 => probe!("rdseed {v}", v = out(reg) _, options(nostack)),
            3 => probe!("invlpg [{a}]", a = in(reg) addr, options(nostack)),
            4 => {
                let desc = [value & 0xFFF, addr];
                probe!("invpcid {t}, [{d}]", t = in(reg) value & 7, d = in(reg) &desc, options(nostack))
            }
            5 => probe!("pause", options(nostack)),
            _ => {
                probe!("xgetbv", in("ecx") value as u32, out("eax") _, out("edx") _, options(nostack))
            }
        }
    };
}
