//! `bulkhead-boot config convert`: the old INI-like `bulkhead.conf` to `bulkhead.toml`.
//!
//! The old format (`[vm NAME]` sections, `key = value` lines, `#` comments, repeatable
//! `virtio-blk = size:SIZE|image:ENTRY[,ro]` and `virtio-net = MAC` keys) is read here only; the
//! hypervisor and `vm::config` know TOML alone. Comments are carried over; every output line
//! remembers the input line it came from, so when the result fails `vm::config`'s checks the
//! error names the line of the old file.

use std::fmt;
use vm::config::{Config, ConfigError};

/// A line of the old file that cannot be converted, or a converted file that fails the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// 1-based line of the old file (0: the whole file).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// The result: the TOML text, the checked configuration and notes for the user.
#[derive(Debug, Clone)]
pub struct Converted {
    pub toml: String,
    pub config: Config,
    pub notes: Vec<String>,
}

/// A TOML basic string (toml.io v1.0.0, "String": `"` and `\` escaped, control characters
/// as \uXXXX).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const OLD_VM_KEYS: &str = "kind, image, memory, cmdline, initrd, console-timestamps, \
                           virtio-blk, virtio-net";

/// One output line and the old line it came from.
struct Out {
    lines: Vec<(String, usize)>,
}

impl Out {
    fn push(&mut self, text: String, from: usize) {
        self.lines.push((text, from));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum DevKind {
    Blk,
    Net,
}

struct VmSection {
    name: String,
    keys: Vec<(String, usize)>,
    devices: Vec<(DevKind, Vec<String>, usize)>,
}

/// Converts the text of a `bulkhead.conf`.
pub fn convert(old: &str, source_name: &str) -> Result<Converted, ConvertError> {
    let err = |line, message: String| ConvertError { line, message };
    let mut out = Out { lines: Vec::new() };
    out.push(
        format!(
            "# Converted from {source_name} by `bulkhead-boot config convert` (docs/configuration.md)."
        ),
        0,
    );
    let mut notes = Vec::new();
    let mut vm: Option<VmSection> = None;
    let mut in_hypervisor = false;
    let mut seen_section = false;
    let old = old.strip_prefix('\u{feff}').unwrap_or(old);

    fn flush(out: &mut Out, vm: Option<VmSection>, notes: &mut Vec<String>) {
        let Some(mut vm) = vm else { return };
        // Blank lines that end the section go after its device tables.
        let mut trailing = Vec::new();
        while vm.keys.last().is_some_and(|(l, _)| l.is_empty()) {
            trailing.extend(vm.keys.pop());
        }
        for (l, from) in vm.keys {
            out.push(l, from);
        }
        let mut sorted = vm.devices.clone();
        sorted.sort_by_key(|(k, _, _)| *k == DevKind::Net);
        if sorted
            .iter()
            .map(|d| d.2)
            .ne(vm.devices.iter().map(|d| d.2))
        {
            notes.push(format!(
                "[vm.{}]: virtio-net came before virtio-blk in the old file; the devices' MMIO \
                 windows are now every virtio-blk first, then virtio-net, so the guest sees them \
                 in another order",
                vm.name
            ));
        }
        for (kind, body, from) in sorted {
            let dev = if kind == DevKind::Blk {
                "virtio-blk"
            } else {
                "virtio-net"
            };
            out.push(String::new(), from);
            out.push(format!("[[vm.{}.{dev}]]", vm.name), from);
            for l in body {
                out.push(l, from);
            }
        }
        for (l, from) in trailing {
            out.push(l, from);
        }
    }

    for (i, raw) in old.lines().enumerate() {
        let line = i + 1;
        let (body, comment) = match raw.find('#') {
            Some(p) => (&raw[..p], Some(raw[p..].trim_end())),
            None => (raw, None),
        };
        let body = body.trim();
        let tail = comment.map_or_else(String::new, |c| format!("  {c}"));
        if body.is_empty() {
            let text = comment.map_or_else(String::new, str::to_string);
            match &mut vm {
                Some(v) => v.keys.push((text, line)),
                None => out.push(text, line),
            }
            continue;
        }
        if let Some(inner) = body.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| err(line, format!("cannot read {body:?} as a [section]")))?
                .trim();
            flush(&mut out, vm.take(), &mut notes);
            seen_section = true;
            if inner == "hypervisor" {
                in_hypervisor = true;
                out.push(format!("[hypervisor]{tail}"), line);
            } else if let Some(name) = inner.strip_prefix("vm ") {
                in_hypervisor = false;
                let name = name.trim().to_string();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    return Err(err(
                        line,
                        format!(
                            "VM name {name:?} must be 1-32 characters of a-z, 0-9 and '-'; \
                             rename it before converting"
                        ),
                    ));
                }
                out.push(format!("[vm.{name}]{tail}"), line);
                vm = Some(VmSection {
                    name,
                    keys: Vec::new(),
                    devices: Vec::new(),
                });
            } else {
                return Err(err(
                    line,
                    format!(
                        "unknown section [{inner}]: the old format has [hypervisor] and [vm NAME]"
                    ),
                ));
            }
            continue;
        }
        let (key, value) = body.split_once('=').ok_or_else(|| {
            err(
                line,
                format!("cannot read {body:?}: the old format has `key = value` lines"),
            )
        })?;
        let (key, value) = (key.trim(), value.trim());
        if !seen_section {
            return Err(err(line, format!("`{key}` comes before any [section]")));
        }
        if in_hypervisor {
            if key != "timeslice" {
                return Err(err(
                    line,
                    format!("unknown key `{key}` in [hypervisor] (the old format has timeslice)"),
                ));
            }
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    line,
                    format!("timeslice = {value:?}: expected a number of TSC ticks"),
                ));
            }
            out.push(format!("timeslice = {value}{tail}"), line);
            continue;
        }
        let Some(v) = vm.as_mut() else {
            return Err(err(line, format!("`{key}` comes before any [section]")));
        };
        let size_value = |what: &str, s: &str| -> Result<String, ConvertError> {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(s.to_string())
            } else if vm::config::parse_size(s).is_some() {
                Ok(quote(s))
            } else {
                Err(err(
                    line,
                    format!("{what} = {s:?}: expected bytes or a number with K, M or G"),
                ))
            }
        };
        match key {
            "kind" | "image" | "initrd" | "cmdline" => {
                v.keys
                    .push((format!("{key} = {}{tail}", quote(value)), line));
            }
            "memory" => v.keys.push((
                format!("memory = {}{tail}", size_value("memory", value)?),
                line,
            )),
            "console-timestamps" => {
                let b = match value {
                    "yes" | "true" => "true",
                    "no" | "false" => "false",
                    _ => {
                        return Err(err(
                            line,
                            format!("console-timestamps = {value:?}: expected yes or no"),
                        ))
                    }
                };
                v.keys
                    .push((format!("console-timestamps = {b}{tail}"), line));
            }
            "virtio-blk" => {
                let (source, ro) = match value.strip_suffix(",ro") {
                    Some(s) => (s, true),
                    None => (value, false),
                };
                let mut body = Vec::new();
                if let Some(size) = source.strip_prefix("size:") {
                    body.push(format!("size = {}{tail}", size_value("size", size)?));
                } else if let Some(entry) = source.strip_prefix("image:") {
                    body.push(format!("image = {}{tail}", quote(entry)));
                } else {
                    return Err(err(
                        line,
                        format!(
                            "virtio-blk = {value:?}: expected size:SIZE or image:ENTRY, \
                             optionally followed by ,ro"
                        ),
                    ));
                }
                if ro {
                    body.push("read-only = true".into());
                }
                v.devices.push((DevKind::Blk, body, line));
            }
            "virtio-net" => {
                v.devices.push((
                    DevKind::Net,
                    vec![format!("mac = {}{tail}", quote(value))],
                    line,
                ));
            }
            _ => {
                return Err(err(
                    line,
                    format!(
                        "unknown key `{key}` in [vm {}] (the old format has {OLD_VM_KEYS})",
                        v.name
                    ),
                ))
            }
        }
    }
    flush(&mut out, vm.take(), &mut notes);
    let mut toml = String::new();
    for (l, _) in &out.lines {
        toml.push_str(l);
        toml.push('\n');
    }
    let config = Config::parse(toml.as_bytes()).map_err(|e: ConfigError| {
        let from = e
            .line
            .checked_sub(1)
            .and_then(|i| out.lines.get(i))
            .map_or(0, |(_, from)| *from);
        err(
            from,
            format!(
                "{} (in the converted text: {}); fix it in the old file and convert again",
                e.kind,
                e.located("bulkhead.toml")
            ),
        )
    })?;
    Ok(Converted {
        toml,
        config,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm::config::{DeviceConfig, DiskSource, GuestKind};

    const OLD: &str = "\
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
memory = 134217728
console-timestamps = yes
cmdline = console=ttyS0 quiet \"x\"  # a comment
virtio-blk = image:disk.img,ro
virtio-net = 52:54:00:12:34:56
";

    #[test]
    fn converts_every_old_key() {
        let c = convert(OLD, "bulkhead.conf").unwrap();
        assert_eq!(
            c.toml,
            "\
# Converted from bulkhead.conf by `bulkhead-boot config convert` (docs/configuration.md).
# two VMs
[hypervisor]
timeslice = 500000

[vm.selftest]
kind = \"elf64\"
image = \"selftest.elf\"
memory = \"16M\"

[[vm.selftest.virtio-blk]]
size = \"1M\"

[vm.linux]  # with devices
kind = \"linux\"
image = \"bzImage\"
initrd = \"initramfs.cpio.gz\"
memory = 134217728
console-timestamps = true
cmdline = \"console=ttyS0 quiet \\\"x\\\"\"  # a comment

[[vm.linux.virtio-blk]]
image = \"disk.img\"
read-only = true

[[vm.linux.virtio-net]]
mac = \"52:54:00:12:34:56\"
"
        );
        assert!(c.notes.is_empty());
        let cfg = &c.config;
        assert_eq!(cfg.hypervisor.timeslice, 500_000);
        assert_eq!(cfg.vms[0].name, "selftest");
        assert_eq!(
            cfg.vms[0].devices,
            [DeviceConfig::VirtioBlk {
                source: DiskSource::Empty { size: 1 << 20 },
                read_only: false
            }]
        );
        let l = &cfg.vms[1];
        assert_eq!((l.kind, l.memory), (GuestKind::Linux, 128 << 20));
        assert_eq!(l.cmdline.as_deref(), Some("console=ttyS0 quiet \"x\""));
        assert!(l.console_timestamps);
        assert_eq!(
            l.devices,
            [
                DeviceConfig::VirtioBlk {
                    source: DiskSource::Image("disk.img".into()),
                    read_only: true
                },
                DeviceConfig::VirtioNet {
                    mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                    network: None
                }
            ]
        );
    }

    #[test]
    fn reordered_devices_get_a_note() {
        let c = convert(
            "[vm a]\nkind = elf64\nimage = a\nmemory = 4M\nvirtio-net = 52:54:00:12:34:56\nvirtio-blk = size:1M\n",
            "x.conf",
        )
        .unwrap();
        assert_eq!(c.notes.len(), 1);
        assert!(c.notes[0].starts_with("[vm.a]: virtio-net came before virtio-blk"));
        assert!(matches!(
            c.config.vms[0].devices[0],
            DeviceConfig::VirtioBlk { .. }
        ));
    }

    #[test]
    fn old_mistakes_name_the_old_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("[vm a]\nkind elf64\n", 2, "cannot read \"kind elf64\": the old format has `key = value` lines"),
            ("[vms a]\n", 1, "unknown section [vms a]: the old format has [hypervisor] and [vm NAME]"),
            ("[vm A]\n", 1, "VM name \"A\" must be 1-32 characters of a-z, 0-9 and '-'; rename it before converting"),
            ("kind = elf64\n", 1, "`kind` comes before any [section]"),
            ("[hypervisor]\nspeed = 1\n", 2, "unknown key `speed` in [hypervisor] (the old format has timeslice)"),
            ("[hypervisor]\ntimeslice = fast\n", 2, "timeslice = \"fast\": expected a number of TSC ticks"),
            ("[vm a]\ncolour = red\n", 2, "unknown key `colour` in [vm a] (the old format has kind, image, memory, cmdline, initrd, console-timestamps, virtio-blk, virtio-net)"),
            ("[vm a]\nmemory = lots\n", 2, "memory = \"lots\": expected bytes or a number with K, M or G"),
            ("[vm a]\nconsole-timestamps = maybe\n", 2, "console-timestamps = \"maybe\": expected yes or no"),
            ("[vm a]\nvirtio-blk = disk:x\n", 2, "virtio-blk = \"disk:x\": expected size:SIZE or image:ENTRY, optionally followed by ,ro"),
            // Caught by vm::config after conversion, reported at the old line.
            (
                "[vm a]\nkind = elf64\nimage = a\nmemory = 5M\n",
                4,
                "memory = \"5M\": expected a multiple of 2M from 4M to 3328M, e.g. \"64M\" (in the \
                 converted text: bulkhead.toml:5:10: memory = \"5M\": expected a multiple of 2M \
                 from 4M to 3328M, e.g. \"64M\"); fix it in the old file and convert again",
            ),
            (
                "[vm a]\nkind = elf64\nimage = a\nmemory = 4M\nvirtio-blk = size:513\n",
                5,
                "size = 513: expected a multiple of 512 bytes, at least 512, e.g. \"1M\" (in the \
                 converted text: bulkhead.toml:8:8: size = 513: expected a multiple of 512 bytes, \
                 at least 512, e.g. \"1M\"); fix it in the old file and convert again",
            ),
        ];
        for (text, line, message) in cases {
            let e = convert(text, "bulkhead.conf").unwrap_err();
            assert_eq!((e.line, e.message.as_str()), (*line, *message), "{text:?}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\td\u{1}"), "\"a\\\"b\\\\c\\td\\u0001\"");
        assert_eq!(quote("größe"), "\"größe\"");
    }
}
