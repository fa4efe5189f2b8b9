"""Bridges, veth pairs, IPAM, embedded DNS, port publishing and load balancing in the kernel. Knows
nothing of images.
"""
