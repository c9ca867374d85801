//! VM-exit information: exit reasons (SDM Vol. 3D Appendix C), exit qualifications
//! (SDM Vol. 3C §28.2.1), interruption information (SDM Vol. 3C §25.8.3, §25.9.2) and VM-entry
//! failures (SDM Vol. 3C §27.8).
//!
//! Everything here decodes values that a guest can influence, so every decoder is total: no
//! input panics, unknown values are preserved.

use core::fmt;

macro_rules! exit_reasons {
    ($( $(#[$meta:meta])* $name:ident = $num:literal => $text:literal; )*) => {
        /// Basic exit reasons (SDM Vol. 3D Appendix C, Table C-1).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ExitReason {
            $( $(#[$meta])* $name, )*
            /// A basic exit reason this crate does not know (reserved or newer).
            Unknown(u16),
        }

        impl ExitReason {
            /// Decodes a basic exit reason number (bits 15:0 of the exit-reason field).
            #[inline]
            pub const fn from_basic(basic: u16) -> Self {
                match basic {
                    $( $num => Self::$name, )*
                    other => Self::Unknown(other),
                }
            }

            /// The basic exit reason number.
            #[inline]
            pub const fn number(self) -> u16 {
                match self {
                    $( Self::$name => $num, )*
                    Self::Unknown(n) => n,
                }
            }

            /// The SDM name of the exit reason.
            pub const fn description(self) -> &'static str {
                match self {
                    $( Self::$name => $text, )*
                    Self::Unknown(_) => "unknown exit reason",
                }
            }
        }
    };
}

exit_reasons! {
    /// 0: exception or non-maskable interrupt.
    ExceptionOrNmi = 0 => "exception or NMI";
    /// 1: external interrupt.
    ExternalInterrupt = 1 => "external interrupt";
    /// 2: triple fault.
    TripleFault = 2 => "triple fault";
    /// 3: INIT signal.
    InitSignal = 3 => "INIT signal";
    /// 4: start-up IPI.
    StartupIpi = 4 => "start-up IPI (SIPI)";
    /// 5: I/O system-management interrupt.
    IoSmi = 5 => "I/O SMI";
    /// 6: other SMI.
    OtherSmi = 6 => "other SMI";
    /// 7: interrupt window.
    InterruptWindow = 7 => "interrupt window";
    /// 8: NMI window.
    NmiWindow = 8 => "NMI window";
    /// 9: task switch.
    TaskSwitch = 9 => "task switch";
    /// 10: CPUID.
    Cpuid = 10 => "CPUID";
    /// 11: GETSEC.
    Getsec = 11 => "GETSEC";
    /// 12: HLT.
    Hlt = 12 => "HLT";
    /// 13: INVD.
    Invd = 13 => "INVD";
    /// 14: INVLPG.
    Invlpg = 14 => "INVLPG";
    /// 15: RDPMC.
    Rdpmc = 15 => "RDPMC";
    /// 16: RDTSC.
    Rdtsc = 16 => "RDTSC";
    /// 17: RSM in SMM.
    Rsm = 17 => "RSM";
    /// 18: VMCALL.
    Vmcall = 18 => "VMCALL";
    /// 19: VMCLEAR.
    Vmclear = 19 => "VMCLEAR";
    /// 20: VMLAUNCH.
    Vmlaunch = 20 => "VMLAUNCH";
    /// 21: VMPTRLD.
    Vmptrld = 21 => "VMPTRLD";
    /// 22: VMPTRST.
    Vmptrst = 22 => "VMPTRST";
    /// 23: VMREAD.
    Vmread = 23 => "VMREAD";
    /// 24: VMRESUME.
    Vmresume = 24 => "VMRESUME";
    /// 25: VMWRITE.
    Vmwrite = 25 => "VMWRITE";
    /// 26: VMXOFF.
    Vmxoff = 26 => "VMXOFF";
    /// 27: VMXON.
    Vmxon = 27 => "VMXON";
    /// 28: control-register accesses.
    ControlRegisterAccess = 28 => "control-register access";
    /// 29: MOV DR.
    MovDr = 29 => "MOV DR";
    /// 30: I/O instruction.
    IoInstruction = 30 => "I/O instruction";
    /// 31: RDMSR.
    Rdmsr = 31 => "RDMSR";
    /// 32: WRMSR.
    Wrmsr = 32 => "WRMSR";
    /// 33: VM-entry failure due to invalid guest state.
    EntryFailureInvalidGuestState = 33 => "VM-entry failure due to invalid guest state";
    /// 34: VM-entry failure due to MSR loading.
    EntryFailureMsrLoading = 34 => "VM-entry failure due to MSR loading";
    /// 36: MWAIT.
    Mwait = 36 => "MWAIT";
    /// 37: monitor trap flag.
    MonitorTrapFlag = 37 => "monitor trap flag";
    /// 39: MONITOR.
    Monitor = 39 => "MONITOR";
    /// 40: PAUSE.
    Pause = 40 => "PAUSE";
    /// 41: VM-entry failure due to machine-check event.
    EntryFailureMachineCheck = 41 => "VM-entry failure due to machine-check event";
    /// 43: TPR below threshold.
    TprBelowThreshold = 43 => "TPR below threshold";
    /// 44: APIC access.
    ApicAccess = 44 => "APIC access";
    /// 45: virtualized EOI.
    VirtualizedEoi = 45 => "virtualized EOI";
    /// 46: access to GDTR or IDTR.
    GdtrIdtrAccess = 46 => "access to GDTR or IDTR";
    /// 47: access to LDTR or TR.
    LdtrTrAccess = 47 => "access to LDTR or TR";
    /// 48: EPT violation.
    EptViolation = 48 => "EPT violation";
    /// 49: EPT misconfiguration.
    EptMisconfiguration = 49 => "EPT misconfiguration";
    /// 50: INVEPT.
    Invept = 50 => "INVEPT";
    /// 51: RDTSCP.
    Rdtscp = 51 => "RDTSCP";
    /// 52: VMX-preemption timer expired.
    PreemptionTimerExpired = 52 => "VMX-preemption timer expired";
    /// 53: INVVPID.
    Invvpid = 53 => "INVVPID";
    /// 54: WBINVD or WBNOINVD.
    Wbinvd = 54 => "WBINVD or WBNOINVD";
    /// 55: XSETBV.
    Xsetbv = 55 => "XSETBV";
    /// 56: APIC write.
    ApicWrite = 56 => "APIC write";
    /// 57: RDRAND.
    Rdrand = 57 => "RDRAND";
    /// 58: INVPCID.
    Invpcid = 58 => "INVPCID";
    /// 59: VMFUNC.
    Vmfunc = 59 => "VMFUNC";
    /// 60: ENCLS.
    Encls = 60 => "ENCLS";
    /// 61: RDSEED.
    Rdseed = 61 => "RDSEED";
    /// 62: page-modification log full.
    PmlFull = 62 => "page-modification log full";
    /// 63: XSAVES.
    Xsaves = 63 => "XSAVES";
    /// 64: XRSTORS.
    Xrstors = 64 => "XRSTORS";
    /// 65: PCONFIG.
    Pconfig = 65 => "PCONFIG";
    /// 66: SPP-related event.
    SppEvent = 66 => "SPP-related event";
    /// 67: UMWAIT.
    Umwait = 67 => "UMWAIT";
    /// 68: TPAUSE.
    Tpause = 68 => "TPAUSE";
    /// 69: LOADIWKEY.
    Loadiwkey = 69 => "LOADIWKEY";
    /// 70: ENCLV.
    Enclv = 70 => "ENCLV";
    /// 72: ENQCMD PASID translation failure.
    EnqcmdPasidFailure = 72 => "ENQCMD PASID translation failure";
    /// 73: ENQCMDS PASID translation failure.
    EnqcmdsPasidFailure = 73 => "ENQCMDS PASID translation failure";
    /// 74: bus lock.
    BusLock = 74 => "bus lock";
    /// 75: instruction timeout.
    InstructionTimeout = 75 => "instruction timeout";
    /// 76: SEAMCALL.
    Seamcall = 76 => "SEAMCALL";
    /// 77: TDCALL.
    Tdcall = 77 => "TDCALL";
    /// 78: RDMSRLIST.
    Rdmsrlist = 78 => "RDMSRLIST";
    /// 79: WRMSRLIST.
    Wrmsrlist = 79 => "WRMSRLIST";
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description(), self.number())
    }
}

/// The exit-reason field decoded (SDM Vol. 3C §25.9.1, Table 25-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodedExitReason {
    /// Bits 15:0: basic exit reason.
    pub reason: ExitReason,
    /// Bit 27: the VM exit was incident to enclave mode.
    pub enclave_mode: bool,
    /// Bit 28: a pending MTF VM exit.
    pub pending_mtf: bool,
    /// Bit 29: the VM exit was from VMX root operation (SMM monitor).
    pub from_vmx_root: bool,
    /// Bit 31: VM-entry failure (reasons 33, 34 and 41).
    pub entry_failure: bool,
}

impl DecodedExitReason {
    const BASIC_MASK: u32 = 0xffff;
    const ENCLAVE: u32 = 1 << 27;
    const PENDING_MTF: u32 = 1 << 28;
    const FROM_ROOT: u32 = 1 << 29;
    const ENTRY_FAILURE: u32 = 1 << 31;
}

impl ExitReason {
    /// Decodes the 32-bit exit-reason field (SDM Vol. 3C §25.9.1): the basic reason plus the
    /// flags, notably the "VM-entry failure" bit 31.
    #[inline]
    pub const fn from_raw(raw: u32) -> DecodedExitReason {
        DecodedExitReason {
            reason: Self::from_basic((raw & DecodedExitReason::BASIC_MASK) as u16),
            enclave_mode: raw & DecodedExitReason::ENCLAVE != 0,
            pending_mtf: raw & DecodedExitReason::PENDING_MTF != 0,
            from_vmx_root: raw & DecodedExitReason::FROM_ROOT != 0,
            entry_failure: raw & DecodedExitReason::ENTRY_FAILURE != 0,
        }
    }
}

impl From<u32> for DecodedExitReason {
    fn from(raw: u32) -> Self {
        ExitReason::from_raw(raw)
    }
}

/// A decoder could not make sense of a qualification value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QualificationError {
    /// I/O exit qualification with an access size encoding Table 28-5 does not define.
    InvalidIoSize(u8),
}

impl fmt::Display for QualificationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidIoSize(n) => write!(
                f,
                "I/O exit qualification has undefined access-size encoding {n} (SDM Vol. 3C \
                 Table 28-5 defines 0, 1 and 3); treat the exit as unhandled and stop the guest"
            ),
        }
    }
}

/// Access size of an I/O instruction (exit qualification bits 2:0, SDM Vol. 3C Table 28-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoSize {
    /// 1-byte access (encoding 0).
    Byte,
    /// 2-byte access (encoding 1).
    Word,
    /// 4-byte access (encoding 3).
    Dword,
}

impl IoSize {
    /// Number of bytes.
    pub const fn bytes(self) -> u8 {
        match self {
            Self::Byte => 1,
            Self::Word => 2,
            Self::Dword => 4,
        }
    }
}

/// Direction of an I/O instruction (bit 3, SDM Vol. 3C Table 28-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoDirection {
    /// OUT/OUTS (0).
    Out,
    /// IN/INS (1).
    In,
}

/// How the port was given (bit 6, SDM Vol. 3C Table 28-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOperandEncoding {
    /// Port in DX (0).
    Dx,
    /// Immediate port (1).
    Immediate,
}

/// Exit qualification for I/O instructions (SDM Vol. 3C §28.2.1, Table 28-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoQualification {
    /// Size of access.
    pub size: IoSize,
    /// IN or OUT.
    pub direction: IoDirection,
    /// INS/OUTS.
    pub string: bool,
    /// REP prefixed.
    pub rep: bool,
    /// DX or immediate.
    pub operand_encoding: IoOperandEncoding,
    /// Port number (bits 31:16).
    pub port: u16,
}

impl IoQualification {
    const SIZE_MASK: u64 = 0b111;
    const SIZE_BYTE: u8 = 0;
    const SIZE_WORD: u8 = 1;
    const SIZE_DWORD: u8 = 3;
    const DIRECTION_IN: u64 = 1 << 3;
    const STRING: u64 = 1 << 4;
    const REP: u64 = 1 << 5;
    const IMMEDIATE: u64 = 1 << 6;
    const PORT_SHIFT: u32 = 16;

    /// Decodes an I/O exit qualification (SDM Vol. 3C Table 28-5).
    pub const fn from_raw(raw: u64) -> Result<Self, QualificationError> {
        let size = match (raw & Self::SIZE_MASK) as u8 {
            Self::SIZE_BYTE => IoSize::Byte,
            Self::SIZE_WORD => IoSize::Word,
            Self::SIZE_DWORD => IoSize::Dword,
            other => return Err(QualificationError::InvalidIoSize(other)),
        };
        Ok(Self {
            size,
            direction: if raw & Self::DIRECTION_IN != 0 {
                IoDirection::In
            } else {
                IoDirection::Out
            },
            string: raw & Self::STRING != 0,
            rep: raw & Self::REP != 0,
            operand_encoding: if raw & Self::IMMEDIATE != 0 {
                IoOperandEncoding::Immediate
            } else {
                IoOperandEncoding::Dx
            },
            port: (raw >> Self::PORT_SHIFT) as u16,
        })
    }
}

/// General-purpose register numbers used in exit qualifications and instruction information
/// (SDM Vol. 3C Table 28-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Gpr {
    /// RAX (0).
    Rax = 0,
    /// RCX (1).
    Rcx = 1,
    /// RDX (2).
    Rdx = 2,
    /// RBX (3).
    Rbx = 3,
    /// RSP (4).
    Rsp = 4,
    /// RBP (5).
    Rbp = 5,
    /// RSI (6).
    Rsi = 6,
    /// RDI (7).
    Rdi = 7,
    /// R8 (8).
    R8 = 8,
    /// R9 (9).
    R9 = 9,
    /// R10 (10).
    R10 = 10,
    /// R11 (11).
    R11 = 11,
    /// R12 (12).
    R12 = 12,
    /// R13 (13).
    R13 = 13,
    /// R14 (14).
    R14 = 14,
    /// R15 (15).
    R15 = 15,
}

impl Gpr {
    const ALL: [Gpr; 16] = [
        Self::Rax,
        Self::Rcx,
        Self::Rdx,
        Self::Rbx,
        Self::Rsp,
        Self::Rbp,
        Self::Rsi,
        Self::Rdi,
        Self::R8,
        Self::R9,
        Self::R10,
        Self::R11,
        Self::R12,
        Self::R13,
        Self::R14,
        Self::R15,
    ];
    const MASK: u8 = 0xf;

    /// Decodes a 4-bit register number (higher bits are ignored).
    pub const fn from_bits(bits: u8) -> Self {
        Self::ALL[(bits & Self::MASK) as usize]
    }

    /// The register number.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// LMSW operand type (bit 6, SDM Vol. 3C Table 28-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LmswOperand {
    /// Register operand (0).
    Register,
    /// Memory operand (1).
    Memory,
}

/// Exit qualification for control-register accesses (SDM Vol. 3C §28.2.1, Table 28-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrAccess {
    /// MOV to CRn (access type 0).
    MovToCr {
        /// Control register number (bits 3:0).
        cr: u8,
        /// Source register (bits 11:8).
        gpr: Gpr,
    },
    /// MOV from CRn (access type 1).
    MovFromCr {
        /// Control register number (bits 3:0).
        cr: u8,
        /// Destination register (bits 11:8).
        gpr: Gpr,
    },
    /// CLTS (access type 2).
    Clts,
    /// LMSW (access type 3).
    Lmsw {
        /// Register or memory operand (bit 6).
        operand: LmswOperand,
        /// The LMSW source data (bits 31:16).
        source_data: u16,
    },
}

impl CrAccess {
    const CR_MASK: u64 = 0xf;
    const TYPE_SHIFT: u32 = 4;
    const TYPE_MASK: u64 = 0b11;
    const TYPE_MOV_TO: u64 = 0;
    const TYPE_MOV_FROM: u64 = 1;
    const TYPE_CLTS: u64 = 2;
    const LMSW_MEMORY: u64 = 1 << 6;
    const GPR_SHIFT: u32 = 8;
    const GPR_MASK: u64 = 0xf;
    const LMSW_DATA_SHIFT: u32 = 16;

    /// Decodes a control-register-access exit qualification (SDM Vol. 3C Table 28-3). Total:
    /// every 2-bit access type is defined.
    pub const fn from_raw(raw: u64) -> Self {
        let cr = (raw & Self::CR_MASK) as u8;
        let gpr = Gpr::from_bits(((raw >> Self::GPR_SHIFT) & Self::GPR_MASK) as u8);
        match (raw >> Self::TYPE_SHIFT) & Self::TYPE_MASK {
            Self::TYPE_MOV_TO => Self::MovToCr { cr, gpr },
            Self::TYPE_MOV_FROM => Self::MovFromCr { cr, gpr },
            Self::TYPE_CLTS => Self::Clts,
            _ => Self::Lmsw {
                operand: if raw & Self::LMSW_MEMORY != 0 {
                    LmswOperand::Memory
                } else {
                    LmswOperand::Register
                },
                source_data: (raw >> Self::LMSW_DATA_SHIFT) as u16,
            },
        }
    }
}

/// How an APIC-access VM exit's access was made (SDM Vol. 3C §28.2.1, Table 28-6, bits
/// 15:12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApicAccessKind {
    /// 0: a linear access for a data read during instruction execution.
    LinearRead,
    /// 1: a linear access for a data write during instruction execution.
    LinearWrite,
    /// 2: a linear access for an instruction fetch.
    LinearFetch,
    /// 3: a linear access (read or write) during event delivery.
    LinearEventDelivery,
    /// 10: a guest-physical access during event delivery.
    PhysicalEventDelivery,
    /// 15: a guest-physical access for an instruction fetch or during instruction execution.
    PhysicalInstruction,
    /// Any other value (reserved).
    Reserved(u8),
}

/// Exit qualification for APIC-access VM exits (SDM Vol. 3C §28.2.1, Table 28-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApicAccess {
    /// Bits 11:0: the offset of the access within the APIC-access page (linear accesses).
    pub offset: u16,
    /// Bits 15:12.
    pub kind: ApicAccessKind,
    /// Bit 16: the access was asynchronous to instruction execution and not part of event
    /// delivery.
    pub asynchronous: bool,
}

impl ApicAccess {
    /// Decodes the qualification (total: reserved kinds are kept).
    pub const fn from_qualification(raw: u64) -> Self {
        let kind = match ((raw >> 12) & 0xF) as u8 {
            0 => ApicAccessKind::LinearRead,
            1 => ApicAccessKind::LinearWrite,
            2 => ApicAccessKind::LinearFetch,
            3 => ApicAccessKind::LinearEventDelivery,
            10 => ApicAccessKind::PhysicalEventDelivery,
            15 => ApicAccessKind::PhysicalInstruction,
            other => ApicAccessKind::Reserved(other),
        };
        Self {
            offset: (raw & 0xFFF) as u16,
            kind,
            asynchronous: raw & (1 << 16) != 0,
        }
    }
}

bitflags::bitflags! {
    /// Exit qualification for EPT violations (SDM Vol. 3C §28.2.1, Table 28-7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct EptViolation: u64 {
        /// Bit 0: the access was a data read.
        const READ = 1 << 0;
        /// Bit 1: the access was a data write.
        const WRITE = 1 << 1;
        /// Bit 2: the access was an instruction fetch.
        const FETCH = 1 << 2;
        /// Bit 3: the guest-physical address was readable (AND of bit 0 of the EPT entries).
        const READABLE = 1 << 3;
        /// Bit 4: the guest-physical address was writable.
        const WRITABLE = 1 << 4;
        /// Bit 5: executable (for supervisor-mode linear addresses with mode-based execute).
        const EXECUTABLE = 1 << 5;
        /// Bit 6: executable for user-mode linear addresses (mode-based execute control).
        const USER_EXECUTABLE = 1 << 6;
        /// Bit 7: the guest linear-address field is valid.
        const LINEAR_ADDRESS_VALID = 1 << 7;
        /// Bit 8 (if bit 7): the access was to the translation of a linear address, not to a
        /// guest paging-structure entry.
        const CAUSED_BY_TRANSLATION = 1 << 8;
        /// Bit 9 (advanced information): the linear address was user-mode.
        const USER_MODE_LINEAR = 1 << 9;
        /// Bit 10 (advanced information): the guest page was read/write.
        const READ_WRITE_PAGE = 1 << 10;
        /// Bit 11 (advanced information): the guest page was execute-disable.
        const EXECUTE_DISABLE_PAGE = 1 << 11;
        /// Bit 12: NMI unblocking due to IRET.
        const NMI_UNBLOCKING = 1 << 12;
        /// Bit 13: shadow-stack access.
        const SHADOW_STACK = 1 << 13;
        /// Bit 14: supervisor shadow-stack control was set in the EPT entry.
        const SUPERVISOR_SHADOW_STACK = 1 << 14;
        /// Bit 15: guest-paging verification.
        const GUEST_PAGING_VERIFICATION = 1 << 15;
        /// Bit 16: the access was asynchronous to instruction execution.
        const ASYNCHRONOUS = 1 << 16;
    }
}

impl EptViolation {
    /// Decodes an EPT-violation exit qualification, keeping unknown bits.
    pub const fn from_raw(raw: u64) -> Self {
        Self::from_bits_retain(raw)
    }

    /// Whether the faulting access was a data read.
    pub const fn is_read(self) -> bool {
        self.contains(Self::READ)
    }

    /// Whether the faulting access was a data write.
    pub const fn is_write(self) -> bool {
        self.contains(Self::WRITE)
    }

    /// Whether the faulting access was an instruction fetch.
    pub const fn is_fetch(self) -> bool {
        self.contains(Self::FETCH)
    }

    /// Whether the guest-linear-address field holds a valid address.
    pub const fn guest_linear_address_valid(self) -> bool {
        self.contains(Self::LINEAR_ADDRESS_VALID)
    }

    /// Whether the access was to the final translation (vs. a guest paging-structure entry);
    /// `None` if the linear-address field is not valid (bit 8 is then undefined).
    pub const fn caused_by_translation(self) -> Option<bool> {
        if self.guest_linear_address_valid() {
            Some(self.contains(Self::CAUSED_BY_TRANSLATION))
        } else {
            None
        }
    }

    /// Whether the EPT entries allowed no access at all (the address was not mapped).
    pub const fn not_present(self) -> bool {
        !self.intersects(Self::READABLE.union(Self::WRITABLE).union(Self::EXECUTABLE))
    }

    /// Whether IRET unblocked NMIs before the exit (the hypervisor must re-block NMIs before
    /// resuming; SDM Vol. 3C §28.2.3).
    pub const fn nmi_unblocking(self) -> bool {
        self.contains(Self::NMI_UNBLOCKING)
    }
}

/// Exception vectors (SDM Vol. 3A §6.3.1, Table 6-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExceptionVector {
    /// #DE divide error.
    DivideError = 0,
    /// #DB debug.
    Debug = 1,
    /// NMI.
    Nmi = 2,
    /// #BP breakpoint.
    Breakpoint = 3,
    /// #OF overflow.
    Overflow = 4,
    /// #BR BOUND range exceeded.
    BoundRange = 5,
    /// #UD invalid opcode.
    InvalidOpcode = 6,
    /// #NM device not available.
    DeviceNotAvailable = 7,
    /// #DF double fault (error code 0).
    DoubleFault = 8,
    /// Coprocessor segment overrun (reserved since the 486).
    CoprocessorSegmentOverrun = 9,
    /// #TS invalid TSS.
    InvalidTss = 10,
    /// #NP segment not present.
    SegmentNotPresent = 11,
    /// #SS stack-segment fault.
    StackSegmentFault = 12,
    /// #GP general protection.
    GeneralProtection = 13,
    /// #PF page fault.
    PageFault = 14,
    /// #MF x87 floating-point error.
    X87FloatingPoint = 16,
    /// #AC alignment check.
    AlignmentCheck = 17,
    /// #MC machine check.
    MachineCheck = 18,
    /// #XM SIMD floating-point exception.
    SimdFloatingPoint = 19,
    /// #VE virtualization exception.
    VirtualizationException = 20,
    /// #CP control-protection exception.
    ControlProtection = 21,
}

impl ExceptionVector {
    /// Decodes a vector number; `None` for reserved (15, 22-31) and interrupt vectors.
    pub const fn from_u8(vector: u8) -> Option<Self> {
        Some(match vector {
            0 => Self::DivideError,
            1 => Self::Debug,
            2 => Self::Nmi,
            3 => Self::Breakpoint,
            4 => Self::Overflow,
            5 => Self::BoundRange,
            6 => Self::InvalidOpcode,
            7 => Self::DeviceNotAvailable,
            8 => Self::DoubleFault,
            9 => Self::CoprocessorSegmentOverrun,
            10 => Self::InvalidTss,
            11 => Self::SegmentNotPresent,
            12 => Self::StackSegmentFault,
            13 => Self::GeneralProtection,
            14 => Self::PageFault,
            16 => Self::X87FloatingPoint,
            17 => Self::AlignmentCheck,
            18 => Self::MachineCheck,
            19 => Self::SimdFloatingPoint,
            20 => Self::VirtualizationException,
            21 => Self::ControlProtection,
            _ => return None,
        })
    }

    /// The vector number.
    pub const fn vector(self) -> u8 {
        self as u8
    }

    /// Whether the exception is a fault (SDM Vol. 3A §6.5 and Table 6-1): reported at the
    /// instruction that caused it, which IRET re-executes. #DB is a fault or a trap depending
    /// on its condition (counted as a fault here; see [`crate::event::Injection::sets_rf`]);
    /// #BP and #OF are traps, #DF and #MC aborts, NMI an interrupt.
    pub const fn is_fault(self) -> bool {
        !matches!(
            self,
            Self::Nmi
                | Self::Breakpoint
                | Self::Overflow
                | Self::DoubleFault
                | Self::CoprocessorSegmentOverrun
                | Self::MachineCheck
        )
    }

    /// Whether the exception pushes an error code, i.e. whether VM entry requires "deliver
    /// error code" when injecting it as a hardware exception in protected mode
    /// (SDM Vol. 3C §27.2.1.3).
    pub const fn has_error_code(self) -> bool {
        matches!(
            self,
            Self::DoubleFault
                | Self::InvalidTss
                | Self::SegmentNotPresent
                | Self::StackSegmentFault
                | Self::GeneralProtection
                | Self::PageFault
                | Self::AlignmentCheck
                | Self::ControlProtection
        )
    }
}

/// Interruption type (bits 10:8, SDM Vol. 3C §25.8.3 Table 25-17 and §25.9.2 Table 25-19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterruptionType {
    /// External interrupt (0).
    ExternalInterrupt,
    /// Reserved (1).
    Reserved,
    /// Non-maskable interrupt (2).
    Nmi,
    /// Hardware exception (3).
    HardwareException,
    /// Software interrupt, INT n (4).
    SoftwareInterrupt,
    /// Privileged software exception, INT1 (5).
    PrivilegedSoftwareException,
    /// Software exception, INT3 or INTO (6).
    SoftwareException,
    /// Other event (7), e.g. a pending MTF VM exit on injection.
    OtherEvent,
}

impl InterruptionType {
    /// Decodes the 3-bit type.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & InterruptionInfo::TYPE_MASK as u8 {
            0 => Self::ExternalInterrupt,
            1 => Self::Reserved,
            2 => Self::Nmi,
            3 => Self::HardwareException,
            4 => Self::SoftwareInterrupt,
            5 => Self::PrivilegedSoftwareException,
            6 => Self::SoftwareException,
            _ => Self::OtherEvent,
        }
    }

    /// The 3-bit encoding.
    pub const fn bits(self) -> u8 {
        match self {
            Self::ExternalInterrupt => 0,
            Self::Reserved => 1,
            Self::Nmi => 2,
            Self::HardwareException => 3,
            Self::SoftwareInterrupt => 4,
            Self::PrivilegedSoftwareException => 5,
            Self::SoftwareException => 6,
            Self::OtherEvent => 7,
        }
    }

    /// Whether injection of this type uses the VM-entry instruction length
    /// (SDM Vol. 3C §25.8.3).
    pub const fn uses_instruction_length(self) -> bool {
        matches!(
            self,
            Self::SoftwareInterrupt | Self::PrivilegedSoftwareException | Self::SoftwareException
        )
    }
}

/// Interruption information: the VM-entry interruption-information field (SDM Vol. 3C
/// §25.8.3, Table 25-17), the VM-exit interruption-information field and the IDT-vectoring
/// information field (SDM Vol. 3C §25.9.2-25.9.3, Tables 25-19 and 25-20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InterruptionInfo(u32);

impl InterruptionInfo {
    const VECTOR_MASK: u32 = 0xff;
    const TYPE_SHIFT: u32 = 8;
    const TYPE_MASK: u32 = 0b111;
    const ERROR_CODE_VALID: u32 = 1 << 11;
    const NMI_UNBLOCKING: u32 = 1 << 12;
    const VALID: u32 = 1 << 31;

    /// Wraps a raw field value.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw value to write to the VM-entry interruption-information field.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// A valid event of the given type and vector (other bits 0).
    pub const fn new(kind: InterruptionType, vector: u8, error_code_valid: bool) -> Self {
        let mut raw = vector as u32 | ((kind.bits() as u32) << Self::TYPE_SHIFT) | Self::VALID;
        if error_code_valid {
            raw |= Self::ERROR_CODE_VALID;
        }
        Self(raw)
    }

    /// A hardware exception to inject; set `error_code_valid` when the exception pushes an
    /// error code ([`ExceptionVector::has_error_code`]) and the guest is in protected mode,
    /// and write the code to the VM-entry exception error code field (SDM Vol. 3C §27.2.1.3).
    pub const fn new_exception(vector: ExceptionVector, error_code_valid: bool) -> Self {
        Self::new(
            InterruptionType::HardwareException,
            vector.vector(),
            error_code_valid,
        )
    }

    /// A software exception (#BP from INT3 or #OF from INTO) to inject; needs the VM-entry
    /// instruction length.
    pub const fn new_software_exception(vector: ExceptionVector) -> Self {
        Self::new(InterruptionType::SoftwareException, vector.vector(), false)
    }

    /// An external interrupt to inject.
    pub const fn new_external_interrupt(vector: u8) -> Self {
        Self::new(InterruptionType::ExternalInterrupt, vector, false)
    }

    /// An NMI to inject (vector 2, SDM Vol. 3C §27.2.1.3).
    pub const fn new_nmi() -> Self {
        Self::new(InterruptionType::Nmi, ExceptionVector::Nmi.vector(), false)
    }

    /// A software interrupt (INT n) to inject; needs the VM-entry instruction length.
    pub const fn new_software_interrupt(vector: u8) -> Self {
        Self::new(InterruptionType::SoftwareInterrupt, vector, false)
    }

    /// Vector (bits 7:0).
    pub const fn vector(self) -> u8 {
        (self.0 & Self::VECTOR_MASK) as u8
    }

    /// The vector as an exception, if this is an exception or NMI with a defined vector.
    pub const fn exception(self) -> Option<ExceptionVector> {
        match self.kind() {
            InterruptionType::HardwareException
            | InterruptionType::SoftwareException
            | InterruptionType::PrivilegedSoftwareException
            | InterruptionType::Nmi => ExceptionVector::from_u8(self.vector()),
            _ => None,
        }
    }

    /// Interruption type (bits 10:8).
    pub const fn kind(self) -> InterruptionType {
        InterruptionType::from_bits(((self.0 >> Self::TYPE_SHIFT) & Self::TYPE_MASK) as u8)
    }

    /// The same event with "deliver error code" (bit 11) clear.
    pub const fn without_error_code(self) -> Self {
        Self(self.0 & !Self::ERROR_CODE_VALID)
    }

    /// Error code valid / deliver error code (bit 11).
    pub const fn error_code_valid(self) -> bool {
        self.0 & Self::ERROR_CODE_VALID != 0
    }

    /// NMI unblocking due to IRET (bit 12; exit information only).
    pub const fn nmi_unblocking(self) -> bool {
        self.0 & Self::NMI_UNBLOCKING != 0
    }

    /// Valid (bit 31).
    pub const fn valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    /// Converts exit-side information (VM-exit interruption or IDT-vectoring information) into
    /// a value suitable for re-injection: only vector, type, error-code-valid and valid are
    /// kept, since bits 30:12 must be 0 on entry (SDM Vol. 3C §27.2.1.3).
    pub const fn for_reinjection(self) -> Self {
        Self(
            self.0
                & (Self::VECTOR_MASK
                    | (Self::TYPE_MASK << Self::TYPE_SHIFT)
                    | Self::ERROR_CODE_VALID
                    | Self::VALID),
        )
    }
}

/// Why guest-state loading failed, from the exit qualification of an exit with reason 33
/// (SDM Vol. 3C §27.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidGuestStateCause {
    /// 0: a guest-state check of §27.3.1 failed (no further detail).
    GuestStateCheck,
    /// 2: loading the PDPTEs failed (PAE paging; SDM Vol. 3C §27.3.1.6).
    PdpteLoading,
    /// 3: an NMI was injected while virtual-NMI blocking was in effect.
    NmiInjection,
    /// 4: the VMCS link pointer is invalid (SDM Vol. 3C §27.3.1.5).
    InvalidVmcsLinkPointer,
    /// Any other value.
    Unknown(u64),
}

impl InvalidGuestStateCause {
    const DEFAULT: u64 = 0;
    const PDPTE: u64 = 2;
    const NMI: u64 = 3;
    const LINK_POINTER: u64 = 4;

    /// Decodes the exit qualification of a reason-33 exit (SDM Vol. 3C §27.8).
    pub const fn from_qualification(qualification: u64) -> Self {
        match qualification {
            Self::DEFAULT => Self::GuestStateCheck,
            Self::PDPTE => Self::PdpteLoading,
            Self::NMI => Self::NmiInjection,
            Self::LINK_POINTER => Self::InvalidVmcsLinkPointer,
            other => Self::Unknown(other),
        }
    }
}

/// A classified VM-entry failure (SDM Vol. 3C §27.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryFailure {
    /// Exit reason 33: invalid guest state.
    InvalidGuestState(InvalidGuestStateCause),
    /// Exit reason 34: loading the MSR at (1-based) `entry` of the VM-entry MSR-load area
    /// failed (SDM Vol. 3C §27.4).
    MsrLoading {
        /// 1-based index of the failing entry (the exit qualification).
        entry: u64,
    },
    /// Exit reason 41: a machine-check event occurred during VM entry (SDM Vol. 3C §27.9).
    MachineCheck,
}

impl EntryFailure {
    /// Classifies an exit whose exit-reason field had bit 31 set; `None` for any other exit,
    /// including an entry-failure flag with an unexpected basic reason.
    pub const fn classify(reason: DecodedExitReason, qualification: u64) -> Option<Self> {
        if !reason.entry_failure {
            return None;
        }
        match reason.reason {
            ExitReason::EntryFailureInvalidGuestState => Some(Self::InvalidGuestState(
                InvalidGuestStateCause::from_qualification(qualification),
            )),
            ExitReason::EntryFailureMsrLoading => Some(Self::MsrLoading {
                entry: qualification,
            }),
            ExitReason::EntryFailureMachineCheck => Some(Self::MachineCheck),
            _ => None,
        }
    }

    /// Name of the class of VM-entry checks that failed.
    pub const fn check_class(self) -> &'static str {
        match self {
            Self::InvalidGuestState(InvalidGuestStateCause::GuestStateCheck) => {
                "guest-state area checks (SDM Vol. 3C §27.3.1)"
            }
            Self::InvalidGuestState(InvalidGuestStateCause::PdpteLoading) => {
                "PDPTE loading (SDM Vol. 3C §27.3.1.6)"
            }
            Self::InvalidGuestState(InvalidGuestStateCause::NmiInjection) => {
                "NMI injection while virtual-NMI blocking (SDM Vol. 3C §27.8)"
            }
            Self::InvalidGuestState(InvalidGuestStateCause::InvalidVmcsLinkPointer) => {
                "VMCS link pointer checks (SDM Vol. 3C §27.3.1.5)"
            }
            Self::InvalidGuestState(InvalidGuestStateCause::Unknown(_)) => {
                "guest-state checks with an undefined qualification (SDM Vol. 3C §27.8)"
            }
            Self::MsrLoading { .. } => "VM-entry MSR loading (SDM Vol. 3C §27.4)",
            Self::MachineCheck => "machine-check event during VM entry (SDM Vol. 3C §27.9)",
        }
    }
}

impl fmt::Display for EntryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VM entry failed: {}; ", self.check_class())?;
        match self {
            Self::InvalidGuestState(InvalidGuestStateCause::GuestStateCheck) => f.write_str(
                "check guest CR0/CR4 fixed bits, segment selectors/bases/limits/access rights, \
                 GDTR/IDTR, RIP/RFLAGS, activity and interruptibility state",
            ),
            Self::InvalidGuestState(InvalidGuestStateCause::PdpteLoading) => f.write_str(
                "the guest's PAE PDPTEs referenced by CR3 have reserved bits set; fix guest CR3 \
                 or the PDPTE fields",
            ),
            Self::InvalidGuestState(InvalidGuestStateCause::NmiInjection) => f.write_str(
                "do not inject an NMI while the guest has virtual-NMI blocking; use NMI-window \
                 exiting",
            ),
            Self::InvalidGuestState(InvalidGuestStateCause::InvalidVmcsLinkPointer) => {
                f.write_str("set the VMCS link pointer to 0xffffffff_ffffffff when not shadowing")
            }
            Self::InvalidGuestState(InvalidGuestStateCause::Unknown(q)) => {
                write!(f, "exit qualification {q:#x} is not defined by the SDM")
            }
            Self::MsrLoading { entry } => write!(
                f,
                "entry {entry} of the VM-entry MSR-load area is invalid (reserved MSR, bad value \
                 or forbidden MSR); fix that entry"
            ),
            Self::MachineCheck => f.write_str("the hardware reported a machine check"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apic_access_qualifications() {
        let q = ApicAccess::from_qualification(0x0390);
        assert_eq!(
            (q.offset, q.kind, q.asynchronous),
            (0x390, ApicAccessKind::LinearRead, false)
        );
        assert_eq!(
            ApicAccess::from_qualification(0x10b0).kind,
            ApicAccessKind::LinearWrite
        );
        assert_eq!(
            ApicAccess::from_qualification(0x2000).kind,
            ApicAccessKind::LinearFetch
        );
        assert_eq!(
            ApicAccess::from_qualification(0x3000).kind,
            ApicAccessKind::LinearEventDelivery
        );
        assert_eq!(
            ApicAccess::from_qualification(0xa000).kind,
            ApicAccessKind::PhysicalEventDelivery
        );
        let q = ApicAccess::from_qualification(0x1_f000);
        assert_eq!(
            (q.kind, q.asynchronous),
            (ApicAccessKind::PhysicalInstruction, true)
        );
        assert_eq!(
            ApicAccess::from_qualification(0x5000).kind,
            ApicAccessKind::Reserved(5)
        );
    }

    #[test]
    fn exit_reason_numbers_round_trip() {
        for n in 0..=u16::MAX {
            assert_eq!(ExitReason::from_basic(n).number(), n);
        }
        assert_eq!(ExitReason::from_basic(0), ExitReason::ExceptionOrNmi);
        assert_eq!(ExitReason::from_basic(30), ExitReason::IoInstruction);
        assert_eq!(ExitReason::from_basic(48), ExitReason::EptViolation);
        assert_eq!(
            ExitReason::from_basic(52),
            ExitReason::PreemptionTimerExpired
        );
        assert_eq!(ExitReason::from_basic(35), ExitReason::Unknown(35));
        assert_eq!(ExitReason::from_basic(1000), ExitReason::Unknown(1000));
    }

    #[test]
    fn exit_reason_field() {
        let d = ExitReason::from_raw(0x8000_0021);
        assert_eq!(d.reason, ExitReason::EntryFailureInvalidGuestState);
        assert!(d.entry_failure);
        let d = ExitReason::from_raw(10);
        assert_eq!(d.reason, ExitReason::Cpuid);
        assert!(!d.entry_failure && !d.pending_mtf && !d.enclave_mode && !d.from_vmx_root);
        let d = ExitReason::from_raw(0x1000_0000 | 30);
        assert!(d.pending_mtf);
        assert_eq!(d.reason, ExitReason::IoInstruction);
        let d = DecodedExitReason::from(u32::MAX);
        assert_eq!(d.reason, ExitReason::Unknown(0xffff));
        assert!(d.entry_failure && d.enclave_mode && d.pending_mtf && d.from_vmx_root);
    }

    #[test]
    fn io_qualification() {
        // OUT DX, AL to port 0x3f8.
        let q = IoQualification::from_raw(0x03f8_0000).unwrap();
        assert_eq!(q.size, IoSize::Byte);
        assert_eq!(q.direction, IoDirection::Out);
        assert_eq!(q.operand_encoding, IoOperandEncoding::Dx);
        assert_eq!(q.port, 0x3f8);
        assert!(!q.string && !q.rep);
        // REP INSW from port 0x1f0 (size 1, in, string, rep).
        let q = IoQualification::from_raw(0x01f0_0000 | 0b11_1001).unwrap();
        assert_eq!(q.size, IoSize::Word);
        assert_eq!(q.size.bytes(), 2);
        assert_eq!(q.direction, IoDirection::In);
        assert!(q.string && q.rep);
        // IN EAX, 0x71 (immediate).
        let q = IoQualification::from_raw(0x0071_0000 | 0b100_1011).unwrap();
        assert_eq!(q.size, IoSize::Dword);
        assert_eq!(q.operand_encoding, IoOperandEncoding::Immediate);
        assert_eq!(q.port, 0x71);
        assert_eq!(
            IoQualification::from_raw(2),
            Err(QualificationError::InvalidIoSize(2))
        );
        for size in [4, 5, 6, 7] {
            assert!(IoQualification::from_raw(size).is_err());
        }
        assert!(IoQualification::from_raw(u64::MAX).is_err());
    }

    #[test]
    fn cr_access_qualification() {
        // MOV CR0, RBX: cr 0, type 0, gpr 3.
        assert_eq!(
            CrAccess::from_raw(0x300),
            CrAccess::MovToCr {
                cr: 0,
                gpr: Gpr::Rbx
            }
        );
        // MOV R12, CR3: cr 3, type 1, gpr 12.
        assert_eq!(
            CrAccess::from_raw(0xc13),
            CrAccess::MovFromCr {
                cr: 3,
                gpr: Gpr::R12
            }
        );
        assert_eq!(CrAccess::from_raw(0x20), CrAccess::Clts);
        // LMSW from memory with source data 0x0011.
        assert_eq!(
            CrAccess::from_raw(0x0011_0070),
            CrAccess::Lmsw {
                operand: LmswOperand::Memory,
                source_data: 0x11
            }
        );
        assert_eq!(
            CrAccess::from_raw(0xffff_0030),
            CrAccess::Lmsw {
                operand: LmswOperand::Register,
                source_data: 0xffff
            }
        );
        // Never panics on arbitrary values.
        let _ = CrAccess::from_raw(u64::MAX);
        assert_eq!(Gpr::from_bits(0xff), Gpr::R15);
        assert_eq!(Gpr::R9.index(), 9);
    }

    #[test]
    fn ept_violation_qualification() {
        // Write to a read-only page through a linear-address translation.
        let q = EptViolation::from_raw(0b1_1000_1010);
        assert!(q.is_write() && !q.is_read() && !q.is_fetch());
        assert!(q.contains(EptViolation::READABLE));
        assert!(!q.contains(EptViolation::WRITABLE));
        assert_eq!(q.caused_by_translation(), Some(true));
        assert!(!q.not_present());
        assert!(!q.nmi_unblocking());
        // Fetch from an unmapped page, no linear address, NMI unblocking.
        let q = EptViolation::from_raw(0x1004);
        assert!(q.is_fetch() && q.not_present() && q.nmi_unblocking());
        assert_eq!(q.caused_by_translation(), None);
        // Access to a guest paging-structure entry.
        let q = EptViolation::from_raw(0x81);
        assert_eq!(q.caused_by_translation(), Some(false));
        assert_eq!(EptViolation::from_raw(u64::MAX).bits(), u64::MAX);
    }

    #[test]
    fn interruption_info_decode() {
        // #PF with error code, valid.
        let i = InterruptionInfo::from_raw(0x8000_0b0e);
        assert!(i.valid() && i.error_code_valid() && !i.nmi_unblocking());
        assert_eq!(i.kind(), InterruptionType::HardwareException);
        assert_eq!(i.vector(), 14);
        assert_eq!(i.exception(), Some(ExceptionVector::PageFault));
        // External interrupt 0x20.
        let i = InterruptionInfo::from_raw(0x8000_0020);
        assert_eq!(i.kind(), InterruptionType::ExternalInterrupt);
        assert_eq!(i.exception(), None);
        // NMI with NMI unblocking.
        let i = InterruptionInfo::from_raw(0x8000_1202);
        assert_eq!(i.kind(), InterruptionType::Nmi);
        assert!(i.nmi_unblocking());
        assert_eq!(i.for_reinjection().raw(), 0x8000_0202);
        assert!(!InterruptionInfo::from_raw(0x0b0e).valid());
        assert_eq!(InterruptionType::from_bits(1), InterruptionType::Reserved);
        assert_eq!(
            InterruptionInfo::from_raw(u32::MAX).kind(),
            InterruptionType::OtherEvent
        );
    }

    #[test]
    fn interruption_info_build() {
        let gp = InterruptionInfo::new_exception(ExceptionVector::GeneralProtection, true);
        assert_eq!(gp.raw(), 0x8000_0b0d);
        let ud = InterruptionInfo::new_exception(ExceptionVector::InvalidOpcode, false);
        assert_eq!(ud.raw(), 0x8000_0306);
        assert_eq!(InterruptionInfo::new_nmi().raw(), 0x8000_0202);
        assert_eq!(
            InterruptionInfo::new_external_interrupt(0x30).raw(),
            0x8000_0030
        );
        let int = InterruptionInfo::new_software_interrupt(0x80);
        assert_eq!(int.raw(), 0x8000_0480);
        assert!(int.kind().uses_instruction_length());
        let bp = InterruptionInfo::new_software_exception(ExceptionVector::Breakpoint);
        assert_eq!(bp.raw(), 0x8000_0603);
    }

    #[test]
    fn exception_vectors() {
        for v in 0..=u8::MAX {
            match ExceptionVector::from_u8(v) {
                Some(e) => assert_eq!(e.vector(), v),
                None => assert!(v == 15 || v > 21),
            }
        }
        assert!(ExceptionVector::PageFault.has_error_code());
        assert!(ExceptionVector::DoubleFault.has_error_code());
        assert!(!ExceptionVector::InvalidOpcode.has_error_code());
        assert!(!ExceptionVector::Breakpoint.has_error_code());
    }

    #[test]
    fn entry_failures() {
        let r = ExitReason::from_raw(0x8000_0021);
        assert_eq!(
            EntryFailure::classify(r, 0),
            Some(EntryFailure::InvalidGuestState(
                InvalidGuestStateCause::GuestStateCheck
            ))
        );
        assert_eq!(
            EntryFailure::classify(r, 2),
            Some(EntryFailure::InvalidGuestState(
                InvalidGuestStateCause::PdpteLoading
            ))
        );
        assert_eq!(
            EntryFailure::classify(r, 3),
            Some(EntryFailure::InvalidGuestState(
                InvalidGuestStateCause::NmiInjection
            ))
        );
        let link = EntryFailure::classify(r, 4).unwrap();
        assert_eq!(
            link,
            EntryFailure::InvalidGuestState(InvalidGuestStateCause::InvalidVmcsLinkPointer)
        );
        assert!(link.check_class().contains("link pointer"));
        assert_eq!(
            EntryFailure::classify(r, 9),
            Some(EntryFailure::InvalidGuestState(
                InvalidGuestStateCause::Unknown(9)
            ))
        );
        let msr = EntryFailure::classify(ExitReason::from_raw(0x8000_0022), 3).unwrap();
        assert_eq!(msr, EntryFailure::MsrLoading { entry: 3 });
        assert!(std::format!("{msr}").contains("entry 3"));
        assert_eq!(
            EntryFailure::classify(ExitReason::from_raw(0x8000_0029), 0),
            Some(EntryFailure::MachineCheck)
        );
        // Not an entry failure, or a flag with an unrelated reason.
        assert_eq!(EntryFailure::classify(ExitReason::from_raw(33), 0), None);
        assert_eq!(
            EntryFailure::classify(ExitReason::from_raw(0x8000_000a), 0),
            None
        );
        let text = std::format!(
            "{}",
            EntryFailure::InvalidGuestState(InvalidGuestStateCause::GuestStateCheck)
        );
        assert!(text.contains("§27.3.1"), "{text}");
    }
}
