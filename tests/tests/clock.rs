//! Expiry is decided by the database's clock: a replica whose own clock is
//! off by minutes can neither shorten nor extend a transaction's life.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use assent_proto::v1::{CreateOtpAuthenticationRequest, TransactionState};
use assent_server::TimeSource;
use assent_server::domain::Clock;
use assent_tests::{TestApp, TestDb, TestServer, rp_client, transaction};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Connection;

/// This host's clock, off by a fixed amount.
struct Skewed(TimeDelta);

impl Clock for Skewed {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

/// Makes the transaction overdue by the database's own clock.
async fn make_overdue(db: &TestDb, id: &str) {
    if db.is_sqlite() {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query(
            "UPDATE transactions SET expires_at = \
             CAST(round((julianday('now') - 2440587.5) * 86400000000.0) AS INTEGER) - 1000000 \
             WHERE id = $1",
        )
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(
            "UPDATE transactions SET expires_at = clock_timestamp() - interval '1 second' \
             WHERE id = $1::uuid",
        )
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

async fn a_replica_whose_clock_is_off_neither_shortens_nor_extends_a_transaction(db: TestDb) {
    let app = TestApp::create(&db, "Shop").await;
    let store = db.store().await;
    for skew in [TimeDelta::minutes(10), TimeDelta::minutes(-10)] {
        let time = TimeSource::Database(Arc::new(Skewed(skew)));
        let mut server = TestServer::start_with_time(&db, time).await;
        let mut rp = rp_client(&server, &app.api_key).await;
        let created = rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                ttl_seconds: 60,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let database_now = store.database_time().await.unwrap();
        let expires = created.expires_at.unwrap();
        let expires = DateTime::from_timestamp(expires.seconds, 0).unwrap();
        let off = (expires - (database_now + TimeDelta::seconds(60))).abs();
        assert!(
            off < TimeDelta::seconds(5),
            "skew {skew}: expires {off} off"
        );
        // A fast clock would call it expired already; a slow one would not
        // let it expire when the database says it has.
        let now = transaction(&mut rp, &created.transaction_id).await;
        assert_eq!(now.state(), TransactionState::Pending, "skew {skew}");
        make_overdue(&db, &created.transaction_id).await;
        let later = transaction(&mut rp, &created.transaction_id).await;
        assert_eq!(later.state(), TransactionState::Expired, "skew {skew}");
        server.stop().await;
    }
}

assent_tests::on_both_engines!(
    a_replica_whose_clock_is_off_neither_shortens_nor_extends_a_transaction
);
