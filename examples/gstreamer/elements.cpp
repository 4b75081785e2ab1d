// The shmpoolsink / shmpoolsrc elements from a C++ application: no pool API, only a pipeline string.
//
//   GST_PLUGIN_PATH=target/release build/c/elements produce cam 300   # videotestsrc -> shmpoolsink
//   GST_PLUGIN_PATH=target/release build/c/elements consume cam       # shmpoolsrc -> fakesink
//
// The producer writes 1080p RGB frames straight into the pool (shmpoolsink proposes its slots to
// videotestsrc) and prints the sink's stats at the end; the consumer receives them without a copy,
// with the caps and timestamps the producer had, and prints what it got.
#include <gst/gst.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

// Runs `pipeline` until EOS or an error; returns whether it ended with EOS.
bool run(GstElement *pipeline) {
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    GstBus *bus = gst_element_get_bus(pipeline);
    GstMessage *msg = gst_bus_timed_pop_filtered(bus, GST_CLOCK_TIME_NONE,
                                                 static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    bool ok = GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS;
    if (!ok) {
        GError *err = nullptr;
        gst_message_parse_error(msg, &err, nullptr);
        std::fprintf(stderr, "error: %s\n", err->message);
        g_error_free(err);
    }
    gst_message_unref(msg);
    gst_object_unref(bus);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    return ok;
}

GstElement *parse(const std::string &description) {
    GError *err = nullptr;
    GstElement *pipeline = gst_parse_launch(description.c_str(), &err);
    if (pipeline == nullptr) {
        std::fprintf(stderr, "%s: %s\n", description.c_str(), err ? err->message : "parse error");
        std::exit(1);
    }
    return pipeline;
}

int produce(const std::string &pool, const std::string &frames) {
    GstElement *pipeline = parse("videotestsrc num-buffers=" + frames +
                                 " ! video/x-raw,format=RGB,width=1920,height=1080"
                                 " ! shmpoolsink name=sink wait-for-consumers=1 pool=" + pool);
    bool ok = run(pipeline);
    GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    GstStructure *stats = nullptr;
    g_object_get(sink, "stats", &stats, nullptr);
    gchar *text = gst_structure_to_string(stats);
    std::printf("%s\n", text);
    g_free(text);
    gst_structure_free(stats);
    gst_object_unref(sink);
    gst_object_unref(pipeline);
    return ok ? 0 : 1;
}

struct Seen {
    guint64 frames = 0;
    GstClockTime last_pts = GST_CLOCK_TIME_NONE;
};

GstPadProbeReturn count(GstPad *, GstPadProbeInfo *info, gpointer data) {
    auto *seen = static_cast<Seen *>(data);
    seen->frames++;
    seen->last_pts = GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info));
    return GST_PAD_PROBE_OK;
}

int consume(const std::string &pool) {
    GstElement *pipeline = parse("shmpoolsrc timeout=10000000000 pool=" + pool + " ! fakesink name=out");
    GstElement *out = gst_bin_get_by_name(GST_BIN(pipeline), "out");
    GstPad *pad = gst_element_get_static_pad(out, "sink");
    Seen seen;
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count, &seen, nullptr);
    bool ok = run(pipeline);
    std::printf("%llu frames, last PTS %" GST_TIME_FORMAT "\n", static_cast<unsigned long long>(seen.frames),
                GST_TIME_ARGS(seen.last_pts));
    gst_object_unref(pad);
    gst_object_unref(out);
    gst_object_unref(pipeline);
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char **argv) {
    gst_init(&argc, &argv);
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "produce" && argc == 4) return produce(argv[2], argv[3]);
    if (mode == "consume" && argc == 3) return consume(argv[2]);
    std::fprintf(stderr, "usage: %s produce POOL FRAMES | consume POOL\n", argv[0]);
    return 2;
}
