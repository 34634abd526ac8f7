"""The OpenAI-compatible API under /v1/ (docs/api.md)."""
