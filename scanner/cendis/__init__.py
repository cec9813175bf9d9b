"""The Cendis API client (whoami, revoke) and its errors; see shared/spec/cendis-api.md."""
