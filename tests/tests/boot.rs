//! Foundation integration tests: the kernel boots on every platform we can reach here and
//! reports (or diagnoses) VT-x exactly. Each assertion names text the kernel must print, so a
//! changed report fails the test.

use bulkhead_boot::Platform;
use bulkhead_tests::boot;

/// (a) BIOS image in Bochs on Skylake-X: the decoded capability report matches the values
/// verified in ../shared/platform-notes.md, and VT-x is usable.
#[test]
fn bochs_skylake_x_reports_every_vmx_capability() {
    let run = boot(Platform::Bochs, "corei7_skylake_x", 180);
    run.exited(0, "ok")
        .saw("platform: Bochs")
        .saw("cpu: GenuineIntel family 0x6")
        .saw("cpu: VMX yes (CPUID.1:ECX[5])")
        // Bochs's BIOS locks FEATURE_CONTROL = 0x5 itself.
        .saw("feature control: IA32_FEATURE_CONTROL = 0x5 (locked by the firmware, VMX outside SMX enabled)")
        .saw("vmx: VMCS revision id: 0x2b (region 4096 bytes, memory type WB, TRUE_* controls: yes)")
        .saw("vmx: unrestricted guest: yes")
        .saw("vmx: APIC-register virtualization: yes")
        .saw("vmx: virtual-interrupt delivery: yes")
        .saw("vmx: posted interrupts: no")
        .saw("vmx: PML: yes")
        .saw("vmx: MSR bitmaps: yes")
        .saw("vmx: I/O bitmaps: yes")
        .saw("vmx: monitor trap flag: no")
        .saw("vmx: CR0 fixed: must-be-1 0x80000021")
        .saw("vmx: CR4 fixed: must-be-1 0x2000")
        .saw("memory: ")
        .saw("bulkhead: VT-x is usable");
    let ept = run.line("vmx: EPT: yes");
    for item in [
        "4-level walk",
        "2M pages",
        "1G pages",
        "A/D bits",
        "INVEPT single-context all-context",
    ] {
        assert!(ept.contains(item), "EPT line lacks {item:?}: {ept}");
    }
    let vpid = run.line("vmx: VPID: yes");
    assert!(vpid.contains("all-context"), "VPID line: {vpid}");
    assert!(run
        .line("vmx: preemption timer: yes")
        .contains("rate: TSC >> "));
    assert!(run.line("vmx: VMFUNC: yes").contains("EPTP switching"));
    // The machine's RTC (Bochs: `time0=utc`, the host's time at start) read at boot: the VMs'
    // clocks start at today's date, not 1970 (a run across midnight may see yesterday's).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let dates: Vec<String> = [now, now - 86_400]
        .iter()
        .map(|&t| {
            let d = vm::devices::rtc::DateTime::from_unix(t);
            format!("rtc: {:04}-{:02}-{:02} ", d.year, d.month, d.day)
        })
        .collect();
    let rtc = run.line("rtc: ");
    assert!(
        dates.iter().any(|d| rtc.contains(d.as_str()))
            && rtc.contains(" UTC (the VMs' clocks start here"),
        "rtc line {rtc:?}, expected one of {dates:?}"
    );
}

/// Tiger Lake differs from Skylake-X in the VMCS revision id (0x4) and has MTF.
#[test]
fn bochs_tigerlake_reports_its_own_revision_and_mtf() {
    boot(Platform::Bochs, "tigerlake", 180)
        .exited(0, "ok")
        .saw("vmx: VMCS revision id: 0x4 ")
        .saw("vmx: monitor trap flag: yes")
        .saw("bulkhead: VT-x is usable");
}

/// Lynnfield has EPT and VPID but no unrestricted guest: a precise diagnosis, status 19.
#[test]
fn bochs_lynnfield_lacks_unrestricted_guest() {
    boot(Platform::Bochs, "corei5_lynnfield_750", 180)
        .exited(19, "vmx-feature-missing")
        .saw("vmx: EPT: yes")
        .saw("vmx: unrestricted guest: no")
        .saw("cannot run: this CPU's VT-x lacks unrestricted guest, which Bulkhead requires")
        .not_saw("VT-x is usable");
}

/// (b) A Bochs model without VMX (AMD Ryzen): the "not Intel" diagnosis and status 16.
#[test]
fn bochs_ryzen_is_diagnosed_as_not_intel() {
    boot(Platform::Bochs, "ryzen", 180)
        .exited(16, "not-intel")
        .saw("cpu: AuthenticAMD")
        .saw("cpu: VMX no")
        .saw("cannot run: this CPU is AuthenticAMD, not Intel, and Bulkhead needs Intel VT-x")
        .not_saw("vmx: EPT");
}

/// (c) The UEFI image under QEMU TCG + OVMF: the UEFI path works and the missing VT-x is
/// diagnosed (TCG has no VMX), with QEMU's exit status carrying the kernel's.
#[test]
fn qemu_uefi_diagnoses_missing_vmx() {
    let run = boot(Platform::Qemu, "max", 120);
    run.saw("platform: QEMU")
        .saw("cpu: VMX no (CPUID.1:ECX[5])")
        .saw("cannot run: ")
        .not_saw("vmx: EPT");
    let exit = run.outcome.exit.clone().expect("exit line");
    assert!(
        exit.name == "not-intel" || exit.name == "no-vmx",
        "QEMU TCG must end in not-intel or no-vmx, got {exit:?}"
    );
    // isa-debug-exit turns the kernel's status V into QEMU's (V << 1) | 1.
    let status = run.outcome.emulator_status.and_then(|s| s.code());
    assert_eq!(
        status,
        Some((i32::from(exit.code) << 1) | 1),
        "QEMU exit status"
    );
}

/// (d) The UEFI image under Bochs + OVMF with VT-x: OVMF leaves IA32_FEATURE_CONTROL unlocked,
/// so the kernel must enable VMX and lock it itself.
#[test]
fn bochs_uefi_kernel_locks_feature_control() {
    boot(Platform::BochsUefi, "corei7_skylake_x", 300)
        .exited(0, "ok")
        .saw("cpu: VMX yes")
        .saw("feature control: IA32_FEATURE_CONTROL was 0x0 (unlocked); Bulkhead enabled VMX outside SMX and locked it: now 0x5")
        .saw("vmx: EPT: yes")
        .saw("bulkhead: VT-x is usable");
}

/// Every CPU enters VMX root (issue 10): Bochs with 1, 2 and 4 CPUs on Skylake-X (x2APIC),
/// Tiger Lake (x2APIC) and Arrandale (xAPIC); one line per CPU with its APIC ID.
#[test]
fn bochs_every_cpu_enters_vmx_root() {
    for (model, cpus, mode) in [
        ("corei7_skylake_x", 1, "X2Apic"),
        ("corei7_skylake_x", 4, "X2Apic"),
        ("tigerlake", 2, "X2Apic"),
        ("corei5_arrandale_m520", 2, "XApic"),
    ] {
        let image = bulkhead_tests::image_for(Platform::Bochs);
        let run = bulkhead_tests::boot_image_smp(Platform::Bochs, &image, model, cpus, 240);
        run.exited(0, "ok")
            .saw(&format!("lapic: boot CPU APIC ID 0, {mode} mode"))
            .saw("cpu 0: apic ID 0 (boot CPU), VMX root")
            .saw(&format!("smp: {cpus} of {cpus} CPUs in VMX root"))
            .not_saw("not started");
        for i in 1..cpus {
            run.saw(&format!("cpu {i}: apic ID {i}, VMX root"));
        }
        run.not_saw(&format!("cpu {cpus}:"));
    }
}

/// OVMF under Bochs builds no ACPI tables (it takes them from QEMU's fw_cfg, which Bochs lacks):
/// without a MADT the UEFI path says so and runs on the boot CPU alone, never hanging.
#[test]
fn bochs_uefi_without_acpi_uses_the_boot_cpu() {
    let image = bulkhead_tests::image_for(Platform::BochsUefi);
    let run =
        bulkhead_tests::boot_image_smp(Platform::BochsUefi, &image, "corei7_skylake_x", 2, 300);
    run.exited(0, "ok")
        .saw("smp: the firmware gave no ACPI RSDP: only the boot CPU is used")
        .saw("cpu 0: apic ID 0 (boot CPU), VMX root")
        .saw("smp: 1 of 1 CPUs in VMX root");
}
