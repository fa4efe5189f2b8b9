"""Containers, images, networks and volumes as operations; berthd's state; events. Parses no HTTP.
"""
