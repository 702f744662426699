"""The coreset artifact (defined in the numpy-only runtime so devices can read it as replay memory)."""

from deploy.runtime.coreset import CORESET_KIND, Coreset, Normalizer

__all__ = ["CORESET_KIND", "Coreset", "Normalizer"]
