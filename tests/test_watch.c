/*
 * The file watcher against what operators and programs do around it: a policy path that
 * is not a regular file (a FIFO, a socket, a device, a folder); a policy reached through
 * symlinks and folders that are swapped, removed and recreated (as a Kubernetes ConfigMap
 * volume does); a program that closes the engine's descriptors and opens its own on the
 * same numbers; and a tree of processes under the preload library, of which only one may
 * take an inotify instance. Real files, FIFOs, symlinks, renames, threads and processes.
 *
 * A test that a broken engine could hang runs under a watchdog (alarm) that ends the
 * program with the test's name, so that it fails instead.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "engine.h"
#include "policyutil.h"

/* ---- Watchdog ------------------------------------------------------------------------------ */

static const char *watched_test;

static void watchdog_fired(int sig)
{
    (void)sig;
    static const char hung[] = ": still running when its watchdog fired: hung\n";
    ssize_t w = write(STDERR_FILENO, watched_test, strlen(watched_test));
    w = write(STDERR_FILENO, hung, sizeof hung - 1);
    (void)w;
    _exit(70);
}

static void watchdog(const char *test, unsigned seconds)
{
    watched_test = test;
    struct sigaction sa = {.sa_handler = watchdog_fired};
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}
#define WATCHDOG(seconds) watchdog(__func__, (seconds))

/* The safety net's period for BY_INOTIFY engines (watching_engine): long, so that a
 * change followed within a test was followed by inotify alone. */
static unsigned inotify_check_ms = 600000;

/* The descriptor limit as it was, if a test lowered it. */
static struct rlimit saved_limit;
static bool limit_lowered;

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    atomic_store(&mmt__watch_check_ms, 2000);
    inotify_check_ms = 600000;
    if (limit_lowered) setrlimit(RLIMIT_NOFILE, &saved_limit);
    limit_lowered = false;
    return 0;
}

/* ---- Files, policies and engines ------------------------------------------------------------- */

static char path_buf[4][512];
/* A path in the test folder; four live at a time (slot 0 to 3). */
static const char *at(int slot, const char *name)
{
    return test_path(path_buf[slot], sizeof path_buf[slot], name);
}

/* A policy that logs "ACTIVE <tag>." when it loads and calls the host action "tick" on
 * every timer tick (counted, not logged: the captured log holds 512 lines). */
static void write_policy(void (*write)(const char *, const char *), const char *path,
                         const char *tag)
{
    char text[512];
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "mmt.log('info', 'ACTIVE %s.')\n"
             "mmt.every(0.01, function() mmt.call('tick') end)\n",
             tag);
    write(path, text);
}

static atomic_long ticks;
static int64_t count_tick(int64_t arg, void *ud)
{
    (void)arg;
    (void)ud;
    atomic_fetch_add(&ticks, 1);
    return 0;
}

/* Asserts that the timer still ticks: at least 5 ticks of 10 ms in 300 ms. */
static void assert_ticking(const char *when)
{
    long before = atomic_load(&ticks);
    sleep_ms(300);
    long n = atomic_load(&ticks) - before;
    if (n < 5) fail_msg("%s: %ld timer ticks in 300 ms", when, n);
}

typedef enum { BY_INOTIFY, BY_POLLING } follow_t;

/* An engine with a 10 ms timer that watches its file with inotify alone (the safety
 * net's comparison made too rare to matter within a test) or by polling alone. */
static mmt_policy_t *watching_engine(follow_t how, unsigned interval_ms, captured_log_t *log)
{
    atomic_store(&mmt__watch_check_ms, how == BY_INOTIFY ? inotify_check_ms : 2000);
    mmt_policy_options_t o = {.interval_ms = interval_ms, .watch = 1};
    mmt_policy_t *p = mmt__policy_new(&o, how == BY_INOTIFY ? 0 : MMT__INOTIFY_NEVER);
    assert_non_null(p);
    mmt_policy_set_log(p, capture, log);
    mmt_policy_action(p, "tick", count_tick, NULL);
    mmt_mem_set_checkpoint(0);
    return p;
}

/* Waits for "ACTIVE <tag>." and asserts it came at most a second after `since`. */
static void expect_followed(captured_log_t *log, const char *tag, double since, const char *what)
{
    char active[128];
    snprintf(active, sizeof active, "ACTIVE %s.", tag);
    if (!wait_for_log(log, active, 3000)) {
        log_dump(log);
        fail_msg("%s: the change to \"%s\" was not followed", what, tag);
    }
    double latency = log_time(log, active) - since;
    if (latency > 1.0) fail_msg("%s: followed after %.3f s, more than a second", what, latency);
}

/* Asserts that "ACTIVE <tag>." does not come within 1.2 s: a file no longer on the way. */
static void expect_not_followed(captured_log_t *log, const char *tag, const char *what)
{
    char active[128];
    snprintf(active, sizeof active, "ACTIVE %s.", tag);
    if (wait_for_log(log, active, 1200)) fail_msg("%s: \"%s\" was loaded", what, tag);
}

static void free_promptly(mmt_policy_t *p, double limit)
{
    double t0 = now_seconds();
    mmt_policy_free(p);
    double took = now_seconds() - t0;
    if (took > limit) fail_msg("mmt_policy_free took %.3f s", took);
}

static void run(const char *command)
{
    if (system(command) != 0) fail_msg("failed: %s", command);
}

/* Empties the test folder: each scenario lays out its own files. */
static void empty_test_dir(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir '%s'", test_dir, test_dir);
    run(cmd);
}

/* ---- Descriptors --------------------------------------------------------------------------- */

typedef struct fd_list {
    int n;
    int fd[64];
} fd_list_t;

/* What a program does to descriptors it does not know of, by system call: the C library
 * wrappers are what ThreadSanitizer watches, and it would report this test's closing of a
 * descriptor another thread uses (the very thing under test) as the test's own race. */
static int hostile_close(int fd)
{
    return (int)syscall(SYS_close, fd);
}

static int hostile_dup(int fd, int to)
{
    return (int)syscall(SYS_dup3, fd, to, 0);
}

static fd_list_t open_fds(void)
{
    fd_list_t l = {0};
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) && l.n < 64) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
        l.fd[l.n++] = atoi(e->d_name);
    }
    closedir(d);
    return l;
}

static bool listed(const fd_list_t *l, int fd)
{
    for (int i = 0; i < l->n; i++)
        if (l->fd[i] == fd) return true;
    return false;
}

static fd_list_t added(const fd_list_t *before, const fd_list_t *after)
{
    fd_list_t l = {0};
    for (int i = 0; i < after->n; i++)
        if (!listed(before, after->fd[i])) l.fd[l.n++] = after->fd[i];
    return l;
}

/* How many inotify instances process `pid` holds. */
static int inotify_count(pid_t pid)
{
    char dir[64], link[PATH_MAX], target[256];
    snprintf(dir, sizeof dir, "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0) continue;
        target[len] = '\0';
        if (strcmp(target, "anon_inode:inotify") == 0) n++;
    }
    closedir(d);
    return n;
}

static void wait_for_inotify(int count)
{
    double end = now_seconds() + 3;
    while (inotify_count(getpid()) < count) {
        if (now_seconds() > end) fail_msg("no inotify instance was made in 3 s");
        sleep_ms(5);
    }
}

/* ---- Only regular files are policies ------------------------------------------------------- */

/* Loads `path`, which must be refused without blocking, as "<path>: ... not a regular
 * file (<kind>)", the previous policy still running. */
static void assert_refused(mmt_policy_t *p, captured_log_t *log, const char *path, const char *kind)
{
    int kept = log_count(log, "(the previous policy keeps running)");
    assert_int_equal(mmt_policy_load(p, path), MMT_ELOAD);
    const char *err = mmt_policy_error(p);
    char expected[128];
    snprintf(expected, sizeof expected, "not a regular file (%s)", kind);
    if (strncmp(err, path, strlen(path)) != 0 || !strstr(err, expected))
        fail_msg("loading %s: error \"%s\", expected \"%s: ...%s\"", path, err, path, expected);
    assert_int_equal(log_count(log, "(the previous policy keeps running)"), kept + 1);
}

static void test_watch_a_fifo_as_the_policy_is_refused_without_blocking(void **state)
{
    (void)state;
    WATCHDOG(30);
    captured_log_t *log = new_log();
    mmt_policy_t *p = watching_engine(BY_INOTIFY, 10, log);
    write_policy(write_in_place, at(0, "good.lua"), "good");
    assert_int_equal(mmt_policy_load(p, at(0, "good.lua")), 0);

    /* No writer: opening it to read would wait for one. */
    assert_int_equal(mkfifo(at(1, "fifo.lua"), 0600), 0);
    assert_refused(p, log, at(1, "fifo.lua"), "a FIFO");
    /* Through a symlink. */
    assert_int_equal(symlink("fifo.lua", at(2, "to-fifo.lua")), 0);
    assert_refused(p, log, at(2, "to-fifo.lua"), "a FIFO");
    /* A writer holds it open: opening would not wait, but reading would, for ever. */
    int held = open(at(1, "fifo.lua"), O_RDWR);
    assert_true(held >= 0);
    assert_refused(p, log, at(1, "fifo.lua"), "a FIFO");
    close(held);

    assert_ticking("after the FIFOs"); /* the previous policy runs on */
    assert_logged(log, "ACTIVE good.");
    free_promptly(p, 1.0);
    free_log(log);
}

static void test_watch_sockets_devices_and_folders_are_refused_naming_their_kind(void **state)
{
    (void)state;
    WATCHDOG(30);
    captured_log_t *log = new_log();
    mmt_policy_t *p = watching_engine(BY_INOTIFY, 10, log);
    write_policy(write_in_place, at(0, "good.lua"), "good");
    assert_int_equal(mmt_policy_load(p, at(0, "good.lua")), 0);

    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    const char *sock_path = at(1, "socket.lua");
    assert_true(strlen(sock_path) < sizeof addr.sun_path);
    memcpy(addr.sun_path, sock_path, strlen(sock_path) + 1);
    assert_int_equal(bind(sock, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_refused(p, log, at(1, "socket.lua"), "a socket");
    close(sock);

    assert_refused(p, log, "/dev/null", "a character device"); /* reads as empty */
    assert_int_equal(symlink("/dev/zero", at(1, "zero.lua")), 0); /* reads for ever */
    assert_refused(p, log, at(1, "zero.lua"), "a character device");

    /* A loop device's node, made here (as root), or one of /dev's. */
    const char *block = at(2, "block.lua");
    if (mknod(block, S_IFBLK | 0600, makedev(7, 0)) != 0) {
        block = NULL;
        DIR *d = opendir("/dev");
        struct dirent *e;
        struct stat st;
        while (d && !block && (e = readdir(d))) {
            snprintf(path_buf[2], sizeof path_buf[2], "/dev/%s", e->d_name);
            if (stat(path_buf[2], &st) == 0 && S_ISBLK(st.st_mode)) block = path_buf[2];
        }
        if (d) closedir(d);
    }
    if (block) assert_refused(p, log, block, "a block device");
    else print_message("no block device to try: that case is left out\n");

    assert_int_equal(mkdir(at(3, "folder.lua"), 0700), 0);
    assert_refused(p, log, at(3, "folder.lua"), "a directory");

    assert_ticking("after the refusals");
    free_promptly(p, 1.0);
    free_log(log);
}

/* A FIFO renamed over the watched file: the watcher (by inotify, then by polling) must
 * not block on it; the load refuses it, the timer goes on, and the next real file loads. */
static void test_watch_a_fifo_renamed_over_the_watched_policy_leaves_the_engine_running(void **state)
{
    (void)state;
    WATCHDOG(60);
    const follow_t modes[] = {BY_INOTIFY, BY_POLLING};
    for (size_t m = 0; m < 2; m++) {
        captured_log_t *log = new_log();
        mmt_policy_t *p = watching_engine(modes[m], 10, log);
        const char *path = at(0, m ? "renamed-polled.lua" : "renamed.lua");
        write_policy(write_in_place, path, "before");
        assert_int_equal(mmt_policy_load(p, path), 0);
        sleep_ms(100);

        assert_int_equal(mkfifo(at(1, "fifo.tmp"), 0600), 0);
        assert_int_equal(rename(at(1, "fifo.tmp"), path), 0);
        if (!wait_for_log(log, "not a regular file (a FIFO)", 3000)) {
            log_dump(log);
            fail_msg("%s: the FIFO was not refused", m ? "polling" : "inotify");
        }
        assert_logged(log, "(the previous policy keeps running)");
        assert_ticking("with a FIFO in the policy's place");

        double t0 = now_seconds();
        write_policy(write_by_rename, path, "after");
        expect_followed(log, "after", t0, "a file renamed over the FIFO");
        free_promptly(p, 1.0);
        free_log(log);
    }
}

/* ---- Following the file the operator edits --------------------------------------------------- */

/* Ends a scenario: no warning (a folder the watcher could not watch would have made it
 * poll), and the engine has an inotify instance with BY_INOTIFY, none with BY_POLLING
 * (`instances`: how many the process had before it). */
static void end_scenario(mmt_policy_t *p, captured_log_t *log, follow_t how, int instances)
{
    if (log_level_count(log, MMT_LOG_WARN) != 0) {
        log_dump(log);
        fail_msg("warnings were logged");
    }
    assert_int_equal(inotify_count(getpid()) - instances, how == BY_INOTIFY ? 1 : 0);
    free_promptly(p, 1.0);
    free_log(log);
}

/* The policy path is a symlink into another folder: edits of the target (in place and
 * by rename) are followed, so is the link moved to a new target, after which the old
 * target is no longer followed. */
static void symlink_into_another_folder(follow_t how)
{
    empty_test_dir();
    int instances = inotify_count(getpid());
    captured_log_t *log = new_log();
    mmt_policy_t *p = watching_engine(how, 10, log);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/conf %s/real %s/real2", test_dir, test_dir, test_dir);
    run(cmd);
    const char *path = at(0, "conf/policy.lua");
    const char *target = at(1, "real/policy.lua");
    write_policy(write_in_place, target, "l0");
    assert_int_equal(symlink("../real/policy.lua", path), 0);
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_logged(log, "ACTIVE l0.");
    sleep_ms(100);

    double t0 = now_seconds();
    write_policy(write_in_place, target, "l1");
    expect_followed(log, "l1", t0, "the target edited in place");
    t0 = now_seconds();
    write_policy(write_by_rename, target, "l2");
    expect_followed(log, "l2", t0, "the target edited by rename");

    /* The link moved to a file in a third folder, atomically (a new link renamed over). */
    write_policy(write_in_place, at(2, "real2/policy.lua"), "l3");
    assert_int_equal(symlink("../real2/policy.lua", at(3, "conf/link.tmp")), 0);
    t0 = now_seconds();
    assert_int_equal(rename(at(3, "conf/link.tmp"), path), 0);
    expect_followed(log, "l3", t0, "the link moved to another target");
    t0 = now_seconds();
    write_policy(write_in_place, at(2, "real2/policy.lua"), "l4");
    expect_followed(log, "l4", t0, "the new target edited");
    write_policy(write_in_place, target, "stale");
    expect_not_followed(log, "stale", "the old target edited");
    end_scenario(p, log, how, instances);
}

/* A Kubernetes ConfigMap volume: dir/policy.lua -> ..data/policy.lua, ..data ->
 * ..<timestamp>. An update writes a new timestamped folder, points a new link
 * ..data_tmp at it, renames that over ..data and removes the old folder. */
static void configmap_data_swap(follow_t how)
{
    empty_test_dir();
    int instances = inotify_count(getpid());
    captured_log_t *log = new_log();
    mmt_policy_t *p = watching_engine(how, 10, log);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/cm/..2026_11_26_00", test_dir);
    run(cmd);
    write_policy(write_in_place, at(1, "cm/..2026_11_26_00/policy.lua"), "k0");
    assert_int_equal(symlink("..2026_11_26_00", at(2, "cm/..data")), 0);
    const char *path = at(0, "cm/policy.lua");
    assert_int_equal(symlink("..data/policy.lua", path), 0);
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_logged(log, "ACTIVE k0.");
    sleep_ms(100);

    for (int round = 1; round <= 3; round++) {
        char folder[64], tag[16], file[96];
        snprintf(folder, sizeof folder, "cm/..2026_11_26_%02d", round);
        snprintf(file, sizeof file, "%s/policy.lua", folder);
        snprintf(tag, sizeof tag, "k%d", round);
        assert_int_equal(mkdir(at(1, folder), 0755), 0);
        write_policy(write_in_place, at(1, file), tag);
        assert_int_equal(symlink(folder + strlen("cm/"), at(2, "cm/..data_tmp")), 0);
        double t0 = now_seconds();
        assert_int_equal(rename(at(2, "cm/..data_tmp"), at(3, "cm/..data")), 0);
        snprintf(cmd, sizeof cmd, "rm -rf '%s/cm/..2026_11_26_%02d'", test_dir, round - 1);
        run(cmd);
        expect_followed(log, tag, t0, "a ConfigMap update");
    }
    end_scenario(p, log, how, instances);
}

/* The policy's folder removed and made again, at once and with pauses; the folder's
 * later edits are followed too. */
static void folder_removed_and_recreated(follow_t how)
{
    empty_test_dir();
    int instances = inotify_count(getpid());
    captured_log_t *log = new_log();
    mmt_policy_t *p = watching_engine(how, 10, log);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/gone", test_dir);
    run(cmd);
    const char *path = at(0, "gone/policy.lua");
    write_policy(write_in_place, path, "r0");
    assert_int_equal(mmt_policy_load(p, path), 0);
    sleep_ms(100);

    for (int round = 1; round <= 2; round++) {
        char tag[16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s/gone'", test_dir);
        run(cmd);
        if (round == 2) sleep_ms(300); /* the watcher sees the folder gone, and waits */
        assert_int_equal(mkdir(at(1, "gone"), 0755), 0);
        if (round == 2) sleep_ms(300);
        snprintf(tag, sizeof tag, "r%d", round * 10);
        double t0 = now_seconds();
        write_policy(round == 1 ? write_in_place : write_by_rename, path, tag);
        expect_followed(log, tag, t0, "the folder made again");
        snprintf(tag, sizeof tag, "r%d", round * 10 + 1);
        t0 = now_seconds();
        write_policy(write_in_place, path, tag);
        expect_followed(log, tag, t0, "an edit in the new folder");
    }
    end_scenario(p, log, how, instances);
}

/* The policy's folder swapped with mv for a new one; edits in the new folder are
 * followed, edits in the old one (moved aside) are not. */
static void folder_swapped_with_mv(follow_t how)
{
    empty_test_dir();
    int instances = inotify_count(getpid());
    captured_log_t *log = new_log();
    mmt_policy_t *p = watching_engine(how, 10, log);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/live %s/next", test_dir, test_dir);
    run(cmd);
    const char *path = at(0, "live/policy.lua");
    write_policy(write_in_place, path, "m0");
    assert_int_equal(mmt_policy_load(p, path), 0);
    sleep_ms(100);

    write_policy(write_in_place, at(1, "next/policy.lua"), "m1");
    double t0 = now_seconds();
    snprintf(cmd, sizeof cmd, "cd '%s' && mv live old && mv next live", test_dir);
    run(cmd);
    expect_followed(log, "m1", t0, "the folder swapped with mv");
    t0 = now_seconds();
    write_policy(write_in_place, path, "m2");
    expect_followed(log, "m2", t0, "an edit in the new folder");
    write_policy(write_in_place, at(2, "old/policy.lua"), "stale");
    expect_not_followed(log, "stale", "an edit in the old folder");
    end_scenario(p, log, how, instances);
}

static void test_watch_inotify_follows_a_symlink_into_another_folder(void **state)
{
    (void)state;
    symlink_into_another_folder(BY_INOTIFY);
}

static void test_watch_inotify_follows_a_configmap_data_swap(void **state)
{
    (void)state;
    configmap_data_swap(BY_INOTIFY);
}

static void test_watch_inotify_follows_a_folder_removed_and_recreated(void **state)
{
    (void)state;
    folder_removed_and_recreated(BY_INOTIFY);
}

static void test_watch_inotify_follows_a_folder_swapped_with_mv(void **state)
{
    (void)state;
    folder_swapped_with_mv(BY_INOTIFY);
}

static void test_watch_polling_follows_a_symlink_into_another_folder(void **state)
{
    (void)state;
    symlink_into_another_folder(BY_POLLING);
}

static void test_watch_polling_follows_a_configmap_data_swap(void **state)
{
    (void)state;
    configmap_data_swap(BY_POLLING);
}

static void test_watch_polling_follows_a_folder_removed_and_recreated(void **state)
{
    (void)state;
    folder_removed_and_recreated(BY_POLLING);
}

static void test_watch_polling_follows_a_folder_swapped_with_mv(void **state)
{
    (void)state;
    folder_swapped_with_mv(BY_POLLING);
}

/* A relative path (to the folder the program is in), a symlink into a subfolder: the
 * target's edits are followed. */
static void test_watch_inotify_follows_a_relative_path_through_a_symlink(void **state)
{
    (void)state;
    empty_test_dir();
    int instances = inotify_count(getpid());
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(test_dir), 0);
    captured_log_t *log = new_log();
    mmt_policy_t *p = watching_engine(BY_INOTIFY, 10, log);
    assert_int_equal(mkdir("sub", 0755), 0);
    write_policy(write_in_place, "sub/policy.lua", "rel0");
    assert_int_equal(symlink("sub/policy.lua", "relative.lua"), 0);
    assert_int_equal(mmt_policy_load(p, "relative.lua"), 0);
    sleep_ms(100);
    double t0 = now_seconds();
    write_policy(write_by_rename, "sub/policy.lua", "rel1");
    expect_followed(log, "rel1", t0, "the target of a relative path edited");
    t0 = now_seconds();
    write_policy(write_in_place, "sub/policy.lua", "rel2");
    expect_followed(log, "rel2", t0, "the target of a relative path edited in place");
    assert_int_equal(chdir(cwd), 0);
    end_scenario(p, log, BY_INOTIFY, instances);
}

/* The file deleted and created again by a writer that takes its time: not loaded while
 * half-written, however many other events its folder has, and loaded once closed. */
static void test_watch_a_new_file_is_not_loaded_before_its_writer_closes_it(void **state)
{
    (void)state;
    int instances = inotify_count(getpid());
    captured_log_t *log = new_log();
    mmt_policy_t *p = watching_engine(BY_INOTIFY, 10, log);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/slow", test_dir);
    run(cmd);
    const char *path = at(0, "slow/policy.lua");
    write_policy(write_in_place, path, "w0");
    assert_int_equal(mmt_policy_load(p, path), 0);
    sleep_ms(100);

    assert_int_equal(unlink(path), 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    static const char head[] = "local mmt = require 'mmt'\nmmt.log('info', 'ACTIVE w1.')\nmmt.rule {\n";
    static const char tail[] = "  name = 'r', when = function() return false end, fire = function() end }\n";
    assert_int_equal(write(fd, head, sizeof head - 1), (ssize_t)(sizeof head - 1));
    for (int i = 0; i < 5; i++) { /* other files come and go beside it */
        write_by_rename(at(1, "slow/other.txt"), "other");
        sleep_ms(60);
    }
    sleep_ms(200);
    if (log_level_count(log, MMT_LOG_ERROR) != 0 || log_count(log, "reloaded") != 0) {
        log_dump(log);
        fail_msg("the half-written file was loaded");
    }
    assert_int_equal(write(fd, tail, sizeof tail - 1), (ssize_t)(sizeof tail - 1));
    double t0 = now_seconds();
    assert_int_equal(close(fd), 0);
    expect_followed(log, "w1", t0, "the new file, once closed");
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    end_scenario(p, log, BY_INOTIFY, instances);
}

/* A write inotify does not report as one (the file rewritten and held open, as a
 * program writing through a descriptor it keeps would) is found by the safety net's
 * comparison; with that made rare, it is not, until the writer closes the file. */
static void test_watch_the_safety_net_finds_a_change_inotify_does_not_report(void **state)
{
    (void)state;
    for (int net = 1; net >= 0; net--) {
        captured_log_t *log = new_log();
        inotify_check_ms = net ? 300 : 600000;
        mmt_policy_t *p = watching_engine(BY_INOTIFY, 10, log);
        const char *path = at(0, net ? "net.lua" : "no-net.lua");
        write_policy(write_in_place, path, "n0");
        assert_int_equal(mmt_policy_load(p, path), 0);
        wait_for_inotify(1);
        sleep_ms(100);

        char text[512];
        snprintf(text, sizeof text, "local mmt = require 'mmt'\nmmt.log('info', 'ACTIVE n1.')\n");
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        if (net) {
            if (!wait_for_log(log, "ACTIVE n1.", 3000)) {
                log_dump(log);
                fail_msg("the safety net did not find the change");
            }
            close(fd);
        } else {
            expect_not_followed(log, "n1", "a change held open, without the safety net");
            double t0 = now_seconds();
            close(fd);
            expect_followed(log, "n1", t0, "the change, once closed");
        }
        mmt_policy_free(p);
        free_log(log);
    }
}

/* ---- The engine's descriptors -------------------------------------------------------------- */

/* A watching engine with its policy loaded and its inotify instance made; *fds gets the
 * descriptors it added. */
static mmt_policy_t *engine_with_fds(unsigned interval_ms, captured_log_t *log, const char *path,
                                     fd_list_t *fds)
{
    fd_list_t before = open_fds();
    int instances = inotify_count(getpid());
    mmt_policy_t *p = watching_engine(BY_INOTIFY, interval_ms, log);
    write_policy(write_in_place, path, "d0");
    assert_int_equal(mmt_policy_load(p, path), 0);
    wait_for_inotify(instances + 1);
    sleep_ms(100); /* the thread settles into its wait */
    fd_list_t after = open_fds();
    *fds = added(&before, &after);
    assert_true(fds->n >= 2);
    return p;
}

static void test_watch_engine_descriptors_are_high_and_close_on_exec(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    fd_list_t fds;
    mmt_policy_t *p = engine_with_fds(10, log, at(0, "high.lua"), &fds);
    for (int i = 0; i < fds.n; i++) {
        if (fds.fd[i] < 512) fail_msg("the engine's descriptor %d is below 512", fds.fd[i]);
        int flags = fcntl(fds.fd[i], F_GETFD);
        if (flags < 0 || !(flags & FD_CLOEXEC))
            fail_msg("the engine's descriptor %d is not close-on-exec", fds.fd[i]);
    }
    /* Where the limit does not reach 512, they stay where they are: see
     * test_watch_without_an_inotify_instance_the_engine_says_so_once_and_polls. */
    free_promptly(p, 1.0);
    free_log(log);
}

/* What a daemon does: close every descriptor from some number on. The timer ticks on,
 * the file is polled, and freeing the engine is prompt. */
static void test_watch_closing_every_engine_descriptor_leaves_ticks_reload_and_free(void **state)
{
    (void)state;
    WATCHDOG(30);
    captured_log_t *log = new_log();
    fd_list_t fds;
    const char *path = at(0, "daemon.lua");
    mmt_policy_t *p = engine_with_fds(10, log, path, &fds);
    int lowest = fds.fd[0], highest = fds.fd[0];
    for (int i = 1; i < fds.n; i++) {
        if (fds.fd[i] < lowest) lowest = fds.fd[i];
        if (fds.fd[i] > highest) highest = fds.fd[i];
    }
    fd_list_t all = open_fds();
    bool above = false;
    for (int i = 0; i < all.n; i++) {
        if (all.fd[i] >= lowest && all.fd[i] <= highest && !listed(&fds, all.fd[i]))
            fail_msg("descriptor %d, not the engine's, is among its own", all.fd[i]);
        above = above || all.fd[i] > highest;
    }
    assert_int_equal(syscall(SYS_close_range, (unsigned)lowest, above ? (unsigned)highest : ~0U, 0), 0);

    assert_ticking("after close_range");
    double t0 = now_seconds();
    write_policy(write_by_rename, path, "d1");
    if (!wait_for_log(log, "ACTIVE d1.", 5000)) {
        log_dump(log);
        fail_msg("the edit was not followed after close_range (%.3f s)", now_seconds() - t0);
    }
    assert_int_equal(mmt_policy_reload(p), 0);
    free_promptly(p, 0.5);
    free_log(log);
}

/* A program that closes one of the engine's descriptors and opens a file of its own on
 * that number: whichever it was, and whether or not the thread was waiting on it, the
 * file is never read, written or closed by the engine (after ticks, an edit followed,
 * a reload and the free), and the engine goes on. */
static void test_watch_a_users_file_on_an_engine_descriptors_number_is_left_alone(void **state)
{
    (void)state;
    WATCHDOG(120);
    static const char data[] = "the user's own bytes, not the engine's\n";
    const char *user = at(1, "user.txt");
    write_in_place(user, data);
    for (int timer = 1; timer >= 0; timer--) {
        for (int which = 0;; which++) {
            captured_log_t *log = new_log();
            fd_list_t fds;
            const char *path = at(0, "reused.lua");
            mmt_policy_t *p = engine_with_fds(timer ? 10 : 0, log, path, &fds);
            if (which == fds.n) {
                mmt_policy_free(p);
                free_log(log);
                break;
            }
            int number = fds.fd[which];
            int fd = open(user, O_RDWR | O_CLOEXEC);
            assert_true(fd >= 0);
            assert_int_equal(hostile_close(number), 0);
            assert_int_equal(hostile_dup(fd, number), number);
            close(fd);
            struct stat mine;
            assert_int_equal(fstat(number, &mine), 0);

            if (timer) assert_ticking("with the user's file in place");
            double t0 = now_seconds();
            write_policy(write_by_rename, path, "d1");
            if (!wait_for_log(log, "ACTIVE d1.", 5000)) {
                log_dump(log);
                fail_msg("descriptor %d reused: the edit was not followed (%.3f s)", number,
                         now_seconds() - t0);
            }
            assert_int_equal(mmt_policy_reload(p), 0);
            free_promptly(p, 0.5);

            struct stat now;
            if (fstat(number, &now) != 0 || now.st_ino != mine.st_ino || now.st_dev != mine.st_dev)
                fail_msg("descriptor %d: the user's file was closed or replaced", number);
            if (lseek(number, 0, SEEK_CUR) != 0)
                fail_msg("descriptor %d: the user's file was read or written", number);
            char back[256] = "";
            ssize_t n = pread(number, back, sizeof back - 1, 0);
            if (n != (ssize_t)strlen(data) || memcmp(back, data, strlen(data)) != 0)
                fail_msg("descriptor %d: the user's file changed", number);
            close(number);
            free_log(log);
        }
    }
}

/* A closed descriptor polls as invalid at once, for ever: the thread must drop it, not
 * spin on it. */
static void test_watch_closed_engine_descriptors_do_not_make_its_thread_spin(void **state)
{
    (void)state;
    WATCHDOG(30);
    captured_log_t *log = new_log();
    fd_list_t fds;
    mmt_policy_t *p = engine_with_fds(0, log, at(0, "spin.lua"), &fds);
    for (int i = 0; i < fds.n; i++) hostile_close(fds.fd[i]);
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    sleep_ms(500);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    double cpu = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    if (cpu > 0.15) fail_msg("%.3f s of processor time in 0.5 s with the descriptors closed", cpu);
    free_promptly(p, 0.5);
    free_log(log);
}

/* The thread waits without a timer, with inotify, when its descriptors are closed under
 * it (all at once, or one of them): freeing the engine must still be prompt. */
static void test_watch_free_is_prompt_when_the_descriptors_close_under_a_waiting_thread(void **state)
{
    (void)state;
    WATCHDOG(60);
    for (int which = -1;; which++) { /* -1: all of them */
        captured_log_t *log = new_log();
        fd_list_t fds;
        mmt_policy_t *p = engine_with_fds(0, log, at(0, "waiting.lua"), &fds);
        if (which == fds.n) {
            mmt_policy_free(p);
            free_log(log);
            break;
        }
        for (int i = 0; i < fds.n; i++)
            if (which < 0 || i == which) hostile_close(fds.fd[i]);
        free_promptly(p, 0.5);
        free_log(log);
    }
}

/* ---- inotify instances: a per-user resource -------------------------------------------------- */

/* In a process with no descriptor left for it, inotify_init1 fails (EMFILE, as when the
 * user's 128 instances are taken): the engine says so once, at debug level, and polls;
 * its own descriptors stay where the limit allowed them. */
static void test_watch_without_an_inotify_instance_the_engine_says_so_once_and_polls(void **state)
{
    (void)state;
    WATCHDOG(30);
    /* A limit that leaves two free numbers below it: room for the wake-up pair, none for
     * an inotify instance. */
    fd_list_t before = open_fds();
    int free_fds[2], found = 0;
    for (int fd = 0; found < 2; fd++)
        if (!listed(&before, fd)) free_fds[found++] = fd;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved_limit), 0);
    struct rlimit low = saved_limit;
    low.rlim_cur = (rlim_t)free_fds[1] + 1;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    limit_lowered = true;

    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 10, .watch = 1};
    mmt_policy_t *p = mmt__policy_new(&o, 200); /* tries inotify once its log is captured */
    assert_non_null(p);
    mmt_policy_set_log(p, capture, log);
    mmt_policy_action(p, "tick", count_tick, NULL);
    bool said = wait_for_log(log, "no inotify instance (Too many open files)", 3000);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved_limit), 0);
    limit_lowered = false;
    fd_list_t after = open_fds();
    if (!said) {
        log_dump(log);
        fail_msg("the failed inotify_init1 was not logged");
    }
    assert_int_equal(log_level_count(log, MMT_LOG_DEBUG), 1);
    fd_list_t mine = added(&before, &after);
    assert_int_equal(mine.n, 2);
    for (int i = 0; i < mine.n; i++) assert_true(mine.fd[i] == free_fds[0] || mine.fd[i] == free_fds[1]);

    const char *path = at(0, "no-inotify.lua");
    write_policy(write_in_place, path, "e0");
    assert_int_equal(mmt_policy_load(p, path), 0);
    double t0 = now_seconds();
    write_policy(write_by_rename, path, "e1");
    expect_followed(log, "e1", t0, "polling without inotify");
    assert_ticking("without inotify");
    assert_int_equal(inotify_count(getpid()), 0);
    assert_int_equal(log_count(log, "no inotify instance"), 1); /* said once */
    free_promptly(p, 0.5);
    free_log(log);
}

/* ---- Under the preload library and mmt-run ---------------------------------------------------- */

static char bin_dir[PATH_MAX];

static int setup(void **state)
{
    if (make_test_dir(state) != 0) return -1;
    ssize_t n = readlink("/proc/self/exe", bin_dir, sizeof bin_dir - 1);
    if (n <= 0) return -1;
    bin_dir[n] = '\0';
    *strrchr(bin_dir, '/') = '\0';
    return 0;
}

/* Starts argv[0] (found on PATH) with `extra` added to the environment ("NAME=value", up
 * to 8; "MMT_REPORT_PID=self" becomes the process's own id) and stdout and stderr into
 * files. */
static pid_t spawn(char *const argv[], const char *const extra[], const char *out, const char *err)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0) return pid;
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || dup2(o, STDOUT_FILENO) < 0 || dup2(e, STDERR_FILENO) < 0) _exit(126);
    for (int i = 0; extra[i]; i++) {
        const char *eq = strchr(extra[i], '=');
        char name[64], self[32];
        snprintf(name, sizeof name, "%.*s", (int)(eq - extra[i]), extra[i]);
        snprintf(self, sizeof self, "%ld", (long)getpid());
        setenv(name, strcmp(eq + 1, "self") == 0 ? self : eq + 1, 1);
    }
    execvp(argv[0], argv);
    _exit(127);
}

/* True if process `pid` has the preload library mapped. */
static bool runs_the_library(pid_t pid)
{
    char maps[64], line[1024];
    snprintf(maps, sizeof maps, "/proc/%ld/maps", (long)pid);
    FILE *f = fopen(maps, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, "libmmtmem-preload.so");
    if (f) fclose(f);
    return found;
}

/* 40 processes of a tree under the preload library, each living past its first second,
 * and the one that reports: only that one takes an inotify instance; the others poll,
 * and all of them follow an edit of the policy. */
static void test_watch_under_the_preload_library_only_the_reporting_process_uses_inotify(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    WATCHDOG(90);
    enum { OTHERS = 40, ALL = OTHERS + 1 };
    char preload[PATH_MAX + 64], policy[512], parent[64], out[ALL][96], err[ALL][96];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s/libmmtmem-preload.so", bin_dir);
    snprintf(policy, sizeof policy, "%s/tree.lua", test_dir);
    snprintf(parent, sizeof parent, "MMT_REPORT_PID=%ld", (long)getpid());
    write_policy(write_in_place, policy, "t0");
    char env_policy[600];
    snprintf(env_policy, sizeof env_policy, "MMT_POLICY=%s", policy);
    const char *others[] = {preload, env_policy, parent, NULL};
    const char *reporter[] = {preload, env_policy, "MMT_REPORT_PID=self", NULL};
    char *const argv[] = {"sleep", "30", NULL};
    pid_t pids[ALL];
    for (int i = 0; i < ALL; i++) {
        snprintf(out[i], sizeof out[i], "%s/p%d.out", test_dir, i);
        snprintf(err[i], sizeof err[i], "%s/p%d.err", test_dir, i);
        pids[i] = spawn(argv, i < OTHERS ? others : reporter, out[i], err[i]);
    }
    pid_t reporting = pids[OTHERS]; /* the youngest */

    /* Once the reporting process has its instance, every process is past its first second. */
    double end = now_seconds() + 10;
    while (inotify_count(reporting) < 1 && now_seconds() < end) sleep_ms(20);
    int held = 0;
    for (int i = 0; i < OTHERS; i++) {
        if (!runs_the_library(pids[i])) {
            char text[4096];
            int status = 0;
            pid_t gone = waitpid(pids[i], &status, WNOHANG);
            read_file(err[i], text, sizeof text);
            fail_msg("process %d is not running the library (%s, status %#x); stderr:\n%s", i,
                     gone == pids[i] ? "ended" : "running", status, text);
        }
        held += inotify_count(pids[i]);
    }
    int reporter_held = inotify_count(reporting);
    write_policy(write_by_rename, policy, "t1");
    double t0 = now_seconds();
    int following = 0;
    while (following < ALL && now_seconds() < t0 + 5) {
        following = 0;
        for (int i = 0; i < ALL; i++) {
            char text[4096];
            read_file(err[i], text, sizeof text);
            following += strstr(text, "ACTIVE t1.") != NULL;
        }
        sleep_ms(50);
    }
    for (int i = 0; i < ALL; i++) kill(pids[i], SIGKILL);
    for (int i = 0; i < ALL; i++) waitpid(pids[i], NULL, 0);
    if (held != 0) fail_msg("the %d other processes hold %d inotify instances", OTHERS, held);
    if (reporter_held != 1) fail_msg("the reporting process holds %d inotify instances", reporter_held);
    if (following != ALL) fail_msg("%d of %d processes followed the edit", following, ALL);
}

/* The preload library given a FIFO for MMT_POLICY (mmt-run refuses one before it starts
 * the program, test_mmtrun): the program runs, its status comes back, and why the policy
 * was not loaded is said. */
static void test_watch_the_preload_library_with_a_fifo_for_policy_runs_the_program_and_says_why(
    void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    WATCHDOG(60);
    char fifo[512], lib[PATH_MAX + 64], policy_env[600], out[600], err[600], text[8192];
    snprintf(fifo, sizeof fifo, "%s/policy.fifo", test_dir);
    snprintf(lib, sizeof lib, "LD_PRELOAD=%s/libmmtmem-preload.so", bin_dir);
    snprintf(policy_env, sizeof policy_env, "MMT_POLICY=%s", fifo);
    snprintf(out, sizeof out, "%s/fifo.out", test_dir);
    snprintf(err, sizeof err, "%s/fifo.err", test_dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    char *const argv[] = {"timeout", "20", "sh", "-c", "echo ran; exit 3", NULL};
    const char *env[] = {lib, policy_env, NULL};
    int status;
    assert_int_equal(waitpid(spawn(argv, env, out, err), &status, 0) > 0, 1);
    assert_true(WIFEXITED(status));
    read_file(err, text, sizeof text);
    if (WEXITSTATUS(status) != 3) fail_msg("exit status %d (124: hung); stderr:\n%s", WEXITSTATUS(status), text);
    char expected[600];
    snprintf(expected, sizeof expected, "%s: cannot read: not a regular file (a FIFO)", fifo);
    assert_contains(text, expected);
    read_file(out, text, sizeof text);
    assert_string_equal(text, "ran\n");
}

/* A FIFO renamed over the policy of a program under mmt-run: the program's engine
 * refuses it, and the program ends when it would (its exit stops the engine). */
static void test_watch_mmt_run_ends_when_a_fifo_is_renamed_over_its_policy(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    WATCHDOG(60);
    char policy[512], fifo[512], mmt_run[PATH_MAX + 16], out[600], err[600], text[8192];
    snprintf(policy, sizeof policy, "%s/ends.lua", test_dir);
    snprintf(fifo, sizeof fifo, "%s/ends.fifo", test_dir);
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", bin_dir);
    snprintf(out, sizeof out, "%s/ends.out", test_dir);
    snprintf(err, sizeof err, "%s/ends.err", test_dir);
    write_policy(write_in_place, policy, "x0");
    char *const argv[] = {"timeout", "20", mmt_run, "--policy", policy, "--", "sleep", "1.5", NULL};
    const char *none[] = {NULL};
    double t0 = now_seconds();
    pid_t pid = spawn(argv, none, out, err);
    sleep_ms(500); /* within the program's first second: its engine polls */
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(rename(fifo, policy), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    double took = now_seconds() - t0;
    read_file(err, text, sizeof text);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0) fail_msg("exit status %d (124: hung); stderr:\n%s", WEXITSTATUS(status), text);
    assert_contains(text, "ends.lua: cannot read: not a regular file (a FIFO)");
    if (took > 10) fail_msg("took %.1f s", took);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_watch_a_fifo_as_the_policy_is_refused_without_blocking, teardown),
        cmocka_unit_test_teardown(test_watch_sockets_devices_and_folders_are_refused_naming_their_kind, teardown),
        cmocka_unit_test_teardown(test_watch_a_fifo_renamed_over_the_watched_policy_leaves_the_engine_running, teardown),
        cmocka_unit_test_teardown(test_watch_the_preload_library_with_a_fifo_for_policy_runs_the_program_and_says_why, teardown),
        cmocka_unit_test_teardown(test_watch_mmt_run_ends_when_a_fifo_is_renamed_over_its_policy, teardown),
        cmocka_unit_test_teardown(test_watch_inotify_follows_a_symlink_into_another_folder, teardown),
        cmocka_unit_test_teardown(test_watch_inotify_follows_a_configmap_data_swap, teardown),
        cmocka_unit_test_teardown(test_watch_inotify_follows_a_folder_removed_and_recreated, teardown),
        cmocka_unit_test_teardown(test_watch_inotify_follows_a_folder_swapped_with_mv, teardown),
        cmocka_unit_test_teardown(test_watch_inotify_follows_a_relative_path_through_a_symlink, teardown),
        cmocka_unit_test_teardown(test_watch_polling_follows_a_symlink_into_another_folder, teardown),
        cmocka_unit_test_teardown(test_watch_polling_follows_a_configmap_data_swap, teardown),
        cmocka_unit_test_teardown(test_watch_polling_follows_a_folder_removed_and_recreated, teardown),
        cmocka_unit_test_teardown(test_watch_polling_follows_a_folder_swapped_with_mv, teardown),
        cmocka_unit_test_teardown(test_watch_a_new_file_is_not_loaded_before_its_writer_closes_it, teardown),
        cmocka_unit_test_teardown(test_watch_the_safety_net_finds_a_change_inotify_does_not_report, teardown),
        cmocka_unit_test_teardown(test_watch_engine_descriptors_are_high_and_close_on_exec, teardown),
        cmocka_unit_test_teardown(test_watch_closing_every_engine_descriptor_leaves_ticks_reload_and_free, teardown),
        cmocka_unit_test_teardown(test_watch_a_users_file_on_an_engine_descriptors_number_is_left_alone, teardown),
        cmocka_unit_test_teardown(test_watch_closed_engine_descriptors_do_not_make_its_thread_spin, teardown),
        cmocka_unit_test_teardown(test_watch_free_is_prompt_when_the_descriptors_close_under_a_waiting_thread, teardown),
        cmocka_unit_test_teardown(test_watch_without_an_inotify_instance_the_engine_says_so_once_and_polls, teardown),
        cmocka_unit_test_teardown(test_watch_under_the_preload_library_only_the_reporting_process_uses_inotify, teardown),
    };
    return cmocka_run_group_tests_name("watch", tests, setup, remove_test_dir);
}
