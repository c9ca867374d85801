//! The run configuration (`bulkhead.conf` in the boot archive): which VMs to run, with what
//! memory, guest image and devices. An INI-like text format, documented in
//! docs/configuration.md:
//!
//! ```text
//! # comment
//! [hypervisor]
//! timeslice = 2000000          # TSC ticks a vCPU runs before the next VM's turn
//!
//! [vm selftest]
//! kind = elf64                 # elf64 | real16 | linux
//! image = selftest.elf         # archive entry with the guest image
//! memory = 16M                 # guest RAM: bytes, or with K/M/G; 2M multiple
//! virtio-blk = size:1M         # or image:disk.img, optionally ",ro"
//! virtio-net = 52:54:00:12:34:56
//! cmdline = console=ttyS0      # linux only
//! console-timestamps = yes      # prefix console lines with ticks since first entry
//! initrd = initramfs.cpio.gz   # linux only
//! ```
//!
//! Every mistake is reported with its line number and what to write instead.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Guest RAM limits: at least 4 MiB (page tables, GDT and an image at 1 MiB), below the
/// MMIO window at [`MMIO_BASE`].
pub const MIN_MEMORY: u64 = 4 << 20;
pub const MAX_MEMORY: u64 = MMIO_BASE;
/// Guest-physical base of the first virtio-mmio device; device i sits at
/// `MMIO_BASE + i * MMIO_STRIDE` with IRQ `FIRST_DEVICE_IRQ + i` (docs/vm-platform.md).
pub const MMIO_BASE: u64 = 0xD000_0000;
pub const MMIO_STRIDE: u64 = 0x1000;
pub const FIRST_DEVICE_IRQ: u8 = 5;
/// At most this many VMs and devices per VM.
pub const MAX_VMS: usize = 16;
pub const MAX_DEVICES: usize = 8;
pub const DEFAULT_TIMESLICE: u64 = 2_000_000;

/// How the guest image is loaded and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// A static ELF64 loaded at its physical addresses and entered in 64-bit mode.
    Elf64,
    /// A flat binary loaded at 0x7C00 and entered in real mode (unrestricted guest).
    Real16,
    /// A Linux bzImage entered through the 64-bit boot protocol.
    Linux,
}

/// A virtio device of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceConfig {
    /// A block device over a RAM disk: an empty disk of `size` bytes, or a copy of an
    /// archive entry.
    VirtioBlk { source: DiskSource, read_only: bool },
    /// A network device attached to the VM's virtual switch with its gateway port.
    VirtioNet { mac: [u8; 6] },
    /// A virtio-console device (one port, `hvc0` in Linux).
    VirtioConsole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    Empty { size: u64 },
    Image(String),
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub name: String,
    pub kind: GuestKind,
    pub image: String,
    pub memory: u64,
    pub cmdline: Option<String>,
    pub initrd: Option<String>,
    pub devices: Vec<DeviceConfig>,
    /// Prefix each console line with the TSC ticks since the VM's first entry.
    pub console_timestamps: bool,
}

/// Hypervisor-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HypervisorConfig {
    pub timeslice: u64,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub hypervisor: HypervisorConfig,
    pub vms: Vec<VmConfig>,
}

/// A configuration error: the line (1-based; 0 when about the whole file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub kind: ConfigErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigErrorKind {
    NotUtf8,
    SyntaxError(String),
    UnknownSection(String),
    BadVmName(String),
    DuplicateVm(String),
    UnknownKey {
        section: String,
        key: String,
    },
    DuplicateKey(String),
    KeyOutsideSection(String),
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    MissingKey {
        vm: String,
        key: &'static str,
    },
    NoVms,
    TooMany(&'static str),
    NotForKind {
        key: &'static str,
        kind: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "bulkhead.conf line {}: ", self.line)?;
        } else {
            write!(f, "bulkhead.conf: ")?;
        }
        match &self.kind {
            ConfigErrorKind::NotUtf8 => write!(f, "the file is not UTF-8 text"),
            ConfigErrorKind::SyntaxError(l) => {
                write!(
                    f,
                    "cannot parse {l:?}: write `[section]`, `key = value` or a `#` comment"
                )
            }
            ConfigErrorKind::UnknownSection(s) => {
                write!(f, "unknown section [{s}]: use [hypervisor] or [vm NAME]")
            }
            ConfigErrorKind::BadVmName(n) => {
                write!(
                    f,
                    "VM name {n:?} must be 1-32 characters of a-z, 0-9 and '-'"
                )
            }
            ConfigErrorKind::DuplicateVm(n) => {
                write!(f, "a second [vm {n}]: VM names must be unique")
            }
            ConfigErrorKind::UnknownKey { section, key } => {
                write!(f, "unknown key {key:?} in [{section}]")
            }
            ConfigErrorKind::DuplicateKey(k) => write!(f, "{k:?} is set twice"),
            ConfigErrorKind::KeyOutsideSection(k) => write!(f, "{k:?} comes before any [section]"),
            ConfigErrorKind::BadValue {
                key,
                value,
                expected,
            } => write!(f, "{key} = {value:?}: expected {expected}"),
            ConfigErrorKind::MissingKey { vm, key } => write!(f, "[vm {vm}] needs `{key} = ...`"),
            ConfigErrorKind::NoVms => write!(f, "no [vm NAME] section: nothing to run"),
            ConfigErrorKind::TooMany(what) => write!(f, "too many {what}"),
            ConfigErrorKind::NotForKind { key, kind } => {
                write!(f, "`{key}` does not apply to kind = {kind}")
            }
        }
    }
}

fn err(line: usize, kind: ConfigErrorKind) -> ConfigError {
    ConfigError { line, kind }
}

/// Parses a size: a number of bytes with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff` (unicast, not all-zero).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

fn valid_vm_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Default)]
struct VmDraft {
    line: usize,
    name: String,
    kind: Option<GuestKind>,
    image: Option<String>,
    memory: Option<u64>,
    cmdline: Option<String>,
    initrd: Option<String>,
    devices: Vec<DeviceConfig>,
    console_timestamps: bool,
    seen: Vec<String>,
}

fn bad(line: usize, key: &str, value: &str, expected: &'static str) -> ConfigError {
    err(
        line,
        ConfigErrorKind::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        },
    )
}

fn parse_disk(line: usize, key: &str, value: &str) -> Result<DeviceConfig, ConfigError> {
    const EXPECTED: &str = "size:SIZE or image:ENTRY, optionally followed by ,ro";
    let (source, read_only) = match value.strip_suffix(",ro") {
        Some(s) => (s, true),
        None => (value, false),
    };
    let source = if let Some(size) = source.strip_prefix("size:") {
        let size = parse_size(size)
            .filter(|s| *s > 0 && s % 512 == 0)
            .ok_or_else(|| bad(line, key, value, EXPECTED))?;
        DiskSource::Empty { size }
    } else if let Some(entry) = source.strip_prefix("image:") {
        if entry.is_empty() {
            return Err(bad(line, key, value, EXPECTED));
        }
        DiskSource::Image(entry.to_string())
    } else {
        return Err(bad(line, key, value, EXPECTED));
    };
    Ok(DeviceConfig::VirtioBlk { source, read_only })
}

impl Config {
    /// Parses `bulkhead.conf`.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let text = core::str::from_utf8(bytes).map_err(|_| err(0, ConfigErrorKind::NotUtf8))?;
        let mut hypervisor = HypervisorConfig {
            timeslice: DEFAULT_TIMESLICE,
        };
        let mut hv_seen: Vec<String> = Vec::new();
        let mut vms: Vec<VmDraft> = Vec::new();
        enum Section {
            None,
            Hypervisor,
            Vm,
        }
        let mut section = Section::None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = match raw.find('#') {
                Some(p) => &raw[..p],
                None => raw,
            }
            .trim();
            if l.is_empty() {
                continue;
            }
            if let Some(inner) = l.strip_prefix('[') {
                let inner = inner
                    .strip_suffix(']')
                    .ok_or_else(|| err(line, ConfigErrorKind::SyntaxError(l.to_string())))?
                    .trim();
                if inner == "hypervisor" {
                    section = Section::Hypervisor;
                } else if let Some(name) = inner.strip_prefix("vm ") {
                    let name = name.trim();
                    if !valid_vm_name(name) {
                        return Err(err(line, ConfigErrorKind::BadVmName(name.to_string())));
                    }
                    if vms.iter().any(|v| v.name == name) {
                        return Err(err(line, ConfigErrorKind::DuplicateVm(name.to_string())));
                    }
                    if vms.len() == MAX_VMS {
                        return Err(err(line, ConfigErrorKind::TooMany("VMs (at most 16)")));
                    }
                    vms.push(VmDraft {
                        line,
                        name: name.to_string(),
                        ..Default::default()
                    });
                    section = Section::Vm;
                } else {
                    return Err(err(
                        line,
                        ConfigErrorKind::UnknownSection(inner.to_string()),
                    ));
                }
                continue;
            }
            let (key, value) = l
                .split_once('=')
                .ok_or_else(|| err(line, ConfigErrorKind::SyntaxError(l.to_string())))?;
            let (key, value) = (key.trim(), value.trim());
            match section {
                Section::None => {
                    return Err(err(
                        line,
                        ConfigErrorKind::KeyOutsideSection(key.to_string()),
                    ))
                }
                Section::Hypervisor => {
                    if hv_seen.iter().any(|k| k == key) {
                        return Err(err(line, ConfigErrorKind::DuplicateKey(key.to_string())));
                    }
                    hv_seen.push(key.to_string());
                    match key {
                        "timeslice" => {
                            hypervisor.timeslice = value
                                .parse()
                                .ok()
                                .filter(|t| (10_000..=1_000_000_000_000).contains(t))
                                .ok_or_else(|| {
                                    bad(
                                        line,
                                        key,
                                        value,
                                        "a number of TSC ticks from 10000 to 10^12",
                                    )
                                })?;
                        }
                        _ => {
                            return Err(err(
                                line,
                                ConfigErrorKind::UnknownKey {
                                    section: "hypervisor".into(),
                                    key: key.to_string(),
                                },
                            ))
                        }
                    }
                }
                Section::Vm => {
                    let Some(vm) = vms.last_mut() else { continue };
                    let repeatable = matches!(key, "virtio-blk" | "virtio-net");
                    if !repeatable && vm.seen.iter().any(|k| k == key) {
                        return Err(err(line, ConfigErrorKind::DuplicateKey(key.to_string())));
                    }
                    vm.seen.push(key.to_string());
                    match key {
                        "kind" => {
                            vm.kind = Some(match value {
                                "elf64" => GuestKind::Elf64,
                                "real16" => GuestKind::Real16,
                                "linux" => GuestKind::Linux,
                                _ => return Err(bad(line, key, value, "elf64, real16 or linux")),
                            })
                        }
                        "image" | "initrd" => {
                            if value.is_empty() {
                                return Err(bad(
                                    line,
                                    key,
                                    value,
                                    "the name of a boot archive entry",
                                ));
                            }
                            let slot = if key == "image" {
                                &mut vm.image
                            } else {
                                &mut vm.initrd
                            };
                            *slot = Some(value.to_string());
                        }
                        "cmdline" => vm.cmdline = Some(value.to_string()),
                        "console-timestamps" => {
                            vm.console_timestamps = match value {
                                "yes" | "true" => true,
                                "no" | "false" => false,
                                _ => return Err(bad(line, key, value, "yes or no")),
                            }
                        }
                        "memory" => {
                            vm.memory = Some(
                                parse_size(value)
                                    .filter(|m| {
                                        (MIN_MEMORY..=MAX_MEMORY).contains(m) && m % (2 << 20) == 0
                                    })
                                    .ok_or_else(|| {
                                        bad(
                                            line,
                                            key,
                                            value,
                                            "a multiple of 2M from 4M to 3G, e.g. 64M",
                                        )
                                    })?,
                            )
                        }
                        "virtio-blk" | "virtio-net" => {
                            if vm.devices.len() == MAX_DEVICES {
                                return Err(err(
                                    line,
                                    ConfigErrorKind::TooMany("devices in one VM (at most 8)"),
                                ));
                            }
                            let dev = if key == "virtio-blk" {
                                parse_disk(line, key, value)?
                            } else {
                                DeviceConfig::VirtioNet {
                                    mac: parse_mac(value).ok_or_else(|| {
                                        bad(
                                            line,
                                            key,
                                            value,
                                            "a unicast MAC like 52:54:00:12:34:56",
                                        )
                                    })?,
                                }
                            };
                            vm.devices.push(dev);
                        }
                        _ => {
                            return Err(err(
                                line,
                                ConfigErrorKind::UnknownKey {
                                    section: alloc::format!("vm {}", vm.name),
                                    key: key.to_string(),
                                },
                            ))
                        }
                    }
                }
            }
        }
        if vms.is_empty() {
            return Err(err(0, ConfigErrorKind::NoVms));
        }
        let vms = vms
            .into_iter()
            .map(|d| {
                let missing = |key| {
                    err(
                        d.line,
                        ConfigErrorKind::MissingKey {
                            vm: d.name.clone(),
                            key,
                        },
                    )
                };
                let kind = d.kind.ok_or_else(|| missing("kind"))?;
                let image = d.image.clone().ok_or_else(|| missing("image"))?;
                let memory = d.memory.ok_or_else(|| missing("memory"))?;
                if kind != GuestKind::Linux {
                    let kind_name = if kind == GuestKind::Elf64 {
                        "elf64"
                    } else {
                        "real16"
                    };
                    if d.cmdline.is_some() {
                        return Err(err(
                            d.line,
                            ConfigErrorKind::NotForKind {
                                key: "cmdline",
                                kind: kind_name,
                            },
                        ));
                    }
                    if d.initrd.is_some() {
                        return Err(err(
                            d.line,
                            ConfigErrorKind::NotForKind {
                                key: "initrd",
                                kind: kind_name,
                            },
                        ));
                    }
                }
                Ok(VmConfig {
                    name: d.name,
                    kind,
                    image,
                    memory,
                    cmdline: d.cmdline,
                    initrd: d.initrd,
                    devices: d.devices,
                    console_timestamps: d.console_timestamps,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config { hypervisor, vms })
    }
}

impl VmConfig {
    /// Guest-physical base and IRQ of device `index` (docs/vm-platform.md).
    pub fn device_window(index: usize) -> (u64, u8) {
        (
            MMIO_BASE + index as u64 * MMIO_STRIDE,
            FIRST_DEVICE_IRQ + index as u8,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# two VMs
[hypervisor]
timeslice = 500000

[vm selftest]
kind = elf64
image = selftest.elf
memory = 16M
virtio-blk = size:1M

[vm linux]   # with devices
kind = linux
image = bzImage
initrd = initramfs.cpio.gz
memory = 128M
cmdline = console=ttyS0 quiet  # a comment
virtio-blk = image:disk.img,ro
virtio-net = 52:54:00:12:34:56
";

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(c.hypervisor.timeslice, 500_000);
        assert_eq!(c.vms.len(), 2);
        let s = &c.vms[0];
        assert_eq!(
            (s.name.as_str(), s.kind, s.image.as_str(), s.memory),
            ("selftest", GuestKind::Elf64, "selftest.elf", 16 << 20)
        );
        assert_eq!(
            s.devices,
            [DeviceConfig::VirtioBlk {
                source: DiskSource::Empty { size: 1 << 20 },
                read_only: false
            }]
        );
        let l = &c.vms[1];
        assert_eq!(l.cmdline.as_deref(), Some("console=ttyS0 quiet"));
        assert_eq!(l.initrd.as_deref(), Some("initramfs.cpio.gz"));
        assert_eq!(
            l.devices[0],
            DeviceConfig::VirtioBlk {
                source: DiskSource::Image("disk.img".into()),
                read_only: true
            }
        );
        assert_eq!(
            l.devices[1],
            DeviceConfig::VirtioNet {
                mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56]
            }
        );
        assert_eq!(VmConfig::device_window(1), (0xD000_1000, 6));
    }

    fn error_of(text: &str) -> ConfigError {
        Config::parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn every_mistake_names_its_line() {
        use ConfigErrorKind as K;
        assert_eq!(
            error_of("[vm a]\nkind elf64\n").kind,
            K::SyntaxError("kind elf64".into())
        );
        assert_eq!(error_of("[vm a]\nkind elf64\n").line, 2);
        assert!(matches!(error_of("[vms a]\n").kind, K::UnknownSection(_)));
        assert!(matches!(error_of("[vm A_B]\n").kind, K::BadVmName(_)));
        assert!(matches!(
            error_of("[vm a]\n[vm a]\n").kind,
            K::DuplicateVm(_)
        ));
        assert!(matches!(
            error_of("[vm a]\ncolour = red\n").kind,
            K::UnknownKey { .. }
        ));
        assert!(matches!(
            error_of("[vm a]\nmemory = 4M\nmemory = 4M\n").kind,
            K::DuplicateKey(_)
        ));
        assert!(matches!(
            error_of("kind = elf64\n").kind,
            K::KeyOutsideSection(_)
        ));
        assert!(matches!(
            error_of("[vm a]\nmemory = 5M\n").kind,
            K::BadValue { .. }
        ));
        assert!(matches!(
            error_of("[vm a]\nmemory = 4G\n").kind,
            K::BadValue { .. }
        ));
        assert!(matches!(
            error_of("[vm a]\nkind = bsd\n").kind,
            K::BadValue { .. }
        ));
        assert!(matches!(
            error_of("[vm a]\nvirtio-net = 01:00:00:00:00:01\n").kind,
            K::BadValue { .. }
        ));
        assert!(matches!(
            error_of("[vm a]\nvirtio-blk = size:1000\n").kind,
            K::BadValue { .. }
        ));
        assert!(matches!(
            error_of("[hypervisor]\ntimeslice = 5\n").kind,
            K::BadValue { .. }
        ));
        assert_eq!(
            error_of("[vm a]\nkind = elf64\nmemory = 4M\n").kind,
            K::MissingKey {
                vm: "a".into(),
                key: "image"
            }
        );
        assert_eq!(error_of("# nothing\n").kind, K::NoVms);
        assert!(matches!(
            error_of("[vm a]\nkind = elf64\nimage = x\nmemory = 4M\ncmdline = q\n").kind,
            K::NotForKind { .. }
        ));
        assert_eq!(Config::parse(&[0xff, 0xfe]).unwrap_err().kind, K::NotUtf8);
        let msg = alloc::format!("{}", error_of("[vm a]\nmemory = 5M\n"));
        assert!(
            msg.contains("line 2") && msg.contains("multiple of 2M"),
            "{msg}"
        );
    }

    #[test]
    fn sizes_and_macs() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(
            parse_mac("52:54:00:12:34:56"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
    }
}
