"""The distributed parts of training: actor processes and their pool, the shared-memory weights,
the intake thread and rate limiter, prefetch and frame decoding, the evaluation process beside
training, and the Ray backend."""
