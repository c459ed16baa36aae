"""Running a sweep: the session's state, the captioning loop, measurements, progress, and GPU/shard scheduling."""
