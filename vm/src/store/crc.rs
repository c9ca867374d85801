//! The two CRC-32s the disk store needs, table-driven and computed at compile time:
//! CRC-32C (Castagnoli, iSCSI polynomial 0x1EDC6F41, reflected 0x82F63B78; RFC 3720 §12.1)
//! for the store's own header, and the IEEE 802.3 CRC-32 (reflected 0xEDB88320) that GPT
//! uses for its header and partition array (UEFI 2.10 §5.3.2). Both start at !0 and are
//! inverted at the end.

const fn table(poly: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

const CASTAGNOLI: [u32; 256] = table(0x82F6_3B78);
const IEEE: [u32; 256] = table(0xEDB8_8320);

fn run(t: &[u32; 256], data: &[u8]) -> u32 {
    !data
        .iter()
        .fold(!0u32, |c, &b| t[usize::from((c as u8) ^ b)] ^ (c >> 8))
}

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    run(&CASTAGNOLI, data)
}

/// The IEEE CRC-32 of `data` (the one GPT and zlib use).
pub fn crc32_ieee(data: &[u8]) -> u32 {
    run(&IEEE, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        // The catalogue "check" values for the ASCII string 123456789.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 §B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }
}
