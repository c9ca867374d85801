//! The network benchmark rows (issue 16): two Linux VMs on one `[network.NAME]` (ping round
//! trip and a 1 MiB TCP transfer, in virtual time), the exits they cost per 1,000 frames,
//! and a Linux VM's ping round trip to Bochs's virtual host through the e1000 uplink.
//! Parsers here are host-tested; the runs are in `bench::run_bench`.

use super::{
    boot_with_nic, bundle_image, field, line_with, num, run_guest, ticks_of, Figure, Options,
};
use crate::bochs::IPS;
use crate::error::{io, BootError};
use std::path::PathBuf;

pub const SEC_NET: &str = "Networks";

/// Bytes the TCP transfer moves.
pub const TCP_BYTES: u64 = 1 << 20;
/// The e1000's MAC in the uplink run: the VM's own, since Bochs's vnet answers only frames
/// from the NIC's MAC (it models one guest behind the NIC).
pub const UPLINK_NIC_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0e];

fn linux_vm(name: &str, mac: &str, network: &str, params: &str) -> String {
    format!(
        "[vm.{name}]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
         memory = \"64M\"\nconsole-timestamps = true\n\
         cmdline = \"{} {params}\"\n\
         [[vm.{name}.virtio-net]]\nmac = \"{mac}\"\nnetwork = \"{network}\"\n",
        super::LINUX_CMDLINE.replace(" bulkhead.checks=workload", "")
    )
}

/// Server `web` (192.0.2.10) and client `db` (192.0.2.11) on network `lan`.
pub fn vm_to_vm_conf() -> String {
    let mut s = String::from("[network.lan]\n");
    s += &linux_vm(
        "web",
        "52:54:00:00:00:0a",
        "lan",
        &format!("bulkhead.checks=peer bulkhead.ip=192.0.2.10/24 bulkhead.peer=192.0.2.11 bulkhead.role=server bulkhead.bytes={TCP_BYTES} bulkhead.ping=10"),
    );
    s += &linux_vm(
        "db",
        "52:54:00:00:00:0b",
        "lan",
        &format!("bulkhead.checks=peer bulkhead.ip=192.0.2.11/24 bulkhead.peer=192.0.2.10 bulkhead.role=client bulkhead.bytes={TCP_BYTES} bulkhead.ping=10"),
    );
    s
}

/// One Linux VM on network `wan`, bridged to the e1000, pinging 192.168.10.1.
pub fn uplink_conf() -> String {
    let mut s = String::from("[network.wan]\ngateway = false\nuplink = \"e1000\"\n");
    s += &linux_vm(
        "edge",
        "52:54:00:00:00:0e",
        "wan",
        "bulkhead.checks=net bulkhead.ip=192.168.10.20/24 bulkhead.gw=192.168.10.1 bulkhead.ping=10",
    );
    s
}

/// `bench --only net`: just the network rows (the Linux guest built or taken from its cache).
pub fn run_only(o: &Options) -> Result<super::Report, BootError> {
    super::irq::only(o, |o| {
        let guest = super::linux_guest_dir()?;
        run(
            o,
            &[guest.join("bzImage"), guest.join("initramfs.cpio.lz4")],
        )
    })
}

/// Runs the two network sessions (Linux guest `files`: bzImage and initramfs) and returns
/// their figures.
pub fn run(o: &Options, files: &[PathBuf]) -> Result<Vec<Figure>, BootError> {
    let vm_to_vm = run_guest(
        o,
        "two Linux VMs on one network (ping, 1 MiB over TCP)",
        &vm_to_vm_conf(),
        files,
        1500,
    )?;
    let dir = tempfile::tempdir().map_err(io(
        "cannot create a temporary directory in",
        std::env::temp_dir(),
    ))?;
    let image = bundle_image(dir.path(), &uplink_conf(), files)?;
    let uplink = boot_with_nic(
        o,
        "a Linux VM on the e1000 uplink (ping Bochs's vnet host)",
        &image,
        512,
        900,
        1,
        Some(UPLINK_NIC_MAC),
    )?;
    Ok(net_figures(&vm_to_vm.transcript, &uplink.transcript))
}

/// The average of a busybox `min/avg/max` round trip in `rtt_ms=` of the line with `needle`.
fn rtt_avg(transcript: &str, needle: &str) -> Option<f64> {
    let rtt = field(line_with(transcript, needle)?, "rtt_ms")?;
    rtt.split('/').nth(1)?.parse().ok()
}

/// The figures of the two runs (empty transcripts give `None` values).
pub fn net_figures(vm_to_vm: &str, uplink: &str) -> Vec<Figure> {
    let mut out = Vec::new();
    out.push(Figure::new(
        SEC_NET,
        "VM-to-VM ping round trip (Linux to Linux, avg of 10)",
        rtt_avg(vm_to_vm, "guest: PASS peer ping 192.0.2.10 "),
        "ms",
        "two Linux VMs on one [network.NAME] in one Bochs CPU (50 MIPS, virtual time): busybox ping -c 10 -i 0.2 from db to web, the guest's own clock (tsc_early_khz = the Bochs TSC)",
    ));
    let start = ticks_of(vm_to_vm, "db", "guest: peer sending bytes=");
    let end = ticks_of(vm_to_vm, "db", "guest: PASS peer tcp sent bytes=");
    let throughput = match (start, end) {
        (Some(a), Some(b)) if b > a => {
            Some(TCP_BYTES as f64 / 1024.0 / ((b - a) as f64 / IPS as f64))
        }
        _ => None,
    };
    out.push(Figure::new(
        SEC_NET,
        "VM-to-VM TCP throughput (1 MiB, busybox nc)",
        throughput,
        "KiB/s (virtual)",
        "1 MiB from db to web over TCP; TSC ticks (50 MHz, virtual) between db's `peer sending` and `PASS peer tcp sent` console lines, which include the connect retries while web starts listening",
    ));
    let db = "vm db: virtio-net at 0xd0000000 irq 5:";
    let frames =
        line_with(vm_to_vm, db).and_then(|l| Some(num(l, "in-frames")? + num(l, "out-frames")?));
    let exits = line_with(vm_to_vm, "vm db: exits: total").and_then(|l| num(l, "count"));
    out.push(Figure::new(
        SEC_NET,
        "exits per 1,000 frames, VM-to-VM client (whole run)",
        match (exits, frames) {
            (Some(e), Some(f)) if f > 0.0 => Some(e * 1000.0 / f),
            _ => None,
        },
        "exits",
        "db's exits over the whole run (boot included: an upper bound) per 1,000 frames through its switch port (in-frames + out-frames of its report line)",
    ));
    let mmio = line_with(vm_to_vm, "vm db: exits: EPT violation").and_then(|l| num(l, "count"));
    out.push(Figure::new(
        SEC_NET,
        "virtio MMIO exits per 1,000 frames, VM-to-VM client",
        match (mmio, frames) {
            (Some(e), Some(f)) if f > 0.0 => Some(e * 1000.0 / f),
            _ => None,
        },
        "exits",
        "db's EPT-violation exits (its only MMIO device is the virtio-net: notifications, interrupt acknowledgements, setup) per 1,000 frames through its switch port",
    ));
    out.push(Figure::new(
        SEC_NET,
        "VM-to-uplink ping round trip (Linux to Bochs vnet host, avg of 10)",
        rtt_avg(uplink, "guest: PASS virtio-net ping 192.168.10.1 "),
        "ms",
        "a Linux VM on a network with uplink = \"e1000\", Bochs `e1000: ethmod=vnet`: busybox ping -c 10 -i 0.2 to 192.168.10.1 through the switch, the polled e1000 driver and Bochs's virtual host; the guest's own clock",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM_TO_VM: &str = "\
[db +1000] guest: PASS peer ping 192.0.2.10 received=10/10 rtt_ms=1.900/2.500/3.100
[db +5000000] guest: peer sending bytes=1048576 sha256=ab
[db +55000000] guest: PASS peer tcp sent bytes=1048576 sha256=ab ms=1000
[  9] INFO  vm db: exits: EPT violation          count=2500 ticks=9 avg=3
[  9] INFO  vm db: exits: total count=200000 ticks=5
[  9] INFO  vm db: virtio-net at 0xd0000000 irq 5: requests=1 network=lan port=2 in-frames=800 in-bytes=1 out-frames=200 out-bytes=2
";
    const UPLINK: &str =
        "[edge +9] guest: PASS virtio-net ping 192.168.10.1 received=10/10 rtt_ms=4.000/6.250/9.000\n";

    #[test]
    fn figures_from_transcripts() {
        let f = net_figures(VM_TO_VM, UPLINK);
        let v: Vec<Option<f64>> = f.iter().map(|f| f.value).collect();
        // 1 MiB in 50,000,000 ticks = 1 s at 50 MHz: 1024 KiB/s.
        assert_eq!(
            v,
            [
                Some(2.5),
                Some(1024.0),
                Some(200_000.0),
                Some(2500.0),
                Some(6.25)
            ]
        );
        assert!(f.iter().all(|f| f.section == SEC_NET));
        let none = net_figures("", "");
        assert!(none.iter().all(|f| f.value.is_none()));
    }

    #[test]
    fn configurations_parse() {
        for conf in [vm_to_vm_conf(), uplink_conf()] {
            let c = vm::config::Config::parse(conf.as_bytes()).unwrap();
            assert_eq!(c.networks.len(), 1);
        }
        let c = vm::config::Config::parse(uplink_conf().as_bytes()).unwrap();
        assert_eq!(c.networks[0].uplink, Some(vm::config::Uplink::E1000));
        assert!(!vm_to_vm_conf().contains("bulkhead.checks=workload"));
        assert!(uplink_conf().contains("mac = \"52:54:00:00:00:0e\""));
        assert_eq!(UPLINK_NIC_MAC, [0x52, 0x54, 0, 0, 0, 0x0e]);
    }
}
