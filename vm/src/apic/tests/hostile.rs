//! Hostile input: hundreds of thousands of random register writes and reads, MSR accesses,
//! mode switches, interrupts and time steps. Nothing panics and the invariants hold after
//! every step: PPR in the page is the architectural PPR, no vector below 16 is ever
//! requested or in service, pending() obeys priority, the mode matches IA32_APIC_BASE.

use super::*;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

const STEPS: u32 = 300_000;

fn check(a: &Apic) {
    assert_eq!(word(a, 0xA0), u32::from(a.ppr()), "PPR in the page");
    assert_eq!(word(a, 0x200) & 0xFFFF, 0, "IRR vectors 0-15");
    assert_eq!(word(a, 0x100) & 0xFFFF, 0, "ISR vectors 0-15");
    assert!(word(a, 0x80) <= 0xFF, "TPR 8 bits");
    if let Some(v) = a.pending() {
        assert!(v >= 16 && v >> 4 > a.ppr() >> 4, "pending {v:#x}");
    }
    let base = a.apic_base();
    assert!(
        base & APIC_BASE_EXTD == 0 || base & APIC_BASE_EN != 0,
        "EXTD without EN"
    );
    assert_eq!(base & 0x2FF, 0, "reserved base bits");
}

/// Run `STEPS` random operations from `seed`; returns the final stats and page.
fn storm(seed: u64) -> (ApicStats, alloc::vec::Vec<u32>) {
    let mut rng = XorShift(seed);
    let mut a = apic(1, true);
    let mut now = 0u64;
    let bases = [
        DEFAULT_APIC_BASE | APIC_BASE_EN,
        DEFAULT_APIC_BASE | APIC_BASE_EN | APIC_BASE_EXTD,
        DEFAULT_APIC_BASE,
        DEFAULT_APIC_BASE | APIC_BASE_EXTD,
    ];
    for step in 0..STEPS {
        let r = rng.next();
        let value = rng.next();
        // Mostly forward in small steps; sometimes backwards (a vCPU moved to a CPU whose
        // TSC is behind) or far ahead.
        now = match r & 0x3FF {
            0 => now.saturating_sub(r >> 44),
            1 => now.saturating_add(r >> 4),
            _ => now.saturating_add(r >> 54),
        };
        // Alternate xAPIC and x2APIC epochs, and keep the APIC mostly software-enabled so
        // the storm reaches the interesting paths (random writes disable it often).
        if step % 2048 == 0 {
            let _ = a.set_apic_base(DEFAULT_APIC_BASE);
            let _ = a.set_apic_base(bases[0]);
            if (step / 2048) % 2 == 1 {
                let _ = a.set_apic_base(bases[1]);
            }
        }
        if step % 64 == 0 {
            let _ = a.msr_write(0x80F, 0x1FF, now);
            a.mmio_write(0xF0, 0x1FF, now);
        }
        let offset = ((value >> 40) as u16 & 0xFFC) % PAGE_BYTES;
        let msr = X2APIC_MSR_BASE + (value >> 48) as u32 % 0x100;
        match r % 12 {
            0 | 1 => {
                a.mmio_write(offset & !0xF, value as u32, now);
            }
            2 => {
                a.mmio_read(offset, now);
            }
            3 | 4 => {
                let _ = a.msr_write(msr, value >> (r >> 58), now);
            }
            5 => {
                let _ = a.msr_read(msr, now);
            }
            6 => {
                a.accept(value as u8, value & 0x100 != 0);
            }
            7 => {
                a.acknowledge();
            }
            8 => {
                a.advance(now);
            }
            9 => {
                a.apic_write(offset & !0xF, now);
            }
            10 => {
                a.eoi_virtualized(value as u8);
                a.set_tsc_deadline(now.wrapping_add(value >> 50), now);
            }
            _ if value.is_multiple_of(16) => {
                let _ =
                    a.set_apic_base(bases[value as usize % bases.len()] | (value & 0x1_0000_0000));
                if value & 0x1000 != 0 {
                    a.reset_for_init();
                }
            }
            _ => {
                a.mmio_write(0xB0, 0, now);
                let _ = a.msr_write(0x80B, 0, now);
            }
        }
        check(&a);
    }
    (a.stats(), a.page().regs().to_vec())
}

#[test]
fn random_accesses_in_every_mode_keep_the_invariants() {
    let (stats, page) = storm(0x9E37_79B9_7F4A_7C15);
    // Every path was reached.
    assert!(stats.msr_faults > 1000, "{stats:?}");
    assert!(stats.illegal_accesses > 1000, "{stats:?}");
    assert!(stats.ipis_sent > 50, "{stats:?}");
    assert!(stats.eois > 10_000 && stats.level_eois > 1000, "{stats:?}");
    assert!(stats.timer_fires > 50, "{stats:?}");
    assert!(stats.accepted > 1000, "{stats:?}");
    assert!(stats.illegal_vectors > 100, "{stats:?}");
    // Deterministic: the same seed gives the same machine.
    let (again, page_again) = storm(0x9E37_79B9_7F4A_7C15);
    assert_eq!(stats, again);
    assert_eq!(page, page_again);
}

#[test]
fn a_second_seed() {
    let (stats, _) = storm(0xDEAD_BEEF_1234_5678);
    assert!(
        stats.msr_faults > 1000 && stats.accepted > 1000,
        "{stats:?}"
    );
}
