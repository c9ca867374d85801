//! GPT: the store partition found through the primary or the backup header, and each
//! malformed table's own error.

use crate::store::mem::MemDevice;
use crate::store::*;
use alloc::string::ToString;
use alloc::vec::Vec;

const ID: [u8; 16] = *b"bulkhead-test-id";

/// The sectors of a GPT as `gpt::fresh` gives them.
type Sectors = Vec<(u64, Vec<u8>)>;

fn whole(sectors: u64) -> Region {
    Region {
        start: 0,
        sectors,
        partition: None,
    }
}

#[test]
fn gpt_partition_is_found_and_backup_used() {
    let total = 8192;
    let mut d = MemDevice::new(total);
    for (lba, bytes) in gpt::fresh(total, [[1; 16], [2; 16]]).unwrap() {
        d.write(lba, &bytes).unwrap();
    }
    let r = Store::locate(&mut d).unwrap();
    assert_eq!(
        r,
        Region {
            start: 2048,
            sectors: total - 33 - 2048,
            partition: Some(0)
        }
    );
    let mut s = Store::format(&mut d, r, 2048, ID).unwrap();
    s.create(&mut d, "root", 512).unwrap();
    // Damaged primary GPT header: the backup finds the same partition.
    d.data[SECTOR + 30] ^= 1;
    assert_eq!(Store::locate(&mut d).unwrap(), r);
    assert_eq!(Store::open_drive(&mut d).unwrap().disks().len(), 1);
    // Both damaged: the primary's error.
    d.data[(total as usize - 1) * SECTOR + 30] ^= 1;
    assert!(matches!(
        Store::locate(&mut d),
        Err(StoreError::Gpt(GptError::HeaderChecksum { .. }))
    ));
}

#[test]
fn gpt_errors() {
    let total = 8192u64;
    let build = |edit: &dyn Fn(&mut Sectors)| {
        let mut parts = gpt::fresh(total, [[1; 16], [2; 16]]).unwrap();
        edit(&mut parts);
        // Re-seal the arrays and headers as a writer would have.
        let arr_crc = crc::crc32_ieee(&parts[2].1);
        for h in [1, 4] {
            let b = &mut parts[h].1;
            b[88..92].copy_from_slice(&arr_crc.to_le_bytes());
            b[16..20].fill(0);
            let size = u32::from_le_bytes(b[12..16].try_into().unwrap()).clamp(92, 512) as usize;
            let c = crc::crc32_ieee(&b[..size]);
            b[16..20].copy_from_slice(&c.to_le_bytes());
        }
        let mut d = MemDevice::new(total);
        for (lba, bytes) in parts {
            d.write(lba, &bytes).unwrap();
        }
        Store::locate(&mut d)
    };
    let both = |p: &mut Sectors, f: &dyn Fn(&mut Vec<u8>)| {
        f(&mut p[1].1);
        f(&mut p[4].1);
    };
    assert_eq!(
        build(&|p| both(p, &|h| h[12..16].copy_from_slice(&600u32.to_le_bytes()))),
        Err(StoreError::Gpt(GptError::HeaderSize(600)))
    );
    assert_eq!(
        build(&|p| both(p, &|h| h[24..32].copy_from_slice(&5u64.to_le_bytes()))),
        Err(StoreError::Gpt(GptError::MyLba {
            stored: 5,
            read_at: 1
        }))
    );
    assert_eq!(
        build(&|p| both(p, &|h| h[84..88].copy_from_slice(&100u32.to_le_bytes()))),
        Err(StoreError::Gpt(GptError::EntryArray {
            entries: 128,
            entry_size: 100
        }))
    );
    assert_eq!(
        build(&|p| both(p, &|h| h[72..80].copy_from_slice(&8190u64.to_le_bytes()))),
        Err(StoreError::Gpt(GptError::EntryArrayOutOfRange {
            lba: 8190
        }))
    );
    assert_eq!(
        build(&|p| {
            p[2].1[40..48].copy_from_slice(&(total - 1).to_le_bytes());
            p[3].1 = p[2].1.clone();
        }),
        Err(StoreError::Gpt(GptError::BadPartition { index: 0 }))
    );
    assert_eq!(
        build(&|p| {
            let e: Vec<u8> = p[2].1[..128].to_vec();
            p[2].1[128 * 5..128 * 6].copy_from_slice(&e);
            p[3].1 = p[2].1.clone();
        }),
        Err(StoreError::Gpt(GptError::SeveralStores {
            first: 0,
            second: 5
        }))
    );
    assert_eq!(
        build(&|p| {
            p[2].1[0] ^= 1;
            p[3].1 = p[2].1.clone();
        }),
        Err(StoreError::NoStorePartition)
    );
    // An array whose checksum is stale (not re-sealed): the array's own error.
    let mut parts = gpt::fresh(total, [[1; 16], [2; 16]]).unwrap();
    parts[2].1[300] = 1;
    parts[3].1[300] = 1;
    let mut d = MemDevice::new(total);
    for (lba, bytes) in parts {
        d.write(lba, &bytes).unwrap();
    }
    assert!(matches!(
        Store::locate(&mut d),
        Err(StoreError::Gpt(GptError::EntriesChecksum { .. }))
    ));
    // No GPT at all: the whole drive.
    let mut d = MemDevice::new(100);
    assert_eq!(Store::locate(&mut d).unwrap(), whole(100));
    assert!(gpt::fresh(2048, [[0; 16]; 2]).is_none());
    assert!(StoreError::NoStorePartition
        .to_string()
        .contains(gpt::STORE_TYPE_TEXT));
}
