"""``gallery copy SRC DST``: move a gallery between SQLite and PostgreSQL (either way), and check the copy.

Everything is copied as stored, ids included: people (name, created), samples (embedding bytes,
encoder identity, PNG crop bytes, landmarks, created). The source is read from one consistent
snapshot and written into the destination in one transaction, so an interrupted copy leaves the
destination as it was. Then the destination is read back and compared with what was read from the
source: the people, the samples' fields, the embeddings and the crops, each by count and SHA-256.
A destination that holds anyone is refused unless ``replace`` (its people are forgotten first).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import GalleryError
from .gallery import FaceGallery, PersonRecord, SampleRecord


@dataclass
class GalleryDigest:
    """Counts and SHA-256 digests of a gallery's stored content (independent of the engine)."""

    people: int = 0
    samples: int = 0
    _people: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)
    _fields: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)
    _embeddings: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)
    _crops: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)

    def add_people(self, people: Iterable[PersonRecord]) -> None:
        for person in people:
            self.people += 1
            self._people.update(_pack(person.id, person.name, person.created))

    def add_samples(self, batch: list[SampleRecord]) -> None:
        for sample in batch:
            self.samples += 1
            self._fields.update(_pack(sample.id, sample.person_id, sample.dim, sample.encoder, sample.landmarks,
                                      sample.created))
            self._embeddings.update(_pack(sample.id, sample.embedding))
            self._crops.update(_pack(sample.id, sample.crop))

    def passing(self, batches: Iterable[list[SampleRecord]]) -> Iterator[list[SampleRecord]]:
        """The batches unchanged, each added to this digest as it goes by."""
        for batch in batches:
            self.add_samples(batch)
            yield batch

    def parts(self) -> dict[str, str]:
        return {"people": self._people.hexdigest(), "samples": self._fields.hexdigest(),
                "embeddings": self._embeddings.hexdigest(), "crops": self._crops.hexdigest()}

    def differences(self, other: "GalleryDigest") -> list[str]:
        found = []
        if (self.people, self.samples) != (other.people, other.samples):
            found.append(f"{self.people} people and {self.samples} samples against {other.people} and {other.samples}")
        found += [f"the {name} differ" for name, value in self.parts().items() if other.parts()[name] != value]
        return found


@dataclass(frozen=True)
class CopyReport:
    people: int
    samples: int
    digests: dict[str, str]


def digest_of(gallery: FaceGallery, batch_size: int = 256) -> GalleryDigest:
    """What ``gallery`` holds now, read from one snapshot."""
    digest = GalleryDigest()
    with gallery.export_records(batch_size) as (people, batches):
        digest.add_people(people)
        for batch in batches:
            digest.add_samples(batch)
    return digest


def copy_gallery(source: FaceGallery, destination: FaceGallery, replace: bool = False,
                 batch_size: int = 256) -> CopyReport:
    """Copy ``source`` into ``destination`` and check it (see the module docstring); GalleryError on failure."""
    if source.kind == destination.kind and source.location == destination.location:
        raise GalleryError("the source and the destination are the same gallery")
    copied = GalleryDigest()
    with source.export_records(batch_size) as (people, batches):
        copied.add_people(people)
        destination.import_records(people, copied.passing(batches), replace=replace)
    stored = digest_of(destination, batch_size)
    differences = copied.differences(stored)
    if differences:
        raise GalleryError(f"the copy in {destination.location} does not match the source ({'; '.join(differences)}); "
                           "it was committed: copy again with --replace")
    return CopyReport(copied.people, copied.samples, copied.parts())


def _pack(*values) -> bytes:
    """An unambiguous byte string for a tuple of ints, floats, strings and bytes."""
    out = bytearray()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, bytes)):
            raise TypeError(f"cannot digest {type(value).__name__}")
        if isinstance(value, int):
            out += b"i" + struct.pack("<q", value)
        elif isinstance(value, float):
            out += b"f" + struct.pack("<d", value)
        else:
            data = value.encode("utf-8") if isinstance(value, str) else value
            out += (b"s" if isinstance(value, str) else b"b") + struct.pack("<Q", len(data)) + data
    return bytes(out)
