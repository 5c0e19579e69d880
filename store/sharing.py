"""Harmony's sharing rules: who may see which meetings.

Admins and owners see every meeting of their workspace. Members see the
meetings of the teams they belong to, and their own.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select

from store.models import Contact, Meeting, MeetingContact, TeamMember
from store.principal import Principal


def visible_meetings(principal: Principal) -> ColumnElement[bool]:
    in_workspace = Meeting.workspace_id == principal.workspace_id
    if principal.is_admin:
        return in_workspace
    my_teams = select(TeamMember.team_id).where(TeamMember.user_id == principal.user_id)
    return in_workspace & ((Meeting.owner_id == principal.user_id) | Meeting.team_id.in_(my_teams))


def visible_contacts(principal: Principal) -> ColumnElement[bool]:
    """Contacts of the workspace; members see those met in a meeting they can see, or met by nobody yet."""
    in_workspace = Contact.workspace_id == principal.workspace_id
    if principal.is_admin:
        return in_workspace
    seen = (
        select(MeetingContact.contact_id)
        .join(Meeting, Meeting.id == MeetingContact.meeting_id)
        .where(visible_meetings(principal))
    )
    unmet = ~select(MeetingContact.contact_id).where(MeetingContact.contact_id == Contact.id).exists()
    return in_workspace & (Contact.id.in_(seen) | unmet)
