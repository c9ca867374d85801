//! 8254x register offsets and bits (8254x SDM §13, Table 13-2).

/// Register byte offsets in BAR0.
#[derive(Debug)]
pub struct Reg;

impl Reg {
    /// Device Control (§13.4.1).
    pub const CTRL: u32 = 0x0000;
    /// Device Status (§13.4.2).
    pub const STATUS: u32 = 0x0008;
    /// EEPROM Read (§13.4.4).
    pub const EERD: u32 = 0x0014;
    /// Interrupt Cause Read (§13.4.17).
    pub const ICR: u32 = 0x00C0;
    /// Interrupt Mask Clear (§13.4.21).
    pub const IMC: u32 = 0x00D8;
    /// Receive Control (§13.4.22).
    pub const RCTL: u32 = 0x0100;
    /// Transmit Control (§13.4.33).
    pub const TCTL: u32 = 0x0400;
    /// Transmit Inter-Packet Gap (§13.4.34).
    pub const TIPG: u32 = 0x0410;
    /// Receive Descriptor Base Low/High, Length, Head, Tail (§13.4.25-§13.4.29).
    pub const RDBAL: u32 = 0x2800;
    pub const RDBAH: u32 = 0x2804;
    pub const RDLEN: u32 = 0x2808;
    pub const RDH: u32 = 0x2810;
    pub const RDT: u32 = 0x2818;
    /// Transmit Descriptor Base Low/High, Length, Head, Tail (§13.4.36-§13.4.40).
    pub const TDBAL: u32 = 0x3800;
    pub const TDBAH: u32 = 0x3804;
    pub const TDLEN: u32 = 0x3808;
    pub const TDH: u32 = 0x3810;
    pub const TDT: u32 = 0x3818;
    /// Multicast Table Array (§13.5.1), 128 entries.
    pub const MTA: u32 = 0x5200;
    /// Receive Address Low/High 0 (§13.5.2-§13.5.3).
    pub const RAL0: u32 = 0x5400;
    pub const RAH0: u32 = 0x5404;
}

/// CTRL bits (§13.4.1, Table 13-3).
pub mod ctrl {
    pub const LRST: u32 = 1 << 3;
    pub const ASDE: u32 = 1 << 5;
    pub const SLU: u32 = 1 << 6;
    pub const ILOS: u32 = 1 << 7;
    pub const RST: u32 = 1 << 26;
    pub const VME: u32 = 1 << 30;
    pub const PHY_RST: u32 = 1 << 31;
}

/// STATUS.LU: link up (§13.4.2).
pub const STATUS_LU: u32 = 1 << 1;
/// EERD fields (§13.4.4, Table 13-7).
pub const EERD_START: u32 = 1 << 0;
pub const EERD_DONE: u32 = 1 << 4;
pub const EERD_ADDR_SHIFT: u32 = 8;
pub const EERD_DATA_SHIFT: u32 = 16;
/// RAH.AV: the address is valid (§13.5.3).
pub const RAH_AV: u32 = 1 << 31;
/// MTA entries (§13.5.1).
pub const MTA_ENTRIES: u32 = 128;

/// RCTL bits (§13.4.22, Table 13-67). BSIZE = 00b (2048 bytes) with BSEX = 0.
pub mod rctl {
    pub const EN: u32 = 1 << 1;
    /// Unicast / multicast promiscuous.
    pub const UPE: u32 = 1 << 3;
    pub const MPE: u32 = 1 << 4;
    /// Broadcast accept.
    pub const BAM: u32 = 1 << 15;
    /// Strip the Ethernet CRC.
    pub const SECRC: u32 = 1 << 26;
}

/// TCTL bits (§13.4.33, Table 13-76).
pub mod tctl {
    pub const EN: u32 = 1 << 1;
    /// Pad short packets.
    pub const PSP: u32 = 1 << 3;
    /// Collision threshold 0Fh (bits 11:4), the recommended value.
    pub const CT_DEFAULT: u32 = 0x0F << 4;
    /// Collision distance 40h (bits 21:12) for full duplex.
    pub const COLD_FULL_DUPLEX: u32 = 0x40 << 12;
}

/// TIPG for the 82540/82541/82544/82545/82546/82547 copper (§13.4.34, Table 13-77):
/// IPGT 10, IPGR1 8, IPGR2 6.
pub const TIPG_DEFAULT: u32 = 10 | 8 << 10 | 6 << 20;

/// Receive descriptor status bits (§3.2.3.1, Table 3-2).
pub mod rx_status {
    /// Descriptor done.
    pub const DD: u8 = 1 << 0;
    /// End of packet.
    pub const EOP: u8 = 1 << 1;
}

/// Transmit descriptor command bits (§3.3.3.1, Table 3-10).
pub mod tx_cmd {
    /// End of packet.
    pub const EOP: u8 = 1 << 0;
    /// Insert FCS.
    pub const IFCS: u8 = 1 << 1;
    /// Report status (set STA.DD when done).
    pub const RS: u8 = 1 << 3;
}

/// Transmit descriptor status: descriptor done (§3.3.3.2, Table 3-11).
pub const TX_STA_DD: u8 = 1 << 0;
