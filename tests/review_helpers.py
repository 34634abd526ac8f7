"""Review scopes for tests: a staff member who may review the members of some groups."""

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, Group

from chat.models import ReviewScope


def group_named(name: str) -> Group:
    return Group.objects.get_or_create(name=name)[0]


def join_groups(user: AbstractBaseUser, groups: Iterable[str]) -> AbstractBaseUser:
    """Make `user` a member of every group named (created if need be)."""
    user.groups.add(*(group_named(name) for name in groups))
    return user


def make_reviewer(user: AbstractBaseUser, groups: Iterable[str]) -> AbstractBaseUser:
    """Make `user` active staff with a review scope on every group named (created if need be)."""
    user.is_staff = user.is_active = True
    user.save(update_fields=["is_staff", "is_active"])
    for name in groups:
        ReviewScope.objects.get_or_create(reviewer=user, group=group_named(name))
    return user
