//! The dtype and shape a slot advertises, so NumPy consumers view a raw video frame as an array.
//!
//! Packed 8-bit formats without row padding (RGB, BGRx, GRAY8, …) are `(height, width, channels)`
//! of `u8` (`video/x-raw,format=RGB,width=4,height=2` gives `[2, 4, 3]`, 24 bytes a frame);
//! anything else is a flat `u8` array of the buffer's size. The unit tests below show each case.

use shmpool::DType;

/// How a frame is viewed as an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayShape {
    pub dtype: DType,
    pub dims: Vec<u64>,
    /// Bytes of one frame.
    pub frame_size: usize,
}

impl ArrayShape {
    /// The array view of raw video caps; `None` for anything that is not raw video.
    pub fn from_caps(caps: &gst::CapsRef) -> Option<ArrayShape> {
        let info = gst_video::VideoInfo::from_caps(caps).ok()?;
        let finfo = info.format_info();
        let (w, h) = (u64::from(info.width()), u64::from(info.height()));
        let packed_8bit = info.n_planes() == 1 && finfo.depth().iter().all(|&d| d == 8);
        let pixel_stride = finfo.pixel_stride().first().copied().unwrap_or(0).max(0) as u64;
        let stride = info.stride().first().copied().unwrap_or(0).max(0) as u64;
        let dims = if packed_8bit && pixel_stride > 0 && stride == w * pixel_stride {
            vec![h, w, pixel_stride]
        } else {
            vec![info.size() as u64]
        };
        Some(ArrayShape { dtype: DType::U8, dims, frame_size: info.size() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(caps: &str) -> Option<ArrayShape> {
        gst::init().unwrap();
        ArrayShape::from_caps(&caps.parse::<gst::Caps>().unwrap())
    }

    #[test]
    fn packed_formats_are_three_dimensional() {
        assert_eq!(shape("video/x-raw,format=RGB,width=1920,height=1080").unwrap().dims, [1080, 1920, 3]);
        assert_eq!(shape("video/x-raw,format=BGRx,width=8,height=2").unwrap().dims, [2, 8, 4]);
    }

    #[test]
    fn padded_planar_and_other_media_are_flat_or_none() {
        // RGB rows of 3 pixels are padded to 12 bytes.
        assert_eq!(shape("video/x-raw,format=RGB,width=3,height=2").unwrap().dims, [24]);
        // I420 4x4: 16 bytes of Y, chroma rows padded to 4 bytes: 8 of U, 8 of V.
        assert_eq!(shape("video/x-raw,format=I420,width=4,height=4").unwrap().dims, [32]);
        assert_eq!(shape("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved"), None);
    }
}
