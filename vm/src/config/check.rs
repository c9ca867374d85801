//! From text to [`Config`]: TOML syntax (the `toml` parser), unknown keys and table shapes (a
//! walk over the spanned document), types (serde, [`super::schema`]), then values: ranges,
//! names, limits, kind-specific keys. Each error carries the span it is about.

use super::error::{at, closest, whole_file, ConfigError, ConfigErrorKind as K, KeyHint};
use super::schema::{
    fields_of, BlkToml, FileToml, HypervisorToml, NetToml, NetworkToml, Size, VmToml,
};
use super::*;
use alloc::format;
use alloc::string::ToString;
use core::ops::Range;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Every table kind with its keys, for "belongs in" hints.
fn tables() -> [(&'static str, &'static [&'static str]); 6] {
    [
        ("a [network.NAME] table", fields_of::<NetworkToml>()),
        ("the top level", fields_of::<FileToml>()),
        ("[hypervisor]", fields_of::<HypervisorToml>()),
        ("a [vm.NAME] table", fields_of::<VmToml>()),
        ("a [[vm.NAME.virtio-blk]] table", fields_of::<BlkToml>()),
        ("a [[vm.NAME.virtio-net]] table", fields_of::<NetToml>()),
    ]
}

pub(super) fn parse_text(text: &str) -> Result<Config, ConfigError> {
    let root = DeTable::parse(text).map_err(|e| {
        let message = e.message().trim_end();
        match e.span() {
            // TOML forbids defining a key or a table twice (toml.io v1.0.0, "Keys", "Table").
            Some(span) if message == "duplicate key" => {
                at(text, span.clone(), K::Duplicate(written(text, span)))
            }
            Some(span) => at(text, span, K::Syntax(message.to_string())),
            None => whole_file(K::Syntax(message.to_string())),
        }
    })?;
    let mut places = Vec::new();
    walk_root(text, root.get_ref(), &mut places)?;
    let file = FileToml::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // The innermost key whose value holds the error's position names it.
        let key = places
            .iter()
            .filter(|(_, s)| s.start <= span.start && span.start < s.end.max(s.start + 1))
            .min_by_key(|(_, s)| s.end - s.start)
            .map_or_else(String::new, |(k, _)| k.clone());
        at(
            text,
            span,
            K::WrongType {
                key,
                message: e.message().trim_end().to_string(),
            },
        )
    })?;
    convert(text, file)
}

/// Line and column of the value at `path` (table keys; array indices in decimal), for tools
/// that report on a file [`Config::parse`] accepted.
pub(super) fn value_position(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let root = DeTable::parse(text).ok()?;
    let (first, rest) = path.split_first()?;
    let mut value = root.get_ref().get(*first)?;
    for seg in rest {
        value = match value.get_ref() {
            DeValue::Table(t) => t.get(*seg)?,
            DeValue::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(super::error::line_column(text, value.span().start))
}

// ---- keys and table shapes ------------------------------------------------------------------

type Places = Vec<(String, Range<usize>)>;

fn unknown_key(
    text: &str,
    table: &str,
    key: &Spanned<alloc::borrow::Cow<'_, str>>,
    known: &'static [&'static str],
) -> ConfigError {
    let name = key.get_ref().as_ref();
    let hint = tables()
        .iter()
        .find(|(_, keys)| keys.contains(&name))
        .map(|(t, _)| KeyHint::OtherTable(t))
        .or_else(|| closest(name, known).map(KeyHint::Closest))
        .unwrap_or(KeyHint::Known(known));
    at(
        text,
        key.span(),
        K::UnknownKey {
            table: table.to_string(),
            key: name.to_string(),
            hint,
        },
    )
}

/// The table under `key`, or an error saying how to write one.
fn table_of<'a, 'i>(
    text: &str,
    key: &str,
    value: &'a Spanned<DeValue<'i>>,
    write: impl FnOnce() -> String,
) -> Result<&'a DeTable<'i>, ConfigError> {
    value.get_ref().as_table().ok_or_else(|| {
        at(
            text,
            value.span(),
            K::NotATable {
                key: key.to_string(),
                write: write(),
            },
        )
    })
}

/// Checks the keys of `table` against `known` and records where each value is.
fn keys(
    text: &str,
    name: &str,
    path: &str,
    table: &DeTable<'_>,
    known: &'static [&'static str],
    places: &mut Places,
) -> Result<(), ConfigError> {
    for (k, v) in table.iter() {
        if !known.contains(&k.get_ref().as_ref()) {
            return Err(unknown_key(text, name, k, known));
        }
        places.push((format!("{path}{}", k.get_ref()), v.span()));
    }
    Ok(())
}

fn walk_root(text: &str, root: &DeTable<'_>, places: &mut Places) -> Result<(), ConfigError> {
    keys(
        text,
        "the top level",
        "",
        root,
        fields_of::<FileToml>(),
        places,
    )?;
    if let Some(hv) = root.get("hypervisor") {
        let t = table_of(text, "hypervisor", hv, || {
            "[hypervisor] with timeslice = 2000000".into()
        })?;
        keys(
            text,
            "[hypervisor]",
            "hypervisor.",
            t,
            fields_of::<HypervisorToml>(),
            places,
        )?;
    }
    if let Some(nets) = root.get("network") {
        let nets = table_of(text, "network", nets, || {
            "one [network.NAME] table per network, e.g. [network.lan]".into()
        })?;
        for (name, net) in nets.iter() {
            let name = name.get_ref();
            let path = format!("network.{name}");
            let t = table_of(text, &path, net, || {
                "one [network.NAME] header per network, with gateway and uplink under it".into()
            })?;
            keys(
                text,
                &format!("[network.{name}]"),
                &format!("{path}."),
                t,
                fields_of::<NetworkToml>(),
                places,
            )?;
        }
    }
    let Some(vms) = root.get("vm") else {
        return Ok(());
    };
    let vms = table_of(text, "vm", vms, || {
        "one [vm.NAME] table per VM, e.g. [vm.selftest]".into()
    })?;
    for (name, vm) in vms.iter() {
        let name = name.get_ref();
        let path = format!("vm.{name}");
        let t = table_of(text, &path, vm, || {
            "one [vm.NAME] header per VM, with kind, image and memory under it (keys go in a \
             VM's table, not directly in [vm])"
                .into()
        })?;
        let table = format!("[vm.{name}]");
        keys(
            text,
            &table,
            &format!("{path}."),
            t,
            fields_of::<VmToml>(),
            places,
        )?;
        for (dev, known, example) in [
            (
                "virtio-blk",
                fields_of::<BlkToml>(),
                "with size = \"1M\" or image = \"disk.img\"",
            ),
            (
                "virtio-net",
                fields_of::<NetToml>(),
                "with mac = \"52:54:00:12:34:56\"",
            ),
        ] {
            let Some(v) = t.get(dev) else { continue };
            let write =
                || format!("one [[vm.{name}.{dev}]] table per device (double brackets), {example}");
            let not_array = || {
                at(
                    text,
                    v.span(),
                    K::NotATable {
                        key: format!("{path}.{dev}"),
                        write: write(),
                    },
                )
            };
            let entries = v.get_ref().as_array().ok_or_else(not_array)?;
            for (i, e) in entries.iter().enumerate() {
                let entry = format!("{path}.{dev}[{i}]");
                let et = table_of(text, &entry, e, write)?;
                keys(
                    text,
                    &format!("[[vm.{name}.{dev}]]"),
                    &format!("{entry}."),
                    et,
                    known,
                    places,
                )?;
            }
        }
    }
    Ok(())
}

// ---- values ---------------------------------------------------------------------------------

/// The text of `span` as written in the file.
pub(super) fn written(text: &str, span: Range<usize>) -> String {
    text.get(span).unwrap_or_default().to_string()
}

pub(super) fn bad(
    text: &str,
    key: &str,
    span: Range<usize>,
    expected: &'static str,
) -> ConfigError {
    at(
        text,
        span.clone(),
        K::BadValue {
            key: key.to_string(),
            value: written(text, span),
            expected,
        },
    )
}

/// A size key: parsed (integer bytes or a K/M/G string) and accepted by `ok`.
fn size(
    text: &str,
    key: &str,
    v: &Spanned<Size>,
    ok: impl Fn(u64) -> bool,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    let bytes = match v.get_ref() {
        Size::Integer(i) => u64::try_from(*i).ok(),
        Size::Text(t) => parse_size(t),
    };
    bytes
        .filter(|b| ok(*b))
        .ok_or_else(|| bad(text, key, v.span(), expected))
}

fn optional_size(
    text: &str,
    key: &str,
    v: &Option<Spanned<Size>>,
    default: u64,
    range: (u64, u64),
    expected: &'static str,
) -> Result<u64, ConfigError> {
    match v {
        Some(v) => size(text, key, v, |b| (range.0..=range.1).contains(&b), expected),
        None => Ok(default),
    }
}

/// An archive entry name: 1-55 bytes, a plain file name.
fn entry(text: &str, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
    let n = v.get_ref();
    if n.is_empty() || n.len() > MAX_ENTRY_NAME || n.contains(['/', '\0']) || n == "." || n == ".."
    {
        return Err(bad(
            text,
            key,
            v.span(),
            "the name of a file in the bundle directory (1-55 bytes, no '/'), e.g. \
             \"selftest.elf\"",
        ));
    }
    Ok(n.clone())
}

/// 1-32 characters of a-z, 0-9 and '-', starting with a letter: a console line's `[name]`
/// prefix can then never look like a hypervisor line's `[<tsc ticks>]` (docs/architecture.md).
pub(super) fn valid_vm_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn convert(text: &str, file: FileToml) -> Result<Config, ConfigError> {
    let mut hypervisor = HypervisorConfig {
        timeslice: DEFAULT_TIMESLICE,
        host_tick_hz: 0,
        store_check: false,
    };
    let (timeslice, host_tick) = match file.hypervisor {
        Some(h) => {
            hypervisor.store_check = h.store_check.is_some_and(|c| *c.get_ref());
            (h.timeslice, h.host_tick_hz)
        }
        None => (None, None),
    };
    if let Some(t) = host_tick {
        hypervisor.host_tick_hz = u32::try_from(*t.get_ref())
            .ok()
            .filter(|&hz| hz <= MAX_HOST_TICK_HZ)
            .ok_or_else(|| {
                bad(
                    text,
                    "host-tick-hz",
                    t.span(),
                    "a rate from 0 (no host tick) to 10000 Hz, e.g. 1000",
                )
            })?;
    }
    if let Some(t) = timeslice {
        hypervisor.timeslice = u64::try_from(*t.get_ref())
            .ok()
            .filter(|t| (MIN_TIMESLICE..=MAX_TIMESLICE).contains(t))
            .ok_or_else(|| {
                bad(
                    text,
                    "timeslice",
                    t.span(),
                    "a number of TSC ticks from 10000 to 1000000000000 (10^12), e.g. 2000000",
                )
            })?;
    }
    let mut vms: Vec<_> = file.vm.unwrap_or_default().into_iter().collect();
    vms.sort_by_key(|(name, _)| name.span().start);
    if vms.is_empty() {
        return Err(whole_file(K::NoVms));
    }
    if let Some((name, _)) = vms.get(MAX_VMS) {
        return Err(at(
            text,
            name.span(),
            K::TooManyVms {
                count: vms.len(),
                vm: name.get_ref().clone(),
            },
        ));
    }
    let networks = super::networks::parse(text, file.network)?;
    let mut attachments = Vec::new();
    let vms = vms
        .into_iter()
        .map(|(name, vm)| convert_vm(text, name, vm, &mut attachments))
        .collect::<Result<Vec<_>, _>>()?;
    super::cpus::check_conflicts(text, &vms)?;
    let vms: Vec<VmConfig> = vms.into_iter().map(|(vm, _)| vm).collect();
    super::networks::check_attachments(text, &networks, &attachments)?;
    Ok(Config {
        hypervisor,
        vms,
        networks,
    })
}

/// One VM, with the span of each of its `cpus` entries.
fn convert_vm(
    text: &str,
    name: Spanned<String>,
    vm: Spanned<VmToml>,
    attachments: &mut Vec<super::networks::Attachment>,
) -> Result<(VmConfig, Vec<Range<usize>>), ConfigError> {
    if !valid_vm_name(name.get_ref()) {
        return Err(at(text, name.span(), K::BadVmName(name.into_inner())));
    }
    let name = name.into_inner();
    let table = format!("[vm.{name}]");
    let span = vm.span();
    let v = vm.into_inner();
    let missing = |key, example| {
        at(
            text,
            span.clone(),
            K::MissingKey {
                table: table.clone(),
                key,
                example,
            },
        )
    };
    let kind_v = v.kind.ok_or_else(|| {
        missing(
            "kind",
            "\"elf64\" (or \"real16\", \"linux\", \"pvh\", \"multiboot\")",
        )
    })?;
    let kind = match kind_v.get_ref().as_str() {
        "elf64" => GuestKind::Elf64,
        "real16" => GuestKind::Real16,
        "linux" => GuestKind::Linux,
        "pvh" => GuestKind::Pvh,
        "multiboot" => GuestKind::Multiboot,
        _ => {
            return Err(bad(
                text,
                "kind",
                kind_v.span(),
                "\"elf64\", \"real16\", \"linux\", \"pvh\" or \"multiboot\"",
            ))
        }
    };
    let on_reboot = match &v.on_reboot {
        None => OnReboot::default(),
        Some(o) => match o.get_ref().as_str() {
            "restart" => OnReboot::Restart,
            "stop" => OnReboot::Stop,
            _ => return Err(bad(text, "on-reboot", o.span(), "\"restart\" or \"stop\"")),
        },
    };
    let source = match (&v.from_snapshot, &v.image) {
        (Some(snap), _) => {
            let clone_only = [
                ("image", &v.image),
                ("cmdline", &v.cmdline),
                ("initrd", &v.initrd),
            ];
            if let Some((key, Some(value))) = clone_only.into_iter().find(|(_, v)| v.is_some()) {
                return Err(at(text, value.span(), K::NotFromSnapshot { key }));
            }
            if crate::shell::SnapshotName::new(snap.get_ref()).is_none() {
                return Err(bad(
                    text,
                    "from-snapshot",
                    snap.span(),
                    "a snapshot name: 1 to 24 letters, digits, '-' or '_', e.g. \"booted\"",
                ));
            }
            GuestSource::Snapshot(snap.get_ref().clone())
        }
        (None, image) => GuestSource::Image(entry(
            text,
            "image",
            image
                .as_ref()
                .ok_or_else(|| missing("image", "\"selftest.elf\" (a file in the bundle)"))?,
        )?),
    };
    let memory = size(
        text,
        "memory",
        &v.memory.ok_or_else(|| missing("memory", "\"64M\""))?,
        |m| (MIN_MEMORY..=MAX_MEMORY).contains(&m) && m.is_multiple_of(MEMORY_ALIGN),
        "a multiple of 2M from 4M to 3328M, e.g. \"64M\"",
    )?;
    let cpu_keys = super::cpus::parse(text, &name, v.vcpus, v.cpus, v.dedicated)?;
    if !kind.takes_cmdline() {
        let linux_only = [("cmdline", &v.cmdline), ("initrd", &v.initrd)];
        if let Some((key, Some(value))) = linux_only.into_iter().find(|(_, v)| v.is_some()) {
            return Err(at(
                text,
                value.span(),
                K::NotForKind {
                    key,
                    kind: kind.name(),
                },
            ));
        }
    }
    let cmdline = match v.cmdline {
        Some(c) if c.get_ref().contains('\0') => {
            return Err(bad(
                text,
                "cmdline",
                c.span(),
                "a kernel command line without NUL characters",
            ))
        }
        Some(c) => Some(c.into_inner()),
        None => None,
    };
    let initrd = v
        .initrd
        .as_ref()
        .map(|i| entry(text, "initrd", i))
        .transpose()?;
    let heap_budget = v
        .heap_budget
        .as_ref()
        .map(|b| {
            size(
                text,
                "heap-budget",
                b,
                |b| {
                    (MIN_HEAP_BUDGET..=MAX_HEAP_BUDGET).contains(&b)
                        && b.is_multiple_of(HEAP_BUDGET_ALIGN)
                },
                "a multiple of 4K from 64K to 1G, e.g. \"8M\"",
            )
        })
        .transpose()?;
    let console_buffer = optional_size(
        text,
        "console-buffer",
        &v.console_buffer,
        DEFAULT_CONSOLE_BUFFER,
        (MIN_CONSOLE_BUFFER, MAX_CONSOLE_BUFFER),
        "a size from 1K to 1M, e.g. \"16K\"",
    )?;
    let console_rate = optional_size(
        text,
        "console-rate",
        &v.console_rate,
        DEFAULT_CONSOLE_RATE,
        (MIN_CONSOLE_RATE, MAX_CONSOLE_RATE),
        "bytes per second from 1K to 16M, e.g. \"32K\"",
    )?;

    let mut devices = Vec::new();
    let blk = v.virtio_blk.unwrap_or_default();
    let net = v.virtio_net.unwrap_or_default();
    let console = usize::from(v.virtio_console.is_some_and(|c| *c.get_ref()));
    if blk.len() + net.len() + console > MAX_DEVICES {
        return Err(at(
            text,
            span,
            K::TooManyDevices {
                vm: name,
                blk: blk.len(),
                net: net.len(),
                console,
            },
        ));
    }
    for (i, d) in blk.into_iter().enumerate() {
        let dspan = d.span();
        let d = d.into_inner();
        let given = usize::from(d.size.is_some())
            + usize::from(d.image.is_some())
            + usize::from(d.disk.is_some());
        let source = match (d.size, d.image, d.disk) {
            (Some(s), None, None) => DiskSource::Empty {
                size: size(
                    text,
                    "size",
                    &s,
                    |s| s >= SECTOR_SIZE && s.is_multiple_of(SECTOR_SIZE),
                    "a multiple of 512 bytes, at least 512, e.g. \"1M\"",
                )?,
            },
            (None, Some(img), None) => DiskSource::Image(entry(text, "image", &img)?),
            (None, None, Some(n)) => {
                if !crate::store::header::valid_name(n.get_ref()) {
                    return Err(bad(
                        text,
                        "disk",
                        n.span(),
                        "the name of a disk in a disk store: 1-32 characters of a-z, 0-9 and \
                         '-', a letter first, e.g. \"root\" (`bulkhead-boot disk ls` lists them)",
                    ));
                }
                DiskSource::Store(n.into_inner())
            }
            _ => {
                return Err(at(
                    text,
                    dspan,
                    K::DiskSource {
                        table: format!("virtio-blk entry {} of [vm.{name}]", i + 1),
                        both: given > 1,
                    },
                ))
            }
        };
        devices.push(DeviceConfig::VirtioBlk {
            source,
            read_only: d.read_only.is_some_and(|r| *r.get_ref()),
        });
    }
    for d in net {
        let dspan = d.span();
        let d = d.into_inner();
        let network = d.network;
        let mac = d.mac.ok_or_else(|| {
            at(
                text,
                dspan,
                K::MissingKey {
                    table: format!("[[vm.{name}.virtio-net]]"),
                    key: "mac",
                    example: "\"52:54:00:12:34:56\"",
                },
            )
        })?;
        let mac_bytes = parse_mac(mac.get_ref()).ok_or_else(|| {
            bad(
                text,
                "mac",
                mac.span(),
                "a unicast MAC like \"52:54:00:12:34:56\" (first byte even, not all zero)",
            )
        })?;
        attachments.push(super::networks::Attachment {
            vm: name.clone(),
            mac: mac_bytes,
            mac_span: mac.span(),
            network: network.as_ref().map(|n| (n.get_ref().clone(), n.span())),
        });
        devices.push(DeviceConfig::VirtioNet {
            mac: mac_bytes,
            network: network.map(Spanned::into_inner),
        });
    }
    if console == 1 {
        devices.push(DeviceConfig::VirtioConsole);
    }
    let vm = VmConfig {
        name,
        kind,
        source,
        memory,
        vcpus: cpu_keys.vcpus,
        cpus: cpu_keys.cpus,
        dedicated: cpu_keys.dedicated,
        cmdline,
        initrd,
        devices,
        console_timestamps: v.console_timestamps.is_some_and(|c| *c.get_ref()),
        kvm_pv: v.kvm_pv.map_or(kind.is_linux(), |k| *k.get_ref()),
        on_reboot,
        heap_budget,
        console_buffer,
        console_rate,
    };
    Ok((vm, cpu_keys.spans))
}
