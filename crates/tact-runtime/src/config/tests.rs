use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/tact.example.toml")
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(f.path(), text).expect("write");
    f
}

#[test]
fn embedded_defaults_are_valid() {
    let s = Settings::load(None, &[]).expect("defaults");
    assert_eq!(s.batch_max_events, 1000);
    assert_eq!(s.output, OutputFormat::SingleObject);
}

#[test]
fn the_shipped_example_config_is_valid_and_equal_to_the_defaults() {
    let from_example = Settings::load(Some(&example()), &[]).expect("example loads");
    assert_eq!(from_example, Settings::load(None, &[]).expect("defaults"));
}

#[test]
fn environment_beats_file_beats_defaults() {
    let f = write("[pipeline]\nbatch_max_events = 50\nbatch_max_wait_ms = 7\n");
    let s = Settings::load(
        Some(f.path()),
        &env(&[("TACT__PIPELINE__BATCH_MAX_EVENTS", "60")]),
    )
    .expect("load");
    assert_eq!(s.batch_max_events, 60);
    assert_eq!(s.batch_max_wait, Duration::from_millis(7));
    assert_eq!(s.shutdown_deadline, Duration::from_millis(10_000));
}

#[test]
fn librdkafka_settings_pass_through_from_file_and_environment() {
    let f = write(
        "[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"socket.timeout.ms\" = 5000\n",
    );
    let s = Settings::load(
        Some(f.path()),
        &env(&[
            ("TACT__KAFKA__CLIENT__SASL_PASSWORD", "hunter2"),
            ("TACT__KAFKA__CLIENT__SASL_USERNAME", "svc"),
            (
                "TACT__KAFKA__BOOTSTRAP_SERVERS",
                "broker-1:9093,broker-2:9093",
            ),
        ]),
    )
    .expect("load");
    assert_eq!(s.kafka.client["security.protocol"], "SASL_SSL");
    assert_eq!(s.kafka.client["socket.timeout.ms"], "5000");
    assert_eq!(s.kafka.client["sasl.password"], "hunter2");
    assert_eq!(s.kafka.client["sasl.username"], "svc");
    assert_eq!(s.kafka.bootstrap_servers, "broker-1:9093,broker-2:9093");
    let shown = s.describe();
    assert!(
        !shown.contains("hunter2") && shown.contains("***"),
        "{shown}"
    );
}

#[test]
fn every_invalid_key_is_named_in_one_error() {
    let f = write(
        "[pipeline]\nbatch_max_events = 0\n[http]\nlisten = \"nowhere\"\n[topics]\ndecisions = \"clickstream\"\n[policy]\nsession_gap_minutes = 0\n",
    );
    let err = Settings::load(Some(f.path()), &[]).unwrap_err();
    let text = err.to_string();
    for key in [
        "pipeline.batch_max_events",
        "http.listen",
        "topics.clickstream and topics.decisions",
        "policy.session_gap_minutes",
    ] {
        assert!(text.contains(key), "missing {key} in:\n{text}");
    }
}

#[test]
fn unknown_keys_and_bad_enum_values_are_rejected_with_their_key() {
    let f = write("[pipeline]\nbatch_size = 10\n");
    let text = Settings::load(Some(f.path()), &[]).unwrap_err().to_string();
    assert!(text.contains("batch_size"), "{text}");
    let f = write("[output]\nformat = \"protobuf\"\n");
    let text = Settings::load(Some(f.path()), &[]).unwrap_err().to_string();
    assert!(
        text.contains("protobuf") && text.contains("format"),
        "{text}"
    );
}

#[test]
fn safety_keys_cannot_be_overridden_through_passthrough() {
    let text = Settings::load(
        None,
        &env(&[("TACT__KAFKA__CLIENT__ENABLE_AUTO_COMMIT", "true")]),
    )
    .unwrap_err()
    .to_string();
    assert!(text.contains("set by tact"), "{text}");
}

#[test]
fn a_producer_limit_too_small_for_dead_letters_is_refused() {
    let text = Settings::load(
        None,
        &env(&[("TACT__KAFKA__CLIENT__MESSAGE_MAX_BYTES", "4096")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("kafka.client.message_max_bytes") && text.contains("dead letters"),
        "{text}"
    );
    let ok = Settings::load(
        None,
        &env(&[("TACT__KAFKA__CLIENT__MESSAGE_MAX_BYTES", "2000000")]),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let text = Settings::load(Some(Path::new("/nonexistent/tact.toml")), &[])
        .unwrap_err()
        .to_string();
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn the_shipped_policy_file_is_valid_and_equal_to_the_embedded_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/policy.toml");
    let from_file = load_policy(&path).expect("deploy/policy.toml is valid");
    assert_eq!(
        from_file,
        Settings::load(None, &[]).expect("defaults").rules.policy
    );
    assert!(from_file
        .sensitivity
        .categories
        .values()
        .any(|t| *t == tact_core::Tier::NeverRemember));
}

#[test]
fn a_policy_file_replaces_the_inline_policy_and_bad_files_name_the_key() {
    let good = write("version = \"custom-7\"\n[holdout]\nshare = 0.1\n");
    let f = write(&format!("[rules]\npolicy_file = {:?}\n", good.path()));
    let s = Settings::load(Some(f.path()), &[]).expect("load");
    assert_eq!(s.rules.policy.version, "custom-7");
    assert!((s.rules.policy.holdout.share - 0.1).abs() < 1e-9);
    assert!(
        s.rules.policy.sensitivity.categories.is_empty(),
        "a policy file is complete on its own"
    );
    let bad = write("[quiet_hours]\nstart = \"9pm\"\n[holdout]\nshare = 0.9\n");
    let f = write(&format!("[rules]\npolicy_file = {:?}\n", bad.path()));
    let text = Settings::load(Some(f.path()), &[]).unwrap_err().to_string();
    assert!(
        text.contains("quiet_hours.start") && text.contains("holdout.share"),
        "{text}"
    );
}

#[test]
fn the_example_catalog_loads_and_indexes_compatibility() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/catalog.example.toml");
    let f = write(&format!("[rules]\ncatalog_file = {:?}\n", path));
    let s = Settings::load(Some(f.path()), &[]).expect("load");
    let fits: Vec<_> = s
        .rules
        .catalog
        .compatible_in("widgets", "widgetizers-2")
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(fits, ["widgets-1", "widgets-2"]);
    let dup = write(
        "[[product]]\nid = \"a\"\ncategory = \"c\"\n[[product]]\nid = \"a\"\ncategory = \"c\"\n",
    );
    let f = write(&format!("[rules]\ncatalog_file = {:?}\n", dup.path()));
    assert!(Settings::load(Some(f.path()), &[])
        .unwrap_err()
        .to_string()
        .contains("listed twice"));
}

#[test]
fn the_example_knowledge_base_loads_and_a_broken_one_names_its_entry() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/faq.example.toml");
    let f = write(&format!("[rules]\nfaq_file = {:?}\n", path));
    let s = Settings::load(Some(f.path()), &[]).expect("load");
    let answers = s.rules.faq.search("how do I get a refund", 1, &[]);
    assert_eq!(answers[0].faq_id, "returns");
    assert!(s.describe().contains("answers)"), "{}", s.describe());
    let broken = write("[[entry]]\nid = \"x\"\nquestion = \"\"\nanswer = \"a\"\n");
    let f = write(&format!("[rules]\nfaq_file = {:?}\n", broken.path()));
    let text = Settings::load(Some(f.path()), &[]).unwrap_err().to_string();
    assert!(
        text.contains("rules.faq_file") && text.contains("question must not be empty"),
        "{text}"
    );
}

#[test]
fn a_file_with_four_problems_gets_all_four_named_and_a_bad_variable_is_named_as_set() {
    let f = write(
        "[kafka]\nbootstrap_servers = \"http://broker:notaport\"\n[topics]\nclickstream = \"bad topic\"\n[http]\nlisten = \"nope\"\n[policy]\nsession_gap_minutes = 0\n",
    );
    let err = Settings::load(Some(f.path()), &[]).unwrap_err();
    assert_eq!(err.problems.len(), 4, "{err}");
    for key in [
        "kafka.bootstrap_servers",
        "topics.clickstream",
        "http.listen",
        "policy.session_gap_minutes",
    ] {
        assert!(
            err.problems.iter().any(|p| p.starts_with(key)),
            "{key}: {err}"
        );
    }
    let env = vec![(
        "TACT__PIPELINE__BATCH_MAX_EVENTS".to_owned(),
        "many".to_owned(),
    )];
    let err = Settings::load(None, &env).unwrap_err();
    assert!(
        err.problems[0].starts_with("TACT__PIPELINE__BATCH_MAX_EVENTS: invalid type"),
        "{err}"
    );
}
