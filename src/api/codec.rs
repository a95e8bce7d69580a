//! The codec of every `lms.v1` server: tonic's prost codec, with one check on every request
//! message before it is decoded: no string field holds a control character, except the
//! line breaks and tabs of free-text fields.
//!
//! A NUL byte is refused by PostgreSQL text columns (a whole batch failed with INTERNAL) and cut
//! a SQLite LIKE pattern short (a search matched everything); other control characters corrupt
//! logs, CSV exports and the pages that show names. Checking here, on the wire bytes, covers every
//! method, stream message and nested field in one place, and names the field in the answer:
//! INVALID_ARGUMENT with a `BadRequest` violation such as `people[3].full_name`.

use std::{marker::PhantomData, sync::LazyLock};

use prost::{Message, Name};
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

use crate::error::Error;

/// Fields whose text may span lines: they may hold `\n`, `\r` and `\t`, never other controls.
const MULTILINE_FIELDS: &[&str] = &[
    "description",
    "notes",
    "note",
    "comment",
    "text",
    "free_text_answers",
    "reason",
    "withdraw_reason",
    "cancel_reason",
    "status_reason",
    "provenance_note",
    "purpose",
    "location",
    "payload_json",
    "credential_json",
];

/// Nesting deeper than this is left to prost, which refuses it.
const MAX_DEPTH: usize = 64;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptor set decodes")
});

/// tonic's prost codec whose decoder checks strings first ([`check_strings`]).
#[derive(Debug, Clone)]
pub struct CheckedCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for CheckedCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for CheckedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Name + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder {
            descriptor: POOL.get_message_by_name(&U::full_name()),
            _type: PhantomData,
        }
    }
}

/// Decodes `U` after checking its strings.
#[derive(Debug, Clone)]
pub struct CheckedDecoder<U> {
    descriptor: Option<MessageDescriptor>,
    _type: PhantomData<U>,
}

impl<U: Message + Default + Name> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use prost::bytes::Buf as _;
        let bytes = buf.copy_to_bytes(buf.remaining());
        if let Some(descriptor) = &self.descriptor {
            check_strings(&bytes, descriptor).map_err(Status::from)?;
        }
        U::decode(bytes).map(Some).map_err(|error| {
            // The body is not the message it claims to be: the caller's fault, not a bug.
            Status::from(Error::invalid(
                U::full_name(),
                format!("is not a valid encoding of this message: {error}"),
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Walks the encoded message `bytes` of type `descriptor` and fails with INVALID_ARGUMENT naming
/// the first string field that holds a control character it may not hold. Malformed bytes are
/// left to the decoder, which refuses them.
pub fn check_strings(bytes: &[u8], descriptor: &MessageDescriptor) -> Result<(), Error> {
    match walk(bytes, descriptor, "", 0) {
        Some((field, description)) => Err(Error::invalid(field, description)),
        None => Ok(()),
    }
}

/// Returns the path of the first offending field and what is wrong with it.
fn walk(
    mut bytes: &[u8],
    descriptor: &MessageDescriptor,
    prefix: &str,
    depth: usize,
) -> Option<(String, String)> {
    if depth > MAX_DEPTH {
        return None;
    }
    // How many times each repeated field was seen so far, for `field[index]` paths.
    let mut seen: Vec<(u32, usize)> = Vec::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let (number, wire_type) = (u32::try_from(key >> 3).ok()?, key & 7);
        let payload = match wire_type {
            0 => {
                read_varint(&mut bytes)?;
                continue;
            }
            1 | 5 => {
                let width = if wire_type == 1 { 8 } else { 4 };
                bytes = bytes.get(width..)?;
                continue;
            }
            2 => {
                let length = usize::try_from(read_varint(&mut bytes)?).ok()?;
                let payload = bytes.get(..length)?;
                bytes = &bytes[length..];
                payload
            }
            _ => return None,
        };
        let Some(field) = descriptor.get_field(number) else {
            continue;
        };
        let mut path = if prefix.is_empty() {
            field.name().to_owned()
        } else {
            format!("{prefix}.{}", field.name())
        };
        if field.is_list() {
            let index = match seen
                .iter_mut()
                .find(|(seen_number, _)| *seen_number == number)
            {
                Some((_, count)) => {
                    *count += 1;
                    *count - 1
                }
                None => {
                    seen.push((number, 1));
                    0
                }
            };
            path = format!("{path}[{index}]");
        }
        match field.kind() {
            Kind::String => {
                let Ok(text) = std::str::from_utf8(payload) else {
                    return None;
                };
                let multiline = MULTILINE_FIELDS.contains(&field.name());
                if let Some(problem) = forbidden_character(text, multiline) {
                    return Some((path, problem));
                }
            }
            Kind::Message(nested) => {
                if let Some(found) = walk(payload, &nested, &path, depth + 1) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

/// Describes the first control character of `text` that it may not hold, if any.
fn forbidden_character(text: &str, multiline: bool) -> Option<String> {
    let (position, character) = text.char_indices().find(|(_, character)| {
        character.is_control() && !(multiline && matches!(character, '\n' | '\r' | '\t'))
    })?;
    let allowed = if multiline {
        "; only line breaks and tabs are allowed"
    } else {
        ""
    };
    Some(format!(
        "contains the control character U+{:04X} at byte {position}{allowed}",
        u32::from(character)
    ))
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn check<M: Message + Name>(message: &M) -> Result<(), Error> {
        let descriptor = POOL.get_message_by_name(&M::full_name()).unwrap();
        check_strings(&message.encode_to_vec(), &descriptor)
    }

    fn violated_field(result: Result<(), Error>) -> String {
        match result {
            Err(Error::InvalidArgument(violations)) => violations.as_slice()[0].field.clone(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn every_request_type_has_a_descriptor() {
        assert!(
            POOL.get_message_by_name(&pb::BatchUpsertPeopleRequest::full_name())
                .is_some()
        );
        assert!(
            POOL.get_message_by_name(&pb::ProgressEvent::full_name())
                .is_some()
        );
    }

    #[test]
    fn a_nul_in_a_nested_repeated_field_is_named() {
        let mut people: Vec<pb::PersonRecord> = (0..3)
            .map(|index| pb::PersonRecord {
                external_id: format!("E{index}"),
                full_name: "Officer".to_owned(),
                ..Default::default()
            })
            .collect();
        people[2].full_name = "Ali\0bin Abu".to_owned();
        let request = pb::BatchUpsertPeopleRequest {
            people,
            request_id: String::new(),
        };
        assert_eq!(violated_field(check(&request)), "people[2].full_name");
    }

    #[test]
    fn line_breaks_only_in_free_text() {
        let with = |name: &str, description: &str| pb::CreateCourseRequest {
            course: Some(pb::Course {
                title: name.to_owned(),
                description: description.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        check(&with("Data literacy", "Line one\nLine two\tend")).unwrap();
        assert_eq!(
            violated_field(check(&with("Data\nliteracy", ""))),
            "course.title"
        );
        assert_eq!(
            violated_field(check(&with("Data", "bell \u{7}"))),
            "course.description"
        );
        assert_eq!(
            violated_field(check(&with("C1 \u{85} control", ""))),
            "course.title"
        );
    }

    #[test]
    fn ordinary_text_passes() {
        check(&pb::ListCoursesRequest {
            query: "Kecerdasan buatan — AI 入门 🙂".to_owned(),
            ..Default::default()
        })
        .unwrap();
    }
}
