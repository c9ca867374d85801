/* A Multiboot (v1) test kernel: checks the machine state and the boot information the
   Multiboot Specification 0.6.96 promises (§3.2 "Machine state", §3.3 "Boot information
   format") and prints what it found on COM1 for tests/tests/boot_protocols.rs to compare
   against what it configured. Built twice by build.sh: an ELF32 kernel (the loader takes
   its PT_LOAD segments) and, with AOUT defined, a flat binary whose header carries the
   a.out-kludge addresses (header flag 16, §3.1.3).

   Lines (hexadecimal numbers, 8 digits):
     mb: magic 2badb002
     mb: state cr0 XXXXXXXX eflags XXXXXXXX cs XXXXXXXX
     mb: flags XXXXXXXX
     mb: mem_lower XXXXXXXX mem_upper XXXXXXXX
     mb: cmdline TEXT
     mb: loader TEXT
     mb: mods XXXXXXXX
     mb: mod 0 start XXXXXXXX end XXXXXXXX fnv1a XXXXXXXX string TEXT
     mb: mmap entries XXXXXXXX ram_kib XXXXXXXX
     mb: DONE passed=N failed=M
   then cli; hlt. With a command line starting with "reset" it prints only
     mb: reset through port 0xcf9
   and resets the VM (port 0xCF9). */

    .set MB_HEADER_MAGIC, 0x1BADB002
    .set MB_BOOTLOADER_MAGIC, 0x2BADB002
    .ifdef AOUT
    .set MB_FLAGS, 0x00010003        /* page-align modules, memory info, a.out kludge */
    .else
    .set MB_FLAGS, 0x00000003        /* page-align modules, memory info */
    .endif
    .set COM1, 0x3F8
    .set LOAD_ADDR, 0x100000

    .code32
    .section .text
    .globl _start
    .align 4
mb_header:
    .long MB_HEADER_MAGIC
    .long MB_FLAGS
    .long -(MB_HEADER_MAGIC + MB_FLAGS)
    .ifdef AOUT
    .long mb_header                  /* header_addr */
    .long LOAD_ADDR                  /* load_addr: the file's first byte */
    .long image_end                  /* load_end_addr */
    .long bss_end                    /* bss_end_addr */
    .long _start                     /* entry_addr */
    .endif

_start:
    /* §3.2: EAX = magic, EBX = info; interrupts off; no stack promised. */
    mov $stack_top, %esp
    mov %eax, saved_eax
    mov %ebx, saved_ebx
    pushf
    pop %eax
    mov %eax, saved_eflags
    mov %cr0, %eax
    mov %eax, saved_cr0
    xor %eax, %eax
    mov %cs, %ax
    mov %eax, saved_cs

    /* A command line starting with "reset" (tests/tests/shell.rs, a guest that reboots in a
       loop): reset through the FADT's reset register (port 0xCF9, value 0x06) at once. */
    mov saved_ebx, %ebx
    testl $4, (%ebx)                 /* flags bit 2: cmdline valid (§3.3) */
    jz 1f
    mov 16(%ebx), %esi               /* cmdline */
    cmpl $0x65736572, (%esi)         /* "rese" */
    jne 1f
    cmpb $0x74, 4(%esi)              /* "t" */
    jne 1f
    call say
    .asciz "mb: reset through port 0xcf9"
    call nl
    mov $0xCF9, %dx
    mov $0x06, %al
    out %al, %dx
    cli
    hlt
1:

    /* magic */
    call say
    .asciz "mb: magic "
    mov saved_eax, %eax
    call hex
    call nl
    mov saved_eax, %eax
    cmp $MB_BOOTLOADER_MAGIC, %eax
    call check_eq

    /* state: PE set, PG clear (CR0 bits 0 and 31); IF clear (EFLAGS bit 9) */
    call say
    .asciz "mb: state cr0 "
    mov saved_cr0, %eax
    call hex
    call say
    .asciz " eflags "
    mov saved_eflags, %eax
    call hex
    call say
    .asciz " cs "
    mov saved_cs, %eax
    call hex
    call nl
    mov saved_cr0, %eax
    and $0x80000001, %eax
    cmp $1, %eax
    call check_eq
    mov saved_eflags, %eax
    and $0x200, %eax
    cmp $0, %eax
    call check_eq

    mov saved_ebx, %ebx
    /* flags */
    call say
    .asciz "mb: flags "
    mov 0(%ebx), %eax
    call hex
    call nl

    /* mem_lower / mem_upper (flag 0) */
    testl $1, 0(%ebx)
    jz 1f
    call say
    .asciz "mb: mem_lower "
    mov 4(%ebx), %eax
    call hex
    call say
    .asciz " mem_upper "
    mov 8(%ebx), %eax
    call hex
    call nl
1:
    /* cmdline (flag 2) */
    testl $4, 0(%ebx)
    jz 1f
    call say
    .asciz "mb: cmdline "
    mov 16(%ebx), %esi
    call puts
    call nl
1:
    /* boot loader name (flag 9) */
    testl $0x200, 0(%ebx)
    jz 1f
    call say
    .asciz "mb: loader "
    mov 64(%ebx), %esi
    call puts
    call nl
1:
    /* modules (flag 3): each 16 bytes: start, end, string, reserved */
    testl $8, 0(%ebx)
    jz 3f
    call say
    .asciz "mb: mods "
    mov 20(%ebx), %eax
    call hex
    call nl
    mov 20(%ebx), %ecx
    mov 24(%ebx), %edi
    xor %edx, %edx               /* module index */
2:  test %ecx, %ecx
    jz 3f
    push %ecx
    push %edx
    call say
    .asciz "mb: mod "
    mov (%esp), %eax
    add $'0', %al
    call putc
    call say
    .asciz " start "
    mov 0(%edi), %eax
    call hex
    call say
    .asciz " end "
    mov 4(%edi), %eax
    call hex
    call say
    .asciz " fnv1a "
    mov 0(%edi), %esi
    mov 4(%edi), %ecx
    sub %esi, %ecx
    call fnv1a
    call hex
    call say
    .asciz " string "
    mov 8(%edi), %esi
    call puts
    call nl
    /* §3.3 with header flag 0: page-aligned */
    mov 0(%edi), %eax
    and $0xfff, %eax
    cmp $0, %eax
    call check_eq
    pop %edx
    pop %ecx
    add $16, %edi
    inc %edx
    dec %ecx
    jmp 2b
3:
    /* memory map (flag 6): entries of size word + 20 bytes: base (8), length (8), type (4) */
    testl $0x40, 0(%ebx)
    jz 4f
    mov 48(%ebx), %esi           /* mmap_addr */
    mov 44(%ebx), %ecx
    add %esi, %ecx               /* end */
    xor %edx, %edx               /* entries */
    xor %edi, %edi               /* RAM KiB */
2:  cmp %ecx, %esi
    jae 3f
    inc %edx
    cmpl $1, 20(%esi)
    jne 5f
    mov 12(%esi), %eax           /* length, low 32 bits */
    mov 16(%esi), %ebp           /* length, high 32 bits */
    shrd $10, %ebp, %eax         /* KiB */
    add %eax, %edi
5:  mov 0(%esi), %eax            /* size word: bytes after it */
    add $4, %eax
    add %eax, %esi
    jmp 2b
3:  push %edx
    call say
    .asciz "mb: mmap entries "
    pop %eax
    call hex
    call say
    .asciz " ram_kib "
    mov %edi, %eax
    call hex
    call nl
4:
    call say
    .asciz "mb: DONE passed="
    mov passed, %eax
    call dec
    call say
    .asciz " failed="
    mov failed, %eax
    call dec
    call nl
    cli
    hlt
    jmp .

/* After a cmp: counts a pass when ZF is set, else a failure. Preserves registers. */
check_eq:
    jne 1f
    incl passed
    ret
1:  incl failed
    ret

/* Prints the NUL-terminated string after the call and returns past it. */
say:
    xchg %esi, (%esp)
    push %eax
1:  lodsb
    test %al, %al
    jz 2f
    call putc
    jmp 1b
2:  pop %eax
    xchg %esi, (%esp)
    ret

/* Prints the NUL-terminated string at ESI (at most 200 bytes). Clobbers ESI, EAX. */
puts:
    push %ecx
    mov $200, %ecx
1:  lodsb
    test %al, %al
    jz 2f
    call putc
    loop 1b
2:  pop %ecx
    ret

nl:
    push %eax
    mov $'\n', %al
    call putc
    pop %eax
    ret

/* AL to COM1. Preserves registers. */
putc:
    push %edx
    mov $COM1, %dx
    out %al, %dx
    pop %edx
    ret

/* EAX as 8 hexadecimal digits. Preserves registers. */
hex:
    push %eax
    push %ecx
    push %edx
    mov %eax, %edx
    mov $8, %ecx
1:  rol $4, %edx
    mov %dl, %al
    and $0xf, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  call putc
    loop 1b
    pop %edx
    pop %ecx
    pop %eax
    ret

/* EAX in decimal. Preserves registers. */
dec:
    push %eax
    push %ebx
    push %ecx
    push %edx
    mov $10, %ebx
    xor %ecx, %ecx
1:  xor %edx, %edx
    div %ebx
    push %edx
    inc %ecx
    test %eax, %eax
    jnz 1b
2:  pop %eax
    add $'0', %al
    call putc
    loop 2b
    pop %edx
    pop %ecx
    pop %ebx
    pop %eax
    ret

/* FNV-1a (32-bit) of ECX bytes at ESI into EAX. Clobbers ESI, ECX, EDX. */
fnv1a:
    mov $0x811c9dc5, %eax
    test %ecx, %ecx
    jz 2f
1:  movzbl (%esi), %edx
    xor %edx, %eax
    imul $0x01000193, %eax, %eax
    inc %esi
    loop 1b
2:  ret

    .align 4
saved_eax:    .long 0
saved_ebx:    .long 0
saved_eflags: .long 0
saved_cr0:    .long 0
saved_cs:     .long 0
passed:       .long 0
failed:       .long 0
image_end:

    .section .bss
    .align 16
    .skip 4096
stack_top:
bss_end:
