//! The `serde` shape of bulkhead.toml, as written: every value keeps its span so the checks in
//! `check.rs` can name the line and column. Ranges and meanings are checked there, not here:
//! these types accept anything of the right TOML type.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileToml {
    pub hypervisor: Option<HypervisorToml>,
    /// `[vm.NAME]` tables. A `BTreeMap` sorts by name; `check` restores file order from the
    /// key spans.
    pub vm: Option<BTreeMap<Spanned<String>, Spanned<VmToml>>>,
    /// `[network.NAME]` tables (file order restored from the key spans, as for `vm`).
    pub network: Option<BTreeMap<Spanned<String>, Spanned<NetworkToml>>>,
}

/// `[network.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a network table: [network.NAME] with gateway and uplink"
)]
pub struct NetworkToml {
    pub gateway: Option<Spanned<bool>>,
    pub uplink: Option<Spanned<String>>,
}

/// `[hypervisor]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HypervisorToml {
    pub timeslice: Option<Spanned<i64>>,
    pub host_tick_hz: Option<Spanned<i64>>,
    pub store_check: Option<Spanned<bool>>,
}

/// `[vm.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a VM table: [vm.NAME] with kind, image and memory"
)]
pub struct VmToml {
    pub kind: Option<Spanned<String>>,
    pub image: Option<Spanned<String>>,
    pub from_snapshot: Option<Spanned<String>>,
    pub memory: Option<Spanned<Size>>,
    pub vcpus: Option<Spanned<i64>>,
    pub cpus: Option<Spanned<Vec<Spanned<i64>>>>,
    pub dedicated: Option<Spanned<bool>>,
    pub console_timestamps: Option<Spanned<bool>>,
    pub kvm_pv: Option<Spanned<bool>>,
    pub on_reboot: Option<Spanned<String>>,
    pub cmdline: Option<Spanned<String>>,
    pub initrd: Option<Spanned<String>>,
    pub heap_budget: Option<Spanned<Size>>,
    pub console_buffer: Option<Spanned<Size>>,
    pub console_rate: Option<Spanned<Size>>,
    pub virtio_console: Option<Spanned<bool>>,
    pub virtio_blk: Option<Vec<Spanned<BlkToml>>>,
    pub virtio_net: Option<Vec<Spanned<NetToml>>>,
}

/// `[[vm.NAME.virtio-blk]]`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a disk table: [[vm.NAME.virtio-blk]] with size, image or disk"
)]
pub struct BlkToml {
    pub size: Option<Spanned<Size>>,
    pub image: Option<Spanned<String>>,
    pub disk: Option<Spanned<String>>,
    pub read_only: Option<Spanned<bool>>,
}

/// `[[vm.NAME.virtio-net]]`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a network device table: [[vm.NAME.virtio-net]] with mac"
)]
pub struct NetToml {
    pub mac: Option<Spanned<String>>,
    pub network: Option<Spanned<String>>,
}

/// A size as written: an integer (bytes) or a string such as `"64M"`. `check` parses and
/// range-checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Size {
    Integer(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a size: a whole number of bytes (4096) or a string with K, M or G (\"64M\")"
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                Ok(Size::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(i64::try_from(v).map_or(Size::Integer(i64::MAX), Size::Integer))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Ok(Size::Text(v.into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The keys of a table type, from its `Deserialize` impl (so the unknown-key check and the
/// serde types cannot disagree).
pub fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// A deserializer that only records the field list serde asks it for.
struct Probe<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field probe")
    }
}

impl core::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<T: fmt::Display>(_: T) -> Self {
        ProbeDone
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeDone> {
        *self.0 = fields;
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
