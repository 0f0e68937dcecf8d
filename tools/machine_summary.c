/*
 * The machine's figures in mmt-run's summary (machine_summary.h). The names, the order and
 * the HELP texts follow the library's exports, core/export.c: percentages with the two
 * decimals the kernel writes, PSI's totals in microseconds in JSON and in seconds in
 * Prometheus, v1's events as memory.h maps them.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "machine_summary.h"
#include "utf8.h"

static const char *const event_names[] = {"high", "max", "oom", "oom_kill"};
static const char *const limit_names[] = {"max", "high", "limit"};
static const char *const psi_names[] = {"some10", "some60", "some300", "full10", "full60", "full300"};

static uint64_t event_count(const struct mmt_cgroup *cg, int i)
{
    const uint64_t v[] = {cg->events_high, cg->events_max, cg->events_oom, cg->events_oom_kill};
    return v[i];
}

static uint64_t limit_value(const struct mmt_cgroup *cg, int i)
{
    return i == 0 ? cg->max : i == 1 ? cg->high : cg->limit;
}

static double psi_value(const struct mmt_psi *p, int i)
{
    const double v[] = {p->some10, p->some60, p->some300, p->full10, p->full60, p->full300};
    return v[i];
}

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

/* A limit in JSON: null when it is not set. */
static void put_json_limit(FILE *out, uint64_t v)
{
    if (v == MMT_UNLIMITED) fputs("null", out);
    else fprintf(out, "%" PRIu64, v);
}

static void put_json_text(FILE *out, const char *s)
{
    char buf[6 * sizeof((mmt_machine_t *)0)->cgroup.path + 3];
    mmt__json_string(buf, sizeof buf, s);
    fputs(buf, out);
}

void mmt__machine_json(FILE *out, const mmt_machine_t *m)
{
    const struct mmt_cgroup *cg = &m->cgroup;
    const struct mmt_psi *p = &m->psi;
    if (!cg->version && !p->valid && !m->system.total) return;
    fputs(",\"machine\":{", out);
    const char *sep = "";
    if (cg->version) {
        fprintf(out, "\"cgroup\":{\"version\":%d,\"path\":", cg->version);
        put_json_text(out, cg->path);
        fprintf(out, ",\"current\":%" PRIu64, cg->current);
        for (int i = 0; i < 3; i++) {
            fprintf(out, ",\"%s\":", limit_names[i]);
            put_json_limit(out, limit_value(cg, i));
        }
        fputs(",\"events\":{", out);
        for (int i = 0; i < 4; i++)
            fprintf(out, "%s\"%s\":%" PRIu64, i ? "," : "", event_names[i], event_count(cg, i));
        fputs("}}", out);
        sep = ",";
    }
    if (p->valid) {
        fprintf(out, "%s\"psi\":{\"source\":", sep);
        put_json_text(out, p->source);
        for (int i = 0; i < 6; i++) fprintf(out, ",\"%s\":%.2f", psi_names[i], psi_value(p, i));
        fprintf(out, ",\"some_total\":%" PRIu64 ",\"full_total\":%" PRIu64 "}", p->some_total,
                p->full_total);
        sep = ",";
    }
    if (m->system.total) {
        fprintf(out, "%s\"system\":{\"total\":%" PRIu64, sep, m->system.total);
        if (m->system.available) fprintf(out, ",\"available\":%" PRIu64, m->system.available);
        fputc('}', out);
    }
    fputc('}', out);
}

/* The HELP and TYPE lines of a family, and its name to start its sample. */
static void put_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s ", name, help, name, type, name);
}

void mmt__machine_prometheus(FILE *out, const mmt_machine_t *m)
{
    const struct mmt_cgroup *cg = &m->cgroup;
    if (cg->version) {
        put_family(out, "mmt_cgroup_current_bytes", "gauge",
                   "Bytes charged to the memory cgroup the process is in.");
        fprintf(out, "%" PRIu64 "\n", cg->current);
        static const char *const limits[][2] = {
            {"mmt_cgroup_max_bytes", "The cgroup's hard limit (memory.max; v1 limit_in_bytes)."},
            {"mmt_cgroup_high_bytes", "Where the cgroup is throttled (memory.high; v1 soft limit)."},
            {"mmt_cgroup_limit_bytes", "The lowest hard limit of the cgroup and its ancestors."},
        };
        for (int i = 0; i < 3; i++) {
            put_family(out, limits[i][0], "gauge", limits[i][1]);
            uint64_t v = limit_value(cg, i);
            if (v == MMT_UNLIMITED) fputs("+Inf\n", out);
            else fprintf(out, "%" PRIu64 "\n", v);
        }
        fputs("# HELP mmt_cgroup_events_total The cgroup's memory events (v1: max is failcnt, "
              "oom and oom_kill are OOM kills).\n# TYPE mmt_cgroup_events_total counter\n", out);
        for (int i = 0; i < 4; i++)
            fprintf(out, "mmt_cgroup_events_total{event=\"%s\"} %" PRIu64 "\n", event_names[i],
                    event_count(cg, i));
    }
    const struct mmt_psi *p = &m->psi;
    if (p->valid) {
        for (int i = 0; i < 6; i++) {
            char name[40], help[128];
            snprintf(name, sizeof name, "mmt_psi_%.4s_avg%s", psi_names[i], psi_names[i] + 4);
            snprintf(help, sizeof help, "Percent of time %s waited for memory, over %s s (PSI).",
                     i < 3 ? "some task" : "every task", psi_names[i] + 4);
            put_family(out, name, "gauge", help);
            fprintf(out, "%.2f\n", psi_value(p, i));
        }
        for (int k = 0; k < 2; k++) {
            uint64_t us = k ? p->full_total : p->some_total;
            put_family(out, k ? "mmt_psi_full_stall_seconds_total" : "mmt_psi_some_stall_seconds_total",
                       "counter", k ? "Time every task waited for memory (PSI)."
                                    : "Time some task waited for memory (PSI).");
            fprintf(out, "%" PRIu64 ".%06u\n", us / 1000000, (unsigned)(us % 1000000));
        }
    }
    if (m->system.total) {
        put_family(out, "mmt_system_memory_total_bytes", "gauge", "The machine's memory (MemTotal).");
        fprintf(out, "%" PRIu64 "\n", m->system.total);
        if (m->system.available) {
            put_family(out, "mmt_system_memory_available_bytes", "gauge",
                       "Memory available without swapping (MemAvailable).");
            fprintf(out, "%" PRIu64 "\n", m->system.available);
        }
    }
}
