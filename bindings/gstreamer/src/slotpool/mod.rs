//! A `GstBufferPool` whose buffers are pool slots: what `shmpoolsink` proposes upstream.
//!
//! Upstream elements that take the proposal (videotestsrc, videoconvert, decoders, …) fill shared
//! memory directly; the sink then publishes the slot instead of copying (see [`crate::lease`]).
//! The GStreamer pool never recycles buffers itself: a slot comes back through the shmpool pool
//! once every consumer has released it.

mod imp;

use crate::lease::Leases;
use gst::glib;
use gst::subclass::prelude::*;
use shmpool::{Pool, Producer};
use std::sync::Arc;

glib::wrapper! {
    /// The buffer pool of `shmpoolsink`.
    pub struct SlotPool(ObjectSubclass<imp::SlotPool>) @extends gst::BufferPool, gst::Object;
}

impl SlotPool {
    /// A buffer pool lending the slots of `pool` through `producer`, tracked in `leases`.
    pub fn new(pool: Pool, producer: Arc<Producer>, leases: Arc<Leases>) -> SlotPool {
        let obj: SlotPool = glib::Object::new();
        obj.imp().attach(imp::Source { pool, producer, leases });
        obj
    }
}
