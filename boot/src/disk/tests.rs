//! Host tests of `bulkhead-boot disk` on image files.

use super::*;

fn run(args: &[&str]) -> (Result<u8, BootError>, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let r = main(&args, &mut out);
    (r, String::from_utf8(out).unwrap())
}

fn ok(args: &[&str]) -> String {
    let (r, out) = run(args);
    assert_eq!(r.unwrap(), 0, "{args:?}: {out}");
    out
}

fn err(args: &[&str]) -> String {
    let (r, _) = run(args);
    r.unwrap_err().to_string()
}

#[test]
fn init_create_import_export_grow_delete() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("store.img");
    let img = img.to_str().unwrap();
    let out = ok(&["init", img, "--size", "8M"]);
    // 8 MiB in 1 MiB units, the first unit holds the two 16 KiB header copies.
    assert_eq!(
        out,
        format!(
            "{img}: disk store on the whole drive: 7340032 bytes for disks, unit 1048576 bytes\n"
        )
    );
    assert!(err(&["init", img]).contains("holds a disk store already; add --force"));
    ok(&["create", img, "root", "--size", "2M"]);
    let data: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let out = ok(&["import", img, "data", src.to_str().unwrap()]);
    let want = format!(
        "{img}: disk data: imported 1500160 bytes from {}\n",
        src.display()
    );
    assert_eq!(out, want);
    ok(&["grow", img, "data", "--size", "3M"]);
    let dst = dir.path().join("dst.bin");
    ok(&["export", img, "data", dst.to_str().unwrap()]);
    let back = std::fs::read(&dst).unwrap();
    assert_eq!(back.len(), 3 << 20);
    assert_eq!(&back[..data.len()], &data[..]);
    assert!(back[data.len()..].iter().all(|&b| b == 0));
    let ls = ok(&["ls", img]);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(
        lines[0],
        format!("{img}: store of 7340032 bytes, 2097152 free, 2 disks; header A valid (generation 4), B valid (generation 5)")
    );
    assert!(
        lines[1].starts_with("root ") && lines[1].contains(" 2097152 bytes  extents 1+2"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("data ") && lines[2].contains(" 3145728 bytes  extents 3+3"),
        "{}",
        lines[2]
    );
    ok(&["delete", img, "root"]);
    assert!(ok(&["ls", img]).contains("4194304 free, 1 disks"));
    // The store survives a reopen from a fresh process view: the library reads it too.
    let mut dev = FileDevice::open(img.as_ref()).unwrap();
    let s = Store::open_drive(&mut dev).unwrap();
    assert_eq!(s.disks().len(), 1);
    assert_eq!(s.disk("data").unwrap().size_bytes(), 3 << 20);
}

#[test]
fn gpt_store_and_import_into_existing_disk() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("gpt.img");
    let img = img.to_str().unwrap();
    let out = ok(&["init", img, "--size", "16M", "--gpt", "--unit", "64K"]);
    assert!(
        out.contains("GPT partition 1 (sectors 2048..32735)"),
        "{out}"
    );
    ok(&["create", img, "vda", "--size", "1M"]);
    let src = dir.path().join("a.bin");
    std::fs::write(&src, b"hello store").unwrap();
    ok(&["import", img, "vda", src.to_str().unwrap()]);
    let dst = dir.path().join("b.bin");
    ok(&["export", img, "vda", dst.to_str().unwrap()]);
    let back = std::fs::read(&dst).unwrap();
    assert_eq!(back.len(), 1 << 20);
    assert_eq!(&back[..11], b"hello store");
    assert!(back[11..].iter().all(|&b| b == 0));
    // The drive keeps its GPT: a re-init without --gpt formats the same partition (--force).
    assert!(err(&["init", img, "--gpt"]).contains("add --force"));
    assert!(ok(&["init", img, "--force"]).contains("GPT partition 1"));
    assert!(ok(&["ls", img]).contains("0 disks"));
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("s.img");
    let img = img.to_str().unwrap();
    assert!(err(&["init", img]).contains("give --size to create it"));
    assert!(err(&["init", img, "--size", "lots"])
        .contains("--size lots: expected bytes or a K/M/G size"));
    let blank = dir.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    assert!(err(&["ls", blank.to_str().unwrap()])
        .contains("no disk store here; create one with `bulkhead-boot disk init`"));
    ok(&["init", img, "--size", "4M"]);
    assert!(err(&["create", img, "Root", "--size", "1M"]).contains("use 1-32 characters of a-z"));
    assert!(err(&["create", img, "root"]).contains("disk create needs --size SIZE"));
    assert!(err(&["create", img, "root", "--size", "100M"])
        .contains("bytes free, 104857600 are needed"));
    assert!(err(&["grow", img, "nope", "--size", "1M"]).contains("no disk named \"nope\""));
    assert!(err(&["export", img, "nope", "x"]).contains("no disk named \"nope\""));
    assert!(err(&["frob", img]).contains("unknown disk command 'frob'"));
    assert!(err(&["ls"]).contains("disk ls takes one DRIVE"));
    assert!(err(&["ls", img, "--bogus"]).contains("unknown argument '--bogus'"));
    assert!(
        err(&["init", img, "--force", "--unit", "3K"]).contains("--unit 3072: use a power of two")
    );
    assert!(err(&["ls", "/nonexistent/drive"]).contains("cannot open the drive /nonexistent/drive"));
    // Both header copies damaged: reported, not written.
    let mut b = std::fs::read(img).unwrap();
    b[100] ^= 1;
    b[16384 + 100] ^= 1;
    std::fs::write(img, &b).unwrap();
    let e = err(&["create", img, "x", "--size", "4K"]);
    assert!(
        e.contains("both store header copies are damaged")
            && e.contains("restore it from a backup"),
        "{e}"
    );
    assert_eq!(std::fs::read(img).unwrap(), b);
    let (r, help) = run(&["--help"]);
    assert_eq!(r.unwrap(), 0);
    assert!(
        help.contains("bulkhead-boot disk init DRIVE")
            && help.contains("disk export DRIVE NAME FILE")
    );
}
