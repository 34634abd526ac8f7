"""Run inside the provider project (`python -m tests.oidc_provider.setup_provider`) with a JSON spec on
stdin: the client application of the app under test (when the spec names one), and the people who can
sign in, each created or updated (their groups replaced)."""

import json
import sys

import django

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402

spec = json.load(sys.stdin)
if "client_id" in spec:
    Application.objects.create(
        name="streamchat",
        client_id=spec["client_id"],
        client_secret=spec["client_secret"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=spec["redirect_uri"],
        post_logout_redirect_uris=spec["post_logout_redirect_uri"],
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
for person in spec["people"]:
    user = User.objects.filter(username=person["username"]).first() or User(username=person["username"])
    user.email = person["email"]
    user.set_password(person["password"])
    user.save()
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in person["groups"]])
