/*
 * realmode: Bulkhead's 16-bit real-mode test guest (unrestricted guest).
 *
 * Loaded as a flat binary at GPA 0x7C00 and started in real mode with CS = DS = ES = SS = 0,
 * IP = 0x7C00, SP = 0x7000. Build (see build.sh):
 *     as --32 -o realmode.o realmode.S && objcopy -O binary realmode.o realmode.bin
 *
 * The code is position-independent: it never uses a link-time address (strings follow the
 * `call` that prints them; the GDT's address is taken at run time with call/pop), so it runs
 * wherever it is loaded and whether or not it is linked.
 *
 * Output (UART 0x3F8):
 *     guest realmode: start
 *     guest realmode: PASS cpuid-signature       CPUID 0x40000000: EBX,ECX,EDX = "BulkheadHV\0\0"
 *     guest realmode: PASS io-unclaimed          in al/ax from port 0x2F0 = 0xFF/0xFFFF
 *     guest realmode: PASS hypercall-version     VMCALL VERSION (EAX = 0) = 0x00010001 (ABI v1.1)
 *     guest realmode: PASS hypercall-console     CONSOLE_WRITE of the hello line = its length
 *     guest realmode: PASS protected-mode-enter  CR0.PE set, far jump to a 16-bit PM segment
 *     guest realmode: PASS real-mode-return      CR0.PE cleared, back in real mode
 *     guest realmode: DONE passed=6 failed=0
 * and through the hypercall console: `guest realmode: hello via hypercall`.
 * Then `cli; hlt`.
 *
 * Register use: DI = passed count, BP = failed count (preserved by the print routines).
 */
    .intel_syntax noprefix
    .code16
    .text
    .globl _start

/* Prints "guest realmode: <text>\n" on the UART. */
.macro SAY text
    call print_inline
    .ascii "guest realmode: "
    .ascii "\text"
    .byte 10, 0
.endm

.macro PASS name
    inc di
    SAY "PASS \name"
.endm

.macro FAIL name, detail
    inc bp
    SAY "FAIL \name: \detail"
.endm

_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7000
    xor di, di
    xor bp, bp

    SAY "start"

    /* --- cpuid-signature ------------------------------------------------------------- */
    mov eax, 0x40000000
    xor ecx, ecx
    cpuid
    cmp ebx, 0x6b6c7542             /* "Bulk" */
    jne 1f
    cmp ecx, 0x64616568             /* "head" */
    jne 1f
    cmp edx, 0x00005648             /* "HV\0\0" */
    jne 1f
    PASS "cpuid-signature"
    jmp 2f
1:  FAIL "cpuid-signature", "leaf 0x40000000 EBX,ECX,EDX is not BulkheadHV"
2:

    /* --- io-unclaimed ---------------------------------------------------------------- */
    mov dx, 0x2F0
    in al, dx
    cmp al, 0xFF
    jne 1f
    in ax, dx
    cmp ax, 0xFFFF
    jne 1f
    PASS "io-unclaimed"
    jmp 2f
1:  FAIL "io-unclaimed", "port 0x2f0 did not read all-ones"
2:

    /* --- hypercall-version: VMCALL from real mode uses the low 32 bits of each register */
    xor eax, eax                    /* VERSION */
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    xor esi, esi
    vmcall
    cmp eax, 0x00010001
    jne 1f
    PASS "hypercall-version"
    jmp 2f
1:  FAIL "hypercall-version", "VERSION did not return 0x10001"
2:

    /* --- hypercall-console: CONSOLE_WRITE(gpa of the line, its length) ---------------- */
    call 3f
hello:
    .ascii "guest realmode: hello via hypercall\n"
hello_end:
3:  pop bx                          /* the run-time address of `hello` (CS = 0: a GPA) */
    movzx ebx, bx
    mov eax, 2                      /* CONSOLE_WRITE */
    mov ecx, hello_end - hello
    xor edx, edx
    xor esi, esi
    vmcall
    cmp eax, hello_end - hello
    jne 1f
    PASS "hypercall-console"
    jmp 2f
1:  FAIL "hypercall-console", "CONSOLE_WRITE did not return the length"
2:

    /* --- protected-mode-enter / real-mode-return ------------------------------------- */
    call 3f
gdt:
    .quad 0                         /* null */
    .quad 0x00009A000000FFFF        /* 0x08: 16-bit code, base 0, limit 0xFFFF */
    .quad 0x000092000000FFFF        /* 0x10: 16-bit data, base 0, limit 0xFFFF */
gdt_end:
3:  pop bx                          /* run-time address of `gdt` */
    /* pseudo-descriptor on the stack: limit (2 bytes), base (4 bytes) */
    push 0
    push bx
    push gdt_end - gdt - 1
    mov si, sp
    lgdt [si]
    add sp, 6

    mov eax, cr0
    or al, 1
    mov cr0, eax
    call 3f                         /* far jump to the 16-bit code segment: */
3:  pop ax                          /* AX = run-time address of this `pop` */
    add ax, offset pm_entry - 3b
    push 0x08
    push ax
    retf
pm_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr0
    test al, 1
    jz 1f
    PASS "protected-mode-enter"
    jmp 2f
1:  FAIL "protected-mode-enter", "CR0.PE reads 0 after setting it"
2:
    mov eax, cr0
    and al, 0xFE
    mov cr0, eax
    call 3f                         /* far jump back to real-mode segment 0 */
3:  pop ax
    add ax, offset rm_entry - 3b
    push 0
    push ax
    retf
rm_entry:
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr0
    test al, 1
    jnz 1f
    mov ax, cs
    test ax, ax
    jnz 1f
    PASS "real-mode-return"
    jmp 2f
1:  FAIL "real-mode-return", "CR0.PE still set or CS not 0"
2:

    /* --- DONE ------------------------------------------------------------------------ */
    call print_inline
    .asciz "guest realmode: DONE passed="
    mov ax, di
    call print_dec
    call print_inline
    .asciz " failed="
    mov ax, bp
    call print_dec
    call print_inline
    .byte 10, 0
halt:
    cli
    hlt
    jmp halt

/* Prints the NUL-terminated string that follows the call, then returns after its NUL.
   Preserves every register but SI and FLAGS. DS must have base 0 (it does, in both modes). */
print_inline:
    pop si
    push ax
    push dx
    mov dx, 0x3F8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  pop dx
    pop ax
    jmp si

/* Prints AX in decimal. Preserves every register but FLAGS. */
print_dec:
    push ax
    push bx
    push cx
    push dx
    mov bx, 10
    xor cx, cx
1:  xor dx, dx
    div bx
    push dx
    inc cx
    test ax, ax
    jnz 1b
    mov dx, 0x3F8
2:  pop ax
    add al, '0'
    out dx, al
    loop 2b
    pop dx
    pop cx
    pop bx
    pop ax
    ret
