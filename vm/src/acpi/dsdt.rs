//! The DSDT (ACPI 6.5 §5.2.11.1): a definition block whose AML (§20, "ACPI Machine Language
//! Specification") declares the `\_SB` scope (§5.3.1) and the `\_S5` soft-off sleep object
//! (§7.4.2), plus whatever objects the VMM adds ([`Dsdt::add_to_sb`]: issue 12's virtio-mmio
//! and COM1 devices). Objects are written with `acpi_tables::aml` (re-exported as
//! [`crate::acpi::aml`]).

use alloc::vec;
use alloc::vec::Vec;

use acpi_tables::aml::{Name, Package, Path, Scope};
use acpi_tables::sdt::Sdt;
use acpi_tables::{Aml, AmlSink};

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::devices::acpi_pm::SLP_TYP_S5;

/// §5.2.11.1: DSDT revision 2 and up have 64-bit integers.
pub const DSDT_REVISION: u8 = 2;
/// Size of a table header (§5.2.6).
const HEADER_LEN: u32 = 36;

/// AML already serialized.
struct RawAml<'a>(&'a [u8]);

impl Aml for RawAml<'_> {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.0);
    }
}

/// The DSDT's contents: `\_SB` with the objects added to it, `\_S5`, then root objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dsdt {
    /// Serialized AML of the objects inside `\_SB`.
    system_bus: Vec<u8>,
    /// Serialized AML of other objects at the root.
    root: Vec<u8>,
}

impl Dsdt {
    /// `\_SB` (empty) and `\_S5`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `object` (a `Device`, `Name`, `Method`...) inside `\_SB`, after those added before.
    pub fn add_to_sb(&mut self, object: &dyn Aml) {
        object.to_aml_bytes(&mut self.system_bus);
    }

    /// Adds `object` at the root of the namespace, after `\_S5`.
    pub fn add_to_root(&mut self, object: &dyn Aml) {
        object.to_aml_bytes(&mut self.root);
    }

    /// The AML of the definition block's body (what follows the table header).
    pub fn aml(&self) -> Vec<u8> {
        let mut aml = Vec::new();
        Scope::new(Path::new("\\_SB_"), vec![&RawAml(&self.system_bus)]).to_aml_bytes(&mut aml);
        // §7.4.2: Package {PM1a_CNT.SLP_TYP, PM1b_CNT.SLP_TYP (no PM1b: 0), reserved,
        // reserved}; acpi_pm powers off on SLP_EN with this SLP_TYP.
        let (slp_typ_a, slp_typ_b, reserved) = (SLP_TYP_S5, 0u8, 0u8);
        Name::new(
            Path::new("_S5_"),
            &Package::new(vec![&slp_typ_a, &slp_typ_b, &reserved, &reserved]),
        )
        .to_aml_bytes(&mut aml);
        aml.extend_from_slice(&self.root);
        aml
    }

    /// The whole table, checksummed.
    pub fn build(&self) -> Vec<u8> {
        let mut sdt = Sdt::new(
            *b"DSDT",
            HEADER_LEN,
            DSDT_REVISION,
            OEM_ID,
            OEM_TABLE_ID,
            OEM_REVISION,
        );
        sdt.append_slice(&self.aml());
        sdt.as_slice().to_vec()
    }
}
