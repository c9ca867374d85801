//! VMCS field encodings (SDM Vol. 3D Appendix B) and the guest segment access-rights format.
//!
//! An encoding is structured as follows (SDM Vol. 3C §25.11.2, Table 25-21): bit 0 access type
//! (0 full, 1 high half of a 64-bit field), bits 9:1 index, bits 11:10 type (0 control,
//! 1 VM-exit information, 2 guest state, 3 host state), bit 12 reserved (0), bits 14:13 width
//! (0 16-bit, 1 64-bit, 2 32-bit, 3 natural-width), bits 31:15 reserved (0).

use core::fmt;

/// Width of a VMCS field (encoding bits 14:13, SDM Vol. 3C §25.11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Width {
    /// 16-bit field (encoding width 0).
    Bits16,
    /// 64-bit field (encoding width 1).
    Bits64,
    /// 32-bit field (encoding width 2).
    Bits32,
    /// Natural-width field: 64 bits on processors supporting Intel 64 (encoding width 3).
    Natural,
}

impl Width {
    const SHIFT: u32 = 13;
    const MASK: u32 = 0b11;

    /// Decodes bits 14:13 of an encoding.
    pub const fn from_encoding(encoding: u32) -> Self {
        match (encoding >> Self::SHIFT) & Self::MASK {
            0 => Self::Bits16,
            1 => Self::Bits64,
            2 => Self::Bits32,
            _ => Self::Natural,
        }
    }

    /// Size in bits (natural width is 64 on Intel 64 processors).
    pub const fn bits(self) -> u32 {
        match self {
            Self::Bits16 => 16,
            Self::Bits32 => 32,
            Self::Bits64 | Self::Natural => 64,
        }
    }

    /// Mask of the bits a field of this width can hold.
    pub const fn value_mask(self) -> u64 {
        match self {
            Self::Bits16 => u16::MAX as u64,
            Self::Bits32 => u32::MAX as u64,
            Self::Bits64 | Self::Natural => u64::MAX,
        }
    }
}

/// Field type (encoding bits 11:10, SDM Vol. 3C §25.11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// VM-execution, VM-exit and VM-entry control fields (type 0).
    Control,
    /// VM-exit information fields, read-only data (type 1).
    ExitInformation,
    /// Guest-state area (type 2).
    GuestState,
    /// Host-state area (type 3).
    HostState,
}

impl FieldKind {
    const SHIFT: u32 = 10;
    const MASK: u32 = 0b11;

    /// Decodes bits 11:10 of an encoding.
    pub const fn from_encoding(encoding: u32) -> Self {
        match (encoding >> Self::SHIFT) & Self::MASK {
            0 => Self::Control,
            1 => Self::ExitInformation,
            2 => Self::GuestState,
            _ => Self::HostState,
        }
    }
}

/// Access type (encoding bit 0, SDM Vol. 3C §25.11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// The whole field (for 64-bit fields: all 64 bits).
    Full,
    /// The high 32 bits of a 64-bit field (for 32-bit VMREAD/VMWRITE).
    High,
}

impl Access {
    const BIT: u32 = 1 << 0;

    /// Decodes bit 0 of an encoding.
    pub const fn from_encoding(encoding: u32) -> Self {
        if encoding & Self::BIT != 0 {
            Self::High
        } else {
            Self::Full
        }
    }
}

/// A VMCS field: its encoding and declared width/type (SDM Vol. 3D Appendix B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmcsField {
    encoding: u32,
    width: Width,
    kind: FieldKind,
    name: &'static str,
}

impl VmcsField {
    /// Bits 14:13, 11:10 and 9:0 may be nonzero; bit 12 and bits 31:15 are reserved
    /// (SDM Vol. 3C §25.11.2).
    const VALID_BITS: u32 = 0x6fff;
    const INDEX_SHIFT: u32 = 1;
    const INDEX_MASK: u32 = 0x1ff;

    const fn declare(encoding: u32, width: Width, kind: FieldKind, name: &'static str) -> Self {
        Self {
            encoding,
            width,
            kind,
            name,
        }
    }

    /// The encoding passed to VMREAD/VMWRITE.
    pub const fn encoding(self) -> u32 {
        self.encoding
    }

    /// The declared width.
    pub const fn width(self) -> Width {
        self.width
    }

    /// The declared type.
    pub const fn kind(self) -> FieldKind {
        self.kind
    }

    /// Full or high access (always [`Access::Full`] for the named constants).
    pub const fn access(self) -> Access {
        Access::from_encoding(self.encoding)
    }

    /// The index (encoding bits 9:1), comparable with IA32_VMX_VMCS_ENUM (SDM Vol. 3D A.9).
    pub const fn index(self) -> u16 {
        ((self.encoding >> Self::INDEX_SHIFT) & Self::INDEX_MASK) as u16
    }

    /// The SDM-style name of the field.
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// Whether VMWRITE may write the field without `IA32_VMX_MISC[29]` (not a VM-exit
    /// information field; SDM Vol. 3C §31.3 VMWRITE).
    pub const fn is_writable(self) -> bool {
        !matches!(self.kind, FieldKind::ExitInformation)
    }

    /// The "high" access encoding of a 64-bit field (SDM Vol. 3C §25.11.2), `None` otherwise.
    pub const fn high(self) -> Option<VmcsField> {
        match (self.width, self.access()) {
            (Width::Bits64, Access::Full) => Some(Self {
                encoding: self.encoding | Access::BIT,
                width: Width::Bits32,
                kind: self.kind,
                name: self.name,
            }),
            _ => None,
        }
    }

    /// Looks up a named field by encoding (including the high half of 64-bit fields).
    pub fn from_encoding(encoding: u32) -> Option<VmcsField> {
        let full = encoding & !Access::BIT;
        let field = Self::ALL.iter().copied().find(|f| f.encoding == full)?;
        match Access::from_encoding(encoding) {
            Access::Full => Some(field),
            Access::High => field.high(),
        }
    }

    /// Whether an arbitrary number is a well-formed encoding: no reserved bits set and the
    /// high access type used only with 64-bit width (SDM Vol. 3C §25.11.2).
    pub const fn is_well_formed(encoding: u32) -> bool {
        encoding & !Self::VALID_BITS == 0
            && (matches!(Access::from_encoding(encoding), Access::Full)
                || matches!(Width::from_encoding(encoding), Width::Bits64))
    }
}

impl fmt::Display for VmcsField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#06x})", self.name, self.encoding)?;
        if matches!(self.access(), Access::High) {
            f.write_str(" high")?;
        }
        Ok(())
    }
}

macro_rules! vmcs_fields {
    ($( $(#[$meta:meta])* $name:ident = $encoding:literal, $width:ident, $kind:ident; )*) => {
        impl VmcsField {
            $(
                $(#[$meta])*
                pub const $name: VmcsField =
                    VmcsField::declare($encoding, Width::$width, FieldKind::$kind, stringify!($name));
            )*

            /// Every named field.
            pub const ALL: &'static [VmcsField] = &[$(VmcsField::$name,)*];
        }
    };
}

vmcs_fields! {
    // ---- 16-bit control fields (SDM Vol. 3D Appendix B.1.1) ----
    /// Virtual-processor identifier.
    VPID = 0x0000, Bits16, Control;
    /// Posted-interrupt notification vector.
    POSTED_INTERRUPT_NOTIFICATION_VECTOR = 0x0002, Bits16, Control;
    /// EPTP index.
    EPTP_INDEX = 0x0004, Bits16, Control;
    /// HLAT prefix size.
    HLAT_PREFIX_SIZE = 0x0006, Bits16, Control;
    /// Last PID-pointer index.
    LAST_PID_POINTER_INDEX = 0x0008, Bits16, Control;

    // ---- 16-bit guest-state fields (SDM Vol. 3D Appendix B.1.2) ----
    /// Guest ES selector.
    GUEST_ES_SELECTOR = 0x0800, Bits16, GuestState;
    /// Guest CS selector.
    GUEST_CS_SELECTOR = 0x0802, Bits16, GuestState;
    /// Guest SS selector.
    GUEST_SS_SELECTOR = 0x0804, Bits16, GuestState;
    /// Guest DS selector.
    GUEST_DS_SELECTOR = 0x0806, Bits16, GuestState;
    /// Guest FS selector.
    GUEST_FS_SELECTOR = 0x0808, Bits16, GuestState;
    /// Guest GS selector.
    GUEST_GS_SELECTOR = 0x080a, Bits16, GuestState;
    /// Guest LDTR selector.
    GUEST_LDTR_SELECTOR = 0x080c, Bits16, GuestState;
    /// Guest TR selector.
    GUEST_TR_SELECTOR = 0x080e, Bits16, GuestState;
    /// Guest interrupt status (RVI/SVI, virtual-interrupt delivery).
    GUEST_INTERRUPT_STATUS = 0x0810, Bits16, GuestState;
    /// PML index.
    GUEST_PML_INDEX = 0x0812, Bits16, GuestState;

    // ---- 16-bit host-state fields (SDM Vol. 3D Appendix B.1.3) ----
    /// Host ES selector.
    HOST_ES_SELECTOR = 0x0c00, Bits16, HostState;
    /// Host CS selector.
    HOST_CS_SELECTOR = 0x0c02, Bits16, HostState;
    /// Host SS selector.
    HOST_SS_SELECTOR = 0x0c04, Bits16, HostState;
    /// Host DS selector.
    HOST_DS_SELECTOR = 0x0c06, Bits16, HostState;
    /// Host FS selector.
    HOST_FS_SELECTOR = 0x0c08, Bits16, HostState;
    /// Host GS selector.
    HOST_GS_SELECTOR = 0x0c0a, Bits16, HostState;
    /// Host TR selector.
    HOST_TR_SELECTOR = 0x0c0c, Bits16, HostState;

    // ---- 64-bit control fields (SDM Vol. 3D Appendix B.2.1) ----
    /// Address of I/O bitmap A (ports 0x0000-0x7fff).
    IO_BITMAP_A = 0x2000, Bits64, Control;
    /// Address of I/O bitmap B (ports 0x8000-0xffff).
    IO_BITMAP_B = 0x2002, Bits64, Control;
    /// Address of the MSR bitmaps.
    MSR_BITMAP = 0x2004, Bits64, Control;
    /// VM-exit MSR-store address.
    VM_EXIT_MSR_STORE_ADDR = 0x2006, Bits64, Control;
    /// VM-exit MSR-load address.
    VM_EXIT_MSR_LOAD_ADDR = 0x2008, Bits64, Control;
    /// VM-entry MSR-load address.
    VM_ENTRY_MSR_LOAD_ADDR = 0x200a, Bits64, Control;
    /// Executive-VMCS pointer.
    EXECUTIVE_VMCS_POINTER = 0x200c, Bits64, Control;
    /// PML address.
    PML_ADDRESS = 0x200e, Bits64, Control;
    /// TSC offset.
    TSC_OFFSET = 0x2010, Bits64, Control;
    /// Virtual-APIC address.
    VIRTUAL_APIC_ADDRESS = 0x2012, Bits64, Control;
    /// APIC-access address.
    APIC_ACCESS_ADDRESS = 0x2014, Bits64, Control;
    /// Posted-interrupt descriptor address.
    POSTED_INTERRUPT_DESCRIPTOR_ADDRESS = 0x2016, Bits64, Control;
    /// VM-function controls.
    VM_FUNCTION_CONTROLS = 0x2018, Bits64, Control;
    /// EPT pointer.
    EPT_POINTER = 0x201a, Bits64, Control;
    /// EOI-exit bitmap 0 (vectors 0-63).
    EOI_EXIT_BITMAP_0 = 0x201c, Bits64, Control;
    /// EOI-exit bitmap 1 (vectors 64-127).
    EOI_EXIT_BITMAP_1 = 0x201e, Bits64, Control;
    /// EOI-exit bitmap 2 (vectors 128-191).
    EOI_EXIT_BITMAP_2 = 0x2020, Bits64, Control;
    /// EOI-exit bitmap 3 (vectors 192-255).
    EOI_EXIT_BITMAP_3 = 0x2022, Bits64, Control;
    /// EPTP-list address.
    EPTP_LIST_ADDRESS = 0x2024, Bits64, Control;
    /// VMREAD-bitmap address.
    VMREAD_BITMAP_ADDRESS = 0x2026, Bits64, Control;
    /// VMWRITE-bitmap address.
    VMWRITE_BITMAP_ADDRESS = 0x2028, Bits64, Control;
    /// Virtualization-exception information address.
    VIRTUALIZATION_EXCEPTION_INFO_ADDRESS = 0x202a, Bits64, Control;
    /// XSS-exiting bitmap.
    XSS_EXITING_BITMAP = 0x202c, Bits64, Control;
    /// ENCLS-exiting bitmap.
    ENCLS_EXITING_BITMAP = 0x202e, Bits64, Control;
    /// Sub-page-permission-table pointer.
    SUB_PAGE_PERMISSION_TABLE_POINTER = 0x2030, Bits64, Control;
    /// TSC multiplier.
    TSC_MULTIPLIER = 0x2032, Bits64, Control;
    /// Tertiary processor-based VM-execution controls.
    TERTIARY_PROCESSOR_BASED_CONTROLS = 0x2034, Bits64, Control;
    /// ENCLV-exiting bitmap.
    ENCLV_EXITING_BITMAP = 0x2036, Bits64, Control;

    // ---- 64-bit read-only data field (SDM Vol. 3D Appendix B.2.2) ----
    /// Guest-physical address (EPT violations and misconfigurations).
    GUEST_PHYSICAL_ADDRESS = 0x2400, Bits64, ExitInformation;

    // ---- 64-bit guest-state fields (SDM Vol. 3D Appendix B.2.3) ----
    /// VMCS link pointer (set to all ones when unused).
    VMCS_LINK_POINTER = 0x2800, Bits64, GuestState;
    /// Guest IA32_DEBUGCTL.
    GUEST_IA32_DEBUGCTL = 0x2802, Bits64, GuestState;
    /// Guest IA32_PAT.
    GUEST_IA32_PAT = 0x2804, Bits64, GuestState;
    /// Guest IA32_EFER.
    GUEST_IA32_EFER = 0x2806, Bits64, GuestState;
    /// Guest IA32_PERF_GLOBAL_CTRL.
    GUEST_IA32_PERF_GLOBAL_CTRL = 0x2808, Bits64, GuestState;
    /// Guest PDPTE0 (PAE paging with EPT).
    GUEST_PDPTE0 = 0x280a, Bits64, GuestState;
    /// Guest PDPTE1.
    GUEST_PDPTE1 = 0x280c, Bits64, GuestState;
    /// Guest PDPTE2.
    GUEST_PDPTE2 = 0x280e, Bits64, GuestState;
    /// Guest PDPTE3.
    GUEST_PDPTE3 = 0x2810, Bits64, GuestState;
    /// Guest IA32_BNDCFGS.
    GUEST_IA32_BNDCFGS = 0x2812, Bits64, GuestState;
    /// Guest IA32_RTIT_CTL.
    GUEST_IA32_RTIT_CTL = 0x2814, Bits64, GuestState;
    /// Guest IA32_LBR_CTL.
    GUEST_IA32_LBR_CTL = 0x2816, Bits64, GuestState;
    /// Guest IA32_PKRS.
    GUEST_IA32_PKRS = 0x2818, Bits64, GuestState;

    // ---- 64-bit host-state fields (SDM Vol. 3D Appendix B.2.4) ----
    /// Host IA32_PAT.
    HOST_IA32_PAT = 0x2c00, Bits64, HostState;
    /// Host IA32_EFER.
    HOST_IA32_EFER = 0x2c02, Bits64, HostState;
    /// Host IA32_PERF_GLOBAL_CTRL.
    HOST_IA32_PERF_GLOBAL_CTRL = 0x2c04, Bits64, HostState;
    /// Host IA32_PKRS.
    HOST_IA32_PKRS = 0x2c06, Bits64, HostState;

    // ---- 32-bit control fields (SDM Vol. 3D Appendix B.3.1) ----
    /// Pin-based VM-execution controls.
    PIN_BASED_VM_EXEC_CONTROLS = 0x4000, Bits32, Control;
    /// Primary processor-based VM-execution controls.
    PRIMARY_PROC_BASED_VM_EXEC_CONTROLS = 0x4002, Bits32, Control;
    /// Exception bitmap.
    EXCEPTION_BITMAP = 0x4004, Bits32, Control;
    /// Page-fault error-code mask.
    PAGE_FAULT_ERROR_CODE_MASK = 0x4006, Bits32, Control;
    /// Page-fault error-code match.
    PAGE_FAULT_ERROR_CODE_MATCH = 0x4008, Bits32, Control;
    /// CR3-target count.
    CR3_TARGET_COUNT = 0x400a, Bits32, Control;
    /// Primary VM-exit controls.
    VM_EXIT_CONTROLS = 0x400c, Bits32, Control;
    /// VM-exit MSR-store count.
    VM_EXIT_MSR_STORE_COUNT = 0x400e, Bits32, Control;
    /// VM-exit MSR-load count.
    VM_EXIT_MSR_LOAD_COUNT = 0x4010, Bits32, Control;
    /// VM-entry controls.
    VM_ENTRY_CONTROLS = 0x4012, Bits32, Control;
    /// VM-entry MSR-load count.
    VM_ENTRY_MSR_LOAD_COUNT = 0x4014, Bits32, Control;
    /// VM-entry interruption-information field.
    VM_ENTRY_INTERRUPTION_INFO = 0x4016, Bits32, Control;
    /// VM-entry exception error code.
    VM_ENTRY_EXCEPTION_ERROR_CODE = 0x4018, Bits32, Control;
    /// VM-entry instruction length.
    VM_ENTRY_INSTRUCTION_LENGTH = 0x401a, Bits32, Control;
    /// TPR threshold.
    TPR_THRESHOLD = 0x401c, Bits32, Control;
    /// Secondary processor-based VM-execution controls.
    SECONDARY_PROC_BASED_VM_EXEC_CONTROLS = 0x401e, Bits32, Control;
    /// PLE_Gap.
    PLE_GAP = 0x4020, Bits32, Control;
    /// PLE_Window.
    PLE_WINDOW = 0x4022, Bits32, Control;
    /// Instruction-timeout control.
    INSTRUCTION_TIMEOUT_CONTROL = 0x4024, Bits32, Control;

    // ---- 32-bit read-only data fields (SDM Vol. 3D Appendix B.3.2) ----
    /// VM-instruction error.
    VM_INSTRUCTION_ERROR = 0x4400, Bits32, ExitInformation;
    /// Exit reason.
    EXIT_REASON = 0x4402, Bits32, ExitInformation;
    /// VM-exit interruption information.
    VM_EXIT_INTERRUPTION_INFO = 0x4404, Bits32, ExitInformation;
    /// VM-exit interruption error code.
    VM_EXIT_INTERRUPTION_ERROR_CODE = 0x4406, Bits32, ExitInformation;
    /// IDT-vectoring information.
    IDT_VECTORING_INFO = 0x4408, Bits32, ExitInformation;
    /// IDT-vectoring error code.
    IDT_VECTORING_ERROR_CODE = 0x440a, Bits32, ExitInformation;
    /// VM-exit instruction length.
    VM_EXIT_INSTRUCTION_LENGTH = 0x440c, Bits32, ExitInformation;
    /// VM-exit instruction information.
    VM_EXIT_INSTRUCTION_INFO = 0x440e, Bits32, ExitInformation;

    // ---- 32-bit guest-state fields (SDM Vol. 3D Appendix B.3.3) ----
    /// Guest ES limit.
    GUEST_ES_LIMIT = 0x4800, Bits32, GuestState;
    /// Guest CS limit.
    GUEST_CS_LIMIT = 0x4802, Bits32, GuestState;
    /// Guest SS limit.
    GUEST_SS_LIMIT = 0x4804, Bits32, GuestState;
    /// Guest DS limit.
    GUEST_DS_LIMIT = 0x4806, Bits32, GuestState;
    /// Guest FS limit.
    GUEST_FS_LIMIT = 0x4808, Bits32, GuestState;
    /// Guest GS limit.
    GUEST_GS_LIMIT = 0x480a, Bits32, GuestState;
    /// Guest LDTR limit.
    GUEST_LDTR_LIMIT = 0x480c, Bits32, GuestState;
    /// Guest TR limit.
    GUEST_TR_LIMIT = 0x480e, Bits32, GuestState;
    /// Guest GDTR limit.
    GUEST_GDTR_LIMIT = 0x4810, Bits32, GuestState;
    /// Guest IDTR limit.
    GUEST_IDTR_LIMIT = 0x4812, Bits32, GuestState;
    /// Guest ES access rights.
    GUEST_ES_ACCESS_RIGHTS = 0x4814, Bits32, GuestState;
    /// Guest CS access rights.
    GUEST_CS_ACCESS_RIGHTS = 0x4816, Bits32, GuestState;
    /// Guest SS access rights.
    GUEST_SS_ACCESS_RIGHTS = 0x4818, Bits32, GuestState;
    /// Guest DS access rights.
    GUEST_DS_ACCESS_RIGHTS = 0x481a, Bits32, GuestState;
    /// Guest FS access rights.
    GUEST_FS_ACCESS_RIGHTS = 0x481c, Bits32, GuestState;
    /// Guest GS access rights.
    GUEST_GS_ACCESS_RIGHTS = 0x481e, Bits32, GuestState;
    /// Guest LDTR access rights.
    GUEST_LDTR_ACCESS_RIGHTS = 0x4820, Bits32, GuestState;
    /// Guest TR access rights.
    GUEST_TR_ACCESS_RIGHTS = 0x4822, Bits32, GuestState;
    /// Guest interruptibility state.
    GUEST_INTERRUPTIBILITY_STATE = 0x4824, Bits32, GuestState;
    /// Guest activity state.
    GUEST_ACTIVITY_STATE = 0x4826, Bits32, GuestState;
    /// Guest SMBASE.
    GUEST_SMBASE = 0x4828, Bits32, GuestState;
    /// Guest IA32_SYSENTER_CS.
    GUEST_IA32_SYSENTER_CS = 0x482a, Bits32, GuestState;
    /// VMX-preemption timer value.
    VMX_PREEMPTION_TIMER_VALUE = 0x482e, Bits32, GuestState;

    // ---- 32-bit host-state field (SDM Vol. 3D Appendix B.3.4) ----
    /// Host IA32_SYSENTER_CS.
    HOST_IA32_SYSENTER_CS = 0x4c00, Bits32, HostState;

    // ---- Natural-width control fields (SDM Vol. 3D Appendix B.4.1) ----
    /// CR0 guest/host mask.
    CR0_GUEST_HOST_MASK = 0x6000, Natural, Control;
    /// CR4 guest/host mask.
    CR4_GUEST_HOST_MASK = 0x6002, Natural, Control;
    /// CR0 read shadow.
    CR0_READ_SHADOW = 0x6004, Natural, Control;
    /// CR4 read shadow.
    CR4_READ_SHADOW = 0x6006, Natural, Control;
    /// CR3-target value 0.
    CR3_TARGET_VALUE_0 = 0x6008, Natural, Control;
    /// CR3-target value 1.
    CR3_TARGET_VALUE_1 = 0x600a, Natural, Control;
    /// CR3-target value 2.
    CR3_TARGET_VALUE_2 = 0x600c, Natural, Control;
    /// CR3-target value 3.
    CR3_TARGET_VALUE_3 = 0x600e, Natural, Control;

    // ---- Natural-width read-only data fields (SDM Vol. 3D Appendix B.4.2) ----
    /// Exit qualification.
    EXIT_QUALIFICATION = 0x6400, Natural, ExitInformation;
    /// I/O RCX (SMIs during I/O instructions).
    IO_RCX = 0x6402, Natural, ExitInformation;
    /// I/O RSI.
    IO_RSI = 0x6404, Natural, ExitInformation;
    /// I/O RDI.
    IO_RDI = 0x6406, Natural, ExitInformation;
    /// I/O RIP.
    IO_RIP = 0x6408, Natural, ExitInformation;
    /// Guest-linear address.
    GUEST_LINEAR_ADDRESS = 0x640a, Natural, ExitInformation;

    // ---- Natural-width guest-state fields (SDM Vol. 3D Appendix B.4.3) ----
    /// Guest CR0.
    GUEST_CR0 = 0x6800, Natural, GuestState;
    /// Guest CR3.
    GUEST_CR3 = 0x6802, Natural, GuestState;
    /// Guest CR4.
    GUEST_CR4 = 0x6804, Natural, GuestState;
    /// Guest ES base.
    GUEST_ES_BASE = 0x6806, Natural, GuestState;
    /// Guest CS base.
    GUEST_CS_BASE = 0x6808, Natural, GuestState;
    /// Guest SS base.
    GUEST_SS_BASE = 0x680a, Natural, GuestState;
    /// Guest DS base.
    GUEST_DS_BASE = 0x680c, Natural, GuestState;
    /// Guest FS base.
    GUEST_FS_BASE = 0x680e, Natural, GuestState;
    /// Guest GS base.
    GUEST_GS_BASE = 0x6810, Natural, GuestState;
    /// Guest LDTR base.
    GUEST_LDTR_BASE = 0x6812, Natural, GuestState;
    /// Guest TR base.
    GUEST_TR_BASE = 0x6814, Natural, GuestState;
    /// Guest GDTR base.
    GUEST_GDTR_BASE = 0x6816, Natural, GuestState;
    /// Guest IDTR base.
    GUEST_IDTR_BASE = 0x6818, Natural, GuestState;
    /// Guest DR7.
    GUEST_DR7 = 0x681a, Natural, GuestState;
    /// Guest RSP.
    GUEST_RSP = 0x681c, Natural, GuestState;
    /// Guest RIP.
    GUEST_RIP = 0x681e, Natural, GuestState;
    /// Guest RFLAGS.
    GUEST_RFLAGS = 0x6820, Natural, GuestState;
    /// Guest pending debug exceptions.
    GUEST_PENDING_DEBUG_EXCEPTIONS = 0x6822, Natural, GuestState;
    /// Guest IA32_SYSENTER_ESP.
    GUEST_IA32_SYSENTER_ESP = 0x6824, Natural, GuestState;
    /// Guest IA32_SYSENTER_EIP.
    GUEST_IA32_SYSENTER_EIP = 0x6826, Natural, GuestState;
    /// Guest IA32_S_CET.
    GUEST_IA32_S_CET = 0x6828, Natural, GuestState;
    /// Guest SSP.
    GUEST_SSP = 0x682a, Natural, GuestState;
    /// Guest IA32_INTERRUPT_SSP_TABLE_ADDR.
    GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR = 0x682c, Natural, GuestState;

    // ---- Natural-width host-state fields (SDM Vol. 3D Appendix B.4.4) ----
    /// Host CR0.
    HOST_CR0 = 0x6c00, Natural, HostState;
    /// Host CR3.
    HOST_CR3 = 0x6c02, Natural, HostState;
    /// Host CR4.
    HOST_CR4 = 0x6c04, Natural, HostState;
    /// Host FS base.
    HOST_FS_BASE = 0x6c06, Natural, HostState;
    /// Host GS base.
    HOST_GS_BASE = 0x6c08, Natural, HostState;
    /// Host TR base.
    HOST_TR_BASE = 0x6c0a, Natural, HostState;
    /// Host GDTR base.
    HOST_GDTR_BASE = 0x6c0c, Natural, HostState;
    /// Host IDTR base.
    HOST_IDTR_BASE = 0x6c0e, Natural, HostState;
    /// Host IA32_SYSENTER_ESP.
    HOST_IA32_SYSENTER_ESP = 0x6c10, Natural, HostState;
    /// Host IA32_SYSENTER_EIP.
    HOST_IA32_SYSENTER_EIP = 0x6c12, Natural, HostState;
    /// Host RSP.
    HOST_RSP = 0x6c14, Natural, HostState;
    /// Host RIP.
    HOST_RIP = 0x6c16, Natural, HostState;
    /// Host IA32_S_CET.
    HOST_IA32_S_CET = 0x6c18, Natural, HostState;
    /// Host SSP.
    HOST_SSP = 0x6c1a, Natural, HostState;
    /// Host IA32_INTERRUPT_SSP_TABLE_ADDR.
    HOST_IA32_INTERRUPT_SSP_TABLE_ADDR = 0x6c1c, Natural, HostState;
}

/// Segment access rights as stored in the guest-state area (SDM Vol. 3C §25.4.1, Table 25-2):
/// bits 3:0 type, 4 S (descriptor type), 6:5 DPL, 7 P, 11:8 reserved, 12 AVL, 13 L (64-bit
/// code, CS only), 14 D/B, 15 G, 16 segment unusable, 31:17 reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SegmentAccessRights(u32);

impl SegmentAccessRights {
    const TYPE_MASK: u32 = 0xf;
    const S: u32 = 1 << 4;
    const DPL_SHIFT: u32 = 5;
    const DPL_MASK: u32 = 0b11;
    const P: u32 = 1 << 7;
    const AVL: u32 = 1 << 12;
    const L: u32 = 1 << 13;
    const DB: u32 = 1 << 14;
    const G: u32 = 1 << 15;
    const UNUSABLE: u32 = 1 << 16;
    /// Bits 11:8 and 31:17 are reserved and must be 0 (SDM Vol. 3C §27.3.1.2).
    const RESERVED: u32 = 0xffff_0f00 & !Self::UNUSABLE;

    /// Segment type: read/write data, accessed (SDM Vol. 3A §3.4.5.1, Table 3-1).
    pub const TYPE_DATA_RW_ACCESSED: u8 = 0x3;
    /// Segment type: execute/read code, accessed.
    pub const TYPE_CODE_RX_ACCESSED: u8 = 0xb;
    /// System type: LDT (SDM Vol. 3A §3.5, Table 3-2).
    pub const TYPE_LDT: u8 = 0x2;
    /// System type: busy 16-bit TSS.
    pub const TYPE_TSS16_BUSY: u8 = 0x3;
    /// System type: busy 32-bit/64-bit TSS.
    pub const TYPE_TSS_BUSY: u8 = 0xb;

    /// A segment register marked unusable (e.g. a null selector; SDM Vol. 3C §25.4.1).
    pub const UNUSABLE_SEGMENT: Self = Self(Self::UNUSABLE);

    /// Real-mode (or unrestricted-guest reset) code segment: present, S, execute/read accessed.
    pub const REAL_MODE_CODE: Self = Self::new(Self::TYPE_CODE_RX_ACCESSED, true, 0);
    /// Real-mode data segment: present, S, read/write accessed.
    pub const REAL_MODE_DATA: Self = Self::new(Self::TYPE_DATA_RW_ACCESSED, true, 0);
    /// Task register as loaded at reset: present busy 32-bit TSS (SDM Vol. 3A §10.1.1 Table
    /// 10-1; SDM Vol. 3C §27.3.1.2 requires a busy TSS type in TR, and type 11 in IA-32e
    /// mode, so a guest that never loads TR can still enter long mode).
    pub const RESET_TR: Self = Self::new(Self::TYPE_TSS_BUSY, false, 0);
    /// LDTR as loaded at reset: present LDT.
    pub const RESET_LDTR: Self = Self::new(Self::TYPE_LDT, false, 0);
    /// Flat 64-bit ring-0 code segment (L = 1, G = 1).
    pub const LONG_MODE_CODE: Self =
        Self(Self::new(Self::TYPE_CODE_RX_ACCESSED, true, 0).0 | Self::L | Self::G);
    /// Flat 32-bit ring-0 data segment (D/B = 1, G = 1).
    pub const FLAT_DATA: Self =
        Self(Self::new(Self::TYPE_DATA_RW_ACCESSED, true, 0).0 | Self::DB | Self::G);
    /// Flat 32-bit ring-0 code segment (D/B = 1, G = 1).
    pub const FLAT_CODE32: Self =
        Self(Self::new(Self::TYPE_CODE_RX_ACCESSED, true, 0).0 | Self::DB | Self::G);

    /// A present segment with the given type, descriptor-type flag (`true` for code/data) and
    /// DPL (only the low 2 bits are used). Other flags are 0.
    pub const fn new(segment_type: u8, code_or_data: bool, dpl: u8) -> Self {
        let mut raw = (segment_type as u32 & Self::TYPE_MASK)
            | (((dpl as u32) & Self::DPL_MASK) << Self::DPL_SHIFT)
            | Self::P;
        if code_or_data {
            raw |= Self::S;
        }
        Self(raw)
    }

    /// Wraps a raw field value (as read with VMREAD); keeps every bit.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw field value.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Converts from the attribute bytes of a segment descriptor (descriptor bits 47:40 and
    /// 55:52, i.e. `(desc >> 40) & 0xf0ff`), as used by the access-rights format.
    pub const fn from_descriptor(descriptor: u64) -> Self {
        const ATTR_SHIFT: u32 = 40;
        const ATTR_MASK: u64 = 0xf0ff;
        Self(((descriptor >> ATTR_SHIFT) & ATTR_MASK) as u32)
    }

    /// Segment type (bits 3:0).
    pub const fn segment_type(self) -> u8 {
        (self.0 & Self::TYPE_MASK) as u8
    }

    /// S flag: code/data (true) or system (false) segment.
    pub const fn is_code_or_data(self) -> bool {
        self.0 & Self::S != 0
    }

    /// Descriptor privilege level.
    pub const fn dpl(self) -> u8 {
        ((self.0 >> Self::DPL_SHIFT) & Self::DPL_MASK) as u8
    }

    /// P flag.
    pub const fn present(self) -> bool {
        self.0 & Self::P != 0
    }

    /// AVL flag.
    pub const fn available(self) -> bool {
        self.0 & Self::AVL != 0
    }

    /// L flag (64-bit code segment).
    pub const fn long_mode(self) -> bool {
        self.0 & Self::L != 0
    }

    /// D/B flag.
    pub const fn default_big(self) -> bool {
        self.0 & Self::DB != 0
    }

    /// G flag (limit in 4-KByte units).
    pub const fn granularity(self) -> bool {
        self.0 & Self::G != 0
    }

    /// "Segment unusable" (bit 16).
    pub const fn unusable(self) -> bool {
        self.0 & Self::UNUSABLE != 0
    }

    /// Whether reserved bits are set (VM entry would fail; SDM Vol. 3C §27.3.1.2).
    pub const fn has_reserved_bits(self) -> bool {
        self.0 & Self::RESERVED != 0
    }

    /// Returns a copy with the L flag set or cleared.
    #[must_use]
    pub const fn with_long_mode(self, on: bool) -> Self {
        Self::with(self, Self::L, on)
    }

    /// Returns a copy with the D/B flag set or cleared.
    #[must_use]
    pub const fn with_default_big(self, on: bool) -> Self {
        Self::with(self, Self::DB, on)
    }

    /// Returns a copy with the G flag set or cleared.
    #[must_use]
    pub const fn with_granularity(self, on: bool) -> Self {
        Self::with(self, Self::G, on)
    }

    /// Returns a copy with the "segment unusable" bit set or cleared.
    #[must_use]
    pub const fn with_unusable(self, on: bool) -> Self {
        Self::with(self, Self::UNUSABLE, on)
    }

    const fn with(self, bit: u32, on: bool) -> Self {
        if on {
            Self(self.0 | bit)
        } else {
            Self(self.0 & !bit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_width_kind_and_access_match_encoding_bits() {
        for f in VmcsField::ALL {
            let e = f.encoding();
            assert!(VmcsField::is_well_formed(e), "{f}: reserved bits set");
            assert_eq!(Width::from_encoding(e), f.width(), "{f}: width bits 14:13");
            assert_eq!(
                FieldKind::from_encoding(e),
                f.kind(),
                "{f}: type bits 11:10"
            );
            assert_eq!(f.access(), Access::Full, "{f}: access bit 0");
            assert_eq!(VmcsField::from_encoding(e), Some(*f), "{f}: lookup");
        }
    }

    #[test]
    fn names_and_encodings_are_unique() {
        for (i, a) in VmcsField::ALL.iter().enumerate() {
            for b in &VmcsField::ALL[i + 1..] {
                assert_ne!(a.encoding(), b.encoding(), "{a} vs {b}");
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn spot_check_sdm_encodings() {
        assert_eq!(VmcsField::GUEST_ES_SELECTOR.encoding(), 0x0800);
        assert_eq!(VmcsField::EPT_POINTER.encoding(), 0x201a);
        assert_eq!(VmcsField::VMCS_LINK_POINTER.encoding(), 0x2800);
        assert_eq!(VmcsField::EXIT_REASON.encoding(), 0x4402);
        assert_eq!(VmcsField::VM_INSTRUCTION_ERROR.encoding(), 0x4400);
        assert_eq!(VmcsField::GUEST_RIP.encoding(), 0x681e);
        assert_eq!(VmcsField::HOST_RIP.encoding(), 0x6c16);
        assert_eq!(VmcsField::EXIT_QUALIFICATION.encoding(), 0x6400);
        assert_eq!(VmcsField::VMX_PREEMPTION_TIMER_VALUE.encoding(), 0x482e);
        assert_eq!(VmcsField::EXIT_REASON.index(), 1);
        assert!(!VmcsField::EXIT_REASON.is_writable());
        assert!(VmcsField::GUEST_RIP.is_writable());
    }

    #[test]
    fn high_access() {
        let high = VmcsField::EPT_POINTER.high();
        assert_eq!(high.map(|f| f.encoding()), Some(0x201b));
        assert_eq!(high.map(|f| f.access()), Some(Access::High));
        assert_eq!(VmcsField::from_encoding(0x201b), high);
        assert_eq!(VmcsField::GUEST_RIP.high(), None);
        assert_eq!(VmcsField::from_encoding(0x681f), None);
        assert!(!VmcsField::is_well_formed(0x681f));
        assert!(!VmcsField::is_well_formed(0x1_0000));
        assert!(VmcsField::is_well_formed(0x201b));
        assert_eq!(VmcsField::from_encoding(u32::MAX), None);
    }

    #[test]
    fn widths() {
        assert_eq!(Width::Bits16.value_mask(), 0xffff);
        assert_eq!(Width::Natural.bits(), 64);
        assert_eq!(Width::Bits32.bits(), 32);
    }

    #[test]
    fn access_rights() {
        assert_eq!(SegmentAccessRights::REAL_MODE_CODE.raw(), 0x9b);
        assert_eq!(SegmentAccessRights::REAL_MODE_DATA.raw(), 0x93);
        assert_eq!(SegmentAccessRights::RESET_TR.raw(), 0x8b);
        assert_eq!(SegmentAccessRights::RESET_LDTR.raw(), 0x82);
        assert_eq!(SegmentAccessRights::LONG_MODE_CODE.raw(), 0xa09b);
        assert_eq!(SegmentAccessRights::FLAT_DATA.raw(), 0xc093);
        assert_eq!(SegmentAccessRights::UNUSABLE_SEGMENT.raw(), 0x1_0000);
        let ar = SegmentAccessRights::from_raw(0xc0fb);
        assert_eq!(ar.segment_type(), 0xb);
        assert_eq!(ar.dpl(), 3);
        assert!(ar.present() && ar.is_code_or_data() && ar.default_big() && ar.granularity());
        assert!(!ar.long_mode() && !ar.unusable() && !ar.has_reserved_bits());
        assert!(SegmentAccessRights::from_raw(0x100).has_reserved_bits());
        assert!(SegmentAccessRights::from_raw(0x2_0000).has_reserved_bits());
        assert!(!SegmentAccessRights::UNUSABLE_SEGMENT.has_reserved_bits());
        // A flat 64-bit code descriptor 0x00af9b000000ffff.
        let d = SegmentAccessRights::from_descriptor(0x00af_9b00_0000_ffff);
        assert_eq!(d.raw(), 0xa09b);
        assert_eq!(
            SegmentAccessRights::REAL_MODE_CODE
                .with_long_mode(true)
                .with_granularity(true),
            SegmentAccessRights::LONG_MODE_CODE
        );
        assert!(SegmentAccessRights::REAL_MODE_DATA
            .with_unusable(true)
            .unusable());
        assert!(!SegmentAccessRights::FLAT_DATA
            .with_default_big(false)
            .default_big());
    }
}
