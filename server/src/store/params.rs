//! Binders: what each statement's `$1…$n` are. Most statements take a
//! tuple, bound in order; the writes of a change and the OTP reservation
//! have named binders, each the one place its parameters are listed.
//! [`Bind::ARITY`] is what the arity tests hold every statement's
//! placeholders against.

use super::OtpLookup;
use super::codec::StoredTime;
use super::driver::{Sink, Storable};
use super::rows::{choices_text, verdict_text};
use crate::domain::rate::StrikeWindow;
use crate::domain::{Change, DeviceId};

/// The parameters of one statement, bound in order.
pub(crate) trait Bind: Send {
    /// How many parameters it binds.
    #[cfg(test)]
    const ARITY: usize;
    /// Binds them, `$1` first.
    fn bind<S: Sink>(self, sink: &mut S);
}

/// What a statement is bound from, for any lifetime of the values: a
/// tuple is its own shape; a named binder borrowing its input has a marker.
pub(crate) trait Shape {
    /// The binder of this shape.
    type Of<'a>: Bind;
}

impl<T: Bind + 'static> Shape for T {
    type Of<'a> = T;
}

/// The shape of [`ChangeParams`].
pub(crate) struct ChangeShape;

impl Shape for ChangeShape {
    type Of<'a> = ChangeParams<'a>;
}

/// The shape of [`StrikeAndLookupParams`].
pub(crate) struct StrikeAndLookupShape;

impl Shape for StrikeAndLookupShape {
    type Of<'a> = StrikeAndLookupParams<'a>;
}

/// Tuples bind their elements in order; their arity is their length.
macro_rules! tuple_bind {
    ($arity:literal; $($name:ident),*) => {
        impl<$($name: Storable),*> Bind for ($($name,)*) {
            #[cfg(test)]
            const ARITY: usize = $arity;

            #[allow(non_snake_case)]
            fn bind<S: Sink>(self, _sink: &mut S) {
                let ($($name,)*) = self;
                $(_sink.bind(stringify!($name), $name);)*
            }
        }
    };
}

tuple_bind!(0;);
tuple_bind!(1; A);
tuple_bind!(2; A, B);
tuple_bind!(3; A, B, C);
tuple_bind!(4; A, B, C, D);
tuple_bind!(5; A, B, C, D, E);
tuple_bind!(6; A, B, C, D, E, F);
tuple_bind!(7; A, B, C, D, E, F, G);
tuple_bind!(8; A, B, C, D, E, F, G, H);
tuple_bind!(10; A, B, C, D, E, F, G, H, I, J);

/// The parameters of every statement that writes a change: the
/// transaction's columns in table order (`$1`–`$22`), its event
/// (`$23`–`$28`) and the compare-and-set and guards (`$29`–`$33`). The
/// event's application and transaction are the transaction's `$2` and `$1`.
#[derive(Clone, Copy)]
pub(crate) struct ChangeParams<'a>(pub &'a Change);

impl Bind for ChangeParams<'_> {
    #[cfg(test)]
    const ARITY: usize = 33;

    fn bind<S: Sink>(self, s: &mut S) {
        let Change {
            expected,
            after: t,
            guard,
            event: e,
            notices: _,
        } = self.0;
        let answer = t.answer.as_ref();
        s.bind("id", t.id);
        s.bind("application_id", t.application_id);
        s.bind("kind", t.kind);
        s.bind("state", t.state);
        s.bind("user_id", t.user_id.clone());
        s.bind("device_id", t.device_id);
        s.bind("reason", t.reason);
        s.bind("message", t.message.clone());
        s.bind("context", sqlx::types::Json(t.context.clone()));
        s.bind(
            "otp_hash",
            t.otp_hash.as_ref().map(|h| h.as_bytes().to_vec()),
        );
        s.bind("nonce", t.nonce.map(|n| n.to_vec()));
        s.bind("decision_signature", t.decision_signature.clone());
        s.bind("match_number", t.match_number.map(i16::from));
        s.bind("number_choices", choices_text(&t.number_choices));
        s.bind("created_at", StoredTime(t.created_at));
        s.bind("expires_at", StoredTime(t.expires_at));
        s.bind("completed_at", t.completed_at.map(StoredTime));
        s.bind("version", t.version);
        s.bind("binding", t.binding.clone());
        s.bind("decision", answer.map(|a| verdict_text(a.verdict)));
        s.bind(
            "decision_reason",
            answer.and_then(|a| a.reason).map(|r| r.as_str()),
        );
        s.bind(
            "picked_number",
            answer.and_then(|a| a.number).map(i16::from),
        );
        s.bind("event_type", e.event_type);
        s.bind("event_user_id", e.user_id.clone());
        s.bind("event_device_id", e.device_id);
        s.bind("event_reason", e.reason);
        s.bind("event_fraud_reported", e.fraud_reported);
        s.bind("event_at", StoredTime(e.at));
        s.bind("expected_version", *expected);
        s.bind("guard_device_unrevoked", guard.device_unrevoked);
        s.bind("guard_unexpired_at", guard.unexpired_at.map(StoredTime));
        let lookups = guard.otp_lookups.as_ref();
        s.bind("guard_otp_lookup_limit", lookups.map(|w| w.limit));
        s.bind(
            "guard_otp_window_over_if_opened_by",
            lookups.map(|w| StoredTime(w.over_if_opened_by)),
        );
    }
}

/// An OTP reservation: the device (`$1`), its strike limit (`$2`), the
/// start before which a window is over (`$3`) and now (`$4`).
#[derive(Clone, Copy)]
pub(crate) struct StrikeParams<'a> {
    /// The device taking a strike.
    pub device: DeviceId,
    /// The domain's strike window.
    pub window: &'a StrikeWindow,
}

impl Bind for StrikeParams<'_> {
    #[cfg(test)]
    const ARITY: usize = 4;

    fn bind<S: Sink>(self, s: &mut S) {
        s.bind("device_id", self.device);
        s.bind("limit", self.window.limit);
        s.bind(
            "window_over_if_opened_by",
            StoredTime(self.window.over_if_opened_by),
        );
        s.bind("now", StoredTime(self.window.now));
    }
}

/// An OTP reservation and the lookup it is for: [`StrikeParams`], then the
/// transaction (`$5`), its application (`$6`) and the handed-in OTP's hash
/// (`$7`; a lookup that matches an open OTP takes no strike).
#[derive(Clone, Copy)]
pub(crate) struct StrikeAndLookupParams<'a> {
    /// The reservation.
    pub strike: StrikeParams<'a>,
    /// The OTP looked up, if it parsed.
    pub lookup: Option<&'a OtpLookup>,
}

impl Bind for StrikeAndLookupParams<'_> {
    #[cfg(test)]
    const ARITY: usize = StrikeParams::ARITY + 3;

    fn bind<S: Sink>(self, s: &mut S) {
        self.strike.bind(s);
        s.bind(
            "lookup_transaction_id",
            self.lookup.map(|l| l.transaction_id),
        );
        s.bind(
            "lookup_application_id",
            self.lookup.map(|l| l.application_id),
        );
        s.bind(
            "lookup_otp_hash",
            self.lookup.map(|l| l.otp_hash.as_bytes().to_vec()),
        );
    }
}
