"""Exceptions with messages meant for the person at the terminal or the robot operator."""


class FaceRecognitionError(Exception):
    """Base class: every expected failure (bad input, bad gallery, missing weights) derives from it."""


class ImageError(FaceRecognitionError):
    """An image could not be read or is not usable (corrupt, empty, too small, too large)."""


class NoFaceError(FaceRecognitionError):
    """No usable face was found where one was required (enrollment)."""


class GalleryError(FaceRecognitionError):
    """The gallery cannot be opened, read or written, or a request on it is invalid."""


class GalleryUnavailableError(GalleryError):
    """The gallery's database server cannot be reached now (recognition goes on from the cached gallery)."""


class InvalidNameError(GalleryError):
    """A person name is empty, too long or contains control characters."""


class UnknownPersonError(GalleryError):
    """No person in the gallery has the name or id asked for (a request's mistake, not a fault)."""


class ModelError(FaceRecognitionError):
    """Model weights are missing, unreadable or do not fit the architecture."""


class BackendUnavailableError(FaceRecognitionError):
    """An inference backend cannot run here (no GPU, library not installed)."""


class EvaluationError(FaceRecognitionError):
    """A benchmark cannot run: malformed pairs file, missing dataset images, unusable scores."""
