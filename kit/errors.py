"""Re-export of the kit's single user-facing error type (defined in the numpy-only runtime)."""

from deploy.runtime.errors import KitError

__all__ = ["KitError"]
