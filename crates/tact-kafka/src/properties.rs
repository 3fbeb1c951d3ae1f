//! What librdkafka knows about its own settings, asked of librdkafka itself: whether a
//! passthrough key exists (a mistyped `sasl.passwrd` is refused with a suggestion instead of
//! being ignored), whether its value is valid, and which keys hold secrets (never printed).

use crate::MANAGED_KEYS;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The keys librdkafka documents as sensitive (`_RK_SENSITIVE`), with any key that looks like a
/// secret by name: `*.pem`, `*password*`, `*secret*`, `*passphrase*`, `*token*`, keys and key
/// stores, and OAuth configs.
pub fn is_sensitive(key: &str) -> bool {
    const DOCUMENTED: [&str; 13] = [
        "ssl.key.location",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl_key",
        "ssl.ca.pem",
        "ssl.keystore.password",
        "sasl.username",
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
    ];
    let k = key.to_ascii_lowercase().replace('_', ".");
    DOCUMENTED.contains(&k.as_str())
        || DOCUMENTED.contains(&key)
        || k.ends_with(".pem")
        || k.ends_with(".key")
        || k.contains("password")
        || k.contains("passw")
        || k.contains("pwd")
        || k.contains("secret")
        || k.contains("passphrase")
        || k.contains("token")
        || k.contains("private.key")
        || k.contains("keystore")
        || (k.contains("oauthbearer") && k.ends_with(".config"))
}

/// What the value of `key` may be shown as.
pub fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_sensitive(key) {
        "***"
    } else {
        value
    }
}

/// Every property name librdkafka has (global and topic level, aliases included), from the
/// table librdkafka prints of itself; for suggestions.
#[allow(unsafe_code)]
fn property_names() -> &'static BTreeSet<String> {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut table = Vec::new();
        // SAFETY: a private temporary FILE that librdkafka writes its property table to; read
        // back with stdio and closed here.
        unsafe {
            let fp = libc::tmpfile();
            if fp.is_null() {
                return BTreeSet::new();
            }
            rdkafka::bindings::rd_kafka_conf_properties_show(fp.cast());
            libc::fflush(fp);
            libc::rewind(fp);
            let mut buf = [0u8; 8192];
            loop {
                let n = libc::fread(buf.as_mut_ptr().cast(), 1, buf.len(), fp);
                if n == 0 {
                    break;
                }
                table.extend_from_slice(&buf[..n]);
            }
            libc::fclose(fp);
        }
        String::from_utf8_lossy(&table)
            .lines()
            .filter_map(|line| {
                let (name, _) = line.split_once('|')?;
                let name = name.trim();
                let plausible = !name.is_empty()
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_'
                    });
                plausible.then(|| name.to_owned())
            })
            .collect()
    })
}

/// The known property closest to a mistyped `key`, if one is close.
fn suggestion(key: &str) -> Option<&'static str> {
    property_names()
        .iter()
        .map(|n| (strsim::jaro_winkler(key, n), n))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.as_str())
}

/// Problems with `kafka.bootstrap_servers`: a comma-separated list of `host:port` (an IPv6 host in
/// brackets), with no scheme and a port librdkafka can dial. One problem per bad entry.
pub fn check_bootstrap(servers: &str) -> Vec<String> {
    if servers.trim().is_empty() {
        return vec!["kafka.bootstrap_servers: must not be empty".to_owned()];
    }
    let mut problems = Vec::new();
    for entry in servers.split(',').map(str::trim) {
        let bad = |why: &str| {
            format!(
                "kafka.bootstrap_servers: {entry:?} {why} (expected host:port, e.g. broker-1:9092)"
            )
        };
        if entry.is_empty() {
            problems.push(bad("is empty (a stray comma?)"));
            continue;
        }
        if entry.contains("://") {
            problems.push(bad("has a scheme; give the address only"));
            continue;
        }
        let Some((host, port)) = entry.rsplit_once(':') else {
            problems.push(bad("has no port"));
            continue;
        };
        let host_ok = if let Some(inner) = host.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        if !host_ok {
            problems.push(bad("is not a host name or address"));
        } else if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            problems.push(bad("has no valid port (1-65535)"));
        }
    }
    problems
}

/// Problems with librdkafka passthrough settings (`kafka.client.<key>` as written, so a key
/// from the environment with underscores is named as given): keys tact manages, keys
/// librdkafka does not know, values it refuses. Secret values never appear in a message.
pub fn check_client<'a>(entries: impl IntoIterator<Item = (&'a str, String)>) -> Vec<String> {
    let mut problems = Vec::new();
    for (written, value) in entries {
        let key = written.replace('_', ".");
        if key == "group.instance.id" {
            problems.push(format!(
                "kafka.client.{written}: use kafka.instance_id (static membership) instead"
            ));
            continue;
        }
        if MANAGED_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "kafka.client.{written}: set by tact for its delivery guarantee; remove it"
            ));
            continue;
        }
        let mut one = ClientConfig::new();
        one.set_log_level(RDKafkaLogLevel::Emerg);
        one.set(&key, &value);
        match one.create_native_config() {
            Ok(_) => {}
            Err(KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..)) => {
                let hint = suggestion(&key)
                    .map(|s| format!("; did you mean {s}?"))
                    .unwrap_or_default();
                problems.push(format!(
                    "kafka.client.{written}: librdkafka has no setting {key}{hint}"
                ));
            }
            Err(KafkaError::ClientConfig(_, description, ..)) => {
                // librdkafka may quote the value; a secret's is masked.
                let why = if is_sensitive(&key) && !value.is_empty() {
                    description.replace(&value, "***")
                } else {
                    description
                };
                problems.push(format!("kafka.client.{written}: {why}"));
            }
            Err(e) => problems.push(format!("kafka.client.{written}: {e}")),
        }
    }
    problems
}

#[cfg(test)]
mod tests {

    #[test]
    fn bootstrap_servers_must_be_host_port_lists() {
        for ok in [
            "localhost:9092",
            "b-1.kafka.internal:9092, b-2:9093",
            "[::1]:9092",
            "10.0.0.5:19092",
        ] {
            assert!(
                check_bootstrap(ok).is_empty(),
                "{ok}: {:?}",
                check_bootstrap(ok)
            );
        }
        for (bad, why) in [
            ("http://broker:9092", "scheme"),
            ("broker:notaport", "valid port"),
            ("a:9092;b", "valid port"),
            ("broker", "no port"),
            ("a:9092,,b:9092", "stray comma"),
            ("bro ker:9092", "host name"),
            ("broker:0", "valid port"),
        ] {
            let problems = check_bootstrap(bad);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(
                problems[0].contains(why) && problems[0].starts_with("kafka.bootstrap_servers"),
                "{bad}: {problems:?}"
            );
        }
        assert_eq!(check_bootstrap(" ").len(), 1);
    }
    use super::*;

    #[test]
    fn librdkafka_lists_its_properties() {
        let names = property_names();
        assert!(
            names.contains("sasl.password") && names.contains("acks"),
            "{names:?}"
        );
    }

    #[test]
    fn secrets_are_recognised_by_librdkafkas_list_and_by_name() {
        for key in [
            "sasl.password",
            "sasl_password",
            "ssl.key.pem",
            "ssl.certificate.pem",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "ssl.keystore.password",
            "sasl.username",
            "ssl.key.location",
            "sasl.passwrd",
        ] {
            assert!(is_sensitive(key), "{key}");
            assert_eq!(shown(key, "hunter2"), "***");
        }
        for key in [
            "bootstrap.servers",
            "security.protocol",
            "linger.ms",
            "ssl.ca.location",
        ] {
            assert!(!is_sensitive(key), "{key}");
        }
    }

    #[test]
    fn a_mistyped_key_is_refused_with_a_suggestion_and_a_bad_secret_value_is_not_echoed() {
        let p = check_client([
            ("sasl.passwrd", "hunter2".to_owned()),
            ("socket_timeout_ms", "5000".to_owned()),
            ("linger.ms", "not-a-number".to_owned()),
            ("enable.idempotence", "false".to_owned()),
            ("sasl.password", "hunter2".to_owned()),
        ]);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].contains("kafka.client.sasl.passwrd")
                && p[0].contains("did you mean sasl.password?"),
            "{p:?}"
        );
        assert!(p[1].starts_with("kafka.client.linger.ms:"), "{p:?}");
        assert!(p[2].contains("set by tact"), "{p:?}");
        assert!(p.iter().all(|m| !m.contains("hunter2")), "{p:?}");
    }
}
