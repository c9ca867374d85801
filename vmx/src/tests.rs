//! Tests against the Bochs CPU model fixtures: capability reading and decoding, the platform
//! report, and control computation.

use std::format;
use std::string::String;
use std::vec::Vec;

use crate::caps::{Capabilities, MemoryType, RawCapabilities};
use crate::controls::*;
use crate::fixtures;
use crate::instructions::{InveptType, InvvpidType};
use crate::msr::Msr;

fn caps(raw: RawCapabilities) -> Capabilities {
    Capabilities::decode(&raw)
}

fn read_recording(raw: RawCapabilities) -> (RawCapabilities, Vec<Msr>) {
    let mut seen = Vec::new();
    let mut strict = fixtures::strict_rdmsr(raw);
    let read = RawCapabilities::read(|msr| {
        seen.push(msr);
        strict(msr)
    });
    (read, seen)
}

const OPTIONAL: [Msr; 7] = [
    Msr::IA32_VMX_PROCBASED_CTLS2,
    Msr::IA32_VMX_EPT_VPID_CAP,
    Msr::IA32_VMX_VMFUNC,
    Msr::IA32_VMX_TRUE_PINBASED_CTLS,
    Msr::IA32_VMX_TRUE_PROCBASED_CTLS,
    Msr::IA32_VMX_TRUE_EXIT_CTLS,
    Msr::IA32_VMX_TRUE_ENTRY_CTLS,
];

#[test]
fn read_round_trips_every_model_without_touching_missing_msrs() {
    // `strict_rdmsr` panics (like #GP) on an MSR the model lacks.
    for (name, model) in fixtures::MODELS {
        let (read, seen) = read_recording(model());
        assert_eq!(read, model(), "{name}");
        for msr in &seen {
            assert!(
                fixtures::msr_value(&model(), *msr).is_some(),
                "{name}: read {msr}"
            );
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{name}: an MSR was read twice");
    }
}

#[test]
fn penryn_reads_no_optional_msr() {
    let (_, seen) = read_recording(fixtures::core2_penryn());
    for msr in OPTIONAL {
        assert!(!seen.contains(&msr), "penryn: {msr} must not be read");
    }
    assert_eq!(seen.len(), 11);
}

#[test]
fn lynnfield_reads_no_vmfunc() {
    let (read, seen) = read_recording(fixtures::lynnfield());
    assert!(!seen.contains(&Msr::IA32_VMX_VMFUNC));
    assert!(seen.contains(&Msr::IA32_VMX_PROCBASED_CTLS2));
    assert!(seen.contains(&Msr::IA32_VMX_EPT_VPID_CAP));
    assert_eq!(read.vmfunc, None);
}

#[test]
fn skylake_reads_everything() {
    let (_, seen) = read_recording(fixtures::skylake_x());
    for msr in OPTIONAL {
        assert!(seen.contains(&msr), "skylake_x: {msr} must be read");
    }
    assert_eq!(seen.len(), 18);
}

#[test]
fn secondary_msr_ignored_when_primary_forbids_it() {
    // Only the allowed-1 bit 31 of the primary controls says the secondary MSR exists.
    let mut raw = fixtures::skylake_x();
    raw.procbased &= !(1 << 63);
    raw.true_procbased = raw.true_procbased.map(|v| v & !(1 << 63));
    let (read, seen) = read_recording(raw);
    assert!(!seen.contains(&Msr::IA32_VMX_PROCBASED_CTLS2));
    assert!(!seen.contains(&Msr::IA32_VMX_EPT_VPID_CAP));
    assert!(!seen.contains(&Msr::IA32_VMX_VMFUNC));
    // Even with a stale value in the struct, decode reports no secondary features.
    let c = caps(raw);
    assert!(!c.has_ept() && !c.has_vpid() && !c.has_unrestricted_guest() && !c.has_vmfunc());
    assert_eq!(read.procbased2, None);
}

#[test]
fn skylake_report_exact() {
    let report = format!("{}", caps(fixtures::skylake_x()));
    let expected = "\
VMCS revision id: 0x2b (region 4096 bytes, memory type WB, TRUE_* controls: yes)
EPT: yes (4-level walk, 2M pages, 1G pages, A/D bits, execute-only, UC tables, WB tables, INVEPT single-context all-context)
VPID: yes (INVVPID individual-address single-context all-context single-context-retaining-globals)
unrestricted guest: yes
APIC-register virtualization: yes
virtual-interrupt delivery: yes
posted interrupts: no
preemption timer: yes (rate: TSC >> 5)
PML: yes
VMFUNC: yes (EPTP switching)
MSR bitmaps: yes
I/O bitmaps: yes
monitor trap flag: no
CR0 fixed: must-be-1 0x80000021, may-be-1 0xffffffff
CR4 fixed: must-be-1 0x2000, may-be-1 0x7727ff
";
    assert_eq!(report, expected);
    let ept = report.lines().nth(1).unwrap_or_default();
    assert!(
        ept.contains("2M pages") && ept.contains("1G pages"),
        "{ept}"
    );
}

#[test]
fn penryn_report() {
    let report = format!("{}", caps(fixtures::core2_penryn()));
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("VMCS revision id: 0x2b (region 4096 bytes, memory type WB, TRUE_* controls: no)")
    );
    for line in [
        "EPT: no",
        "VPID: no",
        "unrestricted guest: no",
        "preemption timer: no",
        "PML: no",
        "VMFUNC: no",
        "MSR bitmaps: yes",
        "monitor trap flag: no",
    ] {
        assert!(lines.contains(&line), "missing {line:?} in\n{report}");
    }
    assert_eq!(lines.len(), 15);
    assert!(report.ends_with('\n'));
}

#[test]
fn every_report_has_fifteen_well_formed_lines() {
    for (name, model) in fixtures::MODELS {
        let report = format!("{}", caps(model()));
        let prefixes = [
            "VMCS revision id: ",
            "EPT: ",
            "VPID: ",
            "unrestricted guest: ",
            "APIC-register virtualization: ",
            "virtual-interrupt delivery: ",
            "posted interrupts: ",
            "preemption timer: ",
            "PML: ",
            "VMFUNC: ",
            "MSR bitmaps: ",
            "I/O bitmaps: ",
            "monitor trap flag: ",
            "CR0 fixed: ",
            "CR4 fixed: ",
        ];
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), prefixes.len(), "{name}");
        for (line, prefix) in lines.iter().zip(prefixes) {
            assert!(line.starts_with(prefix), "{name}: {line:?}");
            let rest = &line[prefix.len()..];
            if !prefix.starts_with("VMCS") && !prefix.starts_with("CR") {
                assert!(
                    rest == "yes" || rest == "no" || rest.starts_with("yes ("),
                    "{name}: {line:?}"
                );
                assert!(!rest.contains("()"), "{name}: {line:?}");
            }
        }
    }
}

#[test]
fn model_facts() {
    struct Facts {
        revision: u32,
        unrestricted: bool,
        apicv: bool,
        mtf: bool,
        pml: bool,
        ept: bool,
    }
    let table = [
        (
            fixtures::skylake_x(),
            Facts {
                revision: 0x2b,
                unrestricted: true,
                apicv: true,
                mtf: false,
                pml: true,
                ept: true,
            },
        ),
        (
            fixtures::lynnfield(),
            Facts {
                revision: 0x2b,
                unrestricted: false,
                apicv: false,
                mtf: false,
                pml: false,
                ept: true,
            },
        ),
        (
            fixtures::arrandale(),
            Facts {
                revision: 0x2b,
                unrestricted: true,
                apicv: false,
                mtf: false,
                pml: false,
                ept: true,
            },
        ),
        (
            fixtures::icelake_u(),
            Facts {
                revision: 0x4,
                unrestricted: true,
                apicv: true,
                mtf: true,
                pml: true,
                ept: true,
            },
        ),
        (
            fixtures::tigerlake(),
            Facts {
                revision: 0x4,
                unrestricted: true,
                apicv: true,
                mtf: true,
                pml: true,
                ept: true,
            },
        ),
        (
            fixtures::core2_penryn(),
            Facts {
                revision: 0x2b,
                unrestricted: false,
                apicv: false,
                mtf: false,
                pml: false,
                ept: false,
            },
        ),
    ];
    for (raw, f) in table {
        let c = caps(raw);
        assert_eq!(c.revision_id(), f.revision);
        assert_eq!(c.vmcs_region_size(), 4096);
        assert_eq!(c.has_unrestricted_guest(), f.unrestricted);
        assert_eq!(c.has_apic_register_virtualization(), f.apicv);
        assert_eq!(c.has_virtual_interrupt_delivery(), f.apicv);
        assert_eq!(c.has_monitor_trap_flag(), f.mtf);
        assert_eq!(c.has_pml(), f.pml);
        assert_eq!(c.has_ept(), f.ept);
        assert_eq!(c.has_vpid(), f.ept);
        assert!(!c.has_posted_interrupts());
        assert_eq!(c.cr0_fixed.must_be_one, 0x8000_0021);
        assert_eq!(c.cr4_fixed.must_be_one, 0x2000);
        assert_eq!(c.raw(), &raw);
    }
}

#[test]
fn skylake_decoded_details() {
    let c = caps(fixtures::skylake_x());
    assert!(c.basic.true_controls && c.has_true_controls());
    assert_eq!(c.basic.vmcs_memory_type, MemoryType::WriteBack);
    assert!(c.basic.ins_outs_reporting);
    assert!(!c.basic.addresses_32bit && !c.basic.dual_monitor_smm);
    assert!(c.ept_walk_length_4() && c.ept_2m_pages() && c.ept_1g_pages());
    assert!(c.ept_accessed_dirty() && c.ept_execute_only() && c.ept_wb_tables());
    assert!(c.supports_invept(InveptType::SingleContext));
    assert!(c.supports_invept(InveptType::AllContext));
    for ty in [
        InvvpidType::IndividualAddress,
        InvvpidType::SingleContext,
        InvvpidType::AllContext,
        InvvpidType::SingleContextRetainingGlobals,
    ] {
        assert!(c.supports_invvpid(ty));
    }
    assert!(c.has_preemption_timer());
    assert_eq!(c.preemption_timer_rate(), 5);
    assert!(c.has_eptp_switching());
    assert!(c.has_msr_bitmaps() && c.has_io_bitmaps() && c.has_tpr_shadow());
    assert!(c.has_virtual_nmis());
    assert_eq!(c.misc.cr3_target_count, 4);
    assert_eq!(c.misc.max_msr_list_entries, 512);
    assert!(c.misc.activity_hlt && c.misc.activity_wait_for_sipi && c.misc.vmwrite_any_field);
    assert_eq!(c.vmcs_max_index, 0x17);
    // TRUE_PROCBASED lets CR3-load exiting be 0; the plain MSR does not.
    assert_eq!(
        c.primary.must_be_one & PrimaryControls::CR3_LOAD_EXITING.bits(),
        0
    );
    let (msr, _) = c.control_capability(ControlKind::PrimaryProcBased);
    assert_eq!(msr, Msr::IA32_VMX_TRUE_PROCBASED_CTLS);
    let (msr, _) = c.control_capability(ControlKind::SecondaryProcBased);
    assert_eq!(msr, Msr::IA32_VMX_PROCBASED_CTLS2);
}

#[test]
fn cr_fixed_bits() {
    let c = caps(fixtures::skylake_x());
    assert_eq!(c.adjust_host_cr0(0), 0x8000_0021);
    assert_eq!(c.adjust_host_cr4(0x20), 0x2020);
    assert_eq!(c.adjust_host_cr4(1 << 23), 0x2000);
    assert_eq!(c.cr4_fixed.violations(0x20), 0x2000);
    assert_eq!(c.cr4_fixed.violations(0x2000 | (1 << 23)), 1 << 23);
    // Unrestricted guest exempts PE and PG (SDM Vol. 3C §27.3.1.1).
    assert_eq!(c.guest_cr0_fixed(true).must_be_one, 0x20);
    assert_eq!(c.guest_cr0_fixed(false).must_be_one, 0x8000_0021);
}

fn ept_request() -> ControlRequest {
    ControlRequest::unrestricted_ept()
}

#[test]
fn bulkhead_switches_debug_state_and_intercepts_host_state_readers() {
    let set = compute_controls(&caps(fixtures::skylake_x()), &ept_request()).expect("controls");
    assert!(set.exit.contains(ExitControls::SAVE_DEBUG_CONTROLS));
    assert!(set.entry.contains(EntryControls::LOAD_DEBUG_CONTROLS));
    for c in [
        PrimaryControls::CR8_LOAD_EXITING,
        PrimaryControls::CR8_STORE_EXITING,
        PrimaryControls::RDPMC_EXITING,
        PrimaryControls::MWAIT_EXITING,
        PrimaryControls::MONITOR_EXITING,
    ] {
        assert!(set.primary.contains(c), "{c:?}");
    }
}

#[test]
fn controls_succeed_on_modern_models() {
    for raw in [
        fixtures::skylake_x(),
        fixtures::arrandale(),
        fixtures::tigerlake(),
        fixtures::icelake_u(),
    ] {
        let c = caps(raw);
        let set = compute_controls(&c, &ept_request()).expect("controls");
        assert!(set
            .secondary
            .contains(SecondaryControls::ENABLE_EPT | SecondaryControls::UNRESTRICTED_GUEST));
        assert!(set.secondary.contains(SecondaryControls::ENABLE_VPID));
        assert!(set.primary.contains(
            PrimaryControls::ACTIVATE_SECONDARY_CONTROLS
                | PrimaryControls::USE_MSR_BITMAPS
                | PrimaryControls::USE_IO_BITMAPS
                | PrimaryControls::HLT_EXITING
        ));
        assert!(set.exit.contains(ExitControls::HOST_ADDRESS_SPACE_SIZE));
        assert!(set.entry.contains(EntryControls::LOAD_IA32_EFER));
        assert!(set.pin.contains(
            PinBasedControls::EXTERNAL_INTERRUPT_EXITING | PinBasedControls::NMI_EXITING
        ));
        assert!(set
            .pin
            .contains(PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER));
        assert!(set
            .exit
            .contains(ExitControls::SAVE_VMX_PREEMPTION_TIMER_VALUE));
        // Default1 pin controls (bits 1, 2, 4) stay set.
        assert_eq!(set.pin.bits() & 0x16, 0x16);
        // Every computed value satisfies its capability MSR (SDM Vol. 3D Appendix A.3).
        for (kind, value) in [
            (ControlKind::PinBased, set.pin.bits()),
            (ControlKind::PrimaryProcBased, set.primary.bits()),
            (ControlKind::SecondaryProcBased, set.secondary.bits()),
            (ControlKind::Exit, set.exit.bits()),
            (ControlKind::Entry, set.entry.bits()),
        ] {
            let allowed = c.allowed(kind);
            assert_eq!(value & allowed.must_be_one, allowed.must_be_one, "{kind}");
            assert_eq!(value & !allowed.may_be_one, 0, "{kind}");
        }
    }
}

#[test]
fn lynnfield_lacks_unrestricted_guest() {
    let err = compute_controls(&caps(fixtures::lynnfield()), &ept_request()).unwrap_err();
    assert_eq!(
        err,
        ControlError::Unsupported {
            kind: ControlKind::SecondaryProcBased,
            bit: 7,
            control: "unrestricted guest",
            msr: Msr::IA32_VMX_PROCBASED_CTLS2,
        }
    );
    assert_eq!(err.control(), "unrestricted guest");
    assert_eq!(err.msr(), Some(Msr::IA32_VMX_PROCBASED_CTLS2));
    let text = format!("{err}");
    assert!(text.contains("\"unrestricted guest\""), "{text}");
    assert!(text.contains("IA32_VMX_PROCBASED_CTLS2 (0x48b)"), "{text}");
    assert!(text.contains("optional"), "{text}");
}

#[test]
fn lynnfield_without_unrestricted_guest_drops_optional_timer() {
    let mut request = ept_request();
    request.secondary.required = SecondaryControls::ENABLE_EPT;
    let set = compute_controls(&caps(fixtures::lynnfield()), &request).expect("controls");
    assert!(set.secondary.contains(SecondaryControls::ENABLE_EPT));
    assert!(!set
        .secondary
        .contains(SecondaryControls::UNRESTRICTED_GUEST));
    assert!(!set
        .pin
        .contains(PinBasedControls::ACTIVATE_VMX_PREEMPTION_TIMER));
    assert!(!set
        .exit
        .contains(ExitControls::SAVE_VMX_PREEMPTION_TIMER_VALUE));
}

#[test]
fn penryn_lacks_ept() {
    let err = compute_controls(&caps(fixtures::core2_penryn()), &ept_request()).unwrap_err();
    assert_eq!(
        err,
        ControlError::SecondaryControlsUnavailable {
            bit: 1,
            control: "enable EPT",
        }
    );
    let text = format!("{err}");
    assert!(text.contains("\"enable EPT\""), "{text}");
    assert!(text.contains("activate secondary controls"), "{text}");
    assert_eq!(err.msr(), Some(Msr::IA32_VMX_PROCBASED_CTLS2));
}

#[test]
fn penryn_optional_secondary_is_dropped() {
    let mut request = ept_request();
    request.secondary = Requested::new(
        SecondaryControls::empty(),
        SecondaryControls::ENABLE_EPT | SecondaryControls::ENABLE_VPID,
    );
    request.exit.required = ExitControls::HOST_ADDRESS_SPACE_SIZE;
    request.entry.required = EntryControls::empty();
    let set = compute_controls(&caps(fixtures::core2_penryn()), &request).expect("controls");
    assert!(set.secondary.is_empty());
    assert!(!set
        .primary
        .contains(PrimaryControls::ACTIVATE_SECONDARY_CONTROLS));
}

#[test]
fn true_controls_clear_default1_bits() {
    // A request without the debug controls Bulkhead asks for, to see the default1 rule.
    let mut request = ept_request();
    request.exit.required -= ExitControls::SAVE_DEBUG_CONTROLS;
    request.entry.required -= EntryControls::LOAD_DEBUG_CONTROLS;
    let with_true = compute_controls(&caps(fixtures::skylake_x()), &request).expect("controls");
    // CR3-load/store exiting are default1 but TRUE_PROCBASED allows 0 (SDM Vol. 3D A.2).
    assert!(!with_true
        .primary
        .contains(PrimaryControls::CR3_LOAD_EXITING));
    assert!(!with_true
        .primary
        .contains(PrimaryControls::CR3_STORE_EXITING));
    assert!(!with_true.exit.contains(ExitControls::SAVE_DEBUG_CONTROLS));
    assert!(!with_true.entry.contains(EntryControls::LOAD_DEBUG_CONTROLS));

    // Same processor without IA32_VMX_BASIC[55]: the plain MSRs force the default1 bits.
    let mut raw = fixtures::skylake_x();
    raw.basic &= !(1 << 55);
    let c = caps(raw);
    assert!(!c.has_true_controls());
    assert_eq!(
        c.control_capability(ControlKind::PrimaryProcBased).0,
        Msr::IA32_VMX_PROCBASED_CTLS
    );
    let plain = compute_controls(&c, &request).expect("controls");
    assert!(plain.primary.contains(PrimaryControls::CR3_LOAD_EXITING));
    assert!(plain.primary.contains(PrimaryControls::CR3_STORE_EXITING));
    assert!(plain.exit.contains(ExitControls::SAVE_DEBUG_CONTROLS));
    assert!(plain.entry.contains(EntryControls::LOAD_DEBUG_CONTROLS));

    // Requesting a default1 control keeps it with TRUE controls too.
    request.primary.required |= PrimaryControls::CR3_LOAD_EXITING;
    let set = compute_controls(&caps(fixtures::skylake_x()), &request).expect("controls");
    assert!(set.primary.contains(PrimaryControls::CR3_LOAD_EXITING));
}

#[test]
fn missing_dependency_is_named() {
    let mut request = ept_request();
    request.secondary.required = SecondaryControls::UNRESTRICTED_GUEST;
    let err = compute_controls(&caps(fixtures::skylake_x()), &request).unwrap_err();
    assert_eq!(
        err,
        ControlError::MissingDependency {
            kind: ControlKind::SecondaryProcBased,
            control: "unrestricted guest",
            requires_kind: ControlKind::SecondaryProcBased,
            requires: "enable EPT",
        }
    );
    assert!(format!("{err}").contains("§27.2.1.1"));

    // An optional dependent is silently dropped instead, transitively.
    let mut request = ept_request();
    request.secondary.optional |= SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY;
    request.pin.optional |= PinBasedControls::PROCESS_POSTED_INTERRUPTS;
    let set = compute_controls(&caps(fixtures::skylake_x()), &request).expect("controls");
    // No "use TPR shadow" requested, so virtual-interrupt delivery must go.
    assert!(!set
        .secondary
        .contains(SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY));
    assert!(!set
        .pin
        .contains(PinBasedControls::PROCESS_POSTED_INTERRUPTS));

    let mut request = ept_request();
    request.primary.optional |= PrimaryControls::USE_TPR_SHADOW;
    request.secondary.optional |= SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY
        | SecondaryControls::APIC_REGISTER_VIRTUALIZATION;
    let set = compute_controls(&caps(fixtures::skylake_x()), &request).expect("controls");
    assert!(set.secondary.contains(
        SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY
            | SecondaryControls::APIC_REGISTER_VIRTUALIZATION
    ));
}

#[test]
fn adjust_rules() {
    // allowed-0 (must be 1) = 0x16, allowed-1 = 0x7f.
    let msr = 0x0000_007f_0000_0016;
    assert_eq!(adjust(msr, 0, 0), Ok(0x16));
    assert_eq!(adjust(msr, 0x1, 0x8), Ok(0x1f));
    // Optional bit not allowed: dropped.
    assert_eq!(adjust(msr, 0x80, 0), Ok(0x16));
    // Required bit not allowed: error with the bit number.
    assert_eq!(
        adjust(msr, 0, 0x80),
        Err(AdjustError::Unsupported { bit: 7 })
    );
    // Must-be-1 and must-be-0 at once.
    assert_eq!(
        adjust(0x0000_0001_0000_0002, 0, 0),
        Err(AdjustError::Inconsistent { bit: 1 })
    );
    assert_eq!(adjust(u64::MAX, 0, u32::MAX), Ok(u32::MAX));
    assert_eq!(adjust(0, u32::MAX, 0), Ok(0));
    assert!(format!("{}", AdjustError::Unsupported { bit: 7 }).contains("bit 7"));
}

#[test]
fn inconsistent_capability_is_reported() {
    let mut raw = fixtures::skylake_x();
    // Pin-based "external-interrupt exiting" must be 1 and must be 0.
    raw.true_pinbased = Some(0x0000_007e_0000_0017);
    let err = compute_controls(&caps(raw), &ept_request()).unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::Unsupported {
                kind: ControlKind::PinBased,
                bit: 0,
                ..
            }
        ),
        "{err:?}"
    );
    raw.true_pinbased = Some(0x0000_00fe_0000_0017);
    let mut request = ept_request();
    request.pin.required = PinBasedControls::NMI_EXITING;
    let err = compute_controls(&caps(raw), &request).unwrap_err();
    assert_eq!(
        err,
        ControlError::InconsistentCapability {
            kind: ControlKind::PinBased,
            bit: 0,
            msr: Msr::IA32_VMX_TRUE_PINBASED_CTLS,
        }
    );
    assert!(format!("{err}").contains("external-interrupt exiting"));
}

#[test]
fn hostile_values_never_panic() {
    // A simple xorshift generator: decode, report and compute on arbitrary MSR values.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::new();
    for i in 0..2000 {
        let pick = |v: u64| if i % 3 == 0 { Some(v) } else { None };
        let raw = RawCapabilities {
            basic: next(),
            pinbased: next(),
            procbased: next(),
            exit: next(),
            entry: next(),
            misc: next(),
            cr0_fixed0: next(),
            cr0_fixed1: next(),
            cr4_fixed0: next(),
            cr4_fixed1: next(),
            vmcs_enum: next(),
            procbased2: pick(next()),
            ept_vpid_cap: pick(next()),
            vmfunc: pick(next()),
            true_pinbased: pick(next()),
            true_procbased: pick(next()),
            true_exit: pick(next()),
            true_entry: pick(next()),
        };
        let c = caps(raw);
        out.clear();
        out.push_str(&format!("{c}"));
        assert_eq!(out.lines().count(), 15);
        if let Err(e) = compute_controls(&c, &ept_request()) {
            out.push_str(&format!("{e}"));
        }
        let _ = RawCapabilities::read(|_| next());
    }
    for raw in [RawCapabilities::default(), all_ones()] {
        let c = caps(raw);
        let _ = format!("{c}");
        let _ = compute_controls(&c, &ept_request());
        let _ = compute_controls(&c, &ControlRequest::default());
    }
}

fn all_ones() -> RawCapabilities {
    RawCapabilities {
        basic: u64::MAX,
        pinbased: u64::MAX,
        procbased: u64::MAX,
        exit: u64::MAX,
        entry: u64::MAX,
        misc: u64::MAX,
        cr0_fixed0: u64::MAX,
        cr0_fixed1: u64::MAX,
        cr4_fixed0: u64::MAX,
        cr4_fixed1: u64::MAX,
        vmcs_enum: u64::MAX,
        procbased2: Some(u64::MAX),
        ept_vpid_cap: Some(u64::MAX),
        vmfunc: Some(u64::MAX),
        true_pinbased: Some(u64::MAX),
        true_procbased: Some(u64::MAX),
        true_exit: Some(u64::MAX),
        true_entry: Some(u64::MAX),
    }
}

#[test]
fn control_kind_names_and_msrs() {
    assert_eq!(
        ControlKind::PinBased.capability_msr(true),
        Msr::IA32_VMX_TRUE_PINBASED_CTLS
    );
    assert_eq!(
        ControlKind::SecondaryProcBased.capability_msr(true),
        Msr::IA32_VMX_PROCBASED_CTLS2
    );
    assert_eq!(
        ControlKind::Entry.capability_msr(false),
        Msr::IA32_VMX_ENTRY_CTLS
    );
    assert_eq!(
        ControlKind::PrimaryProcBased.bit_name(27),
        Some("monitor trap flag")
    );
    assert_eq!(
        ControlKind::SecondaryProcBased.bit_name(17),
        Some("enable PML")
    );
    assert_eq!(
        ControlKind::Exit.bit_name(9),
        Some("host address-space size")
    );
    assert_eq!(ControlKind::Entry.bit_name(9), Some("IA-32e mode guest"));
    assert_eq!(ControlKind::PinBased.bit_name(1), None);
    // Every named bit's flag agrees with its name table entry.
    for flag in SecondaryControls::all().iter() {
        let bit = flag.bits().trailing_zeros();
        assert!(SecondaryControls::bit_name(bit).is_some(), "bit {bit}");
    }
    for flag in PrimaryControls::all().iter() {
        let bit = flag.bits().trailing_zeros();
        assert!(PrimaryControls::bit_name(bit).is_some(), "bit {bit}");
    }
}

#[test]
fn control_set_vmcs_writes() {
    use crate::fields::VmcsField;
    let set = compute_controls(&caps(fixtures::skylake_x()), &ept_request()).expect("controls");
    let writes: Vec<(VmcsField, u64)> = set.vmcs_writes().collect();
    assert_eq!(writes.len(), 5);
    assert!(writes.contains(&(
        VmcsField::SECONDARY_PROC_BASED_VM_EXEC_CONTROLS,
        u64::from(set.secondary.bits())
    )));
    let mut request = ept_request();
    request.secondary = Requested::default();
    request.exit.required = ExitControls::HOST_ADDRESS_SPACE_SIZE;
    request.entry.required = EntryControls::empty();
    let set = compute_controls(&caps(fixtures::core2_penryn()), &request).expect("controls");
    let fields: Vec<VmcsField> = set.vmcs_writes().map(|(f, _)| f).collect();
    assert_eq!(fields.len(), 4);
    assert!(!fields.contains(&VmcsField::SECONDARY_PROC_BASED_VM_EXEC_CONTROLS));
}
