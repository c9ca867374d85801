//! Host tests: a fake VM (Vec-backed guest RAM at [`BASE`], a console buffer, fake exit
//! statistics) driven through [`dispatch`].

use crate::multicall::{self, Batch, Entry};
use crate::stats::{self, Stats};
use crate::{call, cpuid, decode, dispatch, encode, CallError, HcAction, HcError, HcOutcome};
use crate::{HcRegs, HypercallHost, Version, ABI_VERSION};

const BASE: u64 = 0x10_0000;
const RAM: usize = 64 * 1024;

struct FakeVm {
    ram: Vec<u8>,
    console: Vec<u8>,
    console_calls: usize,
    stats: Vec<(u32, u64, u64)>,
    features: u32,
    read_only: bool,
    reads: usize,
    writes: usize,
    /// `(gpa, pages)` of each `MEM_RELEASE` the fake honoured.
    released: Vec<(u64, u64)>,
}

impl FakeVm {
    fn new() -> FakeVm {
        FakeVm {
            ram: vec![0; RAM],
            console: Vec::new(),
            console_calls: 0,
            stats: vec![(10, 3, 300), (12, 1, 50), (18, 7, 7000), (30, 100, 123_456)],
            features: cpuid::FEATURES_V1,
            read_only: false,
            reads: 0,
            writes: 0,
            released: Vec::new(),
        }
    }

    fn range(&self, gpa: u64, len: usize) -> Result<core::ops::Range<usize>, HcError> {
        let off = gpa.checked_sub(BASE).ok_or(HcError::BadAddress)?;
        let off = usize::try_from(off).map_err(|_| HcError::BadAddress)?;
        let end = off.checked_add(len).ok_or(HcError::BadAddress)?;
        if end > self.ram.len() {
            return Err(HcError::BadAddress);
        }
        Ok(off..end)
    }

    fn poke(&mut self, gpa: u64, data: &[u8]) {
        let r = self.range(gpa, data.len()).unwrap();
        self.ram[r].copy_from_slice(data);
    }

    fn peek(&self, gpa: u64, len: usize) -> &[u8] {
        &self.ram[self.range(gpa, len).unwrap()]
    }

    fn entry(&self, gpa: u64) -> Entry {
        let mut b = [0u8; multicall::ENTRY_SIZE];
        b.copy_from_slice(self.peek(gpa, multicall::ENTRY_SIZE));
        Entry::from_bytes(&b)
    }

    /// Copies a guest-built batch into RAM at `gpa`.
    fn load_batch(&mut self, gpa: u64, batch: &Batch) {
        for (i, e) in batch.entries().iter().enumerate() {
            self.poke(gpa + (i * multicall::ENTRY_SIZE) as u64, &e.to_bytes());
        }
    }

    fn call(&mut self, nr: u64, a0: u64, a1: u64) -> HcOutcome {
        dispatch(
            self,
            HcRegs {
                rax: nr,
                rbx: a0,
                rcx: a1,
                rdx: 0,
                rsi: 0,
            },
            0,
        )
    }
}

impl HypercallHost for FakeVm {
    fn read_guest(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), HcError> {
        self.reads += 1;
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.ram[r]);
        Ok(())
    }

    fn write_guest(&mut self, gpa: u64, data: &[u8]) -> Result<(), HcError> {
        if self.read_only {
            return Err(HcError::BadAddress);
        }
        self.writes += 1;
        let r = self.range(gpa, data.len())?;
        self.ram[r].copy_from_slice(data);
        Ok(())
    }

    fn console_write(&mut self, bytes: &[u8]) {
        self.console_calls += 1;
        self.console.extend_from_slice(bytes);
    }

    fn exit_stats(&self, out: &mut dyn FnMut(u32, u64, u64)) {
        for &(r, c, t) in &self.stats {
            out(r, c, t);
        }
    }

    fn tick_hz(&self) -> u64 {
        2_000_000_000
    }

    fn release_memory(&mut self, gpa: u64, pages: u64) -> Result<(), HcError> {
        let len = usize::try_from(pages * call::PAGE_SIZE).map_err(|_| HcError::BadAddress)?;
        let r = self.range(gpa, len)?;
        self.ram[r].fill(0);
        self.released.push((gpa, pages));
        Ok(())
    }

    fn features(&self) -> u32 {
        self.features
    }
}

fn err(o: HcOutcome) -> HcError {
    match decode(o.result) {
        Err(CallError::Hc(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

// ---- constants, encoding -------------------------------------------------------------

#[test]
fn error_codes_are_stable() {
    let want = [
        (HcError::UnknownCall, 1),
        (HcError::BadAddress, 2),
        (HcError::BadLength, 3),
        (HcError::BadArgument, 4),
        (HcError::NotPermitted, 5),
        (HcError::TooLarge, 6),
        (HcError::Unsupported, 7),
        (HcError::Nested, 8),
    ];
    assert_eq!(HcError::ALL.len(), want.len());
    for (e, code) in want {
        assert_eq!(e.code(), code);
        assert_eq!(e.to_result(), -code);
        assert_eq!(HcError::from_code(code), Some(e));
        assert_eq!(decode(encode(Err(e))), Err(CallError::Hc(e)));
        let text = e.to_string();
        assert!(
            text.starts_with(e.name()) && text.contains(&code.to_string()),
            "{text}"
        );
    }
    assert_eq!(HcError::from_code(0), None);
    assert_eq!(HcError::from_code(9), None);
    assert_eq!(decode(-9), Err(CallError::Unknown(-9)));
    assert_eq!(decode(i64::MIN), Err(CallError::Unknown(i64::MIN)));
    assert_eq!(decode(42), Ok(42));
    assert_eq!(encode(Ok(u64::MAX)), i64::MAX);
}

#[test]
fn version_and_cpuid_constants() {
    assert_eq!(ABI_VERSION, 0x0001_0001);
    assert_eq!(Version::CURRENT, Version::V1_1);
    assert_eq!(Version::V1_1.to_string(), "1.1");
    assert_eq!(
        Version::from_raw(0x0001_0002),
        Version { major: 1, minor: 2 }
    );
    assert_eq!(Version { major: 1, minor: 2 }.raw(), 0x0001_0002);
    assert!(Version { major: 1, minor: 2 }.satisfies(Version::V1_0));
    assert!(!Version::V1_0.satisfies(Version { major: 1, minor: 1 }));
    assert!(!Version { major: 2, minor: 0 }.satisfies(Version::V1_0));
    assert_eq!(Version::V1_0.to_string(), "1.0");

    let v = cpuid::hypervisor_leaf(0x4000_0000, cpuid::FEATURES_V1).unwrap();
    assert_eq!(v.eax, 0x4000_0001);
    let mut sig = Vec::new();
    for r in [v.ebx, v.ecx, v.edx] {
        sig.extend_from_slice(&r.to_le_bytes());
    }
    assert_eq!(sig, b"BulkheadHV\0\0");
    assert_eq!(sig, cpuid::SIGNATURE);

    let i = cpuid::hypervisor_leaf(0x4000_0001, cpuid::FEATURE_CONSOLE | (1 << 20)).unwrap();
    assert_eq!(
        (i.eax, i.ebx, i.ecx, i.edx),
        (0x0001_0001, cpuid::FEATURE_CONSOLE, 128, 0)
    );
    assert_eq!(cpuid::FEATURES_V1, 0b1_1111);
    assert_eq!(
        cpuid::hypervisor_leaf(0x4000_0002, 0xf),
        Some(cpuid::Leaf::default())
    );
    assert_eq!(cpuid::hypervisor_leaf(0x4000_0100, 0xf), None);
    assert_eq!(cpuid::hypervisor_leaf(1, 0xf), None);

    let iface = cpuid::Interface::from_leaves(v, i).unwrap();
    assert_eq!(iface.version, Version::V1_1);
    assert!(iface.has(cpuid::FEATURE_CONSOLE) && !iface.has(cpuid::FEATURE_MULTICALL));
    assert_eq!(
        cpuid::Interface::from_leaves(cpuid::Leaf { ebx: 1, ..v }, i),
        None
    );
    assert_eq!(
        cpuid::Interface::from_leaves(
            cpuid::Leaf {
                eax: 0x4000_0000,
                ..v
            },
            i
        ),
        None
    );
}

#[test]
fn call_table() {
    for nr in 0..call::FIRST_UNASSIGNED {
        assert!(
            call::name(nr).is_some() && call::feature(nr).is_some(),
            "{nr}"
        );
    }
    assert_eq!(call::name(call::FIRST_UNASSIGNED), None);
    assert_eq!(call::feature(call::FIRST_UNASSIGNED), None);
}

// ---- plain calls -----------------------------------------------------------------------

#[test]
fn version_and_nop() {
    let mut vm = FakeVm::new();
    let o = vm.call(call::VERSION, 0, 0);
    assert_eq!(
        o,
        HcOutcome {
            result: 0x0001_0001,
            action: HcAction::Continue,
            calls_executed: 1
        }
    );
    let o = vm.call(call::NOP, 0, 0);
    assert_eq!(
        o,
        HcOutcome {
            result: 0,
            action: HcAction::Continue,
            calls_executed: 1
        }
    );
    // Reserved arguments must be 0.
    for regs in [
        HcRegs {
            rax: call::NOP,
            rbx: 1,
            ..HcRegs::default()
        },
        HcRegs {
            rax: call::NOP,
            rsi: 1,
            ..HcRegs::default()
        },
        HcRegs {
            rax: call::VERSION,
            rdx: 1,
            ..HcRegs::default()
        },
    ] {
        assert_eq!(err(dispatch(&mut vm, regs, 0)), HcError::BadArgument);
    }
    assert_eq!((vm.reads, vm.writes), (0, 0));
}

#[test]
fn unknown_calls() {
    let mut vm = FakeVm::new();
    for nr in [
        7,
        8,
        100,
        1 << 32,
        (1 << 32) | call::NOP,
        u64::MAX,
        i64::MAX as u64,
    ] {
        let o = vm.call(nr, 0, 0);
        assert_eq!(err(o), HcError::UnknownCall, "{nr:#x}");
        assert_eq!(o.action, HcAction::Continue);
    }
}

#[test]
fn cpl_above_zero_is_refused_without_acting() {
    let mut vm = FakeVm::new();
    vm.poke(BASE, b"hello");
    for cpl in [1, 2, 3, 255] {
        for (nr, a0, a1) in [
            (call::VERSION, 0, 0),
            (call::NOP, 0, 0),
            (call::CONSOLE_WRITE, BASE, 5),
            (call::MULTICALL, BASE, 1),
            (call::IDLE, 1, 0),
            (call::EXIT_STATS, BASE, 4096),
            (99, 0, 0),
        ] {
            let regs = HcRegs {
                rax: nr,
                rbx: a0,
                rcx: a1,
                ..HcRegs::default()
            };
            let o = dispatch(&mut vm, regs, cpl);
            assert_eq!(
                o,
                HcOutcome {
                    result: -5,
                    action: HcAction::Continue,
                    calls_executed: 0
                }
            );
        }
    }
    assert!(vm.console.is_empty());
    assert_eq!((vm.reads, vm.writes), (0, 0));
}

#[test]
fn features_withheld_are_unsupported() {
    let mut vm = FakeVm::new();
    vm.features = 0;
    assert_eq!(vm.call(call::VERSION, 0, 0).result, 0x0001_0001);
    assert_eq!(vm.call(call::NOP, 0, 0).result, 0);
    assert_eq!(
        err(vm.call(call::CONSOLE_WRITE, BASE, 1)),
        HcError::Unsupported
    );
    assert_eq!(err(vm.call(call::MULTICALL, BASE, 1)), HcError::Unsupported);
    assert_eq!(err(vm.call(call::IDLE, 0, 0)), HcError::Unsupported);
    assert_eq!(
        err(vm.call(call::EXIT_STATS, BASE, 4096)),
        HcError::Unsupported
    );
    assert_eq!((vm.reads, vm.writes, vm.console_calls), (0, 0, 0));
}

#[test]
fn console_write() {
    let mut vm = FakeVm::new();
    vm.poke(BASE + 0x100, b"hello, bulkhead\n");
    let o = vm.call(call::CONSOLE_WRITE, BASE + 0x100, 16);
    assert_eq!((o.result, o.calls_executed), (16, 1));
    assert_eq!(vm.console, b"hello, bulkhead\n");

    // The maximum, in one piece, up to the last byte of RAM.
    let o = vm.call(call::CONSOLE_WRITE, BASE + (RAM - 4096) as u64, 4096);
    assert_eq!(o.result, 4096);
    assert_eq!((vm.console.len(), vm.console_calls), (16 + 4096, 2));

    // Empty: nothing read, address not checked.
    assert_eq!(vm.call(call::CONSOLE_WRITE, 0, 0).result, 0);
    assert_eq!(vm.call(call::CONSOLE_WRITE, u64::MAX, 0).result, 0);
    assert_eq!(vm.console_calls, 2);
}

#[test]
fn console_write_bad_arguments() {
    let mut vm = FakeVm::new();
    let end = BASE + RAM as u64;
    for (gpa, len, want) in [
        (BASE, 4097, HcError::TooLarge),
        (BASE, u64::MAX, HcError::TooLarge),
        (u64::MAX - 2, 10, HcError::BadAddress),
        (u64::MAX, 1, HcError::BadAddress),
        (0, 16, HcError::BadAddress),
        (BASE - 1, 16, HcError::BadAddress),
        (end, 1, HcError::BadAddress),
        (end - 15, 16, HcError::BadAddress),
    ] {
        assert_eq!(
            err(vm.call(call::CONSOLE_WRITE, gpa, len)),
            want,
            "{gpa:#x} {len}"
        );
    }
    // Overflowing ranges never reach the host.
    let reads = vm.reads;
    assert_eq!(
        err(vm.call(call::CONSOLE_WRITE, u64::MAX - 2, 10)),
        HcError::BadAddress
    );
    assert_eq!(vm.reads, reads);
    let regs = HcRegs {
        rax: call::CONSOLE_WRITE,
        rbx: BASE,
        rcx: 1,
        rdx: 0,
        rsi: 7,
    };
    assert_eq!(err(dispatch(&mut vm, regs, 0)), HcError::BadArgument);
    assert!(vm.console.is_empty());
    assert_eq!(vm.console_calls, 0);
}

#[test]
fn idle_and_yield() {
    let mut vm = FakeVm::new();
    let o = vm.call(call::IDLE, call::IDLE_YIELD, 0);
    assert_eq!(
        o,
        HcOutcome {
            result: 0,
            action: HcAction::Yield,
            calls_executed: 1
        }
    );
    let o = vm.call(call::IDLE, call::IDLE_HALT, 0);
    assert_eq!(
        o,
        HcOutcome {
            result: 0,
            action: HcAction::Idle,
            calls_executed: 1
        }
    );
    for (a0, a1) in [(2, 0), (u64::MAX, 0), (0, 1), (1, 1)] {
        let o = vm.call(call::IDLE, a0, a1);
        assert_eq!(
            (err(o), o.action),
            (HcError::BadArgument, HcAction::Continue)
        );
    }
}

// ---- exit statistics -------------------------------------------------------------------

#[test]
fn exit_stats_layout() {
    let mut vm = FakeVm::new();
    let gpa = BASE + 0x1000;
    let need = stats::size_for(4);
    assert_eq!(need, 24 + 4 * 24);
    // Size query.
    assert_eq!(vm.call(call::EXIT_STATS, 0, 0).result, need as i64);
    assert_eq!(vm.writes, 0);

    let o = vm.call(call::EXIT_STATS, gpa, 4096);
    assert_eq!(o.result, need as i64);
    let bytes = vm.peek(gpa, need).to_vec();
    // Raw offsets, as documented.
    assert_eq!(&bytes[0..4], &1u32.to_le_bytes());
    assert_eq!(&bytes[4..8], &4u32.to_le_bytes());
    assert_eq!(&bytes[8..12], &24u32.to_le_bytes());
    assert_eq!(&bytes[12..16], &24u32.to_le_bytes());
    assert_eq!(&bytes[16..24], &2_000_000_000u64.to_le_bytes());
    assert_eq!(&bytes[24 + 48..24 + 52], &18u32.to_le_bytes());
    assert_eq!(&bytes[24 + 52..24 + 56], &0u32.to_le_bytes());
    assert_eq!(&bytes[24 + 56..24 + 64], &7u64.to_le_bytes());
    assert_eq!(&bytes[24 + 64..24 + 72], &7000u64.to_le_bytes());
    // Nothing after the copy.
    assert!(vm.peek(gpa + need as u64, 64).iter().all(|&b| b == 0));

    let s = Stats::parse(&bytes).unwrap();
    assert_eq!(s.header, stats::Header::v1(4, 2_000_000_000));
    let got: Vec<_> = s.iter().map(|e| (e.reason, e.count, e.ticks)).collect();
    assert_eq!(got, vm.stats);
    assert_eq!(s.find(30).map(|e| e.count), Some(100));
    assert_eq!(s.find(31), None);

    // Exactly enough room.
    assert_eq!(
        vm.call(call::EXIT_STATS, gpa, need as u64).result,
        need as i64
    );
}

#[test]
fn exit_stats_bad_arguments() {
    let mut vm = FakeVm::new();
    let need = stats::size_for(vm.stats.len()) as u64;
    for len in [1, 23, 24, need - 1] {
        assert_eq!(
            err(vm.call(call::EXIT_STATS, BASE, len)),
            HcError::BadLength,
            "{len}"
        );
    }
    assert_eq!(vm.writes, 0);
    assert_eq!(
        err(vm.call(call::EXIT_STATS, u64::MAX - 8, 4096)),
        HcError::BadAddress
    );
    assert_eq!(
        err(vm.call(call::EXIT_STATS, 0x1000, 4096)),
        HcError::BadAddress
    );
    let end = BASE + RAM as u64;
    assert_eq!(
        err(vm.call(call::EXIT_STATS, end - need + 1, 4096)),
        HcError::BadAddress
    );
    assert_eq!(
        vm.call(call::EXIT_STATS, end - need, 4096).result,
        need as i64
    );
    let regs = HcRegs {
        rax: call::EXIT_STATS,
        rbx: BASE,
        rcx: 4096,
        rdx: 1,
        rsi: 0,
    };
    assert_eq!(err(dispatch(&mut vm, regs, 0)), HcError::BadArgument);
    assert!(vm.ram[..RAM - need as usize].iter().all(|&b| b == 0));
}

#[test]
fn exit_stats_empty_and_truncated() {
    let mut vm = FakeVm::new();
    vm.stats.clear();
    assert_eq!(vm.call(call::EXIT_STATS, BASE, 24).result, 24);
    let s = Stats::parse(vm.peek(BASE, 24)).unwrap();
    assert!(s.is_empty());

    vm.stats = (0..300).map(|r| (r, u64::from(r), 1)).collect();
    assert_eq!(
        vm.call(call::EXIT_STATS, 0, 0).result,
        stats::MAX_SIZE as i64
    );
    assert_eq!(vm.call(call::EXIT_STATS, BASE, 4096).result, 3096);
    let s = Stats::parse(vm.peek(BASE, 3096)).unwrap();
    assert_eq!(s.len(), 128);
    assert_eq!(s.get(127).unwrap().reason, 127);
}

#[test]
fn stats_parser_rejects_garbage() {
    assert_eq!(Stats::parse(&[]).unwrap_err(), HcError::BadLength);
    let mut h = stats::Header::v1(2, 0).to_bytes().to_vec();
    assert_eq!(Stats::parse(&h).unwrap_err(), HcError::BadLength);
    h[0] = 2;
    assert_eq!(Stats::parse(&h).unwrap_err(), HcError::BadArgument);
    let h = stats::Header {
        count: u32::MAX,
        entry_size: u32::MAX,
        ..stats::Header::v1(0, 0)
    };
    assert_eq!(Stats::parse(&h.to_bytes()).unwrap_err(), HcError::BadLength);
    // Bigger header and entries (a later minor version) still parse.
    let mut b = stats::Header {
        entry_size: 32,
        header_size: 40,
        ..stats::Header::v1(1, 9)
    }
    .to_bytes()
    .to_vec();
    b.resize(40, 0xee);
    b.extend_from_slice(
        &stats::Entry {
            reason: 48,
            count: 2,
            ticks: 3,
        }
        .to_bytes(),
    );
    b.resize(72, 0xee);
    let s = Stats::parse(&b).unwrap();
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        [stats::Entry {
            reason: 48,
            count: 2,
            ticks: 3
        }]
    );
}

// ---- multicall -------------------------------------------------------------------------

#[test]
fn batch_layout_and_capacity() {
    let mut b = Box::new(Batch::new());
    assert_eq!(b.gpa() % 4096, 0);
    assert!(b.is_empty());
    for i in 0..multicall::MAX_ENTRIES {
        assert_eq!(b.push(call::NOP, i as u64, 0), Ok(i));
    }
    assert_eq!(b.push_nop(), Err(multicall::Full));
    assert_eq!(b.len(), 128);
    assert!(b
        .results()
        .all(|r| r == Err(CallError::Unknown(multicall::NOT_RUN))));
    let e = Entry {
        call: 0x0102,
        arg0: 0x0304,
        arg1: 0x0506,
        result: -2,
    };
    let bytes = e.to_bytes();
    assert_eq!(bytes[0], 0x02);
    assert_eq!(bytes[8], 0x04);
    assert_eq!(bytes[16], 0x06);
    assert_eq!(&bytes[24..], &(-2i64).to_le_bytes());
    assert_eq!(Entry::from_bytes(&bytes), e);
    b.clear();
    assert_eq!(b.entries().len(), 0);
}

#[test]
fn multicall_runs_n_calls_with_one_dispatch() {
    for n in [1usize, 8, 32, 128] {
        let mut vm = FakeVm::new();
        let gpa = BASE + 0x2000;
        let mut batch = Box::new(Batch::new());
        for _ in 0..n {
            batch.push_nop().unwrap();
        }
        vm.load_batch(gpa, &batch);
        let o = vm.call(call::MULTICALL, gpa, n as u64);
        assert_eq!(
            o,
            HcOutcome {
                result: n as i64,
                action: HcAction::Continue,
                calls_executed: n as u32
            }
        );
        assert_eq!(vm.reads, 1, "the batch is read once");
        for i in 0..n {
            let e = vm.entry(gpa + (i * 32) as u64);
            assert_eq!((e.call, e.result), (call::NOP, 0));
        }
        // The entry after the batch is untouched.
        assert_eq!(
            vm.entry(gpa + (n * 32) as u64),
            Entry {
                call: 0,
                arg0: 0,
                arg1: 0,
                result: 0
            }
        );
    }
}

#[test]
fn multicall_mixed_batch() {
    let mut vm = FakeVm::new();
    let text = BASE + 0x100;
    vm.poke(text, b"abc");
    let stats_gpa = BASE + 0x800;
    let gpa = BASE + 0x4000;
    let mut batch = Box::new(Batch::new());
    batch.push(call::CONSOLE_WRITE, text, 3).unwrap(); // 0: ok
    batch.push_version().unwrap(); // 1
    batch.push(call::CONSOLE_WRITE, u64::MAX - 1, 3).unwrap(); // 2: overflow
    batch.push(call::MULTICALL, gpa, 1).unwrap(); // 3: nested
    batch.push(77, 0, 0).unwrap(); // 4: unknown
    batch.push(call::CONSOLE_WRITE, text, 4097).unwrap(); // 5: too large
    batch.push_idle(call::IDLE_YIELD).unwrap(); // 6
    batch.push(call::EXIT_STATS, stats_gpa, 4096).unwrap(); // 7
    batch.push(call::CONSOLE_WRITE, 0x10, 3).unwrap(); // 8: outside RAM
    batch.push_idle(call::IDLE_HALT).unwrap(); // 9
    batch.push_idle(call::IDLE_YIELD).unwrap(); // 10: idle still wins
    batch.push_idle(9).unwrap(); // 11: bad mode
    batch.push(call::CONSOLE_WRITE, text + 1, 2).unwrap(); // 12: ok
    vm.load_batch(gpa, &batch);

    let o = vm.call(call::MULTICALL, gpa, batch.len() as u64);
    assert_eq!(
        o,
        HcOutcome {
            result: 13,
            action: HcAction::Idle,
            calls_executed: 13
        }
    );
    let results: Vec<i64> = (0..13).map(|i| vm.entry(gpa + i * 32).result).collect();
    let e = |e: HcError| e.to_result();
    assert_eq!(
        results,
        [
            3,
            0x0001_0001,
            e(HcError::BadAddress),
            e(HcError::Nested),
            e(HcError::UnknownCall),
            e(HcError::TooLarge),
            0,
            stats::size_for(4) as i64,
            e(HcError::BadAddress),
            0,
            0,
            e(HcError::BadArgument),
            2,
        ]
    );
    assert_eq!(vm.console, b"abcbc");
    assert_eq!(Stats::parse(vm.peek(stats_gpa, 4096)).unwrap().len(), 4);
    // The in fields are not written back.
    assert_eq!(vm.entry(gpa + 3 * 32).call, call::MULTICALL);
}

#[test]
fn multicall_bad_arguments() {
    let mut vm = FakeVm::new();
    let end = BASE + RAM as u64;
    for (gpa, count, want) in [
        (BASE, 0, HcError::BadLength),
        (BASE, 129, HcError::TooLarge),
        (BASE, u64::MAX, HcError::TooLarge),
        (BASE + 8, 1, HcError::BadArgument),
        (BASE + 1, 1, HcError::BadArgument),
        (u64::MAX - 31, 2, HcError::BadAddress),
        (0, 1, HcError::BadAddress),
        (end - 32, 2, HcError::BadAddress),
        (end, 1, HcError::BadAddress),
    ] {
        let o = vm.call(call::MULTICALL, gpa, count);
        assert_eq!((err(o), o.calls_executed), (want, 0), "{gpa:#x} {count}");
    }
    assert_eq!(vm.writes, 0);
    let regs = HcRegs {
        rax: call::MULTICALL,
        rbx: BASE,
        rcx: 1,
        rdx: 0,
        rsi: 1,
    };
    assert_eq!(err(dispatch(&mut vm, regs, 0)), HcError::BadArgument);
    // The last entry of RAM is fine.
    let o = vm.call(call::MULTICALL, end - 32, 1);
    assert_eq!((o.result, vm.entry(end - 32).result), (1, 0x0001_0001));
}

#[test]
fn multicall_result_write_failure() {
    let mut vm = FakeVm::new();
    let mut batch = Box::new(Batch::new());
    batch.push_nop().unwrap();
    batch.push_nop().unwrap();
    vm.load_batch(BASE, &batch);
    vm.read_only = true;
    let o = vm.call(call::MULTICALL, BASE, 2);
    assert_eq!((err(o), o.calls_executed), (HcError::BadAddress, 1));
}

// ---- guest-mode conventions ------------------------------------------------------------

#[test]
fn legacy_mode_registers_and_result() {
    let regs = HcRegs {
        rax: 0xdead_0000_0000_0002,
        rbx: 0xffff_ffff_0010_0000,
        rcx: 0x1_0000_0003,
        rdx: 1 << 40,
        rsi: 1 << 63,
    };
    let low = regs.low32();
    assert_eq!(
        low,
        HcRegs {
            rax: 2,
            rbx: 0x10_0000,
            rcx: 3,
            rdx: 0,
            rsi: 0
        }
    );
    let mut vm = FakeVm::new();
    vm.poke(BASE, b"xyz");
    let o = dispatch(&mut vm, low, 0);
    assert_eq!((o.rax(false), o.rax(true)), (3, 3));
    assert_eq!(vm.console, b"xyz");
    let o = dispatch(
        &mut vm,
        HcRegs {
            rax: 9,
            ..HcRegs::default()
        },
        0,
    );
    assert_eq!(o.rax(true), (-1i64) as u64);
    assert_eq!(o.rax(false), 0xffff_ffff);
    assert_eq!(o.rax(false) as u32 as i32, -1);
}

// ---- robustness ------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Mostly values near the interesting ones, sometimes anything.
    fn arg(&mut self) -> u64 {
        let r = self.next();
        match r % 8 {
            0 => 0,
            1 => r >> 60,
            2 => BASE + (r >> 40) % (RAM as u64 + 64),
            3 => (BASE + (r >> 40) % RAM as u64) & !31,
            4 => u64::MAX - (r >> 56),
            5 => (r >> 50) % 200,
            _ => r,
        }
    }
}

#[test]
fn garbage_registers_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut vm = FakeVm::new();
    // Garbage RAM, so batches contain garbage entries. Seed some plausible entries too.
    for b in vm.ram.iter_mut() {
        *b = rng.next() as u8;
    }
    let mut seen = [0usize; 9];
    for iter in 0..20_000 {
        if iter % 64 == 0 {
            // Scatter plausible entries over RAM.
            for _ in 0..32 {
                let gpa = (BASE + rng.next() % RAM as u64) & !31;
                let e = Entry::new(rng.next() % 8, rng.arg(), rng.arg());
                if gpa + 32 <= BASE + RAM as u64 {
                    vm.poke(gpa, &e.to_bytes());
                }
            }
            vm.features = (rng.next() as u32) & 0x1f;
            vm.read_only = rng.next().is_multiple_of(16);
            vm.console.clear();
        }
        let regs = HcRegs {
            rax: if rng.next().is_multiple_of(4) {
                rng.next()
            } else {
                rng.next() % 7
            },
            rbx: rng.arg(),
            rcx: rng.arg(),
            rdx: if rng.next().is_multiple_of(4) {
                rng.arg()
            } else {
                0
            },
            rsi: if rng.next().is_multiple_of(4) {
                rng.arg()
            } else {
                0
            },
        };
        let cpl = if rng.next().is_multiple_of(8) {
            (rng.next() % 4) as u8
        } else {
            0
        };
        let regs = if rng.next().is_multiple_of(8) {
            regs.low32()
        } else {
            regs
        };
        let o = dispatch(&mut vm, regs, cpl);
        assert!(o.calls_executed as usize <= multicall::MAX_ENTRIES);
        match decode(o.result) {
            Ok(v) => {
                assert!(v <= 0x0001_0001, "{regs:?} -> {v}");
                seen[0] += 1;
            }
            Err(CallError::Hc(e)) => seen[e.code() as usize] += 1,
            Err(other) => panic!("{regs:?} -> {other:?}"),
        }
        if cpl != 0 {
            assert_eq!(o.result, HcError::NotPermitted.to_result());
        }
    }
    // The generator reaches success and every error but Nested (only in entries).
    for (code, n) in seen.iter().enumerate() {
        assert!(code == 8 || *n > 0, "code {code} never seen: {seen:?}");
    }
}

// ---- guest side, without executing VMCALL ---------------------------------------------

#[test]
fn guest_wrappers_refuse_without_bulkhead() {
    // The test host is not Bulkhead (bare metal or another hypervisor), so detection fails
    // and no wrapper executes VMCALL (which would fault here).
    assert_eq!(crate::guest::detect(), None);
    assert!(!crate::guest::present());
    assert_eq!(crate::guest::nop(), Err(CallError::NoHypervisor));
    assert_eq!(crate::guest::version(), Err(CallError::NoHypervisor));
    assert_eq!(
        crate::guest::console_write(b"x"),
        Err(CallError::NoHypervisor)
    );
    assert_eq!(crate::guest::yield_now(), Err(CallError::NoHypervisor));
    assert_eq!(
        crate::guest::exit_stats_size(),
        Err(CallError::NoHypervisor)
    );
    let mut batch = Box::new(Batch::new());
    // SAFETY: no VMCALL happens: Bulkhead is absent (asserted above).
    assert_eq!(unsafe { crate::guest::multicall(&mut batch) }, Ok(0));
    batch.push_nop().unwrap();
    // SAFETY: as above.
    let r = unsafe { crate::guest::multicall(&mut batch) };
    assert_eq!(r, Err(CallError::NoHypervisor));
    let mut buf = [0u8; 64];
    // SAFETY: as above.
    let r = unsafe { crate::guest::exit_stats(&mut buf) };
    assert_eq!(r, Err(CallError::NoHypervisor));
}

// ---- MEM_RELEASE (v1.1) -----------------------------------------------------------------

#[test]
fn mem_release_zeroes_the_pages_it_is_given() {
    let mut vm = FakeVm::new();
    vm.poke(BASE + 0x1000, &[0xaa; 0x2000]);
    let o = vm.call(call::MEM_RELEASE, BASE + 0x1000, 2);
    assert_eq!((o.result, o.action), (2, HcAction::Continue));
    assert_eq!(vm.released, [(BASE + 0x1000, 2)]);
    assert!(vm.peek(BASE + 0x1000, 0x2000).iter().all(|&b| b == 0));
}

#[test]
fn mem_release_rejects_bad_ranges_without_acting() {
    let mut vm = FakeVm::new();
    for (gpa, pages, want) in [
        (BASE + 1, 1, HcError::BadArgument),
        (BASE + 0x800, 1, HcError::BadArgument),
        (BASE, 0, HcError::BadLength),
        (BASE, call::MEM_RELEASE_MAX_PAGES + 1, HcError::TooLarge),
        (BASE, u64::MAX, HcError::TooLarge),
        (!0xfff, 2, HcError::BadAddress),
        // Past the end of the fake's RAM: the host's check.
        (BASE + RAM as u64 - 0x1000, 2, HcError::BadAddress),
        (0, 1, HcError::BadAddress),
    ] {
        assert_eq!(
            err(vm.call(call::MEM_RELEASE, gpa, pages)),
            want,
            "{gpa:#x}+{pages}"
        );
    }
    let regs = HcRegs {
        rax: call::MEM_RELEASE,
        rbx: BASE,
        rcx: 1,
        rdx: 1,
        rsi: 0,
    };
    assert_eq!(err(dispatch(&mut vm, regs, 0)), HcError::BadArgument);
    assert!(vm.released.is_empty());
    vm.features = cpuid::FEATURES_V1 & !cpuid::FEATURE_MEM_RELEASE;
    assert_eq!(
        err(vm.call(call::MEM_RELEASE, BASE, 1)),
        HcError::Unsupported
    );
    assert!(vm.released.is_empty());
}

#[test]
fn a_host_without_mem_release_says_unsupported() {
    struct Bare;
    impl HypercallHost for Bare {
        fn read_guest(&mut self, _: u64, _: &mut [u8]) -> Result<(), HcError> {
            Err(HcError::BadAddress)
        }
        fn write_guest(&mut self, _: u64, _: &[u8]) -> Result<(), HcError> {
            Err(HcError::BadAddress)
        }
        fn console_write(&mut self, _: &[u8]) {}
        fn exit_stats(&self, _: &mut dyn FnMut(u32, u64, u64)) {}
    }
    let regs = HcRegs {
        rax: call::MEM_RELEASE,
        rbx: 0x1000,
        rcx: 1,
        ..HcRegs::default()
    };
    assert_eq!(err(dispatch(&mut Bare, regs, 0)), HcError::Unsupported);
}

#[test]
fn a_console_over_its_limit_drops_writes_unread() {
    struct Full {
        reads: usize,
        discarded: usize,
    }
    impl HypercallHost for Full {
        fn read_guest(&mut self, _: u64, _: &mut [u8]) -> Result<(), HcError> {
            self.reads += 1;
            Ok(())
        }
        fn write_guest(&mut self, _: u64, _: &[u8]) -> Result<(), HcError> {
            Ok(())
        }
        fn console_write(&mut self, _: &[u8]) {
            panic!("a discarded write reached the console");
        }
        fn console_discard(&mut self, len: usize) -> bool {
            self.discarded += len;
            true
        }
        fn exit_stats(&self, _: &mut dyn FnMut(u32, u64, u64)) {}
    }
    let mut h = Full {
        reads: 0,
        discarded: 0,
    };
    let regs = HcRegs {
        rax: call::CONSOLE_WRITE,
        rbx: 0x1000,
        rcx: 4096,
        ..HcRegs::default()
    };
    assert_eq!(dispatch(&mut h, regs, 0).result, 4096);
    assert_eq!((h.reads, h.discarded), (0, 4096));
    // The range is still checked first.
    let bad = HcRegs {
        rbx: u64::MAX,
        ..regs
    };
    assert_eq!(err(dispatch(&mut h, bad, 0)), HcError::BadAddress);
}

#[test]
fn stateless_calls_answer_as_dispatch_does() {
    use crate::host::{dispatch_stateless, is_stateless};
    let numbers = [
        call::VERSION,
        call::NOP,
        call::CONSOLE_WRITE,
        call::MULTICALL,
        call::IDLE,
        call::EXIT_STATS,
        call::MEM_RELEASE,
        0xdead,
        u64::MAX,
    ];
    for nr in numbers {
        for args in [[0u64; 4], [1, 0, 0, 0], [0, 0, 0, 1], [u64::MAX; 4]] {
            for cpl in 0..=3u8 {
                let regs = HcRegs {
                    rax: nr,
                    rbx: args[0],
                    rcx: args[1],
                    rdx: args[2],
                    rsi: args[3],
                };
                let mut vm = FakeVm::new();
                let full = dispatch(&mut vm, regs, cpl);
                match dispatch_stateless(regs, cpl) {
                    Some(quick) => {
                        assert!(is_stateless(nr), "{nr:#x} answered without a host");
                        assert_eq!(quick, full, "{regs:?} at CPL {cpl}");
                        assert_eq!((vm.reads, vm.writes, vm.console_calls), (0, 0, 0));
                    }
                    None => assert!(!is_stateless(nr), "{nr:#x} refused"),
                }
            }
        }
    }
}
