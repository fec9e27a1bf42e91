/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "pool-services/base/fs.h"
#include "pool-services/supervise/handoff.h"
#include "pool-services/pool/registry.h"

/* snprintf into an array, failing the test when it does not fit. */
#define FMT(buf, ...) assert_true(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int) sizeof(buf))

static ps_engine_spec *spec_new(void) {
        ps_engine_spec *s = ps_engine_spec_new();

        s->pool_id = strdup("llama_7b");          /* '_' is legal in ids */
        s->replica_id = strdup("r0");
        s->engine = strdup("llamacpp");
        s->engine_version = strdup("b6000");
        s->host = strdup("127.0.0.1");
        s->port = 8081;
        s->model_path = strdup("/models/7b.gguf");
        s->model_id = strdup("7b");
        s->device_mask = strdup("0,1");
        s->slots = 4;
        s->n_flags = 2;
        s->flags = calloc(2, sizeof(char *));
        s->flags[0] = strdup("--port");
        s->flags[1] = strdup("8081");
        return s;
}

/* The llama-orch reader's rules: pool_id, replica_id, engine,
 * engine_version and url present and strings (never null); slots, when
 * there, a non-negative integer; device_mask, when there, a string. */
static void assert_seed_readable(const json_t *doc) {
        static const char *const required[] = {
                "pool_id", "replica_id", "engine", "engine_version", "url",
        };
        const json_t *v;

        assert_true(json_is_object(doc));
        for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
                v = json_object_get(doc, required[i]);
                if (!json_is_string(v))
                        fail_msg("%s: %s, not a string", required[i], v ? "wrong type" : "missing");
        }
        v = json_object_get(doc, "slots");
        assert_true(!v || (json_is_integer(v) && json_integer_value(v) >= 0 &&
                           json_integer_value(v) <= UINT32_MAX));
        v = json_object_get(doc, "device_mask");
        assert_true(!v || json_is_string(v));
}

static void test_handoff_has_the_design_fields(void **state) {
        char dir[] = "/tmp/pm-handoff-XXXXXX", path[PATH_MAX], want[PATH_MAX], err[256];
        ps_engine_spec *s = spec_new();
        ps_handoff h = { .spec = s, .pid = 4242, .slots_free = 3 };
        json_error_t jerr;
        json_t *doc;
        FILE *fp;
        char first[8] = "";
        DIR *d;
        struct dirent *de;
        int entries = 0;

        (void) state;
        assert_non_null(mkdtemp(dir));
        /* The directory given is where the file goes: no engines/ below it. */
        assert_int_equal(ps_handoff_write(dir, &h, err, sizeof(err)), 0);
        ps_handoff_path(dir, "llama_7b", "r0", path, sizeof(path));
        FMT(want, "%s/llama_7b_r0.json", dir);
        assert_string_equal(path, want);
        doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(doc);
        assert_seed_readable(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "engine")), "llamacpp");
        assert_string_equal(json_string_value(json_object_get(doc, "engine_version")), "b6000");
        assert_string_equal(json_string_value(json_object_get(doc, "url")), "http://127.0.0.1:8081");
        assert_string_equal(json_string_value(json_object_get(doc, "pool_id")), "llama_7b");
        assert_string_equal(json_string_value(json_object_get(doc, "replica_id")), "r0");
        assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "model"), "path")),
                            "/models/7b.gguf");
        assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "model"), "id")), "7b");
        assert_int_equal(json_array_size(json_object_get(doc, "flags")), 2);
        assert_string_equal(json_string_value(json_object_get(doc, "device_mask")), "0,1");
        /* "slots" for the llama-orch reader, beside our own two. */
        assert_int_equal(json_integer_value(json_object_get(doc, "slots")), 4);
        assert_int_equal(json_integer_value(json_object_get(doc, "slots_total")), 4);
        assert_int_equal(json_integer_value(json_object_get(doc, "slots_free")), 3);
        assert_int_equal(json_integer_value(json_object_get(doc, "pid")), 4242);
        assert_string_equal(json_string_value(json_object_get(doc, "managed_by")), "pool-managerd");
        json_decref(doc);

        /* pretty-printed, and no temp file left behind */
        fp = fopen(path, "r");
        assert_non_null(fp);
        assert_non_null(fgets(first, sizeof(first), fp));
        fclose(fp);
        assert_string_equal(first, "{\n");
        d = opendir(dir);
        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
                        entries++;
        closedir(d);
        assert_int_equal(entries, 1);

        /* rewrite replaces, remove removes, removing again is fine */
        h.slots_free = 1;
        assert_int_equal(ps_handoff_write(dir, &h, err, sizeof(err)), 0);
        assert_int_equal(ps_handoff_remove(dir, "llama_7b", "r0"), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(ps_handoff_remove(dir, "llama_7b", "r0"), 0);
        assert_int_equal(ps_handoff_remove(NULL, "llama_7b", "r0"), -EINVAL);

        rmdir(dir);
        ps_engine_spec_free(s);
}

/* Written from a spec without engine, engine_version or device_mask. */
static json_t *write_bare(const char *dir, const char *binary) {
        ps_engine_spec *s = spec_new();
        ps_handoff h = { .spec = s, .pid = 7, .slots_free = 4 };
        char path[PATH_MAX], err[256];
        json_error_t jerr;
        json_t *doc;

        free(s->engine);
        s->engine = NULL;
        free(s->engine_version);
        s->engine_version = NULL;
        free(s->device_mask);
        s->device_mask = NULL;
        free(s->binary_path);
        s->binary_path = binary ? strdup(binary) : NULL;
        assert_int_equal(ps_handoff_write(dir, &h, err, sizeof(err)), 0);
        ps_handoff_path(dir, "llama_7b", "r0", path, sizeof(path));
        doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(doc);
        assert_int_equal(unlink(path), 0);
        ps_engine_spec_free(s);
        return doc;
}

static void test_handoff_engine_is_never_null(void **state) {
        static const struct {
                const char *binary, *engine;
        } cases[] = {
                { "/opt/llama.cpp/build/bin/llama-server", "llamacpp" },
                { "/usr/local/bin/llama-server-cuda", "llamacpp" },
                { "llama-cpp-server", "llamacpp" },
                { "/usr/bin/vllm", "vllm" },
                { "/opt/tgi/text-generation-launcher", "tgi" },
                { "/opt/tritonserver/bin/tritonserver", "triton" },
                { "/usr/bin/llama-serverless", "unknown" },
                { "/usr/bin/fake-engine", "unknown" },
                { "/", "unknown" },
                { NULL, "unknown" },
        };
        char dir[] = "/tmp/pm-handoff-XXXXXX";
        ps_engine_spec *s = spec_new();

        (void) state;
        /* The spec's own name wins; an empty one does not count. */
        assert_string_equal(ps_handoff_engine(s), "llamacpp");
        free(s->engine);
        s->engine = strdup("");
        free(s->binary_path);
        s->binary_path = strdup("/usr/bin/vllm");
        assert_string_equal(ps_handoff_engine(s), "vllm");
        assert_string_equal(ps_handoff_engine(NULL), "unknown");
        ps_engine_spec_free(s);

        assert_non_null(mkdtemp(dir));
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *doc = write_bare(dir, cases[i].binary);

                assert_seed_readable(doc);
                assert_string_equal(json_string_value(json_object_get(doc, "engine")), cases[i].engine);
                assert_string_equal(json_string_value(json_object_get(doc, "engine_version")), "unknown");
                /* Left out rather than null when unset. */
                assert_null(json_object_get(doc, "device_mask"));
                assert_int_equal(json_integer_value(json_object_get(doc, "slots")), 4);
                json_decref(doc);
        }
        rmdir(dir);
}

static void test_handoff_dir_of_a_context(void **state) {
        ps_context ctx = { .runtime_dir = "/run/pm" };
        char buf[PATH_MAX], small[12];

        (void) state;
        assert_string_equal(ps_handoff_dir(&ctx, buf, sizeof(buf)), "/run/pm/engines");
        ctx.handoff_dir = "/var/lib/llama-orch/engines";
        assert_string_equal(ps_handoff_dir(&ctx, buf, sizeof(buf)), "/var/lib/llama-orch/engines");
        assert_null(ps_handoff_dir(&ctx, small, sizeof(small)));
        ctx.handoff_dir = "";
        assert_string_equal(ps_handoff_dir(&ctx, buf, sizeof(buf)), "/run/pm/engines");
        ctx.runtime_dir = NULL;
        assert_null(ps_handoff_dir(&ctx, buf, sizeof(buf)));
        assert_null(ps_handoff_dir(NULL, buf, sizeof(buf)));
}

static void test_handoff_write_failure_names_the_step(void **state) {
        char dir[] = "/tmp/pm-handoff-XXXXXX", file[PATH_MAX], handoff[PATH_MAX], want[PATH_MAX];
        char parent[PATH_MAX];
        ps_engine_spec *s = spec_new();
        ps_handoff h = { .spec = s, .pid = 1 };
        char err[512];
        int fd;

        (void) state;
        /* A regular file where a directory should be: no mkdir gets past
         * it, not even root's. */
        assert_non_null(mkdtemp(dir));
        FMT(file, "%s/file", dir);
        fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        close(fd);
        FMT(handoff, "%s/engines", file);
        assert_int_equal(ps_handoff_write(handoff, &h, err, sizeof(err)), -ENOTDIR);
        FMT(want, "handoff: cannot open directory %s: ", file);
        assert_non_null(strstr(err, want));
        unlink(file);
        /* The handoff directory is made, but not a missing parent. */
        FMT(parent, "%s/missing", dir);
        FMT(handoff, "%s/engines", parent);
        assert_int_equal(ps_handoff_write(handoff, &h, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, parent));
        assert_int_equal(access(parent, F_OK), -1);
        /* No directory at all. */
        assert_int_equal(ps_handoff_write(NULL, &h, err, sizeof(err)), -EINVAL);
        assert_int_equal(ps_handoff_write("", &h, err, sizeof(err)), -EINVAL);
        rmdir(dir);
        ps_engine_spec_free(s);
}

/* ---- private directories and what is written into them ---- */

static char *slurp(const char *path) {
        static char buf[4096];
        FILE *fp = fopen(path, "r");
        size_t n;

        assert_non_null(fp);
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        return buf;
}

static void test_private_dir_made_when_missing(void **state) {
        char dir[] = "/tmp/pm-private-XXXXXX", path[PATH_MAX], err[512];
        struct stat st;
        mode_t old = umask(0);

        (void) state;
        assert_non_null(mkdtemp(dir));
        FMT(path, "%s/a/b", dir);
        /* Not made without create. */
        assert_int_equal(ps_private_dir(path, false, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, path));
        assert_int_equal(ps_private_dir(path, true, err, sizeof(err)), 0);
        umask(old);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        /* 0700 even with umask 0: nobody else may even look */
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(st.st_uid, geteuid());
        /* A good one that exists passes, again and again, with a trailing '/'. */
        assert_int_equal(ps_private_dir(path, true, err, sizeof(err)), 0);
        FMT(path, "%s/a/b/", dir);
        assert_int_equal(ps_private_dir(path, false, err, sizeof(err)), 0);
        FMT(path, "%s/a/b", dir);
        rmdir(path);
        FMT(path, "%s/a", dir);
        rmdir(path);
        rmdir(dir);
}

static void test_private_dir_refuses_group_or_world_writable(void **state) {
        char dir[] = "/tmp/pm-private-XXXXXX", want[PATH_MAX + 64], err[512];
        int fd;

        (void) state;
        assert_non_null(mkdtemp(dir));
        assert_int_equal(chmod(dir, 0777), 0);
        assert_int_equal(ps_private_dir(dir, true, err, sizeof(err)), -EPERM);
        FMT(want, "directory %s is writable by group or others (mode 0777): "
                                     "chmod go-w %s", dir, dir);
        assert_string_equal(err, want);
        fd = ps_private_dir_open(dir, false, err, sizeof(err));
        assert_int_equal(fd, -EPERM);
        assert_int_equal(chmod(dir, 0770), 0);
        assert_int_equal(ps_private_dir(dir, false, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "(mode 0770)"));
        /* Readable by others is fine: only writing is refused. */
        assert_int_equal(chmod(dir, 0755), 0);
        fd = ps_private_dir_open(dir, false, err, sizeof(err));
        assert_true(fd >= 0);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
        rmdir(dir);
}

static void test_private_dir_refuses_a_symlink(void **state) {
        char dir[] = "/tmp/pm-private-XXXXXX", real[PATH_MAX], link[PATH_MAX], err[512];
        char file[PATH_MAX];
        int fd;

        (void) state;
        assert_non_null(mkdtemp(dir));
        FMT(real, "%s/real", dir);
        FMT(link, "%s/link", dir);
        assert_int_equal(mkdir(real, 0700), 0);
        assert_int_equal(symlink(real, link), 0);
        /* A good directory behind it changes nothing, nor does create. */
        assert_int_equal(ps_private_dir(link, true, err, sizeof(err)), -ELOOP);
        assert_non_null(strstr(err, link));
        assert_non_null(strstr(err, "is a symbolic link"));
        /* Nor does a trailing slash, which would follow it. */
        FMT(file, "%s/", link);
        assert_int_equal(ps_private_dir(file, false, err, sizeof(err)), -ELOOP);
        /* A file is not a directory. */
        FMT(file, "%s/file", dir);
        fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(ps_private_dir(file, false, err, sizeof(err)), -ENOTDIR);
        assert_non_null(strstr(err, "is not a directory"));
        unlink(file);
        unlink(link);
        rmdir(real);
        rmdir(dir);
}

static void test_private_dir_refuses_another_owner(void **state) {
        char dir[] = "/tmp/pm-private-XXXXXX", want[PATH_MAX + 64], err[512];

        (void) state;
        if (geteuid() != 0)
                skip();        /* only root can give a directory away */
        assert_non_null(mkdtemp(dir));
        assert_int_equal(chown(dir, 65534, (gid_t) -1), 0);
        assert_int_equal(ps_private_dir(dir, false, err, sizeof(err)), -EPERM);
        FMT(want, "directory %s is owned by uid 65534, not 0: chown 0 %s",
                 dir, dir);
        assert_string_equal(err, want);
        rmdir(dir);
}

static void test_handoff_write_refuses_an_unsafe_directory(void **state) {
        char dir[] = "/tmp/pm-handoff-XXXXXX", engines[PATH_MAX], path[PATH_MAX], err[512];
        ps_engine_spec *s = spec_new();
        ps_handoff h = { .spec = s, .pid = 1 };

        (void) state;
        assert_non_null(mkdtemp(dir));
        FMT(engines, "%s/engines", dir);
        assert_int_equal(mkdir(engines, 0700), 0);
        assert_int_equal(chmod(engines, 0777), 0);
        assert_int_equal(ps_handoff_write(engines, &h, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "chmod go-w"));
        ps_handoff_path(engines, "llama_7b", "r0", path, sizeof(path));
        assert_int_equal(access(path, F_OK), -1);
        rmdir(engines);
        rmdir(dir);
        ps_engine_spec_free(s);
}

static void test_handoff_write_made_directory_is_private(void **state) {
        char dir[] = "/tmp/pm-handoff-XXXXXX", engines[PATH_MAX], err[512];
        ps_engine_spec *s = spec_new();
        ps_handoff h = { .spec = s, .pid = 1 };
        struct stat st;

        mode_t old = umask(002);
        char path[PATH_MAX];
        int r;

        (void) state;
        assert_non_null(mkdtemp(dir));
        FMT(engines, "%s/handoffs", dir);
        r = ps_handoff_write(engines, &h, err, sizeof(err));
        umask(old);
        assert_int_equal(r, 0);
        assert_int_equal(lstat(engines, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        /* 0644 whatever the umask: a group-writable handoff would be refused */
        ps_handoff_path(engines, "llama_7b", "r0", path, sizeof(path));
        assert_int_equal(lstat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        assert_int_equal(ps_handoff_remove(engines, "llama_7b", "r0"), 0);
        rmdir(engines);
        rmdir(dir);
        ps_engine_spec_free(s);
}

static void test_handoff_write_replaces_a_planted_symlink(void **state) {
        char dir[] = "/tmp/pm-handoff-XXXXXX", engines[PATH_MAX], path[PATH_MAX];
        char victim[PATH_MAX], tmp[PATH_MAX], err[512];
        ps_engine_spec *s = spec_new();
        ps_handoff h = { .spec = s, .pid = 1 };
        struct stat st;

        (void) state;
        assert_non_null(mkdtemp(dir));
        FMT(engines, "%s/engines", dir);
        assert_int_equal(mkdir(engines, 0700), 0);
        FMT(victim, "%s/victim", dir);
        FILE *fp = fopen(victim, "w");
        assert_non_null(fp);
        fputs("precious\n", fp);
        fclose(fp);
        /* At the final name and at the temp name. */
        ps_handoff_path(engines, "llama_7b", "r0", path, sizeof(path));
        assert_int_equal(symlink(victim, path), 0);
        FMT(tmp, "%s/.llama_7b_r0.json.tmp", engines);
        assert_int_equal(symlink(victim, tmp), 0);

        assert_int_equal(ps_handoff_write(engines, &h, err, sizeof(err)), 0);
        /* The target is untouched; the link itself was replaced. */
        assert_string_equal(slurp(victim), "precious\n");
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_non_null(strstr(slurp(path), "\"managed_by\": \"pool-managerd\""));
        assert_int_equal(lstat(tmp, &st), -1);

        /* A stale temp file left by a crash does not block the next write. */
        fp = fopen(tmp, "w");
        assert_non_null(fp);
        fputs("half", fp);
        fclose(fp);
        h.slots_free = 2;
        assert_int_equal(ps_handoff_write(engines, &h, err, sizeof(err)), 0);
        assert_non_null(strstr(slurp(path), "\"slots_free\": 2"));
        assert_int_equal(lstat(tmp, &st), -1);

        unlink(path);
        unlink(victim);
        rmdir(engines);
        rmdir(dir);
        ps_engine_spec_free(s);
}

static void test_spec_copy_is_deep(void **state) {
        ps_engine_spec *s = spec_new(), *c;
        char url[64];

        (void) state;
        c = ps_engine_spec_copy(s);
        assert_non_null(c);
        assert_ptr_not_equal(c->flags, s->flags);
        assert_string_equal(c->flags[1], "8081");
        ps_engine_spec_free(s);
        assert_string_equal(c->pool_id, "llama_7b");
        ps_engine_spec_url(c, url, sizeof(url));
        assert_string_equal(url, "http://127.0.0.1:8081");
        free(c->host);
        c->host = strdup("::1");
        ps_engine_spec_url(c, url, sizeof(url));
        assert_string_equal(url, "http://[::1]:8081");
        ps_engine_spec_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_handoff_has_the_design_fields),
                cmocka_unit_test(test_handoff_engine_is_never_null),
                cmocka_unit_test(test_handoff_dir_of_a_context),
                cmocka_unit_test(test_handoff_write_failure_names_the_step),
                cmocka_unit_test(test_private_dir_made_when_missing),
                cmocka_unit_test(test_private_dir_refuses_group_or_world_writable),
                cmocka_unit_test(test_private_dir_refuses_a_symlink),
                cmocka_unit_test(test_private_dir_refuses_another_owner),
                cmocka_unit_test(test_handoff_write_refuses_an_unsafe_directory),
                cmocka_unit_test(test_handoff_write_made_directory_is_private),
                cmocka_unit_test(test_handoff_write_replaces_a_planted_symlink),
                cmocka_unit_test(test_spec_copy_is_deep),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
