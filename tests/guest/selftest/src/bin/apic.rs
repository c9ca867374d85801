//! `apic`: the guest's interrupt platform, checked from inside (issue 11). Two vCPUs; vCPU 0
//! runs the checks and prints one `PASS`/`FAIL` line each, vCPU 1 answers IPIs until vCPU 0
//! sends it INIT and a start-up IPI, after which it runs a real-mode trampoline and parks.
//!
//! xAPIC mode (MMIO at 0xFEE00000): CPUID and IA32_APIC_BASE, ID and version, software
//! enable, a self-IPI delivered once with its ISR bit set in the handler and cleared by EOI,
//! TPR masking (a vector in a class at or below the TPR stays in IRR until the TPR drops),
//! the ESR's send-illegal-vector bit, the timer one-shot, periodic (5 periods on time) and
//! TSC-deadline, fixed IPIs to vCPU 1 by physical ID, by logical flat destination and by the
//! all-but-self shorthand, the IOAPIC's version register. x2APIC mode (MSRs): the switch
//! through IA32_APIC_BASE, ID and version MSRs, the SELF IPI MSR, the #GP cases (RDMSR of
//! EOI, WRMSR of the read-only ID, a non-zero EOI, leaving x2APIC for xAPIC), the 64-bit ICR,
//! and INIT + SIPI (vector 0x0A: vCPU 1 starts in real mode at 0xA000, exactly once although
//! two SIPIs are sent, as the MP start-up sequence does).

#![no_std]
#![no_main]
// Checks return `Result<(), Detail>` with the failure text in a fixed buffer (no heap).
#![allow(clippy::result_large_err)]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use guest_rt::apic::{self, reg};
use guest_rt::cpu;
use guest_rt::report::{check, Detail};
use guest_rt::smp::{self, VcpuBoot};
use guest_rt::trap::GP;
use guest_rt::{detail, say};

guest_rt::smp_entry!(main);

type Check = Result<(), Detail>;

const SELF_IPI_VECTOR: u8 = 0x40;
const TIMER_VECTOR: u8 = 0x41;
const IPI_VECTOR: u8 = 0x43;
const X2_SELF_VECTOR: u8 = 0x44;
const TPR_VECTOR: u8 = 0x45;
const UART_VECTOR: u8 = 0x46;
/// The start-up vector: vCPU 1 starts at 0x0A000 (SDM Vol. 3A §9.4.4.1: CS = vector << 8).
const SIPI_VECTOR: u8 = 0x0A;
const TRAMPOLINE: u64 = 0xA000;
const TRAMPOLINE_MARK: u64 = 0xA100;
/// Long enough for any exit round trip in Bochs (ticks = instructions there).
const WAIT: u64 = 200_000_000;

static SELF_IPIS: AtomicU32 = AtomicU32::new(0);
static SELF_IPI_IN_ISR: AtomicBool = AtomicBool::new(false);
static TIMER_FIRES: AtomicU32 = AtomicU32::new(0);
static TIMER_LAST_TSC: AtomicU64 = AtomicU64::new(0);
static TPR_IPIS: AtomicU32 = AtomicU32::new(0);
static X2_IPIS: AtomicU32 = AtomicU32::new(0);
static UART_IRQS: AtomicU32 = AtomicU32::new(0);
/// IPIs vCPU 1 took.
static REMOTE_IPIS: AtomicU32 = AtomicU32::new(0);
static VCPU1_READY: AtomicBool = AtomicBool::new(false);
/// vCPU 0 switched its APIC to x2APIC mode: its handlers end with the EOI MSR.
static X2APIC: AtomicBool = AtomicBool::new(false);

fn eoi() {
    if X2APIC.load(Ordering::Relaxed) {
        let _ = apic::x2_write(apic::x2apic_msr(reg::EOI), 0);
    } else {
        apic::write(reg::EOI, 0);
    }
}

#[no_mangle]
extern "C" fn on_self_ipi() {
    SELF_IPI_IN_ISR.store(
        apic::vector_bit(reg::ISR0, SELF_IPI_VECTOR),
        Ordering::Relaxed,
    );
    SELF_IPIS.fetch_add(1, Ordering::Relaxed);
    eoi();
}

#[no_mangle]
extern "C" fn on_timer() {
    TIMER_LAST_TSC.store(cpu::rdtsc(), Ordering::Relaxed);
    TIMER_FIRES.fetch_add(1, Ordering::Relaxed);
    eoi();
}

#[no_mangle]
extern "C" fn on_tpr_ipi() {
    TPR_IPIS.fetch_add(1, Ordering::Relaxed);
    eoi();
}

#[no_mangle]
extern "C" fn on_x2_ipi() {
    X2_IPIS.fetch_add(1, Ordering::Relaxed);
    eoi();
}

#[no_mangle]
extern "C" fn on_uart() {
    UART_IRQS.fetch_add(1, Ordering::Relaxed);
    // Reading IIR acknowledges the transmitter-empty interrupt; IER 0 stops the next one
    // (PC16550D datasheet, IIR and IER).
    let _ = cpu::inb(0x3FA);
    cpu::outb(0x3F9, 0);
    eoi();
}

/// vCPU 1's handler: its own APIC stays in xAPIC mode.
#[no_mangle]
extern "C" fn on_remote_ipi() {
    REMOTE_IPIS.fetch_add(1, Ordering::Relaxed);
    apic::write(reg::EOI, 0);
}

guest_rt::irq_stub!(self_ipi_stub, on_self_ipi);
guest_rt::irq_stub!(timer_stub, on_timer);
guest_rt::irq_stub!(tpr_stub, on_tpr_ipi);
guest_rt::irq_stub!(x2_stub, on_x2_ipi);
guest_rt::irq_stub!(remote_stub, on_remote_ipi);
guest_rt::irq_stub!(uart_stub, on_uart);

/// Lets pending interrupts in: STI; NOP; CLI (the STI shadow covers the NOP only).
fn window() {
    // SAFETY: every vector that can arrive has a handler installed.
    unsafe { core::arch::asm!("sti", "nop", "nop", "cli", options(nomem, nostack)) };
}

/// Sleeps with interrupts on until `done()` or the timeout; whether `done()` held.
fn sleep_until(mut done: impl FnMut() -> bool) -> bool {
    let start = cpu::rdtsc();
    while !done() {
        if cpu::rdtsc().wrapping_sub(start) > WAIT {
            return done();
        }
        // SAFETY: as in `window`; HLT returns at the next interrupt.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
    true
}

fn main(boot: VcpuBoot) -> ! {
    if boot.vcpu != 0 {
        vcpu1();
    }
    guest_rt::trap::init();
    guest_rt::report::set_name("apic");
    // SAFETY: the stubs save every caller-saved register and end with IRETQ.
    unsafe {
        guest_rt::trap::set_interrupt_gate(SELF_IPI_VECTOR, self_ipi_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(TIMER_VECTOR, timer_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(TPR_VECTOR, tpr_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(X2_SELF_VECTOR, x2_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(IPI_VECTOR, remote_stub as *const () as u64);
        guest_rt::trap::set_interrupt_gate(UART_VECTOR, uart_stub as *const () as u64);
    }
    smp::release_others();
    say!("vcpus={}", boot.vcpus);

    check("apic-cpuid", cpuid_apic());
    check("apic-base", apic_base());
    check("apic-id-version", id_version());
    apic::write(reg::SVR, apic::SVR_ENABLE | apic::SPURIOUS_VECTOR);
    check("apic-self-ipi", self_ipi());
    check("apic-tpr-masks", tpr_masks());
    check("apic-esr-illegal-vector", esr_illegal_vector());
    let ratio = tsc_per_timer_tick();
    check("apic-timer-one-shot", timer_one_shot(ratio));
    check("apic-timer-periodic", timer_periodic(ratio));
    check("apic-timer-tsc-deadline", timer_tsc_deadline());
    check("ioapic-version", ioapic_version());
    check("ioapic-uart-interrupt", ioapic_uart_interrupt());
    if boot.vcpus > 1 {
        check("apic-ipi-physical", ipi_physical());
        check("apic-ipi-logical", ipi_logical());
        check("apic-ipi-all-but-self", ipi_all_but_self());
    }
    check("x2apic-enable", x2apic_enable());
    check("x2apic-self-ipi", x2apic_self_ipi());
    check("x2apic-gp", x2apic_gp());
    check("x2apic-timer-one-shot", x2apic_timer(ratio));
    if boot.vcpus > 1 {
        check("x2apic-ipi", x2apic_ipi());
        check("apic-init-sipi", init_sipi());
    }
    guest_rt::report::done()
}

/// vCPU 1: enables its APIC, sets its logical ID (flat model, bit 1), and takes IPIs until
/// INIT takes it away from here.
fn vcpu1() -> ! {
    smp::wait_for_start();
    apic::write(reg::SVR, apic::SVR_ENABLE | apic::SPURIOUS_VECTOR);
    apic::write(reg::DFR, 0xFFFF_FFFF);
    apic::write(reg::LDR, 0x02 << 24);
    VCPU1_READY.store(true, Ordering::Release);
    loop {
        // SAFETY: IPI_VECTOR's handler is installed in the shared IDT.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

fn cpuid_apic() -> Check {
    let l1 = cpu::cpuid(1, 0);
    if l1.edx & (1 << 9) == 0 {
        return Err(detail!("CPUID.1:EDX.APIC is 0 (edx={:#x})", l1.edx));
    }
    if l1.ecx & (1 << 21) == 0 {
        return Err(detail!("CPUID.1:ECX.x2APIC is 0 (ecx={:#x})", l1.ecx));
    }
    if l1.ebx >> 24 != 0 {
        return Err(detail!("vCPU 0's initial APIC ID is {}", l1.ebx >> 24));
    }
    Ok(())
}

fn apic_base() -> Check {
    let base = cpu::rdmsr(apic::IA32_APIC_BASE).map_err(|f| detail!("RDMSR raised {f}"))?;
    let want = apic::XAPIC_BASE | apic::APIC_BASE_EN | apic::APIC_BASE_BSP;
    if base == want {
        Ok(())
    } else {
        Err(detail!("IA32_APIC_BASE = {base:#x}, expected {want:#x}"))
    }
}

fn id_version() -> Check {
    let id = apic::read(reg::ID) >> 24;
    let version = apic::read(reg::VERSION);
    // SDM Vol. 3A §11.4.8: version 0x1X is an integrated APIC; bits 23:16 the last LVT entry.
    if id != 0 || version & 0xF0 != 0x10 || (version >> 16) & 0xFF < 5 {
        return Err(detail!("ID register {id}, version register {version:#x}"));
    }
    say!("apic: id={id} version={version:#x}");
    Ok(())
}

fn self_ipi() -> Check {
    apic::write(reg::ICR_LOW, apic::ICR_SELF | u32::from(SELF_IPI_VECTOR));
    window();
    let n = SELF_IPIS.load(Ordering::Relaxed);
    if n != 1 {
        return Err(detail!("{n} self-IPIs delivered, expected 1"));
    }
    if !SELF_IPI_IN_ISR.load(Ordering::Relaxed) {
        return Err(detail!(
            "ISR bit of vector {SELF_IPI_VECTOR:#x} clear in its handler"
        ));
    }
    if apic::vector_bit(reg::ISR0, SELF_IPI_VECTOR) {
        return Err(detail!("ISR bit still set after EOI"));
    }
    Ok(())
}

fn tpr_masks() -> Check {
    // Class 5 blocks vector 0x45 (class 4) (SDM Vol. 3A §11.8.3.1).
    apic::write(reg::TPR, 0x50);
    apic::write(reg::ICR_LOW, apic::ICR_SELF | u32::from(TPR_VECTOR));
    window();
    let blocked = TPR_IPIS.load(Ordering::Relaxed);
    let in_irr = apic::vector_bit(reg::IRR0, TPR_VECTOR);
    let ppr = apic::read(reg::PPR);
    apic::write(reg::TPR, 0);
    window();
    let after = TPR_IPIS.load(Ordering::Relaxed);
    if blocked != 0 || !in_irr || ppr & 0xF0 != 0x50 || after != 1 {
        return Err(detail!(
            "with TPR 0x50: {blocked} delivered, in IRR {in_irr}, PPR {ppr:#x}; after TPR 0: {after}"
        ));
    }
    Ok(())
}

fn esr_illegal_vector() -> Check {
    // Vector 3 is illegal for a fixed IPI (SDM Vol. 3A §11.5.2): nothing is sent, the ESR
    // records it once written (the write latches the errors, §11.5.3).
    apic::write(reg::ESR, 0);
    apic::write(reg::ICR_LOW, apic::ICR_SELF | 3);
    apic::write(reg::ESR, 0);
    let esr = apic::read(reg::ESR);
    if esr & apic::ESR_SEND_ILLEGAL_VECTOR == 0 {
        return Err(detail!("ESR = {esr:#x} after a fixed IPI with vector 3"));
    }
    apic::write(reg::ESR, 0);
    let cleared = apic::read(reg::ESR);
    if cleared != 0 {
        return Err(detail!("ESR = {cleared:#x} after a second write"));
    }
    Ok(())
}

/// TSC ticks per timer tick at divide-by-1: the timer counts the core crystal clock that
/// CPUID 0x15 describes (TSC = crystal × EBX / EAX).
fn tsc_per_timer_tick() -> u64 {
    let l = cpu::cpuid(0x15, 0);
    u64::from(l.ebx.checked_div(l.eax).unwrap_or(1).max(1))
}

fn timer_one_shot(ratio: u64) -> Check {
    const COUNT: u32 = 200_000;
    TIMER_FIRES.store(0, Ordering::Relaxed);
    apic::write(reg::TIMER_DIVIDE, apic::DIVIDE_BY_1);
    apic::write(reg::LVT_TIMER, u32::from(TIMER_VECTOR));
    let start = cpu::rdtsc();
    apic::write(reg::TIMER_INITIAL, COUNT);
    let ok = sleep_until(|| TIMER_FIRES.load(Ordering::Relaxed) >= 1);
    let elapsed = TIMER_LAST_TSC.load(Ordering::Relaxed).wrapping_sub(start);
    // Nothing more comes: a one-shot timer fires once.
    let settle = cpu::rdtsc();
    while cpu::rdtsc() - settle < 3 * u64::from(COUNT) * ratio {
        window();
    }
    let fires = TIMER_FIRES.load(Ordering::Relaxed);
    let current = apic::read(reg::TIMER_CURRENT);
    let want = u64::from(COUNT) * ratio;
    say!("apic: one-shot count={COUNT} fired after {elapsed} TSC ticks ({want} expected)");
    if !ok || fires != 1 || current != 0 || elapsed < want || elapsed > want + want / 2 {
        return Err(detail!(
            "fired {fires} times, current count {current}, after {elapsed} ticks ({want} expected)"
        ));
    }
    Ok(())
}

fn timer_periodic(ratio: u64) -> Check {
    const COUNT: u32 = 100_000;
    const PERIODS: u32 = 5;
    TIMER_FIRES.store(0, Ordering::Relaxed);
    apic::write(
        reg::LVT_TIMER,
        apic::TIMER_PERIODIC | u32::from(TIMER_VECTOR),
    );
    let start = cpu::rdtsc();
    apic::write(reg::TIMER_INITIAL, COUNT);
    let ok = sleep_until(|| TIMER_FIRES.load(Ordering::Relaxed) >= PERIODS);
    let elapsed = TIMER_LAST_TSC.load(Ordering::Relaxed).wrapping_sub(start);
    // Stop it: a zero initial count (SDM Vol. 3A §11.5.4).
    apic::write(reg::TIMER_INITIAL, 0);
    apic::write(reg::LVT_TIMER, apic::LVT_MASKED | u32::from(TIMER_VECTOR));
    let want = u64::from(COUNT * PERIODS) * ratio;
    say!("apic: periodic {PERIODS} periods in {elapsed} TSC ticks ({want} expected)");
    if !ok || elapsed < want || elapsed > want + want / 4 {
        return Err(detail!(
            "{} periods after {elapsed} ticks ({want} expected)",
            TIMER_FIRES.load(Ordering::Relaxed)
        ));
    }
    Ok(())
}

fn timer_tsc_deadline() -> Check {
    const DELAY: u64 = 300_000;
    if cpu::cpuid(1, 0).ecx & (1 << 24) == 0 {
        say!("apic: TSC-deadline not offered (the host CPU lacks it)");
        return Ok(());
    }
    TIMER_FIRES.store(0, Ordering::Relaxed);
    apic::write(
        reg::LVT_TIMER,
        apic::TIMER_TSC_DEADLINE | u32::from(TIMER_VECTOR),
    );
    let deadline = cpu::rdtsc() + DELAY;
    // SAFETY: arming this vCPU's virtual timer has no other effect.
    unsafe { cpu::wrmsr(apic::IA32_TSC_DEADLINE, deadline) }
        .map_err(|f| detail!("WRMSR IA32_TSC_DEADLINE raised {f}"))?;
    let ok = sleep_until(|| TIMER_FIRES.load(Ordering::Relaxed) >= 1);
    let at = TIMER_LAST_TSC.load(Ordering::Relaxed);
    let after = cpu::rdmsr(apic::IA32_TSC_DEADLINE).map_err(|f| detail!("RDMSR raised {f}"))?;
    apic::write(reg::LVT_TIMER, apic::LVT_MASKED | u32::from(TIMER_VECTOR));
    if !ok || at < deadline || at > deadline + DELAY / 2 || after != 0 {
        return Err(detail!(
            "fired at {at} for deadline {deadline}, MSR reads {after:#x} after"
        ));
    }
    Ok(())
}

fn ioapic_version() -> Check {
    // 82093AA §3.2.2: version 0x11, maximum redirection entry 23.
    let v = apic::ioapic_read(1);
    if v == 0x0017_0011 {
        Ok(())
    } else {
        Err(detail!("IOAPICVER = {v:#x}, expected 0x170011"))
    }
}

/// COM1's IRQ 4 through IOAPIC pin 4 (edge, fixed, physical APIC ID 0) with the 8259A
/// masked: the transmitter-empty interrupt arrives once, on the vector the redirection
/// entry names (82093AA §3.2.4).
fn ioapic_uart_interrupt() -> Check {
    cpu::outb(0x21, 0xFF);
    cpu::outb(0xA1, 0xFF);
    apic::ioapic_write(0x10 + 2 * 4 + 1, 0);
    apic::ioapic_write(0x10 + 2 * 4, u32::from(UART_VECTOR));
    let entry = apic::ioapic_read(0x10 + 2 * 4);
    // MCR OUT2 gates the 16550's interrupt output; IER bit 1: transmitter holding empty.
    cpu::outb(0x3FC, 0x08);
    cpu::outb(0x3F9, 0x02);
    let ok = sleep_until(|| UART_IRQS.load(Ordering::Relaxed) >= 1);
    apic::ioapic_write(0x10 + 2 * 4, apic::LVT_MASKED | u32::from(UART_VECTOR));
    let n = UART_IRQS.load(Ordering::Relaxed);
    if ok && n == 1 && entry == u32::from(UART_VECTOR) {
        Ok(())
    } else {
        Err(detail!("{n} UART interrupts (entry {entry:#x})"))
    }
}

fn wait_remote(n: u32) -> bool {
    smp::wait_until(WAIT, || REMOTE_IPIS.load(Ordering::Relaxed) >= n)
}

fn ipi_physical() -> Check {
    if !smp::wait_until(WAIT, || VCPU1_READY.load(Ordering::Acquire)) {
        return Err(detail!("vCPU 1 never enabled its APIC"));
    }
    apic::send_ipi(1, u32::from(IPI_VECTOR));
    if wait_remote(1) {
        Ok(())
    } else {
        Err(detail!(
            "vCPU 1 took {} IPIs",
            REMOTE_IPIS.load(Ordering::Relaxed)
        ))
    }
}

fn ipi_logical() -> Check {
    // Flat model: MDA 0x02 matches vCPU 1's LDR bit (SDM Vol. 3A §11.6.2.2).
    apic::write(reg::DFR, 0xFFFF_FFFF);
    apic::send_ipi(0x02, apic::ICR_LOGICAL | u32::from(IPI_VECTOR));
    if wait_remote(2) {
        Ok(())
    } else {
        Err(detail!(
            "vCPU 1 took {} IPIs",
            REMOTE_IPIS.load(Ordering::Relaxed)
        ))
    }
}

fn ipi_all_but_self() -> Check {
    let own = SELF_IPIS.load(Ordering::Relaxed);
    apic::write(reg::ICR_LOW, apic::ICR_ALL_BUT_SELF | u32::from(IPI_VECTOR));
    window();
    if !wait_remote(3) {
        return Err(detail!(
            "vCPU 1 took {} IPIs",
            REMOTE_IPIS.load(Ordering::Relaxed)
        ));
    }
    if SELF_IPIS.load(Ordering::Relaxed) != own || apic::vector_bit(reg::IRR0, IPI_VECTOR) {
        return Err(detail!("the sender received its own all-but-self IPI"));
    }
    Ok(())
}

fn x2apic_enable() -> Check {
    let base = cpu::rdmsr(apic::IA32_APIC_BASE).map_err(|f| detail!("RDMSR raised {f}"))?;
    // SAFETY: xAPIC → x2APIC is a legal transition (SDM Vol. 3A §11.12.5).
    unsafe { cpu::wrmsr(apic::IA32_APIC_BASE, base | apic::APIC_BASE_EXTD) }
        .map_err(|f| detail!("entering x2APIC mode raised {f}"))?;
    X2APIC.store(true, Ordering::Relaxed);
    let id = apic::x2_read(apic::x2apic_msr(reg::ID)).map_err(|f| detail!("ID: {f}"))?;
    let version =
        apic::x2_read(apic::x2apic_msr(reg::VERSION)).map_err(|f| detail!("version: {f}"))?;
    // SDM Vol. 3A §11.12.10.2: the logical ID is derived from the x2APIC ID.
    let ldr = apic::x2_read(apic::x2apic_msr(reg::LDR)).map_err(|f| detail!("LDR: {f}"))?;
    if id != 0 || version & 0xF0 != 0x10 || ldr != 1 {
        return Err(detail!(
            "x2APIC ID {id}, version {version:#x}, LDR {ldr:#x}"
        ));
    }
    Ok(())
}

fn x2apic_self_ipi() -> Check {
    apic::x2_write(apic::X2APIC_SELF_IPI, u64::from(X2_SELF_VECTOR))
        .map_err(|f| detail!("SELF IPI raised {f}"))?;
    window();
    let n = X2_IPIS.load(Ordering::Relaxed);
    if n == 1 {
        Ok(())
    } else {
        Err(detail!("{n} x2APIC self-IPIs delivered, expected 1"))
    }
}

fn x2apic_gp() -> Check {
    let gp = |r: Result<(), guest_rt::trap::Fault>| matches!(r, Err(f) if f.vector == GP);
    // SDM Vol. 3A §11.12.1.2-3: EOI is write-only, the ID read-only, EOI takes only 0.
    if !matches!(apic::x2_read(apic::x2apic_msr(reg::EOI)), Err(f) if f.vector == GP) {
        return Err(detail!("RDMSR of the EOI register did not raise #GP"));
    }
    if !gp(apic::x2_write(apic::x2apic_msr(reg::ID), 5)) {
        return Err(detail!("WRMSR of the x2APIC ID did not raise #GP"));
    }
    if !gp(apic::x2_write(apic::x2apic_msr(reg::EOI), 1)) {
        return Err(detail!("a non-zero EOI did not raise #GP"));
    }
    if !gp(apic::x2_write(apic::x2apic_msr(reg::DFR), 0)) {
        return Err(detail!("the DFR exists in x2APIC mode"));
    }
    let base = cpu::rdmsr(apic::IA32_APIC_BASE).map_err(|f| detail!("RDMSR raised {f}"))?;
    // SAFETY: the write is refused (x2APIC → xAPIC is illegal, SDM Vol. 3A §11.12.5).
    let back = unsafe { cpu::wrmsr(apic::IA32_APIC_BASE, base & !apic::APIC_BASE_EXTD) };
    if !gp(back) {
        return Err(detail!("x2APIC → xAPIC did not raise #GP"));
    }
    Ok(())
}

fn x2apic_timer(ratio: u64) -> Check {
    const COUNT: u64 = 150_000;
    TIMER_FIRES.store(0, Ordering::Relaxed);
    let w = |r: u32, v: u64| apic::x2_write(apic::x2apic_msr(r), v);
    w(reg::TIMER_DIVIDE, u64::from(apic::DIVIDE_BY_1)).map_err(|f| detail!("TDCR: {f}"))?;
    w(reg::LVT_TIMER, u64::from(TIMER_VECTOR)).map_err(|f| detail!("LVTT: {f}"))?;
    let start = cpu::rdtsc();
    w(reg::TIMER_INITIAL, COUNT).map_err(|f| detail!("TMICT: {f}"))?;
    let ok = sleep_until(|| TIMER_FIRES.load(Ordering::Relaxed) >= 1);
    let elapsed = TIMER_LAST_TSC.load(Ordering::Relaxed).wrapping_sub(start);
    let want = COUNT * ratio;
    if !ok || elapsed < want || elapsed > want + want / 2 {
        return Err(detail!("fired after {elapsed} ticks ({want} expected)"));
    }
    Ok(())
}

fn x2apic_ipi() -> Check {
    let before = REMOTE_IPIS.load(Ordering::Relaxed);
    // The 64-bit ICR: destination in bits 63:32 (SDM Vol. 3A §11.12.9).
    apic::x2_write(
        apic::x2apic_msr(reg::ICR_LOW),
        (1 << 32) | u64::from(IPI_VECTOR),
    )
    .map_err(|f| detail!("ICR raised {f}"))?;
    if wait_remote(before + 1) {
        Ok(())
    } else {
        Err(detail!(
            "vCPU 1 took {} IPIs",
            REMOTE_IPIS.load(Ordering::Relaxed)
        ))
    }
}

/// INIT, then two start-up IPIs (SDM Vol. 3A §9.4.4.1): vCPU 1 runs the trampoline once.
fn init_sipi() -> Check {
    // inc byte [0xA100]; cli; hlt; jmp $-1 (16-bit code, DS = 0 after the SIPI).
    let code: [u8; 8] = [0xFE, 0x06, 0x00, 0xA1, 0xFA, 0xF4, 0xEB, 0xFD];
    // SAFETY: 0xA000-0xA1FF is free guest RAM for an elf64 guest (docs/vm-platform.md).
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), TRAMPOLINE as *mut u8, code.len());
        core::ptr::write_volatile(TRAMPOLINE_MARK as *mut u8, 0);
    }
    let icr = |low: u32| apic::x2_write(apic::x2apic_msr(reg::ICR_LOW), (1 << 32) | u64::from(low));
    icr(apic::ICR_INIT | apic::ICR_ASSERT | apic::ICR_LEVEL).map_err(|f| detail!("INIT: {f}"))?;
    for _ in 0..2 {
        icr(apic::ICR_STARTUP | u32::from(SIPI_VECTOR)).map_err(|f| detail!("SIPI: {f}"))?;
        let start = cpu::rdtsc();
        while cpu::rdtsc() - start < 2_000_000 {
            core::hint::spin_loop();
        }
    }
    // SAFETY: the mark is guest RAM the trampoline writes.
    let mark = || unsafe { core::ptr::read_volatile(TRAMPOLINE_MARK as *const u8) };
    smp::wait_until(WAIT, || mark() != 0);
    let runs = mark();
    if runs == 1 {
        Ok(())
    } else {
        Err(detail!("the trampoline ran {runs} times, expected 1"))
    }
}
