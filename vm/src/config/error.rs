//! Configuration errors: where (line and column) and what to write instead.

use alloc::string::String;
use core::fmt;
use core::ops::Range;

/// A configuration error at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line; 0 when the error is about the whole file.
    pub line: usize,
    /// 1-based column in characters; 0 with `line == 0`.
    pub column: usize,
    pub kind: ConfigErrorKind,
}

/// What is wrong. The `Display` text says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file is not UTF-8 (the position is that of the first bad byte).
    NotUtf8,
    /// Not TOML: the `toml` parser's description.
    Syntax(String),
    /// A key or table defined twice; the key as written.
    Duplicate(String),
    /// A value of the wrong TOML type: the key and the deserializer's description.
    WrongType { key: String, message: String },
    /// A key no table of this kind has.
    UnknownKey {
        table: String,
        key: String,
        hint: KeyHint,
    },
    /// A key that must hold a table (or an array of tables) holds something else.
    NotATable { key: String, write: String },
    /// A VM name outside 1-32 characters of a-z, 0-9 and '-', or not starting with a letter.
    BadVmName(String),
    /// No `[vm.NAME]` table.
    NoVms,
    /// More than [`super::MAX_VMS`] VMs; `vm` is the first one too many.
    TooManyVms { count: usize, vm: String },
    /// More than [`super::MAX_DEVICES`] devices in one VM.
    TooManyDevices {
        vm: String,
        blk: usize,
        net: usize,
        console: usize,
    },
    /// A required key is missing from `table`.
    MissingKey {
        table: String,
        key: &'static str,
        example: &'static str,
    },
    /// A key that only `kind = "linux"` VMs take.
    NotForKind {
        key: &'static str,
        kind: &'static str,
    },
    /// A key a VM started from a snapshot (`from-snapshot`) does not take: its RAM, kernel
    /// and command line are the snapshot's.
    NotFromSnapshot { key: &'static str },
    /// A value out of range or malformed; `value` is the text as written in the file.
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    /// A `[[vm.NAME.virtio-blk]]` entry with more than one or none of `size`, `image`, `disk`.
    DiskSource { table: String, both: bool },
    /// A network name outside the VM-name rules.
    BadNetworkName(String),
    /// More than [`super::MAX_NETWORKS`] networks; `network` is the first one too many.
    TooManyNetworks { count: usize, network: String },
    /// `network = "NAME"` names no `[network.NAME]`; `known` lists the ones there are.
    UnknownNetwork { network: String, known: String },
    /// Two devices on one network (or two on one VM's private network) with one MAC.
    MacTwice {
        mac: String,
        network: String,
        first: String,
        second: String,
    },
    /// A device with the gateway's MAC on a network that has a gateway.
    GatewayMac { network: String },
    /// A second network with an uplink (the hypervisor drives one NIC).
    SecondUplink { first: String, second: String },
    /// A CPU listed twice in one VM's `cpus`.
    DuplicateCpu { vm: String, cpu: u32 },
    /// `dedicated = true` without `cpus`.
    DedicatedWithoutCpus { vm: String },
    /// A dedicated VM with fewer CPUs in `cpus` than vCPUs.
    DedicatedTooFewCpus { vm: String, vcpus: u32, cpus: usize },
    /// A CPU in the `cpus` of two dedicated VMs (`first` comes first in the file).
    CpuDedicatedTwice {
        cpu: u32,
        first: String,
        second: String,
    },
    /// A CPU in the `cpus` of a dedicated VM and of another, non-dedicated VM.
    CpuDedicatedAndShared {
        cpu: u32,
        dedicated: String,
        other: String,
    },
}

/// What an unknown key probably should have been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHint {
    /// The known key closest to it (edit distance).
    Closest(&'static str),
    /// The key exists, in another table.
    OtherTable(&'static str),
    /// Nothing close: the keys this table has.
    Known(&'static [&'static str]),
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind as K;
        match self {
            K::NotUtf8 => write!(f, "the file is not UTF-8 text; save it as UTF-8"),
            K::Syntax(m) => write!(
                f,
                "not valid TOML: {m} (strings need double quotes, e.g. memory = \"64M\"; VM \
                 tables are [vm.NAME])"
            ),
            K::Duplicate(k) => write!(
                f,
                "`{k}` is defined twice (a key twice in one table, or a [table] header \
                 repeated): keep one"
            ),
            K::WrongType { key, message } => write!(f, "`{key}`: {message}"),
            K::UnknownKey { table, key, hint } => {
                write!(f, "unknown key `{key}` in {table}")?;
                match hint {
                    KeyHint::Closest(k) => write!(f, "; did you mean `{k}`?"),
                    KeyHint::OtherTable(t) => write!(f, "; `{key}` belongs in {t}"),
                    KeyHint::Known(keys) => {
                        write!(f, "; the keys here are ")?;
                        for (i, k) in keys.iter().enumerate() {
                            write!(f, "{}`{k}`", if i == 0 { "" } else { ", " })?;
                        }
                        Ok(())
                    }
                }
            }
            K::NotATable { key, write } => write!(f, "`{key}` must be a table: write {write}"),
            K::BadVmName(n) => write!(
                f,
                "VM name {n:?} must be 1-32 characters of a-z, 0-9 and '-' starting with a letter, e.g. [vm.linux-1]"
            ),
            K::NoVms => write!(
                f,
                "no [vm.NAME] table: nothing to run; add one with kind, image and memory \
                 (docs/configuration.md)"
            ),
            K::TooManyVms { count, vm } => write!(
                f,
                "{count} VMs, at most {} can run: remove [vm.{vm}] and the VMs after it",
                super::MAX_VMS
            ),
            K::TooManyDevices {
                vm,
                blk,
                net,
                console,
            } => write!(
                f,
                "[vm.{vm}] has {} devices ({blk} virtio-blk, {net} virtio-net, {console} \
                 virtio-console), at most {} per VM: remove {}",
                blk + net + console,
                super::MAX_DEVICES,
                blk + net + console - super::MAX_DEVICES
            ),
            K::MissingKey {
                table,
                key,
                example,
            } => write!(f, "{table} needs `{key}`, e.g. {key} = {example}"),
            K::NotForKind { key, kind } => write!(
                f,
                "`{key}` applies only to kind = \"linux\", this VM is kind = \"{kind}\": remove \
                 it"
            ),
            K::NotFromSnapshot { key } => write!(
                f,
                "`{key}` does not apply to a VM with `from-snapshot`: its RAM, kernel and \
                 command line are the snapshot's; remove `{key}`"
            ),
            K::BadValue {
                key,
                value,
                expected,
            } => write!(f, "{key} = {value}: expected {expected}"),
            K::DiskSource { table, both } => write!(
                f,
                "{table} has {} of `size`, `image` and `disk`: give exactly one, size = \"1M\" \
                 for an empty RAM disk, image = \"disk.img\" for a copy-on-write disk over a \
                 bundle file or disk = \"root\" for a disk of a disk store",
                if *both { "more than one" } else { "none" }
            ),
            K::BadNetworkName(n) => write!(
                f,
                "network name {n:?} must be 1-32 characters of a-z, 0-9 and '-' starting with a \
                 letter, e.g. [network.lan]"
            ),
            K::TooManyNetworks { count, network } => write!(
                f,
                "{count} networks, at most {} can exist: remove [network.{network}] and the \
                 networks after it",
                super::MAX_NETWORKS
            ),
            K::UnknownNetwork { network, known } => {
                write!(f, "no [network.{network}] table: add one, or ")?;
                if known.is_empty() {
                    write!(f, "remove `network` to give the VM a private network")
                } else {
                    write!(f, "attach the device to one of {known}")
                }
            }
            K::MacTwice {
                mac,
                network,
                first,
                second,
            } => write!(
                f,
                "mac = \"{mac}\" is used twice on {network}, by [vm.{first}] and [vm.{second}]: \
                 give each virtio-net device on a network its own mac"
            ),
            K::GatewayMac { network } => write!(
                f,
                "mac = \"02:00:00:00:00:01\" is the gateway's address on {network}: give the \
                 device another mac (or set gateway = false on its network)"
            ),
            K::SecondUplink { first, second } => write!(
                f,
                "[network.{first}] and [network.{second}] both have an uplink: Bulkhead drives \
                 one NIC, so at most one network can have uplink = \"e1000\"; remove one"
            ),
            K::DuplicateCpu { vm, cpu } => write!(
                f,
                "[vm.{vm}] lists CPU {cpu} twice in `cpus`: list each physical CPU once (vCPUs \
                 beyond the list wrap around it: vCPU i runs on cpus[i % len])"
            ),
            K::DedicatedWithoutCpus { vm } => write!(
                f,
                "[vm.{vm}] is dedicated but has no `cpus`: name the physical CPUs it owns, one \
                 per vCPU, e.g. cpus = [1], or remove `dedicated`"
            ),
            K::DedicatedTooFewCpus { vm, vcpus, cpus } => write!(
                f,
                "more dedicated vCPUs than CPUs: [vm.{vm}] has vcpus = {vcpus} but {cpus} CPU{} \
                 in `cpus`, and each dedicated vCPU needs a CPU of its own; list {} more or set \
                 vcpus = {cpus}",
                if *cpus == 1 { "" } else { "s" },
                *vcpus as usize - cpus
            ),
            K::CpuDedicatedTwice { cpu, first, second } => write!(
                f,
                "CPU {cpu} is given to two dedicated VMs, [vm.{first}] and [vm.{second}]: a \
                 dedicated VM owns its CPUs; give [vm.{second}] other CPUs"
            ),
            K::CpuDedicatedAndShared {
                cpu,
                dedicated,
                other,
            } => write!(
                f,
                "CPU {cpu} belongs to the dedicated [vm.{dedicated}] and is also in the `cpus` \
                 of [vm.{other}]: a dedicated VM's CPUs run nothing else; remove CPU {cpu} from \
                 [vm.{other}]"
            ),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.located(super::FILE_NAME))
    }
}

impl ConfigError {
    /// The error as `PATH:LINE:COLUMN: message` (`PATH: message` for whole-file errors).
    pub fn located<'a>(&'a self, path: &'a str) -> impl fmt::Display + 'a {
        Located { error: self, path }
    }
}

struct Located<'a> {
    error: &'a ConfigError,
    path: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.error;
        if e.line == 0 {
            write!(f, "{}: {}", self.path, e.kind)
        } else {
            write!(f, "{}:{}:{}: {}", self.path, e.line, e.column, e.kind)
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// An error at the start of `span` in `text`.
pub fn at(text: &str, span: Range<usize>, kind: ConfigErrorKind) -> ConfigError {
    let (line, column) = line_column(text, span.start);
    ConfigError { line, column, kind }
}

/// An error about the whole file.
pub fn whole_file(kind: ConfigErrorKind) -> ConfigError {
    ConfigError {
        line: 0,
        column: 0,
        kind,
    }
}

/// Levenshtein distance between two ASCII-ish keys (by characters).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: alloc::vec::Vec<char> = b.chars().collect();
    let mut row: alloc::vec::Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The known key closest to `key`, if it is close enough to be a typo: at most a third of
/// the key's length (and at least 1, at most 3) edits away.
pub fn closest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
