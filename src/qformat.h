/* qformat.h - repliq's packed tensor formats: a stable id and version per
 * format, a documented byte layout, scalar reference pack/unpack, and exact
 * bits-per-weight accounting. In a GGUF a packed tensor is one blob of type
 * RQ_GGML_RQ_PACKED (ggml_types.h; 1-D, ne[0] = bytes); its header says format,
 * version and shape, so a file is never interpreted from its name.
 *
 * Layout v1 (little-endian, written byte by byte), every format:
 *   header, 48 bytes:
 *     off  0 u8[4] magic "RQT1"
 *     off  4 u16   format id (enum rq_qformat_id)
 *     off  6 u16   version (1..this build's; 0 is invalid)
 *     off  8 i64   rows  (> 0)
 *     off 16 i64   cols  (> 0)
 *     off 24 i64   group (resolved, 1..cols; the last group of a row may be shorter)
 *     off 32 u8    bits  (1..8, equal to the id's)
 *     off 33 u8    flags (bit0 symmetric, bit1 residual = id is RQ_FMT_B1R; others 0)
 *     off 34 u16   reserved (0)
 *     off 36 f32   offset (grid shift in steps, in [-0.5, 0.5])
 *     off 40 i64   n_sal (0 unless residual; then 0..cols)
 *   codes: rows, each ceil(cols*bits/8) bytes, codes packed LSB first; the
 *          padding bits at the end of a row are zero
 *   scale: f16 [rows, n_groups], n_groups = ceil(cols/group)
 *   min:   f16 [rows, n_groups]      (asymmetric only)
 *   residual (format RQ_FMT_B1R with n_sal > 0; empty when n_sal == 0):
 *     i32 [n_sal] salient column indices, strictly increasing, < cols
 *     bits [rows, n_sal], each row ceil(n_sal/8) bytes, LSB first, padding zero
 *     f16 [rows] residual scales
 * Nothing follows: a blob's size is exactly what its header implies.
 */
#ifndef RQ_QFORMAT_H
#define RQ_QFORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "ggml_types.h" /* RQ_GGML_RQ_PACKED */
#include "grid.h"

#define RQ_QFORMAT_HEADER 48

enum rq_qformat_id {
    RQ_FMT_Q1 = 1, /* 1..8: the uniform grid with that many bits per code */
    RQ_FMT_Q2 = 2,
    RQ_FMT_Q3 = 3,
    RQ_FMT_Q4 = 4,
    RQ_FMT_Q5 = 5,
    RQ_FMT_Q6 = 6,
    RQ_FMT_Q7 = 7,
    RQ_FMT_Q8 = 8,
    RQ_FMT_B1R = 17, /* 1-bit grid plus a binary residual on salient columns */
};

typedef struct {
    int id;
    int version;      /* newest version this build reads and writes */
    const char *name; /* "rq2", "rq1r", ... */
    int bits;         /* bits per code */
    int residual;     /* 1 for the binary-residual format */
} rq_qformat_traits;

/* NULL for an id this build does not know. */
const rq_qformat_traits *rq_qformat_traits_of(int id);
int rq_qformat_count(void);
const rq_qformat_traits *rq_qformat_at(int i); /* 0 <= i < rq_qformat_count() */

/* The format id for a quantized tensor (by grid.bits, and grid.binres or not);
 * -1 with rq_error set when no format stores that combination. */
int rq_qformat_id_for(const rq_qtensor *t);

/* Bytes of the packed form, header included; 0 when rq_qformat_id_for fails.
 * Uses only the shape and grid fields, so it works on rq_qformat_peek's result. */
size_t rq_qformat_size(const rq_qtensor *t);

/* Exact storage of a packed tensor in bits. Every byte of the blob is counted in
 * exactly one field, so code_bits + param_bits + header_bits == 8 * size:
 * code_bits includes the zero padding that ends each row of codes, param_bits
 * the scales, mins and the whole residual section (indices, bits and their row
 * padding, residual scales). Like rq_qformat_size, it needs only shape and grid. */
typedef struct {
    int64_t n_weights;                          /* rows * cols */
    int64_t code_bits, param_bits, header_bits; /* param: scales, mins, residual */
} rq_qbits;
rq_qbits rq_qformat_bits(const rq_qtensor *t);

/* Pack into dst (exactly rq_qformat_size bytes; padding bits are zero). Checks
 * what a reader would refuse (format, shape, codes in range, salient columns)
 * and fails with a message before writing anything. */
int rq_qformat_pack(const rq_qtensor *t, uint8_t *dst);

/* Parse and validate a blob of exactly n bytes into out (allocated here; free
 * with rq_qtensor_free): magic, known id, version not newer than this build's,
 * header fields, codes in range, salient columns, size. Fails with a message
 * ("unknown packed format id N", "format rqN version V is newer than this build
 * reads (M); upgrade repliq", ...); on failure out is zeroed and owns nothing. */
int rq_qformat_unpack(const uint8_t *src, size_t n, rq_qtensor *out);

/* Dequantize a blob to out[rows, cols], after checking that the shape it declares
 * is (rows, cols). Bit for bit rq_qtensor_dequant of the unpacked tensor. */
int rq_qformat_to_float(const void *src, size_t n, int64_t rows, int64_t cols, float *out);

/* Validate a blob's header (and that n is the size it implies) and fill only
 * the shape and grid fields of hdr_only (pointers NULL, nothing to free):
 * grid.bits/sym/offset/binres/group, rows, cols, group, n_groups, n_sal.
 * id and version may be NULL. */
int rq_qformat_peek(const void *src, size_t n, rq_qtensor *hdr_only, int *id, int *version);

/* n codes of `bits` bits, LSB first, into a zeroed row of ceil(n*bits/8) bytes,
 * and back; rq_unpack_codes returns -1 when the padding bits after the last code
 * (in the row's last of row_bytes bytes) are not zero. */
void rq_pack_codes(const uint8_t *q, int64_t n, int bits, uint8_t *dst);
int rq_unpack_codes(const uint8_t *src, int64_t n, int bits, uint64_t row_bytes, uint8_t *q);

#endif
