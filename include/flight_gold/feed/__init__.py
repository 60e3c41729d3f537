"""The Silver_ML feed: what writes `silver/flights_ml` for the Gold jobs to read.

- `opensky`: the recorded OpenSky traffic around Paris, turned into Silver_ML rows by the
  upstream rules of SPEC.md;
- `icao`: the country of registration from the ICAO 24-bit address blocks;
- `writer`: one Delta commit per call, with `deltalake` (no JVM), local or s3a;
- `replay`: the recording into Silver_ML, at once or following event time (CLI);
- `synthetic`: seeded, vectorised Silver_ML rows for tests and benchmarks (CLI).
"""
