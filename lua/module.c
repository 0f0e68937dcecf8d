/*
 * The `mmt` Lua module that policies require: rule and task declarations, logging, byte
 * formatting, snapshots, calls to host actions, and limits and reclaim (mmt.limit,
 * mmt.reclaim, mmt.trim). In a dry run (opts.dry_run) mmt.call, mmt.reclaim and mmt.trim
 * say what they would do and do nothing (say_dry_run); mmt.limit's limits are declared as
 * ever, and the engine's switch to the policy says them instead of setting them (engine.c).
 *
 * Bad arguments raise errors naming the function and the field, positioned at the line of
 * the policy that made the call ("policies/x.lua:12: rule \"high-water\": ...").
 */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "engine.h"
#include "export.h"
#include "lj.h"
#include "reclaim.h"
#include "virtual.h"

const char *mmt__metric_name(metric_t m)
{
    static const char *const extras[] = {"rate",       "rss",          "lua",
                                         "cgroup_current", "cgroup_ratio", "psi_some10",
                                         "psi_full10", "available"};
    static_assert(sizeof extras / sizeof *extras == METRIC_COUNT - MMT__NFIELDS,
                  "a name for every metric");
    if ((unsigned)m < MMT__NFIELDS) return mmt__fields[m].name;
    return (unsigned)m < METRIC_COUNT ? extras[m - MMT__NFIELDS] : "?";
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

/* In a dry run, says at level info what the policy code running would have done, after
 * the position of the line that asked ("policies/x.lua:12: dry run: would trim"); `fmt`
 * gives what follows "would ". It raises only if Lua has no memory left for the line. */
static void say_dry_run(lua_State *L, const pstate_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say_dry_run(lua_State *L, const pstate_t *s, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    luaL_where(L, 1);
    lua_pushfstring(L, "dry run: would %s", what);
    lua_concat(L, 2);
    mmt__pstate_log(s, MMT_LOG_INFO, lua_tostring(L, -1));
    lua_pop(L, 1);
}

/* ---- Snapshots ---------------------------------------------------------------------------- */

/* s->paths for at least n tags (they only ever grow in number); raises if no memory. */
static void need_paths(lua_State *L, pstate_t *s, unsigned n)
{
    if (s->paths.n >= n) return;
    mmt__tag_paths_free(&s->paths);
    if (mmt__tag_paths(n, &s->paths) != 0) luaL_error(L, "m.tags: out of memory");
}

/* An entry of m.tags whose rate is not followed yet asks for it here, on first use
 * (__index of the entries' metatable, which maps each such entry to its tag and holds the
 * time of the reading): so only the tags whose rate a policy reads get samples. */
static int l_tag_entry_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "rate") != 0 ||
        !lua_getmetatable(L, 1))
        return 0;
    pstate_t *s = mmt__pstate_of(L);
    lua_pushvalue(L, 1);
    lua_rawget(L, 3);             /* 4: the tag */
    lua_getfield(L, 3, "time");   /* 5 */
    lua_getfield(L, 1, "in_use"); /* 6 */
    double tag = lua_tonumber(L, 4);
    if (!(tag >= 1 && tag <= MMT_TAGS_MAX) || !lua_isnumber(L, 5) || !lua_isnumber(L, 6))
        return 0;
    /* Policy code runs under the engine's lock, except while its file loads (s->loading):
     * the followed rates are then the running policy's to sample, and this one is 0. */
    double rate = s->loading ? 0
                             : mmt__tag_rate(s->engine, (unsigned)tag, lua_tonumber(L, 5),
                                             lua_tonumber(L, 6));
    lua_pushnumber(L, rate);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "rate");
    return 1;
}

/* Pushes m.tags for the snapshot table at index 1 (the key at 2): every tag but the root,
 * keyed by path, each a table of the counters of its subtree, its `rate` and its `limit`
 * (absent, so nil, for a tag without one: "80% of the limit" cannot be taken of none). The
 * evaluation's snapshot shares the evaluation's reading; another (mmt.meminfo()) reads
 * the tags now. */
static void push_tags(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    snapshot_t *snap = s->evaluating;
    const mmt__tag_reading_t *r;
    unsigned n;
    double time;
    lua_settop(L, 2);
    if (snap && snap->table == lua_topointer(L, 1)) {
        if (!mmt__snapshot_tags(s->engine, snap)) luaL_error(L, "m.tags: out of memory");
        r = snap->tags;
        n = snap->ntags;
        time = snap->tags_time;
        lua_pushnil(L); /* 3 */
    } else {
        /* Copied into Lua's memory (3) at once: an error below must not leak the reading. */
        mmt__tag_reading_t *read;
        if (mmt__policy_tags_read(s->engine, &read, &n) != 0)
            luaL_error(L, "m.tags: out of memory");
        time = mmt__engine_now(s->engine);
        mmt__tag_reading_t *copy = lua_newuserdata(L, n * sizeof *copy);
        memcpy(copy, read, n * sizeof *copy);
        mmt__backend.free(read);
        r = copy;
        if (!s->loading) mmt__tag_rates_sample(s->engine, time, r, n);
    }
    need_paths(L, s, n);
    lua_createtable(L, 0, (int)n - 1); /* 4: m.tags */
    lua_pushnil(L);                    /* 5: the entries' metatable, made on first need */
    for (unsigned tag = 1; tag < n; tag++) {
        lua_pushlstring(L, s->paths.text + s->paths.at[tag], s->paths.len[tag]);
        lua_createtable(L, 0, MMT__NFIELDS + 2); /* 7: the entry */
        const mmt_meminfo_t *m = &r[tag].sub;
        for (int i = 0; i < MMT__NFIELDS; i++) {
            lua_pushnumber(L, (lua_Number)mmt__field_value(m, i));
            lua_setfield(L, 7, mmt__fields[i].name);
        }
        uint64_t limit = mmt_limit_get((mmt_tag_t)tag); /* as of now: nil for none */
        if (limit) {
            lua_pushnumber(L, (lua_Number)limit);
            lua_setfield(L, 7, "limit");
        }
        if (s->loading || s->engine->tag_rate_of[tag]) {
            /* Followed (sampled above), or while the file loads, when no rate is had: 0. */
            lua_pushnumber(L, s->loading ? 0
                                         : mmt__tag_rate(s->engine, tag, time, (double)m->in_use));
            lua_setfield(L, 7, "rate");
        } else {
            if (lua_isnil(L, 5)) {
                lua_createtable(L, 0, 2);
                lua_pushcfunction(L, l_tag_entry_index);
                lua_setfield(L, -2, "__index");
                lua_pushnumber(L, time);
                lua_setfield(L, -2, "time");
                lua_replace(L, 5);
            }
            lua_pushvalue(L, 7);
            lua_pushnumber(L, tag);
            lua_rawset(L, 5);
            lua_pushvalue(L, 5);
            lua_setmetatable(L, 7);
        }
        lua_rawset(L, 4);
    }
    lua_pushvalue(L, 4);
}

/* t[key] = a byte count, math.huge for MMT_UNLIMITED; t at the top of the stack. */
static void set_bytes(lua_State *L, const char *key, uint64_t v)
{
    lua_pushnumber(L, v == MMT_UNLIMITED ? HUGE_VAL : (lua_Number)v);
    lua_setfield(L, -2, key);
}

static void set_number(lua_State *L, const char *key, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, key);
}

/* Pushes m.cgroup, m.psi or m.system (`part`, MMT_MACHINE_*) for the snapshot table at
 * index 1, or nil where the machine has none. The evaluation's snapshot shares the
 * evaluation's reading (the rules' too); another (mmt.meminfo()) reads it now. */
static void push_machine(lua_State *L, unsigned part)
{
    pstate_t *s = mmt__pstate_of(L);
    snapshot_t *snap = s->evaluating, fresh;
    if (!snap || snap->table != lua_topointer(L, 1)) {
        fresh = (snapshot_t){.machine_read = 0};
        const struct mmt__virtual *v = s->engine->virt;
        if (v) { /* a virtual engine's machine is its step's */
            fresh.machine = v->step->machine;
            fresh.machine_read = MMT_MACHINE_ALL;
            fresh.machine_found = v->step->machine_parts & MMT_MACHINE_ALL;
        }
        snap = &fresh;
    }
    if (!mmt__snapshot_machine(snap, part)) {
        lua_pushnil(L);
        return;
    }
    const mmt_machine_t *m = &snap->machine;
    typedef struct { const char *key; double value; } number_t;
    if (part == MMT_MACHINE_CGROUP) {
        const struct mmt_cgroup *c = &m->cgroup;
        lua_createtable(L, 0, 8);
        const uint64_t bytes[] = {c->current, c->max, c->high, c->limit};
        const char *const names[] = {"current", "max", "high", "limit"};
        for (int i = 0; i < 4; i++) set_bytes(L, names[i], bytes[i]);
        set_number(L, "version", c->version);
        lua_pushstring(L, c->path);
        lua_setfield(L, -2, "path");
        const number_t events[] = {{"high", (double)c->events_high}, {"max", (double)c->events_max},
                                   {"oom", (double)c->events_oom},
                                   {"oom_kill", (double)c->events_oom_kill}};
        lua_createtable(L, 0, 4);
        for (int i = 0; i < 4; i++) set_number(L, events[i].key, events[i].value);
        lua_setfield(L, -2, "events");
    } else if (part == MMT_MACHINE_PSI) {
        const struct mmt_psi *p = &m->psi;
        const number_t figures[] = {{"some10", p->some10}, {"some60", p->some60},
                                    {"some300", p->some300}, {"full10", p->full10},
                                    {"full60", p->full60}, {"full300", p->full300},
                                    {"some_total", (double)p->some_total},
                                    {"full_total", (double)p->full_total}};
        lua_createtable(L, 0, 9);
        for (int i = 0; i < 8; i++) set_number(L, figures[i].key, figures[i].value);
        lua_pushstring(L, p->source);
        lua_setfield(L, -2, "source");
    } else {
        lua_createtable(L, 0, 2);
        set_bytes(L, "total", m->system.total);
        if (m->system.available) set_bytes(L, "available", m->system.available);
    }
}

/* The argument of m.eta or m.predict (`fn`), which says `what` it must be: the first, or
 * the second when called as a method (m:eta(limit)), whose first is the snapshot. A
 * number, nan not: it would come back as an answer that compares false with everything. */
static double trend_arg(lua_State *L, const char *fn, const char *what)
{
    int arg = lua_istable(L, 1) ? 2 : 1;
    if (lua_type(L, arg) != LUA_TNUMBER)
        luaL_error(L, "%s: %s must be a number, not %s%s", fn, what,
                   lua_isnone(L, arg) ? "" : "a ",
                   lua_isnone(L, arg) ? "nothing" : luaL_typename(L, arg));
    double v = lua_tonumber(L, arg);
    if (isnan(v)) luaL_error(L, "%s: %s must be a number, not nan", fn, what);
    return v;
}

/* m.eta(limit): seconds until in_use reaches `limit` bytes at its trend (engine.h,
 * mmt__policy_trend); math.huge when it is not rising. */
static int l_eta(lua_State *L)
{
    double limit = trend_arg(L, "m.eta", "the limit (bytes)"), level, slope;
    mmt__policy_trend(mmt__pstate_of(L), &level, &slope);
    lua_pushnumber(L, mmt__trend_eta(level, slope, limit));
    return 1;
}

/* m.predict(seconds): in_use expected `seconds` after the evaluation's time, on its trend. */
static int l_predict(lua_State *L)
{
    double ahead = trend_arg(L, "m.predict", "the time ahead (seconds)"), level, slope;
    mmt__policy_trend(mmt__pstate_of(L), &level, &slope);
    lua_pushnumber(L, mmt__trend_predict(level, slope, ahead));
    return 1;
}

/* Snapshots compute `rss` and `tags` on first use: reading rss is a system call, and the
 * tags a walk of every thread's counts, which most rules never need. Each is then kept in
 * the table, for the rest of the evaluation. `limit`, the process's (the root's) as m.tags
 * has the tags', is read at each use: nil for none. `eta` and `predict` are the functions
 * l_eta and l_predict, this closure's upvalues: one of each for the state, never made
 * again, for they read the engine's trend, not the snapshot's table. */
static int l_snapshot_index(lua_State *L)
{
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (key && (strcmp(key, "eta") == 0 || strcmp(key, "predict") == 0)) {
        lua_pushvalue(L, lua_upvalueindex(key[0] == 'e' ? 1 : 2));
        return 1;
    }
    if (key && strcmp(key, "limit") == 0) {
        uint64_t limit = mmt_limit_get(MMT_TAG_ROOT);
        if (!limit) return 0;
        lua_pushnumber(L, (lua_Number)limit);
        return 1;
    }
    if (key && strcmp(key, "rss") == 0) {
        lua_pushnumber(L, mmt__read_rss());
        lua_pushvalue(L, -1);
        lua_setfield(L, 1, "rss");
        return 1;
    }
    if (key && strcmp(key, "tags") == 0) {
        push_tags(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, 1, "tags");
        return 1;
    }
    static const struct { const char *key; unsigned part; } machine[] = {
        {"cgroup", MMT_MACHINE_CGROUP}, {"psi", MMT_MACHINE_PSI}, {"system", MMT_MACHINE_SYSTEM}};
    for (size_t i = 0; key && i < sizeof machine / sizeof *machine; i++) {
        if (strcmp(key, machine[i].key) != 0) continue;
        lua_settop(L, 2);
        push_machine(L, machine[i].part);
        /* Kept in the table; a nil is not, but the evaluation's snapshot remembers that
         * the part was read, and does not read the files again. */
        if (!lua_isnil(L, -1)) {
            lua_pushvalue(L, -1);
            lua_setfield(L, 1, machine[i].key);
        }
        return 1;
    }
    return 0;
}

void mmt__push_snapshot(pstate_t *s, snapshot_t *snap)
{
    lua_State *L = s->L;
    lua_createtable(L, 0, 12);
    snap->table = lua_topointer(L, -1);
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
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "mmt.snapshot");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, l_eta);
        lua_pushcfunction(L, l_predict);
        lua_pushcclosure(L, l_snapshot_index, 2);
        lua_setfield(L, -2, "__index");
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "mmt.snapshot");
    }
    lua_setmetatable(L, -2);
}

static int l_meminfo(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    struct mmt_policy *p = s->engine;
    snapshot_t snap = {.rate = p->rate_now, .lua = (double)s->lua_bytes,
                       .time = mmt__engine_now(p), .rss = -1};
    if (p->virt) { /* the step's (its machine: push_machine) */
        snap.info = p->virt->step->info;
        snap.rss = p->virt->step->rss >= 0 ? p->virt->step->rss : 0;
    } else {
        mmt_meminfo(&snap.info);
    }
    mmt__push_snapshot(s, &snap);
    return 1;
}

/* mmt.tags(): the paths of every tag but the root, a tag before its subtree and its
 * subtree before its next sibling, siblings by name. */
static int l_tags(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    need_paths(L, s, mmt__tag_count());
    unsigned n = s->paths.n;
    lua_createtable(L, (int)n - 1, 0);
    for (unsigned k = 0; k + 1 < n; k++) {
        unsigned tag = s->paths.order[k];
        lua_pushlstring(L, s->paths.text + s->paths.at[tag], s->paths.len[tag]);
        lua_rawseti(L, -2, (int)k + 1);
    }
    return 1;
}

/* ---- mmt.rule ----------------------------------------------------------------------------- */

static const char *const rule_fields[] = {"name", "metric", "above", "below", "hold", "when",
                                          "fire", "resolve", "tag", "tag_optional", NULL};

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

/* The rule's `tag` and `tag_optional` fields into r: returns the tag's path, or NULL if the
 * rule has none, and leaves the field on the stack (keeping the path alive). An unknown tag
 * is a load error, unless the rule says the program may make it later. */
static const char *rule_tag(lua_State *L, const char *name, bool has_metric, rule_t *r)
{
    r->tag = -1;
    rule_field(L, "tag_optional");
    bool has_optional = !lua_isnil(L, -1);
    if (has_optional && !lua_isboolean(L, -1))
        luaL_error(L, "rule \"%s\": 'tag_optional' must be a boolean, not a %s", name,
                   luaL_typename(L, -1));
    r->tag_optional = lua_toboolean(L, -1);
    lua_pop(L, 1);
    rule_field(L, "tag");
    if (lua_isnil(L, -1)) {
        if (has_optional) luaL_error(L, "rule \"%s\": 'tag_optional' goes with 'tag'", name);
        return NULL;
    }
    if (!has_metric)
        luaL_error(L, "rule \"%s\": 'tag' goes with 'metric', not 'when' (a 'when' function "
                      "reads m.tags)", name);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "rule \"%s\": 'tag' must be a string (a tag's path, like \"cache/pages\"), "
                      "not a %s", name, luaL_typename(L, -1));
    size_t len;
    const char *path = lua_tolstring(L, -1, &len);
    if (len == 0)
        luaL_error(L, "rule \"%s\": 'tag' must be a tag's path, not \"\" (a rule without "
                      "'tag' judges the whole process)", name);
    if (r->metric == METRIC_RSS || r->metric == METRIC_LUA)
        luaL_error(L, "rule \"%s\": metric '%s' is the process's, not a tag's: with 'tag', the "
                      "metric is a counter or rate", name, mmt__metric_name(r->metric));
    if (r->metric > METRIC_LUA)
        luaL_error(L, "rule \"%s\": metric '%s' is the machine's, not a tag's: with 'tag', the "
                      "metric is a counter or rate", name, mmt__metric_name(r->metric));
    /* A path with a NUL byte names no tag: mmt_tag_lookup would read only its start. */
    int tag = strlen(path) == len ? mmt__policy_tag(mmt__pstate_of(L)->engine, path) : MMT_ENOENT;
    if (tag > 0) {
        r->tag = tag;
    } else if (!r->tag_optional) {
        luaL_error(L, "rule \"%s\": unknown tag \"%s\" (no tag has that path; with "
                      "tag_optional = true the rule waits for the program to make it)",
                   name, path);
    }
    r->tag_checked = mmt__tag_count();
    return path;
}

/* The start of mmt.rule and mmt.pressure (`fn`): checks that a file is loading and the
 * table at index 1 has a new rule's name (left at index 2, which keeps it alive) and only
 * the fields listed. Returns the name. */
static const char *rule_start(lua_State *L, pstate_t *s, const char *fn,
                              const char *const fields[])
{
    if (!s->loading) luaL_error(L, "%s: rules are declared when the policy loads, not from "
                                   "inside a rule or task", fn);
    if (!lua_istable(L, 1))
        luaL_error(L, "%s: expects a table, not a %s", fn, luaL_typename(L, 1));
    lua_settop(L, 1);

    rule_field(L, "name");
    if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0)
        luaL_error(L, "%s: 'name' must be a non-empty string", fn);
    const char *name = lua_tostring(L, -1);

    long dup = mmt__rule_find(s, name);
    if (dup >= 0)
        luaL_error(L, "rule \"%s\": a rule of that name is already declared at %s", name,
                   s->rules[dup].where);
    if (s->nrules >= MMT__MAX_RULES)
        luaL_error(L, "rule \"%s\": too many rules: a policy may declare at most %d", name,
                   MMT__MAX_RULES);

    /* Unknown fields are errors: a misspelt 'abvoe' must not pass as no threshold. */
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        bool known = false;
        for (const char *const *f = fields; key && *f && !known; f++)
            known = strcmp(*f, key) == 0;
        if (!known) {
            if (key) luaL_error(L, "rule \"%s\": unknown field '%s'", name, key);
            luaL_error(L, "rule \"%s\": fields must be named", name);
        }
    }
    return name;
}

/* The end of mmt.rule and mmt.pressure: adds r, named `name`, to the policy. */
static void rule_add(lua_State *L, pstate_t *s, rule_t r, const char *name, const char *tag_path)
{
    rule_t *rules = mmt__backend_grow(s->rules, &s->rules_cap, s->nrules, sizeof *rules, 8);
    if (!rules) luaL_error(L, "mmt.rule: out of memory");
    s->rules = rules;
    /* caller_position may raise (it makes a Lua string); nothing C-side is held yet. */
    r.where = caller_position(L);
    r.name = mmt__backend_strdup(name);
    r.tag_path = tag_path ? mmt__backend_strdup(tag_path) : NULL;
    s->rules[s->nrules] = r;
    if (!r.name || !r.where || (tag_path && !r.tag_path) || !mmt__rule_index(s)) {
        mmt__backend.free(r.name);
        mmt__backend.free(r.where);
        mmt__backend.free(r.tag_path);
        luaL_error(L, "mmt.rule: out of memory");
    }
    s->nrules++;
}

static int l_rule(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    double t0 = mmt__now();
    const char *name = rule_start(L, s, "mmt.rule", rule_fields);

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
    const char *tag_path = rule_tag(L, name, has_metric, &r);
    r.hold = number_field(L, name, "hold", 0);
    if (r.hold < 0) return luaL_error(L, "rule \"%s\": 'hold' must not be negative", name);

    /* Functions last: once referenced, an error would leak them until the state closes,
     * which is harmless but untidy. */
    if (has_when) r.when_ref = function_field(L, name, "when", true);
    r.fire_ref = function_field(L, name, "fire", true);
    r.resolve_ref = function_field(L, name, "resolve", false);
    rule_add(L, s, r, name, tag_path);
    refund(s, t0);
    return 0;
}

/* ---- mmt.pressure ----------------------------------------------------------------------- */

static const char *const pressure_fields[] = {"name", "some", "full", "window", "fire",
                                              "resolve", NULL};

/* mmt.pressure { name = ..., some = 0.15 (or full = ...), window = 2, fire = ..., resolve = ... }:
 * a rule fired by the kernel's PSI trigger (pressure.c). */
static int l_pressure(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    double t0 = mmt__now();
    const char *name = rule_start(L, s, "mmt.pressure", pressure_fields);
    size_t npressure = 0;
    for (size_t i = 0; i < s->nrules; i++) npressure += s->rules[i].pressure != 0;
    if (npressure >= MMT__PRESSURE_MAX)
        return luaL_error(L, "rule \"%s\": too many pressure rules: a policy may declare at "
                             "most %d (a descriptor each)", name, MMT__PRESSURE_MAX);
    rule_field(L, "some");
    rule_field(L, "full");
    bool some = !lua_isnil(L, -2), full = !lua_isnil(L, -1);
    lua_pop(L, 2);
    if (some == full)
        return luaL_error(L, "rule \"%s\": give either 'some' or 'full' (the share of the "
                             "window tasks stalled on memory, 0 to 1)", name);
    const char *kind = some ? "some" : "full";
    double share = number_field(L, name, kind, NAN);
    double window = number_field(L, name, "window", 2);
    if (!(share > 0 && share <= 1))
        return luaL_error(L, "rule \"%s\": '%s' must be a share of the window above 0 and at "
                             "most 1 (0.15 for 15%%), not %g", name, kind, share);
    if (!(window >= 0.5 && window <= 10))
        return luaL_error(L, "rule \"%s\": 'window' must be from 0.5 to 10 seconds (the "
                             "kernel's range), not %g", name, window);
    long window_ms = lround(window * 1000);
    if (lround(share * window_ms * 1000) < 1)
        return luaL_error(L, "rule \"%s\": '%s' of %g is less than a microsecond of the "
                             "window", name, kind, share);
    /* A virtual engine arms no trigger (lua/virtual.h): what this process may arm is not
     * the policy's affair there. */
    if (window_ms % 2000 != 0 && !s->engine->virt && !mmt__pressure_privileged())
        return luaL_error(L, "rule \"%s\": a window of %g s needs CAP_SYS_RESOURCE, which this "
                             "process lacks (a root in a container often does too): without "
                             "it Linux (6.4 and later) arms triggers whose window is a "
                             "multiple of 2 s", name, window);
    rule_t r = {.when_ref = LUA_NOREF, .fire_ref = LUA_NOREF, .resolve_ref = LUA_NOREF,
                .since = -1, .pressure = some ? MMT__PSI_SOME : MMT__PSI_FULL,
                .metric = some ? METRIC_PSI_SOME10 : METRIC_PSI_FULL10, .above = share * 100,
                .below = share * 100, .window = window_ms / 1000.0,
                .pressure_mode = MMT__PSI_WAITING};
    lua_pushnil(L); /* where rule_tag leaves its field in mmt.rule */
    r.fire_ref = function_field(L, name, "fire", true);
    r.resolve_ref = function_field(L, name, "resolve", false);
    rule_add(L, s, r, name, NULL);
    if (!s->engine->thread_started && !s->engine->virt)
        mmt__policy_log(s->engine, MMT_LOG_WARN, "%s: rule \"%s\": pressure rules need the "
                        "engine's thread (interval_ms or watch): this one never fires",
                        s->rules[s->nrules - 1].where, name);
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
    double now = mmt__engine_now(s->engine);
    task_t t = {.where = where, .fn_ref = ref, .period = period, .origin = now,
                .next_due = now + period};
    s->tasks[s->ntasks++] = t;
    refund(s, t0);
    if (s->engine->opts.interval_ms == 0)
        mmt__policy_log(s->engine, MMT_LOG_WARN,
                        "%s: mmt.every: the engine has no timer (interval_ms is 0), so this "
                        "task never runs", where);
    return 0;
}

/* ---- mmt.limit, mmt.reclaim, mmt.trim ------------------------------------------------------ */

/* The tag at the path that is argument `arg` of `fn`: paths as m.tags keys them
 * ("cache/pages", no leading '/'), and "" for the whole process (the root), as
 * mmt_tag_lookup has it. A path no tag has raises, naming it. */
static unsigned check_tag(lua_State *L, int arg, const char *fn)
{
    if (lua_type(L, arg) != LUA_TSTRING)
        luaL_error(L, "%s: the tag must be a path (like \"cache/pages\", or \"\" for the whole "
                      "process), not a %s", fn, luaL_typename(L, arg));
    size_t len;
    const char *path = lua_tolstring(L, arg, &len);
    const pstate_t *s = mmt__pstate_of(L);
    /* A path with a NUL byte names no tag: mmt_tag_lookup would read only its start. */
    int tag = strlen(path) == len ? mmt__policy_tag(s->engine, path) : MMT_ENOENT;
    if (tag < 0)
        luaL_error(L, "%s: unknown tag \"%s\" (no tag has that path: paths are like "
                      "\"cache/pages\", without a leading '/'; \"\" is the whole process)",
                   fn, path);
    return (unsigned)tag;
}

/* mmt.limit's second argument: nil (0, none), or a number of bytes from 0 up to 2^64
 * (exclusive), cut toward zero. */
static uint64_t check_limit(lua_State *L, int arg)
{
    if (lua_isnil(L, arg)) return 0;
    if (lua_type(L, arg) != LUA_TNUMBER)
        luaL_error(L, "mmt.limit: the limit must be a number of bytes (or nil for none), not "
                      "a %s", luaL_typename(L, arg));
    double v = lua_tonumber(L, arg);
    if (!(v >= 0 && v < 18446744073709551616.0)) {
        char shown[64];
        snprintf(shown, sizeof shown, "%.17g", v);
        if (isnan(v)) snprintf(shown, sizeof shown, "nan"); /* not "-nan" */
        luaL_error(L, "mmt.limit: the limit must be from 0 to 2^64 bytes, not %s", shown);
    }
    return (uint64_t)v;
}

/* mmt.limit(path, bytes): a hard limit on the tag's subtree (memory.h, mmt_limit_set);
 * nil or 0 removes the tag's limit. Declared as the file runs, like a rule: the engine
 * applies the file's limits when it switches to the policy, and gives back those a later
 * policy of it no longer sets (engine.c). One call a tag. A dry run declares them all the
 * same (the same errors), and the switch says them rather than sets them. */
static int l_limit(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    double t0 = mmt__now();
    if (!s->loading)
        return luaL_error(L, "mmt.limit: limits are set when the policy loads, not from inside "
                             "a rule or task");
    unsigned tag = check_tag(L, 1, "mmt.limit");
    uint64_t bytes = check_limit(L, 2);
    for (size_t i = 0; i < s->nlimits; i++)
        if (s->limits[i].tag == tag)
            return luaL_error(L, "mmt.limit: %s%s%s is limited already, at %s",
                              tag ? "tag \"" : "the whole process", tag ? lua_tostring(L, 1) : "",
                              tag ? "\"" : "", s->limits[i].where);
    policy_limit_t *limits = mmt__backend_grow(s->limits, &s->limits_cap, s->nlimits,
                                               sizeof *limits, 4);
    if (!limits) return luaL_error(L, "mmt.limit: out of memory");
    s->limits = limits;
    /* caller_position may raise (it makes a Lua string); nothing C-side is held yet. */
    char *where = caller_position(L);
    if (!where) return luaL_error(L, "mmt.limit: out of memory");
    s->limits[s->nlimits++] = (policy_limit_t){.tag = tag, .bytes = bytes, .where = where};
    refund(s, t0);
    return 0;
}

/* At an allocation checkpoint (mmt__inside_checkpoint), where the program's reclaimers
 * must not run, asks the engine's thread to run the reclaim or trim: returns nil and
 * "deferred", or nil and why it could not (a once-said line in the log as well when the
 * engine has no thread). `fn` names the function in messages. */
static int defer(lua_State *L, pstate_t *s, bool trim, unsigned tag, size_t bytes, const char *fn)
{
    int rc = mmt__policy_defer(s->engine, trim, tag, bytes);
    lua_pushnil(L);
    if (rc == 0) {
        lua_pushstring(L, "deferred");
    } else if (rc == MMT__DEFER_FULL) {
        lua_pushfstring(L, "%s: not run: %d reclaims and trims already wait for the engine's "
                           "thread", fn, (int)MMT__DEFERRED_MAX);
    } else {
        lua_pushfstring(L, "%s: not run: called at an allocation checkpoint, where the "
                           "program's reclaimers must not run, and the engine has no thread to "
                           "run it on (interval_ms or watch gives it one)", fn);
        if (!s->said_no_thread) {
            s->said_no_thread = true;
            luaL_where(L, 1);
            lua_pushvalue(L, -2);
            lua_concat(L, 2);
            mmt__pstate_log(s, MMT_LOG_WARN, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    return 2;
}

/* mmt.reclaim(path, bytes): runs the reclaimers of the tag's subtree until its in_use has
 * fallen by `bytes` (memory.h, mmt_reclaim); returns what it fell by. Nothing is asked
 * for 0 or less; math.huge asks for all they can give. The reclaimers are the host's code:
 * on the engine's thread (a tick, a task) and while the file loads they run at once, and
 * their time counts against the policy code that called them, as a host action's does; at
 * an allocation checkpoint they run on the engine's thread soon after (defer). Their
 * report reaches the log from the engine's thread, woken for it. In a dry run nothing
 * runs, here or on the thread: the reclaim is said (unless it asks nothing) and gives 0. */
static int l_reclaim(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    unsigned tag = check_tag(L, 1, "mmt.reclaim");
    if (lua_type(L, 2) != LUA_TNUMBER)
        return luaL_error(L, "mmt.reclaim: the bytes wanted must be a number, not a %s",
                          luaL_typename(L, 2));
    double v = lua_tonumber(L, 2);
    if (isnan(v)) return luaL_error(L, "mmt.reclaim: the bytes wanted must be a number, not nan");
    size_t wanted = v <= 0 ? 0 : v >= 18446744073709551616.0 ? SIZE_MAX : (size_t)v;
    if (s->engine->opts.dry_run) {
        char amount[32];
        if (wanted)
            say_dry_run(L, s, "reclaim %s of %s%s%s",
                        wanted == SIZE_MAX ? "as much as it can"
                                           : mmt__human_bytes(wanted, amount, sizeof amount),
                        tag ? "tag \"" : "the whole process", tag ? lua_tostring(L, 1) : "",
                        tag ? "\"" : "");
        lua_pushnumber(L, 0);
        return 1;
    }
    if (wanted && mmt__inside_checkpoint()) return defer(L, s, false, tag, wanted, "mmt.reclaim");
    size_t freed = wanted ? mmt_reclaim((mmt_tag_t)tag, wanted) : 0;
    if (wanted) mmt__thread_wake(s->engine);
    lua_pushnumber(L, (lua_Number)freed);
    return 1;
}

/* mmt.trim(): gives the allocator's free memory back to the system (mmt_trim); returns the
 * drop in resident bytes it measured. At an allocation checkpoint the engine's thread
 * trims instead, soon after (defer), and logs what it gave back. In a dry run it is said
 * and gives 0. */
static int l_trim(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    if (s->engine->opts.dry_run) {
        say_dry_run(L, s, "trim");
        lua_pushnumber(L, 0);
        return 1;
    }
    if (mmt__inside_checkpoint()) return defer(L, s, true, 0, 0, "mmt.trim");
    lua_pushnumber(L, (lua_Number)mmt_trim());
    return 1;
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

/* mmt.call(name, n): the host action `name` with n, and its result. In a dry run no action
 * runs, registered or not (a host that runs policies only to see them, mmt-run, registers
 * none): the call is said and gives 0. */
static int l_call(lua_State *L)
{
    pstate_t *s = mmt__pstate_of(L);
    const char *name = luaL_checkstring(L, 1);
    int64_t arg = checkint64(L, 2, "mmt.call");
    struct mmt__virtual *v = s->engine->virt;
    if (v) { /* a virtual engine: its stub if it has one, else a dry run's; told either way */
        action_t a;
        bool stubbed = mmt__policy_find_action(s->engine, name, &a);
        int64_t r = 0;
        if (stubbed) r = a.fn(arg, a.ud);
        else say_dry_run(L, s, "call %s(%" PRId64 ")", name, arg);
        if (v->on_call) v->on_call(name, arg, r, stubbed, v->ud);
        lua_pushnumber(L, (lua_Number)r);
        return 1;
    }
    if (s->engine->opts.dry_run) {
        say_dry_run(L, s, "call %s(%" PRId64 ")", name, arg);
        lua_pushnumber(L, 0);
        return 1;
    }
    action_t a;
    if (!mmt__policy_find_action(s->engine, name, &a))
        return luaL_error(L, "mmt.call: no host action named \"%s\"", name);
    int64_t r = a.fn(arg, a.ud);
    lua_pushnumber(L, (lua_Number)r);
    return 1;
}

/* A counter of the snapshot (the table at idx; `tag` NULL) or of one of its tags' entries
 * (read raw; `tag` names the entry): the counters are uint64_t, and a number that is not
 * one is refused, not converted. */
static uint64_t counter_field(lua_State *L, int idx, const char *name, const char *tag)
{
    if (tag) {
        lua_pushstring(L, name);
        lua_rawget(L, idx);
    } else {
        lua_getfield(L, idx, name);
    }
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "mmt.format: field '%s' of %s must be a number", name,
                   tag ? tag : "the snapshot");
    double v = lua_tonumber(L, -1);
    if (!(v >= 0 && v < 18446744073709551616.0))
        luaL_error(L, "mmt.format: field '%s'%s%s must be a number from 0 to 2^64, not %s",
                   name, tag ? " of " : "", tag ? tag : "", lua_tostring(L, -1));
    lua_pop(L, 1);
    return (uint64_t)v;
}

static int compare_figures(const void *x, const void *y)
{
    const mmt__tag_figures_t *a = x, *b = y;
    return mmt__tag_path_compare(a->path, a->len, b->path, b->len);
}

/* The snapshot's m.tags (the snapshot at index 1; read through its metatable, so a
 * snapshot that has not read its tags reads them now), as figures in path order, in a
 * userdata pushed on the stack; *n is how many. NULL if the snapshot has no tags. */
static mmt__tag_figures_t *snapshot_tags(lua_State *L, size_t *n)
{
    *n = 0;
    lua_getfield(L, 1, "tags");
    if (lua_isnil(L, -1)) return NULL;
    if (!lua_istable(L, -1))
        luaL_error(L, "mmt.format: field 'tags' of the snapshot must be a table, not a %s",
                   luaL_typename(L, -1));
    int tags = lua_gettop(L);
    size_t count = 0;
    for (lua_pushnil(L); lua_next(L, tags); lua_pop(L, 1)) count++;
    mmt__tag_figures_t *f = lua_newuserdata(L, (count ? count : 1) * sizeof *f);
    /* The paths are the table's keys, which it keeps alive: nothing changes it meanwhile
     * (the entries are read raw, so no policy code runs). */
    for (lua_pushnil(L); lua_next(L, tags); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "mmt.format: the keys of m.tags must be tags' paths, not a %s",
                       luaL_typename(L, -2));
        size_t len;
        const char *path = lua_tolstring(L, -2, &len);
        if (!lua_istable(L, -1))
            luaL_error(L, "mmt.format: m.tags[\"%s\"] must be a table, not a %s", path,
                       luaL_typename(L, -1));
        char what[128];
        snprintf(what, sizeof what, "m.tags[\"%.*s\"]", (int)(len < 64 ? len : 64), path);
        mmt__tag_figures_t *t = &f[(*n)++];
        t->path = path;
        t->len = len;
        for (int i = 0; i < MMT__NFIELDS; i++)
            mmt__field_set(&t->info, i, counter_field(L, lua_gettop(L), mmt__fields[i].name, what));
    }
    qsort(f, *n, sizeof *f, compare_figures);
    return f;
}

/* A number field of the table at the top of the stack, for mmt.format: a byte count from
 * 0 to 2^64 (math.huge allowed where `unlimited`, as MMT_UNLIMITED) or, with `percent`, a
 * share from 0 to 100. */
static double machine_number(lua_State *L, const char *part, const char *name, bool unlimited,
                             bool percent)
{
    lua_getfield(L, -1, name);
    double v = lua_tonumber(L, -1);
    bool ok = lua_type(L, -1) == LUA_TNUMBER &&
              (unlimited && v == HUGE_VAL ? true
               : percent                  ? v >= 0 && v <= 100
                                          : v >= 0 && v < 18446744073709551616.0);
    if (!ok)
        luaL_error(L, "mmt.format: field '%s.%s' of the snapshot must be %s, not %s", part, name,
                   unlimited ? "a byte count or math.huge" : percent ? "a percentage, 0 to 100"
                                                                     : "a count",
                   lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

static uint64_t machine_count(lua_State *L, const char *part, const char *name, bool unlimited)
{
    double v = machine_number(L, part, name, unlimited, false);
    return v == HUGE_VAL ? MMT_UNLIMITED : (uint64_t)v;
}

/* A string field of the table at the top of the stack into out (cut to fit); "" if nil. */
static void machine_string(lua_State *L, const char *name, char *out, size_t len)
{
    lua_getfield(L, -1, name);
    size_t n = 0;
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : "";
    if (n >= len) n = len - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    lua_pop(L, 1);
}

/* The machine's figures of the snapshot at index 1 (m.cgroup, m.psi, m.system, read
 * through its metatable: a snapshot that has not read them reads them now); a part that
 * is nil is not written. Returns the parts found. */
static unsigned snapshot_machine(lua_State *L, mmt_machine_t *mm)
{
    *mm = (mmt_machine_t){0};
    unsigned found = 0;
    lua_getfield(L, 1, "cgroup");
    if (lua_istable(L, -1)) {
        struct mmt_cgroup *cg = &mm->cgroup;
        double version = machine_number(L, "cgroup", "version", false, false);
        cg->version = version == 2 ? 2 : 1;
        machine_string(L, "path", cg->path, sizeof cg->path);
        cg->current = machine_count(L, "cgroup", "current", false);
        cg->max = machine_count(L, "cgroup", "max", true);
        cg->high = machine_count(L, "cgroup", "high", true);
        cg->limit = machine_count(L, "cgroup", "limit", true);
        lua_getfield(L, -1, "events");
        if (lua_istable(L, -1)) {
            cg->events_high = machine_count(L, "cgroup.events", "high", false);
            cg->events_max = machine_count(L, "cgroup.events", "max", false);
            cg->events_oom = machine_count(L, "cgroup.events", "oom", false);
            cg->events_oom_kill = machine_count(L, "cgroup.events", "oom_kill", false);
        }
        lua_pop(L, 1);
        found |= MMT_MACHINE_CGROUP;
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "psi");
    if (lua_istable(L, -1)) {
        struct mmt_psi *p = &mm->psi;
        p->valid = 1;
        p->some10 = machine_number(L, "psi", "some10", false, true);
        p->some60 = machine_number(L, "psi", "some60", false, true);
        p->some300 = machine_number(L, "psi", "some300", false, true);
        p->full10 = machine_number(L, "psi", "full10", false, true);
        p->full60 = machine_number(L, "psi", "full60", false, true);
        p->full300 = machine_number(L, "psi", "full300", false, true);
        p->some_total = machine_count(L, "psi", "some_total", false);
        p->full_total = machine_count(L, "psi", "full_total", false);
        machine_string(L, "source", p->source, sizeof p->source);
        found |= MMT_MACHINE_PSI;
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "system");
    if (lua_istable(L, -1)) {
        mm->system.total = machine_count(L, "system", "total", false);
        lua_getfield(L, -1, "available");
        bool has = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (has) mm->system.available = machine_count(L, "system", "available", false);
        if (mm->system.total) found |= MMT_MACHINE_SYSTEM;
    }
    lua_pop(L, 1);
    return found;
}

/* mmt.format(m, "text" | "json" | "prometheus"): a snapshot as text, its tags and the
 * machine's figures included. */
static int l_format(lua_State *L)
{
    static const char *const formats[] = {"text", "json", "prometheus", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    int format = luaL_checkoption(L, 2, "text", formats);
    lua_settop(L, 2);
    /* The counters (fields.h), then the figures the engine adds. */
    mmt_meminfo_t m;
    for (int i = 0; i < MMT__NFIELDS; i++)
        mmt__field_set(&m, i, counter_field(L, 1, mmt__fields[i].name, NULL));
    static const char *const extras[] = {"rate", "rss", "lua", "time"};
    double x[4];
    for (int i = 0; i < 4; i++) {
        lua_getfield(L, 1, extras[i]);
        if (lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "mmt.format: field '%s' of the snapshot must be a number",
                              extras[i]);
        x[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    mmt__extra_t extra = {x[0], x[1], x[2], x[3]};
    mmt_machine_t machine;
    snapshot_machine(L, &machine);
    size_t ntags;
    const mmt__tag_figures_t *tags = snapshot_tags(L, &ntags);
    char buf[4096], *text = buf;
    int n = mmt__format_tags(buf, sizeof buf, &m, &extra, tags, ntags, &machine, format);
    if (n < 0) return luaL_error(L, "mmt.format: cannot format");
    if ((size_t)n >= sizeof buf) { /* the tags, most likely: in Lua's memory, under its cap */
        text = lua_newuserdata(L, (size_t)n + 1);
        mmt__format_tags(text, (size_t)n + 1, &m, &extra, tags, ntags, &machine, format);
    }
    lua_pushlstring(L, text, (size_t)n);
    return 1;
}

int mmt__open_module(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"rule", l_rule},   {"every", l_every}, {"log", l_log},       {"bytes", l_bytes},
        {"call", l_call},   {"meminfo", l_meminfo}, {"format", l_format}, {"tags", l_tags},
        {"limit", l_limit}, {"reclaim", l_reclaim}, {"trim", l_trim},
        {"pressure", l_pressure},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 16);
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
