"""The parts of the wire protocol that the client, the agent and the server each speak: chunked file transfer,
safe relative paths, where a tail starts, retry pacing, channel settings and the task outputs path.

Written once here so the three sides cannot drift; private (no stability promise), small and free of I/O
beyond the files a caller hands in.
"""
