/* recipe.c - quantization recipes: versioned JSON read with cJSON and validated key
 * by key, resolved per tensor by name pattern, and written back as canonical JSON. */
#include "recipe.h"

#include "model.h"

#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The GPTQ defaults of rq_gptq_opts_default (quant.c), repeated here so that reading a
 * recipe does not pull in the quantizer; keep the two in step. */
static rq_gptq_opts gptq_defaults(void) {
    rq_gptq_opts o = {.damp = 0.01f, .block = 128, .act_order = false, .static_groups = false};
    return o;
}

void rq_recipe_default(rq_recipe *r) {
    memset(r, 0, sizeof *r);
    r->version = RQ_RECIPE_VERSION;
    r->base.method = RQ_METHOD_GPTQ;
    r->base.grid = rq_grid_default();
    r->base.gptq = gptq_defaults();
    r->seed = 0;
    r->calib_n = 8;
    r->calib_len = 2048;
    r->calib_feed_ref = false;
    r->calib_true_seq = false;
    r->act.a_bits = 0;
    r->act.a_clip = 1.0f;
    r->act.a_bf16 = false;
    r->act.kv_bits = 0;
    r->act.kv_unbias = false;
    r->mlp_train_on = false;
    r->mlp_train = rq_mlptrain_default();
}

void rq_recipe_free(rq_recipe *r) {
    free(r->ov);
    r->ov = NULL;
    r->n_ov = 0;
}

/* ---- names of enumerated values ---------------------------------------------- */

static const char *const METHOD_NAMES[] = {"keep", "rtn", "gptq"};  /* by rq_method */
static const char *const ROUND_NAMES[] = {"nearest", "stochastic"}; /* by rq_round */
static const char *const FEED_NAMES[] = {"quantized", "reference"};
static const char *const TARGET_NAMES[] = {"mlp", "block", "model"};
static const char *const F16_NAMES[] = {"f16", "bf16"};

/* The per-tensor keys, in canonical order, with their override bit. */
static const struct {
    const char *key;
    uint32_t bit;
} TKEYS[] = {
    {"method", RQ_OV_METHOD},
    {"bits", RQ_OV_BITS},
    {"sym", RQ_OV_SYM},
    {"group", RQ_OV_GROUP},
    {"mse", RQ_OV_MSE},
    {"mse_min", RQ_OV_MSE_MIN},
    {"mse_steps", RQ_OV_MSE_STEPS},
    {"offset", RQ_OV_OFFSET},
    {"round", RQ_OV_ROUND},
    {"noise", RQ_OV_NOISE},
    {"binres", RQ_OV_BINRES},
    {"salient_frac", RQ_OV_SALIENT},
    {"damp", RQ_OV_DAMP},
    {"block", RQ_OV_BLOCK},
    {"act_order", RQ_OV_ACT_ORDER},
    {"static_groups", RQ_OV_STATIC},
    {"replicate", RQ_OV_REPLICATE},
};
#define N_TKEYS (sizeof TKEYS / sizeof TKEYS[0])
#define RQ_OV_ALL ((RQ_OV_REPLICATE << 1) - 1)

/* ---- typed readers: each fails with "SRC: 'KEY' ..." ------------------------------ */

static const char *type_name(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "an unknown value";
}

/* An integer in [lo, hi]; range names the range in the message, e.g. "(1..8)". */
static int get_int(const char *src, const char *key, const cJSON *j, double lo, double hi, const char *range,
                   double *out) {
    if (!cJSON_IsNumber(j)) return rq_fail("%s: '%s' must be an integer, got %s", src, key, type_name(j));
    double d = j->valuedouble;
    if (d != floor(d)) return rq_fail("%s: '%s' must be an integer, got %.17g", src, key, d);
    if (d < lo || d > hi) return rq_fail("%s: '%s' = %.17g is out of range %s", src, key, d, range);
    *out = d;
    return 0;
}

/* A finite number stored as float; ok() checks the range named by range. */
static int get_float(const char *src, const char *key, const cJSON *j, bool (*ok)(float), const char *range,
                     float *out) {
    if (!cJSON_IsNumber(j)) return rq_fail("%s: '%s' must be a number, got %s", src, key, type_name(j));
    float f = (float)j->valuedouble;
    if (!isfinite(f) || !ok(f)) return rq_fail("%s: '%s' = %.9g is out of range %s", src, key, j->valuedouble, range);
    *out = f;
    return 0;
}

static bool in_0_1_closed(float f) { return f > 0.0f && f <= 1.0f; }
static bool in_0_1_open(float f) { return f > 0.0f && f < 1.0f; }
static bool in_half(float f) { return f >= -0.5f && f <= 0.5f; }
static bool non_negative(float f) { return f >= 0.0f; }

static int get_bool(const char *src, const char *key, const cJSON *j, bool *out) {
    if (!cJSON_IsBool(j)) return rq_fail("%s: '%s' must be true or false, got %s", src, key, type_name(j));
    *out = cJSON_IsTrue(j);
    return 0;
}

static int get_enum(const char *src, const char *key, const cJSON *j, const char *const *names, int n, int *out) {
    if (!cJSON_IsString(j)) return rq_fail("%s: '%s' must be a string, got %s", src, key, type_name(j));
    for (int i = 0; i < n; i++)
        if (!strcmp(j->valuestring, names[i])) {
            *out = i;
            return 0;
        }
    char list[256];
    size_t at = 0;
    for (int i = 0; i < n && at < sizeof list; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s'%s'", i ? ", " : "", names[i]);
    return rq_fail("%s: '%s' = '%s' is not one of %s", src, key, j->valuestring, list);
}

/* Activation / KV widths: 0 (off), 2..8 (integer) or 16 (f16/bf16 rounding). */
static int get_act_bits(const char *src, const char *key, const cJSON *j, int *out) {
    double d;
    if (get_int(src, key, j, 0, 16, "(0 = off, 2..8, or 16)", &d)) return -1;
    if (d == 1 || (d > 8 && d < 16)) return rq_fail("%s: '%s' = %d is not one of 0 (off), 2..8, 16", src, key, (int)d);
    *out = (int)d;
    return 0;
}

/* "KEY" inside where ("" at the top level) as one dotted name for messages. */
static void qualify(char *buf, size_t cap, const char *where, const char *key) {
    snprintf(buf, cap, "%s%s%s", where, *where ? "." : "", key);
}

static int unknown_key(const char *src, const char *where, const char *key, const char *known) {
    return rq_fail("%s: unknown key '%s' %s%s (known keys: %s)", src, key, *where ? "in " : "at the top level", where,
                   known);
}

/* Refuse an object that holds the same key twice (cJSON keeps both). */
static int check_dups(const char *src, const char *where, const cJSON *obj) {
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (!strcmp(a->string, b->string))
                return rq_fail("%s: key '%s' appears twice %s%s", src, a->string, *where ? "in " : "at the top level",
                               where);
    return 0;
}

/* ---- per-tensor keys ----------------------------------------------------------- */

/* "replicate": {"k": K, "vary": ["out", "in", "offset"], "iters": N, "spread": S,
 * "combine": "linear"}; null or k = 0 turns replication off. */
static int parse_replicate(const char *src, const char *key, const cJSON *obj, rq_rep_opts *o) {
    *o = rq_rep_opts_default();
    if (cJSON_IsNull(obj)) {
        o->K = 0;
        return 0;
    }
    if (!cJSON_IsObject(obj)) return rq_fail("%s: '%s' must be an object or null, got %s", src, key, type_name(obj));
    if (check_dups(src, key, obj)) return -1;
    char k2[200];
    bool group_scales = false;
    for (const cJSON *j = obj->child; j; j = j->next) {
        double d;
        snprintf(k2, sizeof k2, "%s.%s", key, j->string);
        if (!strcmp(j->string, "k")) {
            if (get_int(src, k2, j, 0, RQ_REP_MAX_K, "(0 = off, or 1..64 replicas)", &d)) return -1;
            o->K = (int)d;
        } else if (!strcmp(j->string, "iters")) {
            if (get_int(src, k2, j, 0, (RQ_REP_TRACE_MAX - 1) / 4, "(0..63)", &d)) return -1;
            o->iters = (int)d;
        } else if (!strcmp(j->string, "spread")) {
            if (get_float(src, k2, j, non_negative, "[0, 1]", &o->init_spread)) return -1;
        } else if (!strcmp(j->string, "seed")) {
            if (get_int(src, k2, j, 0, 9007199254740992.0, "(0..2^53)", &d)) return -1;
            o->seed = (uint64_t)d;
        } else if (!strcmp(j->string, "combine")) {
            if (!cJSON_IsString(j)) return rq_fail("%s: '%s' must be a string, got %s", src, k2, type_name(j));
            if (!strcmp(j->valuestring, "linear"))
                o->combine = RQ_REP_COMBINE_LINEAR;
            else if (!strcmp(j->valuestring, "mlp"))
                o->combine = RQ_REP_COMBINE_MLP;
            else
                return rq_fail("%s: '%s' = '%s': the replicas are combined at the linear layer's output (\"linear\") "
                               "or after the MLP's nonlinearity (\"mlp\", on ffn_gate, ffn_up and ffn_down, with "
                               "\"mlp_train\"); block-level combination is not built",
                               src, k2, j->valuestring);
        } else if (!strcmp(j->string, "vary")) {
            if (!cJSON_IsArray(j))
                return rq_fail("%s: '%s' must be an array of strings, got %s", src, k2, type_name(j));
            o->vary_out = o->vary_in = o->vary_offset = o->vary_rot = false;
            for (const cJSON *v = j->child; v; v = v->next) {
                const char *n = cJSON_IsString(v) ? v->valuestring : "";
                if (!strcmp(n, "out"))
                    o->vary_out = true;
                else if (!strcmp(n, "in"))
                    o->vary_in = true;
                else if (!strcmp(n, "offset"))
                    o->vary_offset = true;
                else if (!strcmp(n, "rotation"))
                    o->vary_rot = true;
                else if (!strcmp(n, "scale"))
                    group_scales = true;
                else
                    return rq_fail("%s: '%s' holds %s%s%s; each entry is \"out\" (per-row factors), \"in\" "
                                   "(per-column factors), \"offset\" (grid offsets), \"rotation\" (an input "
                                   "rotation per replica) or \"scale\" (group scales)",
                                   src, k2, cJSON_IsString(v) ? "'" : "a ", cJSON_IsString(v) ? n : type_name(v),
                                   cJSON_IsString(v) ? "'" : "");
            }
        } else
            return unknown_key(src, key, j->string, "k, vary, iters, spread, seed, combine");
    }
    if (o->K == 0) return 0;
    if (group_scales && o->K > 1 && !o->vary_in && !o->vary_rot)
        return rq_fail("%s: '%s': replicas that differ only in per-group scales%s sum to one decoder (their average is "
                       "again one affine grid), so k = %d is equivalent to k = 1 at %d times the compute; add \"in\" "
                       "(per-column factors) to \"vary\", or set k = 1",
                       src, key, o->vary_offset ? " and offsets" : "", o->K, o->K);
    if (group_scales) o->vary_out = true; /* one group per row: a group scale is the row factor */
    if (rq_rep_opts_check(o)) return rq_fail_ctx("%s: '%s'", src, key);
    return 0;
}

/* Parse j (named j->string) into t when it is a per-tensor key and add its bit to
 * *set. Returns 1 if parsed, 0 if the key is not a per-tensor key, -1 on error. */
static int parse_tensor_key(const char *src, const char *where, const cJSON *j, rq_tensor_recipe *t, uint32_t *set) {
    uint32_t bit = 0;
    for (size_t i = 0; i < N_TKEYS; i++)
        if (!strcmp(j->string, TKEYS[i].key)) bit = TKEYS[i].bit;
    if (!bit) return 0;
    char key[160];
    qualify(key, sizeof key, where, j->string);
    rq_grid *g = &t->grid;
    rq_gptq_opts *o = &t->gptq;
    double d;
    int e, rc = 0;
    switch (bit) {
    case RQ_OV_METHOD:
        if (!(rc = get_enum(src, key, j, METHOD_NAMES, 3, &e))) t->method = (rq_method)e;
        break;
    case RQ_OV_BITS:
        if (!(rc = get_int(src, key, j, 1, 8, "(1..8)", &d))) g->bits = (int)d;
        break;
    case RQ_OV_SYM:
        rc = get_bool(src, key, j, &g->sym);
        break;
    case RQ_OV_GROUP:
        if (cJSON_IsString(j)) {
            if (strcmp(j->valuestring, "per_channel"))
                return rq_fail("%s: '%s' = '%s': give a group size >= 1, 0 or \"per_channel\" for one group per row",
                               src, key, j->valuestring);
            g->group = 0;
        } else if (!(rc = get_int(src, key, j, 0, (double)INT32_MAX, "(0 = per channel, or a group size >= 1)", &d)))
            g->group = (int64_t)d;
        break;
    case RQ_OV_MSE:
        rc = get_bool(src, key, j, &g->mse);
        break;
    case RQ_OV_MSE_MIN:
        rc = get_float(src, key, j, in_0_1_closed, "(0, 1]", &g->mse_min);
        break;
    case RQ_OV_MSE_STEPS:
        if (!(rc = get_int(src, key, j, 1, 100000, "(1..100000)", &d))) g->mse_steps = (int)d;
        break;
    case RQ_OV_OFFSET:
        rc = get_float(src, key, j, in_half, "[-0.5, 0.5]", &g->offset);
        break;
    case RQ_OV_ROUND:
        if (!(rc = get_enum(src, key, j, ROUND_NAMES, 2, &e))) g->round = (rq_round)e;
        break;
    case RQ_OV_NOISE:
        rc = get_float(src, key, j, non_negative, "[0, inf)", &g->noise);
        break;
    case RQ_OV_BINRES:
        rc = get_bool(src, key, j, &g->binres);
        break;
    case RQ_OV_SALIENT:
        rc = get_float(src, key, j, in_0_1_open, "(0, 1)", &g->salient_frac);
        break;
    case RQ_OV_DAMP:
        rc = get_float(src, key, j, non_negative, "[0, inf)", &o->damp);
        break;
    case RQ_OV_BLOCK:
        if (!(rc = get_int(src, key, j, 1, 1 << 20, "(1..1048576)", &d))) o->block = (int)d;
        break;
    case RQ_OV_ACT_ORDER:
        rc = get_bool(src, key, j, &o->act_order);
        break;
    case RQ_OV_STATIC:
        rc = get_bool(src, key, j, &o->static_groups);
        break;
    case RQ_OV_REPLICATE:
        rc = parse_replicate(src, key, j, &t->rep);
        break;
    }
    if (rc) return -1;
    *set |= bit;
    return 1;
}

static void apply_override(const rq_override *v, rq_tensor_recipe *t) {
    uint32_t s = v->set;
    const rq_tensor_recipe *o = &v->r;
    if (s & RQ_OV_METHOD) t->method = o->method;
    if (s & RQ_OV_BITS) t->grid.bits = o->grid.bits;
    if (s & RQ_OV_SYM) t->grid.sym = o->grid.sym;
    if (s & RQ_OV_GROUP) t->grid.group = o->grid.group;
    if (s & RQ_OV_MSE) t->grid.mse = o->grid.mse;
    if (s & RQ_OV_MSE_MIN) t->grid.mse_min = o->grid.mse_min;
    if (s & RQ_OV_MSE_STEPS) t->grid.mse_steps = o->grid.mse_steps;
    if (s & RQ_OV_OFFSET) t->grid.offset = o->grid.offset;
    if (s & RQ_OV_ROUND) t->grid.round = o->grid.round;
    if (s & RQ_OV_NOISE) t->grid.noise = o->grid.noise;
    if (s & RQ_OV_BINRES) t->grid.binres = o->grid.binres;
    if (s & RQ_OV_SALIENT) t->grid.salient_frac = o->grid.salient_frac;
    if (s & RQ_OV_DAMP) t->gptq.damp = o->gptq.damp;
    if (s & RQ_OV_BLOCK) t->gptq.block = o->gptq.block;
    if (s & RQ_OV_ACT_ORDER) t->gptq.act_order = o->gptq.act_order;
    if (s & RQ_OV_STATIC) t->gptq.static_groups = o->gptq.static_groups;
    if (s & RQ_OV_REPLICATE) t->rep = o->rep;
}

#define TENSOR_KEYS                                                                                                    \
    "method, bits, sym, group, mse, mse_min, mse_steps, offset, round, noise, binres, salient_frac, damp, block, "     \
    "act_order, static_groups, replicate"

/* ---- sections -------------------------------------------------------------------- */

static int parse_calib(const char *src, const cJSON *obj, rq_recipe *r) {
    if (!cJSON_IsObject(obj)) return rq_fail("%s: 'calib' must be an object, got %s", src, type_name(obj));
    if (check_dups(src, "calib", obj)) return -1;
    for (const cJSON *j = obj->child; j; j = j->next) {
        double d;
        int e;
        if (!strcmp(j->string, "n")) {
            if (get_int(src, "calib.n", j, 1, 1 << 20, "(1..1048576)", &d)) return -1;
            r->calib_n = (int)d;
        } else if (!strcmp(j->string, "len")) {
            if (get_int(src, "calib.len", j, 16, 1 << 20, "(16..1048576)", &d)) return -1;
            r->calib_len = (int)d;
        } else if (!strcmp(j->string, "feed")) {
            if (get_enum(src, "calib.feed", j, FEED_NAMES, 2, &e)) return -1;
            r->calib_feed_ref = e == 1;
        } else if (!strcmp(j->string, "true_sequential")) {
            if (get_bool(src, "calib.true_sequential", j, &r->calib_true_seq)) return -1;
        } else
            return unknown_key(src, "calib", j->string, "n, len, feed, true_sequential");
    }
    return 0;
}

static int parse_act(const char *src, const cJSON *obj, rq_recipe *r) {
    if (!cJSON_IsObject(obj)) return rq_fail("%s: 'act' must be an object, got %s", src, type_name(obj));
    if (check_dups(src, "act", obj)) return -1;
    for (const cJSON *j = obj->child; j; j = j->next) {
        int e;
        if (!strcmp(j->string, "bits")) {
            if (get_act_bits(src, "act.bits", j, &r->act.a_bits)) return -1;
        } else if (!strcmp(j->string, "clip")) {
            if (get_float(src, "act.clip", j, in_0_1_closed, "(0, 1]", &r->act.a_clip)) return -1;
        } else if (!strcmp(j->string, "f16")) {
            if (get_enum(src, "act.f16", j, F16_NAMES, 2, &e)) return -1;
            r->act.a_bf16 = e == 1;
        } else
            return unknown_key(src, "act", j->string, "bits, clip, f16");
    }
    return 0;
}

static int parse_kv(const char *src, const cJSON *obj, rq_recipe *r) {
    if (!cJSON_IsObject(obj)) return rq_fail("%s: 'kv' must be an object, got %s", src, type_name(obj));
    if (check_dups(src, "kv", obj)) return -1;
    for (const cJSON *j = obj->child; j; j = j->next) {
        if (!strcmp(j->string, "bits")) {
            if (get_act_bits(src, "kv.bits", j, &r->act.kv_bits)) return -1;
        } else if (!strcmp(j->string, "unbias")) {
            if (get_bool(src, "kv.unbias", j, &r->act.kv_unbias)) return -1;
        } else
            return unknown_key(src, "kv", j->string, "bits, unbias");
    }
    return 0;
}

/* "mlp_train": {"steps", "batch", "eval_every", "lr", "holdout", "seed", "target", "o_proj"}, or null (off). */
static int parse_mlp_train(const char *src, const cJSON *obj, rq_recipe *r) {
    r->mlp_train = rq_mlptrain_default();
    r->mlp_train_on = !cJSON_IsNull(obj);
    if (!r->mlp_train_on) return 0;
    if (!cJSON_IsObject(obj)) return rq_fail("%s: 'mlp_train' must be an object or null, got %s", src, type_name(obj));
    if (check_dups(src, "mlp_train", obj)) return -1;
    rq_mlptrain_opts *t = &r->mlp_train;
    for (const cJSON *j = obj->child; j; j = j->next) {
        double d;
        char k2[96];
        snprintf(k2, sizeof k2, "mlp_train.%s", j->string);
        if (!strcmp(j->string, "steps")) {
            if (get_int(src, k2, j, 0, 1 << 20, "(0..1048576)", &d)) return -1;
            t->steps = (int)d;
        } else if (!strcmp(j->string, "batch")) {
            if (get_int(src, k2, j, 1, 1 << 20, "(1..1048576)", &d)) return -1;
            t->batch = (int)d;
        } else if (!strcmp(j->string, "eval_every")) {
            if (get_int(src, k2, j, 1, 1 << 20, "(1..1048576)", &d)) return -1;
            t->eval_every = (int)d;
        } else if (!strcmp(j->string, "lr")) {
            if (get_float(src, k2, j, in_0_1_closed, "(0, 1]", &t->lr)) return -1;
        } else if (!strcmp(j->string, "holdout")) {
            if (get_float(src, k2, j, in_0_1_open, "(0, 1)", &t->holdout)) return -1;
        } else if (!strcmp(j->string, "seed")) {
            if (get_int(src, k2, j, 0, 9007199254740992.0, "(0..2^53)", &d)) return -1;
            t->seed = (uint64_t)d;
        } else if (!strcmp(j->string, "target")) {
            int e;
            if (get_enum(src, k2, j, TARGET_NAMES, 3, &e)) return -1;
            t->target = (rq_mlp_target)e;
        } else if (!strcmp(j->string, "o_proj")) {
            if (get_bool(src, k2, j, &t->o_proj)) return -1;
        } else
            return unknown_key(src, "mlp_train", j->string,
                               "steps, batch, eval_every, lr, holdout, seed, target, o_proj");
    }
    return 0;
}

static int parse_override(const char *src, int idx, const cJSON *obj, rq_override *v) {
    char where[32];
    snprintf(where, sizeof where, "overrides[%d]", idx);
    memset(v, 0, sizeof *v);
    if (!cJSON_IsObject(obj)) return rq_fail("%s: '%s' must be an object, got %s", src, where, type_name(obj));
    if (check_dups(src, where, obj)) return -1;
    bool have_pattern = false;
    for (const cJSON *j = obj->child; j; j = j->next) {
        if (!strcmp(j->string, "pattern")) {
            if (!cJSON_IsString(j))
                return rq_fail("%s: '%s.pattern' must be a string, got %s", src, where, type_name(j));
            size_t n = strlen(j->valuestring);
            if (n == 0 || n >= sizeof v->pattern)
                return rq_fail("%s: '%s.pattern' must hold 1 to %zu characters (has %zu)", src, where,
                               sizeof v->pattern - 1, n);
            memcpy(v->pattern, j->valuestring, n + 1);
            have_pattern = true;
            continue;
        }
        int k = parse_tensor_key(src, where, j, &v->r, &v->set);
        if (k < 0) return -1;
        if (k == 0) return unknown_key(src, where, j->string, "pattern, " TENSOR_KEYS);
    }
    if (!have_pattern)
        return rq_fail("%s: %s has no 'pattern' (a glob over GGUF tensor names, e.g. \"blk.*.ffn_down.weight\")", src,
                       where);
    if (!v->set) return rq_fail("%s: %s ('%s') sets nothing besides 'pattern'", src, where, v->pattern);
    return 0;
}

static int parse_root(const char *src, const cJSON *root, rq_recipe *r) {
    if (!cJSON_IsObject(root)) return rq_fail("%s: the recipe must be a JSON object, got %s", src, type_name(root));
    if (check_dups(src, "", root)) return -1;
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "repliq_recipe");
    if (!ver)
        return rq_fail("%s: no 'repliq_recipe' key (the format version, %d for this build): is this a repliq recipe?",
                       src, RQ_RECIPE_VERSION);
    double d;
    if (get_int(src, "repliq_recipe", ver, 1, (double)INT_MAX, "(a format version >= 1)", &d)) return -1;
    if (d > RQ_RECIPE_VERSION)
        return rq_fail("%s: recipe version %d is newer than this build reads (%d); update repliq", src, (int)d,
                       RQ_RECIPE_VERSION);
    r->version = (int)d;
    uint32_t base_set = 0;
    for (const cJSON *j = root->child; j; j = j->next) {
        const char *k = j->string;
        if (!strcmp(k, "repliq_recipe")) continue;
        if (!strcmp(k, "name")) {
            if (!cJSON_IsString(j)) return rq_fail("%s: 'name' must be a string, got %s", src, type_name(j));
            size_t n = strlen(j->valuestring);
            if (n >= sizeof r->name)
                return rq_fail("%s: 'name' is %zu characters long, at most %zu", src, n, sizeof r->name - 1);
            memcpy(r->name, j->valuestring, n + 1);
        } else if (!strcmp(k, "seed")) {
            /* integers above 2^53 would not survive JSON's doubles */
            if (get_int(src, "seed", j, 0, 9007199254740992.0, "(0..2^53)", &d)) return -1;
            r->seed = (uint64_t)d;
        } else if (!strcmp(k, "calib")) {
            if (parse_calib(src, j, r)) return -1;
        } else if (!strcmp(k, "act")) {
            if (parse_act(src, j, r)) return -1;
        } else if (!strcmp(k, "kv")) {
            if (parse_kv(src, j, r)) return -1;
        } else if (!strcmp(k, "mlp_train")) {
            if (parse_mlp_train(src, j, r)) return -1;
        } else if (!strcmp(k, "overrides")) {
            if (!cJSON_IsArray(j)) return rq_fail("%s: 'overrides' must be an array, got %s", src, type_name(j));
            int n = cJSON_GetArraySize(j);
            free(r->ov);
            r->ov = n ? rq_calloc((size_t)n, sizeof *r->ov) : NULL;
            r->n_ov = 0;
            for (const cJSON *o = j->child; o; o = o->next, r->n_ov++)
                if (parse_override(src, r->n_ov, o, &r->ov[r->n_ov])) return -1;
        } else {
            int t = parse_tensor_key(src, "", j, &r->base, &base_set);
            if (t < 0) return -1;
            if (t == 0)
                return unknown_key(src, "", k,
                                   "repliq_recipe, name, seed, calib, act, kv, mlp_train, overrides, " TENSOR_KEYS);
        }
    }
    /* fields that only make sense together (binres needs 1 bit, ...) */
    if (r->mlp_train_on && r->mlp_train.target != RQ_MLP_TARGET_MLP && !r->calib_true_seq)
        return rq_fail("%s: 'mlp_train.target' = '%s' needs \"calib\": {\"true_sequential\": true} (the target is "
                       "taken after the block's quantized attention, which only that order collects)",
                       src, TARGET_NAMES[r->mlp_train.target]);
    if (r->mlp_train_on && r->mlp_train.o_proj && r->mlp_train.target == RQ_MLP_TARGET_MLP)
        return rq_fail("%s: 'mlp_train.o_proj' trains the attention's output projection towards the block's output; "
                       "set 'mlp_train.target' to \"block\" or \"model\"",
                       src);
    if (rq_grid_check(&r->base.grid)) return rq_fail_ctx("%s: top-level grid", src);
    for (int i = 0; i < r->n_ov; i++) {
        rq_tensor_recipe t = r->base;
        apply_override(&r->ov[i], &t);
        if (rq_grid_check(&t.grid))
            return rq_fail_ctx("%s: overrides[%d] ('%s') on the top-level grid", src, i, r->ov[i].pattern);
    }
    return 0;
}

int rq_recipe_parse(const char *json, const char *src, rq_recipe *r) {
    rq_recipe_default(r);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root) {
        int line = 1, col = 1;
        if (end)
            for (const char *p = json; p < end && *p; p++, col++)
                if (*p == '\n') line++, col = 0;
        return rq_fail("%s: malformed JSON at line %d, column %d (near '%.24s')", src, line, col, end ? end : "");
    }
    int rc = parse_root(src, root, r);
    cJSON_Delete(root);
    if (rc) {
        rq_recipe_free(r);
        rq_recipe_default(r);
    }
    return rc;
}

int rq_recipe_load(const char *path, rq_recipe *r) {
    char *text;
    size_t len;
    rq_recipe_default(r);
    if (rq_read_file(path, &text, &len)) return rq_fail_ctx("recipe");
    if (strlen(text) != len) {
        free(text);
        return rq_fail("%s: holds a NUL byte: not a JSON recipe", path);
    }
    int rc = rq_recipe_parse(text, path, r);
    free(text);
    return rc;
}

/* ---- per tensor ------------------------------------------------------------------ */

void rq_recipe_for_tensor(const rq_recipe *r, const char *name, rq_tensor_recipe *out) {
    /* other tensors keep the base grid and options, so an override that only sets
     * "method" quantizes them like the blocks */
    *out = r->base;
    if (!rq_is_block_linear(name)) out->method = RQ_METHOD_KEEP;
    for (int i = 0; i < r->n_ov; i++)
        if (fnmatch(r->ov[i].pattern, name, 0) == 0) apply_override(&r->ov[i], out);
}

/* ---- canonical JSON ---------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        b->cap = b->cap * 2 + (k > 0 ? (size_t)k : 64);
        b->p = rq_realloc(b->p, b->cap);
    }
}

static void sb_string(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            sb_printf(b, "\\%c", *c);
        else if (*c < 0x20)
            sb_printf(b, "\\u%04x", *c);
        else
            sb_printf(b, "%c", *c);
    }
    sb_printf(b, "\"");
}

/* The shortest decimal that reads back (through a double, as cJSON reads) as f. */
static void sb_float(sbuf *b, float f) {
    if (!isfinite(f)) {
        sb_printf(b, "null");
        return;
    }
    if (f == 0.0f) f = 0.0f; /* no "-0" */
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    sb_printf(b, "%s", buf);
}

static const char *bool_s(bool v) { return v ? "true" : "false"; }

/* The fields of t named by set, in canonical order, each preceded by sep. */
static void sb_tensor(sbuf *b, const rq_tensor_recipe *t, uint32_t set, const char *sep) {
    const rq_grid *g = &t->grid;
    const rq_gptq_opts *o = &t->gptq;
    for (size_t i = 0; i < N_TKEYS; i++) {
        if (!(set & TKEYS[i].bit)) continue;
        /* the base leaves replication out when it is off, so that recipes from
         * before it have the same canonical text (and output files) as before */
        if (TKEYS[i].bit == RQ_OV_REPLICATE && set == RQ_OV_ALL && t->rep.K == 0) continue;
        sb_printf(b, "%s\"%s\": ", sep, TKEYS[i].key);
        switch (TKEYS[i].bit) {
        case RQ_OV_METHOD:
            sb_printf(b, "\"%s\"", (unsigned)t->method < 3 ? METHOD_NAMES[t->method] : "invalid");
            break;
        case RQ_OV_BITS:
            sb_printf(b, "%d", g->bits);
            break;
        case RQ_OV_SYM:
            sb_printf(b, "%s", bool_s(g->sym));
            break;
        case RQ_OV_GROUP:
            sb_printf(b, "%lld", (long long)g->group);
            break;
        case RQ_OV_MSE:
            sb_printf(b, "%s", bool_s(g->mse));
            break;
        case RQ_OV_MSE_MIN:
            sb_float(b, g->mse_min);
            break;
        case RQ_OV_MSE_STEPS:
            sb_printf(b, "%d", g->mse_steps);
            break;
        case RQ_OV_OFFSET:
            sb_float(b, g->offset);
            break;
        case RQ_OV_ROUND:
            sb_printf(b, "\"%s\"", (unsigned)g->round < 2 ? ROUND_NAMES[g->round] : "invalid");
            break;
        case RQ_OV_NOISE:
            sb_float(b, g->noise);
            break;
        case RQ_OV_BINRES:
            sb_printf(b, "%s", bool_s(g->binres));
            break;
        case RQ_OV_SALIENT:
            sb_float(b, g->salient_frac);
            break;
        case RQ_OV_DAMP:
            sb_float(b, o->damp);
            break;
        case RQ_OV_BLOCK:
            sb_printf(b, "%d", o->block);
            break;
        case RQ_OV_ACT_ORDER:
            sb_printf(b, "%s", bool_s(o->act_order));
            break;
        case RQ_OV_STATIC:
            sb_printf(b, "%s", bool_s(o->static_groups));
            break;
        case RQ_OV_REPLICATE: {
            const rq_rep_opts *p = &t->rep;
            if (p->K == 0) {
                sb_printf(b, "null");
                break;
            }
            sb_printf(b, "{\"k\": %d, \"vary\": [", p->K);
            const char *sep2 = "";
            if (p->vary_out) sb_printf(b, "%s\"out\"", sep2), sep2 = ", ";
            if (p->vary_in) sb_printf(b, "%s\"in\"", sep2), sep2 = ", ";
            if (p->vary_offset) sb_printf(b, "%s\"offset\"", sep2), sep2 = ", ";
            if (p->vary_rot) sb_printf(b, "%s\"rotation\"", sep2);
            sb_printf(b, "], \"iters\": %d, \"spread\": ", p->iters);
            sb_float(b, p->init_spread);
            sb_printf(b, ", \"seed\": %llu, \"combine\": \"%s\"}", (unsigned long long)p->seed,
                      p->combine == RQ_REP_COMBINE_MLP ? "mlp" : "linear");
            break;
        }
        }
    }
}

char *rq_recipe_to_json(const rq_recipe *r) {
    sbuf b = {rq_malloc(1024), 0, 1024};
    b.p[0] = 0;
    sb_printf(&b, "{\n  \"repliq_recipe\": %d,\n  \"name\": ", RQ_RECIPE_VERSION);
    sb_string(&b, r->name);
    sb_tensor(&b, &r->base, RQ_OV_ALL, ",\n  ");
    sb_printf(&b, ",\n  \"seed\": %llu", (unsigned long long)r->seed);
    sb_printf(&b, ",\n  \"calib\": {\"n\": %d, \"len\": %d, \"feed\": \"%s\"%s}", r->calib_n, r->calib_len,
              FEED_NAMES[r->calib_feed_ref], r->calib_true_seq ? ", \"true_sequential\": true" : "");
    sb_printf(&b, ",\n  \"act\": {\"bits\": %d, \"clip\": ", r->act.a_bits);
    sb_float(&b, r->act.a_clip);
    sb_printf(&b, ", \"f16\": \"%s\"}", F16_NAMES[r->act.a_bf16]);
    sb_printf(&b, ",\n  \"kv\": {\"bits\": %d%s}", r->act.kv_bits,
              r->act.kv_unbias ? ", \"unbias\": true" : ""); /* left out when false: older outputs unchanged */
    if (r->mlp_train_on) { /* left out when off, as replicate is */
        const rq_mlptrain_opts *t = &r->mlp_train;
        sb_printf(&b, ",\n  \"mlp_train\": {\"steps\": %d, \"batch\": %d, \"eval_every\": %d, \"lr\": ", t->steps,
                  t->batch, t->eval_every);
        sb_float(&b, t->lr);
        sb_printf(&b, ", \"holdout\": ");
        sb_float(&b, t->holdout);
        sb_printf(&b, ", \"seed\": %llu", (unsigned long long)t->seed);
        if (t->target != RQ_MLP_TARGET_MLP) sb_printf(&b, ", \"target\": \"%s\"", TARGET_NAMES[t->target]);
        if (t->o_proj) sb_printf(&b, ", \"o_proj\": true");
        sb_printf(&b, "}");
    }
    sb_printf(&b, ",\n  \"overrides\": [");
    for (int i = 0; i < r->n_ov; i++) {
        sb_printf(&b, "%s\n    {\"pattern\": ", i ? "," : "");
        sb_string(&b, r->ov[i].pattern);
        sb_tensor(&b, &r->ov[i].r, r->ov[i].set, ", ");
        sb_printf(&b, "}");
    }
    sb_printf(&b, "%s]\n}\n", r->n_ov ? "\n  " : "");
    return b.p;
}
