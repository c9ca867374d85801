//! The kernel's small named place for privileged instructions: port I/O, MSRs, control
//! registers, CPUID, TSC and halting. Everything else calls these safe or narrowly-unsafe
//! wrappers instead of writing inline assembly.

use core::arch::asm;
use vmx::msr::Msr;

/// Reads a byte from an I/O port.
///
/// # Safety
/// The caller must know which device owns `port`: a read can change device state (a UART's
/// receive buffer, a PIC's poll mode, a DMA flip-flop), which other code may rely on.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: port reads have no memory effects; the caller guarantees the device-state effect
    // of reading `port` is harmless (see the function contract).
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The caller must know which device owns `port` on this platform and that the write has no
/// effect on memory safety (e.g. it must not reprogram a DMA engine).
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller guarantees the port write is harmless (see the function contract).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// Same contract as [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller guarantees the port write is harmless (see the function contract).
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a 32-bit value from an I/O port.
///
/// # Safety
/// Same contract as [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: port reads have no memory effects; the caller guarantees the device-state effect
    // of reading `port` is harmless (see the function contract).
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Reads `buf.len()` 16-bit words from one I/O port (`rep insw`), e.g. an ATA data register.
///
/// # Safety
/// Same contract as [`inb`]; `buf` is written through, nothing else.
pub unsafe fn insw(port: u16, buf: &mut [u16]) {
    // SAFETY: REP INSW stores exactly RCX words at RDI (DF is clear in the kernel, SysV ABI),
    // all inside `buf`; the caller guarantees the port reads are harmless.
    unsafe {
        asm!("rep insw", in("dx") port, inout("rdi") buf.as_mut_ptr() => _, inout("rcx") buf.len() => _, options(nostack, preserves_flags))
    };
}

/// Writes `buf.len()` 16-bit words to one I/O port (`rep outsw`).
///
/// # Safety
/// Same contract as [`outb`].
pub unsafe fn outsw(port: u16, buf: &[u16]) {
    // SAFETY: REP OUTSW reads exactly RCX words at RSI (DF clear), all inside `buf`; the
    // caller guarantees the port writes are harmless.
    unsafe {
        asm!("rep outsw", in("dx") port, inout("rsi") buf.as_ptr() => _, inout("rcx") buf.len() => _, options(nostack, preserves_flags, readonly))
    };
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (RDMSR of a missing MSR raises #GP; Bochs models differ),
/// which the caller establishes from CPUID or a VMX capability bit.
pub unsafe fn rdmsr(msr: Msr) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists; RDMSR has no memory effects.
    unsafe {
        asm!("rdmsr", in("ecx") msr.0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid for it; the write must not break the
/// kernel's own memory safety (e.g. EFER, PAT or the syscall MSRs the kernel relies on).
pub unsafe fn wrmsr(msr: Msr, value: u64) {
    // SAFETY: the caller guarantees the MSR exists and the value is harmless.
    unsafe {
        asm!("wrmsr", in("ecx") msr.0, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// Executes CPUID for `leaf`/`subleaf`: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the TSC; CR4.TSD is clear in ring 0 anyway.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects in ring 0.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR2 (the faulting linear address of the last #PF).
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects in ring 0.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects in ring 0.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects in ring 0.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes CR3.
///
/// # Safety
/// The new root must map the kernel exactly as the current one does (an application
/// processor switching from its start-up copy to the kernel's own tables).
pub unsafe fn write_cr3(value: u64) {
    // SAFETY: the caller guarantees the new tables map the running kernel.
    unsafe { asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Enables interrupts, halts until one arrives, and disables them again: the CPU sleeps
/// until an IPI (STI's one-instruction shadow makes STI; HLT atomic: SDM Vol. 2B STI).
pub fn wait_for_interrupt() {
    // SAFETY: the IDT handles every vector that can reach an idle CPU (the kick and the
    // spurious vector; the 8259A's lines are masked or routed to the boot CPU's exits).
    unsafe { asm!("sti; hlt; cli", options(nomem, nostack)) };
}

/// Arms address monitoring on the line holding `addr` (MONITOR, SDM Vol. 2B: RAX = address,
/// ECX = extensions 0, EDX = hints 0).
///
/// # Safety
/// The CPU must have MONITOR/MWAIT (CPUID.01H:ECX[3]); `addr` must be mapped (a fault is
/// taken on the linear address).
pub unsafe fn monitor(addr: *const u8) {
    // SAFETY: the caller guarantees the instruction exists and the address is mapped.
    unsafe { asm!("monitor", in("rax") addr, in("ecx") 0u32, in("edx") 0u32, options(nostack)) };
}

/// Enables interrupts and waits in MWAIT with hint `hint` (EAX; SDM Vol. 2B MWAIT Table 4-12)
/// until the monitored line is written or an interrupt arrives, then disables interrupts
/// again (STI's one-instruction shadow makes STI; MWAIT atomic, as for HLT: SDM Vol. 2B STI).
///
/// # Safety
/// The CPU must have MONITOR/MWAIT, [`monitor`] must have armed a line, and the IDT must
/// handle every vector that can reach this CPU (as for [`wait_for_interrupt`]).
pub unsafe fn mwait(hint: u8) {
    // SAFETY: the caller guarantees the instruction exists and interrupts are handled.
    unsafe {
        asm!("sti; mwait; cli", in("eax") u32::from(hint), in("ecx") 0u32, options(nomem, nostack))
    };
}

/// Lets interrupts already pending in (STI; NOP; CLI): an idle CPU woken through its
/// monitored line takes the kick IPI that follows here, not in its next guest.
pub fn interrupt_window() {
    // SAFETY: as for `wait_for_interrupt`: every vector that can reach this CPU is handled.
    unsafe { asm!("sti; nop; cli", options(nomem, nostack)) };
}

/// Disables interrupts and halts forever (the end of a run on real hardware).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI; HLT stops this CPU; nothing runs afterwards.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Writes CR0.
///
/// # Safety
/// The new value must keep paging, protection and caching consistent with the kernel's page
/// tables (callers only add VMX-required fixed bits, which are already set in long mode).
pub unsafe fn write_cr0(value: u64) {
    // SAFETY: the caller guarantees the value is consistent with the running kernel.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Turns the caches on: clears CR0.CD and CR0.NW, which the firmware may leave set from reset
/// (Bochs's BIOS does; SDM Vol. 3A §12.5.1 Table 12-5). VM entry keeps the host's CD/NW for
/// guests too (a guest read CR0 = 0xE0010033), so this is what makes guest memory cached.
pub fn enable_caches() {
    const CD_NW: u64 = (1 << 30) | (1 << 29);
    let cr0 = read_cr0();
    if cr0 & CD_NW != 0 {
        // SAFETY: enabling normal cache operation changes no mapping or protection; memory
        // types stay as the page tables and MTRRs give them.
        unsafe { write_cr0(cr0 & !CD_NW) };
    }
}

/// Writes CR4.
///
/// # Safety
/// As for [`write_cr0`]: only bits that do not change how the kernel's memory is accessed
/// (such as CR4.VMXE) may be toggled.
pub unsafe fn write_cr4(value: u64) {
    // SAFETY: the caller guarantees the value is consistent with the running kernel.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Measures the TSC frequency against the PIT's channel 2 (a fixed 1.193182 MHz clock):
/// count 11932 PIT ticks (10 ms) in mode 0 with the speaker gate, and read the TSC around it
/// (8254 datasheet; the method Linux's `pit_calibrate_tsc` uses). Under Bochs with
/// `clock: sync=none` this measures virtual time, so the result is repeatable.
pub fn calibrate_tsc_hz() -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    const TICKS: u16 = 11_932;
    // SAFETY: ports 0x61 (system control B), 0x43 (PIT mode) and 0x42 (PIT channel 2) belong to
    // the PC platform's PIT/speaker logic, which nothing else in Bulkhead uses; the speaker
    // output stays disabled (bit 1 clear).
    unsafe {
        let ctl = inb(0x61);
        outb(0x61, (ctl & !0x02) | 0x01); // gate on, speaker off
        outb(0x43, 0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        outb(0x42, (TICKS & 0xff) as u8);
        outb(0x42, (TICKS >> 8) as u8);
        let start = rdtsc();
        let mut spins = 0u64;
        // OUT2 (bit 5 of 0x61) goes high when the count reaches zero.
        while inb(0x61) & 0x20 == 0 && spins < 100_000_000 {
            spins += 1;
        }
        let end = rdtsc();
        outb(0x61, ctl);
        (end - start) * PIT_HZ / u64::from(TICKS)
    }
}

/// Sets CR4.OSFXSR and CR4.OSXMMEXCPT so FXSAVE/FXRSTOR switch the guests' SSE state
/// (SDM Vol. 3A §2.5, §13.1); the kernel itself never uses SSE (soft-float target).
pub fn enable_fxsr() {
    const OSFXSR: u64 = 1 << 9;
    const OSXMMEXCPT: u64 = 1 << 10;
    // SAFETY: these bits only change how FXSAVE/FXRSTOR and SSE instructions behave; the
    // kernel does not execute SSE code.
    unsafe { write_cr4(read_cr4() | OSFXSR | OSXMMEXCPT) };
    if has_xsave() {
        const OSXSAVE: u64 = 1 << 18;
        // SAFETY: CR4.OSXSAVE only enables XGETBV/XSETBV/XSAVE/XRSTOR (SDM Vol. 1 §13.3),
        // which the kernel uses to switch the guests' extended state; it runs no AVX code.
        unsafe { write_cr4(read_cr4() | OSXSAVE) };
    }
}

/// Whether the CPU has XSAVE (CPUID.1:ECX.XSAVE[26]).
pub fn has_xsave() -> bool {
    cpuid(1, 0)[2] & (1 << 26) != 0
}

/// XSETBV: loads XCR0 (SDM Vol. 2D XSETBV).
///
/// # Safety
/// CR4.OSXSAVE must be set and `value` valid for this CPU (x87 set, only supported
/// components, consistent: vm::xsave::validate_xsetbv), else #GP in the hypervisor.
pub unsafe fn xsetbv(value: u64) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack))
    };
}

/// XSAVE of the components in `mask` (and XCR0) into `area` (SDM Vol. 1 §13.7).
///
/// # Safety
/// CR4.OSXSAVE set; `area` 64-byte aligned and large enough for every component of the
/// current XCR0 (CPUID.0xD.0:EBX).
pub unsafe fn xsave(area: *mut u8, mask: u64) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        asm!("xsave64 [{}]", in(reg) area, in("eax") mask as u32, in("edx") (mask >> 32) as u32,
             options(nostack))
    };
}

/// XRSTOR of the components in `mask` from `area` (SDM Vol. 1 §13.8).
///
/// # Safety
/// As [`xsave`]; `area` must hold a valid standard-format image (header reserved bytes 0,
/// XCOMP_BV 0, MXCSR reserved bits 0), e.g. one written by XSAVE.
pub unsafe fn xrstor(area: *const u8, mask: u64) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        asm!("xrstor64 [{}]", in(reg) area, in("eax") mask as u32, in("edx") (mask >> 32) as u32,
             options(nostack))
    };
}

/// A 512-byte FXSAVE area (SDM Vol. 1 §10.5).
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FxArea(pub [u8; 512]);

impl core::fmt::Debug for FxArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FxArea")
    }
}

impl FxArea {
    /// The x87/SSE state after reset: FCW 0x37F, MXCSR 0x1F80, everything else zero.
    pub fn initial() -> Self {
        let mut a = [0u8; 512];
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FxArea(a)
    }

    /// Saves the CPU's x87/SSE state here.
    pub fn save(&mut self) {
        // SAFETY: the area is 512 bytes and 16-byte aligned as FXSAVE requires; CR4.OSFXSR is
        // set by `enable_fxsr` before any VM runs.
        unsafe { asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack)) };
    }

    /// Loads this state into the CPU.
    pub fn restore(&self) {
        // SAFETY: as for `save`; the area holds a state produced by FXSAVE or `initial`
        // (MXCSR reserved bits clear), so FXRSTOR cannot fault.
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack)) };
    }
}

/// Whether the CPU has IA32_TSC_AUX (CPUID.80000001H:EDX.RDTSCP[27]).
pub fn has_tsc_aux() -> bool {
    cpuid(0x8000_0000, 0)[0] >= 0x8000_0001 && cpuid(0x8000_0001, 0)[3] & (1 << 27) != 0
}

/// The debug-address registers DR0-DR3 and the debug-status register DR6 (SDM Vol. 3B §18.2),
/// which the VMCS does not switch: saved and restored per vCPU around its time slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugRegs {
    pub dr: [u64; 4],
    pub dr6: u64,
}

impl DebugRegs {
    /// The power-on values (SDM Vol. 3A §10.1.1 Table 10-1: DR0-DR3 = 0, DR6 = FFFF0FF0H).
    pub const fn initial() -> Self {
        DebugRegs {
            dr: [0; 4],
            dr6: 0xffff_0ff0,
        }
    }

    /// Reads the live registers.
    pub fn save(&mut self) {
        // SAFETY: MOV from DR0-DR3/DR6 at CPL 0 has no side effects (CR4.DE only matters for
        // DR4/DR5, SDM Vol. 3B §18.2.2).
        unsafe {
            asm!("mov {}, dr0", out(reg) self.dr[0], options(nomem, nostack, preserves_flags));
            asm!("mov {}, dr1", out(reg) self.dr[1], options(nomem, nostack, preserves_flags));
            asm!("mov {}, dr2", out(reg) self.dr[2], options(nomem, nostack, preserves_flags));
            asm!("mov {}, dr3", out(reg) self.dr[3], options(nomem, nostack, preserves_flags));
            asm!("mov {}, dr6", out(reg) self.dr6, options(nomem, nostack, preserves_flags));
        }
    }

    /// Makes these values live. The host runs with DR7 = 0x400 (every breakpoint disabled; a
    /// VM exit loads it, SDM Vol. 3C §28.5.1), so guest addresses here never trap the host.
    pub fn restore(&self) {
        // The reserved bits of DR6 read as 1 and must not be written as 0 (SDM Vol. 3B §18.2.3).
        let dr6 = self.dr6 | 0xffff_0ff0;
        // SAFETY: as above; with DR7 = 0x400 in the host the addresses have no effect until the
        // guest's DR7 is loaded by VM entry ("load debug controls").
        unsafe {
            asm!("mov dr0, {}", in(reg) self.dr[0], options(nomem, nostack, preserves_flags));
            asm!("mov dr1, {}", in(reg) self.dr[1], options(nomem, nostack, preserves_flags));
            asm!("mov dr2, {}", in(reg) self.dr[2], options(nomem, nostack, preserves_flags));
            asm!("mov dr3, {}", in(reg) self.dr[3], options(nomem, nostack, preserves_flags));
            asm!("mov dr6, {}", in(reg) dr6 & 0xffff_ffff, options(nomem, nostack, preserves_flags));
        }
    }
}
