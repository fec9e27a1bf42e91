/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "pool-services/handoff.h"

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

static void test_handoff_has_the_design_fields(void **state) {
        char dir[] = "/tmp/pm-handoff-XXXXXX", path[PATH_MAX], err[256];
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
        assert_int_equal(ps_handoff_write(dir, &h, err, sizeof(err)), 0);
        ps_handoff_path(dir, "llama_7b", "r0", path, sizeof(path));
        doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(doc);
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
        snprintf(path, sizeof(path), "%s/engines", dir);
        d = opendir(path);
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
        ps_handoff_path(dir, "llama_7b", "r0", path, sizeof(path));
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(ps_handoff_remove(dir, "llama_7b", "r0"), 0);

        snprintf(path, sizeof(path), "%s/engines", dir);
        rmdir(path);
        rmdir(dir);
        ps_engine_spec_free(s);
}

static void test_handoff_write_failure_names_the_step(void **state) {
        ps_engine_spec *s = spec_new();
        ps_handoff h = { .spec = s, .pid = 1 };
        char err[256];

        (void) state;
        assert_true(ps_handoff_write("/nonexistent/runtime", &h, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "mkdir /nonexistent/runtime/engines"));
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
                cmocka_unit_test(test_handoff_write_failure_names_the_step),
                cmocka_unit_test(test_spec_copy_is_deep),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
