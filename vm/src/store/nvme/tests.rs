//! The NVMe logic against a model of a controller: reset and enable, queue creation,
//! Identify, PRP1/PRP2/PRP-list transfers (the model follows the PRPs as NVMe 1.4 §4.3 says),
//! MDTS splitting, flush, errors, timeouts.

use super::*;
use crate::store::block::SyncUnit;
use crate::store::{BlockIo, Store};
use alloc::rc::Rc;
use alloc::vec;
use core::cell::RefCell;

const MEM_BASE: u64 = 0x10_0000;
const MEM_PAGES: usize = 24;

/// A queue of the model: (SQ base, CQ base, entries, SQ head, CQ tail, phase).
type ModelQueue = (u64, u64, u16, u16, u16, bool);

#[derive(Debug)]
struct Ctrl {
    mem: Vec<u8>,
    disk: Vec<u8>,
    block: u32,
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    /// (sq base, cq base, entries, sq head, cq tail, phase) per queue id.
    queues: [Option<ModelQueue>; 2],
    /// Completions to post: (due tick, queue, cid, status).
    due: Vec<(u64, usize, u16, u16)>,
    now: u64,
    latency: u64,
    fail_read_lba: Option<u64>,
    hang: bool,
    /// (queue, opcode, lba, cdw12) of every command.
    log: Vec<(usize, u8, u64, u32)>,
    flushes: u32,
    mpsmin: u64,
    /// Identify Controller MDTS (0: no limit).
    mdts: u8,
    /// Identify Controller ONCS.
    oncs: u16,
    /// (SLBA, blocks) of every Dataset Management deallocate range.
    deallocated: Vec<(u64, u32)>,
    /// (prp1, prp2, bytes) of every I/O data command.
    prps: Vec<(u64, u64, usize)>,
}

impl Ctrl {
    fn m(&mut self, phys: u64, len: usize) -> &mut [u8] {
        let at = (phys - MEM_BASE) as usize;
        &mut self.mem[at..at + len]
    }

    fn post(&mut self, q: usize, cid: u16, status: u16) {
        let (sq, cq, n, head, tail, phase) = self.queues[q].unwrap();
        let mut e = [0u8; 16];
        e[8..10].copy_from_slice(&head.to_le_bytes());
        let dw3 = u32::from(cid) | u32::from(phase) << 16 | u32::from(status) << 17;
        e[12..16].copy_from_slice(&dw3.to_le_bytes());
        self.m(cq + u64::from(tail) * 16, 16).copy_from_slice(&e);
        let tail = (tail + 1) % n;
        self.queues[q] = Some((
            sq,
            cq,
            n,
            head,
            tail,
            if tail == 0 { !phase } else { phase },
        ));
    }

    /// The memory segments a command's PRPs describe (NVMe 1.4 §4.3): PRP1 to the end of its
    /// page, then PRP2 as the second page, or PRP2 as a list of page-aligned entries.
    fn segments(&mut self, prp1: u64, prp2: u64, len: usize) -> Vec<(u64, usize)> {
        let page = PAGE as u64;
        let first = len.min((page - prp1 % page) as usize);
        let mut out = vec![(prp1, first)];
        let mut left = len - first;
        let pages = left.div_ceil(PAGE);
        if pages == 1 {
            assert_eq!(prp2 % page, 0, "PRP2 as a data page is page aligned");
            out.push((prp2, left));
        } else if pages > 1 {
            assert_eq!(prp2 % 8, 0, "a PRP list pointer is qword aligned");
            for i in 0..pages {
                let e = u64::from_le_bytes(self.m(prp2 + 8 * i as u64, 8).try_into().unwrap());
                assert_eq!(e % page, 0, "list entry {i} is page aligned");
                let n = left.min(PAGE);
                out.push((e, n));
                left -= n;
            }
        }
        out
    }

    fn execute(&mut self, q: usize, cmd: &[u8]) -> u16 {
        let op = cmd[0];
        let cid = u16::from_le_bytes([cmd[2], cmd[3]]);
        let prp1 = u64::from_le_bytes(cmd[24..32].try_into().unwrap());
        let prp2 = u64::from_le_bytes(cmd[32..40].try_into().unwrap());
        let cdw10 = u32::from_le_bytes(cmd[40..44].try_into().unwrap());
        let cdw11 = u32::from_le_bytes(cmd[44..48].try_into().unwrap());
        let cdw12 = u32::from_le_bytes(cmd[48..52].try_into().unwrap());
        let lba = u64::from(cdw10) | u64::from(cdw11) << 32;
        self.log.push((q, op, lba, cdw12));
        let mut status = 0;
        if q == 0 {
            match op {
                admin::CREATE_IO_CQ => {
                    self.queues[1] = Some((0, prp1, (cdw10 >> 16) as u16 + 1, 0, 0, true))
                }
                admin::CREATE_IO_SQ => {
                    let (_, cq, n, ..) = self.queues[1].expect("CQ first");
                    assert_eq!(cdw11 >> 16, 1, "SQ 1 on CQ 1");
                    self.queues[1] = Some((prp1, cq, n, 0, 0, true));
                }
                admin::IDENTIFY if cdw10 == 1 => {
                    let mut id = vec![0u8; 4096];
                    id[4..12].copy_from_slice(b"SN123456");
                    id[24..40].copy_from_slice(b"Bulkhead NVMe   ");
                    id[77] = self.mdts;
                    id[520..522].copy_from_slice(&self.oncs.to_le_bytes());
                    id[516] = 1;
                    id[525] = 1;
                    self.m(prp1, 4096).copy_from_slice(&id);
                }
                admin::IDENTIFY => {
                    let mut id = vec![0u8; 4096];
                    let blocks = (self.disk.len() / self.block as usize) as u64;
                    id[0..8].copy_from_slice(&blocks.to_le_bytes());
                    id[26] = 1;
                    id[128 + 4 + 2] = self.block.trailing_zeros() as u8;
                    self.m(prp1, 4096).copy_from_slice(&id);
                }
                _ => status = 0x1, // invalid opcode
            }
        } else {
            let n = (cdw12 as usize & 0xFFFF) + 1;
            let (mut at, len) = (lba as usize * 512, n * 512);
            let mdts = (self.mdts != 0).then(|| (4096usize << self.mpsmin) << self.mdts);
            match op {
                nvm::READ | nvm::WRITE if mdts.is_some_and(|m| len > m) => {
                    status = 0x2; // invalid field in command: over MDTS
                }
                nvm::READ if Some(lba) == self.fail_read_lba => status = 0x281, // media: unrecovered read error
                nvm::READ | nvm::WRITE => {
                    self.prps.push((prp1, prp2, len));
                    for (phys, n) in self.segments(prp1, prp2, len) {
                        if op == nvm::READ {
                            let d = self.disk[at..at + n].to_vec();
                            self.m(phys, n).copy_from_slice(&d);
                        } else {
                            let d = self.m(phys, n).to_vec();
                            self.disk[at..at + n].copy_from_slice(&d);
                        }
                        at += n;
                    }
                }
                nvm::FLUSH => self.flushes += 1,
                nvm::WRITE_ZEROES if self.oncs & 8 != 0 => {
                    self.disk[at..at + len].fill(0);
                }
                nvm::DATASET_MANAGEMENT if self.oncs & 4 != 0 => {
                    assert_eq!(cdw11, 1 << 2, "deallocate (AD) only");
                    let ranges = (cdw10 & 0xFF) as usize + 1;
                    for r in 0..ranges {
                        let e = self.m(prp1 + 16 * r as u64, 16).to_vec();
                        let blocks = u32::from_le_bytes(e[4..8].try_into().unwrap());
                        let slba = u64::from_le_bytes(e[8..16].try_into().unwrap());
                        self.deallocated.push((slba, blocks));
                        // Deallocated blocks read as all ones here (DLFEAT: unspecified).
                        let a = slba as usize * 512;
                        self.disk[a..a + blocks as usize * 512].fill(0xFF);
                    }
                }
                _ => status = 0x1,
            }
        }
        let _ = cid;
        status
    }
}

#[derive(Debug, Clone)]
struct Bus(Rc<RefCell<Ctrl>>);

impl NvmeRegs for Bus {
    fn read32(&mut self, offset: u64) -> u32 {
        let c = self.0.borrow();
        match offset {
            reg::CAP => 0x0F | 20 << 24,                // MQES 15, TO 10 s
            0x04 => (1 << 5) | (c.mpsmin as u32) << 16, // CSS bit 37 (NVM), DSTRD 0, MPSMIN
            reg::CSTS => c.csts,
            reg::CC => c.cc,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: u64, v: u32) {
        let mut c = self.0.borrow_mut();
        match offset {
            reg::CC => {
                c.cc = v;
                if v & 1 == 0 {
                    c.csts = 0;
                } else {
                    assert_eq!(v & 0x00FF_0000, 0x0046_0000, "IOSQES 6, IOCQES 4");
                    let (asq, acq, aqa) = (c.asq, c.acq, c.aqa);
                    c.queues[0] = Some((asq, acq, (aqa & 0xFFF) as u16 + 1, 0, 0, true));
                    c.csts = 1;
                }
            }
            reg::AQA => c.aqa = v,
            reg::ASQ => c.asq = (c.asq & !0xFFFF_FFFF) | u64::from(v),
            0x2C => c.asq = (c.asq & 0xFFFF_FFFF) | u64::from(v) << 32,
            reg::ACQ => c.acq = (c.acq & !0xFFFF_FFFF) | u64::from(v),
            0x34 => c.acq = (c.acq & 0xFFFF_FFFF) | u64::from(v) << 32,
            o if o >= reg::DOORBELLS => {
                let idx = ((o - reg::DOORBELLS) / 4) as usize;
                let q = idx / 2;
                if idx % 2 == 1 {
                    return; // CQ head doorbell
                }
                let (sq, cq, n, mut head, tail, phase) = c.queues[q].expect("queue exists");
                while head != v as u16 {
                    let cmd = c.m(sq + u64::from(head) * 64, 64).to_vec();
                    head = (head + 1) % n;
                    c.queues[q] = Some((sq, cq, n, head, tail, phase));
                    let status = c.execute(q, &cmd);
                    let cid = u16::from_le_bytes([cmd[2], cmd[3]]);
                    let at = c.now + if q == 0 { 0 } else { c.latency };
                    c.due.push((at, q, cid, status));
                }
            }
            _ => {}
        }
    }

    fn now(&mut self) -> u64 {
        let mut c = self.0.borrow_mut();
        c.now += 1;
        let now = c.now;
        if !c.hang {
            let ready: Vec<_> = c.due.iter().copied().filter(|d| d.0 <= now).collect();
            c.due.retain(|d| d.0 > now);
            for (_, q, cid, st) in ready {
                c.post(q, cid, st);
            }
        }
        now
    }
}

impl DmaMemory for Bus {
    fn read(&mut self, phys: u64, out: &mut [u8]) {
        out.copy_from_slice(self.0.borrow_mut().m(phys, out.len()));
    }
    fn write(&mut self, phys: u64, data: &[u8]) {
        self.0
            .borrow_mut()
            .m(phys, data.len())
            .copy_from_slice(data);
    }
}

fn ctrl(sectors: usize, block: u32) -> Bus {
    Bus(Rc::new(RefCell::new(Ctrl {
        mem: vec![0xEE; MEM_PAGES * PAGE],
        disk: vec![0; sectors * 512],
        block,
        cc: 1, // left enabled by "firmware": init must disable it first
        csts: 1,
        aqa: 0,
        asq: 0,
        acq: 0,
        queues: [None, None],
        due: Vec::new(),
        now: 0,
        latency: 3,
        fail_read_lba: None,
        hang: false,
        log: Vec::new(),
        flushes: 0,
        mpsmin: 0,
        mdts: 0,
        oncs: 0x0C,
        deallocated: Vec::new(),
        prps: Vec::new(),
    })))
}

fn pages() -> Pages {
    let p = |i: u64| MEM_BASE + i * PAGE as u64;
    Pages {
        admin_sq: p(0),
        admin_cq: p(1),
        io_sq: p(2),
        io_cq: p(3),
        data: p(4),
        prp_list: p(5),
        buffer: p(8),
    }
}

const HZ: u64 = 1000;

#[test]
fn init_identifies_the_controller_and_namespace() {
    let bus = ctrl(8192, 512);
    let c = NvmeController::init(bus.clone(), bus.clone(), pages(), "nvme0n1", HZ).unwrap();
    assert_eq!(
        c.identity,
        Some(Identity {
            model: "Bulkhead NVMe".into(),
            serial: "SN123456".into(),
            namespaces: 1,
            volatile_cache: true,
            ns1_blocks: 8192,
            ns1_block_size: 512,
            mdts_bytes: None,
            dataset_management: true,
            write_zeroes: true
        })
    );
    assert_eq!(
        c.units(),
        [DriveInfo {
            name: "nvme0n1".into(),
            model: "Bulkhead NVMe".into(),
            sectors: 8192,
            write_cache: true,
            flush: true,
            dma: true,
            discard: true,
            write_zeroes: true
        }]
    );
    let ops: Vec<u8> = bus.0.borrow().log.iter().map(|l| l.1).collect();
    assert_eq!(
        ops,
        [
            admin::CREATE_IO_CQ,
            admin::CREATE_IO_SQ,
            admin::IDENTIFY,
            admin::IDENTIFY
        ]
    );
    // 4 KiB logical blocks: identified, not used as a unit.
    let bus = ctrl(8192, 4096);
    let c = NvmeController::init(bus.clone(), bus, pages(), "nvme1n1", HZ).unwrap();
    assert!(c.units().is_empty());
    assert_eq!(c.identity.unwrap().ns1_block_size, 4096);
}

#[test]
fn init_errors() {
    let bus = ctrl(64, 512);
    bus.0.borrow_mut().mpsmin = 1;
    assert_eq!(
        NvmeController::init(bus.clone(), bus, pages(), "n", HZ).unwrap_err(),
        NvmeError::PageSize { min: 8192 }
    );
    let bus = ctrl(64, 512);
    bus.0.borrow_mut().hang = true;
    assert_eq!(
        NvmeController::init(bus.clone(), bus, pages(), "n", HZ).unwrap_err(),
        NvmeError::AdminTimeout {
            opcode: admin::CREATE_IO_CQ
        }
    );
    assert!(NvmeError::NotReady { enable: true }
        .to_string()
        .contains("did not become ready"));
}

#[test]
fn io_round_trip_with_prp_lists_and_queue_wrap() {
    let bus = ctrl(8192, 512);
    let mut c = NvmeController::init(bus.clone(), bus.clone(), pages(), "nvme0n1", HZ).unwrap();
    assert_eq!(c.max_command_bytes, BUFFER_BYTES);
    let data: Vec<u8> = (0..40 * 1024u32).map(|i| (i * 7 + i / 512) as u8).collect();
    let mut io = SyncUnit {
        dev: &mut c,
        unit: 0,
        max_polls: 100_000,
    };
    // 40 KiB: one command of 80 blocks, PRP1 and a PRP list of 9 pages.
    io.write(100, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    io.read(100, &mut back).unwrap();
    assert_eq!(back, data);
    // 100 KiB: the 64 KiB bounce buffer, then 36 KiB.
    let big: Vec<u8> = (0..100 * 1024u32).map(|i| (i ^ (i >> 9)) as u8).collect();
    io.write(2000, &big).unwrap();
    let mut back = vec![0u8; big.len()];
    io.read(2000, &mut back).unwrap();
    assert_eq!(back, big);
    // Small writes: PRP1 alone, and more than once around the 16-entry I/O queues.
    for i in 0..20u64 {
        io.write(5000 + i, &[i as u8; 512]).unwrap();
    }
    io.flush().unwrap();
    assert_eq!(c.transfers(), Transfers { dma: 26, pio: 0 });
    let ctl = bus.0.borrow();
    assert_eq!(&ctl.disk[100 * 512..100 * 512 + data.len()], &data[..]);
    assert_eq!(&ctl.disk[2000 * 512..2000 * 512 + big.len()], &big[..]);
    assert!((0..20).all(|i| ctl.disk[(5000 + i) * 512] == i as u8));
    assert_eq!(ctl.flushes, 1);
    let writes: Vec<(u64, u32)> = ctl
        .log
        .iter()
        .filter(|l| l.0 == 1 && l.1 == nvm::WRITE)
        .map(|l| (l.2, l.3))
        .take(3)
        .collect();
    assert_eq!(writes, [(100, 79), (2000, 127), (2128, 71)]);
    let buf = pages().buffer;
    let list = pages().prp_list;
    assert_eq!(ctl.prps[0], (buf, list, 40 * 1024));
    assert_eq!(ctl.prps[6], (buf, 0, 512), "one sector: PRP1 only");
}

#[test]
fn commands_are_split_at_mdts() {
    let bus = ctrl(8192, 512);
    bus.0.borrow_mut().mdts = 1; // 2 pages of CAP.MPSMIN (4 KiB): 8 KiB
    let mut c = NvmeController::init(bus.clone(), bus.clone(), pages(), "nvme0n1", HZ).unwrap();
    assert_eq!(c.identity.as_ref().unwrap().mdts_bytes, Some(8192));
    assert_eq!(c.max_command_bytes, 8192);
    let data: Vec<u8> = (0..40 * 1024u32).map(|i| (i * 13) as u8).collect();
    let mut io = SyncUnit {
        dev: &mut c,
        unit: 0,
        max_polls: 100_000,
    };
    io.write(64, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    io.read(64, &mut back).unwrap();
    assert_eq!(back, data);
    let ctl = bus.0.borrow();
    let writes: Vec<(u64, u32)> = ctl
        .log
        .iter()
        .filter(|l| l.0 == 1 && l.1 == nvm::WRITE)
        .map(|l| (l.2, l.3))
        .collect();
    // Five commands of 16 blocks, each two pages: PRP1 and PRP2, no list.
    assert_eq!(writes, [(64, 15), (80, 15), (96, 15), (112, 15), (128, 15)]);
    let buf = pages().buffer;
    assert!(ctl
        .prps
        .iter()
        .all(|&p| p == (buf, buf + PAGE as u64, 8192)));
    drop(ctl);
    // MDTS of 16 pages: the 64 KiB buffer is the limit; with an 8 KiB MPSMIN the controller
    // is refused (this driver uses 4 KiB pages) before MDTS matters.
    let bus = ctrl(64, 512);
    bus.0.borrow_mut().mdts = 5;
    let c = NvmeController::init(bus.clone(), bus, pages(), "n", HZ).unwrap();
    assert_eq!(c.max_command_bytes, BUFFER_BYTES);
}

#[test]
fn unusable_dma_memory_is_refused() {
    let bus = ctrl(64, 512);
    let mut p = pages();
    p.prp_list += 8;
    assert_eq!(
        NvmeController::init(bus.clone(), bus, p, "n", HZ).unwrap_err(),
        NvmeError::Memory(prp::PrpError::ListUnaligned {
            phys: pages().prp_list + 8
        })
    );
}

#[test]
fn device_errors_timeouts_and_bad_submissions() {
    let bus = ctrl(64, 512);
    let mut c = NvmeController::init(bus.clone(), bus.clone(), pages(), "nvme0n1", HZ).unwrap();
    bus.0.borrow_mut().fail_read_lba = Some(8);
    let mut b = vec![0u8; 4096];
    assert_eq!(
        SyncUnit {
            dev: &mut c,
            unit: 0,
            max_polls: 10_000
        }
        .read(8, &mut b),
        Err(IoError::Device {
            lba: 8,
            status: 0x281
        })
    );
    assert_eq!(c.errors, 1);
    bus.0.borrow_mut().fail_read_lba = None;
    bus.0.borrow_mut().hang = true;
    assert_eq!(
        SyncUnit {
            dev: &mut c,
            unit: 0,
            max_polls: 10_000
        }
        .read(0, &mut b),
        Err(IoError::Timeout { lba: 0 })
    );
    assert_eq!(c.timeouts, 1);
    let r = |lba, n| Request {
        tag: 0,
        op: Op::Read,
        lba,
        buf: vec![0; n],
    };
    assert!(c.submit(0, r(63, 1024)).is_err());
    assert!(c.submit(0, r(0, 10)).is_err());
    assert!(c.submit(1, r(0, 512)).is_err());
}

#[test]
fn a_store_on_an_nvme_namespace() {
    let bus = ctrl(4096, 512);
    let mut c = NvmeController::init(bus.clone(), bus, pages(), "nvme0n1", HZ).unwrap();
    let mut io = SyncUnit {
        dev: &mut c,
        unit: 0,
        max_polls: 1_000_000,
    };
    let region = Store::locate(&mut io).unwrap();
    let mut s = Store::format(&mut io, region, 8, [1; 16]).unwrap();
    s.create(&mut io, "disk", 8192).unwrap();
    let o = Store::open_drive(&mut io).unwrap();
    assert_eq!(o.header(), s.header());
    let r = o.scratch_check(&mut io).unwrap().unwrap();
    assert_eq!(r.mismatches, 0);
}

#[test]
fn dataset_management_and_write_zeroes_pass_through() {
    let bus = ctrl(200_000, 512);
    let mut c = NvmeController::init(bus.clone(), bus.clone(), pages(), "nvme0n1", HZ).unwrap();
    let mut io = SyncUnit {
        dev: &mut c,
        unit: 0,
        max_polls: 100_000,
    };
    io.write(10, &[0xA5; 8 * 512]).unwrap();
    io.range(Op::Discard(8), 10).unwrap();
    // 70000 blocks: Write Zeroes of 65536, then 4464 (NLB is 16 bits).
    io.write(100_000, &[0x5A; 4096]).unwrap();
    io.range(Op::WriteZeroes(70_000), 100_000).unwrap();
    let mut back = vec![1u8; 4096];
    io.read(100_000, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0));
    let r = io.zeroing_check(1000, 65536).unwrap();
    assert_eq!(
        r,
        crate::store::block::ZeroingReport {
            discarded: true,
            drive_zeroed: true,
            nonzero: 0
        }
    );
    let ctl = bus.0.borrow();
    assert_eq!(ctl.deallocated, [(10, 8), (1000, 128)]);
    let zeroes: Vec<(u64, u32)> = ctl
        .log
        .iter()
        .filter(|l| l.0 == 1 && l.1 == nvm::WRITE_ZEROES)
        .map(|l| (l.2, l.3))
        .collect();
    assert_eq!(zeroes, [(100_000, 65535), (165_536, 4463), (1000, 127)]);
    assert_eq!(
        dsm_range(0x1_0000_0002, 8)[4..],
        [8, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]
    );
    drop(ctl);
    // A controller without them (ONCS 0): the unit does not offer them, requests are refused
    // with a precise error before reaching it, and the check zeroes by writing.
    let bus = ctrl(4096, 512);
    bus.0.borrow_mut().oncs = 0;
    let mut c = NvmeController::init(bus.clone(), bus.clone(), pages(), "nvme0n1", HZ).unwrap();
    assert!(!c.units()[0].discard && !c.units()[0].write_zeroes);
    let mut io = SyncUnit {
        dev: &mut c,
        unit: 0,
        max_polls: 100_000,
    };
    assert_eq!(
        io.range(Op::Discard(8), 0),
        Err(IoError::Unsupported { op: Op::Discard(8) })
    );
    let r = io.zeroing_check(64, 4096).unwrap();
    assert_eq!((r.discarded, r.drive_zeroed, r.nonzero), (false, false, 0));
    assert!(bus
        .0
        .borrow()
        .log
        .iter()
        .all(|l| l.1 != nvm::DATASET_MANAGEMENT || l.0 == 0));
}
