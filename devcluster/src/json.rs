//! Mesos's own JSON mapping of protobuf messages (stout's rules, not proto3's
//! canonical JSON), done by reflection over the descriptors of the proto crate.
//!
//! A JSON call is parsed into a [`DynamicMessage`], checked for missing `required`
//! fields, encoded to protobuf bytes and decoded into the generated type; an event
//! goes the opposite way. The cluster logic therefore only ever sees prost types.
//!
//! Parsing rules: fields are looked up by their proto (snake_case) name and unknown
//! keys are ignored; `null` means unset; enums must be name strings (a number is an
//! error) and unknown names are dropped unless the field is required; bytes are
//! standard Base64 with padding; numbers may be given as strings, and doubles accept
//! `"Infinity"` and `"-Infinity"`.
//!
//! Emitting rules: proto field names, enum names, 64-bit integers as JSON numbers,
//! bytes as standard Base64 with padding, unset optional fields with an explicit,
//! non-deprecated default emitted with that default, empty repeated fields omitted.
//! Mesos writes a non-finite double as a bare `Infinity` token, which is not JSON;
//! devcluster writes the strings `"Infinity"`, `"-Infinity"` and `"NaN"` instead,
//! which Mesos's own parser accepts back.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use mesos_stateful_proto::v1::{executor, scheduler};
use mesos_stateful_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, ReflectMessage, Value,
};
use serde_json::{Number, Value as Json};

use crate::error::DevClusterError;

/// A generated message type together with its full protobuf name, so that its
/// descriptor can be found at runtime.
pub trait Described: Message + Default {
    /// The fully qualified protobuf name, e.g. `mesos.v1.scheduler.Call`.
    const FULL_NAME: &'static str;
}

impl Described for scheduler::Call {
    const FULL_NAME: &'static str = "mesos.v1.scheduler.Call";
}

impl Described for scheduler::Event {
    const FULL_NAME: &'static str = "mesos.v1.scheduler.Event";
}

impl Described for executor::Call {
    const FULL_NAME: &'static str = "mesos.v1.executor.Call";
}

impl Described for executor::Event {
    const FULL_NAME: &'static str = "mesos.v1.executor.Event";
}

impl Described for mesos_stateful_proto::v1::MasterInfo {
    const FULL_NAME: &'static str = "mesos.v1.MasterInfo";
}

/// The descriptors of every message, decoded once.
fn pool() -> Result<&'static DescriptorPool, DevClusterError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|reason| DevClusterError::Descriptors(reason.clone()))
}

/// The descriptor of the message named `full_name`.
pub fn descriptor(full_name: &str) -> Result<MessageDescriptor, DevClusterError> {
    pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| DevClusterError::Descriptors(format!("no message named {full_name}")))
}

/// Parses a JSON request body into `T` with Mesos's rules.
pub fn from_json<T: Described>(body: &[u8]) -> Result<T, DevClusterError> {
    let json: Json = serde_json::from_slice(body)
        .map_err(|error| DevClusterError::Json(format!("the body is not valid json: {error}")))?;
    let message = parse_message(&descriptor(T::FULL_NAME)?, &json, "")?;
    T::decode(message.encode_to_vec().as_slice()).map_err(|error| {
        DevClusterError::Json(format!(
            "the parsed {} does not decode: {error}",
            T::FULL_NAME
        ))
    })
}

/// Renders `message` as a Mesos JSON value.
pub fn to_json<T: Described>(message: &T) -> Result<Emitted, DevClusterError> {
    let dynamic = DynamicMessage::decode(
        descriptor(T::FULL_NAME)?,
        message.encode_to_vec().as_slice(),
    )
    .map_err(|error| DevClusterError::Json(format!("re-reading a {}: {error}", T::FULL_NAME)))?;
    Ok(emit_message(&dynamic))
}

/// Renders `message` as the bytes of a compact Mesos JSON document, fields in
/// declaration order.
pub fn to_json_bytes<T: Described>(message: &T) -> Result<Vec<u8>, DevClusterError> {
    let mut text = String::new();
    to_json(message)?.write(&mut text);
    Ok(text.into_bytes())
}

fn invalid(path: &str, reason: impl std::fmt::Display) -> DevClusterError {
    DevClusterError::Json(format!("field '{path}': {reason}"))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Parses a JSON object into a message of type `descriptor`, then checks that every
/// required field of it is present (nested messages are checked as they are parsed).
pub fn parse_message(
    descriptor: &MessageDescriptor,
    json: &Json,
    path: &str,
) -> Result<DynamicMessage, DevClusterError> {
    let Json::Object(object) = json else {
        let what = if path.is_empty() {
            "the body".to_string()
        } else {
            format!("field '{path}'")
        };
        return Err(DevClusterError::Json(format!(
            "{what}: expecting a json object for {}",
            descriptor.full_name()
        )));
    };
    let mut message = DynamicMessage::new(descriptor.clone());
    for (key, value) in object {
        // Lookup is by exact proto field name; anything else is ignored.
        let Some(field) = descriptor.get_field_by_name(key) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let field_path = join(path, key);
        if field.is_map() {
            let map = parse_map(&field, value, &field_path)?;
            message.set_field(&field, Value::Map(map));
        } else if field.is_list() {
            let Json::Array(items) = value else {
                return Err(invalid(&field_path, "expecting a json array"));
            };
            let mut list = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{field_path}[{index}]");
                if let Some(parsed) = parse_value(&field.kind(), item, &item_path)? {
                    list.push(parsed);
                }
            }
            message.set_field(&field, Value::List(list));
        } else {
            match parse_value(&field.kind(), value, &field_path)? {
                Some(parsed) => message.set_field(&field, parsed),
                None if field.is_required() => {
                    return Err(invalid(
                        &field_path,
                        "unknown enum value for a required field",
                    ))
                }
                // An unknown enum name on an optional field is dropped.
                None => {}
            }
        }
    }
    for field in descriptor.fields() {
        if field.is_required() && !message.has_field(&field) {
            return Err(DevClusterError::Json(format!(
                "missing required field '{}'",
                join(path, field.name())
            )));
        }
    }
    Ok(message)
}

fn parse_map(
    field: &FieldDescriptor,
    json: &Json,
    path: &str,
) -> Result<HashMap<MapKey, Value>, DevClusterError> {
    let Json::Object(object) = json else {
        return Err(invalid(path, "expecting a json object (a map)"));
    };
    let Kind::Message(entry) = field.kind() else {
        return Err(invalid(path, "a map field without an entry message"));
    };
    let key_kind = entry.map_entry_key_field().kind();
    let value_kind = entry.map_entry_value_field().kind();
    let mut map = HashMap::with_capacity(object.len());
    for (key, value) in object {
        let entry_path = format!("{path}[{key}]");
        let key = parse_map_key(&key_kind, key, &entry_path)?;
        if let Some(parsed) = parse_value(&value_kind, value, &entry_path)? {
            map.insert(key, parsed);
        }
    }
    Ok(map)
}

fn parse_map_key(kind: &Kind, key: &str, path: &str) -> Result<MapKey, DevClusterError> {
    let number = |_: std::num::ParseIntError| invalid(path, "expecting a numeric map key");
    Ok(match kind {
        Kind::String => MapKey::String(key.to_string()),
        Kind::Bool => match key {
            "true" => MapKey::Bool(true),
            "false" => MapKey::Bool(false),
            _ => return Err(invalid(path, "expecting a boolean map key")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(key.parse().map_err(number)?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(key.parse().map_err(number)?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(key.parse().map_err(number)?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(key.parse().map_err(number)?),
        _ => return Err(invalid(path, "unsupported map key type")),
    })
}

/// An integer given as a JSON number (integral) or as a decimal string.
fn parse_integer<T>(json: &Json, path: &str) -> Result<T, DevClusterError>
where
    T: TryFrom<i64> + TryFrom<u64> + std::str::FromStr,
{
    let out_of_range = || invalid(path, "integer out of range");
    match json {
        Json::Number(number) => {
            if let Some(value) = number.as_i64() {
                T::try_from(value).map_err(|_| out_of_range())
            } else if let Some(value) = number.as_u64() {
                T::try_from(value).map_err(|_| out_of_range())
            } else {
                // A float: accepted only when it is integral and fits i64.
                let value = number.as_f64().unwrap_or(f64::NAN);
                let integral =
                    value.fract() == 0.0 && value >= i64::MIN as f64 && value <= i64::MAX as f64;
                if !integral {
                    return Err(invalid(path, format!("expecting an integer, got {value}")));
                }
                T::try_from(value as i64).map_err(|_| out_of_range())
            }
        }
        Json::String(text) => text
            .parse::<T>()
            .map_err(|_| invalid(path, format!("expecting an integer, got {text:?}"))),
        _ => Err(invalid(path, "expecting a number")),
    }
}

fn parse_double(json: &Json, path: &str) -> Result<f64, DevClusterError> {
    match json {
        Json::Number(number) => number
            .as_f64()
            .ok_or_else(|| invalid(path, "expecting a number")),
        Json::String(text) => match text.as_str() {
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => text
                .parse::<f64>()
                .map_err(|_| invalid(path, format!("expecting a number, got {text:?}"))),
        },
        _ => Err(invalid(path, "expecting a number")),
    }
}

fn parse_enum(
    descriptor: &EnumDescriptor,
    json: &Json,
    path: &str,
) -> Result<Option<Value>, DevClusterError> {
    match json {
        Json::String(name) => Ok(descriptor
            .get_value_by_name(name)
            .map(|value| Value::EnumNumber(value.number()))),
        _ => Err(invalid(
            path,
            format!("expecting a {} name string", descriptor.full_name()),
        )),
    }
}

/// One value of `kind`; `None` for an unknown enum name (the caller decides
/// whether that is an error).
fn parse_value(kind: &Kind, json: &Json, path: &str) -> Result<Option<Value>, DevClusterError> {
    let value = match kind {
        Kind::Double => Value::F64(parse_double(json, path)?),
        // Float fields are narrowed from the parsed double, as Mesos does.
        Kind::Float => Value::F32(parse_double(json, path)? as f32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(parse_integer(json, path)?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(parse_integer(json, path)?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(parse_integer(json, path)?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(parse_integer(json, path)?),
        Kind::Bool => match json {
            Json::Bool(value) => Value::Bool(*value),
            _ => return Err(invalid(path, "expecting a boolean")),
        },
        Kind::String => match json {
            Json::String(text) => Value::String(text.clone()),
            _ => return Err(invalid(path, "expecting a string")),
        },
        Kind::Bytes => match json {
            Json::String(text) => {
                Value::Bytes(Bytes::from(BASE64.decode(text).map_err(|error| {
                    invalid(path, format!("invalid base64: {error}"))
                })?))
            }
            _ => return Err(invalid(path, "expecting a base64 string")),
        },
        Kind::Enum(descriptor) => return parse_enum(descriptor, json, path),
        Kind::Message(descriptor) => Value::Message(parse_message(descriptor, json, path)?),
    };
    Ok(Some(value))
}

/// Whether an unset singular field is still emitted: it has an explicit default
/// and is not deprecated.
fn emits_default(field: &FieldDescriptor) -> bool {
    let proto = field.field_descriptor_proto();
    let deprecated = proto
        .options
        .as_ref()
        .and_then(|options| options.deprecated)
        .unwrap_or(false);
    proto.default_value.is_some() && !deprecated
}

/// A rendered JSON value whose objects keep the order in which the fields are
/// declared (as Mesos writes them; `serde_json::Map` would sort the keys).
#[derive(Debug, Clone, PartialEq)]
pub enum Emitted {
    /// A string, number or boolean.
    Scalar(Json),
    /// A repeated field.
    Array(Vec<Emitted>),
    /// A message or a map, in order.
    Object(Vec<(String, Emitted)>),
}

impl Emitted {
    /// The same value as a `serde_json::Value` (key order is lost).
    #[cfg(test)]
    pub fn into_json(self) -> Json {
        match self {
            Emitted::Scalar(json) => json,
            Emitted::Array(items) => {
                Json::Array(items.into_iter().map(Emitted::into_json).collect())
            }
            Emitted::Object(fields) => Json::Object(
                fields
                    .into_iter()
                    .map(|(key, value)| (key, value.into_json()))
                    .collect::<serde_json::Map<String, Json>>(),
            ),
        }
    }

    /// Appends the compact JSON text of the value to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Emitted::Scalar(json) => out.push_str(&json.to_string()),
            Emitted::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Emitted::Object(fields) => {
                out.push('{');
                for (index, (key, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&Json::String(key.clone()).to_string());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Renders a message as a JSON object, fields in declaration order.
pub fn emit_message(message: &DynamicMessage) -> Emitted {
    let mut object = Vec::new();
    for field in message.descriptor().fields() {
        let kind = field.kind();
        if field.is_map() {
            let value = message.get_field(&field);
            let Some(map) = value.as_map() else { continue };
            if map.is_empty() {
                continue;
            }
            let value_kind = match &kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                _ => continue,
            };
            let mut entries: Vec<(String, Emitted)> = map
                .iter()
                .map(|(key, value)| (map_key_string(key), emit_value(&value_kind, value)))
                .collect();
            // Map order is unspecified; sorting keeps the output stable.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            object.push((field.name().to_string(), Emitted::Object(entries)));
        } else if field.is_list() {
            let value = message.get_field(&field);
            let Some(list) = value.as_list() else {
                continue;
            };
            if list.is_empty() {
                continue;
            }
            let items = list.iter().map(|item| emit_value(&kind, item)).collect();
            object.push((field.name().to_string(), Emitted::Array(items)));
        } else if message.has_field(&field) || emits_default(&field) {
            let value = message.get_field(&field);
            object.push((field.name().to_string(), emit_value(&kind, &value)));
        }
    }
    Emitted::Object(object)
}

fn map_key_string(key: &MapKey) -> String {
    match key {
        MapKey::Bool(value) => value.to_string(),
        MapKey::I32(value) => value.to_string(),
        MapKey::I64(value) => value.to_string(),
        MapKey::U32(value) => value.to_string(),
        MapKey::U64(value) => value.to_string(),
        MapKey::String(value) => value.clone(),
    }
}

fn emit_double(value: f64) -> Json {
    match Number::from_f64(value) {
        Some(number) => Json::Number(number),
        None if value.is_nan() => Json::String("NaN".into()),
        None if value > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

fn emit_value(kind: &Kind, value: &Value) -> Emitted {
    let scalar = match value {
        Value::Bool(value) => Json::Bool(*value),
        Value::I32(value) => Json::from(*value),
        Value::I64(value) => Json::from(*value),
        Value::U32(value) => Json::from(*value),
        Value::U64(value) => Json::from(*value),
        Value::F32(value) => emit_double(f64::from(*value)),
        Value::F64(value) => emit_double(*value),
        Value::String(value) => Json::String(value.clone()),
        Value::Bytes(value) => Json::String(BASE64.encode(value)),
        Value::EnumNumber(number) => match kind {
            Kind::Enum(descriptor) => match descriptor.get_value(*number) {
                Some(value) => Json::String(value.name().to_string()),
                // A number outside the enum has no name to write.
                None => Json::from(*number),
            },
            _ => Json::from(*number),
        },
        Value::Message(message) => return emit_message(message),
        Value::List(items) => {
            return Emitted::Array(items.iter().map(|item| emit_value(kind, item)).collect())
        }
        Value::Map(map) => {
            let mut entries: Vec<(String, Emitted)> = map
                .iter()
                .map(|(key, value)| (map_key_string(key), emit_value(kind, value)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            return Emitted::Object(entries);
        }
    };
    Emitted::Scalar(scalar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_proto::v1::{FrameworkId, TaskId, TaskState, TaskStatus};
    use serde_json::json;

    /// Parses `input` as `message` and renders the result again.
    fn round_trip(message: &str, input: Json) -> Result<Json, String> {
        let descriptor = descriptor(message).map_err(|e| e.to_string())?;
        parse_message(&descriptor, &input, "")
            .map(|parsed| emit_message(&parsed).into_json())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parsing_and_emitting_follow_the_mesos_rules() {
        let ok = |json: Json| Ok::<Json, ()>(json);
        let cases: Vec<(&str, &str, Json, Result<Json, ()>)> = vec![
            (
                "int64 number in, number out (beyond 2^53 exactly)",
                "mesos.v1.TimeInfo",
                json!({"nanoseconds": 1_700_000_000_123_456_789_i64}),
                ok(json!({"nanoseconds": 1_700_000_000_123_456_789_i64})),
            ),
            (
                "int64 given as a string",
                "mesos.v1.TimeInfo",
                json!({"nanoseconds": "-5"}),
                ok(json!({"nanoseconds": -5})),
            ),
            (
                "an integral float is an integer",
                "mesos.v1.TimeInfo",
                json!({"nanoseconds": 7.0}),
                ok(json!({"nanoseconds": 7})),
            ),
            (
                "a fractional int64 is refused",
                "mesos.v1.TimeInfo",
                json!({"nanoseconds": 1.5}),
                Err(()),
            ),
            (
                "a non-numeric string is refused",
                "mesos.v1.TimeInfo",
                json!({"nanoseconds": "soon"}),
                Err(()),
            ),
            (
                "missing required field",
                "mesos.v1.TimeInfo",
                json!({}),
                Err(()),
            ),
            (
                "null is unset, so still missing",
                "mesos.v1.TimeInfo",
                json!({"nanoseconds": null}),
                Err(()),
            ),
            (
                "the body must be an object",
                "mesos.v1.TimeInfo",
                json!([1]),
                Err(()),
            ),
            (
                "uint64 as number and as string",
                "mesos.v1.Value.Range",
                json!({"begin": "31000", "end": 18_446_744_073_709_551_615_u64}),
                ok(json!({"begin": 31000, "end": 18_446_744_073_709_551_615_u64})),
            ),
            (
                "negative uint64 is refused",
                "mesos.v1.Value.Range",
                json!({"begin": -1, "end": 2}),
                Err(()),
            ),
            (
                "int32 given as a string",
                "mesos.v1.scheduler.Event.Failure",
                json!({"status": "3"}),
                ok(json!({"status": 3})),
            ),
            (
                "int32 out of range",
                "mesos.v1.scheduler.Event.Failure",
                json!({"status": 4_294_967_296_i64}),
                Err(()),
            ),
            (
                "unset field with a default is emitted",
                "mesos.v1.Filters",
                json!({}),
                ok(json!({"refuse_seconds": 5.0})),
            ),
            (
                "null leaves the default",
                "mesos.v1.Filters",
                json!({"refuse_seconds": null}),
                ok(json!({"refuse_seconds": 5.0})),
            ),
            (
                "camelCase keys are ignored",
                "mesos.v1.Filters",
                json!({"refuseSeconds": 1.0}),
                ok(json!({"refuse_seconds": 5.0})),
            ),
            (
                "double given as a string",
                "mesos.v1.Filters",
                json!({"refuse_seconds": "2.5"}),
                ok(json!({"refuse_seconds": 2.5})),
            ),
            (
                "Infinity string",
                "mesos.v1.Filters",
                json!({"refuse_seconds": "Infinity"}),
                ok(json!({"refuse_seconds": "Infinity"})),
            ),
            (
                "-Infinity string",
                "mesos.v1.Filters",
                json!({"refuse_seconds": "-Infinity"}),
                ok(json!({"refuse_seconds": "-Infinity"})),
            ),
            (
                "a boolean is not a double",
                "mesos.v1.Filters",
                json!({"refuse_seconds": true}),
                Err(()),
            ),
            (
                "defaults emitted, deprecated defaults not",
                "mesos.v1.FrameworkInfo",
                json!({"user": "u", "name": "n"}),
                ok(json!({"user": "u", "name": "n", "failover_timeout": 0.0, "checkpoint": false})),
            ),
            (
                "bool default and unknown enum name in a repeated message",
                "mesos.v1.FrameworkInfo",
                json!({"user": "u", "name": "n", "checkpoint": true,
                       "capabilities": [{"type": "PARTITION_AWARE"}, {"type": "FUTURE"}]}),
                ok(
                    json!({"user": "u", "name": "n", "failover_timeout": 0.0, "checkpoint": true,
                          "capabilities": [{"type": "PARTITION_AWARE"}, {}]}),
                ),
            ),
            (
                "a string is not a bool",
                "mesos.v1.FrameworkInfo",
                json!({"user": "u", "name": "n", "checkpoint": "true"}),
                Err(()),
            ),
            (
                "enum by name",
                "mesos.v1.scheduler.Call",
                json!({"type": "DECLINE"}),
                ok(json!({"type": "DECLINE"})),
            ),
            (
                "enum by number is refused",
                "mesos.v1.scheduler.Call",
                json!({"type": 4}),
                Err(()),
            ),
            (
                "unknown enum name on an optional field is dropped",
                "mesos.v1.scheduler.Call",
                json!({"type": "NO_SUCH_CALL"}),
                ok(json!({})),
            ),
            (
                "unknown enum name on a required field is refused",
                "mesos.v1.TaskStatus",
                json!({"task_id": {"value": "t"}, "state": "TASK_SLEEPING"}),
                Err(()),
            ),
            (
                "missing required field in a nested message",
                "mesos.v1.TaskStatus",
                json!({"task_id": {}, "state": "TASK_RUNNING"}),
                Err(()),
            ),
            (
                "empty repeated fields are omitted",
                "mesos.v1.scheduler.Call.Decline",
                json!({"offer_ids": []}),
                ok(json!({})),
            ),
            (
                "repeated fields need an array",
                "mesos.v1.scheduler.Call.Decline",
                json!({"offer_ids": {"value": "o"}}),
                Err(()),
            ),
            (
                "repeated messages",
                "mesos.v1.scheduler.Call.Decline",
                json!({"offer_ids": [{"value": "o1"}, {"value": "o2"}],
                       "filters": {"refuse_seconds": 1}}),
                ok(json!({"offer_ids": [{"value": "o1"}, {"value": "o2"}],
                          "filters": {"refuse_seconds": 1.0}})),
            ),
            (
                "bytes are standard base64 with padding",
                "mesos.v1.scheduler.Call.Message",
                json!({"agent_id": {"value": "a"}, "executor_id": {"value": "e"},
                       "data": "+/8="}),
                ok(
                    json!({"agent_id": {"value": "a"}, "executor_id": {"value": "e"},
                          "data": "+/8="}),
                ),
            ),
            (
                "bytes without padding are refused",
                "mesos.v1.scheduler.Call.Message",
                json!({"agent_id": {"value": "a"}, "executor_id": {"value": "e"},
                       "data": "+/8"}),
                Err(()),
            ),
            (
                "url-safe base64 is refused",
                "mesos.v1.scheduler.Call.Message",
                json!({"agent_id": {"value": "a"}, "executor_id": {"value": "e"},
                       "data": "-_8="}),
                Err(()),
            ),
            (
                "a number is not a string",
                "mesos.v1.FrameworkID",
                json!({"value": 5}),
                Err(()),
            ),
            (
                "maps are objects",
                "mesos.v1.OfferFilters.ResourceQuantities",
                json!({"quantities": {"cpus": {"value": "0.5"}}}),
                ok(json!({"quantities": {"cpus": {"value": 0.5}}})),
            ),
        ];
        for (name, message, input, expected) in cases {
            let got = round_trip(message, input);
            match (&got, &expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{name}"),
                (Err(_), Err(())) => {}
                _ => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_field() {
        let error = round_trip(
            "mesos.v1.scheduler.Call",
            json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u"}}}),
        )
        .unwrap_err();
        assert!(error.contains("'subscribe.framework_info.name'"), "{error}");
        let error = round_trip("mesos.v1.scheduler.Call", json!({"type": 1})).unwrap_err();
        assert!(error.contains("'type'"), "{error}");
    }

    #[test]
    fn typed_calls_parse_into_prost_types() {
        let uuid = uuid::Uuid::new_v4();
        let body = json!({
            "framework_id": {"value": "f"},
            "type": "ACKNOWLEDGE",
            "acknowledge": {
                "agent_id": {"value": "a"},
                "task_id": {"value": "t"},
                "uuid": BASE64.encode(uuid.as_bytes()),
            },
        });
        let call: scheduler::Call = from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!(call.r#type(), scheduler::call::Type::Acknowledge);
        let acknowledge = call.acknowledge.unwrap();
        assert_eq!(acknowledge.uuid.as_ref(), uuid.as_bytes());
        assert_eq!(acknowledge.task_id.value, "t");

        let missing: Result<executor::Call, _> =
            from_json(json!({"type": "HEARTBEAT"}).to_string().as_bytes());
        assert!(
            missing.is_err(),
            "executor_id and framework_id are required"
        );
        let not_json: Result<executor::Call, _> = from_json(b"{\"type\":");
        assert!(not_json.is_err());
    }

    #[test]
    fn typed_events_render_as_mesos_json() {
        let event = scheduler::Event {
            r#type: Some(scheduler::event::Type::Subscribed as i32),
            subscribed: Some(scheduler::event::Subscribed {
                framework_id: FrameworkId { value: "f".into() },
                heartbeat_interval_seconds: Some(15.0),
                master_info: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            to_json(&event).unwrap().into_json(),
            json!({"type": "SUBSCRIBED", "subscribed": {
                "framework_id": {"value": "f"}, "heartbeat_interval_seconds": 15.0}})
        );
        // Fields come in declaration order, as Mesos writes them.
        assert_eq!(
            String::from_utf8(to_json_bytes(&event).unwrap()).unwrap(),
            r#"{"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"f"},"heartbeat_interval_seconds":15.0}}"#
        );

        let uuid = Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let update = scheduler::Event {
            r#type: Some(scheduler::event::Type::Update as i32),
            update: Some(scheduler::event::Update {
                status: TaskStatus {
                    // Quotes, control characters and non-ASCII text are escaped.
                    task_id: TaskId {
                        value: "t \"1\"\n\u{e9}".into(),
                    },
                    state: TaskState::TaskRunning as i32,
                    uuid: Some(uuid.clone()),
                    timestamp: Some(1.5),
                    ..Default::default()
                },
            }),
            ..Default::default()
        };
        let json = to_json(&update).unwrap().into_json();
        let status = &json["update"]["status"];
        assert_eq!(status["state"], "TASK_RUNNING");
        assert_eq!(status["uuid"], BASE64.encode(&uuid));
        assert_eq!(status["timestamp"], 1.5);
        // The bytes of the document parse back to the same event.
        let bytes = to_json_bytes(&update).unwrap();
        let back: scheduler::Event = from_json(&bytes).unwrap();
        assert_eq!(back, update);
    }
}
