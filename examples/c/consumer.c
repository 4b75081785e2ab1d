/* C consumer: opens a pool (waiting up to 10 s for it to appear), receives until COUNT buffers
 * arrived or the pool is closed and drained, and checks the test payload of examples/c/producer.c.
 * Usage: consumer NAME DIR [COUNT] */
#define _POSIX_C_SOURCE 200809L
#include "shmpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *name, *dir;
    long want;
    unsigned long received = 0;
    shmpool_pool *pool = NULL;
    shmpool_consumer *consumer = NULL;
    shmpool_status s;
    double deadline;
    int rc = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: %s NAME DIR [COUNT]\n", argv[0]);
        return 2;
    }
    name = argv[1];
    dir = argv[2];
    want = argc > 3 ? strtol(argv[3], NULL, 10) : -1;

    deadline = now_s() + 10.0;
    while ((s = shmpool_pool_open(name, dir, &pool)) == SHMPOOL_NOT_FOUND && now_s() < deadline) {
        struct timespec nap = {0, 5000000};
        nanosleep(&nap, NULL);
    }
    if (s != SHMPOOL_OK) goto fail;
    if ((s = shmpool_pool_consumer(pool, &consumer)) != SHMPOOL_OK) goto fail;
    while (want < 0 || received < (unsigned long)want) {
        shmpool_read_buf *buf = NULL;
        const uint8_t *data;
        size_t len, i, ndim = 0;
        uint64_t k = 0;
        const uint64_t *shape;
        s = shmpool_consumer_recv(consumer, 20000, &buf);
        if (s == SHMPOOL_CLOSED) break;
        if (s != SHMPOOL_OK) goto fail;
        data = shmpool_read_buf_data(buf);
        len = shmpool_read_buf_len(buf);
        shape = shmpool_read_buf_shape(buf, &ndim);
        for (i = 0; i < 8 && i < len; i++) k |= (uint64_t)data[i] << (8 * i);
        if (len < 8 || k != received || ndim != 1 || shape[0] != len) {
            fprintf(stderr, "consumer: buffer %lu: bad header (counter %llu, %zu bytes, %zu dims)\n",
                    received, (unsigned long long)k, len, ndim);
            shmpool_consumer_release(consumer, &buf);
            goto out;
        }
        for (i = 8; i < len; i++) {
            if (data[i] != (uint8_t)((k + i) % 251)) {
                fprintf(stderr, "consumer: buffer %lu: bad byte %zu\n", received, i);
                shmpool_consumer_release(consumer, &buf);
                goto out;
            }
        }
        if ((s = shmpool_consumer_release(consumer, &buf)) != SHMPOOL_OK) goto fail;
        received++;
    }
    printf("consumer: received %lu\n", received);
    rc = (want < 0 || received == (unsigned long)want) ? 0 : 1;
    goto out;
fail:
    fprintf(stderr, "consumer: %s: %s (after %lu buffers)\n", shmpool_status_name(s),
            shmpool_last_error_message(), received);
out:
    shmpool_consumer_free(consumer);
    shmpool_pool_free(pool);
    return rc;
}
