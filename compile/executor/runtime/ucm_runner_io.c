/* Files of the runners; see ucm_runner_io.h. */
#include "ucm_runner_io.h"

#include "ucm_model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* Bytes from the current position to the end of the file, or -1. */
static long bytes_left(FILE *f) {
  long pos = ftell(f);
  if (pos < 0 || fseek(f, 0, SEEK_END) != 0) return -1;
  long size = ftell(f);
  if (fseek(f, pos, SEEK_SET) != 0 || size < pos) return -1;
  return size - pos;
}

const char *ucm_read_ppm(FILE *f, uint8_t *rgb, int h, int w) {
  static char why[200];
  char magic[2];
  long width, height, maxval;
  int end = 0;
  const size_t pixel_bytes = (size_t)h * w * 3;
  if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || magic[1] != '6') return "not a binary PPM (magic 'P6' missing)";
  if (ppm_number(f, &width, &end) || ppm_number(f, &height, &end) || ppm_number(f, &maxval, &end)) {
    return "malformed PPM header";
  }
  if (maxval != 255) return "PPM maxval must be 255 (8-bit)";
  if (width != w || height != h) {
    snprintf(why, sizeof why, "image is %ldx%ld; the model takes %dx%d: resize it first", width, height, w, h);
    return why;
  }
  /* A CRLF header: the '\n' after the maxval's '\r', when exactly one byte more than the pixels follows. */
  if (end == '\r' && bytes_left(f) == (long)pixel_bytes + 1) {
    int next = fgetc(f);
    if (next != '\n') ungetc(next, f);
  }
  if (fread(rgb, 1, pixel_bytes, f) != pixel_bytes) return "truncated pixel data";
  if (fgetc(f) != EOF) return "trailing data after the pixels (oversized file)";
  return NULL;
}

void ucm_output_name(const char *path, char *name, size_t size) {
  const char *slash = strrchr(path, '/');
  snprintf(name, size, "%s", slash ? slash + 1 : path);
  char *dot = strrchr(name, '.');
  if (dot) *dot = '\0';
}

static long parse_count(const char *text, long lo, long hi) {
  char *end = NULL;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end != '\0' || v < lo || v > hi) return -1;
  return v;
}

int ucm_write_file(const char *path, const char *header, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = (!header || fputs(header, f) >= 0) && fwrite(data, 1, n, f) == n;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

const char *ucm_write_outputs(const char *dir, const char *name, const uint8_t *mask, const float *logits,
                              int h, int w) {
  static char path[4096];
  char header[64];
  const size_t npix = (size_t)h * w;
  snprintf(header, sizeof header, "P5\n%d %d\n255\n", w, h);
  snprintf(path, sizeof path, "%s/%s.pgm", dir, name);
  if (ucm_write_file(path, header, mask, npix)) return path;
  if (logits) {
    snprintf(path, sizeof path, "%s/%s.f32", dir, name);
    if (ucm_write_file(path, NULL, logits, npix * sizeof(float))) return path;
  }
  return NULL;
}

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

long long ucm_median(long long *values, int n) {
  qsort(values, (size_t)n, sizeof values[0], cmp_ll);
  return values[n / 2];
}

int ucm_check_name_clash(char **paths, int n, const char *out, const char *prog) {
  char name[1024], second[1024];
  for (int a = 0; a < n; ++a) {
    ucm_output_name(paths[a], name, sizeof name);
    for (int b = a + 1; b < n; ++b) {
      ucm_output_name(paths[b], second, sizeof second);
      if (!strcmp(name, second)) {
        fprintf(stderr, "%s: %s and %s would both write %s/%s.pgm; rename one or run them separately\n", prog,
                paths[a], paths[b], out, name);
        return 2;
      }
    }
  }
  return 0;
}

int ucm_fail(const char *prog, const char *what, const char *why) {
  fprintf(stderr, "%s: %s: %s\n", prog, what, why);
  return 2;
}

int ucm_parse_options(int argc, char **argv, const char *prog, const char *usage, int allow_batch,
                      ucm_options *options) {
  *options = (ucm_options){".", NULL, 0, 1, argc};
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      options->out = argv[++i];
    } else if (!strcmp(argv[i], "--logits")) {
      options->logits = 1;
    } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
      options->repeat = (int)parse_count(argv[++i], 1, UCM_MAX_REPEAT);
      if (options->repeat < 0) return ucm_fail(prog, "--repeat", "must be a whole number from 1 to 1000");
    } else if (allow_batch && !strcmp(argv[i], "--batch") && i + 1 < argc) {
      options->batch = argv[++i];
    } else if (argv[i][0] == '-') {
      char why[300];
      snprintf(why, sizeof why, "unknown option; usage: %s", usage);
      return ucm_fail(prog, argv[i], why);
    } else {
      options->first = i;
      break;
    }
  }
  return 0;
}

int ucm_write_profile(const char *dir, unsigned long long clock_hz, long runs) {
#ifdef UCM_PROFILE
  char path[4096];
  snprintf(path, sizeof path, "%s/profile.tsv", dir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  int ok = fprintf(f, "# clock_hz %llu runs %ld\ncall\tkernel\tticks\n", clock_hz, runs) > 0;
  for (int i = 0; ok && i < ucm_profile_calls(); ++i) {
    ok = fprintf(f, "%d\t%s\t%llu\n", i, ucm_profile_kernel(i), (unsigned long long)ucm_profile_ticks(i)) > 0;
  }
  return (fclose(f) == 0 && ok) ? 0 : -1;
#else
  (void)dir; (void)clock_hz; (void)runs;
  return 0;
#endif
}
