"""Who may export events and download an export, in the API and the admin alike.

An export is a copy of the raw events table, properties (emails among them) included, so
asking for one needs the permission to view events, and its owner may download it only
while they still hold that permission. Staff who may view export jobs download any of
them: that is the admin's File link.
"""

from django.contrib.auth.models import AbstractUser, AnonymousUser

from apps.analytics.models import ExportJob

EXPORT_EVENTS = "analytics.view_event"
VIEW_ALL_EXPORTS = "analytics.view_exportjob"


def may_export_events(user: AbstractUser | AnonymousUser) -> bool:
    return user.has_perm(EXPORT_EVENTS)


def may_see_all_exports(user: AbstractUser | AnonymousUser) -> bool:
    return user.is_staff and user.has_perm(VIEW_ALL_EXPORTS)


def may_download_export(user: AbstractUser | AnonymousUser, job: ExportJob) -> bool:
    return may_see_all_exports(user) or (
        job.owner_id == user.pk and may_export_events(user))
