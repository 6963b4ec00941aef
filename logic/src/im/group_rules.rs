//! Who may do what to whom in a group: pure functions of the roles involved, so that every rule is a
//! row in a table test. The handlers in `groups.rs` and `chat.rs` ask these before changing anything.
//!
//! The order is owner > admin > member. An owner acts on anyone but themself; an admin acts on
//! members only; a member acts on no one. Ownership moves only by transfer.

use imcloud_common::im::values::{AssignableRole, GroupRole};

/// Whether `actor` may mute or unmute `target` (never oneself).
pub fn may_mute(actor: GroupRole, target: GroupRole, is_self: bool) -> bool {
    !is_self && outranks(actor, target)
}

/// Whether `actor` may remove `target` from the group (leaving is not a kick).
pub fn may_kick(actor: GroupRole, target: GroupRole, is_self: bool) -> bool {
    !is_self && outranks(actor, target)
}

/// Whether `actor` may give `target` the role `to`.
pub fn may_set_role(actor: GroupRole, target: GroupRole, _to: AssignableRole) -> bool {
    actor == GroupRole::Owner && target != GroupRole::Owner
}

/// Whether `actor` may accept or refuse join requests, and change the group's settings.
pub fn may_manage(actor: GroupRole) -> bool {
    actor.is_manager()
}

/// Whether `actor` may add someone directly (an invitation): managers always, members when the
/// group takes anyone without approval.
pub fn may_invite(actor: GroupRole, need_approval: bool) -> bool {
    actor.is_manager() || !need_approval
}

/// Whether `actor` may recall a message of `author` (who has `author_role`, or left: `None`) that is
/// `age_ms` old, within a recall window of `window_ms`. Authors recall their own within the window;
/// owners and admins recall what those they outrank sent, and their own, at any time.
pub fn may_recall(
    actor: GroupRole,
    author_role: Option<GroupRole>,
    is_author: bool,
    age_ms: i64,
    window_ms: i64,
) -> bool {
    if is_author && (age_ms <= window_ms || actor.is_manager()) {
        return true;
    }
    match author_role {
        Some(r) => !is_author && outranks(actor, r),
        // The author left the group: a manager may still take their message down.
        None => actor.is_manager(),
    }
}

/// Whether a member may speak: not muted, and the group not muted (managers always speak).
pub fn may_speak(actor: GroupRole, muted_until: i64, all_muted: bool, now_ms: i64) -> bool {
    muted_until <= now_ms && (!all_muted || actor.is_manager())
}

fn outranks(actor: GroupRole, target: GroupRole) -> bool {
    match actor {
        GroupRole::Owner => target != GroupRole::Owner,
        GroupRole::Admin => target == GroupRole::Member,
        GroupRole::Member => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GroupRole::{Admin, Member, Owner};

    #[test]
    fn mute_and_kick_follow_the_ranks() {
        // (actor, target, is self, allowed)
        let table = [
            (Owner, Owner, true, false),
            (Owner, Admin, false, true),
            (Owner, Member, false, true),
            (Admin, Owner, false, false),
            (Admin, Admin, false, false),
            (Admin, Admin, true, false),
            (Admin, Member, false, true),
            (Member, Owner, false, false),
            (Member, Admin, false, false),
            (Member, Member, false, false),
            (Member, Member, true, false),
        ];
        for (actor, target, me, allowed) in table {
            assert_eq!(
                may_mute(actor, target, me),
                allowed,
                "mute {actor:?} -> {target:?} self={me}"
            );
            assert_eq!(
                may_kick(actor, target, me),
                allowed,
                "kick {actor:?} -> {target:?} self={me}"
            );
        }
    }

    #[test]
    fn only_the_owner_sets_roles_and_never_its_own() {
        let table = [
            (Owner, Admin, AssignableRole::Member, true),
            (Owner, Member, AssignableRole::Admin, true),
            (Owner, Owner, AssignableRole::Admin, false),
            (Admin, Member, AssignableRole::Admin, false),
            (Admin, Admin, AssignableRole::Member, false),
            (Member, Member, AssignableRole::Admin, false),
        ];
        for (actor, target, to, allowed) in table {
            assert_eq!(
                may_set_role(actor, target, to),
                allowed,
                "{actor:?} sets {target:?} to {to:?}"
            );
        }
    }

    #[test]
    fn managers_approve_and_invite() {
        assert!(may_manage(Owner) && may_manage(Admin) && !may_manage(Member));
        let table = [
            (Owner, true, true),
            (Admin, true, true),
            (Member, true, false),
            (Member, false, true),
        ];
        for (actor, approval, allowed) in table {
            assert_eq!(
                may_invite(actor, approval),
                allowed,
                "{actor:?} approval={approval}"
            );
        }
    }

    #[test]
    fn recall_rules() {
        let w = 120_000;
        // (actor, author role, is author, age, allowed)
        let table = [
            (Member, Some(Member), true, 1_000, true),
            (Member, Some(Member), true, w + 1, false),
            (Member, Some(Member), false, 1_000, false),
            (Admin, Some(Member), false, w * 10, true),
            (Admin, Some(Admin), false, 1_000, false),
            (Admin, Some(Owner), false, 1_000, false),
            (Admin, Some(Admin), true, w * 10, true),
            (Owner, Some(Admin), false, w * 10, true),
            (Owner, None, false, w * 10, true),
            (Member, None, false, 1, false),
        ];
        for (actor, author, is_author, age, allowed) in table {
            assert_eq!(
                may_recall(actor, author, is_author, age, w),
                allowed,
                "{actor:?} recalls {author:?}'s (own: {is_author}) aged {age}"
            );
        }
    }

    #[test]
    fn speaking_needs_no_mute() {
        let now = 1_000;
        let table = [
            (Member, 0, false, true),
            (Member, now + 1, false, false),
            (Member, 0, true, false),
            (Admin, 0, true, true),
            (Owner, 0, true, true),
            (Admin, now + 1, true, false),
        ];
        for (actor, muted_until, all_muted, allowed) in table {
            assert_eq!(
                may_speak(actor, muted_until, all_muted, now),
                allowed,
                "{actor:?} {muted_until} {all_muted}"
            );
        }
    }
}
