#!/usr/bin/env python3
"""Time one ``Matcher.match`` call against a large synthetic gallery (100k samples by default)."""

from __future__ import annotations

import argparse
import json

from face_recognition_ros.matching_benchmark import benchmark_matching


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--per-person", type=int, default=10)
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(benchmark_matching(args.samples, args.dim, args.batch, args.per_person, k=args.k), indent=2))


if __name__ == "__main__":
    main()
