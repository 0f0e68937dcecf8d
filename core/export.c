/*
 * The counters as text a person reads, JSON a program reads, or the Prometheus text
 * exposition format a monitoring stack scrapes. One formatter serves mmt_meminfo_write()
 * in C and mmt.format() in Lua (which adds the engine's derived figures).
 */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "export.h"
#include "fields.h"
#include "mmt/memory.h"

const mmt__field_t mmt__fields[MMT__NFIELDS] = {
#define X(name, kind, unit, type, help)                                                       \
    {#name, "mmt_" #name MMT__UNIT_##unit MMT__SUFFIX_##type, MMT__TYPE_##type, help,         \
     offsetof(mmt_meminfo_t, name), sizeof MMT__UNIT_##unit > 1},
    MMT__MEMINFO_FIELDS(X)
#undef X
};

/* The list and the struct in step: every field listed, in the struct's order, each a
 * uint64_t. */
#define X(name, kind, unit, type, help)                                                       \
    static_assert(offsetof(mmt_meminfo_t, name) == MMT__FIELD_##name * sizeof(uint64_t),     \
                  #name " is where the list puts it");                                       \
    static_assert(sizeof ((mmt_meminfo_t *)0)->name == sizeof(uint64_t), #name " is a uint64_t");
MMT__MEMINFO_FIELDS(X)
#undef X
static_assert(sizeof(mmt_meminfo_t) == MMT__NFIELDS * sizeof(uint64_t),
              "every field of mmt_meminfo_t is in MMT__MEMINFO_FIELDS");

/* The figures a policy snapshot adds (mmt__extra_t). */
typedef struct field {
    const char *name;      /* as in JSON and the Lua snapshot */
    const char *metric;    /* Prometheus name */
    const char *type;      /* counter or gauge */
    const char *help;
} field_t;

static const field_t extra_fields[] = {
    {"rate", "mmt_in_use_rate_bytes_per_second", "gauge",
     "How fast bytes in use changed over about the policy engine's last interval."},
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
    const double extras[] = {extra ? extra->rate : 0, extra ? extra->rss : 0,
                             extra ? extra->lua : 0};
    enum { NX = sizeof extra_fields / sizeof extra_fields[0] };
    out_t o = {buf, len, 0};
    if (len) buf[0] = '\0';

    switch (format) {
    case MMT_FORMAT_TEXT:
        /* "allocated 123 B, ..., in use 12 B, ..., reallocs 0": the names spaced out. */
        for (int i = 0; i < MMT__NFIELDS; i++) {
            put(&o, "%s", i ? ", " : "");
            for (const char *c = mmt__fields[i].name; *c; c++) put(&o, "%c", *c == '_' ? ' ' : *c);
            put(&o, " %" PRIu64 "%s", mmt__field_value(m, i), mmt__fields[i].bytes ? " B" : "");
        }
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
        for (int i = 0; i < MMT__NFIELDS; i++)
            put(&o, "%s\"%s\":%" PRIu64, i ? "," : "", mmt__fields[i].name, mmt__field_value(m, i));
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
        for (int i = 0; i < MMT__NFIELDS; i++) {
            const mmt__field_t *f = &mmt__fields[i];
            put(&o, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", f->metric, f->help, f->metric,
                f->type, f->metric, mmt__field_value(m, i));
        }
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
