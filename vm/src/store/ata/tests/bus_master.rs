//! Bus-master DMA: PRD tables against the layout of "Programming Interface for Bus Master
//! IDE Controller" rev 1.0 §1.2 (8-byte entries, a count of 0 meaning 64 KiB, End Of Table
//! in bit 31, no entry across a 64 KiB boundary), and the channel's READ/WRITE DMA EXT
//! commands against the fake channel's bus master, which checks every table it walks.

use super::*;
use dma::{prd_table, DmaArea, PrdEntry, PrdError};

#[test]
fn prd_entries_have_the_specified_layout() {
    let e = PrdEntry {
        base: 0x0012_3400,
        bytes: 0x1_0000,
        end_of_table: true,
    };
    // 64 KiB is written as a count of 0; EOT is bit 31 of the second dword.
    assert_eq!(e.encode(), [0x00, 0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x80]);
    assert_eq!(PrdEntry::decode(&e.encode()), e);
    let f = PrdEntry {
        base: 0x2000,
        bytes: 0x200,
        end_of_table: false,
    };
    assert_eq!(f.encode(), [0x00, 0x20, 0, 0, 0x00, 0x02, 0, 0]);
    assert_eq!(PrdEntry::decode(&f.encode()), f);
}

#[test]
fn prd_tables_split_at_64k_boundaries_and_end_with_eot() {
    // An aligned 64 KiB buffer: one entry.
    assert_eq!(
        prd_table(&[(0x30_0000, 0x1_0000)], 512).unwrap(),
        [PrdEntry {
            base: 0x30_0000,
            bytes: 0x1_0000,
            end_of_table: true
        }]
    );
    // 64 KiB starting half-way into a 64 KiB block: two entries, split at the boundary.
    let t = prd_table(&[(0x30_8000, 0x1_0000)], 512).unwrap();
    assert_eq!(
        t.iter()
            .map(|e| (e.base, e.bytes, e.end_of_table))
            .collect::<Vec<_>>(),
        [(0x30_8000, 0x8000, false), (0x31_0000, 0x8000, true)]
    );
    // Several regions (scattered pages), one crossing a boundary.
    let t = prd_table(
        &[(0x1000, 0x1000), (0xF800, 0x1000), (0x5_0000, 0x200)],
        512,
    )
    .unwrap();
    assert_eq!(
        t.iter()
            .map(|e| (e.base, e.bytes, e.end_of_table))
            .collect::<Vec<_>>(),
        [
            (0x1000, 0x1000, false),
            (0xF800, 0x800, false),
            (0x1_0000, 0x800, false),
            (0x5_0000, 0x200, true)
        ]
    );
    // 128 KiB from 4 GiB - 128 KiB: two full entries, still addressable.
    assert_eq!(prd_table(&[(0xFFFE_0000, 0x2_0000)], 512).unwrap().len(), 2);
}

#[test]
fn prd_tables_refuse_what_the_bus_master_cannot_do() {
    assert_eq!(prd_table(&[], 512), Err(PrdError::Empty));
    assert_eq!(
        prd_table(&[(0x1001, 0x200)], 512),
        Err(PrdError::Odd {
            phys: 0x1001,
            bytes: 0x200
        })
    );
    assert_eq!(
        prd_table(&[(0x1000, 0x201)], 512),
        Err(PrdError::Odd {
            phys: 0x1000,
            bytes: 0x201
        })
    );
    assert_eq!(
        prd_table(&[(0xFFFF_F000, 0x2000)], 512),
        Err(PrdError::Above4GiB { phys: 0xFFFF_F000 })
    );
    assert_eq!(
        prd_table(&[(0x1_0000_0000, 0x200)], 512),
        Err(PrdError::Above4GiB {
            phys: 0x1_0000_0000
        })
    );
    assert_eq!(
        prd_table(&[(0, 0x3_0000)], 2),
        Err(PrdError::TooManyEntries { needed: 3, max: 2 })
    );
    let area = |table, table_bytes| DmaArea {
        table,
        table_bytes,
        buffer: 0x20_0000,
        buffer_bytes: 0x1_0000,
    };
    assert_eq!(area(0x1_0000, 4096).validate(), Ok(512));
    // A table across a 64 KiB boundary, or not dword aligned.
    assert!(area(0xF800, 4096).validate().is_err());
    assert!(area(0x1_0002, 4096).validate().is_err());
    assert!(area(0xFFFF_F000, 8192).validate().is_err());
}

fn dma_channel(buffer_bytes: usize) -> AtaChannel<FakeBus> {
    AtaChannel::probe(
        FakeBus::new(Some(4096), None).with_dma(buffer_bytes),
        "ata0",
        TIMEOUT,
    )
}

fn pattern(sectors: usize) -> Vec<u8> {
    (0..sectors * SECTOR)
        .map(|i| (i as u32).wrapping_mul(2_246_822_519).to_le_bytes()[2])
        .collect()
}

#[test]
fn transfers_use_dma_in_bounce_buffer_sized_commands() {
    let mut ch = dma_channel(0x1_0000);
    assert!(ch.units()[0].dma);
    let data = pattern(600);
    sync(&mut ch).write(1000, &data).unwrap();
    assert_eq!(
        &ch.bus.drives[0].as_ref().unwrap().data[1000 * SECTOR..1600 * SECTOR],
        &data[..]
    );
    let mut back = vec![0u8; 600 * SECTOR];
    sync(&mut ch).read(1000, &mut back).unwrap();
    assert_eq!(back, data);
    // 600 sectors in commands of 128 (the 64 KiB bounce buffer): 128 x 4 + 88, each way.
    let cmds: Vec<_> = ch
        .bus
        .commands
        .iter()
        .filter(|c| c.0 != cmd::IDENTIFY_DEVICE)
        .map(|c| (c.0, c.1, c.2))
        .collect();
    let expect = |op| {
        [
            (1000, 128),
            (1128, 128),
            (1256, 128),
            (1384, 128),
            (1512, 88),
        ]
        .map(|(l, n)| (op, l, n))
    };
    assert_eq!(cmds[..5], expect(cmd::WRITE_DMA_EXT));
    assert_eq!(cmds[5..], expect(cmd::READ_DMA_EXT));
    assert_eq!(
        ch.transfers,
        Transfers { dma: 10, pio: 0 },
        "every transfer by DMA"
    );
    assert_eq!(
        ch.bus.words_moved, 256,
        "nothing but IDENTIFY's 256 words through the data register"
    );
    let bm = ch.bus.bm.as_ref().unwrap();
    // The aligned 64 KiB buffer: one entry per table (with EOT), 64 KiB or the remainder.
    assert!(bm.tables.iter().all(|t| t.len() == 1 && t[0].end_of_table));
    assert_eq!(bm.tables[4][0].bytes, 88 * SECTOR as u32);
    assert_eq!(bm.tables[0][0].bytes, 0x1_0000);
    // The bus master is stopped and its status clean after each command.
    assert_eq!((bm.cmd & dma::command::START, bm.status), (0, 0));
    // A flush is still FLUSH CACHE EXT (no data, no DMA).
    sync(&mut ch).flush().unwrap();
    assert_eq!(
        ch.bus.commands.last().map(|c| c.0),
        Some(cmd::FLUSH_CACHE_EXT)
    );
}

#[test]
fn an_unaligned_bounce_buffer_gets_split_entries() {
    let mut bus = FakeBus::new(Some(4096), None).with_dma(0x1_0000);
    bus.bm.as_mut().unwrap().area.buffer = MEM_BASE + 0x1_8000;
    let mut ch = AtaChannel::probe(bus, "ata0", TIMEOUT);
    let data = pattern(128);
    sync(&mut ch).write(0, &data).unwrap();
    let mut back = vec![0u8; 128 * SECTOR];
    sync(&mut ch).read(0, &mut back).unwrap();
    assert_eq!(back, data);
    let t = &ch.bus.bm.as_ref().unwrap().tables[0];
    assert_eq!(
        t.iter()
            .map(|e| (u64::from(e.base), e.bytes, e.end_of_table))
            .collect::<Vec<_>>(),
        [
            (MEM_BASE + 0x1_8000, 0x8000, false),
            (MEM_BASE + 0x2_0000, 0x8000, true)
        ]
    );
}

#[test]
fn drives_without_dma_and_unusable_areas_fall_back_to_pio() {
    let mut bus = FakeBus::new(Some(256), Some(256)).with_dma(0x1_0000);
    bus.drives[1].as_mut().unwrap().identify[49] = 0;
    let mut ch = AtaChannel::probe(bus, "ata0", TIMEOUT);
    assert_eq!(
        ch.units().iter().map(|u| u.dma).collect::<Vec<_>>(),
        [true, false]
    );
    let mut io = SyncUnit {
        dev: &mut ch,
        unit: 1,
        max_polls: 1_000_000,
    };
    io.write(3, &pattern(4)).unwrap();
    assert_eq!(ch.bus.commands.last().unwrap().0, cmd::WRITE_SECTORS_EXT);
    assert_eq!(ch.transfers, Transfers { dma: 0, pio: 1 });
    // A bounce buffer above 4 GiB: the channel keeps PIO and says why.
    let mut bus = FakeBus::new(Some(256), None).with_dma(0x1_0000);
    bus.bm.as_mut().unwrap().area.buffer = 0xFFFF_8000;
    let ch = AtaChannel::probe(bus, "ata0", TIMEOUT);
    assert!(!ch.units()[0].dma);
    assert_eq!(
        ch.dma_unusable,
        Some(PrdError::Above4GiB { phys: 0xFFFF_8000 })
    );
}

#[test]
fn dma_errors_and_timeouts_stop_the_bus_master() {
    let mut ch = dma_channel(0x1_0000);
    ch.bus.fail_lba = Some(10);
    let mut b = vec![0u8; 8 * SECTOR];
    assert_eq!(
        sync(&mut ch).read(6, &mut b),
        Err(IoError::Device {
            lba: 6,
            status: 0x4140
        })
    );
    assert_eq!((ch.errors, ch.transfers.dma), (1, 0));
    let bm = ch.bus.bm.as_ref().unwrap();
    assert_eq!((bm.cmd & dma::command::START, bm.status), (0, 0));
    ch.bus.fail_lba = None;
    sync(&mut ch).read(6, &mut b).unwrap();
    ch.bus.hang = true;
    ch.submit(
        0,
        Request {
            tag: 1,
            op: Op::Write,
            lba: 0,
            buf: pattern(8),
        },
    )
    .unwrap();
    let c = (0..100_000).find_map(|_| ch.poll()).unwrap();
    assert_eq!(c.1.result, Err(IoError::Timeout { lba: 0 }));
    assert_eq!((ch.timeouts, ch.bus.resets), (1, 1));
    let bm = ch.bus.bm.as_ref().unwrap();
    assert_eq!(
        bm.cmd & dma::command::START,
        0,
        "a timed-out transfer is stopped"
    );
    // The channel works again after the reset.
    sync(&mut ch).write(0, &pattern(8)).unwrap();
    assert_eq!(
        &ch.bus.drives[0].as_ref().unwrap().data[..8 * SECTOR],
        &pattern(8)[..]
    );
}

#[test]
fn a_store_on_a_dma_drive() {
    let mut ch = dma_channel(0x1_0000);
    let mut io = sync(&mut ch);
    let region = Store::locate(&mut io).unwrap();
    let mut s = Store::format(&mut io, region, 8, [3; 16]).unwrap();
    s.create(&mut io, "vm-disk", 64 * 1024).unwrap();
    let o = Store::open_drive(&mut io).unwrap();
    assert_eq!(o.header(), s.header());
    assert_eq!(ch.transfers.pio, 0);
    assert!(ch.transfers.dma > 0);
}

#[test]
fn trim_blocks_follow_the_lba_range_entry_layout() {
    let b = trim_block(0x0102_0304_0506, 8).unwrap();
    // LBA in bits 47:0, count in bits 63:48; the rest of the block unused (zero).
    assert_eq!(b[..8], [0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x08, 0x00]);
    assert!(b[8..].iter().all(|&x| x == 0));
    // 65536 sectors: 65535 + 1 in two entries.
    let b = trim_block(100, 65536).unwrap();
    assert_eq!(
        u64::from_le_bytes(b[..8].try_into().unwrap()),
        100 | 0xFFFF << 48
    );
    assert_eq!(
        u64::from_le_bytes(b[8..16].try_into().unwrap()),
        (100 + 65535) | 1 << 48
    );
    assert!(trim_block(0, 64 * 65535).is_some());
    assert_eq!(trim_block(0, 64 * 65535 + 1), None, "more than one block");
    assert_eq!(trim_block((1 << 48) - 4, 8), None, "beyond 48-bit LBAs");
}

#[test]
fn discard_is_data_set_management_trim_by_dma() {
    let mut bus = FakeBus::new(Some(4096), Some(4096)).with_dma(0x1_0000);
    bus.drives[0].as_mut().unwrap().identify[169] = 1;
    let mut ch = AtaChannel::probe(bus, "ata0", TIMEOUT);
    assert_eq!(
        ch.units()
            .iter()
            .map(|u| (u.discard, u.write_zeroes))
            .collect::<Vec<_>>(),
        [(true, false), (false, false)],
        "TRIM on the master only (word 169 bit 0); no zeroing command on ATA"
    );
    let mut io = sync(&mut ch);
    io.write(200, &pattern(16)).unwrap();
    io.range(Op::Discard(16), 200).unwrap();
    io.range(Op::Discard(65536), 1000).unwrap_err(); // beyond the 4096-sector drive
    io.range(Op::Discard(3000), 1000).unwrap();
    let dsm = ch
        .bus
        .commands
        .iter()
        .filter(|c| c.0 == cmd::DATA_SET_MANAGEMENT)
        .map(|c| (c.1, c.2))
        .collect::<Vec<_>>();
    assert_eq!(dsm, [(0, 1), (0, 1)], "LBA 0, one block of entries each");
    assert_eq!(ch.bus.trims, [(200, 16), (1000, 3000)]);
    assert!(
        ch.bus.drives[0].as_ref().unwrap().data[200 * SECTOR..216 * SECTOR]
            .iter()
            .all(|&b| b == 0xFF)
    );
    // Neither counted as a data transfer; the bus master stopped after each.
    assert_eq!(ch.transfers, Transfers { dma: 1, pio: 0 });
    let bm = ch.bus.bm.as_ref().unwrap();
    assert_eq!((bm.cmd & dma::command::START, bm.status), (0, 0));
    // The slave has no TRIM: refused before the drive sees it; the zeroing check writes
    // zeroes there.
    let mut io = SyncUnit {
        dev: &mut ch,
        unit: 1,
        max_polls: 1_000_000,
    };
    assert_eq!(
        io.range(Op::Discard(8), 0),
        Err(IoError::Unsupported { op: Op::Discard(8) })
    );
    let z = io.zeroing_check(64, 4096).unwrap();
    assert_eq!((z.discarded, z.drive_zeroed, z.nonzero), (false, false, 0));
    let mut io = sync(&mut ch);
    let z = io.zeroing_check(64, 4096).unwrap();
    assert_eq!((z.discarded, z.drive_zeroed, z.nonzero), (true, false, 0));
}
