"""Face encoders behind one interface, created by name."""

from __future__ import annotations

from collections.abc import Callable

from .base import FaceEncoder

_FACTORIES: dict[str, Callable[..., FaceEncoder]] = {}


def register_encoder(name: str) -> Callable[[Callable[..., FaceEncoder]], Callable[..., FaceEncoder]]:
    """Decorator that makes an encoder class or factory available to ``create_encoder``."""

    def wrap(factory: Callable[..., FaceEncoder]) -> Callable[..., FaceEncoder]:
        _FACTORIES[name] = factory
        return factory

    return wrap


def _load_builtin() -> None:
    # Imported lazily so that ``import face_recognition_ros.encoders`` stays cheap.
    from . import dlib_resnet, efficientnet, mobileface  # noqa: F401


def available_encoders() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def create_encoder(name: str, **kwargs) -> FaceEncoder:
    """Instantiate a registered encoder, e.g. ``create_encoder("dlib_resnet")``.

    Keyword arguments go to the encoder (``weights=PATH`` for another checkpoint, ``device=``).
    """
    _load_builtin()
    if name not in _FACTORIES:
        from ..errors import ModelError

        raise ModelError(f"unknown encoder {name!r}; available: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](**kwargs)


__all__ = ["FaceEncoder", "available_encoders", "create_encoder", "register_encoder"]
