"""The provider's claims: the user's name, email and groups (the claim the app maps to its groups)."""

from oauth2_provider.oauth2_validators import OAuth2Validator


class GroupsClaimValidator(OAuth2Validator):
    oidc_claim_scope = None  # every claim whatever the scopes asked for

    def get_additional_claims(self, request):  # noqa: ANN001, ANN201 - django-oauth-toolkit's signature
        user = request.user
        return {
            "preferred_username": user.username,
            "email": user.email,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
