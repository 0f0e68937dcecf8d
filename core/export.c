/*
 * The counters as text a person reads, JSON a program reads, or the Prometheus text
 * exposition format a monitoring stack scrapes. One formatter serves mmt_meminfo_write()
 * in C and mmt.format() in Lua (which adds the engine's derived figures).
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "export.h"
#include "mmt/memory.h"

typedef struct field {
    const char *name;      /* as in mmt_meminfo_t and JSON */
    const char *metric;    /* Prometheus name */
    const char *type;      /* counter or gauge */
    const char *help;
} field_t;

static const field_t fields[] = {
    {"allocated", "mmt_allocated_bytes_total", "counter", "Bytes ever allocated."},
    {"freed", "mmt_freed_bytes_total", "counter", "Bytes ever freed."},
    {"in_use", "mmt_in_use_bytes", "gauge", "Bytes in use (allocated - freed)."},
    {"peak", "mmt_peak_bytes", "gauge", "Highest number of bytes in use seen."},
    {"allocations", "mmt_allocations_total", "counter", "Successful allocation calls."},
    {"frees", "mmt_frees_total", "counter", "Calls that freed a block."},
    {"reallocs", "mmt_reallocs_total", "counter", "Calls that resized a live block."},
};

static const field_t extra_fields[] = {
    {"rate", "mmt_in_use_rate_bytes_per_second", "gauge",
     "How fast bytes in use changed over the last interval."},
    {"rss", "mmt_resident_bytes", "gauge", "Resident memory of the process."},
    {"lua", "mmt_policy_vm_bytes", "gauge", "Bytes held by the policy engine's Lua VM."},
};

/* Appends to buf like snprintf, keeping count of the length wanted even when cut. */
typedef struct out {
    char *buf;
    size_t len, used;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->used < o->len ? o->len - o->used : 0;
    int n = vsnprintf(room ? o->buf + o->used : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->used += (size_t)n;
}

/* A derived figure: JSON has no NaN or infinities (null), Prometheus spells them NaN,
 * +Inf and -Inf, text says nan and inf. */
static void put_double(out_t *o, double v, int format)
{
    if (isfinite(v)) put(o, format == MMT_FORMAT_TEXT ? "%.0f" : "%.17g", v);
    else if (format == MMT_FORMAT_JSON) put(o, "null");
    else if (format == MMT_FORMAT_PROMETHEUS) put(o, "%s", isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
    else put(o, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
}

int mmt__format(char *buf, size_t len, const mmt_meminfo_t *m, const mmt__extra_t *extra,
                int format)
{
    const uint64_t values[] = {m->allocated, m->freed,  m->in_use,  m->peak,
                               m->allocations, m->frees, m->reallocs};
    const double extras[] = {extra ? extra->rate : 0, extra ? extra->rss : 0,
                             extra ? extra->lua : 0};
    enum { N = sizeof fields / sizeof fields[0], NX = sizeof extra_fields / sizeof extra_fields[0] };
    out_t o = {buf, len, 0};
    if (len) buf[0] = '\0';

    switch (format) {
    case MMT_FORMAT_TEXT:
        put(&o, "allocated %" PRIu64 " B, freed %" PRIu64 " B, in use %" PRIu64
                " B, peak %" PRIu64 " B, allocations %" PRIu64 ", frees %" PRIu64
                ", reallocs %" PRIu64,
            m->allocated, m->freed, m->in_use, m->peak, m->allocations, m->frees, m->reallocs);
        if (extra) {
            put(&o, ", rate ");
            put_double(&o, extra->rate, format);
            put(&o, " B/s, rss ");
            put_double(&o, extra->rss, format);
            put(&o, " B, lua ");
            put_double(&o, extra->lua, format);
            put(&o, " B");
        }
        put(&o, "\n");
        break;
    case MMT_FORMAT_JSON:
        put(&o, "{");
        for (int i = 0; i < N; i++)
            put(&o, "%s\"%s\":%" PRIu64, i ? "," : "", fields[i].name, values[i]);
        if (extra) {
            for (int i = 0; i < NX; i++) {
                put(&o, ",\"%s\":", extra_fields[i].name);
                put_double(&o, extras[i], format);
            }
            put(&o, ",\"time\":");
            put_double(&o, extra->time, format);
        }
        put(&o, "}\n");
        break;
    case MMT_FORMAT_PROMETHEUS:
        for (int i = 0; i < N; i++)
            put(&o, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", fields[i].metric,
                fields[i].help, fields[i].metric, fields[i].type, fields[i].metric, values[i]);
        for (int i = 0; extra && i < NX; i++) {
            put(&o, "# HELP %s %s\n# TYPE %s %s\n%s ", extra_fields[i].metric,
                extra_fields[i].help, extra_fields[i].metric, extra_fields[i].type,
                extra_fields[i].metric);
            put_double(&o, extras[i], format);
            put(&o, "\n");
        }
        break;
    default:
        return MMT_EINVAL;
    }
    return o.used > (size_t)INT32_MAX ? MMT_ENOMEM : (int)o.used;
}

int mmt_meminfo_write(FILE *out, int format)
{
    if (!out) return MMT_EINVAL;
    mmt_meminfo_t m;
    mmt_meminfo(&m);
    char buf[2048], *text = buf;
    int n = mmt__format(buf, sizeof buf, &m, NULL, format);
    if (n < 0) return n;
    if ((size_t)n >= sizeof buf) { /* more fields than this buffer holds: one that fits */
        text = mmt__backend.malloc((size_t)n + 1);
        if (!text) return MMT_ENOMEM;
        mmt__format(text, (size_t)n + 1, &m, NULL, format);
    }
    int rc = fwrite(text, 1, (size_t)n, out) == (size_t)n ? 0 : MMT_EIO;
    if (text != buf) mmt__backend.free(text);
    return rc;
}
