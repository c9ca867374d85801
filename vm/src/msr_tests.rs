//! Host tests of the MSR policy (vm::msr).

use super::*;

fn policy() -> MsrPolicy {
    let mut c = MsrConfig::new(2_900_000_000);
    c.variable_mtrrs = 2;
    MsrPolicy::new(c)
}

fn ctx() -> MsrContext {
    MsrContext {
        efer: EFER_LME | EFER_LMA | EFER_SCE,
        cr0: CR0_PG | 1,
        guest_tsc: 12345,
    }
}

#[test]
fn classes() {
    let p = policy();
    assert_eq!(p.classify(0xc000_0080), MsrClass::Vmcs(VmcsMsr::Efer));
    assert_eq!(p.classify(0x277), MsrClass::Vmcs(VmcsMsr::Pat));
    assert_eq!(p.classify(0x174), MsrClass::Vmcs(VmcsMsr::SysenterCs));
    assert_eq!(p.classify(0xc000_0100), MsrClass::Vmcs(VmcsMsr::FsBase));
    for m in [
        0xc000_0081,
        0xc000_0082,
        0xc000_0083,
        0xc000_0084,
        0xc000_0102,
        0xc000_0103,
    ] {
        assert_eq!(p.classify(m), MsrClass::Swapped, "{m:#x}");
    }
    for m in [
        0x1b, 0x3a, 0x34, 0x8b, 0xce, 0x140, 0x1a0, 0xfe, 0x2ff, 0x250, 0x26f, 0x203,
    ] {
        assert_eq!(p.classify(m), MsrClass::Emulated, "{m:#x}");
    }
    for m in 0x480..=0x493 {
        assert_eq!(p.classify(m), MsrClass::Gp, "VMX capability MSR {m:#x}");
    }
    for m in [
        0x204, 0x6e0, 0x802, 0xe7, 0xe8, 0xc1, 0x186, 0x38f, 0x17b, 0x400, 0x48, 0x10a, 0xda0,
    ] {
        assert_eq!(p.classify(m), MsrClass::Gp, "{m:#x}");
    }
    assert_eq!(p.classify(0x4000_0000), MsrClass::Gp);
    assert_eq!(p.classify(u32::MAX), MsrClass::Gp);
}

#[test]
fn emulated_reads() {
    let p = policy();
    let s = MsrState::new(&p, true);
    let c = ctx();
    assert_eq!(p.rdmsr(&s, 0x1b, &c), MsrAction::Read(0xfee0_0100));
    assert_eq!(p.rdmsr(&s, 0x3a, &c), MsrAction::Read(1), "locked, VMX off");
    assert_eq!(p.rdmsr(&s, 0x8b, &c), MsrAction::Read(1 << 32));
    assert_eq!(p.rdmsr(&s, 0xce, &c), MsrAction::Read(29 << 8));
    assert_eq!(p.rdmsr(&s, 0x34, &c), MsrAction::Read(0));
    assert_eq!(p.rdmsr(&s, 0x140, &c), MsrAction::Read(0));
    assert_eq!(p.rdmsr(&s, 0x10, &c), MsrAction::Read(12345));
    assert_eq!(p.rdmsr(&s, 0xfe, &c), MsrAction::Read(0x502));
    assert_eq!(p.rdmsr(&s, 0x2ff, &c), MsrAction::Read(0x806));
    assert_eq!(p.rdmsr(&s, 0x1a0, &c), MsrAction::Read(0x1801));
    assert_eq!(p.rdmsr(&s, 0x79, &c), MsrAction::InjectGp);
    assert_eq!(p.rdmsr(&s, 0x480, &c), MsrAction::InjectGp);
    assert_eq!(
        p.rdmsr(&s, 0x6e0, &c),
        MsrAction::InjectGp,
        "no TSC deadline"
    );
    assert_eq!(
        p.rdmsr(&s, 0xc000_0080, &c),
        MsrAction::ReadVmcs(VmcsMsr::Efer)
    );
    let ap = MsrState::new(&p, false);
    assert_eq!(p.rdmsr(&ap, 0x1b, &c), MsrAction::Read(0xfee0_0000));
}

#[test]
fn vmcs_writes_are_validated() {
    let p = policy();
    let mut s = MsrState::new(&p, true);
    let c = ctx();
    let efer = 0xc000_0080;
    assert_eq!(
        p.wrmsr(&mut s, efer, EFER_LME | EFER_SCE | EFER_NXE, &c),
        MsrAction::WriteVmcs(VmcsMsr::Efer, EFER_LME | EFER_LMA | EFER_SCE | EFER_NXE)
    );
    assert_eq!(
        p.wrmsr(&mut s, efer, EFER_LME | 1 << 12, &c),
        MsrAction::InjectGp
    );
    assert_eq!(
        p.wrmsr(&mut s, efer, EFER_SCE, &c),
        MsrAction::InjectGp,
        "LME with PG"
    );
    let boot = MsrContext::default();
    assert_eq!(
        p.wrmsr(&mut s, efer, EFER_LME | EFER_LMA, &boot),
        MsrAction::WriteVmcs(VmcsMsr::Efer, EFER_LME)
    );
    assert_eq!(
        p.wrmsr(&mut s, 0x277, 0x0007_0406_0007_0406, &c),
        MsrAction::WriteVmcs(VmcsMsr::Pat, 0x0007_0406_0007_0406)
    );
    assert_eq!(
        p.wrmsr(&mut s, 0x277, 0x0007_0406_0007_0402, &c),
        MsrAction::InjectGp
    );
    assert_eq!(
        p.wrmsr(&mut s, 0x1d9, 0b11, &c),
        MsrAction::WriteVmcs(VmcsMsr::DebugCtl, 0b10)
    );
    assert_eq!(p.wrmsr(&mut s, 0x1d9, 1 << 20, &c), MsrAction::InjectGp);
    assert_eq!(
        p.wrmsr(&mut s, 0xc000_0100, 0xffff_8000_0000_0000, &c),
        MsrAction::WriteVmcs(VmcsMsr::FsBase, 0xffff_8000_0000_0000)
    );
    assert_eq!(
        p.wrmsr(&mut s, 0xc000_0101, 0x0000_8000_0000_0000, &c),
        MsrAction::InjectGp,
        "non-canonical"
    );
    assert_eq!(
        p.wrmsr(&mut s, 0x176, 0x8000_0000_0000_0000, &c),
        MsrAction::InjectGp
    );
}

#[test]
fn swapped_and_emulated_writes() {
    let p = policy();
    let mut s = MsrState::new(&p, true);
    let c = ctx();
    assert_eq!(
        p.wrmsr(&mut s, 0xc000_0082, 0xffff_ffff_8100_0000, &c),
        MsrAction::Written
    );
    assert_eq!(
        p.rdmsr(&s, 0xc000_0082, &c),
        MsrAction::Read(0xffff_ffff_8100_0000)
    );
    assert_eq!(
        p.wrmsr(&mut s, 0xc000_0082, 0x1234_0000_0000_0000, &c),
        MsrAction::InjectGp
    );
    assert_eq!(
        p.wrmsr(&mut s, 0xc000_0084, 1 << 32, &c),
        MsrAction::InjectGp
    );
    assert_eq!(
        p.wrmsr(&mut s, 0xc000_0084, 0x4_7700, &c),
        MsrAction::Written
    );
    assert_eq!(
        p.wrmsr(&mut s, 0xc000_0103, 1 << 40, &c),
        MsrAction::InjectGp
    );
    assert_eq!(
        p.wrmsr(&mut s, 0xc000_0081, u64::MAX, &c),
        MsrAction::Written
    );
    assert_eq!(s.swapped()[0], (Msr::IA32_STAR, u64::MAX));
    assert!(s.set_swapped(Msr::IA32_KERNEL_GS_BASE, 7));
    assert!(!s.set_swapped(Msr::IA32_EFER, 7));
    assert_eq!(s.kernel_gs_base, 7);
    // FEATURE_CONTROL is locked; PLATFORM_INFO, SMI_COUNT and MTRRcap are read-only.
    for m in [0x3a, 0xce, 0x34, 0xfe, 0x17] {
        assert_eq!(p.wrmsr(&mut s, m, 0, &c), MsrAction::InjectGp, "{m:#x}");
    }
    assert_eq!(p.wrmsr(&mut s, 0x8b, 0, &c), MsrAction::Written);
    assert_eq!(p.wrmsr(&mut s, 0x140, 1, &c), MsrAction::InjectGp);
    assert_eq!(p.wrmsr(&mut s, 0x140, 0, &c), MsrAction::Written);
    // APIC_BASE: disable the APIC, move it; reserved bits and BSP changes #GP.
    assert_eq!(p.wrmsr(&mut s, 0x1b, 0xfec0_0100, &c), MsrAction::Written);
    assert_eq!(p.rdmsr(&s, 0x1b, &c), MsrAction::Read(0xfec0_0100));
    assert_eq!(p.wrmsr(&mut s, 0x1b, 0xfee0_0000, &c), MsrAction::InjectGp);
    assert_eq!(p.wrmsr(&mut s, 0x1b, 0xfee0_0101, &c), MsrAction::InjectGp);
    assert_eq!(
        p.wrmsr(&mut s, 0x1b, 0xfee0_0d00, &c),
        MsrAction::InjectGp,
        "EXTD"
    );
    assert_eq!(
        p.wrmsr(&mut s, 0x1b, 1 << 45 | 0x100, &c),
        MsrAction::InjectGp
    );
    // MTRRs.
    assert_eq!(p.wrmsr(&mut s, 0x2ff, 0xc00, &c), MsrAction::Written);
    assert_eq!(p.wrmsr(&mut s, 0x2ff, 0xc02, &c), MsrAction::InjectGp);
    assert_eq!(p.wrmsr(&mut s, 0x2ff, 0x1_0c00, &c), MsrAction::InjectGp);
    assert_eq!(
        p.wrmsr(&mut s, 0x259, 0x0101_0101_0101_0101, &c),
        MsrAction::Written
    );
    assert_eq!(
        p.rdmsr(&s, 0x259, &c),
        MsrAction::Read(0x0101_0101_0101_0101)
    );
    assert_eq!(p.wrmsr(&mut s, 0x268, 0x0707, &c), MsrAction::InjectGp);
    assert_eq!(
        p.wrmsr(&mut s, 0x202, 0x8000_0000 | 6, &c),
        MsrAction::Written
    );
    assert_eq!(
        p.wrmsr(&mut s, 0x203, 0x7f_8000_0800, &c),
        MsrAction::Written
    );
    assert_eq!(p.rdmsr(&s, 0x203, &c), MsrAction::Read(0x7f_8000_0800));
    assert_eq!(
        p.wrmsr(&mut s, 0x203, 0x80_0000_0800, &c),
        MsrAction::InjectGp
    );
    assert_eq!(p.wrmsr(&mut s, 0x202, 0x100, &c), MsrAction::InjectGp);
    assert_eq!(
        p.wrmsr(&mut s, 0x204, 0, &c),
        MsrAction::InjectGp,
        "only 2 pairs"
    );
    // Unknown.
    assert_eq!(p.wrmsr(&mut s, 0x123, 0, &c), MsrAction::InjectGp);
    assert_eq!(p.wrmsr(&mut s, 0x48, 1, &c), MsrAction::InjectGp);
}

#[test]
fn tsc_deadline_and_x2apic_when_enabled() {
    let mut cfg = MsrConfig::new(1_000_000_000);
    cfg.local_apic = true;
    cfg.x2apic = true;
    cfg.tsc_deadline = true;
    let p = MsrPolicy::new(cfg);
    let mut s = MsrState::new(&p, true);
    let c = ctx();
    assert_eq!(p.rdmsr(&s, 0x1b, &c), MsrAction::Read(0xfee0_0900));
    assert_eq!(p.wrmsr(&mut s, 0x6e0, 999, &c), MsrAction::Written);
    assert_eq!(s.tsc_deadline, 999);
    assert_eq!(p.rdmsr(&s, 0x6e0, &c), MsrAction::Read(999));
    assert_eq!(p.wrmsr(&mut s, 0x1b, 0xfee0_0d00, &c), MsrAction::Written);
}

#[test]
fn bitmap_layout() {
    let p = policy();
    let b = p.msr_bitmap();
    let exits = |msr: u32, write: bool| {
        let (byte, bit) = bitmap_position(msr, write).unwrap();
        b[byte] & (1 << bit) != 0
    };
    for msr in PASSTHROUGH {
        assert!(!exits(msr.0, false) && !exits(msr.0, true), "{msr}");
    }
    for msr in [
        0xc000_0080,
        0xc000_0082,
        0xc000_0103,
        0x1b,
        0x277,
        0x10,
        0x6e0,
        0x1fff,
    ] {
        assert!(exits(msr, false) && exits(msr, true), "{msr:#x}");
    }
    // FS_BASE 0xC0000100: high range, index 0x100 → read byte 1024 + 32, write 3072 + 32.
    assert_eq!(bitmap_position(0xc000_0100, false), Some((1024 + 32, 0)));
    assert_eq!(bitmap_position(0xc000_0102, true), Some((3072 + 32, 2)));
    assert_eq!(bitmap_position(0x1b, true), Some((2048 + 3, 3)));
    assert_eq!(bitmap_position(0x2000, false), None);
    assert_eq!(bitmap_position(0xc000_2000, false), None);
    assert_eq!(b[1024 + 32], 0b1111_1000);
    assert_eq!(b[3072 + 32], 0b1111_1000);
    assert_eq!(b.iter().filter(|&&x| x != 0xff).count(), 2);
}

#[test]
fn saved_msrs_replay_into_a_fresh_state_and_bad_ones_are_refused() {
    let mut c = MsrConfig::new(2_900_000_000);
    c.variable_mtrrs = 2;
    c.tsc_deadline = true;
    let p = MsrPolicy::new(c);
    let mut s = MsrState::new(&p, true);
    for (msr, value) in [
        (0x2ff, 0xc06),
        (0x250, 0x0606_0606_0606_0606),
        (0x200, 0x8000_0006),
        (0x203, 0xf_c000_0800),
        (0x6e0, 777),
        (0x17a, 0),
    ] {
        assert_eq!(p.wrmsr(&mut s, msr, value, &ctx()), MsrAction::Written);
    }
    let saved = p.saved_msrs(&s);
    // APIC base, MISC_ENABLE, MISC_FEATURES, DEF_TYPE, 11 fixed, 2 × 2 variable, MCG
    // status, TSC deadline.
    assert_eq!(saved.len(), 4 + 11 + 4 + 2);
    let mut fresh = MsrState::new(&p, true);
    p.restore_saved(&mut fresh, &saved).unwrap();
    assert_eq!(fresh, s);
    // A value the guest's WRMSR would #GP on, the TSC, an MSR not emulated: refused, the
    // state unchanged.
    let before = MsrState::new(&p, true);
    for bad in [
        (0x2ff, 0x2),
        (0x10, 5),
        (0x3b, 5),
        (0xc000_0082, 0),
        (0x1b, 0),
    ] {
        let mut t = before.clone();
        assert_eq!(p.restore_saved(&mut t, &[(0x2ff, 0x6), bad]), Err(bad));
        assert_eq!(t, before);
    }
}
