"""The small exception family the UI, CLI and API map to messages.

Every error carries a message meant for a person: what was wrong and what is allowed.
"""

from __future__ import annotations


class LabError(Exception):
    """Base class: anything the lab reports to a user instead of crashing."""


class RequestError(LabError, ValueError):
    """A request field is invalid. ``field`` names it (dotted path for nested fields)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class InputError(LabError, ValueError):
    """The input image cannot be used (not an image, truncated, too large, ...)."""


class URLFetchError(LabError):
    """A URL was refused or could not be fetched within the limits."""


class ModelMissingError(LabError):
    """Weights are not available locally (and the hub is off or unreachable)."""

    def __init__(self, model_id: str, detail: str, fetch_command: str) -> None:
        self.model_id = model_id
        self.fetch_command = fetch_command
        self.detail = detail
        many = "," in model_id
        super().__init__(
            f"{'models' if many else 'model'} {model_id} {'are' if many else 'is'} missing: {detail}. "
            f"Fetch {'them' if many else 'it'} with: {fetch_command}"
        )


class OutOfMemoryError(LabError):
    """Device memory ran out even at the smallest tile size."""


class WeightsError(LabError):
    """A weight file exists but is corrupt or does not match its checksum."""


class Cancelled(LabError):
    """The run was cancelled by its caller."""
