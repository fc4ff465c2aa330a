//! Every statement of both engines against its binder: no placeholder
//! without a bound value, no bound value without a placeholder, and the
//! named binders bind exactly as many values as they declare.

use std::collections::BTreeSet;

use chrono::Utc;

use super::driver::{Sink, Storable};
use super::engine::Engine;
use super::params::{Bind, ChangeParams, Shape, StrikeAndLookupParams, StrikeParams};
use super::queries::{DialectQueries, Queries, Reserve, Statement};
use super::{PgStore, SqliteStore, sql, sqlite};
use crate::domain::rate::StrikeWindow;
use crate::domain::transaction::tests::{device, scanned_otp};
use crate::domain::transaction::{Guard, NewEvent};
use crate::domain::{Change, EventType, TransactionId};

/// The statements sharing one binder, named.
struct Group {
    name: String,
    arity: usize,
    sql: Vec<String>,
}

fn group<P: Shape>(name: &str, statements: &[&Statement<P>]) -> Group {
    Group {
        name: name.to_owned(),
        arity: <P::Of<'static> as Bind>::ARITY,
        sql: statements.iter().map(|s| s.sql().to_owned()).collect(),
    }
}

/// Every statement of `q`, grouped by binder. The destructuring is
/// exhaustive: a new statement does not compile until it is listed here.
fn groups(q: &Queries) -> Vec<Group> {
    let Queries {
        insert_application,
        insert_api_key,
        list_applications,
        find_api_key,
        add_api_key,
        list_api_keys,
        revoke_api_key,
        insert_enrollment,
        consume_enrollment,
        insert_device,
        find_device,
        list_devices,
        touch_device,
        held_by,
        held_ids,
        revoke_device,
        find_transaction,
        overdue_transactions,
        open_confirmations,
        open_push,
        count_unanswered_pushes,
        events_head,
        purge_events,
        last_event_of,
        current_server_key,
        server_keys,
        retire_server_key,
        insert_server_key,
        last_checkpoint,
        checkpoints,
        insert_checkpoint,
        stored_events,
        renew_replica,
        stream_opened,
        stream_closed,
        replica_streams_gone,
        replica_gone,
        dead_streams_gone,
        dead_replicas_gone,
        connected_devices,
        live_replicas,
        listen_application,
        unlisten_application,
        replica_listeners_gone,
        dead_listeners_gone,
        ciba,
        webhooks,
        dialect,
    } = q;
    let DialectQueries {
        insert_transaction,
        update_transaction,
        append_event,
        reserve_otp_attempt,
        append_device_event,
        events_after,
        events_to_head,
        event_head,
        overtaken_by_device_event,
        last_fraud_report,
        purged_through,
        mark_purged,
        database_time,
    } = dialect;
    let mut change = vec![insert_transaction, update_transaction];
    change.extend(append_event.iter());
    let mut all = vec![
        group("insert_application", &[insert_application]),
        group("insert_api_key", &[insert_api_key]),
        group("list_applications", &[list_applications]),
        group("find_api_key", &[find_api_key]),
        group("add_api_key", &[add_api_key]),
        group("list_api_keys", &[list_api_keys]),
        group("revoke_api_key", &[revoke_api_key]),
        group("insert_enrollment", &[insert_enrollment]),
        group("consume_enrollment", &[consume_enrollment]),
        group("insert_device", &[insert_device]),
        group("find_device", &[find_device]),
        group("list_devices", &[list_devices]),
        group("touch_device", &[touch_device]),
        group("held_by", &[held_by]),
        group("held_ids", &[held_ids]),
        group("revoke_device", &[revoke_device]),
        group("find_transaction", &[find_transaction]),
        group("overdue_transactions", &[overdue_transactions]),
        group("open_confirmations", &[open_confirmations]),
        group("open_push", &[open_push]),
        group("count_unanswered_pushes", &[count_unanswered_pushes]),
        group("events_head", &[events_head]),
        group("purge_events", &[purge_events]),
        group("last_event_of", &[last_event_of]),
        group("current_server_key", &[current_server_key]),
        group("server_keys", &[server_keys]),
        group("retire_server_key", &[retire_server_key]),
        group("insert_server_key", &[insert_server_key]),
        group("last_checkpoint", &[last_checkpoint]),
        group("checkpoints", &[checkpoints]),
        group("insert_checkpoint", &[insert_checkpoint]),
        group("stored_events", &[stored_events]),
        group("renew_replica", &[renew_replica]),
        group("stream_opened", &[stream_opened]),
        group("stream_closed", &[stream_closed]),
        group("replica_streams_gone", &[replica_streams_gone]),
        group("replica_gone", &[replica_gone]),
        group("dead_streams_gone", &[dead_streams_gone]),
        group("dead_replicas_gone", &[dead_replicas_gone]),
        group("connected_devices", &[connected_devices]),
        group("live_replicas", &[live_replicas]),
        group("listen_application", &[listen_application]),
        group("unlisten_application", &[unlisten_application]),
        group("replica_listeners_gone", &[replica_listeners_gone]),
        group("dead_listeners_gone", &[dead_listeners_gone]),
        group("a change's statements", &change),
        group("append_device_event", &[append_device_event]),
        group("events_after", &[events_after]),
        group("events_to_head", &[events_to_head]),
        group("event_head", &[event_head]),
        group("last_fraud_report", &[last_fraud_report]),
        group("purged_through", &[purged_through]),
        group("mark_purged", &[mark_purged]),
        group("database_time", &[database_time]),
    ];
    all.push(match reserve_otp_attempt {
        Reserve::AndFind(s) => group("reserve_otp_attempt", &[s]),
        Reserve::Alone(s) => group("reserve_otp_attempt", &[s]),
    });
    if let Some(s) = overtaken_by_device_event {
        all.push(group("overtaken_by_device_event", &[s]));
    }
    let named = ciba.named().into_iter().chain(webhooks.named());
    all.extend(named.map(|(name, arity, sql)| Group {
        name: name.to_owned(),
        arity,
        sql: vec![sql.to_owned()],
    }));
    all
}

/// The `$N` placeholders of a statement.
fn placeholders(sql: &str) -> BTreeSet<usize> {
    let mut found = BTreeSet::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse() {
            found.insert(n);
        }
    }
    found
}

/// What is wrong with `q`'s statements, one line per fault.
fn faults(q: &Queries) -> Vec<String> {
    let mut faults = Vec::new();
    for g in groups(q) {
        let mut used = BTreeSet::new();
        for sql in &g.sql {
            assert!(
                !sql.contains('?'),
                "{}: only $N placeholders: {sql}",
                g.name
            );
            let own = placeholders(sql);
            if let Some(&n) = own.iter().find(|&&n| n == 0 || n > g.arity) {
                faults.push(format!("{}: ${n} but its binder binds {}", g.name, g.arity));
            }
            used.extend(own);
        }
        let bound: BTreeSet<usize> = (1..=g.arity).collect();
        if let Some(n) = bound.difference(&used).next() {
            faults.push(format!("{}: binds ${n} but no statement uses it", g.name));
        }
    }
    faults
}

#[test]
fn every_postgres_statement_uses_exactly_what_its_binder_binds() {
    assert_eq!(faults(PgStore::queries()), Vec::<String>::new());
}

#[test]
fn every_sqlite_statement_uses_exactly_what_its_binder_binds() {
    assert_eq!(faults(SqliteStore::queries()), Vec::<String>::new());
}

#[test]
fn a_placeholder_its_binder_does_not_bind_is_a_fault() {
    let mut q = sql::queries(sqlite::queries::dialect());
    q.touch_device =
        Statement::new("UPDATE devices SET last_seen_at = $2, name = $3 WHERE id = $1");
    q.stream_closed = Statement::new("DELETE FROM presence WHERE stream IS NOT NULL");
    assert_eq!(
        faults(&q),
        [
            "touch_device: $3 but its binder binds 2",
            "stream_closed: binds $1 but no statement uses it",
        ]
    );
}

/// The names a binder binds, in order.
#[derive(Default)]
struct Names(Vec<&'static str>);

impl Sink for Names {
    fn bind<T: Storable>(&mut self, name: &'static str, _value: T) {
        self.0.push(name);
    }
}

fn names(params: impl Bind) -> Vec<&'static str> {
    let mut names = Names::default();
    params.bind(&mut names);
    names.0
}

fn assert_distinct(names: &[&str]) {
    let distinct: BTreeSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
}

#[test]
fn named_binders_bind_as_many_distinct_parameters_as_they_declare() {
    let now = Utc::now();
    let phone = device("alice");
    let after = scanned_otp(&phone, now);
    let change = Change {
        expected: Some(after.version - 1),
        guard: Guard {
            device_unrevoked: Some(phone.id),
            unexpired_at: Some(now),
            otp_lookups: Some(StrikeWindow::at(now)),
        },
        event: NewEvent {
            application_id: after.application_id,
            event_type: EventType::TransactionScanned,
            transaction_id: Some(after.id),
            user_id: after.user_id.clone(),
            device_id: Some(phone.id),
            reason: None,
            fraud_reported: false,
            at: now,
        },
        after,
        notices: Vec::new(),
    };
    let bound = names(ChangeParams(&change));
    assert_eq!(bound.len(), ChangeParams::ARITY);
    assert_distinct(&bound);

    let window = StrikeWindow::at(now);
    let strike = StrikeParams {
        device: phone.id,
        window: &window,
    };
    assert_eq!(names(strike).len(), StrikeParams::ARITY);
    let lookup = crate::store::OtpLookup {
        application_id: phone.application_id,
        transaction_id: TransactionId::random(),
        otp_hash: crate::domain::SecretHash::from_slice(&[1; 32]).unwrap_or_else(|| unreachable!()),
    };
    let both = names(StrikeAndLookupParams {
        strike,
        lookup: Some(&lookup),
    });
    assert_eq!(both.len(), StrikeAndLookupParams::ARITY);
    assert_distinct(&both);
}
