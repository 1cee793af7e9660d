//! The `asyncapi` command: an AsyncAPI 3.0 document (YAML) of the selected functions.
//!
//! - a channel per subject (`address` = the subject, wildcards as they are; the channel id is
//!   the subject with `*` spelled `star` and `>` spelled `all`, ids must be word characters);
//! - a message per function (id = the function's name) with the `contentType` of its payload's
//!   codec and a payload schema: the type's `schemars::JsonSchema` (draft 07, shared
//!   definitions under `components/schemas`) when the cargo feature `schema` is on and the
//!   type implements it, else a schema of the codec (`string` for text, binary `string` for
//!   bytes and protobuf) or, for JSON, an untyped one;
//! - an operation per function, `action: receive`, with the NATS operation binding `queue` =
//!   the durable consumer's name (the function's name): every pod shares it, like a queue group;
//! - a request function's operation (queue group `jetfn`) has a `reply`: a channel of its own
//!   with a `null` address (the caller's inbox, known only at run time) and the reply message
//!   `<name>_reply`, described by the `Ok` type's codec and schema like a payload.
//!
//! Outputs published with `ctx.publish` are not known before the handler runs, so they are not
//! in the document; nor are servers (the URL pods use is a deployment matter).
//!
//! Every map's keys are sorted, so the same functions give the same bytes.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::codec::PayloadKind;
use crate::command::{config_error, EXIT_CONFIG};
use crate::config::Config;
use crate::registry::{PayloadSpec, Registry};

/// What the document says about one function.
#[derive(Debug, Clone)]
pub(crate) struct Function {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) payload: PayloadSpec,
    /// A request function's reply; `None` for an event function.
    pub(crate) reply: Option<PayloadSpec>,
}

/// The document's top level, in the order the specification lists it.
#[derive(Serialize)]
struct Document {
    asyncapi: &'static str,
    info: Info,
    #[serde(rename = "defaultContentType")]
    default_content_type: &'static str,
    channels: BTreeMap<String, Value>,
    operations: BTreeMap<String, Value>,
    components: Components,
}

#[derive(Serialize)]
struct Info {
    title: String,
    version: String,
    description: String,
}

#[derive(Serialize)]
struct Components {
    messages: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    schemas: Map<String, Value>,
}

/// `asyncapi`: prints the document of the selected functions; exit 2 when none is selected.
pub(crate) fn command(config: &Config, registry: &Registry) -> ExitCode {
    let (selected, requests) = match config.selected(registry) {
        Ok(both) => both,
        Err(error) => return config_error(error),
    };
    let mut functions: Vec<Function> = selected
        .into_iter()
        .filter_map(|f| {
            let spec = registry.get(&f.name)?;
            Some(Function {
                payload: (spec.payload)(),
                name: f.name,
                subject: f.subject,
                reply: None,
            })
        })
        .chain(requests.into_iter().filter_map(|r| {
            let spec = registry.request(&r.name)?;
            Some(Function {
                payload: (spec.payload)(),
                reply: Some((spec.reply)()),
                name: r.name,
                subject: r.subject,
            })
        }))
        .collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    if functions.is_empty() {
        eprintln!("jetfn asyncapi: no function is selected");
        return ExitCode::from(EXIT_CONFIG);
    }
    match render(
        &crate::command::binary_name(),
        env!("CARGO_PKG_VERSION"),
        &functions,
    ) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("jetfn asyncapi: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The document for `functions`, as YAML.
pub(crate) fn render(
    title: &str,
    version: &str,
    functions: &[Function],
) -> Result<String, serde_norway::Error> {
    let mut channels: BTreeMap<String, Value> = BTreeMap::new();
    let mut channel_of_subject: BTreeMap<&str, String> = BTreeMap::new();
    let mut operations = BTreeMap::new();
    let mut messages = BTreeMap::new();
    let mut schemas = Map::new();
    for f in functions {
        let channel = channel_of_subject
            .entry(&f.subject)
            .or_insert_with(|| {
                let id = unique(channel_id(&f.subject), &channels);
                channels.insert(id.clone(), json!({ "address": f.subject, "messages": {} }));
                id
            })
            .clone();
        if let Some(list) = channels
            .get_mut(&channel)
            .and_then(|c| c["messages"].as_object_mut())
        {
            let message = format!("#/components/messages/{}", f.name);
            list.insert(f.name.clone(), json!({ "$ref": message }));
        }
        let queue = if f.reply.is_some() {
            "jetfn"
        } else {
            f.name.as_str()
        };
        let mut operation = json!({
            "action": "receive",
            "summary": format!("{} consumes {}", f.name, f.subject),
            "channel": { "$ref": format!("#/channels/{channel}") },
            "messages": [
                { "$ref": format!("#/channels/{channel}/messages/{}", f.name) }
            ],
            "bindings": { "nats": { "queue": queue, "bindingVersion": "0.1.0" } },
        });
        if let Some(reply) = &f.reply {
            let reply_channel = unique(format!("{}.reply", f.name), &channels);
            let reply_message = format!("{}_reply", f.name);
            channels.insert(
                reply_channel.clone(),
                json!({
                    "address": null,
                    "description": format!("the caller's reply subject (inbox) for {}", f.name),
                    "messages": {
                        reply_message.clone(): { "$ref": format!("#/components/messages/{reply_message}") },
                    },
                }),
            );
            if let Some(map) = operation.as_object_mut() {
                map.insert(
                    "summary".to_owned(),
                    format!("{} answers requests on {}", f.name, f.subject).into(),
                );
                map.insert(
                    "reply".to_owned(),
                    json!({
                        "channel": { "$ref": format!("#/channels/{reply_channel}") },
                        "messages": [
                            { "$ref": format!("#/channels/{reply_channel}/messages/{reply_message}") }
                        ],
                    }),
                );
            }
            let payload = payload_schema(reply, &mut schemas);
            messages.insert(
                reply_message.clone(),
                json!({
                    "name": reply_message,
                    "title": short_type_name(reply.type_name),
                    "contentType": reply.kind.content_type(),
                    "payload": payload,
                }),
            );
        }
        operations.insert(f.name.clone(), operation);
        let payload = payload_schema(&f.payload, &mut schemas);
        messages.insert(
            f.name.clone(),
            json!({
                "name": f.name,
                "title": short_type_name(f.payload.type_name),
                "contentType": f.payload.kind.content_type(),
                "payload": payload,
            }),
        );
    }
    let document = Document {
        asyncapi: "3.0.0",
        info: Info {
            title: title.to_owned(),
            version: version.to_owned(),
            description: format!(
                "The jetfn functions of `{title}`: each receives its channel's messages through \
                 a durable JetStream consumer named after it. What the functions publish is not \
                 listed (it is not known before they run). Request functions answer core \
                 NATS requests in queue group `jetfn`; their replies go to the caller's inbox."
            ),
        },
        default_content_type: PayloadKind::Json.content_type(),
        channels,
        operations,
        components: Components { messages, schemas },
    };
    let yaml = serde_norway::to_string(&document)?;
    Ok(format!(
        "# Generated by `{title} asyncapi`.\n# Do not edit: change the functions and render again.\n{yaml}"
    ))
}

/// The message payload's schema; the JSON Schema's shared definitions go to `schemas`.
fn payload_schema(payload: &PayloadSpec, schemas: &mut Map<String, Value>) -> Value {
    let type_name = short_type_name(payload.type_name);
    match payload.kind {
        PayloadKind::Text => json!({ "type": "string", "description": "UTF-8 text" }),
        PayloadKind::Bytes => json!({ "type": "string", "format": "binary" }),
        PayloadKind::Protobuf => json!({
            "type": "string",
            "format": "binary",
            "description": format!("protobuf `{type_name}`"),
        }),
        _ => match payload.schema {
            Some(schema) => json_schema(schema(), schemas),
            None => json!({
                "description": format!("JSON `{type_name}` (no schema: the type does not \
                                        implement `schemars::JsonSchema`)"),
            }),
        },
    }
}

/// A schemars root schema as a payload: its definitions (generated under
/// `/components/schemas`, so the `$ref`s already point there) move to `schemas`.
fn json_schema(mut root: Value, schemas: &mut Map<String, Value>) -> Value {
    if let Some(object) = root.as_object_mut() {
        object.remove("$schema");
        if let Some(Value::Object(mut components)) = object.remove("components") {
            if let Some(Value::Object(definitions)) = components.remove("schemas") {
                schemas.extend(definitions);
            }
        }
    }
    root
}

/// The channel id of `subject`: word characters, dots and dashes only.
fn channel_id(subject: &str) -> String {
    subject
        .split('.')
        .map(|token| match token {
            "*" => "star",
            ">" => "all",
            token => token,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `id`, or `id-2`, `id-3`, ... when it is taken.
fn unique(id: String, taken: &BTreeMap<String, Value>) -> String {
    if !taken.contains_key(&id) {
        return id;
    }
    (2..)
        .map(|n| format!("{id}-{n}"))
        .find(|candidate| !taken.contains_key(candidate))
        .unwrap_or(id)
}

/// `functions::ShopEvent<functions::OrderCreated>` -> `ShopEvent<OrderCreated>`.
fn short_type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut word = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    out
}

#[cfg(test)]
mod tests;
