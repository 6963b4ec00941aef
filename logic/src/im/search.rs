//! Search and discovery: users by account number, nickname or exact email; groups by number or name;
//! paged. Recommendations exclude me and my friends.

use imcloud_common::im::accounts::UserList;
use imcloud_common::im::groups::Groups;
use imcloud_common::im::operations::{RecommendUsers, SearchGroups, SearchUsers};
use imcloud_common::im::values::Text;

use super::error::ImError;
use super::groups::GroupRow;
use super::paging;
use super::rows::{UserRow, user_columns};
use super::{Caller, Done, Im, ImResult};

fn query_text(q: &str) -> Result<String, ImError> {
    Text::<1, 64>::parse(q)
        .map(Text::into_string)
        .map_err(|e| ImError::invalid(format!("q {e}")))
}

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
    pub(crate) async fn search_users(&self, c: &Caller<'_>, r: SearchUsers) -> ImResult<UserList> {
        let me = c.me;
        let q = query_text(&r.query.q)?;
        let (limit, offset) = paging::page(r.query.page, r.query.page_size)?;
        let email = q.to_lowercase();
        let users = sqlx::query_as::<_, UserRow>(concat!("SELECT ", user_columns!(), " FROM users WHERE deleted_at IS NULL AND (account_no = $1 OR email = $2 \
             OR LOWER(nickname) LIKE $3 ESCAPE '\\') ORDER BY (account_no = $1) DESC, id LIMIT $4 OFFSET $5"))
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
        Ok(Done::ok(UserList { users: out }))
    }

    pub(crate) async fn search_groups(&self, r: SearchGroups) -> ImResult<Groups> {
        let q = query_text(&r.query.q)?;
        let (limit, offset) = paging::page(r.query.page, r.query.page_size)?;
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
        Ok(Done::ok(Groups { groups }))
    }

    /// Newest users who are not me, not my friends and not already asked by me.
    pub(crate) async fn recommend_users(
        &self,
        c: &Caller<'_>,
        r: RecommendUsers,
    ) -> ImResult<UserList> {
        let me = c.me;
        let (limit, offset) = paging::page_of(&r.query)?;
        let users = sqlx::query_as::<_, UserRow>(concat!("SELECT ", user_columns!(), " FROM users WHERE id <> $1 AND deleted_at IS NULL \
             AND id NOT IN (SELECT friend_id FROM friendships WHERE user_id = $1) \
             AND id NOT IN (SELECT to_id FROM friend_requests WHERE from_id = $1 AND status = 'pending') \
             ORDER BY id DESC LIMIT $2 OFFSET $3"))
        .bind(me)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let out: Vec<_> = users.into_iter().map(|u| u.public(false)).collect();
        Ok(Done::ok(UserList { users: out }))
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
