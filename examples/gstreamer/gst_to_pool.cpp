// GStreamer -> shmpool: `videotestsrc ! video/x-raw,format=RGB,width=1920,height=1080 ! appsink`;
// the new-sample callback puts each frame into a pool slot with the caps string as user metadata,
// the PTS as timestamp, dtype u8 and shape (height, width, 3), and publishes it. Any process (Rust,
// Python, C++, examples/gstreamer/pool_to_gst.cpp) can then read the frames in place.
//
// Zero copy: an ALLOCATION-query probe on the appsink offers upstream a GstBufferPool whose buffers
// are pool slots, so videotestsrc renders straight into shared memory and the callback only
// publishes. When upstream does not use it (or the layout is not packed RGB), the callback copies
// the frame into a slot instead.
//
// Usage: gst_to_pool NAME [--dir DIR] [--frames N] [--width W] [--height H] [--slots S]
//                         [--consumers K] [--copy] [--baseline] [--pattern P]
//   --consumers K  wait (up to 10 s) until K consumers joined before starting (broadcast pools
//                  discard frames nobody listens to)
//   --copy         do not offer the slot buffer pool: always copy frames into slots
//   --baseline     run `videotestsrc ! caps ! fakesink` instead, timed the same way (no pool)
//   --pattern P    videotestsrc's pattern (default smpte; benches/run.sh uses black, a cheap source)
// Prints the number of frames and the frames per second from PLAYING to end-of-stream.
#include "shmpool.hpp"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

namespace {

// ---- A GstBufferPool whose buffers are shmpool slots -------------------------------------------

// What a slot-backed GstBuffer owns: the write handle until it is published.
struct SlotRef {
    const shmpool_producer *producer;
    shmpool_write_buf *buf;  // NULL once published
};

GQuark slot_quark() {
    static const GQuark quark = g_quark_from_static_string("shmpool-slot");
    return quark;
}

void slot_free(gpointer data) {  // the memory is gone: abort the slot unless it was published
    auto *ref = static_cast<SlotRef *>(data);
    if (ref->buf) shmpool_producer_discard(ref->producer, &ref->buf);
    delete ref;
}

struct SlotPool {
    GstBufferPool parent;
    const shmpool_producer *producer;
    gsize frame_size;
};
struct SlotPoolClass {
    GstBufferPoolClass parent_class;
};

G_DEFINE_TYPE(SlotPool, slot_pool, GST_TYPE_BUFFER_POOL)

// Every acquire takes a fresh slot (waiting for consumers to release one) and wraps its memory.
GstFlowReturn slot_pool_acquire(GstBufferPool *pool, GstBuffer **buffer, GstBufferPoolAcquireParams *) {
    auto *self = reinterpret_cast<SlotPool *>(pool);
    shmpool_write_buf *wb = nullptr;
    const shmpool_status s = shmpool_producer_acquire(self->producer, 10000, &wb);
    if (s == SHMPOOL_CLOSED) return GST_FLOW_EOS;
    if (s != SHMPOOL_OK) {
        GST_ERROR_OBJECT(pool, "acquiring a slot: %s", shmpool_last_error_message());
        return GST_FLOW_ERROR;
    }
    if (shmpool_write_buf_capacity(wb) < self->frame_size) {
        shmpool_producer_discard(self->producer, &wb);
        return GST_FLOW_ERROR;
    }
    auto *ref = new SlotRef{self->producer, wb};
    GstBuffer *b = gst_buffer_new_wrapped_full(static_cast<GstMemoryFlags>(0), shmpool_write_buf_data(wb),
                                               self->frame_size, 0, self->frame_size, ref, slot_free);
    gst_mini_object_set_qdata(GST_MINI_OBJECT_CAST(b), slot_quark(), ref, nullptr);
    *buffer = b;
    return GST_FLOW_OK;
}

// Buffers are never recycled: a slot goes back to the shmpool when consumers release it.
void slot_pool_release(GstBufferPool *, GstBuffer *buffer) { gst_buffer_unref(buffer); }

void slot_pool_class_init(SlotPoolClass *klass) {
    auto *pool_class = GST_BUFFER_POOL_CLASS(klass);
    pool_class->acquire_buffer = slot_pool_acquire;
    pool_class->release_buffer = slot_pool_release;
}

void slot_pool_init(SlotPool *self) {
    self->producer = nullptr;
    self->frame_size = 0;
}

// ---- the appsink side -------------------------------------------------------------------------

struct Sink {
    shmpool::Producer *producer = nullptr;
    GstBufferPool *slot_pool = nullptr;  // offered to upstream unless --copy
    std::atomic<unsigned long> zero_copy{0};
    GstCaps *caps = nullptr;  // the caps the cached strings belong to (a ref)
    std::string caps_string;
    GstVideoInfo info{};
    std::atomic<unsigned long> frames{0};
    std::string error;
};

// Copies one frame into a pool slot and publishes it. Runs on the streaming thread.
GstFlowReturn on_new_sample(GstAppSink *appsink, gpointer user_data) {
    auto *sink = static_cast<Sink *>(user_data);
    GstSample *sample = gst_app_sink_pull_sample(appsink);
    if (!sample) return GST_FLOW_EOS;
    GstFlowReturn ret = GST_FLOW_OK;
    try {
        GstCaps *caps = gst_sample_get_caps(sample);
        if (caps != sink->caps) {  // new caps: refresh the cached string and video info
            if (!caps || !gst_video_info_from_caps(&sink->info, caps)) throw std::runtime_error("no video caps");
            gchar *s = gst_caps_to_string(caps);
            sink->caps_string = s;
            g_free(s);
            gst_caps_replace(&sink->caps, caps);
        }
        const GstVideoInfo &info = sink->info;
        if (GST_VIDEO_INFO_FORMAT(&info) != GST_VIDEO_FORMAT_RGB) throw std::runtime_error("caps are not RGB");
        const std::size_t width = GST_VIDEO_INFO_WIDTH(&info), height = GST_VIDEO_INFO_HEIGHT(&info);
        const std::size_t row = width * 3;
        GstBuffer *buffer = gst_sample_get_buffer(sample);
        const GstClockTime pts = GST_BUFFER_PTS(buffer);
        const uint64_t timestamp = GST_CLOCK_TIME_IS_VALID(pts) ? pts : 0;
        auto *ref = static_cast<SlotRef *>(gst_mini_object_get_qdata(GST_MINI_OBJECT_CAST(buffer), slot_quark()));
        if (ref && ref->buf && GST_VIDEO_INFO_PLANE_STRIDE(&info, 0) == static_cast<gint>(row) &&
            gst_buffer_get_size(buffer) >= row * height) {
            // Rendered straight into a slot: describe it and publish, no copy.
            const uint64_t shape[3] = {height, width, 3};
            const auto *meta = reinterpret_cast<const uint8_t *>(sink->caps_string.data());
            shmpool::detail::check(shmpool_write_buf_set_len(ref->buf, row * height));
            shmpool::detail::check(shmpool_write_buf_set_dtype(ref->buf, SHMPOOL_DTYPE_U8));
            shmpool::detail::check(shmpool_write_buf_set_shape(ref->buf, shape, 3));
            shmpool::detail::check(shmpool_write_buf_set_user_meta(ref->buf, meta, sink->caps_string.size()));
            shmpool::detail::check(shmpool_write_buf_set_timestamp(ref->buf, timestamp));
            shmpool::detail::check(shmpool_producer_publish(ref->producer, &ref->buf, nullptr));
            sink->zero_copy++;
            sink->frames++;
            gst_sample_unref(sample);
            return GST_FLOW_OK;
        }
        GstVideoFrame frame;
        if (!gst_video_frame_map(&frame, &sink->info, buffer, GST_MAP_READ)) throw std::runtime_error("cannot map frame");
        auto slot = sink->producer->acquire(std::chrono::seconds(10));
        if (slot.capacity() < row * height) {
            gst_video_frame_unmap(&frame);
            throw std::runtime_error("pool slots are smaller than a frame");
        }
        const auto *src = static_cast<const uint8_t *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
        const std::size_t stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
        uint8_t *dst = slot.data();
        if (stride == row) {
            std::memcpy(dst, src, row * height);
        } else {
            for (std::size_t y = 0; y < height; y++) std::memcpy(dst + y * row, src + y * stride, row);
        }
        gst_video_frame_unmap(&frame);
        slot.set_size(row * height)
            .set_dtype(shmpool::DType::U8)
            .set_shape({height, width, 3})
            .set_user_meta(sink->caps_string)
            .set_timestamp(timestamp);
        slot.publish();
        sink->frames++;
    } catch (const std::exception &e) {  // never let an exception unwind into GStreamer
        sink->error = e.what();
        ret = GST_FLOW_ERROR;
    }
    gst_sample_unref(sample);
    return ret;
}

// Offers the slot pool to upstream in the appsink's ALLOCATION query (appsink itself proposes none
// in GStreamer 1.22). Upstream still decides; if it allocates elsewhere, frames are copied.
GstPadProbeReturn on_query(GstPad *, GstPadProbeInfo *info, gpointer user_data) {
    auto *sink = static_cast<Sink *>(user_data);
    GstQuery *query = GST_PAD_PROBE_INFO_QUERY(info);
    if (!query || GST_QUERY_TYPE(query) != GST_QUERY_ALLOCATION) return GST_PAD_PROBE_OK;
    GstCaps *caps = nullptr;
    gboolean need_pool = FALSE;
    gst_query_parse_allocation(query, &caps, &need_pool);
    GstVideoInfo info_v;
    if (!caps || !gst_video_info_from_caps(&info_v, caps)) return GST_PAD_PROBE_OK;
    const gsize row = static_cast<gsize>(GST_VIDEO_INFO_WIDTH(&info_v)) * 3;
    if (GST_VIDEO_INFO_FORMAT(&info_v) != GST_VIDEO_FORMAT_RGB || GST_VIDEO_INFO_PLANE_STRIDE(&info_v, 0) != static_cast<gint>(row))
        return GST_PAD_PROBE_OK;  // not packed RGB: the copy path repacks it
    reinterpret_cast<SlotPool *>(sink->slot_pool)->frame_size = GST_VIDEO_INFO_SIZE(&info_v);
    gst_query_add_allocation_pool(query, sink->slot_pool, GST_VIDEO_INFO_SIZE(&info_v), 0, 0);
    return GST_PAD_PROBE_OK;
}

// Runs the pipeline to end-of-stream; returns the seconds from PLAYING to EOS, or -1 on error.
double run(GstElement *pipeline) {
    const auto start = std::chrono::steady_clock::now();
    if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) return -1;
    GstBus *bus = gst_element_get_bus(pipeline);
    GstMessage *msg = gst_bus_timed_pop_filtered(bus, GST_CLOCK_TIME_NONE,
                                                 static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
        GError *err = nullptr;
        gchar *debug = nullptr;
        gst_message_parse_error(msg, &err, &debug);
        std::fprintf(stderr, "gst_to_pool: pipeline error: %s (%s)\n", err->message, debug ? debug : "");
        g_clear_error(&err);
        g_free(debug);
        seconds = -1;
    }
    if (msg) gst_message_unref(msg);
    gst_object_unref(bus);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    return seconds;
}

}  // namespace

int main(int argc, char **argv) try {
    gst_init(&argc, &argv);
    std::string name, dir, pattern = "smpte";
    long frames = 300, width = 1920, height = 1080, slots = 4, consumers = 0;
    bool baseline = false, copy = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--dir") dir = value();
        else if (a == "--frames") frames = std::stol(value());
        else if (a == "--width") width = std::stol(value());
        else if (a == "--height") height = std::stol(value());
        else if (a == "--slots") slots = std::stol(value());
        else if (a == "--consumers") consumers = std::stol(value());
        else if (a == "--baseline") baseline = true;
        else if (a == "--copy") copy = true;
        else if (a == "--pattern") pattern = value();
        else if (name.empty() && a[0] != '-') name = a;
        else throw std::runtime_error("unknown argument " + a);
    }
    if (name.empty() && !baseline) throw std::runtime_error("usage: gst_to_pool NAME [--dir DIR] [--frames N] ...");
    if (width <= 0 || height <= 0 || slots <= 0) throw std::runtime_error("width, height and slots must be positive");

    const std::string caps = "video/x-raw,format=RGB,width=" + std::to_string(width) + ",height=" + std::to_string(height);
    const std::string source =
        "videotestsrc pattern=" + pattern + " num-buffers=" + std::to_string(frames) + " ! " + caps + " ! ";
    GError *err = nullptr;
    if (baseline) {
        GstElement *pipeline = gst_parse_launch((source + "fakesink sync=false").c_str(), &err);
        if (!pipeline) throw std::runtime_error(std::string("pipeline: ") + err->message);
        const double seconds = run(pipeline);
        gst_object_unref(pipeline);
        if (seconds < 0) return 1;
        std::printf("videotestsrc ! fakesink: %ld frames in %.3f s: %.1f fps\n", frames, seconds, frames / seconds);
        return 0;
    }

    shmpool::Config config(static_cast<uint32_t>(slots), static_cast<std::size_t>(width * height * 3));
    config.meta_bytes(1024);
    if (!dir.empty()) config.directory(dir);
    auto pool = shmpool::Pool::create(name, config);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (pool.stats().consumers < static_cast<uint32_t>(consumers)) {
        if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("no consumer joined within 10 s");
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    auto producer = pool.producer();

    GstElement *pipeline = gst_parse_launch((source + "appsink name=sink sync=false max-buffers=2").c_str(), &err);
    if (!pipeline) throw std::runtime_error(std::string("pipeline: ") + err->message);
    GstElement *appsink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    Sink sink;
    sink.producer = &producer;
    GstAppSinkCallbacks callbacks{};
    callbacks.new_sample = on_new_sample;
    gst_app_sink_set_callbacks(GST_APP_SINK(appsink), &callbacks, &sink, nullptr);
    if (!copy) {
        sink.slot_pool = GST_BUFFER_POOL(g_object_new(slot_pool_get_type(), nullptr));
        reinterpret_cast<SlotPool *>(sink.slot_pool)->producer = producer.c_handle();
        GstPad *pad = gst_element_get_static_pad(appsink, "sink");
        gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM, on_query, &sink, nullptr);
        gst_object_unref(pad);
    }
    const double seconds = run(pipeline);
    // The pipeline is stopped: every GstBuffer, and with it every slot it wrapped, is gone.
    gst_object_unref(appsink);
    gst_object_unref(pipeline);
    if (sink.slot_pool) gst_object_unref(sink.slot_pool);
    gst_caps_replace(&sink.caps, nullptr);
    pool.shutdown();  // consumers drain what was published, then see SHMPOOL_CLOSED
    if (!sink.error.empty()) std::fprintf(stderr, "gst_to_pool: %s\n", sink.error.c_str());
    if (seconds < 0 || !sink.error.empty()) return 1;
    const unsigned long n = sink.frames;
    std::printf("gst_to_pool: %lu frames in %.3f s: %.1f fps (%ldx%ld RGB into pool %s, %lu without copy)\n", n,
                seconds, n / seconds, width, height, name.c_str(), sink.zero_copy.load());
    return n == static_cast<unsigned long>(frames) ? 0 : 1;
} catch (const std::exception &e) {
    std::fprintf(stderr, "gst_to_pool: %s\n", e.what());
    return 1;
}
