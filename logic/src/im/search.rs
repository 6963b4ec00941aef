//! Search and discovery: users by account number, nickname or exact email; groups by number or name;
//! paged. Recommendations exclude me and my friends.

use serde_json::json;

use super::args::{Args, text};
use super::groups::GroupRow;
use super::users::{User, user_columns};
use super::{Im, ImResult, Reply};

/// `%term%` for LIKE, with LIKE's wildcards in the term escaped.
fn like_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Im {
    pub(crate) async fn search_users(&self, me: i64, a: &Args) -> ImResult {
        let q = text("q", a.query_str("q"), 1, 64)?;
        let (limit, offset) = a.page()?;
        let email = q.to_lowercase();
        let users = sqlx::query_as::<_, User>(concat!("SELECT ", user_columns!(), " FROM users WHERE account_no = $1 OR email = $2 \
             OR LOWER(nickname) LIKE $3 ESCAPE '\\' ORDER BY (account_no = $1) DESC, id LIMIT $4 OFFSET $5"))
        .bind(&q)
        .bind(&email)
        .bind(like_pattern(&q.to_lowercase()))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let friend = u.id == me || self.are_friends(me, u.id).await?;
            out.push(u.public(friend));
        }
        Ok(Reply::ok(json!({"users": out})))
    }

    pub(crate) async fn search_groups(&self, a: &Args) -> ImResult {
        let q = text("q", a.query_str("q"), 1, 64)?;
        let (limit, offset) = a.page()?;
        let rows = sqlx::query_as::<_, GroupRow>(
            "SELECT id, group_no, name, description, avatar, owner_id, max_members, need_approval, all_muted, created_at \
             FROM chat_groups WHERE dismissed = 0 AND (group_no = $1 OR LOWER(name) LIKE $2 ESCAPE '\\') \
             ORDER BY (group_no = $1) DESC, id LIMIT $3 OFFSET $4",
        )
        .bind(&q)
        .bind(like_pattern(&q.to_lowercase()))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let mut groups = Vec::with_capacity(rows.len());
        for r in rows {
            groups.push(self.group_view(r, 0).await?);
        }
        Ok(Reply::ok(json!({"groups": groups})))
    }

    /// Newest users who are not me, not my friends and not already asked by me.
    pub(crate) async fn recommend_users(&self, me: i64, a: &Args) -> ImResult {
        let (limit, offset) = a.page()?;
        let users = sqlx::query_as::<_, User>(concat!("SELECT ", user_columns!(), " FROM users WHERE id <> $1 \
             AND id NOT IN (SELECT friend_id FROM friendships WHERE user_id = $1) \
             AND id NOT IN (SELECT to_id FROM friend_requests WHERE from_id = $1 AND status = 'pending') \
             ORDER BY id DESC LIMIT $2 OFFSET $3"))
        .bind(me)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let out: Vec<_> = users.into_iter().map(|u| u.public(false)).collect();
        Ok(Reply::ok(json!({"users": out})))
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_pattern("a_b%"), "%a\\_b\\%%");
    }
}
