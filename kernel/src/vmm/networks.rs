//! The networks VMs share (docs/vm-platform.md "Networks"): one learning switch per
//! `[network.NAME]`, created at boot before the VMs, and a private one per VM whose
//! virtio-net devices name no network. VMs run on several CPUs, so each switch has its own
//! lock. Lock order: a VM's lock, then a network's; nothing holds a network's lock while it
//! takes a VM's, and no lock is held across VM entry. Work under the lock is bounded: one
//! `Switch::send_from` (at most `virtio::switch::MAX_FRAMES_PER_PUMP` frames) and one
//! device poll (at most `virtio::MAX_REQUESTS_PER_CALL` RX buffers) per device per round.
//!
//! A VM learns that another VM (or the uplink) queued frames for it through its port's
//! doorbell, an atomic flag set by whoever queued them and read without the lock in the
//! VM's `work_due` (every run-loop iteration and every wake-up check of a halted vCPU).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use log::{info, warn};
use spin::{Mutex, Once};
use vm::config::{NetworkConfig, Uplink, GATEWAY_IP, GATEWAY_MAC, MAX_DEVICES, MAX_VMS};

/// Ports of a named network: every device of every VM, the gateway and the uplink.
const NAMED_PORTS: usize = MAX_VMS * MAX_DEVICES + 2;
/// Ports of a VM's private network: its devices and the gateway.
pub const PRIVATE_PORTS: usize = MAX_DEVICES + 1;

/// One network: its switch and a doorbell per port.
pub struct Network {
    pub name: String,
    pub switch: Mutex<virtio::Switch>,
    /// Per port: frames were queued for it since its owner last took them.
    doorbells: Vec<AtomicBool>,
    /// The port of the uplink NIC, if the network has one and the NIC was found.
    pub uplink: Once<virtio::PortId>,
}

impl Network {
    /// A network of `ports` ports, with a gateway if asked.
    pub fn new(name: &str, ports: usize, gateway: bool, tsc_hz: u64) -> Self {
        let mut switch = virtio::Switch::new(virtio::SwitchConfig::new(ports, tsc_hz));
        if gateway {
            // A fresh switch has room for its gateway, whose MAC nothing else uses yet.
            let _ = switch.add_gateway(GATEWAY_MAC, GATEWAY_IP);
        }
        Network {
            name: name.into(),
            switch: Mutex::new(switch),
            doorbells: (0..ports).map(|_| AtomicBool::new(false)).collect(),
            uplink: Once::new(),
        }
    }

    /// Heap bytes a network of `ports` ports takes before its ports' queues.
    pub fn heap_bytes(ports: usize) -> usize {
        virtio::Switch::heap_bytes(&virtio::SwitchConfig::new(ports, 1))
            + virtio::switch::Gateway::heap_bytes()
            + ports * core::mem::size_of::<AtomicBool>()
    }

    /// Rings the doorbell of every port that has frames queued (after frames were sent in,
    /// under the switch's lock).
    pub fn ring_queued(&self, sw: &virtio::Switch) {
        for (p, bell) in self.doorbells.iter().enumerate().take(sw.port_count()) {
            if sw.queued(virtio::PortId(p)) > 0 {
                bell.store(true, Ordering::Release);
            }
        }
    }

    /// Whether frames were queued for `port` since [`Network::answer`].
    pub fn rung(&self, port: virtio::PortId) -> bool {
        self.doorbells
            .get(port.0)
            .is_some_and(|b| b.load(Ordering::Acquire))
    }

    /// Clears `port`'s doorbell (its owner is about to take its frames).
    pub fn answer(&self, port: virtio::PortId) {
        if let Some(b) = self.doorbells.get(port.0) {
            b.store(false, Ordering::Release);
        }
    }
}

static NAMED: Once<Vec<Arc<Network>>> = Once::new();

/// Creates the `[network.NAME]` switches (before any VM) and attaches the uplink NIC to the
/// network that asks for it; reports each.
pub fn init(networks: &[NetworkConfig], tsc_hz: u64) {
    let nets = NAMED.call_once(|| {
        networks
            .iter()
            .map(|n| Arc::new(Network::new(&n.name, NAMED_PORTS, n.gateway, tsc_hz)))
            .collect()
    });
    for (cfg, net) in networks.iter().zip(nets) {
        let uplink = match cfg.uplink {
            Some(Uplink::E1000) => match crate::drivers::e1000::attach(net) {
                Ok(desc) => alloc::format!(", uplink {desc}"),
                Err(why) => {
                    warn!(
                        "network {}: uplink = \"e1000\" not attached: {why}; the network runs \
                         without an uplink",
                        cfg.name
                    );
                    String::from(", no uplink (no NIC)")
                }
            },
            None => String::new(),
        };
        info!(
            "network {}: learning switch, {}{uplink}",
            cfg.name,
            if cfg.gateway {
                "gateway 192.0.2.1"
            } else {
                "no gateway"
            }
        );
    }
}

/// The named network `name`.
pub fn named(name: &str) -> Option<Arc<Network>> {
    NAMED.get()?.iter().find(|n| n.name == name).cloned()
}

/// One line per named network: its switch's counters, its gateway's and its uplink port's
/// (printed when the VMs have stopped).
pub fn report() -> Vec<String> {
    let Some(nets) = NAMED.get() else {
        return Vec::new();
    };
    nets.iter()
        .map(|n| {
            let sw = n.switch.lock();
            let st = sw.stats();
            let mut line = alloc::format!(
                "network {}: ports={} frames={} unicast={} flooded={} learned={} evicted={} aged={}",
                n.name,
                sw.port_count(),
                st.received,
                st.unicast,
                st.flooded,
                sw.learned(),
                st.evicted,
                st.aged
            );
            if let Some(g) = sw.gateway_stats() {
                line += &alloc::format!(
                    " gateway-arp-replies={} gateway-echo-replies={} gateway-ignored={} gateway-dropped={}",
                    g.arp_replies, g.echo_replies, g.ignored, g.dropped
                );
            }
            if let Some(&port) = n.uplink.get() {
                if let Some(s) = sw.port_stats(port) {
                    line += &alloc::format!(" uplink:{}", super::virtio_devices::port_line(&n.name, port, &s));
                }
            }
            line
        })
        .collect()
}
