//! Layering, naming bad values, the engine, redaction.

use std::collections::HashMap;
use std::path::PathBuf;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn defaults_listen_on_loopback_only() {
    let config = ServerConfig::load(None, &env_of(&[])).ok();
    assert!(config.is_some_and(|c| c.listen.ip().is_loopback() && !c.insecure_plaintext));
}

#[test]
fn environment_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("assent-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("server.toml");
    let written = std::fs::write(&path, "create_burst = 7\nsweep_interval_ms = 250\n");
    assert!(written.is_ok());
    let config = ServerConfig::load(Some(&path), &env_of(&[("ASSENT_CREATE_BURST", "9")]));
    let config = config.ok();
    assert_eq!(config.as_ref().map(|c| c.create_burst), Some(9));
    assert_eq!(config.map(|c| c.sweep_interval_ms), Some(250));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_environment_values_name_the_variable() {
    let error = ServerConfig::load(None, &env_of(&[("ASSENT_LISTEN", "nowhere")])).err();
    assert!(error.is_some_and(|e| e.to_string().contains("ASSENT_LISTEN")));
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = std::env::temp_dir().join(format!("assent-config-u-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("server.toml");
    assert!(std::fs::write(&path, "listne = \"127.0.0.1:1\"\n").is_ok());
    assert!(ServerConfig::load(Some(&path), &env_of(&[])).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn engine_is_sqlite_in_the_data_dir_unless_a_url_says_otherwise() {
    let env = env_of(&[("ASSENT_DATA_DIR", "/srv/assent")]);
    let config = ServerConfig::load(None, &env).ok();
    assert_eq!(
        config.map(|c| c.engine()),
        Some(Engine::Sqlite {
            path: PathBuf::from("/srv/assent/assent.db")
        })
    );
    let env = env_of(&[("ASSENT_DATABASE_URL", "postgres://u@h/db")]);
    let config = ServerConfig::load(None, &env).ok();
    assert!(matches!(
        config.map(|c| c.engine()),
        Some(Engine::Postgres { .. })
    ));
    let env = env_of(&[("ASSENT_DATABASE_URL", "sqlite:///tmp/x.db")]);
    let config = ServerConfig::load(None, &env).ok();
    assert_eq!(
        config.map(|c| c.engine()),
        Some(Engine::Sqlite {
            path: PathBuf::from("/tmp/x.db")
        })
    );
}

#[test]
fn every_setting_is_read_from_its_variable() {
    let defaults = ServerConfig::default();
    let fields = serde_json::to_value(&defaults).unwrap_or_default();
    let mut checked = 0;
    for key in ServerConfig::keys(&defaults) {
        let changed = match &fields[&key] {
            serde_json::Value::Number(n) if n.is_u64() => (n.as_u64().unwrap_or(0) + 1).to_string(),
            serde_json::Value::Number(n) => format!("{}", n.as_f64().unwrap_or(0.0) + 0.5),
            serde_json::Value::Bool(b) => (!b).to_string(),
            _ => continue,
        };
        let name = format!("ASSENT_{}", key.to_uppercase());
        let config = ServerConfig::load(None, &env_of(&[(name.as_str(), changed.as_str())]));
        let read = serde_json::to_value(config.ok()).unwrap_or_default();
        assert_ne!(read[&key], fields[&key], "{name} was not read");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} numeric or boolean settings");
    let off = ServerConfig::load(None, &env_of(&[("ASSENT_METRICS_LISTEN", "off")]));
    assert!(off.is_ok_and(|c| c.metrics_listen.is_none()));
}

#[test]
fn debug_redacts_the_database_url() {
    let env = env_of(&[("ASSENT_DATABASE_URL", "postgres://u:hunter2@h/db")]);
    let config = ServerConfig::load(None, &env).ok();
    assert!(config.is_some_and(|c| !format!("{c:?}").contains("hunter2")));
}
