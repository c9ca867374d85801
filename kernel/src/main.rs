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
mod drivers;
mod exit;
mod host_irq;
mod host_report;
mod host_rtc;
mod idle;
mod interrupts;
mod lapic;
mod memory;
mod mmio_map;
mod pci;
mod percpu;
mod serial;
mod shell;
mod smp;
mod vmm;
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
    percpu::init_boot_cpu();
    serial::init();
    serial::init_logger(log::LevelFilter::Info);
    interrupts::init();
    // Bulkhead runs with interrupts disabled; remap the legacy PICs to known vectors and mask
    // them, so no stray IRQ (the firmware's timer) reaches the CPU as an external-interrupt
    // exit, and one that does is recognised by its vector.
    host_irq::init();
    arch::enable_caches();
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

    // The boot archive (the bootloader's ramdisk) says which VMs to run and whether to
    // check the disk stores.
    let archive = boot_archive(boot_info);
    let store_check = matches!(&archive, Some(Ok((_, c))) if c.hypervisor.store_check);
    // Drives and disk stores come up before the VT-x verdict: they are reported (and the
    // store check runs) even on a machine that cannot run VMs.
    drivers::init(store_check, boot_info.rsdp_addr.into_option());

    let (platform, verdict) = host_report::report(&memory);
    if let Err(why) = verdict {
        exit::exit(why.status());
    }
    let Some(caps) = platform.capabilities.as_ref() else {
        error!("the platform report returned no VMX capabilities although VT-x is usable");
        exit::exit(ExitStatus::HypervisorFailure);
    };
    let tsc_hz = arch::calibrate_tsc_hz();
    info!("tsc: {} kHz (calibrated against the PIT)", tsc_hz / 1000);
    serial::set_tsc_hz(tsc_hz);
    shell::set_tsc_hz(tsc_hz);
    host_rtc::init(tsc_hz);
    // Before the other CPUs start: they copy this CPU's CR4.
    arch::enable_fxsr();
    if let Some(raw) = platform.raw_capabilities {
        smp::start_application_processors(boot_info.rsdp_addr.into_option(), raw, caps, tsc_hz);
    }
    let root = match vmxon::enter(caps) {
        Ok(root) => root,
        Err(e) => {
            error!("vmx: {e}");
            exit::exit(ExitStatus::HypervisorFailure);
        }
    };
    info!(
        "vmx: VMXON ok (revision {:#x}, VMXON region at {:#x})",
        caps.revision_id(),
        root.region()
    );
    smp::report();

    let status = match archive {
        None => {
            info!("bulkhead: no boot archive in the image: nothing to run (build one with `bulkhead-boot build --bundle DIR`)");
            ExitStatus::Ok
        }
        Some(Err(why)) => {
            error!("bulkhead: {why}");
            ExitStatus::BadConfiguration
        }
        Some(Ok((archive, config))) => {
            info!(
                "bulkhead: configuration has {} VM(s), timeslice {} ticks",
                config.vms.len(),
                config.hypervisor.timeslice
            );
            // Build the instruction decoder's tables now, not on the first MMIO exit.
            vm::insn::warm_up();
            // The host tick: as configured, or 1 kHz on a CPU without the VMX-preemption
            // timer (then the only way a slice ends on time).
            let tick = match config.hypervisor.host_tick_hz {
                0 if !caps.has_preemption_timer() => 1000,
                hz => hz,
            };
            if tick > 0 {
                let hz = host_irq::start_tick(tick);
                info!(
                    "host tick: the PIT interrupts every VM at {hz} Hz (external-interrupt exits)"
                );
            }
            // The shared networks exist before the VMs that attach to them.
            vmm::networks::init(&config.networks, tsc_hz);
            let (created, failed) = vmm::run(caps, &archive, &config, tsc_hz);
            info!("bulkhead: all VMs stopped ({created} ran, {failed} could not start)");
            for line in vmm::networks::report() {
                info!("{line}");
            }
            if let Some(line) = drivers::e1000::report() {
                info!("{line}");
            }
            if failed > 0 {
                ExitStatus::BadConfiguration
            } else {
                ExitStatus::Ok
            }
        }
    };
    smp::shutdown(tsc_hz);
    if let Err(e) = root.leave() {
        error!("vmx: VMXOFF failed: {e}");
        exit::exit(ExitStatus::HypervisorFailure);
    }
    info!(
        "vmx: VMXOFF ok ({} frames in use)",
        memory::allocated_frames()
    );
    exit::exit(status)
}

/// The boot archive and its parsed `bulkhead.toml`, if the image carries a ramdisk.
fn boot_archive(
    boot_info: &'static BootInfo,
) -> Option<Result<(vm::archive::Archive<'static>, vm::config::Config), alloc::string::String>> {
    let addr = boot_info.ramdisk_addr.into_option()?;
    let len = usize::try_from(boot_info.ramdisk_len).ok()?;
    if len == 0 {
        return None;
    }
    // SAFETY: the bootloader mapped the ramdisk at `addr` for `len` bytes and marked it as
    // used in the memory map, so the frame allocator never hands it out; nothing writes it.
    let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    Some((|| {
        let archive = vm::archive::Archive::parse(bytes).map_err(|e| alloc::format!("{e}"))?;
        let text = archive.get(vm::config::FILE_NAME).ok_or_else(|| {
            if archive.get(vm::config::OLD_FILE_NAME).is_some() {
                alloc::string::String::from(
                    "the boot archive has bulkhead.conf, the old format: convert it with \
                     `bulkhead-boot config convert` and rebuild the image",
                )
            } else {
                alloc::string::String::from("the boot archive has no bulkhead.toml")
            }
        })?;
        let config = vm::config::Config::parse(text).map_err(|e| alloc::format!("{e}"))?;
        Ok((archive, config))
    })())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    serial::print_emergency(format_args!("\nbulkhead: PANIC (hypervisor bug): {info}\n"));
    exit::exit(ExitStatus::HypervisorFailure)
}
