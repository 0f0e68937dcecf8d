/*
 * The `mmt` Lua module that policies require: rule and task declarations, logging, byte
 * formatting, snapshots, and calls to host actions.
 *
 * Bad arguments raise errors naming the function and the field, positioned at the line of
 * the policy that made the call ("policies/x.lua:12: rule \"high-water\": ...").
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "engine.h"
#include "export.h"
#include "lj.h"

const char *mmt__metric_name(metric_t m)
{
    static const char *const extras[] = {"rate", "rss", "lua"};
    return (int)m < MMT__NFIELDS ? mmt__fields[m].name : extras[m - MMT__NFIELDS];
}

/* "file:line" of the policy line that called the running C function, as a backend copy
 * (NULL if that fails). It raises a Lua error only before making the copy. */
static char *caller_position(lua_State *L)
{
    luaL_where(L, 1);
    char w[1024];
    mmt__pstate_expand(mmt__pstate_of(L), lua_tostring(L, -1), w, sizeof w);
    lua_pop(L, 1);
    size_t n = strlen(w);
    while (n > 0 && (w[n - 1] == ' ' || w[n - 1] == ':')) n--;
    char *d = mmt__backend.malloc(n + 1);
    if (d) {
        memcpy(d, w, n);
        d[n] = '\0';
    }
    return d;
}

/* ---- Snapshots ---------------------------------------------------------------------------- */

/* Snapshots compute `rss` on first use: reading it is a system call, and most rules never
 * look at it. */
static int l_snapshot_index(lua_State *L)
{
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "rss") == 0) {
        lua_pushnumber(L, mmt__read_rss());
        lua_pushvalue(L, -1);
        lua_setfield(L, 1, "rss");
        return 1;
    }
    return 0;
}

void mmt__push_snapshot(pstate_t *s, const snapshot_t *snap)
{
    lua_State *L = s->L;
    lua_createtable(L, 0, 12);
    const mmt_meminfo_t *m = &snap->info;
    for (int i = 0; i < MMT__NFIELDS; i++) {
        lua_pushnumber(L, (lua_Number)mmt__field_value(m, i));
        lua_setfield(L, -2, mmt__fields[i].name);
    }
    lua_pushnumber(L, snap->rate);
    lua_setfield(L, -2, "rate");
    lua_pushnumber(L, snap->lua);
    lua_setfield(L, -2, "lua");
    lua_pushnumber(L, snap->time);
    lua_setfield(L, -2, "time");
    if (snap->rss >= 0) {
        lua_pushnumber(L, snap->rss);
        lua_setfield(L, -2, "rss");
    } else {
        lua_getfield(L, LUA_REGISTRYINDEX, "mmt.snapshot");
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_createtable(L, 0, 1);
            lua_pushcfunction(L, l_snapshot_index);
            lua_setfield(L, -2, "__index");
            lua_pushvalue(L, -1);
            lua_setfield(L, LUA_REGISTRYINDEX, "mmt.snapshot");
        }
        lua_setmetatable(L, -2);
    }
}

static int l_meminfo(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    snapshot_t snap = {.rate = s->engine->rate_now, .lua = (double)s->lua_bytes,
                       .time = mmt__now(), .rss = -1};
    mmt_meminfo(&snap.info);
    mmt__push_snapshot(s, &snap);
    return 1;
}

/* ---- mmt.rule ----------------------------------------------------------------------------- */

static const char *const rule_fields[] = {"name", "metric", "above", "below", "hold",
                                          "when", "fire",   "resolve", NULL};

/* Pushes field `key` of the rule table (argument 1), read raw: a metatable's __index
 * would run policy code inside mmt.rule, where the time is the engine's (see refund). */
static void rule_field(lua_State *L, const char *key)
{
    lua_pushstring(L, key);
    lua_rawget(L, 1);
}

/* The rule's number field `key`: missing gives `dflt` (NAN: required). */
static double number_field(lua_State *L, const char *rule, const char *key, double dflt)
{
    rule_field(L, key);
    double v = dflt;
    if (lua_isnil(L, -1)) {
        if (isnan(dflt)) luaL_error(L, "rule \"%s\": '%s' is missing (a number)", rule, key);
    } else if (lua_type(L, -1) != LUA_TNUMBER) {
        luaL_error(L, "rule \"%s\": '%s' must be a number, not a %s", rule, key,
                   luaL_typename(L, -1));
    } else {
        v = lua_tonumber(L, -1);
        if (!isfinite(v)) luaL_error(L, "rule \"%s\": '%s' must be a finite number", rule, key);
    }
    lua_pop(L, 1);
    return v;
}

/* A reference to the rule's function field `key`, LUA_NOREF if absent and optional. */
static int function_field(lua_State *L, const char *rule, const char *key, bool required)
{
    rule_field(L, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (required) luaL_error(L, "rule \"%s\": '%s' is missing (a function)", rule, key);
        return LUA_NOREF;
    }
    if (!lua_isfunction(L, -1))
        luaL_error(L, "rule \"%s\": '%s' must be a function, not a %s", rule, key,
                   luaL_typename(L, -1));
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The time budget is for the policy's own code: the engine's work declaring a rule (no
 * policy code runs inside: fields are read raw) is given back to it, so a file of many
 * rules (up to MMT__MAX_RULES) loads in the budget. At most one budget's worth in all. */
static void refund(pstate_t *s, double since)
{
    double give = mmt__now() - since, room = s->budget_ms / 1000.0 - s->refunded;
    if (give > room) give = room;
    if (give > 0) {
        s->deadline += give;
        s->refunded += give;
    }
}

static int l_rule(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    double t0 = mmt__now();
    if (!s->loading) return luaL_error(L, "mmt.rule: rules are declared when the policy loads, "
                                          "not from inside a rule or task");
    if (!lua_istable(L, 1))
        return luaL_error(L, "mmt.rule: expects a table, not a %s", luaL_typename(L, 1));
    lua_settop(L, 1);

    rule_field(L, "name");
    if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0)
        return luaL_error(L, "mmt.rule: 'name' must be a non-empty string");
    const char *name = lua_tostring(L, -1); /* kept alive on the stack at index 2 */

    long dup = mmt__rule_find(s, name);
    if (dup >= 0)
        return luaL_error(L, "rule \"%s\": a rule of that name is already declared at %s",
                          name, s->rules[dup].where);
    if (s->nrules >= MMT__MAX_RULES)
        return luaL_error(L, "rule \"%s\": too many rules: a policy may declare at most %d",
                          name, MMT__MAX_RULES);

    /* Unknown fields are errors: a misspelt 'abvoe' must not pass as no threshold. */
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        bool known = false;
        for (const char *const *f = rule_fields; key && *f && !known; f++)
            known = strcmp(*f, key) == 0;
        if (!known) {
            if (key) return luaL_error(L, "rule \"%s\": unknown field '%s'", name, key);
            return luaL_error(L, "rule \"%s\": fields must be named", name);
        }
    }

    rule_t r = {.when_ref = LUA_NOREF, .fire_ref = LUA_NOREF, .resolve_ref = LUA_NOREF,
                .since = -1};
    rule_field(L, "when");
    bool has_when = !lua_isnil(L, -1);
    lua_pop(L, 1);
    rule_field(L, "metric");
    bool has_metric = !lua_isnil(L, -1);
    if (has_when && has_metric)
        return luaL_error(L, "rule \"%s\": give either 'when' or 'metric', not both", name);
    if (!has_when && !has_metric)
        return luaL_error(L, "rule \"%s\": needs 'when' (a function) or 'metric' and 'above'",
                          name);
    if (has_metric) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "rule \"%s\": 'metric' must be a string, not a %s", name,
                              luaL_typename(L, -1));
        const char *metric = lua_tostring(L, -1);
        r.metric = METRIC_COUNT;
        for (int i = 0; i < METRIC_COUNT; i++)
            if (strcmp(metric, mmt__metric_name((metric_t)i)) == 0) r.metric = (metric_t)i;
        if (r.metric == METRIC_COUNT) {
            char known[512] = "";
            for (int i = 0; i < METRIC_COUNT; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         i == 0 ? "" : i == METRIC_COUNT - 1 ? " or " : ", ",
                         mmt__metric_name((metric_t)i));
            return luaL_error(L, "rule \"%s\": unknown metric '%s' (%s)", name, metric, known);
        }
        r.above = number_field(L, name, "above", NAN);
        r.below = number_field(L, name, "below", r.above);
        if (r.below > r.above)
            return luaL_error(L, "rule \"%s\": 'below' (%.17g) must not be more than 'above' "
                                 "(%.17g)", name, r.below, r.above);
    } else {
        rule_field(L, "above");
        rule_field(L, "below");
        if (!lua_isnil(L, -1) || !lua_isnil(L, -2))
            return luaL_error(L, "rule \"%s\": 'above' and 'below' go with 'metric', not "
                                 "'when'", name);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    r.hold = number_field(L, name, "hold", 0);
    if (r.hold < 0) return luaL_error(L, "rule \"%s\": 'hold' must not be negative", name);

    /* Functions last: once referenced, an error would leak them until the state closes,
     * which is harmless but untidy. */
    if (has_when) r.when_ref = function_field(L, name, "when", true);
    r.fire_ref = function_field(L, name, "fire", true);
    r.resolve_ref = function_field(L, name, "resolve", false);

    rule_t *rules = mmt__backend_grow(s->rules, &s->rules_cap, s->nrules, sizeof *rules, 8);
    if (!rules) return luaL_error(L, "mmt.rule: out of memory");
    s->rules = rules;
    /* caller_position may raise (it makes a Lua string); nothing C-side is held yet. */
    r.where = caller_position(L);
    r.name = mmt__backend_strdup(name);
    s->rules[s->nrules] = r;
    if (!r.name || !r.where || !mmt__rule_index(s)) {
        mmt__backend.free(r.name);
        mmt__backend.free(r.where);
        return luaL_error(L, "mmt.rule: out of memory");
    }
    s->nrules++;
    refund(s, t0);
    return 0;
}

/* ---- mmt.every ---------------------------------------------------------------------------- */

static int l_every(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    double t0 = mmt__now();
    if (!s->loading) return luaL_error(L, "mmt.every: tasks are declared when the policy loads");
    double period = luaL_checknumber(L, 1);
    luaL_argcheck(L, period > 0 && isfinite(period), 1, "the period must be a positive number of "
                                                        "seconds");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    task_t *tasks = mmt__backend_grow(s->tasks, &s->tasks_cap, s->ntasks, sizeof *tasks, 4);
    if (!tasks) return luaL_error(L, "mmt.every: out of memory");
    s->tasks = tasks;
    lua_settop(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: before any C-side copy */
    char *where = caller_position(L);
    if (!where) return luaL_error(L, "mmt.every: out of memory");
    /* The engine's thread sleeps in whole milliseconds: a shorter period would have it
     * run the task back to back, a core's worth of time for nothing. */
    if (period < MMT__MIN_PERIOD) {
        mmt__policy_log(s->engine, MMT_LOG_WARN, "%s: mmt.every: a period of %g s runs every "
                        "%g s, the timer's resolution", where, period, MMT__MIN_PERIOD);
        period = MMT__MIN_PERIOD;
    }
    task_t t = {.where = where, .fn_ref = ref, .period = period, .next_due = mmt__now() + period};
    s->tasks[s->ntasks++] = t;
    refund(s, t0);
    if (s->engine->opts.interval_ms == 0)
        mmt__policy_log(s->engine, MMT_LOG_WARN,
                        "%s: mmt.every: the engine has no timer (interval_ms is 0), so this "
                        "task never runs", where);
    return 0;
}

/* ---- mmt.log, mmt.bytes, mmt.call ------------------------------------------------------------- */

static int l_log(lua_State *L)
{
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    pstate_t *s = mmt__pstate_of(L);
    const char *level = luaL_checkstring(L, 1);
    int lv = -1;
    for (int i = 0; levels[i]; i++)
        if (strcmp(level, levels[i]) == 0) lv = i;
    if (lv < 0)
        return luaL_error(L, "mmt.log: unknown level '%s' (error, warn, info or debug)", level);
    luaL_checkstring(L, 2);
    int n = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "mmt.format");
    for (int i = 2; i <= n; i++) lua_pushvalue(L, i);
    lua_call(L, n - 1, 1);
    mmt__pstate_log(s, lv, lua_tostring(L, -1));
    return 0;
}

static int l_bytes(lua_State *L)
{
    double n = luaL_checknumber(L, 1);
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
    enum { UNITS = sizeof units / sizeof units[0] };
    if (!isfinite(n)) { /* said as it is, not as a size */
        lua_pushstring(L, isnan(n) ? "nan" : n > 0 ? "inf" : "-inf");
        return 1;
    }
    double a = fabs(n);
    if (a < 1024) {
        lua_pushfstring(L, "%d B", (int)n);
        return 1;
    }
    int u = -1;
    while (a >= 1024 && u < UNITS - 1) {
        a /= 1024;
        u++;
    }
    char buf[64];
    snprintf(buf, sizeof buf, a < 1e6 ? "%s%.1f" : "%s%.4g", n < 0 ? "-" : "", a);
    size_t len = strlen(buf);
    if (len > 2 && strcmp(buf + len - 2, ".0") == 0) buf[len - 2] = '\0';
    lua_pushfstring(L, "%s %s", buf, units[u]);
    return 1;
}

/* The host gets an int64_t: a number that has none (nan, inf, past +-2^63) is an error,
 * not an undefined conversion. Fractions are cut toward zero. */
static int64_t checkint64(lua_State *L, int arg, const char *what)
{
    double v = luaL_optnumber(L, arg, 0);
    if (!(v > -9223372036854775808.0 && v < 9223372036854775808.0)) {
        char shown[64];
        snprintf(shown, sizeof shown, "%.17g", v);
        if (isnan(v)) snprintf(shown, sizeof shown, "nan"); /* not "-nan" */
        luaL_error(L, "%s: the argument must be a finite number between -2^63 and 2^63, not %s",
                   what, shown);
    }
    return (int64_t)v;
}

static int l_call(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    const char *name = luaL_checkstring(L, 1);
    int64_t arg = checkint64(L, 2, "mmt.call");
    action_t a;
    if (!mmt__policy_find_action(s->engine, name, &a))
        return luaL_error(L, "mmt.call: no host action named \"%s\"", name);
    int64_t r = a.fn(arg, a.ud);
    lua_pushnumber(L, (lua_Number)r);
    return 1;
}

/* mmt.format(m, "text" | "json" | "prometheus"): a snapshot as text. */
static int l_format(lua_State *L)
{
    static const char *const formats[] = {"text", "json", "prometheus", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    int format = luaL_checkoption(L, 2, "text", formats);
    /* The counters (fields.h), then the figures the engine adds. */
    static const char *const extras[] = {"rate", "rss", "lua", "time"};
    double v[MMT__NFIELDS + 4];
    for (int i = 0; i < MMT__NFIELDS + 4; i++) {
        const char *name = i < MMT__NFIELDS ? mmt__fields[i].name : extras[i - MMT__NFIELDS];
        lua_getfield(L, 1, name);
        if (lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "mmt.format: field '%s' of the snapshot must be a number", name);
        v[i] = lua_tonumber(L, -1);
        /* The counters are uint64_t: a number that is not one is refused, not converted. */
        if (i < MMT__NFIELDS && !(v[i] >= 0 && v[i] < 18446744073709551616.0))
            return luaL_error(L, "mmt.format: field '%s' must be a number from 0 to 2^64, not %s",
                              name, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    mmt_meminfo_t m;
    for (int i = 0; i < MMT__NFIELDS; i++) mmt__field_set(&m, i, (uint64_t)v[i]);
    const double *x = v + MMT__NFIELDS;
    mmt__extra_t extra = {x[0], x[1], x[2], x[3]};
    char buf[4096];
    int n = mmt__format(buf, sizeof buf, &m, &extra, format);
    if (n < 0 || (size_t)n >= sizeof buf) return luaL_error(L, "mmt.format: cannot format");
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

int mmt__open_module(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"rule", l_rule},   {"every", l_every}, {"log", l_log},       {"bytes", l_bytes},
        {"call", l_call},   {"meminfo", l_meminfo}, {"format", l_format}, {NULL, NULL},
    };
    lua_createtable(L, 0, 10);
    for (const luaL_Reg *f = functions; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    lua_pushnumber(L, 1024.0);
    lua_setfield(L, -2, "KiB");
    lua_pushnumber(L, 1024.0 * 1024);
    lua_setfield(L, -2, "MiB");
    lua_pushnumber(L, 1024.0 * 1024 * 1024);
    lua_setfield(L, -2, "GiB");
    lua_pushstring(L, MMT_VERSION_STRING);
    lua_setfield(L, -2, "version");
    return 1;
}
