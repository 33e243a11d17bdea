/* test_dequant.c - the ggml type traits and every dequantizer in them, checked
 * against golden files written by gguf-py's NumPy dequantizers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_blocks.h"
#include "ggml_types.h"
#include "rq_test.h"
#include "util.h"

#define FIXTURE_DIR "tests/fixtures/dequant"
#define FIXTURE_VERSION 1

/* gguf-py computes every value with the same f32 operations in the same order as
 * ggml's reference, so we expect bit-exact agreement; the contract is 1 ulp. */
#define MAX_ULP_VS_NUMPY 0

/* Row lengths that reach partial blocks and tails (see STYLE, rule 4). */
static const int64_t odd_lengths[] = {0, 1, 3, 17, 1023, 896, 4864};

typedef struct {
    int type;
    char name[32];
    int64_t block_size;
    size_t type_size;
    int64_t n;
    char provenance[512];
    const uint8_t *blocks; /* n / block_size * type_size bytes */
    const uint8_t *expected; /* n little-endian f32 */
    char *file; /* owns the two pointers above */
} fixture;

static int load_fixture(const char *name, fixture *fx) {
    char path[512];
    size_t len;
    memset(fx, 0, sizeof *fx);
    snprintf(path, sizeof path, FIXTURE_DIR "/%s.rqdq", name);
    int missing = rq_read_file(path, &fx->file, &len);
#ifdef RQ_SOURCE_DIR /* the Makefile names the checkout, so any working folder will do */
    if (missing) {
        snprintf(path, sizeof path, RQ_SOURCE_DIR "/" FIXTURE_DIR "/%s.rqdq", name);
        missing = rq_read_file(path, &fx->file, &len);
    }
#endif
    if (missing)
        return rq_fail_ctx("golden fixture for %s missing (run the tests from the repo root; "
                           "regenerate with scripts/make_dequant_fixtures.py)",
                           name);
    const char *p = fx->file, *end = fx->file + len;
    int version = 0, used = 0;
    long long n = 0, bs = 0;
    size_t ts = 0;
    if (sscanf(p, "RQDQ %d\n%n", &version, &used) != 1 || !used)
        return rq_fail("%s: not a dequant fixture (no RQDQ magic)", path);
    if (version != FIXTURE_VERSION)
        return rq_fail("%s: fixture version %d, this test reads version %d", path, version,
                       FIXTURE_VERSION);
    p += used;
    used = 0;
    if (sscanf(p, "type %d %31s %lld %zu\nvalues %lld\n%n", &fx->type, fx->name, &bs, &ts, &n,
               &used) != 5 || !used)
        return rq_fail("%s: malformed type/values lines", path);
    p += used;
    const char *nl = strchr(p, '\n');
    if (strncmp(p, "provenance ", 11) != 0 || !nl)
        return rq_fail("%s: missing provenance line", path);
    snprintf(fx->provenance, sizeof fx->provenance, "%.*s", (int)(nl - p - 11), p + 11);
    p = nl + 1;
    if (strncmp(p, "end\n", 4) != 0) return rq_fail("%s: header does not end with 'end'", path);
    p += 4;
    fx->block_size = bs;
    fx->type_size = ts;
    fx->n = n;
    if (bs <= 0 || n <= 0 || n % bs != 0) return rq_fail("%s: bad geometry", path);
    size_t nbytes = (size_t)(n / bs) * ts;
    if ((size_t)(end - p) != nbytes + 4 * (size_t)n)
        return rq_fail("%s: payload is %zu bytes, header promises %zu", path, (size_t)(end - p),
                       nbytes + 4 * (size_t)n);
    fx->blocks = (const uint8_t *)p;
    fx->expected = (const uint8_t *)p + nbytes;
    return 0;
}

static float expected_at(const fixture *fx, int64_t i) {
    const uint8_t *b = fx->expected + 4 * i;
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Distance in units in the last place: floats mapped to a monotonic integer line. */
static uint64_t ulp_diff(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    int64_t la = ia < 0 ? (int64_t)INT32_MIN - ia : ia;
    int64_t lb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return (uint64_t)(la > lb ? la - lb : lb - la);
}

/* Dequantize the first n values from src and compare with the fixture. Returns the
 * largest ulp difference; counts values beyond the tolerance in *bad. */
static uint64_t compare_prefix(const fixture *fx, const void *src, int64_t n, int64_t *bad) {
    float *out = rq_malloc((size_t)n * sizeof *out);
    uint64_t worst = 0;
    *bad = 0;
    if (rq_ggml_to_float(fx->type, src, out, n)) {
        printf("  %s: %s\n", fx->name, rq_error());
        *bad = n;
        free(out);
        return UINT64_MAX;
    }
    for (int64_t i = 0; i < n; i++) {
        uint64_t d = ulp_diff(out[i], expected_at(fx, i));
        if (d > worst) worst = d;
        if (d > MAX_ULP_VS_NUMPY) {
            if (*bad < 3)
                printf("  %s: value %lld is %.9g, gguf-py has %.9g (%llu ulp)\n", fx->name, (long long)i,
                       out[i], expected_at(fx, i), (unsigned long long)d);
            ++*bad;
        }
    }
    free(out);
    return worst;
}

static void test_traits_table(void) {
    int known = 0;
    for (int t = -1; t <= RQ_GGML_TYPE_LIMIT; t++) {
        const rq_ggml_traits *tr = rq_ggml_traits_of(t);
        if (t < 0 || t >= RQ_GGML_TYPE_LIMIT) CHECKF(tr == NULL, "id %d", t);
        if (!tr) continue;
        known++;
        CHECKF(tr->name && tr->name[0], "id %d has no name", t);
        CHECKF(tr->block_size >= 1 && tr->type_size >= 1, "%s: empty geometry", tr->name);
        for (int u = 0; u < t; u++) {
            const rq_ggml_traits *o = rq_ggml_traits_of(u);
            CHECKF(!o || strcmp(o->name, tr->name) != 0, "ids %d and %d are both %s", u, t, tr->name);
        }
    }
    CHECKF(known == 32, "%d known types, the enum has 32", known);
}

/* Each type with a dequantizer against its golden file: the whole file, a
 * one- and three-block prefix, and a source at an odd address. The i-quants
 * whose grids live in a generated file (scripts/gen_iq_tables.py) are skipped
 * when it is absent, after checking that they refuse with a message saying so. */
static void test_golden_vs_numpy(void) {
    int tested = 0, without_tables = 0;
    char skipped[128] = "";
    for (int t = 0; t < RQ_GGML_TYPE_LIMIT; t++) {
        const rq_ggml_traits *tr = rq_ggml_traits_of(t);
        if (!tr || !tr->to_float) continue;
        if (tr->needs_tables && rq_iq_tables_ready(tr->name)) {
            float out[RQ_QK_K];
            uint8_t *in = rq_calloc(1, tr->type_size);
            CHECKF(rq_ggml_to_float(t, in, out, tr->block_size) == -1, "%s without tables", tr->name);
            CHECKF(strstr(rq_error(), tr->name) && strstr(rq_error(), "gen_iq_tables.py"), "'%s'",
                   rq_error());
            free(in);
            without_tables++;
            snprintf(skipped + strlen(skipped), sizeof skipped - strlen(skipped), " %s", tr->name);
            continue;
        }
        fixture fx;
        if (load_fixture(tr->name, &fx)) {
            CHECKF(0, "%s", rq_error());
            free(fx.file);
            continue;
        }
        tested++;
        CHECKF(fx.type == t && strcmp(fx.name, tr->name) == 0, "fixture %s is type %d %s", tr->name,
               fx.type, fx.name);
        CHECKF(fx.block_size == tr->block_size && fx.type_size == tr->type_size,
               "%s: gguf-py says %lld values in %zu bytes, repliq %lld in %zu", tr->name,
               (long long)fx.block_size, fx.type_size, (long long)tr->block_size, tr->type_size);
        if (fx.type != t || fx.block_size != tr->block_size || fx.type_size != tr->type_size) {
            free(fx.file);
            continue;
        }
        int64_t bad = 0, bad1 = 0, bad3 = 0, bad_odd = 0;
        uint64_t worst = compare_prefix(&fx, fx.blocks, fx.n, &bad);
        compare_prefix(&fx, fx.blocks, tr->block_size, &bad1);
        if (fx.n >= 3 * tr->block_size) compare_prefix(&fx, fx.blocks, 3 * tr->block_size, &bad3);

        size_t nbytes = rq_ggml_row_size(t, fx.n);
        uint8_t *shifted = rq_malloc(nbytes + 1);
        memcpy(shifted + 1, fx.blocks, nbytes);
        compare_prefix(&fx, shifted + 1, fx.n, &bad_odd);
        free(shifted);

        printf("  %-5s %5lld values, max diff vs gguf-py %llu ulp\n", tr->name, (long long)fx.n,
               (unsigned long long)worst);
        CHECKF(bad == 0, "%s: %lld of %lld values off by more than %d ulp; fixture: %s", tr->name,
               (long long)bad, (long long)fx.n, MAX_ULP_VS_NUMPY, fx.provenance);
        CHECKF(bad1 == 0 && bad3 == 0, "%s: a 1- or 3-block prefix differs", tr->name);
        CHECKF(bad_odd == 0, "%s: blocks at an odd address dequantize differently", tr->name);
        free(fx.file);
    }
    /* 14 formats with built-in tables, 7 grid-based i-quants, iq4_xs */
    CHECKF(tested + without_tables == 22, "%d types have dequantizers, expected 22",
           tested + without_tables);
    if (without_tables && !rq_t_failed_case)
        SKIP("no IQ lattice tables (run scripts/gen_iq_tables.py); %d types passed, not checked:%.127s",
             tested, skipped);
}

static void test_row_size_odd_lengths(void) {
    for (int t = 0; t < RQ_GGML_TYPE_LIMIT; t++) {
        const rq_ggml_traits *tr = rq_ggml_traits_of(t);
        if (!tr) continue;
        for (size_t i = 0; i < sizeof odd_lengths / sizeof odd_lengths[0]; i++) {
            int64_t n = odd_lengths[i];
            size_t got = rq_ggml_row_size(t, n);
            if (n % tr->block_size == 0) {
                CHECKF(got == (size_t)(n / tr->block_size) * tr->type_size, "%s n=%lld: %zu bytes",
                       tr->name, (long long)n, got);
            } else {
                CHECKF(got == 0, "%s n=%lld: %zu bytes, want a refusal", tr->name, (long long)n, got);
                CHECKF(strstr(rq_error(), tr->name) && strstr(rq_error(), "whole number"), "%s: '%s'",
                       tr->name, rq_error());
                if (tr->to_float) {
                    float out[8];
                    uint8_t in[8] = {0};
                    /* refused before any byte is read, so small buffers are fine */
                    CHECKF(rq_ggml_to_float(t, in, out, n) == -1, "%s n=%lld accepted", tr->name,
                           (long long)n);
                }
            }
        }
        CHECKF(rq_ggml_row_size(t, -tr->block_size) == 0, "%s: negative length accepted", tr->name);
    }
}

static void test_unknown_type(void) {
    /* 4, 5 and 31..33 are ids ggml retired; 40 and 64 are past what repliq knows */
    const int ids[] = {-1, 4, 5, 31, 33, 36, 40, 63, 64, 1000};
    float out[32];
    uint8_t in[64] = {0};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        CHECKF(rq_ggml_traits_of(ids[i]) == NULL, "id %d", ids[i]);
        CHECKF(rq_ggml_row_size(ids[i], 32) == 0, "id %d has a row size", ids[i]);
        CHECKF(strstr(rq_error(), "unknown ggml tensor type id"), "'%s'", rq_error());
        CHECKF(rq_ggml_to_float(ids[i], in, out, 32) == -1, "id %d dequantized", ids[i]);
        char want[32];
        snprintf(want, sizeof want, "id %d ", ids[i]);
        CHECKF(strstr(rq_error(), want), "'%s' does not name id %d", rq_error(), ids[i]);
    }
}

static void test_type_without_dequantizer(void) {
    int seen = 0;
    for (int t = 0; t < RQ_GGML_TYPE_LIMIT; t++) {
        const rq_ggml_traits *tr = rq_ggml_traits_of(t);
        if (!tr || tr->to_float) continue;
        seen++;
        uint8_t *in = rq_calloc(1, tr->type_size);
        float *out = rq_malloc((size_t)tr->block_size * sizeof *out);
        CHECKF(rq_ggml_to_float(t, in, out, tr->block_size) == -1, "%s dequantized", tr->name);
        CHECKF(strstr(rq_error(), tr->name) && strstr(rq_error(), "no dequantizer") &&
                   strstr(rq_error(), "q4_K"),
               "%s: '%s'", tr->name, rq_error());
        free(in);
        free(out);
    }
    CHECKF(seen > 0, "every type has a dequantizer: update this test");
}

int main(void) {
    RUN(test_traits_table);
    RUN(test_golden_vs_numpy);
    RUN(test_row_size_odd_lengths);
    RUN(test_unknown_type);
    RUN(test_type_without_dequantizer);
    TEST_EXIT();
}
