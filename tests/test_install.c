/*
 * Installing: the install action puts the release build under a temporary prefix (and
 * under DESTDIR), and a small program is built against it the documented ways, with
 * `pkg-config --cflags --libs mmtmem` (shared library, found by its soname) and with the
 * static library, then run. The installed mmt-run finds its preload library and default
 * policy from the install's layout.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>

#include "policyutil.h"

static char root[PATH_MAX], options[128], prefix[600];

/* Finds the source tree from the test program's place: build/release/ or
 * build/<variant>/release/. A sanitizer build is not what gets installed: skipped. */
static int setup(void **state)
{
    if (make_test_dir(state) != 0) return -1;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0'; /* .../release */
    *strrchr(exe, '/') = '\0'; /* build, or the variant */
    const char *last = strrchr(exe, '/') + 1;
    if (strcmp(last, "mimalloc") == 0 || strcmp(last, "jemalloc") == 0)
        snprintf(options, sizeof options, "--backend=%s", last);
    if (strcmp(last, "build") != 0) *strrchr(exe, '/') = '\0';
    *strrchr(exe, '/') = '\0'; /* the source tree */
    snprintf(root, sizeof root, "%s", exe);
    snprintf(prefix, sizeof prefix, "%s/prefix", test_dir);
    return 0;
}

/* Runs a shell command; returns its exit status, its output in `out`. */
static int sh(const char *command, char *out, size_t len)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "( %s ) 2>&1", command);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define SH_OK(out, ...)                                                                        \
    do {                                                                                   \
        char cmd_[8192];                                                                   \
        snprintf(cmd_, sizeof cmd_, __VA_ARGS__);                                          \
        if (sh(cmd_, out, sizeof out) != 0) fail_msg("%s\nfailed:\n%s", cmd_, out);         \
    } while (0)

static const char program[] =
    "#include <stdio.h>\n"
    "#include <mmt/memory.h>\n"
    "#include <mmt/policy.h>\n"
    "int main(int argc, char **argv) {\n"
    "    mmt_policy_t *p = mmt_policy_new(NULL);\n"
    "    if (!p || mmt_policy_load(p, argv[1]) != 0) return 1;\n"
    "    mmt_meminfo_t before, after;\n"
    "    mmt_meminfo(&before);\n"
    "    void *b = mmt_malloc(1000);\n"
    "    mmt_meminfo(&after);\n"
    "    printf(\"mmtmem %s: %llu bytes\\n\", mmt_version(),\n"
    "           (unsigned long long)(after.in_use - before.in_use));\n"
    "    mmt_free(b);\n"
    "    mmt_policy_free(p);\n"
    "    return argc == 2 ? 0 : 1;\n"
    "}\n";

static const char *premake(void)
{
    return system("command -v premake5 > /dev/null") == 0 ? "premake5" : "premake4";
}

static void test_install_and_build_against_it_with_pkg_config(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static char out[16384];
    SH_OK(out, "cd '%s' && %s --file=premake5.lua %s --prefix='%s' install", root, premake(),
          options, prefix);
    char src[600];
    snprintf(src, sizeof src, "%s/prog.c", test_dir);
    write_in_place(src, program);
    const char *pc = "PKG_CONFIG_PATH='%s/lib/pkgconfig'";
    char env[700];
    snprintf(env, sizeof env, pc, prefix);

    /* Shared: the program needs the soname, and runs with the library found there. */
    SH_OK(out, "cd '%s' && cc prog.c -o prog_shared $(%s pkg-config --cflags --libs mmtmem)",
          test_dir, env);
    SH_OK(out, "readelf -d '%s/prog_shared' | grep NEEDED", test_dir);
    assert_contains(out, "[libmmtmem.so.0." MMT__STR(MMT_VERSION_MINOR) "]");
    SH_OK(out, "readelf -d '%s/lib/libmmtmem.so." MMT_VERSION_STRING "' | grep SONAME", prefix);
    assert_contains(out, "[libmmtmem.so.0." MMT__STR(MMT_VERSION_MINOR) "]");
    SH_OK(out, "LD_LIBRARY_PATH='%s/lib' '%s/prog_shared' '%s/share/mmtmem/policies/high_water.lua'",
          prefix, test_dir, prefix);
    assert_string_equal(out, "mmtmem " MMT_VERSION_STRING ": 1000 bytes\n");

    /* Static: the archive, with what `pkg-config --static` adds (libdl, libm). */
    SH_OK(out, "cd '%s' && cc prog.c -o prog_static $(%s pkg-config --cflags mmtmem) "
               "'%s/lib/libmmtmem.a' $(%s pkg-config --static --libs mmtmem)",
          test_dir, env, prefix, env);
    SH_OK(out, "readelf -d '%s/prog_static' | grep NEEDED", test_dir);
    assert_null(strstr(out, "libmmtmem"));
    SH_OK(out, "'%s/prog_static' '%s/share/mmtmem/policies/growth.lua'", test_dir, prefix);
    assert_string_equal(out, "mmtmem " MMT_VERSION_STRING ": 1000 bytes\n");

    /* The installed mmt-run finds lib/mmtmem/ and share/mmtmem/policies/ by itself. */
    SH_OK(out, "'%s/bin/mmt-run' -- sh -c 'echo ran'", prefix);
    assert_contains(out, "ran\n");
    assert_contains(out, "mmt-run: sh: allocated ");
    assert_null(strstr(out, "no default policy"));

    /* mmt-policy beside it checks the installed policies, and their tests stayed behind. */
    SH_OK(out, "'%s/bin/mmt-policy' check '%s/share/mmtmem/policies/high_water.lua'", prefix,
          prefix);
    assert_contains(out, "high-water: in_use above 256 MiB, below 200 MiB");
    SH_OK(out, "ls '%s/share/mmtmem/policies'", prefix);
    assert_null(strstr(out, "_test.lua"));
}

static void test_install_honours_destdir(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static char out[16384];
    SH_OK(out, "cd '%s' && DESTDIR='%s/stage' %s --file=premake5.lua %s --prefix=/opt/mmt install",
          root, test_dir, premake(), options);
    SH_OK(out, "cat '%s/stage/opt/mmt/lib/pkgconfig/mmtmem.pc'", test_dir);
    assert_contains(out, "prefix=/opt/mmt\n");
    SH_OK(out, "ls '%s/stage/opt/mmt/include/mmt' '%s/stage/opt/mmt/bin'", test_dir, test_dir);
    assert_contains(out, "memory.h");
    assert_contains(out, "mmt-run");
    assert_contains(out, "mmt-policy");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_and_build_against_it_with_pkg_config),
        cmocka_unit_test(test_install_honours_destdir),
    };
    return cmocka_run_group_tests_name("install", tests, setup, remove_test_dir);
}
