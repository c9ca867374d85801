//! `irq-bench`: what an interrupt costs the guest in exits, for `scripts/bench` (issue 11).
//! One vCPU. For each APIC mode (xAPIC MMIO first, then x2APIC MSRs) and each source (a
//! self-IPI, the local APIC timer in periodic mode) it takes [`N`] interrupts twice:
//!
//! - a plain pass: the source raises the interrupt, the handler EOIs; the TSC over the pass
//!   gives `ticks` (per-interrupt round trip: raise, delivery, handler, EOI);
//! - a bracketed pass: the same, but the handler reads EXIT_STATS right before and right
//!   after its EOI, so `eoi_exits` counts the exits the EOIs caused and `exits` all the exits
//!   of the pass (raise + delivery + EOI).
//!
//! Exit counts are EXIT_STATS sums over every reason except VMCALL (the counting itself);
//! `reasons=` lists the bracketed pass's exits by basic exit reason.
//! Then the device latency: COM1's transmitter-empty interrupt through IOAPIC pin 4 (edge,
//! fixed, to APIC ID 0; the 8259As masked), [`N`] times: RDTSC right before the OUT to IER
//! that raises it, RDTSC first thing in the handler. Lines (UART):
//!
//! ```text
//! guest irq-bench: BENCH irq mode=<xapic|x2apic> source=<self-ipi|timer> n=N exits=E eoi_exits=O ticks=T reasons=R:C,...
//! guest irq-bench: BENCH uart-irq-latency n=N median=M max=X min=Y
//! ```
//!
//! A source whose interrupts stop coming prints `BENCH irq ... FAIL` and the run goes on.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use guest_rt::apic::{self, reg};
use guest_rt::{cpu, hv, say};

guest_rt::entry!(main);

/// Interrupts per pass.
const N: u32 = 100;
const SELF_IPI_VECTOR: u8 = 0x40;
const TIMER_VECTOR: u8 = 0x41;
const UART_VECTOR: u8 = 0x46;
/// The local APIC timer period, in timer ticks at divide-by-1: long enough that the handler
/// (with its two EXIT_STATS calls) is done well before the next period.
const TIMER_PERIOD: u32 = 40_000;
/// Longest wait for one interrupt, in TSC ticks (ticks = instructions in Bochs).
const WAIT: u64 = 100_000_000;

/// COM1 registers and bits (PC16550D datasheet: IER, IIR, MCR).
const COM1_IER: u16 = 0x3F9;
const COM1_IIR: u16 = 0x3FA;
const COM1_MCR: u16 = 0x3FC;
/// IER bit 1: transmitter holding register empty interrupt.
const IER_THRE: u8 = 1 << 1;
/// MCR bit 3: OUT2, which gates the 16550's interrupt output on a PC.
const MCR_OUT2: u8 = 1 << 3;
/// COM1's ISA IRQ 4 is IOAPIC pin 4 (Bulkhead's MADT has no override for it).
const UART_PIN: u8 = 4;
/// 8259A data ports (interrupt mask registers).
const PIC_MASTER_DATA: u16 = 0x21;
const PIC_SLAVE_DATA: u16 = 0xA1;

static FIRES: AtomicU32 = AtomicU32::new(0);
/// The handler brackets its EOI with EXIT_STATS (the bracketed pass).
static BRACKET: AtomicBool = AtomicBool::new(false);
/// Exits the bracketed EOIs caused, summed.
static EOI_EXITS: AtomicU64 = AtomicU64::new(0);
static X2APIC: AtomicBool = AtomicBool::new(false);
static UART_TSC: AtomicU64 = AtomicU64::new(0);
static UART_IRQS: AtomicU32 = AtomicU32::new(0);

/// 8-byte aligned room for the largest EXIT_STATS copy.
#[repr(C, align(8))]
struct StatsBuf([u8; hypercall::stats::MAX_SIZE]);

fn rd32(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 4).map_or(0, |s| {
        u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    })
}

fn rd64(b: &[u8], off: usize) -> u64 {
    rd32(b, off) | rd32(b, off + 4) << 32
}

/// Basic exit reasons tracked one by one (SDM Vol. 3D Appendix C: all are below 80).
const REASONS: usize = 80;

/// This VM's exit counts so far by basic reason, VMCALL (the counting itself) left at 0
/// (EXIT_STATS layout v1: hypercall::stats).
fn exits_by_reason() -> [u64; REASONS] {
    use hypercall::stats::{OFF_COUNT, OFF_ENTRY_COUNT, OFF_ENTRY_SIZE, OFF_HEADER_SIZE};
    let mut buf = StatsBuf([0; hypercall::stats::MAX_SIZE]);
    let n = hv::exit_stats(&mut buf.0).map_or(0, |n| n.max(0) as usize);
    let b = &buf.0[..n.min(buf.0.len())];
    let (count, entry, header) = (
        rd32(b, OFF_COUNT) as usize,
        rd32(b, OFF_ENTRY_SIZE) as usize,
        rd32(b, OFF_HEADER_SIZE) as usize,
    );
    let mut by = [0; REASONS];
    for e in (0..count).map(|i| header + i * entry) {
        let reason = rd32(b, e) as usize;
        if reason != hv::EXIT_VMCALL as usize && reason < REASONS {
            by[reason] = rd64(b, e + OFF_ENTRY_COUNT);
        }
    }
    by
}

/// This VM's exits so far, every reason but VMCALL.
fn exits() -> u64 {
    exits_by_reason().iter().sum()
}

/// The last pass's exits by reason.
static PASS_REASONS: [AtomicU64; REASONS] = [const { AtomicU64::new(0) }; REASONS];

fn eoi() {
    if X2APIC.load(Ordering::Relaxed) {
        let _ = apic::x2_write(apic::x2apic_msr(reg::EOI), 0);
    } else {
        apic::write(reg::EOI, 0);
    }
}

/// The EOI of the benchmark handlers, bracketed by EXIT_STATS in the bracketed pass.
fn counted_eoi() {
    if BRACKET.load(Ordering::Relaxed) {
        let before = exits();
        eoi();
        let after = exits();
        EOI_EXITS.fetch_add(after.wrapping_sub(before), Ordering::Relaxed);
    } else {
        eoi();
    }
}

#[no_mangle]
extern "C" fn on_bench_irq() {
    FIRES.fetch_add(1, Ordering::Release);
    counted_eoi();
}

#[no_mangle]
extern "C" fn on_uart() {
    UART_TSC.store(cpu::rdtsc(), Ordering::Relaxed);
    // Reading IIR acknowledges the transmitter-empty interrupt; IER 0 lowers the line
    // (PC16550D datasheet, IIR and IER).
    let _ = cpu::inb(COM1_IIR);
    cpu::outb(COM1_IER, 0);
    UART_IRQS.fetch_add(1, Ordering::Release);
    eoi();
}

guest_rt::irq_stub!(bench_stub, on_bench_irq);
guest_rt::irq_stub!(uart_stub, on_uart);

fn sti() {
    // SAFETY: every vector that can arrive has a handler installed.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}

fn cli() {
    // SAFETY: masking interrupts affects only this vCPU.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

/// Spins with interrupts on (no HLT: its exit would be counted) until `count` passes `seen`.
fn wait_past(count: &AtomicU32, seen: u32) -> bool {
    let start = cpu::rdtsc();
    while count.load(Ordering::Acquire) == seen {
        if cpu::rdtsc().wrapping_sub(start) > WAIT {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    SelfIpi,
    Timer,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::SelfIpi => "self-ipi",
            Source::Timer => "timer",
        }
    }
}

/// Writes local APIC register `offset` in the current mode.
fn apic_write(offset: u32, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        let _ = apic::x2_write(apic::x2apic_msr(offset), u64::from(value));
    } else {
        apic::write(offset, value);
    }
}

fn send_self_ipi() {
    if X2APIC.load(Ordering::Relaxed) {
        // The x2APIC SELF IPI register (SDM Vol. 3A §11.12.11).
        let _ = apic::x2_write(apic::X2APIC_SELF_IPI, u64::from(SELF_IPI_VECTOR));
    } else {
        // Fixed, edge, self shorthand (SDM Vol. 3A §11.6.1).
        apic::write(reg::ICR_LOW, apic::ICR_SELF | u32::from(SELF_IPI_VECTOR));
    }
}

/// One pass of `N` interrupts from `source`: (exits, EOI exits, TSC ticks), or `None` when
/// an interrupt did not come.
fn pass(source: Source, bracket: bool) -> Option<(u64, u64, u64)> {
    FIRES.store(0, Ordering::Relaxed);
    EOI_EXITS.store(0, Ordering::Relaxed);
    BRACKET.store(bracket, Ordering::Relaxed);
    let by0 = exits_by_reason();
    let t0 = cpu::rdtsc();
    sti();
    let mut ok = true;
    match source {
        Source::SelfIpi => {
            for i in 0..N {
                send_self_ipi();
                if !wait_past(&FIRES, i) {
                    ok = false;
                    break;
                }
            }
        }
        Source::Timer => {
            // Periodic mode, divide by 1 (SDM Vol. 3A §11.5.4).
            apic_write(reg::TIMER_DIVIDE, apic::DIVIDE_BY_1);
            apic_write(
                reg::LVT_TIMER,
                apic::TIMER_PERIODIC | u32::from(TIMER_VECTOR),
            );
            apic_write(reg::TIMER_INITIAL, TIMER_PERIOD);
            for i in 0..N {
                if !wait_past(&FIRES, i) {
                    ok = false;
                    break;
                }
            }
            // A zero initial count stops it; the mask keeps it stopped (§11.5.4, §11.5.1).
            apic_write(reg::TIMER_INITIAL, 0);
            apic_write(reg::LVT_TIMER, apic::LVT_MASKED | u32::from(TIMER_VECTOR));
        }
    }
    cli();
    let ticks = cpu::rdtsc().wrapping_sub(t0);
    let by1 = exits_by_reason();
    let mut total = 0u64;
    for (i, slot) in PASS_REASONS.iter().enumerate() {
        let d = by1[i].wrapping_sub(by0[i]);
        slot.store(d, Ordering::Relaxed);
        total = total.wrapping_add(d);
    }
    BRACKET.store(false, Ordering::Relaxed);
    ok.then(|| (total, EOI_EXITS.load(Ordering::Relaxed), ticks))
}

fn bench_source(mode: &str, source: Source) {
    let plain = pass(source, false);
    let bracketed = pass(source, true);
    match (plain, bracketed) {
        (Some((_, _, ticks)), Some((exits, eoi_exits, _))) => say!(
            "BENCH irq mode={mode} source={} n={N} exits={exits} eoi_exits={eoi_exits} ticks={ticks} reasons={}",
            source.name(),
            Reasons
        ),
        _ => say!(
            "BENCH irq mode={mode} source={} FAIL: fewer than {N} interrupts (fired {})",
            source.name(),
            FIRES.load(Ordering::Relaxed)
        ),
    }
}

/// The non-zero entries of [`PASS_REASONS`] as `reason:count,...` (`-` when none).
struct Reasons;

impl core::fmt::Display for Reasons {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for (reason, slot) in PASS_REASONS.iter().enumerate() {
            let n = slot.load(Ordering::Relaxed);
            if n != 0 {
                write!(f, "{}{reason}:{n}", if first { "" } else { "," })?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// COM1's transmitter-empty interrupt through IOAPIC pin 4, `N` times.
fn bench_uart_latency() {
    let mut samples = [0u64; N as usize];
    let redirection = 0x10 + 2 * UART_PIN;
    // Edge, active high, fixed, physical destination APIC ID 0 (82093AA §3.2.4).
    apic::ioapic_write(redirection + 1, 0);
    apic::ioapic_write(redirection, u32::from(UART_VECTOR));
    cpu::outb(COM1_MCR, MCR_OUT2);
    sti();
    let mut taken = 0;
    for (i, s) in samples.iter_mut().enumerate() {
        let seen = UART_IRQS.load(Ordering::Relaxed);
        let t0 = cpu::rdtsc();
        cpu::outb(COM1_IER, IER_THRE);
        if !wait_past(&UART_IRQS, seen) {
            break;
        }
        *s = UART_TSC.load(Ordering::Relaxed).wrapping_sub(t0);
        taken = i + 1;
    }
    cli();
    apic::ioapic_write(redirection, apic::LVT_MASKED | u32::from(UART_VECTOR));
    cpu::outb(COM1_MCR, 0);
    if taken < samples.len() {
        say!("BENCH uart-irq-latency FAIL: {taken} of {N} interrupts came");
        return;
    }
    samples.sort_unstable();
    say!(
        "BENCH uart-irq-latency n={N} median={} max={} min={}",
        samples[samples.len() / 2],
        samples[samples.len() - 1],
        samples[0]
    );
}

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    guest_rt::report::set_name("irq-bench");
    // SAFETY: the stubs save every caller-saved register and end with IRETQ.
    unsafe {
        guest_rt::trap::set_interrupt_gate(SELF_IPI_VECTOR, bench_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(TIMER_VECTOR, bench_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(UART_VECTOR, uart_stub as *const () as u64);
    }
    // Only the local APIC and the IOAPIC deliver: both 8259As masked.
    cpu::outb(PIC_MASTER_DATA, 0xFF);
    cpu::outb(PIC_SLAVE_DATA, 0xFF);
    apic::write(reg::SVR, apic::SVR_ENABLE | apic::SPURIOUS_VECTOR);
    for source in [Source::SelfIpi, Source::Timer] {
        bench_source("xapic", source);
    }
    bench_uart_latency();
    // xAPIC → x2APIC through IA32_APIC_BASE (SDM Vol. 3A §11.12.5).
    let entered = cpu::rdmsr(apic::IA32_APIC_BASE).and_then(|base| {
        // SAFETY: the mode switch changes only this vCPU's virtual APIC.
        unsafe { cpu::wrmsr(apic::IA32_APIC_BASE, base | apic::APIC_BASE_EXTD) }
    });
    match entered {
        Ok(()) => {
            X2APIC.store(true, Ordering::Relaxed);
            for source in [Source::SelfIpi, Source::Timer] {
                bench_source("x2apic", source);
            }
        }
        Err(f) => say!("BENCH irq mode=x2apic FAIL: entering x2APIC mode raised {f}"),
    }
    say!("BENCH irq done");
    guest_rt::halt()
}
