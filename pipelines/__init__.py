"""Pure inference for the Generative Upscale Lab (no gradio here).

request → sizing → base paths → diffusion → compose → metrics. Importing this package loads
no model and touches no device; models load lazily through :class:`pipelines.engine.Engine`.
"""

from pipelines.errors import (
    InputError,
    LabError,
    ModelMissingError,
    OutOfMemoryError,
    RequestError,
    URLFetchError,
)

__all__ = [
    "InputError",
    "LabError",
    "ModelMissingError",
    "OutOfMemoryError",
    "RequestError",
    "URLFetchError",
]
