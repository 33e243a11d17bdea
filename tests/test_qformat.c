/* test_qformat.c - packed tensor formats: every format in the traits table round
 * trips bit for bit at odd shapes, sizes add up, damaged blobs are refused, GGUF carries them. */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "gguf.h"
#include "qformat.h"
#include "rq_test.h"
#include "util.h"

/* A [rows, cols] tensor of format f with random codes and parameters. */
static void fill(rq_qtensor *t, const rq_qformat_traits *f, int64_t rows, int64_t cols, int64_t group, bool sym,
                 rq_rng *rng) {
    rq_grid g = rq_grid_default();
    g.bits = f->bits;
    g.sym = sym;
    g.group = group;
    g.binres = f->residual;
    g.offset = (float)(int)(rq_rng_next(rng) % 5) * 0.25f - 0.5f; /* -0.5 .. 0.5 */
    int64_t n_sal = f->residual ? 1 + (int64_t)(rq_rng_next(rng) % (uint64_t)cols) : 0;
    rq_qtensor_alloc(t, &g, rows, cols, n_sal);
    for (int64_t i = 0; i < rows * cols; i++)
        t->q[i] = (uint8_t)(rq_rng_next(rng) % (1u << f->bits));
    for (int64_t i = 0; i < rows * t->n_groups; i++) {
        t->scale[i] = rq_fp32_to_fp16(1e-3f + 0.1f * rq_rng_uniform(rng));
        if (t->min) t->min[i] = rq_fp32_to_fp16(rq_rng_uniform(rng) - 0.5f);
    }
    /* selection sampling: exactly n_sal increasing columns */
    int64_t k = 0;
    for (int64_t c = 0; c < cols && k < n_sal; c++)
        if ((int64_t)(rq_rng_next(rng) % (uint64_t)(cols - c)) < n_sal - k) t->sal_cols[k++] = (int32_t)c;
    for (int64_t i = 0; i < rows * n_sal; i++)
        t->rq[i] = (uint8_t)(rq_rng_next(rng) & 1);
    for (int64_t r = 0; n_sal > 0 && r < rows; r++)
        t->rscale[r] = rq_fp32_to_fp16(0.01f + rq_rng_uniform(rng));
}

/* Every field that the format stores, bit for bit. */
static int same(const rq_qtensor *a, const rq_qtensor *b) {
    if (a->rows != b->rows || a->cols != b->cols || a->group != b->group || a->n_groups != b->n_groups ||
        a->n_sal != b->n_sal || a->grid.bits != b->grid.bits || a->grid.sym != b->grid.sym ||
        a->grid.binres != b->grid.binres || memcmp(&a->grid.offset, &b->grid.offset, sizeof(float)) != 0)
        return 0;
    size_t ng = (size_t)(a->rows * a->n_groups);
    if (memcmp(a->q, b->q, (size_t)(a->rows * a->cols)) || memcmp(a->scale, b->scale, ng * 2)) return 0;
    if (!a->min != !b->min || (a->min && memcmp(a->min, b->min, ng * 2))) return 0;
    if (a->n_sal == 0) return 1;
    return !memcmp(a->sal_cols, b->sal_cols, (size_t)a->n_sal * 4) &&
           !memcmp(a->rq, b->rq, (size_t)(a->rows * a->n_sal)) && !memcmp(a->rscale, b->rscale, (size_t)a->rows * 2);
}

/* The size the layout in qformat.h spells out, computed independently. */
static size_t expected_size(const rq_qtensor *t) {
    size_t rows = (size_t)t->rows, ng = (size_t)t->n_groups, ns = (size_t)t->n_sal;
    size_t s = RQ_QFORMAT_HEADER + rows * (((size_t)t->cols * (size_t)t->grid.bits + 7) / 8);
    s += rows * ng * 2 * (t->grid.sym ? 1 : 2);
    if (ns) s += 4 * ns + rows * ((ns + 7) / 8) + 2 * rows;
    return s;
}

static void test_traits(void) {
    CHECK(rq_qformat_count() == 9);
    for (int i = 0; i < rq_qformat_count(); i++) {
        const rq_qformat_traits *f = rq_qformat_at(i);
        REQUIRE(f != NULL);
        CHECK(rq_qformat_traits_of(f->id) == f && f->version == 1);
        char name[8];
        snprintf(name, sizeof name, "rq%d%s", f->bits, f->residual ? "r" : "");
        CHECKF(strcmp(name, f->name) == 0, "%s vs %s", name, f->name);
        CHECK(f->residual ? f->id == RQ_FMT_B1R : f->id == f->bits);
    }
    CHECK(rq_qformat_at(9) == NULL && rq_qformat_at(-1) == NULL && rq_qformat_traits_of(99) == NULL);
    rq_qtensor t = {0};
    t.grid = rq_grid_default();
    t.grid.bits = 3;
    CHECK(rq_qformat_id_for(&t) == RQ_FMT_Q3);
    t.grid.binres = true;
    CHECK(rq_qformat_id_for(&t) == -1 && strstr(rq_error(), "bits = 1"));
    t.grid.bits = 1;
    CHECK(rq_qformat_id_for(&t) == RQ_FMT_B1R);
    t.grid.bits = 9;
    CHECK(rq_qformat_id_for(&t) == -1);
}

static void test_roundtrip(void) {
    static const int64_t cols_list[] = {1, 3, 17, 1023, 896, 4864};
    static const int64_t groups[] = {0, 7, 64, 128};
    static const int64_t rows_list[] = {1, 3, 5};
    rq_rng rng;
    rq_rng_seed(&rng, 42, 0);
    int cases = 0;
    for (int fi = 0; fi < rq_qformat_count(); fi++) {
        const rq_qformat_traits *f = rq_qformat_at(fi);
        for (int ci = 0; ci < 6; ci++)
            for (int gi = 0; gi < 4; gi++)
                for (int sym = 0; sym < 2; sym++)
                    for (int ri = 0; ri < 3; ri++) {
                        int64_t rows = rows_list[ri], cols = cols_list[ci];
                        rq_qtensor t, u;
                        fill(&t, f, rows, cols, groups[gi], sym, &rng);
                        size_t n = rq_qformat_size(&t);
                        CHECKF(n == expected_size(&t), "%s [%lld, %lld] g%lld: %zu vs %zu", f->name, (long long)rows,
                               (long long)cols, (long long)groups[gi], n, expected_size(&t));
                        rq_qbits b = rq_qformat_bits(&t);
                        CHECK(b.n_weights == rows * cols && b.header_bits == 8 * RQ_QFORMAT_HEADER);
                        CHECK(b.code_bits + b.param_bits + b.header_bits == 8 * (int64_t)n);
                        CHECK(b.code_bits >= rows * cols * f->bits && b.code_bits < rows * (cols * f->bits + 8));
                        /* +1: a canary that pack must not touch */
                        uint8_t *blob = rq_malloc(n + 1);
                        blob[n] = 0xA5;
                        REQUIRE(rq_qformat_pack(&t, blob) == 0);
                        CHECK(blob[n] == 0xA5);
                        CHECK(rq_qformat_unpack(blob, n, &u) == 0);
                        CHECKF(same(&t, &u), "%s [%lld, %lld] g%lld sym %d", f->name, (long long)rows, (long long)cols,
                               (long long)groups[gi], sym);
                        /* header only: same shape, and the same accounting */
                        rq_qtensor h;
                        int id = 0, ver = 0;
                        CHECK(rq_qformat_peek(blob, n, &h, &id, &ver) == 0);
                        CHECK(id == f->id && ver == f->version && h.q == NULL && h.rows == rows && h.cols == cols &&
                              h.n_groups == t.n_groups && h.n_sal == t.n_sal);
                        rq_qbits hb = rq_qformat_bits(&h);
                        CHECK(rq_qformat_size(&h) == n && !memcmp(&hb, &b, sizeof b));
                        /* dequantizing the blob is the reference dequantization, bit for bit */
                        float *want = rq_malloc((size_t)(rows * cols) * sizeof(float));
                        float *got = rq_malloc((size_t)(rows * cols) * sizeof(float));
                        rq_qtensor_dequant(&t, want);
                        CHECK(rq_qformat_to_float(blob, n, rows, cols, got) == 0);
                        CHECK(!memcmp(want, got, (size_t)(rows * cols) * sizeof(float)));
                        free(want);
                        free(got);
                        free(blob);
                        rq_qtensor_free(&t);
                        rq_qtensor_free(&u);
                        cases++;
                        if (rq_t_failed_case) return;
                    }
    }
    CHECK(cases == 9 * 6 * 4 * 2 * 3);
}

/* Sizes worked out by hand from the layout. */
static void test_bits_by_hand(void) {
    rq_grid g = rq_grid_default(); /* asymmetric, group 128 */
    g.bits = 2;
    rq_qtensor t;
    rq_qtensor_alloc(&t, &g, 4, 896, 0);
    /* per row: 896*2/8 = 224 code bytes, 7 groups of f16 scale and min = 28 bytes */
    CHECK(rq_qformat_size(&t) == 48 + 4 * 224 + 4 * 28);
    rq_qbits b = rq_qformat_bits(&t);
    CHECK(b.n_weights == 3584 && b.code_bits == 7168 && b.param_bits == 896 && b.header_bits == 384);
    CHECK((double)(b.code_bits + b.param_bits) / (double)b.n_weights == 2.25);
    rq_qtensor_free(&t);

    /* rq1r, symmetric, per row, [2, 17], 3 salient columns: codes 3 bytes a row,
     * scale 2 a row, indices 12, residual bits 1 byte a row, residual scale 2 a row */
    g.bits = 1;
    g.sym = true;
    g.group = 0;
    g.binres = true;
    rq_qtensor_alloc(&t, &g, 2, 17, 3);
    t.sal_cols[0] = 0, t.sal_cols[1] = 5, t.sal_cols[2] = 16;
    CHECK(rq_qformat_size(&t) == 48 + 6 + 4 + 12 + 2 + 4);
    b = rq_qformat_bits(&t);
    CHECK(b.code_bits == 48 && b.param_bits == 8 * (4 + 12 + 2 + 4));
    rq_qtensor_free(&t);
}

/* Byte layout of the header, pinned: little-endian, fields at their offsets. */
static void test_layout(void) {
    rq_grid g = rq_grid_default();
    g.bits = 3;
    g.group = 7;
    g.offset = 0.25f;
    rq_qtensor t;
    rq_qtensor_alloc(&t, &g, 2, 17, 0);
    for (int i = 0; i < 34; i++)
        t.q[i] = (uint8_t)(i % 8);
    t.scale[0] = 0x3c00; /* 1.0 */
    size_t n = rq_qformat_size(&t);
    uint8_t *b = rq_malloc(n);
    REQUIRE(rq_qformat_pack(&t, b) == 0);
    static const uint8_t head[48] = {'R', 'Q', 'T', '1', 3, 0, 1,    0,    2, 0, 0, 0, 0, 0, 0, 0,
                                     17,  0,   0,   0,   0, 0, 0,    0,    7, 0, 0, 0, 0, 0, 0, 0,
                                     3,   0,   0,   0,   0, 0, 0x80, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(!memcmp(b, head, 48));
    /* codes 0,1,2,...: 3 bits each, LSB first -> 0b10 001 000, ... */
    CHECK(b[48] == (0 | 1 << 3 | (2 & 3) << 6));
    CHECK(b[49] == (2 >> 2 | 3 << 1 | 4 << 4 | (5 & 1) << 7));
    /* row 0 ends in 5 zero padding bits: 17*3 = 51 bits in 7 bytes */
    CHECK(b[48 + 6] >> 3 == 0);
    /* first scale after 2 rows of 7 code bytes */
    CHECK(b[48 + 14] == 0x00 && b[48 + 15] == 0x3c);
    free(b);
    rq_qtensor_free(&t);
}

/* A valid blob to damage: rq2, asymmetric, group 7, [3, 17]. */
static uint8_t *good_blob(size_t *n, rq_qtensor *t) {
    rq_rng rng;
    rq_rng_seed(&rng, 7, 0);
    fill(t, rq_qformat_traits_of(RQ_FMT_Q2), 3, 17, 7, false, &rng);
    *n = rq_qformat_size(t);
    uint8_t *b = rq_malloc(*n + 1);
    if (rq_qformat_pack(t, b)) return NULL;
    return b;
}

/* Unpack must fail with msg in the error, leave out empty, and leak nothing. */
static int refused(const uint8_t *b, size_t n, const char *msg) {
    rq_qtensor u;
    memset(&u, 0x5a, sizeof u);
    int rc = rq_qformat_unpack(b, n, &u);
    if (rc == 0) {
        printf("  accepted, expected '%s'\n", msg);
        rq_qtensor_free(&u);
        return 0;
    }
    if (!strstr(rq_error(), msg)) {
        printf("  error '%s', expected '%s'\n", rq_error(), msg);
        return 0;
    }
    return u.q == NULL && u.scale == NULL && u.rows == 0;
}

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

static void test_refusals(void) {
    size_t n;
    rq_qtensor t;
    uint8_t *b = good_blob(&n, &t);
    REQUIRE(b != NULL);
    uint8_t *c = rq_malloc(n + 1);
#define DAMAGED(edit, msg)                                                                                             \
    do {                                                                                                               \
        memcpy(c, b, n);                                                                                               \
        edit;                                                                                                          \
        CHECKF(refused(c, n, msg), "%s", #edit);                                                                       \
    } while (0)
    DAMAGED(c[0] = 'X', "bad magic");
    DAMAGED(put16(c + 4, 99), "unknown packed format id 99");
    DAMAGED(put16(c + 6, 3), "format rq2 version 3 is newer than this build reads (1); upgrade repliq");
    DAMAGED(put16(c + 6, 0), "version 0");
    DAMAGED(c[32] = 3, "stores 2-bit codes");
    DAMAGED(c[33] |= 4, "unknown flags");
    DAMAGED(c[33] |= 2, "residual flag");
    DAMAGED(put16(c + 34, 1), "reserved");
    DAMAGED(c[8] = 0, "must be positive");     /* rows 0 */
    DAMAGED(c[15] = 0x80, "must be positive"); /* rows negative */
    DAMAGED(c[24] = 0, "group 0 is outside");  /* group 0 */
    DAMAGED(c[24] = 18, "group 18 is outside 1..17");
    DAMAGED(c[39] = 0x7f, "offset");                        /* offset f32 exponent all ones: Inf or NaN */
    DAMAGED(c[40] = 1, "salient columns");                  /* n_sal without a residual */
    DAMAGED(c[13] = 0x40, "bytes, but its header implies"); /* rows huge: no overflow, refused */
    DAMAGED(c[48 + 4] |= 0x80, "nonzero padding bits");     /* 17*2 bits: 6 padding bits in byte 5 */
    /* a scale that is Inf: row 0, group 0 */
    DAMAGED((c[48 + 15] = 0, c[48 + 16] = 0x7c), "non-finite scale"); /* after 3 rows of 5 code bytes */
    CHECK(refused(b, n - 1, "truncated"));
    CHECK(refused(b, 47, "shorter than its 48-byte header"));
    CHECK(refused(b, 0, "truncated"));
    memcpy(c, b, n);
    c[n] = 0;
    CHECK(refused(c, n + 1, "trailing bytes"));
    /* shape asked for and shape stored differ: the message names both */
    float *out = rq_malloc(3 * 17 * sizeof(float));
    CHECK(rq_qformat_to_float(b, n, 4, 17, out) == -1 && strstr(rq_error(), "[3, 17]") &&
          strstr(rq_error(), "[4, 17]"));
    CHECK(rq_qformat_to_float(b, n, 3, 16, out) == -1 && strstr(rq_error(), "[3, 16]"));
    CHECK(rq_qformat_to_float(b, n, 3, 17, out) == 0);
    free(out);
    /* the writer refuses what a reader would */
    t.q[20] = 4;
    CHECK(rq_qformat_pack(&t, c) == -1 && strstr(rq_error(), "code 4 at row 1 col 3 is out of range for 2 bits"));
    t.q[20] = 3;
    t.grid.bits = 9;
    CHECK(rq_qformat_size(&t) == 0 && rq_qformat_pack(&t, c) == -1);
    t.grid.bits = 2;
    t.scale[2] = 0x7e00; /* NaN */
    CHECK(rq_qformat_pack(&t, c) == -1 && strstr(rq_error(), "non-finite"));
    free(b);
    free(c);
    rq_qtensor_free(&t);
}

static void test_residual_refusals(void) {
    rq_grid g = rq_grid_default();
    g.bits = 1;
    g.sym = true;
    g.group = 0;
    g.binres = true;
    rq_qtensor t;
    rq_qtensor_alloc(&t, &g, 3, 17, 3);
    for (int i = 0; i < 3 * 17; i++)
        t.q[i] = (uint8_t)(i * 7 % 3 == 0);
    for (int i = 0; i < 3 * 3; i++)
        t.rq[i] = (uint8_t)(i & 1);
    t.sal_cols[0] = 2, t.sal_cols[1] = 9, t.sal_cols[2] = 16;
    size_t n = rq_qformat_size(&t);
    uint8_t *b = rq_malloc(n), *c = rq_malloc(n);
    REQUIRE(rq_qformat_pack(&t, b) == 0);
    size_t sal = 48 + 3 * 3 + 3 * 2; /* after codes (3 bytes a row) and scales */
    CHECK(b[sal] == 2 && b[sal + 4] == 9 && b[sal + 8] == 16);
    DAMAGED(c[sal + 4] = 2, "must increase strictly");
    DAMAGED(c[sal + 8] = 17, "must increase strictly within 0..16");
    DAMAGED(c[sal + 3] = 0x80, "must increase strictly");               /* negative index */
    DAMAGED(c[sal + 12] |= 0x08, "residual row 0 has nonzero padding"); /* 3 bits used */
    DAMAGED(c[40] = 18, "18 salient columns");
    DAMAGED(c[33] &= (uint8_t)~2, "lacks the residual flag");
    /* n_sal 0 is allowed: the residual section is then empty */
    rq_qtensor z, u;
    rq_qtensor_alloc(&z, &g, 2, 5, 0);
    size_t nz = rq_qformat_size(&z);
    CHECK(nz == 48 + 2 + 4);
    uint8_t *bz = rq_malloc(nz);
    CHECK(rq_qformat_pack(&z, bz) == 0 && rq_qformat_unpack(bz, nz, &u) == 0 && same(&z, &u));
    rq_qtensor_free(&u);
    rq_qtensor_free(&z);
    free(bz);
    /* salient columns the writer must refuse */
    t.sal_cols[1] = 2;
    CHECK(rq_qformat_pack(&t, c) == -1 && strstr(rq_error(), "salient column 1 is 2"));
    free(b);
    free(c);
    rq_qtensor_free(&t);
}

/* Every single-bit flip and every truncation of a small blob is either refused
 * or read as a valid tensor; run under sanitizers this finds reads out of bounds. */
static void test_damage_sweep(void) {
    rq_rng rng;
    rq_rng_seed(&rng, 11, 0);
    rq_qtensor t, u;
    fill(&t, rq_qformat_traits_of(RQ_FMT_B1R), 2, 13, 5, false, &rng);
    size_t n = rq_qformat_size(&t);
    uint8_t *b = rq_malloc(n);
    REQUIRE(rq_qformat_pack(&t, b) == 0);
    int accepted = 0;
    for (size_t i = 0; i < n * 8; i++) {
        uint8_t *c = rq_malloc(n);
        memcpy(c, b, n);
        c[i / 8] ^= (uint8_t)(1u << i % 8);
        if (rq_qformat_unpack(c, n, &u) == 0) {
            accepted++;
            float *o = rq_malloc((size_t)(u.rows * u.cols) * sizeof(float));
            rq_qtensor_dequant(&u, o);
            free(o);
            rq_qtensor_free(&u);
        } else {
            CHECK(u.q == NULL);
        }
        free(c);
    }
    for (size_t k = 0; k < n; k++) {
        uint8_t *c = rq_malloc(k ? k : 1); /* exact-size copies so ASan sees overreads */
        memcpy(c, b, k);
        CHECK(rq_qformat_unpack(c, k, &u) == -1);
        free(c);
    }
    /* payload bits that are codes or parameters may flip; header bits mostly may not */
    CHECKF(accepted > 0 && accepted < (int)(n * 8), "%d of %zu flips accepted", accepted, n * 8);
    free(b);
    rq_qtensor_free(&t);
}

static void test_gguf(void) {
    CHECK(RQ_GGML_RQ_PACKED == 21073);
    const rq_ggml_traits *tr = rq_ggml_traits_of(RQ_GGML_RQ_PACKED);
    REQUIRE(tr != NULL);
    CHECK(!strcmp(tr->name, "rq_packed") && tr->block_size == 1 && tr->type_size == 1 && tr->to_float == NULL);
    CHECK(rq_ggml_traits_of(RQ_GGML_RQ_PACKED + 1) == NULL && rq_ggml_traits_of(RQ_GGML_TYPE_LIMIT) == NULL);
    CHECK(rq_ggml_row_size(RQ_GGML_RQ_PACKED, 1000) == 1000);
    float dummy;
    CHECK(rq_ggml_to_float(RQ_GGML_RQ_PACKED, "", &dummy, 1) == -1 && strstr(rq_error(), "rq_qformat_to_float"));

    rq_rng rng;
    rq_rng_seed(&rng, 5, 0);
    rq_qtensor t;
    fill(&t, rq_qformat_traits_of(RQ_FMT_Q3), 5, 1023, 128, false, &rng);
    size_t n = rq_qformat_size(&t);
    uint8_t *b = rq_malloc(n);
    REQUIRE(rq_qformat_pack(&t, b) == 0);
    float *want = rq_malloc(5 * 1023 * sizeof(float)), *got = rq_malloc(5 * 1023 * sizeof(float));
    rq_qtensor_dequant(&t, want);

    char path[128];
    snprintf(path, sizeof path, "/tmp/rq_test_qformat_%d.gguf", (int)getpid());
    rq_gguf_writer *w = rq_gguf_writer_new();
    rq_gguf_set_str(w, "general.architecture", "llama");
    float one = 1.0f;
    int64_t ne1 = 1;
    CHECK(rq_gguf_add_tensor(w, "one", RQ_GGML_F32, 1, &ne1, &one, 4) == 0); /* shifts the blob off offset 0 */
    int64_t ne = (int64_t)n;
    CHECK(rq_gguf_add_tensor(w, "blk.0.ffn_down.weight", RQ_GGML_RQ_PACKED, 1, &ne, b, n) == 0);
    REQUIRE(rq_gguf_write(w, path) == 0);
    rq_gguf_writer_free(w);

    rq_gguf *g = NULL;
    REQUIRE(rq_gguf_open(path, &g) == 0);
    const rq_gguf_tensor *gt = rq_gguf_tensor_find(g, "blk.0.ffn_down.weight");
    REQUIRE(gt != NULL);
    CHECK(gt->type == RQ_GGML_RQ_PACKED && gt->n_dims == 1 && gt->ne[0] == (int64_t)n && gt->nbytes == n);
    CHECK(!memcmp(gt->data, b, n));
    CHECK(rq_qformat_to_float(gt->data, gt->nbytes, 5, 1023, got) == 0);
    CHECK(!memcmp(want, got, 5 * 1023 * sizeof(float)));
    rq_gguf_close(g);
    unlink(path);

    /* a packed blob is 1-D: a reader refuses any other shape */
    w = rq_gguf_writer_new();
    int64_t ne2[2] = {(int64_t)n / 2, 2};
    CHECK(rq_gguf_add_tensor(w, "bad", RQ_GGML_RQ_PACKED, 2, ne2, b, (size_t)(ne2[0] * 2)) == 0);
    REQUIRE(rq_gguf_write(w, path) == 0);
    rq_gguf_writer_free(w);
    g = NULL;
    CHECK(rq_gguf_open(path, &g) == -1 && strstr(rq_error(), "1-D"));
    rq_gguf_close(g);
    unlink(path);

    free(want);
    free(got);
    free(b);
    rq_qtensor_free(&t);
}

int main(void) {
    RUN(test_traits);
    RUN(test_roundtrip);
    RUN(test_bits_by_hand);
    RUN(test_layout);
    RUN(test_refusals);
    RUN(test_residual_refusals);
    RUN(test_damage_sweep);
    RUN(test_gguf);
    TEST_EXIT();
}
