//! Networks between VMs (issue 16): two Linux VMs on one `[network.NAME]` ping each other
//! and move 1 MiB over TCP, checksummed at both ends; a third Linux VM on another network
//! cannot reach them; a forging VM (the virtio-drivers client in forging mode,
//! tests/guest/virtio/src/forge.rs) has its forged frames dropped and counted and its
//! broadcast storm cut while the others keep their connectivity. And the uplink: a Linux VM
//! pings Bochs's virtual host through the switch and the e1000 driver.

use bulkhead_boot::image::guest_dir;
use bulkhead_tests::{
    boot_image, boot_image_with_e1000, bundle_files, linux_guest, manifest_value, Checked,
};

const CMDLINE: &str =
    "console=ttyS0,115200 panic=-1 reboot=t io_delay=none nolapic tsc=reliable no_timer_check";
const MIB: u64 = 1 << 20;

fn linux_vm(name: &str, mac: &str, network: &str, params: &str) -> String {
    format!(
        "[vm.{name}]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
         memory = \"64M\"\ncmdline = \"{CMDLINE} {params}\"\n\
         [[vm.{name}.virtio-net]]\nmac = \"{mac}\"\nnetwork = \"{network}\"\n"
    )
}

/// The value of `key=` in the line of `run` containing `needle`.
fn field(run: &Checked, needle: &str, key: &str) -> u64 {
    let line = run.line(needle);
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn assert_clean(run: &Checked) {
    for bad in [
        "guest: FAIL",
        "unhandled exit",
        "hypervisor bug",
        "Kernel panic",
    ] {
        run.not_saw(bad);
    }
}

#[test]
fn vms_on_a_network_talk_others_are_isolated_and_forgers_are_contained() {
    let dir = linux_guest();
    let pattern = manifest_value(&dir, "blk_pattern_sha256");
    let conf = [
        "[network.lan]\n\n[network.other]\nuplink = \"e1000\"\n".to_string(),
        linux_vm(
            "web",
            "52:54:00:00:00:0a",
            "lan",
            &format!("bulkhead.checks=net,peer bulkhead.ip=192.0.2.10/24 bulkhead.peer=192.0.2.11 bulkhead.role=server bulkhead.bytes={MIB}"),
        ),
        linux_vm(
            "db",
            "52:54:00:00:00:0b",
            "lan",
            &format!("bulkhead.checks=net,peer bulkhead.ip=192.0.2.11/24 bulkhead.peer=192.0.2.10 bulkhead.role=client bulkhead.bytes={MIB}"),
        ),
        linux_vm(
            "other",
            "52:54:00:00:00:0c",
            "other",
            "bulkhead.checks=net,isolated bulkhead.ip=192.0.2.12/24 bulkhead.peer=192.0.2.10",
        ),
        "[vm.forger]\nkind = \"elf64\"\nimage = \"virtio-client.elf\"\nmemory = \"32M\"\n\
         [[vm.forger.virtio-blk]]\nsize = \"1M\"\n\
         [[vm.forger.virtio-net]]\nmac = \"52:54:00:f0:00:01\"\nnetwork = \"lan\"\n"
            .to_string(),
    ]
    .concat();
    let files = [
        dir.join("bzImage"),
        dir.join("initramfs.cpio.lz4"),
        guest_dir().join("virtio-client.elf"),
    ];
    let (_tmp, image) = bundle_files(&conf, &files);
    let run = boot_image(&image, "corei7_skylake_x", 1500);
    // The networks at boot; Bochs here has no NIC, so the uplink is reported missing.
    run.saw("network lan: learning switch, gateway 192.0.2.1")
        .saw("net: no supported NIC (Intel 8254x/e1000")
        .saw("network other: uplink = \"e1000\" not attached: the machine has no supported NIC");
    // Web and db reach each other and move 1 MiB, checksummed at both ends.
    run.said("web", "guest: PASS peer ping 192.0.2.11 received=3/3")
        .said("db", "guest: PASS peer ping 192.0.2.10 received=3/3")
        .said(
            "web",
            &format!("guest: PASS peer tcp received bytes={MIB} sha256={pattern}"),
        )
        .said(
            "db",
            &format!("guest: PASS peer tcp sent bytes={MIB} sha256={pattern}"),
        )
        .said("web", "guest: ALL PASS")
        .said("db", "guest: ALL PASS");
    // Other reaches its own gateway but not web.
    run.said(
        "other",
        "guest: PASS virtio-net ping 192.0.2.1 received=3/3",
    )
    .said(
        "other",
        "guest: PASS isolated: 192.0.2.10 unreachable received=0/3",
    )
    .said("other", "guest: ALL PASS");
    // The forger sent 620 forged frames and 6,500 broadcasts, most of them in rounds while
    // web and db booted, pinged and moved their 1 MiB (above): every forged frame was
    // dropped on its port, its broadcast storms were cut to the flood budget, and nothing
    // forged reached web or db.
    run.said("forger", "forge: burst done spoofed=500 broadcasts=500")
        .said(
            "forger",
            "forge: spoofed=620 broadcasts=6500 sustained-ticks=",
        );
    let forger = "vm forger: virtio-net at 0xd0001000 irq 6:";
    assert_eq!(field(&run, forger, "drop-spoofed"), 620);
    assert_eq!(field(&run, forger, "in-frames"), 7120);
    let flood = field(&run, forger, "drop-flood");
    assert!(
        (1..=6500 - 32).contains(&flood),
        "the storms were cut (a burst of 32 passes): drop-flood={flood}"
    );
    // The network's own line when the VMs have stopped: gateway, web, db, forger.
    let lan = run.line("network lan: ports=4 ");
    assert!(
        field(&run, "network lan: ports=4 ", "gateway-arp-replies") >= 2,
        "{lan}"
    );
    assert_eq!(
        field(&run, "network lan: ports=4 ", "gateway-echo-replies"),
        6,
        "{lan}"
    );
    let web = "vm web: virtio-net at 0xd0000000 irq 5:";
    assert_eq!(field(&run, web, "drop-spoofed"), 0);
    assert!(
        run.line(web).contains(" network=lan port=1 "),
        "{}",
        run.line(web)
    );
    // The client's 1 MiB went through its port (1448-byte TCP segments: at least 725).
    let db = "vm db: virtio-net at 0xd0000000 irq 5:";
    assert!(field(&run, db, "in-frames") >= 725);
    assert!(field(&run, db, "in-bytes") >= MIB);
    assert_eq!(field(&run, db, "drop-spoofed"), 0);
    // Recorded (not judged): the ports' counters and the transfer's timing.
    for needle in [forger, web, db] {
        eprintln!("net: {}", run.line(needle));
    }
    for needle in ["guest: PASS peer tcp sent", "guest: PASS peer ping"] {
        eprintln!("net: db: {}", run.guest_line("db", needle));
    }
    eprintln!(
        "net: forger: {}",
        run.guest_line("forger", "forge: spoofed=")
    );
    assert_clean(&run);
}

/// The uplink: a Linux VM on a network bridged to the e1000 pings Bochs's virtual host
/// (vnet, 192.168.10.1) through the switch and the driver, and the NIC's counters show the
/// frames went both ways. vnet models one guest behind the NIC and answers only frames from
/// the NIC's own MAC, so the NIC is given the VM's MAC here (a real bridged LAN takes any
/// source: the driver's receive filter is promiscuous).
#[test]
fn a_vm_pings_bochs_virtual_host_through_the_e1000_uplink() {
    let dir = linux_guest();
    let conf = [
        "[network.wan]\ngateway = false\nuplink = \"e1000\"\n".to_string(),
        linux_vm(
            "edge",
            "52:54:00:00:00:0e",
            "wan",
            "bulkhead.checks=net bulkhead.ip=192.168.10.20/24 bulkhead.gw=192.168.10.1",
        ),
    ]
    .concat();
    let files = [dir.join("bzImage"), dir.join("initramfs.cpio.lz4")];
    let (_tmp, image) = bundle_files(&conf, &files);
    let run = boot_image_with_e1000(
        &image,
        "corei7_skylake_x",
        900,
        [0x52, 0x54, 0x00, 0x00, 0x00, 0x0e],
    );
    run.saw("e1000: 82540EM (")
        .saw("MAC 52:54:00:00:00:0e, polled")
        .saw("network wan: learning switch, no gateway, uplink e1000 82540EM at ")
        .said(
            "edge",
            "guest: PASS virtio-net ping 192.168.10.1 received=3/3",
        )
        .said("edge", "guest: ALL PASS");
    let nic = run.line("e1000 82540EM: tx-frames=");
    let tx = field(&run, "e1000 82540EM: tx-frames=", "tx-frames");
    let rx = field(&run, "e1000 82540EM: tx-frames=", "rx-frames");
    assert!(tx >= 4 && rx >= 4, "ARP + 3 echo each way: {nic}");
    assert_eq!(field(&run, "e1000 82540EM: tx-frames=", "rx-errors"), 0);
    // The uplink port's counters on the network's line: what came from the wire.
    let wan = run.line("network wan: ports=2 ");
    assert!(
        wan.contains(" uplink: network=wan port=0 in-frames="),
        "{wan}"
    );
    let edge = "vm edge: virtio-net at 0xd0000000 irq 5:";
    assert!(
        run.line(edge).contains(" network=wan port=1 "),
        "{}",
        run.line(edge)
    );
    assert_clean(&run);
}

/// QEMU's e1000 under TCG: no VT-x there, but the driver comes up before the VT-x diagnosis
/// (the drivers start first), so its PCI discovery, EEPROM read and bring-up run on a
/// second emulator's model of the 82540EM.
#[test]
fn qemu_e1000_comes_up_before_the_vt_x_diagnosis() {
    let (_b, image) = bulkhead_tests::bundle_uefi_image(
        "[vm.selftest]\nkind = \"elf64\"\nimage = \"selftest.elf\"\nmemory = \"16M\"\n",
        &["selftest.elf"],
    );
    let run =
        bulkhead_tests::boot_qemu_with_e1000(&image, 120, [0x52, 0x54, 0x00, 0xe1, 0x00, 0x02]);
    run.exited(16, "not-intel")
        .saw("e1000: 82540EM (00:")
        .saw(
            "8086:100e class 02.00.00), MAC 52:54:00:e1:00:02, polled, 32 RX and 32 TX descriptors",
        )
        .not_saw("net: no supported NIC");
}
