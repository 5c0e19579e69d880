"""Contacts: the people met in meetings, as Harmony's sharing rules let the key's person see them."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from starlette.requests import Request

from server.api.auth import api_caller
from server.api.errors import ApiError
from server.api.resources import ContactFilters, ContactOut, MeetingOut, contact_out, meeting_out
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.pages import Page, PageQuery, paginate
from store.models import Contact, Meeting, MeetingContact
from store.sharing import visible_contacts, visible_meetings

api = ApiRouter("Contacts")


@api.get("/contacts", query=ContactFilters, response=Page[ContactOut], summary="List contacts")
async def list_contacts(request: Request, query: ContactFilters) -> Page[ContactOut]:
    """Contacts by name; ``query`` matches words in the name, e-mail or company."""
    principal = api_caller(request)
    found = select(Contact).where(visible_contacts(principal))
    if query.query:
        needle = query.query.lower()
        found = found.where(
            or_(
                func.lower(Contact.name).contains(needle, autoescape=True),
                func.lower(Contact.email).contains(needle, autoescape=True),
                func.lower(Contact.company).contains(needle, autoescape=True),
            )
        )
    async with services_of(request).db.session() as session:
        rows, pagination = await paginate(
            session, found, (Contact.name, Contact.id), query, key=lambda c: (c.name, c.id), descending=False
        )
    return Page[ContactOut](data=[contact_out(c) for c in rows], pagination=pagination)


@api.get("/contacts/{id}", response=ContactOut, errors=(404,), summary="Get contact details")
async def get_contact(request: Request) -> ContactOut:
    principal = api_caller(request)
    async with services_of(request).db.session() as session:
        contact = await session.scalar(
            select(Contact).where(Contact.id == request.path_params["id"], visible_contacts(principal))
        )
    if contact is None:
        raise ApiError(404, "Contact not found")
    return contact_out(contact)


@api.get(
    "/contacts/{id}/meetings", query=PageQuery, response=Page[MeetingOut], errors=(404,), summary="Contact's meetings"
)
async def contact_meetings(request: Request, query: PageQuery) -> Page[MeetingOut]:
    """The meetings this contact attended that the key's person may see, newest first."""
    principal = api_caller(request)
    async with services_of(request).db.session() as session:
        contact = await session.scalar(
            select(Contact.id).where(Contact.id == request.path_params["id"], visible_contacts(principal))
        )
        if contact is None:
            raise ApiError(404, "Contact not found")
        found = (
            select(Meeting)
            .join(MeetingContact, MeetingContact.meeting_id == Meeting.id)
            .where(MeetingContact.contact_id == contact, visible_meetings(principal))
        )
        rows, pagination = await paginate(
            session, found, (Meeting.date, Meeting.id), query, key=lambda m: (m.date, m.id)
        )
    return Page[MeetingOut](data=[meeting_out(m) for m in rows], pagination=pagination)
