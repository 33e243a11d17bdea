/* qformat.c - scalar reference pack/unpack of repliq's packed tensor formats
 * (layout in qformat.h), with every field of a blob validated before use. */
#include "qformat.h"

#include <math.h>
#include <string.h>

#include "le.h"
#include "replica.h"
#include "util.h"

static const char magic[4] = {'R', 'Q', 'T', '1'};

static const rq_qformat_traits formats[] = {
    {RQ_FMT_Q1, 1, "rq1", 1, 0}, {RQ_FMT_Q2, 1, "rq2", 2, 0}, {RQ_FMT_Q3, 1, "rq3", 3, 0},
    {RQ_FMT_Q4, 1, "rq4", 4, 0}, {RQ_FMT_Q5, 1, "rq5", 5, 0}, {RQ_FMT_Q6, 1, "rq6", 6, 0},
    {RQ_FMT_Q7, 1, "rq7", 7, 0}, {RQ_FMT_Q8, 1, "rq8", 8, 0}, {RQ_FMT_B1R, 1, "rq1r", 1, 1},
};
enum { N_FORMATS = (int)(sizeof formats / sizeof formats[0]) };

enum { FLAG_SYM = 1, FLAG_RESIDUAL = 2 };

int rq_qformat_count(void) { return N_FORMATS; }

const rq_qformat_traits *rq_qformat_at(int i) { return i >= 0 && i < N_FORMATS ? &formats[i] : NULL; }

const rq_qformat_traits *rq_qformat_traits_of(int id) {
    for (int i = 0; i < N_FORMATS; i++)
        if (formats[i].id == id) return &formats[i];
    return NULL;
}

int rq_qformat_id_for(const rq_qtensor *t) {
    int bits = t->grid.bits;
    if (bits < 1 || bits > 8) return rq_fail("packed tensor: bits = %d has no packed format (1..8)", bits);
    if (t->grid.binres) {
        if (bits != 1) return rq_fail("packed tensor: a binary residual needs bits = 1 (got %d)", bits);
        return RQ_FMT_B1R;
    }
    return bits; /* RQ_FMT_Q1..RQ_FMT_Q8 are numbered by their bits */
}

/* ---- header and layout ------------------------------------------------------ */

/* The header's fields, as read or as about to be written. */
typedef struct {
    int id, version, bits, flags;
    int64_t rows, cols, group, n_sal;
    float offset;
} header;

/* Byte sizes of each section; all sums and products overflow-checked. */
typedef struct {
    uint64_t row_bytes, codes, scale, min, sal, rbits_row, rbits, rscale, total;
} layout;

static int mul_ok(uint64_t a, uint64_t b, uint64_t *r) {
    if (b != 0 && a > UINT64_MAX / b) return 0;
    *r = a * b;
    return 1;
}

static int add_ok(uint64_t a, uint64_t b, uint64_t *r) {
    if (a > UINT64_MAX - b) return 0;
    *r = a + b;
    return 1;
}

/* ceil(n * bits / 8) without overflowing n * bits. */
static int packed_bytes(uint64_t n, int bits, uint64_t *r) {
    uint64_t whole, rest = (n % 8 * (uint64_t)bits + 7) / 8;
    return mul_ok(n / 8, (uint64_t)bits, &whole) && add_ok(whole, rest, r);
}

/* Section sizes for positive rows/cols, a group in 1..cols and n_sal in 0..cols;
 * 0 when the total does not fit in a size_t. */
static int layout_of(int64_t rows, int64_t cols, int64_t group, int bits, int sym, int residual, int64_t n_sal,
                     layout *L) {
    memset(L, 0, sizeof *L);
    uint64_t r = (uint64_t)rows, n_groups = (uint64_t)(cols / group + (cols % group != 0)), pairs, t;
    if (!packed_bytes((uint64_t)cols, bits, &L->row_bytes) || !mul_ok(r, L->row_bytes, &L->codes)) return 0;
    if (!mul_ok(r, n_groups, &pairs) || !mul_ok(pairs, 2, &L->scale)) return 0;
    L->min = sym ? 0 : L->scale;
    if (residual && n_sal > 0) {
        L->rbits_row = (uint64_t)n_sal / 8 + (n_sal % 8 != 0);
        if (!mul_ok((uint64_t)n_sal, 4, &L->sal) || !mul_ok(r, L->rbits_row, &L->rbits) || !mul_ok(r, 2, &L->rscale))
            return 0;
    }
    t = RQ_QFORMAT_HEADER;
    if (!add_ok(t, L->codes, &t) || !add_ok(t, L->scale, &t) || !add_ok(t, L->min, &t) || !add_ok(t, L->sal, &t) ||
        !add_ok(t, L->rbits, &t) || !add_ok(t, L->rscale, &t) || (uint64_t)(size_t)t != t)
        return 0;
    L->total = t;
    return 1;
}

static const char *fmt_name(int id) {
    const rq_qformat_traits *tr = rq_qformat_traits_of(id);
    return tr ? tr->name : "?";
}

/* Every check a reader makes on the header, shared with the writer so that pack
 * never writes what unpack refuses. n is the blob size (SIZE_MAX: not known). */
static int check_header(const header *h, size_t n, layout *L) {
    const rq_qformat_traits *tr = rq_qformat_traits_of(h->id);
    if (!tr) return rq_fail("unknown packed format id %d; this build reads rq1..rq8 and rq1r", h->id);
    if (h->version == 0) return rq_fail("packed tensor: format %s has version 0, which is never written", tr->name);
    if (h->version > tr->version)
        return rq_fail("packed tensor: format %s version %d is newer than this build reads (%d); upgrade repliq",
                       tr->name, h->version, tr->version);
    if (h->bits != tr->bits)
        return rq_fail("packed tensor: format %s stores %d-bit codes, but the header says %d", tr->name, tr->bits,
                       h->bits);
    if (h->flags & ~(FLAG_SYM | FLAG_RESIDUAL))
        return rq_fail("packed tensor: format %s has unknown flags 0x%x", tr->name, (unsigned)h->flags);
    if (!!(h->flags & FLAG_RESIDUAL) != tr->residual)
        return rq_fail("packed tensor: format %s %s the residual flag", tr->name, tr->residual ? "lacks" : "has");
    if (h->rows <= 0 || h->cols <= 0)
        return rq_fail("packed tensor: format %s has shape [%lld, %lld]; both must be positive", tr->name,
                       (long long)h->rows, (long long)h->cols);
    if (h->group < 1 || h->group > h->cols)
        return rq_fail("packed tensor %s [%lld, %lld]: group %lld is outside 1..%lld", tr->name, (long long)h->rows,
                       (long long)h->cols, (long long)h->group, (long long)h->cols);
    if (!(h->offset >= -0.5f && h->offset <= 0.5f))
        return rq_fail("packed tensor %s: grid offset %g is not in [-0.5, 0.5]", tr->name, h->offset);
    if (tr->residual ? h->n_sal < 0 || h->n_sal > h->cols : h->n_sal != 0)
        return rq_fail("packed tensor %s [%lld, %lld]: %lld salient columns (allowed %s)", tr->name, (long long)h->rows,
                       (long long)h->cols, (long long)h->n_sal, tr->residual ? "0..cols" : "none without a residual");
    if (!layout_of(h->rows, h->cols, h->group, h->bits, h->flags & FLAG_SYM, tr->residual, h->n_sal, L))
        return rq_fail("packed tensor %s [%lld, %lld]: size overflows", tr->name, (long long)h->rows,
                       (long long)h->cols);
    if (n != SIZE_MAX && L->total != n)
        return rq_fail("packed tensor %s [%lld, %lld]: %zu bytes, but its header implies %llu (%s)", tr->name,
                       (long long)h->rows, (long long)h->cols, n, (unsigned long long)L->total,
                       n < L->total ? "truncated" : "trailing bytes");
    return 0;
}

static void write_header(const header *h, uint8_t *p) {
    uint32_t off;
    memcpy(&off, &h->offset, 4);
    memcpy(p, magic, 4);
    rq_put_u16(p + 4, (uint16_t)h->id);
    rq_put_u16(p + 6, (uint16_t)h->version);
    rq_put_u64(p + 8, (uint64_t)h->rows);
    rq_put_u64(p + 16, (uint64_t)h->cols);
    rq_put_u64(p + 24, (uint64_t)h->group);
    p[32] = (uint8_t)h->bits;
    p[33] = (uint8_t)h->flags;
    rq_put_u16(p + 34, 0);
    rq_put_u32(p + 36, off);
    rq_put_u64(p + 40, (uint64_t)h->n_sal);
}

/* Read and check a blob's header and its size. */
static int read_header(const uint8_t *p, size_t n, header *h, layout *L) {
    if (n < RQ_QFORMAT_HEADER)
        return rq_fail("packed tensor: %zu bytes, shorter than its %d-byte header (truncated)", n, RQ_QFORMAT_HEADER);
    if (memcmp(p, magic, 4) != 0)
        return rq_fail("packed tensor: bad magic %02x %02x %02x %02x (expected \"RQT1\"); not a repliq packed tensor, "
                       "or damaged",
                       p[0], p[1], p[2], p[3]);
    uint32_t off = rq_get_u32(p + 36);
    h->id = rq_get_u16(p + 4);
    h->version = rq_get_u16(p + 6);
    h->rows = (int64_t)rq_get_u64(p + 8);
    h->cols = (int64_t)rq_get_u64(p + 16);
    h->group = (int64_t)rq_get_u64(p + 24);
    h->bits = p[32];
    h->flags = p[33];
    memcpy(&h->offset, &off, 4);
    h->n_sal = (int64_t)rq_get_u64(p + 40);
    if (check_header(h, n, L)) return -1;
    if (rq_get_u16(p + 34) != 0)
        return rq_fail("packed tensor %s: reserved header field is %u, not 0; written by a newer repliq?",
                       fmt_name(h->id), rq_get_u16(p + 34));
    return 0;
}

static void header_to_qtensor(const header *h, rq_qtensor *t) {
    memset(t, 0, sizeof *t);
    t->grid = rq_grid_default();
    t->grid.bits = h->bits;
    t->grid.sym = h->flags & FLAG_SYM;
    t->grid.group = h->group;
    t->grid.offset = h->offset;
    t->grid.binres = h->flags & FLAG_RESIDUAL;
    t->rows = h->rows;
    t->cols = h->cols;
    t->group = h->group;
    t->n_groups = h->cols / h->group + (h->cols % h->group != 0);
    t->n_sal = h->n_sal;
}

/* The header a qtensor would be written with; -1 when no format stores it. */
static int header_of(const rq_qtensor *t, header *h, layout *L) {
    memset(h, 0, sizeof *h);
    h->id = rq_qformat_id_for(t);
    if (h->id < 0) return -1;
    h->version = rq_qformat_traits_of(h->id)->version;
    h->bits = t->grid.bits;
    h->flags = (t->grid.sym ? FLAG_SYM : 0) | (t->grid.binres ? FLAG_RESIDUAL : 0);
    h->rows = t->rows;
    h->cols = t->cols;
    h->group = t->group;
    h->offset = t->grid.offset;
    h->n_sal = t->n_sal;
    return check_header(h, SIZE_MAX, L);
}

size_t rq_qformat_size(const rq_qtensor *t) {
    header h;
    layout L;
    return header_of(t, &h, &L) ? 0 : (size_t)L.total;
}

rq_qbits rq_qformat_bits(const rq_qtensor *t) {
    rq_qbits b = {0};
    header h;
    layout L;
    if (header_of(t, &h, &L)) return b;
    b.n_weights = t->rows * t->cols;
    b.code_bits = (int64_t)(8 * L.codes);
    b.param_bits = (int64_t)(8 * (L.scale + L.min + L.sal + L.rbits + L.rscale));
    b.header_bits = 8 * RQ_QFORMAT_HEADER;
    return b;
}

/* ---- payload ---------------------------------------------------------------- */

static int f16_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

/* Checks on the arrays of t that a reader would make on the packed bytes. */
static int check_payload(const rq_qtensor *t, const char *name) {
    int maxq = (1 << t->grid.bits) - 1;
    if (!t->q || !t->scale || (!t->grid.sym && !t->min) || (t->n_sal > 0 && (!t->sal_cols || !t->rq || !t->rscale)))
        return rq_fail("packed tensor %s: the quantized tensor lacks arrays its grid needs", name);
    if (t->n_groups != t->cols / t->group + (t->cols % t->group != 0))
        return rq_fail("packed tensor %s: n_groups %lld does not match cols %lld / group %lld", name,
                       (long long)t->n_groups, (long long)t->cols, (long long)t->group);
    for (int64_t i = 0; i < t->rows * t->cols; i++)
        if (t->q[i] > maxq)
            return rq_fail("packed tensor %s: code %d at row %lld col %lld is out of range for %d bits (0..%d)", name,
                           t->q[i], (long long)(i / t->cols), (long long)(i % t->cols), t->grid.bits, maxq);
    for (int64_t i = 0; i < t->rows * t->n_groups; i++)
        if (!f16_finite(t->scale[i]) || (t->min && !f16_finite(t->min[i])))
            return rq_fail("packed tensor %s: row %lld group %lld has a non-finite scale or min", name,
                           (long long)(i / t->n_groups), (long long)(i % t->n_groups));
    for (int64_t j = 0; j < t->n_sal; j++)
        if (t->sal_cols[j] < 0 || t->sal_cols[j] >= t->cols || (j > 0 && t->sal_cols[j] <= t->sal_cols[j - 1]))
            return rq_fail("packed tensor %s: salient column %lld is %d; they must increase strictly within 0..%lld",
                           name, (long long)j, t->sal_cols[j], (long long)(t->cols - 1));
    for (int64_t r = 0; t->n_sal > 0 && r < t->rows; r++)
        if (!f16_finite(t->rscale[r]))
            return rq_fail("packed tensor %s: row %lld has a non-finite residual scale", name, (long long)r);
    return 0;
}

/* n codes of `bits` bits, LSB first, into a zeroed row. */
void rq_pack_codes(const uint8_t *q, int64_t n, int bits, uint8_t *dst) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t pos = (uint64_t)i * (uint64_t)bits;
        unsigned sh = pos & 7, v = (unsigned)q[i] << sh;
        dst[pos >> 3] |= (uint8_t)v;
        if (sh + (unsigned)bits > 8) dst[(pos >> 3) + 1] |= (uint8_t)(v >> 8);
    }
}

/* The inverse of rq_pack_codes; -1 when the padding bits after the last code are not zero. */
int rq_unpack_codes(const uint8_t *src, int64_t n, int bits, uint64_t row_bytes, uint8_t *q) {
    unsigned mask = (1u << bits) - 1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t pos = (uint64_t)i * (uint64_t)bits;
        unsigned sh = pos & 7, v = src[pos >> 3];
        if (sh + (unsigned)bits > 8) v |= (unsigned)src[(pos >> 3) + 1] << 8;
        q[i] = (uint8_t)((v >> sh) & mask);
    }
    unsigned used = (unsigned)((uint64_t)n * (uint64_t)bits % 8);
    return used && src[row_bytes - 1] >> used ? -1 : 0;
}

static void put_f16s(uint8_t *p, const uint16_t *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        rq_put_u16(p + 2 * i, v[i]);
}
static void get_f16s(const uint8_t *p, uint16_t *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        v[i] = rq_get_u16(p + 2 * i);
}

int rq_qformat_pack(const rq_qtensor *t, uint8_t *dst) {
    header h;
    layout L;
    if (header_of(t, &h, &L) || check_payload(t, fmt_name(h.id))) return -1;
    memset(dst, 0, (size_t)L.total);
    write_header(&h, dst);
    uint8_t *p = dst + RQ_QFORMAT_HEADER;
    for (int64_t r = 0; r < t->rows; r++)
        rq_pack_codes(t->q + r * t->cols, t->cols, h.bits, p + r * L.row_bytes);
    p += L.codes;
    put_f16s(p, t->scale, t->rows * t->n_groups);
    p += L.scale;
    if (L.min) put_f16s(p, t->min, t->rows * t->n_groups);
    p += L.min;
    if (L.sal == 0) return 0;
    for (int64_t j = 0; j < t->n_sal; j++)
        rq_put_u32(p + 4 * j, (uint32_t)t->sal_cols[j]);
    p += L.sal;
    for (int64_t r = 0; r < t->rows; r++)
        rq_pack_codes(t->rq + r * t->n_sal, t->n_sal, 1, p + r * L.rbits_row);
    p += L.rbits;
    put_f16s(p, t->rscale, t->rows);
    return 0;
}

/* Fill out's arrays from a blob whose header checked out. */
static int read_payload(const uint8_t *src, const header *h, const layout *L, rq_qtensor *t) {
    const char *name = fmt_name(h->id);
    const uint8_t *p = src + RQ_QFORMAT_HEADER;
    for (int64_t r = 0; r < t->rows; r++)
        if (rq_unpack_codes(p + r * L->row_bytes, t->cols, h->bits, L->row_bytes, t->q + r * t->cols))
            return rq_fail("packed tensor %s: code row %lld has nonzero padding bits; damaged", name, (long long)r);
    p += L->codes;
    get_f16s(p, t->scale, t->rows * t->n_groups);
    p += L->scale;
    if (L->min) get_f16s(p, t->min, t->rows * t->n_groups);
    p += L->min;
    if (L->sal > 0) {
        for (int64_t j = 0; j < t->n_sal; j++)
            t->sal_cols[j] = (int32_t)rq_get_u32(p + 4 * j);
        p += L->sal;
        for (int64_t r = 0; r < t->rows; r++)
            if (rq_unpack_codes(p + r * L->rbits_row, t->n_sal, 1, L->rbits_row, t->rq + r * t->n_sal))
                return rq_fail("packed tensor %s: residual row %lld has nonzero padding bits; damaged", name,
                               (long long)r);
        p += L->rbits;
        get_f16s(p, t->rscale, t->rows);
    }
    return check_payload(t, name); /* codes are in range by construction; this checks the rest */
}

int rq_qformat_unpack(const uint8_t *src, size_t n, rq_qtensor *out) {
    header h;
    layout L;
    rq_qtensor hdr;
    memset(out, 0, sizeof *out);
    if (read_header(src, n, &h, &L)) return -1;
    /* the unpacked codes take a byte each: up to 8x the blob for 1-bit codes */
    uint64_t cells;
    if (!mul_ok((uint64_t)h.rows, (uint64_t)h.cols, &cells) || cells > SIZE_MAX)
        return rq_fail("packed tensor %s [%lld, %lld]: too large to unpack", fmt_name(h.id), (long long)h.rows,
                       (long long)h.cols);
    header_to_qtensor(&h, &hdr);
    rq_qtensor_alloc(out, &hdr.grid, h.rows, h.cols, h.n_sal);
    if (read_payload(src, &h, &L, out)) {
        rq_qtensor_free(out);
        return -1;
    }
    return 0;
}

int rq_qformat_peek(const void *src, size_t n, rq_qtensor *hdr_only, int *id, int *version) {
    header h;
    layout L;
    memset(hdr_only, 0, sizeof *hdr_only);
    if (rq_rep_is_blob(src, n)) { /* a replicated layer (replica.h): shape and bits only */
        rq_rep r;
        if (rq_rep_peek(src, n, &r, version, NULL)) return -1;
        hdr_only->grid = rq_grid_default();
        hdr_only->grid.bits = r.bits;
        hdr_only->grid.sym = true;
        hdr_only->grid.group = r.cols;
        hdr_only->rows = r.rows;
        hdr_only->cols = r.cols;
        hdr_only->group = r.cols;
        hdr_only->n_groups = 1;
        if (id) *id = RQ_FMT_REP;
        return 0;
    }
    if (read_header(src, n, &h, &L)) return -1;
    header_to_qtensor(&h, hdr_only);
    if (id) *id = h.id;
    if (version) *version = h.version;
    return 0;
}

int rq_qformat_to_float(const void *src, size_t n, int64_t rows, int64_t cols, float *out) {
    rq_qtensor t;
    int id;
    if (rq_qformat_peek(src, n, &t, &id, NULL)) return -1;
    if (t.rows != rows || t.cols != cols)
        return rq_fail("packed tensor %s is [%lld, %lld], but [%lld, %lld] was expected",
                       id == RQ_FMT_REP ? "rqrep" : fmt_name(id), (long long)t.rows, (long long)t.cols, (long long)rows,
                       (long long)cols);
    if (id == RQ_FMT_REP) {
        rq_rep r;
        if (rq_rep_unpack(src, n, &r)) return -1;
        if (r.combine != RQ_REP_COMBINE_LINEAR) {
            rq_rep_free(&r);
            return rq_fail("replicated tensor combines its %d replicas after the MLP's nonlinearity (combine %d), so "
                           "it is no single matrix; only the model loader (rq_layer_load) reads it",
                           r.K, RQ_REP_COMBINE_MLP);
        }
        rq_rep_dequant(&r, out);
        rq_rep_free(&r);
        return 0;
    }
    if (rq_qformat_unpack(src, n, &t)) return -1;
    rq_qtensor_dequant(&t, out);
    rq_qtensor_free(&t);
    return 0;
}
