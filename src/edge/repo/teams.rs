//! Teams and their members: creation, lists, and the member rules D1 decides inside the
//! statements that change a membership.

use super::*;

impl Repo {
    /// The team, its first owner and the `team.created` event, in one batch: all or
    /// nothing, and nothing when the owner already belongs to `max_teams` teams. `false`
    /// when the cap refused.
    pub async fn create_team(
        &self,
        team: &TeamRecord,
        owner: &str,
        max_teams: u32,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let now = num(team.created_at);
        let cap = num(max_teams as i64);
        let under_cap = "(SELECT COUNT(*) FROM team_members WHERE user_id = ?2) < ?4";
        let results = self
            .batch(vec![
                self.stmt(
                    &format!(
                        "INSERT INTO teams (id, name, created_at) SELECT ?1, ?3, ?5 WHERE {under_cap}"
                    ),
                    &[text(&team.id), text(owner), text(&team.name), cap.clone(), now.clone()],
                )?,
                self.stmt(
                    &format!(
                        "INSERT INTO team_members (team_id, user_id, role, added_at) \
                         SELECT ?1, ?2, 'owner', ?3 WHERE EXISTS (SELECT 1 FROM teams WHERE id = ?1) \
                           AND {under_cap}"
                    ),
                    &[text(&team.id), text(owner), now, cap],
                )?,
                self.audit_insert(audit, "changes() > 0", None, None)?,
            ])
            .await?;
        Ok(changed(&results, 0))
    }

    /// The user's teams, oldest first (UUIDv7 ids follow creation time), `limit` of them
    /// after the team id `after`.
    pub async fn teams_of(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TeamRecord>> {
        d1_row! {
            struct Row {
                id: String,
                name: String,
                role: String,
                created_at: f64,
            }
        }
        let rows: Vec<Row> = self
            .all(
                "SELECT t.id, t.name, m.role, t.created_at FROM team_members m \
                 JOIN teams t ON t.id = m.team_id WHERE m.user_id = ?1 AND (?2 IS NULL OR t.id > ?2) \
                 ORDER BY t.id LIMIT ?3",
                &[text(user_id), opt_text(after), num(limit as i64)],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(TeamRecord {
                    role: role(&r.role)?,
                    id: r.id,
                    name: r.name,
                    created_at: millis(r.created_at),
                })
            })
            .collect()
    }

    pub async fn member(&self, team_id: &str, user_id: &str) -> Result<Option<MemberRecord>> {
        let row: Option<MemberRow> = self
            .first(
                "SELECT user_id, role, added_at FROM team_members WHERE team_id = ?1 AND user_id = ?2",
                &[text(team_id), text(user_id)],
            )
            .await?;
        row.map(MemberRow::record).transpose()
    }

    /// The team's members by (added_at, user_id), `limit` of them after `after`.
    pub async fn members(
        &self,
        team_id: &str,
        after: Option<(UnixMillis, &str)>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>> {
        let rows: Vec<MemberRow> = self
            .all(
                "SELECT user_id, role, added_at FROM team_members WHERE team_id = ?1 \
                 AND (?2 IS NULL OR (added_at, user_id) > (?2, ?3)) \
                 ORDER BY added_at, user_id LIMIT ?4",
                &[
                    text(team_id),
                    opt_num(after.map(|(at, _)| at)),
                    opt_text(after.map(|(_, user)| user)),
                    num(limit as i64),
                ],
            )
            .await?;
        rows.into_iter().map(MemberRow::record).collect()
    }

    pub async fn owner_count(&self, team_id: &str) -> Result<usize> {
        d1_row! {
            struct Row {
                n: f64,
            }
        }
        let row: Option<Row> = self
            .first(
                "SELECT COUNT(*) AS n FROM team_members WHERE team_id = ?1 AND role = 'owner'",
                &[text(team_id)],
            )
            .await?;
        Ok(row.map_or(0, |r| r.n as usize))
    }

    /// Adds the member or changes their role, if the rules allow it as the team is at
    /// write time: the caller (`actor_id`) is an owner or admin, only an owner grants
    /// `owner` or changes an owner, and an owner is demoted only while another remains.
    /// Decided inside the one statement, so no concurrent change slips between a check and
    /// the write. `None` means a rule refused.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_member(
        &self,
        team_id: &str,
        user_id: &str,
        role: Role,
        actor_id: &str,
        now: UnixMillis,
        caps: &Caps,
        audit: &AuditEvent,
    ) -> Result<Option<MemberRecord>> {
        let (actor, owners) = (actor_role("?5"), OWNER_COUNT);
        let change = self.stmt(
            &format!(
                "INSERT INTO team_members (team_id, user_id, role, added_at) \
                 SELECT ?1, ?2, ?3, ?4 WHERE {actor} IN ('owner', 'admin') \
                    AND (?3 <> 'owner' OR {actor} = 'owner') \
                    AND (((SELECT COUNT(*) FROM team_members WHERE user_id = ?2) < ?6 \
                          AND (SELECT COUNT(*) FROM team_members WHERE team_id = ?1) < ?7) \
                         OR EXISTS (SELECT 1 FROM team_members WHERE team_id = ?1 AND user_id = ?2)) \
                 ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role \
                 WHERE (team_members.role <> 'owner' OR {actor} = 'owner') \
                    AND (team_members.role <> 'owner' OR excluded.role = 'owner' OR {owners} > 1) \
                 RETURNING user_id, role, added_at"
            ),
            &[
                text(team_id),
                text(user_id),
                text(role.as_str()),
                num(now),
                text(actor_id),
                num(caps.teams_per_user as i64),
                num(caps.members_per_team as i64),
            ],
        )?;
        // Written only if the statement above changed a row; a row whose `added_at` is this
        // request's time was added by it, any other had its role set.
        let event = self.stmt(
            "INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, created_at, request_id, subject) \
             SELECT ?1, ?2, ?3, ?4, \
               CASE WHEN (SELECT added_at FROM team_members WHERE team_id = ?2 AND user_id = ?7) = ?5 \
                 THEN 'member.added' ELSE 'member.role_changed' END, \
               ?5, ?6, ?7 WHERE changes() > 0",
            &[
                text(&audit.id),
                text(&audit.team_id),
                text(&audit.actor_kind),
                text(&audit.actor_id),
                num(audit.created_at),
                text(&audit.request_id),
                text(user_id),
            ],
        )?;
        let results = self.batch(vec![change, event]).await?;
        first_row::<MemberRow>(&results, 0)?
            .map(MemberRow::record)
            .transpose()
    }

    /// How many teams the user belongs to.
    pub async fn team_count(&self, user_id: &str) -> Result<u32> {
        d1_row! {
            struct Row {
                n: f64,
            }
        }
        let row: Option<Row> = self
            .first(
                "SELECT COUNT(*) AS n FROM team_members WHERE user_id = ?1",
                &[text(user_id)],
            )
            .await?;
        Ok(row.map_or(0, |r| r.n as u32))
    }

    /// Removes the member, under the same rules as `set_member`, checked in the statement.
    /// `false` when nothing was removed: no such member, or a rule refused.
    pub async fn remove_member(
        &self,
        team_id: &str,
        user_id: &str,
        actor_id: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let (actor, owners) = (actor_role("?3"), OWNER_COUNT);
        let results = self
            .batch(vec![
                self.stmt(
                    &format!(
                        "DELETE FROM team_members WHERE team_id = ?1 AND user_id = ?2 \
                         AND {actor} IN ('owner', 'admin') \
                         AND (role <> 'owner' OR {actor} = 'owner') \
                         AND (role <> 'owner' OR {owners} > 1)"
                    ),
                    &[text(team_id), text(user_id), text(actor_id)],
                )?,
                self.audit_insert(audit, "changes() > 0", None, None)?,
            ])
            .await?;
        Ok(changed(&results, 0))
    }
}

/// Team lifecycle: the team as its member sees it, rename and delete.
impl Repo {
    /// The team, with the caller's role and its version; `None` when the caller is not a
    /// member or the team is deleted.
    pub async fn team(&self, team_id: &str, user_id: &str) -> Result<Option<TeamState>> {
        let row: Option<TeamRow> = self
            .first(
                "SELECT t.id, t.name, m.role, t.created_at, t.version FROM teams t \
                 JOIN team_members m ON m.team_id = t.id AND m.user_id = ?2 \
                 WHERE t.id = ?1 AND t.deleted_at IS NULL",
                &[text(team_id), text(user_id)],
            )
            .await?;
        row.map(TeamRow::state).transpose()
    }

    /// Whether the team existed and was deleted.
    pub async fn team_deleted(&self, team_id: &str) -> Result<bool> {
        d1_row! {
            struct Row {
                #[allow(dead_code)]
                id: String,
            }
        }
        let row: Option<Row> = self
            .first(
                "SELECT id FROM teams WHERE id = ?1 AND deleted_at IS NOT NULL",
                &[text(team_id)],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Renames the team and bumps its version, with its `team.renamed` event, if the
    /// caller is an owner or admin at write time and the version is still `expected` (when
    /// pinned). `None` when nothing changed.
    pub async fn rename_team(
        &self,
        team_id: &str,
        user_id: &str,
        name: &str,
        expected: Option<i64>,
        audit: &AuditEvent,
    ) -> Result<Option<TeamState>> {
        let actor = actor_role("?2");
        let results = self
            .batch(vec![
                self.stmt(
                    &format!(
                        "UPDATE teams SET name = ?3, version = version + 1 \
                         WHERE id = ?1 AND deleted_at IS NULL AND {actor} IN ('owner', 'admin') \
                           AND (?4 IS NULL OR version = ?4) \
                         RETURNING id, name, {actor} AS role, created_at, version"
                    ),
                    &[text(team_id), text(user_id), text(name), opt_num(expected)],
                )?,
                self.audit_insert(audit, "changes() > 0", None, None)?,
            ])
            .await?;
        first_row::<TeamRow>(&results, 0)?
            .map(TeamRow::state)
            .transpose()
    }

    /// Deletes the team, if the caller is an owner at write time and the version is still
    /// `expected` (when pinned), in one batch with its `team.deleted` event: the team row
    /// becomes a tombstone, every API key is revoked, every credential row (ciphertext and
    /// all) is deleted and the members are removed. Audit events stay until retention
    /// ends. `false` when nothing was deleted.
    pub async fn delete_team(
        &self,
        team_id: &str,
        user_id: &str,
        expected: Option<i64>,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let actor = actor_role("?2");
        // Each cleanup runs only once the tombstone is there: after this batch's own
        // update, or (harmlessly, again) after an earlier delete.
        let deleted = "EXISTS (SELECT 1 FROM teams WHERE id = ?1 AND deleted_at IS NOT NULL)";
        let args = [text(team_id), num(now)];
        let results = self
            .batch(vec![
                self.stmt(
                    &format!(
                        "UPDATE teams SET deleted_at = ?3, version = version + 1 \
                         WHERE id = ?1 AND deleted_at IS NULL AND {actor} = 'owner' \
                           AND (?4 IS NULL OR version = ?4)"
                    ),
                    &[text(team_id), text(user_id), num(now), opt_num(expected)],
                )?,
                self.audit_insert(audit, "changes() > 0", None, None)?,
                self.stmt(
                    &format!(
                        "UPDATE api_keys SET revoked_at = ?2 \
                         WHERE team_id = ?1 AND revoked_at IS NULL AND {deleted}"
                    ),
                    &args,
                )?,
                self.stmt(
                    &format!("DELETE FROM credentials WHERE team_id = ?1 AND {deleted}"),
                    &args[..1],
                )?,
                self.stmt(
                    &format!("DELETE FROM team_members WHERE team_id = ?1 AND {deleted}"),
                    &args[..1],
                )?,
            ])
            .await?;
        Ok(changed(&results, 0))
    }
}

d1_row! {
    struct TeamRow {
        id: String,
        name: String,
        role: String,
        created_at: f64,
        version: f64,
    }
}

impl TeamRow {
    fn state(self) -> Result<TeamState> {
        Ok(TeamState {
            team: TeamRecord {
                role: role(&self.role)?,
                id: self.id,
                name: self.name,
                created_at: millis(self.created_at),
            },
            version: self.version as i64,
        })
    }
}

/// Team ?1's owner count, read inside a member statement.
const OWNER_COUNT: &str =
    "(SELECT COUNT(*) FROM team_members WHERE team_id = ?1 AND role = 'owner')";

/// The caller's role in team ?1 (NULL when not a member), read inside a member statement;
/// `param` is the statement parameter that holds the caller's user id.
fn actor_role(param: &str) -> String {
    format!("(SELECT role FROM team_members WHERE team_id = ?1 AND user_id = {param})")
}
