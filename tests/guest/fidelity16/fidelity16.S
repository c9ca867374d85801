/*
 * fidelity16: real-mode checks of issue 13 (CPU fidelity), linked at 0x7C00 (build.sh).
 * Started by Bulkhead in real mode (kind = "real16"): CS = DS = ES = SS = 0, IP = 0x7C00.
 *
 *   guest fidelity16: PASS real-mode-gp-ivt      RDMSR of an unknown MSR: #GP reaches IVT
 *                                                 vector 13 with no error code pushed
 *   guest fidelity16: PASS real-mode-ud-ivt      MONITOR (#UD injected) reaches IVT vector 6
 *   guest fidelity16: PASS rep-outsb-real        (this line is printed by REP OUTSB)
 *   guest fidelity16: PASS rep-insb-real         REP INSB from an unclaimed port: 0xFF x 8
 *   guest fidelity16: PASS long-mode-without-ltr real mode -> long mode without loading TR
 *   guest fidelity16: DONE passed=5 failed=0
 *
 * Built with --defsym TASKSWITCH=1 it is `taskswitch16`: it enters 32-bit protected mode,
 * loads TR and jumps through a task gate; Bulkhead stops the VM with its documented
 * task-switch reason.
 *
 * DI = passed count, BP = failed count.
 */
    .intel_syntax noprefix
    .code16
    .text
    .globl _start

.macro SAY text
    call print_inline
    .ascii "guest fidelity16: "
    .ascii "\text"
    .byte 10, 0
.endm
.macro PASS name
    inc di
    SAY "PASS \name"
.endm
.macro FAIL name
    inc bp
    SAY "FAIL \name"
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

.ifdef TASKSWITCH
    SAY "jumping through a task gate"
    lgdt [ts_gdt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    ljmp 0x08, offset pm32
    .code32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7000
    mov ax, 0x18
    ltr ax
    ljmp 0x28, 0                            /* task switch: the VM stops here */
1:  cli
    hlt
    jmp 1b
    .code16
.else
    /* IVT: #UD (6) and #GP (13). */
    mov word ptr [6*4], offset ud_handler
    mov word ptr [6*4+2], 0
    mov word ptr [13*4], offset gp_handler
    mov word ptr [13*4+2], 0

    /* --- real-mode-gp-ivt ---------------------------------------------------------- */
    mov ecx, 0xdead0000
gp_insn:
    rdmsr
    cmp byte ptr [gp_count], 1
    jne 1f
    cmp word ptr [gp_ip], offset gp_insn
    jne 1f
    PASS "real-mode-gp-ivt"
    jmp 2f
1:  FAIL "real-mode-gp-ivt: no #GP at the RDMSR through the IVT (or an error code was pushed)"
2:
    /* --- real-mode-ud-ivt ---------------------------------------------------------- */
    mov ax, 0x7000
    xor cx, cx
    xor dx, dx
ud_insn:
    monitor
    cmp byte ptr [ud_count], 1
    jne 1f
    cmp word ptr [ud_ip], offset ud_insn
    jne 1f
    PASS "real-mode-ud-ivt"
    jmp 2f
1:  FAIL "real-mode-ud-ivt: MONITOR did not raise #UD through the IVT"
2:
    /* --- rep-outsb-real: the PASS line goes out through REP OUTSB ------------------- */
    mov si, offset outs_line
    mov cx, outs_end - outs_line
    mov dx, 0x3f8
    rep outsb
    test cx, cx
    jnz 1f
    cmp si, offset outs_end
    jne 1f
    inc di
    jmp 2f
1:  FAIL "rep-outsb-real: CX or SI wrong after REP OUTSB"
2:
    /* --- rep-insb-real ------------------------------------------------------------- */
    push di
    mov di, offset ins_buf
    mov cx, 8
    mov dx, 0x2f0
    rep insb
    mov bx, di
    pop di
    test cx, cx
    jnz 1f
    cmp bx, offset ins_buf + 8
    jne 1f
    cmp dword ptr [ins_buf], 0xffffffff
    jne 1f
    cmp dword ptr [ins_buf + 4], 0xffffffff
    jne 1f
    cmp byte ptr [ins_buf + 8], 0
    jne 1f
    PASS "rep-insb-real"
    jmp 2f
1:  FAIL "rep-insb-real: REP INSB from port 0x2f0 did not give 8 x 0xff"
2:
    /* --- long-mode-without-ltr: identity-map 2 MiB at 0x10000, EFER.LME, PAE, PG ---- */
    push di
    mov ax, 0x1000
    mov es, ax
    xor di, di
    xor eax, eax
    mov cx, 3 * 1024
    rep stosd
    mov dword ptr es:[0x0000], 0x11003     /* PML4[0] -> PDPT */
    mov dword ptr es:[0x1000], 0x12003     /* PDPT[0] -> PD */
    mov dword ptr es:[0x2000], 0x00083     /* PD[0]: 2 MiB page at 0 */
    xor ax, ax
    mov es, ax
    pop di
    lgdt [lm_gdt_desc]
    mov eax, cr4
    or eax, 1 << 5                         /* PAE */
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1 << 8                         /* LME */
    wrmsr
    mov eax, cr0
    or eax, 0x80000001                     /* PG | PE: IA-32e mode with TR never loaded */
    mov cr0, eax
    ljmp 0x08, offset long_entry

    .code64
long_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    inc edi
    lea rsi, [rip + lm_pass]
    call print64
    lea rsi, [rip + done_text]
    call print64
    mov eax, edi
    and eax, 0xffff
    call print_digit64
    lea rsi, [rip + failed_text]
    call print64
    mov eax, ebp
    and eax, 0xffff
    call print_digit64
    mov dx, 0x3f8
    mov al, 10
    out dx, al
3:  cli
    hlt
    jmp 3b

/* Prints the NUL-terminated string at RSI. */
print64:
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  ret

/* Prints EAX (0-9) as one digit. */
print_digit64:
    add al, '0'
    mov dx, 0x3f8
    out dx, al
    ret

lm_pass:     .asciz "guest fidelity16: PASS long-mode-without-ltr\n"
done_text:   .asciz "guest fidelity16: DONE passed="
failed_text: .asciz " failed="
    .code16

/* #GP and #UD handlers: record the faulting IP (the stack holds IP, CS, FLAGS and no
   error code in real mode) and return past the instruction (RDMSR 2 bytes, MONITOR 3). */
gp_handler:
    push bx
    mov bx, sp
    mov bx, ss:[bx + 2]
    mov [gp_ip], bx
    mov bx, sp
    add word ptr ss:[bx + 2], 2
    inc byte ptr [gp_count]
    pop bx
    iret
ud_handler:
    push bx
    mov bx, sp
    mov bx, ss:[bx + 2]
    mov [ud_ip], bx
    mov bx, sp
    add word ptr ss:[bx + 2], 3
    inc byte ptr [ud_count]
    pop bx
    iret

gp_count: .byte 0
ud_count: .byte 0
gp_ip:    .word 0
ud_ip:    .word 0
outs_line: .ascii "guest fidelity16: PASS rep-outsb-real\n"
outs_end:
ins_buf:  .fill 12, 1, 0

    .balign 8
lm_gdt:
    .quad 0
    .quad 0x00af9a000000ffff                /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff                /* 0x10: data */
lm_gdt_end:
lm_gdt_desc:
    .word lm_gdt_end - lm_gdt - 1
    .long lm_gdt
.endif

/* Prints "string" after the call; preserves all but SI and FLAGS. */
print_inline:
    pop si
    push ax
    push dx
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  pop dx
    pop ax
    jmp si

.ifdef TASKSWITCH
    .balign 8
ts_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff                /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff                /* 0x10: 32-bit data */
    .word 0x67, tss_a, 0x8900, 0            /* 0x18: 32-bit TSS (current) */
    .word 0x67, tss_b, 0x8900, 0            /* 0x20: 32-bit TSS (target) */
    .word 0, 0x20, 0x8500, 0                /* 0x28: task gate -> 0x20 */
ts_gdt_end:
ts_gdt_desc:
    .word ts_gdt_end - ts_gdt - 1
    .long ts_gdt
    .balign 16
tss_a: .fill 104, 1, 0
tss_b:
    .long 0, 0x7000, 0x10, 0, 0, 0, 0, 0    /* link, ESP0, SS0, ..., CR3 */
    .long task_b, 2, 0, 0, 0, 0, 0x6000, 0, 0, 0 /* EIP, EFLAGS, EAX..EDI */
    .long 0x10, 0x08, 0x10, 0x10, 0x10, 0x10, 0, 0 /* ES CS SS DS FS GS LDT, T/IOMAP */
task_b:
    cli
    hlt
.endif
