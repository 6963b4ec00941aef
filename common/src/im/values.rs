//! Validated values of the IM contract: what a request field must be, checked once while the request
//! is decoded (as mini-redis's `Command::from_frame` turns a frame into a typed command), so a handler
//! never sees an id of 0, an over-long nickname or an unknown role. Each type deserializes only from
//! a valid value, serializes as its plain JSON form, and documents its constraints in the OpenAPI
//! schema (`minimum`, `minLength`, `maxLength`, `enum`).
//!
//! Invariant: a value of one of these types always satisfies its stated rule.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

fn string_schema(min: Option<usize>, max: Option<usize>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(min)
        .max_length(max)
        .description(Some(description.to_string()))
        .into()
}

/// A positive id (users, groups, requests, friend groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Id(i64);

impl Id {
    pub fn new(v: i64) -> Option<Id> {
        (v > 0).then_some(Id(v))
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let v = lenient_i64(d)?;
        Id::new(v)
            .ok_or_else(|| serde::de::Error::custom(format!("must be a positive integer, got {v}")))
    }
}

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(1))
            .into()
    }
}
impl ToSchema for Id {}

/// An integer that may also arrive as a decimal string (query strings, path segments and the op 4
/// commands, which have always accepted both).
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("must be an integer, got {v:?}")))
        }
    }
    d.deserialize_any(V)
}

/// [`lenient_i64`] for optional fields: a missing field, `null` and `""` are `None`.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            opt_int(d)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("integer out of range"))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v.trim() {
                "" => Ok(None),
                t => t
                    .parse()
                    .map(Some)
                    .map_err(|_| E::custom(format!("must be an integer, got {v:?}"))),
            }
        }
    }
    d.deserialize_any(V)
}

/// Trimmed text of `MIN` to `MAX` characters with no control characters but newline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Text<const MIN: usize, const MAX: usize>(String);

impl<const MIN: usize, const MAX: usize> Text<MIN, MAX> {
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        let n = v.chars().count();
        if n < MIN || n > MAX {
            return Err(if MIN > 0 {
                format!("must be {MIN} to {MAX} characters")
            } else {
                format!("must be at most {MAX} characters")
            });
        }
        if v.chars().any(|c| c.is_control() && c != '\n') {
            return Err("must not contain control characters".into());
        }
        Ok(Text(v.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MIN: usize, const MAX: usize> Serialize for Text<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const MIN: usize, const MAX: usize> Deserialize<'de> for Text<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Text::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl<const MIN: usize, const MAX: usize> PartialSchema for Text<MIN, MAX> {
    fn schema() -> RefOr<Schema> {
        string_schema(
            Some(MIN),
            Some(MAX),
            "trimmed; counted in characters; no control characters but newline",
        )
    }
}
impl<const MIN: usize, const MAX: usize> ToSchema for Text<MIN, MAX> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("Text{MIN}to{MAX}"))
    }
}

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(email: &str) -> Result<Email, String> {
        let e = email.trim().to_lowercase();
        let valid = e.len() <= 254
            && !e.chars().any(|c| c.is_whitespace() || c.is_control())
            && match e.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if valid {
            Ok(Email(e))
        } else {
            Err("email is not a valid address".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Email, D::Error> {
        Email::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(3))
            .max_length(Some(254))
            .format(Some(utoipa::openapi::SchemaFormat::Custom("email".into())))
            .description(Some("case-insensitive; stored lower-cased".to_string()))
            .into()
    }
}
impl ToSchema for Email {}

/// A password: 8 to 128 characters, taken as given (not trimmed).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    pub fn parse(p: &str) -> Result<Password, String> {
        if (8..=128).contains(&p.chars().count()) {
            Ok(Password(p.to_string()))
        } else {
            Err("password must be 8 to 128 characters".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Password {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Password, D::Error> {
        Password::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Password {
    fn schema() -> RefOr<Schema> {
        string_schema(Some(8), Some(128), "8 to 128 characters")
    }
}
impl ToSchema for Password {}

/// A password as typed at login or as a confirmation: any non-empty string up to 1024 bytes (it is only
/// compared, never stored).
#[derive(Clone, PartialEq, Eq)]
pub struct GivenPassword(String);

impl fmt::Debug for GivenPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GivenPassword(***)")
    }
}

impl GivenPassword {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for GivenPassword {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GivenPassword {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GivenPassword, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 1024 {
            return Err(serde::de::Error::custom("password must be 1 to 1024 bytes"));
        }
        Ok(GivenPassword(s))
    }
}

impl PartialSchema for GivenPassword {
    fn schema() -> RefOr<Schema> {
        string_schema(Some(1), Some(1024), "the account's password")
    }
}
impl ToSchema for GivenPassword {}

/// An avatar or image reference: `""`, exactly an upload's path `/v1/uploads/<32 hex>`, or an
/// `http(s)://` URL without spaces; at most 512 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct ImageRef(String);

impl ImageRef {
    pub fn parse(v: &str) -> Result<ImageRef, String> {
        let v = Text::<0, 512>::parse(v)?.into_string();
        let upload = v
            .strip_prefix("/v1/uploads/")
            .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        let web = (v.starts_with("https://") || v.starts_with("http://"))
            && !v.contains(char::is_whitespace);
        if v.is_empty() || upload || web {
            Ok(ImageRef(v))
        } else {
            Err("must be an upload path (/v1/uploads/…) or an http(s) URL".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ImageRef, D::Error> {
        ImageRef::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for ImageRef {
    fn schema() -> RefOr<Schema> {
        string_schema(
            Some(0),
            Some(512),
            "\"\", an upload path /v1/uploads/<32 hex> or an http(s) URL",
        )
    }
}
impl ToSchema for ImageRef {}

/// A birthday: `YYYY-MM-DD` (years 1900 to 2100) or `""`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Birthday(String);

impl Birthday {
    pub fn parse(b: &str) -> Result<Birthday, String> {
        if b.is_empty() {
            return Ok(Birthday(String::new()));
        }
        let parts: Vec<&str> = b.split('-').collect();
        let ok = parts.len() == 3
            && parts[0].len() == 4
            && parts[1].len() == 2
            && parts[2].len() == 2
            && matches!(parts[0].parse::<u32>(), Ok(1900..=2100))
            && matches!(parts[1].parse::<u32>(), Ok(1..=12))
            && matches!(parts[2].parse::<u32>(), Ok(1..=31));
        if ok {
            Ok(Birthday(b.to_string()))
        } else {
            Err("birthday must be YYYY-MM-DD".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Birthday {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Birthday, D::Error> {
        Birthday::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Birthday {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(10))
            .pattern(Some(r"^(|\d{4}-\d{2}-\d{2})$"))
            .description(Some(
                "YYYY-MM-DD (years 1900 to 2100), or empty".to_string(),
            ))
            .into()
    }
}
impl ToSchema for Birthday {}

/// A profile's sex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Unknown,
    Male,
    Female,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Unknown => "unknown",
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
}

/// A conversation id: `u-<smaller id>-<larger id>` (private) or `g-<group id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationId {
    Private(i64, i64),
    Group(i64),
}

impl ConversationId {
    pub fn parse(s: &str) -> Result<ConversationId, String> {
        let bad = || format!("conversation id must be u-<id>-<id> or g-<id>, got {s:?}");
        let id = |p: &str| {
            p.parse::<i64>()
                .ok()
                .filter(|n| *n > 0 && p == n.to_string())
        };
        if let Some(rest) = s.strip_prefix("g-") {
            return id(rest).map(ConversationId::Group).ok_or_else(bad);
        }
        let rest = s.strip_prefix("u-").ok_or_else(bad)?;
        let (a, b) = rest.split_once('-').ok_or_else(bad)?;
        match (id(a), id(b)) {
            (Some(a), Some(b)) if a < b => Ok(ConversationId::Private(a, b)),
            _ => Err(bad()),
        }
    }

    /// The private conversation of two users.
    pub fn private(a: i64, b: i64) -> ConversationId {
        ConversationId::Private(a.min(b), a.max(b))
    }

    /// The other participant of a private conversation.
    pub fn peer_of(self, me: i64) -> Option<i64> {
        match self {
            ConversationId::Private(a, b) if a == me => Some(b),
            ConversationId::Private(a, b) if b == me => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversationId::Private(a, b) => write!(f, "u-{a}-{b}"),
            ConversationId::Group(g) => write!(f, "g-{g}"),
        }
    }
}

impl Serialize for ConversationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ConversationId, D::Error> {
        ConversationId::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for ConversationId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^(u-[1-9][0-9]*-[1-9][0-9]*|g-[1-9][0-9]*)$"))
            .max_length(Some(41))
            .description(Some(
                "u-<smaller user id>-<larger user id> (private) or g-<group id>".to_string(),
            ))
            .into()
    }
}
impl ToSchema for ConversationId {}

/// A member's role in a group.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GroupRole {
    Owner,
    Admin,
    Member,
}

impl GroupRole {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupRole::Owner => "owner",
            GroupRole::Admin => "admin",
            GroupRole::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<GroupRole> {
        match s {
            "owner" => Some(GroupRole::Owner),
            "admin" => Some(GroupRole::Admin),
            "member" => Some(GroupRole::Member),
            _ => None,
        }
    }
    /// Owner or admin.
    pub fn is_manager(self) -> bool {
        matches!(self, GroupRole::Owner | GroupRole::Admin)
    }
}

/// A role the owner may give (ownership moves only by transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssignableRole {
    Admin,
    Member,
}

impl From<AssignableRole> for GroupRole {
    fn from(r: AssignableRole) -> GroupRole {
        match r {
            AssignableRole::Admin => GroupRole::Admin,
            AssignableRole::Member => GroupRole::Member,
        }
    }
}

/// The state of a friend request or a group join request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Accepted,
    Refused,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Accepted => "accepted",
            RequestStatus::Refused => "refused",
        }
    }
    pub fn parse(s: &str) -> Option<RequestStatus> {
        match s {
            "pending" => Some(RequestStatus::Pending),
            "accepted" => Some(RequestStatus::Accepted),
            "refused" => Some(RequestStatus::Refused),
            _ => None,
        }
    }
    /// The status a pending request moves to when it is handled.
    pub fn decided(accept: bool) -> RequestStatus {
        if accept {
            RequestStatus::Accepted
        } else {
            RequestStatus::Refused
        }
    }
}

/// What a message is. `text`, `image` and `file` are what users send; the others are changes to an
/// earlier message, kept as events of their own in the conversation's seq stream (`ref_seq` names the
/// message they change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Image,
    File,
    /// New content for the message at `ref_seq`.
    Edit,
    /// The message at `ref_seq` was withdrawn.
    Recall,
    /// `content` (an emoji) was added to the message at `ref_seq` by the sender.
    React,
    /// `content` (an emoji) was taken off the message at `ref_seq` by the sender.
    Unreact,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::File => "file",
            MessageKind::Edit => "edit",
            MessageKind::Recall => "recall",
            MessageKind::React => "react",
            MessageKind::Unreact => "unreact",
        }
    }
    pub fn parse(s: &str) -> Option<MessageKind> {
        Some(match s {
            "text" => MessageKind::Text,
            "image" => MessageKind::Image,
            "file" => MessageKind::File,
            "edit" => MessageKind::Edit,
            "recall" => MessageKind::Recall,
            "react" => MessageKind::React,
            "unreact" => MessageKind::Unreact,
            _ => return None,
        })
    }
    /// What a user sends (counted as unread), as opposed to a change to an earlier message.
    pub fn is_content(self) -> bool {
        matches!(
            self,
            MessageKind::Text | MessageKind::Image | MessageKind::File
        )
    }
}

/// The kinds a user may send with `POST …/messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SendKind {
    #[default]
    Text,
    Image,
    File,
}

impl From<SendKind> for MessageKind {
    fn from(k: SendKind) -> MessageKind {
        match k {
            SendKind::Text => MessageKind::Text,
            SendKind::Image => MessageKind::Image,
            SendKind::File => MessageKind::File,
        }
    }
}

/// An emoji reaction: 1 to 8 characters, each an emoji code point, a variation selector, a zero-width
/// joiner, a skin-tone modifier or a keycap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(s: &str) -> Result<Emoji, String> {
        let n = s.chars().count();
        let emoji_char = |c: char| {
            let u = c as u32;
            matches!(u,
                0x1F000..=0x1FAFF   // pictographs, emoticons, symbols, flags
                | 0x2600..=0x27BF   // miscellaneous symbols, dingbats
                | 0x2300..=0x23FF   // technical (⌚, ⏰)
                | 0x2B00..=0x2BFF   // arrows, stars (⭐)
                | 0x2190..=0x21FF   // arrows
                | 0x3030 | 0x303D | 0x3297 | 0x3299 | 0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139
                | 0xFE0E | 0xFE0F   // variation selectors
                | 0x200D            // zero-width joiner
                | 0x20E3            // keycap
                | 0xE0020..=0xE007F // tags (subdivision flags)
            ) || (c.is_ascii_digit() || c == '#' || c == '*') && n > 1
        };
        if (1..=8).contains(&n)
            && s.chars().all(emoji_char)
            && s.chars().any(|c| c as u32 >= 0x00A9)
        {
            Ok(Emoji(s.to_string()))
        } else {
            Err(format!("{s:?} is not an emoji"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Emoji {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Emoji, D::Error> {
        Emoji::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Emoji {
    fn schema() -> RefOr<Schema> {
        string_schema(Some(1), Some(8), "one emoji (with its modifiers)")
    }
}
impl ToSchema for Emoji {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_positive_and_accept_strings() {
        assert_eq!(serde_json::from_value::<Id>(json!(5)).ok(), Id::new(5));
        assert_eq!(serde_json::from_value::<Id>(json!("7")).ok(), Id::new(7));
        assert!(serde_json::from_value::<Id>(json!(0)).is_err());
        assert!(serde_json::from_value::<Id>(json!(-3)).is_err());
        assert!(serde_json::from_value::<Id>(json!("x")).is_err());
        assert!(serde_json::from_value::<Id>(json!(1.5)).is_err());
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(
            Text::<1, 3>::parse("  ab ").map(Text::into_string),
            Ok("ab".into())
        );
        assert!(Text::<1, 3>::parse("").is_err());
        assert!(Text::<1, 3>::parse("   ").is_err());
        assert!(Text::<1, 3>::parse("abcd").is_err());
        assert!(Text::<0, 3>::parse("a\u{0}").is_err());
        assert!(Text::<1, 3>::parse("日本語").is_ok());
    }

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(
            Email::parse(" A@Example.COM ").map(|e| e.0),
            Ok("a@example.com".into())
        );
        for bad in ["", "a", "a@b", "@b.c", "a@.c", "a@b.", "a b@c.d", "a@b@c.d"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_values_are_checked() {
        assert!(Birthday::parse("1990-02-28").is_ok());
        assert!(Birthday::parse("").is_ok());
        assert!(Birthday::parse("1990-13-01").is_err());
        assert!(Birthday::parse("90-01-01").is_err());
        assert!(ImageRef::parse("/v1/uploads/0123456789abcdef0123456789abcdef").is_ok());
        assert!(ImageRef::parse("/v1/uploads/../../v1/me").is_err());
        assert!(ImageRef::parse("https://cdn.example.com/a.png").is_ok());
        assert!(ImageRef::parse("javascript:alert(1)").is_err());
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("long enough").is_ok());
    }

    #[test]
    fn conversation_ids_parse_strictly() {
        assert_eq!(
            ConversationId::parse("u-1-2"),
            Ok(ConversationId::Private(1, 2))
        );
        assert_eq!(ConversationId::parse("g-7"), Ok(ConversationId::Group(7)));
        assert_eq!(ConversationId::private(9, 3).to_string(), "u-3-9");
        assert_eq!(ConversationId::private(9, 3).peer_of(9), Some(3));
        for bad in [
            "u-2-1", "u-1-1", "u-1", "g-0", "g--1", "g-01", "x-1", "u-1-2-3", "", "g-a",
        ] {
            assert!(ConversationId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emoji_are_recognised() {
        for ok in ["👍", "❤️", "👍🏽", "👨‍👩‍👧", "🇫🇷", "⭐", "1️⃣"]
        {
            assert!(Emoji::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "ok", "1", "👍 ", "<b>", "👍👍👍👍👍👍👍👍👍"] {
            assert!(Emoji::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_use_their_wire_names() {
        assert_eq!(
            serde_json::to_value(GroupRole::Admin).ok(),
            Some(json!("admin"))
        );
        assert_eq!(GroupRole::parse("owner"), Some(GroupRole::Owner));
        assert_eq!(
            RequestStatus::parse("refused"),
            Some(RequestStatus::Refused)
        );
        assert!(serde_json::from_value::<AssignableRole>(json!("owner")).is_err());
        assert_eq!(MessageKind::parse("recall"), Some(MessageKind::Recall));
        assert!(!MessageKind::React.is_content());
    }
}
