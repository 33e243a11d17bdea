/* dequant_iq.c - scalar reference dequantizers for llama.cpp's grid-based i-quants
 * (iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m) and the loader of their grids. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_blocks.h"
#include "paths.h"
#include "util.h"

/* The grids come from a file that scripts/gen_iq_tables.py writes, not from this
 * tree (STYLE rule 10). Its layout is documented there: "RQIQ", u32 version, u32
 * count, then per grid a 16-byte name, u32 width, u32 entries, u32 bytes, data. */
#define IQ_MAGIC "RQIQ"
#define IQ_VERSION 1
#define IQ_NAME_LEN 16
#define IQ_FILE "iq-grids-v1.bin"

enum { G_IQ2XXS, G_IQ2XS, G_IQ2S, G_IQ3XXS, G_IQ3S, G_IQ1S, G_COUNT };

/* What each grid must be: a file with other shapes, or values off the lattice, is
 * from another version or damaged and is refused rather than half used. */
static const struct {
    const char *name;
    int width, entries;
    int8_t levels[8]; /* the values allowed in this grid */
    int nlevels;
} grid_spec[G_COUNT] = {
    [G_IQ2XXS] = {"iq2xxs", 8, 256, {8, 25, 43}, 3},
    [G_IQ2XS] = {"iq2xs", 8, 512, {8, 25, 43}, 3},
    [G_IQ2S] = {"iq2s", 8, 1024, {8, 25, 43}, 3},
    [G_IQ3XXS] = {"iq3xxs", 4, 256, {4, 12, 20, 28, 36, 44, 52, 62}, 8},
    [G_IQ3S] = {"iq3s", 4, 512, {1, 3, 5, 7, 9, 11, 13, 15}, 8},
    [G_IQ1S] = {"iq1s", 8, 2048, {-1, 0, 1}, 3},
};

/* Filled once by load_tables; read-only afterwards, so the dequantizers may run
 * on many threads. Entry e of grid g is grid[g] + e * width. */
static uint8_t *grid[G_COUNT];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static int tables_ok;
static char tables_why[2048];

static uint32_t u32_at(const uint8_t *p) { return rq_le32(p); }

/* Parse and check a whole table file already in memory; on success the grids
 * point into copies that live for the rest of the process. */
static int parse_tables(const uint8_t *p, size_t len, char *why, size_t cap) {
    const uint8_t *end = p + len;
    if (len < 12 || memcmp(p, IQ_MAGIC, 4) != 0) return snprintf(why, cap, "no RQIQ magic"), -1;
    if (u32_at(p + 4) != IQ_VERSION)
        return snprintf(why, cap, "version %u, repliq reads version %d", u32_at(p + 4), IQ_VERSION), -1;
    const uint32_t count = u32_at(p + 8);
    p += 12;
    uint8_t *found[G_COUNT] = {0};
    for (uint32_t k = 0; k < count; k++) {
        if ((size_t)(end - p) < IQ_NAME_LEN + 12) {
            snprintf(why, cap, "truncated at grid %u", k);
            goto fail;
        }
        char name[IQ_NAME_LEN + 1] = {0};
        memcpy(name, p, IQ_NAME_LEN);
        const uint32_t width = u32_at(p + IQ_NAME_LEN), entries = u32_at(p + IQ_NAME_LEN + 4),
                       nbytes = u32_at(p + IQ_NAME_LEN + 8);
        p += IQ_NAME_LEN + 12;
        if ((size_t)(end - p) < nbytes) {
            snprintf(why, cap, "grid %s is truncated", name);
            goto fail;
        }
        int g = 0;
        while (g < G_COUNT && strcmp(grid_spec[g].name, name) != 0)
            g++;
        if (g < G_COUNT) { /* unknown names are skipped: a later version may add grids */
            if (found[g]) {
                snprintf(why, cap, "grid %s appears twice", name);
                goto fail;
            }
            if (width != (uint32_t)grid_spec[g].width || entries != (uint32_t)grid_spec[g].entries ||
                nbytes != width * entries) {
                snprintf(why, cap, "grid %s is %u x %u in %u bytes, expected %d x %d", name, entries, width, nbytes,
                         grid_spec[g].entries, grid_spec[g].width);
                goto fail;
            }
            for (uint32_t i = 0; i < nbytes; i++) {
                int ok = 0;
                for (int l = 0; l < grid_spec[g].nlevels; l++)
                    ok |= (int8_t)p[i] == grid_spec[g].levels[l];
                if (!ok) {
                    snprintf(why, cap, "grid %s: byte %u is %d, not a lattice value", name, i, (int8_t)p[i]);
                    goto fail;
                }
            }
            found[g] = rq_malloc(nbytes);
            memcpy(found[g], p, nbytes);
        }
        p += nbytes;
    }
    for (int g = 0; g < G_COUNT; g++)
        if (!found[g]) {
            snprintf(why, cap, "grid %s is missing", grid_spec[g].name);
            goto fail;
        }
    memcpy(grid, found, sizeof grid);
    return 0;
fail:
    for (int g = 0; g < G_COUNT; g++)
        free(found[g]);
    return -1;
}

static void load_tables(void) {
    char path[1024], dir[900];
    const char *env = getenv("REPLIQ_IQ_TABLES");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        rq_cache_dir(dir, sizeof dir);
        snprintf(path, sizeof path, "%s/" IQ_FILE, dir);
    }
    char *data = NULL, why[256];
    size_t len = 0;
    if (rq_read_file(path, &data, &len)) {
        snprintf(tables_why, sizeof tables_why, "%.1023s cannot be read (%.900s)", path, rq_error());
    } else if (parse_tables((const uint8_t *)data, len, why, sizeof why)) {
        snprintf(tables_why, sizeof tables_why, "%.1023s is malformed (%.255s)", path, why);
    } else {
        tables_ok = 1;
    }
    free(data);
}

int rq_iq_tables_ready(const char *type_name) {
    pthread_once(&tables_once, load_tables);
    if (tables_ok) return 0;
    return rq_fail("%s needs the lattice tables: run scripts/gen_iq_tables.py (writes "
                   "~/.cache/repliq/" IQ_FILE ", or $REPLIQ_CACHE/" IQ_FILE "; REPLIQ_IQ_TABLES names "
                   "another file): %s",
                   type_name, tables_why);
}

/* ggml's ksigns_iq2xs: a 7-bit index k plus an eighth bit that gives the byte an
 * even number of set bits, so 7 stored bits carry 8 signs. */
static inline unsigned ksigns(unsigned k) {
    unsigned parity = k ^ k >> 4;
    parity ^= parity >> 2;
    parity ^= parity >> 1;
    return k | (parity & 1) << 7;
}

static inline float sign_of(unsigned signs, int j) { return signs >> j & 1 ? -1.0f : 1.0f; }

/* Every function below forms the float scale of a sub-block first (d times an
 * integer expression, then the constant factor), then value = scale * grid * sign
 * or scale * (grid + delta), left to right: ggml's order, which bit-exactness with
 * it (and with gguf-py, which follows it) depends on. */

void rq_dequant_iq2_xxs_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq2_xxs *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int s = 0; s < RQ_QK_K / 32; s++) {
            const uint8_t *idx = b->qs + 8 * s;
            const uint32_t aux = rq_le32(b->qs + 8 * s + 4);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, dst += 8) {
                const uint8_t *g = grid[G_IQ2XXS] + 8 * idx[l];
                const unsigned signs = ksigns(aux >> 7 * l & 127);
                for (int j = 0; j < 8; j++)
                    dst[j] = db * (float)g[j] * sign_of(signs, j);
            }
        }
    }
}

void rq_dequant_iq2_xs_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq2_xs *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int s = 0; s < RQ_QK_K / 32; s++) {
            const float db[2] = {d * (0.5f + (float)(b->scales[s] & 0xf)) * 0.25f,
                                 d * (0.5f + (float)(b->scales[s] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, dst += 8) {
                const unsigned q = rq_le16(b->qs + 2 * (4 * s + l));
                const uint8_t *g = grid[G_IQ2XS] + 8 * (q & 511);
                const unsigned signs = ksigns(q >> 9);
                for (int j = 0; j < 8; j++)
                    dst[j] = db[l / 2] * (float)g[j] * sign_of(signs, j);
            }
        }
    }
}

void rq_dequant_iq2_s_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq2_s *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int s = 0; s < RQ_QK_K / 32; s++) {
            const float db[2] = {d * (0.5f + (float)(b->scales[s] & 0xf)) * 0.25f,
                                 d * (0.5f + (float)(b->scales[s] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, dst += 8) {
                const int k = 4 * s + l;
                const uint8_t *g = grid[G_IQ2S] + 8 * (b->qs[k] | (b->qh[s] >> 2 * l & 3) << 8);
                for (int j = 0; j < 8; j++)
                    dst[j] = db[l / 2] * (float)g[j] * sign_of(b->signs[k], j);
            }
        }
    }
}

void rq_dequant_iq3_xxs_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq3_xxs *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int s = 0; s < RQ_QK_K / 32; s++) {
            const uint32_t aux = rq_le32(b->ss + 4 * s);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, dst += 8) {
                const unsigned signs = ksigns(aux >> 7 * l & 127);
                const uint8_t *g1 = grid[G_IQ3XXS] + 4 * b->qs[8 * s + 2 * l];
                const uint8_t *g2 = grid[G_IQ3XXS] + 4 * b->qs[8 * s + 2 * l + 1];
                for (int j = 0; j < 4; j++) {
                    dst[j] = db * (float)g1[j] * sign_of(signs, j);
                    dst[j + 4] = db * (float)g2[j] * sign_of(signs, j + 4);
                }
            }
        }
    }
}

void rq_dequant_iq3_s_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq3_s *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int s = 0; s < RQ_QK_K / 32; s++) {
            const float db = d * (float)(1 + 2 * (b->scales[s / 2] >> 4 * (s % 2) & 0xf));
            for (int k = 0; k < 8; k++, dst += 4) { /* group k of 4 values */
                const int gi = 8 * s + k;
                const uint8_t *g = grid[G_IQ3S] + 4 * (b->qs[gi] | (b->qh[s] >> k & 1) << 8);
                const unsigned signs = b->signs[4 * s + k / 2] >> 4 * (k % 2);
                for (int j = 0; j < 4; j++)
                    dst[j] = db * (float)g[j] * sign_of(signs, j);
            }
        }
    }
}

/* iq1_s and iq1_m shift every grid value by +-1/8 (ggml's IQ1S_DELTA). */
#define IQ1_DELTA 0.125f

void rq_dequant_iq1_s_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq1_s *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++) {
        const float d = rq_fp16_to_fp32(rq_le16(b->d));
        for (int s = 0; s < RQ_QK_K / 32; s++) {
            const unsigned qh = rq_le16(b->qh + 2 * s);
            const float dl = d * (float)(2 * (qh >> 12 & 7) + 1);
            const float delta = qh & 0x8000 ? -IQ1_DELTA : IQ1_DELTA;
            for (int l = 0; l < 4; l++, dst += 8) {
                const int8_t *g = (const int8_t *)grid[G_IQ1S] + 8 * (b->qs[4 * s + l] | (qh >> 3 * l & 7) << 8);
                for (int j = 0; j < 8; j++)
                    dst[j] = dl * ((float)g[j] + delta);
            }
        }
    }
}

void rq_dequant_iq1_m_ref(const void *src, float *dst, int64_t n) {
    const rq_block_iq1_m *b = src;
    for (int64_t i = 0; i < n / RQ_QK_K; i++, b++) {
        uint16_t sc[4], dbits = 0;
        for (int k = 0; k < 4; k++) {
            sc[k] = rq_le16(b->scales + 2 * k);
            dbits |= (uint16_t)((sc[k] >> 12) << 4 * k); /* the f16 d, a nibble per u16 */
        }
        const float d = rq_fp16_to_fp32(dbits);
        for (int h = 0; h < RQ_QK_K / 16; h++) { /* 16 values: groups 2h, 2h+1 */
            const float dl = d * (float)(2 * (sc[h / 4] >> 3 * (h % 4) & 7) + 1);
            for (int half = 0; half < 2; half++, dst += 8) {
                const int gi = 2 * h + half;
                const unsigned nib = b->qh[gi / 2] >> 4 * (gi % 2) & 0xf;
                const int8_t *g = (const int8_t *)grid[G_IQ1S] + 8 * (b->qs[gi] | (nib & 7) << 8);
                const float delta = nib & 8 ? -IQ1_DELTA : IQ1_DELTA;
                for (int j = 0; j < 8; j++)
                    dst[j] = dl * ((float)g[j] + delta);
            }
        }
    }
}
