/*
 * The counters as text a person reads, JSON a program reads, or the Prometheus text
 * exposition format a monitoring stack scrapes. One formatter serves mmt_meminfo_write()
 * in C and mmt.format() in Lua (which adds the engine's derived figures). The tags, when
 * the program has any besides the root, follow the process's figures: each tag's subtree,
 * under its path. A path is whatever bytes the program named its tags (anything but '/'),
 * so each format escapes it in its own way.
 */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "export.h"
#include "fields.h"
#include "mmt/memory.h"
#include "tags.h"
#include "utf8.h"

const mmt__field_t mmt__fields[MMT__NFIELDS] = {
#define X(name, kind, unit, type, help)                                                       \
    {#name, "mmt_" #name MMT__UNIT_##unit MMT__SUFFIX_##type, MMT__TYPE_##type, help,         \
     offsetof(mmt_meminfo_t, name), sizeof MMT__UNIT_##unit > 1,                              \
     "mmt_tag_" #name MMT__UNIT_##unit MMT__SUFFIX_##type,                                    \
     help " Per tag: its blocks and its descendants'."},
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

/* Appends n bytes as they are. */
static void put_bytes(out_t *o, const char *s, size_t n)
{
    size_t room = o->used < o->len ? o->len - o->used : 0;
    /* One byte is kept for the NUL, as snprintf keeps it. */
    if (room > 1) {
        size_t k = n < room - 1 ? n : room - 1;
        memcpy(o->buf + o->used, s, k);
        o->buf[o->used + k] = '\0';
    }
    o->used += n;
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

/*
 * A tag's path or name, escaped for `format`; quotes are the caller's.
 * - JSON: quote and backslash escaped, control characters as \uXXXX (\n, \r and \t
 *   short). Bytes that are not UTF-8 are replaced with U+FFFD, one for each maximal
 *   invalid subpart, as Python's decoder does: the text stays valid for a strict parser,
 *   and the replacement says plainly that bytes were lost, where \u00XX of each byte would
 *   pass them off as Latin-1 characters the name never had.
 * - Prometheus: the exposition format's three escapes (backslash, double quote, line
 *   feed); the format is UTF-8, so bytes that are not are replaced as in JSON.
 * - Text: backslash doubled, control characters as \n, \r, \t or \xHH, C1 controls as
 *   \u00XX, and each byte that is not UTF-8 as \xHH: one line per tag whatever its name,
 *   and no byte of the name lost to a person reading it.
 */
static void put_name(out_t *o, const char *s, size_t n, int format)
{
    const unsigned char *c = (const unsigned char *)s;
    while (n) {
        int32_t cp;
        size_t k = mmt__utf8_next(c, n, &cp);
        if (cp < 0 && format == MMT_FORMAT_TEXT) {
            for (size_t i = 0; i < k; i++) put(o, "\\x%02x", c[i]);
        } else if (cp < 0) {
            put_bytes(o, format == MMT_FORMAT_JSON ? "\\ufffd" : MMT_UTF8_REPLACEMENT,
                      format == MMT_FORMAT_JSON ? 6 : 3);
        } else if (cp == '\\' || (cp == '"' && format != MMT_FORMAT_TEXT)) {
            put(o, "\\%c", (char)cp);
        } else if (cp == '\n') {
            put_bytes(o, "\\n", 2);
        } else if (format == MMT_FORMAT_PROMETHEUS) {
            put_bytes(o, (const char *)c, k);
        } else if (cp == '\r' || cp == '\t') {
            put(o, "\\%c", cp == '\r' ? 'r' : 't');
        } else if (cp < 0x20) {
            put(o, format == MMT_FORMAT_JSON ? "\\u%04x" : "\\x%02x", (unsigned)cp);
        } else if (format == MMT_FORMAT_TEXT && (cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))) {
            put(o, cp == 0x7f ? "\\x%02x" : "\\u%04x", (unsigned)cp);
        } else {
            put_bytes(o, (const char *)c, k);
        }
        c += k;
        n -= k;
    }
}

/* The counters of m in the text's words: "allocated 123 B, ..., reallocs 0". */
static void put_text_fields(out_t *o, const mmt_meminfo_t *m)
{
    for (int i = 0; i < MMT__NFIELDS; i++) {
        put(o, "%s", i ? ", " : "");
        for (const char *c = mmt__fields[i].name; *c; c++) put(o, "%c", *c == '_' ? ' ' : *c);
        put(o, " %" PRIu64 "%s", mmt__field_value(m, i), mmt__fields[i].bytes ? " B" : "");
    }
}

/* The tags in the text: one a line, indented two spaces a level as in mmt_tag_report,
 * each its name and its subtree's counters. */
static void put_text_tags(out_t *o, const mmt__tag_figures_t *tags, size_t ntags)
{
    for (size_t k = 0; k < ntags; k++) {
        const char *path = tags[k].path, *name = path;
        int depth = 1;
        for (size_t i = 0; i < tags[k].len; i++)
            if (path[i] == '/') depth++, name = path + i + 1;
        put(o, "%*s", 2 * depth, "");
        put_name(o, name, tags[k].len - (size_t)(name - path), MMT_FORMAT_TEXT);
        put(o, ": ");
        put_text_fields(o, &tags[k].info);
        put(o, "\n");
    }
}

static void put_json_tags(out_t *o, const mmt__tag_figures_t *tags, size_t ntags)
{
    put(o, ",\"tags\":{");
    for (size_t k = 0; k < ntags; k++) {
        put(o, "%s\"", k ? "," : "");
        put_name(o, tags[k].path, tags[k].len, MMT_FORMAT_JSON);
        put(o, "\":{");
        for (int i = 0; i < MMT__NFIELDS; i++)
            put(o, "%s\"%s\":%" PRIu64, i ? "," : "", mmt__fields[i].name,
                mmt__field_value(&tags[k].info, i));
        put(o, "}");
    }
    put(o, "}");
}

/* One family per field, each with every tag's sample: the exposition format wants a
 * family's samples together. */
static void put_prometheus_tags(out_t *o, const mmt__tag_figures_t *tags, size_t ntags)
{
    for (int i = 0; ntags && i < MMT__NFIELDS; i++) {
        const mmt__field_t *f = &mmt__fields[i];
        put(o, "# HELP %s %s\n# TYPE %s %s\n", f->tag_metric, f->tag_help, f->tag_metric,
            f->type);
        for (size_t k = 0; k < ntags; k++) {
            put(o, "%s{tag=\"", f->tag_metric);
            put_name(o, tags[k].path, tags[k].len, MMT_FORMAT_PROMETHEUS);
            put(o, "\"} %" PRIu64 "\n", mmt__field_value(&tags[k].info, i));
        }
    }
}

/* ---- The machine's figures (memory.h, mmt_machine_read) ------------------------------- */

/* A byte count that may be MMT_UNLIMITED: "none" in text, null in JSON, +Inf in
 * Prometheus. */
static void put_limit(out_t *o, uint64_t v, int format)
{
    if (v != MMT_UNLIMITED) put(o, "%" PRIu64, v);
    else put(o, "%s", format == MMT_FORMAT_JSON ? "null" : format == MMT_FORMAT_TEXT ? "none" : "+Inf");
}

/* A PSI average: two decimals, as the kernel writes it, with no locale. */
static void put_percent(out_t *o, double v)
{
    if (!(v >= 0)) v = 0; /* the kernel's are 0 to 100; a policy's table is checked so too */
    if (v > 100) v = 100;
    uint64_t hundredths = (uint64_t)(v * 100 + 0.5);
    put(o, "%" PRIu64 ".%02u", hundredths / 100, (unsigned)(hundredths % 100));
}

static const char *const event_names[] = {"high", "max", "oom", "oom_kill"};

static uint64_t event_count(const struct mmt_cgroup *cg, int i)
{
    const uint64_t v[] = {cg->events_high, cg->events_max, cg->events_oom, cg->events_oom_kill};
    return v[i];
}

/* The cgroup's hard limits and PSI's averages, in the order the JSON and Prometheus
 * formats give them. */
static const char *const limit_names[] = {"max", "high", "limit"};
static const char *const psi_names[] = {"some10", "some60", "some300", "full10", "full60", "full300"};

static uint64_t limit_value(const struct mmt_cgroup *cg, int i)
{
    return i == 0 ? cg->max : i == 1 ? cg->high : cg->limit;
}

static double psi_value(const struct mmt_psi *p, int i)
{
    const double v[] = {p->some10, p->some60, p->some300, p->full10, p->full60, p->full300};
    return v[i];
}

static void put_text_machine(out_t *o, const mmt_machine_t *mm)
{
    const struct mmt_cgroup *cg = &mm->cgroup;
    if (cg->version) {
        put(o, "cgroup v%d ", cg->version);
        put_name(o, cg->path, strlen(cg->path), MMT_FORMAT_TEXT);
        put(o, ": current %" PRIu64 " B", cg->current);
        for (int i = 0; i < 3; i++) {
            put(o, ", %s ", limit_names[i]);
            put_limit(o, limit_value(cg, i), MMT_FORMAT_TEXT);
            put(o, "%s", limit_value(cg, i) == MMT_UNLIMITED ? "" : " B");
        }
        put(o, ", events");
        for (int i = 0; i < 4; i++)
            put(o, "%s %s %" PRIu64, i ? "," : "", event_names[i], event_count(cg, i));
        put(o, "\n");
    }
    const struct mmt_psi *p = &mm->psi;
    if (p->valid) {
        put(o, "psi ");
        put_name(o, p->source, strlen(p->source), MMT_FORMAT_TEXT);
        for (int k = 0; k < 2; k++) {
            put(o, k ? "; full" : ": some");
            for (int i = 0; i < 3; i++) {
                put(o, "%s avg%s ", i ? "," : "", psi_names[3 * k + i] + 4);
                put_percent(o, psi_value(p, 3 * k + i));
                put(o, "%%");
            }
            put(o, ", total %" PRIu64 " us", k ? p->full_total : p->some_total);
        }
        put(o, "\n");
    }
    if (mm->system.total) {
        put(o, "system: total %" PRIu64 " B", mm->system.total);
        if (mm->system.available) put(o, ", available %" PRIu64 " B", mm->system.available);
        put(o, "\n");
    }
}

static void put_json_machine(out_t *o, const mmt_machine_t *mm)
{
    const struct mmt_cgroup *cg = &mm->cgroup;
    const struct mmt_psi *p = &mm->psi;
    if (!cg->version && !p->valid && !mm->system.total) return;
    put(o, ",\"machine\":{");
    const char *sep = "";
    if (cg->version) {
        put(o, "\"cgroup\":{\"version\":%d,\"path\":\"", cg->version);
        put_name(o, cg->path, strlen(cg->path), MMT_FORMAT_JSON);
        put(o, "\",\"current\":%" PRIu64, cg->current);
        for (int i = 0; i < 3; i++) {
            put(o, ",\"%s\":", limit_names[i]);
            put_limit(o, limit_value(cg, i), MMT_FORMAT_JSON);
        }
        put(o, ",\"events\":{");
        for (int i = 0; i < 4; i++)
            put(o, "%s\"%s\":%" PRIu64, i ? "," : "", event_names[i], event_count(cg, i));
        put(o, "}}");
        sep = ",";
    }
    if (p->valid) {
        put(o, "%s\"psi\":{\"source\":\"", sep);
        put_name(o, p->source, strlen(p->source), MMT_FORMAT_JSON);
        put(o, "\"");
        for (int i = 0; i < 6; i++) {
            put(o, ",\"%s\":", psi_names[i]);
            put_percent(o, psi_value(p, i));
        }
        put(o, ",\"some_total\":%" PRIu64 ",\"full_total\":%" PRIu64 "}", p->some_total,
            p->full_total);
        sep = ",";
    }
    if (mm->system.total) {
        put(o, "%s\"system\":{\"total\":%" PRIu64, sep, mm->system.total);
        if (mm->system.available) put(o, ",\"available\":%" PRIu64, mm->system.available);
        put(o, "}");
    }
    put(o, "}");
}

/* One gauge or counter with no labels. */
static void put_family(out_t *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s ", name, help, name, type, name);
}

static void put_prometheus_machine(out_t *o, const mmt_machine_t *mm)
{
    const struct mmt_cgroup *cg = &mm->cgroup;
    if (cg->version) {
        put_family(o, "mmt_cgroup_current_bytes", "gauge",
                   "Bytes charged to the memory cgroup the process is in.");
        put(o, "%" PRIu64 "\n", cg->current);
        static const char *const limits[][2] = {
            {"mmt_cgroup_max_bytes", "The cgroup's hard limit (memory.max; v1 limit_in_bytes)."},
            {"mmt_cgroup_high_bytes", "Where the cgroup is throttled (memory.high; v1 soft limit)."},
            {"mmt_cgroup_limit_bytes", "The lowest hard limit of the cgroup and its ancestors."},
        };
        for (int i = 0; i < 3; i++) {
            put_family(o, limits[i][0], "gauge", limits[i][1]);
            put_limit(o, limit_value(cg, i), MMT_FORMAT_PROMETHEUS);
            put(o, "\n");
        }
        put(o, "# HELP mmt_cgroup_events_total The cgroup's memory events (v1: max is failcnt, "
               "oom and oom_kill are OOM kills).\n# TYPE mmt_cgroup_events_total counter\n");
        for (int i = 0; i < 4; i++)
            put(o, "mmt_cgroup_events_total{event=\"%s\"} %" PRIu64 "\n", event_names[i],
                event_count(cg, i));
    }
    const struct mmt_psi *p = &mm->psi;
    if (p->valid) {
        for (int i = 0; i < 6; i++) {
            char name[40], help[128];
            snprintf(name, sizeof name, "mmt_psi_%.4s_avg%s", psi_names[i], psi_names[i] + 4);
            snprintf(help, sizeof help, "Percent of time %s waited for memory, over %s s (PSI).",
                     i < 3 ? "some task" : "every task", psi_names[i] + 4);
            put_family(o, name, "gauge", help);
            put_percent(o, psi_value(p, i));
            put(o, "\n");
        }
        for (int k = 0; k < 2; k++) {
            uint64_t us = k ? p->full_total : p->some_total;
            put_family(o, k ? "mmt_psi_full_stall_seconds_total" : "mmt_psi_some_stall_seconds_total",
                       "counter", k ? "Time every task waited for memory (PSI)."
                                    : "Time some task waited for memory (PSI).");
            put(o, "%" PRIu64 ".%06u\n", us / 1000000, (unsigned)(us % 1000000));
        }
    }
    if (mm->system.total) {
        put_family(o, "mmt_system_memory_total_bytes", "gauge", "The machine's memory (MemTotal).");
        put(o, "%" PRIu64 "\n", mm->system.total);
        if (mm->system.available) {
            put_family(o, "mmt_system_memory_available_bytes", "gauge",
                       "Memory available without swapping (MemAvailable).");
            put(o, "%" PRIu64 "\n", mm->system.available);
        }
    }
}

int mmt__format_machine(char *buf, size_t len, const mmt_machine_t *machine, int format)
{
    out_t o = {buf, len, 0};
    if (len) buf[0] = '\0';
    if (format == MMT_FORMAT_TEXT) put_text_machine(&o, machine);
    else if (format == MMT_FORMAT_JSON) put_json_machine(&o, machine);
    else if (format == MMT_FORMAT_PROMETHEUS) put_prometheus_machine(&o, machine);
    else return MMT_EINVAL;
    return o.used > (size_t)INT32_MAX ? MMT_ENOMEM : (int)o.used;
}

int mmt__format(char *buf, size_t len, const mmt_meminfo_t *m, const mmt__extra_t *extra,
                int format)
{
    return mmt__format_tags(buf, len, m, extra, NULL, 0, NULL, format);
}

int mmt__format_tags(char *buf, size_t len, const mmt_meminfo_t *m, const mmt__extra_t *extra,
                     const mmt__tag_figures_t *tags, size_t ntags, const mmt_machine_t *machine,
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
        put_text_fields(&o, m);
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
        put_text_tags(&o, tags, ntags);
        if (machine) put_text_machine(&o, machine);
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
        if (ntags) put_json_tags(&o, tags, ntags);
        if (machine) put_json_machine(&o, machine);
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
        put_prometheus_tags(&o, tags, ntags);
        if (machine) put_prometheus_machine(&o, machine);
        break;
    default:
        return MMT_EINVAL;
    }
    return o.used > (size_t)INT32_MAX ? MMT_ENOMEM : (int)o.used;
}

/* Every tag but the root, in path order, with its subtree's figures from a reading: the
 * array and paths (backend memory) are the caller's to give back. */
static int tag_figures(const mmt__tag_reading_t *r, unsigned n, mmt__tag_paths_t *paths,
                       mmt__tag_figures_t **out)
{
    *out = NULL;
    int rc = mmt__tag_paths(n, paths);
    if (rc) return rc;
    mmt__tag_figures_t *f = mmt__backend.malloc((size_t)n * sizeof *f);
    if (!f) {
        mmt__tag_paths_free(paths);
        return MMT_ENOMEM;
    }
    for (unsigned k = 0; k + 1 < n; k++) {
        unsigned id = paths->order[k];
        f[k] = (mmt__tag_figures_t){paths->text + paths->at[id], paths->len[id], r[id].sub};
    }
    *out = f;
    return 0;
}

int mmt__meminfo_text(int format, char *buf, size_t len, char **text)
{
    *text = buf;
    if (format != MMT_FORMAT_TEXT && format != MMT_FORMAT_JSON && format != MMT_FORMAT_PROMETHEUS)
        return MMT_EINVAL;
    mmt_meminfo_t m;
    mmt__tag_reading_t *r = NULL;
    unsigned n = 1;
    mmt__tag_paths_t paths = {0};
    mmt__tag_figures_t *tags = NULL;
    int rc = 0;
    /* With no tag but the root, the process's figures alone, as before tags existed. */
    if (mmt__tag_count() > 1) {
        rc = mmt__tags_read(&r, &n);
        if (rc == 0) rc = tag_figures(r, n, &paths, &tags);
        if (rc) goto done;
        m = r[0].sub;
    } else {
        mmt_meminfo(&m);
    }
    size_t ntags = tags ? n - 1 : 0;
    mmt_machine_t machine;
    mmt_machine_read(&machine, MMT_MACHINE_ALL);
    rc = mmt__format_tags(buf, len, &m, NULL, tags, ntags, &machine, format);
    if (rc >= 0 && (size_t)rc >= len) { /* tags, or more fields than buf holds */
        char *big = mmt__backend.malloc((size_t)rc + 1);
        if (!big) {
            rc = MMT_ENOMEM;
            goto done;
        }
        mmt__format_tags(big, (size_t)rc + 1, &m, NULL, tags, ntags, &machine, format);
        *text = big;
    }
done:
    mmt__backend.free(tags);
    mmt__tag_paths_free(&paths);
    mmt__backend.free(r);
    return rc;
}

int mmt_meminfo_write(FILE *out, int format)
{
    if (!out) return MMT_EINVAL;
    char buf[4096], *text;
    int len = mmt__meminfo_text(format, buf, sizeof buf, &text);
    if (len < 0) return len;
    int rc = fwrite(text, 1, (size_t)len, out) == (size_t)len ? 0 : MMT_EIO;
    if (text != buf) mmt__backend.free(text);
    return rc;
}

/* ---- The rules of a running policy (the engine's textfile, lua/textfile.c) ---------------- */

static void put_rule_family(out_t *o, const mmt__rule_figures_t *rules, size_t n, bool firing)
{
    const char *name = firing ? "mmt_rule_firing" : "mmt_rule_fired_total";
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name,
        firing ? "1 while the policy's rule is firing, 0 otherwise."
               : "Times the policy's rule fired since the policy engine started.",
        name, firing ? "gauge" : "counter");
    for (size_t k = 0; k < n; k++) {
        put(o, "%s{rule=\"", name);
        put_name(o, rules[k].name, strlen(rules[k].name), MMT_FORMAT_PROMETHEUS);
        if (firing) put(o, "\"} %d\n", rules[k].firing ? 1 : 0);
        else put(o, "\"} %" PRIu64 "\n", rules[k].fired);
    }
}

int mmt__format_rules(char *buf, size_t len, const mmt__rule_figures_t *rules, size_t n)
{
    out_t o = {buf, len, 0};
    if (len) buf[0] = '\0';
    if (n) {
        put_rule_family(&o, rules, n, true);
        put_rule_family(&o, rules, n, false);
    }
    return o.used > (size_t)INT32_MAX ? MMT_ENOMEM : (int)o.used;
}

/* One line of mmt_tag_report: the name, escaped as the text format has it (one line per
 * tag whatever its name), the subtree's in use, peak and live blocks, then the own ones. */
static void put_report_line(out_t *o, const char *name, size_t len, int depth,
                            const mmt__tag_reading_t *t)
{
    put(o, "%*s", 2 * depth, "");
    put_name(o, name, len, MMT_FORMAT_TEXT);
    put(o, ": in use %" PRIu64 " B, peak %" PRIu64 " B, %" PRIu64 " blocks; own %" PRIu64
           " B in %" PRIu64 " blocks\n",
        t->sub.in_use, t->sub.peak, t->sub.allocations - t->sub.frees, t->own.in_use,
        t->own.allocations - t->own.frees);
}

static void put_report(out_t *o, const mmt__tag_reading_t *r, const mmt__tag_paths_t *p)
{
    put(o, "(root): in use %" PRIu64 " B, peak %" PRIu64 " B, %" PRIu64 " blocks; own %" PRIu64
           " B in %" PRIu64 " blocks\n",
        r[0].sub.in_use, r[0].sub.peak, r[0].sub.allocations - r[0].sub.frees, r[0].own.in_use,
        r[0].own.allocations - r[0].own.frees);
    for (unsigned k = 0; k + 1 < p->n; k++) {
        unsigned id = p->order[k];
        const char *path = p->text + p->at[id], *name = path;
        int depth = 1;
        for (size_t i = 0; i < p->len[id]; i++)
            if (path[i] == '/') depth++, name = path + i + 1;
        put_report_line(o, name, p->len[id] - (size_t)(name - path), depth, &r[id]);
    }
}

/* Made whole in memory, then written: no lock of mmt's is held while the stream's code
 * runs (a cookie stream may allocate, and a listener look tags up). */
int mmt_tag_report(FILE *out)
{
    if (!out) return MMT_EINVAL;
    mmt__tag_reading_t *r = NULL;
    unsigned n;
    mmt__tag_paths_t paths = {0};
    char *text = NULL;
    int rc = mmt__tags_read(&r, &n);
    if (rc == 0) rc = mmt__tag_paths(n, &paths);
    if (rc == 0) {
        out_t size = {NULL, 0, 0};
        put_report(&size, r, &paths);
        text = mmt__backend.malloc(size.used + 1);
        if (!text) rc = MMT_ENOMEM;
        else {
            out_t o = {text, size.used + 1, 0};
            put_report(&o, r, &paths);
            if (fwrite(text, 1, o.used, out) != o.used || fflush(out) != 0) rc = MMT_EIO;
        }
    }
    mmt__backend.free(text);
    mmt__tag_paths_free(&paths);
    mmt__backend.free(r);
    return rc;
}
