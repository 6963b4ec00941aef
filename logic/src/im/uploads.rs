//! Uploads: avatars, images and files, stored in the database (so that any api and logic node can serve
//! them) with a size limit and an allow-list of content types checked against the file's first bytes.
//! An upload is public by its unguessable id, so that `<img src>` works without a token.

use imcloud_common::im::accounts::Upload;
use imcloud_common::im::operations::{Binary, CreateUpload, GetUpload};

use super::db::now_ms;
use super::error::ImError;
use super::rate_limits::{refuse, window_check};
use super::{Caller, Done, Im, ImResult};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

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
    /// Refuses an upload over `IMCLOUD_IM_UPLOADS_PER_HOUR` or `IMCLOUD_IM_UPLOAD_BYTES_PER_DAY`.
    async fn check_upload_quota(&self, me: i64, size: i64) -> Result<(), ImError> {
        let now = now_ms();
        let (per_hour, bytes_per_day) = (
            self.settings.uploads_per_hour,
            self.settings.upload_bytes_per_day,
        );
        if per_hour > 0 {
            let (used, oldest): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM uploads WHERE owner_id = $1 AND created_at > $2",
            )
            .bind(me)
            .bind(now - HOUR_MS)
            .fetch_one(&self.db.pool)
            .await?;
            window_check(per_hour, used, oldest, HOUR_MS, now).map_err(|wait| {
                refuse(
                    "uploads",
                    format!("at most {per_hour} uploads an hour; try again in {wait} s"),
                    wait,
                )
            })?;
        }
        if bytes_per_day > 0 {
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT created_at, size FROM uploads WHERE owner_id = $1 AND created_at > $2 ORDER BY created_at",
            )
            .bind(me)
            .bind(now - DAY_MS)
            .fetch_all(&self.db.pool)
            .await?;
            let used: i64 = rows.iter().map(|(_, s)| s).sum();
            if used + size > bytes_per_day {
                // Wait until enough of the oldest uploads leave the window.
                let mut freed = 0;
                let mut until = now;
                for (at, s) in &rows {
                    freed += s;
                    until = at + DAY_MS;
                    if used - freed + size <= bytes_per_day {
                        break;
                    }
                }
                let wait = (((until - now).max(0) + 999) / 1000).max(1) as u64;
                return Err(refuse(
                    "upload_bytes",
                    format!("at most {bytes_per_day} upload bytes a day; try again in {wait} s"),
                    wait,
                ));
            }
        }
        Ok(())
    }

    pub(crate) async fn upload(&self, c: &Caller<'_>, _r: CreateUpload) -> ImResult<Upload> {
        let (me, data, content_type) = (c.me, c.raw, c.content_type);
        let ct = check_upload(content_type, data, self.settings.upload_max_bytes)?;
        self.check_upload_quota(me, data.len() as i64).await?;
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
        Ok(Done::created(Upload {
            url: format!("/v1/uploads/{id}"),
            id,
            content_type: ct,
            size: data.len() as i64,
        }))
    }

    pub(crate) async fn download(&self, r: GetUpload) -> ImResult<Binary> {
        let id = r.path.id.as_str();
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ImError::not_found("no such upload"));
        }
        let (ct, data): (String, Vec<u8>) =
            sqlx::query_as("SELECT content_type, data FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db.pool)
                .await?
                .ok_or_else(|| ImError::not_found("no such upload"))?;
        Ok(Done::ok(Binary {
            content_type: ct,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_is_the_one_the_api_documents() {
        let here: Vec<&str> = ALLOWED.iter().map(|(t, _)| *t).collect();
        assert_eq!(here, imcloud_common::im::operations::UPLOAD_CONTENT_TYPES);
    }

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
