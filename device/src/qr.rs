//! Reading Assent QR codes from a picture (a photo, a screenshot, a PNG or
//! JPEG file), decoded in pure Rust: the login page's OTP, checked to be an
//! OTP before anything is sent, and the enrollment QR code an application
//! shows to enroll a device.

pub use assent_proto::enrollment_qr::{EnrollmentQr, InvalidEnrollmentQr};

/// Why no OTP came out of an image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QrError {
    /// Not a PNG or JPEG image, or a damaged one.
    #[error("cannot read the image ({0}); give a PNG or JPEG file, or `-` to read one from stdin")]
    Image(String),
    /// The image holds no readable QR code.
    #[error(
        "no QR code found in the image; make sure the whole code is visible, sharp and not \
         cropped (a screenshot of the login page works)"
    )]
    NoCode,
    /// A QR code, but not an Assent login code.
    #[error(
        "the QR code does not hold an Assent login code (it reads {0:?}); scan the code on the \
         login page of a site that uses Assent"
    )]
    NotAnOtp(String),
    /// A QR code, but not an Assent enrollment code.
    #[error(
        "the QR code does not hold an Assent enrollment code (it reads {0:?}); scan the code \
         the application shows for enrolling a device"
    )]
    NotAnEnrollment(String),
    /// An Assent enrollment code that cannot be used.
    #[error(transparent)]
    Enrollment(#[from] InvalidEnrollmentQr),
}

/// The OTP in the first QR code of the image that holds one.
pub fn otp_from_image(bytes: &[u8]) -> Result<String, QrError> {
    first_code(bytes, |text| is_otp(text).then(|| text.to_owned()))?
        .map_err(|text| QrError::NotAnOtp(text.chars().take(40).collect()))
}

/// The enrollment in the first QR code of the image that holds one.
pub fn enrollment_from_image(bytes: &[u8]) -> Result<EnrollmentQr, QrError> {
    let found = first_code(bytes, |text| {
        text.starts_with("assent://enroll?")
            .then(|| EnrollmentQr::parse(text))
    })?;
    match found {
        Ok(parsed) => Ok(parsed?),
        Err(text) => Err(QrError::NotAnEnrollment(text.chars().take(40).collect())),
    }
}

/// Decodes the image's QR codes and returns the first that `accept` takes;
/// `Err(text)` of the first code read when none is taken.
fn first_code<T>(
    bytes: &[u8],
    accept: impl Fn(&str) -> Option<T>,
) -> Result<Result<T, String>, QrError> {
    let image = image::load_from_memory(bytes)
        .map_err(|error| QrError::Image(error.to_string()))?
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let mut first_text = None;
    for grid in prepared.detect_grids() {
        let Ok((_, text)) = grid.decode() else {
            continue;
        };
        let text = text.trim().to_owned();
        if let Some(found) = accept(&text) {
            return Ok(Ok(found));
        }
        first_text.get_or_insert(text);
    }
    first_text.map(Err).ok_or(QrError::NoCode)
}

/// Whether `text` has the form of an OTP (either base64 alphabet).
fn is_otp(text: &str) -> bool {
    crate::otp::Otp::parse(text).is_ok()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    const OTP_BYTES: usize = assent_proto::token::TOKEN_LEN;

    fn png_of(text: &str) -> Vec<u8> {
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
        let image = code
            .render::<image::Luma<u8>>()
            .module_dimensions(6, 6)
            .build();
        let mut png = Vec::new();
        image::DynamicImage::ImageLuma8(image)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    #[test]
    fn an_otp_in_a_png_is_read_back() {
        let otp = STANDARD.encode([7u8; OTP_BYTES]);
        assert_eq!(otp_from_image(&png_of(&otp)), Ok(otp));
    }

    #[test]
    fn other_codes_and_other_files_are_refused_with_a_reason() {
        let refused = otp_from_image(&png_of("https://example.com")).unwrap_err();
        assert!(matches!(refused, QrError::NotAnOtp(ref t) if t == "https://example.com"));
        assert!(refused.to_string().contains("login page"));
        let blank = png_of_blank();
        assert_eq!(otp_from_image(&blank), Err(QrError::NoCode));
        assert!(matches!(
            otp_from_image(b"not an image"),
            Err(QrError::Image(_))
        ));
    }

    #[test]
    fn an_enrollment_qr_is_read_back_and_a_login_code_is_not_one() {
        let qr = EnrollmentQr {
            server: Some("http://127.0.0.1:50051".into()),
            code: "c0de_-x".into(),
            application_name: Some("Example Shop".into()),
        };
        assert_eq!(enrollment_from_image(&png_of(&qr.to_payload())), Ok(qr));
        let otp = STANDARD.encode([7u8; OTP_BYTES]);
        assert!(matches!(
            enrollment_from_image(&png_of(&otp)),
            Err(QrError::NotAnEnrollment(_))
        ));
        assert!(matches!(
            enrollment_from_image(&png_of("assent://enroll?v=9&code=x")),
            Err(QrError::Enrollment(InvalidEnrollmentQr::Version(_)))
        ));
    }

    fn png_of_blank() -> Vec<u8> {
        let image = image::GrayImage::from_pixel(64, 64, image::Luma([255]));
        let mut png = Vec::new();
        image::DynamicImage::ImageLuma8(image)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }
}
