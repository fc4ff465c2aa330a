//! How domain values are stored, once for both engines: typed ids are
//! `UUID` on PostgreSQL and hyphenated text on SQLite; times are
//! `TIMESTAMPTZ` on PostgreSQL and integer microseconds on SQLite (compared
//! numerically); users, states, kinds, reasons and event types are text on
//! both. A value that does not decode is a corrupt row, never a panic.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};
use uuid::Uuid;

use crate::domain::transaction::Reason;
use crate::domain::{
    ApiKeyId, ApplicationId, DeviceId, EnrollmentId, EventType, TransactionId, TransactionKind,
    TransactionState, UserId,
};

/// A point in time as the engines store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredTime(pub DateTime<Utc>);

impl Type<Postgres> for StoredTime {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for StoredTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for StoredTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Self)
    }
}

impl Type<Sqlite> for StoredTime {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for StoredTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(self.0.timestamp_micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for StoredTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(Self)
            .ok_or_else(|| format!("timestamp {micros} out of range").into())
    }
}

/// A plain UUID (a stream, a replica) stored like the typed ids.
#[derive(Debug, Clone, Copy)]
pub struct StoredUuid(pub Uuid);

impl StoredUuid {
    fn as_uuid(&self) -> Uuid {
        self.0
    }

    fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl std::fmt::Display for StoredUuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Typed ids: `UUID` on PostgreSQL, text on SQLite.
macro_rules! id_codec {
    ($($id:ty),*) => {$(
        impl Type<Postgres> for $id {
            fn type_info() -> PgTypeInfo {
                <Uuid as Type<Postgres>>::type_info()
            }
        }

        impl Encode<'_, Postgres> for $id {
            fn encode_by_ref(
                &self,
                buf: &mut <Postgres as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <Uuid as Encode<Postgres>>::encode_by_ref(&self.as_uuid(), buf)
            }
        }

        impl<'r> Decode<'r, Postgres> for $id {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                <Uuid as Decode<Postgres>>::decode(value).map(Self::from_uuid)
            }
        }

        impl Type<Sqlite> for $id {
            fn type_info() -> SqliteTypeInfo {
                <String as Type<Sqlite>>::type_info()
            }
        }

        impl Encode<'_, Sqlite> for $id {
            fn encode_by_ref(
                &self,
                buf: &mut <Sqlite as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <String as Encode<Sqlite>>::encode(self.to_string(), buf)
            }
        }

        impl<'r> Decode<'r, Sqlite> for $id {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<Sqlite>>::decode(value)?;
                Ok(Self::from_uuid(Uuid::try_parse(text)?))
            }
        }
    )*};
}

id_codec!(
    StoredUuid,
    ApplicationId,
    ApiKeyId,
    DeviceId,
    EnrollmentId,
    TransactionId
);

/// Text on both engines, parsed on the way out.
macro_rules! text_codec {
    ($($ty:ty => |$text:ident| $parse:expr, |$value:ident| $show:expr;)*) => {$(
        impl<DB: Database> Type<DB> for $ty
        where
            String: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $ty
        where
            String: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                let $value = self;
                <String as Encode<'q, DB>>::encode($show, buf)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $ty
        where
            &'r str: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let $text = <&'r str as Decode<'r, DB>>::decode(value)?;
                $parse
            }
        }
    )*};
}

text_codec! {
    UserId => |text| Ok(UserId::parse(text)?), |value| value.as_str().to_owned();
    TransactionState => |text| TransactionState::parse(text)
        .ok_or_else(|| format!("unknown transaction state {text:?}").into()),
        |value| value.as_str().to_owned();
    TransactionKind => |text| TransactionKind::parse(text)
        .ok_or_else(|| format!("unknown transaction kind {text:?}").into()),
        |value| value.as_str().to_owned();
    Reason => |text| Reason::parse(text)
        .ok_or_else(|| format!("unknown reason {text:?}").into()),
        |value| value.as_str().to_owned();
    EventType => |text| EventType::parse(text)
        .ok_or_else(|| format!("unknown event type {text:?}").into()),
        |value| value.as_str().to_owned();
}
