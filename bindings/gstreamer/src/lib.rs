//! GStreamer elements on shmpool pools: `shmpoolsink` publishes buffers into a pool with their caps
//! and timestamps, `shmpoolsrc` pushes them out in another process without a copy.
//!
//! Build: `cargo build -p gst-plugin-shmpool` gives `libgstshmpool.so`; point `GST_PLUGIN_PATH` at
//! its directory (or `make install`), then:
//!
//! ```text
//! gst-launch-1.0 videotestsrc ! video/x-raw,format=RGB,width=1920,height=1080 ! shmpoolsink pool=cam
//! gst-launch-1.0 shmpoolsrc pool=cam ! videoconvert ! autovideosink
//! ```

pub mod array_shape;
pub mod frame_meta;
mod interruptible;
mod lease;
pub mod shmpoolsink;
pub mod shmpoolsrc;
mod slotpool;

use gst::glib;

/// The `directory` property as the pool API takes it (empty: the default directory).
fn pool_directory(dir: &str) -> Option<&std::path::Path> {
    (!dir.is_empty()).then(|| std::path::Path::new(dir))
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    shmpoolsink::register(plugin)?;
    shmpoolsrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    shmpool,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    env!("CARGO_PKG_VERSION"),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // GStreamer refuses a plugin without an origin; this is the project's name until it has a URL.
    "shmpool"
);
