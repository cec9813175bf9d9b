"""Repository discovery for sweeps: each ``[[org]]``'s repositories listed through its
forge's API (GitHub, GitLab), politely and cheaply, and compared with the last list."""

from scanner.sweep.discovery.credentials import clone_env
from scanner.sweep.discovery.http import DiscoveryError
from scanner.sweep.discovery.orgs import OrgResult, discover, excluded

__all__ = ["DiscoveryError", "OrgResult", "clone_env", "discover", "excluded"]
