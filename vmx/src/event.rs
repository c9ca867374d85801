//! Events across VM exits: what to re-inject when an exit interrupted the delivery of an
//! event, and how a new exception combines with one that is still pending.
//!
//! An exit during event delivery leaves the event undelivered and describes it in the
//! IDT-vectoring information field (SDM Vol. 3C §28.2.4, "Information for VM Exits That Occur
//! During Event Delivery"; §27.2.4 in older editions). The VMM must deliver it again by
//! injecting it on the next VM entry (§28.2.4 and §27.6.1 "Event injection"), copying the
//! vector, type and error code, and for software events the instruction length (§28.2.5: the
//! VM-exit instruction-length field then holds the length of the INT n / INT3 / INTO / INT1).
//! Otherwise an interrupt the virtual PIC already counts as in service is lost for good.
//!
//! When the handler of that exit wants to inject an exception of its own, the two combine as
//! a CPU combines a fault raised while delivering an earlier event (SDM Vol. 3A §6.15,
//! "Exception and Interrupt Reference", interrupt 8, Table 6-5 "Conditions for Generating a
//! Double Fault").

use crate::exit::{ExceptionVector, InterruptionInfo, InterruptionType};

/// One event to inject on VM entry (SDM Vol. 3C §25.8.3): the interruption information, the
/// error code when "deliver error code" is set, and the instruction length for software
/// events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    pub info: InterruptionInfo,
    pub error_code: Option<u32>,
    pub instruction_length: Option<u32>,
}

impl Injection {
    /// A hardware exception with its error code, if it has one.
    pub const fn exception(vector: ExceptionVector, error_code: Option<u32>) -> Self {
        Injection {
            info: InterruptionInfo::new_exception(vector, error_code.is_some()),
            error_code,
            instruction_length: None,
        }
    }

    /// The event interrupted by the exit, from the IDT-vectoring information and error code
    /// and the VM-exit instruction length; `None` when no delivery was interrupted (bit 31
    /// clear, SDM Vol. 3C §25.9.3 Table 25-20).
    pub const fn from_idt_vectoring(
        info: u32,
        error_code: u32,
        instruction_length: u32,
    ) -> Option<Self> {
        let info = InterruptionInfo::from_raw(info);
        if !info.valid() {
            return None;
        }
        let info = info.for_reinjection();
        Some(Injection {
            info,
            error_code: if info.error_code_valid() {
                Some(error_code)
            } else {
                None
            },
            instruction_length: if info.kind().uses_instruction_length() {
                Some(instruction_length)
            } else {
                None
            },
        })
    }

    /// The injection as VM entry may deliver it in the guest's current mode: with CR0.PE = 0
    /// (real mode under unrestricted guest) "deliver error code" must be 0 (SDM Vol. 3C
    /// §27.2.1.3, a VM-entry check: entry fails with VM-instruction error 7 otherwise), and
    /// a real-mode CPU pushes no error code anyway (SDM Vol. 3A §21.1.4).
    pub const fn for_mode(self, protected_mode: bool) -> Self {
        if protected_mode || self.error_code.is_none() {
            return self;
        }
        Injection {
            info: self.info.without_error_code(),
            error_code: None,
            instruction_length: self.instruction_length,
        }
    }

    /// Whether delivering this event pushes RFLAGS with RF = 1: a fault-class hardware
    /// exception other than #DB (SDM Vol. 3A §18.3.1.1 and §6.13 "Error Code"/Table 6-1: the
    /// processor sets RF in the RFLAGS image of every fault so that IRET re-executes the
    /// instruction without an instruction breakpoint firing again). VM entry pushes the
    /// guest-state RFLAGS as it is (SDM Vol. 3C §27.6.1.2), so the VMM sets RF itself for the
    /// faults it injects.
    pub const fn sets_rf(&self) -> bool {
        if !matches!(self.info.kind(), InterruptionType::HardwareException) {
            return false;
        }
        match ExceptionVector::from_u8(self.info.vector()) {
            Some(v) => v.is_fault() && !matches!(v, ExceptionVector::Debug),
            None => false,
        }
    }

    /// Whether this is an interrupt (external or NMI), which nothing regenerates: re-executing
    /// the guest's instruction brings back an exception or a software interrupt, never these.
    pub const fn is_interrupt(self) -> bool {
        matches!(
            self.info.kind(),
            InterruptionType::ExternalInterrupt | InterruptionType::Nmi
        )
    }
}

/// Exception classes for double-fault detection (SDM Vol. 3A §6.15, Table 6-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionClass {
    /// Every exception and interrupt not listed below.
    Benign,
    /// #DE, #TS, #NP, #SS, #GP (and #CP).
    Contributory,
    /// #PF.
    PageFault,
    /// #DF itself: a further contributory or page fault is a triple fault.
    DoubleFault,
}

impl ExceptionClass {
    /// The class of an injected event (interrupts and software events are benign).
    pub const fn of(event: &Injection) -> Self {
        match event.info.kind() {
            InterruptionType::HardwareException => {
                match ExceptionVector::from_u8(event.info.vector()) {
                    Some(v) => Self::of_vector(v),
                    None => Self::Benign,
                }
            }
            _ => Self::Benign,
        }
    }

    /// The class of an exception vector.
    pub const fn of_vector(v: ExceptionVector) -> Self {
        match v {
            ExceptionVector::DivideError
            | ExceptionVector::InvalidTss
            | ExceptionVector::SegmentNotPresent
            | ExceptionVector::StackSegmentFault
            | ExceptionVector::GeneralProtection
            | ExceptionVector::ControlProtection => Self::Contributory,
            ExceptionVector::PageFault => Self::PageFault,
            ExceptionVector::DoubleFault => Self::DoubleFault,
            _ => Self::Benign,
        }
    }
}

/// What to inject when the handler raises `new` while `pending` (an interrupted delivery)
/// waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combined {
    /// Inject this now; `deferred` (an interrupt nothing regenerates) is delivered at the
    /// next opportunity after it.
    Inject {
        now: Injection,
        deferred: Option<Injection>,
    },
    /// A fault while delivering a double fault: the guest shuts down (SDM Vol. 3A §6.15,
    /// interrupt 8, "triple fault").
    TripleFault,
}

/// Combines an exception the exit handler raises with the event whose delivery the exit
/// interrupted (SDM Vol. 3A §6.15 Table 6-5):
/// - benign first event, or benign second exception: the exceptions are handled serially; the
///   new exception goes first, an interrupted interrupt is kept for later, and an interrupted
///   exception or software event is dropped (re-executing the instruction raises it again);
/// - contributory then contributory, page fault then contributory or page fault: #DF(0);
/// - #DF then contributory or page fault: triple fault.
pub const fn combine(pending: Injection, new: Injection) -> Combined {
    let first = ExceptionClass::of(&pending);
    let second = ExceptionClass::of(&new);
    let double = matches!(
        (first, second),
        (ExceptionClass::Contributory, ExceptionClass::Contributory)
            | (ExceptionClass::PageFault, ExceptionClass::Contributory)
            | (ExceptionClass::PageFault, ExceptionClass::PageFault)
    );
    let triple = matches!(
        (first, second),
        (
            ExceptionClass::DoubleFault,
            ExceptionClass::Contributory | ExceptionClass::PageFault
        )
    );
    if triple {
        Combined::TripleFault
    } else if double {
        Combined::Inject {
            now: Injection::exception(ExceptionVector::DoubleFault, Some(0)),
            deferred: None,
        }
    } else {
        Combined::Inject {
            now: new,
            deferred: if pending.is_interrupt() {
                Some(pending)
            } else {
                None
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: u32 = 1 << 31;
    const ERROR_CODE: u32 = 1 << 11;

    #[test]
    fn nothing_interrupted_is_none() {
        assert_eq!(Injection::from_idt_vectoring(0x0000_0b0e, 4, 3), None);
        assert_eq!(Injection::from_idt_vectoring(0, 0, 0), None);
    }

    #[test]
    fn an_external_interrupt_is_reinjected_as_it_was() {
        let e = Injection::from_idt_vectoring(VALID | 0x30, 0xdead, 7).unwrap();
        assert_eq!(e.info.raw(), VALID | 0x30);
        assert_eq!(e.error_code, None);
        assert_eq!(
            e.instruction_length, None,
            "only software events use the length"
        );
        assert!(e.is_interrupt());
    }

    #[test]
    fn a_page_fault_keeps_its_error_code() {
        // Type 3 (hardware exception), vector 14, error code valid.
        let e = Injection::from_idt_vectoring(VALID | ERROR_CODE | (3 << 8) | 14, 0x6, 5).unwrap();
        assert_eq!(e.info.vector(), 14);
        assert_eq!(e.info.kind(), InterruptionType::HardwareException);
        assert_eq!(e.error_code, Some(6));
        assert_eq!(e.instruction_length, None);
        assert!(!e.is_interrupt());
    }

    #[test]
    fn software_events_keep_their_instruction_length() {
        // INT 0x80 (type 4), INT3 (type 6), INT1 (type 5).
        for (kind, vector) in [(4u32, 0x80u32), (6, 3), (5, 1)] {
            let e = Injection::from_idt_vectoring(VALID | (kind << 8) | vector, 0, 2).unwrap();
            assert_eq!(e.instruction_length, Some(2), "type {kind}");
            assert_eq!(e.error_code, None);
        }
    }

    #[test]
    fn reserved_bits_are_cleared_for_entry() {
        // Bit 12 (NMI unblocking due to IRET) and bits 30:13 must be 0 on entry
        // (SDM Vol. 3C §27.2.1.3).
        let e =
            Injection::from_idt_vectoring(VALID | (1 << 12) | (0x7f << 13) | 0x21, 0, 0).unwrap();
        assert_eq!(e.info.raw(), VALID | 0x21);
    }

    #[test]
    fn real_mode_injections_carry_no_error_code() {
        let gp = Injection::exception(ExceptionVector::GeneralProtection, Some(0));
        let real = gp.for_mode(false);
        assert_eq!(real.error_code, None);
        assert!(!real.info.error_code_valid());
        assert_eq!(real.info.vector(), 13);
        assert_eq!(real.info.kind(), InterruptionType::HardwareException);
        assert_eq!(real.info.raw(), VALID | (3 << 8) | 13);
        assert_eq!(gp.for_mode(true), gp, "protected mode keeps the error code");
        let ud = Injection::exception(ExceptionVector::InvalidOpcode, None);
        assert_eq!(ud.for_mode(false), ud);
    }

    #[test]
    fn faults_set_rf_traps_and_aborts_do_not() {
        use ExceptionVector as V;
        for v in [
            V::DivideError,
            V::BoundRange,
            V::InvalidOpcode,
            V::DeviceNotAvailable,
            V::InvalidTss,
            V::SegmentNotPresent,
            V::StackSegmentFault,
            V::GeneralProtection,
            V::PageFault,
            V::X87FloatingPoint,
            V::AlignmentCheck,
            V::SimdFloatingPoint,
            V::VirtualizationException,
            V::ControlProtection,
        ] {
            let code = v.has_error_code().then_some(0);
            assert!(Injection::exception(v, code).sets_rf(), "{v:?}");
        }
        for v in [
            V::Debug,
            V::Breakpoint,
            V::Overflow,
            V::DoubleFault,
            V::MachineCheck,
            V::Nmi,
        ] {
            let code = v.has_error_code().then_some(0);
            assert!(!Injection::exception(v, code).sets_rf(), "{v:?}");
        }
        let int = Injection::from_idt_vectoring(VALID | 0x30, 0, 0).unwrap();
        assert!(!int.sets_rf(), "interrupts push RF as it is");
    }

    #[test]
    fn exception_classes_follow_table_6_4() {
        use ExceptionVector as V;
        for v in [
            V::DivideError,
            V::InvalidTss,
            V::SegmentNotPresent,
            V::StackSegmentFault,
            V::GeneralProtection,
        ] {
            assert_eq!(
                ExceptionClass::of_vector(v),
                ExceptionClass::Contributory,
                "{v:?}"
            );
        }
        assert_eq!(
            ExceptionClass::of_vector(V::PageFault),
            ExceptionClass::PageFault
        );
        for v in [
            V::Debug,
            V::Nmi,
            V::Breakpoint,
            V::Overflow,
            V::BoundRange,
            V::InvalidOpcode,
            V::DeviceNotAvailable,
            V::X87FloatingPoint,
            V::AlignmentCheck,
            V::MachineCheck,
            V::SimdFloatingPoint,
        ] {
            assert_eq!(
                ExceptionClass::of_vector(v),
                ExceptionClass::Benign,
                "{v:?}"
            );
        }
        let int = Injection::from_idt_vectoring(VALID | 0x30, 0, 0).unwrap();
        assert_eq!(ExceptionClass::of(&int), ExceptionClass::Benign);
    }

    #[test]
    fn combining_follows_table_6_5() {
        let gp = Injection::exception(ExceptionVector::GeneralProtection, Some(0));
        let pf = Injection::exception(ExceptionVector::PageFault, Some(2));
        let ud = Injection::exception(ExceptionVector::InvalidOpcode, None);
        let df = Injection::exception(ExceptionVector::DoubleFault, Some(0));
        let int = Injection::from_idt_vectoring(VALID | 0x30, 0, 0).unwrap();
        let soft = Injection::from_idt_vectoring(VALID | (4 << 8) | 0x80, 0, 2).unwrap();
        let double = Combined::Inject {
            now: df,
            deferred: None,
        };
        assert_eq!(combine(gp, gp), double);
        assert_eq!(combine(pf, gp), double);
        assert_eq!(combine(pf, pf), double);
        // Contributory then page fault, and anything with a benign side: serially.
        assert_eq!(
            combine(gp, pf),
            Combined::Inject {
                now: pf,
                deferred: None
            }
        );
        assert_eq!(
            combine(ud, gp),
            Combined::Inject {
                now: gp,
                deferred: None
            }
        );
        assert_eq!(
            combine(gp, ud),
            Combined::Inject {
                now: ud,
                deferred: None
            }
        );
        assert_eq!(combine(df, gp), Combined::TripleFault);
        assert_eq!(combine(df, pf), Combined::TripleFault);
        assert_eq!(
            combine(df, ud),
            Combined::Inject {
                now: ud,
                deferred: None
            }
        );
        // An interrupted interrupt survives a new exception; a software event is regenerated.
        assert_eq!(
            combine(int, gp),
            Combined::Inject {
                now: gp,
                deferred: Some(int)
            }
        );
        assert_eq!(
            combine(soft, gp),
            Combined::Inject {
                now: gp,
                deferred: None
            }
        );
    }
}
