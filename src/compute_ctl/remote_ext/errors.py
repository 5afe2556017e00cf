"""The two ways a remote-extension request fails, kept apart from the modules that raise them
so that the HTTP layer can name them without importing the download machinery."""

from __future__ import annotations

from compute_ctl.errors import ComputeError


class ExtensionNotFoundError(ComputeError):
    """The name does not lead to an extension this compute may download (a 404)."""


class DownloadError(ComputeError):
    """The archive could not be downloaded or installed (a 500 on `/extension_server`)."""
