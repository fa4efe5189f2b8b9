"""The berth command: argument parsing, output formats, progress display. Only an API client;
touches no state.
"""
