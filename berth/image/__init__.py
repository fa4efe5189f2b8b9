"""The content store (blobs by digest), manifests/configs/indexes, layer apply/diff with whiteouts,
overlay snapshots. Knows nothing of the network.
"""
