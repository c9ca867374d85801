//! EXIT_STATS snapshots (docs/hypercall-abi.md §5): per-reason exit counts, so benchmarks can
//! print how many VM exits (and how many EPT violations = MMIO accesses) they cost.

use guest_rt::hv;

/// The counters of one snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub total: u64,
    pub mmio: u64,
    pub io: u64,
    pub hlt: u64,
    pub vmcall: u64,
    pub ok: bool,
}

#[repr(C, align(8))]
struct Buf([u8; 4096]);

static mut BUF: Buf = Buf([0; 4096]);

fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn rd64(b: &[u8], o: usize) -> u64 {
    u64::from(rd32(b, o)) | u64::from(rd32(b, o + 4)) << 32
}

/// Takes a snapshot (`ok = false` if the call failed). Its own VMCALL is counted in the next.
pub fn snapshot() -> Snapshot {
    // SAFETY: single vCPU, not reentrant (never called from an interrupt handler): this is
    // the only reference to the buffer while it lives.
    let buf = unsafe { &mut (*core::ptr::addr_of_mut!(BUF)).0 };
    let mut s = Snapshot::default();
    let n = match hv::exit_stats(buf) {
        Ok(n) if (24..=4096).contains(&n) => n as usize,
        _ => return s,
    };
    let b = &buf[..n];
    let (count, entry_size, header_size) = (
        rd32(b, 4) as usize,
        rd32(b, 8) as usize,
        rd32(b, 12) as usize,
    );
    if rd32(b, 0) != 1 || entry_size < 24 || header_size < 24 {
        return s;
    }
    for i in 0..count {
        let e = header_size + i * entry_size;
        if e + 16 > n {
            break;
        }
        let c = rd64(b, e + 8);
        s.total += c;
        match rd32(b, e) {
            hv::EXIT_EPT_VIOLATION => s.mmio = c,
            hv::EXIT_IO => s.io = c,
            hv::EXIT_HLT => s.hlt = c,
            hv::EXIT_VMCALL => s.vmcall = c,
            _ => {}
        }
    }
    s.ok = true;
    s
}

/// `after - before`, field by field.
pub fn delta(before: &Snapshot, after: &Snapshot) -> Snapshot {
    Snapshot {
        total: after.total.wrapping_sub(before.total),
        mmio: after.mmio.wrapping_sub(before.mmio),
        io: after.io.wrapping_sub(before.io),
        hlt: after.hlt.wrapping_sub(before.hlt),
        vmcall: after.vmcall.wrapping_sub(before.vmcall),
        ok: before.ok && after.ok,
    }
}
