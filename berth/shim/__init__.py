"""The per-container supervisor: parent of the container's init, holder of its stdio, log and exit
status. Imports nothing heavy.
"""
