"""berth's registry server: storage (content-addressed, shared across repositories), the OCI
Distribution HTTP surface, auth (htpasswd Basic, self-issued bearer tokens), and gc.
"""
