/* util.h - errors, allocation, timing, memory and small numeric helpers shared by
 * every module of librepliq. */
#ifndef RQ_UTIL_H
#define RQ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Every fallible function returns 0 on success and -1 on failure; the failure's
 * message (what, where, what to do) is kept per thread and read by rq_error(). */
int rq_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *rq_error(void);
/* Prefix the current error with context, e.g. the file being read. Returns -1. */
int rq_fail_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that aborts with a message on exhaustion: out of memory is not an
 * input error a caller can repair. */
void *rq_malloc(size_t n);
void *rq_calloc(size_t n, size_t size);
void *rq_realloc(void *p, size_t n);
char *rq_strdup(const char *s);
char *rq_strndup(const char *s, size_t n);

double rq_time(void); /* seconds, monotonic */

/* Threads for repliq's own parallel loops (rq_set_threads in forward.h sets them
 * with OpenBLAS's); the default is the number of online CPUs. */
void rq_set_par_threads(int n);
int rq_par_threads(void);
/* fn(ctx, lo, hi) over [0, n) split into contiguous ranges, one per thread; the
 * ranges never depend on timing, so a deterministic fn gives the same result. */
void rq_parallel_for(int64_t n, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx);
/* How many calls of rq_parallel_for so far ran on more than one thread (bench/bench_par
 * counts them), how many of those the kept worker pool served, and whether calls use
 * the pool (default) or start and join threads per call (the path before the pool,
 * for bench_par's comparison). */
int64_t rq_parallel_for_spawns(void);
int64_t rq_parallel_for_pooled(void);
void rq_parallel_for_pool(bool on);
size_t rq_peak_rss(void); /* bytes, this process's high-water mark */

/* Two files' values of the same named settings, side by side. */
typedef struct {
    const char *what;
    double a, b;
} rq_named_pair;
/* 0 when every pair agrees; else -1 with "WHAT differs: A in path_a, B in path_b; hint"
 * for the first that does not. */
int rq_same_values(const rq_named_pair *v, size_t n, const char *path_a, const char *path_b, const char *hint);

/* Map a regular file read-only. *base is NULL for an empty file (nothing to unmap). */
int rq_map_file(const char *path, const void **base, size_t *size);
void rq_unmap_file(const void *base, size_t size);

/* Whole-file read into a NUL-terminated buffer. */
int rq_read_file(const char *path, char **data, size_t *len);

/* A file written whole or not at all: rq_tmpfile_open creates PATH.tmp for
 * writing (t->f); rq_tmpfile_close closes it and, when ok and every write
 * succeeded, renames it over PATH; otherwise it removes it and PATH is left as
 * it was. When ok is false the caller's error message is kept. */
typedef struct {
    FILE *f;
    char *path, *tmp;
} rq_tmpfile;
int rq_tmpfile_open(rq_tmpfile *t, const char *path);
int rq_tmpfile_close(rq_tmpfile *t, bool ok);

/* Exact conversions between binary16 / bfloat16 and binary32. */
int rq_cmp_float(const void *a, const void *b); /* qsort comparator, floats ascending */
uint32_t rq_f32_bits(float f);                  /* the IEEE bits of f */
float rq_f32_from_bits(uint32_t u);
float rq_fp16_to_fp32(uint16_t h);
void rq_fp16_to_fp32_n(const uint16_t *h, int64_t n, float *out);
uint16_t rq_fp32_to_fp16(float f); /* round to nearest even */
float rq_bf16_to_fp32(uint16_t h);
uint16_t rq_fp32_to_bf16(float f); /* round to nearest even */

/* Progress line on stderr, rewritten in place on a terminal and printed at most
 * every few seconds otherwise. */
void rq_progress(const char *what, int64_t done, int64_t total, double t_start);

#endif
