/*
 * Loading LuaJIT at run time, once per process, and filling the table of its functions
 * the engine calls through (lj.h says why the library does not link it).
 */
#define _GNU_SOURCE /* RTLD_DEEPBIND */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MMT__LJ_NO_NAMES /* this file fills the table, by the real names */
#include "lj.h"

/* The list must say what the headers say: a difference is a compile error here. */
#define SAME_AS_HEADER(ret, name, params)                                                  \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&name), ret(*) params),         \
                   "lj.h: " #name " differs from its declaration in the Lua headers");
MMT__LJ_FUNCTIONS(SAME_AS_HEADER)
#undef SAME_AS_HEADER

/*
 * RTLD_LOCAL keeps LuaJIT's symbols out of the global scope, where they would in turn
 * stand in for a Lua the program loads later. RTLD_DEEPBIND puts LuaJIT's own scope
 * first for its own references: it calls its exported functions through the PLT
 * (luaL_openlibs calls luaopen_base, lua_pcall calls lua_gettop, ...), and in a program
 * that exports a Lua of its own those would otherwise bind to the program's.
 *
 * AddressSanitizer and ThreadSanitizer refuse RTLD_DEEPBIND (their runtimes abort on it:
 * it would let a library bypass their interceptors), so a sanitizer build loads LuaJIT
 * without it. Those builds are tests of the library's own code and never run inside a
 * program with a Lua of its own.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LJ_DEEPBIND 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                 \
    __has_feature(memory_sanitizer)
#define LJ_DEEPBIND 0
#endif
#endif
#ifndef LJ_DEEPBIND
#define LJ_DEEPBIND RTLD_DEEPBIND
#endif

mmt__lj_t mmt__lj;

/* Written only by load(), under `once`; read after pthread_once returns, which orders the
 * writes before the reads (as it does mmt__lj's). */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool loaded;
static char load_error[512];

static void load(void)
{
    /* Never closed once loaded: policy states live until the process ends. */
    void *lib = dlopen(MMT__LJ_LIBRARY, RTLD_NOW | RTLD_LOCAL | LJ_DEEPBIND);
    if (!lib) {
        snprintf(load_error, sizeof load_error, "cannot load LuaJIT (%s): %s", MMT__LJ_LIBRARY,
                 dlerror());
        return;
    }
    /* dlsym on the handle searches that library (and what it depends on), not the global
     * scope. A function's address is never NULL: NULL means it is missing. */
#define FILL(ret, name, params)                                                            \
    if (!(mmt__lj.name = (ret(*) params)dlsym(lib, #name))) goto missing;
    MMT__LJ_FUNCTIONS(FILL)
#undef FILL
    loaded = true;
    return;
missing:
    snprintf(load_error, sizeof load_error, "cannot load LuaJIT (%s): %s", MMT__LJ_LIBRARY,
             dlerror());
    memset(&mmt__lj, 0, sizeof mmt__lj);
    dlclose(lib);
}

int mmt__lj_load(char *err, size_t errlen)
{
    pthread_once(&once, load);
    if (loaded) return 0;
    if (errlen > 0) snprintf(err, errlen, "%s", load_error);
    return -1;
}
