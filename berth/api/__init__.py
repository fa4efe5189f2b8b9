"""The Docker Engine API server: routes, decoding, errors → HTTP status, streams and hijacked
connections; and berthd's entry point. Holds no business logic.
"""
