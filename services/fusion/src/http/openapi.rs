//! The HTTP door's routes and its OpenAPI 3 document, both read off the compiled
//! proto descriptors (with their comments), so neither is kept by hand.

use std::collections::{BTreeMap, HashMap, VecDeque};

use anyhow::Context;
use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet, MethodDescriptorProto, ServiceDescriptorProto,
    field_descriptor_proto::{Label, Type},
};
use serde_json::{Value, json};

const SERVICE: &str = "EmpathyService";
const PACKAGE: &str = "empathy.v1";

/// EmpathyService and every file it was compiled with.
pub struct Api {
    files: Vec<FileDescriptorProto>,
    /// Which file declares the service, and where in it.
    file: usize,
    service: usize,
}

pub fn service() -> anyhow::Result<Api> {
    let set = FileDescriptorSet::decode(empathy_proto::v1::FILE_DESCRIPTOR_SET)
        .context("the compiled proto descriptors do not decode")?;
    let (file, service) = set
        .file
        .iter()
        .enumerate()
        .find_map(|(f, file)| {
            let s = file.service.iter().position(|s| s.name() == SERVICE)?;
            (file.package() == PACKAGE).then_some((f, s))
        })
        .context("EmpathyService is not in the compiled descriptors")?;
    Ok(Api {
        files: set.file,
        file,
        service,
    })
}

impl Api {
    fn service(&self) -> &ServiceDescriptorProto {
        &self.files[self.file].service[self.service]
    }

    /// The comment above the element at `path` in file `file` (descriptor.proto's
    /// SourceCodeInfo path), tidied to one paragraph.
    fn comment(&self, file: usize, path: &[i32]) -> Option<String> {
        let info = self.files[file].source_code_info.as_ref()?;
        let location = info.location.iter().find(|l| l.path == path)?;
        let text = location
            .leading_comments
            .as_deref()
            .or(location.trailing_comments.as_deref())?;
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        (!text.is_empty()).then_some(text)
    }
}

/// Methods with one request and one answer (streams stay gRPC-only).
pub fn unary_methods(api: &Api) -> impl Iterator<Item = &MethodDescriptorProto> {
    api.service()
        .method
        .iter()
        .filter(|m| !m.client_streaming() && !m.server_streaming())
}

/// `SuggestReplies` -> `/v1/suggest-replies`.
pub fn path(method: &str) -> String {
    let mut path = String::from("/v1/");
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            path.push('-');
        }
        path.push(c.to_ascii_lowercase());
    }
    path
}

/// A message or enum by full name (`.empathy.v1.Turn`): its file and source path.
struct Found<'a, T> {
    file: usize,
    path: Vec<i32>,
    item: &'a T,
}

/// Every message and enum of every file, nested ones included, by full name.
struct Types<'a> {
    messages: HashMap<String, Found<'a, DescriptorProto>>,
    enums: HashMap<String, Found<'a, EnumDescriptorProto>>,
}

impl<'a> Types<'a> {
    fn of(api: &'a Api) -> Types<'a> {
        let mut types = Types {
            messages: HashMap::new(),
            enums: HashMap::new(),
        };
        for (f, file) in api.files.iter().enumerate() {
            let scope = format!(".{}", file.package());
            for (i, e) in file.enum_type.iter().enumerate() {
                types.add_enum(f, &scope, vec![5, i as i32], e);
            }
            for (i, m) in file.message_type.iter().enumerate() {
                types.add_message(f, &scope, vec![4, i as i32], m);
            }
        }
        types
    }

    fn add_enum(&mut self, file: usize, scope: &str, path: Vec<i32>, e: &'a EnumDescriptorProto) {
        let found = Found {
            file,
            path,
            item: e,
        };
        self.enums.insert(format!("{scope}.{}", e.name()), found);
    }

    fn add_message(&mut self, file: usize, scope: &str, path: Vec<i32>, m: &'a DescriptorProto) {
        let name = format!("{scope}.{}", m.name());
        for (i, e) in m.enum_type.iter().enumerate() {
            self.add_enum(file, &name, [&path[..], &[4, i as i32]].concat(), e);
        }
        for (i, n) in m.nested_type.iter().enumerate() {
            self.add_message(file, &name, [&path[..], &[3, i as i32]].concat(), n);
        }
        let found = Found {
            file,
            path,
            item: m,
        };
        self.messages.insert(name, found);
    }
}

/// `.empathy.v1.Turn` -> `#/components/schemas/empathy.v1.Turn`.
fn reference(type_name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", type_name.trim_start_matches('.'))})
}

/// The OpenAPI 3.0 document of the HTTP door.
pub fn document(api: &Api) -> anyhow::Result<Value> {
    let types = Types::of(api);
    let mut paths = BTreeMap::new();
    let mut wanted = VecDeque::new();
    for (i, method) in api.service().method.iter().enumerate() {
        if method.client_streaming() || method.server_streaming() {
            continue;
        }
        wanted.extend([
            method.input_type().to_string(),
            method.output_type().to_string(),
        ]);
        let operation = json!({
            "operationId": method.name(),
            "summary": api.comment(api.file, &[6, api.service as i32, 2, i as i32])
                .unwrap_or_else(|| method.name().to_string()),
            "requestBody": {
                "required": false,
                "content": {"application/json": {"schema": reference(method.input_type())}},
            },
            "responses": {
                "200": {
                    "description": "the answer",
                    "content": {"application/json": {"schema": reference(method.output_type())}},
                },
                "default": {
                    "description": "an error: the gRPC status as HTTP, with its message",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        });
        let mut item = serde_json::Map::new();
        if method.name() == "Info" {
            item.insert("get".into(), operation.clone());
        }
        item.insert("post".into(), operation);
        paths.insert(path(method.name()), Value::Object(item));
    }

    let mut schemas = BTreeMap::new();
    schemas.insert("Error".to_string(), error_schema());
    while let Some(name) = wanted.pop_front() {
        let key = name.trim_start_matches('.').to_string();
        if schemas.contains_key(&key) {
            continue;
        }
        let schema = if let Some(e) = types.enums.get(&name) {
            enum_schema(api, e)
        } else {
            let m = types
                .messages
                .get(&name)
                .with_context(|| format!("{name} is not in the compiled descriptors"))?;
            message_schema(api, &types, m, &mut wanted)?
        };
        schemas.insert(key, schema);
    }
    Ok(json!({
        "openapi": "3.0.3",
        "info": {
            "title": "empathy HTTP/JSON API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "EmpathyService's unary methods over HTTP with the proto3 JSON \
                mapping (field names in lowerCamelCase, 64-bit integers and enums as \
                strings, bytes as base64). Generated from the proto at startup. With API \
                keys on, send `Authorization: Bearer KEY`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }))
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer", "description": "the HTTP status"},
                "status": {"type": "string", "description": "the gRPC code, e.g. INVALID_ARGUMENT"},
                "message": {"type": "string", "description": "what went wrong, for a person"},
            },
        }},
    })
}

fn enum_schema(api: &Api, e: &Found<EnumDescriptorProto>) -> Value {
    let values: Vec<&str> = e.item.value.iter().map(|v| v.name()).collect();
    let mut schema = json!({"type": "string", "enum": values});
    if let Some(text) = api.comment(e.file, &e.path) {
        schema["description"] = text.into();
    }
    schema
}

fn message_schema(
    api: &Api,
    types: &Types,
    m: &Found<DescriptorProto>,
    wanted: &mut VecDeque<String>,
) -> anyhow::Result<Value> {
    let mut properties = serde_json::Map::new();
    for (i, field) in m.item.field.iter().enumerate() {
        let mut schema = field_schema(types, field, wanted)?;
        let path = [&m.path[..], &[2, i as i32]].concat();
        if let (Some(text), Some(object)) = (api.comment(m.file, &path), schema.as_object_mut()) {
            if object.contains_key("$ref") {
                // OpenAPI 3.0 ignores siblings of $ref; allOf keeps the description.
                schema = json!({"allOf": [schema], "description": text});
            } else {
                object.insert("description".into(), text.into());
            }
        }
        properties.insert(field.json_name().to_string(), schema);
    }
    let mut schema = json!({"type": "object", "properties": properties});
    if let Some(text) = api.comment(m.file, &m.path) {
        schema["description"] = text.into();
    }
    Ok(schema)
}

fn field_schema(
    types: &Types,
    field: &FieldDescriptorProto,
    wanted: &mut VecDeque<String>,
) -> anyhow::Result<Value> {
    let scalar = match field.r#type() {
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Type::Uint32 | Type::Fixed32 => json!({"type": "integer", "minimum": 0}),
        // proto3 JSON writes 64-bit integers as strings (and reads numbers too).
        Type::Int64 | Type::Sint64 | Type::Sfixed64 | Type::Uint64 | Type::Fixed64 => {
            json!({"type": "string", "format": "int64"})
        }
        Type::Bool => json!({"type": "boolean"}),
        Type::String => json!({"type": "string"}),
        Type::Bytes => json!({"type": "string", "format": "byte"}),
        Type::Enum => {
            wanted.push_back(field.type_name().to_string());
            reference(field.type_name())
        }
        Type::Message | Type::Group => {
            let name = field.type_name();
            let entry = types
                .messages
                .get(name)
                .filter(|m| m.item.options.as_ref().is_some_and(|o| o.map_entry()));
            if let Some(entry) = entry {
                let value = entry
                    .item
                    .field
                    .iter()
                    .find(|f| f.number() == 2)
                    .with_context(|| format!("map entry {name} has no value"))?;
                let value = field_schema(types, value, wanted)?;
                return Ok(json!({"type": "object", "additionalProperties": value}));
            }
            wanted.push_back(name.to_string());
            reference(name)
        }
    };
    Ok(match field.label() {
        Label::Repeated => json!({"type": "array", "items": scalar}),
        _ => scalar,
    })
}

#[cfg(test)]
mod tests;
