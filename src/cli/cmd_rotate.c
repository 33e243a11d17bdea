/* cmd_rotate.c - repliq rotate: QuaRot-style rotation folded into the weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "forward.h"
#include "paths.h"
#include "rotate.h"
#include "util.h"

static int kind_arg(const char *opt, const char *v) {
    if (!strcmp(v, "none")) return RQ_ROT_NONE;
    int k = rq_orth_kind_parse(v);
    if (k < 0) {
        fprintf(stderr, "repliq rotate: %s '%s': expected hadamard, rh, ro or none\n", opt, v);
        exit(2);
    }
    return k;
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
            o.r1 = kind_arg(a, cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "--r2"))
            o.r2 = kind_arg(a, cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "--r3"))
            o.r3 = kind_arg(a, cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "--r4"))
            o.r4 = kind_arg(a, cli_val("rotate", argc, argv, &i));
        else if (!strcmp(a, "--online"))
            o.r3 = o.r4 = RQ_ORTH_HADAMARD;
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(cli_val("rotate", argc, argv, &i), NULL, 10);
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
