//! `shmpoolsrc`: pushes the frames a `shmpoolsink` (or any producer writing the same metadata)
//! publishes into a pool, without a copy, with their caps and timestamps.
//!
//! ```text
//! gst-launch-1.0 shmpoolsrc pool=cam ! videoconvert ! autovideosink
//! ```

mod imp;

use gst::glib;
use gst::prelude::*;

glib::wrapper! {
    /// The source element.
    pub struct ShmpoolSrc(ObjectSubclass<imp::ShmpoolSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// Registers `shmpoolsrc` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "shmpoolsrc", gst::Rank::NONE, ShmpoolSrc::static_type())
}
