/* ucm_runner: segment binary PPM (P6) images, or a raw RGB batch, with the compiled UCM-Net.
 *
 *   ucm_runner [--out DIR] [--logits] [--repeat N] IMAGE.ppm...
 *   ucm_runner [--out DIR] [--logits] [--repeat N] --batch FILE.rgb
 *
 * Writes DIR/<name>.pgm (P5 mask, 255 = lesion), with --logits DIR/<name>.f32 (raw float32 logits,
 * little-endian, height x width), and DIR/timings.tsv; prints one "time_us<TAB>name<TAB>microseconds"
 * line per image (the median of --repeat runs). Malformed input: a message and exit status 2. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ucm_model.h"

#define MAX_REPEAT 1000

static int fail(const char *what, const char *why) {
  fprintf(stderr, "ucm_runner: %s: %s\n", what, why);
  return 2;
}

/* Reads one header token (a non-negative decimal number) of a PPM, skipping whitespace and comments. */
static int ppm_number(FILE *f, long *value) {
  int c = fgetc(f);
  for (;;) {
    while (c == ' ' || c == '\t' || c == '\n' || c == '\r') c = fgetc(f);
    if (c != '#') break;
    while (c != '\n' && c != EOF) c = fgetc(f);
  }
  if (c < '0' || c > '9') return -1;
  long v = 0;
  while (c >= '0' && c <= '9') {
    v = v * 10 + (c - '0');
    if (v > 1000000) return -1;
    c = fgetc(f);
  }
  if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return -1;  /* exactly one whitespace after */
  *value = v;
  return 0;
}

/* Reads a P6 image of exactly h x w pixels, maxval 255, no trailing data. Returns 0 or an error text. */
static const char *read_ppm(const char *path, uint8_t *rgb, int h, int w) {
  static char why[160];
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(why, sizeof why, "cannot open (%s)", strerror(errno));
    return why;
  }
  char magic[2];
  long width, height, maxval;
  const char *err = NULL;
  if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || magic[1] != '6') {
    err = "not a binary PPM (magic 'P6' missing)";
  } else if (ppm_number(f, &width) || ppm_number(f, &height) || ppm_number(f, &maxval)) {
    err = "malformed PPM header";
  } else if (maxval != 255) {
    err = "PPM maxval must be 255 (8-bit)";
  } else if (width != w || height != h) {
    snprintf(why, sizeof why, "image is %ldx%ld; the model takes %dx%d: resize it first", width, height, w, h);
    err = why;
  } else if (fread(rgb, 1, (size_t)h * w * 3, f) != (size_t)h * w * 3) {
    err = "truncated pixel data";
  } else if (fgetc(f) != EOF) {
    err = "trailing data after the pixels (oversized file)";
  }
  fclose(f);
  return err;
}

static int write_file(const char *path, const char *header, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = (!header || fputs(header, f) >= 0) && fwrite(data, 1, n, f) == n;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

int main(int argc, char **argv) {
  const char *out = ".", *batch = NULL;
  int logits = 0, repeat = 1, first = argc;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      out = argv[++i];
    } else if (!strcmp(argv[i], "--logits")) {
      logits = 1;
    } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
      repeat = atoi(argv[++i]);
      if (repeat < 1 || repeat > MAX_REPEAT) return fail("--repeat", "must be between 1 and 1000");
    } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
      batch = argv[++i];
    } else if (argv[i][0] == '-') {
      return fail(argv[i], "unknown option; usage: ucm_runner [--out DIR] [--logits] [--repeat N] "
                           "(IMAGE.ppm... | --batch FILE.rgb)");
    } else {
      first = i;
      break;
    }
  }
  const int h = ucm_input_height(), w = ucm_input_width();
  const size_t npix = (size_t)h * w;
  long n_images = batch ? 0 : argc - first;
  FILE *batch_file = NULL;
  if (batch) {
    if (first < argc) return fail(argv[first], "give either image files or --batch, not both");
    batch_file = fopen(batch, "rb");
    if (!batch_file) return fail(batch, strerror(errno));
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
  char path[4096], name[1024], tsv_path[4096];
  snprintf(tsv_path, sizeof tsv_path, "%s/timings.tsv", out);
  FILE *tsv = fopen(tsv_path, "w");
  if (!rgb || !mask || (logits && !raw) || !times || !tsv) return fail(out, "cannot allocate buffers or write timings.tsv");
  fputs("name\tmicroseconds\n", tsv);
  int status = 0;
  for (long k = 0; k < n_images; ++k) {
    if (batch) {
      snprintf(name, sizeof name, "batch_%06ld", k);
      if (fread(rgb, 1, npix * 3, batch_file) != npix * 3) { status = fail(batch, "read error"); break; }
    } else {
      const char *err = read_ppm(argv[first + k], rgb, h, w);
      if (err) { status = fail(argv[first + k], err); break; }
      snprintf(name, sizeof name, "%s", base_name(argv[first + k]));
      char *dot = strrchr(name, '.');
      if (dot) *dot = '\0';
    }
    int rc = 0;
    for (int r = 0; r < repeat && rc == 0; ++r) {
      long long t0 = now_us();
      rc = ucm_run_logits(rgb, mask, raw);
      times[r] = now_us() - t0;
    }
    if (rc != 0) { status = fail(name, ucm_last_error()); break; }
    qsort(times, (size_t)repeat, sizeof times[0], cmp_ll);
    char header[64];
    snprintf(header, sizeof header, "P5\n%d %d\n255\n", w, h);
    snprintf(path, sizeof path, "%s/%s.pgm", out, name);
    if (write_file(path, header, mask, npix)) { status = fail(path, "cannot write"); break; }
    if (logits) {
      snprintf(path, sizeof path, "%s/%s.f32", out, name);
      if (write_file(path, NULL, raw, npix * sizeof(float))) { status = fail(path, "cannot write"); break; }
    }
    printf("time_us\t%s\t%lld\n", name, times[repeat / 2]);
    fprintf(tsv, "%s\t%lld\n", name, times[repeat / 2]);
    fflush(stdout);
    fflush(tsv);
  }
  fprintf(stderr, "ucm_runner: workspace peak %zu bytes\n", ucm_workspace_peak());
  if (batch_file) fclose(batch_file);
  fclose(tsv);
  free(rgb); free(mask); free(raw); free(times);
  return status;
}
