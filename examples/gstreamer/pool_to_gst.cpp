// shmpool -> GStreamer: reads frames from a pool (e.g. written by gst_to_pool) and pushes them,
// without copying, into `appsrc ! queue ! videoconvert ! fakesink`. Each GstBuffer wraps the slot
// in place; its destroy notify releases the slot when the pipeline is done with it. The caps come
// from the first frame's user metadata, the PTS from its timestamp.
//
// Usage: pool_to_gst NAME [--dir DIR] [--frames N]
//   Stops after N frames, or when the pool is closed and drained. Prints frames received and
//   frames that reached the sink; exits 1 if they differ or the pipeline failed.
#include "shmpool.hpp"

#include <gst/app/gstappsrc.h>
#include <gst/gst.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

namespace {

struct Slot {  // what a wrapped GstBuffer owns
    shmpool_consumer *consumer;
    shmpool_read_buf *buf;
};

void release_slot(gpointer data) {  // GDestroyNotify: may run on any streaming thread
    auto *slot = static_cast<Slot *>(data);
    shmpool_consumer_release(slot->consumer, &slot->buf);
    delete slot;
}

void on_handoff(GstElement *, GstBuffer *, GstPad *, gpointer counter) {
    static_cast<std::atomic<unsigned long> *>(counter)->fetch_add(1);
}

}  // namespace

int main(int argc, char **argv) try {
    gst_init(&argc, &argv);
    using namespace std::chrono_literals;
    std::string name, dir;
    long frames = -1;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--dir") dir = value();
        else if (a == "--frames") frames = std::stol(value());
        else if (name.empty() && a[0] != '-') name = a;
        else throw std::runtime_error("unknown argument " + a);
    }
    if (name.empty()) throw std::runtime_error("usage: pool_to_gst NAME [--dir DIR] [--frames N]");

    std::optional<shmpool::Pool> pool;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!pool) {
        try {
            pool = shmpool::Pool::open(name, dir);
        } catch (const shmpool::Error &e) {
            if (e.status() != SHMPOOL_NOT_FOUND || std::chrono::steady_clock::now() > deadline) throw;
            std::this_thread::sleep_for(5ms);
        }
    }
    auto consumer = pool->consumer();
    std::printf("pool_to_gst: consumer ready\n");
    std::fflush(stdout);

    auto first = consumer.next(20s);
    if (!first) throw std::runtime_error("the pool closed before the first frame");
    const std::string caps_string(first->user_meta());
    GstCaps *caps = gst_caps_from_string(caps_string.c_str());
    if (!caps) throw std::runtime_error("bad caps in metadata: " + caps_string);

    GError *err = nullptr;
    GstElement *pipeline = gst_parse_launch(
        "appsrc name=src format=time block=true max-buffers=2 ! queue max-size-buffers=2 ! videoconvert ! "
        "fakesink name=sink sync=false signal-handoffs=true",
        &err);
    if (!pipeline) throw std::runtime_error(std::string("pipeline: ") + err->message);
    GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
    GstElement *fakesink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    std::atomic<unsigned long> sunk{0};
    g_signal_connect(fakesink, "handoff", G_CALLBACK(on_handoff), &sunk);
    gst_app_src_set_caps(GST_APP_SRC(src), caps);
    gst_caps_unref(caps);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);

    unsigned long pushed = 0;
    bool failed = false;
    std::optional<shmpool::ReadBuf> buf = std::move(first);
    while (buf) {
        const auto *data = buf->data();
        const std::size_t size = buf->size();
        const uint64_t pts = buf->timestamp();
        auto *slot = new Slot{consumer.c_handle(), buf->detach()};
        GstBuffer *gbuf = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, const_cast<uint8_t *>(data), size, 0,
                                                      size, slot, release_slot);
        GST_BUFFER_PTS(gbuf) = pts;
        if (gst_app_src_push_buffer(GST_APP_SRC(src), gbuf) != GST_FLOW_OK) {  // takes gbuf
            failed = true;
            break;
        }
        pushed++;
        if (frames >= 0 && pushed >= static_cast<unsigned long>(frames)) break;
        buf = consumer.next(20s);
    }
    gst_app_src_end_of_stream(GST_APP_SRC(src));
    GstBus *bus = gst_element_get_bus(pipeline);
    GstMessage *msg = gst_bus_timed_pop_filtered(bus, 30 * GST_SECOND,
                                                 static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    if (!msg || GST_MESSAGE_TYPE(msg) != GST_MESSAGE_EOS) {
        failed = true;
        if (msg) {
            GError *e = nullptr;
            gst_message_parse_error(msg, &e, nullptr);
            std::fprintf(stderr, "pool_to_gst: pipeline error: %s\n", e->message);
            g_clear_error(&e);
        } else {
            std::fprintf(stderr, "pool_to_gst: no end-of-stream within 30 s\n");
        }
    }
    if (msg) gst_message_unref(msg);
    gst_object_unref(bus);
    // Stopping the pipeline frees every buffer, which releases every slot, before the consumer goes.
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(src);
    gst_object_unref(fakesink);
    gst_object_unref(pipeline);
    const auto stats = pool->stats();
    std::printf("pool_to_gst: received %lu, sunk %lu, caps %s, slots still read %u\n", pushed, sunk.load(),
                caps_string.c_str(), stats.reading);
    return (!failed && sunk == pushed && (frames < 0 || pushed == static_cast<unsigned long>(frames))) ? 0 : 1;
} catch (const std::exception &e) {
    std::fprintf(stderr, "pool_to_gst: %s\n", e.what());
    return 1;
}
