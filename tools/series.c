/* mmt-policy's inputs (series.h). */
#include "series.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"

/* The figures, in the order of mmt__series_names. */
enum {
    F_ALLOCATED, F_FREED, F_IN_USE, F_PEAK, F_ALLOCATIONS, F_FREES, F_REALLOCS, F_RSS,
    F_CG_CURRENT, F_CG_MAX, F_CG_HIGH, F_CG_LIMIT,
    F_PSI_SOME10, F_PSI_SOME60, F_PSI_SOME300, F_PSI_FULL10, F_PSI_FULL60, F_PSI_FULL300,
    F_TOTAL, F_AVAILABLE, F_COUNT
};

const char *const mmt__series_names[] = {
    "allocated", "freed", "in_use", "peak", "allocations", "frees", "reallocs", "rss",
    "cgroup_current", "cgroup_max", "cgroup_high", "cgroup_limit",
    "psi_some10", "psi_some60", "psi_some300", "psi_full10", "psi_full60", "psi_full300",
    "total", "available", NULL};

/* The most samples one series may expand to: an hour at 1 ms. */
#define MAX_SAMPLES ((size_t)3600 * 1000)

/* ---- Expanding notation ------------------------------------------------------------------ */

/* A number at *p: digits with an optional fraction and exponent (no sign, no hex, no
 * "nan": strtod would take those), or Inf; then an optional unit. */
static bool scan_number(const char **p, double *out)
{
    const char *s = *p;
    if (strncmp(s, "Inf", 3) == 0 || strncmp(s, "inf", 3) == 0) {
        *out = INFINITY;
        *p = s + 3;
        return true;
    }
    const char *start = s;
    while (*s >= '0' && *s <= '9') s++;
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') s++;
    }
    if (s == start || (s == start + 1 && *start == '.')) return false;
    if ((*s == 'e' || *s == 'E') &&
        ((s[1] >= '0' && s[1] <= '9') ||
         ((s[1] == '+' || s[1] == '-') && s[2] >= '0' && s[2] <= '9'))) {
        s += 2;
        while (*s >= '0' && *s <= '9') s++;
    }
    char buf[64];
    if ((size_t)(s - start) >= sizeof buf) return false;
    memcpy(buf, start, (size_t)(s - start));
    buf[s - start] = '\0';
    double v = strtod(buf, NULL);
    static const struct { const char *name; double factor; } units[] = {
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        size_t len = strlen(units[i].name);
        if (strncmp(s, units[i].name, len) == 0) {
            v *= units[i].factor;
            s += len;
            break;
        }
    }
    *out = v;
    *p = s;
    return isfinite(v);
}

static bool scan_count(const char **p, size_t *n)
{
    const char *s = *p;
    if (*s < '0' || *s > '9') return false;
    size_t v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (size_t)(*s - '0');
        if (v > MAX_SAMPLES) return false;
        s++;
    }
    *n = v;
    *p = s;
    return true;
}

static int push(double **v, size_t *n, size_t *cap, double x)
{
    if (*n == *cap) {
        size_t want = *cap ? *cap * 2 : 64;
        double *grown = realloc(*v, want * sizeof *grown);
        if (!grown) return -1;
        *v = grown;
        *cap = want;
    }
    (*v)[(*n)++] = x;
    return 0;
}

int mmt__series_parse(const char *text, double **out, size_t *nout, char *err, size_t errlen)
{
    double *v = NULL;
    size_t n = 0, cap = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        const char *token = p;
        double a = NAN, b = 0;
        size_t count = 0;
        bool missing = *p == '_', ok = true, repeat = false;
        if (missing) {
            p++;
        } else {
            ok = scan_number(&p, &a);
            if (ok && (*p == '+' || *p == '-')) {
                double sign = *p == '-' ? -1 : 1;
                p++;
                ok = scan_number(&p, &b) && isfinite(a) && isfinite(b);
                b *= sign;
                ok = ok && *p == 'x';
            }
        }
        if (ok && *p == 'x') {
            p++;
            repeat = true;
            ok = scan_count(&p, &count);
        }
        ok = ok && (*p == '\0' || *p == ' ' || *p == '\t' || *p == '\n');
        if (!ok) {
            int len = 0;
            while (token[len] && token[len] != ' ' && token[len] != '\t' && token[len] != '\n' &&
                   len < 40)
                len++;
            snprintf(err, errlen, "\"%.*s\": not a sample (a number with KiB, MiB or GiB, "
                     "a+bxn, axn, _ or _xn, the counts up to %zu)", len, token, MAX_SAMPLES);
            free(v);
            return -1;
        }
        /* promtool: _xn is n missing samples; axn and a+bxn are n + 1 samples. */
        size_t samples = missing ? (repeat ? count : 1) : (repeat ? count + 1 : 1);
        if (n + samples > MAX_SAMPLES) {
            snprintf(err, errlen, "more than %zu samples", MAX_SAMPLES);
            free(v);
            return -1;
        }
        for (size_t i = 0; i < samples; i++) {
            double x = missing ? NAN : a + (double)i * b;
            /* 0.3-0.1x3 ends at 0 less a rounding error: 0, not a refusal. */
            if (x < 0 && x > -1e-9 * (fabs(a) + fabs(b) * (double)i)) x = 0;
            if (!missing && x < 0) {
                snprintf(err, errlen, "\"%.*s\" goes below 0 (%g at its sample %zu)",
                         (int)(p - token), token, x, i);
                free(v);
                return -1;
            }
            if (push(&v, &n, &cap, x) != 0) {
                snprintf(err, errlen, "out of memory");
                free(v);
                return -1;
            }
        }
    }
    if (n == 0) {
        snprintf(err, errlen, "no samples");
        free(v);
        return -1;
    }
    *out = v;
    *nout = n;
    return 0;
}

/* ---- Columns ------------------------------------------------------------------------------ */

static int figure_id(const char *name)
{
    for (int i = 0; mmt__series_names[i]; i++)
        if (strcmp(mmt__series_names[i], name) == 0) return i;
    return -1;
}

/* Pads every column with missing samples up to n steps. */
static int extend_one(double **col, size_t from, size_t n)
{
    double *v = realloc(*col, (n ? n : 1) * sizeof *v);
    if (!v) return -1;
    for (size_t i = from; i < n; i++) v[i] = NAN;
    *col = v;
    return 0;
}

static int extend(mmt__series_t *s, size_t n)
{
    for (size_t c = 0; c < s->ncols; c++)
        if (extend_one(&s->col[c].v, s->nsteps, n) != 0) return -1;
    for (size_t c = 0; c < s->ntcols; c++)
        if (extend_one(&s->tcol[c].v, s->nsteps, n) != 0) return -1;
    s->nsteps = n;
    return 0;
}

/* v (n samples) made a column of s's length: the other columns, or v, padded with missing
 * samples to the longer. NULL (v still the caller's) if no memory was left. */
static double *take_column(mmt__series_t *s, double *v, size_t n, char *err, size_t errlen)
{
    size_t steps = n > s->nsteps ? n : s->nsteps;
    double *mine = extend(s, steps) == 0 ? realloc(v, (steps ? steps : 1) * sizeof *mine) : NULL;
    if (!mine) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = n; i < steps; i++) mine[i] = NAN;
    return mine;
}

/* The samples of figure `id` must be of its kind: a byte or call count below 2^64, a
 * share of time from 0 to 100, or (a cgroup's limits) Inf for none. */
static int check_values(int id, const char *name, const double *v, size_t n, char *err,
                        size_t errlen)
{
    bool share = id >= F_PSI_SOME10 && id <= F_PSI_FULL300;
    bool limit = id == F_CG_MAX || id == F_CG_HIGH || id == F_CG_LIMIT;
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i]) || (limit && isinf(v[i]))) continue;
        if (share ? v[i] > 100 : !(v[i] < 18446744073709551616.0)) {
            snprintf(err, errlen, "%s: sample %zu is %g, %s", name, i, v[i],
                     share ? "over 100 (a share of time, in percent)"
                     : limit ? "2^64 or more (Inf is no limit)"
                             : "2^64 or more");
            return -1;
        }
    }
    return 0;
}

int mmt__series_add(mmt__series_t *s, const char *name, double *v, size_t n, char *err,
                    size_t errlen)
{
    int id = figure_id(name);
    if (id >= 0 && check_values(id, name, v, n, err, errlen) != 0) return -1;
    if (id < 0) {
        snprintf(err, errlen, "no figure named \"%s\" (the figures: in_use, allocated, freed, "
                 "peak, allocations, frees, reallocs, rss, cgroup_current, cgroup_max, "
                 "cgroup_high, cgroup_limit, psi_some10/60/300, psi_full10/60/300, total, "
                 "available)", name);
        return -1;
    }
    for (size_t c = 0; c < s->ncols; c++) {
        if (s->col[c].id == id) {
            snprintf(err, errlen, "\"%s\" is given twice", name);
            return -1;
        }
    }
    if (s->ncols == MMT__SERIES_COLUMNS) {
        snprintf(err, errlen, "too many columns");
        return -1;
    }
    double *mine = take_column(s, v, n, err, errlen);
    if (!mine) return -1;
    s->col[s->ncols++] = (struct mmt__column){id, mine};
    return 0;
}

int mmt__series_add_tag(mmt__series_t *s, unsigned tag, const char *name, double *v, size_t n,
                        char *err, size_t errlen)
{
    int id = figure_id(name);
    if (id < 0 || id > F_REALLOCS) {
        snprintf(err, errlen, "no tag figure named \"%s\" (a tag's: in_use, allocated, freed, "
                 "peak, allocations, frees, reallocs)", name);
        return -1;
    }
    if (check_values(id, name, v, n, err, errlen) != 0) return -1;
    for (size_t c = 0; c < s->ntcols; c++) {
        if (s->tcol[c].tag == tag && s->tcol[c].id == id) {
            snprintf(err, errlen, "\"%s\" is given twice", name);
            return -1;
        }
    }
    struct mmt__tag_column *grown = realloc(s->tcol, (s->ntcols + 1) * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->tcol = grown;
    double *mine = take_column(s, v, n, err, errlen);
    if (!mine) return -1;
    s->tcol[s->ntcols++] = (struct mmt__tag_column){tag, id, mine};
    return 0;
}

void mmt__series_carry_free(mmt__series_carry_t *c)
{
    free(c->tfigures);
    free(c->tstep);
    free(c->tlast);
    free(c->thave);
    free(c->tcounters);
    free(c->readings);
    memset(c, 0, sizeof *c);
}

void mmt__series_free(mmt__series_t *s)
{
    for (size_t c = 0; c < s->ntcols; c++) free(s->tcol[c].v);
    free(s->tcol);
    for (size_t c = 0; c < s->ncols; c++) free(s->col[c].v);
    free(s->time);
    memset(s, 0, sizeof *s);
}

/* ---- Traces ------------------------------------------------------------------------------- */

/* The trace's columns (tools/trace.h) and the figures they hold. */
static const struct { const char *column; int id; } trace_columns[] = {
    {"in_use_bytes", F_IN_USE}, {"rss_bytes", F_RSS}, {"allocated_bytes", F_ALLOCATED},
    {"freed_bytes", F_FREED}, {"peak_bytes", F_PEAK}, {"allocations", F_ALLOCATIONS},
    {"cgroup_current_bytes", F_CG_CURRENT}, {"cgroup_limit_bytes", F_CG_LIMIT},
    {"psi_some10", F_PSI_SOME10}, {"psi_full10", F_PSI_FULL10},
    {"available_bytes", F_AVAILABLE}};
enum { NTRACE = sizeof trace_columns / sizeof trace_columns[0] };

static bool to_number(const char *text, double *out)
{
    if (!text) return false;
    if (!*text) {
        *out = NAN;
        return true;
    }
    /* Decimal only: strtod would also take hex, "inf" and leading spaces. */
    if (strspn(text, "0123456789.eE+-") != strlen(text)) return false;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (*end || errno || !(v >= 0) || !(v < 18446744073709551616.0)) return false;
    *out = v;
    return true;
}

int mmt__series_from_trace(mmt__series_t *s, const char *path, mmt__recorded_t **events,
                           size_t *nevents, char *err, size_t errlen)
{
    *events = NULL;
    *nevents = 0;
    memset(s, 0, sizeof *s);
    char why[600];
    FILE *f = mmt__open_regular(path, false, why, sizeof why);
    if (!f) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    mmt__csv_record_t r = {0};
    size_t at[NTRACE], at_time = SIZE_MAX, at_event = SIZE_MAX, at_rule = SIZE_MAX;
    size_t cap = 0, ecap = 0, row = 1;
    int rc = -1, got = mmt__csv_read(f, &r);
    if (got != 1) {
        snprintf(err, errlen, "%s: not a trace (no header)", path);
        goto done;
    }
    for (size_t k = 0; k < NTRACE; k++) at[k] = SIZE_MAX;
    for (size_t i = 0; i < r.nfields; i++) {
        const char *name = mmt__csv_field(&r, i);
        if (strcmp(name, "time_s") == 0) at_time = i;
        else if (strcmp(name, "event") == 0) at_event = i;
        else if (strcmp(name, "rule") == 0) at_rule = i;
        for (size_t k = 0; k < NTRACE; k++)
            if (strcmp(name, trace_columns[k].column) == 0) at[k] = i;
    }
    if (at_time == SIZE_MAX || at[0] == SIZE_MAX || at_event == SIZE_MAX) {
        snprintf(err, errlen, "%s: not an mmt-run trace (its header lacks time_s, "
                 "in_use_bytes or event)", path);
        goto done;
    }
    for (size_t k = 0; k < NTRACE; k++) {
        if (at[k] == SIZE_MAX) continue;
        s->col[s->ncols++] = (struct mmt__column){trace_columns[k].id, NULL};
    }
    while ((got = mmt__csv_read(f, &r)) == 1) {
        row++;
        double t;
        const char *event = mmt__csv_field(&r, at_event);
        if (!event || !to_number(mmt__csv_field(&r, at_time), &t) || isnan(t)) {
            snprintf(err, errlen, "%s: row %zu: not a trace row", path, row);
            goto done;
        }
        if (*event && strcmp(event, "sample") != 0) {
            if (strcmp(event, "fire") != 0 && strcmp(event, "resolve") != 0) continue;
            if (*nevents == ecap) {
                ecap = ecap ? 2 * ecap : 64;
                mmt__recorded_t *grown = realloc(*events, ecap * sizeof *grown);
                if (!grown) goto no_memory;
                *events = grown;
            }
            mmt__recorded_t *e = &(*events)[(*nevents)++];
            e->t = t;
            e->fired = event[0] == 'f';
            const char *rule = at_rule == SIZE_MAX ? NULL : mmt__csv_field(&r, at_rule);
            snprintf(e->rule, sizeof e->rule, "%s", rule ? rule : "");
            continue;
        }
        if (s->nsteps == cap) {
            cap = cap ? 2 * cap : 1024;
            double *grown = realloc(s->time, cap * sizeof *grown);
            if (!grown) goto no_memory;
            s->time = grown;
            for (size_t c = 0; c < s->ncols; c++) {
                grown = realloc(s->col[c].v, cap * sizeof *grown);
                if (!grown) goto no_memory;
                s->col[c].v = grown;
            }
        }
        if (s->nsteps && t < s->time[s->nsteps - 1]) {
            snprintf(err, errlen, "%s: row %zu: its time %.6f is before the last row's", path,
                     row, t);
            goto done;
        }
        s->time[s->nsteps] = t;
        size_t c = 0;
        for (size_t k = 0; k < NTRACE; k++) {
            if (at[k] == SIZE_MAX) continue;
            double v;
            if (!to_number(mmt__csv_field(&r, at[k]), &v)) {
                snprintf(err, errlen, "%s: row %zu: column %s is not a number", path, row,
                         trace_columns[k].column);
                goto done;
            }
            s->col[c++].v[s->nsteps] = v;
        }
        s->nsteps++;
    }
    if (got < 0) {
        snprintf(err, errlen, "%s: row %zu: not CSV (a quote left open, or text after one)",
                 path, row + 1);
        goto done;
    }
    if (s->nsteps == 0) {
        snprintf(err, errlen, "%s: the trace has no sample rows", path);
        goto done;
    }
    rc = 0;
    goto done;
no_memory:
    snprintf(err, errlen, "%s: out of memory at row %zu", path, row);
done:
    free(r.text);
    fclose(f);
    if (rc != 0) {
        mmt__series_free(s);
        free(*events);
        *events = NULL;
        *nevents = 0;
    }
    return rc;
}

/* ---- Steps -------------------------------------------------------------------------------- */

static uint64_t to_u64(double v)
{
    if (!(v >= 0)) return 0;
    if (v >= 18446744073709551615.0) return UINT64_MAX;
    return (uint64_t)v;
}

/* The counters from the figures given (now[id]: v[id] is): in_use from allocated and
 * freed if it is not given; allocated and freed from in_use's rises and falls if they are
 * not; peak from in_use. */
static void counters(const bool *now, const double *v, mmt__counters_carry_t *c,
                     mmt_meminfo_t *out)
{
    /* In uint64_t, wrapping as the library's own counters do: allocated - freed is in_use
     * however long the series. */
    uint64_t in_use = now[F_IN_USE] ? to_u64(v[F_IN_USE])
                      : now[F_ALLOCATED] && now[F_FREED] && v[F_ALLOCATED] > v[F_FREED]
                          ? to_u64(v[F_ALLOCATED]) - to_u64(v[F_FREED])
                          : 0;
    if (!c->started) {
        c->allocated = in_use;
        c->freed = 0;
        c->peak = in_use;
        c->started = true;
    } else if (in_use > c->in_use) {
        c->allocated += in_use - c->in_use;
    } else {
        c->freed += c->in_use - in_use;
    }
    c->in_use = in_use;
    if (in_use > c->peak) c->peak = in_use;
    uint64_t allocated = now[F_ALLOCATED] ? to_u64(v[F_ALLOCATED]) : c->allocated;
    uint64_t freed = now[F_FREED] ? to_u64(v[F_FREED]) : now[F_ALLOCATED] ? allocated - in_use
                                                                           : c->freed;
    out->in_use = in_use;
    out->allocated = allocated;
    out->freed = freed;
    out->peak = now[F_PEAK] ? to_u64(v[F_PEAK]) : c->peak;
    out->allocations = to_u64(now[F_ALLOCATIONS] ? v[F_ALLOCATIONS] : 0);
    out->frees = to_u64(now[F_FREES] ? v[F_FREES] : 0);
    out->reallocs = to_u64(now[F_REALLOCS] ? v[F_REALLOCS] : 0);
}

/* The tags' readings at step i into c->readings (tags with no column read as 0): the
 * columns' last samples gathered per tag, then each tag's counters made once. */
static bool tag_step(const mmt__series_t *s, size_t i, mmt__series_carry_t *c)
{
    unsigned count = mmt__tag_count();
    if (!c->tlast) {
        c->tlast = calloc(s->ntcols ? s->ntcols : 1, sizeof *c->tlast);
        c->thave = calloc(s->ntcols ? s->ntcols : 1, sizeof *c->thave);
        c->tcounters = calloc(MMT_TAGS_MAX + 1, sizeof *c->tcounters);
        c->readings = calloc(MMT_TAGS_MAX + 1, sizeof *c->readings);
        c->tfigures = calloc(MMT_TAGS_MAX + 1, sizeof *c->tfigures);
        c->tstep = calloc(MMT_TAGS_MAX + 1, sizeof *c->tstep);
        if (!c->tlast || !c->thave || !c->tcounters || !c->readings || !c->tfigures ||
            !c->tstep)
            return false;
    }
    c->nreadings = count;
    c->stamp++;
    for (size_t k = 0; k < s->ntcols; k++) {
        double x = s->tcol[k].v[i];
        if (!isnan(x)) {
            c->tlast[k] = x;
            c->thave[k] = true;
        }
        unsigned tag = s->tcol[k].tag;
        if (tag > MMT_TAGS_MAX) continue;
        struct mmt__tag_figures *f = &c->tfigures[tag];
        if (c->tstep[tag] != c->stamp) { /* the tag's first column at this step */
            c->tstep[tag] = c->stamp;
            memset(f, 0, sizeof *f);
        }
        if (c->thave[k]) {
            f->now[s->tcol[k].id] = true;
            f->v[s->tcol[k].id] = c->tlast[k];
        }
    }
    for (size_t k = 0; k < s->ntcols; k++) {
        unsigned tag = s->tcol[k].tag;
        if (tag > MMT_TAGS_MAX || c->tstep[tag] != c->stamp) continue;
        c->tstep[tag] = c->stamp - 1; /* done: once a tag */
        counters(c->tfigures[tag].now, c->tfigures[tag].v, &c->tcounters[tag],
                 &c->readings[tag].sub);
        c->readings[tag].own = c->readings[tag].sub;
    }
    return true;
}

bool mmt__series_step(const mmt__series_t *s, size_t i, mmt__series_carry_t *c,
                      mmt__step_t *out)
{
    bool any = false, now[F_COUNT] = {0};
    double v[F_COUNT];
    for (size_t k = 0; k < s->ncols; k++) {
        int id = s->col[k].id;
        double x = s->col[k].v[i];
        if (!isnan(x)) {
            any = true;
            c->last[id] = x;
            c->have[id] = true;
        }
    }
    for (size_t k = 0; k < s->ntcols && !any; k++) any = !isnan(s->tcol[k].v[i]);
    if (!any) return false;
    for (int id = 0; id < F_COUNT; id++) {
        now[id] = c->have[id];
        v[id] = c->last[id];
    }
    memset(out, 0, sizeof *out);
    out->time = s->time ? s->time[i] : (double)i * s->interval;
    counters(now, v, &c->counters, &out->info);
    if (s->ntcols) {
        if (!tag_step(s, i, c)) {
            out->time = NAN;
            return false;
        }
        out->tags = c->readings;
        out->ntags = c->nreadings;
    }
    out->rss = now[F_RSS] ? v[F_RSS] : -1;
    /* The machine: a part is there once one of its columns had a sample. */
    if (now[F_CG_CURRENT] || now[F_CG_MAX] || now[F_CG_HIGH] || now[F_CG_LIMIT]) {
        struct mmt_cgroup *g = &out->machine.cgroup;
        g->version = 2;
        g->current = to_u64(now[F_CG_CURRENT] ? v[F_CG_CURRENT] : 0);
        g->max = now[F_CG_MAX] ? to_u64(v[F_CG_MAX]) : MMT_UNLIMITED;
        g->high = now[F_CG_HIGH] ? to_u64(v[F_CG_HIGH]) : MMT_UNLIMITED;
        g->limit = now[F_CG_LIMIT] ? to_u64(v[F_CG_LIMIT]) : g->max;
        if (now[F_CG_LIMIT] && !now[F_CG_MAX]) g->max = g->limit;
        snprintf(g->path, sizeof g->path, "(series)");
        out->machine_parts |= MMT_MACHINE_CGROUP;
    }
    bool psi = false;
    for (int id = F_PSI_SOME10; id <= F_PSI_FULL300; id++) psi = psi || now[id];
    if (psi) {
        struct mmt_psi *q = &out->machine.psi;
        q->valid = 1;
        q->some10 = now[F_PSI_SOME10] ? v[F_PSI_SOME10] : 0;
        q->some60 = now[F_PSI_SOME60] ? v[F_PSI_SOME60] : 0;
        q->some300 = now[F_PSI_SOME300] ? v[F_PSI_SOME300] : 0;
        q->full10 = now[F_PSI_FULL10] ? v[F_PSI_FULL10] : 0;
        q->full60 = now[F_PSI_FULL60] ? v[F_PSI_FULL60] : 0;
        q->full300 = now[F_PSI_FULL300] ? v[F_PSI_FULL300] : 0;
        snprintf(q->source, sizeof q->source, "(series)");
        out->machine_parts |= MMT_MACHINE_PSI;
    }
    if (now[F_TOTAL] || now[F_AVAILABLE]) {
        out->machine.system.total = to_u64(now[F_TOTAL] ? v[F_TOTAL] : 0);
        out->machine.system.available = to_u64(now[F_AVAILABLE] ? v[F_AVAILABLE] : 0);
        out->machine_parts |= MMT_MACHINE_SYSTEM;
    }
    return true;
}
