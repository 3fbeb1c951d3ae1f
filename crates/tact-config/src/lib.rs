//! tact-config: the one way tact's processes read configuration.
//!
//! Embedded defaults < the `--config` file < `PREFIX__SECTION__KEY` environment variables, merged
//! and extracted into a typed raw config. Invariant: every problem is reported with the key at
//! fault (as the user wrote it), all at once, never just the first.

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

/// Merges `defaults`, then `file` (if any), then the `env` pairs starting with `prefix` (e.g.
/// `TACT__`; `TACT__PIPELINE__BATCH_MAX_EVENTS` sets `pipeline.batch_max_events`), and extracts
/// `T`. `env` is passed in (not read here) so tests can supply their own.
pub fn load<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    env: &[(String, String)],
    prefix: &str,
) -> Result<T, Vec<String>> {
    let mut figment = Figment::from(Toml::string(defaults));
    if let Some(path) = file {
        if !path.exists() {
            return Err(vec![format!(
                "config file {} does not exist",
                path.display()
            )]);
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(EnvVars {
        toml: env_toml(env, prefix)?,
    });
    figment.extract().map_err(|e| {
        e.into_iter()
            .map(|e| {
                // A value from the environment is named by its variable, as the user set it.
                if e.metadata.as_ref().is_some_and(|m| m.name == ENV_SOURCE) {
                    let keys = e.path.iter().skip_while(|p| p.as_str() == "default");
                    let var: Vec<String> = keys.map(|p| p.to_ascii_uppercase()).collect();
                    return format!("{prefix}{}: {}", var.join("__"), e.kind);
                }
                // Figment names keys by profile ("default.output.format"); users wrote
                // "output.format".
                e.to_string().replace("\"default.", "\"")
            })
            .collect()
    })
}

/// What figment calls the environment's values (and how errors find them).
const ENV_SOURCE: &str = "environment variables";

/// The `PREFIX__SECTION__KEY` pairs as a figment provider of their own, so an error in one of
/// them names the variable, not a TOML string.
struct EnvVars {
    toml: String,
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(&self.toml).data()
    }
}

/// The process environment's variables starting with `prefix`.
pub fn process_env(prefix: &str) -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect()
}

/// `PREFIX__SECTION__KEY=value` pairs as TOML tables (one header per section).
fn env_toml(env: &[(String, String)], prefix: &str) -> Result<String, Vec<String>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in env {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            problems.push(format!("{key}: expected {prefix}SECTION__KEY"));
            continue;
        }
        let (path, leaf) = parts.split_at(parts.len() - 1);
        sections
            .entry(path.join("."))
            .or_default()
            .push((leaf[0].clone(), toml_value(value)));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = String::new();
    for (section, pairs) in sections {
        out.push_str(&format!("[{section}]\n"));
        for (leaf, value) in pairs {
            out.push_str(&format!("{leaf} = {value}\n"));
        }
    }
    Ok(out)
}

/// An environment value as a TOML value: booleans, numbers and `[...]` arrays as such; anything
/// else (including "+5" or "12:30", which only look numeric) a string.
fn toml_value(value: &str) -> String {
    let typed = value == "true"
        || value == "false"
        || (value.parse::<i64>().is_ok() && !value.starts_with('+'))
        || (value.parse::<f64>().is_ok()
            && value.contains('.')
            && !value.contains(':')
            && !value.starts_with('+'))
        || (value.starts_with('[') && value.ends_with(']'));
    if typed {
        value.to_owned()
    } else {
        serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Raw {
        a: A,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct A {
        n: i64,
        s: String,
        list: Vec<String>,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const DEFAULTS: &str = "[a]\nn = 1\ns = \"x\"\nlist = []\n";

    #[test]
    fn environment_overrides_defaults_with_typed_values() {
        let raw: Raw = load(
            DEFAULTS,
            None,
            &env(&[
                ("P__A__N", "7"),
                ("P__A__S", "+5"),
                ("P__A__LIST", "[\"u\", \"v\"]"),
                ("OTHER", "9"),
            ]),
            "P__",
        )
        .expect("load");
        assert_eq!(
            raw.a,
            A {
                n: 7,
                s: "+5".into(),
                list: vec!["u".into(), "v".into()]
            }
        );
    }

    #[test]
    fn malformed_variables_and_bad_values_name_their_keys() {
        let errs = load::<Raw>(
            DEFAULTS,
            None,
            &env(&[("P__N", "1"), ("P____X", "1")]),
            "P__",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.contains("expected P__SECTION__KEY")));
        let errs = load::<Raw>(DEFAULTS, None, &env(&[("P__A__N", "seven")]), "P__").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("P__A__N: invalid type") && !errs[0].contains("TOML source"),
            "the variable at fault is named: {errs:?}"
        );
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let errs =
            load::<Raw>(DEFAULTS, Some(Path::new("/nonexistent/x.toml")), &[], "P__").unwrap_err();
        assert!(errs[0].contains("does not exist"));
    }
}
