//! The enrollment QR code: what a device needs to enroll, in one string an
//! application shows as a QR code — the server URL, the single-use code and
//! the application's name (to show before enrolling).
//!
//! Layout: `assent://enroll?v=1&code=CODE&server=URL&app=NAME`, every value
//! percent-encoded (RFC 3986 unreserved characters kept); `server` and `app`
//! may be absent (the device then needs the server from elsewhere).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What an enrollment QR code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentQr {
    /// The Assent server the device enrolls with (`http://` or `https://`).
    pub server: Option<String>,
    /// The single-use enrollment code.
    pub code: String,
    /// The application's display name.
    pub application_name: Option<String>,
}

/// Why a text is not an enrollment QR payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEnrollmentQr {
    /// It does not start with `assent://enroll?`.
    #[error("not an Assent enrollment code (expected it to start with assent://enroll?)")]
    NotEnrollment,
    /// A version this device does not know.
    #[error("enrollment code version {0:?} is not supported (this device knows v=1)")]
    Version(String),
    /// No `code` parameter.
    #[error("the enrollment QR code carries no code")]
    NoCode,
    /// A value that is not percent-encoded UTF-8.
    #[error("the enrollment QR code's {0} is not valid text")]
    Encoding(&'static str),
}

const PREFIX: &str = "assent://enroll?";

/// Everything but RFC 3986's unreserved characters is encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl EnrollmentQr {
    /// The payload to show as a QR code.
    ///
    /// ```
    /// use assent_proto::enrollment_qr::EnrollmentQr;
    /// let qr = EnrollmentQr {
    ///     server: Some("https://auth.example.com".into()),
    ///     code: "c0de-XY_z".into(),
    ///     application_name: Some("Example Shop".into()),
    /// };
    /// assert_eq!(
    ///     qr.to_payload(),
    ///     "assent://enroll?v=1&code=c0de-XY_z&server=https%3A%2F%2Fauth.example.com&app=Example%20Shop"
    /// );
    /// assert_eq!(EnrollmentQr::parse(&qr.to_payload()), Ok(qr));
    /// ```
    pub fn to_payload(&self) -> String {
        let mut payload = format!(
            "{PREFIX}v=1&code={}",
            utf8_percent_encode(&self.code, VALUE)
        );
        if let Some(server) = &self.server {
            payload.push_str("&server=");
            payload.extend(utf8_percent_encode(server, VALUE));
        }
        if let Some(name) = &self.application_name {
            payload.push_str("&app=");
            payload.extend(utf8_percent_encode(name, VALUE));
        }
        payload
    }

    /// Reads a payload; unknown parameters are ignored (newer servers may
    /// add some), a missing version is taken as 1.
    pub fn parse(text: &str) -> Result<Self, InvalidEnrollmentQr> {
        let query = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(InvalidEnrollmentQr::NotEnrollment)?;
        let (mut server, mut code, mut application_name) = (None, None, None);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |field| {
                percent_decode_str(value)
                    .decode_utf8()
                    .map(|value| value.into_owned())
                    .map_err(|_| InvalidEnrollmentQr::Encoding(field))
            };
            match key {
                "v" if value != "1" => return Err(InvalidEnrollmentQr::Version(value.to_owned())),
                "code" => code = Some(decode("code")?),
                "server" => server = Some(decode("server")?),
                "app" => application_name = Some(decode("application name")?),
                _ => {}
            }
        }
        let code = code
            .filter(|code| !code.trim().is_empty())
            .ok_or(InvalidEnrollmentQr::NoCode)?;
        Ok(Self {
            server: server.filter(|s| !s.is_empty()),
            code,
            application_name: application_name.filter(|s| !s.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn only_enrollment_payloads_parse() {
        assert_eq!(
            EnrollmentQr::parse("https://example.com/?code=x"),
            Err(InvalidEnrollmentQr::NotEnrollment)
        );
        assert_eq!(
            EnrollmentQr::parse("assent://enroll?v=2&code=x"),
            Err(InvalidEnrollmentQr::Version("2".into()))
        );
        assert_eq!(
            EnrollmentQr::parse("assent://enroll?v=1&server=x"),
            Err(InvalidEnrollmentQr::NoCode)
        );
        assert_eq!(
            EnrollmentQr::parse("assent://enroll?code=%FF"),
            Err(InvalidEnrollmentQr::Encoding("code"))
        );
    }

    #[test]
    fn a_bare_code_payload_has_no_server_or_name() {
        let qr = EnrollmentQr::parse("assent://enroll?code=abc&future=1").unwrap();
        assert_eq!(qr.code, "abc");
        assert_eq!(qr.server, None);
        assert_eq!(qr.application_name, None);
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(
            code in "[A-Za-z0-9_-]{1,40}",
            server in proptest::option::of("https?://[a-z0-9.:-]{1,30}(/[a-z&=?%# ]{0,10})?"),
            name in proptest::option::of("\\PC{1,40}"),
        ) {
            let qr = EnrollmentQr { server, code, application_name: name };
            prop_assert_eq!(EnrollmentQr::parse(&qr.to_payload()), Ok(qr));
        }
    }
}
