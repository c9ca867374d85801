//! The hypervisor side: [`dispatch`] decodes a `VMCALL` and runs it against a
//! [`HypercallHost`] (guest RAM, console, exit statistics of one VM). It knows nothing about
//! VMX: the exit handler passes the registers and the CPL in, writes
//! [`HcOutcome::rax`] back, advances RIP by 3 and applies [`HcOutcome::action`].
//!
//! Every `gpa + len` is checked for overflow here before the host sees it; whether the range
//! is guest RAM is the host's check. No allocation: the console and batch copies are
//! bounded stack buffers (≤ 4096 bytes each), the statistics copy ≤ 3096 bytes.

use crate::{call, cpuid, multicall, stats, HcError, ABI_VERSION};

/// The VM as the dispatcher sees it.
pub trait HypercallHost {
    /// Copies `buf.len()` bytes of guest-physical memory at `gpa` into `buf`. Must check the
    /// whole range (`gpa..gpa + buf.len()`, which the dispatcher has checked not to overflow)
    /// is guest RAM and return [`HcError::BadAddress`] otherwise, copying nothing.
    fn read_guest(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), HcError>;

    /// Copies `data` into guest-physical memory at `gpa`; all or nothing, as
    /// [`HypercallHost::read_guest`].
    fn write_guest(&mut self, gpa: u64, data: &[u8]) -> Result<(), HcError>;

    /// Bytes for the VM's console (at most [`call::CONSOLE_MAX`] per call, one whole write).
    fn console_write(&mut self, bytes: &[u8]);

    /// Asked before a console write of `len` bytes is copied from the guest: `true` when the
    /// VM's console is over its limit and drops them unread (the call then succeeds without
    /// touching guest memory, so a flood costs no copying). Default: never.
    fn console_discard(&mut self, len: usize) -> bool {
        let _ = len;
        false
    }

    /// Reports the VM's exit statistics: `out(reason, count, ticks)` once per exit reason,
    /// in the order they should appear (Bulkhead: ascending reason). At most
    /// [`stats::MAX_ENTRIES`] are copied to the guest.
    fn exit_stats(&self, out: &mut dyn FnMut(u32, u64, u64));

    /// `MEM_RELEASE`: zero the `pages` 4 KiB pages at `gpa` (aligned, range checked not to
    /// overflow) and unmap them until touched. Must check the whole range is guest RAM
    /// ([`HcError::BadAddress`] otherwise, changing nothing).
    fn release_memory(&mut self, gpa: u64, pages: u64) -> Result<(), HcError> {
        let _ = (gpa, pages);
        Err(HcError::Unsupported)
    }

    /// The frequency of the ticks in [`HypercallHost::exit_stats`] (TSC Hz), 0 if unknown.
    fn tick_hz(&self) -> u64 {
        0
    }

    /// The hypercall feature bits offered to this VM ([`cpuid::FEATURES_V1`] by default);
    /// must agree with what CPUID leaf `0x4000_0001`:EBX reports to it.
    fn features(&self) -> u32 {
        cpuid::FEATURES_V1
    }
}

/// The guest registers a hypercall reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HcRegs {
    /// Call number.
    pub rax: u64,
    /// Argument 0.
    pub rbx: u64,
    /// Argument 1.
    pub rcx: u64,
    /// Argument 2.
    pub rdx: u64,
    /// Argument 3.
    pub rsi: u64,
}

impl HcRegs {
    /// The registers as a guest outside 64-bit mode passes them: low 32 bits, zero-extended.
    pub const fn low32(self) -> HcRegs {
        HcRegs {
            rax: self.rax as u32 as u64,
            rbx: self.rbx as u32 as u64,
            rcx: self.rcx as u32 as u64,
            rdx: self.rdx as u32 as u64,
            rsi: self.rsi as u32 as u64,
        }
    }
}

/// What the vCPU does after the hypercall (ordered: a batch takes the strongest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum HcAction {
    /// Resume the guest.
    #[default]
    Continue,
    /// Resume later: give the rest of the time slice to other vCPUs.
    Yield,
    /// Halt the vCPU until an interrupt is pending for it (as `HLT`).
    Idle,
}

/// The result of [`dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HcOutcome {
    /// The RAX value: `>= 0` success value, `< 0` `-code`.
    pub result: i64,
    /// What the vCPU does next.
    pub action: HcAction,
    /// Operations run: 1 for a plain call (successful or not), the entries run for a
    /// `MULTICALL`, 0 if the call was refused before running (CPL > 0, a batch that could
    /// not be read).
    pub calls_executed: u32,
}

impl HcOutcome {
    const fn refused(e: HcError) -> HcOutcome {
        HcOutcome {
            result: e.to_result(),
            action: HcAction::Continue,
            calls_executed: 0,
        }
    }

    /// The value to put in the guest's RAX: the full result in 64-bit mode, otherwise its
    /// low 32 bits zero-extended (bits 63:32 of RAX cleared).
    pub const fn rax(&self, long_mode: bool) -> u64 {
        if long_mode {
            self.result as u64
        } else {
            self.result as u32 as u64
        }
    }

    /// The decoded result.
    pub const fn decoded(&self) -> Result<u64, crate::CallError> {
        crate::decode(self.result)
    }
}

/// Runs one `VMCALL`. `regs` are the guest's registers (already [`HcRegs::low32`] for a guest
/// not in 64-bit mode), `cpl` its current privilege level (SS.DPL). Never panics, whatever
/// the registers and whatever the host returns.
pub fn dispatch<H: HypercallHost + ?Sized>(host: &mut H, regs: HcRegs, cpl: u8) -> HcOutcome {
    if cpl != 0 {
        return HcOutcome::refused(HcError::NotPermitted);
    }
    if regs.rax == call::MULTICALL {
        return run_multicall(host, [regs.rbx, regs.rcx, regs.rdx, regs.rsi]);
    }
    let mut action = HcAction::Continue;
    let r = single(
        host,
        regs.rax,
        [regs.rbx, regs.rcx, regs.rdx, regs.rsi],
        &mut action,
    );
    HcOutcome {
        result: crate::encode(r),
        action,
        calls_executed: 1,
    }
}

/// A host with nothing behind it: the calls [`dispatch_stateless`] takes never reach it.
struct NoHost;

impl HypercallHost for NoHost {
    fn read_guest(&mut self, _gpa: u64, _buf: &mut [u8]) -> Result<(), HcError> {
        Err(HcError::BadAddress)
    }
    fn write_guest(&mut self, _gpa: u64, _data: &[u8]) -> Result<(), HcError> {
        Err(HcError::BadAddress)
    }
    fn console_write(&mut self, _bytes: &[u8]) {}
    fn exit_stats(&self, _out: &mut dyn FnMut(u32, u64, u64)) {}
}

/// Whether call `nr` needs nothing of the VM: it reads no guest memory, writes no console,
/// reports no statistics and changes no state (VERSION, NOP). The hypervisor answers those
/// without its VM's lock (the exit fast path, issue 14).
pub const fn is_stateless(nr: u64) -> bool {
    matches!(nr, call::VERSION | call::NOP)
}

/// [`dispatch`] for a call [`is_stateless`] names, with no host: the same outcome as
/// `dispatch` against any host, refusals (CPL > 0, non-zero reserved arguments) included.
/// `None` for every other call.
pub fn dispatch_stateless(regs: HcRegs, cpl: u8) -> Option<HcOutcome> {
    is_stateless(regs.rax).then(|| dispatch(&mut NoHost, regs, cpl))
}

fn check_feature<H: HypercallHost + ?Sized>(host: &H, nr: u64) -> Result<(), HcError> {
    match call::feature(nr) {
        None => Err(HcError::UnknownCall),
        Some(bit) if host.features() & bit == bit => Ok(()),
        Some(_) => Err(HcError::Unsupported),
    }
}

fn reserved(args: &[u64]) -> Result<(), HcError> {
    if args.iter().all(|&a| a == 0) {
        Ok(())
    } else {
        Err(HcError::BadArgument)
    }
}

/// `gpa..gpa + len` must not wrap.
fn check_range(gpa: u64, len: usize) -> Result<(), HcError> {
    let len = u64::try_from(len).map_err(|_| HcError::BadAddress)?;
    match gpa.checked_add(len) {
        Some(_) => Ok(()),
        None => Err(HcError::BadAddress),
    }
}

/// One call other than a top-level `MULTICALL` (a plain call, or a batch entry).
fn single<H: HypercallHost + ?Sized>(
    host: &mut H,
    nr: u64,
    args: [u64; 4],
    action: &mut HcAction,
) -> Result<u64, HcError> {
    check_feature(host, nr)?;
    match nr {
        call::VERSION => {
            reserved(&args)?;
            Ok(u64::from(ABI_VERSION))
        }
        call::NOP => {
            reserved(&args)?;
            Ok(0)
        }
        call::CONSOLE_WRITE => {
            reserved(&args[2..])?;
            console_write(host, args[0], args[1])
        }
        call::MULTICALL => Err(HcError::Nested),
        call::IDLE => {
            reserved(&args[1..])?;
            let a = match args[0] {
                call::IDLE_YIELD => HcAction::Yield,
                call::IDLE_HALT => HcAction::Idle,
                _ => return Err(HcError::BadArgument),
            };
            *action = (*action).max(a);
            Ok(0)
        }
        call::EXIT_STATS => {
            reserved(&args[2..])?;
            exit_stats(host, args[0], args[1])
        }
        call::MEM_RELEASE => {
            reserved(&args[2..])?;
            mem_release(host, args[0], args[1])
        }
        _ => Err(HcError::UnknownCall),
    }
}

#[inline(never)]
fn console_write<H: HypercallHost + ?Sized>(
    host: &mut H,
    gpa: u64,
    len: u64,
) -> Result<u64, HcError> {
    if len > call::CONSOLE_MAX as u64 {
        return Err(HcError::TooLarge);
    }
    if len == 0 {
        return Ok(0);
    }
    // `len <= CONSOLE_MAX`, so the conversion and the slice are in range.
    let n = len as usize;
    check_range(gpa, n)?;
    if host.console_discard(n) {
        return Ok(len);
    }
    let mut buf = [0u8; call::CONSOLE_MAX];
    let bytes = buf.get_mut(..n).ok_or(HcError::TooLarge)?;
    host.read_guest(gpa, bytes)?;
    host.console_write(bytes);
    Ok(len)
}

fn mem_release<H: HypercallHost + ?Sized>(
    host: &mut H,
    gpa: u64,
    pages: u64,
) -> Result<u64, HcError> {
    if !gpa.is_multiple_of(call::PAGE_SIZE) {
        return Err(HcError::BadArgument);
    }
    if pages == 0 {
        return Err(HcError::BadLength);
    }
    if pages > call::MEM_RELEASE_MAX_PAGES {
        return Err(HcError::TooLarge);
    }
    // `pages <= 512`: the product cannot overflow.
    gpa.checked_add(pages * call::PAGE_SIZE)
        .ok_or(HcError::BadAddress)?;
    host.release_memory(gpa, pages)?;
    Ok(pages)
}

#[inline(never)]
fn exit_stats<H: HypercallHost + ?Sized>(host: &mut H, gpa: u64, len: u64) -> Result<u64, HcError> {
    let mut buf = [0u8; stats::MAX_SIZE];
    let mut n = 0usize;
    host.exit_stats(&mut |reason, count, ticks| {
        let off = stats::size_for(n);
        if let Some(slot) = buf.get_mut(off..off + stats::ENTRY_SIZE) {
            slot.copy_from_slice(
                &stats::Entry {
                    reason,
                    count,
                    ticks,
                }
                .to_bytes(),
            );
            n += 1;
        }
    });
    let size = stats::size_for(n);
    if len == 0 {
        return Ok(size as u64);
    }
    if len < size as u64 {
        return Err(HcError::BadLength);
    }
    // `n <= MAX_ENTRIES`, which fits in u32.
    let header = stats::Header::v1(n as u32, host.tick_hz());
    buf[..stats::HEADER_SIZE].copy_from_slice(&header.to_bytes());
    check_range(gpa, size)?;
    host.write_guest(gpa, buf.get(..size).ok_or(HcError::BadLength)?)?;
    Ok(size as u64)
}

fn run_multicall<H: HypercallHost + ?Sized>(host: &mut H, args: [u64; 4]) -> HcOutcome {
    let [gpa, count, a2, a3] = args;
    if let Err(e) = check_feature(host, call::MULTICALL).and_then(|()| reserved(&[a2, a3])) {
        return HcOutcome::refused(e);
    }
    if count == 0 {
        return HcOutcome::refused(HcError::BadLength);
    }
    if count > multicall::MAX_ENTRIES as u64 {
        return HcOutcome::refused(HcError::TooLarge);
    }
    if !gpa.is_multiple_of(multicall::BATCH_ALIGN) {
        return HcOutcome::refused(HcError::BadArgument);
    }
    // `count <= MAX_ENTRIES`: the batch fits the page buffer.
    let n = count as usize;
    let bytes = n * multicall::ENTRY_SIZE;
    let mut page = [0u8; multicall::MAX_ENTRIES * multicall::ENTRY_SIZE];
    let Some(batch) = page.get_mut(..bytes) else {
        return HcOutcome::refused(HcError::TooLarge);
    };
    if let Err(e) = check_range(gpa, bytes).and_then(|()| host.read_guest(gpa, batch)) {
        return HcOutcome::refused(e);
    }
    let mut action = HcAction::Continue;
    let mut executed = 0u32;
    let (entries, _) = batch.as_chunks::<{ multicall::ENTRY_SIZE }>();
    for (i, raw) in entries.iter().enumerate() {
        let e = multicall::Entry::from_bytes(raw);
        let r = single(host, e.call, [e.arg0, e.arg1, 0, 0], &mut action);
        executed += 1;
        // In range: the batch was checked not to wrap, and i < count.
        let at = gpa + (i * multicall::ENTRY_SIZE + multicall::OFF_RESULT) as u64;
        if let Err(err) = host.write_guest(at, &crate::encode(r).to_le_bytes()) {
            return HcOutcome {
                result: err.to_result(),
                action,
                calls_executed: executed,
            };
        }
    }
    HcOutcome {
        result: count as i64,
        action,
        calls_executed: executed,
    }
}
