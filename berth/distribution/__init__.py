"""The registry client (pull, push, auth) and berth's registry server. Knows nothing of containers.
"""
