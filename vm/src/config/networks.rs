//! `[network.NAME]` tables and the `network = "NAME"` of `[[vm.NAME.virtio-net]]`: names,
//! `gateway`, `uplink`, and what only the whole file shows (a device on a network that does
//! not exist, one MAC twice on a network, two uplinks).

use super::check::{bad, valid_vm_name};
use super::error::{at, ConfigError, ConfigErrorKind as K};
use super::schema::NetworkToml;
use super::{NetworkConfig, Uplink, MAX_NETWORKS};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use toml::Spanned;

/// One virtio-net device as written: its VM, MAC and `network` (with spans).
#[derive(Debug)]
pub(super) struct Attachment {
    pub vm: String,
    pub mac: [u8; 6],
    pub mac_span: Range<usize>,
    pub network: Option<(String, Range<usize>)>,
}

pub(super) fn parse(
    text: &str,
    networks: Option<BTreeMap<Spanned<String>, Spanned<NetworkToml>>>,
) -> Result<Vec<NetworkConfig>, ConfigError> {
    let mut nets: Vec<_> = networks.unwrap_or_default().into_iter().collect();
    nets.sort_by_key(|(name, _)| name.span().start);
    if let Some((name, _)) = nets.get(MAX_NETWORKS) {
        return Err(at(
            text,
            name.span(),
            K::TooManyNetworks {
                count: nets.len(),
                network: name.get_ref().clone(),
            },
        ));
    }
    let mut out: Vec<NetworkConfig> = Vec::new();
    let mut uplink_of: Option<String> = None;
    for (name, net) in nets {
        if !valid_vm_name(name.get_ref()) {
            return Err(at(text, name.span(), K::BadNetworkName(name.into_inner())));
        }
        let net = net.into_inner();
        let uplink =
            match &net.uplink {
                None => None,
                Some(u) if u.get_ref() == "e1000" => Some(Uplink::E1000),
                Some(u) if u.get_ref() == "none" => None,
                Some(u) => return Err(bad(
                    text,
                    "uplink",
                    u.span(),
                    "\"e1000\" (the machine's Intel 8254x NIC, the one NIC driver there is) or \
                     \"none\"",
                )),
            };
        if let (Some(_), Some(u)) = (uplink, &net.uplink) {
            if let Some(first) = &uplink_of {
                return Err(at(
                    text,
                    u.span(),
                    K::SecondUplink {
                        first: first.clone(),
                        second: name.get_ref().clone(),
                    },
                ));
            }
            uplink_of = Some(name.get_ref().clone());
        }
        out.push(NetworkConfig {
            name: name.into_inner(),
            gateway: net.gateway.is_none_or(|g| *g.get_ref()),
            uplink,
        });
    }
    Ok(out)
}

fn mac_text(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Every `network = ` names a network; no MAC twice on one network (a VM's private network
/// is its own). Errors point at the later of two devices.
pub(super) fn check_attachments(
    text: &str,
    networks: &[NetworkConfig],
    devices: &[Attachment],
) -> Result<(), ConfigError> {
    for (i, d) in devices.iter().enumerate() {
        if let Some((net, span)) = &d.network {
            if !networks.iter().any(|n| &n.name == net) {
                let known = networks
                    .iter()
                    .map(|n| format!("\"{}\"", n.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(at(
                    text,
                    span.clone(),
                    K::UnknownNetwork {
                        network: net.clone(),
                        known,
                    },
                ));
            }
        }
        let (segment, gateway) = match &d.network {
            Some((n, _)) => (
                format!("[network.{n}]"),
                networks.iter().any(|c| &c.name == n && c.gateway),
            ),
            None => (format!("the private network of [vm.{}]", d.vm), true),
        };
        if gateway && d.mac == super::GATEWAY_MAC {
            return Err(at(
                text,
                d.mac_span.clone(),
                K::GatewayMac { network: segment },
            ));
        }
        let same_segment = |e: &Attachment| match (&e.network, &d.network) {
            (Some((a, _)), Some((b, _))) => a == b,
            (None, None) => e.vm == d.vm,
            _ => false,
        };
        if let Some(first) = devices[..i]
            .iter()
            .find(|e| e.mac == d.mac && same_segment(e))
        {
            return Err(at(
                text,
                d.mac_span.clone(),
                K::MacTwice {
                    mac: mac_text(d.mac),
                    network: segment,
                    first: first.vm.clone(),
                    second: d.vm.clone(),
                },
            ));
        }
    }
    Ok(())
}
