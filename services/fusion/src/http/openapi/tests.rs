use empathy_proto::v1 as pb;

use super::*;

fn doc() -> Value {
    let api = service().expect("descriptors");
    document(&api).expect("document")
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_unary_method_has_a_route_and_streams_have_none() {
    let api = service().expect("descriptors");
    let document = document(&api).expect("document");
    let unary: Vec<&str> = unary_methods(&api).map(|m| m.name()).collect();
    assert!(
        unary.contains(&"Analyze") && unary.contains(&"Feedback"),
        "{unary:?}"
    );
    assert!(!unary.contains(&"AnalyzeStream"));
    for name in &unary {
        assert!(
            super::super::handler(name).is_some(),
            "no handler for {name}"
        );
        assert!(document["paths"][path(name)]["post"].is_object(), "{name}");
    }
    assert_eq!(path("SuggestReplies"), "/v1/suggest-replies");
    assert!(document["paths"]["/v1/info"]["get"].is_object());
}

#[test]
fn every_reference_resolves() {
    let document = doc();
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(found.len() > 20, "{}", found.len());
    for r in found {
        let key = r.trim_start_matches("#/components/schemas/");
        assert!(document["components"]["schemas"][key].is_object(), "{r}");
    }
}

/// Every key of `json` (recursively through objects the schema describes) is a
/// property the schema names.
fn check(document: &Value, schema: &Value, json: &Value, at: &str) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            &document["components"]["schemas"][r.trim_start_matches("#/components/schemas/")]
        }
        None => schema.get("allOf").and_then(|a| a.get(0)).unwrap_or(schema),
    };
    if schema.get("$ref").is_some() {
        return check(document, schema, json, at);
    }
    match json {
        Value::Object(map) if schema["properties"].is_object() => {
            for (key, value) in map {
                let property = &schema["properties"][key];
                assert!(property.is_object(), "{at}.{key} is not in the schema");
                check(document, property, value, &format!("{at}.{key}"));
            }
        }
        Value::Array(items) => {
            for item in items {
                check(document, &schema["items"], item, at);
            }
        }
        Value::String(_) => {
            let kind = schema["type"].as_str();
            assert_eq!(kind, Some("string"), "{at}: the JSON is a string");
        }
        Value::Number(_) => {
            let kind = schema["type"].as_str();
            assert!(matches!(kind, Some("number" | "integer")), "{at}: {kind:?}");
        }
        _ => {}
    }
}

#[test]
fn the_schemas_describe_what_the_json_mapping_writes() {
    let document = doc();
    let request = pb::AnalyzeRequest {
        text: "Perfect.".into(),
        image: vec![1u8, 2, 3].into(),
        context: vec![pb::Turn {
            speaker: "agent".into(),
            text: "It shipped early".into(),
        }],
        options: Some(pb::AnalyzeOptions {
            num_situations: 3,
            seed: 7,
            disable_modalities: vec!["speech".into()],
            ..Default::default()
        }),
        request_id: "r1".into(),
        ..Default::default()
    };
    let json = serde_json::to_value(&request).expect("json");
    assert_eq!(json["options"]["seed"], "7", "int64 as a string");
    let schema = reference(".empathy.v1.AnalyzeRequest");
    check(&document, &schema, &json, "AnalyzeRequest");

    let answer = pb::AnalyzeResponse {
        analysis_id: "a".into(),
        sentiment: Some(pb::Sentiment {
            label: "positive".into(),
            scores: vec![pb::LabelScore {
                label: "positive".into(),
                score: 0.9,
            }],
        }),
        valence: 0.5,
        modalities_used: vec!["text".into()],
        ..Default::default()
    };
    let json = serde_json::to_value(&answer).expect("json");
    let schema = reference(".empathy.v1.AnalyzeResponse");
    check(&document, &schema, &json, "AnalyzeResponse");
}

#[test]
fn comments_in_the_proto_become_descriptions() {
    let document = doc();
    let summary = document["paths"]["/v1/suggest-replies"]["post"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.contains("reply templates"), "{summary}");
    let schemas = &document["components"]["schemas"];
    let speaker = &schemas["empathy.v1.Turn"]["properties"]["speaker"]["description"];
    assert!(
        speaker.as_str().unwrap_or_default().contains("user"),
        "{speaker}"
    );
}
