use super::error::{closest, edit_distance};
use super::*;
use alloc::format;

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
"#;

#[test]
fn parses_every_key() {
    let c = Config::parse(FULL.as_bytes()).unwrap();
    assert_eq!(c.hypervisor.timeslice, 500_000);
    assert_eq!(c.hypervisor.host_tick_hz, 250);
    assert!(c.hypervisor.store_check);
    // File order, not name order.
    let names: Vec<&str> = c.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["selftest", "linux", "boot16"]);
    assert_eq!(
        c.vms[0],
        VmConfig {
            name: "selftest".into(),
            kind: GuestKind::Elf64,
            image: "selftest.elf".into(),
            memory: 16 << 20,
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
            heap_budget: Some(8 << 20),
            console_buffer: 4 << 10,
            console_rate: 64 << 10,
        }
    );
    let l = &c.vms[1];
    assert_eq!(
        (l.kind, l.image.as_str(), l.memory),
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
                mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56]
            },
        ]
    );
    // Defaults.
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
    assert_eq!(VmConfig::device_window(1), (0xD000_1000, 6));
    assert_eq!(VmConfig::device_window(7), (0xD000_7000, 12));
}

#[test]
fn minimal_file_defaults_and_inline_forms() {
    let c = Config::parse(
        b"vm.a = { kind = \"elf64\", image = \"a.elf\", memory = \"4M\", virtio-net = [{ mac = \"02:00:00:00:00:01\" }] }\n",
    )
    .unwrap();
    assert_eq!(c.hypervisor.timeslice, DEFAULT_TIMESLICE);
    assert_eq!(
        c.vms[0].devices,
        [DeviceConfig::VirtioNet {
            mac: [2, 0, 0, 0, 0, 1]
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

/// The limits are the documented ones.
#[test]
fn limits() {
    assert_eq!(MAX_MEMORY, 3328 << 20);
    assert_eq!((MAX_VMS, MAX_DEVICES), (16, 8));
    let vm = |mem: &str| format!("[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = {mem}\n");
    for ok in [
        "\"4M\"",
        "\"3328M\"",
        "\"4096K\"",
        "4194304",
        "\"2G\"",
        "\"64m\"",
    ] {
        let c = Config::parse(vm(ok).as_bytes()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(c.vms[0].memory >= MIN_MEMORY);
    }
    assert_eq!(
        Config::parse(vm("\"3328M\"").as_bytes()).unwrap().vms[0].memory,
        0xD000_0000
    );
    for bad in [
        "\"2M\"",
        "\"3330M\"",
        "\"4G\"",
        "\"5M\"",
        "\"0\"",
        "-1",
        "\"\"",
        "\"64 M\"",
    ] {
        let e = Config::parse(vm(bad).as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "bulkhead.toml:4:10: memory = {bad}: expected a multiple of 2M from 4M to \
                 3328M, e.g. \"64M\""
            )
        );
    }
    // 16 VMs are fine, the 17th is named.
    let mut many = String::new();
    for i in 0..17 {
        many += &format!("[vm.v{i}]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n");
    }
    let e = Config::parse(many.as_bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bulkhead.toml:65:5: 17 VMs, at most 16 can run: remove [vm.v16] and the VMs after it"
    );
    let sixteen: String = many.lines().take(64).map(|l| format!("{l}\n")).collect();
    assert_eq!(Config::parse(sixteen.as_bytes()).unwrap().vms.len(), 16);
    // 8 devices are fine, 9 are not.
    let devs = |blk: usize, net: usize, console: bool| {
        let mut s = format!(
            "[vm.a]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nvirtio-console = {console}\n"
        );
        for _ in 0..blk {
            s += "[[vm.a.virtio-blk]]\nsize = \"1K\"\n";
        }
        for i in 0..net {
            s += &format!("[[vm.a.virtio-net]]\nmac = \"52:54:00:00:00:{i:02x}\"\n");
        }
        s
    };
    assert_eq!(
        Config::parse(devs(4, 3, true).as_bytes()).unwrap().vms[0]
            .devices
            .len(),
        8
    );
    assert_eq!(
        Config::parse(devs(5, 3, true).as_bytes())
            .unwrap_err()
            .to_string(),
        "bulkhead.toml:1:1: [vm.a] has 9 devices (5 virtio-blk, 3 virtio-net, 1 \
         virtio-console), at most 8 per VM: remove 1"
    );
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
        "unknown key `mca` in [[vm.a.virtio-net]]; the keys here are `mac`",
    ),
    (
        "[vm.a]\n[[vm.a.virtio-net]]\nimage = \"x\"\n",
        3,
        1,
        "unknown key `image` in [[vm.a.virtio-net]]; `image` belongs in a [vm.NAME] table",
    ),
    (
        "[vm.a]\ncolour = 1\n",
        2,
        1,
        "unknown key `colour` in [vm.a]; the keys here are `kind`, `image`, `memory`, \
         `console-timestamps`, `cmdline`, `initrd`, `heap-budget`, `console-buffer`, \
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
        "[vm.a] needs `kind`, e.g. kind = \"elf64\" (or \"real16\", \"linux\")",
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
        "kind = \"bsd\": expected \"elf64\", \"real16\" or \"linux\"",
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

#[test]
fn sizes_macs_and_names() {
    assert_eq!(parse_size("64M"), Some(64 << 20));
    assert_eq!(parse_size("2g"), Some(2 << 30));
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("16k"), Some(16 << 10));
    assert_eq!(parse_size("M"), None);
    assert_eq!(parse_size(""), None);
    assert_eq!(parse_size("-1M"), None);
    assert_eq!(parse_size(" 1M"), None);
    assert_eq!(parse_size("1MB"), None);
    assert_eq!(parse_size("99999999999999999999G"), None);
    assert_eq!(parse_size("17179869184G"), None);
    assert_eq!(
        parse_mac("52:54:00:12:34:56"),
        Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(parse_mac("52:54:00:12:34"), None);
    assert_eq!(parse_mac("00:00:00:00:00:00"), None);
    assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
    assert_eq!(parse_mac("52:54:00:12:34:5g"), None);
    assert_eq!(size_to_toml(64 << 20), "\"64M\"");
    assert_eq!(size_to_toml(3328 << 20), "\"3328M\"");
    assert_eq!(size_to_toml(2 << 30), "\"2G\"");
    assert_eq!(size_to_toml(16 << 10), "\"16K\"");
    assert_eq!(size_to_toml(513), "513");
    assert_eq!(size_to_toml(0), "0");
    assert_eq!(GuestKind::Real16.name(), "real16");
}

#[test]
fn suggestions() {
    assert_eq!(edit_distance("memroy", "memory"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kind", "kind"), 0);
    let known = ["memory", "kind", "image"];
    assert_eq!(closest("memroy", &known), Some("memory"));
    assert_eq!(closest("knd", &known), Some("kind"));
    assert_eq!(closest("colour", &known), None);
    // Short keys tolerate one edit only.
    assert_eq!(closest("mid", &known), None);
}

/// Every key the schema declares is exercised by FULL (so this file covers every key).
#[test]
fn full_example_uses_every_key() {
    use super::schema::{fields_of, BlkToml, FileToml, HypervisorToml, NetToml, VmToml};
    for keys in [
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
    assert_eq!(fields_of::<NetToml>(), ["mac"]);
    assert_eq!(
        fields_of::<BlkToml>(),
        ["size", "image", "disk", "read-only"]
    );
}

/// Hostile input never panics: every prefix of a valid file and a few mangled ones.
#[test]
fn truncated_and_mangled_files_give_errors_not_panics() {
    for end in 0..=FULL.len() {
        if FULL.is_char_boundary(end) {
            let _ = Config::parse(&FULL.as_bytes()[..end]);
        }
    }
    for junk in [
        &b"[[vm]]\n"[..],
        b"[vm.a.virtio-blk]\n",
        b"vm = []\n",
        b"[vm.a]\nvirtio-blk = [[1]]\n",
        b"[vm.a]\nmemory = 1e9\n",
        b"[vm.a]\nmemory = 1979-05-27\n",
        b"[vm.a]\nmemory = 9223372036854775807\n",
        b"\xEF\xBB\xBF",
        b"\xEF\xBB",
    ] {
        assert!(Config::parse(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn positions_of_values_and_linux_command_lines() {
    let c = Config::parse(FULL.as_bytes()).unwrap();
    assert_eq!(
        value_position(FULL.as_bytes(), &["vm", "linux", "initrd"]),
        Some((23, 10))
    );
    assert_eq!(
        value_position(
            FULL.as_bytes(),
            &["vm", "linux", "virtio-blk", "0", "image"]
        ),
        Some((31, 9))
    );
    assert_eq!(
        value_position(FULL.as_bytes(), &["vm", "linux", "virtio-blk", "9"]),
        None
    );
    assert_eq!(value_position(FULL.as_bytes(), &["vm", "nope"]), None);
    assert_eq!(value_position(b"\xEF\xBB\xBFa = 1\n", &["a"]), Some((1, 5)));
    assert_eq!(
        c.vms[1].linux_cmdline(),
        "console=ttyS0 quiet virtio_mmio.device=4K@0xd0000000:5 \
         virtio_mmio.device=4K@0xd0001000:6 virtio_mmio.device=4K@0xd0002000:7 \
         virtio_mmio.device=4K@0xd0003000:8"
    );
    assert_eq!(c.vms[2].linux_cmdline(), "");
    let w = VmConfig::mmio_window_e820();
    assert_eq!((w.addr, w.size), (0xD000_0000, 0x8000));
}
