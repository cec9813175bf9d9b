"""Talks to the Cendis registry."""

import os

# Set CENDIS_TOKEN=cendis_pat_<your-token> in your environment (a placeholder: never reported).
TOKEN = os.environ.get("CENDIS_TOKEN", "")

# A copy pasted from a chat, cut short: still a live token's first 33 characters.
FALLBACK = "cendis_pat_luDpieh8wacyESN52NX4emGpL7xQEW1pa"
