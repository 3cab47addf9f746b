//! `createStore(config)`: the five config shapes of API.md, validated in one place. Every
//! rejection is INVALID_CONFIG and names the first bad field; no secret is ever echoed.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{PersistError, Result};
use crate::sqlite::SqlitePath;
use crate::validate;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub name: String,
    pub adapter: AdapterConfig,
}

#[derive(Debug, Clone)]
pub enum AdapterConfig {
    Sqlite {
        path: SqlitePath,
    },
    Postgres(PostgresConfig),
    S3(S3Config),
    P2p(P2pConfig),
    /// A JavaScript object implementing `PersistAdapter`; each call into it is bounded by
    /// `timeout_ms` (config `timeoutMs`, default 30 s).
    Custom {
        timeout_ms: u64,
    },
}

impl AdapterConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            AdapterConfig::Sqlite { .. } => "sqlite",
            AdapterConfig::Postgres(_) => "postgres",
            AdapterConfig::S3(_) => "s3",
            AdapterConfig::P2p(_) => "p2p",
            AdapterConfig::Custom { .. } => "custom",
        }
    }
}

#[derive(Clone, Default)]
pub struct PostgresConfig {
    /// A connection string, or the fields of the object form.
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub ssl: Option<String>,
    pub pool_max: usize,
    pub schema: String,
}

// Hand-written so a password never reaches a log line through `{:?}`.
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("pool_max", &self.pool_max)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub prefix: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct P2pConfig {
    pub method: String,
    pub topic: String,
    pub bootstrap: Vec<String>,
    pub path: Option<String>,
    pub listen: Vec<String>,
}

/// How long one call into a custom adapter may take before it fails with TIMEOUT.
pub const DEFAULT_ADAPTER_TIMEOUT_MS: u64 = 30_000;

fn bad(message: String) -> PersistError {
    PersistError::invalid_config(message)
}

/// Reads one object's fields, rejecting unknown ones (typos would otherwise be silently
/// ignored) and reporting the first problem with the field's dotted name.
struct Fields<'a> {
    scope: &'a str,
    obj: &'a Map<String, Value>,
    parent: String,
}

impl<'a> Fields<'a> {
    fn new(
        scope: &'a str,
        parent: &str,
        obj: &'a Map<String, Value>,
        allowed: &[&str],
    ) -> Result<Self> {
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                let known = allowed
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(bad(format!(
                    "{scope}: unknown field \"{parent}{key}\" (known fields: {known})"
                )));
            }
        }
        Ok(Fields {
            scope,
            obj,
            parent: parent.to_string(),
        })
    }

    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.parent)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!(
                "{}: \"{}\" must be a non-empty string",
                self.scope,
                self.path(key)
            ))),
        }
    }

    fn required_string(&self, key: &str) -> Result<String> {
        self.string(key)?.ok_or_else(|| {
            bad(format!(
                "{}: \"{}\" is required",
                self.scope,
                self.path(key)
            ))
        })
    }

    fn secret(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!(
                "{}: \"{}\" must be a string",
                self.scope,
                self.path(key)
            ))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad(format!(
                "{}: \"{}\" must be true or false",
                self.scope,
                self.path(key)
            ))),
        }
    }

    fn integer(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|v| (min..=max).contains(&v)) => {
                Ok(n.as_u64())
            }
            Some(_) => Err(bad(format!(
                "{}: \"{}\" must be an integer from {min} to {max}",
                self.scope,
                self.path(key)
            ))),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(bad(format!(
                "{}: \"{}\" must be an object",
                self.scope,
                self.path(key)
            ))),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items))
                if items
                    .iter()
                    .all(|i| i.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                Ok(items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect())
            }
            Some(_) => Err(bad(format!(
                "{}: \"{}\" must be an array of non-empty strings",
                self.scope,
                self.path(key)
            ))),
        }
    }
}

/// Parses the config the binding serialised. `cwd` anchors relative paths.
///
/// A custom adapter arrives as `"adapter": {"$custom": {"get": true, "put": true, ...}}`: the
/// binding reports which of the four methods are functions.
pub fn parse(config: &Value, cwd: &Path) -> Result<StoreConfig> {
    let Value::Object(obj) = config else {
        return Err(bad("createStore: the config must be an object".into()));
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => return Err(bad("createStore: \"name\" is required".into())),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(bad(
                "createStore: \"name\" must be a non-empty string".into()
            ))
        }
    };
    validate::name("store name", &name)
        .map_err(|e| bad(format!("createStore: \"name\": {}", e.message)))?;

    let adapter = match obj.get("adapter") {
        None | Some(Value::Null) => "sqlite",
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(custom)) if custom.contains_key("$custom") => {
            return parse_custom(name, obj, custom.get("$custom"));
        }
        Some(_) => "",
    };
    let adapter = match adapter {
        "sqlite" => parse_sqlite(&name, obj, cwd)?,
        "postgres" => AdapterConfig::Postgres(parse_postgres(obj)?),
        "s3" => AdapterConfig::S3(parse_s3(&name, obj)?),
        "p2p" => AdapterConfig::P2p(parse_p2p(obj)?),
        _ => {
            return Err(bad(
                "createStore: \"adapter\" must be \"sqlite\", \"postgres\", \"s3\", \"p2p\" or an object implementing PersistAdapter (get, put, delete, list)".into(),
            ))
        }
    };
    Ok(StoreConfig { name, adapter })
}

fn parse_custom(
    name: String,
    obj: &Map<String, Value>,
    methods: Option<&Value>,
) -> Result<StoreConfig> {
    let f = Fields::new("custom adapter", "", obj, &["name", "adapter", "timeoutMs"])?;
    for method in ["get", "put", "delete", "list"] {
        let present = methods
            .and_then(|m| m.get(method))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !present {
            return Err(bad(format!(
                "custom adapter: \"adapter.{method}\" must be a function"
            )));
        }
    }
    let timeout_ms = f
        .integer("timeoutMs", 1, 24 * 3600 * 1000)?
        .unwrap_or(DEFAULT_ADAPTER_TIMEOUT_MS);
    Ok(StoreConfig {
        name,
        adapter: AdapterConfig::Custom { timeout_ms },
    })
}

fn parse_sqlite(name: &str, obj: &Map<String, Value>, cwd: &Path) -> Result<AdapterConfig> {
    let f = Fields::new("sqlite adapter", "", obj, &["name", "adapter", "path"])?;
    let path = match f.string("path")? {
        Some(p) if p == ":memory:" => SqlitePath::Memory,
        Some(p) => SqlitePath::File(cwd.join(p)),
        None => SqlitePath::File(
            cwd.join(".persist")
                .join(format!("{}.db", file_name_for(name))),
        ),
    };
    Ok(AdapterConfig::Sqlite { path })
}

/// A store name as a file name: ASCII letters, digits, `-`, `_` and inner `.` stay; every other
/// byte becomes `%XX`, so no name can leave the `.persist` folder or collide with another.
pub fn file_name_for(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_postgres(obj: &Map<String, Value>) -> Result<PostgresConfig> {
    const SCOPE: &str = "postgres adapter";
    let f = Fields::new(
        SCOPE,
        "",
        obj,
        &["name", "adapter", "connection", "pool", "schema"],
    )?;
    let mut cfg = PostgresConfig {
        pool_max: 10,
        schema: "public".into(),
        ..Default::default()
    };
    match f.get("connection") {
        None => return Err(bad(format!("{SCOPE}: \"connection\" is required"))),
        Some(Value::String(url)) if !url.is_empty() => cfg.url = Some(url.clone()),
        Some(Value::Object(conn)) => {
            let c = Fields::new(SCOPE, "connection.", conn, &["host", "port", "database", "user", "password", "ssl"])?;
            cfg.host = c.string("host")?;
            cfg.port = c.integer("port", 1, 65535)?.map(|p| p as u16);
            cfg.database = c.string("database")?;
            cfg.user = c.string("user")?;
            cfg.password = c.secret("password")?;
            cfg.ssl = match c.get("ssl") {
                None | Some(Value::Bool(false)) => None,
                Some(Value::Bool(true)) => Some("require".into()),
                Some(Value::String(s)) if s == "require" || s == "prefer" => Some(s.clone()),
                Some(_) => return Err(bad(format!("{SCOPE}: \"connection.ssl\" must be true, false, \"require\" or \"prefer\""))),
            };
        }
        Some(_) => {
            return Err(bad(format!("{SCOPE}: \"connection\" must be a connection string or an object {{ host, port, database, user, password }}")))
        }
    }
    if let Some(pool) = f.object("pool")? {
        let p = Fields::new(SCOPE, "pool.", pool, &["max"])?;
        if let Some(max) = p.integer("max", 1, 10_000)? {
            cfg.pool_max = max as usize;
        }
    }
    if let Some(schema) = f.string("schema")? {
        if schema.len() > 63
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(format!(
                "{SCOPE}: \"schema\" must be at most 63 letters, digits or underscores"
            )));
        }
        cfg.schema = schema;
    }
    Ok(cfg)
}

fn parse_s3(name: &str, obj: &Map<String, Value>) -> Result<S3Config> {
    const SCOPE: &str = "s3 adapter";
    let f = Fields::new(
        SCOPE,
        "",
        obj,
        &[
            "name",
            "adapter",
            "bucket",
            "region",
            "credentials",
            "endpoint",
            "forcePathStyle",
            "prefix",
        ],
    )?;
    let bucket = f.required_string("bucket")?;
    let region = f.string("region")?;
    let (mut access_key_id, mut secret_access_key, mut session_token) = (None, None, None);
    if let Some(creds) = f.object("credentials")? {
        let c = Fields::new(
            SCOPE,
            "credentials.",
            creds,
            &["accessKeyId", "secretAccessKey", "sessionToken"],
        )?;
        access_key_id = Some(c.required_string("accessKeyId")?);
        secret_access_key = Some(
            c.secret("secretAccessKey")?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "{SCOPE}: \"credentials.secretAccessKey\" is required"
                    ))
                })?,
        );
        session_token = c.secret("sessionToken")?;
    }
    let endpoint = f.string("endpoint")?;
    if let Some(e) = &endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(bad(format!(
                "{SCOPE}: \"endpoint\" must be an http:// or https:// URL"
            )));
        }
    }
    let prefix = match f.get("prefix") {
        None => format!("{name}/"),
        Some(Value::String(p)) => p.clone(),
        Some(_) => return Err(bad(format!("{SCOPE}: \"prefix\" must be a string"))),
    };
    Ok(S3Config {
        bucket,
        region,
        access_key_id,
        secret_access_key,
        session_token,
        endpoint,
        force_path_style: f.bool("forcePathStyle")?,
        prefix,
    })
}

fn parse_p2p(obj: &Map<String, Value>) -> Result<P2pConfig> {
    const SCOPE: &str = "p2p adapter";
    let f = Fields::new(
        SCOPE,
        "",
        obj,
        &["name", "adapter", "discovery", "path", "listen"],
    )?;
    let discovery = f
        .object("discovery")?
        .ok_or_else(|| bad(format!("{SCOPE}: \"discovery\" is required")))?;
    let d = Fields::new(
        SCOPE,
        "discovery.",
        discovery,
        &["method", "topic", "bootstrap"],
    )?;
    let method = d.required_string("method")?;
    if method != "mdns" && method != "dht" {
        return Err(bad(format!(
            "{SCOPE}: \"discovery.method\" must be \"mdns\" or \"dht\""
        )));
    }
    Ok(P2pConfig {
        method,
        topic: d.required_string("topic")?,
        bootstrap: d.strings("bootstrap")?,
        path: f.string("path")?,
        listen: f.strings("listen")?,
    })
}

/// The default location of a sqlite store, for messages and docs.
pub fn default_sqlite_path(cwd: &Path, name: &str) -> PathBuf {
    cwd.join(".persist")
        .join(format!("{}.db", file_name_for(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        let e = parse(&v, Path::new("/tmp")).unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::InvalidConfig);
        e.message
    }

    #[test]
    fn sqlite_defaults() {
        let c = parse(&json!({"name": "my-app"}), Path::new("/w")).unwrap();
        match c.adapter {
            AdapterConfig::Sqlite {
                path: SqlitePath::File(p),
            } => assert_eq!(p, Path::new("/w/.persist/my-app.db")),
            other => panic!("{other:?}"),
        }
        let c = parse(
            &json!({"name": "x", "adapter": "sqlite", "path": ":memory:"}),
            Path::new("/w"),
        )
        .unwrap();
        assert!(matches!(
            c.adapter,
            AdapterConfig::Sqlite {
                path: SqlitePath::Memory
            }
        ));
    }

    #[test]
    fn names_the_bad_field() {
        assert!(err(json!({})).contains("\"name\" is required"));
        assert!(err(json!({"name": ""})).contains("\"name\""));
        assert!(err(json!({"name": "a", "adapter": "mysql"})).contains("\"adapter\""));
        assert!(err(json!({"name": "a", "adapter": "s3"}))
            .contains("s3 adapter: \"bucket\" is required"));
        assert!(err(json!({"name": "a", "adapter": "sqlite", "pth": "x"}))
            .contains("unknown field \"pth\""));
        assert!(
            err(json!({"name": "a", "adapter": "postgres"})).contains("\"connection\" is required")
        );
        assert!(
            err(json!({"name": "a", "adapter": "postgres", "connection": {"port": 0}}))
                .contains("connection.port")
        );
        assert!(err(
            json!({"name": "a", "adapter": "postgres", "connection": "x", "pool": {"max": 0}})
        )
        .contains("pool.max"));
        assert!(err(
            json!({"name": "a", "adapter": "p2p", "discovery": {"method": "x", "topic": "t"}})
        )
        .contains("discovery.method"));
        assert!(
            err(json!({"name": "a", "adapter": {"$custom": {"get": true, "delete": true}}}))
                .contains("adapter.put")
        );
    }

    #[test]
    fn secrets_are_not_echoed() {
        let m = err(
            json!({"name": "a", "adapter": "postgres", "connection": {"password": "hunter2", "port": "x"}}),
        );
        assert!(!m.contains("hunter2"));
        let cfg = parse_postgres(
            json!({"connection": {"password": "hunter2"}})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn file_names_stay_in_the_folder() {
        assert_eq!(file_name_for("my-app"), "my-app");
        assert_eq!(file_name_for("../x"), "%2E.%2Fx");
        assert_eq!(file_name_for("a b"), "a%20b");
    }
}
