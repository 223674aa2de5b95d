"""Identity: who is calling (validated EGI Check-in / OIDC access tokens) and, from there, which local account."""
