//! Uploads: avatars, images and files, stored in the database (so that any api and logic node can serve
//! them) with a size limit and an allow-list of content types checked against the file's first bytes.
//! An upload is public by its unguessable id, so that `<img src>` works without a token.

use serde::Serialize;
use utoipa::ToSchema;

use super::args::Args;
use super::db::now_ms;
use super::error::ImError;
use super::{Im, ImResult, Reply};

#[derive(Debug, Serialize, ToSchema)]
pub struct Upload {
    pub id: String,
    /// Where to fetch it (also what avatar and image messages reference).
    pub url: String,
    pub content_type: String,
    pub size: i64,
}

/// The content types accepted, each with the magic bytes the file must start with (none = any).
const ALLOWED: &[(&str, &[&[u8]])] = &[
    ("image/png", &[b"\x89PNG\r\n\x1a\n"]),
    ("image/jpeg", &[b"\xff\xd8\xff"]),
    ("image/gif", &[b"GIF87a", b"GIF89a"]),
    ("image/webp", &[b"RIFF"]),
    ("application/pdf", &[b"%PDF-"]),
    ("application/zip", &[b"PK\x03\x04"]),
    ("text/plain", &[]),
    ("application/octet-stream", &[]),
];

/// Checks the declared type against the allow-list and the file's first bytes.
pub fn check_upload(content_type: &str, data: &[u8], max: usize) -> Result<String, ImError> {
    if data.is_empty() {
        return Err(ImError::invalid("the upload is empty"));
    }
    if data.len() > max {
        return Err(ImError::new(
            413,
            "too_large",
            format!("uploads are limited to {max} bytes"),
        ));
    }
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((name, magics)) = ALLOWED.iter().find(|(t, _)| *t == ct) else {
        let allowed: Vec<&str> = ALLOWED.iter().map(|(t, _)| *t).collect();
        return Err(ImError::new(
            415,
            "unsupported_media_type",
            format!(
                "Content-Type {ct:?} is not accepted; use one of {}",
                allowed.join(", ")
            ),
        ));
    };
    if !magics.is_empty() && !magics.iter().any(|m| data.starts_with(m)) {
        return Err(ImError::new(
            415,
            "unsupported_media_type",
            format!("the file's content is not {name}"),
        ));
    }
    if ct == "text/plain" && std::str::from_utf8(data).is_err() {
        return Err(ImError::new(
            415,
            "unsupported_media_type",
            "text/plain must be UTF-8",
        ));
    }
    Ok(name.to_string())
}

impl Im {
    pub(crate) async fn upload(&self, me: i64, data: &[u8], content_type: &str) -> ImResult {
        let ct = check_upload(content_type, data, self.settings.upload_max_bytes)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO uploads (id, owner_id, content_type, size, data, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(me)
        .bind(&ct)
        .bind(data.len() as i64)
        .bind(data.to_vec())
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        Ok(Reply::created(Upload {
            url: format!("/v1/uploads/{id}"),
            id,
            content_type: ct,
            size: data.len() as i64,
        }))
    }

    pub(crate) async fn download(&self, a: &Args) -> ImResult {
        let id = a.path_str("id")?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ImError::not_found("no such upload"));
        }
        let (ct, data): (String, Vec<u8>) =
            sqlx::query_as("SELECT content_type, data FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db.pool)
                .await?
                .ok_or_else(|| ImError::not_found("no such upload"))?;
        Ok(Reply {
            status: 200,
            body: data,
            content_type: ct,
            events: Vec::new(),
            kick: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_checked_by_type_size_and_content() {
        assert_eq!(
            check_upload("image/png", b"\x89PNG\r\n\x1a\nxx", 100),
            Ok("image/png".into())
        );
        assert_eq!(
            check_upload("image/png", b"GIF89a", 100)
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            check_upload("text/html", b"<script>", 100)
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            check_upload("text/plain", &[0u8; 101], 100)
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(
            check_upload("text/plain", b"", 100).unwrap_err().status,
            400
        );
        assert_eq!(
            check_upload("text/plain; charset=utf-8", b"hi", 100),
            Ok("text/plain".into())
        );
    }
}
