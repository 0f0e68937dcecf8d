/*
 * One policy state: a LuaJIT VM whose memory comes from mmt's backend (uncounted, and
 * capped), whose standard library is cut down to what a policy needs unless the engine is
 * unsafe, and whose every call is stopped once it runs past the time budget.
 *
 * The budget is a count hook that checks the clock. LuaJIT's compiled traces do not run
 * hooks, so the JIT is switched off for policy states: policies then run in LuaJIT's
 * interpreter, which is fast enough for rules that compare a few numbers.
 */
#define _GNU_SOURCE /* pthread_getattr_np */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "engine.h"
#include "lj.h"

/* ---- Memory ------------------------------------------------------------------------ */

/*
 * LuaJIT crashes if an allocation fails part-way through lua_newstate (it closes the
 * half-built state; seen with this LuaJIT for failures at its 2nd to 7th allocation of
 * 52). So a state is born in a reserve taken from the backend beforehand: if the reserve
 * cannot be had, the load fails cleanly, and lua_newstate never sees a failure. Blocks in
 * the reserve are never given back on their own; the reserve goes when the state does.
 */
enum { RESERVE_BYTES = 32 * 1024, RESERVE_ALIGN = 16 };

static bool in_reserve(const pstate_t *s, const void *p)
{
    return p && (const char *)p >= s->reserve && (const char *)p < s->reserve + RESERVE_BYTES;
}

static void *from_reserve(pstate_t *s, size_t n)
{
    size_t at = (s->reserve_used + RESERVE_ALIGN - 1) & ~(size_t)(RESERVE_ALIGN - 1);
    if (at > RESERVE_BYTES || n > RESERVE_BYTES - at) return NULL;
    s->reserve_used = at + n;
    return s->reserve + at;
}

/* Lua's allocator contract: nsize == 0 frees; otherwise resize, NULL on failure (which
 * Lua turns into a "not enough memory" error). Shrinking must not fail. */
static void *state_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    pstate_t *s = ud;
    if (ptr == NULL) osize = 0;
    if (nsize == 0) {
        if (!in_reserve(s, ptr)) mmt__backend.free(ptr);
        s->lua_bytes -= osize;
        return NULL;
    }
    if (nsize > osize && nsize - osize > s->lua_limit - s->lua_bytes) return NULL;
    void *q;
    if (s->being_born || in_reserve(s, ptr)) {
        /* Moving: into the reserve while the state is being born, out of it after. */
        if (nsize <= osize && in_reserve(s, ptr)) return ptr; /* shrinking in place */
        q = s->being_born ? from_reserve(s, nsize) : NULL;
        if (!q) q = mmt__backend.malloc(nsize);
        if (!q) return nsize <= osize ? ptr : NULL;
        if (ptr) {
            memcpy(q, ptr, osize < nsize ? osize : nsize);
            if (!in_reserve(s, ptr)) mmt__backend.free(ptr);
        }
    } else {
        q = mmt__backend.realloc(ptr, nsize);
        if (!q) return nsize <= osize ? ptr : NULL;
    }
    s->lua_bytes = s->lua_bytes - osize + nsize;
    return q;
}

/* ---- Errors --------------------------------------------------------------------------- */

const char *mmt__error_text(lua_State *L)
{
    if (lua_type(L, -1) == LUA_TSTRING) return lua_tostring(L, -1);
    if (lua_type(L, -1) == LUA_TNUMBER) return "error raised with a number, not a message";
    return "error raised with a non-string value";
}

void mmt__pstate_expand(const pstate_t *s, const char *msg, char *out, size_t len)
{
    static const char token[] = MMT__CHUNK ":";
    size_t used = 0;
    if (len == 0) return;
    while (*msg && used + 1 < len) {
        if (strncmp(msg, token, sizeof token - 1) == 0) {
            int n = snprintf(out + used, len - used, "%s:", s->path);
            used += n > 0 ? (size_t)n : 0;
            if (used >= len) used = len - 1;
            msg += sizeof token - 1;
        } else {
            out[used++] = *msg++;
        }
    }
    out[used] = '\0';
}

void mmt__pstate_log(const pstate_t *s, int level, const char *msg)
{
    char line[1536];
    mmt__pstate_expand(s, msg, line, sizeof line);
    mmt__policy_log(s->engine, level, "%s", line);
}

/* Reached only by an error outside every protected call, which the engine never makes;
 * if it happens all the same, it is a designed crash with a message, not LuaJIT's
 * silent exit. */
static int on_panic(lua_State *L)
{
    mmt__say("mmt: policy engine: unprotected Lua error: %s; aborting", mmt__error_text(L));
    abort();
}

/* ---- Limits: time and C stack ------------------------------------------------------ */

enum { HOOK_EVERY = 1000 }; /* VM instructions between clock checks */
#define MMT__HOOK_MASK (LUA_MASKCALL | LUA_MASKCOUNT)

/*
 * C stack. LuaJIT limits the nesting of Lua calls (its own stack) but not of C functions
 * that call back into Lua: string.gsub with a function, table.sort's comparator, a
 * __tostring reached through tostring or print, metamethods reached from C. Each level of
 * such a recursion takes C stack (gsub alone keeps an 8 KiB buffer there), and the host's
 * thread would die of SIGSEGV. So a call hook, run at every function call, stops policy
 * code that reaches below a floor: STACK_MAX under the point where the engine entered
 * it, and never closer than STACK_RESERVE to the end of the thread's stack (enough for one
 * more C function, the error's unwinding and the host's own frames after it).
 */
enum { STACK_MAX = 1024 * 1024, STACK_RESERVE = 64 * 1024, STACK_MIN_ROOM = 64 * 1024 };

/* This thread's stack, [low, high), both 0 if unknown. This thread only. */
static _Thread_local uintptr_t tls_stack_low, tls_stack_high;
static _Thread_local bool tls_stack_known;

static void stack_bounds(uintptr_t *low, uintptr_t *high)
{
    if (!tls_stack_known) {
        tls_stack_known = true;
        pthread_attr_t a;
        if (pthread_getattr_np(pthread_self(), &a) == 0) {
            void *addr;
            size_t size;
            if (pthread_attr_getstack(&a, &addr, &size) == 0) {
                tls_stack_low = (uintptr_t)addr;
                tls_stack_high = (uintptr_t)addr + size;
            }
            pthread_attr_destroy(&a);
        }
    }
    *low = tls_stack_low;
    *high = tls_stack_high;
}

bool mmt__stack_room(void)
{
    char here;
    uintptr_t sp = (uintptr_t)&here, low, high;
    stack_bounds(&low, &high);
    if (!low) return true; /* unknown: STACK_MAX below the entry point is the only limit */
    /* A stack that is not the thread's own (a coroutine library's fiber) has a size no one
     * can tell: policy code does not run there. */
    return sp > low && sp < high && sp - low >= STACK_RESERVE + STACK_MIN_ROOM;
}

/* Pushes "file:line: " of the innermost policy line on the stack, or "" if none. */
static void push_position(lua_State *L)
{
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
            return;
        }
    }
    lua_pushliteral(L, "");
}

static void policy_hook(lua_State *L, lua_Debug *ar)
{
    pstate_t *s = mmt__pstate_of(L);
    if (!s->armed) return; /* the engine's own glue, between calls: no limits of a call */
    if (s->stop == MMT__STOP_NONE) {
        char here;
        double now = mmt__now();
        /* The clock at every call too: a loop of slow C calls (gsub on a long string,
         * sorting a big table) runs few instructions per call. */
        if (ar->event == LUA_HOOKCALL && (uintptr_t)&here < s->stack_floor)
            s->stop = MMT__STOP_STACK;
        else if (now >= s->deadline)
            s->stop = MMT__STOP_BUDGET;
        else if (now >= s->eval_deadline)
            s->stop = MMT__STOP_EVALUATION;
        else
            return;
        /* From now on every instruction and every call raises, so a policy cannot catch
         * the error with pcall and go on. mmt__pstate_call removes the hook. */
        lua_sethook(L, policy_hook, MMT__HOOK_MASK, 1);
    }
    push_position(L);
    switch (s->stop) {
    case MMT__STOP_STACK:
        lua_pushfstring(L, "C stack overflow (policy code nested through C functions such as "
                           "string.gsub, table.sort or __tostring deeper than %d KiB of stack)",
                        (int)(s->stack_top > s->stack_floor ? (s->stack_top - s->stack_floor) >> 10
                                                            : 0));
        break;
    case MMT__STOP_EVALUATION:
        lua_pushfstring(L, "stopped: the evaluation ran past its time budget of %d ms",
                        (int)s->engine->opts.evaluation_ms);
        break;
    default:
        lua_pushfstring(L, "stopped: ran past its time budget of %d ms", (int)s->budget_ms);
        break;
    }
    lua_concat(L, 2);
    lua_error(L);
}

int mmt__pstate_call(pstate_t *s, int nargs, int nresults)
{
    lua_State *L = s->L;
    char here;
    uintptr_t top = (uintptr_t)&here, low, high;
    stack_bounds(&low, &high);
    uintptr_t floor = top > STACK_MAX ? top - STACK_MAX : 0;
    if (low && floor < low + STACK_RESERVE) floor = low + STACK_RESERVE;
    s->stack_top = top;
    s->stack_floor = floor;
    double start = mmt__now();
    s->deadline = start + s->budget_ms / 1000.0;
    s->stop = MMT__STOP_NONE;
    /* The hook stays set (setting it rewrites LuaJIT's dispatch table: it costs more than
     * a short rule), and is armed only while policy code runs: the limits above belong to
     * this call and this thread. */
    bool outer = s->armed;
    s->armed = true;
    int rc = lua_pcall(L, nargs, nresults, 0);
    s->armed = outer;
    s->call_seconds = mmt__now() - start;
    if (s->stop != MMT__STOP_NONE) lua_sethook(L, policy_hook, MMT__HOOK_MASK, HOOK_EVERY);
    /* LuaJIT does not collect when an allocation fails: the garbage of the call that hit
     * the cap would make the next call fail too. */
    if (rc == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT, 0);
    return rc;
}

/* ---- Sandbox --------------------------------------------------------------------------- */

/*
 * Everything a policy can reach outside unsafe mode, besides what the engine adds itself
 * (print and require, its own; xpcall, over pcall; _G, this table; the mmt module): the
 * globals, and each library's members as "library.member". The environment is built from
 * this list alone, so a function a library gains in a later LuaJIT stays out until it is
 * named here. Left out on purpose: what can end, replace or escape the host (dofile,
 * loadfile, load, loadstring, module, getfenv, setfenv, collectgarbage, newproxy, gcinfo;
 * os.exit, execute, remove, rename, tmpname, getenv, setlocale; string.dump, whose
 * bytecode would be code in, elsewhere; the io, debug, jit, ffi and package libraries).
 */
const char *const mmt__sandbox[] = {
    "_VERSION", "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
    "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring", "type",
    "unpack",
    "bit.arshift", "bit.band", "bit.bnot", "bit.bor", "bit.bswap", "bit.bxor", "bit.lshift",
    "bit.rol", "bit.ror", "bit.rshift", "bit.tobit", "bit.tohex",
    "coroutine.create", "coroutine.isyieldable", "coroutine.resume", "coroutine.running",
    "coroutine.status", "coroutine.wrap", "coroutine.yield",
    "math.abs", "math.acos", "math.asin", "math.atan", "math.atan2", "math.ceil", "math.cos",
    "math.cosh", "math.deg", "math.exp", "math.floor", "math.fmod", "math.frexp", "math.huge",
    "math.ldexp", "math.log", "math.log10", "math.max", "math.min", "math.modf", "math.pi",
    "math.pow", "math.rad", "math.random", "math.randomseed", "math.sin", "math.sinh",
    "math.sqrt", "math.tan", "math.tanh",
    "os.clock", "os.date", "os.difftime", "os.time",
    "string.byte", "string.char", "string.find", "string.format", "string.gmatch",
    "string.gsub", "string.len", "string.lower", "string.match", "string.rep",
    "string.reverse", "string.sub", "string.upper",
    "table.concat", "table.foreach", "table.foreachi", "table.getn", "table.insert",
    "table.maxn", "table.move", "table.remove", "table.sort",
    NULL,
};

/* Replaces the globals with a table of what mmt__sandbox names, taken from the libraries
 * opened in them. Strings' methods come from the new string table. */
static void build_sandbox(lua_State *L)
{
    lua_newtable(L);
    int env = lua_gettop(L);
    for (const char *const *n = mmt__sandbox; *n; n++) {
        const char *dot = strchr(*n, '.');
        if (!dot) {
            lua_getglobal(L, *n);
            lua_setfield(L, env, *n);
            continue;
        }
        char lib[32];
        snprintf(lib, sizeof lib, "%.*s", (int)(dot - *n), *n);
        lua_getfield(L, env, lib);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, env, lib);
        }
        lua_getglobal(L, lib);
        lua_getfield(L, -1, dot + 1);
        lua_setfield(L, -3, dot + 1);
        lua_pop(L, 2);
    }
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_getfield(L, env, "string");
        lua_setfield(L, -2, "__index");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_replace(L, LUA_GLOBALSINDEX);
}

static int l_sandboxed_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (strcmp(name, "mmt") == 0) {
        lua_getfield(L, LUA_REGISTRYINDEX, "mmt.module");
        return 1;
    }
    return luaL_error(L, "require \"%s\": policies may only require \"mmt\" (the engine is "
                         "not in unsafe mode)", name);
}

static int l_print(lua_State *L)
{
    /* print() goes to the host's log at level info, like mmt.log. */
    pstate_t *s = mmt__pstate_of(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        lua_getfield(L, LUA_REGISTRYINDEX, "mmt.tostring");
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    mmt__pstate_log(s, MMT_LOG_INFO, lua_tostring(L, -1));
    return 0;
}

/*
 * xpcall, with the message handler run after the failed call has unwound, as ordinary
 * policy code. LuaJIT runs a handler at the point of the error; for an error raised by the
 * budget's hook that is inside the hook, where no hook runs, so a handler that loops would
 * never be stopped. The difference a policy can see: the handler runs with the failed
 * call's frames gone (the sandbox has no debug.traceback to look at them anyway). Written
 * in Lua over pcall, so a coroutine may still yield inside it; an error in the handler
 * makes the result false and that error, as LuaJIT's does.
 */
static const char xpcall_source[] =
    "local pcall, error = pcall, error\n"
    "local function finish(h, ok, ...)\n"
    "  if ok then return true, ... end\n"
    "  local _, v = pcall(h, (...))\n"
    "  return false, v\n"
    "end\n"
    "return function(f, h, ...)\n"
    "  if h == nil then error(\"bad argument #2 to 'xpcall' (value expected)\", 2) end\n"
    "  return finish(h, pcall(f, ...))\n"
    "end\n";

static void open_lib(lua_State *L, const char *name, lua_CFunction open)
{
    lua_pushcfunction(L, open);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

/* Runs under lua_cpcall with the pstate as argument 1, so that a memory error while
 * opening libraries is an error, not a panic. */
static int open_libraries(lua_State *L)
{
    pstate_t *s = lua_touserdata(L, 1);
    bool unsafe = s->engine->opts.unsafe != 0;
    if (unsafe) {
        luaL_openlibs(L);
    } else {
        open_lib(L, "", luaopen_base);
        open_lib(L, LUA_TABLIBNAME, luaopen_table);
        open_lib(L, LUA_STRLIBNAME, luaopen_string);
        open_lib(L, LUA_MATHLIBNAME, luaopen_math);
        open_lib(L, LUA_OSLIBNAME, luaopen_os);
        open_lib(L, LUA_BITLIBNAME, luaopen_bit);
        build_sandbox(L);
        lua_pushcfunction(L, l_sandboxed_require);
        lua_setglobal(L, "require");
        lua_pushcfunction(L, l_print);
        lua_setglobal(L, "print");
    }
    /* In unsafe mode too: its handlers must not escape the budget either. */
    if (luaL_loadbuffer(L, xpcall_source, sizeof xpcall_source - 1, "=xpcall") != 0)
        lua_error(L);
    lua_call(L, 0, 1);
    lua_setglobal(L, "xpcall");
    /* Kept before the policy runs, which may replace the globals. */
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "format");
    lua_setfield(L, LUA_REGISTRYINDEX, "mmt.format");
    lua_pop(L, 1);
    lua_getglobal(L, "tostring");
    lua_setfield(L, LUA_REGISTRYINDEX, "mmt.tostring");

    lua_pushcfunction(L, mmt__rules_open);
    lua_call(L, 0, 0);
    /* The mmt module, made once: require "mmt" returns it. */
    lua_pushcfunction(L, mmt__open_module);
    lua_call(L, 0, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "mmt.module");
    if (unsafe) {
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "loaded");
        lua_getfield(L, LUA_REGISTRYINDEX, "mmt.module");
        lua_setfield(L, -2, "mmt");
        lua_pop(L, 2);
    }
    /* After every library is open: luaopen_jit (in luaL_openlibs) turns the JIT on. */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, policy_hook, MMT__HOOK_MASK, HOOK_EVERY); /* armed by mmt__pstate_call */
    return 0;
}

/* ---- Loading ------------------------------------------------------------------------------ */

/* The rules' and tasks' Lua references go with the state. */
void mmt__pstate_free(pstate_t *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nrules; i++) {
        mmt__backend.free(s->rules[i].name);
        mmt__backend.free(s->rules[i].where);
        mmt__backend.free(s->rules[i].tag_path);
    }
    mmt__tag_paths_free(&s->paths);
    for (size_t i = 0; i < s->ntasks; i++) mmt__backend.free(s->tasks[i].where);
    for (size_t i = 0; i < s->nlimits; i++) mmt__backend.free(s->limits[i].where);
    if (s->L) lua_close(s->L);
    mmt__backend.free(s->reserve); /* after lua_close: the state's first blocks live there */
    mmt__backend.free(s->rules);
    mmt__backend.free(s->tasks);
    mmt__backend.free(s->limits);
    mmt__backend.free(s->names);
    mmt__backend.free(s->path);
    mmt__backend.free(s);
}


/* Reads the whole file into a backend buffer; NULL with a message on failure. Only a
 * regular file is read: opening a FIFO waits for a writer (forever, on the engine's
 * thread if it came by a watched rename), and opening a device can act on it (a watchdog
 * arms, a tape rewinds). So the type is checked before opening, and again on the
 * descriptor opened, without blocking, in case the path changed in between. */
static char *read_policy_file(const char *path, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: cannot read: not a regular file (%s)", path,
                 mmt__file_kind(st.st_mode));
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: cannot read: not a regular file (%s)", path,
                 mmt__file_kind(st.st_mode));
        close(fd);
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= MMT__MAX_POLICY_BYTES) {
                snprintf(err, errlen, "%s: larger than the %zu MiB a policy file may be", path,
                         MMT__MAX_POLICY_BYTES >> 20);
                goto fail;
            }
            size_t ncap = cap ? cap * 2 : 16384;
            char *nb = mmt__backend.realloc(buf, ncap + 1);
            if (!nb) {
                snprintf(err, errlen, "%s: out of memory reading the file", path);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    close(fd);
    mmt__backend.free(buf);
    return NULL;
}

pstate_t *mmt__pstate_load(struct mmt_policy *p, const char *path, char *err, size_t errlen)
{
    /* LuaJIT is loaded with the first policy (lj.h); without it no policy runs, and the
     * host goes on counting. */
    char why[400];
    if (mmt__lj_load(why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return NULL;
    }
    if (!mmt__stack_room()) {
        snprintf(err, errlen, "%s: not loaded from here: policy code does not run on a stack "
                 "that is not the thread's own (a fiber's) or within 128 KiB of its end", path);
        return NULL;
    }
    size_t len;
    char *text = read_policy_file(path, &len, err, errlen);
    if (!text) return NULL;
    if (len > 0 && text[0] == LUA_SIGNATURE[0]) {
        snprintf(err, errlen, "%s: is a compiled (binary) chunk; policies must be Lua source",
                 path);
        mmt__backend.free(text);
        return NULL;
    }

    pstate_t *s = mmt__backend.calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "%s: out of memory for the policy state", path);
        mmt__backend.free(text);
        return NULL;
    }
    s->engine = p;
    s->eval_deadline = INFINITY;
    {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s->names_seed = (uint32_t)ts.tv_nsec ^ (uint32_t)((uintptr_t)s >> 4);
    }
    s->path = mmt__backend_strdup(path);
    s->lua_limit = p->opts.lua_memory_limit;
    s->budget_ms = p->opts.budget_ms;
    s->reserve = mmt__backend.malloc(RESERVE_BYTES);
    if (!s->reserve || !s->path) {
        snprintf(err, errlen, "%s: out of memory for the policy state", path);
        mmt__backend.free(text);
        mmt__pstate_free(s);
        return NULL;
    }
    s->being_born = true;
    s->L = lua_newstate(state_alloc, s);
    s->being_born = false;
    if (!s->L) {
        snprintf(err, errlen, "%s: cannot create a Lua state (out of memory?)", path);
        mmt__backend.free(text);
        mmt__pstate_free(s);
        return NULL;
    }
    lua_State *L = s->L;
    lua_atpanic(L, on_panic);
    int rc = lua_cpcall(L, open_libraries, s);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot set up the policy state: %s", path,
                 rc == LUA_ERRMEM ? "out of memory" : mmt__error_text(L));
        mmt__backend.free(text);
        mmt__pstate_free(s);
        return NULL;
    }

    /* LuaJIT cuts chunk names to 60 bytes in messages ("...me/x.lua:2:"): the chunk gets a
     * short name, and messages get the whole path back (mmt__pstate_expand). */
    s->loading = true;
    rc = luaL_loadbuffer(L, text, len, "=" MMT__CHUNK);
    mmt__backend.free(text);
    /* The file itself runs under a longer budget than rules do: it runs once, never inside
     * an allocation, and may declare tens of thousands of rules. */
    s->budget_ms = s->budget_ms > UINT_MAX / MMT__LOAD_BUDGET_FACTOR
                       ? UINT_MAX
                       : s->budget_ms * MMT__LOAD_BUDGET_FACTOR;
    if (rc == 0) rc = mmt__pstate_call(s, 0, 0);
    s->budget_ms = p->opts.budget_ms;
    s->loading = false;
    if (rc != 0) {
        char msg[sizeof p->error];
        mmt__pstate_expand(s, mmt__error_text(L), msg, sizeof msg);
        if (rc == LUA_ERRMEM)
            snprintf(err, errlen, "%s: out of memory (the policy VM may hold %zu bytes)", path,
                     s->lua_limit);
        else if (strncmp(msg, path, strlen(path)) == 0 && msg[strlen(path)] == ':')
            snprintf(err, errlen, "%s", msg); /* already "file:line: message" */
        else
            snprintf(err, errlen, "%s: %s", path, msg);
        mmt__pstate_free(s);
        return NULL;
    }
    return s;
}
