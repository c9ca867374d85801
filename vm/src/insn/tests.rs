//! Table-driven tests over hand-assembled encodings (each cross-checked with GNU `as` +
//! `objdump -d -M intel`; the assembly is in the comment next to the bytes).

use super::*;
use alloc::vec::Vec;
use CpuMode::{Bits16, Bits32, Bits64};

/// A register file with recognisable, distinct contents.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Regs {
    gpr: [u64; 16],
    rflags: u64,
}

impl Regs {
    fn new() -> Self {
        let mut gpr = [0; 16];
        for (i, r) in gpr.iter_mut().enumerate() {
            // 0x1111_1111_1111_1111 * (i + 1) with a recognisable low byte pattern.
            *r = 0x0101_0101_0101_0101u64.wrapping_mul(0x11 * (i as u64 + 1))
                ^ 0x8000_0000_0000_0000;
        }
        Self { gpr, rflags: 0x2 }
    }

    fn with(mut self, r: Gpr, v: u64) -> Self {
        self.gpr[r.index()] = v;
        self
    }
}

impl Registers for Regs {
    fn get(&self, r: Gpr) -> u64 {
        self.gpr[r.index()]
    }
    fn set(&mut self, r: Gpr, value: u64) {
        self.gpr[r.index()] = value;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, value: u64) {
        self.rflags = value;
    }
}

/// Emulates with a device whose reads return `device` and records every access.
fn run(
    bytes: &[u8],
    mode: CpuMode,
    regs: &mut Regs,
    device: u64,
) -> (Result<Emulated, InsnError>, Vec<MmioAccess>) {
    let mut log = Vec::new();
    let result = emulate(bytes, mode, regs, logging(&mut log, device));
    (result, log)
}

/// A device whose reads return `device`, recording every access in `log`.
fn logging(log: &mut Vec<MmioAccess>, device: u64) -> impl FnMut(MmioAccess) -> u64 + '_ {
    move |a| {
        log.push(a);
        device
    }
}

fn read(size: u8) -> MmioAccess {
    MmioAccess::Read { size }
}

fn write(size: u8, value: u64) -> MmioAccess {
    MmioAccess::Write { size, value }
}

/// A store: the device must see exactly one write of `size` bytes of `value`; no register or
/// flag changes.
#[test]
fn stores() {
    let regs = Regs::new()
        .with(Gpr::Rax, 0x1122_3344_5566_7788)
        .with(Gpr::R9, 0xaaaa_bbbb_cccc_dddd)
        .with(Gpr::Rsi, 0xffff_ffff_ffff_ff5e)
        .with(Gpr::R12, 0x0000_0000_0000_00c3)
        .with(Gpr::R14, 0x1234_5678_9abc_def0)
        .with(Gpr::Rsp, 0x7fff_ffff_ffff_ff9d)
        .with(Gpr::Rbp, 0x0000_0000_0000_ab3c);
    #[rustfmt::skip]
    let cases: &[(&[u8], CpuMode, MmioAccess)] = &[
        (&[0x89, 0x07], Bits64, write(4, 0x5566_7788)),                  // mov [rdi], eax
        (&[0x48, 0x89, 0x47, 0x08], Bits64, write(8, 0x1122_3344_5566_7788)), // mov [rdi+8], rax
        (&[0x45, 0x89, 0x08], Bits64, write(4, 0xcccc_dddd)),            // mov [r8], r9d
        (&[0x88, 0x07], Bits64, write(1, 0x88)),                         // mov [rdi], al
        (&[0x88, 0x27], Bits64, write(1, 0x77)),                         // mov [rdi], ah
        (&[0x40, 0x88, 0x37], Bits64, write(1, 0x5e)),                   // mov [rdi], sil
        (&[0x40, 0x88, 0x27], Bits64, write(1, 0x9d)),                   // mov [rdi], spl (not ah)
        (&[0x41, 0x88, 0x28], Bits64, write(1, 0x3c)),                   // mov [r8], bpl (REX.B)
        (&[0xc7, 0x45, 0x00, 0x05, 0x00, 0x00, 0x00], Bits64, write(4, 5)), // mov dword [rbp+0], 5
        (&[0x44, 0x88, 0x27], Bits64, write(1, 0xc3)),                   // mov [rdi], r12b
        (&[0x66, 0x89, 0x07], Bits64, write(2, 0x7788)),                 // mov [rdi], ax
        // mov [r13+0x12345678], r14w (66 REX.RB, disp32)
        (&[0x66, 0x45, 0x89, 0xb5, 0x78, 0x56, 0x34, 0x12], Bits64, write(2, 0xdef0)),
        (&[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12], Bits64, write(4, 0x1234_5678)), // mov dword [rdi], imm32
        // mov qword [rdi], -2 (imm32 sign-extended to 64)
        (&[0x48, 0xc7, 0x07, 0xfe, 0xff, 0xff, 0xff], Bits64, write(8, 0xffff_ffff_ffff_fffe)),
        (&[0xc6, 0x07, 0xab], Bits64, write(1, 0xab)),                   // mov byte [rdi], 0xab
        (&[0x66, 0xc7, 0x07, 0xef, 0xbe], Bits64, write(2, 0xbeef)),     // mov word [rdi], 0xbeef
        // movabs [0x1122334455667788], eax
        (&[0xa3, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], Bits64, write(4, 0x5566_7788)),
        (&[0x65, 0x89, 0x07], Bits64, write(4, 0x5566_7788)),            // mov gs:[rdi], eax
        (&[0x67, 0x89, 0x07], Bits64, write(4, 0x5566_7788)),            // mov [edi], eax
        (&[0x89, 0x43, 0x10], Bits32, write(4, 0x5566_7788)),            // mov [ebx+0x10], eax
        (&[0x67, 0x66, 0x89, 0x00], Bits32, write(2, 0x7788)),           // mov [bx+si], ax
        (&[0xc6, 0x07, 0x5a], Bits32, write(1, 0x5a)),                   // mov byte [edi], 0x5a
        (&[0x89, 0x00], Bits16, write(2, 0x7788)),                       // mov [bx+si], ax
        (&[0x67, 0x66, 0x89, 0x0f], Bits16, write(4, 0x9999_9999)),      // mov [edi], ecx
        (&[0xc7, 0x46, 0x06, 0x34, 0x12], Bits16, write(2, 0x1234)),     // mov word [bp+6], 0x1234
    ];
    for &(bytes, mode, expected) in cases {
        let mut r = regs.clone();
        // RCX of Regs::new() for the 16-bit case above.
        r.gpr[Gpr::Rcx.index()] = 0x9999_9999_9999_9999;
        let before = r.clone();
        let (result, log) = run(bytes, mode, &mut r, 0xdead);
        let e = result.unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
        assert_eq!(usize::from(e.len), bytes.len(), "{bytes:02x?}");
        assert_eq!(log, [expected], "{bytes:02x?}");
        assert_eq!(r, before, "{bytes:02x?}: a store changed registers");
        assert!(e.op.writes() && !e.op.reads(), "{bytes:02x?}");
        let MmioAccess::Write { size, value } = expected else {
            unreachable!()
        };
        assert_eq!(e.op.size(), size);
        assert_eq!((e.read, e.written), (None, Some(value)));
    }
}

/// bytes, mode, device value, access size, destination, its expected value.
type LoadCase = (&'static [u8], CpuMode, u64, u8, Gpr, u64);

/// A load: one read of `size` bytes; the destination register is `expected`, every other
/// register and RFLAGS unchanged.
#[test]
fn loads() {
    const OLD: u64 = 0xa5a5_a5a5_a5a5_a5a5;
    #[rustfmt::skip]
    let cases: &[LoadCase] = &[
        // bytes, mode, device value, access size, destination, its expected value
        (&[0x8b, 0x07], Bits64, 0xffff_ffff_8765_4321, 4, Gpr::Rax, 0x8765_4321), // mov eax,[rdi]: zero-extends
        (&[0x48, 0x8b, 0x07], Bits64, 0x8765_4321_0fed_cba9, 8, Gpr::Rax, 0x8765_4321_0fed_cba9),
        // mov r15, [rax+rbx*8+0x10] (REX.WR, SIB, disp8)
        (&[0x4c, 0x8b, 0x7c, 0xd8, 0x10], Bits64, 0x0123_4567_89ab_cdef, 8, Gpr::R15, 0x0123_4567_89ab_cdef),
        (&[0x8a, 0x07], Bits64, 0x1ff, 1, Gpr::Rax, 0xa5a5_a5a5_a5a5_a5ff), // mov al,[rdi]: preserves
        (&[0x8a, 0x3f], Bits64, 0x42, 1, Gpr::Rbx, 0xa5a5_a5a5_a5a5_42a5),  // mov bh,[rdi]
        (&[0x40, 0x8a, 0x3f], Bits64, 0x42, 1, Gpr::Rdi, 0xa5a5_a5a5_a5a5_a542), // mov dil,[rdi]
        (&[0x66, 0x8b, 0x07], Bits64, 0x1234_5678, 2, Gpr::Rax, 0xa5a5_a5a5_a5a5_5678), // mov ax,[rdi]
        // mov ecx, [rip+0x1000]
        (&[0x8b, 0x0d, 0x00, 0x10, 0x00, 0x00], Bits64, 0xcafe_f00d, 4, Gpr::Rcx, 0xcafe_f00d),
        // mov r10d, [rsp+4] (REX.R, SIB with base rsp)
        (&[0x44, 0x8b, 0x54, 0x24, 0x04], Bits64, 0x8000_0001, 4, Gpr::R10, 0x8000_0001),
        (&[0x0f, 0xb6, 0x07], Bits64, 0xfe, 1, Gpr::Rax, 0xfe),               // movzx eax, byte
        (&[0x0f, 0xb7, 0x07], Bits64, 0xfffe, 2, Gpr::Rax, 0xfffe),           // movzx eax, word
        (&[0x48, 0x0f, 0xb7, 0x07], Bits64, 0xfffe, 2, Gpr::Rax, 0xfffe),     // movzx rax, word
        (&[0x0f, 0xbe, 0x07], Bits64, 0xfe, 1, Gpr::Rax, 0xffff_fffe),        // movsx eax, byte
        (&[0x0f, 0xbe, 0x07], Bits64, 0x7e, 1, Gpr::Rax, 0x7e),
        (&[0x48, 0x0f, 0xbf, 0x07], Bits64, 0x8000, 2, Gpr::Rax, 0xffff_ffff_ffff_8000), // movsx rax, word
        (&[0x66, 0x0f, 0xbe, 0x07], Bits64, 0x80, 1, Gpr::Rax, 0xa5a5_a5a5_a5a5_ff80), // movsx ax, byte
        (&[0x48, 0x63, 0x07], Bits64, 0x8000_0000, 4, Gpr::Rax, 0xffff_ffff_8000_0000), // movsxd rax
        (&[0x63, 0x07], Bits64, 0x8000_0000, 4, Gpr::Rax, 0x8000_0000),      // movsxd eax (= mov)
        // movabs eax, [0x1122334455667788]
        (&[0xa1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], Bits64, 0x1357_9bdf, 4, Gpr::Rax, 0x1357_9bdf),
        (&[0xa1, 0xb0, 0x00, 0xe0, 0xfe], Bits32, 0x10, 4, Gpr::Rax, 0x10),  // mov eax, [0xfee000b0]
        (&[0x66, 0x8b, 0x06], Bits32, 0xbeef, 2, Gpr::Rax, 0xa5a5_a5a5_a5a5_beef), // mov ax, [esi]
        // movzx ecx, byte [edx+ecx*4]
        (&[0x0f, 0xb6, 0x0c, 0x8a], Bits32, 0x99, 1, Gpr::Rcx, 0x99),
        (&[0x66, 0x8b, 0x87, 0x34, 0x12], Bits16, 0xdead_beef, 4, Gpr::Rax, 0xdead_beef), // mov eax, [bx+0x1234]
        (&[0x8a, 0x05], Bits16, 0x11, 1, Gpr::Rax, 0xa5a5_a5a5_a5a5_a511),   // mov al, [di]
        // mov r11w, [r9+rax*2] (66 REX.RB, SIB): preserves bits 63:16
        (&[0x66, 0x45, 0x8b, 0x1c, 0x41], Bits64, 0xffff_1234, 2, Gpr::R11, 0xa5a5_a5a5_a5a5_1234),
    ];
    for &(bytes, mode, device, size, dest, expected) in cases {
        let mut r = Regs {
            gpr: [OLD; 16],
            rflags: 0x2,
        };
        let (result, log) = run(bytes, mode, &mut r, device);
        let e = result.unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
        assert_eq!(usize::from(e.len), bytes.len(), "{bytes:02x?}");
        assert_eq!(log, [read(size)], "{bytes:02x?}");
        assert_eq!(e.read, Some(device & mask(size)), "{bytes:02x?}");
        assert_eq!(e.written, None);
        assert!(e.op.reads() && !e.op.writes());
        let mut want = [OLD; 16];
        want[dest.index()] = expected;
        assert_eq!(r.gpr, want, "{bytes:02x?}");
        assert_eq!(r.rflags, 0x2);
    }
}

/// Every iced GPR maps to the right register, width and byte position.
#[test]
fn register_mapping() {
    use Register as I;
    let cases = [
        (I::AL, Gpr::Rax, 1, false),
        (I::BL, Gpr::Rbx, 1, false),
        (I::AH, Gpr::Rax, 1, true),
        (I::BH, Gpr::Rbx, 1, true),
        (I::SPL, Gpr::Rsp, 1, false),
        (I::DIL, Gpr::Rdi, 1, false),
        (I::R8L, Gpr::R8, 1, false),
        (I::R15L, Gpr::R15, 1, false),
        (I::AX, Gpr::Rax, 2, false),
        (I::DI, Gpr::Rdi, 2, false),
        (I::R15W, Gpr::R15, 2, false),
        (I::EAX, Gpr::Rax, 4, false),
        (I::R8D, Gpr::R8, 4, false),
        (I::R15D, Gpr::R15, 4, false),
        (I::RAX, Gpr::Rax, 8, false),
        (I::RSP, Gpr::Rsp, 8, false),
        (I::R15, Gpr::R15, 8, false),
    ];
    for (iced, gpr, size, high_byte) in cases {
        assert_eq!(
            RegOperand::from_iced(iced),
            Some(RegOperand {
                gpr,
                size,
                high_byte
            }),
            "{iced:?}"
        );
    }
    for r in [I::None, I::ES, I::GS, I::EIP, I::RIP, I::XMM0, I::CR0] {
        assert_eq!(RegOperand::from_iced(r), None, "{r:?}");
    }
}

#[test]
fn alu_read_modify_write() {
    let mut r = Regs::new().with(Gpr::Rax, 0x0000_0000_0000_0001);
    // add [rdi], eax on 0xffffffff: result 0, CF, ZF, PF, AF set.
    let (e, log) = run(&[0x01, 0x07], Bits64, &mut r, 0xffff_ffff);
    let e = e.unwrap();
    assert_eq!(log, [read(4), write(4, 0)]);
    assert_eq!((e.read, e.written), (Some(0xffff_ffff), Some(0)));
    assert_eq!(
        r.rflags,
        0x2 | rflags::CF | rflags::ZF | rflags::PF | rflags::AF
    );

    // or dword [rdi], 0x80
    let mut r = Regs::new();
    let (e, log) = run(&[0x81, 0x0f, 0x80, 0, 0, 0], Bits64, &mut r, 0x8000_0001);
    assert_eq!(e.unwrap().len, 6);
    assert_eq!(log, [read(4), write(4, 0x8000_0081)]);
    assert_eq!(r.rflags, 0x2 | rflags::SF | rflags::PF);

    // and dword [rdi], 0xfffffff0 (imm8 sign-extended)
    let mut r = Regs::new();
    let (_, log) = run(&[0x83, 0x27, 0xf0], Bits64, &mut r, 0x1234_5678);
    assert_eq!(log, [read(4), write(4, 0x1234_5670)]);

    // lock or [rdi], eax: LOCK is fine on RMW.
    let mut r = Regs::new().with(Gpr::Rax, 0x100);
    let (_, log) = run(&[0xf0, 0x09, 0x07], Bits64, &mut r, 0x1);
    assert_eq!(log, [read(4), write(4, 0x101)]);

    // xor byte [rdi], cl
    let mut r = Regs::new().with(Gpr::Rcx, 0xff0f);
    let (_, log) = run(&[0x30, 0x0f], Bits64, &mut r, 0xff);
    assert_eq!(log, [read(1), write(1, 0xf0)]);
    assert_eq!(r.rflags, 0x2 | rflags::SF | rflags::PF);
}

#[test]
fn alu_register_and_flag_only_forms() {
    // sub eax, [rdi]: 1 - 2 = 0xffffffff, borrow; upper half of RAX cleared.
    let mut r = Regs::new().with(Gpr::Rax, 0xffff_ffff_0000_0001);
    let (e, log) = run(&[0x2b, 0x07], Bits64, &mut r, 2);
    assert!(e.unwrap().op.reads());
    assert_eq!(log, [read(4)]);
    assert_eq!(r.gpr[0], 0xffff_ffff);
    assert_eq!(
        r.rflags,
        0x2 | rflags::CF | rflags::SF | rflags::PF | rflags::AF
    );

    // cmp dword [rdi], 5 on 5: ZF, no write.
    let mut r = Regs::new();
    let before = r.gpr;
    let (e, log) = run(&[0x83, 0x3f, 0x05], Bits64, &mut r, 5);
    assert!(!e.unwrap().op.writes());
    assert_eq!(log, [read(4)]);
    assert_eq!(r.gpr, before);
    assert_eq!(r.rflags, 0x2 | rflags::ZF | rflags::PF);

    // test dword [rdi], 1 on 2: ZF; clears a stale CF/OF.
    let mut r = Regs::new();
    r.rflags = 0x2 | rflags::CF | rflags::OF | rflags::DF;
    let (_, log) = run(&[0xf7, 0x07, 1, 0, 0, 0], Bits64, &mut r, 2);
    assert_eq!(log, [read(4)]);
    assert_eq!(r.rflags, 0x2 | rflags::DF | rflags::ZF | rflags::PF);

    // test byte [rdi], dl
    let mut r = Regs::new().with(Gpr::Rdx, 0x80);
    let (_, log) = run(&[0x84, 0x17], Bits64, &mut r, 0x81);
    assert_eq!(log, [read(1)]);
    assert_eq!(r.rflags, 0x2 | rflags::SF);
}

#[test]
fn alu_flags() {
    use AluOp::*;
    let f = |op: AluOp, a, b, size, flags| op.apply(a, b, size, flags);
    // 0x7f + 1 = 0x80: signed overflow, AF.
    assert_eq!(
        f(Add, 0x7f, 1, 1, 0),
        (0x80, rflags::OF | rflags::SF | rflags::AF)
    );
    // ADC with carry in: 0xffff + 0 + 1 = 0 carry.
    assert_eq!(
        f(Adc, 0xffff, 0, 2, rflags::CF),
        (0, rflags::CF | rflags::ZF | rflags::PF | rflags::AF)
    );
    // 0x80 - 1 = 0x7f: signed overflow.
    assert_eq!(f(Sub, 0x80, 1, 1, 0), (0x7f, rflags::OF | rflags::AF));
    // SBB with borrow in: 0 - 0 - 1.
    assert_eq!(f(Sbb, 0, 0, 8, rflags::CF).0, u64::MAX);
    // 64-bit add carry out.
    assert_eq!(f(Add, u64::MAX, 1, 8, 0).1 & rflags::CF, rflags::CF);
    // Odd sizes are treated as 8 bytes rather than panicking.
    let _ = f(Add, 1, 2, 0, 0);
    let _ = f(Sub, 1, 2, 255, 0);
}

#[test]
fn stos_single_iteration() {
    // stosd: [rdi] = eax; rdi += 4
    let mut r = Regs::new()
        .with(Gpr::Rax, 0x1122_3344_5566_7788)
        .with(Gpr::Rdi, 0x1000);
    let (e, log) = run(&[0xab], Bits64, &mut r, 0);
    assert_eq!(e.unwrap().len, 1);
    assert_eq!(log, [write(4, 0x5566_7788)]);
    assert_eq!(r.gpr[Gpr::Rdi.index()], 0x1004);
    // stosb with DF: rdi -= 1
    let mut r = Regs::new().with(Gpr::Rdi, 0x1000);
    r.rflags |= rflags::DF;
    let (_, log) = run(&[0xaa], Bits64, &mut r, 0);
    assert_eq!(log, [write(1, r.gpr[0] & 0xff)]);
    assert_eq!(r.gpr[Gpr::Rdi.index()], 0xfff);
    // 16-bit stosw: DI wraps at 16 bits, upper RDI bits untouched.
    let mut r = Regs::new().with(Gpr::Rdi, 0xabcd_fffe);
    let (_, log) = run(&[0xab], Bits16, &mut r, 0);
    assert_eq!(log, [write(2, r.gpr[0] & 0xffff)]);
    assert_eq!(r.gpr[Gpr::Rdi.index()], 0xabcd_0000);
}

fn err(bytes: &[u8], mode: CpuMode) -> InsnError {
    let mut r = Regs::new();
    let before = r.clone();
    let (result, log) = run(bytes, mode, &mut r, 0);
    assert!(log.is_empty(), "{bytes:02x?}: accessed the device on error");
    assert_eq!(r, before, "{bytes:02x?}: changed registers on error");
    result.expect_err("expected an error")
}

fn b(bytes: &[u8]) -> InsnBytes {
    InsnBytes::new(bytes)
}

#[test]
fn errors() {
    // Truncated: disp32 cut short, empty input, REX alone.
    assert_eq!(
        err(&[0x8b, 0x0d, 0x00, 0x10], Bits64),
        InsnError::Truncated { available: 4 }
    );
    assert_eq!(err(&[], Bits64), InsnError::Truncated { available: 0 });
    assert_eq!(err(&[0x48], Bits64), InsnError::Truncated { available: 1 });
    // Register-only ModRM: mov eax, ebx.
    assert_eq!(
        err(&[0x89, 0xd8], Bits64),
        InsnError::NotMemoryOperand {
            bytes: b(&[0x89, 0xd8])
        }
    );
    // nop / hlt
    assert!(matches!(
        err(&[0x90], Bits64),
        InsnError::NotMemoryOperand { .. }
    ));
    // LOCK MOV (#UD).
    assert_eq!(
        err(&[0xf0, 0x89, 0x07], Bits64),
        InsnError::LockPrefix {
            bytes: b(&[0xf0, 0x89, 0x07])
        }
    );
    // LOCK CMP (#UD).
    assert!(matches!(
        err(&[0xf0, 0x39, 0x07], Bits64),
        InsnError::LockPrefix { .. }
    ));
    // Unsupported but valid memory instructions: xchg [rdi], eax; movsd; rep stosd; lea; push [rdi];
    // movdqu xmm0, [rdi]; inc dword [rdi].
    for bytes in [
        &[0x87, 0x07][..],
        &[0xa5],
        &[0xf3, 0xab],
        &[0x48, 0x8d, 0x07],
        &[0xff, 0x37],
        &[0xf3, 0x0f, 0x6f, 0x07],
        &[0xff, 0x07],
        &[0x8c, 0x1f], // mov [rdi], ds
    ] {
        assert_eq!(
            err(bytes, Bits64),
            InsnError::Unsupported { bytes: b(bytes) },
            "{bytes:02x?}"
        );
    }
    // Surplus bytes after the instruction are ignored, and not reported.
    assert_eq!(
        err(&[0x87, 0x07, 0xcc, 0xcc], Bits64),
        InsnError::Unsupported {
            bytes: b(&[0x87, 0x07])
        }
    );
    // Invalid: 0F 0B is UD2 (valid, no memory); 0F FF in 16-bit; C7 /1 is not MOV.
    assert!(matches!(
        err(&[0x0f, 0x0b], Bits64),
        InsnError::NotMemoryOperand { .. }
    ));
    assert!(matches!(
        err(&[0xc7, 0x0f, 0, 0, 0, 0], Bits64),
        InsnError::Invalid { .. }
    ));
    // 0x06 (push es) is invalid in 64-bit mode (given enough bytes: iced wants a ModRM for
    // its invalid-opcode handler, so `06` alone is reported as truncated), and a
    // not-emulated stack access in 32-bit mode.
    assert!(matches!(
        err(&[0x06, 0x90], Bits64),
        InsnError::Invalid { .. }
    ));
    assert_eq!(
        err(&[0x06], Bits32),
        InsnError::Unsupported { bytes: b(&[0x06]) }
    );
    // More than 15 bytes of prefixes.
    let mut long = [0x66; 16];
    long[14] = 0x89;
    long[15] = 0x07;
    assert!(matches!(err(&long, Bits64), InsnError::Invalid { .. }));
}

#[test]
fn error_messages() {
    assert_eq!(
        InsnError::Unsupported {
            bytes: b(&[0x87, 0x07])
        }
        .to_string(),
        "unsupported MMIO instruction: 87 07"
    );
    assert_eq!(
        InsnError::Truncated { available: 3 }.to_string(),
        "instruction truncated after 3 bytes"
    );
    assert_eq!(format!("{:?}", b(&[0xf0, 0x89])), "InsnBytes(f0 89)");
}

#[test]
fn warm_up_is_idempotent() {
    warm_up();
    warm_up();
}

#[test]
fn cpu_mode_from_segment() {
    assert_eq!(CpuMode::from_segment(true, true, false), Bits64);
    assert_eq!(CpuMode::from_segment(true, false, true), Bits32); // compat, 32-bit CS
    assert_eq!(CpuMode::from_segment(true, false, false), Bits16); // compat, 16-bit CS
    assert_eq!(CpuMode::from_segment(false, true, true), Bits32); // L ignored outside IA-32e
    assert_eq!(CpuMode::from_segment(false, false, false), Bits16); // real mode
}

#[test]
fn decode_without_emulating() {
    let regs = Regs::new().with(Gpr::Rax, 7);
    assert_eq!(
        decode(&[0x89, 0x07, 0x90, 0x90], Bits64, &regs),
        Ok(Decoded {
            len: 2,
            op: MmioOp::Store { size: 4, value: 7 }
        })
    );
    assert_eq!(
        decode(&[0x0f, 0xbf, 0x07], Bits64, &regs),
        Ok(Decoded {
            len: 3,
            op: MmioOp::Load {
                size: 2,
                dest: RegOperand {
                    gpr: Gpr::Rax,
                    size: 4,
                    high_byte: false
                },
                extend: Extend::Sign
            }
        })
    );
}

/// Deterministic smoke fuzz: random bytes in every mode must never panic, and a success must
/// be self-consistent.
#[test]
fn random_bytes_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Bias towards interesting first bytes so the supported paths are exercised too.
    const PREFIXES: [u8; 12] = [
        0x66, 0x67, 0xf0, 0xf3, 0x48, 0x4c, 0x41, 0x0f, 0x26, 0x65, 0x89, 0x8b,
    ];
    let mut ok = 0;
    for i in 0..30_000 {
        let mut buf = [0u8; 15];
        for chunk in buf.chunks_mut(8) {
            let n = next().to_le_bytes();
            chunk.copy_from_slice(&n[..chunk.len()]);
        }
        if i % 2 == 0 {
            buf[0] = PREFIXES[(next() % PREFIXES.len() as u64) as usize];
        }
        let len = (next() % 16) as usize;
        let mode = [Bits16, Bits32, Bits64][i % 3];
        let mut r = Regs::new();
        r.rflags = next();
        let mut accesses = 0;
        let result = emulate(&buf[..len], mode, &mut r, |a| {
            accesses += 1;
            if let MmioAccess::Write { size, value } = a {
                assert!(matches!(size, 1 | 2 | 4 | 8));
                assert_eq!(value & !mask(size), 0);
            }
            0x0123_4567_89ab_cdef
        });
        match result {
            Ok(e) => {
                ok += 1;
                assert!((1..=len).contains(&usize::from(e.len)));
                assert!((1..=2).contains(&accesses));
                assert!(matches!(e.op.size(), 1 | 2 | 4 | 8));
            }
            Err(e) => {
                assert_eq!(accesses, 0);
                let _ = e.to_string();
            }
        }
    }
    assert!(ok > 100, "only {ok} inputs emulated");
}

#[test]
fn dword_register_accesses_narrow_reads_and_ignore_partial_writes() {
    let r = MmioAccess::Read { size: 4 }.dword_register(0x30);
    assert_eq!(
        r,
        DwordAccess::Read {
            register: 0x30,
            shift: 0,
            mask: 0xffff_ffff
        }
    );
    assert_eq!(r.narrow(0x0106_0014), 0x0106_0014);
    let b = MmioAccess::Read { size: 1 }.dword_register(0x32);
    assert_eq!(b.narrow(0x0106_0014), 0x06);
    let w = MmioAccess::Read { size: 2 }.dword_register(0x21);
    assert_eq!(w.narrow(0xAABB_CCDD), 0xBBCC);
    assert_eq!(
        MmioAccess::Write {
            size: 4,
            value: 0x1FF
        }
        .dword_register(0xF0),
        DwordAccess::Write {
            register: 0xF0,
            value: 0x1FF
        }
    );
    assert_eq!(
        MmioAccess::Write { size: 2, value: 1 }.dword_register(0xF0),
        DwordAccess::Ignored
    );
    assert_eq!(
        MmioAccess::Write { size: 4, value: 1 }.dword_register(0xF2),
        DwordAccess::Ignored
    );
    assert_eq!(DwordAccess::Ignored.narrow(5), 0);
}

/// Emulates through `cache` with a device whose reads return `device`; returns the accesses.
fn run_cached(
    cache: &mut DecodeCache,
    bytes: &[u8],
    mode: CpuMode,
    regs: &mut Regs,
    device: u64,
) -> (Result<Emulated, InsnError>, Vec<MmioAccess>) {
    let mut log = Vec::new();
    let result = emulate_cached(cache, bytes, mode, regs, logging(&mut log, device));
    (result, log)
}

#[test]
fn cached_decode_is_reused_for_the_same_bytes_and_mode_with_the_registers_of_each_exit() {
    let mut cache = DecodeCache::new();
    // mov dword ptr [rax], ebx (89 18), then the padding a fetch of 15 bytes brings along.
    let bytes = [0x89, 0x18, 0x90, 0x90, 0xcc];
    for (round, value) in [0x1234_5678u64, 0x9abc_def0, 7].into_iter().enumerate() {
        let mut regs = Regs::new().with(Gpr::Rbx, value);
        let mut plain = regs.clone();
        let (cached, log) = run_cached(&mut cache, &bytes, Bits64, &mut regs, 0);
        let (direct, direct_log) = run(&bytes, Bits64, &mut plain, 0);
        assert_eq!(cached, direct);
        assert_eq!(log, direct_log);
        assert_eq!(
            log,
            [MmioAccess::Write {
                size: 4,
                value: value & 0xffff_ffff
            }]
        );
        assert_eq!(regs, plain);
        assert_eq!(cache.misses, 1, "decoded once");
        assert_eq!(cache.hits, round as u64);
    }
}

#[test]
fn cached_decode_misses_when_the_bytes_or_the_mode_differ() {
    let mut cache = DecodeCache::new();
    // 66 89 18: mov word ptr [rax], bx in 32/64-bit code, mov dword ptr [bx+si], ebx in 16-bit.
    let bytes = [0x66, 0x89, 0x18];
    let mut regs = Regs::new();
    let (_, log64) = run_cached(&mut cache, &bytes, Bits64, &mut regs, 0);
    assert!(matches!(log64[..], [MmioAccess::Write { size: 2, .. }]));
    let (_, log16) = run_cached(&mut cache, &bytes, Bits16, &mut regs, 0);
    assert!(matches!(log16[..], [MmioAccess::Write { size: 4, .. }]));
    assert_eq!((cache.hits, cache.misses), (0, 2));
    // The guest rewrote its code at that RIP: 8b 18 (mov ebx, dword ptr [rax]) is a load.
    let (_, log) = run_cached(&mut cache, &[0x8b, 0x18], Bits64, &mut regs, 0x55);
    assert_eq!(log, [MmioAccess::Read { size: 4 }]);
    assert_eq!(regs.get(Gpr::Rbx), 0x55);
    assert_eq!((cache.hits, cache.misses), (0, 3));
    // A fetch that stopped short of the cached instruction's length is no hit.
    let (r, _) = run_cached(&mut cache, &[0x66, 0x89], Bits64, &mut regs, 0);
    assert!(matches!(r, Err(InsnError::Truncated { .. })), "{r:?}");
}

#[test]
fn cached_decode_keeps_the_four_newest_instructions() {
    let mut cache = DecodeCache::new();
    let mut regs = Regs::new();
    // mov dword ptr [rax], ebx / ecx / edx / esi / edi (89 18, 89 08, 89 10, 89 30, 89 38).
    let insns: [[u8; 2]; 5] = [
        [0x89, 0x18],
        [0x89, 0x08],
        [0x89, 0x10],
        [0x89, 0x30],
        [0x89, 0x38],
    ];
    for i in &insns {
        run_cached(&mut cache, i, Bits64, &mut regs, 0).0.unwrap();
    }
    assert_eq!((cache.hits, cache.misses), (0, 5));
    for i in &insns[1..] {
        run_cached(&mut cache, i, Bits64, &mut regs, 0).0.unwrap();
    }
    assert_eq!((cache.hits, cache.misses), (4, 5));
    // The first was replaced by the fifth.
    run_cached(&mut cache, &insns[0], Bits64, &mut regs, 0)
        .0
        .unwrap();
    assert_eq!((cache.hits, cache.misses), (4, 6));
    cache.clear();
    run_cached(&mut cache, &insns[0], Bits64, &mut regs, 0)
        .0
        .unwrap();
    assert_eq!((cache.hits, cache.misses), (4, 7));
}
