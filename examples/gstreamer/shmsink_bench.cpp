// The GStreamer shmsink side of the frame benchmark (benches/run.sh): the same source as
// gst_to_pool, `videotestsrc ! video/x-raw,format=RGB,width=W,height=H`, into
// `shmsink`, with consumers `gst-launch-1.0 shmsrc socket-path=SOCKET ! fakesink`.
//
// A probe on shmsink's sink pad holds the first frame until K clients have connected (shmsink's
// "client-connected" signal); then the clock starts, as gst_to_pool starts once K consumers joined
// its pool. Frames over the time from then to end-of-stream are the fps.
//
// Usage: shmsink_bench SOCKET [--frames N] [--consumers K] [--width W] [--height H]
//                             [--shm-size BYTES] [--timeout-s S] [--pattern P]
// Prints `shmsink_bench: N frames in S s: F fps (K consumers)`; exits 1 on a pipeline error and 2
// when the stream did not end within the timeout (a stall: some client stopped acknowledging).
#include <gst/gst.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace {

struct State {
    long wanted = 1;
    std::atomic<long> clients{0};
    std::atomic<long> passed{0};
    std::atomic<bool> open{false};
    std::chrono::steady_clock::time_point opened;
};

void on_client_connected(GstElement *, gint, gpointer data) {
    auto *s = static_cast<State *>(data);
    if (++s->clients == s->wanted) {
        s->opened = std::chrono::steady_clock::now();
        s->open = true;
    }
}

GstPadProbeReturn count_buffer(GstPad *, GstPadProbeInfo *, gpointer data) {
    auto *s = static_cast<State *>(data);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!s->open && std::chrono::steady_clock::now() < deadline) g_usleep(200);
    ++s->passed;
    return GST_PAD_PROBE_OK;
}

}  // namespace

int main(int argc, char **argv) try {
    gst_init(&argc, &argv);
    std::string socket, pattern = "smpte";
    long frames = 300, width = 1920, height = 1080, consumers = 1, timeout_s = 30;
    long long shm_size = 64LL << 20;  // shmsink's default
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--frames") frames = std::stol(value());
        else if (a == "--consumers") consumers = std::stol(value());
        else if (a == "--width") width = std::stol(value());
        else if (a == "--height") height = std::stol(value());
        else if (a == "--shm-size") shm_size = std::stoll(value());
        else if (a == "--timeout-s") timeout_s = std::stol(value());
        else if (a == "--pattern") pattern = value();
        else if (socket.empty() && a[0] != '-') socket = a;
        else throw std::runtime_error("unknown argument " + a);
    }
    if (socket.empty()) throw std::runtime_error("usage: shmsink_bench SOCKET [--frames N] [--consumers K] ...");

    const std::string launch = "videotestsrc pattern=" + pattern + " num-buffers=" + std::to_string(frames) +
                               " ! video/x-raw,format=RGB,width=" + std::to_string(width) +
                               ",height=" + std::to_string(height) + " ! " +
                               "shmsink name=sink sync=false wait-for-connection=false socket-path=" + socket +
                               " shm-size=" + std::to_string(shm_size);
    GError *err = nullptr;
    GstElement *pipeline = gst_parse_launch(launch.c_str(), &err);
    if (!pipeline) throw std::runtime_error(std::string("pipeline: ") + err->message);
    State state;
    state.wanted = consumers;
    GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    g_signal_connect(sink, "client-connected", G_CALLBACK(on_client_connected), &state);
    GstPad *pad = gst_element_get_static_pad(sink, "sink");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffer, &state, nullptr);
    gst_object_unref(pad);

    if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE)
        throw std::runtime_error("cannot start the pipeline");
    const auto connect_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!state.open) {
        if (std::chrono::steady_clock::now() > connect_deadline) throw std::runtime_error("clients did not connect");
        g_usleep(1000);
    }
    GstBus *bus = gst_element_get_bus(pipeline);
    GstMessage *msg = gst_bus_timed_pop_filtered(bus, static_cast<GstClockTime>(timeout_s) * GST_SECOND,
                                                 static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - state.opened).count();
    int status = 0;
    if (!msg) {
        std::printf("shmsink_bench: STALL: %ld frames in %ld s, no end-of-stream (%ld consumers)\n", state.passed.load(),
                    timeout_s, consumers);
        status = 2;
    } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
        GError *e = nullptr;
        gst_message_parse_error(msg, &e, nullptr);
        std::fprintf(stderr, "shmsink_bench: pipeline error: %s\n", e->message);
        g_clear_error(&e);
        status = 1;
    } else {
        const long n = state.passed.load();
        std::printf("shmsink_bench: %ld frames in %.3f s: %.1f fps (%ld consumers)\n", n, seconds, n / seconds,
                    consumers);
    }
    if (msg) gst_message_unref(msg);
    gst_object_unref(bus);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(sink);
    gst_object_unref(pipeline);
    return status;
} catch (const std::exception &e) {
    std::fprintf(stderr, "shmsink_bench: %s\n", e.what());
    return 1;
}
