//! Issue 21 point 4: a device's valid OTPs are never refused by its own
//! in-flight strikes — twenty valid OTPs handed in by one device at once,
//! four wrong ones among them, are all scanned — while wrong ones stay
//! bounded to five per window, atomically; once cooled off, even a valid
//! OTP waits. On the use case, both engines (each replica shares the
//! device row, so the bound holds on every replica).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use assent_server::domain::{Context, Message};
use assent_server::service::{CreateOtpInput, ServiceError};
use assent_tests::{InProcess, TestDb, seeded};
use chrono::Utc;

fn otp_input() -> CreateOtpInput {
    CreateOtpInput {
        message: Message::parse("Log in?").unwrap(),
        ttl: Duration::from_secs(60),
        context: Context::default(),
        user_id: None,
        binding: None,
    }
}

async fn valid_otps_in_flight_take_no_strikes_and_wrong_ones_stay_bounded(db: TestDb) {
    let store = db.store().await;
    let world = Arc::new(InProcess::new(Arc::clone(&store), Utc::now()));
    let caller = world.application("Shop").await;
    let mut rng = seeded(21);
    let phone = Arc::new(world.enroll(&caller, "alice", &mut rng).await);
    let mut otps = Vec::new();
    for _ in 0..20 {
        let created = world
            .services
            .logins
            .create_otp_authentication(&caller, otp_input(), &mut rng)
            .await
            .unwrap();
        otps.push(created.otp.expose());
    }
    let submit = |otp: String, seed: u64| {
        let (world, phone) = (Arc::clone(&world), Arc::clone(&phone));
        tokio::spawn(async move {
            world
                .services
                .confirmations
                .submit_otp(&phone.device, &otp, &mut seeded(seed))
                .await
        })
    };
    let forge = |otp: &str| {
        // Another secret for the same transaction id.
        let mut forged = otp.to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        forged
    };
    // Twenty valid OTPs of one device at once, with four wrong ones among
    // them: every valid one is scanned, every wrong one refused.
    let valid: Vec<_> = otps
        .iter()
        .enumerate()
        .map(|(i, otp)| submit(otp.clone(), i as u64))
        .collect();
    let wrong: Vec<_> = (0..4)
        .map(|i| submit(forge(&otps[i]), 100 + i as u64))
        .collect();
    for (i, handle) in valid.into_iter().enumerate() {
        let scanned = handle.await.unwrap();
        assert!(scanned.is_ok(), "valid OTP {i} refused: {scanned:?}");
    }
    for handle in wrong {
        let refused = handle.await.unwrap();
        assert!(
            matches!(refused, Err(ServiceError::OtpRefused)),
            "{refused:?}"
        );
    }
    // Six more wrong ones at once: one is looked up (the fifth strike),
    // five wait for the window.
    let wrong: Vec<_> = (4..10)
        .map(|i| submit(forge(&otps[i]), 100 + i as u64))
        .collect();
    let (mut refused, mut waiting) = (0, 0);
    for handle in wrong {
        match handle.await.unwrap() {
            Err(ServiceError::OtpRefused) => refused += 1,
            Err(ServiceError::ResourceExhausted(_)) => waiting += 1,
            other => panic!("a wrong OTP: {other:?}"),
        }
    }
    assert_eq!((refused, waiting), (1, 5), "five wrong lookups per window");
    // Cooled off: even a valid OTP waits now.
    let fresh = world
        .services
        .logins
        .create_otp_authentication(&caller, otp_input(), &mut rng)
        .await
        .unwrap();
    let late = submit(fresh.otp.expose(), 999).await.unwrap();
    assert!(
        matches!(late, Err(ServiceError::ResourceExhausted(_))),
        "{late:?}"
    );
}

assent_tests::on_both_engines!(valid_otps_in_flight_take_no_strikes_and_wrong_ones_stay_bounded);
