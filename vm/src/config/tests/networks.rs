//! `[network.NAME]` and `network = "NAME"`: values, defaults and every error.

use super::super::*;
use alloc::format;
use alloc::string::ToString;

const VM: &str = "kind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\n";

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text.as_bytes()).map_err(|e| e.to_string())
}

fn vm(name: &str, nets: &[(&str, Option<&str>)]) -> String {
    let mut s = format!("[vm.{name}]\n{VM}");
    for (mac, net) in nets {
        s += &format!("[[vm.{name}.virtio-net]]\nmac = \"{mac}\"\n");
        if let Some(n) = net {
            s += &format!("network = \"{n}\"\n");
        }
    }
    s
}

#[test]
fn networks_defaults_and_attachments() {
    let text = format!(
        "[network.lan]\n[network.dmz]\ngateway = false\nuplink = \"e1000\"\n\
         [network.quiet]\nuplink = \"none\"\n{}{}",
        vm(
            "a",
            &[
                ("52:54:00:00:00:0a", Some("lan")),
                ("52:54:00:00:00:0b", None)
            ]
        ),
        vm("b", &[("52:54:00:00:00:0a", Some("dmz"))]),
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.networks,
        [
            NetworkConfig {
                name: "lan".into(),
                gateway: true,
                uplink: None
            },
            NetworkConfig {
                name: "dmz".into(),
                gateway: false,
                uplink: Some(Uplink::E1000)
            },
            NetworkConfig {
                name: "quiet".into(),
                gateway: true,
                uplink: None
            },
        ]
    );
    assert_eq!(
        c.network("dmz").map(|n| n.uplink),
        Some(Some(Uplink::E1000))
    );
    assert_eq!(c.network("nope"), None);
    assert_eq!(
        c.vms[0].devices,
        [
            DeviceConfig::VirtioNet {
                mac: [0x52, 0x54, 0, 0, 0, 0x0a],
                network: Some("lan".into())
            },
            DeviceConfig::VirtioNet {
                mac: [0x52, 0x54, 0, 0, 0, 0x0b],
                network: None
            },
        ]
    );
    // The same MAC on two networks, or in two VMs' private networks, is fine; the
    // gateway's MAC is fine on a network without a gateway.
    let text = format!(
        "[network.dmz]\ngateway = false\n{}{}{}",
        vm("a", &[("52:54:00:00:00:0a", None)]),
        vm("b", &[("52:54:00:00:00:0a", None)]),
        vm("c", &[("02:00:00:00:00:01", Some("dmz"))]),
    );
    assert_eq!(parse(&text).unwrap().vms.len(), 3);
    assert_eq!(Uplink::E1000.name(), "e1000");
}

#[test]
fn network_errors_name_the_place_and_the_fix() {
    let cases: [(String, &str); 11] = [
        (
            vm("a", &[("52:54:00:00:00:0a", Some("lan"))]),
            "bulkhead.toml:7:11: no [network.lan] table: add one, or remove `network` to give \
             the VM a private network",
        ),
        (
            format!(
                "[network.lan]\n[network.dmz]\n{}",
                vm("a", &[("52:54:00:00:00:0a", Some("wan"))])
            ),
            "bulkhead.toml:9:11: no [network.wan] table: add one, or attach the device to one \
             of \"lan\", \"dmz\"",
        ),
        (
            format!(
                "[network.lan]\n{}{}",
                vm("a", &[("52:54:00:00:00:0a", Some("lan"))]),
                vm("b", &[("52:54:00:00:00:0a", Some("lan"))])
            ),
            "bulkhead.toml:14:7: mac = \"52:54:00:00:00:0a\" is used twice on [network.lan], \
             by [vm.a] and [vm.b]: give each virtio-net device on a network its own mac",
        ),
        (
            vm(
                "a",
                &[("52:54:00:00:00:0a", None), ("52:54:00:00:00:0a", None)],
            ),
            "bulkhead.toml:8:7: mac = \"52:54:00:00:00:0a\" is used twice on the private \
             network of [vm.a], by [vm.a] and [vm.a]: give each virtio-net device on a \
             network its own mac",
        ),
        (
            vm("a", &[("02:00:00:00:00:01", None)]),
            "bulkhead.toml:6:7: mac = \"02:00:00:00:00:01\" is the gateway's address on the \
             private network of [vm.a]: give the device another mac (or set gateway = false \
             on its network)",
        ),
        (
            format!("[network.lan]\nuplink = \"rtl8139\"\n{}", vm("a", &[])),
            "bulkhead.toml:2:10: uplink = \"rtl8139\": expected \"e1000\" (the machine's Intel \
             8254x NIC, the one NIC driver there is) or \"none\"",
        ),
        (
            format!(
                "[network.a]\nuplink = \"e1000\"\n[network.b]\nuplink = \"e1000\"\n{}",
                vm("a", &[])
            ),
            "bulkhead.toml:4:10: [network.a] and [network.b] both have an uplink: Bulkhead \
             drives one NIC, so at most one network can have uplink = \"e1000\"; remove one",
        ),
        (
            format!("[network.LAN]\n{}", vm("a", &[])),
            "bulkhead.toml:1:10: network name \"LAN\" must be 1-32 characters of a-z, 0-9 and \
             '-' starting with a letter, e.g. [network.lan]",
        ),
        (
            format!("[network.lan]\ngatway = true\n{}", vm("a", &[])),
            "bulkhead.toml:2:1: unknown key `gatway` in [network.lan]; did you mean `gateway`?",
        ),
        (
            format!("network = \"lan\"\n{}", vm("a", &[])),
            "bulkhead.toml:1:11: `network` must be a table: write one [network.NAME] table per \
             network, e.g. [network.lan]",
        ),
        (
            format!("[network.lan]\ngateway = \"yes\"\n{}", vm("a", &[])),
            "bulkhead.toml:2:11: `network.lan.gateway`: invalid type: string \"yes\", expected \
             a boolean",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse(&text).unwrap_err(), want, "{text}");
    }
    // 16 networks are fine, the 17th is named.
    let mut many: String = (0..17).map(|i| format!("[network.n{i}]\n")).collect();
    many += &vm("a", &[]);
    assert_eq!(
        parse(&many).unwrap_err(),
        "bulkhead.toml:17:10: 17 networks, at most 16 can exist: remove [network.n16] and the \
         networks after it"
    );
    let sixteen: String = (0..16).map(|i| format!("[network.n{i}]\n")).collect();
    assert_eq!(
        parse(&(sixteen + &vm("a", &[]))).unwrap().networks.len(),
        16
    );
    // A key of [network.NAME] written in a VM table gets a hint.
    let e = parse(&format!("[vm.a]\n{VM}uplink = \"e1000\"\n")).unwrap_err();
    assert_eq!(
        e,
        "bulkhead.toml:5:1: unknown key `uplink` in [vm.a]; `uplink` belongs in a \
         [network.NAME] table"
    );
    assert_eq!(MAX_NETWORKS.to_string(), "16");
}
