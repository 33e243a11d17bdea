/* rq_test.h - a minimal test harness: each test binary runs its cases and prints
 * one line per case ("PASS name", "FAIL name: why", "SKIP name: why"); tests/run.sh
 * totals them. */
#ifndef RQ_TEST_H
#define RQ_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rq_t_failed_case; /* the running case has failed */
static int rq_t_skipped_case;
static char rq_t_skip_why[256];
static int rq_t_any_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                      \
            rq_t_failed_case = 1;                                                                  \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                      \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            rq_t_failed_case = 1;                                                                  \
        }                                                                                          \
    } while (0)

/* Abort the current case (after a failed CHECK that later code depends on). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        CHECK(cond);                                                                               \
        if (rq_t_failed_case) return;                                                              \
    } while (0)

#define SKIP(...)                                                                                  \
    do {                                                                                           \
        snprintf(rq_t_skip_why, sizeof rq_t_skip_why, __VA_ARGS__);                                \
        rq_t_skipped_case = 1;                                                                     \
        return;                                                                                    \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        rq_t_failed_case = 0;                                                                      \
        rq_t_skipped_case = 0;                                                                     \
        fflush(stdout);                                                                            \
        fn();                                                                                      \
        if (rq_t_failed_case) {                                                                    \
            printf("FAIL %s\n", #fn);                                                              \
            rq_t_any_failed = 1;                                                                   \
        } else if (rq_t_skipped_case)                                                              \
            printf("SKIP %s: %s\n", #fn, rq_t_skip_why);                                           \
        else                                                                                       \
            printf("PASS %s\n", #fn);                                                              \
        fflush(stdout);                                                                            \
    } while (0)

#define TEST_EXIT() return rq_t_any_failed

/* Paths the tests read: REPLIQ_DATA (WikiText/C4 folder) and the cached model. */
static inline const char *rq_test_data_dir(void) { return getenv("REPLIQ_DATA"); }

/* Path of a cached packaged model, or NULL when it is not there. */
static inline const char *rq_test_model(const char *file, char *buf, size_t cap) {
    const char *cache = getenv("REPLIQ_CACHE");
    const char *home = getenv("HOME");
    if (cache && *cache)
        snprintf(buf, cap, "%s/%s", cache, file);
    else
        snprintf(buf, cap, "%s/.cache/repliq/%s", home ? home : ".", file);
    FILE *f = fopen(buf, "rb");
    if (!f) return NULL;
    fclose(f);
    return buf;
}

#endif
