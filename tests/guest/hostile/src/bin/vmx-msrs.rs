//! `hostile-vmx-msrs`: probes the VMX capability MSRs and IA32_FEATURE_CONTROL. Every
//! IA32_VMX_* MSR (0x480..=0x491) must raise #GP on RDMSR and WRMSR; FEATURE_CONTROL reads as
//! locked with VMX off, and writing it (to enable VMX) raises #GP and changes nothing;
//! setting CR4.VMXE raises #GP. One PASS/FAIL line per case, then `DONE` (the guest survives).

#![no_std]
#![no_main]

use guest_rt::cpu::{self, IA32_FEATURE_CONTROL, IA32_VMX_BASIC, IA32_VMX_LAST};
use guest_rt::report::{self, fail, pass};
use guest_rt::trap::{Fault, GP};

guest_rt::entry!(main);

fn expect_gp(check: &str, r: Option<Fault>) {
    match r {
        Some(f) if f.vector == GP => pass(check),
        Some(f) => fail(check, format_args!("raised {f}, expected #GP")),
        None => fail(check, format_args!("completed, expected #GP")),
    }
}

fn check_name<'a>(buf: &'a mut [u8; 24], prefix: &[u8], msr: u32) -> &'a str {
    // "<prefix>0x4NN": lower-case hex, 3 digits.
    let n = prefix.len();
    buf[..n].copy_from_slice(prefix);
    buf[n..n + 2].copy_from_slice(b"0x");
    for i in 0..3 {
        let d = (msr >> (8 - 4 * i)) & 0xF;
        buf[n + 2 + i as usize] = b"0123456789abcdef"[d as usize];
    }
    core::str::from_utf8(&buf[..n + 5]).unwrap_or("?")
}

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    guest_rt::trap::init();
    report::start("hostile-vmx-msrs");
    let mut name = [0u8; 24];
    for msr in IA32_VMX_BASIC..=IA32_VMX_LAST {
        match cpu::rdmsr(msr) {
            Ok(v) => fail(
                check_name(&mut name, b"rdmsr-", msr),
                format_args!("read {v:#x}, expected #GP"),
            ),
            Err(f) => expect_gp(check_name(&mut name, b"rdmsr-", msr), Some(f)),
        }
    }
    for msr in [IA32_VMX_BASIC, IA32_VMX_BASIC + 1, IA32_VMX_LAST] {
        // SAFETY: the VMX capability MSRs are read-only; the write must raise #GP.
        let r = unsafe { cpu::wrmsr(msr, 0) };
        expect_gp(check_name(&mut name, b"wrmsr-", msr), r.err());
    }

    let before = cpu::rdmsr(IA32_FEATURE_CONTROL);
    match before {
        Ok(v) if v & 1 != 0 && v & 0b110 == 0 => pass("feature-control-read"),
        Ok(v) => fail(
            "feature-control-read",
            format_args!("{v:#x}, expected locked (bit 0) with VMX off (bits 1-2 clear)"),
        ),
        Err(f) => fail("feature-control-read", format_args!("raised {f}")),
    }
    // SAFETY: trying to enable VMX inside and outside SMX; a locked FEATURE_CONTROL refuses
    // the write with #GP.
    let w = unsafe { cpu::wrmsr(IA32_FEATURE_CONTROL, 0b111) };
    expect_gp("feature-control-write-gp", w.err());
    let after = cpu::rdmsr(IA32_FEATURE_CONTROL);
    if after == before {
        pass("feature-control-unchanged");
    } else {
        fail(
            "feature-control-unchanged",
            format_args!("{before:x?} before the write, {after:x?} after"),
        );
    }

    let cr4 = cpu::read_cr4();
    // SAFETY: setting VMXE must raise #GP; had it succeeded, it changes nothing else.
    let r = unsafe { cpu::write_cr4(cr4 | cpu::CR4_VMXE) };
    expect_gp("cr4-vmxe-gp", r.err());
    if cpu::read_cr4() & cpu::CR4_VMXE == 0 {
        pass("cr4-vmxe-clear");
    } else {
        fail(
            "cr4-vmxe-clear",
            format_args!("CR4 = {:#x}", cpu::read_cr4()),
        );
    }
    report::done()
}
