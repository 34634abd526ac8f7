"""Who may review whose transcripts: review scopes (chat.models.ReviewScope).

A superuser reviews everyone; a staff member reviews the members of the groups they hold a scope on, and
nobody else (staff without a scope see no transcript at all). Every review read in the admin goes through
`reviewable` so that lists, transcripts, exports, search, shares, usage and attachments agree.
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Q, QuerySet

from chat.models import ReviewScope


def _may_review(reviewer: AbstractBaseUser) -> bool:
    return bool(reviewer.is_authenticated and reviewer.is_active and reviewer.is_staff)


def reviewable_owners_q(*, reviewer: AbstractBaseUser, owner_field: str) -> Q:
    """A filter on `owner_field` (a path to a user) keeping only the users `reviewer` may review."""
    if reviewer.is_authenticated and reviewer.is_active and reviewer.is_superuser:
        return Q()
    if not _may_review(reviewer):
        return Q(pk__in=[])
    scoped_groups = ReviewScope.objects.filter(reviewer=reviewer).values("group_id")
    members = get_user_model().groups.through.objects.filter(group_id__in=scoped_groups).values("user_id")
    return Q(**{f"{owner_field}__in": members})


def reviewable(queryset: QuerySet, *, reviewer: AbstractBaseUser, owner_field: str) -> QuerySet:
    """`queryset` cut to the rows whose `owner_field` user `reviewer` may review (no join, so no duplicates)."""
    return queryset.filter(reviewable_owners_q(reviewer=reviewer, owner_field=owner_field))


@dataclass(frozen=True)
class ReviewExposure:
    """What a user is told about review of their own transcripts (their settings page)."""

    groups: list[str]  # their groups that have reviewers
    policy: str


def review_exposure_for(*, user: AbstractBaseUser) -> ReviewExposure:
    """Which of `user`'s groups have a reviewer, and the server's review policy text."""
    groups = Group.objects.filter(user=user, review_scopes__isnull=False).distinct().order_by("name")
    return ReviewExposure(groups=list(groups.values_list("name", flat=True)), policy=settings.CHAT_REVIEW_POLICY)
