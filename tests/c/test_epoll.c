/* Readiness descriptors in epoll loops across processes: a forked producer waits for free slots
 * on shmpool_producer_fd, this process for buffers on shmpool_consumer_fd (edge-triggered), every
 * wait with a deadline; all buffers arrive in order. Run by scripts/test-c.sh.
 * Usage: test_epoll DIR   (DIR: an empty private directory for the pools; left empty) */
#define _POSIX_C_SOURCE 200809L
#include "shmpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#define COUNT 20000
#define WAIT_MS 5000

static int fail(const char *who, const char *what) {
    fprintf(stderr, "%s: %s (last error: %s)\n", who, what, shmpool_last_error_message());
    return 1;
}

/* An epoll set watching `fd` for input, edge-triggered. */
static int watch(int fd) {
    struct epoll_event ev;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLET;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) return -1;
    return ep;
}

/* Waits for the descriptor to fire; 0 on readiness, -1 on a timeout (a lost wake-up). */
static int wait_ready(int ep) {
    struct epoll_event ev;
    int n;
    do n = epoll_wait(ep, &ev, 1, WAIT_MS);
    while (n < 0);
    return n == 1 ? 0 : -1;
}

static int produce(const char *dir) {
    shmpool_pool *pool = NULL;
    shmpool_producer *producer = NULL;
    shmpool_write_buf *wb = NULL;
    uint64_t i;
    int fd = -1, ep;
    if (shmpool_pool_open("epoll", dir, &pool) != SHMPOOL_OK) return fail("producer", "open");
    if (shmpool_pool_producer(pool, &producer) != SHMPOOL_OK) return fail("producer", "join");
    if (shmpool_producer_fd(producer, &fd) != SHMPOOL_OK || fd < 0) return fail("producer", "fd");
    if ((ep = watch(fd)) < 0) return fail("producer", "epoll");
    for (i = 0; i < COUNT; i++) {
        shmpool_status s;
        while ((s = shmpool_producer_try_acquire(producer, &wb)) == SHMPOOL_WOULD_BLOCK)
            if (wait_ready(ep) != 0) return fail("producer", "no free slot within the deadline");
        if (s != SHMPOOL_OK) return fail("producer", "try_acquire");
        memcpy(shmpool_write_buf_data(wb), &i, sizeof i);
        if (shmpool_write_buf_set_len(wb, sizeof i) != SHMPOOL_OK) return fail("producer", "set_len");
        if (shmpool_producer_publish(producer, &wb, NULL) != SHMPOOL_OK) return fail("producer", "publish");
    }
    close(ep);
    shmpool_producer_free(producer);
    shmpool_pool_free(pool);
    return 0;
}

int main(int argc, char **argv) {
    shmpool_config *config = NULL;
    shmpool_pool *pool = NULL;
    shmpool_consumer *consumer = NULL;
    shmpool_read_buf *rb = NULL;
    uint64_t next = 0, got;
    int fd = -1, ep, status = 0, rc = 0;
    pid_t child;

    if (argc < 2) return fail("test_epoll", "usage: test_epoll DIR");
    if (shmpool_config_new(4, 4096, &config) != SHMPOOL_OK ||
        shmpool_config_set_directory(config, argv[1]) != SHMPOOL_OK ||
        shmpool_pool_create("epoll", config, &pool) != SHMPOOL_OK)
        return fail("test_epoll", "create");
    shmpool_config_free(config);
    if (shmpool_pool_consumer(pool, &consumer) != SHMPOOL_OK) return fail("test_epoll", "join");
    if (shmpool_consumer_fd(NULL, &fd) != SHMPOOL_INVALID_ARGUMENT) return fail("test_epoll", "NULL consumer accepted");
    if (shmpool_consumer_fd(consumer, NULL) != SHMPOOL_INVALID_ARGUMENT) return fail("test_epoll", "NULL fd accepted");
    if (shmpool_consumer_fd(consumer, &fd) != SHMPOOL_OK || fd < 0) return fail("test_epoll", "fd");
    if ((ep = watch(fd)) < 0) return fail("test_epoll", "epoll");

    child = fork();
    if (child == 0) _exit(produce(argv[1]));
    while (next < COUNT && rc == 0) {
        shmpool_status s;
        while ((s = shmpool_consumer_try_recv(consumer, &rb)) == SHMPOOL_OK) {
            memcpy(&got, shmpool_read_buf_data(rb), sizeof got);
            if (got != next) {
                fprintf(stderr, "buffer %llu arrived as number %llu\n", (unsigned long long)got,
                        (unsigned long long)next);
                rc = 1;
            }
            next++;
            shmpool_consumer_release(consumer, &rb);
        }
        if (s != SHMPOOL_WOULD_BLOCK) rc = fail("test_epoll", "try_recv");
        else if (next < COUNT && wait_ready(ep) != 0) rc = fail("test_epoll", "no buffer within the deadline");
    }
    if (rc != 0) kill(child, SIGKILL);
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "producer process failed (status %d)\n", status);
        rc = 1;
    }
    close(ep);
    shmpool_consumer_free(consumer);
    shmpool_pool_free(pool);
    if (rc == 0) printf("test_epoll: %d buffers in order through epoll on both sides\n", COUNT);
    return rc;
}
