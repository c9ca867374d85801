//! Limits, sizes, MACs, key suggestions, hostile input and value positions.

use super::super::error::{closest, edit_distance};
use super::super::*;
use super::FULL;
use alloc::format;

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
        Some((24, 10))
    );
    assert_eq!(
        value_position(
            FULL.as_bytes(),
            &["vm", "linux", "virtio-blk", "0", "image"]
        ),
        Some((33, 9))
    );
    assert_eq!(
        value_position(FULL.as_bytes(), &["vm", "linux", "virtio-blk", "9"]),
        None
    );
    assert_eq!(value_position(FULL.as_bytes(), &["vm", "nope"]), None);
    assert_eq!(value_position(b"\xEF\xBB\xBFa = 1\n", &["a"]), Some((1, 5)));
    // The devices are in the DSDT, not on the command line: four LNRO0005 devices, COM1.
    assert_eq!(c.vms[1].linux_cmdline(), "console=ttyS0 quiet");
    let dsdt = c.vms[1].acpi_config().dsdt.aml();
    let count = |needle: &[u8]| dsdt.windows(needle.len()).filter(|w| *w == needle).count();
    assert_eq!(count(b"LNRO0005"), 4);
    for (i, name) in [b"VR00", b"VR01", b"VR02", b"VR03"].iter().enumerate() {
        let at = dsdt.windows(4).position(|w| w == *name).unwrap();
        let base = 0xD000_0000u32 + 0x1000 * i as u32;
        assert_eq!(count(&base.to_le_bytes()), 1, "window of device {i}");
        assert!(at < dsdt.windows(4).position(|w| w == b"COM1").unwrap());
    }
    assert_eq!(count(b"VR04"), 0);
    assert_eq!(c.vms[2].linux_cmdline(), "");
    let w = VmConfig::mmio_window_e820();
    assert_eq!((w.addr, w.size), (0xD000_0000, 0x8000));
}
