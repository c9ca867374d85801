//! Intel VT-x (VMX) support for Bulkhead.
//!
//! This crate holds everything about VMX that does not need a running hypervisor, so that it
//! can be unit-tested on the host:
//!
//! * [`msr`]: MSR numbers and IA32_FEATURE_CONTROL;
//! * [`apicv`]: APIC virtualization: when it is used, the x2APIC MSRs it virtualizes, the
//!   guest interrupt status (SDM Vol. 3C ch. 30);
//! * [`caps`]: reading and decoding the VMX capability MSRs (SDM Vol. 3D Appendix A) and the
//!   boot-time platform report;
//! * [`controls`]: VM-execution/exit/entry control bits and their computation from the
//!   capabilities (SDM Vol. 3C §25.6-25.8, Vol. 3D Appendix A.2-A.5);
//! * [`fields`]: VMCS field encodings (SDM Vol. 3D Appendix B) and segment access rights;
//! * [`exit`]: exit reasons, exit qualifications, interruption information and VM-entry
//!   failures (SDM Vol. 3C chapters 25, 27 and 28, Vol. 3D Appendix C);
//! * [`disposition`]: what Bulkhead does with every basic exit reason (handled, #UD for a
//!   hidden feature, impossible with its controls, or a documented stop);
//! * [`error`]: VMfailInvalid/VMfailValid and VM-instruction error numbers (SDM Vol. 3C §31.2,
//!   §31.4);
//! * [`posted`]: the posted-interrupt descriptor and its atomic post/take protocol (SDM Vol. 3C
//!   §30.6), host-tested; no Bochs model has posted interrupts;
//! * [`instructions`]: the only inline assembly of the crate, thin `unsafe` wrappers around
//!   VMXON, VMXOFF, VMCLEAR, VMPTRLD, VMPTRST, VMREAD, VMWRITE, INVEPT and INVVPID.
//!
//! With the `fixtures` feature (always on in this crate's tests), `vmx::fixtures` provides the
//! capability MSR values of several Bochs CPU models.
//!
//! Decoders never panic: values a guest can influence are decoded totally, with unknown
//! values preserved.

#![cfg_attr(not(test), no_std)]

pub mod apicv;
pub mod caps;
pub mod controls;
pub mod disposition;
pub mod error;
pub mod event;
pub mod exit;
pub mod fields;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod instructions;
pub mod msr;
pub mod posted;
#[cfg(test)]
mod tests;

pub use caps::{
    BasicInfo, Capabilities, EptVpidCap, FixedBits, MemoryType, MiscInfo, RawCapabilities,
    VmFunctions,
};
pub use controls::{
    adjust, compute_controls, AdjustError, AllowedSettings, ControlError, ControlKind,
    ControlRequest, ControlSet, EntryControls, ExitControls, PinBasedControls, PrimaryControls,
    Requested, SecondaryControls,
};
pub use error::{VmFail, VmInstructionError};
pub use exit::{
    CrAccess, DecodedExitReason, EntryFailure, EptViolation, ExceptionVector, ExitReason, Gpr,
    InterruptionInfo, InterruptionType, InvalidGuestStateCause, IoDirection, IoOperandEncoding,
    IoQualification, IoSize, LmswOperand, QualificationError,
};
pub use fields::{Access, FieldKind, SegmentAccessRights, VmcsField, Width};
pub use instructions::{InveptType, InvvpidType};
pub use msr::{FeatureControl, FeatureControlError, Msr};
