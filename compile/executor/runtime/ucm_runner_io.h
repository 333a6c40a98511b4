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

/* A whole-string decimal in [lo, hi], or -1. */
long ucm_parse_count(const char *text, long lo, long hi);

/* Writes header (may be NULL) then n bytes of data; 0 or -1. */
int ucm_write_file(const char *path, const char *header, const void *data, size_t n);

/* Writes DIR/<name>.pgm (the mask) and, when logits is not NULL, DIR/<name>.f32. Returns NULL or the path
 * that could not be written (in a static buffer). */
const char *ucm_write_outputs(const char *dir, const char *name, const uint8_t *mask, const float *logits,
                              int h, int w);

/* The median of n values (sorts them). */
long long ucm_median(long long *values, int n);

/* Index of the first of two inputs that would write the same output name, or -1: *other gets the second. */
int ucm_find_name_clash(char **paths, int n, int *other);

/* With a model built with -DUCM_PROFILE: writes DIR/profile.tsv, one row per kernel call (index, kernel,
 * clock ticks summed over `runs` runs), after a "# clock_hz N runs R" line. 0 or -1. */
int ucm_write_profile(const char *dir, unsigned long long clock_hz, long runs);

#endif /* UCM_RUNNER_IO_H_ */
