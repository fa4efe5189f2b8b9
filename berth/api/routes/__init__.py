"""One router module per API resource, each exposing ``register(router, engine)``."""
