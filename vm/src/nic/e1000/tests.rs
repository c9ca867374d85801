//! The driver against a model of an 82540EM: registers in a map, descriptor rings and
//! buffers in a byte array at physical address 0, the hardware's side of the rings done by
//! [`Model::run_tx`] and [`Model::inject_rx`] as the 8254x SDM §3.2.6 / §3.3.6 describe.

use super::*;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x2000;
const RX_BUFS: u64 = 0x10000;
const TX_BUFS: u64 = 0x40000;

#[derive(Default)]
struct Hw {
    regs: BTreeMap<u32, u32>,
    mem: Vec<u8>,
    sent: Vec<Vec<u8>>,
    writes: Vec<(u32, u32)>,
    /// EEPROM words 0-2 (the MAC), read through EERD.
    eeprom: [u16; 3],
    /// CTRL.RST reads stay set this many times after a reset.
    reset_delay: u32,
    reset_reads: u32,
}

struct Model(alloc::rc::Rc<core::cell::RefCell<Hw>>);

impl E1000Regs for Model {
    fn read32(&mut self, reg: u32) -> u32 {
        let mut hw = self.0.borrow_mut();
        if reg == Reg::CTRL && hw.reset_reads > 0 {
            hw.reset_reads -= 1;
            return ctrl::RST;
        }
        hw.regs.get(&reg).copied().unwrap_or(0)
    }
    fn write32(&mut self, reg: u32, value: u32) {
        let mut hw = self.0.borrow_mut();
        hw.writes.push((reg, value));
        // CTRL.RST self-clears (§13.4.1), after `reset_delay` reads.
        if reg == Reg::CTRL && value & ctrl::RST != 0 {
            hw.reset_reads = hw.reset_delay;
        }
        let value = if reg == Reg::CTRL {
            value & !ctrl::RST
        } else {
            value
        };
        // A reset clears the receive addresses, as Bochs's model does.
        if reg == Reg::CTRL && hw.writes.last() == Some(&(reg, value | ctrl::RST)) {
            hw.regs.remove(&Reg::RAL0);
            hw.regs.remove(&Reg::RAH0);
        }
        // EERD completes at once with the word asked for (§13.4.4).
        let value = if reg == Reg::EERD {
            let w = hw
                .eeprom
                .get((value >> 8) as usize & 0xff)
                .copied()
                .unwrap_or(0xffff);
            u32::from(w) << 16 | regs::EERD_DONE | (value & 0xff00)
        } else {
            value
        };
        hw.regs.insert(reg, value);
    }
}

impl DmaMemory for Model {
    fn read(&mut self, phys: u64, out: &mut [u8]) {
        let hw = self.0.borrow();
        out.copy_from_slice(&hw.mem[phys as usize..phys as usize + out.len()]);
    }
    fn write(&mut self, phys: u64, data: &[u8]) {
        let mut hw = self.0.borrow_mut();
        hw.mem[phys as usize..phys as usize + data.len()].copy_from_slice(data);
    }
}

impl Hw {
    fn reg(&self, r: u32) -> u32 {
        self.regs.get(&r).copied().unwrap_or(0)
    }
    fn desc(&self, ring: u64, i: u32) -> [u8; 16] {
        let at = (ring + u64::from(i) * 16) as usize;
        self.mem[at..at + 16].try_into().unwrap()
    }
    fn set_desc(&mut self, ring: u64, i: u32, b: [u8; 16]) {
        let at = (ring + u64::from(i) * 16) as usize;
        self.mem[at..at + 16].copy_from_slice(&b);
    }
    /// The hardware sends up to `n` descriptors from TDH towards TDT, setting STA.DD.
    fn run_tx(&mut self, n: usize) {
        for _ in 0..n {
            let (head, tail) = (self.reg(Reg::TDH), self.reg(Reg::TDT));
            if head == tail {
                return;
            }
            let mut d = TxDescriptor::from_bytes(&self.desc(TX_RING, head));
            let at = d.buffer as usize;
            self.sent
                .push(self.mem[at..at + usize::from(d.length)].to_vec());
            assert_eq!(d.cmd, tx_cmd::EOP | tx_cmd::IFCS | tx_cmd::RS);
            d.status |= regs::TX_STA_DD;
            self.set_desc(TX_RING, head, d.to_bytes());
            self.regs
                .insert(Reg::TDH, (head + 1) % RING_DESCRIPTORS as u32);
        }
    }
    /// The hardware receives `frame` into the descriptor at RDH, if RDH != RDT.
    fn inject_rx(&mut self, frame: &[u8], errors: u8) -> bool {
        let (head, tail) = (self.reg(Reg::RDH), self.reg(Reg::RDT));
        if head == tail {
            return false;
        }
        let mut d = RxDescriptor::from_bytes(&self.desc(RX_RING, head));
        let at = d.buffer as usize;
        self.mem[at..at + frame.len()].copy_from_slice(frame);
        d.length = frame.len() as u16;
        d.status = rx_status::DD | rx_status::EOP;
        d.errors = errors;
        self.set_desc(RX_RING, head, d.to_bytes());
        self.regs
            .insert(Reg::RDH, (head + 1) % RING_DESCRIPTORS as u32);
        true
    }
}

fn memory() -> Memory {
    Memory {
        rx_ring: RX_RING,
        tx_ring: TX_RING,
        rx_buffers: core::array::from_fn(|i| RX_BUFS + (i * BUFFER_BYTES) as u64),
        tx_buffers: core::array::from_fn(|i| TX_BUFS + (i * BUFFER_BYTES) as u64),
    }
}

fn nic() -> (alloc::rc::Rc<core::cell::RefCell<Hw>>, E1000<Model, Model>) {
    let hw = alloc::rc::Rc::new(core::cell::RefCell::new(Hw {
        mem: vec![0; 0x80000],
        reset_delay: 3,
        ..Hw::default()
    }));
    {
        let mut h = hw.borrow_mut();
        h.regs.insert(
            Reg::RAL0,
            u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]),
        );
        h.regs.insert(
            Reg::RAH0,
            regs::RAH_AV | u32::from(MAC[4]) | u32::from(MAC[5]) << 8,
        );
        h.regs.insert(Reg::STATUS, regs::STATUS_LU);
        h.regs.insert(Reg::CTRL, 1 << 3 | 1 << 31);
    }
    let n = E1000::init(Model(hw.clone()), Model(hw.clone()), memory()).unwrap();
    (hw, n)
}

fn frame(n: u8, len: usize) -> Vec<u8> {
    let mut f = vec![n; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&MAC);
    f
}

/// The descriptor layouts of §3.2.3 (Table 3-1) and §3.3.3 (Table 3-8), byte for byte.
#[test]
fn descriptor_layouts() {
    let rx = RxDescriptor {
        buffer: 0x1122_3344_5566_7788,
        length: 0x05ea,
        checksum: 0xbeef,
        status: 0x03,
        errors: 0x80,
        special: 0x0123,
    };
    assert_eq!(
        rx.to_bytes(),
        [
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xea, 0x05, 0xef, 0xbe, 0x03, 0x80,
            0x23, 0x01
        ]
    );
    assert_eq!(RxDescriptor::from_bytes(&rx.to_bytes()), rx);
    let tx = TxDescriptor {
        buffer: 0x0000_0001_0000_2000,
        length: 60,
        cso: 0x22,
        cmd: tx_cmd::EOP | tx_cmd::IFCS | tx_cmd::RS,
        status: regs::TX_STA_DD,
        css: 0x0e,
        special: 0xabcd,
    };
    assert_eq!(
        tx.to_bytes(),
        [0x00, 0x20, 0, 0, 0x01, 0, 0, 0, 60, 0, 0x22, 0x0b, 0x01, 0x0e, 0xcd, 0xab]
    );
    assert_eq!(TxDescriptor::from_bytes(&tx.to_bytes()), tx);
    assert_eq!(model(0x100e), Some("82540EM"));
    assert_eq!(
        model(0x10d3),
        None,
        "82574L (e1000e) is another register set"
    );
}

/// Bring-up writes what §14 asks, in registers with the values of the manual's tables.
#[test]
fn init_programs_the_rings_and_modes() {
    let (hw, mut n) = nic();
    assert_eq!(n.mac(), MAC);
    assert!(n.link_up());
    let h = hw.borrow();
    assert_eq!(h.writes[0], (Reg::IMC, u32::MAX), "interrupts masked first");
    assert_eq!(h.writes[1], (Reg::CTRL, ctrl::RST | 1 << 3 | 1 << 31));
    // The address read before the reset is written back, valid.
    assert_eq!(h.reg(Reg::RAL0), 0x1200_5452);
    assert_eq!(h.reg(Reg::RAH0), 0x8000_5634);
    // SLU | ASDE set, LRST and PHY_RST cleared.
    assert_eq!(h.reg(Reg::CTRL), ctrl::SLU | ctrl::ASDE);
    assert_eq!(
        (h.reg(Reg::RDBAL), h.reg(Reg::RDBAH), h.reg(Reg::RDLEN)),
        (0x1000, 0, 512)
    );
    assert_eq!((h.reg(Reg::RDH), h.reg(Reg::RDT)), (0, 31));
    assert_eq!(
        h.reg(Reg::RCTL),
        0x0400_801a,
        "EN UPE MPE BAM SECRC, BSIZE 2048"
    );
    assert_eq!(
        (
            h.reg(Reg::TDBAL),
            h.reg(Reg::TDLEN),
            h.reg(Reg::TDH),
            h.reg(Reg::TDT)
        ),
        (0x2000, 512, 0, 0)
    );
    assert_eq!(h.reg(Reg::TCTL), 0x0004_00fa, "EN PSP CT=0Fh COLD=40h");
    assert_eq!(h.reg(Reg::TIPG), 0x0060_200a);
    let mta = h
        .writes
        .iter()
        .filter(|(r, _)| (0x5200..0x5400).contains(r))
        .count();
    assert_eq!(mta, 128);
    for i in 0..RING_DESCRIPTORS as u32 {
        let d = RxDescriptor::from_bytes(&h.desc(RX_RING, i));
        assert_eq!(d.buffer, RX_BUFS + u64::from(i) * 2048);
        assert_eq!(d.status, 0);
    }
}

#[test]
fn init_failures_are_reported() {
    let hw = alloc::rc::Rc::new(core::cell::RefCell::new(Hw {
        mem: vec![0; 0x80000],
        reset_delay: RESET_POLLS + 1,
        ..Hw::default()
    }));
    let e = E1000::init(Model(hw.clone()), Model(hw.clone()), memory()).unwrap_err();
    assert_eq!(e, E1000Error::ResetTimeout);
    hw.borrow_mut().reset_delay = 0;
    let e = E1000::init(Model(hw.clone()), Model(hw), memory()).unwrap_err();
    assert_eq!(e, E1000Error::NoMacAddress);
    assert_eq!(
        e.to_string(),
        "no MAC address in receive address 0 or the EEPROM; the NIC cannot be used"
    );
}

/// No address in RAL0/RAH0 (Bochs clears them at reset): the MAC comes from EEPROM words
/// 0-2 through EERD, little-endian per word (§5.6.1), and is written to RAL0/RAH0 with AV.
#[test]
fn mac_from_the_eeprom_when_rah_is_not_valid() {
    let hw = alloc::rc::Rc::new(core::cell::RefCell::new(Hw {
        mem: vec![0; 0x80000],
        eeprom: [0x5452, 0xe100, 0x0700],
        ..Hw::default()
    }));
    let n = E1000::init(Model(hw.clone()), Model(hw.clone()), memory()).unwrap();
    assert_eq!(n.mac(), [0x52, 0x54, 0x00, 0xe1, 0x00, 0x07]);
    let h = hw.borrow();
    let eerd: Vec<u32> = h
        .writes
        .iter()
        .filter(|(r, _)| *r == Reg::EERD)
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(
        eerd,
        [0x0001, 0x0101, 0x0201],
        "START with word addresses 0, 1, 2"
    );
    assert_eq!(h.reg(Reg::RAL0), 0xe100_5452);
    assert_eq!(h.reg(Reg::RAH0), 0x8000_0700);
    // A blank EEPROM (all ones) is no address.
    drop(h);
    hw.borrow_mut().eeprom = [0xffff; 3];
    hw.borrow_mut().regs.clear();
    let e = E1000::init(Model(hw.clone()), Model(hw), memory()).unwrap_err();
    assert_eq!(e, E1000Error::NoMacAddress);
}

/// Transmit fills the ring up to one free slot, the hardware's DD frees slots, the ring
/// wraps, and every frame goes out once, in order.
#[test]
fn transmit_ring_full_reclaim_and_wrap() {
    let (hw, mut n) = nic();
    assert_eq!(n.tx_free(), 31);
    for i in 0..31u8 {
        assert!(n.transmit(&frame(i, 60 + usize::from(i))));
    }
    assert!(!n.transmit(&frame(99, 60)), "one descriptor stays free");
    assert_eq!(hw.borrow().reg(Reg::TDT), 31);
    hw.borrow_mut().run_tx(10);
    assert_eq!(n.tx_free(), 10);
    for i in 31..41u8 {
        assert!(n.transmit(&frame(i, 60)));
    }
    assert_eq!(hw.borrow().reg(Reg::TDT), 41 % 32, "wrapped");
    hw.borrow_mut().run_tx(100);
    let sent = hw.borrow().sent.clone();
    assert_eq!(sent.len(), 41);
    for (i, f) in sent.iter().enumerate() {
        assert_eq!(f[14], i as u8);
    }
    assert_eq!(sent[5].len(), 65);
    assert!(!n.transmit(&[0; 13]));
    assert!(!n.transmit(&[0; MAX_FRAME + 1]));
    let st = n.stats();
    assert_eq!((st.tx_frames, st.tx_ring_full, st.tx_malformed), (41, 1, 2));
    assert_eq!(st.tx_bytes, (0..31u64).map(|i| 60 + i).sum::<u64>() + 600);
}

/// Receive hands frames over in order, skips error descriptors, gives every descriptor
/// back (RDT follows), and is bounded per call.
#[test]
fn receive_in_order_errors_and_bound() {
    let (hw, mut n) = nic();
    let mut scratch = [0u8; BUFFER_BYTES];
    // The ring holds 31 frames (RDT = RDH - 1 after init); the 32nd finds no descriptor.
    for i in 0..31u8 {
        assert!(hw.borrow_mut().inject_rx(&frame(i, 64), 0));
    }
    assert!(!hw.borrow_mut().inject_rx(&frame(0, 64), 0));
    let mut got = Vec::new();
    assert_eq!(n.receive(20, &mut scratch, |f| got.push(f.to_vec())), 20);
    assert_eq!(hw.borrow().reg(Reg::RDT), 19);
    assert_eq!(n.receive(64, &mut scratch, |f| got.push(f.to_vec())), 11);
    assert_eq!(got.len(), 31);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, f)| f[14] == i as u8 && f.len() == 64));
    // After wrapping: a CRC error (errors bit 0) is dropped, the next frame still arrives.
    assert!(hw.borrow_mut().inject_rx(&frame(50, 80), 0x01));
    assert!(hw.borrow_mut().inject_rx(&frame(51, 80), 0));
    let mut later = Vec::new();
    assert_eq!(n.receive(64, &mut scratch, |f| later.push(f.to_vec())), 2);
    assert_eq!(later, [frame(51, 80)]);
    let st = n.stats();
    assert_eq!(
        (st.rx_frames, st.rx_errors, st.rx_bytes),
        (32, 1, 31 * 64 + 80)
    );
    assert_eq!(
        hw.borrow().reg(Reg::RDT),
        0,
        "31 + 2 descriptors: tail wrapped to 0"
    );
    // A descriptor given back has its buffer and a clear status again.
    let d = RxDescriptor::from_bytes(&hw.borrow().desc(RX_RING, 31));
    assert_eq!((d.buffer, d.status, d.length), (RX_BUFS + 31 * 2048, 0, 0));
}
