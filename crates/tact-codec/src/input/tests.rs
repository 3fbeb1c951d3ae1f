use super::*;
use crate::{decode_decision, Encoder, OutputFormat};
use proptest::prelude::*;
use tact_core::{DecisionKind, Reason};

const MAX: usize = 1 << 20;

fn sample() -> ClickEvent {
    ClickEvent {
        event_id: "e-1".into(),
        customer_id: "cust-1".into(),
        session_id: "sess-1".into(),
        event_time: Timestamp(1_763_800_000_000),
        kind: EventKind::ProductView,
        page: Some("/p/widget".into()),
        category: Some("widgets".into()),
        product_id: Some("w-9".into()),
        search_query: None,
        search_results: Some(4),
        scroll_depth: Some(0.5),
        dwell_ms: Some(1200),
        items: vec![Item {
            product_id: "w-9".into(),
            category: None,
            quantity: 2,
            unit_price_cents: 1999,
        }],
        gift: true,
        decision_id: None,
        suggestion_kind: None,
        gpc: true,
    }
}

const FORMATS: [InputFormat; 4] = [
    InputFormat::AvroConfluent,
    InputFormat::AvroSingleObject,
    InputFormat::AvroDatum,
    InputFormat::Json,
];

#[test]
fn click_events_round_trip_in_every_input_format() {
    for format in FORMATS {
        let bytes = encode_click(&sample(), format, 7);
        assert_eq!(
            decode_click(&bytes, format, MAX).unwrap(),
            sample(),
            "{format:?}"
        );
    }
}

#[test]
fn json_events_need_only_the_required_fields() {
    let bytes = br#"{"event_id":"e","customer_id":"c","session_id":"s","event_time":1763800000000,"type":"PAGE_VIEW"}"#;
    let ev = decode_click(bytes, InputFormat::Json, MAX).unwrap();
    assert_eq!(ev.kind, EventKind::PageView);
    assert!(ev.items.is_empty() && !ev.gpc);
}

#[test]
fn unknown_event_types_decode_as_their_own_variant() {
    let bytes = br#"{"event_id":"e","customer_id":"c","session_id":"s","event_time":1763800000000,"type":"HOVER"}"#;
    let ev = decode_click(bytes, InputFormat::Json, MAX).unwrap();
    assert_eq!(ev.kind, EventKind::Unknown("HOVER".into()));
}

#[test]
fn truncated_avro_is_classified_as_truncated_in_every_avro_format() {
    for format in &FORMATS[..3] {
        let bytes = encode_click(&sample(), *format, 7);
        for cut in [bytes.len() - 1, bytes.len() / 2, 12] {
            let err = decode_click(&bytes[..cut], *format, MAX).unwrap_err();
            assert_eq!(
                err.class,
                ErrorClass::Truncated,
                "{format:?} cut at {cut}: {err}"
            );
        }
    }
}

#[test]
fn each_kind_of_bad_input_gets_its_own_class() {
    let good = encode_click(&sample(), InputFormat::AvroConfluent, 1);
    let cases: Vec<(Vec<u8>, InputFormat, ErrorClass)> = vec![
        (vec![], InputFormat::AvroConfluent, ErrorClass::Empty),
        (vec![0; 5000], InputFormat::AvroConfluent, ErrorClass::Oversized),
        (b"hello".to_vec(), InputFormat::AvroConfluent, ErrorClass::WrongSchema),
        (vec![0, 0, 0], InputFormat::AvroConfluent, ErrorClass::Truncated),
        ([good.clone(), vec![1, 2, 3]].concat(), InputFormat::AvroConfluent, ErrorClass::Malformed),
        (b"{not json".to_vec(), InputFormat::Json, ErrorClass::Malformed),
        (br#"{"event_id":"e""#.to_vec(), InputFormat::Json, ErrorClass::Truncated),
        (
            br#"{"event_id":"","customer_id":"c","session_id":"s","event_time":1763800000000,"type":"PAGE_VIEW"}"#.to_vec(),
            InputFormat::Json,
            ErrorClass::InvalidField,
        ),
        (
            br#"{"event_id":"e","customer_id":"c","session_id":"s","event_time":17,"type":"PAGE_VIEW"}"#.to_vec(),
            InputFormat::Json,
            ErrorClass::InvalidField,
        ),
        (
            encode_click(&ClickEvent { scroll_depth: Some(3.0), ..sample() }, InputFormat::AvroDatum, 0),
            InputFormat::AvroDatum,
            ErrorClass::InvalidField,
        ),
        (
            encode_click(&sample(), InputFormat::AvroSingleObject, 0)
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 4 { b ^ 0xff } else { *b })
                .collect(),
            InputFormat::AvroSingleObject,
            ErrorClass::WrongSchema,
        ),
    ];
    for (bytes, format, class) in cases {
        let err = decode_click(&bytes, format, 4096).unwrap_err();
        assert_eq!(err.class, class, "{format:?} {err}");
    }
}

#[test]
fn profile_commands_round_trip_as_avro_and_json() {
    let cmd = ProfileCommand {
        command_id: "k1".into(),
        customer_id: "cust-1".into(),
        issued_at: Timestamp(1_763_800_000_000),
        body: CommandBody::SetConsent {
            purpose: Purpose::ProactiveChat,
            channel: Some(Channel::Chat),
            granted: true,
            source: "banner".into(),
            expires_at: None,
        },
    };
    for format in FORMATS {
        let bytes = encode_command(&cmd, format, 3);
        assert_eq!(
            decode_command(&bytes, format, MAX).unwrap(),
            cmd,
            "{format:?}"
        );
    }
    let json =
        br#"{"command_id":"k","customer_id":"c","issued_at":1763800000000,"command":{"Erase":{}}}"#;
    assert_eq!(
        decode_command(json, InputFormat::Json, MAX).unwrap().body,
        CommandBody::Erase { request_ref: None }
    );
}

#[test]
fn unknown_command_types_and_values_are_rejected_not_dropped() {
    let unknown = br#"{"command_id":"k","customer_id":"c","issued_at":1763800000000,"command":{"Teleport":{}}}"#;
    assert_eq!(
        decode_command(unknown, InputFormat::Json, MAX)
            .unwrap_err()
            .class,
        ErrorClass::Malformed
    );
    let bad_purpose = br#"{"command_id":"k","customer_id":"c","issued_at":1763800000000,"command":{"SetConsent":{"purpose":"SPYING","granted":true,"source":"x"}}}"#;
    assert_eq!(
        decode_command(bad_purpose, InputFormat::Json, MAX)
            .unwrap_err()
            .class,
        ErrorClass::InvalidField
    );
}

#[test]
fn decisions_encode_to_the_shipped_schema_and_read_back() {
    let d = tact_core::Decision {
        decision_id: "d-1".into(),
        customer_id: "c".into(),
        session_id: Some("s".into()),
        kind: DecisionKind::Recommendation,
        channel: tact_core::Channel::OnSite,
        personalized: true,
        items: vec!["p1".into(), "p2".into()],
        reasons: vec![Reason::new(
            "category_interest",
            "you looked at shoes 3 time(s)",
        )],
        cause_event_id: "e".into(),
        created_at: Timestamp(1),
        expires_at: Timestamp(2),
        policy_version: "v".into(),
        context: None,
        suggested_answers: Vec::new(),
        due_at: None,
    };
    let help = tact_core::Decision {
        kind: DecisionKind::Callback,
        channel: tact_core::Channel::Routing,
        context: Some(tact_core::HelpContext {
            detector: Some("faq_struggle".into()),
            evidence: vec!["read 2 help pages".into()],
            pages: vec!["/help/a".into()],
            faq_entries: vec!["returns".into()],
            searches: vec![tact_core::SearchTried {
                query: "refund".into(),
                results: 0,
            }],
            products_compared: vec!["p1".into(), "p2".into()],
            cart: vec!["p3".into()],
        }),
        suggested_answers: vec![tact_core::SuggestedAnswer {
            faq_id: "returns".into(),
            question: "How do I return?".into(),
            answer: "From your order page.".into(),
            page: Some("/help/returns".into()),
            score: 1.5,
        }],
        due_at: Some(Timestamp(3_600_000)),
        ..d.clone()
    };
    let back = decode_decision(&Encoder::new(OutputFormat::SingleObject).decision(&help)).unwrap();
    assert_eq!(back.kind, "CALLBACK");
    assert_eq!(back.channel, "ROUTING");
    assert_eq!(back.context, help.context);
    assert_eq!(back.suggested_answers, help.suggested_answers);
    assert_eq!(back.due_at, Some(3_600_000));
    for format in [
        OutputFormat::SingleObject,
        OutputFormat::Confluent {
            decision_id: 9,
            suppressed_id: 10,
            dead_letter_id: 11,
        },
    ] {
        let bytes = Encoder::new(format).decision(&d);
        let back = decode_decision(&bytes).unwrap();
        assert_eq!(back.kind, "RECOMMENDATION");
        assert_eq!(back.items, d.items);
        assert_eq!(back.reasons, d.reasons);
        assert_eq!((back.context, back.due_at), (None, None));
    }
    let single = Encoder::new(OutputFormat::SingleObject).decision(&d);
    assert_eq!(&single[..2], &[0xC3, 0x01]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in FORMATS {
            let _ = decode_click(&bytes, format, MAX);
            let _ = decode_command(&bytes, format, MAX);
            let _ = decode_release(&bytes, format, MAX);
        }
    }

    #[test]
    fn corrupting_a_valid_event_never_panics(pos in 0usize..200, byte in any::<u8>()) {
        let mut bytes = encode_click(&sample(), InputFormat::AvroDatum, 0);
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        let _ = decode_click(&bytes, InputFormat::AvroDatum, MAX);
    }
}

#[test]
fn a_release_round_trips_in_every_format_and_bad_fields_are_named() {
    let release = Release {
        release_id: "r-1".into(),
        subject: "brickworks".into(),
        title: "Castle".into(),
        product_ids: vec!["lego-9".into()],
        category: Some("toys".into()),
        released_at: Timestamp(1_772_445_600_000),
    };
    for format in FORMATS {
        let bytes = encode_release(&release, format, 7);
        assert_eq!(decode_release(&bytes, format, MAX).unwrap(), release);
    }
    let bad = br#"{"release_id":"r","subject":"","title":"t","released_at":1772445600000}"#;
    let err = decode_release(bad, InputFormat::Json, MAX).unwrap_err();
    assert_eq!(err.class, ErrorClass::InvalidField);
    assert!(err.message.contains("subject"), "{}", err.message);
}

#[test]
fn a_recipient_birthday_that_is_no_date_is_refused() {
    for (birthday, ok) in [
        ("02-29", true),
        ("2019-12-31", true),
        ("13-01", false),
        ("2-3", false),
        ("tomorrow", false),
    ] {
        let json = format!(
            r#"{{"command_id":"k","customer_id":"c","issued_at":1772445600000,"command":{{"UpsertRecipient":{{"recipient_id":"r","name":"Mia","birthday":"{birthday}"}}}}}}"#
        );
        let got = decode_command(json.as_bytes(), InputFormat::Json, MAX);
        assert_eq!(got.is_ok(), ok, "{birthday}: {got:?}");
        if !ok {
            assert!(got.unwrap_err().message.contains("command.birthday"));
        }
    }
}

#[test]
fn click_events_framed_with_the_earlier_schema_still_decode() {
    // click_event.v1 only lacks the chat and callback types: producers still on it keep working.
    let current = encode_click(&sample(), InputFormat::AvroSingleObject, 0);
    let mut v1 = current.clone();
    v1[2..10].copy_from_slice(crate::schema::click_event_v1().rabin_fingerprint());
    assert_ne!(v1, current);
    let decoded = decode_click(&v1, InputFormat::AvroSingleObject, MAX).unwrap();
    assert_eq!(
        decoded,
        decode_click(&current, InputFormat::AvroSingleObject, MAX).unwrap()
    );
    let mut other = current;
    other[2..10].copy_from_slice(&[7; 8]);
    assert_eq!(
        decode_click(&other, InputFormat::AvroSingleObject, MAX)
            .unwrap_err()
            .class,
        ErrorClass::WrongSchema
    );
}
