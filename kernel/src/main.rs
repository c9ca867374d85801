//! Bulkhead: a Type-1 hypervisor for x86_64 with Intel VT-x.
//!
//! Boot flow: the bootloader crate (BIOS or UEFI) enters `kernel_main` in 64-bit mode with all
//! physical memory mapped at a dynamic offset. The kernel brings up its console, descriptor
//! tables, memory and heap, prints the platform report, and ends the run with a documented exit
//! status (docs/exit-status.md).

#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod exit;
mod interrupts;
mod memory;
mod platform;
mod serial;
mod vmxon;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::BootInfo;
use exit::ExitStatus;
use log::{error, info};

/// Map all physical memory (for page tables, VMCS and EPT frames, guest RAM) at an offset the
/// bootloader chooses.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.kernel_stack_size = 256 * 1024;
    config
};

bootloader_api::entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    serial::init();
    serial::init_logger(log::LevelFilter::Info);
    interrupts::init();
    // The bootloader's last log line has no newline.
    println!();
    info!("Bulkhead {} starting", env!("CARGO_PKG_VERSION"));

    let Some(phys_offset) = boot_info.physical_memory_offset.into_option() else {
        error!("the bootloader did not map physical memory; the kernel was built with the wrong BootloaderConfig");
        exit::exit(ExitStatus::HypervisorFailure);
    };
    let memory = match memory::init(&boot_info.memory_regions, phys_offset) {
        Ok(summary) => summary,
        Err(why) => {
            error!("memory: {why}");
            exit::exit(ExitStatus::HypervisorFailure);
        }
    };

    let (platform, verdict) = platform::report(&memory);
    if let Err(why) = verdict {
        exit::exit(why.status());
    }
    let Some(caps) = platform.capabilities.as_ref() else {
        error!("the platform report returned no VMX capabilities although VT-x is usable");
        exit::exit(ExitStatus::HypervisorFailure);
    };
    // Prove VMX root operation works on this CPU: VMXON, then VMXOFF.
    match vmxon::enter(caps) {
        Ok(root) => {
            info!(
                "vmx: VMXON ok (revision {:#x}, VMXON region at {:#x})",
                caps.revision_id(),
                root.region()
            );
            if let Err(e) = root.leave() {
                error!("vmx: VMXOFF failed: {e}");
                exit::exit(ExitStatus::HypervisorFailure);
            }
            info!(
                "vmx: VMXOFF ok ({} frames in use)",
                memory::allocated_frames()
            );
        }
        Err(e) => {
            error!("vmx: {e}");
            exit::exit(ExitStatus::HypervisorFailure);
        }
    }
    exit::exit(ExitStatus::Ok)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    serial::print_emergency(format_args!("\nbulkhead: PANIC (hypervisor bug): {info}\n"));
    exit::exit(ExitStatus::HypervisorFailure)
}
