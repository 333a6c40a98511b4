/* Start-up of the ucm-edge firmware on the Arm MPS3 AN547 (Cortex-M55): vector table, reset handler (FPU
 * and Helium on, .data copied, .bss zeroed, semihosting opened), a fault handler that prints the fault
 * registers through semihosting and exits non-zero, and the SysTick clock the runner times with.
 * Board-specific: the clock (UCM_CPU_HZ) and, in an547.ld, the memory map. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define UCM_CPU_HZ 32000000u /* AN547's CPU clock (QEMU models the same); SysTick counts it */
#define UCM_EXIT_FAULT 3

#define REG(addr) (*(volatile uint32_t *)(addr))
#define SCB_ICSR REG(0xE000ED04)
#define SCB_CPACR REG(0xE000ED88)
#define SCB_CFSR REG(0xE000ED28)
#define SCB_HFSR REG(0xE000ED2C)
#define SCB_MMFAR REG(0xE000ED34)
#define SCB_BFAR REG(0xE000ED38)
#define SYST_CSR REG(0xE000E010)
#define SYST_RVR REG(0xE000E014)
#define SYST_CVR REG(0xE000E018)
#define ICSR_PENDSTSET (1u << 26)
#define SYSTICK_MAX 0xFFFFFFu

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
extern void initialise_monitor_handles(void);
int main(void);

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps = systick_wraps + 1; }

/* SysTick ticks since reset (CPU clock cycles on a real board; under QEMU -icount, virtual time). */
uint64_t ucm_clock(void) {
  uint32_t wraps, now, pending;
  do {
    wraps = systick_wraps;
    now = SYST_CVR;
    pending = SCB_ICSR & ICSR_PENDSTSET;
    if (pending) now = SYST_CVR; /* it wrapped and the interrupt has not run yet */
  } while (wraps != systick_wraps);
  return ((uint64_t)(wraps + (pending ? 1u : 0u)) << 24) + (SYSTICK_MAX - now);
}

unsigned long long ucm_clock_hz(void) { return UCM_CPU_HZ; }

/* newlib's exit() runs the .fini_array through _fini, which the C runtime start files (not linked:
 * -nostartfiles) would define. Nothing to run before main or after it. */
void _init(void) {}
void _fini(void) {}

/* Reports the stacked registers of a fault and ends the run with UCM_EXIT_FAULT. */
void ucm_fault_report(const uint32_t *frame, uint32_t exc_return) {
  uint32_t ipsr;
  __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
  fprintf(stderr,
          "ucm_firmware: fault (exception %lu%s): pc 0x%08lx lr 0x%08lx xpsr 0x%08lx; CFSR 0x%08lx HFSR 0x%08lx "
          "MMFAR 0x%08lx BFAR 0x%08lx EXC_RETURN 0x%08lx\n",
          (unsigned long)(ipsr & 0x1FFu), (ipsr & 0x1FFu) == 3 ? ", HardFault" : "", (unsigned long)frame[6],
          (unsigned long)frame[5], (unsigned long)frame[7], (unsigned long)SCB_CFSR, (unsigned long)SCB_HFSR,
          (unsigned long)SCB_MMFAR, (unsigned long)SCB_BFAR, (unsigned long)exc_return);
  exit(UCM_EXIT_FAULT);
}

/* Every fault and unexpected exception: hand the stacked frame (main or process stack) to the report. */
__attribute__((naked)) void Fault_Handler(void) {
  __asm volatile(
      "tst lr, #4\n"
      "ite eq\n"
      "mrseq r0, msp\n"
      "mrsne r0, psp\n"
      "mov r1, lr\n"
      "b ucm_fault_report\n");
}

__attribute__((noreturn)) void Reset_Handler(void) {
  SCB_CPACR |= 0xFu << 20; /* CP10 and CP11: the FPU and Helium (MVE) */
  __asm volatile("dsb\nisb" ::: "memory");
  for (uint32_t *src = &__data_load__, *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  initialise_monitor_handles();
  SYST_RVR = SYSTICK_MAX;
  SYST_CVR = 0;
  SYST_CSR = 7u; /* enable, interrupt on wrap, CPU clock */
  exit(main());
}

/* Initial stack, reset, then the system exceptions 2..15; external interrupts stay disabled. */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&__stack_top__, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, SysTick_Handler,
};
