/* Receiving frames in a GLib main loop, the way a GStreamer application would: the consumer's
 * readiness descriptor is watched with g_unix_fd_add; its callback takes every buffer with
 * shmpool_consumer_try_recv until SHMPOOL_WOULD_BLOCK (that call re-arms the descriptor), so the
 * loop never blocks in shmpool. Checks the test payload of examples/c/producer.c.
 * Usage: glib_consumer NAME DIR COUNT   (gives up if no buffer arrives for 20 s) */
#include "shmpool.h"

#include <glib-unix.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    shmpool_consumer *consumer;
    GMainLoop *loop;
    guint64 want, received;
    gint64 last_progress;
    int failed;
} State;

/* Ends the loop; the sources are removed after it returns. */
static void finish(State *st, int failed) {
    st->failed = failed;
    g_main_loop_quit(st->loop);
}

static gboolean on_ready(gint fd, GIOCondition cond, gpointer data) {
    State *st = data;
    shmpool_read_buf *buf = NULL;
    shmpool_status s;
    (void)fd;
    (void)cond;
    while ((s = shmpool_consumer_try_recv(st->consumer, &buf)) == SHMPOOL_OK) {
        const uint8_t *bytes = shmpool_read_buf_data(buf);
        size_t len = shmpool_read_buf_len(buf), i;
        guint64 k = 0;
        for (i = 0; i < 8 && i < len; i++) k |= (guint64)bytes[i] << (8 * i);
        shmpool_consumer_release(st->consumer, &buf);
        if (len < 8 || k != st->received) {
            fprintf(stderr, "glib_consumer: buffer %" G_GUINT64_FORMAT " has counter %" G_GUINT64_FORMAT "\n",
                    st->received, k);
            finish(st, 1);
            return G_SOURCE_CONTINUE;
        }
        st->last_progress = g_get_monotonic_time();
        if (++st->received == st->want) {
            finish(st, 0);
            return G_SOURCE_CONTINUE;
        }
    }
    if (s != SHMPOOL_WOULD_BLOCK) { /* SHMPOOL_CLOSED before COUNT buffers, or an error */
        fprintf(stderr, "glib_consumer: %s after %" G_GUINT64_FORMAT " buffers: %s\n", shmpool_status_name(s),
                st->received, shmpool_last_error_message());
        finish(st, 1);
    }
    return G_SOURCE_CONTINUE;
}

/* Stall detection (and the lease-long tick a loop needs to notice dead peers: try again). */
static gboolean on_tick(gpointer data) {
    State *st = data;
    if (g_get_monotonic_time() - st->last_progress > 20 * G_USEC_PER_SEC) {
        fprintf(stderr, "glib_consumer: no buffer for 20 s after %" G_GUINT64_FORMAT "\n", st->received);
        finish(st, 1);
        return G_SOURCE_CONTINUE;
    }
    return on_ready(-1, G_IO_IN, st);
}

/* The first try_recv: takes what was published before the loop ran and arms the descriptor. */
static gboolean on_start(gpointer data) {
    on_ready(-1, G_IO_IN, data);
    return G_SOURCE_REMOVE;
}

int main(int argc, char **argv) {
    State st = {0};
    shmpool_pool *pool = NULL;
    gint64 deadline;
    int fd = -1;
    guint watch, tick;

    if (argc < 4) {
        fprintf(stderr, "usage: %s NAME DIR COUNT\n", argv[0]);
        return 2;
    }
    st.want = g_ascii_strtoull(argv[3], NULL, 10);
    deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (shmpool_pool_open(argv[1], argv[2], &pool) == SHMPOOL_NOT_FOUND && g_get_monotonic_time() < deadline)
        g_usleep(5000);
    if (!pool || shmpool_pool_consumer(pool, &st.consumer) != SHMPOOL_OK ||
        shmpool_consumer_fd(st.consumer, &fd) != SHMPOOL_OK) {
        fprintf(stderr, "glib_consumer: %s\n", shmpool_last_error_message());
        shmpool_pool_free(pool);
        return 1;
    }
    st.loop = g_main_loop_new(NULL, FALSE);
    st.last_progress = g_get_monotonic_time();
    watch = g_unix_fd_add(fd, G_IO_IN, on_ready, &st);
    tick = g_timeout_add(500, on_tick, &st);
    g_idle_add(on_start, &st);
    g_main_loop_run(st.loop);
    g_source_remove(watch);
    g_source_remove(tick);
    g_main_loop_unref(st.loop);
    shmpool_consumer_free(st.consumer);
    shmpool_pool_free(pool);
    if (!st.failed) printf("glib_consumer: %" G_GUINT64_FORMAT " buffers received in the main loop\n", st.received);
    return st.failed;
}
