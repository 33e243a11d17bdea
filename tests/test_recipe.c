/* test_recipe.c - recipe files: a good recipe parses, every refusal names its key,
 * overrides resolve in order, canonical JSON round-trips, and recipes/ all parse. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recipe.h"
#include "rq_test.h"
#include "util.h"

#ifndef RQ_SOURCE_DIR
#define RQ_SOURCE_DIR "."
#endif

static const char *GOOD =
    "{\"repliq_recipe\": 1, \"name\": \"w2g64-gptq\", \"method\": \"gptq\", \"bits\": 2, \"sym\": false,\n"
    " \"group\": 64, \"mse\": true, \"mse_min\": 0.4, \"mse_steps\": 30, \"offset\": 0.25,\n"
    " \"round\": \"stochastic\", \"noise\": 0.1, \"damp\": 0.05, \"block\": 64, \"act_order\": true,\n"
    " \"static_groups\": true, \"seed\": 1234,\n"
    " \"calib\": {\"n\": 4, \"len\": 512, \"feed\": \"reference\", \"true_sequential\": true},\n"
    " \"act\": {\"bits\": 8, \"clip\": 0.9, \"f16\": \"bf16\"}, \"kv\": {\"bits\": 4, \"unbias\": true},\n"
    " \"overrides\": [{\"pattern\": \"token_embd.weight\", \"method\": \"keep\"},\n"
    "               {\"pattern\": \"blk.*.ffn_down.weight\", \"bits\": 3, \"group\": 64},\n"
    "               {\"pattern\": \"blk.0.*\", \"bits\": 4, \"mse\": false},\n"
    "               {\"pattern\": \"output.weight\", \"method\": \"rtn\", \"bits\": 8, \"group\": \"per_channel\"}]}";

static void test_parse_good(void) {
    rq_recipe r;
    REQUIRE(rq_recipe_parse(GOOD, "good.json", &r) == 0);
    CHECK(r.version == 1 && !strcmp(r.name, "w2g64-gptq"));
    CHECK(r.base.method == RQ_METHOD_GPTQ && r.base.grid.bits == 2 && !r.base.grid.sym && r.base.grid.group == 64);
    CHECK(r.base.grid.mse && r.base.grid.mse_min == 0.4f && r.base.grid.mse_steps == 30);
    CHECK(r.base.grid.offset == 0.25f && r.base.grid.round == RQ_ROUND_STOCHASTIC && r.base.grid.noise == 0.1f);
    CHECK(r.base.gptq.damp == 0.05f && r.base.gptq.block == 64 && r.base.gptq.act_order && r.base.gptq.static_groups);
    CHECK(r.seed == 1234 && r.calib_n == 4 && r.calib_len == 512 && r.calib_feed_ref && r.calib_true_seq);
    CHECK(r.act.a_bits == 8 && r.act.a_clip == 0.9f && r.act.a_bf16 && r.act.kv_bits == 4 && r.act.kv_unbias);
    REQUIRE(r.n_ov == 4);
    CHECK(!strcmp(r.ov[1].pattern, "blk.*.ffn_down.weight") && r.ov[1].set == (RQ_OV_BITS | RQ_OV_GROUP));
    CHECK(r.ov[3].r.grid.group == 0 && r.ov[3].set == (RQ_OV_METHOD | RQ_OV_BITS | RQ_OV_GROUP));
    rq_recipe_free(&r);

    /* an empty recipe (version only) is the defaults */
    REQUIRE(rq_recipe_parse("{\"repliq_recipe\": 1}", "min.json", &r) == 0);
    rq_grid g = rq_grid_default();
    CHECK(r.base.method == RQ_METHOD_GPTQ && r.base.grid.bits == g.bits && r.base.grid.group == g.group);
    CHECK(r.base.gptq.damp == 0.01f && r.base.gptq.block == 128 && !r.base.gptq.act_order);
    /* recipe.c repeats the quantizer's GPTQ defaults: they must agree */
    rq_gptq_opts o = rq_gptq_opts_default();
    CHECK(r.base.gptq.damp == o.damp && r.base.gptq.block == o.block && r.base.gptq.act_order == o.act_order &&
          r.base.gptq.static_groups == o.static_groups);
    CHECK(r.seed == 0 && r.calib_n == 8 && r.calib_len == 2048 && !r.calib_feed_ref && !r.calib_true_seq);
    CHECK(r.act.a_bits == 0 && r.act.a_clip == 1.0f && r.act.kv_bits == 0 && !r.act.kv_unbias && r.n_ov == 0);
    rq_recipe_free(&r);
}

/* text must be refused with a message holding every one of the substrings. */
static void refused(const char *text, const char *want1, const char *want2) {
    rq_recipe r;
    int rc = rq_recipe_parse(text, "recipe.json", &r);
    CHECKF(rc != 0, "accepted: %s", text);
    if (rc == 0) {
        rq_recipe_free(&r);
        return;
    }
    const char *e = rq_error();
    CHECKF(strstr(e, want1) && (!want2 || strstr(e, want2)), "message '%s' lacks '%s' / '%s'", e, want1,
           want2 ? want2 : "");
    CHECK(r.ov == NULL && r.n_ov == 0); /* left as the defaults */
}

#define V "{\"repliq_recipe\": 1, "
static void test_refusals(void) {
    refused(V "\"overrides\": [{\"pattern\": \"a\", \"bits\": 2}, {\"pattern\": \"b\", \"grop\": 64}]}",
            "recipe.json: unknown key 'grop' in overrides[1]", NULL);
    refused(V "\"grop\": 64}", "unknown key 'grop' at the top level", "known keys:");
    refused(V "\"calib\": {\"n\": 4, \"lenght\": 5}}", "unknown key 'lenght' in calib", NULL);
    refused(V "\"act\": {\"bits\": 8, \"kv\": 4}}", "unknown key 'kv' in act", NULL);
    refused(V "\"kv\": {\"bits\": 4, \"clip\": 1}}", "unknown key 'clip' in kv", "bits, unbias");
    refused(V "\"bits\": 0}", "recipe.json: 'bits' = 0 is out of range (1..8)", NULL);
    refused(V "\"bits\": 9}", "'bits' = 9 is out of range (1..8)", NULL);
    refused(V "\"bits\": 2.5}", "'bits' must be an integer", NULL);
    refused(V "\"bits\": \"4\"}", "'bits' must be an integer, got a string", NULL);
    refused(V "\"group\": -1}", "'group' = -1", NULL);
    refused(V "\"group\": \"per_row\"}", "'group'", "per_channel");
    refused(V "\"damp\": -0.01}", "'damp' = -0.01", "out of range");
    refused(V "\"sym\": 1}", "'sym' must be true or false, got a number", NULL);
    refused(V "\"method\": \"awq\"}", "'method' = 'awq' is not one of", "'gptq'");
    refused(V "\"round\": \"up\"}", "'round'", NULL);
    refused(V "\"mse_min\": 0}", "'mse_min' = 0", "(0, 1]");
    refused(V "\"mse_steps\": 0}", "'mse_steps' = 0", NULL);
    refused(V "\"offset\": 0.75}", "'offset' = 0.75", NULL);
    refused(V "\"noise\": -1}", "'noise' = -1", NULL);
    refused(V "\"salient_frac\": 1}", "'salient_frac' = 1", NULL);
    refused(V "\"block\": 0}", "'block' = 0", NULL);
    refused(V "\"seed\": -1}", "'seed' = -1", NULL);
    refused(V "\"seed\": \"x\"}", "'seed' must be an integer", NULL);
    refused(V "\"name\": 3}", "'name' must be a string", NULL);
    refused(V "\"calib\": {\"n\": 0}}", "'calib.n' = 0", NULL);
    refused(V "\"calib\": {\"len\": 8}}", "'calib.len' = 8", NULL);
    refused(V "\"calib\": {\"feed\": \"fp\"}}", "'calib.feed' = 'fp'", NULL);
    refused(V "\"calib\": []}", "'calib' must be an object, got an array", NULL);
    refused(V "\"calib\": {\"true_sequential\": 1}}", "'calib.true_sequential' must be true or false", NULL);
    refused(V "\"calib\": {\"sequential\": true}}", "unknown key 'sequential' in calib", "true_sequential");
    refused(V "\"act\": {\"bits\": 1}}", "'act.bits' = 1", NULL);
    refused(V "\"act\": {\"bits\": 12}}", "'act.bits' = 12", NULL);
    refused(V "\"act\": {\"clip\": 1.5}}", "'act.clip' = 1.5", NULL);
    refused(V "\"act\": {\"f16\": \"fp16\"}}", "'act.f16'", NULL);
    refused(V "\"kv\": {\"bits\": 1}}", "'kv.bits' = 1", NULL);
    refused(V "\"kv\": {\"bits\": 4, \"unbias\": 1}}", "'kv.unbias' must be true or false", NULL);
    refused(V "\"overrides\": {}}", "'overrides' must be an array, got an object", NULL);
    refused(V "\"overrides\": [\"x\"]}", "'overrides[0]' must be an object", NULL);
    refused(V "\"overrides\": [{\"bits\": 3}]}", "overrides[0] has no 'pattern'", NULL);
    refused(V "\"overrides\": [{\"pattern\": \"x\"}]}", "sets nothing", NULL);
    refused(V "\"overrides\": [{\"pattern\": \"x\", \"bits\": 0}]}", "'overrides[0].bits' = 0 is out of range", NULL);
    refused(V "\"overrides\": [{\"pattern\": \"x\", \"damp\": -2}]}", "'overrides[0].damp'", NULL);
    refused(V "\"bits\": 4, \"bits\": 3}", "key 'bits' appears twice", NULL);
    /* cross-field checks by rq_grid_check, with the place they come from */
    refused(V "\"bits\": 2, \"binres\": true}", "recipe.json: top-level grid: binres needs bits = 1", NULL);
    refused(V "\"bits\": 1, \"binres\": true, \"overrides\": [{\"pattern\": \"blk.0.*\", \"bits\": 2}]}",
            "overrides[0] ('blk.0.*')", "binres needs bits = 1");
    /* version */
    refused("{\"repliq_recipe\": 2, \"bits\": 4}", "recipe version 2 is newer than this build reads (1)", NULL);
    refused("{\"bits\": 4}", "no 'repliq_recipe' key", NULL);
    refused("{\"repliq_recipe\": 0}", "'repliq_recipe' = 0", NULL);
    refused("[1, 2]", "must be a JSON object, got an array", NULL);
    /* malformed JSON, with its position */
    refused("{\"repliq_recipe\": 1,\n \"bits\": 4,,\n}", "malformed JSON at line 2, column", NULL);
    refused("{\"repliq_recipe\": 1} trailing", "malformed JSON at line 1", NULL);
}

/* load from a missing file names the path */
static void test_load_missing(void) {
    rq_recipe r;
    CHECK(rq_recipe_load("/nonexistent/rq.json", &r) != 0 && strstr(rq_error(), "/nonexistent/rq.json"));
}

static void test_overrides(void) {
    rq_recipe r;
    REQUIRE(rq_recipe_parse(GOOD, "good.json", &r) == 0);
    rq_tensor_recipe t;
    /* block linear weight, no override */
    rq_recipe_for_tensor(&r, "blk.3.attn_q.weight", &t);
    CHECK(t.method == RQ_METHOD_GPTQ && t.grid.bits == 2 && t.grid.group == 64 && t.grid.mse);
    /* ffn_down: bits 3, rest from base */
    rq_recipe_for_tensor(&r, "blk.3.ffn_down.weight", &t);
    CHECK(t.method == RQ_METHOD_GPTQ && t.grid.bits == 3 && t.grid.group == 64 && t.grid.mse && t.gptq.damp == 0.05f);
    /* blk.0.ffn_down: override 1 then 2, the later one wins on bits */
    rq_recipe_for_tensor(&r, "blk.0.ffn_down.weight", &t);
    CHECK(t.method == RQ_METHOD_GPTQ && t.grid.bits == 4 && !t.grid.mse && t.grid.group == 64);
    /* non-linear tensors start from keep, even when a block pattern matches them */
    rq_recipe_for_tensor(&r, "blk.0.attn_norm.weight", &t);
    CHECK(t.method == RQ_METHOD_KEEP && t.grid.bits == 4);
    rq_recipe_for_tensor(&r, "blk.12.attn_output.bias", &t);
    CHECK(t.method == RQ_METHOD_KEEP);
    rq_recipe_for_tensor(&r, "token_embd.weight", &t);
    CHECK(t.method == RQ_METHOD_KEEP);
    rq_recipe_for_tensor(&r, "blk.x.attn_q.weight", &t);
    CHECK(t.method == RQ_METHOD_KEEP);
    /* output: method set by an override, on the base grid with its own bits and group */
    rq_recipe_for_tensor(&r, "output.weight", &t);
    CHECK(t.method == RQ_METHOD_RTN && t.grid.bits == 8 && t.grid.group == 0 && t.grid.mse);
    static const char *const LIN[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int i = 0; i < 7; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.27.%s.weight", LIN[i]);
        rq_recipe_for_tensor(&r, name, &t);
        CHECKF(t.method == RQ_METHOD_GPTQ, "%s", name);
    }
    rq_recipe_free(&r);
}

static bool tensor_eq(const rq_tensor_recipe *a, const rq_tensor_recipe *b, uint32_t set) {
    const rq_grid *x = &a->grid, *y = &b->grid;
    bool eq = true;
    if (set & RQ_OV_METHOD) eq &= a->method == b->method;
    if (set & RQ_OV_BITS) eq &= x->bits == y->bits;
    if (set & RQ_OV_SYM) eq &= x->sym == y->sym;
    if (set & RQ_OV_GROUP) eq &= x->group == y->group;
    if (set & RQ_OV_MSE) eq &= x->mse == y->mse;
    if (set & RQ_OV_MSE_MIN) eq &= x->mse_min == y->mse_min;
    if (set & RQ_OV_MSE_STEPS) eq &= x->mse_steps == y->mse_steps;
    if (set & RQ_OV_OFFSET) eq &= x->offset == y->offset;
    if (set & RQ_OV_ROUND) eq &= x->round == y->round;
    if (set & RQ_OV_NOISE) eq &= x->noise == y->noise;
    if (set & RQ_OV_BINRES) eq &= x->binres == y->binres;
    if (set & RQ_OV_SALIENT) eq &= x->salient_frac == y->salient_frac;
    if (set & RQ_OV_DAMP) eq &= a->gptq.damp == b->gptq.damp;
    if (set & RQ_OV_BLOCK) eq &= a->gptq.block == b->gptq.block;
    if (set & RQ_OV_ACT_ORDER) eq &= a->gptq.act_order == b->gptq.act_order;
    if (set & RQ_OV_STATIC) eq &= a->gptq.static_groups == b->gptq.static_groups;
    const rq_rep_opts *p = &a->rep, *q = &b->rep;
    if ((set & RQ_OV_REPLICATE) && (p->K || q->K))
        eq &= p->K == q->K && p->vary_out == q->vary_out && p->vary_in == q->vary_in &&
              p->vary_offset == q->vary_offset && p->iters == q->iters && p->init_spread == q->init_spread &&
              p->seed == q->seed && p->combine == q->combine && p->vary_rot == q->vary_rot;
    return eq;
}

static bool recipe_eq(const rq_recipe *a, const rq_recipe *b) {
    bool eq =
        a->version == b->version && !strcmp(a->name, b->name) && tensor_eq(&a->base, &b->base, ~0u) &&
        a->seed == b->seed && a->calib_n == b->calib_n && a->calib_len == b->calib_len &&
        a->calib_feed_ref == b->calib_feed_ref && a->calib_true_seq == b->calib_true_seq &&
        a->act.a_bits == b->act.a_bits && a->act.a_clip == b->act.a_clip && a->act.a_bf16 == b->act.a_bf16 &&
        a->act.kv_bits == b->act.kv_bits && a->act.kv_unbias == b->act.kv_unbias && a->n_ov == b->n_ov &&
        a->mlp_train_on == b->mlp_train_on &&
        (!a->mlp_train_on || (a->mlp_train.steps == b->mlp_train.steps && a->mlp_train.batch == b->mlp_train.batch &&
                              a->mlp_train.eval_every == b->mlp_train.eval_every &&
                              a->mlp_train.lr == b->mlp_train.lr && a->mlp_train.target == b->mlp_train.target &&
                              a->mlp_train.holdout == b->mlp_train.holdout && a->mlp_train.seed == b->mlp_train.seed));
    for (int i = 0; eq && i < a->n_ov; i++)
        eq = !strcmp(a->ov[i].pattern, b->ov[i].pattern) && a->ov[i].set == b->ov[i].set &&
             tensor_eq(&a->ov[i].r, &b->ov[i].r, a->ov[i].set);
    return eq;
}

/* parse(to_json(r)) == r, and to_json is a fixed point */
static void round_trip(const rq_recipe *r, const char *what) {
    char *j1 = rq_recipe_to_json(r);
    rq_recipe r2;
    int rc = rq_recipe_parse(j1, what, &r2);
    CHECKF(rc == 0, "%s: %s\n%s", what, rq_error(), j1);
    if (rc == 0) {
        CHECKF(recipe_eq(r, &r2), "%s: differs after the round trip\n%s", what, j1);
        char *j2 = rq_recipe_to_json(&r2);
        CHECKF(!strcmp(j1, j2), "%s: canonical text changed\n%s\n%s", what, j1, j2);
        free(j2);
        rq_recipe_free(&r2);
    }
    free(j1);
}

static void test_round_trip(void) {
    rq_recipe r;
    rq_recipe_default(&r);
    round_trip(&r, "defaults");
    REQUIRE(rq_recipe_parse(GOOD, "good.json", &r) == 0);
    round_trip(&r, "good");
    /* values that print awkwardly in decimal, and a name that needs escaping */
    r.base.grid.mse_min = 1.0f / 3.0f;
    r.base.grid.noise = 1e-7f;
    r.base.gptq.damp = 0.1f;
    r.act.a_clip = 0.999f;
    r.seed = 9007199254740992ull;
    snprintf(r.name, sizeof r.name, "q\"uo\\te\ttab");
    round_trip(&r, "awkward");
    char *a = rq_recipe_to_json(&r), *b = rq_recipe_to_json(&r);
    CHECK(!strcmp(a, b));
    CHECKF(strstr(a, "\"damp\": 0.1,") != NULL, "%s", a);
    free(a);
    free(b);
    rq_recipe_free(&r);
}

/* the replicate key: parsed, resolved per tensor, written back, and refused with
 * the key's name when it cannot work (collapsing replicas among them) */
static void test_replicate(void) {
    rq_recipe r;
    const char *ok = "{\"repliq_recipe\": 1, \"bits\": 2, \"replicate\": {\"k\": 4, \"vary\": [\"out\", \"in\", "
                     "\"offset\"], \"iters\": 3, \"spread\": 0.5},"
                     " \"overrides\": [{\"pattern\": \"blk.0.*\", \"replicate\": {\"k\": 2}},"
                     " {\"pattern\": \"blk.1.*\", \"replicate\": null}]}";
    REQUIRE(rq_recipe_parse(ok, "t", &r) == 0);
    CHECK(r.base.rep.K == 4 && r.base.rep.vary_out && r.base.rep.vary_in && r.base.rep.vary_offset &&
          r.base.rep.iters == 3 && r.base.rep.init_spread == 0.5f);
    rq_tensor_recipe t;
    rq_recipe_for_tensor(&r, "blk.0.ffn_up.weight", &t);
    CHECK(t.rep.K == 2 && !t.rep.vary_offset && t.rep.iters == 4);
    rq_recipe_for_tensor(&r, "blk.1.ffn_up.weight", &t);
    CHECK(t.rep.K == 0);
    rq_recipe_for_tensor(&r, "blk.2.ffn_up.weight", &t);
    CHECK(t.rep.K == 4);
    round_trip(&r, "replicate");
    char *j = rq_recipe_to_json(&r);
    CHECKF(strstr(j, "\"replicate\": {\"k\": 4, \"vary\": [\"out\", \"in\", \"offset\"], \"iters\": 3") != NULL, "%s",
           j);
    free(j);
    rq_recipe_free(&r);
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 65}}", "'replicate.k'"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 4, \"vary\": [\"scale\"]}}", "one decoder"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 4, \"vary\": [\"out\", \"offset\"]}}", "one decoder"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 2, \"vary\": [\"rows\"]}}", "'rows'"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 2, \"combine\": \"block\"}}",
         "block-level combination is not built"},
        {"{\"repliq_recipe\": 1, \"mlp_train\": {\"steps\": -1}}", "'mlp_train.steps'"},
        {"{\"repliq_recipe\": 1, \"mlp_train\": {\"holdout\": 1}}", "'mlp_train.holdout'"},
        {"{\"repliq_recipe\": 1, \"mlp_train\": {\"lr\": 0}}", "'mlp_train.lr'"},
        {"{\"repliq_recipe\": 1, \"mlp_train\": {\"epochs\": 3}}", "'epochs' in mlp_train"},
        {"{\"repliq_recipe\": 1, \"mlp_train\": 5}", "object or null"},
        {"{\"repliq_recipe\": 1, \"mlp_train\": {\"target\": \"layer\"}}", "'mlp_train.target' = 'layer'"},
        {"{\"repliq_recipe\": 1, \"mlp_train\": {\"target\": \"block\"}}", "needs \"calib\": {\"true_sequential\""},
        {"{\"repliq_recipe\": 1, \"mlp_train\": {\"o_proj\": true}}", "'mlp_train.o_proj' trains"},
        {"{\"repliq_recipe\": 1, \"mlp_train\": {\"o_proj\": 1}}", "'mlp_train.o_proj'"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 1, \"combine\": \"mlp\"}}", "one path is one decoder"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 2, \"spread\": 0, \"combine\": \"mlp\"}}", "spread 0"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 2, \"kk\": 1}}", "'kk' in replicate"},
        {"{\"repliq_recipe\": 1, \"replicate\": 3}", "object or null"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 2, \"spread\": 2}}", "spread"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(rq_recipe_parse(bad[i].json, "t", &r) == -1 && strstr(rq_error(), bad[i].want), "%s -> %s", bad[i].json,
               rq_error());
        rq_recipe_free(&r);
    }
    /* paths after the MLP's nonlinearity and their training: parsed, kept in the canonical text */
    const char *mlp = "{\"repliq_recipe\": 1, \"bits\": 2, \"replicate\": {\"k\": 1},"
                      " \"overrides\": [{\"pattern\": \"blk.*.ffn_*\", \"replicate\": {\"k\": 2, \"vary\": [\"out\"],"
                      " \"combine\": \"mlp\"}}], \"mlp_train\": {\"steps\": 7, \"batch\": 64, \"lr\": 0.01}}";
    REQUIRE(rq_recipe_parse(mlp, "t", &r) == 0);
    rq_recipe_for_tensor(&r, "blk.3.ffn_down.weight", &t);
    CHECK(t.rep.K == 2 && t.rep.combine == RQ_REP_COMBINE_MLP); /* no collapse after the nonlinearity */
    rq_recipe_for_tensor(&r, "blk.3.attn_q.weight", &t);
    CHECK(t.rep.K == 1 && t.rep.combine == RQ_REP_COMBINE_LINEAR);
    CHECK(r.mlp_train_on && r.mlp_train.steps == 7 && r.mlp_train.batch == 64 && r.mlp_train.lr == 0.01f &&
          r.mlp_train.holdout == 0.125f);
    round_trip(&r, "mlp_train");
    j = rq_recipe_to_json(&r);
    CHECKF(strstr(j, "\"combine\": \"mlp\"") && strstr(j, "\"mlp_train\": {\"steps\": 7, \"batch\": 64"), "%s", j);
    free(j);
    rq_recipe_free(&r);
    /* a target other than the MLP's: parsed with true_sequential, kept in the canonical text */
    REQUIRE(rq_recipe_parse("{\"repliq_recipe\": 1, \"calib\": {\"true_sequential\": true}, \"mlp_train\": "
                            "{\"target\": \"model\", \"o_proj\": true}}",
                            "t", &r) == 0);
    CHECK(r.mlp_train.target == RQ_MLP_TARGET_MODEL && r.mlp_train.o_proj);
    round_trip(&r, "mlp_train target");
    j = rq_recipe_to_json(&r);
    CHECKF(strstr(j, "\"target\": \"model\", \"o_proj\": true") && strstr(j, "\"true_sequential\": true"), "%s", j);
    free(j);
    rq_recipe_free(&r);
    REQUIRE(rq_recipe_parse("{\"repliq_recipe\": 1, \"mlp_train\": null}", "t", &r) == 0);
    j = rq_recipe_to_json(&r);
    CHECK(!r.mlp_train_on && !strstr(j, "mlp_train")); /* off: left out of the canonical text */
    free(j);
    rq_recipe_free(&r);
    /* k = 1 may vary only the row factors: one decoder is what it is */
    CHECK(rq_recipe_parse("{\"repliq_recipe\": 1, \"replicate\": {\"k\": 1, \"vary\": [\"out\"]}}", "t", &r) == 0);
    rq_recipe_free(&r);
    /* a rotation ensemble: replicas in different bases are not one decoder, even with
     * row factors (or group scales) alone; it keeps "rotation" in the canonical text */
    REQUIRE(rq_recipe_parse("{\"repliq_recipe\": 1, \"replicate\": {\"k\": 2, \"vary\": [\"scale\", \"rotation\"]}}",
                            "t", &r) == 0);
    j = rq_recipe_to_json(&r);
    CHECKF(r.base.rep.vary_rot && r.base.rep.vary_out && strstr(j, "\"vary\": [\"out\", \"rotation\"]"), "%s", j);
    free(j);
    rq_recipe_free(&r);
    const char *bad_rot[][2] = {
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 1, \"vary\": [\"out\", \"rotation\"]}}", "k >= 2"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 2, \"vary\": [\"in\", \"rotation\"]}}", "\"out\""},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 2, \"vary\": [\"out\", \"rotation\"], \"iters\": 0}}",
         "iters 0"},
        {"{\"repliq_recipe\": 1, \"replicate\": {\"k\": 40, \"vary\": [\"out\", \"rotation\"], \"iters\": 10}}",
         "at most 5"},
    };
    for (int i = 0; i < 4; i++)
        CHECKF(rq_recipe_parse(bad_rot[i][0], "t", &r) == -1 && strstr(rq_error(), bad_rot[i][1]), "%d: %s", i,
               rq_error());
}

static void test_recipe_files(void) {
    const char *dir = RQ_SOURCE_DIR "/recipes";
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rq_recipe r;
        if (rq_recipe_load(path, &r)) {
            CHECKF(0, "%s", rq_error());
            continue;
        }
        n++;
        /* the name is the file name, so a result can be traced to its file */
        CHECKF(strlen(r.name) == l - 5 && !strncmp(r.name, e->d_name, l - 5), "%s has name '%s'", e->d_name, r.name);
        CHECKF(r.seed == 0 && r.calib_n == 8 && r.calib_len == 2048, "%s", e->d_name);
        bool is_1bit_sign = r.base.grid.bits == 1 && strcmp(r.name, "gptq-w1mean");
        /* QuaRot's grid (symmetric per channel, clip search), which replication starts from */
        bool quarot = strstr(r.name, "pc-sym") != NULL || !strncmp(r.name, "rep-", 4);
        int rk = 0, rb = 0;
        /* -mt: the MLP's k replicas summed and trained (mlp_train); -mlp: k paths after the
         * MLP's nonlinearity, trained; both with the attention layers at k = 1 */
        bool mlp = strstr(r.name, "-mlp") != NULL, mt = strstr(r.name, "-mt") != NULL;
        CHECKF(r.mlp_train_on == (mlp || mt), "%s: mlp_train %d", e->d_name, r.mlp_train_on);
        /* -block, -model: mlp_train's target */
        rq_mlp_target tg = strstr(r.name, "-block")   ? RQ_MLP_TARGET_BLOCK
                           : strstr(r.name, "-model") ? RQ_MLP_TARGET_MODEL
                                                      : RQ_MLP_TARGET_MLP;
        CHECKF(r.mlp_train.target == tg, "%s: mlp_train target %d", e->d_name, (int)r.mlp_train.target);
        /* -lite: the model target made affordable on Qwen (one alternation, 30 steps of 256) */
        if (strstr(r.name, "-lite")) {
            rq_tensor_recipe gate;
            rq_recipe_for_tensor(&r, "blk.0.ffn_gate.weight", &gate);
            CHECKF(r.base.rep.iters == 1 && gate.rep.iters == 1 && r.mlp_train.steps == 30 && r.mlp_train.batch == 256,
                   "%s: iters %d, steps %d, batch %d", e->d_name, gate.rep.iters, r.mlp_train.steps, r.mlp_train.batch);
        }
        /* -nofit: no alternation (per-row GPTQ's codes and scales, column factors 1), then the lite training */
        if (strstr(r.name, "-nofit")) {
            rq_tensor_recipe gate;
            rq_recipe_for_tensor(&r, "blk.0.ffn_gate.weight", &gate);
            CHECKF(r.base.rep.iters == 0 && gate.rep.iters == 0 && r.mlp_train.steps == 30 && r.mlp_train.batch == 256,
                   "%s: iters %d, steps %d, batch %d", e->d_name, gate.rep.iters, r.mlp_train.steps, r.mlp_train.batch);
        }
        /* -oproj: attn_output's factors trained with the MLP's */
        CHECKF(r.mlp_train.o_proj == (strstr(r.name, "-oproj") != NULL), "%s: o_proj %d", e->d_name,
               r.mlp_train.o_proj);
        /* -rot: replicas k >= 1 in their own input basis (a rotation ensemble) */
        CHECKF(r.base.rep.vary_rot == (strstr(r.name, "-rot") != NULL), "%s: rotation %d", e->d_name,
               r.base.rep.vary_rot);
        /* -sN: the replicas' seed (their rotations) is N */
        const char *sfx = strstr(r.name, "-rot-s");
        CHECKF(r.base.rep.seed == (sfx ? strtoull(sfx + 6, NULL, 10) : 0), "%s: replicate.seed %llu", e->d_name,
               (unsigned long long)r.base.rep.seed);
        /* -iN: N alternation rounds of the replicated fit; -lite 1, -nofit 0, otherwise 4 */
        const char *it = strstr(r.name, "-i");
        int iters = it && it[2] >= '0' && it[2] <= '9' ? atoi(it + 2)
                    : strstr(r.name, "-lite")          ? 1
                    : strstr(r.name, "-nofit")         ? 0
                                                       : 4;
        CHECKF(r.base.rep.K == 0 || r.base.rep.iters == iters, "%s: replicate.iters %d", e->d_name, r.base.rep.iters);
        /* -ts: GPTQ's true-sequential input collection */
        CHECKF(r.calib_true_seq == (strstr(r.name, "-ts") != NULL), "%s: true_sequential %d", e->d_name,
               r.calib_true_seq);
        /* -kv4: attn_k and attn_v at 4 bits (llama.cpp's low-bit mixes raise attn_v likewise) */
        rq_tensor_recipe tk, tv;
        rq_recipe_for_tensor(&r, "blk.3.attn_k.weight", &tk);
        rq_recipe_for_tensor(&r, "blk.3.attn_v.weight", &tv);
        bool kv4 = strstr(r.name, "-kv4") != NULL;
        CHECKF(kv4 ? tk.grid.bits == 4 && tv.grid.bits == 4
                   : tk.grid.bits == r.base.grid.bits && tv.grid.bits == r.base.grid.bits,
               "%s: attn_k %d bits, attn_v %d bits", e->d_name, tk.grid.bits, tv.grid.bits);
        /* -dN: the down projections at N bits (about IQ2_XS's bits on Qwen with N = 3: 29% of its weights) */
        rq_tensor_recipe td;
        rq_recipe_for_tensor(&r, "blk.13.ffn_down.weight", &td);
        const char *dn = strstr(r.name, "-d");
        int dbits = dn && dn[2] >= '1' && dn[2] <= '8' && !dn[3] ? dn[2] - '0' : r.base.grid.bits;
        CHECKF(td.grid.bits == dbits, "%s: ffn_down %d bits", e->d_name, td.grid.bits);
        /* -eN: the MLPs of blocks 0-9 at N bits (the early blocks, where SmolLM2's 2-bit loss is largest) */
        const char *en = strstr(r.name, "-e");
        int ebits = en && en[2] >= '1' && en[2] <= '8' && !en[3] ? en[2] - '0' : r.base.grid.bits;
        rq_tensor_recipe early, late;
        rq_recipe_for_tensor(&r, "blk.9.ffn_gate.weight", &early);
        rq_recipe_for_tensor(&r, "blk.10.ffn_gate.weight", &late);
        CHECKF(early.grid.bits == ebits && late.grid.bits == r.base.grid.bits,
               "%s: ffn_gate %d bits in blk.9, %d in blk.10", e->d_name, early.grid.bits, late.grid.bits);
        rq_tensor_recipe up;
        rq_recipe_for_tensor(&r, "blk.0.ffn_up.weight", &up);
        if (mlp || mt)
            CHECKF(sscanf(r.name, "rep-w%d-k%d", &rb, &rk) == 2 && up.rep.K == rk && r.base.grid.bits == rb &&
                       up.rep.combine == (mlp ? RQ_REP_COMBINE_MLP : RQ_REP_COMBINE_LINEAR) &&
                       r.base.rep.K == (r.base.rep.vary_rot ? rk : 1), /* a rotation ensemble everywhere */
                   "%s: MLP K %d", e->d_name, up.rep.K);
        else if (sscanf(r.name, "rep-w%d-k%d", &rb, &rk) == 2)
            CHECKF(r.base.rep.K == rk && up.rep.K == rk && r.base.grid.bits == rb && r.base.rep.vary_out &&
                       r.base.rep.vary_in == !strstr(r.name, "-rows"), /* -rows: row factors only */
                   "%s: K %d bits %d", e->d_name, r.base.rep.K, r.base.grid.bits);
        else if (strstr(r.name, "-adapt")) /* K per tensor by overrides (scripts/rep_adaptive.py) */
            CHECKF(r.base.rep.K >= 1 && r.n_ov > 0 && (r.ov[0].set & RQ_OV_REPLICATE), "%s", e->d_name);
        else
            CHECKF(r.base.rep.K == 0, "%s replicates", e->d_name);
        /* -sym: a symmetric grid with groups (gptq-w2g52-sym-ts-kv4: IQ2_XS's bits on Qwen) */
        CHECKF(r.base.grid.sym == (is_1bit_sign || quarot || strstr(r.name, "-sym") != NULL), "%s: sym %d",
               e->d_name, r.base.grid.sym);
        CHECKF(r.base.grid.mse == (r.base.grid.bits == 2 || r.base.grid.bits == 3 || quarot), "%s", e->d_name);
        CHECKF(!quarot || (r.base.grid.group == 0 && r.base.gptq.act_order), "%s", e->d_name);
        rq_tensor_recipe t;
        rq_recipe_for_tensor(&r, "token_embd.weight", &t);
        CHECK(t.method == RQ_METHOD_KEEP);
        rq_recipe_for_tensor(&r, "output.weight", &t);
        CHECK(t.method == RQ_METHOD_KEEP);
        round_trip(&r, e->d_name);
        rq_recipe_free(&r);
    }
    closedir(d);
    CHECKF(n == 68, "%d recipe files", n);
}

int main(void) {
    RUN(test_parse_good);
    RUN(test_replicate);
    RUN(test_refusals);
    RUN(test_load_missing);
    RUN(test_overrides);
    RUN(test_round_trip);
    RUN(test_recipe_files);
    TEST_EXIT();
}
