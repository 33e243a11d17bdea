/* cmd_rotate.c - repliq rotate: QuaRot-style rotation folded into the weights. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dfrot.h"
#include "forward.h"
#include "paths.h"
#include "rotate.h"
#include "util.h"

static int kind_arg(const char *cmd, const char *opt, const char *v) {
    if (!strcmp(v, "none")) return RQ_ROT_NONE;
    int k = rq_orth_kind_parse(v);
    if (k < 0) {
        fprintf(stderr, "repliq %s: %s '%s': expected hadamard, rh, ro or none\n", cmd, opt, v);
        exit(2);
    }
    return k;
}

/* A seed in 0 .. 2^63-1 (it is stored as a GGUF integer). */
static uint64_t seed_arg(const char *cmd, const char *v) {
    char *end;
    unsigned long long s = strtoull(v, &end, 10);
    if (!*v || *end || v[0] == '-' || s > (unsigned long long)INT64_MAX) {
        fprintf(stderr, "repliq %s: --seed '%s': expected an integer in 0 .. 2^63-1\n", cmd, v);
        exit(2);
    }
    return s;
}

static float float_arg(const char *cmd, const char *opt, const char *v, float lo, float hi) {
    char *end;
    float x = strtof(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "repliq %s: %s '%s': expected a number in [%g, %g]\n", cmd, opt, v, lo, hi);
        exit(2);
    }
    return x;
}

int cmd_rotate(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    rq_rot_opts o = {.r1 = RQ_ORTH_RH, .r2 = RQ_ORTH_RH, .r3 = RQ_ROT_NONE, .r4 = RQ_ROT_NONE, .seed = 0};
    int threads = 2, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m"))
            model = cli_val("rotate", argc, argv, &i);
        else if (!strcmp(a, "-o"))
            out = cli_val("rotate", argc, argv, &i);
        else if (!strcmp(a, "--r1"))
            o.r1 = kind_arg("rotate", a, cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "--r2"))
            o.r2 = kind_arg("rotate", a, cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "--r3"))
            o.r3 = kind_arg("rotate", a, cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "--r4"))
            o.r4 = kind_arg("rotate", a, cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "--online"))
            o.r3 = o.r4 = RQ_ORTH_HADAMARD;
        else if (!strcmp(a, "--seed"))
            o.seed = seed_arg("rotate", cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "-t"))
            threads = cli_int("rotate", a, cli_val("rotate", argc, argv, &i), 1);
        else if (!strcmp(a, "--quiet"))
            quiet = 1;
        else {
            fprintf(stderr, "repliq rotate: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!model || !out)
        return cli_die("rotate", "usage: repliq rotate -m MODEL -o OUT.gguf [--r1 K] [--r2 K] [--r3 K] [--r4 K] "
                                 "[--online] [--seed S] [-t N] [--quiet]; K: hadamard, rh, ro, none "
                                 "(default: --r1 rh --r2 rh, no online R3/R4)");
    char path[4096];
    if (rq_resolve_model(model, path, sizeof path)) return cli_die("rotate", rq_error());
    rq_set_threads(threads);
    double t0 = rq_time();
    if (rq_rotate_file(path, out, &o, !quiet)) return cli_die("rotate", rq_error());
    printf("wrote %s (R1 %s, R2 %s, R3 %s, R4 %s, seed %llu) in %.1fs\n", out,
           o.r1 == RQ_ROT_NONE ? "none" : rq_orth_kind_name(o.r1),
           o.r2 == RQ_ROT_NONE ? "none" : rq_orth_kind_name(o.r2),
           o.r3 == RQ_ROT_NONE ? "none" : rq_orth_kind_name(o.r3),
           o.r4 == RQ_ROT_NONE ? "none" : rq_orth_kind_name(o.r4), (unsigned long long)o.seed, rq_time() - t0);
    return 0;
}

/* repliq dfrot: DFRot's refined R1 (dfrot.h), then R2 / online R3 / R4 as rotate. */
int cmd_dfrot(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *calib = "c4-en-validation-sample-2000.jsonl.xz";
    rq_dfrot_opts o = rq_dfrot_defaults();
    int r2 = RQ_ORTH_RH, r3 = RQ_ROT_NONE, r4 = RQ_ROT_NONE, threads = 2;
    o.verbose = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m"))
            model = cli_val("dfrot", argc, argv, &i);
        else if (!strcmp(a, "-o"))
            out = cli_val("dfrot", argc, argv, &i);
        else if (!strcmp(a, "-f"))
            calib = cli_val("dfrot", argc, argv, &i);
        else if (!strcmp(a, "--gamma"))
            o.gamma = float_arg("dfrot", a, cli_val("dfrot", argc, argv, &i), 0.0f, 1e6f);
        else if (!strcmp(a, "--iters"))
            o.iters = cli_int("dfrot", a, cli_val("dfrot", argc, argv, &i), 0);
        else if (!strcmp(a, "--abits"))
            o.a_bits = cli_int("dfrot", a, cli_val("dfrot", argc, argv, &i), 2);
        else if (!strcmp(a, "--aclip"))
            o.a_clip = float_arg("dfrot", a, cli_val("dfrot", argc, argv, &i), 1e-3f, 1.0f);
        else if (!strcmp(a, "-L"))
            o.calib_len = cli_int("dfrot", a, cli_val("dfrot", argc, argv, &i), 16);
        else if (!strcmp(a, "--r2"))
            r2 = kind_arg("dfrot", a, cli_val("dfrot", argc, argv, &i));
        else if (!strcmp(a, "--r3"))
            r3 = kind_arg("dfrot", a, cli_val("dfrot", argc, argv, &i));
        else if (!strcmp(a, "--r4"))
            r4 = kind_arg("dfrot", a, cli_val("dfrot", argc, argv, &i));
        else if (!strcmp(a, "--online"))
            r3 = r4 = RQ_ORTH_HADAMARD;
        else if (!strcmp(a, "--seed"))
            o.seed = seed_arg("dfrot", cli_val("dfrot", argc, argv, &i));
        else if (!strcmp(a, "-t"))
            threads = cli_int("dfrot", a, cli_val("dfrot", argc, argv, &i), 1);
        else if (!strcmp(a, "--quiet"))
            o.verbose = false;
        else {
            fprintf(stderr, "repliq dfrot: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!model || !out)
        return cli_die("dfrot", "usage: repliq dfrot -m MODEL -o OUT.gguf [-f CALIB] [-L TOKENS] [--iters N] "
                                "[--gamma G] [--abits B] [--aclip C] [--r2 K] [--r3 K] [--r4 K] [--online] "
                                "[--seed S] [-t N] [--quiet]");
    char path[4096], cpath[4096];
    if (rq_resolve_model(model, path, sizeof path)) return cli_die("dfrot", rq_error());
    if (rq_resolve_data(calib, cpath, sizeof cpath)) return cli_die("dfrot", rq_error());
    rq_set_threads(threads);
    rq_dfrot_report rep;
    if (rq_dfrot_model(path, cpath, out, r2, r3, r4, &o, &rep)) return cli_die("dfrot", rq_error());
    printf("wrote %s: DFRot %d iterations, gamma %g, A%d: loss %.6g -> %.6g (best at iteration %d), %lld rows "
           "(%lld massive), %.1fs\n",
           out, o.iters, o.gamma, o.a_bits, rep.loss_start, rep.loss_best, rep.best_iter, (long long)rep.rows,
           (long long)rep.massive_rows, rep.seconds);
    return 0;
}
