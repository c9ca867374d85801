//! Does this local APIC accept an IPI's destination? (SDM Vol. 3A §11.6.2: physical,
//! logical flat and cluster, broadcast, shorthands; x2APIC logical: §11.12.10.)

use super::icr::{DestinationMode, IpiDestination, Shorthand};
use super::registers::{
    ApicRegister, DFR_MODEL_CLUSTER, DFR_MODEL_FLAT, DFR_MODEL_SHIFT, XAPIC_ID_SHIFT,
};
use super::{ApicMode, ApicPage, LocalApic};

/// xAPIC broadcast destination (§11.6.2.1 physical, §11.6.2.2 logical: all ones).
pub const XAPIC_BROADCAST: u32 = 0xFF;
/// x2APIC broadcast destination (§11.12.9).
pub const X2APIC_BROADCAST: u32 = 0xFFFF_FFFF;
/// x2APIC logical ID: cluster in bits 31:16 (§11.12.10.2).
const X2APIC_CLUSTER_SHIFT: u32 = 16;
/// x2APIC logical ID: one bit per member in bits 15:0.
const X2APIC_MEMBER_MASK: u32 = 0xFFFF;
/// xAPIC cluster model: cluster in bits 7:4 of the MDA / logical ID.
const XAPIC_CLUSTER_SHIFT: u32 = 4;
/// xAPIC cluster model: member bits 3:0.
const XAPIC_MEMBER_MASK: u32 = 0xF;
/// xAPIC cluster address 0xF: every cluster.
const XAPIC_ALL_CLUSTERS: u32 = 0xF;

impl<P: ApicPage> LocalApic<P> {
    /// Whether this APIC is a target of `dest`; `is_sender` says whether it sent the IPI
    /// (for the shorthands). A hardware-disabled APIC accepts nothing. The destination is
    /// read in this APIC's own mode (8-bit xAPIC or 32-bit x2APIC format).
    pub fn accepts_destination(&self, dest: &IpiDestination, is_sender: bool) -> bool {
        let x2apic = match self.mode() {
            ApicMode::Disabled => return false,
            ApicMode::XApic => false,
            ApicMode::X2Apic => true,
        };
        // SDM Vol. 3A §11.6.1: the shorthand overrides the destination field.
        match dest.shorthand {
            Shorthand::Self_ => return is_sender,
            Shorthand::AllIncludingSelf => return true,
            Shorthand::AllExcludingSelf => return !is_sender,
            Shorthand::None => {}
        }
        let id = self.reg(ApicRegister::Id);
        let ldr = self.reg(ApicRegister::Ldr);
        match (dest.mode, x2apic) {
            // SDM Vol. 3A §11.12.9: 0xFFFFFFFF is the x2APIC broadcast.
            (_, true) if dest.destination == X2APIC_BROADCAST => true,
            (DestinationMode::Physical, true) => dest.destination == id,
            (DestinationMode::Logical, true) => {
                // SDM Vol. 3A §11.12.10.2: cluster match and a common member bit.
                dest.destination >> X2APIC_CLUSTER_SHIFT == ldr >> X2APIC_CLUSTER_SHIFT
                    && dest.destination & ldr & X2APIC_MEMBER_MASK != 0
            }
            (_, false) => {
                let mda = dest.destination & XAPIC_BROADCAST;
                if mda == XAPIC_BROADCAST {
                    return true;
                }
                match dest.mode {
                    DestinationMode::Physical => mda == id >> XAPIC_ID_SHIFT,
                    DestinationMode::Logical => {
                        let dfr = self.reg(ApicRegister::Dfr);
                        logical_xapic(dfr >> DFR_MODEL_SHIFT, ldr >> XAPIC_ID_SHIFT, mda)
                    }
                }
            }
        }
    }
}

/// SDM Vol. 3A §11.6.2.2: flat model: LDR & MDA != 0; cluster model: cluster equal (or 0xF)
/// and a common member bit. Reserved DFR models match nothing.
fn logical_xapic(model: u32, logical_id: u32, mda: u32) -> bool {
    match model {
        DFR_MODEL_FLAT => logical_id & mda != 0,
        DFR_MODEL_CLUSTER => {
            let cluster = mda >> XAPIC_CLUSTER_SHIFT;
            (cluster == XAPIC_ALL_CLUSTERS || cluster == logical_id >> XAPIC_CLUSTER_SHIFT)
                && mda & logical_id & XAPIC_MEMBER_MASK != 0
        }
        _ => false,
    }
}
