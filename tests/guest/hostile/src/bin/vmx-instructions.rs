//! `hostile-vmx-instructions`: executes every VMX instruction a guest could use to take over
//! the CPU's virtualization (VMXON, VMXOFF, VMPTRLD, VMPTRST, VMCLEAR, VMREAD, VMWRITE,
//! VMLAUNCH, VMRESUME, INVEPT, INVVPID, VMFUNC). Each must raise #UD in the guest; one
//! `PASS <insn>`/`FAIL <insn>: ...` line per instruction, then `DONE` (the guest survives).

#![no_std]
#![no_main]

use guest_rt::probe;
use guest_rt::report::{self, fail, pass};
use guest_rt::trap::{self, Fault, UD};

guest_rt::entry!(main);

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// A would-be VMXON region / VMCS.
static REGION: Page = Page([0; 4096]);

fn expect_ud(check: &str, r: Option<Fault>) {
    match r {
        Some(f) if f.vector == UD => pass(check),
        Some(f) => fail(check, format_args!("raised {f}, expected #UD")),
        None => fail(check, format_args!("completed, expected #UD")),
    }
}

fn main(_ram_size: u64, _vm_index: u64) -> ! {
    trap::init();
    report::start("hostile-vmx-instructions");
    let region: u64 = core::ptr::addr_of!(REGION) as u64;
    let pa = &region as *const u64;
    let mut store = 0u64;
    let st = &mut store as *mut u64;
    // INVEPT/INVVPID descriptors: 128 bits (EPTP or VPID, then reserved/linear address).
    let desc = [0u64; 2];
    let dp = desc.as_ptr();
    // SAFETY: for every probe below, the instruction must raise #UD in a guest and is caught by
    // the probe; the memory operands point at our own locals and statics.
    unsafe {
        expect_ud(
            "vmxon",
            probe!("vmxon qword ptr [{p}]", p = in(reg) pa, options(nostack)),
        );
        expect_ud(
            "vmptrld",
            probe!("vmptrld qword ptr [{p}]", p = in(reg) pa, options(nostack)),
        );
        expect_ud(
            "vmclear",
            probe!("vmclear qword ptr [{p}]", p = in(reg) pa, options(nostack)),
        );
        expect_ud(
            "vmptrst",
            probe!("vmptrst qword ptr [{p}]", p = in(reg) st, options(nostack)),
        );
        expect_ud(
            "vmread",
            probe!("vmread {v}, {f}", v = out(reg) _, f = in(reg) 0x681e_u64, options(nostack)),
        );
        expect_ud(
            "vmwrite",
            probe!("vmwrite {f}, {v}", f = in(reg) 0x681e_u64, v = in(reg) region, options(nostack)),
        );
        expect_ud("vmlaunch", probe!("vmlaunch", options(nostack)));
        expect_ud("vmresume", probe!("vmresume", options(nostack)));
        expect_ud(
            "invept",
            probe!("invept {t}, xmmword ptr [{d}]", t = in(reg) 1u64, d = in(reg) dp, options(nostack)),
        );
        expect_ud(
            "invvpid",
            probe!("invvpid {t}, xmmword ptr [{d}]", t = in(reg) 1u64, d = in(reg) dp, options(nostack)),
        );
        expect_ud(
            "vmfunc",
            probe!("vmfunc", in("eax") 0u32, in("ecx") 0u32, options(nostack)),
        );
        expect_ud("vmxoff", probe!("vmxoff", options(nostack)));
    }
    report::done()
}
