/* Files of the runners (Linux ucm_runner and the bare-metal firmware): binary PPM in, PGM and raw
 * float32 out, with C stdio only (semihosting gives the firmware the same calls). Not part of the model. */
#ifndef UCM_RUNNER_IO_H_
#define UCM_RUNNER_IO_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Reads a P6 image of exactly h x w pixels, maxval 255, no trailing data, from an open file (at its start).
 * A header written with CRLF line ends is accepted. Returns NULL or an error text. */
const char *ucm_read_ppm(FILE *f, uint8_t *rgb, int h, int w);

/* The output name of an input path: its base name without the extension. */
void ucm_output_name(const char *path, char *name, size_t size);

#define UCM_MAX_REPEAT 1000

/* The runners' options: [--out DIR] [--logits] [--repeat N] [--batch FILE] before the images. */
typedef struct {
  const char *out;   /* "." unless given */
  const char *batch; /* NULL unless given (only where allowed) */
  int logits;
  int repeat;        /* 1 to UCM_MAX_REPEAT */
  int first;         /* index of the first image argument (argc when none) */
} ucm_options;

/* Parses the options; `usage` is printed after an unknown one, --batch is accepted only if allow_batch.
 * Returns 0, or 2 after printing "prog: what: why" to stderr. */
int ucm_parse_options(int argc, char **argv, const char *prog, const char *usage, int allow_batch,
                      ucm_options *options);

/* Prints "prog: what: why" to stderr and returns 2 (the exit status for input the user can fix). */
int ucm_fail(const char *prog, const char *what, const char *why);

/* Writes header (may be NULL) then n bytes of data; 0 or -1. */
int ucm_write_file(const char *path, const char *header, const void *data, size_t n);

/* Writes DIR/<name>.pgm (the mask) and, when logits is not NULL, DIR/<name>.f32. Returns NULL or the path
 * that could not be written (in a static buffer). */
const char *ucm_write_outputs(const char *dir, const char *name, const uint8_t *mask, const float *logits,
                              int h, int w);

/* The median of n values (sorts them). */
long long ucm_median(long long *values, int n);

/* 0, or 2 after saying which two of the n inputs would write the same output name DIR/<name>.pgm. */
int ucm_check_name_clash(char **paths, int n, const char *out, const char *prog);

/* With a model built with -DUCM_PROFILE: writes DIR/profile.tsv, one row per kernel call (index, kernel,
 * clock ticks summed over `runs` runs), after a "# clock_hz N runs R" line. 0 or -1. */
int ucm_write_profile(const char *dir, unsigned long long clock_hz, long runs);

#endif /* UCM_RUNNER_IO_H_ */
