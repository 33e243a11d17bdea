/* bench_par.c - what rq_parallel_for costs per call, with its kept worker pool and with
 * threads started and joined per call (the path before the pool), and how often a forward
 * pass calls it: the per-call time of an empty range at N threads, then, when a model is
 * given, the calls and seconds of one forward pass of CTX tokens in both modes, and the
 * share of that time the calls themselves take. Prints JSON lines.
 * usage: bench_par [threads] [MODEL.gguf [CTX]] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>

#include "forward.h"
#include "model.h"
#include "util.h"

static void nothing(void *ctx, int64_t lo, int64_t hi) {
    (void)ctx;
    (void)lo;
    (void)hi;
    __asm__ volatile("" ::: "memory"); /* a call the compiler keeps */
}

/* microseconds per call over enough calls to take about half a second */
static double per_call_us(int threads) {
    rq_set_par_threads(threads);
    rq_parallel_for(1024, nothing, NULL); /* the pool's workers started */
    int calls = 0;
    double t0 = rq_time(), t;
    do {
        for (int i = 0; i < 200; i++)
            rq_parallel_for(1024, nothing, NULL);
        calls += 200;
        t = rq_time() - t0;
    } while (t < 0.5);
    return 1e6 * t / calls;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1) threads = 1;
    struct utsname u;
    uname(&u);
    const char *mode[2] = {"spawn", "pool"};
    double us[2];
    for (int p = 0; p < 2; p++) {
        rq_parallel_for_pool(p);
        us[p] = per_call_us(threads);
        printf("{\"bench\":\"par_call\",\"mode\":\"%s\",\"threads\":%d,\"us_per_call\":%.2f,\"machine\":\"%s %s\"}\n",
               mode[p], threads, us[p], u.machine, u.release);
    }
    if (argc < 3) return 0;
    int ctx = argc > 3 ? atoi(argv[3]) : 512;
    rq_model *m;
    if (rq_model_load(argv[2], &m)) {
        fprintf(stderr, "bench_par: %s\n", rq_error());
        return 1;
    }
    rq_set_threads(threads);
    rq_fwd *f = rq_fwd_new(m, ctx);
    int32_t *tok = rq_malloc((size_t)ctx * sizeof *tok);
    for (int i = 0; i < ctx; i++)
        tok[i] = (int32_t)((i * 7919u + 13u) % (unsigned)m->cfg.n_vocab);
    rq_fwd_hidden(f, tok, ctx); /* warm: pages in, buffers touched */
    for (int rep = 0; rep < 2; rep++)
        for (int p = 0; p < 2; p++) {
            rq_parallel_for_pool(p);
            int64_t c0 = rq_parallel_for_spawns();
            double t0 = rq_time();
            rq_fwd_hidden(f, tok, ctx);
            double secs = rq_time() - t0;
            int64_t calls = rq_parallel_for_spawns() - c0;
            printf("{\"bench\":\"par_forward\",\"mode\":\"%s\",\"model\":\"%s\",\"ctx\":%d,\"threads\":%d,"
                   "\"calls\":%lld,\"forward_s\":%.3f,\"call_share\":%.4f}\n",
                   mode[p], argv[2], ctx, threads, (long long)calls, secs, calls * us[p] * 1e-6 / secs);
        }
    free(tok);
    rq_fwd_free(f);
    rq_model_free(m);
    return 0;
}
