use super::*;
use alloc::format;

mod networks;
mod values;

const FULL: &str = r#"# two VMs, every key
[hypervisor]
timeslice = 500000
host-tick-hz = 250
store-check = true

[vm.selftest]
kind = "elf64"
image = "selftest.elf"
memory = "16M"
console-timestamps = true
kvm-pv = true     # off by default for elf64
heap-budget = "8M"
console-buffer = "4K"
console-rate = 65536
virtio-console = true

[[vm.selftest.virtio-blk]]
size = "1M"

[vm.linux]   # with devices
kind = "linux"
image = "bzImage"
initrd = "initramfs.cpio.gz"
memory = 134217728
cmdline = "console=ttyS0 quiet"

[[vm.linux.virtio-net]]
mac = "52:54:00:12:34:56"
network = "lan"

[[vm.linux.virtio-blk]]
image = "disk.img"
read-only = true

[[vm.linux.virtio-blk]]
size = 512
read-only = false

[[vm.linux.virtio-blk]]
disk = "root-fs"

[vm.boot16]
kind = "real16"
image = "realmode.bin"
memory = "4M"
vcpus = 1
cpus = [0, 1]
on-reboot = "stop"

[vm.rt]      # a real-time partition: CPUs 2 and 3 run nothing else
kind = "elf64"
image = "selftest.elf"
memory = "4M"
vcpus = 2
cpus = [3, 2]
dedicated = true

[vm.clone1]  # an instant clone of the snapshot "booted" (no image: its RAM is the snapshot's)
kind = "linux"
from-snapshot = "booted"
memory = 134217728

[[vm.clone1.virtio-net]]
mac = "52:54:00:12:34:57"
network = "lan"

[network.lan]  # shared by the devices that name it
gateway = false
uplink = "e1000"
"#;

#[test]
fn parses_every_key() {
    let c = Config::parse(FULL.as_bytes()).unwrap();
    assert_eq!(c.hypervisor.timeslice, 500_000);
    assert_eq!(c.hypervisor.host_tick_hz, 250);
    assert!(c.hypervisor.store_check);
    // File order, not name order.
    let names: Vec<&str> = c.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["selftest", "linux", "boot16", "rt", "clone1"]);
    let clone = &c.vms[4];
    assert_eq!(clone.source, GuestSource::Snapshot("booted".into()));
    assert_eq!(
        (clone.image(), clone.from_snapshot()),
        (None, Some("booted"))
    );
    assert_eq!(c.vms[1].from_snapshot(), None);
    assert_eq!(
        c.vms[0],
        VmConfig {
            name: "selftest".into(),
            kind: GuestKind::Elf64,
            source: GuestSource::Image("selftest.elf".into()),
            memory: 16 << 20,
            vcpus: 1,
            cpus: None,
            dedicated: false,
            cmdline: None,
            initrd: None,
            devices: vec![
                DeviceConfig::VirtioBlk {
                    source: DiskSource::Empty { size: 1 << 20 },
                    read_only: false
                },
                DeviceConfig::VirtioConsole,
            ],
            console_timestamps: true,
            kvm_pv: true,
            on_reboot: OnReboot::Restart,
            heap_budget: Some(8 << 20),
            console_buffer: 4 << 10,
            console_rate: 64 << 10,
        }
    );
    let l = &c.vms[1];
    assert_eq!(
        (l.kind, l.image().unwrap(), l.memory),
        (GuestKind::Linux, "bzImage", 128 << 20)
    );
    assert_eq!(l.cmdline.as_deref(), Some("console=ttyS0 quiet"));
    assert_eq!(l.initrd.as_deref(), Some("initramfs.cpio.gz"));
    // Window order: every virtio-blk (in file order), then virtio-net, then the console.
    assert_eq!(
        l.devices,
        [
            DeviceConfig::VirtioBlk {
                source: DiskSource::Image("disk.img".into()),
                read_only: true
            },
            DeviceConfig::VirtioBlk {
                source: DiskSource::Empty { size: 512 },
                read_only: false
            },
            DeviceConfig::VirtioBlk {
                source: DiskSource::Store("root-fs".into()),
                read_only: false
            },
            DeviceConfig::VirtioNet {
                mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                network: Some("lan".into())
            },
        ]
    );
    // Defaults: KVM PV on for a Linux VM, off for the other kinds.
    assert!(l.kvm_pv);
    assert!(!c.vms[2].kvm_pv && !c.vms[3].kvm_pv);
    assert_eq!(
        (
            l.console_timestamps,
            l.heap_budget,
            l.console_buffer,
            l.console_rate
        ),
        (false, None, DEFAULT_CONSOLE_BUFFER, DEFAULT_CONSOLE_RATE)
    );
    assert_eq!(
        (DEFAULT_CONSOLE_BUFFER, DEFAULT_CONSOLE_RATE),
        (16384, 32768)
    );
    let b = &c.vms[2];
    assert_eq!(
        (b.kind, b.memory, b.devices.len()),
        (GuestKind::Real16, 4 << 20, 0)
    );
    assert_eq!(
        (b.vcpus, b.cpus.as_deref(), b.dedicated),
        (1, Some(&[0, 1][..]), false)
    );
    assert_eq!(
        (b.on_reboot, c.vms[3].on_reboot),
        (OnReboot::Stop, OnReboot::Restart)
    );
    let rt = &c.vms[3];
    assert_eq!(
        (rt.vcpus, rt.cpus.as_deref(), rt.dedicated),
        (2, Some(&[3, 2][..]), true)
    );
    assert_eq!(VmConfig::device_window(1), (0xD000_1000, 6));
    // Device 3 skips the RTC's IRQ 8 and device 4 the SCI's IRQ 9.
    assert_eq!(VmConfig::device_window(3), (0xD000_3000, 10));
    assert_eq!(VmConfig::device_window(4), (0xD000_4000, 11));
    assert_eq!(VmConfig::device_window(7), (0xD000_7000, 15));
    let irqs: std::collections::BTreeSet<u8> = (0..MAX_DEVICES)
        .map(|i| VmConfig::device_window(i).1)
        .collect();
    assert_eq!(irqs.len(), MAX_DEVICES, "every device has its own IRQ");
}

#[test]
fn minimal_file_defaults_and_inline_forms() {
    let c = Config::parse(
        b"vm.a = { kind = \"elf64\", image = \"a.elf\", memory = \"4M\", virtio-net = [{ mac = \"02:00:00:00:00:02\" }] }\n",
    )
    .unwrap();
    assert_eq!(c.hypervisor.timeslice, DEFAULT_TIMESLICE);
    assert_eq!(
        c.vms[0].devices,
        [DeviceConfig::VirtioNet {
            mac: [2, 0, 0, 0, 0, 2],
            network: None
        }]
    );
    // virtio-console = false adds no device.
    let c = Config::parse(
        b"[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nvirtio-console = false\n",
    )
    .unwrap();
    assert!(c.vms[0].devices.is_empty());
}

#[test]
fn accepts_a_utf8_bom() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(b"[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n");
    assert_eq!(Config::parse(&bytes).unwrap().vms[0].name, "a");
    // Positions after a BOM count from the first visible character.
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(b"[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"5M\"\n");
    let e = Config::parse(&bytes).unwrap_err();
    assert_eq!((e.line, e.column), (4, 10));
}

/// Each case: the file, the error's line and column, and its message (without the position).
const ERRORS: &[(&str, usize, usize, &str)] = &[
    // Not TOML.
    (
        "[vm a]\n",
        1,
        4,
        "not valid TOML: unclosed table, expected `]` (strings need double quotes, e.g. \
         memory = \"64M\"; VM tables are [vm.NAME])",
    ),
    (
        "[vm.a]\nmemory = 64M\n",
        2,
        10,
        "not valid TOML: string values must be quoted, expected literal string (strings need \
         double quotes, e.g. memory = \"64M\"; VM tables are [vm.NAME])",
    ),
    (
        "[vm.a]\nmemory = \"4M\"\nmemory = \"4M\"\n",
        3,
        1,
        "`memory` is defined twice (a key twice in one table, or a [table] header repeated): \
         keep one",
    ),
    (
        "[vm.a]\n[vm.a]\n",
        2,
        5,
        "`a` is defined twice (a key twice in one table, or a [table] header repeated): keep one",
    ),
    // Unknown keys, with the closest known one, the table it belongs in, or the list.
    (
        "[vm.a]\nmemroy = \"4M\"\n",
        2,
        1,
        "unknown key `memroy` in [vm.a]; did you mean `memory`?",
    ),
    (
        "[vm.a]\nvirtio_blk = []\n",
        2,
        1,
        "unknown key `virtio_blk` in [vm.a]; did you mean `virtio-blk`?",
    ),
    (
        "[vm.a]\ntimeslice = 5\n",
        2,
        1,
        "unknown key `timeslice` in [vm.a]; `timeslice` belongs in [hypervisor]",
    ),
    (
        "kind = \"elf64\"\n",
        1,
        1,
        "unknown key `kind` in the top level; `kind` belongs in a [vm.NAME] table",
    ),
    (
        "[vms.a]\n",
        1,
        2,
        "unknown key `vms` in the top level; did you mean `vm`?",
    ),
    (
        "[hypervisor]\ntimeslise = 1\n",
        2,
        1,
        "unknown key `timeslise` in [hypervisor]; did you mean `timeslice`?",
    ),
    (
        "[hypervisor]\nverbose = true\n",
        2,
        1,
        "unknown key `verbose` in [hypervisor]; the keys here are `timeslice`, `host-tick-hz`, `store-check`",
    ),
    (
        "[vm.a]\n[[vm.a.virtio-blk]]\nsize = \"1M\"\nreadonly = true\n",
        4,
        1,
        "unknown key `readonly` in [[vm.a.virtio-blk]]; did you mean `read-only`?",
    ),
    (
        "[vm.a]\n[[vm.a.virtio-net]]\nmca = \"52:54:00:12:34:56\"\n",
        3,
        1,
        "unknown key `mca` in [[vm.a.virtio-net]]; the keys here are `mac`, `network`",
    ),
    (
        "[vm.a]\n[[vm.a.virtio-net]]\nimage = \"x\"\n",
        3,
        1,
        "unknown key `image` in [[vm.a.virtio-net]]; `image` belongs in a [vm.NAME] table",
    ),
    (
        "[vm.a]\nkind = \"linux\"\nfrom-snapshot = \"s1\"\nimage = \"bzImage\"\nmemory = \"64M\"\n",
        4,
        9,
        "`image` does not apply to a VM with `from-snapshot`: its RAM, kernel and command line \
         are the snapshot's; remove `image`",
    ),
    (
        "[vm.a]\nkind = \"linux\"\nfrom-snapshot = \"s1\"\ncmdline = \"quiet\"\nmemory = \"64M\"\n",
        4,
        11,
        "`cmdline` does not apply to a VM with `from-snapshot`: its RAM, kernel and command \
         line are the snapshot's; remove `cmdline`",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nfrom-snapshot = \"a b\"\nmemory = \"16M\"\n",
        3,
        17,
        "from-snapshot = \"a b\": expected a snapshot name: 1 to 24 letters, digits, '-' or '_', \
         e.g. \"booted\"",
    ),
    (
        "[vm.a]\ncolour = 1\n",
        2,
        1,
        "unknown key `colour` in [vm.a]; the keys here are `kind`, `image`, `from-snapshot`, `memory`, \
         `vcpus`, `cpus`, `dedicated`, `console-timestamps`, `kvm-pv`, `on-reboot`, `cmdline`, `initrd`, `heap-budget`, \
         `console-buffer`, \
         `console-rate`, `virtio-console`, `virtio-blk`, `virtio-net`",
    ),
    // Tables where tables belong.
    (
        "hypervisor = 1\n",
        1,
        14,
        "`hypervisor` must be a table: write [hypervisor] with timeslice = 2000000",
    ),
    (
        "vm = \"a\"\n",
        1,
        6,
        "`vm` must be a table: write one [vm.NAME] table per VM, e.g. [vm.selftest]",
    ),
    (
        "[vm]\nkind = \"elf64\"\n",
        2,
        8,
        "`vm.kind` must be a table: write one [vm.NAME] header per VM, with kind, image and \
         memory under it (keys go in a VM's table, not directly in [vm])",
    ),
    (
        "[vm.a]\nvirtio-blk = \"size:1M\"\n",
        2,
        14,
        "`vm.a.virtio-blk` must be a table: write one [[vm.a.virtio-blk]] table per device \
         (double brackets), with size = \"1M\" or image = \"disk.img\"",
    ),
    (
        "[vm.a]\n[vm.a.virtio-net]\nmac = \"52:54:00:12:34:56\"\n",
        2,
        1,
        "`vm.a.virtio-net` must be a table: write one [[vm.a.virtio-net]] table per device \
         (double brackets), with mac = \"52:54:00:12:34:56\"",
    ),
    (
        "[vm.a]\nvirtio-net = [\"52:54:00:12:34:56\"]\n",
        2,
        15,
        "`vm.a.virtio-net[0]` must be a table: write one [[vm.a.virtio-net]] table per device \
         (double brackets), with mac = \"52:54:00:12:34:56\"",
    ),
    // Wrong TOML types.
    (
        "[vm.a]\nimage = 5\n",
        2,
        9,
        "`vm.a.image`: invalid type: integer `5`, expected a string",
    ),
    (
        "[vm.a]\nconsole-timestamps = \"yes\"\n",
        2,
        22,
        "`vm.a.console-timestamps`: invalid type: string \"yes\", expected a boolean",
    ),
    (
        "[vm.a]\nmemory = true\n",
        2,
        10,
        "`vm.a.memory`: invalid type: boolean `true`, expected a size: a whole number of bytes \
         (4096) or a string with K, M or G (\"64M\")",
    ),
    (
        "[hypervisor]\nhost-tick-hz = 10001\n[vm.a]\n",
        2,
        16,
        "host-tick-hz = 10001: expected a rate from 0 (no host tick) to 10000 Hz, e.g. 1000",
    ),
    (
        "[hypervisor]\ntimeslice = \"2000000\"\n",
        2,
        13,
        "`hypervisor.timeslice`: invalid type: string \"2000000\", expected i64",
    ),
    (
        "[vm.a]\nvirtio-console = 1\n",
        2,
        18,
        "`vm.a.virtio-console`: invalid type: integer `1`, expected a boolean",
    ),
    (
        "[vm.a]\n[[vm.a.virtio-blk]]\nsize = \"1M\"\nread-only = \"no\"\n",
        4,
        13,
        "`vm.a.virtio-blk[0].read-only`: invalid type: string \"no\", expected a boolean",
    ),
    // Values.
    (
        "[hypervisor]\ntimeslice = 5\n[vm.a]\n",
        2,
        13,
        "timeslice = 5: expected a number of TSC ticks from 10000 to 1000000000000 (10^12), \
         e.g. 2000000",
    ),
    (
        "[hypervisor]\ntimeslice = 1000000000001\n[vm.a]\n",
        2,
        13,
        "timeslice = 1000000000001: expected a number of TSC ticks from 10000 to 1000000000000 \
         (10^12), e.g. 2000000",
    ),
    (
        "[vm.A_B]\n",
        1,
        5,
        "VM name \"A_B\" must be 1-32 characters of a-z, 0-9 and '-' starting with a letter, e.g. [vm.linux-1]",
    ),
    (
        "[vm.abcdefghijabcdefghijabcdefghijabc]\n",
        1,
        5,
        "VM name \"abcdefghijabcdefghijabcdefghijabc\" must be 1-32 characters of a-z, 0-9 and \
         '-' starting with a letter, e.g. [vm.linux-1]",
    ),
    (
        "[vm.12345]\n",
        1,
        5,
        "VM name \"12345\" must be 1-32 characters of a-z, 0-9 and '-' starting with a letter, e.g. [vm.linux-1]",
    ),
    (
        "[vm.\"\"]\n",
        1,
        5,
        "VM name \"\" must be 1-32 characters of a-z, 0-9 and '-' starting with a letter, e.g. [vm.linux-1]",
    ),
    (
        "[vm.a]\nimage = \"a\"\nmemory = \"4M\"\n",
        1,
        1,
        "[vm.a] needs `kind`, e.g. kind = \"elf64\" (or \"real16\", \"linux\", \"pvh\", \"multiboot\")",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nmemory = \"4M\"\n",
        1,
        1,
        "[vm.a] needs `image`, e.g. image = \"selftest.elf\" (a file in the bundle)",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\n",
        1,
        1,
        "[vm.a] needs `memory`, e.g. memory = \"64M\"",
    ),
    (
        "[vm.a]\nkind = \"bsd\"\n",
        2,
        8,
        "kind = \"bsd\": expected \"elf64\", \"real16\", \"linux\", \"pvh\" or \"multiboot\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"\"\nmemory = \"4M\"\n",
        3,
        9,
        "image = \"\": expected the name of a file in the bundle directory (1-55 bytes, no '/'), \
         e.g. \"selftest.elf\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"dir/a.elf\"\nmemory = \"4M\"\n",
        3,
        9,
        "image = \"dir/a.elf\": expected the name of a file in the bundle directory (1-55 bytes, \
         no '/'), e.g. \"selftest.elf\"",
    ),
    (
        "[vm.a]\nkind = \"linux\"\nimage = \"a\"\nmemory = \"64M\"\ninitrd = \"0123456789012345678901234567890123456789012345678901234567\"\n",
        5,
        10,
        "initrd = \"0123456789012345678901234567890123456789012345678901234567\": expected the \
         name of a file in the bundle directory (1-55 bytes, no '/'), e.g. \"selftest.elf\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncmdline = \"q\"\n",
        5,
        11,
        "`cmdline` applies only to kind = \"linux\", this VM is kind = \"elf64\": remove it",
    ),
    (
        "[vm.a]\nkind = \"real16\"\nimage = \"a\"\nmemory = \"4M\"\ninitrd = \"i\"\n",
        5,
        10,
        "`initrd` applies only to kind = \"linux\", this VM is kind = \"real16\": remove it",
    ),
    (
        "[vm.a]\nkind = \"linux\"\nimage = \"a\"\nmemory = \"64M\"\ncmdline = \"a\\u0000b\"\n",
        5,
        11,
        "cmdline = \"a\\u0000b\": expected a kernel command line without NUL characters",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nheap-budget = \"60K\"\n",
        5,
        15,
        "heap-budget = \"60K\": expected a multiple of 4K from 64K to 1G, e.g. \"8M\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nheap-budget = 65537\n",
        5,
        15,
        "heap-budget = 65537: expected a multiple of 4K from 64K to 1G, e.g. \"8M\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nheap-budget = \"2G\"\n",
        5,
        15,
        "heap-budget = \"2G\": expected a multiple of 4K from 64K to 1G, e.g. \"8M\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nconsole-buffer = 1023\n",
        5,
        18,
        "console-buffer = 1023: expected a size from 1K to 1M, e.g. \"16K\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nconsole-buffer = \"2M\"\n",
        5,
        18,
        "console-buffer = \"2M\": expected a size from 1K to 1M, e.g. \"16K\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nconsole-rate = 0\n",
        5,
        16,
        "console-rate = 0: expected bytes per second from 1K to 16M, e.g. \"32K\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nconsole-rate = \"17M\"\n",
        5,
        16,
        "console-rate = \"17M\": expected bytes per second from 1K to 16M, e.g. \"32K\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-blk]]\nsize = 0\n",
        6,
        8,
        "size = 0: expected a multiple of 512 bytes, at least 512, e.g. \"1M\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-blk]]\nsize = 513\n",
        6,
        8,
        "size = 513: expected a multiple of 512 bytes, at least 512, e.g. \"1M\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-blk]]\nsize = \"1000\"\n",
        6,
        8,
        "size = \"1000\": expected a multiple of 512 bytes, at least 512, e.g. \"1M\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-blk]]\nsize = \"1M\"\nimage = \"d\"\n",
        5,
        1,
        "virtio-blk entry 1 of [vm.a] has more than one of `size`, `image` and `disk`: give \
         exactly one, size = \"1M\" for an empty RAM disk, image = \"disk.img\" for a \
         copy-on-write disk over a bundle file or disk = \"root\" for a disk of a disk store",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-blk]]\nsize = \"1M\"\n[[vm.a.virtio-blk]]\nread-only = true\n",
        7,
        1,
        "virtio-blk entry 2 of [vm.a] has none of `size`, `image` and `disk`: give exactly \
         one, size = \"1M\" for an empty RAM disk, image = \"disk.img\" for a copy-on-write \
         disk over a bundle file or disk = \"root\" for a disk of a disk store",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-blk]]\nimage = \"d\"\ndisk = \"root\"\n",
        5,
        1,
        "virtio-blk entry 1 of [vm.a] has more than one of `size`, `image` and `disk`: give \
         exactly one, size = \"1M\" for an empty RAM disk, image = \"disk.img\" for a \
         copy-on-write disk over a bundle file or disk = \"root\" for a disk of a disk store",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-blk]]\ndisk = \"Root\"\n",
        6,
        8,
        "disk = \"Root\": expected the name of a disk in a disk store: 1-32 characters of a-z, \
         0-9 and '-', a letter first, e.g. \"root\" (`bulkhead-boot disk ls` lists them)",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-blk]]\nimage = \"\"\n",
        6,
        9,
        "image = \"\": expected the name of a file in the bundle directory (1-55 bytes, no '/'), \
         e.g. \"selftest.elf\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-net]]\n",
        5,
        1,
        "[[vm.a.virtio-net]] needs `mac`, e.g. mac = \"52:54:00:12:34:56\"",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-net]]\nmac = \"01:00:00:00:00:01\"\n",
        6,
        7,
        "mac = \"01:00:00:00:00:01\": expected a unicast MAC like \"52:54:00:12:34:56\" (first \
         byte even, not all zero)",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-net]]\nmac = \"00:00:00:00:00:00\"\n",
        6,
        7,
        "mac = \"00:00:00:00:00:00\": expected a unicast MAC like \"52:54:00:12:34:56\" (first \
         byte even, not all zero)",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n[[vm.a.virtio-net]]\nmac = \"52-54-00-12-34-56\"\n",
        6,
        7,
        "mac = \"52-54-00-12-34-56\": expected a unicast MAC like \"52:54:00:12:34:56\" (first \
         byte even, not all zero)",
    ),
    // vcpus, cpus, dedicated.
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nvcpus = 0\n",
        5,
        9,
        "vcpus = 0: expected a number of vCPUs from 1 to 16, e.g. 2",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nvcpus = 17\n",
        5,
        9,
        "vcpus = 17: expected a number of vCPUs from 1 to 16, e.g. 2",
    ),
    (
        "[vm.a]\nvcpus = \"2\"\n",
        2,
        9,
        "`vm.a.vcpus`: invalid type: string \"2\", expected i64",
    ),
    (
        "[vm.a]\ncpus = 2\n",
        2,
        8,
        "`vm.a.cpus`: invalid type: integer `2`, expected a sequence",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = []\n",
        5,
        8,
        "cpus = []: expected one or more physical CPU indexes from 0 to 255 (0 is the boot \
         CPU), e.g. [1, 2]; leave `cpus` out to run on the shared pool",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [1, 256]\n",
        5,
        12,
        "cpus = [1, 256]: expected one or more physical CPU indexes from 0 to 255 (0 is the \
         boot CPU), e.g. [1, 2]; leave `cpus` out to run on the shared pool",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [-1]\n",
        5,
        9,
        "cpus = [-1]: expected one or more physical CPU indexes from 0 to 255 (0 is the boot \
         CPU), e.g. [1, 2]; leave `cpus` out to run on the shared pool",
    ),
    (
        "[vm.a]\ncpus = [1, \"2\"]\n",
        2,
        12,
        "`vm.a.cpus`: invalid type: string \"2\", expected i64",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [1, 2, 1]\n",
        5,
        15,
        "[vm.a] lists CPU 1 twice in `cpus`: list each physical CPU once (vCPUs beyond the \
         list wrap around it: vCPU i runs on cpus[i % len])",
    ),
    (
        "[vm.a]\ndedicated = \"yes\"\n",
        2,
        13,
        "`vm.a.dedicated`: invalid type: string \"yes\", expected a boolean",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ndedicated = true\n",
        5,
        13,
        "[vm.a] is dedicated but has no `cpus`: name the physical CPUs it owns, one per vCPU, \
         e.g. cpus = [1], or remove `dedicated`",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nvcpus = 3\ncpus = [1, 2]\ndedicated = true\n",
        6,
        8,
        "more dedicated vCPUs than CPUs: [vm.a] has vcpus = 3 but 2 CPUs in `cpus`, and each \
         dedicated vCPU needs a CPU of its own; list 1 more or set vcpus = 2",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nvcpus = 4\ncpus = [1]\ndedicated = true\n",
        6,
        8,
        "more dedicated vCPUs than CPUs: [vm.a] has vcpus = 4 but 1 CPU in `cpus`, and each \
         dedicated vCPU needs a CPU of its own; list 3 more or set vcpus = 1",
    ),
    (
        "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [1, 2]\ndedicated = true\n\
         [vm.b]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [3, 2]\ndedicated = true\n",
        11,
        12,
        "CPU 2 is given to two dedicated VMs, [vm.a] and [vm.b]: a dedicated VM owns its CPUs; \
         give [vm.b] other CPUs",
    ),
    (
        "[vm.rt]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [1]\ndedicated = true\n\
         [vm.b]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n\
         [vm.c]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [0, 1]\n",
        15,
        12,
        "CPU 1 belongs to the dedicated [vm.rt] and is also in the `cpus` of [vm.c]: a \
         dedicated VM's CPUs run nothing else; remove CPU 1 from [vm.c]",
    ),
    (
        "[vm.c]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [0, 1]\n\
         [vm.rt]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\ncpus = [1]\ndedicated = true\n",
        10,
        9,
        "CPU 1 belongs to the dedicated [vm.rt] and is also in the `cpus` of [vm.c]: a \
         dedicated VM's CPUs run nothing else; remove CPU 1 from [vm.c]",
    ),
    // Column counts characters, not bytes.
    (
        "# größe\n[vm.a]\nkind = \"elf64\"\nimage = \"ä\"\nmemory = \"5M\" # ü\n",
        5,
        10,
        "memory = \"5M\": expected a multiple of 2M from 4M to 3328M, e.g. \"64M\"",
    ),
];

#[test]
fn every_error_names_its_line_column_and_fix() {
    for (text, line, column, message) in ERRORS {
        let e = Config::parse(text.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{text:?} parsed"));
        assert_eq!(
            (e.line, e.column, e.kind.to_string().as_str()),
            (*line, *column, *message),
            "{text:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("bulkhead.toml:{line}:{column}: {message}")
        );
    }
}

/// Placements the file alone cannot fault: pinned VMs may share CPUs and wrap around their
/// list, a dedicated VM may own more CPUs than it has vCPUs, `dedicated = false` needs no
/// `cpus`, and pool VMs sit beside dedicated ones (whether CPUs remain is a boot-time check,
/// vm::placement).
#[test]
fn placements_the_file_accepts() {
    let vm = |name: &str, keys: &str| {
        format!("[vm.{name}]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n{keys}")
    };
    let file = vm("a", "vcpus = 16\ncpus = [1, 2]\n")
        + &vm("b", "vcpus = 2\ncpus = [2, 1]\n")
        + &vm("rt", "cpus = [3, 4, 5]\ndedicated = true\n")
        + &vm("pool", "vcpus = 4\ndedicated = false\n")
        + &vm("edge", "cpus = [0, 255]\n");
    let c = Config::parse(file.as_bytes()).unwrap();
    let keys: Vec<(u32, Option<&[u32]>, bool)> = c
        .vms
        .iter()
        .map(|v| (v.vcpus, v.cpus.as_deref(), v.dedicated))
        .collect();
    assert_eq!(
        keys,
        [
            (16, Some(&[1, 2][..]), false),
            (2, Some(&[2, 1][..]), false),
            (1, Some(&[3, 4, 5][..]), true),
            (4, None, false),
            (1, Some(&[0, 255][..]), false),
        ]
    );
    assert_eq!((MAX_VCPUS, MAX_CPU_INDEX), (16, 255));
}

#[test]
fn whole_file_errors() {
    for text in [
        "",
        "# nothing\n",
        "[hypervisor]\ntimeslice = 2000000\n",
        "[vm]\n",
    ] {
        let e = Config::parse(text.as_bytes()).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::NoVms, "{text:?}");
        assert_eq!(
            e.to_string(),
            "bulkhead.toml: no [vm.NAME] table: nothing to run; add one with kind, image and \
             memory (docs/configuration.md)"
        );
    }
    let e = Config::parse(b"[vm.a]\nimage = \"\xff\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.kind.clone()),
        (2, 10, ConfigErrorKind::NotUtf8)
    );
    assert_eq!(
        e.to_string(),
        "bulkhead.toml:2:10: the file is not UTF-8 text; save it as UTF-8"
    );
    assert_eq!(
        format!("{}", e.located("bundle/bulkhead.toml")),
        "bundle/bulkhead.toml:2:10: the file is not UTF-8 text; save it as UTF-8"
    );
}

/// An old bulkhead.conf is not TOML: the first error points at its section header.
#[test]
fn old_format_is_refused_with_a_hint() {
    let e = Config::parse(b"[vm selftest]\nkind = elf64\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 4));
    assert!(e.to_string().contains("VM tables are [vm.NAME]"), "{e}");
}

/// Every key the schema declares is exercised by FULL (so this file covers every key).
#[test]
fn full_example_uses_every_key() {
    use super::schema::{
        fields_of, BlkToml, FileToml, HypervisorToml, NetToml, NetworkToml, VmToml,
    };
    for keys in [
        fields_of::<NetworkToml>(),
        fields_of::<FileToml>(),
        fields_of::<HypervisorToml>(),
        fields_of::<VmToml>(),
        fields_of::<BlkToml>(),
        fields_of::<NetToml>(),
    ] {
        assert!(!keys.is_empty());
        for k in keys {
            let as_key = format!("\n{k} = ");
            let as_table = format!("[{k}");
            let dotted = format!(".{k}]");
            assert!(
                FULL.contains(&as_key) || FULL.contains(&as_table) || FULL.contains(&dotted),
                "key {k} is not in FULL"
            );
        }
    }
    assert_eq!(fields_of::<NetToml>(), ["mac", "network"]);
    assert_eq!(fields_of::<NetworkToml>(), ["gateway", "uplink"]);
    assert_eq!(
        fields_of::<BlkToml>(),
        ["size", "image", "disk", "read-only"]
    );
}

#[test]
fn pvh_and_multiboot_kinds_take_cmdline_and_initrd() {
    let c = Config::parse(
        b"[vm.p]\nkind = \"pvh\"\nimage = \"vmlinux\"\nmemory = \"128M\"\ncmdline = \"console=ttyS0\"\ninitrd = \"initramfs.cpio.gz\"\n\
          [vm.m]\nkind = \"multiboot\"\nimage = \"mb.elf\"\nmemory = \"16M\"\ncmdline = \"check\"\ninitrd = \"module.bin\"\n",
    )
    .unwrap();
    let (p, m) = (&c.vms[0], &c.vms[1]);
    assert_eq!(
        (p.kind, p.kind.name(), p.kind.is_linux()),
        (GuestKind::Pvh, "pvh", true)
    );
    assert_eq!(p.initrd.as_deref(), Some("initramfs.cpio.gz"));
    assert_eq!(
        (m.kind, m.kind.name(), m.kind.is_linux()),
        (GuestKind::Multiboot, "multiboot", false)
    );
    assert_eq!(
        (m.cmdline.as_deref(), m.initrd.as_deref()),
        (Some("check"), Some("module.bin"))
    );
}

#[test]
fn on_reboot_restarts_by_default_and_takes_two_values() {
    for (key, expected) in [
        ("", OnReboot::Restart),
        ("on-reboot = \"restart\"\n", OnReboot::Restart),
        ("on-reboot = \"stop\"\n", OnReboot::Stop),
    ] {
        let text = format!("[vm.g]\nkind = \"linux\"\nimage = \"k\"\nmemory = \"64M\"\n{key}");
        let c = Config::parse(text.as_bytes()).unwrap();
        assert_eq!(c.vms[0].on_reboot, expected, "{text}");
    }
    let err = Config::parse(
        b"[vm.g]\nkind = \"linux\"\nimage = \"k\"\nmemory = \"64M\"\non-reboot = \"reset\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("on-reboot = \"reset\": expected \"restart\" or \"stop\""),
        "{err}"
    );
}

#[test]
fn kvm_pv_can_be_withheld_from_a_linux_vm() {
    for (kind, key, expected) in [
        ("linux", "", true),
        ("pvh", "", true),
        ("linux", "kvm-pv = false\n", false),
        ("pvh", "kvm-pv = false\n", false),
        ("multiboot", "", false),
        ("elf64", "kvm-pv = true\n", true),
    ] {
        let text = format!("[vm.g]\nkind = \"{kind}\"\nimage = \"k\"\nmemory = \"64M\"\n{key}");
        let c = Config::parse(text.as_bytes()).unwrap();
        assert_eq!(c.vms[0].kvm_pv, expected, "{text}");
    }
    let err = Config::parse(
        b"[vm.g]\nkind = \"linux\"\nimage = \"k\"\nmemory = \"64M\"\nkvm-pv = \"no\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`vm.g.kvm-pv`: invalid type: string \"no\", expected a boolean"),
        "{err}"
    );
}
