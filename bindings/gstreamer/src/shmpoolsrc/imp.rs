//! Implementation of [`super::ShmpoolSrc`].

use crate::frame_meta::{FrameMeta, Kind};
use crate::interruptible::{self, Interrupted};
use crate::shmpoolsink::DEFAULT_POOL;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use shmpool::{Consumer, Error, Pool, ReadBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

static CAT: LazyLock<gst::DebugCategory> =
    LazyLock::new(|| gst::DebugCategory::new("shmpoolsrc", gst::DebugColorFlags::empty(), Some("shmpool source")));

const DEFAULT_TIMEOUT: u64 = 10_000_000_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Settings {
    pool: String,
    directory: String,
    is_live: bool,
    /// Nanoseconds without a producer before an error; 0: wait forever.
    timeout: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { pool: DEFAULT_POOL.into(), directory: String::new(), is_live: false, timeout: DEFAULT_TIMEOUT }
    }
}

impl Settings {
    fn timeout(&self) -> Option<Duration> {
        (self.timeout > 0).then(|| Duration::from_nanos(self.timeout))
    }
}

/// The pool this source reads, while attached.
struct Attached {
    pool: Pool,
    consumer: Consumer,
    /// The next buffer is the first from this pool.
    discont: bool,
}

#[derive(Default)]
struct State {
    attached: Option<Attached>,
    /// The caps last set on the pad, as the sink wrote them.
    caps_text: String,
    /// Since when no live producer was seen.
    orphaned_since: Option<Instant>,
}

/// A received slot as the bytes of a GStreamer memory: dropping the memory releases the slot.
struct SlotBytes(ReadBuf);

impl AsRef<[u8]> for SlotBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[derive(Default)]
pub struct ShmpoolSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    unlocked: AtomicBool,
}

/// What one attempt to get a frame found.
enum Next {
    Frame(ReadBuf),
    /// Nothing yet: try again.
    Wait,
}

impl ShmpoolSrc {
    fn fail(&self, msg: String) -> gst::FlowError {
        gst::element_imp_error!(self, gst::ResourceError::Read, ["{msg}"]);
        gst::FlowError::Error
    }

    /// Opens the pool if it exists now.
    fn attach(&self, settings: &Settings) -> Result<Option<Attached>, gst::FlowError> {
        let opened = Pool::open_in(&settings.pool, crate::pool_directory(&settings.directory))
            .and_then(|pool| pool.consumer().map(|consumer| (pool, consumer)));
        match opened {
            Ok((pool, consumer)) => {
                gst::info!(CAT, imp = self, "attached to {}", pool.path().display());
                Ok(Some(Attached { pool, consumer, discont: true }))
            }
            // Not there yet, or the old one is being replaced.
            Err(Error::NotFound { .. } | Error::Closed) => Ok(None),
            Err(e) => Err(self.fail(format!("opening pool {:?}: {e}", settings.pool))),
        }
    }

    /// Errors out if no producer was seen for longer than the timeout.
    fn check_orphaned(
        &self,
        state: &mut State,
        settings: &Settings,
        producer_alive: bool,
    ) -> Result<(), gst::FlowError> {
        if producer_alive {
            state.orphaned_since = None;
            return Ok(());
        }
        let since = *state.orphaned_since.get_or_insert_with(Instant::now);
        match settings.timeout() {
            Some(t) if since.elapsed() > t => Err(self.fail(format!(
                "no producer on pool {:?} for {:.1} s (timeout): the sink is gone and no new one appeared",
                settings.pool,
                since.elapsed().as_secs_f64()
            ))),
            _ => Ok(()),
        }
    }

    /// One step towards the next frame: attach, receive, or notice the producer is gone.
    fn step(&self, state: &mut State, settings: &Settings) -> Result<Next, gst::FlowError> {
        let Some(attached) = state.attached.as_mut() else {
            state.attached = self.attach(settings)?;
            if state.attached.is_none() {
                self.check_orphaned(state, settings, false)?;
                if self.unlocked.load(Ordering::Acquire) {
                    return Err(gst::FlowError::Flushing);
                }
                std::thread::sleep(interruptible::STEP / 5);
            }
            return Ok(Next::Wait);
        };
        match interruptible::recv_step(&mut attached.consumer, &self.unlocked) {
            Ok(Some(buf)) => {
                state.orphaned_since = None;
                Ok(Next::Frame(buf))
            }
            Ok(None) => {
                let alive = attached.pool.stats().producer_alive;
                self.check_orphaned(state, settings, alive)?;
                Ok(Next::Wait)
            }
            Err(Interrupted::Flushing) => Err(gst::FlowError::Flushing),
            // The sink died without closing its pool: wait for a restarted one to take it over,
            // as long as the timeout allows.
            // The pool says so at once on every call: poll, do not spin.
            Err(Interrupted::Pool(Error::Orphaned)) => {
                self.check_orphaned(state, settings, false)?;
                std::thread::sleep(interruptible::STEP / 5);
                Ok(Next::Wait)
            }
            Err(Interrupted::Pool(Error::Closed)) => {
                // Closed without an end-of-stream marker: the sink stopped or was replaced.
                gst::info!(CAT, imp = self, "pool closed by its producer; waiting for a new one");
                state.attached = None;
                Ok(Next::Wait)
            }
            Err(Interrupted::Pool(e)) => Err(self.fail(format!("receiving from pool {:?}: {e}", settings.pool))),
        }
    }

    /// Sets the caps the slot carries if they differ from the current ones.
    fn update_caps(&self, state: &mut State, caps_text: &str) -> Result<(), gst::FlowError> {
        if caps_text == state.caps_text {
            return Ok(());
        }
        let caps: gst::Caps =
            caps_text.parse().map_err(|_| self.fail(format!("the pool carries unparsable caps {caps_text:?}")))?;
        gst::debug!(CAT, imp = self, "caps from the pool: {caps}");
        self.obj().set_caps(&caps).map_err(|_| gst::FlowError::NotNegotiated)?;
        state.caps_text = caps_text.to_string();
        Ok(())
    }

    /// The GStreamer buffer for a received frame, wrapping the slot.
    fn wrap(&self, buf: ReadBuf, meta: &FrameMeta, discont: bool) -> gst::Buffer {
        let mut buffer = gst::Buffer::from_slice(SlotBytes(buf));
        let b = buffer.get_mut().expect("a new buffer is writable");
        if !self.obj().does_timestamp() {
            b.set_pts(meta.pts.map(gst::ClockTime::from_nseconds));
            b.set_dts(meta.dts.map(gst::ClockTime::from_nseconds));
        }
        b.set_duration(meta.duration.map(gst::ClockTime::from_nseconds));
        b.set_offset(meta.offset.unwrap_or(gst::ffi::GST_BUFFER_OFFSET_NONE));
        b.set_offset_end(meta.offset_end.unwrap_or(gst::ffi::GST_BUFFER_OFFSET_NONE));
        let mut flags = gst::BufferFlags::from_bits_truncate(meta.flags) - gst::BufferFlags::TAG_MEMORY;
        if discont {
            flags |= gst::BufferFlags::DISCONT;
        }
        b.set_flags(flags);
        buffer
    }
}

#[glib::object_subclass]
impl ObjectSubclass for ShmpoolSrc {
    const NAME: &'static str = "GstShmpoolSrc";
    type Type = super::ShmpoolSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for ShmpoolSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("pool")
                    .nick("Pool")
                    .blurb("Name of the pool to read")
                    .default_value(Some(DEFAULT_POOL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("directory")
                    .nick("Directory")
                    .blurb("Directory of the pool file (empty: $SHMPOOL_DIR, else /dev/shm)")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb("Act as a live source")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("timeout")
                    .nick("Timeout")
                    .blurb("Nanoseconds to wait for the pool or a vanished producer before an error (0: forever)")
                    .default_value(DEFAULT_TIMEOUT)
                    .mutable_ready()
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
            "is-live" => {
                s.is_live = value.get().unwrap_or(false);
                self.obj().set_live(s.is_live);
            }
            "timeout" => s.timeout = value.get().unwrap_or(s.timeout),
            other => gst::warning!(CAT, imp = self, "no writable property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "pool" => s.pool.to_value(),
            "directory" => s.directory.to_value(),
            "is-live" => s.is_live.to_value(),
            "timeout" => s.timeout.to_value(),
            other => unreachable!("GObject only asks for registered properties, not {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_format(gst::Format::Time);
    }
}

impl GstObjectImpl for ShmpoolSrc {}

impl ElementImpl for ShmpoolSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Shared-memory pool source",
                "Source",
                "Pushes the buffers a shmpoolsink publishes into a shmpool pool, without a copy",
                "shmpool developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &gst::Caps::new_any())
                .expect("valid template")]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for ShmpoolSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
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

impl PushSrcImpl for ShmpoolSrc {
    fn create(&self, _buffer: Option<&mut gst::BufferRef>) -> Result<CreateSuccess, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let mut state = lock(&self.state);
        let buf = loop {
            if let Next::Frame(buf) = self.step(&mut state, &settings)? {
                break buf;
            }
        };
        let (meta, caps_text) = match FrameMeta::decode(buf.user_meta()) {
            Ok((meta, caps)) => (meta, caps.to_string()),
            Err(e) => return Err(self.fail(format!("slot {} of pool {:?}: {e}", buf.slot_index(), settings.pool))),
        };
        if meta.kind == Kind::Eos {
            gst::info!(CAT, imp = self, "end of stream from the sink");
            return Err(gst::FlowError::Eos);
        }
        self.update_caps(&mut state, &caps_text)?;
        let discont = state.attached.as_mut().is_some_and(|a| std::mem::take(&mut a.discont));
        Ok(CreateSuccess::NewBuffer(self.wrap(buf, &meta, discont)))
    }
}
