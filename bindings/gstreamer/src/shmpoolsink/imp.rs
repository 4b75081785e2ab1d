//! Implementation of [`super::ShmpoolSink`].

use super::{Mode, Overflow, DEFAULT_POOL};
use crate::array_shape::ArrayShape;
use crate::frame_meta::{FrameMeta, Kind, HEADER_LEN};
use crate::interruptible::{self, Interrupted};
use crate::lease::Leases;
use crate::slotpool::SlotPool;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use shmpool::{Config, Pool, Producer, WriteBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

static CAT: LazyLock<gst::DebugCategory> =
    LazyLock::new(|| gst::DebugCategory::new("shmpoolsink", gst::DebugColorFlags::empty(), Some("shmpool sink")));

/// Bytes of slot metadata: the frame header plus the caps string.
const META_BYTES: usize = 4096;
/// Slot size for media whose frame size the caps do not tell.
const FALLBACK_SLOT_SIZE: usize = 4 << 20;
/// How long the sources that left a replaced pool have to join its successor once none of them is
/// still reading the old one (one that died meanwhile is not waited for longer); with drop-oldest,
/// how long the sink waits for them at most.
const REJOIN_GRACE: Duration = Duration::from_secs(1);

/// A buffer offset, `None` for GStreamer's "no offset".
fn known_offset(offset: u64) -> Option<u64> {
    (offset != gst::ffi::GST_BUFFER_OFFSET_NONE).then_some(offset)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Settings {
    pool: String,
    directory: String,
    slots: u32,
    slot_size: u64,
    mode: Mode,
    overflow: Overflow,
    wait_for_consumers: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pool: DEFAULT_POOL.into(),
            directory: String::new(),
            slots: 8,
            slot_size: 0,
            mode: Mode::Broadcast,
            overflow: Overflow::Block,
            wait_for_consumers: 0,
        }
    }
}

/// The pool this sink publishes into, from start (or the first caps) to stop.
struct Stream {
    pool: Pool,
    producer: Arc<Producer>,
    leases: Arc<Leases>,
}

/// The negotiated caps as slots carry them.
#[derive(Default, Clone)]
struct CapsState {
    text: String,
    seq: u64,
    shape: Option<ArrayShape>,
}

/// A pool replaced by a larger one: the sources reading it drain it, then open its successor.
struct Replaced {
    old: Pool,
    /// Sources attached to the old pool when it was replaced.
    sources: u32,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    /// Buffers published.
    frames: u64,
    /// Of those, buffers copied into a slot because upstream did not allocate from our pool.
    copies: u64,
    /// Buffers a broadcast pool discarded because no source was attached.
    discarded: u64,
    /// Pools replaced by larger ones because the caps grew.
    resized: u64,
}

#[derive(Default)]
pub struct ShmpoolSink {
    settings: Mutex<Settings>,
    stream: Mutex<Option<Arc<Stream>>>,
    caps: Mutex<CapsState>,
    counters: Mutex<Counters>,
    replaced: Mutex<Option<Replaced>>,
    consumers_ready: AtomicBool,
    unlocked: AtomicBool,
}

impl ShmpoolSink {
    /// The stream, creating the pool if needed; `frame_size` sizes the slots unless `slot-size` does.
    /// A frame larger than the slots (caps that grew) replaces the pool under the same name by one
    /// whose slots fit it, unless `slot-size` is set: its sources drain the old pool, get it closed,
    /// and open the new one, which [`Self::wait_for_sources`] waits for before publishing.
    fn ensure_stream(&self, frame_size: Option<usize>) -> Result<Arc<Stream>, String> {
        let mut stream = lock(&self.stream);
        let settings = lock(&self.settings).clone();
        if let Some(s) = stream.as_ref() {
            let grows = settings.slot_size == 0 && frame_size.is_some_and(|n| n > s.pool.slot_size());
            if !grows {
                return Ok(s.clone());
            }
            s.pool.reap();
            let replaced = Replaced { old: s.pool.clone(), sources: s.pool.stats().consumers };
            s.pool.shutdown();
            gst::info!(
                CAT,
                imp = self,
                "frames of {frame_size:?} bytes: replacing the pool of {}-byte slots",
                s.pool.slot_size()
            );
            *stream = None;
            *lock(&self.replaced) = Some(replaced);
            lock(&self.counters).resized += 1;
        }
        let slot_size = match settings.slot_size {
            0 => frame_size.unwrap_or(FALLBACK_SLOT_SIZE),
            n => usize::try_from(n).map_err(|_| "slot-size too large".to_string())?,
        };
        let mut config = Config::new(settings.slots, slot_size)
            .mode(settings.mode.into())
            .overflow(settings.overflow.into())
            .meta_bytes(META_BYTES);
        if let Some(dir) = crate::pool_directory(&settings.directory) {
            config = config.directory(dir);
        }
        // A pool left by a killed sink is taken over (or replaced) under the same name by the core
        // (shmpool's restart rules): only a live producer's pool is refused.
        let pool = Pool::create(&settings.pool, &config).map_err(|e| match e {
            shmpool::Error::AlreadyExists { .. } => format!("pool {:?} is in use by a live producer", settings.pool),
            e => format!("creating pool {:?}: {e}", settings.pool),
        })?;
        let producer = Arc::new(pool.producer().map_err(|e| format!("joining pool {:?}: {e}", settings.pool))?);
        gst::info!(
            CAT,
            imp = self,
            "created pool {} ({} slots of {} bytes)",
            pool.path().display(),
            pool.slots(),
            pool.slot_size()
        );
        let s = Arc::new(Stream { pool, producer, leases: Arc::default() });
        *stream = Some(s.clone());
        Ok(s)
    }

    fn stream(&self) -> Result<Arc<Stream>, gst::FlowError> {
        lock(&self.stream).clone().ok_or(gst::FlowError::NotNegotiated)
    }

    /// Runs `wait` again after an unlock that was only a pause; gives up when flushing.
    fn retry_after_unlock<T>(&self, mut wait: impl FnMut() -> Result<T, Interrupted>) -> Result<T, gst::FlowError> {
        loop {
            match wait() {
                Ok(v) => return Ok(v),
                Err(Interrupted::Flushing) => {
                    self.obj().wait_preroll()?;
                }
                Err(Interrupted::Pool(e)) => {
                    gst::element_imp_error!(self, gst::ResourceError::Write, ["pool failed: {e}"]);
                    return Err(gst::FlowError::Error);
                }
            }
        }
    }

    /// Polls `done` until it holds; a flush interrupts, a pause resumes.
    fn wait_until(&self, mut done: impl FnMut() -> bool) -> Result<(), gst::FlowError> {
        self.retry_after_unlock(|| loop {
            if done() {
                return Ok(());
            }
            if self.unlocked.load(Ordering::Acquire) {
                return Err(Interrupted::Flushing);
            }
            std::thread::sleep(interruptible::STEP / 5);
        })
    }

    /// Holds the first buffer until `wait-for-consumers` sources are attached, and the first one
    /// after a pool was replaced until the sources of the old pool are attached to the new one (so
    /// that a broadcast pool does not publish frames they would miss).
    fn wait_for_sources(&self, stream: &Stream) -> Result<(), gst::FlowError> {
        if !self.consumers_ready.load(Ordering::Acquire) {
            let wanted = lock(&self.settings).wait_for_consumers;
            self.wait_until(|| stream.pool.stats().consumers >= wanted)?;
            self.consumers_ready.store(true, Ordering::Release);
        }
        let Some(replaced) = lock(&self.replaced).take() else { return Ok(()) };
        // A live source (drop-oldest) is not held back by a slow one for longer than the grace.
        let live = stream.pool.overflow() == shmpool::Overflow::DropOldest;
        let started = Instant::now();
        let mut old_left_at = None;
        self.wait_until(|| {
            if stream.pool.stats().consumers >= replaced.sources || (live && started.elapsed() > REJOIN_GRACE) {
                return true;
            }
            // Sources still reading the old pool will come; a dead one is removed by reap.
            replaced.old.reap();
            if replaced.old.stats().consumers > 0 {
                return false;
            }
            old_left_at.get_or_insert_with(Instant::now).elapsed() > REJOIN_GRACE
        })
    }

    fn acquire(&self, stream: &Stream) -> Result<WriteBuf, gst::FlowError> {
        self.retry_after_unlock(|| interruptible::acquire(&stream.producer, &self.unlocked))
    }

    /// Fills in the slot's metadata and publishes it. Returns whether a source got it.
    fn publish(&self, mut slot: WriteBuf, meta: &FrameMeta, caps: &CapsState) -> Result<bool, gst::FlowError> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + caps.text.len());
        meta.encode(&caps.text, &mut bytes);
        let result = slot.set_user_meta(&bytes).and_then(|()| slot.publish());
        match result {
            Ok(seq) => Ok(seq.is_some()),
            Err(e) => {
                gst::element_imp_error!(self, gst::ResourceError::Write, ["publishing: {e}"]);
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Marks the end of the stream: one marker, or one per source in a work queue (each source
    /// stops receiving after its marker, so every source gets one).
    fn publish_eos(&self) -> Result<(), gst::FlowError> {
        let Ok(stream) = self.stream() else { return Ok(()) };
        let markers = match stream.pool.mode() {
            shmpool::Mode::WorkQueue => stream.pool.stats().consumers.max(1),
            shmpool::Mode::Broadcast => 1,
        };
        let caps = lock(&self.caps).clone();
        let meta = FrameMeta { kind: Kind::Eos, caps_seq: caps.seq, ..FrameMeta::default() };
        for _ in 0..markers {
            let mut slot = self.acquire(&stream)?;
            slot.set_len(0).map_err(|_| gst::FlowError::Error)?;
            self.publish(slot, &meta, &caps)?;
        }
        Ok(())
    }

    fn stats(&self) -> gst::Structure {
        let c = *lock(&self.counters);
        let pool = lock(&self.stream).as_ref().map(|s| s.pool.stats());
        gst::Structure::builder("shmpoolsink-stats")
            .field("frames", c.frames)
            .field("copies", c.copies)
            .field("zero-copy", c.frames - c.copies)
            .field("discarded", c.discarded)
            .field("resized", c.resized)
            .field("dropped", pool.as_ref().map_or(0, |p| p.dropped))
            .field("consumers", pool.as_ref().map_or(0, |p| p.consumers))
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for ShmpoolSink {
    const NAME: &'static str = "GstShmpoolSink";
    type Type = super::ShmpoolSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for ShmpoolSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("pool")
                    .nick("Pool")
                    .blurb("Name of the pool to create (a file in the directory)")
                    .default_value(Some(DEFAULT_POOL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("directory")
                    .nick("Directory")
                    .blurb("Directory of the pool file (empty: $SHMPOOL_DIR, else /dev/shm)")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("slots")
                    .nick("Slots")
                    .blurb("Number of buffers in the pool")
                    .minimum(1)
                    .maximum(shmpool::MAX_SLOTS)
                    .default_value(d.slots)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("slot-size")
                    .nick("Slot size")
                    .blurb(
                        "Bytes per slot (0: the frame size of the caps, 4 MiB for non-video; caps with larger \
                         frames replace the pool by a larger one)",
                    )
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", d.mode)
                    .nick("Mode")
                    .blurb("Who receives a frame")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("overflow", d.overflow)
                    .nick("Overflow")
                    .blurb("What a full pool does (drop-oldest suits live sources)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("wait-for-consumers")
                    .nick("Wait for consumers")
                    .blurb("Hold the first buffer until this many sources are attached")
                    .maximum(shmpool::MAX_CONSUMERS as u32)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("frames, copies, zero-copy, discarded, resized, dropped, consumers")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "pool" => s.pool = value.get::<Option<String>>().ok().flatten().unwrap_or_default(),
            "directory" => s.directory = value.get::<Option<String>>().ok().flatten().unwrap_or_default(),
            "slots" => s.slots = value.get().unwrap_or(s.slots),
            "slot-size" => s.slot_size = value.get().unwrap_or(s.slot_size),
            "mode" => s.mode = value.get().unwrap_or(s.mode),
            "overflow" => s.overflow = value.get().unwrap_or(s.overflow),
            "wait-for-consumers" => s.wait_for_consumers = value.get().unwrap_or(s.wait_for_consumers),
            other => gst::warning!(CAT, imp = self, "no writable property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "pool" => s.pool.to_value(),
            "directory" => s.directory.to_value(),
            "slots" => s.slots.to_value(),
            "slot-size" => s.slot_size.to_value(),
            "mode" => s.mode.to_value(),
            "overflow" => s.overflow.to_value(),
            "wait-for-consumers" => s.wait_for_consumers.to_value(),
            "stats" => {
                drop(s);
                self.stats().to_value()
            }
            other => unreachable!("GObject only asks for registered properties, not {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // A kept last sample would keep a published slot mapped as a GStreamer buffer.
        self.obj().set_enable_last_sample(false);
        self.obj().set_sync(false);
    }
}

impl GstObjectImpl for ShmpoolSink {}

impl ElementImpl for ShmpoolSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Shared-memory pool sink",
                "Sink",
                "Publishes buffers, with caps and timestamps, into a shmpool pool for other processes",
                "shmpool developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &gst::Caps::new_any(),
            )
            .expect("valid template")]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for ShmpoolSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.counters) = Counters::default();
        *lock(&self.caps) = CapsState::default();
        *lock(&self.replaced) = None;
        self.consumers_ready.store(false, Ordering::Release);
        if lock(&self.settings).slot_size > 0 {
            self.ensure_stream(None).map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ["{e}"]))?;
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Closing tells attached sources that this producer is gone (without EOS: they wait for
        // a new one); the name is unlinked now, the mapping lives until the last lent buffer.
        if let Some(stream) = lock(&self.stream).take() {
            stream.pool.shutdown();
        }
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let text = caps.to_string();
        if text.len() > META_BYTES - HEADER_LEN {
            return Err(gst::loggable_error!(CAT, "caps of {} bytes do not fit a slot's metadata", text.len()));
        }
        let shape = ArrayShape::from_caps(caps);
        let frame_size = shape.as_ref().map(|s| s.frame_size);
        let stream = self.ensure_stream(frame_size).map_err(|e| {
            gst::element_imp_error!(self, gst::ResourceError::OpenWrite, ["{e}"]);
            gst::loggable_error!(CAT, "{e}")
        })?;
        if let Some(size) = frame_size.filter(|&n| n > stream.pool.slot_size()) {
            let msg = format!("frames of {size} bytes do not fit slots of {} (set slot-size)", stream.pool.slot_size());
            gst::element_imp_error!(self, gst::StreamError::Format, ["{msg}"]);
            return Err(gst::loggable_error!(CAT, "{msg}"));
        }
        let mut state = lock(&self.caps);
        state.seq += 1;
        state.text = text;
        state.shape = shape;
        gst::debug!(CAT, imp = self, "caps #{}: {}", state.seq, state.text);
        Ok(())
    }

    fn propose_allocation(&self, query: &mut gst::query::Allocation) -> Result<(), gst::LoggableError> {
        let (Some(caps), _) = query.get_owned() else { return Ok(()) };
        // Only raw video tells the frame size a buffer pool needs.
        let Some(shape) = ArrayShape::from_caps(&caps) else { return Ok(()) };
        let stream = self.ensure_stream(Some(shape.frame_size)).map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
        if shape.frame_size > stream.pool.slot_size() {
            return Ok(());
        }
        let pool = SlotPool::new(stream.pool.clone(), stream.producer.clone(), stream.leases.clone());
        let mut config = pool.config();
        let size = u32::try_from(shape.frame_size).map_err(|_| gst::loggable_error!(CAT, "frame too large"))?;
        config.set_params(Some(&caps), size, 0, 0);
        pool.set_config(config).map_err(|e| gst::loggable_error!(CAT, "configuring the slot pool: {e}"))?;
        query.add_allocation_pool(Some(&pool), size, 0, 0);
        gst::debug!(CAT, imp = self, "proposed a pool of slots for {size}-byte frames");
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let stream = self.stream()?;
        self.wait_for_sources(&stream)?;
        let caps = lock(&self.caps).clone();
        let size = buffer.size();
        let (mut slot, copied) = match stream.leases.reclaim(buffer) {
            Some(slot) => (slot, false),
            None => {
                if size > stream.pool.slot_size() {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ["a buffer of {size} bytes does not fit slots of {} (set slot-size)", stream.pool.slot_size()]
                    );
                    return Err(gst::FlowError::Error);
                }
                let mut slot = self.acquire(&stream)?;
                buffer.copy_to_slice(0, &mut slot[..size]).map_err(|_| gst::FlowError::Error)?;
                (slot, true)
            }
        };
        slot.set_len(size).map_err(|_| gst::FlowError::Error)?;
        if let Some(shape) = caps.shape.as_ref().filter(|s| s.frame_size == size) {
            slot.set_dtype(shape.dtype);
            slot.set_shape(&shape.dims).map_err(|_| gst::FlowError::Error)?;
        }
        let meta = FrameMeta {
            kind: Kind::Buffer,
            flags: buffer.flags().bits(),
            pts: buffer.pts().map(|t| t.nseconds()),
            dts: buffer.dts().map(|t| t.nseconds()),
            duration: buffer.duration().map(|t| t.nseconds()),
            offset: known_offset(buffer.offset()),
            offset_end: known_offset(buffer.offset_end()),
            caps_seq: caps.seq,
        };
        let delivered = self.publish(slot, &meta, &caps)?;
        let mut c = lock(&self.counters);
        c.frames += 1;
        c.copies += u64::from(copied);
        c.discarded += u64::from(!delivered);
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            if self.publish_eos().is_err() {
                gst::warning!(CAT, imp = self, "could not mark the end of stream in the pool");
            }
            let stats = self.stats();
            gst::info!(CAT, imp = self, "end of stream: {stats}");
            let _ = self.obj().post_message(gst::message::Element::builder(stats).src(&*self.obj()).build());
        }
        self.parent_event(event)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(true, Ordering::Release);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(false, Ordering::Release);
        Ok(())
    }
}
