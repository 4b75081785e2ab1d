//! `shmpoolsink`: publishes every buffer into a shmpool pool, with its caps and timestamps.
//!
//! ```text
//! gst-launch-1.0 videotestsrc ! video/x-raw,format=RGB,width=1920,height=1080 ! shmpoolsink pool=cam
//! ```

mod imp;

/// The pool name both elements use by default.
pub const DEFAULT_POOL: &str = "gstshmpool";

use gst::glib;
use gst::prelude::*;

glib::wrapper! {
    /// The sink element.
    pub struct ShmpoolSink(ObjectSubclass<imp::ShmpoolSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// The `mode` property: who receives a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstShmpoolMode")]
pub enum Mode {
    /// Every source gets every frame.
    #[default]
    #[enum_value(name = "Broadcast: every source gets every frame", nick = "broadcast")]
    Broadcast,
    /// Each frame goes to one source.
    #[enum_value(name = "Work queue: each frame goes to one source", nick = "workqueue")]
    WorkQueue,
}

/// The `overflow` property: what a full pool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstShmpoolOverflow")]
pub enum Overflow {
    /// Wait for a source to release a slot.
    #[default]
    #[enum_value(name = "Block: wait for a free slot", nick = "block")]
    Block,
    /// Reuse the oldest frame nobody reads (for live sources).
    #[enum_value(name = "Drop oldest: reuse the oldest unread frame", nick = "drop-oldest")]
    DropOldest,
}

impl From<Mode> for shmpool::Mode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Broadcast => shmpool::Mode::Broadcast,
            Mode::WorkQueue => shmpool::Mode::WorkQueue,
        }
    }
}

impl From<Overflow> for shmpool::Overflow {
    fn from(o: Overflow) -> Self {
        match o {
            Overflow::Block => shmpool::Overflow::Block,
            Overflow::DropOldest => shmpool::Overflow::DropOldest,
        }
    }
}

/// Registers `shmpoolsink` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "shmpoolsink", gst::Rank::NONE, ShmpoolSink::static_type())
}
