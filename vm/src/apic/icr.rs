//! The interrupt command register decoded into an [`Ipi`] (SDM Vol. 3A §11.6.1, Figure 11-12;
//! x2APIC: §11.12.9, Figure 11-28).

/// ICR bits 7:0: vector.
pub const ICR_VECTOR_MASK: u32 = 0xFF;
/// ICR bits 10:8: delivery mode.
const DELIVERY_MODE_SHIFT: u32 = 8;
/// ICR bit 11: destination mode (1 = logical).
const DESTINATION_LOGICAL: u32 = 1 << 11;
/// ICR bit 14: level (1 = assert).
const LEVEL_ASSERT: u32 = 1 << 14;
/// ICR bit 15: trigger mode (1 = level).
const TRIGGER_LEVEL: u32 = 1 << 15;
/// ICR bits 19:18: destination shorthand.
const SHORTHAND_SHIFT: u32 = 18;
/// The ICR low bits software can write: vector, delivery mode, destination mode, level,
/// trigger mode, shorthand (bits 13, 16-17 and 20-31 are reserved; 12, delivery status, is
/// read-only and always reads 0: this model delivers at once).
pub const ICR_LOW_WRITE_MASK: u32 = 0x000C_CFFF;
/// ICR bit 12: delivery status (read-only: writing it is not a reserved-bit error).
pub const ICR_DELIVERY_STATUS: u32 = 1 << 12;
/// xAPIC ICR high: destination in bits 31:24.
pub const ICR_HIGH_XAPIC_MASK: u32 = 0xFF00_0000;
/// Lowest legal vector for fixed and lowest-priority delivery (§11.5.2: 0-15 are reserved).
pub const FIRST_LEGAL_VECTOR: u8 = 16;

/// ICR delivery mode (bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 000: the vector to every destination.
    Fixed,
    /// 001: the vector to the destination with the lowest priority.
    LowestPriority,
    /// 010: an SMI (vector must be 0).
    Smi,
    /// 100: an NMI (vector ignored).
    Nmi,
    /// 101 with level = 1: INIT.
    Init,
    /// 101 with level = 0 and trigger = level: INIT level de-assert (arbitration ID sync;
    /// no effect on Pentium 4 and later, §11.6.1).
    InitLevelDeassert,
    /// 110: start-up IPI; the vector is the real-mode start page (vector << 12).
    StartUp,
}

/// ICR bit 11.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationMode {
    /// The destination is an APIC ID.
    Physical,
    /// The destination is a message destination address matched against LDR/DFR.
    Logical,
}

/// ICR bits 19:18 (§11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shorthand {
    /// 00: use the destination field.
    None,
    /// 01: the sender only.
    Self_,
    /// 10: every APIC, the sender included.
    AllIncludingSelf,
    /// 11: every APIC but the sender.
    AllExcludingSelf,
}

/// ICR bit 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// Edge-triggered.
    Edge,
    /// Level-triggered.
    Level,
}

/// Where an IPI goes: what [`super::LocalApic::accepts_destination`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpiDestination {
    /// The shorthand (overrides the destination when not `None`).
    pub shorthand: Shorthand,
    /// Physical or logical.
    pub mode: DestinationMode,
    /// xAPIC: the 8-bit destination (ICR high 31:24); x2APIC: the 32-bit destination.
    pub destination: u32,
}

/// An interprocessor interrupt the guest sent through its ICR or SELF IPI register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    /// The delivery mode.
    pub delivery_mode: DeliveryMode,
    /// The vector (meaningful for fixed, lowest priority and start-up).
    pub vector: u8,
    /// Physical or logical destination.
    pub destination_mode: DestinationMode,
    /// xAPIC: 8 bits from ICR high 31:24; x2APIC: ICR bits 63:32.
    pub destination: u32,
    /// The destination shorthand.
    pub shorthand: Shorthand,
    /// Level flag (bit 14): assert.
    pub level: bool,
    /// Trigger mode (bit 15).
    pub trigger: TriggerMode,
}

impl Ipi {
    /// The destination part, for the router's [`super::LocalApic::accepts_destination`].
    pub fn destination(&self) -> IpiDestination {
        IpiDestination {
            shorthand: self.shorthand,
            mode: self.destination_mode,
            destination: self.destination,
        }
    }
}

/// Why an ICR write sends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcrReject {
    /// Fixed or lowest-priority with a vector below 16 (ESR "send illegal vector", §11.5.3).
    IllegalVector,
    /// Delivery mode 011 or 111 (reserved, §11.6.1).
    ReservedDeliveryMode,
    /// A combination Table 11-3 ("Valid combinations for the local xAPIC ICR") marks
    /// illegal: the self shorthand with anything but fixed delivery.
    InvalidShorthand,
}

/// Decode an ICR: `low` is bits 31:0, `destination` already extracted (xAPIC: ICR high
/// 31:24; x2APIC: bits 63:32).
pub fn decode(low: u32, destination: u32) -> Result<Ipi, IcrReject> {
    let vector = (low & ICR_VECTOR_MASK) as u8;
    let level = low & LEVEL_ASSERT != 0;
    let trigger = if low & TRIGGER_LEVEL != 0 {
        TriggerMode::Level
    } else {
        TriggerMode::Edge
    };
    let delivery_mode = match (low >> DELIVERY_MODE_SHIFT) & 0b111 {
        0b000 => DeliveryMode::Fixed,
        0b001 => DeliveryMode::LowestPriority,
        0b010 => DeliveryMode::Smi,
        0b100 => DeliveryMode::Nmi,
        0b101 if !level && trigger == TriggerMode::Level => DeliveryMode::InitLevelDeassert,
        0b101 => DeliveryMode::Init,
        0b110 => DeliveryMode::StartUp,
        _ => return Err(IcrReject::ReservedDeliveryMode),
    };
    let shorthand = match (low >> SHORTHAND_SHIFT) & 0b11 {
        0b00 => Shorthand::None,
        0b01 => Shorthand::Self_,
        0b10 => Shorthand::AllIncludingSelf,
        _ => Shorthand::AllExcludingSelf,
    };
    let fixed_like = matches!(
        delivery_mode,
        DeliveryMode::Fixed | DeliveryMode::LowestPriority
    );
    // SDM Vol. 3A §11.5.3: a fixed/lowest-priority IPI with vector 0-15 is not sent.
    if fixed_like && vector < FIRST_LEGAL_VECTOR {
        return Err(IcrReject::IllegalVector);
    }
    // SDM Vol. 3A §11.6.1, Table 11-3: the self shorthand only with fixed delivery.
    if shorthand == Shorthand::Self_ && delivery_mode != DeliveryMode::Fixed {
        return Err(IcrReject::InvalidShorthand);
    }
    Ok(Ipi {
        delivery_mode,
        vector,
        destination_mode: if low & DESTINATION_LOGICAL != 0 {
            DestinationMode::Logical
        } else {
            DestinationMode::Physical
        },
        destination,
        shorthand,
        level,
        trigger,
    })
}
