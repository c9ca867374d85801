use super::format::{Parsed, Writer, HEADER_SIZE};
use super::memory::{self, Run, PAGE};
use super::vcpu::{
    DescriptorTable, HeldState, PendingEvent, RunState, Segment, MAX_EMULATED_MSRS, SEGMENTS,
};
use super::*;
use crate::store::crc::crc32c;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

/// A vCPU state with a different value in every field, so a field written to or read from
/// the wrong place changes the round trip.
fn distinct_vcpu(seed: u64) -> VcpuState {
    let mut n = seed << 32;
    let mut next = || {
        n += 0x0101_0101_0101_0101;
        n
    };
    let mut s = VcpuState::default();
    for r in &mut s.gprs {
        *r = next();
    }
    s.rip = next();
    s.rflags = next();
    let mut segs = [Segment::default(); SEGMENTS];
    for seg in &mut segs {
        let v = next();
        *seg = Segment {
            selector: v as u16,
            base: v ^ 0xffff,
            limit: (v >> 8) as u32,
            access_rights: (v >> 16) as u32,
        };
    }
    s.segments = segs;
    s.gdtr = DescriptorTable {
        base: next(),
        limit: 0x7f,
    };
    s.idtr = DescriptorTable {
        base: next(),
        limit: 0xfff,
    };
    for v in [
        &mut s.cr0,
        &mut s.cr2,
        &mut s.cr3,
        &mut s.cr4,
        &mut s.cr8,
        &mut s.dr6,
        &mut s.dr7,
        &mut s.efer,
        &mut s.pat,
        &mut s.sysenter_cs,
        &mut s.sysenter_esp,
        &mut s.sysenter_eip,
        &mut s.star,
        &mut s.lstar,
        &mut s.cstar,
        &mut s.sfmask,
        &mut s.kernel_gs_base,
        &mut s.tsc_aux,
        &mut s.guest_tsc,
    ] {
        *v = next();
    }
    s.activity_state = 1;
    s.interruptibility = 0b1001;
    s.pending_debug = next();
    s.pending_event = Some(PendingEvent {
        interruption_info: 0x8000_0b0e,
        error_code: 0x12,
        instruction_len: 3,
    });
    s.xcr0 = 0x7;
    s.xsave = (0..1088u32).map(|i| (i * 7 + seed as u32) as u8).collect();
    s.dr = [next(), next(), next(), next()];
    s.emulated_msrs = vec![(0x2ff, next()), (0x1a0, next()), (0x6e0, next())];
    s.held = HeldState {
        run: RunState::Halted,
        deferred_event: Some(PendingEvent {
            interruption_info: 0x8000_0030 | seed as u32,
            error_code: 0,
            instruction_len: 0,
        }),
        nmi_pending: true,
        pending_startup: Some(0x9a),
        pv_unhalted: true,
        halted_irqs_off: false,
        idle_call: true,
        poll_control: true,
    };
    s
}

fn ram_pages() -> Vec<[u8; PAGE]> {
    // 40 pages: zero, data, data, zero × 30, data at the end...
    let mut pages = vec![[0u8; PAGE]; 40];
    for (i, p) in pages.iter_mut().enumerate() {
        if matches!(i, 1 | 2 | 35 | 39) {
            p[0] = i as u8 + 1;
            p[PAGE - 1] = 0xa5;
        }
    }
    pages
}

fn sample() -> Snapshot {
    let pages = ram_pages();
    Snapshot {
        info: VmInfo {
            name: "linux".into(),
            memory: (pages.len() * PAGE) as u64,
            vcpus: 2,
            kind: "linux".into(),
            kvm_pv: true,
            devices: 1,
            taken_tsc: 0x1234_5678_9abc,
        },
        requirements: Requirements {
            features: vec![
                FeatureWord {
                    leaf: 1,
                    subleaf: 0,
                    register: 2,
                    bits: 0x0400_0000,
                },
                FeatureWord {
                    leaf: 7,
                    subleaf: 0,
                    register: 1,
                    bits: 0x0001_0020,
                },
            ],
            xcr0: 0x7,
            xsave_size: 1088,
            tsc_hz: 50_000_000,
        },
        vcpus: vec![distinct_vcpu(1), distinct_vcpu(2)],
        lapics: vec![vec![0x11; LAPIC_SECTION], vec![0x22; LAPIC_SECTION]],
        platform: b"platform state".to_vec(),
        virtio: vec![b"virtio 0".to_vec()],
        memory: memory::encode(pages.len() as u64, |i, buf| {
            *buf = pages[i as usize];
        }),
    }
}

#[test]
fn a_snapshot_round_trips_every_field() {
    let s = sample();
    let bytes = s.to_bytes();
    let back = Snapshot::from_bytes(&bytes).unwrap();
    assert_eq!(back, s);
    // Field by field for the vCPU (the derive would hide which one broke).
    assert_eq!(back.vcpus[1].segments, s.vcpus[1].segments);
    assert_eq!(back.vcpus[1].pending_event, s.vcpus[1].pending_event);
    assert_eq!(back.vcpus[0].xsave, s.vcpus[0].xsave);
    // No pending event round-trips as none.
    let mut quiet = distinct_vcpu(3);
    quiet.pending_event = None;
    assert_eq!(VcpuState::decode(&quiet.encode()).unwrap(), quiet);
}

#[test]
fn memory_runs_elide_zero_pages_and_restore_every_byte() {
    let pages = ram_pages();
    let enc = memory::encode(40, |i, buf| *buf = pages[i as usize]);
    let runs = memory::decode(&enc, 40).unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| match r {
                Run::Zero { first, pages } => (*first, *pages, false),
                Run::Data { first, data } => (*first, (data.len() / PAGE) as u32, true),
            })
            .collect::<Vec<_>>(),
        [
            (0, 1, false),
            (1, 2, true),
            (3, 32, false),
            (35, 1, true),
            (36, 3, false),
            (39, 1, true)
        ]
    );
    // Four data pages stored, not forty.
    assert!(enc.len() < 5 * PAGE, "{}", enc.len());
    let mut restored = vec![[0xffu8; PAGE]; 40];
    for r in runs {
        match r {
            Run::Zero { first, pages } => {
                for p in first..first + u64::from(pages) {
                    restored[p as usize] = [0; PAGE];
                }
            }
            Run::Data { first, data } => {
                for (k, chunk) in data.chunks(PAGE).enumerate() {
                    restored[first as usize + k].copy_from_slice(chunk);
                }
            }
        }
    }
    assert_eq!(restored, pages);
    // Against another RAM size, or cut short, it is refused.
    assert!(memory::decode(&enc, 41).is_err());
    assert!(memory::decode(&enc[..enc.len() - 1], 40).is_err());
}

#[test]
fn memory_runs_with_gaps_overlaps_or_beyond_ram_are_refused() {
    let run = |first: u64, pages: u32, kind: u32| {
        let mut e = codec::Enc::default();
        e.u64(first).u32(pages).u32(kind);
        e.0
    };
    let section = |runs: &[Vec<u8>], ram: u64| {
        let mut e = codec::Enc::default();
        e.u64(ram).u32(runs.len() as u32);
        for r in runs {
            e.0.extend_from_slice(r);
        }
        e.0
    };
    for (runs, what) in [
        (vec![run(0, 4, 0), run(5, 5, 0)], "gap"),
        (vec![run(0, 4, 0), run(3, 7, 0)], "overlap"),
        (vec![run(0, 11, 0)], "beyond RAM"),
        (vec![run(0, 9, 0)], "short of RAM"),
        (vec![run(0, 10, 9)], "unknown kind"),
        (vec![run(0, 0, 0), run(0, 10, 0)], "empty run"),
        // A data run claiming 2^32-1 pages with no data behind it.
        (vec![run(0, u32::MAX, 1)], "huge data run"),
    ] {
        assert!(memory::decode(&section(&runs, 10), 10).is_err(), "{what}");
    }
    assert!(memory::decode(&section(&[run(0, 10, 0)], 10), 10).is_ok());
}

#[test]
fn every_single_byte_corruption_is_refused() {
    let bytes = sample().to_bytes();
    for at in 0..bytes.len() {
        let mut c = bytes.clone();
        c[at] ^= 0x40;
        assert!(
            Snapshot::from_bytes(&c).is_err(),
            "a flip at byte {at} of {} went unnoticed",
            bytes.len()
        );
    }
}

#[test]
fn truncated_or_extended_snapshots_are_refused_with_their_sizes() {
    let bytes = sample().to_bytes();
    for len in [0, 7, HEADER_SIZE - 1, HEADER_SIZE, 100, bytes.len() - 1] {
        let e = Snapshot::from_bytes(&bytes[..len]).unwrap_err();
        assert!(
            matches!(e, SnapshotError::Truncated { .. } | SnapshotError::BadMagic),
            "{len}: {e}"
        );
    }
    let e = Snapshot::from_bytes(&bytes[..100]).unwrap_err();
    assert_eq!(
        e.to_string(),
        alloc::format!(
            "the snapshot is truncated: {} bytes needed, 100 present; take the snapshot again",
            bytes.len()
        )
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Snapshot::from_bytes(&longer),
        Err(SnapshotError::TrailingBytes { .. })
    ));
}

/// Rewrites the header's CRC after an edit (a deliberate, well-formed change).
fn reseal(b: &mut [u8]) {
    let crc = crc32c(&b[0..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn another_format_version_is_refused_by_name() {
    let mut b = sample().to_bytes();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut b);
    let e = Snapshot::from_bytes(&b).unwrap_err();
    assert_eq!(e, SnapshotError::UnsupportedVersion { found: 2 });
    assert!(e.to_string().contains("reads version 1 only"), "{e}");
}

#[test]
fn missing_duplicate_and_unknown_sections_are_refused() {
    let s = sample();
    let info = s.info.encode();
    let req = s.requirements.encode();
    // Without the second vCPU.
    let mut w = Writer::new();
    w.section(SectionKind::VmInfo, 0, info.clone())
        .section(SectionKind::Requirements, 0, req.clone())
        .section(SectionKind::Vcpu, 0, s.vcpus[0].encode())
        .section(SectionKind::LocalApic, 0, s.lapics[0].clone())
        .section(SectionKind::LocalApic, 1, s.lapics[1].clone())
        .section(SectionKind::Platform, 0, s.platform.clone())
        .section(SectionKind::Virtio, 0, s.virtio[0].clone())
        .section(SectionKind::Memory, 0, s.memory.clone());
    assert_eq!(
        Snapshot::from_bytes(&w.finish()).unwrap_err(),
        SnapshotError::MissingSection {
            kind: SectionKind::Vcpu,
            instance: 1
        }
    );
    // A vCPU section twice.
    w.section(SectionKind::Vcpu, 0, s.vcpus[0].encode());
    assert_eq!(
        Parsed::parse(&w.finish()).unwrap_err(),
        SnapshotError::DuplicateSection {
            kind: SectionKind::Vcpu,
            instance: 0
        }
    );
    // A third vCPU in a 2-vCPU VM.
    let mut extra = s.clone();
    extra.vcpus.push(distinct_vcpu(9));
    assert!(matches!(
        Snapshot::from_bytes(&extra.to_bytes()),
        Err(SnapshotError::BadSection {
            kind: SectionKind::Vcpu,
            instance: 2,
            ..
        })
    ));
    // An unknown kind (table CRC and header resealed: a newer writer's file).
    let mut b = s.to_bytes();
    b[HEADER_SIZE..HEADER_SIZE + 4].copy_from_slice(&99u32.to_le_bytes());
    let n = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let crc = crc32c(&b[HEADER_SIZE..HEADER_SIZE + n * format::ENTRY_SIZE]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    reseal(&mut b);
    assert_eq!(
        Snapshot::from_bytes(&b).unwrap_err(),
        SnapshotError::UnknownSection { index: 0, kind: 99 }
    );
}

#[test]
fn malformed_section_contents_are_refused_with_the_field() {
    let s = sample();
    let mut bad_vcpu = s.vcpus[0].encode();
    // activity_state sits after 16 + 2 GPRs, 8 segments (18 bytes each), 2 tables (10 each)
    // and 19 u64s.
    let at = 18 * 8 + SEGMENTS * 18 + 2 * 10 + 19 * 8;
    bad_vcpu[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(
        VcpuState::decode(&bad_vcpu),
        Err("activity state above 3 (SDM Vol. 3C §25.4.2)")
    );
    let mut lapic = s.clone();
    lapic.lapics[1] = vec![0; LAPIC_SECTION + 1];
    assert!(Snapshot::from_bytes(&lapic.to_bytes())
        .unwrap_err()
        .to_string()
        .contains("local-apic section 1 is malformed: larger than 8 KiB"));
    let mut info = s.clone();
    info.info.vcpus = 0;
    info.vcpus.clear();
    info.lapics.clear();
    assert!(Snapshot::from_bytes(&info.to_bytes())
        .unwrap_err()
        .to_string()
        .contains("vCPU count outside 1..=16"));
}

#[test]
fn requirements_name_what_the_restoring_cpu_lacks() {
    let need = sample().requirements;
    assert!(need.check(&need).is_empty());
    let mut host = need.clone();
    // No AVX-512F (CPUID.7.0:EBX bit 16), no AVX state (XCR0 bit 2), a smaller XSAVE area,
    // a TSC 1% slower.
    host.features[1].bits = 0x20;
    host.xcr0 = 0x3;
    host.xsave_size = 576;
    host.tsc_hz = 49_500_000;
    let m = need.check(&host);
    assert_eq!(
        m,
        [
            Mismatch::MissingFeature {
                word: need.features[1],
                missing: 0x0001_0000
            },
            Mismatch::MissingXstate { missing: 0x4 },
            Mismatch::XsaveTooLarge {
                needed: 1088,
                have: 576
            },
            Mismatch::TscRate {
                snapshot_hz: 50_000_000,
                host_hz: 49_500_000
            },
        ]
    );
    assert_eq!(
        m[0].to_string(),
        "the guest was offered CPUID.(EAX=0x7,ECX=0):EBX bits 0x00010000, which this CPU lacks: restore on a CPU with them"
    );
    // A host with more features, and a TSC within 0.1%, will do.
    host = need.clone();
    host.features[0].bits |= 0xff;
    host.xcr0 = 0xe7;
    host.tsc_hz = 50_040_000;
    assert!(need.check(&host).is_empty());
    // A leaf the host does not list counts as all zero.
    host.features.remove(0);
    assert_eq!(need.check(&host).len(), 1);
}

#[test]
fn held_vcpu_state_is_checked_on_decode() {
    let mut s = distinct_vcpu(5);
    s.held.deferred_event = None;
    s.held.pending_startup = None;
    // The held state ends the section: run, deferred flag, NMI, start-up flag, four flags.
    let good = s.encode();
    assert_eq!(VcpuState::decode(&good).unwrap(), s);
    let mut bad = good.clone();
    let run_at = good.len() - 8;
    bad[run_at] = 3;
    assert_eq!(
        VcpuState::decode(&bad),
        Err("run state neither runnable, halted nor waiting for SIPI")
    );
    let mut bad = good.clone();
    bad[good.len() - 1] = 2;
    assert_eq!(VcpuState::decode(&bad), Err("a flag neither 0 nor 1"));
    // An event without its valid bit, or with reserved bits.
    for info in [0x0000_0030, 0x8001_0030] {
        let mut e = distinct_vcpu(6);
        e.pending_event = Some(PendingEvent {
            interruption_info: info,
            error_code: 0,
            instruction_len: 0,
        });
        assert_eq!(
            VcpuState::decode(&e.encode()),
            Err("a pending event not valid or with reserved bits set (SDM Vol. 3C §25.8.3)")
        );
    }
    let mut e = distinct_vcpu(7);
    e.emulated_msrs = vec![(0x2ff, 6); MAX_EMULATED_MSRS + 1];
    assert_eq!(
        VcpuState::decode(&e.encode()),
        Err("more than 64 emulated MSRs")
    );
    // Every truncation is refused.
    for n in 0..good.len() {
        assert!(VcpuState::decode(&good[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn a_scan_and_fill_write_what_encode_writes() {
    let pages = ram_pages();
    let read = |i: u64, buf: &mut [u8; PAGE]| *buf = pages[i as usize];
    let plan = memory::scan(40, |i| memory::page_has_data(&pages[i as usize]));
    assert_eq!(plan.data_pages(), 4);
    let mut out = Vec::new();
    out.try_reserve_exact(plan.encoded_len()).unwrap();
    memory::fill(&plan, &mut out, read);
    assert_eq!(out.len(), plan.encoded_len());
    assert_eq!(out, memory::encode(40, read));
    assert_eq!(memory::decode(&out, 40).unwrap().len(), 6);
}

#[test]
fn a_scan_and_fill_in_bounded_steps_write_what_one_call_writes() {
    let pages = ram_pages();
    let read = |i: u64, buf: &mut [u8; PAGE]| *buf = pages[i as usize];
    let has = |i: u64| memory::page_has_data(&pages[i as usize]);
    let whole = memory::encode(40, read);
    for budget in [1, 2, 3, 7, 40] {
        let mut plan = memory::Plan::new(40);
        let mut steps = 0;
        while !plan.scan_some(budget, has) {
            steps += 1;
            assert!(plan.scanned() <= 40);
        }
        assert_eq!(steps, 40u64.div_ceil(budget) - 1, "budget {budget}");
        assert_eq!(plan, memory::scan(40, has));
        let mut out = Vec::new();
        let mut cursor = memory::FillCursor::default();
        let mut calls = 1;
        while !memory::fill_some(&plan, &mut out, &mut cursor, budget, read) {
            calls += 1;
        }
        assert_eq!(out, whole, "budget {budget}");
        // Four data pages: a call per `budget` of them (and one that finds none left when
        // they divide evenly).
        assert!(
            calls >= 4u64.div_ceil(budget),
            "budget {budget}: {calls} calls"
        );
    }
}

#[test]
fn a_page_has_data_when_any_byte_is_not_zero() {
    let mut page = [0u8; PAGE];
    assert!(!memory::page_has_data(&page));
    for at in [0, 7, 8, 2047, PAGE - 1] {
        page[at] = 0x80;
        assert!(memory::page_has_data(&page), "byte {at}");
        page[at] = 0;
    }
}
