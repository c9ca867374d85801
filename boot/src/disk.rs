//! `bulkhead-boot disk ...`: the disk store (`vm::store`) on an image file or a block device:
//! format it, list, create, grow, delete, import and export its disks. The hypervisor reads
//! the same format with the same code (docs/architecture.md, "Disk store").

use crate::BootError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use vm::store::{header, BlockIo, CopyState, IoError, Store, SECTOR};

pub const HELP: &str = "\
bulkhead-boot disk: the disk store on an image file or a block device (docs/architecture.md)

USAGE:
  bulkhead-boot disk init DRIVE [--size SIZE] [--gpt] [--unit SIZE] [--force]
      Format a store. A DRIVE file that does not exist is created with --size (K/M/G
      suffixes, powers of 1024); an existing one is grown to --size. --gpt writes a fresh
      GPT with one Bulkhead store partition over the drive (from 1 MiB); without it a drive
      that has a GPT gets the store in its Bulkhead partition, and one without a GPT holds
      the store on the whole drive. --unit is the allocation unit (default 1M, 4K to 512M).
      A drive that already holds a store is refused without --force.
  bulkhead-boot disk ls DRIVE
      List the store's disks (name, size, extents) and the state of both header copies.
  bulkhead-boot disk create DRIVE NAME --size SIZE
      Add a zeroed disk. NAME: 1-32 characters of a-z, 0-9 and '-', a letter first.
  bulkhead-boot disk grow DRIVE NAME --size SIZE
      Grow a disk to SIZE; the new part reads as zeros.
  bulkhead-boot disk delete DRIVE NAME
  bulkhead-boot disk import DRIVE NAME FILE [--size SIZE]
      Create NAME from FILE (its size rounded up to 512 bytes, or --size if larger) and copy
      FILE into it; an existing NAME is overwritten from its start if FILE fits.
  bulkhead-boot disk export DRIVE NAME FILE
      Copy a disk's contents into FILE.
A VM uses a store disk with `disk = \"NAME\"` in its [[vm.NAME.virtio-blk]] table.
Exit status: 0 on success, 1 on an error (its message says what to do), 2 on usage errors.
";

/// A drive on the host: an image file or a block device, in 512-byte sectors.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    sectors: u64,
}

impl FileDevice {
    pub fn open(path: &Path) -> Result<Self, BootError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(crate::error::io("cannot open the drive", path))?;
        // A block device's metadata says 0 bytes: its end says how large it is.
        let bytes = file
            .seek(SeekFrom::End(0))
            .map_err(crate::error::io("cannot size the drive", path))?;
        Ok(FileDevice {
            file,
            path: path.to_path_buf(),
            sectors: bytes / SECTOR as u64,
        })
    }

    fn host(&self, what: &str, e: std::io::Error) -> IoError {
        IoError::Host(format!("{what} {}: {e}", self.path.display()))
    }

    fn check(&self, lba: u64, bytes: usize) -> Result<(), IoError> {
        if !bytes.is_multiple_of(SECTOR) {
            return Err(IoError::Unaligned { bytes });
        }
        let sectors = (bytes / SECTOR) as u64;
        match lba.checked_add(sectors) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(IoError::OutOfRange {
                lba,
                sectors,
                device_sectors: self.sectors,
            }),
        }
    }
}

impl BlockIo for FileDevice {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.check(lba, buf.len())?;
        self.file
            .seek(SeekFrom::Start(lba * SECTOR as u64))
            .and_then(|_| self.file.read_exact(buf))
            .map_err(|e| self.host("cannot read", e))
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError> {
        self.check(lba, buf.len())?;
        self.file
            .seek(SeekFrom::Start(lba * SECTOR as u64))
            .and_then(|_| self.file.write_all(buf))
            .map_err(|e| self.host("cannot write", e))
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.file
            .sync_data()
            .map_err(|e| self.host("cannot flush", e))
    }
}

struct Args {
    positional: Vec<String>,
    size: Option<u64>,
    unit: Option<u64>,
    gpt: bool,
    force: bool,
}

fn parse(args: &[String]) -> Result<Args, BootError> {
    let mut a = Args {
        positional: Vec::new(),
        size: None,
        unit: None,
        gpt: false,
        force: false,
    };
    let mut it = args.iter();
    let size = |flag: &str, v: Option<&String>| -> Result<u64, BootError> {
        let v = v.ok_or_else(|| BootError::Usage(format!("{flag} needs a value")))?;
        vm::config::parse_size(v).ok_or_else(|| {
            BootError::Usage(format!(
                "{flag} {v}: expected bytes or a K/M/G size, e.g. 64M"
            ))
        })
    };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--size" => a.size = Some(size("--size", it.next())?),
            "--unit" => a.unit = Some(size("--unit", it.next())?),
            "--gpt" => a.gpt = true,
            "--force" => a.force = true,
            f if f.starts_with("--") => {
                return Err(BootError::Usage(format!("unknown argument '{f}'")))
            }
            p => a.positional.push(p.to_string()),
        }
    }
    Ok(a)
}

fn store_err(drive: &str) -> impl Fn(vm::store::StoreError) -> BootError + '_ {
    move |e| BootError::Store(format!("{drive}: {e}"))
}

fn positional<'a, const N: usize>(
    a: &'a Args,
    cmd: &str,
    shape: &str,
) -> Result<[&'a str; N], BootError> {
    let v: Vec<&str> = a.positional.iter().map(String::as_str).collect();
    v.try_into()
        .map_err(|_| BootError::Usage(format!("disk {cmd} takes {shape}")))
}

fn open(drive: &str) -> Result<(FileDevice, Store), BootError> {
    let mut dev = FileDevice::open(drive.as_ref())?;
    let s = Store::open_drive(&mut dev).map_err(store_err(drive))?;
    Ok((dev, s))
}

fn store_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0u8; 16];
    for half in id.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

/// Runs `disk ARGS...`, printing to `out`; returns the exit status.
pub fn main(args: &[String], out: &mut dyn Write) -> Result<u8, BootError> {
    let Some((cmd, rest)) = args.split_first() else {
        let _ = write!(out, "{HELP}");
        return Ok(2);
    };
    if cmd == "-h" || cmd == "--help" || rest.iter().any(|a| a == "-h" || a == "--help") {
        let _ = write!(out, "{HELP}");
        return Ok(0);
    }
    let a = parse(rest)?;
    let say = |out: &mut dyn Write, s: String| {
        let _ = writeln!(out, "{s}");
    };
    match cmd.as_str() {
        "init" => {
            let [drive] = positional(&a, "init", "one DRIVE")?;
            let path = Path::new(drive);
            if !path.exists() {
                let size = a.size.ok_or_else(|| {
                    BootError::Usage(format!("{drive} does not exist: give --size to create it"))
                })?;
                let f = File::create(path).map_err(crate::error::io("cannot create", path))?;
                f.set_len(size)
                    .map_err(crate::error::io("cannot size", path))?;
            } else if let Some(size) = a.size {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(crate::error::io("cannot open", path))?;
                let len = f
                    .metadata()
                    .map_err(crate::error::io("cannot stat", path))?
                    .len();
                if f.metadata().is_ok_and(|m| m.is_file()) && size > len {
                    f.set_len(size)
                        .map_err(crate::error::io("cannot size", path))?;
                }
            }
            let mut dev = FileDevice::open(path)?;
            if a.gpt {
                let parts = vm::store::gpt::fresh(dev.sectors(), [store_id(), store_id()])
                    .ok_or_else(|| {
                        BootError::Store(format!(
                            "{drive}: too small for a GPT with a store partition (at least 2 MiB)"
                        ))
                    })?;
                if !a.force && Store::open_drive(&mut dev).is_ok() {
                    return Err(BootError::Store(format!(
                        "{drive} holds a disk store already; add --force to erase it"
                    )));
                }
                for (lba, bytes) in parts {
                    dev.write(lba, &bytes)
                        .map_err(|e| store_err(drive)(e.into()))?;
                }
            }
            let region = Store::locate(&mut dev).map_err(store_err(drive))?;
            if !a.force && Store::open(&mut dev, region).is_ok() {
                return Err(BootError::Store(format!(
                    "{drive} holds a disk store already; add --force to erase it"
                )));
            }
            let unit = a
                .unit
                .unwrap_or(u64::from(header::DEFAULT_UNIT) * SECTOR as u64);
            let unit_sectors = u32::try_from(unit / SECTOR as u64)
                .ok()
                .filter(|u| unit.is_multiple_of(SECTOR as u64) && header::valid_unit(*u))
                .ok_or_else(|| {
                    BootError::Usage(format!("--unit {unit}: use a power of two from 4K to 512M"))
                })?;
            let s = Store::format(&mut dev, region, unit_sectors, store_id())
                .map_err(store_err(drive))?;
            let place = match region.partition {
                Some(i) => format!(
                    "GPT partition {} (sectors {}..{})",
                    i + 1,
                    region.start,
                    region.start + region.sectors
                ),
                None => "the whole drive".to_string(),
            };
            say(
                out,
                format!(
                    "{drive}: disk store on {place}: {} bytes for disks, unit {unit} bytes",
                    s.capacity_bytes()
                ),
            );
            Ok(0)
        }
        "ls" => {
            let [drive] = positional(&a, "ls", "one DRIVE")?;
            let (_, s) = open(drive)?;
            let copy = |c: &CopyState| match c {
                CopyState::Valid { generation } => format!("valid (generation {generation})"),
                CopyState::Damaged(e) => format!("DAMAGED: {e}"),
            };
            say(
                out,
                format!(
                    "{drive}: store of {} bytes, {} free, {} disks; header A {}, B {}",
                    s.capacity_bytes(),
                    s.free_bytes(),
                    s.disks().len(),
                    copy(&s.copies()[0]),
                    copy(&s.copies()[1])
                ),
            );
            for d in s.disks() {
                let ext: Vec<String> = d
                    .extents
                    .iter()
                    .map(|e| format!("{}+{}", e.start_unit, e.units))
                    .collect();
                say(
                    out,
                    format!(
                        "{:<32} {:>14} bytes  extents {}",
                        d.name,
                        d.size_bytes(),
                        ext.join(",")
                    ),
                );
            }
            Ok(0)
        }
        "create" | "grow" => {
            let [drive, name] = positional(&a, cmd, "DRIVE NAME --size SIZE")?;
            let size = a
                .size
                .ok_or_else(|| BootError::Usage(format!("disk {cmd} needs --size SIZE")))?;
            let (mut dev, mut s) = open(drive)?;
            if cmd == "create" {
                s.create(&mut dev, name, size)
            } else {
                s.grow(&mut dev, name, size)
            }
            .map_err(store_err(drive))?;
            say(out, format!("{drive}: disk {name}: {size} bytes"));
            Ok(0)
        }
        "delete" => {
            let [drive, name] = positional(&a, "delete", "DRIVE NAME")?;
            let (mut dev, mut s) = open(drive)?;
            s.delete(&mut dev, name).map_err(store_err(drive))?;
            say(out, format!("{drive}: disk {name} deleted"));
            Ok(0)
        }
        "import" => {
            let [drive, name, file] = positional(&a, "import", "DRIVE NAME FILE")?;
            let data = std::fs::read(file).map_err(crate::error::io("cannot read", file))?;
            let need = (data.len() as u64).div_ceil(SECTOR as u64).max(1) * SECTOR as u64;
            let (mut dev, mut s) = open(drive)?;
            if s.disk(name).is_none() {
                s.create(&mut dev, name, a.size.unwrap_or(need).max(need))
                    .map_err(store_err(drive))?;
            }
            let map = s.map(name).map_err(store_err(drive))?;
            let mut padded = data;
            padded.resize(need as usize, 0);
            let mut off = 0;
            for (lba, n) in map
                .runs(0, need / SECTOR as u64)
                .map_err(store_err(drive))?
            {
                let len = n as usize * SECTOR;
                dev.write(lba, &padded[off..off + len])
                    .map_err(|e| store_err(drive)(e.into()))?;
                off += len;
            }
            dev.flush().map_err(|e| store_err(drive)(e.into()))?;
            say(
                out,
                format!(
                    "{drive}: disk {name}: imported {} bytes from {file}",
                    padded.len()
                ),
            );
            Ok(0)
        }
        "export" => {
            let [drive, name, file] = positional(&a, "export", "DRIVE NAME FILE")?;
            let (mut dev, s) = open(drive)?;
            let map = s.map(name).map_err(store_err(drive))?;
            let mut f = File::create(file).map_err(crate::error::io("cannot create", file))?;
            let mut buf = Vec::new();
            for (lba, n) in map.runs(0, map.sectors()).map_err(store_err(drive))? {
                buf.resize(n as usize * SECTOR, 0);
                dev.read(lba, &mut buf)
                    .map_err(|e| store_err(drive)(e.into()))?;
                f.write_all(&buf)
                    .map_err(crate::error::io("cannot write", file))?;
            }
            say(
                out,
                format!(
                    "{drive}: disk {name}: exported {} bytes to {file}",
                    map.sectors() * SECTOR as u64
                ),
            );
            Ok(0)
        }
        c => Err(BootError::Usage(format!(
            "unknown disk command '{c}' (init, ls, create, grow, delete, import, export)"
        ))),
    }
}

#[cfg(test)]
mod tests;
