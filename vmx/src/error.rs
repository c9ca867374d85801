//! VMX instruction failures: VMfailInvalid / VMfailValid and the VM-instruction error numbers.

use core::fmt;

/// RFLAGS.CF: set by VMfailInvalid (SDM Vol. 3C §31.2).
pub const RFLAGS_CF: u64 = 1 << 0;
/// RFLAGS.ZF: set by VMfailValid (SDM Vol. 3C §31.2).
pub const RFLAGS_ZF: u64 = 1 << 6;

macro_rules! instruction_errors {
    ($( $(#[$meta:meta])* $name:ident = $num:literal => $text:literal; )*) => {
        /// VM-instruction error numbers (SDM Vol. 3C §31.4, Table 31-1), read from the
        /// VM-instruction error field after a VMfailValid.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum VmInstructionError {
            $( $(#[$meta])* $name, )*
            /// A number that Table 31-1 does not define (reserved or newer than this crate).
            Unknown(u32),
        }

        impl VmInstructionError {
            /// Decodes the VM-instruction error field; unknown numbers are preserved.
            pub const fn from_raw(raw: u32) -> Self {
                match raw {
                    $( $num => Self::$name, )*
                    other => Self::Unknown(other),
                }
            }

            /// The error number as stored in the VM-instruction error field.
            pub const fn number(self) -> u32 {
                match self {
                    $( Self::$name => $num, )*
                    Self::Unknown(n) => n,
                }
            }

            /// The description of Table 31-1.
            pub const fn description(self) -> &'static str {
                match self {
                    $( Self::$name => $text, )*
                    Self::Unknown(_) => "unknown VM-instruction error number",
                }
            }
        }
    };
}

instruction_errors! {
    /// 1: VMCALL executed in VMX root operation.
    VmcallInVmxRoot = 1 => "VMCALL executed in VMX root operation";
    /// 2: VMCLEAR with invalid physical address.
    VmclearInvalidAddress = 2 => "VMCLEAR with invalid physical address";
    /// 3: VMCLEAR with VMXON pointer.
    VmclearVmxonPointer = 3 => "VMCLEAR with VMXON pointer";
    /// 4: VMLAUNCH with non-clear VMCS.
    VmlaunchNonClearVmcs = 4 => "VMLAUNCH with non-clear VMCS";
    /// 5: VMRESUME with non-launched VMCS.
    VmresumeNonLaunchedVmcs = 5 => "VMRESUME with non-launched VMCS";
    /// 6: VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME).
    VmresumeAfterVmxoff = 6 => "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)";
    /// 7: VM entry with invalid control field(s).
    EntryInvalidControlFields = 7 => "VM entry with invalid control field(s)";
    /// 8: VM entry with invalid host-state field(s).
    EntryInvalidHostState = 8 => "VM entry with invalid host-state field(s)";
    /// 9: VMPTRLD with invalid physical address.
    VmptrldInvalidAddress = 9 => "VMPTRLD with invalid physical address";
    /// 10: VMPTRLD with VMXON pointer.
    VmptrldVmxonPointer = 10 => "VMPTRLD with VMXON pointer";
    /// 11: VMPTRLD with incorrect VMCS revision identifier.
    VmptrldWrongRevision = 11 => "VMPTRLD with incorrect VMCS revision identifier";
    /// 12: VMREAD/VMWRITE from/to unsupported VMCS component.
    UnsupportedComponent = 12 => "VMREAD/VMWRITE from/to unsupported VMCS component";
    /// 13: VMWRITE to read-only VMCS component.
    VmwriteReadOnlyComponent = 13 => "VMWRITE to read-only VMCS component";
    /// 15: VMXON executed in VMX root operation.
    VmxonInVmxRoot = 15 => "VMXON executed in VMX root operation";
    /// 16: VM entry with invalid executive-VMCS pointer.
    EntryInvalidExecutiveVmcsPointer = 16 => "VM entry with invalid executive-VMCS pointer";
    /// 17: VM entry with non-launched executive VMCS.
    EntryNonLaunchedExecutiveVmcs = 17 => "VM entry with non-launched executive VMCS";
    /// 18: VM entry with executive-VMCS pointer not VMXON pointer.
    EntryExecutiveVmcsNotVmxonPointer = 18 => "VM entry with executive-VMCS pointer not VMXON pointer (when attempting to deactivate the dual-monitor treatment of SMIs and SMM)";
    /// 19: VMCALL with non-clear VMCS.
    VmcallNonClearVmcs = 19 => "VMCALL with non-clear VMCS (when attempting to activate the dual-monitor treatment of SMIs and SMM)";
    /// 20: VMCALL with invalid VM-exit control fields.
    VmcallInvalidExitControls = 20 => "VMCALL with invalid VM-exit control fields";
    /// 22: VMCALL with incorrect MSEG revision identifier.
    VmcallWrongMsegRevision = 22 => "VMCALL with incorrect MSEG revision identifier (when attempting to activate the dual-monitor treatment of SMIs and SMM)";
    /// 23: VMXOFF under dual-monitor treatment of SMIs and SMM.
    VmxoffUnderDualMonitor = 23 => "VMXOFF under dual-monitor treatment of SMIs and SMM";
    /// 24: VMCALL with invalid SMM-monitor features.
    VmcallInvalidSmmMonitorFeatures = 24 => "VMCALL with invalid SMM-monitor features (when attempting to activate the dual-monitor treatment of SMIs and SMM)";
    /// 25: VM entry with invalid VM-execution control fields in executive VMCS.
    EntryInvalidExecutiveControls = 25 => "VM entry with invalid VM-execution control fields in executive VMCS (when attempting to return from SMM)";
    /// 26: VM entry with events blocked by MOV SS.
    EntryEventsBlockedByMovSs = 26 => "VM entry with events blocked by MOV SS";
    /// 28: Invalid operand to INVEPT/INVVPID.
    InvalidInveptInvvpidOperand = 28 => "invalid operand to INVEPT/INVVPID";
}

impl VmInstructionError {
    /// What the hypervisor developer should check for this error.
    pub const fn hint(self) -> &'static str {
        match self {
            Self::EntryInvalidControlFields => {
                "check the VM-execution/exit/entry controls against the capability MSRs \
                 (SDM Vol. 3C §27.2.1)"
            }
            Self::EntryInvalidHostState => {
                "check the host-state area: CR0/CR4 fixed bits, selectors with RPL/TI 0, \
                 canonical bases, host address-space size (SDM Vol. 3C §27.2.2-27.2.4)"
            }
            Self::VmptrldWrongRevision => {
                "write IA32_VMX_BASIC[30:0] into the first 4 bytes of the VMCS region before \
                 VMPTRLD (SDM Vol. 3C §25.2)"
            }
            Self::VmclearInvalidAddress | Self::VmptrldInvalidAddress => {
                "pass a 4-KByte aligned physical address within the physical-address width \
                 (SDM Vol. 3C §31.3)"
            }
            Self::VmlaunchNonClearVmcs => "use VMRESUME for a launched VMCS, or VMCLEAR it first",
            Self::VmresumeNonLaunchedVmcs => "use VMLAUNCH for the first entry after VMCLEAR",
            Self::UnsupportedComponent => {
                "the field encoding is not supported by this processor; check \
                 IA32_VMX_VMCS_ENUM and the enabling control"
            }
            Self::VmwriteReadOnlyComponent => {
                "VM-exit information fields are read-only unless IA32_VMX_MISC[29] is set"
            }
            Self::EntryEventsBlockedByMovSs => {
                "retry the VM entry once the guest's MOV-SS blocking is over"
            }
            Self::InvalidInveptInvvpidOperand => {
                "use an INVEPT/INVVPID type reported by IA32_VMX_EPT_VPID_CAP, a nonzero VPID \
                 and a canonical address"
            }
            _ => "see SDM Vol. 3C §31.4, Table 31-1",
        }
    }
}

impl fmt::Display for VmInstructionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VM-instruction error {}: {}; {}",
            self.number(),
            self.description(),
            self.hint()
        )
    }
}

/// A failed VMX instruction (SDM Vol. 3C §31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmFail {
    /// VMfailInvalid (RFLAGS.CF = 1): there is no current VMCS (or the instruction ran before
    /// VMXON), so no error number is available.
    Invalid,
    /// VMfailValid (RFLAGS.ZF = 1): the VM-instruction error field of the current VMCS tells why.
    Valid(VmInstructionError),
}

impl VmFail {
    /// Decodes RFLAGS after a VMX instruction (SDM Vol. 3C §31.2): CF = 1 is VMfailInvalid,
    /// ZF = 1 is VMfailValid (then `read_error` is called to read the VM-instruction error
    /// field), neither is VMsucceed. If both are set (architecturally impossible), CF wins.
    #[inline]
    pub fn check(rflags: u64, read_error: impl FnOnce() -> u32) -> Result<(), VmFail> {
        if rflags & (RFLAGS_CF | RFLAGS_ZF) == 0 {
            // One test on the success path of every VMREAD and VMWRITE.
            Ok(())
        } else if rflags & RFLAGS_CF != 0 {
            Err(VmFail::Invalid)
        } else {
            Err(VmFail::Valid(VmInstructionError::from_raw(read_error())))
        }
    }
}

impl fmt::Display for VmFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid => f.write_str(
                "VMfailInvalid: no current VMCS or invalid VMXON/VMCS pointer; make sure VMXON \
                 succeeded and VMPTRLD loaded a VMCS before using it",
            ),
            Self::Valid(e) => write!(f, "VMfailValid: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers_round_trip() {
        for n in 0..64u32 {
            let e = VmInstructionError::from_raw(n);
            assert_eq!(e.number(), n);
            let known = (1..=28).contains(&n) && ![14, 21, 27].contains(&n);
            assert_eq!(!matches!(e, VmInstructionError::Unknown(_)), known, "{n}");
        }
        assert_eq!(
            VmInstructionError::from_raw(7),
            VmInstructionError::EntryInvalidControlFields
        );
        assert_eq!(
            VmInstructionError::from_raw(28),
            VmInstructionError::InvalidInveptInvvpidOperand
        );
        assert_eq!(
            VmInstructionError::from_raw(u32::MAX),
            VmInstructionError::Unknown(u32::MAX)
        );
    }

    #[test]
    fn vmfail_from_rflags() {
        let never = || -> u32 { panic!("error field must not be read") };
        assert_eq!(VmFail::check(0x2, never), Ok(()));
        assert_eq!(VmFail::check(0x2 | RFLAGS_CF, never), Err(VmFail::Invalid));
        assert_eq!(
            VmFail::check(0x2 | RFLAGS_ZF, || 8),
            Err(VmFail::Valid(VmInstructionError::EntryInvalidHostState))
        );
        assert_eq!(
            VmFail::check(RFLAGS_CF | RFLAGS_ZF, never),
            Err(VmFail::Invalid)
        );
        assert_eq!(
            VmFail::check(RFLAGS_ZF, || 99),
            Err(VmFail::Valid(VmInstructionError::Unknown(99)))
        );
    }

    #[test]
    fn display_is_actionable() {
        let s = std::format!(
            "{}",
            VmFail::Valid(VmInstructionError::VmptrldWrongRevision)
        );
        assert!(s.contains("error 11"), "{s}");
        assert!(s.contains("IA32_VMX_BASIC"), "{s}");
        assert!(std::format!("{}", VmFail::Invalid).contains("VMPTRLD"));
    }
}
