//! INS/OUTS exits (SDM Vol. 3C Table 28-5, "string" set): the instruction's prefixes are
//! decoded and the elements moved between the port and guest memory by `vm::string_io`, with
//! the guest's segment bases and page tables; REP forms are bounded per exit.

use super::*;
use vm::string_io::{self, MemFault, Outcome, Segment, StringIoBus, StringRegs};

/// Most elements one exit moves; the rest continue at the next entry (the instruction is
/// re-executed with RCX/RSI/RDI already advanced).
const MAX_ELEMENTS_PER_EXIT: u64 = 4096;
/// RFLAGS.DF (SDM Vol. 3A §2.3).
const RFLAGS_DF: u64 = 1 << 10;

/// The VM's ports and memory, as string I/O sees them.
struct Bus<'a> {
    platform: &'a mut Platform,
    memory: &'a mut GuestMemory,
    console: &'a mut Console,
    paging: vm::paging::PagingState,
    /// Linear addresses are 32 bits wide outside IA-32e mode (SDM Vol. 3A §3.4).
    linear_mask: u64,
}

impl Bus<'_> {
    fn base(segment: Segment) -> u64 {
        vmcs::read_exit(match segment {
            Segment::Es => F::GUEST_ES_BASE,
            Segment::Cs => F::GUEST_CS_BASE,
            Segment::Ss => F::GUEST_SS_BASE,
            Segment::Ds => F::GUEST_DS_BASE,
            Segment::Fs => F::GUEST_FS_BASE,
            Segment::Gs => F::GUEST_GS_BASE,
        })
    }

    /// The guest-physical address of each byte of `segment:offset .. + len`, page by page.
    fn each_chunk(
        &self,
        segment: Segment,
        offset: u64,
        len: usize,
        mut f: impl FnMut(u64, usize, usize) -> Option<()>,
    ) -> Result<(), MemFault> {
        let fault = MemFault { segment, offset };
        let start = Self::base(segment).wrapping_add(offset);
        let mut done = 0;
        while done < len {
            let la = start.wrapping_add(done as u64) & self.linear_mask;
            let gpa = vm::paging::translate(
                &self.paging,
                la,
                |a| self.memory.read_u64(a),
                |a| {
                    let mut b = [0u8; 4];
                    self.memory.read(a, &mut b).map(|()| u32::from_le_bytes(b))
                },
            )
            .map_err(|_| fault)?;
            let chunk = ((4096 - (la & 0xfff)) as usize).min(len - done);
            f(gpa, done, chunk).ok_or(fault)?;
            done += chunk;
        }
        Ok(())
    }
}

impl StringIoBus for Bus<'_> {
    fn port_read(&mut self, port: u16, size: u8) -> u32 {
        self.platform.port_read(port, size, self.console)
    }

    fn port_write(&mut self, port: u16, size: u8, value: u32) {
        self.platform.port_write(port, size, value, self.console);
    }

    fn mem_read(&mut self, segment: Segment, offset: u64, buf: &mut [u8]) -> Result<(), MemFault> {
        let mut gpas = [(0u64, 0usize, 0usize); 2];
        let mut n = 0;
        self.each_chunk(segment, offset, buf.len(), |gpa, at, len| {
            *gpas.get_mut(n)? = (gpa, at, len);
            n += 1;
            Some(())
        })?;
        for &(gpa, at, len) in &gpas[..n] {
            self.memory
                .read(gpa, &mut buf[at..at + len])
                .ok_or(MemFault { segment, offset })?;
        }
        Ok(())
    }

    fn mem_write(&mut self, segment: Segment, offset: u64, data: &[u8]) -> Result<(), MemFault> {
        let mut gpas = [(0u64, 0usize, 0usize); 2];
        let mut n = 0;
        self.each_chunk(segment, offset, data.len(), |gpa, at, len| {
            *gpas.get_mut(n)? = (gpa, at, len);
            n += 1;
            Some(())
        })?;
        for &(gpa, at, len) in &gpas[..n] {
            self.memory
                .write(gpa, &data[at..at + len])
                .ok_or(MemFault { segment, offset })?;
        }
        Ok(())
    }
}

impl VcpuExit<'_> {
    /// INS/OUTS (reason 30 with the string bit): emulated, REP forms included.
    pub(super) fn string_io(&mut self, q: &vmx::exit::IoQualification, info: &ExitInfo) -> Action {
        let mut bytes = [0u8; 15];
        let Some(super::Fetched { len: n, mode, lma }) =
            self.fetch_instruction(info.rip, &mut bytes)
        else {
            return Action::Stop(StopReason::StringIoUnreachable { port: q.port });
        };
        let input = q.direction == vmx::exit::IoDirection::In;
        let Ok(io) = string_io::decode(&bytes[..n], mode, q.port, q.size.bytes(), input, q.rep)
        else {
            return Action::Stop(StopReason::Bug("a string I/O exit without INS/OUTS at RIP"));
        };
        let rflags = vmcs::read_exit(F::GUEST_RFLAGS);
        let mut regs = StringRegs {
            rcx: self.vcpu.regs.rcx,
            rsi: self.vcpu.regs.rsi,
            rdi: self.vcpu.regs.rdi,
            df: rflags & RFLAGS_DF != 0,
        };
        let mut bus = Bus {
            platform: &mut self.vm.platform,
            memory: &mut self.vm.memory,
            console: &mut self.vm.console,
            paging: vm::paging::PagingState {
                cr0: vmcs::read_exit(F::GUEST_CR0),
                cr3: vmcs::read_exit(F::GUEST_CR3),
                cr4: vmcs::read_exit(F::GUEST_CR4),
                efer: vmcs::read_exit(F::GUEST_IA32_EFER),
            },
            linear_mask: if lma { u64::MAX } else { 0xffff_ffff },
        };
        let outcome = string_io::emulate(&io, &mut regs, &mut bus, MAX_ELEMENTS_PER_EXIT);
        self.vcpu.regs.rcx = regs.rcx;
        self.vcpu.regs.rsi = regs.rsi;
        self.vcpu.regs.rdi = regs.rdi;
        match outcome {
            Outcome::Done => Action::Advance,
            Outcome::Continue => Action::Resume,
            Outcome::Fault(_) => Action::Stop(StopReason::StringIoUnreachable { port: q.port }),
        }
    }
}
