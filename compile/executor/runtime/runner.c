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
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ucm_model.h"

#define MAX_REPEAT 1000

static int fail(const char *what, const char *why) {
  fprintf(stderr, "ucm_runner: %s: %s\n", what, why);
  return 2;
}

/* Reads one header token (a non-negative decimal number) of a PPM, skipping whitespace and comments;
 * *end gets the one whitespace character that ends it. */
static int ppm_number(FILE *f, long *value, int *end) {
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
  *end = c;
  return 0;
}

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

/* Reads a P6 image of exactly h x w pixels, maxval 255, no trailing data. A header written with CRLF line
 * ends (the '\n' after the maxval's '\r', when exactly one byte more than the pixels follows) is accepted.
 * Returns 0 or an error text. */
static const char *read_ppm(const char *path, uint8_t *rgb, int h, int w) {
  static char why[200];
  const char *open_why = NULL;
  FILE *f = open_regular(path, &open_why);
  if (!f) {
    snprintf(why, sizeof why, "cannot open (%s)", open_why);
    return why;
  }
  char magic[2];
  long width, height, maxval;
  int end = 0;
  const size_t pixel_bytes = (size_t)h * w * 3;
  const char *err = NULL;
  if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || magic[1] != '6') {
    err = "not a binary PPM (magic 'P6' missing)";
  } else if (ppm_number(f, &width, &end) || ppm_number(f, &height, &end) || ppm_number(f, &maxval, &end)) {
    err = "malformed PPM header";
  } else if (maxval != 255) {
    err = "PPM maxval must be 255 (8-bit)";
  } else if (width != w || height != h) {
    snprintf(why, sizeof why, "image is %ldx%ld; the model takes %dx%d: resize it first", width, height, w, h);
    err = why;
  } else {
    struct stat st;
    long pos = ftell(f);
    if (end == '\r' && pos >= 0 && fstat(fileno(f), &st) == 0 && (size_t)(st.st_size - pos) == pixel_bytes + 1) {
      int next = fgetc(f);
      if (next != '\n') ungetc(next, f);
    }
    if (fread(rgb, 1, pixel_bytes, f) != pixel_bytes) {
      err = "truncated pixel data";
    } else if (fgetc(f) != EOF) {
      err = "trailing data after the pixels (oversized file)";
    }
  }
  fclose(f);
  return err;
}

/* The output name of an input: its base name without the extension. */
static void output_name(const char *path, char *name, size_t size) {
  const char *slash = strrchr(path, '/');
  snprintf(name, size, "%s", slash ? slash + 1 : path);
  char *dot = strrchr(name, '.');
  if (dot) *dot = '\0';
}

/* A whole-string decimal in [lo, hi], or -1. */
static long parse_count(const char *text, long lo, long hi) {
  char *end = NULL;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end != '\0' || v < lo || v > hi) return -1;
  return v;
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

int main(int argc, char **argv) {
  const char *out = ".", *batch = NULL;
  int logits = 0, repeat = 1, first = argc;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      out = argv[++i];
    } else if (!strcmp(argv[i], "--logits")) {
      logits = 1;
    } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
      repeat = (int)parse_count(argv[++i], 1, MAX_REPEAT);
      if (repeat < 0) return fail("--repeat", "must be a whole number from 1 to 1000");
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
  struct stat out_st;
  if (stat(out, &out_st) != 0) return fail(out, strerror(errno));
  if (!S_ISDIR(out_st.st_mode)) return fail(out, "--out is not a folder");
  char name[1024], other[1024];
  for (long a = 0; !batch && a < n_images; ++a) {
    output_name(argv[first + a], name, sizeof name);
    for (long b = a + 1; b < n_images; ++b) {
      output_name(argv[first + b], other, sizeof other);
      if (!strcmp(name, other)) {
        fprintf(stderr, "ucm_runner: %s and %s would both write %s/%s.pgm; rename one or run them separately\n",
                argv[first + a], argv[first + b], out, name);
        return 2;
      }
    }
  }
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
  char path[4096], tsv_path[4096];
  snprintf(tsv_path, sizeof tsv_path, "%s/timings.tsv", out);
  if (!rgb || !mask || (logits && !raw) || !times) return fail("memory", "cannot allocate the image buffers");
  FILE *tsv = fopen(tsv_path, "w");
  if (!tsv) return fail(tsv_path, strerror(errno));
  fputs("name\tmicroseconds\n", tsv);
  int status = 0;
  for (long k = 0; k < n_images; ++k) {
    if (batch) {
      snprintf(name, sizeof name, "batch_%06ld", k);
      if (fread(rgb, 1, npix * 3, batch_file) != npix * 3) { status = fail(batch, "read error"); break; }
    } else {
      const char *err = read_ppm(argv[first + k], rgb, h, w);
      if (err) { status = fail(argv[first + k], err); break; }
      output_name(argv[first + k], name, sizeof name);
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
    if (write_file(path, header, mask, npix)) { status = fail(path, strerror(errno)); break; }
    if (logits) {
      snprintf(path, sizeof path, "%s/%s.f32", out, name);
      if (write_file(path, NULL, raw, npix * sizeof(float))) { status = fail(path, strerror(errno)); break; }
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
