//! MCA with zero banks, TSC_ADJUST with the TSC, MISC_ENABLE (issue 13 item 6).

use super::*;

fn policy() -> MsrPolicy {
    MsrPolicy::new(MsrConfig::new(2_000_000_000))
}

fn ctx(guest_tsc: u64) -> MsrContext {
    MsrContext {
        efer: 0,
        cr0: 0,
        guest_tsc,
    }
}

#[test]
fn zero_bank_machine_check_architecture() {
    let p = policy();
    let mut s = MsrState::new(&p, true);
    let c = ctx(0);
    assert_eq!(
        p.rdmsr(&s, 0x179, &c),
        MsrAction::Read(0),
        "MCG_CAP: 0 banks"
    );
    assert_eq!(p.rdmsr(&s, 0x17a, &c), MsrAction::Read(0));
    assert_eq!(p.rdmsr(&s, 0x17b, &c), MsrAction::InjectGp, "no MCG_CTL");
    for bank in [0x400, 0x401, 0x402, 0x403, 0x47f, 0x280] {
        assert_eq!(p.rdmsr(&s, bank, &c), MsrAction::InjectGp, "{bank:#x}");
    }
    assert_eq!(
        p.wrmsr(&mut s, 0x179, 0, &c),
        MsrAction::InjectGp,
        "read-only"
    );
    assert_eq!(p.wrmsr(&mut s, 0x17a, 0b101, &c), MsrAction::Written);
    assert_eq!(p.rdmsr(&s, 0x17a, &c), MsrAction::Read(0b101));
    assert_eq!(p.wrmsr(&mut s, 0x17a, 1 << 4, &c), MsrAction::InjectGp);
    assert_eq!(p.rdmsr(&s, 0, &c), MsrAction::Read(0), "P5_MC_ADDR");
    let mut off = MsrConfig::new(1);
    off.mca = false;
    let p = MsrPolicy::new(off);
    assert_eq!(p.rdmsr(&s, 0x179, &c), MsrAction::InjectGp, "hidden: #GP");
}

#[test]
fn tsc_adjust_and_tsc_writes_move_the_guest_tsc_together() {
    let p = policy();
    let mut s = MsrState::new(&p, true);
    assert_eq!(p.rdmsr(&s, 0x3b, &ctx(500)), MsrAction::Read(0));
    // TSC_ADJUST += 1000 moves the TSC by +1000.
    assert_eq!(
        p.wrmsr(&mut s, 0x3b, 1000, &ctx(500)),
        MsrAction::TscOffset(1000)
    );
    assert_eq!(p.rdmsr(&s, 0x3b, &ctx(0)), MsrAction::Read(1000));
    // The guest now reads host + 1000; writing TSC = 10_000 when it reads 2_500 adds 7_500
    // to both the offset and TSC_ADJUST.
    assert_eq!(
        p.wrmsr(&mut s, 0x10, 10_000, &ctx(2_500)),
        MsrAction::TscOffset(8_500)
    );
    assert_eq!(p.rdmsr(&s, 0x3b, &ctx(0)), MsrAction::Read(8_500));
    // Moving backwards wraps (two's complement), as the SDM's signed adjustment.
    assert_eq!(p.wrmsr(&mut s, 0x3b, 0, &ctx(0)), MsrAction::TscOffset(0));
    assert_eq!(
        p.wrmsr(&mut s, 0x10, 0, &ctx(100)),
        MsrAction::TscOffset(100u64.wrapping_neg())
    );
    assert_eq!(
        p.rdmsr(&s, 0x3b, &ctx(0)),
        MsrAction::Read(100u64.wrapping_neg())
    );
}

#[test]
fn misc_enable_writable_read_only_and_refused_bits() {
    let p = policy();
    let mut s = MsrState::new(&p, true);
    let c = ctx(0);
    let reset = 0x1801;
    assert_eq!(p.rdmsr(&s, 0x1a0, &c), MsrAction::Read(reset));
    // Fast strings off, TCC, limit CPUID and xTPR disable on; RO bits written as 0 stay.
    let v = (1 << 3) | (1 << 22) | (1 << 23);
    assert_eq!(p.wrmsr(&mut s, 0x1a0, v, &c), MsrAction::Written);
    assert_eq!(p.rdmsr(&s, 0x1a0, &c), MsrAction::Read(v | 0x1800));
    assert_ne!(s.misc_enable & MISC_ENABLE_LIMIT_CPUID, 0);
    // EIST (16), MONITOR FSM (18), XD disable (34) and reserved bits: #GP, nothing changes.
    for bit in [1u32, 16, 18, 34, 38, 63] {
        assert_eq!(
            p.wrmsr(&mut s, 0x1a0, reset | (1 << bit), &c),
            MsrAction::InjectGp,
            "bit {bit}"
        );
    }
    assert_eq!(p.rdmsr(&s, 0x1a0, &c), MsrAction::Read(v | 0x1800));
}
