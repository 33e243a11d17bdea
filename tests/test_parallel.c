/* test_parallel.c - rq_parallel_for with its kept worker pool: every index runs exactly
 * once for any n and thread count (the pool growing and shrinking), the ranges are the
 * ones threads started per call get, and calls made from inside a range or from two
 * threads at once (which cannot have the pool) still run everything. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rq_test.h"
#include "util.h"

enum { NMAX = 1000 };

typedef struct {
    _Atomic int hits[NMAX];
    _Atomic int calls;
    int64_t lo[64], hi[64];
} cover;

static void mark(void *ctx, int64_t lo, int64_t hi) {
    cover *c = ctx;
    int k = c->calls++;
    if (k < 64) {
        c->lo[k] = lo;
        c->hi[k] = hi;
    }
    for (int64_t i = lo; i < hi; i++)
        c->hits[i]++;
}

/* Every index of [0, n) exactly once; the ranges, sorted by start, in ranges[]. */
static bool covers(int64_t n, int64_t *ranges, int *n_ranges) {
    static cover c;
    memset(&c, 0, sizeof c);
    rq_parallel_for(n, mark, &c);
    bool ok = true;
    for (int64_t i = 0; i < n; i++)
        ok &= c.hits[i] == 1;
    for (int64_t i = n; i < NMAX; i++)
        ok &= c.hits[i] == 0;
    *n_ranges = c.calls;
    for (int k = 0; k < c.calls && k < 64; k++) {
        int64_t lo = c.lo[k];
        int j = 0;
        while (j < k && ranges[2 * j] < lo)
            j++;
        memmove(ranges + 2 * j + 2, ranges + 2 * j, (size_t)(k - j) * 2 * sizeof *ranges);
        ranges[2 * j] = lo;
        ranges[2 * j + 1] = c.hi[k];
    }
    return ok;
}

static void test_every_index_once(void) {
    const int threads[] = {1, 2, 3, 5, 8, 2, 1, 4};
    const int64_t ns[] = {0, 1, 2, 3, 7, 64, 999, 1000};
    int bad = 0, differ = 0, pooled = 0, spawned = 0, multi = 0;
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        rq_set_par_threads(threads[t]);
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
            for (int rep = 0; rep < 50; rep++) {
                int64_t rp[128], rs[128];
                int np, ns_;
                int64_t p0 = rq_parallel_for_pooled();
                rq_parallel_for_pool(true);
                bad += !covers(ns[k], rp, &np);
                pooled += rq_parallel_for_pooled() > p0;
                multi += np > 1;
                p0 = rq_parallel_for_pooled();
                rq_parallel_for_pool(false);
                bad += !covers(ns[k], rs, &ns_);
                spawned += rq_parallel_for_pooled() == p0;
                differ += np != ns_ || memcmp(rp, rs, (size_t)np * 2 * sizeof *rp);
            }
    }
    rq_parallel_for_pool(true);
    CHECKF(bad == 0, "%d calls missed or repeated an index", bad);
    CHECKF(differ == 0, "%d calls split the range otherwise than threads per call do", differ);
    CHECKF(pooled == multi && multi > 0, "the pool served %d of %d calls on several threads", pooled, multi);
    CHECKF(spawned == 50 * 64, "with the pool off it still served %d calls", 50 * 64 - spawned);
}

typedef struct {
    _Atomic int64_t sum;
} nest;

static void inner(void *ctx, int64_t lo, int64_t hi) {
    nest *s = ctx;
    for (int64_t i = lo; i < hi; i++)
        s->sum += i;
}

static void outer(void *ctx, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++)
        rq_parallel_for(100, inner, ctx); /* the pool is busy: threads per call */
}

static void *caller(void *arg) {
    nest *s = arg;
    for (int k = 0; k < 300; k++)
        rq_parallel_for(100, inner, s);
    return NULL;
}

static void test_nested_and_concurrent(void) {
    rq_set_par_threads(2);
    nest s = {0};
    rq_parallel_for(6, outer, &s);
    CHECKF(s.sum == 6 * 4950, "nested calls summed %lld, want %d", (long long)s.sum, 6 * 4950);
    nest a = {0}, b = {0};
    pthread_t ta, tb;
    REQUIRE(pthread_create(&ta, NULL, caller, &a) == 0 && pthread_create(&tb, NULL, caller, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECKF(a.sum == 300 * 4950 && b.sum == 300 * 4950, "two callers summed %lld and %lld, want %d each",
           (long long)a.sum, (long long)b.sum, 300 * 4950);
}

/* A child forked after the pool started has no workers: its calls must not wait
 * for them. */
static void test_fork(void) {
    rq_set_par_threads(2);
    nest s = {0};
    rq_parallel_for(100, inner, &s); /* the pool exists */
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        nest c = {0};
        for (int k = 0; k < 10; k++)
            rq_parallel_for(100, inner, &c);
        _exit(c.sum == 10 * 4950 ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's calls failed (status %d)", status);
}

int main(void) {
    alarm(120); /* a hang is a failure */
    RUN(test_every_index_once);
    RUN(test_nested_and_concurrent);
    RUN(test_fork);
    TEST_EXIT();
}
