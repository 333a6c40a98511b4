/* ucm_runner: segment binary PPM (P6) images, or a raw RGB batch, with the compiled UCM-Net.
 *
 *   ucm_runner [--out DIR] [--logits] [--repeat N] IMAGE.ppm...
 *   ucm_runner [--out DIR] [--logits] [--repeat N] --batch FILE.rgb
 *
 * Writes DIR/<name>.pgm (P5 mask, 255 = lesion), with --logits DIR/<name>.f32 (raw float32 logits,
 * little-endian, height x width), and DIR/timings.tsv; prints one "time_us<TAB>name<TAB>microseconds"
 * line per image (the median of --repeat runs). Built with -DUCM_PROFILE (make profile: ucm_runner_profile)
 * it also writes DIR/profile.tsv, nanoseconds per kernel call. Malformed input: a message and exit status 2. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ucm_model.h"
#include "ucm_runner_io.h"

static int fail(const char *what, const char *why) { return ucm_fail("ucm_runner", what, why); }

/* Opens an input for reading only if it is a regular file (a FIFO or device would block or never end):
 * opened without blocking, then checked. Returns NULL with *why set. */
static FILE *open_regular(const char *path, const char **why) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    *why = strerror(errno);
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = "not a regular file (a FIFO, device or folder); give an image file";
    close(fd);
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    *why = strerror(errno);
    close(fd);
  }
  return f;
}

/* A P6 image file, checked to be a regular file first. Returns NULL or an error text. */
static const char *read_image(const char *path, uint8_t *rgb, int h, int w) {
  static char why[300];
  const char *open_why = NULL;
  FILE *f = open_regular(path, &open_why);
  if (!f) {
    snprintf(why, sizeof why, "cannot open (%s)", open_why);
    return why;
  }
  const char *err = ucm_read_ppm(f, rgb, h, w);
  fclose(f);
  return err;
}

/* The runner's clock (and, in a -DUCM_PROFILE build, the model's): monotonic nanoseconds. */
uint64_t ucm_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#if defined(__aarch64__) || defined(__riscv)
#include <sys/auxv.h>
#endif

/* The instruction-set extensions this runner (and the kernels, built for the same target) use that this CPU
 * lacks, or NULL: checked at start, so a wrong CPU gets a message instead of an illegal instruction. */
static const char *missing_extensions(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
#if defined(__AVX512F__)
  if (!__builtin_cpu_supports("avx512f")) return "AVX-512F";
#endif
#if defined(__AVX512VL__)
  if (!__builtin_cpu_supports("avx512vl")) return "AVX-512VL";
#endif
#if defined(__AVX512BW__)
  if (!__builtin_cpu_supports("avx512bw")) return "AVX-512BW";
#endif
#if defined(__AVX512DQ__)
  if (!__builtin_cpu_supports("avx512dq")) return "AVX-512DQ";
#endif
#if defined(__AVX512VNNI__)
  if (!__builtin_cpu_supports("avx512vnni")) return "AVX-512 VNNI";
#endif
#if defined(__AVX2__)
  if (!__builtin_cpu_supports("avx2")) return "AVX2";
#endif
#if defined(__FMA__)
  if (!__builtin_cpu_supports("fma")) return "FMA";
#endif
#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
  if (!(getauxval(AT_HWCAP) & (1ul << 20))) return "the dot-product instructions (asimddp)"; /* HWCAP_ASIMDDP */
#elif defined(__riscv) && defined(__riscv_vector)
  if (!(getauxval(AT_HWCAP) & (1ul << ('V' - 'A')))) return "the vector extension (V)";
#endif
  return NULL;
}

int main(int argc, char **argv) {
  const char *missing = missing_extensions();
  if (missing) {
    fprintf(stderr, "ucm_runner: this CPU lacks %s, which this bundle was built for; build the bundle for a "
                    "target this CPU has (python -m compile --list-targets)\n", missing);
    return 2;
  }
  ucm_options options;
  int status = ucm_parse_options(argc, argv, "ucm_runner",
                                 "ucm_runner [--out DIR] [--logits] [--repeat N] (IMAGE.ppm... | --batch FILE.rgb)", 1,
                                 &options);
  if (status) return status;
  const char *out = options.out, *batch = options.batch;
  const int logits = options.logits, repeat = options.repeat, first = options.first;
  const int h = ucm_input_height(), w = ucm_input_width();
  const size_t npix = (size_t)h * w;
  long n_images = batch ? 0 : argc - first;
  FILE *batch_file = NULL;
  struct stat out_st;
  if (stat(out, &out_st) != 0) return fail(out, strerror(errno));
  if (!S_ISDIR(out_st.st_mode)) return fail(out, "--out is not a folder");
  if (!batch && (status = ucm_check_name_clash(argv + first, (int)n_images, out, "ucm_runner"))) return status;
  char name[1024];
  if (batch) {
    if (first < argc) return fail(argv[first], "give either image files or --batch, not both");
    const char *why = NULL;
    batch_file = open_regular(batch, &why);
    if (!batch_file) return fail(batch, why);
    if (fseek(batch_file, 0, SEEK_END) != 0) return fail(batch, "cannot seek");
    long size = ftell(batch_file);
    rewind(batch_file);
    if (size <= 0 || size % (long)(npix * 3) != 0) {
      fclose(batch_file);
      return fail(batch, "raw batch size is not a multiple of height x width x 3 bytes");
    }
    n_images = size / (long)(npix * 3);
  }
  if (n_images == 0) return fail("input", "no images given");

  uint8_t *rgb = malloc(npix * 3), *mask = malloc(npix);
  float *raw = logits ? malloc(npix * sizeof(float)) : NULL;
  long long *times = malloc(sizeof(long long) * (size_t)repeat);
  char tsv_path[4096];
  snprintf(tsv_path, sizeof tsv_path, "%s/timings.tsv", out);
  if (!rgb || !mask || (logits && !raw) || !times) return fail("memory", "cannot allocate the image buffers");
  FILE *tsv = fopen(tsv_path, "w");
  if (!tsv) return fail(tsv_path, strerror(errno));
  fputs("name\tmicroseconds\n", tsv);
  for (long k = 0; k < n_images; ++k) {
    if (batch) {
      snprintf(name, sizeof name, "batch_%06ld", k);
      if (fread(rgb, 1, npix * 3, batch_file) != npix * 3) { status = fail(batch, "read error"); break; }
    } else {
      const char *err = read_image(argv[first + k], rgb, h, w);
      if (err) { status = fail(argv[first + k], err); break; }
      ucm_output_name(argv[first + k], name, sizeof name);
    }
    int rc = 0;
    for (int r = 0; r < repeat && rc == 0; ++r) {
      uint64_t t0 = ucm_clock();
      rc = ucm_run_logits(rgb, mask, raw);
      times[r] = (long long)((ucm_clock() - t0) / 1000u);
    }
    if (rc != 0) { status = fail(name, ucm_last_error()); break; }
    const long long us = ucm_median(times, repeat);
    const char *unwritten = ucm_write_outputs(out, name, mask, raw, h, w);
    if (unwritten) { status = fail(unwritten, strerror(errno)); break; }
    printf("time_us\t%s\t%lld\n", name, us);
    fprintf(tsv, "%s\t%lld\n", name, us);
    fflush(stdout);
    fflush(tsv);
  }
  if (status == 0 && ucm_write_profile(out, 1000000000u, n_images * repeat)) status = fail("profile.tsv", strerror(errno));
  fprintf(stderr, "ucm_runner: workspace peak %zu bytes\n", ucm_workspace_peak());
  if (batch_file) fclose(batch_file);
  fclose(tsv);
  free(rgb); free(mask); free(raw); free(times);
  return status;
}
