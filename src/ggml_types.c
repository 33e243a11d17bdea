/* ggml_types.c - the traits table of ggml tensor types (name, block geometry,
 * dequantizer) and the checked entry points row_size and to_float. */
#include "ggml_types.h"

#include <stdint.h>
#include <stdio.h>

#include "ggml_blocks.h"
#include "util.h"

/* Formats repliq cannot dequantize yet have no block struct here; their sizes are
 * spelled as the sum of their fields (f16 scales are 2 bytes). Every entry was
 * checked against ggml's type_traits by scripts/check_dequant_vs_ggml.sh. */
static const rq_ggml_traits traits[RQ_GGML_TYPE_LIMIT] = {
    [RQ_GGML_F32] = {"f32", 1, 4, rq_dequant_f32_ref},
    [RQ_GGML_F16] = {"f16", 1, 2, rq_dequant_f16_ref},
    [RQ_GGML_BF16] = {"bf16", 1, 2, rq_dequant_bf16_ref},
    [RQ_GGML_F64] = {"f64", 1, 8, NULL},
    [RQ_GGML_I8] = {"i8", 1, 1, NULL},
    [RQ_GGML_I16] = {"i16", 1, 2, NULL},
    [RQ_GGML_I32] = {"i32", 1, 4, NULL},
    [RQ_GGML_I64] = {"i64", 1, 8, NULL},

    [RQ_GGML_Q4_0] = {"q4_0", RQ_QK, sizeof(rq_block_q4_0), rq_dequant_q4_0_ref},
    [RQ_GGML_Q4_1] = {"q4_1", RQ_QK, sizeof(rq_block_q4_1), rq_dequant_q4_1_ref},
    [RQ_GGML_Q5_0] = {"q5_0", RQ_QK, sizeof(rq_block_q5_0), rq_dequant_q5_0_ref},
    [RQ_GGML_Q5_1] = {"q5_1", RQ_QK, sizeof(rq_block_q5_1), rq_dequant_q5_1_ref},
    [RQ_GGML_Q8_0] = {"q8_0", RQ_QK, sizeof(rq_block_q8_0), rq_dequant_q8_0_ref},
    /* d f16, s f16, 32 int8 (gguf-py's table still says 40, from an older f32 d and s) */
    [RQ_GGML_Q8_1] = {"q8_1", RQ_QK, 2 + 2 + RQ_QK, NULL},
    /* e8m0 exponent, 16 bytes of 4-bit codes */
    [RQ_GGML_MXFP4] = {"mxfp4", RQ_QK, 1 + RQ_QK / 2, NULL},
    /* d f16, 16 bytes of 4-bit codes */
    [RQ_GGML_IQ4_NL] = {"iq4_nl", RQ_QK, sizeof(rq_block_iq4_nl), rq_dequant_iq4_nl_ref},

    [RQ_GGML_Q2_K] = {"q2_K", RQ_QK_K, sizeof(rq_block_q2_k), rq_dequant_q2_k_ref},
    [RQ_GGML_Q3_K] = {"q3_K", RQ_QK_K, sizeof(rq_block_q3_k), rq_dequant_q3_k_ref},
    [RQ_GGML_Q4_K] = {"q4_K", RQ_QK_K, sizeof(rq_block_q4_k), rq_dequant_q4_k_ref},
    [RQ_GGML_Q5_K] = {"q5_K", RQ_QK_K, sizeof(rq_block_q5_k), rq_dequant_q5_k_ref},
    [RQ_GGML_Q6_K] = {"q6_K", RQ_QK_K, sizeof(rq_block_q6_k), rq_dequant_q6_k_ref},
    /* d f32, 256 int8, 16 int16 group sums */
    [RQ_GGML_Q8_K] = {"q8_K", RQ_QK_K, 4 + RQ_QK_K + 2 * (RQ_QK_K / 16), NULL},
    /* the grid-based i-quants: the last field says to_float needs the grid file */
    [RQ_GGML_IQ2_XXS] = {"iq2_xxs", RQ_QK_K, sizeof(rq_block_iq2_xxs), rq_dequant_iq2_xxs_ref, 1},
    [RQ_GGML_IQ2_XS] = {"iq2_xs", RQ_QK_K, sizeof(rq_block_iq2_xs), rq_dequant_iq2_xs_ref, 1},
    [RQ_GGML_IQ2_S] = {"iq2_s", RQ_QK_K, sizeof(rq_block_iq2_s), rq_dequant_iq2_s_ref, 1},
    [RQ_GGML_IQ3_XXS] = {"iq3_xxs", RQ_QK_K, sizeof(rq_block_iq3_xxs), rq_dequant_iq3_xxs_ref, 1},
    [RQ_GGML_IQ3_S] = {"iq3_s", RQ_QK_K, sizeof(rq_block_iq3_s), rq_dequant_iq3_s_ref, 1},
    [RQ_GGML_IQ1_S] = {"iq1_s", RQ_QK_K, sizeof(rq_block_iq1_s), rq_dequant_iq1_s_ref, 1},
    [RQ_GGML_IQ1_M] = {"iq1_m", RQ_QK_K, sizeof(rq_block_iq1_m), rq_dequant_iq1_m_ref, 1},
    [RQ_GGML_IQ4_XS] = {"iq4_xs", RQ_QK_K, sizeof(rq_block_iq4_xs), rq_dequant_iq4_xs_ref},
    /* 48 bytes of five base-3 digits, 4 bytes of four, d f16 */
    [RQ_GGML_TQ1_0] = {"tq1_0", RQ_QK_K, (RQ_QK_K - 4 * (RQ_QK_K / 64)) / 5 + RQ_QK_K / 64 + 2, NULL},
    /* 64 bytes of 2-bit values, d f16 */
    [RQ_GGML_TQ2_0] = {"tq2_0", RQ_QK_K, RQ_QK_K / 4 + 2, NULL},
};

/* Bytes, not values: the blob's own header says its format and shape. */
static const rq_ggml_traits packed_traits = {"rq_packed", 1, 1, NULL, 0};

const rq_ggml_traits *rq_ggml_traits_of(int type) {
    if (type == RQ_GGML_RQ_PACKED) return &packed_traits;
    if (type < 0 || type >= RQ_GGML_TYPE_LIMIT || !traits[type].name) return NULL;
    return &traits[type];
}

/* The traits of type, or NULL with rq_error set. */
static const rq_ggml_traits *known_type(int type) {
    const rq_ggml_traits *t = rq_ggml_traits_of(type);
    if (!t)
        rq_fail("unknown ggml tensor type id %d (repliq knows the ids of ggml's enum ggml_type up to "
                "mxfp4 = 39, and its own rq_packed = %d); the file may come from a newer llama.cpp",
                type, RQ_GGML_RQ_PACKED);
    return t;
}

size_t rq_ggml_row_size(int type, int64_t n) {
    const rq_ggml_traits *t = known_type(type);
    if (!t) return 0;
    if (n < 0 || n % t->block_size != 0) {
        rq_fail("%s: a row of %lld values is not a whole number of %lld-value blocks", t->name,
                (long long)n, (long long)t->block_size);
        return 0;
    }
    const uint64_t blocks = (uint64_t)(n / t->block_size);
    if (blocks > SIZE_MAX / t->type_size) {
        rq_fail("%s: a row of %lld values is too large to address", t->name, (long long)n);
        return 0;
    }
    return (size_t)blocks * t->type_size;
}

/* The names of the types that have a dequantizer, for error messages. */
static void list_dequantizable(char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < RQ_GGML_TYPE_LIMIT && len < cap; i++)
        if (traits[i].to_float)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? " " : "", traits[i].name);
}

int rq_ggml_to_float(int type, const void *src, float *dst, int64_t n) {
    const rq_ggml_traits *t = known_type(type);
    if (!t) return -1;
    if (type == RQ_GGML_RQ_PACKED)
        return rq_fail("rq_packed: a packed tensor is one blob with its own header; dequantize it with "
                       "rq_qformat_to_float (qformat.h), not value by value");
    if (!t->to_float) {
        char have[256];
        list_dequantizable(have, sizeof have);
        return rq_fail("%s: repliq has no dequantizer for this tensor type yet (it has: %s)", t->name,
                       have);
    }
    if (n < 0 || n % t->block_size != 0)
        return rq_fail("%s: cannot dequantize %lld values, not a whole number of %lld-value blocks",
                       t->name, (long long)n, (long long)t->block_size);
    if (n == 0) return 0;
    if (t->needs_tables && rq_iq_tables_ready(t->name)) return -1;
    t->to_float(src, dst, n);
    return 0;
}
