/* ucm_firmware: the bare-metal runner. Segments binary PPM (P6) images with the compiled UCM-Net, reading
 * and writing the host's files through Arm semihosting (under QEMU the host folder is the board's file
 * system). Its arguments come from the semihosting command line, as ucm_runner's do:
 *
 *   ucm_firmware.elf [--out DIR] [--logits] [--repeat N] IMAGE.ppm...
 *
 * Writes DIR/<name>.pgm, with --logits DIR/<name>.f32, and DIR/timings.tsv: per image the median of
 * --repeat runs, in microseconds of the board's SysTick clock (name, microseconds, ticks). Built with
 * -DUCM_PROFILE (make profile) it also writes DIR/profile.tsv, SysTick ticks per kernel call. Exit status:
 * 0, 2 for malformed input, 1 for other failures, 3 for a fault (see startup_an547.c). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ucm_config.h"
#include "ucm_model.h"
#include "ucm_runner_io.h"

#define MAX_ARGS 64
#define NPIX (UCM_INPUT_HEIGHT * UCM_INPUT_WIDTH)
#define SYS_GET_CMDLINE 0x15

uint64_t ucm_clock(void);
unsigned long long ucm_clock_hz(void);

/* The mask the model writes is in SRAM and counts as its RAM ("io"). An int8 model keeps the image in its
 * arena (ucm_input()): the frame read from the host waits in DDR (an547.ld's .staging), as a camera's frame
 * buffer would, and ucm_run copies it in for each run (the arena reuses that memory after the first layers).
 * A float model reads the image from the SRAM buffer of its own that "io" counts. The float logits are only
 * staged for the host, in DDR. */
#ifdef UCM_IMAGE_IN_ARENA
static uint8_t rgb[NPIX * 3] __attribute__((section(".staging"), aligned(8)));
#else
static uint8_t rgb[NPIX * 3] __attribute__((aligned(8)));
#endif
static uint8_t mask[NPIX] __attribute__((aligned(8)));
static float logits[NPIX] __attribute__((section(".staging"), aligned(8)));
static long long times[UCM_MAX_REPEAT];

static int fail(const char *what, const char *why) { return ucm_fail("ucm_firmware", what, why); }

/* The semihosting command line (QEMU: -semihosting-config arg=...), split at spaces into argv. */
static int command_line(char **argv) {
  static char line[4096];
  struct { char *buf; int len; } block = {line, (int)sizeof line - 1};
  register int op __asm("r0") = SYS_GET_CMDLINE;
  register void *arg __asm("r1") = &block;
  __asm volatile("bkpt 0xAB" : "+r"(op) : "r"(arg) : "memory");
  if (op != 0) return 0;
  line[block.len] = '\0';
  int argc = 0;
  for (char *token = strtok(line, " "); token && argc < MAX_ARGS; token = strtok(NULL, " ")) argv[argc++] = token;
  return argc;
}

int main(void) {
  char *argv[MAX_ARGS];
  const int argc = command_line(argv);
  ucm_options options;
  int status = ucm_parse_options(argc, argv, "ucm_firmware",
                                 "ucm_firmware.elf [--out DIR] [--logits] [--repeat N] IMAGE.ppm...", 0, &options);
  if (status) return status;
  const char *out = options.out;
  const int first = options.first, want_logits = options.logits, repeat = options.repeat, n_images = argc - first;
  if (n_images == 0) return fail("input", "no images given");
  if ((status = ucm_check_name_clash(argv + first, n_images, out, "ucm_firmware"))) return status;
  char name[256], tsv_path[512];
  snprintf(tsv_path, sizeof tsv_path, "%s/timings.tsv", out);
  FILE *tsv = fopen(tsv_path, "w");
  if (!tsv) return fail(tsv_path, "cannot create (does --out exist on the host?)");
  fputs("name\tmicroseconds\tticks\n", tsv);
  const unsigned long long hz = ucm_clock_hz();
  for (int k = 0; k < n_images && status == 0; ++k) {
    const char *path = argv[first + k];
    FILE *f = fopen(path, "rb");
    const char *err = f ? ucm_read_ppm(f, rgb, UCM_INPUT_HEIGHT, UCM_INPUT_WIDTH) : "cannot open";
    if (f) fclose(f);
    if (err) { status = fail(path, err); break; }
    ucm_output_name(path, name, sizeof name);
    int rc = 0;
    for (int r = 0; r < repeat && rc == 0; ++r) {
      uint64_t t0 = ucm_clock();
      rc = ucm_run_logits(rgb, mask, want_logits ? logits : NULL);
      times[r] = (long long)(ucm_clock() - t0);
    }
    if (rc != 0) { status = fail(name, ucm_last_error()); break; }
    const long long ticks = ucm_median(times, repeat);
    const char *unwritten = ucm_write_outputs(out, name, mask, want_logits ? logits : NULL, UCM_INPUT_HEIGHT,
                                              UCM_INPUT_WIDTH);
    if (unwritten) { status = fail(unwritten, "cannot write"); break; }
    const long long us = (long long)((unsigned long long)ticks * 1000000ull / hz);
    printf("time_us\t%s\t%lld\n", name, us);
    fprintf(tsv, "%s\t%lld\t%lld\n", name, us, ticks);
  }
  if (status == 0 && ucm_write_profile(out, hz, (long)n_images * repeat)) status = fail("profile.tsv", "cannot write");
  fprintf(stderr, "ucm_firmware: workspace peak %lu bytes\n", (unsigned long)ucm_workspace_peak());
  if (fclose(tsv) != 0 && status == 0) status = fail(tsv_path, "cannot write");
  return status;
}
