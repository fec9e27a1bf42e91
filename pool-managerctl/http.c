/* SPDX-License-Identifier: MIT */
/*
 * The daemon's address, and one HTTP request to it with libcurl: over the
 * Unix socket (every route, no token) or TCP (a token for changes).
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ctl.h"

#define SYSTEM_SOCKET "/run/pool-managerd/api.sock"
#define LOCAL_SOCKET ".runtime/api.sock"

static char runtime_socket[4096];

/* A token file's first line, without surrounding blanks; NULL with the
 * reason printed. */
static char *read_token(const char *path) {
        char buf[4096];
        size_t n, start = 0;
        FILE *f = fopen(path, "re");

        if (!f) {
                fprintf(stderr, "pool-managerctl: --token-file %s: %s\n", path, strerror(errno));
                return NULL;
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        n = strlen(buf);
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
                buf[--n] = '\0';
        while (buf[start] == ' ' || buf[start] == '\t')
                start++;
        if (!buf[start]) {
                fprintf(stderr, "pool-managerctl: --token-file %s: the file is empty\n", path);
                return NULL;
        }
        return strdup(buf + start);
}

/* --socket, $POOL_MANAGERD_SOCKET, $POOL_MANAGERD_RUNTIME_DIR/api.sock,
 * the system daemon's socket when it exists, else .runtime/api.sock (the
 * daemon's default runtime directory, relative to where it runs). */
static const char *default_socket(void) {
        const char *env = getenv("POOL_MANAGERD_SOCKET");
        struct stat st;

        if (env && env[0])
                return env;
        env = getenv("POOL_MANAGERD_RUNTIME_DIR");
        if (env && env[0]) {
                snprintf(runtime_socket, sizeof(runtime_socket), "%s/api.sock", env);
                return runtime_socket;
        }
        if (stat(SYSTEM_SOCKET, &st) == 0)
                return SYSTEM_SOCKET;
        return LOCAL_SOCKET;
}

int ctl_conn_resolve(ctl_conn *conn, const char *socket_flag, const char *url_flag,
                     const char *token_file) {
        const char *env;

        *conn = (ctl_conn) { .socket_path = NULL };
        if (socket_flag && url_flag) {
                fprintf(stderr, "pool-managerctl: --socket and --url exclude each other\n");
                return CTL_EXIT_USAGE;
        }
        if (!url_flag) {
                if (token_file) {
                        fprintf(stderr, "pool-managerctl: --token-file needs --url (the socket "
                                "needs no token)\n");
                        return CTL_EXIT_USAGE;
                }
                conn->socket_path = socket_flag ? socket_flag : default_socket();
                return 0;
        }
        if (strncmp(url_flag, "http://", 7) != 0 && strncmp(url_flag, "https://", 8) != 0) {
                fprintf(stderr, "pool-managerctl: --url %s: must start with http:// or https://\n",
                        url_flag);
                return CTL_EXIT_USAGE;
        }
        conn->url = url_flag;
        if (token_file) {
                conn->token = read_token(token_file);
                conn->token_source = "--token-file";
                return conn->token ? 0 : CTL_EXIT_USAGE;
        }
        if ((env = getenv("POOL_MANAGERD_TOKEN")) && env[0])
                conn->token_source = "POOL_MANAGERD_TOKEN";
        else if ((env = getenv("LLORCH_API_TOKEN")) && env[0])
                conn->token_source = "LLORCH_API_TOKEN";
        if (conn->token_source && !(conn->token = strdup(env)))
                return CTL_EXIT_UNREACHABLE;
        return 0;
}

void ctl_conn_done(ctl_conn *conn) {
        free(conn->token);
        conn->token = NULL;
}

typedef struct buffer {
        char *data;
        size_t len;
        CURL *curl;                  /* streaming: the transfer          */
        FILE *out;                   /* streaming: where a 200 body goes */
} buffer;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        buffer *b = userdata;
        size_t n = size * nmemb;
        long status = 0;
        char *grown;

        if (b->out) {
                curl_easy_getinfo(b->curl, CURLINFO_RESPONSE_CODE, &status);
                if (status == 200)
                        return fwrite(ptr, 1, n, b->out) == n && fflush(b->out) == 0 ? n : 0;
        }
        grown = realloc(b->data, b->len + n + 1);

        if (!grown)
                return 0;
        memcpy(grown + b->len, ptr, n);
        b->len += n;
        grown[b->len] = '\0';
        b->data = grown;
        return n;
}

/* Why the socket could not be opened, asked of the kernel directly. */
static void explain_socket(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        int fd, err = 0;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                err = errno;
        if (fd >= 0)
                close(fd);
        if (err == EACCES || err == EPERM) {
                const struct group *g = stat(path, &st) == 0 ? getgrgid(st.st_gid) : NULL;

                fprintf(stderr, "pool-managerctl: cannot open the daemon's socket %s: %s\n"
                        "hint: the socket is for its owner and group %s: run as a member "
                        "(sudo usermod -aG %s $USER, then log in again) or with sudo\n",
                        path, strerror(err), g ? g->gr_name : "?", g ? g->gr_name : "GROUP");
        } else if (err == ENOENT) {
                fprintf(stderr, "pool-managerctl: no daemon socket at %s\n"
                        "hint: is pool-managerd running? Name its socket with --socket PATH "
                        "or $POOL_MANAGERD_SOCKET (it is <runtime_dir>/api.sock)\n", path);
        } else {
                fprintf(stderr, "pool-managerctl: cannot reach the daemon at %s: %s\n"
                        "hint: is pool-managerd running?\n",
                        path, strerror(err ? err : ECONNREFUSED));
        }
}

static int unreachable(const ctl_conn *conn, CURLcode rc, const char *detail) {
        if (conn->socket_path && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_RECV_ERROR ||
                                  rc == CURLE_SEND_ERROR))
                explain_socket(conn->socket_path);
        else
                fprintf(stderr, "pool-managerctl: cannot reach the daemon at %s: %s\n",
                        conn->url ? conn->url : conn->socket_path,
                        detail[0] ? detail : curl_easy_strerror(rc));
        return CTL_EXIT_UNREACHABLE;
}

static struct curl_slist *headers_for(const ctl_conn *conn, bool has_body) {
        struct curl_slist *h = NULL;
        char auth[4200];

        h = curl_slist_append(h, "Accept: application/json");
        if (has_body)
                h = curl_slist_append(h, "Content-Type: application/json");
        if (conn->url && conn->token) {
                snprintf(auth, sizeof(auth), "Authorization: Bearer %s", conn->token);
                h = curl_slist_append(h, auth);
        }
        return h;
}

static int perform(const ctl_conn *conn, const char *method, const char *path, json_t *body,
                   FILE *out, ctl_reply *reply) {
        char url[4096], detail[CURL_ERROR_SIZE] = "";
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        struct curl_slist *headers = headers_for(conn, text != NULL);
        CURL *curl = curl_easy_init();
        buffer got = { .curl = curl, .out = out };
        CURLcode rc;

        *reply = (ctl_reply) { .status = 0 };
        snprintf(url, sizeof(url), "%s%s", conn->url ? conn->url : "http://localhost", path);
        if (conn->url && url[strlen(conn->url) - 1] == '/' && path[0] == '/')
                memmove(url + strlen(conn->url) - 1, url + strlen(conn->url), strlen(path) + 1);
        if (!curl) {
                free(text);
                curl_slist_free_all(headers);
                fprintf(stderr, "pool-managerctl: cannot start libcurl\n");
                return CTL_EXIT_UNREACHABLE;
        }
        curl_easy_setopt(curl, CURLOPT_URL, url);
        if (conn->socket_path)
                curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, conn->socket_path);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text ? text : "");
        if (strcmp(method, "GET") == 0)
                curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &got);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, detail);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        rc = curl_easy_perform(curl);
        if (rc == CURLE_OK)
                curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
        curl_easy_cleanup(curl);
        curl_slist_free_all(headers);
        free(text);
        if (rc != CURLE_OK) {
                free(got.data);
                return unreachable(conn, rc, detail);
        }
        reply->text = got.data ? got.data : strdup("");
        reply->body = reply->text ? json_loads(reply->text, 0, NULL) : NULL;
        return 0;
}

int ctl_request(const ctl_conn *conn, const char *method, const char *path, json_t *body,
                ctl_reply *reply) {
        return perform(conn, method, path, body, NULL, reply);
}

int ctl_request_stream(const ctl_conn *conn, const char *path, FILE *out, ctl_reply *reply) {
        return perform(conn, "GET", path, NULL, out, reply);
}

void ctl_reply_done(ctl_reply *reply) {
        json_decref(reply->body);
        free(reply->text);
        *reply = (ctl_reply) { .status = 0 };
}

int ctl_reply_check(const ctl_opts *o, const ctl_reply *reply) {
        const char *error = json_string_value(json_object_get(reply->body, "error"));
        const char *code = json_string_value(json_object_get(reply->body, "code"));

        if (o->json && reply->text && reply->text[0])
                printf("%s%s", reply->text,
                       reply->text[strlen(reply->text) - 1] == '\n' ? "" : "\n");
        if (reply->status >= 200 && reply->status < 300)
                return CTL_EXIT_OK;
        if (error)
                fprintf(stderr, "pool-managerctl: %s (%s)\n", error, code ? code : "?");
        else
                fprintf(stderr, "pool-managerctl: the daemon answered HTTP %ld\n", reply->status);
        if (code && strcmp(code, "UNAUTHORIZED") == 0)
                fprintf(stderr, "hint: give the daemon's token with --token-file, "
                        "$POOL_MANAGERD_TOKEN or $LLORCH_API_TOKEN%s%s%s\n",
                        o->conn.token_source ? " (sent one from " : "",
                        o->conn.token_source ? o->conn.token_source : "",
                        o->conn.token_source ? ")" : "");
        else if (code && strcmp(code, "READ_ONLY") == 0)
                fprintf(stderr, "hint: without a token TCP is read-only: drop --url to use the "
                        "socket, or give a token (--token-file)\n");
        return CTL_EXIT_REFUSED;
}
