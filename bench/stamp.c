/* SPDX-License-Identifier: MIT */
/*
 * The engine of bench/restart-side: on start it appends "PID MONO_NS" to
 * the file STAMP_FILE names (CLOCK_MONOTONIC, the clock the harness reads
 * before its kill -9), then answers every HTTP request on --port with 200
 * (pool-managerd's health probe) until killed. Other arguments are ignored.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        struct timespec ts;
        const char *path = getenv("STAMP_FILE");
        char line[64];
        int port = 0, fd, n;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (path) {
                n = snprintf(line, sizeof(line), "%d %lld\n", (int) getpid(),
                             (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec);
                fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0 || write(fd, line, (size_t) n) != n)
                        return 1;
                close(fd);
        }
        for (int i = 1; i + 1 < argc; i++)
                if (strcmp(argv[i], "--port") == 0)
                        port = atoi(argv[i + 1]);
        if (port <= 0)
                for (;;)
                        pause();
        {
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                int one = 1, s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                char buf[4096];

                setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (s < 0 || bind(s, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(s, 64) < 0)
                        return 1;
                for (;;) {
                        int c = accept(s, NULL, NULL);

                        if (c < 0)
                                continue;
                        (void) !read(c, buf, sizeof(buf));
                        (void) !write(c, ok, sizeof(ok) - 1);
                        close(c);
                }
        }
}
