use super::hypercall::{self, KvmCall};
use super::msr::{self, Area, Placed, PvMsrError};
use super::pvclock::{self, Clock, Scale, VcpuTimeInfo, WallClock};
use super::steal_time;
use super::*;

#[test]
fn signature_leaf_spells_kvm_and_points_at_the_features_leaf() {
    let [(l0, sig), (l1, feat)] = cpuid_leaves(Features::all(), false);
    assert_eq!((l0, l1), (0x4000_0100, 0x4000_0101));
    assert_eq!(sig[0], 0x4000_0101);
    let mut bytes = [0u8; 12];
    bytes[0..4].copy_from_slice(&sig[1].to_le_bytes());
    bytes[4..8].copy_from_slice(&sig[2].to_le_bytes());
    bytes[8..12].copy_from_slice(&sig[3].to_le_bytes());
    assert_eq!(&bytes, b"KVMKVMKVM\0\0\0");
    // kvm_para.h bit numbers.
    assert_eq!(
        feat[0],
        (1 << 1)
            | (1 << 3)
            | (1 << 5)
            | (1 << 6)
            | (1 << 7)
            | (1 << 9)
            | (1 << 11)
            | (1 << 12)
            | (1 << 13)
            | (1 << 24)
    );
    assert_eq!(feat[3], 0);
    assert_eq!(cpuid_leaves(OFFERED, true)[1].1[3], 1);
    // Linux's kvm_cpuid_base() steps by 0x100 from 0x40000000.
    assert_eq!((CPUID_BASE - 0x4000_0000) % 0x100, 0);
    // CLOCKSOURCE (1, the old MSRs 0x11/0x12) is not offered.
    assert_eq!(feat[0] & 1, 0);
}

#[test]
fn vcpu_time_info_layout_matches_pvclock_abi_h() {
    let info = VcpuTimeInfo {
        version: 0x0102_0304,
        tsc_timestamp: 0x1112_1314_1516_1718,
        system_time: 0x2122_2324_2526_2728,
        scale: Scale {
            mul: 0x3132_3334,
            shift: -2,
        },
        flags: pvclock::FLAG_TSC_STABLE,
    };
    let b = info.to_bytes();
    assert_eq!(b.len(), 32);
    assert_eq!(&b[0..4], &[4, 3, 2, 1]);
    assert_eq!(&b[4..8], &[0; 4]); // pad0
    assert_eq!(&b[8..16], &0x1112_1314_1516_1718u64.to_le_bytes());
    assert_eq!(&b[16..24], &0x2122_2324_2526_2728u64.to_le_bytes());
    assert_eq!(&b[24..28], &0x3132_3334u32.to_le_bytes());
    assert_eq!(b[28], 0xfe); // s8 -2
    assert_eq!(b[29], 1);
    assert_eq!(&b[30..32], &[0, 0]);
}

#[test]
fn wall_clock_layout_is_packed_12_bytes_and_epoch_is_now_minus_clock() {
    let w = WallClock::at_epoch(1_700_000_000_250_000_000, 1_500_000_000, 2);
    assert_eq!(
        w,
        WallClock {
            version: 2,
            sec: 1_699_999_998,
            nsec: 750_000_000
        }
    );
    let b = w.to_bytes();
    assert_eq!(b.len(), 12);
    assert_eq!(&b[4..8], &1_699_999_998u32.to_le_bytes());
    assert_eq!(&b[8..12], &750_000_000u32.to_le_bytes());
}

#[test]
fn update_versions_are_odd_then_even_and_advance() {
    assert_eq!(pvclock::begin_update(0), (1, 2));
    assert_eq!(pvclock::begin_update(2), (3, 4));
    // A version found odd (torn write) still ends even and newer.
    assert_eq!(pvclock::begin_update(5), (5, 6));
    assert_eq!(pvclock::begin_update(u32::MAX - 1), (u32::MAX, 0));
}

const RATES: [u64; 9] = [
    1,
    1_000_000,
    999_999_999,
    1_000_000_000,
    1_000_000_001,
    2_000_000_000,
    2_893_437_000,
    3_999_999_997,
    u64::MAX / 3,
];

#[test]
fn scale_keeps_31_significant_bits_and_the_tsc_rate_in_range() {
    for hz in RATES {
        let s = Scale::from_tsc_hz(hz).unwrap();
        assert!(s.mul >= 1 << 31, "{hz} Hz: mul {:#x}", s.mul);
        // tsc_hz · 2^shift in (10^9, 2·10^9].
        let scaled = if s.shift >= 0 {
            u128::from(hz) << s.shift
        } else {
            u128::from(hz) >> -s.shift
        };
        assert!(
            (1_000_000_000 - 1..=2_000_000_000).contains(&scaled),
            "{hz}: {s:?}"
        );
    }
    assert_eq!(Scale::from_tsc_hz(0), None);
    // 2 GHz: one tick is exactly half a nanosecond.
    assert_eq!(
        Scale::from_tsc_hz(2_000_000_000),
        Some(Scale {
            mul: 1 << 31,
            shift: 0
        })
    );
    // 1 GHz is not above 10^9: shift 1, mul 2^31.
    assert_eq!(
        Scale::from_tsc_hz(1_000_000_000),
        Some(Scale {
            mul: 1 << 31,
            shift: 1
        })
    );
}

#[test]
fn scale_delta_is_the_96_bit_product_linux_computes() {
    let s = Scale {
        mul: 0xdead_beef,
        shift: 3,
    };
    let d = 0x0123_4567_89ab_cdefu64;
    assert_eq!(
        pvclock::scale_delta(d, s),
        (((u128::from(d) << 3) * 0xdead_beef) >> 32) as u64
    );
    let s = Scale {
        mul: 0xffff_ffff,
        shift: -5,
    };
    assert_eq!(
        pvclock::scale_delta(d, s),
        ((u128::from(d >> 5) * 0xffff_ffff) >> 32) as u64
    );
}

#[test]
fn scale_delta_never_exceeds_and_stays_within_2_pow_minus_30_of_the_exact_time() {
    let deltas = [
        0u64,
        1,
        7,
        1_000,
        123_456_789,
        1 << 32,
        3_600 * 3_000_000_000,
    ];
    for hz in RATES.into_iter().filter(|&hz| hz >= 1_000_000) {
        let s = Scale::from_tsc_hz(hz).unwrap();
        for d in deltas {
            let exact = u128::from(d) * 1_000_000_000 / u128::from(hz);
            let got = u128::from(pvclock::scale_delta(d, s));
            assert!(got <= exact, "{hz} Hz, {d}: {got} > {exact}");
            // Truncating the delta loses < 2^-shift ticks (< 1 ns each), the multiplier
            // < 2^-31 relative, the product's floor < 1 ns.
            let bound = exact / (1 << 30) + 2;
            assert!(exact - got <= bound, "{hz} Hz, {d}: {got} vs {exact}");
        }
    }
}

#[test]
fn guest_time_is_monotonic_across_updates_and_migrations() {
    let hz = 2_893_437_000;
    let clock = Clock::new(hz, 1_000_000).unwrap();
    // The vCPU moves between CPUs whose TSC offsets differ (guest TSC = host TSC + offset):
    // each move rebuilds the record with the new offset.
    let offsets = [-1_000_000i64, 77, 77, -5_000, 123_456];
    let mut last = 0u64;
    let mut host = 1_000_000u64;
    let mut taken_at = host;
    let mut offset = offsets[0];
    let mut version = 0;
    let mut info = clock.time_info(host, offset, version);
    for (i, &next) in offsets.iter().cycle().take(200).enumerate() {
        for step in [1u64, 999, 12_345, 2_000_003] {
            host += step;
            let guest_tsc = info.tsc_timestamp + (host - taken_at);
            assert_eq!(guest_tsc, host.wrapping_add(offset as u64));
            let t = info.read(guest_tsc);
            assert!(t >= last, "update {i}: {t} < {last}");
            assert!(t <= clock.ns_at(host), "update {i}: ahead of real time");
            last = t;
        }
        let (_, even) = pvclock::begin_update(version);
        version = even;
        offset = next;
        taken_at = host;
        info = clock.time_info(host, offset, version);
        assert_eq!(info.version % 2, 0);
        assert_eq!(
            info.read(host.wrapping_add(offset as u64)),
            clock.ns_at(host)
        );
    }
}

#[test]
fn steal_time_layout_matches_kvm_para_h() {
    assert_eq!(steal_time::SIZE, 64);
    assert_eq!(steal_time::OFF_STEAL, 0);
    assert_eq!(steal_time::OFF_VERSION, 8);
    assert_eq!(steal_time::OFF_FLAGS, 12);
    assert_eq!(steal_time::OFF_PREEMPTED, 16);
    assert_eq!(steal_time::KVM_VCPU_PREEMPTED, 1);
    assert_eq!(steal_time::KVM_VCPU_FLUSH_TLB, 2);
    assert!(steal_time::on_entry(3).flush_tlb);
    assert!(!steal_time::on_entry(1).flush_tlb);
}

#[test]
fn msr_numbers_match_kvm_para_h() {
    assert_eq!(msr::MSR_KVM_WALL_CLOCK_NEW, 0x4b564d00);
    assert_eq!(msr::MSR_KVM_SYSTEM_TIME_NEW, 0x4b564d01);
    assert_eq!(msr::MSR_KVM_STEAL_TIME, 0x4b564d03);
    assert_eq!(msr::MSR_KVM_PV_EOI_EN, 0x4b564d04);
    assert_eq!(msr::MSR_KVM_POLL_CONTROL, 0x4b564d05);
    assert!(!msr::is_pv_msr(0x11) && !msr::is_pv_msr(0x12) && !msr::is_pv_msr(0x4b564d02));
}

#[test]
fn msr_writes_decode_enable_disable_and_reserved_bits() {
    use msr::*;
    assert_eq!(
        decode_write(MSR_KVM_SYSTEM_TIME_NEW, 0x1000_0041),
        Some(Ok(PvWrite::Enable {
            area: Area::SystemTime,
            gpa: 0x1000_0040
        }))
    );
    assert_eq!(
        decode_write(MSR_KVM_SYSTEM_TIME_NEW, 0x1000_0040),
        Some(Ok(PvWrite::Disable(Area::SystemTime)))
    );
    assert_eq!(
        decode_write(MSR_KVM_WALL_CLOCK_NEW, 0x2004),
        Some(Ok(PvWrite::Enable {
            area: Area::WallClock,
            gpa: 0x2004
        }))
    );
    for bit in 1..6 {
        let v = 0x3000 | 1 | (1 << bit);
        assert_eq!(
            decode_write(MSR_KVM_STEAL_TIME, v),
            Some(Err(PvMsrError::Reserved {
                msr: MSR_KVM_STEAL_TIME,
                value: v
            }))
        );
    }
    assert!(matches!(
        decode_write(MSR_KVM_PV_EOI_EN, 0x3003),
        Some(Err(PvMsrError::Reserved { .. }))
    ));
    assert_eq!(
        decode_write(MSR_KVM_POLL_CONTROL, 0),
        Some(Ok(PvWrite::PollControl(0)))
    );
    assert!(matches!(
        decode_write(MSR_KVM_POLL_CONTROL, 2),
        Some(Err(PvMsrError::Reserved { .. }))
    ));
    assert_eq!(decode_write(0x10, 0), None);
}

/// RAM is 0..16 MiB except an MMIO hole at 0xd0_0000..0xe0_0000.
fn ram(gpa: u64, len: u64) -> bool {
    let end = gpa + len;
    end <= 16 << 20 && (end <= 0xd0_0000 || gpa >= 0xe0_0000)
}

#[test]
fn areas_outside_ram_in_mmio_unaligned_or_page_crossing_are_refused() {
    let v = Some(0);
    assert_eq!(msr::validate(Area::SystemTime, 0x8000, v, ram, []), Ok(()));
    assert_eq!(
        msr::validate(Area::SystemTime, 16 << 20, v, ram, []),
        Err(PvMsrError::NotRam {
            area: Area::SystemTime,
            gpa: 16 << 20
        })
    );
    assert!(matches!(
        msr::validate(Area::StealTime, 0xd0_0040, v, ram, []),
        Err(PvMsrError::NotRam { .. })
    ));
    assert!(matches!(
        msr::validate(Area::StealTime, 0xcf_ffc0, v, ram, []),
        Ok(())
    ));
    assert!(matches!(
        msr::validate(Area::StealTime, 0x8020, v, ram, []),
        Err(PvMsrError::Unaligned { .. })
    ));
    assert!(matches!(
        msr::validate(Area::SystemTime, 0x8010, v, ram, []),
        Err(PvMsrError::Unaligned { .. })
    ));
    assert!(matches!(
        msr::validate(Area::PvEoi, 0x8002, v, ram, []),
        Err(PvMsrError::Unaligned { .. })
    ));
    // 12 bytes at 0xffc would cross into the next page.
    assert!(matches!(
        msr::validate(Area::WallClock, 0xffc, None, ram, []),
        Err(PvMsrError::NotRam { .. })
    ));
    assert!(matches!(
        msr::validate(Area::PvEoi, u64::MAX - 3, v, |_, _| true, []),
        Err(PvMsrError::NotRam { .. })
    ));
}

#[test]
fn areas_may_not_overlap_each_other_across_vcpus_but_may_move() {
    let placed = [
        Placed {
            area: Area::SystemTime,
            gpa: 0x8000,
            vcpu: Some(0),
        },
        Placed {
            area: Area::StealTime,
            gpa: 0x9000,
            vcpu: Some(0),
        },
    ];
    // Re-writing vCPU 0's own kvmclock MSR (or moving it over itself) is fine.
    assert_eq!(
        msr::validate(Area::SystemTime, 0x8000, Some(0), ram, placed),
        Ok(())
    );
    // vCPU 1's kvmclock on top of vCPU 0's: refused.
    assert_eq!(
        msr::validate(Area::SystemTime, 0x8000, Some(1), ram, placed),
        Err(PvMsrError::Overlaps {
            area: Area::SystemTime,
            gpa: 0x8000,
            other: Area::SystemTime
        })
    );
    // PV EOI inside vCPU 0's steal time.
    assert!(matches!(
        msr::validate(Area::PvEoi, 0x903c, Some(0), ram, placed),
        Err(PvMsrError::Overlaps {
            other: Area::StealTime,
            ..
        })
    ));
    // Right after it: fine.
    assert_eq!(
        msr::validate(Area::PvEoi, 0x9040, Some(0), ram, placed),
        Ok(())
    );
    assert_eq!(
        msr::validate(Area::SystemTime, 0x8020, Some(1), ram, placed),
        Ok(())
    );
}

#[test]
fn msr_errors_say_what_was_wrong() {
    let e = PvMsrError::Overlaps {
        area: Area::PvEoi,
        gpa: 0x903c,
        other: Area::StealTime,
    };
    assert_eq!(
        alloc::format!("{e}"),
        "PV EOI area at 0x903c overlaps the guest's steal time area: #GP"
    );
}

#[test]
fn hypercalls_decode_in_both_modes() {
    assert_eq!(
        hypercall::decode(5, [0, 3, 0, 0], true),
        KvmCall::KickCpu { apic_id: 3 }
    );
    assert_eq!(
        hypercall::decode(11, [1 << 32 | 2, 0, 0, 0], false),
        KvmCall::SchedYield { apic_id: 2 }
    );
    assert_eq!(
        hypercall::decode(10, [0b101, 1, 4, 0x4fd], true),
        KvmCall::SendIpi {
            bitmap: 0b101 | 1 << 64,
            min: 4,
            vector: 0xfd,
            delivery_mode: 4
        }
    );
    // 32-bit: a 64-bit bitmap, EBX low and ECX high.
    assert_eq!(
        hypercall::decode(10, [1, 1, 0, 0xf2], false),
        KvmCall::SendIpi {
            bitmap: 1 | 1 << 32,
            min: 0,
            vector: 0xf2,
            delivery_mode: 0
        }
    );
    assert_eq!(
        hypercall::decode(10, [1, 0, 0, 0x8f2], true),
        KvmCall::SendIpiBadIcr
    );
    assert_eq!(
        hypercall::decode(10, [1, 0, 0, 0xc_00f2], true),
        KvmCall::SendIpiBadIcr
    );
    assert_eq!(hypercall::decode(1, [0; 4], true), KvmCall::Unknown(1));
    assert_eq!(hypercall::decode(12, [0; 4], true), KvmCall::Unknown(12));
}

#[test]
fn results_are_negative_kvm_errnos_in_rax() {
    assert_eq!(
        hypercall::result_rax(Err(hypercall::KVM_ENOSYS), true),
        (-1000i64) as u64
    );
    assert_eq!(
        hypercall::result_rax(Err(hypercall::KVM_ENOSYS), false),
        0xffff_fc18
    );
    assert_eq!(hypercall::result_rax(Ok(3), true), 3);
}

#[test]
fn ipi_targets_are_min_plus_bit_and_overflow_names_nobody() {
    let t: alloc::vec::Vec<_> = hypercall::ipi_targets(0b1011 | 1 << 127, 2).collect();
    assert_eq!(t, [Some(2), Some(3), Some(5), Some(129)]);
    let t: alloc::vec::Vec<_> = hypercall::ipi_targets(0b11, u32::MAX).collect();
    assert_eq!(t, [Some(u32::MAX), None]);
}

#[test]
fn the_report_lists_what_the_guest_enabled() {
    let mut e = Enabled::default();
    assert_eq!(alloc::format!("{e}"), "none");
    e.merge(Enabled {
        clock: true,
        pv_eoi: true,
        ..Enabled::default()
    });
    e.merge(Enabled {
        steal: true,
        send_ipi: true,
        ..Enabled::default()
    });
    assert_eq!(alloc::format!("{e}"), "clock steal pv-eoi send-ipi");
}
