//! Implementation of [`super::SlotPool`].

use crate::interruptible::{self, Interrupted};
use crate::lease::Leases;
use gst::glib;
use gst::subclass::prelude::*;
use shmpool::{Pool, Producer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Where the slots come from.
pub struct Source {
    pub pool: Pool,
    pub producer: Arc<Producer>,
    pub leases: Arc<Leases>,
}

#[derive(Default)]
pub struct SlotPool {
    source: Mutex<Option<Arc<Source>>>,
    flushing: AtomicBool,
    /// Buffer size from the configuration.
    size: AtomicUsize,
}

impl SlotPool {
    pub fn attach(&self, source: Source) {
        *self.source.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(source));
    }

    fn source(&self) -> Result<Arc<Source>, gst::FlowError> {
        self.source.lock().unwrap_or_else(PoisonError::into_inner).clone().ok_or(gst::FlowError::NotNegotiated)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SlotPool {
    const NAME: &'static str = "GstShmpoolSlotPool";
    type Type = super::SlotPool;
    type ParentType = gst::BufferPool;
}

impl ObjectImpl for SlotPool {}
impl GstObjectImpl for SlotPool {}

impl BufferPoolImpl for SlotPool {
    fn set_config(&self, config: &mut gst::BufferPoolConfigRef) -> bool {
        let Some((_, size, _, _)) = config.params() else { return false };
        let capacity = self.source().map_or(0, |s| s.pool.slot_size());
        if size as usize > capacity {
            gst::warning!(gst::CAT_DEFAULT, imp = self, "buffers of {size} bytes do not fit slots of {capacity}");
            return false;
        }
        self.size.store(size as usize, Ordering::Relaxed);
        self.parent_set_config(config)
    }

    /// Buffers are made on demand from free slots: nothing to preallocate.
    fn start(&self) -> bool {
        true
    }

    fn acquire_buffer(&self, params: Option<&gst::BufferPoolAcquireParams>) -> Result<gst::Buffer, gst::FlowError> {
        let source = self.source()?;
        let dont_wait = params.is_some_and(|p| p.flags().contains(gst::BufferPoolAcquireFlags::DONTWAIT));
        let slot = if dont_wait {
            source.producer.try_acquire().map_err(|_| gst::FlowError::Error)?.ok_or(gst::FlowError::Eos)?
        } else {
            interruptible::acquire(&source.producer, &self.flushing).map_err(|e| match e {
                Interrupted::Flushing => gst::FlowError::Flushing,
                Interrupted::Pool(e) => {
                    gst::warning!(gst::CAT_DEFAULT, imp = self, "no slot: {e}");
                    gst::FlowError::Error
                }
            })?
        };
        let mut buffer = gst::Buffer::new();
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            buffer.append_memory(source.leases.lend(&source.pool, slot));
            buffer.set_size(self.size.load(Ordering::Relaxed));
        }
        Ok(buffer)
    }

    /// The slot goes back through the shmpool pool, not through this pool's queue.
    fn release_buffer(&self, buffer: gst::Buffer) {
        drop(buffer);
    }

    fn flush_start(&self) {
        self.flushing.store(true, Ordering::Release);
    }

    fn flush_stop(&self) {
        self.flushing.store(false, Ordering::Release);
    }
}
