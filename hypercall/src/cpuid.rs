//! Discovery through CPUID: the hypervisor's CPUID policy answers these leaves with
//! [`hypervisor_leaf`]; guests check them with [`signature_matches`].

use crate::multicall;
use crate::ABI_VERSION;

/// CPUID.1:ECX bit 31, "hypervisor present".
pub const HYPERVISOR_PRESENT_ECX: u32 = 1 << 31;

/// The vendor leaf: EAX = max hypervisor leaf, EBX/ECX/EDX = signature.
pub const LEAF_VENDOR: u32 = 0x4000_0000;
/// The interface leaf: EAX = ABI version, EBX = features, ECX = max batch, EDX = 0.
pub const LEAF_INTERFACE: u32 = 0x4000_0001;
/// The highest hypervisor leaf in v1 (EAX of [`LEAF_VENDOR`]).
pub const MAX_LEAF: u32 = LEAF_INTERFACE;
/// The last leaf of the hypervisor range; leaves above [`MAX_LEAF`] up to it read as 0.
pub const LEAF_RANGE_END: u32 = 0x4000_00ff;

/// The 12-byte signature, EBX, ECX, EDX in that order, each little-endian.
pub const SIGNATURE: [u8; 12] = *b"BulkheadHV\0\0";
/// EBX of [`LEAF_VENDOR`]: `"Bulk"`.
pub const SIGNATURE_EBX: u32 = u32::from_le_bytes(*b"Bulk");
/// ECX of [`LEAF_VENDOR`]: `"head"`.
pub const SIGNATURE_ECX: u32 = u32::from_le_bytes(*b"head");
/// EDX of [`LEAF_VENDOR`]: `"HV\0\0"`.
pub const SIGNATURE_EDX: u32 = u32::from_le_bytes([b'H', b'V', 0, 0]);

/// Feature bit 0: `MULTICALL` is available.
pub const FEATURE_MULTICALL: u32 = 1 << 0;
/// Feature bit 1: `EXIT_STATS` is available.
pub const FEATURE_EXIT_STATS: u32 = 1 << 1;
/// Feature bit 2: `CONSOLE_WRITE` is available.
pub const FEATURE_CONSOLE: u32 = 1 << 2;
/// Feature bit 3: `IDLE` is available.
pub const FEATURE_IDLE: u32 = 1 << 3;
/// Feature bit 4 (v1.1): `MEM_RELEASE` is available.
pub const FEATURE_MEM_RELEASE: u32 = 1 << 4;
/// Every feature bit v1 (up to v1.1) defines.
pub const FEATURES_V1: u32 =
    FEATURE_MULTICALL | FEATURE_EXIT_STATS | FEATURE_CONSOLE | FEATURE_IDLE | FEATURE_MEM_RELEASE;

/// ECX of [`LEAF_INTERFACE`]: the maximum multicall batch, in entries (128).
pub const MAX_BATCH: u32 = multicall::MAX_ENTRIES as u32;

/// A CPUID result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leaf {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// What the hypervisor returns for CPUID `leaf` in the hypervisor range
/// `0x4000_0000..=0x4000_00ff`, for a VM offered `features` (masked to [`FEATURES_V1`]);
/// `None` outside that range (the rest of the CPUID policy decides). Leaves above
/// [`MAX_LEAF`] in the range read as all zeros.
pub const fn hypervisor_leaf(leaf: u32, features: u32) -> Option<Leaf> {
    match leaf {
        LEAF_VENDOR => Some(Leaf {
            eax: MAX_LEAF,
            ebx: SIGNATURE_EBX,
            ecx: SIGNATURE_ECX,
            edx: SIGNATURE_EDX,
        }),
        LEAF_INTERFACE => Some(Leaf {
            eax: ABI_VERSION,
            ebx: features & FEATURES_V1,
            ecx: MAX_BATCH,
            edx: 0,
        }),
        l if l > MAX_LEAF && l <= LEAF_RANGE_END => Some(Leaf {
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
        }),
        _ => None,
    }
}

/// Whether the vendor leaf's EBX, ECX, EDX carry Bulkhead's signature.
pub const fn signature_matches(ebx: u32, ecx: u32, edx: u32) -> bool {
    ebx == SIGNATURE_EBX && ecx == SIGNATURE_ECX && edx == SIGNATURE_EDX
}

/// The hypervisor interface a guest found through CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    /// The ABI version (leaf `0x4000_0001`:EAX).
    pub version: crate::Version,
    /// Feature bits (EBX).
    pub features: u32,
    /// Maximum multicall batch (ECX).
    pub max_batch: u32,
}

impl Interface {
    /// Parses the two leaves; `None` if `vendor` is not Bulkhead's or does not reach
    /// [`LEAF_INTERFACE`].
    pub const fn from_leaves(vendor: Leaf, interface: Leaf) -> Option<Interface> {
        if !signature_matches(vendor.ebx, vendor.ecx, vendor.edx)
            || vendor.eax < LEAF_INTERFACE
            || vendor.eax > LEAF_RANGE_END
        {
            return None;
        }
        Some(Interface {
            version: crate::Version::from_raw(interface.eax),
            features: interface.ebx,
            max_batch: interface.ecx,
        })
    }

    /// Whether every bit of `feature` is offered.
    pub const fn has(&self, feature: u32) -> bool {
        self.features & feature == feature
    }
}
