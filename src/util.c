/* util.c - errors, allocation, timing, memory and fp16/bf16 conversion. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char rq_err_buf[1024];

int rq_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rq_err_buf, sizeof rq_err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int rq_fail_ctx(const char *fmt, ...) {
    char prefix[512], old[sizeof rq_err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, rq_err_buf, sizeof old);
    /* truncation of an over-long message is acceptable */
    int n = snprintf(rq_err_buf, sizeof rq_err_buf, "%s: ", prefix);
    if (n >= 0 && (size_t)n < sizeof rq_err_buf) memcpy(rq_err_buf + n, old, sizeof rq_err_buf - (size_t)n - 1);
    rq_err_buf[sizeof rq_err_buf - 1] = 0;
    return -1;
}

const char *rq_error(void) { return rq_err_buf[0] ? rq_err_buf : "unknown error"; }

static void rq_oom(size_t n) {
    fprintf(stderr, "repliq: out of memory allocating %zu bytes\n", n);
    abort();
}

void *rq_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) rq_oom(n);
    return p;
}

void *rq_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) rq_oom(n * size);
    return p;
}

void *rq_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) rq_oom(n);
    return q;
}

char *rq_strndup(const char *s, size_t n) {
    char *d = rq_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *rq_strdup(const char *s) { return rq_strndup(s, strlen(s)); }

double rq_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t rq_peak_rss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

int rq_map_file(const char *path, const void **base, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rq_fail("cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rq_fail("'%s' is not a regular file", path);
    }
    void *map = NULL;
    if (st.st_size > 0) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return rq_fail("cannot map '%s': %s", path, strerror(e));
        }
    }
    close(fd);
    *base = map;
    *size = (size_t)st.st_size;
    return 0;
}

void rq_unmap_file(const void *base, size_t size) {
    if (base) munmap((void *)base, size);
}

int rq_tmpfile_open(rq_tmpfile *t, const char *path) {
    size_t len = strlen(path);
    t->path = rq_strdup(path);
    t->tmp = rq_malloc(len + 5);
    memcpy(t->tmp, path, len);
    memcpy(t->tmp + len, ".tmp", 5);
    t->f = fopen(t->tmp, "w");
    if (t->f) return 0;
    rq_fail("cannot create %s: %s; check that the folder exists and is writable", t->tmp, strerror(errno));
    free(t->path);
    free(t->tmp);
    return -1;
}

int rq_tmpfile_close(rq_tmpfile *t, bool ok) {
    int rc = 0;
    if (ok && ferror(t->f)) rc = rq_fail("cannot write %s", t->tmp);
    if (fclose(t->f) != 0 && ok && !rc) rc = rq_fail("cannot write %s: %s", t->tmp, strerror(errno));
    if (ok && !rc && rename(t->tmp, t->path) != 0)
        rc = rq_fail("cannot rename %s to %s: %s", t->tmp, t->path, strerror(errno));
    if (!ok || rc) unlink(t->tmp);
    free(t->path);
    free(t->tmp);
    return ok ? rc : -1;
}

int rq_read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return rq_fail("cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = rq_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = rq_realloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return rq_fail("error reading '%s'", path);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int rq_cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

uint32_t rq_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float rq_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float rq_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return rq_f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24, exact in binary32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return rq_f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

void rq_fp16_to_fp32_n(const uint16_t *h, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++)
        out[i] = rq_fp16_to_fp32(h[i]);
}

uint16_t rq_fp32_to_fp16(float f) {
    uint32_t u = rq_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0);
    if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* result is subnormal in fp16: round a * 2^24 to an integer, ties to even */
        float v = rq_f32_from_bits(a) * 0x1p24f;
        float r = __builtin_rintf(v); /* default rounding mode is to nearest even */
        return sign | (uint16_t)r;
    }
    uint32_t mant = a & 0x7fffff, exp = (a >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

float rq_bf16_to_fp32(uint16_t h) { return rq_f32_from_bits((uint32_t)h << 16); }

uint16_t rq_fp32_to_bf16(float f) {
    uint32_t u = rq_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64); /* quiet nan */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

void rq_progress(const char *what, int64_t done, int64_t total, double t_start) {
    static _Thread_local double last;
    double now = rq_time();
    int tty = isatty(2);
    if (now - t_start < 1.0) return; /* quick work needs no progress */
    if (done < total && now - last < (tty ? 0.2 : 10.0)) return;
    last = now;
    double el = now - t_start;
    double eta = done > 0 ? el * (double)(total - done) / (double)done : 0;
    fprintf(stderr, "%s%s: %lld/%lld (%.0f%%) %.1fs elapsed, ~%.0fs left%s", tty ? "\r" : "", what, (long long)done,
            (long long)total, total ? 100.0 * (double)done / (double)total : 100.0, el, eta,
            tty && done < total ? "" : "\n");
}

static int par_threads = 0; /* 0: not set, use the CPU count */

void rq_set_par_threads(int n) { par_threads = n < 1 ? 1 : n > 64 ? 64 : n; /* rq_parallel_for's slots */ }

int rq_par_threads(void) {
    if (par_threads > 0) return par_threads;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)(c > 64 ? 64 : c) : 1;
}

typedef struct {
    void (*fn)(void *, int64_t, int64_t);
    void *ctx;
    int64_t lo, hi;
} par_job;

static void *par_run(void *p) {
    par_job *j = p;
    j->fn(j->ctx, j->lo, j->hi);
    return NULL;
}

static _Atomic int64_t par_spawns;

int64_t rq_parallel_for_spawns(void) { return par_spawns; }

/* Threads started for one call and joined: the path for a call made while the pool
 * is busy (from inside another call's range, or from a second thread). */
static void spawn_for(par_job *jobs, int t) {
    pthread_t tid[64];
    bool started[64] = {0};
    for (int i = 1; i < t; i++)
        started[i] = pthread_create(&tid[i], NULL, par_run, &jobs[i]) == 0;
    par_run(&jobs[0]);
    for (int i = 1; i < t; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            par_run(&jobs[i]); /* no thread to be had: run the range here */
    }
}

/* The pool: workers started once and kept. A call publishes its jobs and bumps a
 * generation word (generation << 8 | thread count, one atomic, so a worker reads
 * both together); worker w runs jobs[w + 1] when w + 1 < the count. Workers and the
 * caller spin briefly before sleeping on a condition variable (starting and joining
 * threads per call cost about 31 us on two threads here, bench/bench_par); a worker
 * the last call did not need sleeps at once. A forked child starts with no pool. */
#define POOL_SPIN 4000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static struct {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    _Atomic uint64_t word; /* generation << 8 | threads of the current call */
    _Atomic int pending;   /* workers of the current call not yet done */
    int n_workers;
    par_job jobs[64];
    uint64_t born[64]; /* the word when worker w was started: it waits for the next one */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, {{0}}, {0}};
static pthread_mutex_t pool_use = PTHREAD_MUTEX_INITIALIZER; /* held by the call the pool serves */
static _Atomic bool pool_on = true;
static _Atomic int64_t pool_served;

int64_t rq_parallel_for_pooled(void) { return pool_served; }

/* In a forked child only the forking thread exists: forget the workers. */
static void pool_child(void) {
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.go, NULL);
    pthread_cond_init(&pool.done, NULL);
    pthread_mutex_init(&pool_use, NULL);
    pool.word = 0;
    pool.pending = 0;
    pool.n_workers = 0;
}

void rq_parallel_for_pool(bool on) { pool_on = on; }

static void *pool_worker(void *arg) {
    int w = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.mu);
    uint64_t seen = pool.born[w];
    pthread_mutex_unlock(&pool.mu);
    bool spin = true;
    for (;;) {
        for (int i = 0; spin && i < POOL_SPIN && pool.word == seen; i++)
            cpu_relax();
        if (pool.word == seen) {
            pthread_mutex_lock(&pool.mu);
            while (pool.word == seen)
                pthread_cond_wait(&pool.go, &pool.mu);
            pthread_mutex_unlock(&pool.mu);
        }
        seen = pool.word;
        spin = w + 1 < (int)(seen & 0xff);
        if (!spin) continue;
        par_job j = pool.jobs[w + 1]; /* not rewritten before this worker is done: pending counts it */
        par_run(&j);
        if (--pool.pending == 0) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
    }
    return NULL;
}

static void pool_atfork(void) { pthread_atfork(NULL, NULL, pool_child); }

/* Workers up to t - 1; false when none more could be started. */
static bool pool_grow(int t) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, pool_atfork);
    while (pool.n_workers < t - 1) {
        pthread_t tid;
        pthread_mutex_lock(&pool.mu);
        pool.born[pool.n_workers] = pool.word;
        pthread_mutex_unlock(&pool.mu);
        if (pthread_create(&tid, NULL, pool_worker, (void *)(intptr_t)pool.n_workers)) return false;
        pthread_detach(tid);
        pool.n_workers++;
    }
    return true;
}

void rq_parallel_for(int64_t n, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx) {
    int t = rq_par_threads();
    if (t > n) t = (int)(n > 0 ? n : 1);
    if (t <= 1) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    par_spawns++;
    par_job jobs[64];
    for (int i = 0; i < t; i++)
        jobs[i] = (par_job){fn, ctx, n * i / t, n * (i + 1) / t};
    if (!pool_on || pthread_mutex_trylock(&pool_use)) {
        spawn_for(jobs, t);
        return;
    }
    if (!pool_grow(t)) {
        pthread_mutex_unlock(&pool_use);
        spawn_for(jobs, t);
        return;
    }
    pool_served++;
    memcpy(pool.jobs, jobs, (size_t)t * sizeof *jobs);
    pool.pending = t - 1;
    pool.word = ((pool.word >> 8) + 1) << 8 | (uint64_t)t;
    pthread_mutex_lock(&pool.mu);
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    par_run(&jobs[0]);
    for (int i = 0; i < POOL_SPIN && pool.pending > 0; i++)
        cpu_relax();
    if (pool.pending > 0) {
        pthread_mutex_lock(&pool.mu);
        while (pool.pending > 0)
            pthread_cond_wait(&pool.done, &pool.mu);
        pthread_mutex_unlock(&pool.mu);
    }
    pthread_mutex_unlock(&pool_use);
}

int rq_same_values(const rq_named_pair *v, size_t n, const char *path_a, const char *path_b, const char *hint) {
    for (size_t i = 0; i < n; i++)
        if (v[i].a != v[i].b)
            return rq_fail("%s differs: %g in %s, %g in %s; %s", v[i].what, v[i].a, path_a, v[i].b, path_b, hint);
    return 0;
}
