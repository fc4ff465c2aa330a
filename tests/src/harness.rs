//! Databases, servers, applications and clients for tests.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use assent_proto::v1::relying_party_service_client::RelyingPartyServiceClient;
use assent_server::domain::{ManualClock, SystemClock};
use assent_server::store::{PgLimits, PgStore, SqliteStore, Store};
use assent_server::{ServerConfig, TimeSource};
use sqlx::Connection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Where test databases are created: `ASSENT_TEST_DATABASE_URL`, else
/// `DATABASE_URL`, else the local PostgreSQL as user `postgres` if one
/// listens on 127.0.0.1:5432, else a throwaway cluster started from the
/// installed binaries for this run ([`crate::throwaway_pg`]).
pub fn admin_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) =
            std::env::var("ASSENT_TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL"))
        {
            return url;
        }
        let local = SocketAddr::from(([127, 0, 0, 1], 5432));
        if std::net::TcpStream::connect_timeout(&local, std::time::Duration::from_millis(300))
            .is_ok()
        {
            return "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
        }
        crate::throwaway_pg::admin_url()
    })
    .clone()
}

/// Replaces the database name of a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let prefix_end = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..prefix_end], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Where a [`TestDb`] lives.
enum Place {
    /// A database on the PostgreSQL server.
    Postgres(String),
    /// A directory holding the SQLite file.
    Sqlite(crate::ScratchDir),
}

/// A fresh database, dropped when the value is.
pub struct TestDb {
    /// Its URL (`postgres://…` or `sqlite://…`).
    pub url: String,
    place: Place,
}

impl TestDb {
    /// Where this database's PostgreSQL listens (for a fault proxy in front
    /// of it); 127.0.0.1:5432 if the URL names no address.
    pub fn address(&self) -> std::net::SocketAddr {
        self.url
            .split("://")
            .nth(1)
            .and_then(|rest| {
                rest.rsplit_once('@')
                    .map_or(Some(rest), |(_, host)| Some(host))
            })
            .and_then(|host| host.split('/').next())
            .and_then(|host| host.parse().ok())
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 5432)))
    }

    /// A fresh SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = crate::scratch_dir("test");
        Self {
            url: format!("sqlite://{}", dir.join("assent.db").display()),
            place: Place::Sqlite(dir),
        }
    }

    /// Whether this is the embedded engine.
    pub fn is_sqlite(&self) -> bool {
        matches!(self.place, Place::Sqlite(_))
    }

    /// Creates an empty PostgreSQL database.
    pub async fn create() -> Self {
        let name = format!("assent_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at {} ({e}); start it or set ASSENT_TEST_DATABASE_URL",
                    admin_url()
                )
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        Self {
            url: with_database(&admin_url(), &name),
            place: Place::Postgres(name),
        }
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> Arc<dyn Store> {
        match &self.place {
            Place::Postgres(_) => {
                let store = PgStore::connect(&self.url, PgLimits::default())
                    .await
                    .expect("connect store");
                store.migrate().await.expect("migrate");
                Arc::new(store)
            }
            Place::Sqlite(dir) => {
                let store = SqliteStore::open(&dir.join("assent.db"))
                    .await
                    .expect("open sqlite");
                store.migrate().await.expect("migrate");
                Arc::new(store)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = match &self.place {
            Place::Postgres(name) => name.clone(),
            // The scratch directory removes itself.
            Place::Sqlite(_) => return,
        };
        // Drop runs outside async context; a short-lived runtime on its own
        // thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

/// An embedded server on a loopback port.
pub struct TestServer {
    /// Its address.
    pub addr: SocketAddr,
    /// The database it uses.
    pub database_url: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    config: ServerConfig,
    time: TimeSource,
}

impl TestServer {
    /// Starts a server on a random port.
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts a server whose use cases read `clock` (a test moves it).
    pub async fn start_with_clock(db: &TestDb, clock: Arc<ManualClock>) -> Self {
        let config = Self::config(db, |_| {});
        Self::launch(config, db.url.clone(), TimeSource::Given(clock)).await
    }

    /// Starts a server whose use cases read `clock`, after adjusting its
    /// configuration.
    pub async fn start_with_clock_and(
        db: &TestDb,
        clock: Arc<ManualClock>,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let config = Self::config(db, adjust);
        Self::launch(config, db.url.clone(), TimeSource::Given(clock)).await
    }

    /// Starts a server whose use cases read `time`.
    pub async fn start_with_time(db: &TestDb, time: TimeSource) -> Self {
        let config = Self::config(db, |_| {});
        Self::launch(config, db.url.clone(), time).await
    }

    /// Starts a server after adjusting its configuration.
    pub async fn start_with(db: &TestDb, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let config = Self::config(db, adjust);
        let time = TimeSource::Database(Arc::new(SystemClock));
        Self::launch(config, db.url.clone(), time).await
    }

    fn config(db: &TestDb, adjust: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
        let mut config = ServerConfig {
            database_url: Some(db.url.clone()),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sweep_interval_ms: 100,
            metrics_listen: None,
            drain_timeout_seconds: 3,
            ..ServerConfig::default()
        };
        adjust(&mut config);
        config
    }

    async fn launch(mut config: ServerConfig, database_url: String, time: TimeSource) -> Self {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind test server");
        let addr = listener.local_addr().expect("local addr");
        config.listen = addr;
        let stop = CancellationToken::new();
        let run =
            assent_server::run_with_time(config.clone(), listener, stop.clone(), time.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = run.await {
                panic!("test server failed: {error:?}");
            }
        });
        let server = Self {
            addr,
            database_url,
            stop,
            task: Some(task),
            config,
            time,
        };
        server.wait_ready().await;
        server
    }

    /// Waits until the health service answers SERVING (the store is open and
    /// migrated by then; a bare TCP connect would succeed earlier).
    async fn wait_ready(&self) {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        for _ in 0..400 {
            if let Ok(channel) = Endpoint::from_shared(self.url())
                .expect("url")
                .connect()
                .await
            {
                let serving = HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1);
                if serving {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("test server on {} never accepted connections", self.addr);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to test server")
    }

    /// Drains and stops the server (SIGTERM path).
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// Stops the server and starts a new one on the same port and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        let fresh = Self::launch(
            self.config.clone(),
            self.database_url.clone(),
            self.time.clone(),
        )
        .await;
        *self = fresh;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An application created directly in the store, with its API key.
#[derive(Clone)]
pub struct TestApp {
    /// Application id.
    pub id: String,
    /// API key text.
    pub api_key: String,
}

impl TestApp {
    /// Creates an application named `name`.
    pub async fn create(db: &TestDb, name: &str) -> Self {
        let store = db.store().await;
        let (app, api_key) = assent_server::admin::create_application(store.as_ref(), name)
            .await
            .expect("create application");
        Self {
            id: app.id.to_string(),
            api_key,
        }
    }
}

/// Adds `authorization: Bearer <key>`.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A relying-party client.
pub type RpClient = RelyingPartyServiceClient<InterceptedService<Channel, Bearer>>;

/// A relying-party client for `api_key`.
pub async fn rp_client(server: &TestServer, api_key: &str) -> RpClient {
    rp_client_at(&server.url(), api_key).await
}

/// A relying-party client for `api_key` on the server at `url`.
pub async fn rp_client_at(url: &str, api_key: &str) -> RpClient {
    let channel = Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect to test server");
    rp_client_on(channel, api_key)
}

/// A relying-party client for `api_key` on an open channel (shared with
/// other calls).
pub fn rp_client_on(channel: Channel, api_key: &str) -> RpClient {
    let value = format!("Bearer {api_key}").parse().expect("ascii key");
    RelyingPartyServiceClient::with_interceptor(channel, Bearer(value))
}

/// The path of a workspace binary built by `cargo test --workspace`
/// (`target/<profile>/NAME`, next to this test executable's `deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// Creates an enrollment code for `user`.
pub async fn enrollment_code(rp: &mut RpClient, user: &str) -> String {
    rp.create_enrollment(assent_proto::v1::CreateEnrollmentRequest {
        user_id: user.to_owned(),
        ttl_seconds: 0,
    })
    .await
    .expect("create enrollment")
    .into_inner()
    .code
}

/// The transaction as the relying party sees it now.
pub async fn transaction(rp: &mut RpClient, id: &str) -> assent_proto::v1::Transaction {
    rp.get_transaction(assent_proto::v1::GetTransactionRequest {
        transaction_id: id.to_owned(),
    })
    .await
    .expect("get transaction")
    .into_inner()
    .transaction
    .expect("a transaction in the response")
}

/// A device as the relying party sees it (`GetDevice`).
pub async fn device(rp: &mut RpClient, id: &str) -> assent_proto::v1::Device {
    rp.get_device(assent_proto::v1::GetDeviceRequest {
        device_id: id.to_owned(),
    })
    .await
    .expect("get device")
    .into_inner()
    .device
    .expect("a device in the response")
}

/// Waits up to `secs` seconds until the device is shown disconnected.
pub async fn until_disconnected(rp: &mut RpClient, id: &str, secs: u64) {
    crate::within(secs, "the device to be shown disconnected", async {
        while device(rp, id).await.connected {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
