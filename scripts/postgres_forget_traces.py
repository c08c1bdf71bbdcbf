#!/usr/bin/env python3
"""What PostgreSQL keeps on disk of a forgotten person, for the README (section "A gallery for a fleet of robots").

    bash scripts/with_postgres.sh python3 scripts/postgres_forget_traces.py

On the throw-away cluster (it needs the data folder and a superuser for CHECKPOINT): enrolls a person
with distinctive crops and embeddings, forgets them through the gallery (which deletes the rows and
runs a plain VACUUM), then counts the files of the data folder that still hold the name, a crop
slice or an embedding: after the forget, after a CHECKPOINT, and after a VACUUM FULL + CHECKPOINT.
The tables themselves hold nothing of the person from the forget's commit on (tested:
test/test_gallery_postgres.py); this is about the bytes below them.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face_recognition_ros.gallery import CROP_SHAPE, open_gallery  # noqa: E402

NAME = "Forgotten Person Zyx"


def main() -> int:
    import psycopg

    url, admin = os.environ["FACE_RECOGNITION_TEST_POSTGRES_URL"], os.environ["FACE_RECOGNITION_TEST_POSTGRES_ADMIN_URL"]
    data = Path(os.environ["FACE_RECOGNITION_TEST_POSTGRES_DATA"])
    schema = "traces_" + uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    setting = f"{url}?options=-c%20search_path%3D{schema}"
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (3, *CROP_SHAPE), dtype=np.uint8)  # noise: incompressible, unmistakable
    embeddings = rng.standard_normal((3, 128)).astype(np.float32)
    gallery = open_gallery(setting)
    gallery.enroll("Someone Else", embeddings[:1] + 1, crops[:1] // 2, "enc:0:0")
    gallery.enroll(NAME, embeddings, crops, "enc:0:0")
    with psycopg.connect(setting, autocommit=True) as conn:
        stored = conn.execute("SELECT crop, embedding FROM samples s JOIN people p ON p.id = s.person_id "
                              "WHERE p.name = %s", (NAME,)).fetchall()
    needles = {"name": [NAME.encode()],
               "crop": [bytes(crop)[offset:offset + 48] for crop, _ in stored for offset in (1000, len(crop) // 2)],
               "embedding": [bytes(embedding)[100:148] for _, embedding in stored]}

    def checkpoint():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CHECKPOINT")

    def traces() -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for path in data.rglob("*"):
            if not path.is_file():
                continue
            try:
                content = path.read_bytes()
            except OSError:
                continue
            area = "WAL (pg_wal)" if "pg_wal" in path.parts else "table files (base)" if "base" in path.parts else "other"
            for kind, pieces in needles.items():
                if any(piece in content for piece in pieces):
                    found.setdefault(area, {}).setdefault(kind, 0)
                    found[area][kind] += 1
        return found

    checkpoint()
    print("before the forget, files holding the person:", traces())
    gallery.forget(NAME)  # DELETE in one transaction, then VACUUM samples, people
    print("after the forget (rows deleted, plain VACUUM run):", traces())
    checkpoint()
    print("  ... and a CHECKPOINT:", traces())
    with psycopg.connect(setting, autocommit=True) as conn:
        conn.execute("VACUUM FULL samples, people")
    checkpoint()
    print("after VACUUM FULL + CHECKPOINT:", traces())
    gallery.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
