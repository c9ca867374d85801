//! `hostile-apic`: attacks its own interrupt platform (issue 11), with interrupts off
//! throughout, so nothing it provokes is ever delivered to it:
//!
//! 1. 200,000 random writes to every xAPIC register offset (0x000-0x3F0) with random values,
//!    the ICR's delivery mode kept to fixed or lowest-priority (an INIT, NMI or SIPI would
//!    end the attack early; INIT comes last on purpose);
//! 2. x2APIC mode, then 50,000 random WRMSRs and RDMSRs over 0x800-0x8FF (each #GP is caught
//!    and counted; the architectural ones are checked: the guest survives every one);
//! 3. an ICR storm: 20,000 fixed IPIs to APIC ID 0x37 and logical destination 0xF0, which
//!    no vCPU has;
//! 4. an IOAPIC redirection of the UART's pin 4 to vector 3, with the UART's transmitter
//!    interrupt raised: the local APIC refuses the vector and records "receive illegal vector"
//!    in its ESR (SDM Vol. 3A §11.5.3);
//! 5. INIT to itself, which ends the VM (the hypervisor reports it: a reset without firmware).
//!
//! Lines: `PASS <check>` per phase, then the INIT (no `DONE`: the VM ends there).

#![no_std]
#![no_main]

use guest_rt::apic::{self, reg};
use guest_rt::cpu::{self, outb};
use guest_rt::report::{self, fail, pass};
use guest_rt::trap::GP;

guest_rt::entry!(main);

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// ICR low bits 10:8 (delivery mode): keep fixed (000) or lowest priority (001).
const ICR_MODE_MASK: u32 = 0b110 << 8;
/// ICR low bits 19:18 (shorthand) and 11 (logical): any.
const ICR_MSR: u32 = 0x830;

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-apic");
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);

    // 1. Random xAPIC writes.
    for _ in 0..200_000 {
        let r = rng.next();
        let offset = ((r >> 8) as u32 % 0x40) * 0x10;
        let mut value = (r >> 32) as u32;
        if offset == reg::ICR_LOW {
            value &= !ICR_MODE_MASK;
        }
        apic::write(offset, value);
        let _ = apic::read(((r >> 20) as u32 % 0x40) * 0x10);
    }
    pass("xapic-random-writes");

    // 2. x2APIC mode, random MSR accesses.
    let base = cpu::rdmsr(apic::IA32_APIC_BASE).unwrap_or(0);
    if apic::x2_write(
        apic::IA32_APIC_BASE,
        base | apic::APIC_BASE_EN | apic::APIC_BASE_EXTD,
    )
    .is_err()
    {
        fail(
            "x2apic-random-msrs",
            format_args!("entering x2APIC mode raised"),
        );
    } else {
        let mut faults = 0u32;
        let mut other = 0u32;
        for _ in 0..50_000 {
            let r = rng.next();
            let msr = 0x800 + (r as u32 & 0xFF);
            let mut value = rng.next();
            if msr == ICR_MSR {
                value &= !u64::from(ICR_MODE_MASK);
            }
            let result = if r & (1 << 40) == 0 {
                apic::x2_write(msr, value)
            } else {
                apic::x2_read(msr).map(|_| ())
            };
            match result {
                Ok(()) => {}
                Err(f) if f.vector == GP => faults += 1,
                Err(_) => other += 1,
            }
        }
        if other == 0 && faults > 0 {
            pass("x2apic-random-msrs");
            guest_rt::say!("x2apic: 50000 accesses, {faults} #GP");
        } else {
            fail(
                "x2apic-random-msrs",
                format_args!("{faults} #GP, {other} other exceptions"),
            );
        }
    }

    // 3. IPIs to nobody (back in a sane state: software-enabled, x2APIC).
    let _ = apic::x2_write(apic::x2apic_msr(reg::SVR), 0x1FF);
    for i in 0..20_000u64 {
        let icr = if i % 2 == 0 {
            (0x37 << 32) | 0x50
        } else {
            (0xF0 << 32) | u64::from(apic::ICR_LOGICAL) | 0x51
        };
        let _ = apic::x2_write(ICR_MSR, icr);
    }
    pass("ipi-storm-to-nobody");

    // 4. The UART's IRQ 4 through IOAPIC pin 4 to vector 3 (fixed, physical, APIC ID 0).
    let _ = apic::x2_write(apic::x2apic_msr(reg::ESR), 0);
    let _ = apic::x2_write(apic::x2apic_msr(reg::ESR), 0);
    ioapic_write(0x10 + 2 * 4, 3);
    ioapic_write(0x10 + 2 * 4 + 1, 0);
    // MCR OUT2, IER transmitter-empty: the 16550 raises IRQ 4 at once (its THR is empty).
    outb(0x3FC, 0x08);
    outb(0x3F9, 0x02);
    let _ = apic::x2_write(apic::x2apic_msr(reg::ESR), 0);
    let esr = apic::x2_read(apic::x2apic_msr(reg::ESR)).unwrap_or(0);
    outb(0x3F9, 0x00);
    if esr & (1 << 6) != 0 {
        pass("ioapic-illegal-vector-refused");
    } else {
        fail(
            "ioapic-illegal-vector-refused",
            format_args!("ESR = {esr:#x} after an IOAPIC message with vector 3"),
        );
    }

    // 5. INIT to itself: the end.
    guest_rt::say!("sending INIT to itself");
    let _ = apic::x2_write(
        ICR_MSR,
        u64::from(apic::ICR_INIT | apic::ICR_ASSERT | apic::ICR_LEVEL),
    );
    // Not reached: the VM stops at its next entry.
    let mut spins = 0u64;
    while spins < 100_000_000 {
        spins += 1;
        core::hint::spin_loop();
    }
    fail("init-to-itself", format_args!("still running after INIT"));
    report::done()
}

fn ioapic_write(index: u8, value: u32) {
    // SAFETY: the IOAPIC window is identity-mapped; IOREGSEL at +0, IOWIN at +0x10.
    unsafe {
        core::ptr::write_volatile(apic::IOAPIC_BASE as *mut u32, u32::from(index));
        core::ptr::write_volatile((apic::IOAPIC_BASE + 0x10) as *mut u32, value);
    }
}
