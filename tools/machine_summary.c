/*
 * The machine's figures in mmt-run's summary (machine_summary.h): JSON and Prometheus as
 * the library's exports write them (core/export.c, one formatter for both), text as a line
 * of mmt-run's own.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "export.h"
#include "machine_summary.h"

/* `bytes` in the unit it reads best in: "27.9 MiB"; a whole number of units without its
 * decimal ("64 MiB", a limit someone set). */
static void put_bytes(FILE *out, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (u < 4 && v >= 1024.0 * 10) {
        v /= 1024;
        u++;
    }
    if (u == 0) fprintf(out, "%" PRIu64 " B", bytes);
    else fprintf(out, v == floor(v) ? "%.0f %s" : "%.1f %s", v, units[u]);
}

void mmt__machine_text(FILE *out, const mmt_machine_t *m)
{
    const struct mmt_cgroup *cg = &m->cgroup;
    const struct mmt_psi *p = &m->psi;
    if (!cg->version && !p->valid && !m->system.total) return;
    fputs("mmt-run: ", out);
    const char *sep = "";
    if (cg->version) {
        fprintf(out, "cgroup v%d, ", cg->version);
        if (cg->limit == MMT_UNLIMITED) {
            fputs("no limit", out);
        } else {
            fputs("limit ", out);
            put_bytes(out, cg->limit);
        }
        fputs(": ", out);
        put_bytes(out, cg->current);
        fprintf(out, " charged at exit, %" PRIu64 " OOM kill%s", cg->events_oom_kill,
                cg->events_oom_kill == 1 ? "" : "s");
        sep = "; ";
    }
    if (p->valid) {
        fprintf(out, "%smemory pressure some %.2f%%, full %.2f%% (10 s)", sep, p->some10, p->full10);
        sep = "; ";
    }
    if (m->system.total) {
        fputs(sep, out);
        if (m->system.available) {
            put_bytes(out, m->system.available);
            fputs(" of ", out);
        }
        put_bytes(out, m->system.total);
        fputs(m->system.available ? " available" : " of memory", out);
    }
    fputc('\n', out);
}

/* The library's own text for the machine (export.h), written out whole. */
static void put_format(FILE *out, const mmt_machine_t *m, int format)
{
    char buf[16384];
    int n = mmt__format_machine(buf, sizeof buf, m, format);
    if (n > 0 && (size_t)n < sizeof buf) fwrite(buf, 1, (size_t)n, out);
}

void mmt__machine_json(FILE *out, const mmt_machine_t *m)
{
    put_format(out, m, MMT_FORMAT_JSON);
}

void mmt__machine_prometheus(FILE *out, const mmt_machine_t *m)
{
    put_format(out, m, MMT_FORMAT_PROMETHEUS);
}
